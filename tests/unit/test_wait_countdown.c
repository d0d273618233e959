/* Unit tests of cancel_countdown (CountdownEvent).
 *
 * Time comes from a manual clock.  To act while another thread is blocked
 * in a wait, a test spins until that thread is asleep in the kernel (state
 * S in /proc): the waiter raises `entered` right before the call, and the
 * first place inside a wait that can sleep comes after the waiter joined
 * the countdown's queue (so _destroy says -EBUSY) and computed its
 * deadline.  That is a gate, not a sleep. */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

struct waiter {
    harness_call call;
    cancel_countdown *c;
    cancel_token t;
    int64_t timeout;
};

static int waiter_wait(void *arg)
{
    struct waiter *w = arg;
    return cancel_countdown_wait(w->c, w->t, w->timeout);
}

static void start(struct waiter *w, cancel_countdown *c, cancel_token t,
                  int64_t timeout)
{
    w->c = c;
    w->t = t;
    w->timeout = timeout;
    harness_call_start(&w->call, waiter_wait, w);
}

static void await_blocked(struct waiter *w)
{
    harness_call_await_asleep(&w->call);
    ASSERT_FALSE(atomic_load(&w->call.done));
    ASSERT_ERR(cancel_countdown_destroy(w->c), -EBUSY);
}

/* ---- counting ----------------------------------------------------------- */

TEST(countdown_init_and_count)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 3));
    ASSERT_EQ(cancel_countdown_count(&c), 3);
    ASSERT_ERR(cancel_countdown_wait(&c, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_countdown_destroy(&c));
    ASSERT_ERR(cancel_countdown_init(&c, -1), -EINVAL);
    ASSERT_ERR(cancel_countdown_init(&c, INT_MIN), -EINVAL);
    ASSERT_OK(cancel_countdown_init(&c, INT_MAX));
    ASSERT_EQ(cancel_countdown_count(&c), INT_MAX);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_init_zero_is_set)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 0));
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_wait(&c, CANCEL_NONE, 0));
    ASSERT_OK(cancel_countdown_wait(&c, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_failed_init_changes_nothing)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 4));
    ASSERT_ERR(cancel_countdown_init(&c, -3), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 4);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_signal_to_zero_returns_one)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 5));
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 0);
    ASSERT_EQ(cancel_countdown_count(&c), 4);
    ASSERT_EQ(cancel_countdown_signal(&c, 2), 0);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_ERR(cancel_countdown_wait(&c, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_EQ(cancel_countdown_signal(&c, 2), 1);
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_wait(&c, CANCEL_NONE, 0));
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_signal_below_zero_is_einval_and_changes_nothing)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 2));
    ASSERT_ERR(cancel_countdown_signal(&c, 3), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_ERR(cancel_countdown_signal(&c, INT_MAX), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_EQ(cancel_countdown_signal(&c, 2), 1);
    /* On a set countdown. */
    ASSERT_ERR(cancel_countdown_signal(&c, 1), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_signal_bad_n_is_einval)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 2));
    ASSERT_ERR(cancel_countdown_signal(&c, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(&c, -1), -EINVAL);
    ASSERT_ERR(cancel_countdown_signal(&c, INT_MIN), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_add)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    ASSERT_OK(cancel_countdown_add(&c, 2));
    ASSERT_EQ(cancel_countdown_count(&c), 3);
    ASSERT_ERR(cancel_countdown_add(&c, 0), -EINVAL);
    ASSERT_ERR(cancel_countdown_add(&c, -5), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 3);
    ASSERT_EQ(cancel_countdown_signal(&c, 3), 1);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_add_on_set_is_einval)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 0));
    ASSERT_ERR(cancel_countdown_add(&c, 1), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_wait(&c, CANCEL_NONE, 0)); /* still set */
    ASSERT_OK(cancel_countdown_reset(&c, 1));
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 1);
    ASSERT_ERR(cancel_countdown_add(&c, 3), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_add_overflow_is_eoverflow)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, INT_MAX - 1));
    ASSERT_ERR(cancel_countdown_add(&c, 2), -EOVERFLOW);
    ASSERT_ERR(cancel_countdown_add(&c, INT_MAX), -EOVERFLOW);
    ASSERT_EQ(cancel_countdown_count(&c), INT_MAX - 1);
    ASSERT_OK(cancel_countdown_add(&c, 1));
    ASSERT_EQ(cancel_countdown_count(&c), INT_MAX);
    ASSERT_ERR(cancel_countdown_add(&c, 1), -EOVERFLOW);
    ASSERT_EQ(cancel_countdown_count(&c), INT_MAX);
    ASSERT_EQ(cancel_countdown_signal(&c, INT_MAX), 1);
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_reset)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 0));
    ASSERT_OK(cancel_countdown_reset(&c, 4));
    ASSERT_EQ(cancel_countdown_count(&c), 4);
    ASSERT_ERR(cancel_countdown_wait(&c, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_countdown_reset(&c, 2));
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_ERR(cancel_countdown_reset(&c, -1), -EINVAL);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_OK(cancel_countdown_reset(&c, 0));
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_OK(cancel_countdown_wait(&c, CANCEL_NONE, 0));
    ASSERT_OK(cancel_countdown_destroy(&c));
}

