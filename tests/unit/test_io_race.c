/* No data is lost: cancellation (and timeouts) racing the data path of
 * cancel_read, cancel_recv, cancel_read_full, cancel_write, cancel_send and
 * cancel_write_full, on pipes, socketpairs and TCP connections on 127.0.0.1.
 *
 * Reading rounds: a writer thread writes a known random byte sequence in
 * random chunks with random pauses, the round's source is canceled at a
 * random moment (by a canceler thread, or by the writer right after one of
 * its writes, so that the cancel lands while the reader wakes up for the
 * data), and the main thread reads with the call under test until it
 * returns -ECANCELED.  Then the writer's end is closed (or
 * shut down) and the rest is drained with plain read(2) up to end of file.
 * What the calls returned, followed by what was still there, must be
 * exactly what was written: no gap, no duplicate, no reordering.  So a call
 * that returned -ECANCELED or -ETIMEDOUT transferred nothing, and a short
 * count was reported, not dropped.
 *
 * Writing rounds: the main thread writes a known sequence with the call
 * under test until it returns -ECANCELED, while a reader thread drains the
 * other end (slowly, so that the writer blocks on a full buffer) up to end
 * of file; the cancel comes from a canceler thread at a random moment, or
 * from the reader right after one of its reads.  The reader must get exactly
 * the bytes whose counts the calls reported (for the _full call: *done), in
 * order.
 *
 * Every round also checks that the fd's flags are unchanged (blocking and
 * O_NONBLOCK fds alike) and that a call on an O_NONBLOCK fd never returns
 * -EAGAIN: it waits for data, cancellation or its timeout.
 *
 * Threads are created once per test and meet at barriers between rounds.
 * CANCEL_TEST_SEED replays a run. */
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

#define US ((int64_t)1000)

/* ---- randomness and jitter ---------------------------------------------- */

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static inline uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)((rnd(s) >> 32) % n);
}

/* A random pause of up to a few tens of microseconds, sometimes a yield:
 * it spreads the moments of writes and cancels, it orders nothing. */
