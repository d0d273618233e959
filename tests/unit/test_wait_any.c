/* Unit tests of cancel_wait_any (WaitHandle.WaitAny) over tokens, events,
 * semaphores and file descriptors.
 *
 * Time comes from a manual clock.  To act while another thread is blocked
 * in wait-any, a test spins until that thread is asleep in the kernel
 * (state S in /proc): the waiter raises `entered` right before the call,
 * and the first place inside wait-any that can sleep comes after it has
 * computed its deadline and hung itself on every item (so the events and
 * semaphores it waits on say -EBUSY to _destroy).  That is a gate, not a
 * sleep. */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)
#define MAX_ITEMS 48

/* ---- helpers ------------------------------------------------------------ */

struct waiter {
    harness_call call;
    cancel_waitable items[MAX_ITEMS];
    size_t n;
    int64_t timeout;
    cancel_token pre; /* recorded with cancel_throw before the wait */
};

static int waiter_wait(void *arg)
{
    struct waiter *w = arg;
    if (cancel_can_be_canceled(w->pre))
        cancel_throw(w->pre);
    return cancel_wait_any(w->items, w->n, w->timeout);
}

static void start_pre(struct waiter *w, const cancel_waitable *items, size_t n,
                      int64_t timeout, cancel_token pre)
{
    ASSERT_LE(n, MAX_ITEMS);
    memset(w, 0, sizeof(*w));
    memcpy(w->items, items, n * sizeof(*items));
    w->n = n;
    w->timeout = timeout;
    w->pre = pre;
    harness_call_start(&w->call, waiter_wait, w);
}

static void start(struct waiter *w, const cancel_waitable *items, size_t n,
                  int64_t timeout)
{
    start_pre(w, items, n, timeout, CANCEL_NONE);
}

static void await_blocked(struct waiter *w)
{
    harness_call_await_asleep(&w->call);
    ASSERT_FALSE(atomic_load(&w->call.done));
}

static bool fd_readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* ---- which index -------------------------------------------------------- */

/* F11: the lowest signaled index wins. */
TEST(any_returns_lowest_signaled_index)
{
    cancel_event e0, e2;
    ASSERT_OK(cancel_event_init(&e0, false));
    ASSERT_OK(cancel_event_init(&e2, true));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&e0),
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_EVENT(&e2),
    };
    ASSERT_EQ(cancel_wait_any(items, 3, CANCEL_INFINITE), 1);
    ASSERT_EQ(cancel_wait_any(items, 3, 0), 1);
    ASSERT_EQ(cancel_wait_any(items + 2, 1, 0), 0);
    ASSERT_OK(cancel_event_set(&e0));
    ASSERT_EQ(cancel_wait_any(items, 3, 0), 0);
    ASSERT_OK(cancel_event_destroy(&e0));
    ASSERT_OK(cancel_event_destroy(&e2));
    cancel_source_free(src);
}

TEST(any_takes_one_count_only_from_returned_semaphore)
{
    cancel_semaphore a, b;
    ASSERT_OK(cancel_semaphore_init(&a, 1, 5));
    ASSERT_OK(cancel_semaphore_init(&b, 2, 5));
    cancel_waitable items[] = {CANCEL_WAIT_SEM(&a), CANCEL_WAIT_SEM(&b)};
    ASSERT_EQ(cancel_wait_any(items, 2, 0), 0);
    ASSERT_EQ(cancel_semaphore_count(&a), 0);
    ASSERT_EQ(cancel_semaphore_count(&b), 2);
    ASSERT_EQ(cancel_wait_any(items, 2, 0), 1);
    ASSERT_EQ(cancel_semaphore_count(&a), 0);
    ASSERT_EQ(cancel_semaphore_count(&b), 1);
    ASSERT_EQ(cancel_wait_any(items, 2, CANCEL_INFINITE), 1);
    ASSERT_EQ(cancel_semaphore_count(&b), 0);
    ASSERT_ERR(cancel_wait_any(items, 2, 0), -ETIMEDOUT);
    ASSERT_EQ(cancel_semaphore_count(&a), 0);
    ASSERT_EQ(cancel_semaphore_count(&b), 0);
    ASSERT_OK(cancel_semaphore_destroy(&a));
    ASSERT_OK(cancel_semaphore_destroy(&b));
}

TEST(any_lower_token_leaves_semaphore_count)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 3, 3));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_SEM(&s),
    };
    ASSERT_EQ(cancel_wait_any(items, 2, CANCEL_INFINITE), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 3);
    /* The same semaphore twice: one count, for the first. */
    cancel_waitable twice[] = {CANCEL_WAIT_SEM(&s), CANCEL_WAIT_SEM(&s)};
    ASSERT_EQ(cancel_wait_any(twice, 2, 0), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 2);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

