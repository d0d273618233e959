/* Real TCP sockets on 127.0.0.1 (ports from bind(port 0)):
 *   - a cancel_read blocked on a silent server is released by cancel;
 *   - cancel_connect to a listener whose accept queue is full (the kernel
 *     drops the SYNs, so a connect stays in SYN_SENT) is released by cancel
 *     and by its timeout, on a blocking socket (connect(2) blocks in the
 *     kernel; a private timer source, which the installed manual clock
 *     drives, aborts it) and on an O_NONBLOCK one;
 *   - cancel_accept is released by cancel and by timeout, and returns a
 *     working fd when a client connects;
 *   - connect succeeds or fails as connect(2) does.
 *
 * A test that acts while another thread is blocked spins until that thread
 * is asleep in the kernel (state S in /proc) - for connect also until the
 * socket is in SYN_SENT: gates, not sleeps.  Timeouts use the manual clock:
 * the test advances it only while the caller is asleep, and again if the
 * call is still asleep (had it not armed its deadline yet, the first
 * advance would not concern it). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

static struct sockaddr_in loopback(void)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A listener on 127.0.0.1, port from the kernel; *addr gets its address. */
static int listen_on(struct sockaddr_in *addr, int backlog, bool nonblock)
{
    int l =
        socket(AF_INET,
               SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    ASSERT_GE(l, 0);
    *addr = loopback();
    ASSERT_OK(bind(l, (struct sockaddr *)addr, sizeof(*addr)));
    socklen_t len = sizeof(*addr);
    ASSERT_OK(getsockname(l, (struct sockaddr *)addr, &len));
    ASSERT_OK(listen(l, backlog));
    return l;
}

static int tcp_socket(bool nonblock)
{
    int s =
        socket(AF_INET,
               SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    ASSERT_GE(s, 0);
    return s;
}

static int tcp_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    ASSERT_OK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len));
    return ti.tcpi_state;
}

/* The accept queue of a listener: length and limit (Linux reports them as
 * tcpi_unacked and tcpi_sacked of a listening socket). */
static void accept_queue(int l, unsigned *len, unsigned *max)
{
    struct tcp_info ti;
    socklen_t sl = sizeof(ti);
    ASSERT_OK(getsockopt(l, IPPROTO_TCP, TCP_INFO, &ti, &sl));
    *len = ti.tcpi_unacked;
    *max = ti.tcpi_sacked;
}

/* A listener whose accept queue is full, so that the kernel drops every
 * new SYN and a connect stays in SYN_SENT.  Fills it with connections that
 * are never accepted (returned in fill[], *nfill of them), then checks with
 * a non-blocking probe connect that a connect would indeed block. */
struct full_listener {
    int l;
    struct sockaddr_in addr;
    int fill[8];
    int nfill;
    int probe;
};

static void full_listener_open(struct full_listener *f)
{
    f->l = listen_on(&f->addr, 0, false);
    f->nfill = 0;
    for (;;) {
        unsigned len, max;
        accept_queue(f->l, &len, &max);
        if (len > max)
            break; /* full: sk_acceptq_is_full() */
        ASSERT_LT(f->nfill, 8);
        int c = tcp_socket(true);
        int r = connect(c, (struct sockaddr *)&f->addr, sizeof(f->addr));
        ASSERT(r == 0 || errno == EINPROGRESS);
        /* Wait until it is established (the queue has room for it). */
        struct pollfd p = {c, POLLOUT, 0};
        ASSERT_EQ(poll(&p, 1, -1), 1);
        f->fill[f->nfill++] = c;
        /* The server side joins the queue when the final ACK arrives. */
        for (;;) {
            unsigned l2, m2;
            accept_queue(f->l, &l2, &m2);
            if (l2 > len)
                break;
            sched_yield();
        }
    }
    f->probe = tcp_socket(true);
    ASSERT_EQ(connect(f->probe, (struct sockaddr *)&f->addr, sizeof(f->addr)),
              -1);
    ASSERT_EQ(errno, EINPROGRESS);
    struct pollfd p = {f->probe, POLLOUT, 0};
    ASSERT_EQ(poll(&p, 1, 0), 0);
    ASSERT_EQ(tcp_state(f->probe), TCP_SYN_SENT);
}