/* ---- waiting ------------------------------------------------------------ */

TEST(countdown_signal_to_zero_wakes_all_waiters)
{
    enum { N = 4 };
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 2));
    cancel_source *src = cancel_source_new();
    struct waiter w[N];
    for (int i = 0; i < N; i++)
        start(&w[i], &c, i % 2 ? cancel_source_token(src) : CANCEL_NONE,
              CANCEL_INFINITE);
    for (int i = 0; i < N; i++)
        await_blocked(&w[i]);
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 0);
    for (int i = 0; i < N; i++)
        await_blocked(&w[i]); /* not yet */
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 1);
    for (int i = 0; i < N; i++)
        ASSERT_OK(harness_call_finish(&w[i].call));
    ASSERT_OK(cancel_countdown_destroy(&c));
    cancel_source_free(src);
}

TEST(countdown_reset_to_zero_wakes_waiters)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 9));
    struct waiter w;
    start(&w, &c, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_countdown_reset(&c, 3));
    await_blocked(&w);
    ASSERT_OK(cancel_countdown_reset(&c, 0));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_OK(cancel_countdown_destroy(&c));
}

TEST(countdown_canceled_token_wins_on_entry)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 0)); /* set */
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_countdown_wait(&c, t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_OK(cancel_countdown_reset(&c, 2));
    ASSERT_ERR(cancel_countdown_wait(&c, t, 0), -ECANCELED);
    ASSERT_EQ(cancel_countdown_count(&c), 2);
    ASSERT_OK(cancel_countdown_destroy(&c));
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(countdown_cancel_wakes_blocked_waiter)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, &c, t, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    ASSERT_EQ(cancel_countdown_count(&c), 1);
    ASSERT_OK(cancel_countdown_destroy(&c));
    cancel_source_free(src);
}

TEST(countdown_blocked_waiter_signal_then_cancel_returns_zero)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &c, cancel_source_token(src), CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 1);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_OK(cancel_countdown_destroy(&c));
    cancel_source_free(src);
}

TEST(countdown_times_out_exactly_at_deadline)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    struct waiter w;
    start(&w, &c, CANCEL_NONE, 15 * MS);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 15 * MS - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(clk, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_EQ(cancel_countdown_count(&c), 1);
    ASSERT_OK(cancel_countdown_destroy(&c));
    harness_manual_clock_done(clk);
}

TEST(countdown_timeout_zero_does_not_block)
{
    cancel_clock *clk = harness_manual_clock();
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_countdown_wait(&c, cancel_source_token(src), 0),
               -ETIMEDOUT);
    ASSERT_OK(cancel_countdown_destroy(&c));
    cancel_source_free(src);
    harness_manual_clock_done(clk);
}

TEST(countdown_destroy_with_waiter_is_ebusy)
{
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, 1));
    struct waiter w;
    start(&w, &c, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_ERR(cancel_countdown_destroy(&c), -EBUSY);
    ASSERT_EQ(cancel_countdown_count(&c), 1);
    ASSERT_EQ(cancel_countdown_signal(&c, 1), 1);
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_OK(cancel_countdown_destroy(&c));
}

/* Many signalers: exactly one of them brings the count to 0. */
struct signaler {
    cancel_countdown *c;
    harness_gate *go;
    int n;
    int ones;
    int err;
};

static void *signaler_main(void *arg)
{
    struct signaler *s = arg;
    harness_gate_wait(s->go);
    for (int i = 0; i < s->n; i++) {
        int r = cancel_countdown_signal(s->c, 1);
        if (r < 0)
            s->err = r;
        else
            s->ones += r;
    }
    return NULL;
}

TEST(countdown_concurrent_signals_exactly_one_reaches_zero)
{
    enum { N = 4 };
    int per = (int)harness_scale(5000);
    cancel_countdown c;
    ASSERT_OK(cancel_countdown_init(&c, N * per));
    struct waiter w;
    start(&w, &c, CANCEL_NONE, CANCEL_INFINITE);
    harness_gate go;
    harness_gate_init(&go);
    struct signaler s[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        s[i] = (struct signaler){&c, &go, per, 0, 0};
        ASSERT_OK(pthread_create(&th[i], NULL, signaler_main, &s[i]));
    }
    harness_gate_open(&go);
    int ones = 0;
    for (int i = 0; i < N; i++) {
        ASSERT_OK(pthread_join(th[i], NULL));
        ASSERT_OK(s[i].err);
        ones += s[i].ones;
    }
    harness_gate_destroy(&go);
    ASSERT_EQ(ones, 1);
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(cancel_countdown_count(&c), 0);
    ASSERT_ERR(cancel_countdown_signal(&c, 1), -EINVAL);
    ASSERT_OK(cancel_countdown_destroy(&c));
}