TEST(any_fd_items_on_entry)
{
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&ev), CANCEL_WAIT_FD(p[0], POLLIN),
        CANCEL_WAIT_FD(p[1], POLLOUT), /* writable at once */
    };
    ASSERT_EQ(cancel_wait_any(items, 3, 0), 2);
    ASSERT_ERR(cancel_wait_any(items, 2, 0), -ETIMEDOUT);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(cancel_wait_any(items, 3, 0), 1);
    ASSERT_EQ(cancel_wait_any(items, 2, CANCEL_INFINITE), 1);
    ASSERT_TRUE(fd_readable(p[0])); /* wait-any does not read the fd */
    ASSERT_OK(cancel_event_destroy(&ev));
    close(p[0]);
    close(p[1]);
}

/* ---- waking ------------------------------------------------------------- */

TEST(any_woken_by_token_cancel_without_recording_it)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *pre = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&ev),
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
    };
    struct waiter w;
    start_pre(&w, items, 2, CANCEL_INFINITE, cancel_source_token(pre));
    await_blocked(&w);
    ASSERT_ERR(cancel_event_destroy(&ev), -EBUSY);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(harness_call_finish(&w.call), 1);
    /* A token that fires is a result: the recorded token is unchanged. */
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, cancel_source_token(pre)));
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    cancel_source_free(pre);
}

TEST(any_canceled_token_on_entry_not_recorded)
{
    cancel_source *pre = cancel_source_new();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(cancel_throw(cancel_source_token(pre)), -ECANCELED);
    cancel_waitable items[] = {CANCEL_WAIT_TOKEN(cancel_source_token(src))};
    ASSERT_EQ(cancel_wait_any(items, 1, CANCEL_INFINITE), 0);
    ASSERT_TRUE(
        cancel_token_equal(cancel_canceled_token(), cancel_source_token(pre)));
    cancel_source_free(src);
    cancel_source_free(pre);
}

TEST(any_woken_by_event_set)
{
    cancel_event e0, e1;
    ASSERT_OK(cancel_event_init(&e0, false));
    ASSERT_OK(cancel_event_init(&e1, false));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_EVENT(&e0),
        CANCEL_WAIT_EVENT(&e1),
    };
    struct waiter w;
    start(&w, items, 3, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_event_destroy(&e0), -EBUSY);
    ASSERT_ERR(cancel_event_destroy(&e1), -EBUSY);
    ASSERT_OK(cancel_event_set(&e1));
    ASSERT_EQ(harness_call_finish(&w.call), 2);
    ASSERT_TRUE(cancel_event_is_set(&e1)); /* an event is not consumed */
    ASSERT_OK(cancel_event_destroy(&e0));  /* unhooked from both */
    ASSERT_OK(cancel_event_destroy(&e1));
    cancel_source_free(src);
}

TEST(any_woken_by_semaphore_release_takes_it)
{
    cancel_semaphore a, b;
    ASSERT_OK(cancel_semaphore_init(&a, 0, 5));
    ASSERT_OK(cancel_semaphore_init(&b, 0, 5));
    cancel_waitable items[] = {CANCEL_WAIT_SEM(&a), CANCEL_WAIT_SEM(&b)};
    struct waiter w;
    start(&w, items, 2, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_semaphore_destroy(&a), -EBUSY);
    ASSERT_EQ(cancel_semaphore_release(&b, 1), 0);
    ASSERT_EQ(harness_call_finish(&w.call), 1);
    ASSERT_EQ(cancel_semaphore_count(&a), 0);
    ASSERT_EQ(cancel_semaphore_count(&b), 0);
    ASSERT_OK(cancel_semaphore_destroy(&a));
    ASSERT_OK(cancel_semaphore_destroy(&b));
}

/* The semaphore's wake that wait-any consumed while returning another item
 * is passed on.  X waits on [token, sem], then Y on the sem alone (behind
 * X in its queue).  Canceling the token first runs a callback that
 * releases one count, which dequeues X's hook, then wakes X: X returns the
 * token's index without the count, which must go to Y. */
static cancel_semaphore *release_sem;

static void release_cb(void *arg)
{
    (void)arg;
    ASSERT_EQ(cancel_semaphore_release(release_sem, 1), 0);
}

