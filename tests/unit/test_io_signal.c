/* cancel_source_on_signal: the first delivery of a signal cancels the
 * source with reason EINTR; its callbacks run on a library thread, never
 * inside the signal handler (that is, never on the thread that took the
 * signal); a second delivery gets the default action at once, even while
 * the callbacks still run; SIGKILL, SIGSTOP and invalid numbers are
 * -EINVAL; a freed source is detached.
 *
 * The SIGINT cases send real signals with kill(2) to a child test process.
 * The child is this very program, started afresh with fork + exec (so the
 * child is single-threaded and sanitizer-clean when it begins, whatever
 * threads the parent has) and an environment variable that makes the
 * constructor below run the child's part and _exit before main.  The
 * child reports on fd 3, a pipe, and through its exit status.  The parent
 * reads the child's "ready" byte before it sends a signal: a gate.  In the
 * child, a thread waits with cancel_wait while the main thread, the only
 * one that does not block SIGINT, takes the signal. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_ENV "CANCEL_IO_SIGNAL_CHILD"
#define REPORT_FD 3

extern char **environ;

/* ---- the child's part --------------------------------------------------- */

struct report {
    int on_signal;  /* cancel_source_on_signal's result */
    int registered; /* cancel_register's result */
    int wait;       /* cancel_wait's result, on another thread */
    int reason;     /* cancel_reason after the wait */
    int recorded;   /* the wait recorded the token */
    int cb_ran;
    int cb_on_main;     /* the callback ran on the thread that took it
                         * (main, the only one that does not block it) */
    int cb_tid_is_main; /* same, by kernel thread id */
    int cb_reason;      /* cancel_reason inside the callback */
    int cb_default;     /* SIGINT's action was the default in the callback */
};

static struct report rep;
static pthread_t main_thread;
static pid_t main_tid;
static cancel_token child_token;
static sem_t cb_done;

static void write_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            _exit(90);
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

static void report_cb(void *arg)
{
    (void)arg;
    rep.cb_ran = 1;
    rep.cb_on_main = pthread_equal(pthread_self(), main_thread) != 0;
    rep.cb_tid_is_main = harness_gettid() == main_tid;
    rep.cb_reason = cancel_reason(child_token);
    struct sigaction sa;
    rep.cb_default =
        sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL;
    sem_post(&cb_done);
}

static void stuck_cb(void *arg)
{
    (void)arg;
    write_all(REPORT_FD, "C", 1);
    for (;;)
        pause(); /* on the library's thread, which blocks every signal */
}

static void child_setup(cancel_callback *cb)
{
    main_thread = pthread_self();
    main_tid = harness_gettid();
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        _exit(91);
    child_token = cancel_source_token(src);
    sem_init(&cb_done, 0, 0);
    rep.on_signal = cancel_source_on_signal(src, SIGINT);
    static cancel_registration reg = CANCEL_REGISTRATION_INIT;
    rep.registered = cancel_register(child_token, &reg, cb, NULL);
    write_all(REPORT_FD, "R", 1); /* ready for the signal */
}

static void *child_waiter(void *arg)
{
    (void)arg;
    rep.wait = cancel_wait(child_token, -1);
    rep.reason = cancel_reason(child_token);
    rep.recorded = cancel_token_equal(cancel_canceled_token(), child_token);
    return NULL;
}

/* SIGINT is blocked in every thread but the main one, which takes it in
 * sigsuspend: so the main thread is the one that runs the handler, and a
 * callback run from the handler would run there.  (It also lets TSan run
 * the handler: TSan defers handlers until the thread enters an intercepted
 * call, and a thread parked in the library's futex wait makes none.) */
static sigset_t block_sigint(void)
{
    sigset_t intset, old;
    sigemptyset(&intset);
    sigaddset(&intset, SIGINT);
    pthread_sigmask(SIG_BLOCK, &intset, &old);
    sigdelset(&old, SIGINT);
    return old; /* the mask to wait with */
}

__attribute__((constructor)) static void child_main(void)
{
    const char *mode = getenv(CHILD_ENV);
    if (mode == NULL)
        return;
    sigset_t wait_mask = block_sigint();
    if (strcmp(mode, "report") == 0) {
        child_setup(report_cb);
        pthread_t th;
        if (pthread_create(&th, NULL, child_waiter, NULL) != 0)
            _exit(93);
        sigsuspend(&wait_mask); /* returns once the handler ran */
        pthread_join(th, NULL);
        while (sem_wait(&cb_done) != 0)
            ;
        write_all(REPORT_FD, &rep, sizeof(rep));
        _exit(0);
    }
    if (strcmp(mode, "stuck") == 0) {
        child_setup(stuck_cb);
        for (;;)
            sigsuspend(&wait_mask); /* until the second SIGINT kills us */
    }
    _exit(92);
}