static void full_listener_close(struct full_listener *f)
{
    /* The probe never got through: still trying. */
    ASSERT_EQ(tcp_state(f->probe), TCP_SYN_SENT);
    close(f->probe);
    for (int i = 0; i < f->nfill; i++)
        close(f->fill[i]);
    close(f->l);
}

enum op { OP_READ, OP_RECV, OP_CONNECT, OP_ACCEPT };

struct call {
    pthread_t th;
    enum op op;
    int fd;
    const struct sockaddr_in *addr; /* connect */
    struct sockaddr_in peer;        /* accept */
    socklen_t peer_len;
    cancel_token t;
    int64_t timeout;
    _Atomic pid_t tid;
    atomic_bool done;
    long result;
    cancel_token recorded;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    atomic_store(&c->tid, harness_gettid());
    cancel_throw(CANCEL_NONE);
    char buf[64];
    switch (c->op) {
    case OP_READ:
        c->result = cancel_read(c->fd, buf, sizeof(buf), c->t, c->timeout);
        break;
    case OP_RECV:
        c->result = cancel_recv(c->fd, buf, sizeof(buf), 0, c->t, c->timeout);
        break;
    case OP_CONNECT:
        c->result = cancel_connect(c->fd, (const struct sockaddr *)c->addr,
                                   sizeof(*c->addr), c->t, c->timeout);
        break;
    case OP_ACCEPT:
        c->peer_len = sizeof(c->peer);
        c->result = cancel_accept(c->fd, (struct sockaddr *)&c->peer,
                                  &c->peer_len, c->t, c->timeout);
        break;
    }
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

static void call_start(struct call *c)
{
    atomic_store(&c->tid, 0);
    atomic_store(&c->done, false);
    ASSERT_OK(pthread_create(&c->th, NULL, call_main, c));
    while (atomic_load(&c->tid) == 0)
        sched_yield();
}

static void call_start_blocked(struct call *c)
{
    call_start(c);
    wait_asleep(c);
}

/* A connect is blocked once its socket sent the SYN and its thread
 * sleeps. */
static void connect_start_blocked(struct call *c)
{
    call_start(c);
    while (tcp_state(c->fd) != TCP_SYN_SENT && !atomic_load(&c->done))
        sched_yield();
    wait_asleep(c);
}

static long call_join(struct call *c)
{
    ASSERT_OK(pthread_join(c->th, NULL));
    return c->result;
}

/* Advance the manual clock by `step` while the call sleeps, until it
 * returns.  The first advance past its deadline ends it; the loop only
 * matters if the call armed its deadline after an advance. */
static void advance_until_done(cancel_clock *clk, struct call *c, int64_t step)
{
    while (!atomic_load(&c->done)) {
        ASSERT_OK(cancel_clock_advance(clk, step));
        wait_asleep(c);
    }
}

/* A socket that a canceled connect left behind is unusable. */
static void assert_unusable(int fd)
{
    ASSERT_EQ(send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT), -1);
}

/* ---- read on a silent server -------------------------------------------- */

static void read_silent_server(enum op op, bool nonblock)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    int c = tcp_socket(false);
    ASSERT_OK(connect(c, (struct sockaddr *)&addr, sizeof(addr)));
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT_GE(s, 0);
    if (nonblock)
        ASSERT_OK(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK));
    int flags = fcntl(c, F_GETFL);
    cancel_source *src = cancel_source_new();
    struct call call = {
        .op = op, .fd = c, .t = cancel_source_token(src), .timeout = -1};
    call_start_blocked(&call);
    ASSERT_FALSE(atomic_load(&call.done)); /* the server says nothing */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(call_join(&call), -ECANCELED);
    ASSERT(cancel_token_equal(call.recorded, call.t));
    ASSERT_EQ(fcntl(c, F_GETFL), flags);
    /* The connection is intact: what the server says now arrives. */
    ASSERT_EQ(send(s, "late", 4, 0), 4);
    char buf[8];
    ASSERT_EQ(cancel_read(c, buf, sizeof(buf), CANCEL_NONE, -1), 4);
    ASSERT_OK(memcmp(buf, "late", 4));
    cancel_source_free(src);
    close(s);
    close(c);
    close(l);
}

TEST(tcp_read_silent_server_canceled)
{
    read_silent_server(OP_READ, false);
}

TEST(tcp_recv_silent_server_canceled)
{
    read_silent_server(OP_RECV, false);
}