TEST(any_passes_semaphore_wake_on_when_returning_other_item)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 5));
    release_sem = &s;
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_SEM(&s),
    };
    struct waiter x, y;
    start(&x, items, 2, CANCEL_INFINITE);
    await_blocked(&x);
    start(&y, items + 1, 1, CANCEL_INFINITE);
    await_blocked(&y);
    /* Registered after X's own registration: runs before it (LIFO). */
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &reg, release_cb, NULL));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(harness_call_finish(&x.call), 0);
    ASSERT_EQ(harness_call_finish(&y.call), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

/* The same when X gives up on its timeout. */
TEST(any_passes_semaphore_wake_on_when_timing_out)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 5));
    cancel_waitable items[] = {CANCEL_WAIT_SEM(&s)};
    struct waiter x, y;
    start(&x, items, 1, 10 * MS);
    await_blocked(&x);
    start(&y, items, 1, CANCEL_INFINITE);
    await_blocked(&y);
    ASSERT_OK(cancel_clock_advance(clk, 10 * MS));
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    int rx = harness_call_finish(&x.call);
    ASSERT_TRUE(rx == 0 || rx == -ETIMEDOUT);
    if (rx == -ETIMEDOUT) {
        ASSERT_EQ(harness_call_finish(&y.call), 0);
    } else {
        await_blocked(&y);
        ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
        ASSERT_EQ(harness_call_finish(&y.call), 0);
    }
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    harness_manual_clock_done(clk);
}

TEST(any_woken_by_fd_readiness)
{
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&ev),
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_FD(p[0], POLLIN),
    };
    struct waiter w;
    start(&w, items, 3, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_event_destroy(&ev), -EBUSY);
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(harness_call_finish(&w.call), 2);
    ASSERT_TRUE(fd_readable(p[0])); /* the byte is still there */
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

TEST(any_with_fds_woken_by_cancel_event_and_semaphore)
{
    int p[2];
    ASSERT_OK(pipe(p));
    for (int which = 0; which < 3; which++) {
        cancel_event ev;
        cancel_semaphore s;
        ASSERT_OK(cancel_event_init(&ev, false));
        ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
        cancel_source *src = cancel_source_new();
        cancel_waitable items[] = {
            CANCEL_WAIT_FD(p[0], POLLIN),
            CANCEL_WAIT_TOKEN(cancel_source_token(src)),
            CANCEL_WAIT_EVENT(&ev),
            CANCEL_WAIT_SEM(&s),
        };
        struct waiter w;
        start(&w, items, 4, CANCEL_INFINITE);
        await_blocked(&w);
        if (which == 0)
            ASSERT_OK(cancel_source_cancel(src));
        else if (which == 1)
            ASSERT_OK(cancel_event_set(&ev));
        else
            ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
        ASSERT_EQ(harness_call_finish(&w.call), which + 1);
        ASSERT_EQ(cancel_semaphore_count(&s), 0);
        ASSERT_OK(cancel_event_destroy(&ev));
        ASSERT_OK(cancel_semaphore_destroy(&s));
        cancel_source_free(src);
    }
    close(p[0]);
    close(p[1]);
}

