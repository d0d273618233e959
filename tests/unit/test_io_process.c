/* cancel_process_wait with real children (fork + exec of /bin/sh or
 * /bin/sleep; the forked child only calls dup2 and exec, which are
 * async-signal-safe, so the tests are sound under TSan too):
 *   - a child that exits by itself: 0 and its exit status;
 *   - a child that ends on SIGTERM: -ECANCELED, killed by SIGTERM;
 *   - a child that ignores SIGTERM: -ECANCELED, SIGKILL once the grace
 *     period has passed on the manual clock, not before;
 *   - a negative grace never sends SIGKILL: the child lives on until the
 *     test kills it, and then the call returns;
 *   - after every case the child is reaped (waitpid says ECHILD);
 *   - a pid that is not a child: -ECHILD; pid <= 0: -EINVAL.
 *
 * The waiting call runs on its own thread; the test acts once that thread
 * sleeps (state S in /proc), which is a gate, not a sleep.  The grace
 * period is on the manual clock: the test advances it while the waiter
 * sleeps, and again while it still sleeps (had it armed the grace deadline
 * after an advance, that advance would not concern it). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

/* Voluntary context switches of a thread: each sleep adds one. */
static long switches(pid_t tid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    const char *key = "\nvoluntary_ctxt_switches:";
    char *p = strstr(buf, key);
    ASSERT_NOT_NULL(p);
    return strtol(p + strlen(key), NULL, 10);
}

/* Alive and not a zombie. */
static bool child_running(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char s = harness_proc_state(path);
    return s != 0 && s != 'Z' && s != 'X';
}

static void assert_reaped(pid_t pid)
{
    errno = 0;
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
}

/* fork + exec: argv[0] is the program's path.  stdin and stdout of the
 * child come from in_fd/out_fd when >= 0 (our pipes are close-on-exec).
 * Returns once the child has exec'd (or failed to): the exec closes the
 * child's end of a close-on-exec pipe, and we read that pipe to EOF.  So a
 * test's signal never arrives before the exec, where valgrind, which runs
 * the forked child until its execve, can lose it. */
static pid_t spawn(char *const argv[], int in_fd, int out_fd)
{
    int ex[2];
    ASSERT_OK(pipe2(ex, O_CLOEXEC));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (in_fd >= 0)
            dup2(in_fd, 0);
        if (out_fd >= 0)
            dup2(out_fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(ex[1]);
    char c;
    ssize_t r;
    while ((r = read(ex[0], &c, 1)) != 0)
        ASSERT(r < 0 && errno == EINTR); /* the child never writes */
    close(ex[0]);
    return pid;
}

static pid_t spawn_sleep(void)
{
    char *argv[] = {"/bin/sleep", "1000", NULL};
    return spawn(argv, -1, -1);
}

/* A child that ignores SIGTERM; returns once it does. */
static pid_t spawn_term_ignorer(void)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char *argv[] = {"/bin/sh", "-c",
                    "trap '' TERM; echo ready; exec /bin/sleep 1000", NULL};
    pid_t pid = spawn(argv, -1, p[1]);
    close(p[1]);
    char buf[6];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t r = read(p[0], buf + got, sizeof(buf) - got);
        ASSERT_GT(r, 0);
        got += (size_t)r;
    }
    ASSERT_OK(memcmp(buf, "ready\n", 6));
    close(p[0]);
    return pid;
}

struct waiter {
    pthread_t th;
    pid_t pid;
    cancel_token t;
    int64_t grace;
    bool null_status;
    _Atomic pid_t tid;
    atomic_bool done;
    int result;
    int status;
    cancel_token recorded;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    atomic_store(&w->tid, harness_gettid());
    cancel_throw(CANCEL_NONE);
    w->status = -12345;
    w->result = cancel_process_wait(w->pid, w->null_status ? NULL : &w->status,
                                    w->t, w->grace);
    w->recorded = cancel_canceled_token();
    atomic_store(&w->done, true);
    return NULL;
}

static void wait_asleep(struct waiter *w)
{
    while (!harness_thread_asleep(atomic_load(&w->tid)) &&
           !atomic_load(&w->done))
        sched_yield();
}

static void waiter_start_blocked(struct waiter *w)
{
    atomic_store(&w->tid, 0);
    atomic_store(&w->done, false);
    ASSERT_OK(pthread_create(&w->th, NULL, waiter_main, w));
    while (atomic_load(&w->tid) == 0)
        sched_yield();
    wait_asleep(w);
}

/* Once the waiter slept at least once more than `before` and sleeps now:
 * it went on after a wake-up and waits again (or returned). */
static void wait_asleep_again(struct waiter *w, long before)
{
    while (!atomic_load(&w->done) &&
           !(switches(atomic_load(&w->tid)) > before &&
             harness_thread_asleep(atomic_load(&w->tid))))
        sched_yield();
}

static int waiter_join(struct waiter *w)
{
    ASSERT_OK(pthread_join(w->th, NULL));
    return w->result;
}