TEST(tcp_recv_silent_server_canceled_nonblocking_fd)
{
    read_silent_server(OP_RECV, true);
}

TEST(tcp_read_silent_server_timeout)
{
    cancel_clock *clk = harness_manual_clock();
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    int c = tcp_socket(false);
    ASSERT_OK(connect(c, (struct sockaddr *)&addr, sizeof(addr)));
    cancel_source *src = cancel_source_new();
    struct call call = {.op = OP_READ,
                        .fd = c,
                        .t = cancel_source_token(src),
                        .timeout = 5 * SEC};
    call_start_blocked(&call);
    ASSERT_FALSE(atomic_load(&call.done));
    advance_until_done(clk, &call, 5 * SEC);
    ASSERT_ERR(call_join(&call), -ETIMEDOUT);
    ASSERT(cancel_token_equal(call.recorded, call.t));
    ASSERT_FALSE(cancel_requested(call.t));
    cancel_source_free(src);
    close(c);
    close(l);
    harness_manual_clock_done(clk);
}

/* ---- connect to a full backlog ------------------------------------------ */

static void connect_full_backlog(bool nonblock, bool by_timeout)
{
    cancel_clock *clk = by_timeout ? harness_manual_clock() : NULL;
    struct full_listener f;
    full_listener_open(&f);
    int s = tcp_socket(nonblock);
    int flags = fcntl(s, F_GETFL);
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_CONNECT,
                     .fd = s,
                     .addr = &f.addr,
                     .t = cancel_source_token(src),
                     .timeout = by_timeout ? 30 * SEC : -1};
    connect_start_blocked(&c);
    /* Nothing answers: the connect waits in SYN_SENT. */
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_EQ(tcp_state(s), TCP_SYN_SENT);
    if (by_timeout) {
        ASSERT_OK(cancel_clock_advance(clk, 30 * SEC - 1));
        ASSERT_FALSE(atomic_load(&c.done));
        advance_until_done(clk, &c, 1);
        ASSERT_ERR(call_join(&c), -ETIMEDOUT);
        ASSERT_FALSE(cancel_requested(c.t));
    } else {
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(call_join(&c), -ECANCELED);
    }
    ASSERT(cancel_token_equal(c.recorded, c.t));
    ASSERT_EQ(fcntl(s, F_GETFL), flags);
    /* The attempt was abandoned, not left running. */
    ASSERT_NE(tcp_state(s), TCP_SYN_SENT);
    assert_unusable(s);
    close(s);
    cancel_source_free(src);
    full_listener_close(&f);
    if (clk != NULL)
        harness_manual_clock_done(clk);
}

TEST(tcp_connect_full_backlog_canceled)
{
    connect_full_backlog(false, false);
}

TEST(tcp_connect_full_backlog_timeout)
{
    connect_full_backlog(false, true);
}

TEST(tcp_connect_full_backlog_canceled_nonblocking_fd)
{
    connect_full_backlog(true, false);
}

TEST(tcp_connect_full_backlog_timeout_nonblocking_fd)
{
    connect_full_backlog(true, true);
}

/* The timeout alone, with CANCEL_NONE: the private timer still aborts. */
TEST(tcp_connect_full_backlog_timeout_no_token)
{
    cancel_clock *clk = harness_manual_clock();
    struct full_listener f;
    full_listener_open(&f);
    int s = tcp_socket(false);
    struct call c = {.op = OP_CONNECT,
                     .fd = s,
                     .addr = &f.addr,
                     .t = CANCEL_NONE,
                     .timeout = 2 * SEC};
    connect_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    advance_until_done(clk, &c, 2 * SEC);
    ASSERT_ERR(call_join(&c), -ETIMEDOUT);
    close(s);
    full_listener_close(&f);
    harness_manual_clock_done(clk);
}

TEST(tcp_connect_full_backlog_zero_timeout)
{
    struct full_listener f;
    full_listener_open(&f);
    for (int nb = 0; nb < 2; nb++) {
        int s = tcp_socket(nb);
        cancel_source *src = cancel_source_new();
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_connect(s, (struct sockaddr *)&f.addr, sizeof(f.addr),
                                  cancel_source_token(src), 0),
                   -ETIMEDOUT);
        ASSERT(cancel_token_equal(cancel_canceled_token(),
                                  cancel_source_token(src)));
        close(s);
        cancel_source_free(src);
    }
    full_listener_close(&f);
}

