/* Stress of the I/O layer's first promise: no data is lost.
 *
 * Several groups of threads run at once, each on its own pipes and
 * socketpairs, round after round.  In a round one thread moves a known
 * random byte sequence with plain read(2)/write(2), the group's I/O thread
 * moves it the other way with a library call chosen at random
 * (cancel_read, cancel_recv, cancel_read_full; cancel_write, cancel_send,
 * cancel_write_full), on a blocking or an O_NONBLOCK fd, with or without
 * short real timeouts, and the round's token is canceled at a random
 * moment: by a third thread, or by the peer right after one of its writes
 * or reads, so that the cancel lands as the I/O thread wakes up.  Afterwards:
 *   - reading rounds: what the calls returned, then what was still in the
 *     fd, is exactly what was written (no gap, no duplicate);
 *   - writing rounds: what the reader got is exactly the bytes whose
 *     counts the calls reported (*done for the _full call);
 *   - the fd's flags are unchanged, no call returned -EAGAIN or 0 early,
 *     and every -ECANCELED/-ETIMEDOUT recorded the round's token.
 *
 * A second test shares one token among several readers and writers on
 * different fds: one cancel ends them all, and each stream is still exact.
 *
 * Rounds meet at barriers; nothing sleeps.  CANCEL_TEST_SEED replays a run;
 * CANCEL_TEST_SCALE multiplies the rounds. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define US ((int64_t)1000)

/* ---- randomness --------------------------------------------------------- */

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
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5712e55105ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* ---- fds ---------------------------------------------------------------- */

static void open_pair(bool pipe_kind, int fds[2], bool small)
{
    if (pipe_kind) {
        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        if (small)
            ASSERT_GE(fcntl(fds[1], F_SETPIPE_SZ, 4096), 4096);
        return;
    }
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
    if (small) {
        int sz = 4096;
        for (int i = 0; i < 2; i++) {
            setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
            setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        }
    }
}

static void set_nonblock(int fd)
{
    ASSERT_OK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
}

static void end_writing(bool pipe_kind, int wfd)
{
    if (pipe_kind)
        ASSERT_OK(close(wfd));
    else
        ASSERT_OK(shutdown(wfd, SHUT_WR));
}

/* Plain read(2) up to end of file, appending to buf[*len..cap). */
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
            harness_fail(__FILE__, __LINE__, "more bytes than written");
        memcpy(buf + *len, tmp, (size_t)r);
        *len += (size_t)r;
    }
}

static void assert_same(const unsigned char *want, size_t nwant,
                        const unsigned char *got, size_t ngot, const char *what,
                        long round)
{
    if (ngot != nwant)
        harness_fail(__FILE__, __LINE__,
                     "%s round %ld: %zu bytes moved, %zu bytes seen", what,
                     round, nwant, ngot);
    if (memcmp(want, got, nwant) != 0) {
        size_t i = 0;
        while (want[i] == got[i])
            i++;
        harness_fail(__FILE__, __LINE__,
                     "%s round %ld: byte %zu of %zu differs: a gap, "
                     "duplicate or reordering",
                     what, round, i, nwant);
    }
}

/* ---- one group ---------------------------------------------------------- */

#define RMAX 16384
#define WMAX (512 * 1024)

struct group {
    int id;
    long rounds;
    uint64_t seed;
    pthread_t io, peer, canceler;
    pthread_barrier_t start, end;
    bool quit;

    /* The round. */
    bool pipe_kind, reading, nonblock, timeouts;
    int op; /* 0: read/write, 1: recv/send, 2: _full */
    int fds[2];
    cancel_source *src;
    uint64_t pseed, cseed;
    /* >= 0: the peer cancels right after that write or read, so that the
     * cancel lands while the I/O thread wakes up; -1: the canceler does. */
    int cancel_after;
    size_t nwrite; /* reading: bytes the peer writes */
    size_t nread;  /* writing: bytes the peer read */
    unsigned char *want, *got;

    /* For the log. */
    long calls, canceled, timed_out, short_counts;
};

/* The peer: in reading rounds it writes r->want[0..nwrite) in random
 * chunks; in writing rounds it reads to end of file, slowly. */