TEST(any_token_fd_item)
{
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    cancel_waitable items[] = {CANCEL_WAIT_FD(fd, POLLIN)};
    ASSERT_ERR(cancel_wait_any(items, 1, 0), -ETIMEDOUT);
    struct waiter w;
    start(&w, items, 1, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(harness_call_finish(&w.call), 0);
    cancel_source_free(src);
}

TEST(any_pollhup_counts_as_signaled)
{
    int p[2];
    ASSERT_OK(pipe(p));
    /* POLLPRI never comes on a pipe: only the hang-up can end the wait. */
    cancel_waitable items[] = {CANCEL_WAIT_FD(p[0], POLLPRI)};
    ASSERT_ERR(cancel_wait_any(items, 1, 0), -ETIMEDOUT);
    struct waiter w;
    start(&w, items, 1, CANCEL_INFINITE);
    await_blocked(&w);
    close(p[1]); /* the peer goes away */
    ASSERT_EQ(harness_call_finish(&w.call), 0);
    ASSERT_EQ(cancel_wait_any(items, 1, 0), 0); /* and on entry */
    close(p[0]);
}

TEST(any_socket_peer_close_counts_as_signaled)
{
    int sv[2];
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    cancel_waitable items[] = {CANCEL_WAIT_FD(sv[0], POLLPRI)};
    ASSERT_ERR(cancel_wait_any(items, 1, 0), -ETIMEDOUT);
    close(sv[1]);
    ASSERT_EQ(cancel_wait_any(items, 1, CANCEL_INFINITE), 0);
    close(sv[0]);
}

/* ---- timeouts ----------------------------------------------------------- */

TEST(any_times_out_with_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_EVENT(&ev),
        CANCEL_WAIT_SEM(&s),
    };
    struct waiter w;
    start(&w, items, 3, 25 * MS);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 25 * MS - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

TEST(any_with_fd_times_out_with_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_FD(p[0], POLLIN),
        CANCEL_WAIT_EVENT(&ev),
    };
    struct waiter w;
    start(&w, items, 3, 25 * MS);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 25 * MS - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

TEST(any_only_fds_times_out_with_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_waitable items[] = {CANCEL_WAIT_FD(p[0], POLLIN)};
    struct waiter w;
    start(&w, items, 1, 2 * SEC);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 2 * SEC - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    close(p[0]);
    close(p[1]);
    harness_manual_clock_done(clk);
}

TEST(any_timeout_zero_does_not_block)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[] = {
        CANCEL_WAIT_TOKEN(cancel_source_token(src)),
        CANCEL_WAIT_EVENT(&ev),
    };
    ASSERT_ERR(cancel_wait_any(items, 2, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

TEST(any_real_clock_timeout)
{
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&ev),
        CANCEL_WAIT_FD(p[0], POLLIN),
    };
    ASSERT_ERR(cancel_wait_any(items, 1, 2 * MS), -ETIMEDOUT);
    ASSERT_ERR(cancel_wait_any(items, 2, 2 * MS), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    close(p[0]);
    close(p[1]);
}

/* ---- many items --------------------------------------------------------- */

TEST(any_more_items_than_stack)
{
    enum { N = CANCEL_WAIT_ANY_STACK + 8 };
    cancel_event ev[N];
    cancel_waitable items[N];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cancel_event_init(&ev[i], false));
        items[i] = CANCEL_WAIT_EVENT(&ev[i]);
    }
    ASSERT_ERR(cancel_wait_any(items, N, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_set(&ev[N - 1]));
    ASSERT_EQ(cancel_wait_any(items, N, CANCEL_INFINITE), N - 1);
    ASSERT_OK(cancel_event_reset(&ev[N - 1]));

    struct waiter w;
    start(&w, items, N, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_event_destroy(&ev[0]), -EBUSY);
    ASSERT_ERR(cancel_event_destroy(&ev[N - 1]), -EBUSY);
    ASSERT_OK(cancel_event_set(&ev[CANCEL_WAIT_ANY_STACK + 3]));
    ASSERT_EQ(harness_call_finish(&w.call), CANCEL_WAIT_ANY_STACK + 3);
    for (int i = 0; i < N; i++)
        ASSERT_OK(cancel_event_destroy(&ev[i]));
}

TEST(any_more_items_than_stack_with_fds)
{
    enum { N = CANCEL_WAIT_ANY_STACK + 4, NP = 10 };
    int p[NP][2];
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    cancel_waitable items[N];
    for (int i = 0; i < NP; i++) {
        ASSERT_OK(pipe(p[i]));
        items[i] = CANCEL_WAIT_FD(p[i][0], POLLIN);
    }
    for (int i = NP; i < N - 1; i++)
        items[i] = CANCEL_WAIT_SEM(&s);
    items[N - 1] = CANCEL_WAIT_TOKEN(cancel_source_token(src));

    struct waiter w;
    start(&w, items, N, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_EQ(write(p[7][1], "x", 1), 1);
    ASSERT_EQ(harness_call_finish(&w.call), 7);

    start(&w, items + 8, N - 8, CANCEL_INFINITE); /* still > stack */
    await_blocked(&w);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    /* the first semaphore item */
    ASSERT_EQ(harness_call_finish(&w.call), NP - 8);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);

    start(&w, items + 8, N - 8, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(harness_call_finish(&w.call), N - 1 - 8);

    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
    for (int i = 0; i < NP; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

/* Up to CANCEL_WAIT_ANY_STACK items wait-any does not allocate, also
 * while it blocks; past it, out of memory is -ENOMEM. */
TEST(any_allocates_only_past_stack)
{
    enum { N = CANCEL_WAIT_ANY_STACK };
    cancel_event ev[N];
    cancel_waitable items[N + 1];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(cancel_event_init(&ev[i], false));
        items[i] = CANCEL_WAIT_EVENT(&ev[i]);
    }
    cancel_source *src = cancel_source_new();
    items[N] = CANCEL_WAIT_TOKEN(cancel_source_token(src));

    cancel__alloc_fail_after(0);
    struct waiter w;
    start(&w, items, N, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_event_set(&ev[5]));
    int small = harness_call_finish(&w.call);
    int big = cancel_wait_any(items, N + 1, 0);
    cancel__alloc_fail_after(-1);
    ASSERT_EQ(small, 5);
    ASSERT_ERR(big, -ENOMEM);
    ASSERT_EQ(cancel_wait_any(items, N + 1, 0), 5);
    for (int i = 0; i < N; i++)
        ASSERT_OK(cancel_event_destroy(&ev[i]));
    cancel_source_free(src);
}

/* ---- signals ------------------------------------------------------------ */

static atomic_int sig_hits;

static void sig_handler(int signo)
{
    (void)signo;
    atomic_fetch_add(&sig_hits, 1);
}

/* A signal handled by the blocked waiter (no SA_RESTART: ppoll and futex
 * see EINTR) does not end wait-any. */
TEST(any_signals_do_not_end_the_wait)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sig_handler;
    ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
    int p[2];
    ASSERT_OK(pipe(p));
    for (int with_fd = 0; with_fd < 2; with_fd++) {
        cancel_source *src = cancel_source_new();
        cancel_waitable items[] = {
            CANCEL_WAIT_TOKEN(cancel_source_token(src)),
            CANCEL_WAIT_FD(p[0], POLLIN),
        };
        struct waiter w;
        start(&w, items, with_fd ? 2 : 1, with_fd ? 3600 * SEC : -1);
        await_blocked(&w);
        for (int i = 0; i < 20; i++) {
            int before = atomic_load(&sig_hits);
            ASSERT_OK(pthread_kill(w.call.th, SIGUSR1));
            while (atomic_load(&sig_hits) == before)
                sched_yield();
            await_blocked(&w);
        }
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_EQ(harness_call_finish(&w.call), 0);
        cancel_source_free(src);
    }
    close(p[0]);
    close(p[1]);
}

/* ---- bad input ---------------------------------------------------------- */

TEST(any_bad_input)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, true));
    cancel_waitable ok[] = {CANCEL_WAIT_EVENT(&ev)};
    ASSERT_ERR(cancel_wait_any(NULL, 1, 0), -EINVAL);
    ASSERT_ERR(cancel_wait_any(NULL, 0, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_wait_any(ok, 0, 0), -EINVAL);
    ASSERT_ERR(cancel_wait_any(ok, 0, CANCEL_INFINITE), -EINVAL);

    cancel_waitable null_ev[] = {CANCEL_WAIT_EVENT(NULL)};
    ASSERT_ERR(cancel_wait_any(null_ev, 1, 0), -EINVAL);
    cancel_waitable null_sem[] = {CANCEL_WAIT_SEM(NULL)};
    ASSERT_ERR(cancel_wait_any(null_sem, 1, 0), -EINVAL);
    cancel_waitable neg_fd[] = {CANCEL_WAIT_FD(-1, POLLIN)};
    ASSERT_ERR(cancel_wait_any(neg_fd, 1, 0), -EINVAL);
    cancel_waitable bad_kind[] = {CANCEL_WAIT_EVENT(&ev)};
    bad_kind[0].kind = (enum cancel_waitable_kind)0;
    ASSERT_ERR(cancel_wait_any(bad_kind, 1, 0), -EINVAL);
    bad_kind[0].kind = (enum cancel_waitable_kind)99;
    ASSERT_ERR(cancel_wait_any(bad_kind, 1, 0), -EINVAL);

    /* Checked before anything is taken: a signaled item before a bad one
     * does not hide it, and no semaphore count is taken. */
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 1, 1));
    cancel_waitable mixed[] = {CANCEL_WAIT_SEM(&s), CANCEL_WAIT_EVENT(NULL)};
    ASSERT_ERR(cancel_wait_any(mixed, 2, CANCEL_INFINITE), -EINVAL);
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    ASSERT_OK(cancel_event_destroy(&ev));
}

TEST(any_closed_fd_is_ebadf)
{
    int p[2];
    ASSERT_OK(pipe(p));
    int closed = p[0];
    ASSERT_OK(close(p[0]));
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, true)); /* signaled, yet EBADF */
    cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&ev),
        CANCEL_WAIT_FD(closed, POLLIN),
    };
    ASSERT_ERR(cancel_wait_any(items, 2, 0), -EBADF);
    ASSERT_ERR(cancel_wait_any(items + 1, 1, CANCEL_INFINITE), -EBADF);
    ASSERT_OK(cancel_event_destroy(&ev));
    close(p[1]);
}
