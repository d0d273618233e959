/* cancel_read_full and cancel_write_full: *done is right on every return
 * path - all of it (0, *done == n), end of file first (0, *done < n),
 * canceled midway (-ECANCELED, *done = bytes moved), timed out midway
 * (-ETIMEDOUT, likewise; the timeout covers the whole transfer), a canceled
 * token on entry (-ECANCELED, 0), an error of the call (-EPIPE, -EBADF,
 * with the bytes moved before it) - and the bytes reported are exactly the
 * bytes moved.
 *
 * A test acts on a blocked call once its thread sleeps (state S in /proc)
 * and the bytes it could take are gone from the pipe: gates, not sleeps. */
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

#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

static size_t queued(int fd)
{
    int n = -1;
    ASSERT_OK(ioctl(fd, FIONREAD, &n));
    return (size_t)n;
}

#define BIG 20000

struct full {
    pthread_t th;
    bool write;
    int fd;
    unsigned char buf[BIG];
    size_t n;
    cancel_token t;
    int64_t timeout;
    _Atomic pid_t tid;
    atomic_bool finished;
    int result;
    size_t done;
    cancel_token recorded;
};

static void *full_main(void *arg)
{
    struct full *f = arg;
    atomic_store(&f->tid, harness_gettid());
    cancel_throw(CANCEL_NONE);
    f->done = (size_t)-1;
    f->result =
        f->write
            ? cancel_write_full(f->fd, f->buf, f->n, &f->done, f->t, f->timeout)
            : cancel_read_full(f->fd, f->buf, f->n, &f->done, f->t, f->timeout);
    f->recorded = cancel_canceled_token();
    atomic_store(&f->finished, true);
    return NULL;
}

/* Asleep, and the pipe shows it took (reader: nothing left queued) or
 * gave (writer: pipe full) what it could. */
static void wait_settled(struct full *f, int pipe_fd, size_t full_at)
{
    for (;;) {
        if (atomic_load(&f->finished))
            return;
        size_t q = queued(pipe_fd);
        bool settled = f->write ? q == full_at : q == 0;
        if (settled && harness_thread_asleep(atomic_load(&f->tid)))
            return;
        sched_yield();
    }
}

static void full_start(struct full *f)
{
    atomic_store(&f->tid, 0);
    atomic_store(&f->finished, false);
    ASSERT_OK(pthread_create(&f->th, NULL, full_main, f));
    while (atomic_load(&f->tid) == 0)
        sched_yield();
}

static int full_join(struct full *f)
{
    ASSERT_OK(pthread_join(f->th, NULL));
    return f->result;
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + seed);
}

/* A pipe with a one-page capacity. */
static size_t small_pipe(int p[2])
{
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_GE(fcntl(p[1], F_SETPIPE_SZ, 4096), 4096);
    return (size_t)fcntl(p[1], F_GETPIPE_SZ);
}

/* ---- read_full ---------------------------------------------------------- */

TEST(read_full_all_arrives_in_pieces)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = p[0];
    f.n = 1000;
    f.timeout = -1;
    full_start(&f);
    unsigned char want[1000];
    pattern(want, sizeof(want), 3);
    /* Three pieces, each after the reader took the previous one. */
    size_t cuts[] = {0, 1, 600, 1000};
    for (int i = 0; i < 3; i++) {
        wait_settled(&f, p[0], 0);
        ASSERT_FALSE(atomic_load(&f.finished));
        ASSERT_EQ(write(p[1], want + cuts[i], cuts[i + 1] - cuts[i]),
                  (ssize_t)(cuts[i + 1] - cuts[i]));
    }
    ASSERT_OK(full_join(&f));
    ASSERT_EQ(f.done, 1000);
    ASSERT_OK(memcmp(f.buf, want, 1000));
    close(p[0]);
    close(p[1]);
}

TEST(read_full_end_of_file_first)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "twelve bytes", 12), 12);
    close(p[1]);
    char buf[100];
    size_t done = 99;
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_read_full(p[0], buf, sizeof(buf), &done,
                               cancel_source_token(src), -1));
    ASSERT_EQ(done, 12);
    ASSERT_OK(memcmp(buf, "twelve bytes", 12));
    /* At end of file already: 0 and nothing. */
    ASSERT_OK(cancel_read_full(p[0], buf, sizeof(buf), &done,
                               cancel_source_token(src), -1));
    ASSERT_EQ(done, 0);
    cancel_source_free(src);
    close(p[0]);
}

