/* Timeouts and tokens at the edges of every I/O call:
 *   - a timeout of 0 never blocks: -ETIMEDOUT when nothing can be done at
 *     once (0 from cancel_poll), the data when it can;
 *   - timeouts on the manual clock: the call waits until the clock passes
 *     its deadline, not a nanosecond less (read, recv, write on a full
 *     pipe, send, poll, accept, the _full calls);
 *   - a token canceled on entry gives -ECANCELED before any transfer, even
 *     with data or room there, and the data is still readable afterwards
 *     (also from cancel_poll);
 *   - a canceled or timed-out call records its token as the thread's
 *     canceled token.
 *
 * The caller runs on its own thread; the test advances the clock only while
 * that thread sleeps (state S in /proc), and again while it still sleeps
 * (had it not armed its deadline before the first advance, that advance
 * would not concern it). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

static size_t queued(int fd)
{
    int n = -1;
    ASSERT_OK(ioctl(fd, FIONREAD, &n));
    return (size_t)n;
}

static void set_nonblock(int fd)
{
    ASSERT_OK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
}

/* A pipe whose write end is full (capacity one page). */
static void full_pipe(int p[2], bool nonblock)
{
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    char junk[4096] = {0};
    ASSERT_EQ(write(p[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
    if (nonblock)
        set_nonblock(p[1]);
}

/* A socketpair whose sv[1] cannot send any more. */
static void full_pair(int sv[2])
{
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    int sz = 4096;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    char junk[1024] = {0};
    while (send(sv[1], junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
}

static int listener(bool nonblock, struct sockaddr_in *addr)
{
    int l =
        socket(AF_INET,
               SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    ASSERT_GE(l, 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_OK(bind(l, (struct sockaddr *)addr, sizeof(*addr)));
    socklen_t len = sizeof(*addr);
    ASSERT_OK(getsockname(l, (struct sockaddr *)addr, &len));
    ASSERT_OK(listen(l, 4));
    return l;
}

/* What a threaded call does. */
enum op {
    OP_READ,
    OP_RECV,
    OP_WRITE,
    OP_SEND,
    OP_READ_FULL,
    OP_WRITE_FULL,
    OP_POLL,
    OP_ACCEPT
};

struct call {
    pthread_t th;
    enum op op;
    int fd;
    size_t n;
    cancel_token t;
    int64_t timeout;
    _Atomic pid_t tid;
    atomic_bool done;
    long result;
    size_t moved; /* _full: *done */
    short revents;
    cancel_token recorded;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    atomic_store(&c->tid, harness_gettid());
    cancel_throw(CANCEL_NONE);
    char *buf = calloc(1, c->n + 1);
    ASSERT_NOT_NULL(buf);
    switch (c->op) {
    case OP_READ:
        c->result = cancel_read(c->fd, buf, c->n, c->t, c->timeout);
        break;
    case OP_RECV:
        c->result = cancel_recv(c->fd, buf, c->n, 0, c->t, c->timeout);
        break;
    case OP_WRITE:
        c->result = cancel_write(c->fd, buf, c->n, c->t, c->timeout);
        break;
    case OP_SEND:
        c->result = cancel_send(c->fd, buf, c->n, 0, c->t, c->timeout);
        break;
    case OP_READ_FULL:
        c->result =
            cancel_read_full(c->fd, buf, c->n, &c->moved, c->t, c->timeout);
        break;
    case OP_WRITE_FULL:
        c->result =
            cancel_write_full(c->fd, buf, c->n, &c->moved, c->t, c->timeout);
        break;
    case OP_POLL: {
        struct pollfd p = {c->fd, POLLIN, 0x7fff};
        c->result = cancel_poll(&p, 1, c->t, c->timeout);
        c->revents = p.revents;
        break;
    }
    case OP_ACCEPT:
        c->result = cancel_accept(c->fd, NULL, NULL, c->t, c->timeout);
        break;
    }
    free(buf);
    c->recorded = cancel_canceled_token();
    atomic_store(&c->done, true);
    return NULL;
}

static void wait_asleep(struct call *c)
{
    while (!harness_thread_asleep(atomic_load(&c->tid)) &&
           !atomic_load(&c->done))
        sched_yield();
}

static void call_start_blocked(struct call *c)
{
    atomic_store(&c->tid, 0);
    atomic_store(&c->done, false);
    ASSERT_OK(pthread_create(&c->th, NULL, call_main, c));
    while (atomic_load(&c->tid) == 0)
        sched_yield();
    wait_asleep(c);
}

/* The call with timeout T waits while the clock moves T - 1, and returns
 * -ETIMEDOUT once it moved T (or more, if it armed its deadline late). */
static void expect_manual_timeout(struct call *c)
{
    cancel_clock *clk = harness_manual_clock();
    int64_t T = c->timeout;
    call_start_blocked(c);
    ASSERT_FALSE(atomic_load(&c->done));
    ASSERT_OK(cancel_clock_advance(clk, T - 1));
    ASSERT_FALSE(atomic_load(&c->done)); /* not one nanosecond early */
    int64_t step = 1;
    while (!atomic_load(&c->done)) {
        ASSERT_OK(cancel_clock_advance(clk, step));
        step = T;
        wait_asleep(c);
    }
    ASSERT_OK(pthread_join(c->th, NULL));
    if (c->op == OP_POLL) {
        ASSERT_EQ(c->result, 0);
        ASSERT_EQ(c->revents, 0);
    } else {
        ASSERT_ERR(c->result, -ETIMEDOUT);
        ASSERT(cancel_token_equal(c->recorded, c->t));
    }
    ASSERT_FALSE(cancel_requested(c->t));
    harness_manual_clock_done(clk);
}

/* ---- zero timeouts ------------------------------------------------------ */

TEST(zero_timeout_read_nothing_there)
{
    for (int nb = 0; nb < 2; nb++) {
        int p[2];
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        if (nb)
            set_nonblock(p[0]);
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        char buf[8];
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_read(p[0], buf, sizeof(buf), t, 0), -ETIMEDOUT);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        ASSERT_ERR(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, 0),
                   -ETIMEDOUT);
        size_t done = 99;
        ASSERT_ERR(cancel_read_full(p[0], buf, sizeof(buf), &done, t, 0),
                   -ETIMEDOUT);
        ASSERT_EQ(done, 0);
        ASSERT_FALSE(cancel_requested(t));
        cancel_source_free(src);
        close(p[0]);
        close(p[1]);
    }
}

TEST(zero_timeout_read_data_there)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "abcdef", 6), 6);
    char buf[8];
    ASSERT_EQ(cancel_read(p[0], buf, 2, CANCEL_NONE, 0), 2);
    ASSERT_OK(memcmp(buf, "ab", 2));
    size_t done = 0;
    ASSERT_OK(cancel_read_full(p[0], buf, 3, &done, CANCEL_NONE, 0));
    ASSERT_EQ(done, 3);
    ASSERT_OK(memcmp(buf, "cde", 3));
    /* One byte left, four asked: the byte, then the timeout. */
    ASSERT_ERR(cancel_read_full(p[0], buf, 4, &done, CANCEL_NONE, 0),
               -ETIMEDOUT);
    ASSERT_EQ(done, 1);
    ASSERT_EQ(buf[0], 'f');
    close(p[0]);
    close(p[1]);
}

TEST(zero_timeout_recv)
{
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    char buf[8];
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_recv(sv[0], buf, sizeof(buf), 0, t, 0), -ETIMEDOUT);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_EQ(send(sv[1], "hi", 2, 0), 2);
    ASSERT_EQ(cancel_recv(sv[0], buf, sizeof(buf), 0, t, 0), 2);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(zero_timeout_write_full_pipe)
{
    for (int nb = 0; nb < 2; nb++) {
        int p[2];
        full_pipe(p, nb);
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_write(p[1], "x", 1, t, 0), -ETIMEDOUT);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        size_t done = 99;
        ASSERT_ERR(cancel_write_full(p[1], "xy", 2, &done, t, 0), -ETIMEDOUT);
        ASSERT_EQ(done, 0);
        ASSERT_EQ(queued(p[0]), 4096);
        /* With room, a zero timeout writes. */
        char junk[4096];
        ASSERT_EQ(read(p[0], junk, sizeof(junk)), (ssize_t)sizeof(junk));
        ASSERT_EQ(cancel_write(p[1], "x", 1, t, 0), 1);
        cancel_source_free(src);
        close(p[0]);
        close(p[1]);
    }
}

TEST(zero_timeout_send_full_socket)
{
    int sv[2];
    full_pair(sv);
    size_t before = queued(sv[0]);
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_send(sv[1], "x", 1, 0, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_ERR(cancel_write(sv[1], "x", 1, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_EQ(queued(sv[0]), before);
    close(sv[0]);
    close(sv[1]);
}

TEST(zero_timeout_accept)
{
    for (int nb = 0; nb < 2; nb++) {
        struct sockaddr_in addr;
        int l = listener(nb, &addr);
        cancel_source *src = cancel_source_new();
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_accept(l, NULL, NULL, cancel_source_token(src), 0),
                   -ETIMEDOUT);
        ASSERT(cancel_token_equal(cancel_canceled_token(),
                                  cancel_source_token(src)));
        cancel_source_free(src);
        close(l);
    }
}

TEST(zero_timeout_poll)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    struct pollfd f = {p[0], POLLIN, 0};
    ASSERT_EQ(cancel_poll(&f, 1, cancel_source_token(src), 0), 0);
    ASSERT_EQ(f.revents, 0);
    ASSERT_EQ(cancel_poll(&f, 1, CANCEL_NONE, 0), 0);
    ASSERT_EQ(cancel_poll(NULL, 0, cancel_source_token(src), 0), 0);
    ASSERT_EQ(cancel_poll(NULL, 0, CANCEL_NONE, 0), 0);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(cancel_poll(&f, 1, cancel_source_token(src), 0), 1);
    ASSERT_EQ(f.revents, POLLIN);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

/* The same zero timeouts with the manual clock installed. */
TEST(zero_timeout_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char buf[4];
    ASSERT_ERR(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, 0), -ETIMEDOUT);
    struct pollfd f = {p[0], POLLIN, 0};
    ASSERT_EQ(cancel_poll(&f, 1, CANCEL_NONE, 0), 0);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(cancel_poll(&f, 1, CANCEL_NONE, 0), 1);
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, 0), 1);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

/* ---- manual-clock timeouts ---------------------------------------------- */

TEST(manual_timeout_read)
{
    for (int nb = 0; nb < 2; nb++) {
        int p[2];
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        if (nb)
            set_nonblock(p[0]);
        cancel_source *src = cancel_source_new();
        struct call c = {.op = OP_READ,
                         .fd = p[0],
                         .n = 16,
                         .t = cancel_source_token(src),
                         .timeout = 3 * SEC};
        expect_manual_timeout(&c);
        /* Data after the timeout is all there. */
        ASSERT_EQ(write(p[1], "x", 1), 1);
        ASSERT_EQ(queued(p[0]), 1);
        cancel_source_free(src);
        close(p[0]);
        close(p[1]);
    }
}

TEST(manual_timeout_recv)
{
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_RECV,
                     .fd = sv[0],
                     .n = 16,
                     .t = cancel_source_token(src),
                     .timeout = 250 * MS};
    expect_manual_timeout(&c);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(manual_timeout_write_full_pipe)
{
    for (int nb = 0; nb < 2; nb++) {
        int p[2];
        full_pipe(p, nb);
        cancel_source *src = cancel_source_new();
        struct call c = {.op = OP_WRITE,
                         .fd = p[1],
                         .n = 100,
                         .t = cancel_source_token(src),
                         .timeout = 7 * SEC};
        expect_manual_timeout(&c);
        ASSERT_EQ(queued(p[0]), 4096); /* nothing more went in */
        cancel_source_free(src);
        close(p[0]);
        close(p[1]);
    }
}

TEST(manual_timeout_send_full_socket)
{
    int sv[2];
    full_pair(sv);
    size_t before = queued(sv[0]);
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_SEND,
                     .fd = sv[1],
                     .n = 100,
                     .t = cancel_source_token(src),
                     .timeout = SEC};
    expect_manual_timeout(&c);
    ASSERT_EQ(queued(sv[0]), before);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(manual_timeout_poll)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_POLL,
                     .fd = p[0],
                     .t = cancel_source_token(src),
                     .timeout = 2 * SEC};
    expect_manual_timeout(&c);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(manual_timeout_poll_no_token)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    struct call c = {
        .op = OP_POLL, .fd = p[0], .t = CANCEL_NONE, .timeout = 2 * SEC};
    expect_manual_timeout(&c);
    close(p[0]);
    close(p[1]);
}