/* ---- the child ends by itself ------------------------------------------- */

TEST(process_exits_by_itself)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char *argv[] = {"/bin/sh", "-c", "read x; exit 7", NULL};
    pid_t pid = spawn(argv, p[0], -1);
    close(p[0]);
    cancel_source *src = cancel_source_new();
    struct waiter w = {.pid = pid, .t = cancel_source_token(src), .grace = SEC};
    waiter_start_blocked(&w);
    ASSERT_FALSE(atomic_load(&w.done)); /* the child waits for its line */
    ASSERT_EQ(write(p[1], "go\n", 3), 3);
    ASSERT_OK(waiter_join(&w));
    ASSERT(WIFEXITED(w.status));
    ASSERT_EQ(WEXITSTATUS(w.status), 7);
    ASSERT_FALSE(cancel_requested(w.t));
    assert_reaped(pid);
    cancel_source_free(src);
    close(p[1]);
}

TEST(process_killed_by_someone_else_is_not_canceled)
{
    pid_t pid = spawn_sleep();
    cancel_source *src = cancel_source_new();
    struct waiter w = {.pid = pid, .t = cancel_source_token(src), .grace = SEC};
    waiter_start_blocked(&w);
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(kill(pid, SIGUSR1)); /* sleep dies of it */
    ASSERT_OK(waiter_join(&w));
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGUSR1);
    assert_reaped(pid);
    cancel_source_free(src);
}

/* Already ended (a zombie) when the call starts: reaped at once, 0 - even
 * with a canceled token, since the child ended by itself. */
TEST(process_already_exited)
{
    char *argv[] = {"/bin/sh", "-c", "exit 3", NULL};
    for (int canceled = 0; canceled < 2; canceled++) {
        pid_t pid = spawn(argv, -1, -1);
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        /* Wait until it is a zombie, without reaping it. */
        ASSERT_OK(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
        cancel_source *src = cancel_source_new();
        if (canceled)
            ASSERT_OK(cancel_source_cancel(src));
        int status = -1;
        ASSERT_OK(
            cancel_process_wait(pid, &status, cancel_source_token(src), SEC));
        ASSERT(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 3);
        assert_reaped(pid);
        cancel_source_free(src);
    }
}

TEST(process_status_may_be_null)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char *argv[] = {"/bin/sh", "-c", "read x; exit 1", NULL};
    pid_t pid = spawn(argv, p[0], -1);
    close(p[0]);
    struct waiter w = {
        .pid = pid, .t = CANCEL_NONE, .grace = -1, .null_status = true};
    waiter_start_blocked(&w);
    close(p[1]); /* read x sees end of file */
    ASSERT_OK(waiter_join(&w));
    assert_reaped(pid);
}

/* ---- cancellation stops the child --------------------------------------- */

TEST(process_canceled_child_ends_on_sigterm)
{
    pid_t pid = spawn_sleep();
    cancel_source *src = cancel_source_new();
    struct waiter w = {
        .pid = pid, .t = cancel_source_token(src), .grace = 3600 * SEC};
    waiter_start_blocked(&w);
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT(child_running(pid));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGTERM);
    ASSERT(cancel_token_equal(w.recorded, w.t));
    assert_reaped(pid);
    cancel_source_free(src);
}

TEST(process_pre_canceled_stops_child)
{
    pid_t pid = spawn_sleep();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    int status = 0;
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(
        cancel_process_wait(pid, &status, cancel_source_token(src), 3600 * SEC),
        -ECANCELED);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGTERM);
    ASSERT(
        cancel_token_equal(cancel_canceled_token(), cancel_source_token(src)));
    assert_reaped(pid);
    cancel_source_free(src);
}

/* The child ignores SIGTERM: SIGKILL comes once the grace period passed
 * on the installed (manual) clock - and not before. */
TEST(process_ignores_sigterm_killed_after_grace)
{
    cancel_clock *clk = harness_manual_clock();
    pid_t pid = spawn_term_ignorer();
    cancel_source *src = cancel_source_new();
    const int64_t grace = 5 * SEC;
    struct waiter w = {
        .pid = pid, .t = cancel_source_token(src), .grace = grace};
    waiter_start_blocked(&w);
    ASSERT_FALSE(atomic_load(&w.done));
    long before = switches(atomic_load(&w.tid));
    ASSERT_OK(cancel_source_cancel(src));
    /* The waiter sent SIGTERM (ignored) and waits out the grace period. */
    wait_asleep_again(&w, before);
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT(child_running(pid));
    ASSERT_OK(cancel_clock_advance(clk, grace - 1));
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT(child_running(pid)); /* no SIGKILL one nanosecond early */
    int64_t step = 1;
    while (!atomic_load(&w.done)) {
        ASSERT_OK(cancel_clock_advance(clk, step));
        step = grace;
        wait_asleep(&w);
    }
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGKILL);
    ASSERT(cancel_token_equal(w.recorded, w.t));
    assert_reaped(pid);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* A grace of 0: SIGKILL right after SIGTERM. */
