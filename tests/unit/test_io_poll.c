/* cancel_poll: poll(2) plus a token and a timeout.  It returns the number
 * of entries with revents set and fills revents as poll(2) does (POLLIN,
 * POLLOUT, POLLHUP, POLLNVAL, 0 for a negative fd), 0 on timeout, and
 * -ECANCELED on cancellation - on entry, or while blocked.
 *
 * A test acts on a blocked call once its thread sleeps (state S in /proc):
 * a gate, not a sleep. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

#define MAXF 80

struct pcall {
    pthread_t th;
    struct pollfd fds[MAXF];
    nfds_t n;
    cancel_token t;
    int64_t timeout;
    _Atomic pid_t tid;
    atomic_bool done;
    int result;
    cancel_token recorded;
};

static void *pcall_main(void *arg)
{
    struct pcall *c = arg;
    atomic_store(&c->tid, harness_gettid());
    cancel_throw(CANCEL_NONE);
    c->result = cancel_poll(c->n ? c->fds : NULL, c->n, c->t, c->timeout);
    c->recorded = cancel_canceled_token();
    atomic_store(&c->done, true);
    return NULL;
}

static void wait_asleep(struct pcall *c)
{
    while (!harness_thread_asleep(atomic_load(&c->tid)) &&
           !atomic_load(&c->done))
        sched_yield();
}

static void pcall_start_blocked(struct pcall *c)
{
    atomic_store(&c->tid, 0);
    atomic_store(&c->done, false);
    ASSERT_OK(pthread_create(&c->th, NULL, pcall_main, c));
    while (atomic_load(&c->tid) == 0)
        sched_yield();
    wait_asleep(c);
}

static int pcall_join(struct pcall *c)
{
    ASSERT_OK(pthread_join(c->th, NULL));
    return c->result;
}

/* poll(2) with timeout 0 on a copy: the reference result. */
static int reference(const struct pollfd *fds, nfds_t n, struct pollfd *out)
{
    memcpy(out, fds, n * sizeof(*fds));
    int r = poll(out, n, 0);
    ASSERT_GE(r, 0);
    return r;
}

/* ---- what is ready ------------------------------------------------------ */

