/* cancel_read and cancel_write on pipes: they block until data (or room),
 * cancellation or the timeout - on O_NONBLOCK pipes too - report short
 * counts, leave the fd's flags alone (also while they block), and a canceled
 * call moves nothing.  cancel_write behaves as write(2) about SIGPIPE.
 *
 * To act while another thread is blocked in a call, a test spins until that
 * thread is asleep in the kernel (state S in /proc): a gate, not a sleep.
 * Every assertion holds whatever the interleaving: had the gate opened
 * early, the call would see the data or the cancel on entry instead. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

enum op { OP_READ, OP_WRITE };

/* One call of cancel_read or cancel_write on its own thread. */
struct call {
    pthread_t th;
    enum op op;
    int fd;
    void *buf;
    size_t n;
    cancel_token t;
    int64_t timeout;
    _Atomic pid_t tid;
    atomic_bool done;
    ssize_t result;
    cancel_token recorded;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    atomic_store(&c->tid, harness_gettid());
    cancel_throw(CANCEL_NONE); /* so that a recorded token is news */
    c->result = c->op == OP_READ
                    ? cancel_read(c->fd, c->buf, c->n, c->t, c->timeout)
                    : cancel_write(c->fd, c->buf, c->n, c->t, c->timeout);
    c->recorded = cancel_canceled_token();
    atomic_store(&c->done, true);
    return NULL;
}

/* Start the call and return once its thread is asleep in it. */
static void call_start_blocked(struct call *c)
{
    atomic_store(&c->tid, 0);
    atomic_store(&c->done, false);
    ASSERT_OK(pthread_create(&c->th, NULL, call_main, c));
    while (atomic_load(&c->tid) == 0)
        sched_yield();
    while (!harness_thread_asleep(atomic_load(&c->tid)) &&
           !atomic_load(&c->done))
        sched_yield();
}

static ssize_t call_join(struct call *c)
{
    ASSERT_OK(pthread_join(c->th, NULL));
    return c->result;
}

static size_t queued(int fd)
{
    int n = -1;
    ASSERT_OK(ioctl(fd, FIONREAD, &n));
    ASSERT_GE(n, 0);
    return (size_t)n;
}

/* Fill the pipe completely (capacity made one page for speed). */
static size_t fill_pipe(int p[2])
{
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    size_t cap = (size_t)fcntl(p[1], F_GETPIPE_SZ);
    char *junk = calloc(1, cap);
    ASSERT_NOT_NULL(junk);
    ASSERT_EQ(write(p[1], junk, cap), (ssize_t)cap); /* empty: no block */
    free(junk);
    ASSERT_EQ(queued(p[0]), cap);
    return cap;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT_GE(fl, 0);
    ASSERT_OK(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
}

static void drain(int fd, size_t n)
{
    char buf[4096];
    while (n > 0) {
        ssize_t r = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
        ASSERT_GT(r, 0);
        n -= (size_t)r;
    }
}

/* ---- reading ------------------------------------------------------------ */

static void read_blocks_until_data(bool nonblock)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    if (nonblock)
        set_nonblock(p[0]);
    int flags = fcntl(p[0], F_GETFL);
    cancel_source *src = cancel_source_new();
    char buf[64] = {0};
    struct call c = {.op = OP_READ,
                     .fd = p[0],
                     .buf = buf,
                     .n = sizeof(buf),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done)); /* no data, no cancel: it waits */
    /* The flags are the file's, shared: not touched even while blocked. */
    ASSERT_EQ(fcntl(p[0], F_GETFL), flags);
    ASSERT_EQ(write(p[1], "hello", 5), 5);
    ASSERT_EQ(call_join(&c), 5);
    ASSERT_OK(memcmp(buf, "hello", 5));
    ASSERT_EQ(fcntl(p[0], F_GETFL), flags);
    ASSERT_EQ((flags & O_NONBLOCK) != 0, nonblock);
    ASSERT_FALSE(cancel_requested(c.t));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_read_blocks_until_data)
{
    read_blocks_until_data(false);
}

TEST(pipe_read_blocks_on_nonblocking_fd)
{
    read_blocks_until_data(true);
}