TEST(read_full_end_of_file_while_blocked)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = p[0];
    f.n = 100;
    f.timeout = -1;
    ASSERT_EQ(write(p[1], "abc", 3), 3);
    full_start(&f);
    wait_settled(&f, p[0], 0);
    ASSERT_FALSE(atomic_load(&f.finished));
    close(p[1]);
    ASSERT_OK(full_join(&f));
    ASSERT_EQ(f.done, 3);
    ASSERT_OK(memcmp(f.buf, "abc", 3));
    close(p[0]);
}

TEST(read_full_canceled_midway)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = p[0];
    f.n = 100;
    f.t = cancel_source_token(src);
    f.timeout = -1;
    ASSERT_EQ(write(p[1], "0123456789", 10), 10);
    full_start(&f);
    wait_settled(&f, p[0], 0);
    ASSERT_FALSE(atomic_load(&f.finished));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(full_join(&f), -ECANCELED);
    ASSERT_EQ(f.done, 10);
    ASSERT_OK(memcmp(f.buf, "0123456789", 10));
    ASSERT(cancel_token_equal(f.recorded, f.t));
    /* What comes later is the caller's to read. */
    ASSERT_EQ(write(p[1], "more", 4), 4);
    char buf[8];
    ASSERT_EQ(read(p[0], buf, sizeof(buf)), 4);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(read_full_canceled_before_any_byte)
{
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = sv[0];
    f.n = 50;
    f.t = cancel_source_token(src);
    f.timeout = -1;
    full_start(&f);
    wait_settled(&f, sv[0], 0);
    ASSERT_FALSE(atomic_load(&f.finished));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(full_join(&f), -ECANCELED);
    ASSERT_EQ(f.done, 0);
    cancel_source_free(src);
    close(sv[0]);
    close(sv[1]);
}

TEST(read_full_timeout_midway)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = p[0];
    f.n = 100;
    f.t = cancel_source_token(src);
    f.timeout = 10 * SEC;
    ASSERT_EQ(write(p[1], "0123456789", 10), 10);
    full_start(&f);
    wait_settled(&f, p[0], 0);
    ASSERT_FALSE(atomic_load(&f.finished));
    ASSERT_OK(cancel_clock_advance(clk, 10 * SEC - 1));
    ASSERT_FALSE(atomic_load(&f.finished));
    while (!atomic_load(&f.finished)) {
        ASSERT_OK(cancel_clock_advance(clk, 1));
        wait_settled(&f, p[0], 0);
    }
    ASSERT_ERR(full_join(&f), -ETIMEDOUT);
    ASSERT_EQ(f.done, 10);
    ASSERT_OK(memcmp(f.buf, "0123456789", 10));
    ASSERT(cancel_token_equal(f.recorded, f.t));
    ASSERT_FALSE(cancel_requested(f.t));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

/* The timeout covers the whole transfer, not each piece: data that comes
 * midway does not restart it. */
TEST(read_full_timeout_covers_whole_transfer)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.fd = p[0];
    f.n = 100;
    f.t = cancel_source_token(src);
    f.timeout = 10 * SEC;
    full_start(&f);
    wait_settled(&f, p[0], 0);
    ASSERT_OK(cancel_clock_advance(clk, 6 * SEC));
    ASSERT_EQ(write(p[1], "first", 5), 5);
    wait_settled(&f, p[0], 0);
    ASSERT_FALSE(atomic_load(&f.finished));
    /* 12 s after the start: past the deadline, though only 6 s after the
     * last piece.  The advance woke the call (its deadline passed), so it
     * must end now instead of going back to sleep. */
    ASSERT_OK(cancel_clock_advance(clk, 6 * SEC));
    wait_settled(&f, p[0], 0);
    ASSERT_TRUE(atomic_load(&f.finished));
    ASSERT_ERR(full_join(&f), -ETIMEDOUT);
    ASSERT_EQ(f.done, 5);
    ASSERT_OK(memcmp(f.buf, "first", 5));
    ASSERT(cancel_token_equal(f.recorded, f.t));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

