/* Cancellable POSIX I/O.
 *
 * Every call waits with ppoll(2) on the fd and the token's wait handle
 * (cancel_token_fd), and transfers only once the fd is ready, in a way that
 * cannot block for long without touching the fd's flags:
 *   - sockets: MSG_DONTWAIT on recv/send (per call, not per file);
 *   - blocking pipes and FIFOs: read after POLLIN returns what is there;
 *     write at most what the pipe can take (all of it when empty, else
 *     PIPE_BUF, which a pipe reporting POLLOUT always takes);
 *   - O_NONBLOCK fds of any kind: EAGAIN sends us back to poll;
 *   - regular files and block devices are always ready.
 * The data path therefore never loses bytes: a transfer that happened is
 * returned as a count, and a call that returns -ECANCELED or -ETIMEDOUT
 * transferred nothing (the check for cancellation comes before the
 * transfer, never after it).
 *
 * Deadlines on a manual clock (tests) are waited with cancel_wait_any, which
 * cancel_clock_advance knows how to wake.
 *
 * connect(2) on a blocking socket cannot be made to wait in poll: it blocks
 * in the kernel.  Cancellation (or the timeout, through a private timer
 * source) runs a callback that shuts the socket down, which makes Linux
 * abort a TCP connect that is under way (inet_shutdown disconnects a socket
 * in SYN_SENT); the socket is then unusable, as after any failed connect,
 * and the call reports the cancellation even if connect(2) completed in the
 * same instant (the shutdown already broke that connection).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

#include "internal.h"

#include "cancel/io.h"

/* Wait until fd reports any of `events` (or an error condition): 1; or the
 * token is canceled: -ECANCELED; or the deadline passed: -ETIMEDOUT; or
 * -errno from poll. */