static void read_canceled_while_blocked(bool nonblock)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    if (nonblock)
        set_nonblock(p[0]);
    int flags = fcntl(p[0], F_GETFL);
    cancel_source *src = cancel_source_new();
    char buf[64];
    struct call c = {.op = OP_READ,
                     .fd = p[0],
                     .buf = buf,
                     .n = sizeof(buf),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(call_join(&c), -ECANCELED);
    ASSERT(cancel_token_equal(c.recorded, c.t));
    ASSERT_EQ(fcntl(p[0], F_GETFL), flags);
    /* The pipe still works, and later data is all there. */
    ASSERT_EQ(write(p[1], "abc", 3), 3);
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, -1), 3);
    ASSERT_OK(memcmp(buf, "abc", 3));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_read_canceled_while_blocked)
{
    read_canceled_while_blocked(false);
}

TEST(pipe_read_canceled_while_blocked_nonblocking_fd)
{
    read_canceled_while_blocked(true);
}

TEST(pipe_read_returns_short_count)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "0123456789", 10), 10);
    char buf[100];
    ASSERT_EQ(cancel_read(p[0], buf, 4, CANCEL_NONE, -1), 4);
    ASSERT_OK(memcmp(buf, "0123", 4));
    /* Asking for more than is there returns what is there, at once. */
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, -1), 6);
    ASSERT_OK(memcmp(buf, "456789", 6));
    close(p[0]);
    close(p[1]);
}

TEST(pipe_read_end_of_file_returns_zero)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "xy", 2), 2);
    close(p[1]);
    char buf[8];
    cancel_source *src = cancel_source_new();
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), cancel_source_token(src), -1),
              2);
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), cancel_source_token(src), -1),
              0);
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, 0), 0);
    cancel_source_free(src);
    close(p[0]);
}

TEST(pipe_read_end_of_file_while_blocked)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char buf[8];
    struct call c = {.op = OP_READ,
                     .fd = p[0],
                     .buf = buf,
                     .n = sizeof(buf),
                     .t = CANCEL_NONE,
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    close(p[1]);
    ASSERT_EQ(call_join(&c), 0);
    close(p[0]);
}

/* ---- writing ------------------------------------------------------------ */

static void write_blocks_until_room(bool nonblock)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    size_t cap = fill_pipe(p);
    if (nonblock)
        set_nonblock(p[1]);
    int flags = fcntl(p[1], F_GETFL);
    cancel_source *src = cancel_source_new();
    char msg[100];
    memset(msg, 'm', sizeof(msg));
    struct call c = {.op = OP_WRITE,
                     .fd = p[1],
                     .buf = msg,
                     .n = sizeof(msg),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done)); /* full pipe: it waits */
    ASSERT_EQ(fcntl(p[1], F_GETFL), flags);
    ASSERT_EQ(queued(p[0]), cap);
    drain(p[0], cap);
    ssize_t n = call_join(&c);
    ASSERT_GT(n, 0);
    ASSERT_LE(n, (ssize_t)sizeof(msg));
    ASSERT_EQ(queued(p[0]), (size_t)n); /* what it reported, no more */
    ASSERT_EQ(fcntl(p[1], F_GETFL), flags);
    ASSERT_EQ((flags & O_NONBLOCK) != 0, nonblock);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_write_blocks_until_room)
{
    write_blocks_until_room(false);
}

TEST(pipe_write_blocks_on_nonblocking_fd)
{
    write_blocks_until_room(true);
}

static void write_canceled_while_blocked(bool nonblock)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    size_t cap = fill_pipe(p);
    if (nonblock)
        set_nonblock(p[1]);
    int flags = fcntl(p[1], F_GETFL);
    cancel_source *src = cancel_source_new();
    char msg[100];
    memset(msg, 'm', sizeof(msg));
    struct call c = {.op = OP_WRITE,
                     .fd = p[1],
                     .buf = msg,
                     .n = sizeof(msg),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(call_join(&c), -ECANCELED);
    ASSERT(cancel_token_equal(c.recorded, c.t));
    ASSERT_EQ(fcntl(p[1], F_GETFL), flags);
    /* Nothing of the canceled write went in. */
    ASSERT_EQ(queued(p[0]), cap);
    drain(p[0], cap);
    ASSERT_EQ(queued(p[0]), 0);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_write_canceled_while_blocked)
{
    write_canceled_while_blocked(false);
}

TEST(pipe_write_canceled_while_blocked_nonblocking_fd)
{
    write_canceled_while_blocked(true);
}

/* A blocking pipe that has some room but not for all: the write returns a
 * short count instead of blocking for the rest. */