static void jitter(uint64_t *s, unsigned scale)
{
    unsigned n = below(s, 16);
    if (n == 0)
        sched_yield();
    else if (n < 12)
        for (volatile unsigned i = 0, k = below(s, scale); i < k; i++)
            ;
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x10da7a1055ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* ---- fds ---------------------------------------------------------------- */

enum kind { K_PIPE, K_SOCKPAIR, K_TCP };

static int listener = -1;
static struct sockaddr_in listen_addr;

static void tcp_listen(void)
{
    if (listener >= 0)
        return;
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    listen_addr = (struct sockaddr_in){
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Accepted sockets inherit this receive buffer (and the window
     * scale it implies): small, so that a writer soon fills it. */
    int sz = 16384;
    setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    ASSERT_OK(
        bind(listener, (struct sockaddr *)&listen_addr, sizeof(listen_addr)));
    socklen_t len = sizeof(listen_addr);
    ASSERT_OK(getsockname(listener, (struct sockaddr *)&listen_addr, &len));
    ASSERT_OK(listen(listener, 16));
}

/* Close without leaving TIME_WAIT behind (thousands of rounds). */
static void close_fast(int fd, enum kind k)
{
    if (k == K_TCP) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    ASSERT_OK(close(fd));
}

static void set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    ASSERT_GE(fl, 0);
    ASSERT_OK(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

/* A connected pair: data goes from fds[1] to fds[0] (and back for
 * sockets).  `small` shrinks the buffers so that a writer soon blocks. */
static void open_pair(enum kind k, int fds[2], bool small)
{
    if (k == K_PIPE) {
        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        if (small)
            ASSERT_GE(fcntl(fds[1], F_SETPIPE_SZ, 4096), 4096);
        return;
    }
    if (k == K_SOCKPAIR) {
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    } else {
        tcp_listen();
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(c, 0);
        if (small) {
            /* A small send buffer; the receive buffer stays big enough
             * for window updates to flow (a window smaller than one
             * loopback segment would leave the sender to zero-window
             * probes, 200 ms apart and slower). */
            int sz = 4096;
            setsockopt(c, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        }
        ASSERT_OK(
            connect(c, (struct sockaddr *)&listen_addr, sizeof(listen_addr)));
        int a = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_GE(a, 0);
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fds[0] = a;
        fds[1] = c;
    }
    if (small && k == K_SOCKPAIR) {
        int sz = 4096;
        for (int i = 0; i < 2; i++) {
            setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
            setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
    }
}

/* End of the writer's data: the reader of fds[0] sees end of file. */
static void end_writing(enum kind k, int wfd)
{
    if (k == K_PIPE)
        ASSERT_OK(close(wfd));
    else
        ASSERT_OK(shutdown(wfd, SHUT_WR));
}

/* Read fd with plain read(2) up to end of file (waiting with poll on an
 * O_NONBLOCK fd), appending to buf[*len..cap). */
static void drain_to_eof(int fd, unsigned char *buf, size_t *len, size_t cap)
{
    for (;;) {
        unsigned char tmp[8192];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, -1);
            continue;
        }
        ASSERT_GE(r, 0);
        if (r == 0)
            return;
        if ((size_t)r > cap - *len)
            harness_fail(__FILE__, __LINE__,
                         "more bytes came than were written (%zu + %zd > "
                         "%zu)",
                         *len, r, cap);
        memcpy(buf + *len, tmp, (size_t)r);
        *len += (size_t)r;
    }
}

static void assert_same_bytes(const unsigned char *want, size_t nwant,
                              const unsigned char *got, size_t ngot, long round)
{
    if (ngot != nwant)
        harness_fail(__FILE__, __LINE__,
                     "round %ld: %zu bytes written, %zu bytes seen", round,
                     nwant, ngot);
    for (size_t i = 0; i < nwant; i++)
        if (want[i] != got[i])
            harness_fail(__FILE__, __LINE__,
                         "round %ld: byte %zu of %zu differs (%u vs %u): a "
                         "gap, duplicate or reordering",
                         round, i, nwant, want[i], got[i]);
}

/* ---- reading rounds ----------------------------------------------------- */

enum rop { OP_READ, OP_RECV, OP_READ_FULL };

#define RMAX 16384 /* at most this many bytes per round: fits every buffer */

struct rrace {
    enum kind kind;
    enum rop op;
    bool nonblock; /* the reader's fd is O_NONBLOCK */
    bool timeouts; /* calls carry short real timeouts */
    long rounds;

    pthread_barrier_t start, end;
    bool quit;
    int fds[2];
    cancel_source *src;
    uint64_t wseed, cseed;
    /* >= 0: the writer cancels right after writing that chunk (the cancel
     * then lands while the reader wakes up for the data); -1: the
     * canceler thread cancels at a random moment. */
    int cancel_after_chunk;
    size_t nwrite;            /* this round's byte count */
    unsigned char want[RMAX]; /* this round's bytes */
    unsigned char got[RMAX + 8192];

    /* What happened, for the log. */
    long canceled_with_data_left, timeouts_seen, short_counts;
};

static void *rrace_writer(void *arg)
{
    struct rrace *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->quit)
            return NULL;
        uint64_t s = r->wseed;
        size_t off = 0;
        int chunks = 0;
        while (off < r->nwrite) {
            jitter(&s, 4000);
            size_t chunk = 1 + below(&s, 3000);
            if (chunk > r->nwrite - off)
                chunk = r->nwrite - off;
            ssize_t w = write(r->fds[1], r->want + off, chunk);
            ASSERT_GT(w, 0);
            off += (size_t)w;
            if (chunks++ == r->cancel_after_chunk)
                ASSERT_OK(cancel_source_cancel(r->src));
        }
        if (chunks <= r->cancel_after_chunk)
            ASSERT_OK(cancel_source_cancel(r->src));
        pthread_barrier_wait(&r->end);
    }
}

static void *rrace_canceler(void *arg)
{
    struct rrace *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->quit)
            return NULL;
        if (r->cancel_after_chunk < 0) {
            uint64_t s = r->cseed;
            unsigned n = below(&s, 6);
            for (unsigned i = 0; i < n; i++)
                jitter(&s, 6000);
            ASSERT_OK(cancel_source_cancel(r->src));
        }
        pthread_barrier_wait(&r->end);
    }
}