TEST(manual_timeout_accept)
{
    for (int nb = 0; nb < 2; nb++) {
        struct sockaddr_in addr;
        int l = listener(nb, &addr);
        cancel_source *src = cancel_source_new();
        struct call c = {.op = OP_ACCEPT,
                         .fd = l,
                         .t = cancel_source_token(src),
                         .timeout = 4 * SEC};
        expect_manual_timeout(&c);
        cancel_source_free(src);
        close(l);
    }
}

TEST(manual_timeout_read_full)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "abc", 3), 3);
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_READ_FULL,
                     .fd = p[0],
                     .n = 10,
                     .t = cancel_source_token(src),
                     .timeout = SEC};
    expect_manual_timeout(&c);
    ASSERT_EQ(c.moved, 3);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(manual_timeout_write_full)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_WRITE_FULL,
                     .fd = p[1],
                     .n = 10000,
                     .t = cancel_source_token(src),
                     .timeout = SEC};
    expect_manual_timeout(&c);
    ASSERT_EQ(c.moved, 4096);
    ASSERT_EQ(queued(p[0]), 4096);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

/* Data that comes before the deadline ends the wait: no timeout. */
TEST(manual_clock_data_before_deadline)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    struct call c = {.op = OP_READ,
                     .fd = p[0],
                     .n = 16,
                     .t = CANCEL_NONE,
                     .timeout = 5 * SEC};
    call_start_blocked(&c);
    ASSERT_OK(cancel_clock_advance(clk, 4 * SEC));
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_EQ(write(p[1], "data", 4), 4);
    ASSERT_OK(pthread_join(c.th, NULL));
    ASSERT_EQ(c.result, 4);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