TEST(tcp_connect_pre_canceled)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    for (int nb = 0; nb < 2; nb++) {
        int s = tcp_socket(nb);
        cancel_throw(CANCEL_NONE);
        ASSERT_ERR(cancel_connect(s, (struct sockaddr *)&addr, sizeof(addr),
                                  cancel_source_token(src), -1),
                   -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(),
                                  cancel_source_token(src)));
        /* It did not even try: no SYN went out. */
        ASSERT_EQ(tcp_state(s), TCP_CLOSE);
        close(s);
    }
    struct pollfd p = {l, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 0), 0); /* nobody knocked */
    cancel_source_free(src);
    close(l);
}

/* ---- connect that completes or fails ------------------------------------ */

static void connect_ok(bool nonblock)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    int s = tcp_socket(nonblock);
    int flags = fcntl(s, F_GETFL);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_connect(s, (struct sockaddr *)&addr, sizeof(addr),
                             cancel_source_token(src), -1));
    ASSERT_EQ(fcntl(s, F_GETFL), flags);
    ASSERT_EQ(tcp_state(s), TCP_ESTABLISHED);
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT_GE(a, 0);
    ASSERT_EQ(cancel_send(s, "ping", 4, 0, CANCEL_NONE, -1), 4);
    char buf[8];
    ASSERT_EQ(cancel_recv(a, buf, sizeof(buf), 0, CANCEL_NONE, -1), 4);
    ASSERT_OK(memcmp(buf, "ping", 4));
    /* Canceling afterwards changes nothing for the connection. */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(send(s, "pong", 4, MSG_NOSIGNAL), 4);
    ASSERT_EQ(cancel_recv(a, buf, sizeof(buf), 0, CANCEL_NONE, -1), 4);
    cancel_source_free(src);
    close(a);
    close(s);
    close(l);
}

TEST(tcp_connect_ok)
{
    connect_ok(false);
}

TEST(tcp_connect_ok_nonblocking_fd)
{
    connect_ok(true);
}

TEST(tcp_connect_ok_with_timeout)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    int s = tcp_socket(false);
    ASSERT_OK(cancel_connect(s, (struct sockaddr *)&addr, sizeof(addr),
                             CANCEL_NONE, 60 * SEC));
    ASSERT_EQ(tcp_state(s), TCP_ESTABLISHED);
    close(s);
    close(l);
}

TEST(tcp_connect_refused)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    close(l); /* nobody listens on that port any more */
    for (int nb = 0; nb < 2; nb++) {
        int s = tcp_socket(nb);
        cancel_source *src = cancel_source_new();
        ASSERT_ERR(cancel_connect(s, (struct sockaddr *)&addr, sizeof(addr),
                                  cancel_source_token(src), -1),
                   -ECONNREFUSED);
        ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
        close(s);
        cancel_source_free(src);
    }
}

/* ---- accept ------------------------------------------------------------- */

static void accept_released(bool nonblock, bool by_timeout)
{
    cancel_clock *clk = by_timeout ? harness_manual_clock() : NULL;
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, nonblock);
    int flags = fcntl(l, F_GETFL);
    cancel_source *src = cancel_source_new();
    struct call c = {.op = OP_ACCEPT,
                     .fd = l,
                     .t = cancel_source_token(src),
                     .timeout = by_timeout ? 10 * SEC : -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done)); /* nobody connects */
    if (by_timeout) {
        ASSERT_OK(cancel_clock_advance(clk, 10 * SEC - 1));
        ASSERT_FALSE(atomic_load(&c.done));
        advance_until_done(clk, &c, 1);
        ASSERT_ERR(call_join(&c), -ETIMEDOUT);
        ASSERT_FALSE(cancel_requested(c.t));
    } else {
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(call_join(&c), -ECANCELED);
    }
    ASSERT(cancel_token_equal(c.recorded, c.t));
    ASSERT_EQ(fcntl(l, F_GETFL), flags);
    /* The listener still works. */
    int s = tcp_socket(false);
    ASSERT_OK(connect(s, (struct sockaddr *)&addr, sizeof(addr)));
    int a = cancel_accept(l, NULL, NULL, CANCEL_NONE, -1);
    ASSERT_GE(a, 0);
    close(a);
    close(s);
    cancel_source_free(src);
    close(l);
    if (clk != NULL)
        harness_manual_clock_done(clk);
}