static void run_read_race(enum kind kind, enum rop op, bool nonblock,
                          bool timeouts, long rounds)
{
    static struct rrace r; /* big buffers: not on the stack */
    memset(&r, 0, sizeof(r));
    r.kind = kind;
    r.op = op;
    r.nonblock = nonblock;
    r.timeouts = timeouts;
    pthread_barrier_init(&r.start, NULL, 3);
    pthread_barrier_init(&r.end, NULL, 3);
    pthread_t w, c;
    ASSERT_OK(pthread_create(&w, NULL, rrace_writer, &r));
    ASSERT_OK(pthread_create(&c, NULL, rrace_canceler, &r));
    uint64_t seed = base_seed();

    for (long round = 0; round < rounds; round++) {
        open_pair(kind, r.fds, false);
        if (nonblock)
            set_nonblock(r.fds[0], true);
        int flags_before = fcntl(r.fds[0], F_GETFL);
        ASSERT_GE(flags_before, 0);
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        cancel_token t = cancel_source_token(r.src);
        r.nwrite = 1 + below(&seed, RMAX);
        for (size_t i = 0; i < r.nwrite; i++)
            r.want[i] = (unsigned char)rnd(&seed);
        r.wseed = rnd(&seed) | 1;
        r.cseed = rnd(&seed) | 1;
        r.cancel_after_chunk = below(&seed, 2) ? -1 : (int)below(&seed, 4);
        uint64_t s = rnd(&seed) | 1;
        cancel_throw(CANCEL_NONE); /* so that a recorded t is news */

        pthread_barrier_wait(&r.start);
        size_t len = 0;
        for (;;) {
            size_t want = 1 + below(&s, 4096);
            int64_t tmo = -1;
            if (timeouts)
                tmo = below(&s, 4) == 0 ? 0 : (int64_t)below(&s, 40) * US;
            ssize_t n;
            if (op == OP_READ_FULL) {
                size_t done = (size_t)-1;
                int e = cancel_read_full(r.fds[0], r.got + len, want, &done, t,
                                         tmo);
                ASSERT_LE(done, want);
                len += done;
                if (e == 0) {
                    /* No end of file: the writer's end is open. */
                    ASSERT_EQ(done, want);
                    continue;
                }
                ASSERT_LT(done, want);
                n = e;
            } else {
                n = op == OP_READ
                        ? cancel_read(r.fds[0], r.got + len, want, t, tmo)
                        : cancel_recv(r.fds[0], r.got + len, want, 0, t, tmo);
                if (n > 0) {
                    ASSERT_LE(n, (ssize_t)want);
                    r.short_counts += (size_t)n < want;
                    len += (size_t)n;
                    continue;
                }
            }
            if (n == -ETIMEDOUT && timeouts) {
                r.timeouts_seen++;
                ASSERT(cancel_token_equal(cancel_canceled_token(), t));
                cancel_throw(CANCEL_NONE);
                continue;
            }
            /* Not 0 (no end of file yet), not -EAGAIN on O_NONBLOCK. */
            ASSERT_ERR(n, -ECANCELED);
            ASSERT(cancel_token_equal(cancel_canceled_token(), t));
            break;
        }
        pthread_barrier_wait(&r.end);

        ASSERT_EQ(fcntl(r.fds[0], F_GETFL), flags_before);
        size_t before_drain = len;
        end_writing(kind, r.fds[1]);
        drain_to_eof(r.fds[0], r.got, &len, sizeof(r.got));
        r.canceled_with_data_left += len > before_drain;
        assert_same_bytes(r.want, r.nwrite, r.got, len, round);

        close_fast(r.fds[0], kind);
        if (kind != K_PIPE)
            close_fast(r.fds[1], kind);
        cancel_source_free(r.src);
    }

    r.quit = true;
    pthread_barrier_wait(&r.start);
    pthread_join(w, NULL);
    pthread_join(c, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.end);
    printf("%ld rounds: %ld canceled with data still queued, %ld short "
           "counts, %ld timeouts\n",
           rounds, r.canceled_with_data_left, r.short_counts, r.timeouts_seen);
}

/* ---- writing rounds ----------------------------------------------------- */

enum wop { OP_WRITE, OP_SEND, OP_WRITE_FULL };

#define WMAX (1024 * 1024)

struct wrace {
    pthread_barrier_t start, end;
    bool quit;
    int fds[2];
    cancel_source *src;
    uint64_t rseed, cseed;
    unsigned cancel_scale;
    /* >= 0: the reader cancels right after that read (the cancel then
     * lands while the writer wakes up for the room); -1: the canceler
     * thread cancels at a random moment. */
    int cancel_after_read;
    size_t nread;
    unsigned char *pattern; /* WMAX bytes */
    unsigned char *got;     /* WMAX bytes */
    long blocked_rounds;
    size_t total_sent;
};

static void *wrace_reader(void *arg)
{
    struct wrace *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->quit)
            return NULL;
        uint64_t s = r->rseed;
        size_t len = 0;
        int reads = 0;
        for (;;) {
            /* Slow and in small pieces, so that the writer fills the
             * buffer and blocks. */
            jitter(&s, 3000);
            size_t want = 1 + below(&s, 2048);
            if (want > WMAX - len)
                want = WMAX - len;
            ssize_t n = read(r->fds[0], r->got + len, want ? want : 1);
            ASSERT_GE(n, 0);
            if (reads++ == r->cancel_after_read)
                ASSERT_OK(cancel_source_cancel(r->src));
            if (n == 0)
                break;
            len += (size_t)n;
        }
        /* (The writer ends only after the cancel, and reads come long
         * before its pattern runs out: the cancel happened.) */
        r->nread = len;
        pthread_barrier_wait(&r->end);
    }
}