/* ---- pre-canceled tokens ------------------------------------------------ */

/* Everything is ready, yet a canceled token wins on entry; nothing moves. */
TEST(pre_canceled_read_leaves_data)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "keep", 4), 4);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    char buf[8];
    int64_t timeouts[] = {-1, 0, SEC};
    for (size_t i = 0; i < 3; i++) {
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_read(p[0], buf, sizeof(buf), t, timeouts[i]),
                   -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        size_t done = 99;
        ASSERT_ERR(cancel_read_full(p[0], buf, 4, &done, t, timeouts[i]),
                   -ECANCELED);
        ASSERT_EQ(done, 0);
        ASSERT_EQ(queued(p[0]), 4);
    }
    ASSERT_EQ(cancel_read(p[0], buf, sizeof(buf), CANCEL_NONE, -1), 4);
    ASSERT_OK(memcmp(buf, "keep", 4));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(pre_canceled_recv_leaves_data)
{
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_EQ(send(sv[1], "keep", 4, 0), 4);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    char buf[8];
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_recv(sv[0], buf, sizeof(buf), 0, t, -1), -ECANCELED);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_read(sv[0], buf, sizeof(buf), t, 0), -ECANCELED);
    ASSERT_EQ(queued(sv[0]), 4);
    ASSERT_EQ(recv(sv[0], buf, sizeof(buf), 0), 4);
    ASSERT_OK(memcmp(buf, "keep", 4));
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(pre_canceled_write_moves_nothing)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_write(p[1], "x", 1, t, -1), -ECANCELED);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    size_t done = 99;
    ASSERT_ERR(cancel_write_full(p[1], "xy", 2, &done, t, 0), -ECANCELED);
    ASSERT_EQ(done, 0);
    ASSERT_ERR(cancel_send(sv[1], "x", 1, 0, t, -1), -ECANCELED);
    ASSERT_ERR(cancel_write(sv[1], "x", 1, t, 0), -ECANCELED);
    ASSERT_EQ(queued(p[0]), 0);
    ASSERT_EQ(queued(sv[0]), 0);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

