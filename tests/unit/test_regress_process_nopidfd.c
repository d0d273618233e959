/* Regression (found by valgrind/run.sh, issue #8): cancel_process_wait
 * without pidfds never returned when a manual clock was installed.
 *
 * Without pidfd_open (Linux < 5.3; also valgrind 3.19, which does not know
 * syscall 434 and fails it with ENOSYS) cancel_process_wait polls
 * waitpid(WNOHANG) between 1 ms waits.  Those waits were cancel_wait(t,
 * 1 ms): a timeout on the *installed* clock.  With a manual clock installed
 * the 1 ms never passed unless somebody advanced the clock, so once the
 * child had ended by itself, or had been killed after the grace period, or
 * by someone else under a negative grace, the waiter slept on and never
 * reaped it.  Under valgrind, test_io_process's process_negative_grace_
 * never_kills and process_ends_during_grace hung until the 900 s timeout.
 * The tick is real time now (cancel__wait_real); only deadlines follow the
 * installed clock.
 *
 * This file forces the fallback for the whole program with the library's
 * test hook cancel__no_pidfd (src/internal.h).
 *
 * Gates, not sleeps: the test acts once the waiting thread sleeps (state S
 * in /proc) and once the child is a zombie (state Z); a call that does not
 * return within 20 s of real time fails the test instead of hanging it. */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEC ((int64_t)1000000000)

/* ---- no pidfds in this process ------------------------------------------ */

/* The library's test hook: cancel_process_wait takes its waitpid-polling
 * fallback, as on a kernel without pidfd_open (or under valgrind). */
__attribute__((constructor)) static void no_pidfds(void)
{
    atomic_store(&cancel__no_pidfd, true);
}

/* ---- helpers ------------------------------------------------------------ */

static char process_state(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    return harness_proc_state(path);
}

static int64_t real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* fork + exec of /bin/sh -c script, stdin and stdout on the given fds (the
 * child only calls dup2 and exec: async-signal-safe). */
static pid_t spawn_sh(const char *script, int in, int out)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (in >= 0)
            dup2(in, 0);
        if (out >= 0)
            dup2(out, 1);
        char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
        execv("/bin/sh", argv);
        _exit(127);
    }
    return pid;
}

/* Read exactly n bytes and compare them with want. */
static void expect_line(int fd, const char *want)
{
    size_t n = strlen(want), got = 0;
    char buf[64];
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        ASSERT_GT(r, 0);
        got += (size_t)r;
    }
    ASSERT_OK(memcmp(buf, want, n));
}

/* A child that ignores SIGTERM but reports it on stdout ("T\n"). */
static pid_t spawn_term_reporter(int *out)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    pid_t pid = spawn_sh("trap 'echo T' TERM; echo ready; "
                         "while :; do sleep 0.01; done",
                         -1, p[1]);
    close(p[1]);
    expect_line(p[0], "ready\n");
    *out = p[0];
    return pid;
}

struct waiter {
    pthread_t th;
    pid_t pid;
    cancel_token t;
    int64_t grace;
    int status;
    int result;
    atomic_int tid;
    atomic_bool done;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    atomic_store(&w->tid, harness_gettid());
    w->result = cancel_process_wait(w->pid, &w->status, w->t, w->grace);
    atomic_store(&w->done, true);
    return NULL;
}

/* Start the waiter and return once it sleeps inside the call. */
static void waiter_start(struct waiter *w)
{
    atomic_store(&w->tid, 0);
    atomic_store(&w->done, false);
    ASSERT_OK(pthread_create(&w->th, NULL, waiter_main, w));
    while (atomic_load(&w->tid) == 0)
        sched_yield();
    while (!harness_thread_asleep(atomic_load(&w->tid)) &&
           !atomic_load(&w->done))
        sched_yield();
}

/* Join, failing (not hanging) if the call does not return in 20 s. */
static int waiter_join(struct waiter *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    int err = pthread_timedjoin_np(w->th, NULL, &ts);
    if (err != 0)
        harness_fail(__FILE__, __LINE__,
                     "cancel_process_wait did not return within 20 s "
                     "(child %d is in state %c)",
                     (int)w->pid, process_state(w->pid));
    return w->result;
}

static void assert_reaped(pid_t pid)
{
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
}

/* ---- the cases ---------------------------------------------------------- */

/* The child ends by itself while the waiter polls on a manual clock that
 * nobody advances. */
TEST(child_exits_by_itself_on_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    int in[2];
    ASSERT_OK(pipe2(in, O_CLOEXEC));
    pid_t pid = spawn_sh("read x; exit 7", in[0], -1);
    close(in[0]);
    cancel_source *src = cancel_source_new();
    struct waiter w = {.pid = pid, .t = cancel_source_token(src), .grace = SEC};
    waiter_start(&w);
    ASSERT_FALSE(atomic_load(&w.done)); /* the child waits for its line */
    ASSERT_EQ(write(in[1], "go\n", 3), 3);
    ASSERT_OK(waiter_join(&w));
    ASSERT(WIFEXITED(w.status));
    ASSERT_EQ(WEXITSTATUS(w.status), 7);
    assert_reaped(pid);
    close(in[1]);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* A negative grace never sends SIGKILL; once someone else kills the child
 * the call returns, although the manual clock stands still. */
TEST(negative_grace_returns_once_child_is_killed)
{
    cancel_clock *clk = harness_manual_clock();
    int out;
    pid_t pid = spawn_term_reporter(&out);
    cancel_source *src = cancel_source_new();
    struct waiter w = {.pid = pid, .t = cancel_source_token(src), .grace = -1};
    waiter_start(&w);
    ASSERT_OK(cancel_source_cancel(src));
    expect_line(out, "T\n"); /* the waiter sent SIGTERM; it was ignored */
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(kill(pid, SIGKILL));
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGKILL);
    assert_reaped(pid);
    close(out);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* The grace period passes on the manual clock; the waiter sends SIGKILL
 * and must then reap the child without any further advance. */
TEST(grace_on_manual_clock_then_reaps_without_advance)
{
    cancel_clock *clk = harness_manual_clock();
    int out;
    pid_t pid = spawn_term_reporter(&out);
    cancel_source *src = cancel_source_new();
    struct waiter w = {
        .pid = pid, .t = cancel_source_token(src), .grace = 60 * SEC};
    waiter_start(&w);
    ASSERT_OK(cancel_source_cancel(src));
    expect_line(out, "T\n");
    /* Advance until the grace deadline (armed at some point after the
     * SIGTERM) has passed and the waiter has killed the child: then stop
     * advancing. */
    int64_t give_up = real_now() + 20 * SEC;
    while (process_state(pid) != 'Z' && !atomic_load(&w.done)) {
        ASSERT_LT(real_now(), give_up);
        ASSERT_OK(cancel_clock_advance(clk, 60 * SEC));
        int64_t until = real_now() + SEC / 20;
        while (real_now() < until && process_state(pid) != 'Z' &&
               !atomic_load(&w.done))
            sched_yield();
    }
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGKILL);
    assert_reaped(pid);
    close(out);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* The same without a manual clock: the fallback works on the system clock
 * too (a short grace, real time). */
TEST(grace_on_system_clock)
{
    int out;
    pid_t pid = spawn_term_reporter(&out);
    cancel_source *src = cancel_source_new();
    struct waiter w = {
        .pid = pid, .t = cancel_source_token(src), .grace = SEC / 50};
    waiter_start(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGKILL);
    assert_reaped(pid);
    close(out);
    cancel_source_free(src);
}