TEST(tcp_accept_canceled)
{
    accept_released(false, false);
}

TEST(tcp_accept_canceled_nonblocking_listener)
{
    accept_released(true, false);
}

TEST(tcp_accept_timeout)
{
    accept_released(false, true);
}

TEST(tcp_accept_timeout_nonblocking_listener)
{
    accept_released(true, true);
}

static void accept_returns_working_fd(bool nonblock)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, nonblock);
    cancel_source *src = cancel_source_new();
    struct call c = {
        .op = OP_ACCEPT, .fd = l, .t = cancel_source_token(src), .timeout = -1};
    call_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    int s = tcp_socket(false);
    ASSERT_OK(connect(s, (struct sockaddr *)&addr, sizeof(addr)));
    int a = (int)call_join(&c);
    ASSERT_GE(a, 0);
    /* FD_CLOEXEC, as the header says; the peer address is the client's. */
    ASSERT_EQ(fcntl(a, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    struct sockaddr_in mine;
    socklen_t len = sizeof(mine);
    ASSERT_OK(getsockname(s, (struct sockaddr *)&mine, &len));
    ASSERT_EQ(c.peer_len, sizeof(struct sockaddr_in));
    ASSERT_EQ(c.peer.sin_family, AF_INET);
    ASSERT_EQ(c.peer.sin_port, mine.sin_port);
    ASSERT_EQ(c.peer.sin_addr.s_addr, mine.sin_addr.s_addr);
    /* Data flows both ways. */
    char buf[8];
    ASSERT_EQ(cancel_write(a, "srv", 3, CANCEL_NONE, -1), 3);
    ASSERT_EQ(cancel_read(s, buf, sizeof(buf), CANCEL_NONE, -1), 3);
    ASSERT_OK(memcmp(buf, "srv", 3));
    ASSERT_EQ(cancel_write(s, "cli", 3, CANCEL_NONE, -1), 3);
    ASSERT_EQ(cancel_read(a, buf, sizeof(buf), CANCEL_NONE, -1), 3);
    ASSERT_OK(memcmp(buf, "cli", 3));
    ASSERT_FALSE(cancel_requested(c.t));
    cancel_source_free(src);
    close(a);
    close(s);
    close(l);
}

TEST(tcp_accept_returns_working_fd)
{
    accept_returns_working_fd(false);
}

TEST(tcp_accept_returns_working_fd_nonblocking_listener)
{
    accept_returns_working_fd(true);
}

/* A client already waiting: accept returns it at once, also with a zero
 * timeout; with nobody waiting a zero timeout is -ETIMEDOUT. */
TEST(tcp_accept_pending_client_zero_timeout)
{
    for (int nb = 0; nb < 2; nb++) {
        struct sockaddr_in addr;
        int l = listen_on(&addr, 4, nb);
        ASSERT_ERR(cancel_accept(l, NULL, NULL, CANCEL_NONE, 0), -ETIMEDOUT);
        int s = tcp_socket(false);
        ASSERT_OK(connect(s, (struct sockaddr *)&addr, sizeof(addr)));
        struct pollfd p = {l, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, -1), 1); /* the handshake reached the queue */
        int a = cancel_accept(l, NULL, NULL, CANCEL_NONE, 0);
        ASSERT_GE(a, 0);
        close(a);
        close(s);
        close(l);
    }
}

TEST(tcp_accept_pre_canceled_leaves_client_queued)
{
    struct sockaddr_in addr;
    int l = listen_on(&addr, 4, false);
    int s = tcp_socket(false);
    ASSERT_OK(connect(s, (struct sockaddr *)&addr, sizeof(addr)));
    struct pollfd p = {l, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, -1), 1);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_throw(CANCEL_NONE);
    ASSERT_ERR(cancel_accept(l, NULL, NULL, cancel_source_token(src), -1),
               -ECANCELED);
    ASSERT(
        cancel_token_equal(cancel_canceled_token(), cancel_source_token(src)));
    /* The connection was not taken: it is still there to accept. */
    ASSERT_EQ(poll(&p, 1, 0), 1);
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ASSERT_GE(a, 0);
    close(a);
    cancel_source_free(src);
    close(s);
    close(l);
}
