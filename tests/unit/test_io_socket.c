/* cancel_recv, cancel_send, cancel_read and cancel_write on AF_UNIX stream
 * socketpairs: blocking until data or room, cancellation while blocked,
 * recv/send flags, and SIGPIPE: cancel_send never raises it (a closed peer
 * is -EPIPE and the process lives on), cancel_write raises it as write(2).
 *
 * A test that acts while another thread is blocked spins until that thread
 * is asleep in the kernel (state S in /proc): a gate, not a sleep. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

enum op { OP_READ, OP_WRITE, OP_RECV, OP_SEND };

struct call {
    pthread_t th;
    enum op op;
    int fd;
    void *buf;
    size_t n;
    int flags;
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
    cancel_throw(CANCEL_NONE);
    switch (c->op) {
    case OP_READ:
        c->result = cancel_read(c->fd, c->buf, c->n, c->t, c->timeout);
        break;
    case OP_WRITE:
        c->result = cancel_write(c->fd, c->buf, c->n, c->t, c->timeout);
        break;
    case OP_RECV:
        c->result =
            cancel_recv(c->fd, c->buf, c->n, c->flags, c->t, c->timeout);
        break;
    case OP_SEND:
        c->result =
            cancel_send(c->fd, c->buf, c->n, c->flags, c->t, c->timeout);
        break;
    }
    c->recorded = cancel_canceled_token();
    atomic_store(&c->done, true);
    return NULL;
}

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

static void pair(int sv[2], bool nonblock)
{
    ASSERT_OK(socketpair(
        AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0,
        sv));
}

static size_t queued(int fd)
{
    int n = -1;
    ASSERT_OK(ioctl(fd, FIONREAD, &n));
    return (size_t)n;
}

/* Fill fd's send path until a non-blocking send would block; returns the
 * bytes written. */
