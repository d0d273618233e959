/* Waiting for a child process, with cancellation that stops it.
 *
 * Linux: a pidfd (pidfd_open) becomes readable when the child ends, so the
 * wait is a wait-any over the pidfd and the token, and the grace period a
 * timed wait on the pidfd alone (both follow the installed clock).  Without
 * pidfds (old kernels, other systems) the same steps poll waitpid(WNOHANG)
 * between short token waits.  Either way the child is reaped with waitpid,
 * so no zombie is left.
 */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#include "cancel/io.h"

#define FALLBACK_TICK_NS 1000000 /* 1 ms between waitpid polls */

_Atomic bool cancel__no_pidfd;

static int pidfd_for(pid_t pid)
{
    if (atomic_load_explicit(&cancel__no_pidfd, memory_order_relaxed))
        return -ENOSYS;
#if defined(__linux__) && defined(SYS_pidfd_open)
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

/* Wait for the child to end: 0 when it has (reaped into *status), the
 * token's -ECANCELED or -ETIMEDOUT, or -errno. */
static int wait_child(pid_t pid, int pidfd, int *status, cancel_token t,
                      int64_t timeout_ns)
{
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (cancel_requested(t))
            return -ECANCELED;
        if (cancel__deadline_passed(&d))
            return -ETIMEDOUT;
        if (pidfd >= 0) {
            cancel_waitable it[2] = {CANCEL_WAIT_FD(pidfd, POLLIN),
                                     CANCEL_WAIT_TOKEN(t)};
            int w = cancel__wait_any_until(it, 2, &d);
            if (w < 0 && w != -ETIMEDOUT)
                return w;
        } else {
            /* Polling waitpid: the tick is real time even when a manual
             * clock is installed (only the deadline follows that clock; an
             * advance is seen at the next tick). */
            int64_t tick = FALLBACK_TICK_NS;
            if (d.clock == NULL && d.at != INT64_MAX &&
                d.at - cancel__system_now() < tick)
                tick = d.at - cancel__system_now();
            cancel__wait_real(t, tick < 0 ? 0 : tick);
        }
    }
}

int cancel_process_wait(pid_t pid, int *status, cancel_token t,
                        int64_t grace_ns)
{
    if (pid <= 0)
        return -EINVAL;
    int st = 0;
    /* Is it our child?  (waitpid answers ECHILD without waiting.) */
    pid_t r;
    do
        r = waitpid(pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == pid) {
        if (status != NULL)
            *status = st;
        return 0;
    }

    int pidfd = pidfd_for(pid);
    int err = wait_child(pid, pidfd, &st, t, -1);
    if (err == -ECANCELED) {
        /* Stop it: SIGTERM, then SIGKILL after the grace period. */
        kill(pid, SIGTERM);
        int g = wait_child(pid, pidfd, &st, CANCEL_NONE, grace_ns);
        if (g == -ETIMEDOUT) {
            kill(pid, SIGKILL);
            g = wait_child(pid, pidfd, &st, CANCEL_NONE, -1);
        }
        if (g < 0)
            err = g;
        else
            cancel__record(t);
    }
    if (pidfd >= 0)
        close(pidfd);
    if (status != NULL && (err == 0 || err == -ECANCELED))
        *status = st;
    return err;
}