TEST(pre_canceled_poll_with_ready_fd)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "x", 1), 1);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    struct pollfd f = {p[0], POLLIN, 0};
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_poll(&f, 1, t, -1), -ECANCELED);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_poll(&f, 1, t, 0), -ECANCELED);
    ASSERT_ERR(cancel_poll(NULL, 0, t, -1), -ECANCELED);
    ASSERT_EQ(queued(p[0]), 1);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

/* A token whose source has a reason of its own still gives -ECANCELED:
 * the reason is a cause to inspect, not a return code. */
TEST(pre_canceled_with_reason_returns_ecanceled)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "x", 1), 1);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(src, ETIMEDOUT));
    char c;
    ASSERT_ERR(cancel_read(p[0], &c, 1, cancel_source_token(src), -1),
               -ECANCELED);
    cancel_source *src2 = cancel_source_new_timeout(0);
    ASSERT_ERR(cancel_read(p[0], &c, 1, cancel_source_token(src2), -1),
               -ECANCELED);
    ASSERT_EQ(queued(p[0]), 1);
    cancel_source_free(src);
    cancel_source_free(src2);
    close(p[0]);
    close(p[1]);
}

/* ---- the recorded token ------------------------------------------------- */

/* A call that succeeds leaves the recorded token as it was (like errno). */
TEST(success_leaves_recorded_token)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *old = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_throw(cancel_source_token(old));
    ASSERT_EQ(cancel_write(p[1], "x", 1, cancel_source_token(src), -1), 1);
    char c;
    ASSERT_EQ(cancel_read(p[0], &c, 1, cancel_source_token(src), -1), 1);
    ASSERT(
        cancel_token_equal(cancel_canceled_token(), cancel_source_token(old)));
    cancel_source_free(old);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

/* A linked token: the call records the token it was given. */
TEST(canceled_call_records_its_own_token)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *parent = cancel_source_new();
    cancel_token pt = cancel_source_token(parent);
    cancel_source *child = cancel_source_new_linked(&pt, 1);
    cancel_token ct = cancel_source_token(child);
    struct call c = {.op = OP_READ, .fd = p[0], .n = 4, .t = ct, .timeout = -1};
    call_start_blocked(&c);
    ASSERT_OK(cancel_source_cancel(parent));
    ASSERT_OK(pthread_join(c.th, NULL));
    ASSERT_ERR(c.result, -ECANCELED);
    ASSERT(cancel_token_equal(c.recorded, ct));
    ASSERT_FALSE(cancel_token_equal(c.recorded, pt));
    cancel_source_free(child);
    cancel_source_free(parent);
    close(p[0]);
    close(p[1]);
}