TEST(read_full_pre_canceled)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "abc", 3), 3);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    char buf[3];
    size_t done = 99;
    ASSERT_ERR(
        cancel_read_full(p[0], buf, 3, &done, cancel_source_token(src), -1),
        -ECANCELED);
    ASSERT_EQ(done, 0);
    ASSERT_EQ(queued(p[0]), 3);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(read_full_zero_bytes)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    char buf[1];
    size_t done = 99;
    ASSERT_OK(cancel_read_full(p[0], buf, 0, &done, CANCEL_NONE, -1));
    ASSERT_EQ(done, 0);
    ASSERT_OK(cancel_read_full(p[0], NULL, 0, &done, CANCEL_NONE, -1));
    ASSERT_EQ(done, 0);
    close(p[0]);
    close(p[1]);
}

TEST(read_full_done_may_be_null)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "abcd", 4), 4);
    char buf[4];
    ASSERT_OK(cancel_read_full(p[0], buf, 4, NULL, CANCEL_NONE, -1));
    ASSERT_OK(memcmp(buf, "abcd", 4));
    ASSERT_ERR(cancel_read_full(p[0], buf, 4, NULL, CANCEL_NONE, 0),
               -ETIMEDOUT);
    close(p[1]);
    ASSERT_OK(cancel_read_full(p[0], buf, 4, NULL, CANCEL_NONE, -1));
    close(p[0]);
}

TEST(read_full_error_reports_done)
{
    char buf[4];
    size_t done = 99;
    ASSERT_ERR(cancel_read_full(-1, buf, 4, &done, CANCEL_NONE, -1), -EBADF);
    ASSERT_EQ(done, 0);
}

/* ---- write_full --------------------------------------------------------- */

static void *drain_thread(void *arg)
{
    int fd = *(int *)arg;
    static unsigned char got[BIG];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, got + len, 1000);
        ASSERT_GE(r, 0);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    unsigned char want[BIG];
    pattern(want, BIG, 9);
    ASSERT_EQ(len, BIG);
    ASSERT_OK(memcmp(got, want, BIG));
    return NULL;
}

TEST(write_full_all_written)
{
    int p[2];
    small_pipe(p);
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, drain_thread, &p[0]));
    unsigned char buf[BIG];
    pattern(buf, BIG, 9);
    size_t done = 0;
    cancel_source *src = cancel_source_new();
    ASSERT_OK(
        cancel_write_full(p[1], buf, BIG, &done, cancel_source_token(src), -1));
    ASSERT_EQ(done, BIG);
    close(p[1]);
    ASSERT_OK(pthread_join(th, NULL));
    cancel_source_free(src);
    close(p[0]);
}

TEST(write_full_all_written_nonblocking_fd)
{
    int p[2];
    small_pipe(p);
    ASSERT_OK(fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, drain_thread, &p[0]));
    unsigned char buf[BIG];
    pattern(buf, BIG, 9);
    size_t done = 0;
    ASSERT_OK(cancel_write_full(p[1], buf, BIG, &done, CANCEL_NONE, -1));
    ASSERT_EQ(done, BIG);
    ASSERT(fcntl(p[1], F_GETFL) & O_NONBLOCK);
    close(p[1]);
    ASSERT_OK(pthread_join(th, NULL));
    close(p[0]);
}

static void write_full_stopped_midway(bool by_timeout, bool nonblock)
{
    cancel_clock *clk = by_timeout ? harness_manual_clock() : NULL;
    int p[2];
    size_t cap = small_pipe(p);
    if (nonblock)
        ASSERT_OK(fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK));
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.write = true;
    f.fd = p[1];
    f.n = BIG;
    pattern(f.buf, BIG, 5);
    f.t = cancel_source_token(src);
    f.timeout = by_timeout ? 3 * SEC : -1;
    full_start(&f);
    wait_settled(&f, p[0], cap);
    ASSERT_FALSE(atomic_load(&f.finished));
    if (by_timeout) {
        ASSERT_OK(cancel_clock_advance(clk, 3 * SEC - 1));
        ASSERT_FALSE(atomic_load(&f.finished));
        while (!atomic_load(&f.finished)) {
            ASSERT_OK(cancel_clock_advance(clk, 1));
            wait_settled(&f, p[0], cap);
        }
        ASSERT_ERR(full_join(&f), -ETIMEDOUT);
    } else {
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(full_join(&f), -ECANCELED);
    }
    ASSERT(cancel_token_equal(f.recorded, f.t));
    /* *done is what the pipe holds, byte for byte. */
    ASSERT_EQ(f.done, cap);
    ASSERT_EQ(queued(p[0]), cap);
    unsigned char got[8192];
    ASSERT_EQ(read(p[0], got, sizeof(got)), (ssize_t)cap);
    ASSERT_OK(memcmp(got, f.buf, cap));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
    if (clk != NULL)
        harness_manual_clock_done(clk);
}