static void *wrace_canceler(void *arg)
{
    struct wrace *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->quit)
            return NULL;
        if (r->cancel_after_read < 0) {
            uint64_t s = r->cseed;
            unsigned n = below(&s, 10);
            for (unsigned i = 0; i < n; i++)
                jitter(&s, r->cancel_scale);
            ASSERT_OK(cancel_source_cancel(r->src));
        }
        pthread_barrier_wait(&r->end);
    }
}

static void run_write_race(enum kind kind, enum wop op, bool nonblock,
                           long rounds)
{
    /* A writer to a reader that is gone would die of SIGPIPE: never here,
     * the reader reads to end of file, but fail loudly rather than die. */
    signal(SIGPIPE, SIG_IGN);
    static struct wrace r;
    memset(&r, 0, sizeof(r));
    /* TCP takes more bytes before the writer blocks: cancel later. */
    r.cancel_scale = kind == K_TCP ? 40000 : 8000;
    r.pattern = malloc(WMAX);
    r.got = malloc(WMAX + 16);
    ASSERT_NOT_NULL(r.pattern);
    ASSERT_NOT_NULL(r.got);
    pthread_barrier_init(&r.start, NULL, 3);
    pthread_barrier_init(&r.end, NULL, 3);
    pthread_t rd, c;
    ASSERT_OK(pthread_create(&rd, NULL, wrace_reader, &r));
    ASSERT_OK(pthread_create(&c, NULL, wrace_canceler, &r));
    uint64_t seed = base_seed();
    for (size_t i = 0; i < WMAX; i++)
        r.pattern[i] = (unsigned char)rnd(&seed);

    for (long round = 0; round < rounds; round++) {
        open_pair(kind, r.fds, true);
        if (nonblock)
            set_nonblock(r.fds[1], true);
        int flags_before = fcntl(r.fds[1], F_GETFL);
        ASSERT_GE(flags_before, 0);
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        cancel_token t = cancel_source_token(r.src);
        /* Each round writes from a different place in the pattern. */
        size_t base = below(&seed, WMAX / 2);
        r.rseed = rnd(&seed) | 1;
        r.cseed = rnd(&seed) | 1;
        r.cancel_after_read = below(&seed, 2) ? -1 : (int)below(&seed, 24);
        uint64_t s = rnd(&seed) | 1;
        cancel_throw(CANCEL_NONE);

        pthread_barrier_wait(&r.start);
        size_t sent = 0, limit = WMAX - base;
        bool blocked = false;
        for (;;) {
            size_t want = 1 + below(&s, 32768);
            if (want > limit - sent)
                want = limit - sent;
            if (want == 0) {
                /* The pattern is used up: wait for the cancel. */
                ASSERT_ERR(cancel_wait(t, -1), -ECANCELED);
                break;
            }
            const unsigned char *p = r.pattern + base + sent;
            ssize_t n;
            if (op == OP_WRITE_FULL) {
                size_t done = (size_t)-1;
                int e = cancel_write_full(r.fds[1], p, want, &done, t, -1);
                ASSERT_LE(done, want);
                sent += done;
                if (e == 0) {
                    ASSERT_EQ(done, want);
                    continue;
                }
                ASSERT_LT(done, want);
                blocked |= done > 0;
                n = e;
            } else {
                n = op == OP_WRITE ? cancel_write(r.fds[1], p, want, t, -1)
                                   : cancel_send(r.fds[1], p, want, 0, t, -1);
                if (n > 0) {
                    ASSERT_LE(n, (ssize_t)want);
                    blocked |= (size_t)n < want;
                    sent += (size_t)n;
                    continue;
                }
            }
            /* Not 0, not -EAGAIN on O_NONBLOCK: only the cancel ends it. */
            ASSERT_ERR(n, -ECANCELED);
            ASSERT(cancel_token_equal(cancel_canceled_token(), t));
            break;
        }
        ASSERT_EQ(fcntl(r.fds[1], F_GETFL), flags_before);
        end_writing(kind, r.fds[1]);
        pthread_barrier_wait(&r.end);
        r.blocked_rounds += blocked;
        r.total_sent += sent;

        assert_same_bytes(r.pattern + base, sent, r.got, r.nread, round);
        close_fast(r.fds[0], kind);
        if (kind != K_PIPE)
            close_fast(r.fds[1], kind);
        cancel_source_free(r.src);
    }

    r.quit = true;
    pthread_barrier_wait(&r.start);
    pthread_join(rd, NULL);
    pthread_join(c, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.end);
    free(r.pattern);
    free(r.got);
    printf("%ld rounds, %ld with a short count (the buffer was full), "
           "%zu bytes per round\n",
           rounds, r.blocked_rounds, r.total_sent / (size_t)rounds);
}