/* ---- the parent's helpers ----------------------------------------------- */

/* Start this program as a child in `mode`; *report_fd reads its fd 3. */
static pid_t spawn_child(const char *mode, int *report_fd)
{
    /* Everything the child needs is built before fork: after it, only
     * async-signal-safe calls. */
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 2, sizeof(*envp));
    ASSERT_NOT_NULL(envp);
    char var[64];
    snprintf(var, sizeof(var), "%s=%s", CHILD_ENV, mode);
    size_t k = 0;
    envp[k++] = var;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], CHILD_ENV "=", strlen(CHILD_ENV) + 1) != 0)
            envp[k++] = environ[i];
    envp[k] = NULL;
    /* The program's path, not /proc/self/exe itself: under valgrind the
     * latter names valgrind's tool, while readlink gives the program. */
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    ASSERT_GT(len, 0);
    exe[len] = '\0';
    char *argv[] = {exe, NULL};
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (p[1] == REPORT_FD)
            fcntl(REPORT_FD, F_SETFD, 0);
        else
            dup2(p[1], REPORT_FD);
        execve(exe, argv, envp);
        _exit(127);
    }
    free(envp);
    close(p[1]);
    *report_fd = p[0];
    return pid;
}

static void read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            harness_fail(__FILE__, __LINE__,
                         "the child's report ended after %zu of %zu bytes", got,
                         n);
        got += (size_t)r;
    }
}

/* Whether the child has a handler for signo (SigCgt in /proc). */
static bool child_catches(pid_t pid, int signo)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    char *p = strstr(buf, "\nSigCgt:");
    ASSERT_NOT_NULL(p);
    unsigned long long mask = strtoull(p + 8, NULL, 16);
    return (mask >> (signo - 1)) & 1;
}

/* ---- SIGINT to a child -------------------------------------------------- */

TEST(signal_cancels_with_eintr_on_library_thread)
{
    int fd;
    pid_t pid = spawn_child("report", &fd);
    char ready;
    read_exact(fd, &ready, 1);
    ASSERT_EQ(ready, 'R');
    ASSERT(child_catches(pid, SIGINT));
    ASSERT_OK(kill(pid, SIGINT));
    struct report r;
    read_exact(fd, &r, sizeof(r));
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_OK(r.on_signal);
    ASSERT_OK(r.registered);
    ASSERT_ERR(r.wait, -ECANCELED);
    ASSERT_EQ(r.reason, EINTR);
    ASSERT_TRUE(r.recorded);
    ASSERT_TRUE(r.cb_ran);
    ASSERT_EQ(r.cb_reason, EINTR);
    /* The signal went to the main thread (every other thread blocks it),
     * so a callback inside the handler would run there. */
    ASSERT_FALSE(r.cb_on_main);
    ASSERT_FALSE(r.cb_tid_is_main);
    /* SA_RESETHAND: the default action was back before any callback. */
    ASSERT_TRUE(r.cb_default);
    close(fd);
}

/* The callback never returns; a second SIGINT still kills the process. */
TEST(signal_second_delivery_gets_default_action)
{
    int fd;
    pid_t pid = spawn_child("stuck", &fd);
    char c;
    read_exact(fd, &c, 1);
    ASSERT_EQ(c, 'R');
    ASSERT_OK(kill(pid, SIGINT));
    read_exact(fd, &c, 1);
    ASSERT_EQ(c, 'C'); /* the callback runs, and will not return */
    ASSERT_FALSE(child_catches(pid, SIGINT));
    ASSERT_OK(kill(pid, SIGINT));
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFSIGNALED(status));
    ASSERT_EQ(WTERMSIG(status), SIGINT);
    close(fd);
}

/* ---- in this process ---------------------------------------------------- */

struct seen {
    atomic_int runs;
    _Atomic pid_t tid;
    atomic_int reason;
    cancel_token t;
};

static void seen_cb(void *arg)
{
    struct seen *s = arg;
    atomic_store(&s->tid, harness_gettid());
    atomic_store(&s->reason, cancel_reason(s->t));
    atomic_fetch_add(&s->runs, 1);
}

/* Several sources wait for one signal: its first delivery cancels all of
 * them, with reason EINTR, on a thread that is not the one that took it. */