static size_t fill(int fd)
{
    int sz = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    char junk[1024] = {0};
    size_t total = 0;
    for (;;) {
        ssize_t w = send(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (w < 0) {
            ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
            return total;
        }
        total += (size_t)w;
    }
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

/* ---- receiving ---------------------------------------------------------- */

static void recv_blocks_then(enum op op, bool nonblock, bool cancel)
{
    int sv[2];
    pair(sv, nonblock);
    int flags = fcntl(sv[0], F_GETFL);
    cancel_source *src = cancel_source_new();
    char buf[32] = {0};
    struct call c = {.op = op,
                     .fd = sv[0],
                     .buf = buf,
                     .n = sizeof(buf),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_EQ(fcntl(sv[0], F_GETFL), flags);
    if (cancel) {
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(call_join(&c), -ECANCELED);
        ASSERT(cancel_token_equal(c.recorded, c.t));
        /* Later data is all there. */
        ASSERT_EQ(send(sv[1], "later", 5, 0), 5);
        ASSERT_EQ(recv(sv[0], buf, sizeof(buf), 0), 5);
        ASSERT_OK(memcmp(buf, "later", 5));
    } else {
        ASSERT_EQ(send(sv[1], "data", 4, 0), 4);
        ASSERT_EQ(call_join(&c), 4);
        ASSERT_OK(memcmp(buf, "data", 4));
    }
    ASSERT_EQ(fcntl(sv[0], F_GETFL), flags);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(sock_recv_blocks_until_data)
{
    recv_blocks_then(OP_RECV, false, false);
}

TEST(sock_recv_blocks_on_nonblocking_fd)
{
    recv_blocks_then(OP_RECV, true, false);
}

TEST(sock_read_blocks_until_data)
{
    recv_blocks_then(OP_READ, false, false);
}

TEST(sock_recv_canceled_while_blocked)
{
    recv_blocks_then(OP_RECV, false, true);
}

TEST(sock_recv_canceled_while_blocked_nonblocking_fd)
{
    recv_blocks_then(OP_RECV, true, true);
}

TEST(sock_read_canceled_while_blocked)
{
    recv_blocks_then(OP_READ, true, true);
}

TEST(sock_recv_peek_leaves_data)
{
    int sv[2];
    pair(sv, false);
    ASSERT_EQ(send(sv[1], "peek", 4, 0), 4);
    char buf[8];
    ASSERT_EQ(cancel_recv(sv[0], buf, sizeof(buf), MSG_PEEK, CANCEL_NONE, -1),
              4);
    ASSERT_OK(memcmp(buf, "peek", 4));
    ASSERT_EQ(queued(sv[0]), 4);
    memset(buf, 0, sizeof(buf));
    ASSERT_EQ(cancel_recv(sv[0], buf, sizeof(buf), 0, CANCEL_NONE, -1), 4);
    ASSERT_OK(memcmp(buf, "peek", 4));
    ASSERT_EQ(queued(sv[0]), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Asking for more than is there returns what is there: a short count. */
TEST(sock_recv_short_count)
{
    int sv[2];
    pair(sv, false);
    ASSERT_EQ(send(sv[1], "12345", 5, 0), 5);
    char buf[64];
    ASSERT_EQ(cancel_recv(sv[0], buf, sizeof(buf), 0, CANCEL_NONE, -1), 5);
    ASSERT_OK(memcmp(buf, "12345", 5));
    close(sv[0]);
    close(sv[1]);
}

TEST(sock_recv_peer_closed_returns_zero)
{
    int sv[2];
    pair(sv, false);
    char buf[8];
    struct call c = {.op = OP_RECV,
                     .fd = sv[0],
                     .buf = buf,
                     .n = sizeof(buf),
                     .t = CANCEL_NONE,
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    close(sv[1]);
    ASSERT_EQ(call_join(&c), 0);
    ASSERT_EQ(cancel_read(sv[0], buf, sizeof(buf), CANCEL_NONE, -1), 0);
    close(sv[0]);
}

/* ---- sending ------------------------------------------------------------ */

static void send_blocks_then(enum op op, bool nonblock, bool cancel)
{
    int sv[2];
    pair(sv, nonblock);
    size_t filled = fill(sv[1]);
    ASSERT_GT(filled, 0);
    int flags = fcntl(sv[1], F_GETFL);
    cancel_source *src = cancel_source_new();
    char msg[64];
    memset(msg, 's', sizeof(msg));
    struct call c = {.op = op,
                     .fd = sv[1],
                     .buf = msg,
                     .n = sizeof(msg),
                     .t = cancel_source_token(src),
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_EQ(fcntl(sv[1], F_GETFL), flags);
    if (cancel) {
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(call_join(&c), -ECANCELED);
        ASSERT(cancel_token_equal(c.recorded, c.t));
        /* Nothing of it went out. */
        ASSERT_EQ(queued(sv[0]), filled);
    } else {
        drain(sv[0], filled);
        ssize_t n = call_join(&c);
        ASSERT_GT(n, 0);
        ASSERT_LE(n, (ssize_t)sizeof(msg));
        char got[64];
        ASSERT_EQ(recv(sv[0], got, sizeof(got), MSG_DONTWAIT), n);
        ASSERT_OK(memcmp(got, msg, (size_t)n));
    }
    ASSERT_EQ(fcntl(sv[1], F_GETFL), flags);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(sock_send_blocks_until_room)
{
    send_blocks_then(OP_SEND, false, false);
}

TEST(sock_send_blocks_on_nonblocking_fd)
{
    send_blocks_then(OP_SEND, true, false);
}

TEST(sock_write_blocks_until_room)
{
    send_blocks_then(OP_WRITE, false, false);
}

TEST(sock_send_canceled_while_blocked)
{
    send_blocks_then(OP_SEND, false, true);
}

TEST(sock_send_canceled_while_blocked_nonblocking_fd)
{
    send_blocks_then(OP_SEND, true, true);
}

TEST(sock_write_canceled_while_blocked_nonblocking_fd)
{
    send_blocks_then(OP_WRITE, true, true);
}

/* ---- SIGPIPE ------------------------------------------------------------ */

/* SIGPIPE has its default action (death) here: the test process living on
 * is the check, and -EPIPE the result. */
TEST(sock_send_peer_closed_epipe_no_sigpipe)
{
    struct sigaction sa;
    ASSERT_OK(sigaction(SIGPIPE, NULL, &sa));
    ASSERT(sa.sa_handler == SIG_DFL);
    int sv[2];
    pair(sv, false);
    close(sv[0]);
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_send(sv[1], "x", 1, 0, cancel_source_token(src), -1),
               -EPIPE);
    ASSERT_ERR(cancel_send(sv[1], "x", 1, 0, CANCEL_NONE, 0), -EPIPE);
    cancel_source_free(src);
    close(sv[1]);
}

/* The same with SIGPIPE blocked: nothing is pending afterwards. */
TEST(sock_send_peer_closed_leaves_no_pending_sigpipe)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, &pipe_set, &old));
    int sv[2];
    pair(sv, true);
    close(sv[0]);
    ASSERT_ERR(cancel_send(sv[1], "x", 1, 0, CANCEL_NONE, -1), -EPIPE);
    ASSERT_OK(sigpending(&pending));
    ASSERT_EQ(sigismember(&pending, SIGPIPE), 0);
    close(sv[1]);
    ASSERT_OK(pthread_sigmask(SIG_SETMASK, &old, NULL));
}

/* The peer goes away while cancel_send is blocked on a full buffer. */
TEST(sock_send_blocked_peer_closes_epipe_no_sigpipe)
{
    int sv[2];
    pair(sv, false);
    fill(sv[1]);
    char msg[64] = {0};
    struct call c = {.op = OP_SEND,
                     .fd = sv[1],
                     .buf = msg,
                     .n = sizeof(msg),
                     .t = CANCEL_NONE,
                     .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    close(sv[0]);
    ssize_t r = call_join(&c);
    /* The kernel says EPIPE, or ECONNRESET for unread data thrown away. */
    ASSERT(r == -EPIPE || r == -ECONNRESET);
    close(sv[1]);
}

/* cancel_write is write(2): on a socket whose peer is gone it raises
 * SIGPIPE (seen pending here, blocked) and returns -EPIPE. */
TEST(sock_write_peer_closed_raises_sigpipe_as_write_does)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, &pipe_set, &old));
    int sv[2];
    pair(sv, false);
    close(sv[0]);
    ASSERT_ERR(cancel_write(sv[1], "x", 1, CANCEL_NONE, -1), -EPIPE);
    ASSERT_OK(sigpending(&pending));
    ASSERT_EQ(sigismember(&pending, SIGPIPE), 1);
    struct timespec zero = {0, 0};
    ASSERT_EQ(sigtimedwait(&pipe_set, NULL, &zero), SIGPIPE);
    close(sv[1]);
    ASSERT_OK(pthread_sigmask(SIG_SETMASK, &old, NULL));
}

TEST(sock_write_peer_closed_sigpipe_ignored_epipe)
{
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    pair(sv, false);
    close(sv[0]);
    ASSERT_ERR(cancel_write(sv[1], "x", 1, CANCEL_NONE, -1), -EPIPE);
    close(sv[1]);
    signal(SIGPIPE, SIG_DFL);
}