TEST(write_full_canceled_midway)
{
    write_full_stopped_midway(false, false);
}

TEST(write_full_canceled_midway_nonblocking_fd)
{
    write_full_stopped_midway(false, true);
}

TEST(write_full_timeout_midway)
{
    write_full_stopped_midway(true, false);
}

TEST(write_full_timeout_midway_nonblocking_fd)
{
    write_full_stopped_midway(true, true);
}

/* Several pieces go through before the cancel: *done counts them all. */
TEST(write_full_canceled_after_pieces)
{
    int p[2];
    size_t cap = small_pipe(p);
    cancel_source *src = cancel_source_new();
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.write = true;
    f.fd = p[1];
    f.n = BIG;
    pattern(f.buf, BIG, 11);
    f.t = cancel_source_token(src);
    f.timeout = -1;
    full_start(&f);
    static unsigned char got[BIG];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        wait_settled(&f, p[0], cap);
        ASSERT_FALSE(atomic_load(&f.finished));
        ssize_t r = read(p[0], got + len, cap);
        ASSERT_EQ(r, (ssize_t)cap);
        len += (size_t)r;
    }
    wait_settled(&f, p[0], cap);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(full_join(&f), -ECANCELED);
    ASSERT_EQ(f.done, len + cap);
    ssize_t r = read(p[0], got + len, cap);
    ASSERT_EQ(r, (ssize_t)cap);
    len += (size_t)r;
    ASSERT_EQ(queued(p[0]), 0);
    ASSERT_OK(memcmp(got, f.buf, len));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(write_full_peer_closed_midway)
{
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    size_t cap = small_pipe(p);
    static struct full f;
    memset(&f, 0, sizeof(f));
    f.write = true;
    f.fd = p[1];
    f.n = BIG;
    f.t = CANCEL_NONE;
    f.timeout = -1;
    full_start(&f);
    wait_settled(&f, p[0], cap);
    ASSERT_FALSE(atomic_load(&f.finished));
    close(p[0]);
    ASSERT_ERR(full_join(&f), -EPIPE);
    ASSERT_EQ(f.done, cap);
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);
}

TEST(write_full_send_path_peer_closed)
{
    /* On a socket the whole write goes through send(2), which never
     * raises SIGPIPE for cancel_send - but cancel_write_full is write(2):
     * ignore the signal and see -EPIPE, with *done the bytes queued. */
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    close(sv[0]);
    size_t done = 99;
    ASSERT_ERR(cancel_write_full(sv[1], "abc", 3, &done, CANCEL_NONE, -1),
               -EPIPE);
    ASSERT_EQ(done, 0);
    close(sv[1]);
    signal(SIGPIPE, SIG_DFL);
}

TEST(write_full_pre_canceled)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    size_t done = 99;
    ASSERT_ERR(
        cancel_write_full(p[1], "abc", 3, &done, cancel_source_token(src), -1),
        -ECANCELED);
    ASSERT_EQ(done, 0);
    ASSERT_EQ(queued(p[0]), 0);
    /* NULL done is allowed on every path. */
    ASSERT_ERR(
        cancel_write_full(p[1], "abc", 3, NULL, cancel_source_token(src), -1),
        -ECANCELED);
    ASSERT_OK(cancel_write_full(p[1], "abc", 3, NULL, CANCEL_NONE, -1));
    ASSERT_EQ(queued(p[0]), 3);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(write_full_zero_bytes)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    size_t done = 99;
    ASSERT_OK(cancel_write_full(p[1], "x", 0, &done, CANCEL_NONE, -1));
    ASSERT_EQ(done, 0);
    ASSERT_OK(cancel_write_full(p[1], NULL, 0, &done, CANCEL_NONE, -1));
    ASSERT_EQ(done, 0);
    ASSERT_EQ(queued(p[0]), 0);
    close(p[0]);
    close(p[1]);
}

TEST(write_full_error_reports_done)
{
    size_t done = 99;
    ASSERT_ERR(cancel_write_full(-1, "abc", 3, &done, CANCEL_NONE, -1), -EBADF);
    ASSERT_EQ(done, 0);
}