TEST(process_zero_grace_kills_at_once)
{
    pid_t pid = spawn_term_ignorer();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    int status = 0;
    ASSERT_ERR(cancel_process_wait(pid, &status, cancel_source_token(src), 0),
               -ECANCELED);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGKILL);
    assert_reaped(pid);
    cancel_source_free(src);
}

/* A negative grace never sends SIGKILL, however far the clock moves; the
 * call returns once the child ends for another reason (here: us). */
TEST(process_negative_grace_never_kills)
{
    cancel_clock *clk = harness_manual_clock();
    pid_t pid = spawn_term_ignorer();
    cancel_source *src = cancel_source_new();
    struct waiter w = {.pid = pid, .t = cancel_source_token(src), .grace = -1};
    waiter_start_blocked(&w);
    long before = switches(atomic_load(&w.tid));
    ASSERT_OK(cancel_source_cancel(src));
    wait_asleep_again(&w, before);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(cancel_clock_advance(clk, 24 * 3600 * SEC));
        wait_asleep(&w);
        ASSERT_FALSE(atomic_load(&w.done));
        ASSERT(child_running(pid));
    }
    ASSERT_OK(kill(pid, SIGKILL));
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGKILL);
    ASSERT(cancel_token_equal(w.recorded, w.t));
    assert_reaped(pid);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* The child exits by itself during the grace period (here: on a second
 * signal of ours): the call returns without waiting the grace out. */
TEST(process_ends_during_grace)
{
    cancel_clock *clk = harness_manual_clock();
    pid_t pid = spawn_term_ignorer();
    cancel_source *src = cancel_source_new();
    struct waiter w = {
        .pid = pid, .t = cancel_source_token(src), .grace = 60 * SEC};
    waiter_start_blocked(&w);
    long before = switches(atomic_load(&w.tid));
    ASSERT_OK(cancel_source_cancel(src));
    wait_asleep_again(&w, before);
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(kill(pid, SIGUSR2));
    ASSERT_ERR(waiter_join(&w), -ECANCELED);
    ASSERT(WIFSIGNALED(w.status));
    ASSERT_EQ(WTERMSIG(w.status), SIGUSR2);
    assert_reaped(pid);
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* ---- not a child -------------------------------------------------------- */

TEST(process_not_a_child)
{
    cancel_source *src = cancel_source_new();
    int status = 42;
    ASSERT_ERR(
        cancel_process_wait(getppid(), &status, cancel_source_token(src), SEC),
        -ECHILD);
    ASSERT_ERR(cancel_process_wait(1, &status, CANCEL_NONE, -1), -ECHILD);
    ASSERT_ERR(cancel_process_wait(getpid(), &status, CANCEL_NONE, -1),
               -ECHILD);
    ASSERT_EQ(status, 42); /* untouched */
    /* A canceled token does not make a stranger a child, nor send it a
     * signal. */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(
        cancel_process_wait(getppid(), &status, cancel_source_token(src), 0),
        -ECHILD);
    cancel_source_free(src);
}

TEST(process_already_reaped)
{
    char *argv[] = {"/bin/sh", "-c", "exit 0", NULL};
    pid_t pid = spawn(argv, -1, -1);
    ASSERT_EQ(waitpid(pid, NULL, 0), pid);
    ASSERT_ERR(cancel_process_wait(pid, NULL, CANCEL_NONE, -1), -ECHILD);
}

TEST(process_bad_pid)
{
    int status = 42;
    ASSERT_ERR(cancel_process_wait(0, &status, CANCEL_NONE, -1), -EINVAL);
    ASSERT_ERR(cancel_process_wait(-1, &status, CANCEL_NONE, -1), -EINVAL);
    ASSERT_ERR(cancel_process_wait(-12345, NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_EQ(status, 42);
}

/* Several children, each with its own waiter and token: canceling one
 * stops that one only. */
TEST(process_cancel_stops_only_its_child)
{
    pid_t a = spawn_sleep(), b = spawn_sleep();
    cancel_source *sa = cancel_source_new(), *sb = cancel_source_new();
    struct waiter wa = {
        .pid = a, .t = cancel_source_token(sa), .grace = 3600 * SEC};
    struct waiter wb = {
        .pid = b, .t = cancel_source_token(sb), .grace = 3600 * SEC};
    waiter_start_blocked(&wa);
    waiter_start_blocked(&wb);
    ASSERT_OK(cancel_source_cancel(sa));
    ASSERT_ERR(waiter_join(&wa), -ECANCELED);
    ASSERT_EQ(WTERMSIG(wa.status), SIGTERM);
    ASSERT_FALSE(atomic_load(&wb.done));
    ASSERT(child_running(b));
    ASSERT_OK(kill(b, SIGKILL));
    ASSERT_OK(waiter_join(&wb));
    ASSERT_EQ(WTERMSIG(wb.status), SIGKILL);
    assert_reaped(a);
    assert_reaped(b);
    cancel_source_free(sa);
    cancel_source_free(sb);
}
