/* Unit tests of cancel_event (ManualResetEventSlim).
 *
 * Time comes from a manual clock.  To act while another thread is blocked
 * in a wait, a test spins until that thread is asleep in the kernel (state
 * S in /proc): the waiter raises `entered` right before the call, and the
 * first place inside a wait that can sleep comes after the waiter joined
 * the event's queue (so _destroy says -EBUSY) and computed its deadline.
 * That is a gate, not a sleep. */
#include "harness.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

struct waiter {
    harness_call call;
    cancel_event *ev;
    cancel_token t;
    int64_t timeout;
    const int *payload; /* read after a successful wait */
    int seen;
};

static int waiter_wait(void *arg)
{
    struct waiter *w = arg;
    int r = cancel_event_wait(w->ev, w->t, w->timeout);
    if (r == 0 && w->payload != NULL)
        w->seen = *w->payload; /* plain read: ordered by the wait */
    return r;
}

static void start_payload(struct waiter *w, cancel_event *ev, cancel_token t,
                          int64_t timeout, const int *payload)
{
    w->ev = ev;
    w->t = t;
    w->timeout = timeout;
    w->payload = payload;
    w->seen = 0;
    harness_call_start(&w->call, waiter_wait, w);
}

static void start(struct waiter *w, cancel_event *ev, cancel_token t,
                  int64_t timeout)
{
    start_payload(w, ev, t, timeout, NULL);
}

/* Gate plus check: w is blocked in the wait, so the event is busy. */
static void await_blocked(struct waiter *w)
{
    harness_call_await_asleep(&w->call);
    ASSERT_FALSE(atomic_load(&w->call.done));
    ASSERT_ERR(cancel_event_destroy(w->ev), -EBUSY);
}

/* ---- state -------------------------------------------------------------- */

TEST(event_init_not_set)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_ERR(cancel_event_wait(&ev, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
}

TEST(event_init_set)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, true));
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_wait(&ev, CANCEL_NONE, 0));
    ASSERT_OK(cancel_event_wait(&ev, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_TRUE(cancel_event_is_set(&ev)); /* a wait does not reset it */
    ASSERT_OK(cancel_event_destroy(&ev));
}

TEST(event_init_overwrites_garbage)
{
    cancel_event ev;
    memset(&ev, 0xa5, sizeof(ev));
    ASSERT_OK(cancel_event_init(&ev, false));
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_ERR(cancel_event_wait(&ev, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(cancel_event_wait(&ev, CANCEL_NONE, 0));
    ASSERT_OK(cancel_event_destroy(&ev));
}

TEST(event_set_reset_is_set)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_set(&ev)); /* setting a set event: nothing */
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_wait(&ev, CANCEL_NONE, 0));
    ASSERT_OK(cancel_event_reset(&ev));
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_reset(&ev));
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_ERR(cancel_event_wait(&ev, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(cancel_event_wait(&ev, CANCEL_NONE, 0));
    ASSERT_OK(cancel_event_destroy(&ev));
}

TEST(event_static_initializer)
{
    static cancel_event ev = CANCEL_EVENT_INIT;
    cancel_event local = CANCEL_EVENT_INIT;
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_FALSE(cancel_event_is_set(&local));
    ASSERT_ERR(cancel_event_wait(&ev, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&local));

    /* A waiter blocks on it and is woken by set. */
    struct waiter w;
    start(&w, &ev, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_destroy(&ev));
}

/* ---- waking ------------------------------------------------------------- */

TEST(event_set_wakes_blocked_waiter_with_payload)
{
    static int payload;
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start_payload(&w, &ev, cancel_source_token(src), CANCEL_INFINITE, &payload);
    await_blocked(&w);
    payload = 1234; /* happens-before the wait's return (TSan checks) */
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(w.seen, 1234);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
}

TEST(event_set_wakes_all_waiters)
{
    enum { N = 6 };
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    struct waiter w[N];
    for (int i = 0; i < N; i++)
        start(&w[i], &ev, i % 2 ? cancel_source_token(src) : CANCEL_NONE,
              CANCEL_INFINITE);
    for (int i = 0; i < N; i++)
        await_blocked(&w[i]);
    ASSERT_OK(cancel_event_set(&ev));
    for (int i = 0; i < N; i++)
        ASSERT_OK(harness_call_finish(&w[i].call));
    ASSERT_OK(cancel_event_destroy(&ev));
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

TEST(event_wait_on_set_event_returns_zero)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, true));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_event_wait(&ev, cancel_source_token(src), 0));
    ASSERT_OK(cancel_event_wait(&ev, cancel_source_token(src), 5 * SEC));
    ASSERT_OK(
        cancel_event_wait(&ev, cancel_source_token(src), CANCEL_INFINITE));
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
}