TEST(pipe_write_short_count_when_partly_full)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 4096 * 4), 4096 * 4);
    size_t cap = (size_t)fcntl(p[1], F_GETPIPE_SZ);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    size_t n = cap * 2;
    char *big = malloc(n);
    ASSERT_NOT_NULL(big);
    memset(big, 'b', n);
    ssize_t w = cancel_write(p[1], big, n, CANCEL_NONE, -1);
    ASSERT_GT(w, 0);
    ASSERT_LT(w, (ssize_t)n);
    ASSERT_EQ(queued(p[0]), 1 + (size_t)w);
    free(big);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_write_large_to_empty_pipe)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    size_t cap = (size_t)fcntl(p[1], F_GETPIPE_SZ);
    char *big = malloc(cap * 3);
    ASSERT_NOT_NULL(big);
    memset(big, 'b', cap * 3);
    ssize_t w = cancel_write(p[1], big, cap * 3, CANCEL_NONE, -1);
    ASSERT_GT(w, 0);
    ASSERT_LE(w, (ssize_t)cap);
    ASSERT_EQ(queued(p[0]), (size_t)w);
    free(big);
    close(p[0]);
    close(p[1]);
}

TEST(pipe_write_closed_reader_epipe)
{
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    close(p[0]);
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_write(p[1], "x", 1, cancel_source_token(src), -1),
               -EPIPE);
    ASSERT_ERR(cancel_write(p[1], "x", 1, CANCEL_NONE, 0), -EPIPE);
    cancel_source_free(src);
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
}

/* The reader goes away while the writer is blocked on a full pipe. */
TEST(pipe_write_blocked_reader_closes_epipe)
{
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    fill_pipe(p);
    char msg[16] = {0};
    struct call c = {.op = OP_WRITE,
                     .fd = p[1],
                     .buf = msg,
                     .n = sizeof(msg),
                     .t = CANCEL_NONE,
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    close(p[0]);
    ASSERT_ERR(call_join(&c), -EPIPE);
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
}

/* As write(2): writing to a pipe without reader raises SIGPIPE.  With the
 * signal blocked it stays pending, where the test can see it. */
TEST(pipe_write_raises_sigpipe_as_write_does)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, &pipe_set, &old));
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    close(p[0]);
    ASSERT_ERR(cancel_write(p[1], "x", 1, CANCEL_NONE, -1), -EPIPE);
    ASSERT_OK(sigpending(&pending));
    ASSERT_EQ(sigismember(&pending, SIGPIPE), 1);
    struct timespec zero = {0, 0};
    ASSERT_EQ(sigtimedwait(&pipe_set, NULL, &zero), SIGPIPE);
    close(p[1]);
    ASSERT_OK(pthread_sigmask(SIG_SETMASK, &old, NULL));
}

/* Several writers and readers at once on one pipe, each with its own
 * token, with O_NONBLOCK (the documented way to share a pipe between
 * threads): every byte written is read once. */
struct shared {
    int fd;
    atomic_long bytes;
    long per_thread;
};

static void *shared_writer(void *arg)
{
    struct shared *s = arg;
    char buf[PIPE_BUF];
    memset(buf, 'w', sizeof(buf));
    cancel_source *src = cancel_source_new();
    long left = s->per_thread;
    while (left > 0) {
        size_t n = left < (long)sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t w = cancel_write(s->fd, buf, n, cancel_source_token(src), -1);
        ASSERT_GT(w, 0);
        left -= w;
    }
    cancel_source_free(src);
    return NULL;
}

static void *shared_reader(void *arg)
{
    struct shared *s = arg;
    char buf[1000];
    for (;;) {
        ssize_t r = cancel_read(s->fd, buf, sizeof(buf), CANCEL_NONE, -1);
        ASSERT_GE(r, 0);
        if (r == 0)
            return NULL;
        for (ssize_t i = 0; i < r; i++)
            ASSERT_EQ(buf[i], 'w');
        atomic_fetch_add(&s->bytes, r);
    }
}

TEST(pipe_nonblocking_shared_by_threads)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC | O_NONBLOCK));
    struct shared w = {.fd = p[1], .per_thread = harness_scale(400000)};
    struct shared r = {.fd = p[0]};
    pthread_t wt[3], rt[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(pthread_create(&wt[i], NULL, shared_writer, &w));
        ASSERT_OK(pthread_create(&rt[i], NULL, shared_reader, &r));
    }
    for (int i = 0; i < 3; i++)
        ASSERT_OK(pthread_join(wt[i], NULL));
    close(p[1]);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(pthread_join(rt[i], NULL));
    ASSERT_EQ(atomic_load(&r.bytes), 3 * w.per_thread);
    close(p[0]);
}