static int wait_fd(int fd, short events, cancel_token t,
                   const struct cancel__deadline *d)
{
    int tfd = -1;
    if (t.src_ != NULL) {
        tfd = cancel_token_fd(t);
        if (tfd < 0)
            return tfd;
    }
    for (;;) {
        if (d->clock != NULL && d->at != INT64_MAX) {
            /* A manual clock: only wait-any knows how advance wakes it. */
            cancel_waitable it[2] = {CANCEL_WAIT_FD(fd, events),
                                     CANCEL_WAIT_TOKEN(t)};
            int r = cancel__wait_any_until(it, 2, d);
            if (r == 0)
                return 1;
            if (r == 1)
                return -ECANCELED;
            if (r == -EBADF)
                return 1; /* let the operation report it */
            return r;
        }
        struct pollfd p[2] = {{fd, events, 0}, {tfd, POLLIN, 0}};
        struct timespec ts, *tsp = NULL;
        if (d->at != INT64_MAX) {
            int64_t left = d->at - cancel__system_now();
            if (left < 0)
                left = 0;
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        int r = ppoll(p, 2, tsp, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[0].revents != 0)
            return 1; /* completion beats cancellation */
        if (p[1].revents != 0 || cancel_requested(t))
            return -ECANCELED;
        if (cancel__deadline_passed(d))
            return -ETIMEDOUT;
    }
}

static ssize_t fail(int err, cancel_token t)
{
    if (err == -ECANCELED || err == -ETIMEDOUT)
        cancel__record(t);
    return err;
}

/* ---- reading ------------------------------------------------------------ */

static ssize_t do_read(int fd, void *buf, size_t n, int flags, bool is_recv,
                       cancel_token t, const struct cancel__deadline *d)
{
    bool socket = true; /* until recv says otherwise */
    for (;;) {
        ssize_t r;
        if (socket) {
            r = recv(fd, buf, n, flags | MSG_DONTWAIT);
            if (r >= 0)
                return r;
            if (errno == ENOTSOCK && !is_recv) {
                socket = false;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        /* A write-only fd never turns readable: fail as read(2) would. */
        if (!socket && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY)
            return -EBADF;
        /* Nothing there (socket), or not a socket: wait until readable. */
        int w = wait_fd(fd, POLLIN, t, d);
        if (w < 0)
            return fail(w, t);
        if (!socket) {
            r = read(fd, buf, n);
            if (r >= 0)
                return r;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
        }
        if (cancel_requested(t))
            return fail(-ECANCELED, t);
    }
}

/* A transfer of 0 bytes never waits, as read(2) and write(2) do not. */
static ssize_t zero(ssize_t r)
{
    return r < 0 ? -errno : r;
}

ssize_t cancel_read(int fd, void *buf, size_t n, cancel_token t,
                    int64_t timeout_ns)
{
    if (buf == NULL && n > 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (n == 0)
        return zero(read(fd, buf, 0));
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return do_read(fd, buf, n, 0, false, t, &d);
}

ssize_t cancel_recv(int fd, void *buf, size_t n, int flags, cancel_token t,
                    int64_t timeout_ns)
{
    if (buf == NULL && n > 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (n == 0)
        return zero(recv(fd, buf, 0, flags | MSG_DONTWAIT));
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return do_read(fd, buf, n, flags, true, t, &d);
}

/* ---- writing ------------------------------------------------------------ */

/* How much a write to this non-socket fd may ask for without blocking,
 * once poll reported POLLOUT.  SIZE_MAX: no limit. */
static size_t write_limit(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        return SIZE_MAX; /* EAGAIN, never a block */
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
        return SIZE_MAX;
#if defined(__linux__) && defined(F_GETPIPE_SZ)
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        int queued = 0;
        int cap = fcntl(fd, F_GETPIPE_SZ);
        if (cap > 0 && ioctl(fd, FIONREAD, &queued) == 0 && queued == 0)
            return (size_t)cap; /* an empty pipe takes its capacity */
    }
#endif
    return PIPE_BUF;
}

static ssize_t do_write(int fd, const void *buf, size_t n, int flags,
                        bool is_send, cancel_token t,
                        const struct cancel__deadline *d)
{
    bool socket = true;
    for (;;) {
        ssize_t r;
        if (socket) {
            r = send(fd, buf, n, flags | MSG_DONTWAIT);
            if (r >= 0)
                return r;
            if (errno == ENOTSOCK && !is_send) {
                socket = false;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        /* A read-only fd: fail as write(2) would, not wait. */
        if (!socket && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
            return -EBADF;
        int w = wait_fd(fd, POLLOUT, t, d);
        if (w < 0)
            return fail(w, t);
        if (!socket) {
            size_t lim = write_limit(fd);
            r = write(fd, buf, n < lim ? n : lim);
            if (r >= 0)
                return r;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
        }
        if (cancel_requested(t))
            return fail(-ECANCELED, t);
    }
}

ssize_t cancel_write(int fd, const void *buf, size_t n, cancel_token t,
                     int64_t timeout_ns)
{
    if (buf == NULL && n > 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (n == 0)
        return zero(write(fd, buf, 0));
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return do_write(fd, buf, n, 0, false, t, &d);
}

ssize_t cancel_send(int fd, const void *buf, size_t n, int flags,
                    cancel_token t, int64_t timeout_ns)
{
    if (buf == NULL && n > 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (n == 0)
        return zero(send(fd, buf, 0, flags | MSG_NOSIGNAL | MSG_DONTWAIT));
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return do_write(fd, buf, n, flags | MSG_NOSIGNAL, true, t, &d);
}

/* ---- whole transfers ---------------------------------------------------- */

int cancel_read_full(int fd, void *buf, size_t n, size_t *done,
                     cancel_token t, int64_t timeout_ns)
{
    size_t got = 0;
    int err = 0;
    if (buf == NULL && n > 0)
        err = -EINVAL;
    else if (cancel_check(t) < 0)
        err = -ECANCELED;
    if (err == 0) {
        struct cancel__deadline d;
        cancel__deadline_init(&d, timeout_ns);
        while (got < n) {
            ssize_t r = do_read(fd, (char *)buf + got, n - got, 0, false, t,
                                &d);
            if (r < 0) {
                err = (int)r;
                break;
            }
            if (r == 0)
                break; /* end of file */
            got += (size_t)r;
        }
    }
    if (done != NULL)
        *done = got;
    return err;
}

int cancel_write_full(int fd, const void *buf, size_t n, size_t *done,
                      cancel_token t, int64_t timeout_ns)
{
    size_t put = 0;
    int err = 0;
    if (buf == NULL && n > 0)
        err = -EINVAL;
    else if (cancel_check(t) < 0)
        err = -ECANCELED;
    if (err == 0) {
        struct cancel__deadline d;
        cancel__deadline_init(&d, timeout_ns);
        while (put < n) {
            ssize_t r = do_write(fd, (const char *)buf + put, n - put, 0,
                                 false, t, &d);
            if (r < 0) {
                err = (int)r;
                break;
            }
            put += (size_t)r;
        }
    }
    if (done != NULL)
        *done = put;
    return err;
}

/* ---- poll, accept ------------------------------------------------------- */

int cancel_poll(struct pollfd *fds, nfds_t n, cancel_token t,
                int64_t timeout_ns)
{
    if (fds == NULL && n > 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    if (n == 0) {
        int r = cancel_wait(t, timeout_ns);
        if (r == -EINVAL) /* CANCEL_NONE, forever: as poll(NULL, 0, -1) */
            r = cancel_wait(t, INT64_MAX);
        return r == -ETIMEDOUT ? 0 : r;
    }
    if (n > INT_MAX / 2)
        return -EINVAL;

    int tfd = -1;
    if (t.src_ != NULL && (tfd = cancel_token_fd(t)) < 0)
        return tfd;
    for (;;) {
        if (d.clock != NULL && d.at != INT64_MAX) {
            /* Manual clock: wait on the items with wait-any, then poll. */
            cancel_waitable stack[CANCEL_WAIT_ANY_STACK];
            cancel_waitable *it = stack;
            size_t m = (size_t)n + 1;
            if (m > CANCEL_WAIT_ANY_STACK &&
                (it = cancel__malloc(m * sizeof(*it))) == NULL)
                return -ENOMEM;
            /* Negative fds are ignored, as poll(2) ignores them. */
            it[0] = CANCEL_WAIT_TOKEN(t);
            m = 1;
            for (nfds_t i = 0; i < n; i++)
                if (fds[i].fd >= 0)
                    it[m++] = CANCEL_WAIT_FD(fds[i].fd, fds[i].events);
            int r = cancel__wait_any_until(it, m, &d);
            if (it != stack)
                cancel__free(it);
            if (r == -ETIMEDOUT) {
                /* Report what is ready now, like poll with timeout 0. */
                r = poll(fds, n, 0);
                return r < 0 ? -errno : r;
            }
            if (r == 0)
                return (int)fail(-ECANCELED, t);
            if (r < 0 && r != -EBADF)
                return r;
            r = poll(fds, n, 0);
            if (r != 0)
                return r < 0 ? -errno : r;
            continue;
        }

        struct pollfd stack[CANCEL_WAIT_ANY_STACK];
        struct pollfd *p = stack;
        if (n + 1 > CANCEL_WAIT_ANY_STACK &&
            (p = cancel__malloc(((size_t)n + 1) * sizeof(*p))) == NULL)
            return -ENOMEM;
        for (nfds_t i = 0; i < n; i++)
            p[i] = fds[i];
        p[n] = (struct pollfd){tfd, POLLIN, 0};
        struct timespec ts, *tsp = NULL;
        if (d.at != INT64_MAX) {
            int64_t left = d.at - cancel__system_now();
            if (left < 0)
                left = 0;
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        int r = ppoll(p, n + 1, tsp, NULL);
        int err = errno;
        int ready = 0;
        if (r > 0) {
            for (nfds_t i = 0; i < n; i++) {
                fds[i].revents = p[i].revents;
                ready += p[i].revents != 0;
            }
        }
        bool canceled = r > 0 && p[n].revents != 0;
        if (p != stack)
            cancel__free(p);
        if (r < 0) {
            if (err == EINTR)
                continue;
            return -err;
        }
        if (ready > 0)
            return ready; /* completion beats cancellation */
        if (canceled || cancel_requested(t))
            return (int)fail(-ECANCELED, t);
        if (r == 0 && cancel__deadline_passed(&d)) {
            for (nfds_t i = 0; i < n; i++)
                fds[i].revents = 0;
            return 0;
        }
    }
}

int cancel_accept(int fd, struct sockaddr *addr, socklen_t *len,
                  cancel_token t, int64_t timeout_ns)
{
    if (cancel_check(t) < 0)
        return -ECANCELED;
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    bool nonblocking = (fl & O_NONBLOCK) != 0;
    for (;;) {
        if (!nonblocking) {
            /* A blocking accept would block: poll first. */
            int w = wait_fd(fd, POLLIN, t, &d);
            if (w < 0)
                return (int)fail(w, t);
        }
        int r = accept4(fd, addr, len, SOCK_CLOEXEC);
        if (r >= 0)
            return r;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        if (nonblocking) {
            int w = wait_fd(fd, POLLIN, t, &d);
            if (w < 0)
                return (int)fail(w, t);
        }
    }
}

/* ---- connect ------------------------------------------------------------ */

struct connect_abort {
    int fd;
    _Atomic int phase;   /* 0 before connect(2), 1 inside, 2 after */
    _Atomic bool aborted; /* the socket was shut down */
};

#ifdef __linux__
static bool tcp_closed(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return false; /* not TCP: nothing better to do than shut down */
    return ti.tcpi_state == TCP_CLOSE;
}
#endif

/* Runs on the canceling thread (or the timer thread): shut the socket down,
 * which aborts a TCP connect in SYN_SENT.  If the connecting thread is
 * between its last check and the kernel's SYN (a few instructions), the
 * socket is still closed and shutting it down does nothing yet: wait for
 * the SYN to go out, then shut it down. */
static void abort_connect(void *arg)
{
    struct connect_abort *a = arg;
    if (atomic_load(&a->phase) != 1)
        return; /* not started (it checks the token first) or done */
#ifdef __linux__
    while (atomic_load(&a->phase) == 1 && tcp_closed(a->fd))
        sched_yield();
#endif
    if (atomic_load(&a->phase) == 1) {
        /* The connect may complete in this very instant; if it does, the
         * shutdown still wins: cancel_connect sees `aborted`. */
        atomic_store(&a->aborted, true);
        shutdown(a->fd, SHUT_RDWR);
    }
}

int cancel_connect(int fd, const struct sockaddr *addr, socklen_t len,
                   cancel_token t, int64_t timeout_ns)
{
    if (addr == NULL)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;

    if (fl & O_NONBLOCK) {
        if (connect(fd, addr, len) == 0)
            return 0;
        if (errno != EINPROGRESS && errno != EINTR)
            return -errno;
        struct cancel__deadline d;
        cancel__deadline_init(&d, timeout_ns);
        int w = wait_fd(fd, POLLOUT, t, &d);
        if (w < 0) {
            shutdown(fd, SHUT_RDWR); /* abandon the attempt */
            return (int)fail(w, t);
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            return -errno;
        return -soerr;
    }

    /* Blocking socket: a private source canceled by t or by the timeout
     * runs abort_connect while connect(2) blocks. */
    cancel_source *stop = cancel_source_new_linked(&t, 1);
    if (stop == NULL)
        return -errno;
    if (timeout_ns >= 0) {
        int err = timeout_ns == 0 ? -ETIMEDOUT
                                  : cancel_source_cancel_after(stop, timeout_ns);
        if (err < 0) {
            cancel_source_free(stop);
            return err == -ETIMEDOUT ? (int)fail(err, t) : err;
        }
    }
    struct connect_abort a = {.fd = fd};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    int res;
    if (cancel_register(cancel_source_token(stop), &reg, abort_connect, &a) <
        0) {
        res = -ECANCELED; /* canceled already */
    } else {
        atomic_store(&a.phase, 1);
        res = cancel_requested(cancel_source_token(stop))
                  ? -1
                  : connect(fd, addr, len);
        if (res < 0)
            res = -errno;
        atomic_store(&a.phase, 2);
        cancel_unregister(&reg);
    }
    int why = cancel_reason(cancel_source_token(stop));
    cancel_source_free(stop);
    if (res == 0 && !atomic_load(&a.aborted))
        return 0; /* completion beats cancellation */
    if (why == ETIMEDOUT && !cancel_requested(t))
        return (int)fail(-ETIMEDOUT, t);
    if (why != 0)
        return (int)fail(-ECANCELED, t);
    return res;
}