TEST(signal_cancels_every_waiting_source)
{
    cancel_source *src[3];
    struct seen seen[3];
    cancel_registration reg[3];
    for (int i = 0; i < 3; i++) {
        src[i] = cancel_source_new();
        ASSERT_NOT_NULL(src[i]);
        memset(&seen[i], 0, sizeof(seen[i]));
        seen[i].t = cancel_source_token(src[i]);
        reg[i] = (cancel_registration)CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_source_on_signal(src[i], SIGUSR2));
        ASSERT_OK(cancel_register(seen[i].t, &reg[i], seen_cb, &seen[i]));
    }
    ASSERT_OK(kill(getpid(), SIGUSR2));
    pid_t me = harness_gettid();
    for (int i = 0; i < 3; i++) {
        ASSERT_ERR(cancel_wait(seen[i].t, -1), -ECANCELED);
        ASSERT_EQ(cancel_reason(seen[i].t), EINTR);
        /* The wait's own registration is newer, so it ran first (LIFO):
         * seen_cb may not have started yet when the wait returns.  Once it
         * has, unregister finds it fired and waits for it to return. */
        while (atomic_load(&seen[i].runs) == 0)
            sched_yield();
        ASSERT_FALSE(cancel_unregister(&reg[i]));
        ASSERT_EQ(atomic_load(&seen[i].runs), 1);
        ASSERT_EQ(atomic_load(&seen[i].reason), EINTR);
        ASSERT_NE(atomic_load(&seen[i].tid), me);
    }
    /* The handler was one-shot: the default action is back. */
    struct sigaction sa;
    ASSERT_OK(sigaction(SIGUSR2, NULL, &sa));
    ASSERT(sa.sa_handler == SIG_DFL);
    for (int i = 0; i < 3; i++)
        cancel_source_free(src[i]);
}

/* A freed source is detached: the signal no longer cancels it.  A second
 * source registered earlier for the same signal shows when the signal has
 * been handled: the library's thread cancels the sources of one signal one
 * after the other, newest first, so had the freed (newer) one still been
 * attached, it would be canceled before the older one is. */
TEST(signal_freed_source_is_detached)
{
    cancel_source *witness = cancel_source_new();
    cancel_source *freed = cancel_source_new();
    ASSERT_OK(cancel_source_on_signal(witness, SIGUSR1));
    ASSERT_OK(cancel_source_on_signal(freed, SIGUSR1));
    cancel_token kept = cancel_token_retain(cancel_source_token(freed));
    cancel_source_free(freed);
    ASSERT_OK(kill(getpid(), SIGUSR1));
    ASSERT_ERR(cancel_wait(cancel_source_token(witness), -1), -ECANCELED);
    ASSERT_EQ(cancel_reason(cancel_source_token(witness)), EINTR);
    ASSERT_FALSE(cancel_requested(kept));
    ASSERT_EQ(cancel_reason(kept), 0);
    cancel_token_release(kept);
    cancel_source_free(witness);
}

/* A source may be freed while it waits for a signal that never comes. */
TEST(signal_source_freed_before_any_signal)
{
    for (int i = 0; i < 100; i++) {
        cancel_source *src = cancel_source_new();
        ASSERT_OK(cancel_source_on_signal(src, SIGWINCH));
        cancel_source_free(src);
    }
    /* Put the disposition back: the test leaves nothing behind. */
    signal(SIGWINCH, SIG_DFL);
}

/* An already-canceled source keeps its first reason. */
TEST(signal_on_canceled_source_keeps_reason)
{
    cancel_source *witness = cancel_source_new();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_source_on_signal(src, SIGURG));
    ASSERT_OK(cancel_source_on_signal(witness, SIGURG));
    ASSERT_OK(kill(getpid(), SIGURG));
    ASSERT_ERR(cancel_wait(cancel_source_token(witness), -1), -ECANCELED);
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ECANCELED);
    cancel_source_free(src);
    cancel_source_free(witness);
}

/* ---- bad input ---------------------------------------------------------- */

TEST(signal_bad_input)
{
    cancel_source *src = cancel_source_new();
    struct sigaction before, after;
    ASSERT_OK(sigaction(SIGUSR1, NULL, &before));
    ASSERT_ERR(cancel_source_on_signal(src, SIGKILL), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(src, SIGSTOP), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(src, 0), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(src, -1), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(src, 1000), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(src, NSIG), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(NULL, SIGUSR1), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(NULL, SIGKILL), -EINVAL);
    /* A refused call installs nothing. */
    ASSERT_OK(sigaction(SIGUSR1, NULL, &after));
    ASSERT(after.sa_handler == before.sa_handler);
    struct sigaction kill_sa;
    ASSERT_OK(sigaction(SIGKILL, NULL, &kill_sa));
    ASSERT(kill_sa.sa_handler == SIG_DFL);
    /* The source is untouched and still usable. */
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ECANCELED);
    cancel_source_free(src);
}