/* ---- pipes -------------------------------------------------------------- */

TEST(race_pipe_read)
{
    run_read_race(K_PIPE, OP_READ, false, false, harness_scale(5000));
}

TEST(race_pipe_read_nonblocking_fd)
{
    run_read_race(K_PIPE, OP_READ, true, false, harness_scale(5000));
}

TEST(race_pipe_read_full)
{
    run_read_race(K_PIPE, OP_READ_FULL, false, false, harness_scale(5000));
}

TEST(race_pipe_read_full_nonblocking_fd)
{
    run_read_race(K_PIPE, OP_READ_FULL, true, false, harness_scale(5000));
}

TEST(race_pipe_read_timeouts)
{
    run_read_race(K_PIPE, OP_READ, false, true, harness_scale(5000));
}

TEST(race_pipe_read_full_timeouts)
{
    run_read_race(K_PIPE, OP_READ_FULL, true, true, harness_scale(5000));
}

TEST(race_pipe_write)
{
    run_write_race(K_PIPE, OP_WRITE, false, harness_scale(3000));
}

TEST(race_pipe_write_nonblocking_fd)
{
    run_write_race(K_PIPE, OP_WRITE, true, harness_scale(3000));
}

TEST(race_pipe_write_full)
{
    run_write_race(K_PIPE, OP_WRITE_FULL, false, harness_scale(3000));
}

TEST(race_pipe_write_full_nonblocking_fd)
{
    run_write_race(K_PIPE, OP_WRITE_FULL, true, harness_scale(3000));
}

/* ---- socketpairs -------------------------------------------------------- */

TEST(race_sockpair_read)
{
    run_read_race(K_SOCKPAIR, OP_READ, false, false, harness_scale(5000));
}

TEST(race_sockpair_recv)
{
    run_read_race(K_SOCKPAIR, OP_RECV, false, false, harness_scale(5000));
}

TEST(race_sockpair_recv_nonblocking_fd)
{
    run_read_race(K_SOCKPAIR, OP_RECV, true, false, harness_scale(5000));
}

TEST(race_sockpair_read_full)
{
    run_read_race(K_SOCKPAIR, OP_READ_FULL, false, false, harness_scale(5000));
}

TEST(race_sockpair_recv_timeouts)
{
    run_read_race(K_SOCKPAIR, OP_RECV, true, true, harness_scale(5000));
}

TEST(race_sockpair_write)
{
    run_write_race(K_SOCKPAIR, OP_WRITE, false, harness_scale(3000));
}

TEST(race_sockpair_send)
{
    run_write_race(K_SOCKPAIR, OP_SEND, false, harness_scale(3000));
}

TEST(race_sockpair_send_nonblocking_fd)
{
    run_write_race(K_SOCKPAIR, OP_SEND, true, harness_scale(3000));
}

TEST(race_sockpair_write_full)
{
    run_write_race(K_SOCKPAIR, OP_WRITE_FULL, false, harness_scale(3000));
}

/* ---- TCP on 127.0.0.1 --------------------------------------------------- */

TEST(race_tcp_read)
{
    run_read_race(K_TCP, OP_READ, false, false, harness_scale(3000));
}

TEST(race_tcp_recv_nonblocking_fd)
{
    run_read_race(K_TCP, OP_RECV, true, false, harness_scale(3000));
}

TEST(race_tcp_read_full)
{
    run_read_race(K_TCP, OP_READ_FULL, false, false, harness_scale(3000));
}

TEST(race_tcp_recv_timeouts)
{
    run_read_race(K_TCP, OP_RECV, false, true, harness_scale(3000));
}

TEST(race_tcp_send)
{
    run_write_race(K_TCP, OP_SEND, false, harness_scale(2000));
}

TEST(race_tcp_write_nonblocking_fd)
{
    run_write_race(K_TCP, OP_WRITE, true, harness_scale(2000));
}

TEST(race_tcp_write_full)
{
    run_write_race(K_TCP, OP_WRITE_FULL, false, harness_scale(2000));
}