static void *peer_main(void *arg)
{
    struct group *g = arg;
    for (;;) {
        pthread_barrier_wait(&g->start);
        if (g->quit)
            return NULL;
        uint64_t s = g->pseed;
        int ops = 0;
        if (g->reading) {
            size_t off = 0;
            while (off < g->nwrite) {
                jitter(&s, 4000);
                size_t chunk = 1 + below(&s, 3000);
                if (chunk > g->nwrite - off)
                    chunk = g->nwrite - off;
                ssize_t w = write(g->fds[1], g->want + off, chunk);
                ASSERT_GT(w, 0);
                off += (size_t)w;
                if (ops++ == g->cancel_after)
                    ASSERT_OK(cancel_source_cancel(g->src));
            }
            if (ops <= g->cancel_after)
                ASSERT_OK(cancel_source_cancel(g->src));
        } else {
            size_t len = 0;
            for (;;) {
                jitter(&s, 3000);
                size_t want = 1 + below(&s, 2048);
                if (want > WMAX - len)
                    want = WMAX - len;
                ssize_t n = read(g->fds[0], g->got + len, want ? want : 1);
                ASSERT_GE(n, 0);
                /* The writer stops only after the cancel, long after this
                 * many reads: the cancel comes. */
                if (ops++ == g->cancel_after)
                    ASSERT_OK(cancel_source_cancel(g->src));
                if (n == 0)
                    break;
                len += (size_t)n;
            }
            g->nread = len;
        }
        pthread_barrier_wait(&g->end);
    }
}

static void *canceler_main(void *arg)
{
    struct group *g = arg;
    for (;;) {
        pthread_barrier_wait(&g->start);
        if (g->quit)
            return NULL;
        if (g->cancel_after < 0) {
            uint64_t s = g->cseed;
            unsigned n = below(&s, 8);
            for (unsigned i = 0; i < n; i++)
                jitter(&s, 8000);
            ASSERT_OK(cancel_source_cancel(g->src));
        }
        pthread_barrier_wait(&g->end);
    }
}