TEST(poll_counts_ready_entries)
{
    int a[2], b[2], c[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    ASSERT_OK(pipe2(b, O_CLOEXEC));
    ASSERT_OK(pipe2(c, O_CLOEXEC));
    ASSERT_EQ(write(a[1], "x", 1), 1);
    ASSERT_EQ(write(c[1], "x", 1), 1);
    cancel_source *src = cancel_source_new();
    struct pollfd fds[3] = {
        {a[0], POLLIN, 0}, {b[0], POLLIN, 0}, {c[0], POLLIN, 0}};
    ASSERT_EQ(cancel_poll(fds, 3, cancel_source_token(src), -1), 2);
    ASSERT_EQ(fds[0].revents, POLLIN);
    ASSERT_EQ(fds[1].revents, 0);
    ASSERT_EQ(fds[2].revents, POLLIN);
    /* The same with a timeout and with CANCEL_NONE. */
    ASSERT_EQ(cancel_poll(fds, 3, CANCEL_NONE, SEC), 2);
    /* Polling reads nothing. */
    char x;
    ASSERT_EQ(read(a[0], &x, 1), 1);
    ASSERT_EQ(read(c[0], &x, 1), 1);
    cancel_source_free(src);
    int *all[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        close(all[i][0]);
        close(all[i][1]);
    }
}

/* revents as poll(2) gives them, for every kind of entry at once. */
TEST(poll_revents_as_poll)
{
    int rd[2], hup[2], wr[2], sv[2];
    ASSERT_OK(pipe2(rd, O_CLOEXEC));
    ASSERT_OK(pipe2(hup, O_CLOEXEC));
    ASSERT_OK(pipe2(wr, O_CLOEXEC));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_EQ(write(rd[1], "x", 1), 1);
    close(hup[1]); /* reader of a closed pipe: POLLHUP */
    ASSERT_EQ(write(sv[1], "y", 1), 1);
    /* POLLNVAL: a closed fd, numbered high so that no fd the library
     * opens meanwhile (lowest number first) can take its place. */
    int closed = fcntl(rd[0], F_DUPFD_CLOEXEC, 900);
    ASSERT_GE(closed, 900);
    close(closed);
    struct pollfd fds[] = {
        {rd[0], POLLIN, 0},  {hup[0], POLLIN, 0},
        {wr[1], POLLOUT, 0}, {wr[0], POLLIN, 0}, /* nothing */
        {-1, POLLIN, 0},                         /* ignored */
        {closed, POLLIN, 0}, {sv[0], POLLIN | POLLOUT, 0},
        {rd[0], 0, 0}, /* no events asked */
    };
    nfds_t n = sizeof(fds) / sizeof(fds[0]);
    struct pollfd want[sizeof(fds) / sizeof(fds[0])];
    int expect = reference(fds, n, want);
    ASSERT_EQ(expect, 5);
    for (int round = 0; round < 3; round++) {
        cancel_source *src = cancel_source_new();
        for (nfds_t i = 0; i < n; i++)
            fds[i].revents = (short)0x5a5a; /* overwritten, as by poll */
        int64_t timeout = round == 0 ? -1 : round == 1 ? 0 : SEC;
        ASSERT_EQ(cancel_poll(fds, n, cancel_source_token(src), timeout),
                  expect);
        for (nfds_t i = 0; i < n; i++) {
            ASSERT_EQ(fds[i].fd, want[i].fd);
            ASSERT_EQ(fds[i].events, want[i].events);
            ASSERT_EQ(fds[i].revents, want[i].revents);
        }
        cancel_source_free(src);
    }
    ASSERT_EQ(want[1].revents & POLLHUP, POLLHUP);
    ASSERT_EQ(want[4].revents, 0);
    ASSERT_EQ(want[5].revents, POLLNVAL);
    close(rd[0]);
    close(rd[1]);
    close(hup[0]);
    close(wr[0]);
    close(wr[1]);
    close(sv[0]);
    close(sv[1]);
}

/* More entries than fit on the library's stack. */
TEST(poll_many_entries)
{
    int p[MAXF / 2][2];
    struct pollfd fds[MAXF];
    for (int i = 0; i < MAXF / 2; i++) {
        ASSERT_OK(pipe2(p[i], O_CLOEXEC));
        fds[2 * i] = (struct pollfd){p[i][0], POLLIN, 0};
        fds[2 * i + 1] = (struct pollfd){p[i][1], POLLOUT, 0};
        if (i % 3 == 0)
            ASSERT_EQ(write(p[i][1], "x", 1), 1);
    }
    int readable = (MAXF / 2 + 2) / 3;
    cancel_source *src = cancel_source_new();
    ASSERT_EQ(cancel_poll(fds, MAXF, cancel_source_token(src), -1),
              MAXF / 2 + readable);
    for (int i = 0; i < MAXF / 2; i++) {
        ASSERT_EQ(fds[2 * i].revents, i % 3 == 0 ? POLLIN : 0);
        ASSERT_EQ(fds[2 * i + 1].revents, POLLOUT);
    }
    cancel_source_free(src);
    for (int i = 0; i < MAXF / 2; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

/* ---- blocking ----------------------------------------------------------- */

TEST(poll_blocks_until_ready)
{
    int a[2], b[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    ASSERT_OK(pipe2(b, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    static struct pcall c;
    memset(&c, 0, sizeof(c));
    c.fds[0] = (struct pollfd){a[0], POLLIN, 0};
    c.fds[1] = (struct pollfd){b[0], POLLIN, 0};
    c.n = 2;
    c.t = cancel_source_token(src);
    c.timeout = -1;
    pcall_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_EQ(write(b[1], "x", 1), 1);
    ASSERT_EQ(pcall_join(&c), 1);
    ASSERT_EQ(c.fds[0].revents, 0);
    ASSERT_EQ(c.fds[1].revents, POLLIN);
    ASSERT_FALSE(cancel_requested(c.t));
    cancel_source_free(src);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

TEST(poll_blocks_until_hangup)
{
    int a[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    static struct pcall c;
    memset(&c, 0, sizeof(c));
    c.fds[0] = (struct pollfd){a[0], POLLIN, 0};
    c.n = 1;
    c.t = CANCEL_NONE;
    c.timeout = -1;
    pcall_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    close(a[1]);
    ASSERT_EQ(pcall_join(&c), 1);
    ASSERT_EQ(c.fds[0].revents, POLLHUP);
    close(a[0]);
}

static void poll_canceled_while_blocked(nfds_t n, int64_t timeout)
{
    int a[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    static struct pcall c;
    memset(&c, 0, sizeof(c));
    c.fds[0] = (struct pollfd){a[0], POLLIN, 0};
    c.n = n;
    c.t = cancel_source_token(src);
    c.timeout = timeout;
    pcall_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(pcall_join(&c), -ECANCELED);
    ASSERT(cancel_token_equal(c.recorded, c.t));
    cancel_source_free(src);
    close(a[0]);
    close(a[1]);
}

TEST(poll_canceled_while_blocked)
{
    poll_canceled_while_blocked(1, -1);
}

TEST(poll_canceled_while_blocked_with_timeout)
{
    poll_canceled_while_blocked(1, 3600 * SEC);
}

TEST(poll_canceled_while_blocked_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    poll_canceled_while_blocked(1, 10 * SEC);
    harness_manual_clock_done(clk);
}

/* No entries: cancel_poll is a cancellable sleep. */
TEST(poll_no_entries_canceled_while_blocked)
{
    poll_canceled_while_blocked(0, -1);
}

TEST(poll_no_entries_timeout)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    static struct pcall c;
    memset(&c, 0, sizeof(c));
    c.n = 0;
    c.t = cancel_source_token(src);
    c.timeout = 5 * SEC;
    pcall_start_blocked(&c);
    ASSERT_OK(cancel_clock_advance(clk, 5 * SEC - 1));
    ASSERT_FALSE(atomic_load(&c.done));
    while (!atomic_load(&c.done)) {
        ASSERT_OK(cancel_clock_advance(clk, 1));
        wait_asleep(&c);
    }
    ASSERT_EQ(pcall_join(&c), 0);
    ASSERT_OK(cancel_poll(NULL, 0, CANCEL_NONE, 0));
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

/* A timeout leaves every revents 0, whatever was in them before. */
TEST(poll_timeout_clears_revents)
{
    int a[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    struct pollfd f[2] = {{a[0], POLLIN, 0x7f}, {a[0], POLLPRI, 0x11}};
    ASSERT_EQ(cancel_poll(f, 2, CANCEL_NONE, 1000), 0);
    ASSERT_EQ(f[0].revents, 0);
    ASSERT_EQ(f[1].revents, 0);
    f[0].revents = 0x7f;
    cancel_clock *clk = harness_manual_clock();
    ASSERT_EQ(cancel_poll(f, 2, CANCEL_NONE, 0), 0);
    ASSERT_EQ(f[0].revents, 0);
    harness_manual_clock_done(clk);
    close(a[0]);
    close(a[1]);
}

/* A short real timeout expires: 0. */
TEST(poll_real_timeout)
{
    int a[2];
    ASSERT_OK(pipe2(a, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    struct pollfd f = {a[0], POLLIN, 0};
    ASSERT_EQ(cancel_poll(&f, 1, cancel_source_token(src), 2000000), 0);
    ASSERT_EQ(f.revents, 0);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    close(a[0]);
    close(a[1]);
}

/* The token's own wait handle in the set: it is an fd like any other. */
TEST(poll_on_token_fd)
{
    cancel_source *src = cancel_source_new();
    cancel_source *other = cancel_source_new();
    int tfd = cancel_token_fd(cancel_source_token(other));
    ASSERT_GE(tfd, 0);
    static struct pcall c;
    memset(&c, 0, sizeof(c));
    c.fds[0] = (struct pollfd){tfd, POLLIN, 0};
    c.n = 1;
    c.t = cancel_source_token(src);
    c.timeout = -1;
    pcall_start_blocked(&c);
    ASSERT_FALSE(atomic_load(&c.done));
    ASSERT_OK(cancel_source_cancel(other));
    ASSERT_EQ(pcall_join(&c), 1);
    ASSERT_EQ(c.fds[0].revents, POLLIN);
    cancel_source_free(other);
    cancel_source_free(src);
}