/* F11: a wait entered with a canceled token reports cancellation even if
 * the event is set. */
TEST(event_canceled_token_wins_over_set_event_on_entry)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, true));
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_event_wait(&ev, t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_event_wait(&ev, t, 0), -ECANCELED);
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(event_canceled_token_on_entry_unset_event)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(cancel_event_wait(&ev, cancel_source_token(src), 0), -ECANCELED);
    ASSERT_ERR(
        cancel_event_wait(&ev, cancel_source_token(src), CANCEL_INFINITE),
        -ECANCELED);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
}

TEST(event_cancel_wakes_blocked_waiter)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, &ev, t, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    ASSERT_FALSE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_destroy(&ev)); /* the waiter left the queue */
    cancel_source_free(src);
}

/* Completion beats cancellation: a blocked waiter woken while the event is
 * set takes it, even if its token is canceled right after the set. */
TEST(event_blocked_waiter_set_then_cancel_returns_zero)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &ev, cancel_source_token(src), CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
}

TEST(event_set_then_reset_while_blocked_then_cancel)
{
    /* A set undone by a reset before the waiter looks may be missed (as
     * with ManualResetEventSlim); the waiter then still ends on its
     * token, and never hangs. */
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &ev, cancel_source_token(src), CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(cancel_event_reset(&ev));
    ASSERT_OK(cancel_source_cancel(src));
    int r = harness_call_finish(&w.call);
    ASSERT_TRUE(r == 0 || r == -ECANCELED);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
}

TEST(event_destroy_with_waiter_is_ebusy_and_event_still_works)
{
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    struct waiter w;
    start(&w, &ev, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_event_destroy(&ev), -EBUSY);
    ASSERT_FALSE(cancel_event_is_set(&ev)); /* nothing changed */
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_TRUE(cancel_event_is_set(&ev));
    ASSERT_OK(cancel_event_destroy(&ev));
}

/* ---- timeouts ----------------------------------------------------------- */

TEST(event_times_out_exactly_at_deadline)
{
    cancel_clock *c = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &ev, cancel_source_token(src), 30 * MS);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, 30 * MS - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(event_set_before_timeout_returns_zero)
{
    cancel_clock *c = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    struct waiter w;
    start(&w, &ev, CANCEL_NONE, SEC);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, SEC / 2));
    await_blocked(&w);
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_OK(cancel_clock_advance(c, SEC)); /* the old deadline: harmless */
    ASSERT_OK(cancel_event_destroy(&ev));
    harness_manual_clock_done(c);
}

TEST(event_timeout_zero_does_not_block)
{
    cancel_clock *c = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_event_wait(&ev, cancel_source_token(src), 0), -ETIMEDOUT);
    ASSERT_ERR(cancel_event_wait(&ev, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_event_destroy(&ev));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(event_waiters_with_different_deadlines)
{
    cancel_clock *c = harness_manual_clock();
    cancel_event ev;
    ASSERT_OK(cancel_event_init(&ev, false));
    struct waiter a, b;
    start(&a, &ev, CANCEL_NONE, 10 * MS);
    start(&b, &ev, CANCEL_NONE, 20 * MS);
    await_blocked(&a);
    await_blocked(&b);
    ASSERT_OK(cancel_clock_advance(c, 10 * MS));
    ASSERT_ERR(harness_call_finish(&a.call), -ETIMEDOUT);
    await_blocked(&b); /* b stays */
    ASSERT_OK(cancel_event_set(&ev));
    ASSERT_OK(harness_call_finish(&b.call));
    ASSERT_OK(cancel_event_destroy(&ev));
    harness_manual_clock_done(c);
}