static void read_round(struct group *g, uint64_t *s, cancel_token t)
{
    int fd = g->fds[0];
    size_t len = 0;
    for (;;) {
        size_t want = 1 + below(s, 4096);
        int64_t tmo = -1;
        if (g->timeouts)
            tmo = below(s, 4) == 0 ? 0 : (int64_t)below(s, 40) * US;
        ssize_t n;
        g->calls++;
        if (g->op == 2) {
            size_t done = (size_t)-1;
            int e = cancel_read_full(fd, g->got + len, want, &done, t, tmo);
            ASSERT_LE(done, want);
            len += done;
            if (e == 0) {
                ASSERT_EQ(done, want);
                continue;
            }
            ASSERT_LT(done, want);
            n = e;
        } else {
            n = g->op == 0 ? cancel_read(fd, g->got + len, want, t, tmo)
                           : cancel_recv(fd, g->got + len, want, 0, t, tmo);
            if (n > 0) {
                g->short_counts += (size_t)n < want;
                len += (size_t)n;
                continue;
            }
        }
        /* Not 0 (the writer's end is open), not -EAGAIN (O_NONBLOCK). */
        if (n != -ETIMEDOUT || !g->timeouts)
            ASSERT_ERR(n, -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        cancel_throw(CANCEL_NONE);
        if (n == -ETIMEDOUT) {
            g->timed_out++;
            continue;
        }
        g->canceled++;
        break;
    }
    g->nread = len;
}

static size_t write_round(struct group *g, uint64_t *s, cancel_token t,
                          const unsigned char *pattern, size_t limit)
{
    int fd = g->fds[1];
    size_t sent = 0;
    for (;;) {
        size_t want = 1 + below(s, 32768);
        if (want > limit - sent)
            want = limit - sent;
        if (want == 0) {
            /* The pattern is used up: the round ends with the cancel. */
            ASSERT_ERR(cancel_wait(t, -1), -ECANCELED);
            cancel_throw(CANCEL_NONE);
            g->canceled++;
            return sent;
        }
        ssize_t n;
        g->calls++;
        if (g->op == 2) {
            size_t done = (size_t)-1;
            int e = cancel_write_full(fd, pattern + sent, want, &done, t, -1);
            ASSERT_LE(done, want);
            sent += done;
            if (e == 0) {
                ASSERT_EQ(done, want);
                continue;
            }
            ASSERT_LT(done, want);
            n = e;
        } else {
            n = g->op == 0 ? cancel_write(fd, pattern + sent, want, t, -1)
                           : cancel_send(fd, pattern + sent, want, 0, t, -1);
            if (n > 0) {
                g->short_counts += (size_t)n < want;
                sent += (size_t)n;
                continue;
            }
        }
        ASSERT_ERR(n, -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        cancel_throw(CANCEL_NONE);
        g->canceled++;
        return sent;
    }
}

static void *group_main(void *arg)
{
    struct group *g = arg;
    uint64_t seed = g->seed;
    unsigned char *pattern = malloc(WMAX);
    unsigned char *got = malloc(WMAX + 8192);
    ASSERT_NOT_NULL(pattern);
    ASSERT_NOT_NULL(got);
    for (size_t i = 0; i < WMAX; i++)
        pattern[i] = (unsigned char)rnd(&seed);
    g->got = got;

    for (long round = 0; round < g->rounds; round++) {
        g->pipe_kind = below(&seed, 2) == 0;
        g->reading = below(&seed, 2) == 0;
        g->nonblock = below(&seed, 2) == 0;
        g->timeouts = g->reading && below(&seed, 3) == 0;
        g->op = (int)below(&seed, 3);
        if (g->op == 1 && g->pipe_kind)
            g->op = 0; /* recv/send need a socket */
        open_pair(g->pipe_kind, g->fds, !g->reading);
        int iofd = g->reading ? g->fds[0] : g->fds[1];
        if (g->nonblock)
            set_nonblock(iofd);
        int flags = fcntl(iofd, F_GETFL);
        g->src = cancel_source_new();
        ASSERT_NOT_NULL(g->src);
        cancel_token t = cancel_source_token(g->src);
        size_t base = 0;
        if (g->reading) {
            g->nwrite = 1 + below(&seed, RMAX);
            base = below(&seed, WMAX - RMAX);
            g->want = pattern + base;
        } else {
            base = below(&seed, WMAX / 2);
        }
        g->pseed = rnd(&seed) | 1;
        g->cseed = rnd(&seed) | 1;
        g->cancel_after = below(&seed, 2) ? -1 : (int)below(&seed, 16);
        uint64_t s = rnd(&seed) | 1;
        cancel_throw(CANCEL_NONE);

        pthread_barrier_wait(&g->start);
        size_t sent = 0;
        if (g->reading)
            read_round(g, &s, t);
        else
            sent = write_round(g, &s, t, pattern + base, WMAX - base);
        ASSERT_EQ(fcntl(iofd, F_GETFL), flags);
        if (!g->reading)
            end_writing(g->pipe_kind, g->fds[1]);
        pthread_barrier_wait(&g->end);

        if (g->reading) {
            size_t len = g->nread;
            end_writing(g->pipe_kind, g->fds[1]);
            drain_to_eof(g->fds[0], got, &len, WMAX + 8192);
            assert_same(g->want, g->nwrite, got, len, "read", round);
        } else {
            assert_same(pattern + base, sent, got, g->nread, "write", round);
        }
        close(g->fds[0]);
        if (!g->pipe_kind)
            close(g->fds[1]);
        cancel_source_free(g->src);
    }
    g->quit = true;
    pthread_barrier_wait(&g->start);
    free(pattern);
    free(got);
    return NULL;
}

TEST(stress_io_races)
{
    signal(SIGPIPE, SIG_IGN);
    enum { GROUPS = 4 };
    static struct group g[GROUPS];
    uint64_t seed = base_seed();
    long rounds = harness_scale(36000);
    for (int i = 0; i < GROUPS; i++) {
        memset(&g[i], 0, sizeof(g[i]));
        g[i].id = i;
        g[i].rounds = rounds;
        g[i].seed = rnd(&seed) | 1;
        pthread_barrier_init(&g[i].start, NULL, 3);
        pthread_barrier_init(&g[i].end, NULL, 3);
        ASSERT_OK(pthread_create(&g[i].peer, NULL, peer_main, &g[i]));
        ASSERT_OK(pthread_create(&g[i].canceler, NULL, canceler_main, &g[i]));
        ASSERT_OK(pthread_create(&g[i].io, NULL, group_main, &g[i]));
    }
    long calls = 0, canceled = 0, timed_out = 0, shorts = 0;
    for (int i = 0; i < GROUPS; i++) {
        ASSERT_OK(pthread_join(g[i].io, NULL));
        ASSERT_OK(pthread_join(g[i].peer, NULL));
        ASSERT_OK(pthread_join(g[i].canceler, NULL));
        pthread_barrier_destroy(&g[i].start);
        pthread_barrier_destroy(&g[i].end);
        calls += g[i].calls;
        canceled += g[i].canceled;
        timed_out += g[i].timed_out;
        shorts += g[i].short_counts;
    }
    printf("%d groups x %ld rounds: %ld calls, %ld canceled, %ld timed out, "
           "%ld short counts\n",
           GROUPS, rounds, calls, canceled, timed_out, shorts);
    ASSERT_EQ(canceled, GROUPS * rounds); /* every round ended by its cancel */
}

/* ---- one token, many streams -------------------------------------------- */

#define STREAMS 4
#define SBYTES 8192

struct stream {
    int fds[2];
    bool pipe_kind;
    unsigned char want[SBYTES];
    unsigned char got[SBYTES + 8192];
    size_t len;
    uint64_t seed;
    cancel_token t;
    pthread_t reader, writer;
};

static void *stream_writer(void *arg)
{
    struct stream *st = arg;
    uint64_t s = st->seed;
    size_t off = 0;
    while (off < SBYTES) {
        jitter(&s, 3000);
        size_t chunk = 1 + below(&s, 2000);
        if (chunk > SBYTES - off)
            chunk = SBYTES - off;
        ssize_t w = write(st->fds[1], st->want + off, chunk);
        ASSERT_GT(w, 0);
        off += (size_t)w;
    }
    return NULL;
}

static void *stream_reader(void *arg)
{
    struct stream *st = arg;
    uint64_t s = st->seed * 3 + 1;
    st->len = 0;
    cancel_throw(CANCEL_NONE);
    for (;;) {
        size_t want = 1 + below(&s, 3000);
        ssize_t n;
        if (below(&s, 2)) {
            n = cancel_read(st->fds[0], st->got + st->len, want, st->t, -1);
            if (n > 0) {
                st->len += (size_t)n;
                continue;
            }
        } else {
            size_t done = 0;
            int e = cancel_read_full(st->fds[0], st->got + st->len, want, &done,
                                     st->t, -1);
            st->len += done;
            if (e == 0) {
                ASSERT_EQ(done, want);
                continue;
            }
            n = e;
        }
        ASSERT_ERR(n, -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(), st->t));
        return NULL;
    }
}

TEST(stress_io_one_token_many_streams)
{
    uint64_t seed = base_seed();
    long rounds = harness_scale(2500);
    static struct stream st[STREAMS];
    for (long round = 0; round < rounds; round++) {
        cancel_source *src = cancel_source_new();
        ASSERT_NOT_NULL(src);
        for (int i = 0; i < STREAMS; i++) {
            st[i].pipe_kind = i % 2 == 0;
            open_pair(st[i].pipe_kind, st[i].fds, false);
            if (below(&seed, 2))
                set_nonblock(st[i].fds[0]);
            for (size_t k = 0; k < SBYTES; k++)
                st[i].want[k] = (unsigned char)rnd(&seed);
            st[i].seed = rnd(&seed) | 1;
            st[i].t = cancel_source_token(src);
            ASSERT_OK(
                pthread_create(&st[i].writer, NULL, stream_writer, &st[i]));
            ASSERT_OK(
                pthread_create(&st[i].reader, NULL, stream_reader, &st[i]));
        }
        uint64_t s = rnd(&seed) | 1;
        unsigned n = below(&s, 8);
        for (unsigned i = 0; i < n; i++)
            jitter(&s, 10000);
        ASSERT_OK(cancel_source_cancel(src));
        for (int i = 0; i < STREAMS; i++) {
            ASSERT_OK(pthread_join(st[i].writer, NULL));
            ASSERT_OK(pthread_join(st[i].reader, NULL));
            size_t len = st[i].len;
            end_writing(st[i].pipe_kind, st[i].fds[1]);
            drain_to_eof(st[i].fds[0], st[i].got, &len, sizeof(st[i].got));
            assert_same(st[i].want, SBYTES, st[i].got, len, "shared", round);
            close(st[i].fds[0]);
            if (!st[i].pipe_kind)
                close(st[i].fds[1]);
        }
        cancel_source_free(src);
    }
    printf("%ld rounds of %d streams\n", rounds, STREAMS);
}
