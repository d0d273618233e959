/* Unit tests of cancellation reasons: cancel_source_cancel_reason and
 * cancel_reason (Go's Cause, AbortSignal.reason). */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

TEST(reason_is_zero_before_then_the_reason)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_EQ(cancel_reason(t), 0);
    ASSERT_OK(cancel_source_cancel_reason(src, 1234));
    ASSERT_EQ(cancel_reason(t), 1234);
    cancel_source_free(src);
}

TEST(plain_cancel_reason_is_ecanceled)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ECANCELED);
    cancel_source_free(src);
}

TEST(reason_of_none_is_zero)
{
    ASSERT_EQ(cancel_reason(CANCEL_NONE), 0);
}

TEST(first_reason_wins)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_reason(src, 1234));
    ASSERT_OK(cancel_source_cancel_reason(src, 5678));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_source_cancel_reason(src, ETIMEDOUT));
    ASSERT_EQ(cancel_reason(t), 1234);
    cancel_source_free(src);

    src = cancel_source_new();
    t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_source_cancel_reason(src, 1234));
    ASSERT_EQ(cancel_reason(t), ECANCELED);
    cancel_source_free(src);
}

TEST(nonpositive_reason_is_einval_and_leaves_source_uncanceled)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, count_cb, &runs));
    ASSERT_ERR(cancel_source_cancel_reason(src, 0), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, -1), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, -ECANCELED), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, INT_MIN), -EINVAL);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 0);
    /* Still cancelable with a good reason. */
    ASSERT_EQ(runs, 0);
    ASSERT_OK(cancel_source_cancel_reason(src, 3));
    ASSERT_EQ(cancel_reason(t), 3);
    ASSERT_EQ(runs, 1); /* the registration survived the bad calls */
    cancel_source_free(src);
}

TEST(nonpositive_reason_on_canceled_source_keeps_reason)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_reason(src, 42));
    ASSERT_ERR(cancel_source_cancel_reason(src, 0), -EINVAL);
    ASSERT_ERR(cancel_source_cancel_reason(src, -5), -EINVAL);
    ASSERT_EQ(cancel_reason(t), 42);
    cancel_source_free(src);
}

TEST(large_reason_is_kept)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(src, INT_MAX));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), INT_MAX);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);

    src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(src, 1));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 1);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

TEST(library_reasons)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(src, EINTR));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), EINTR);
    cancel_source_free(src);
}

TEST(canceled_operations_still_return_ecanceled)
{
    /* A reason is a cause to inspect, not a return code. */
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_reason(src, ETIMEDOUT));
    ASSERT_ERR(cancel_check(t), -ECANCELED);
    ASSERT_ERR(cancel_throw(t), -ECANCELED);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(t, &reg, count_cb, &runs), -ECANCELED);
    ASSERT_ERR(cancel_try_register(t, &reg, count_cb, &runs), -ECANCELED);
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
}

TEST(linked_child_inherits_reason)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(cancel_source_cancel_reason(p, 1234));
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), 1234);
    cancel_source_free(child);
    cancel_source_free(p);
}

TEST(linked_child_created_after_parent_inherits_reason)
{
    cancel_source *p = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(p, 2345));
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), 2345);
    cancel_source_free(child);
    cancel_source_free(p);
}

TEST(linked_child_with_own_reason_first)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(cancel_source_cancel_reason(child, 11));
    ASSERT_OK(cancel_source_cancel_reason(p, 22));
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), 11);
    ASSERT_EQ(cancel_reason(tp), 22);
    cancel_source_free(child);
    cancel_source_free(p);
}

TEST(timeout_reason_is_etimedout)
{
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    cancel_source *a = cancel_source_new_timeout(0);
    cancel_source *b = cancel_source_new_timeout(10);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(cancel_reason(cancel_source_token(a)), ETIMEDOUT);
    ASSERT_EQ(cancel_reason(cancel_source_token(b)), 0);
    ASSERT_OK(cancel_clock_advance(c, 10));
    ASSERT_EQ(cancel_reason(cancel_source_token(b)), ETIMEDOUT);
    cancel_source_free(a);
    cancel_source_free(b);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

/* Two threads cancel with different reasons at once: one reason wins, and
 * the callbacks (run once, by the winner) see the winning reason. */
struct duel {
    pthread_barrier_t start;
    cancel_source *src;
};

struct duelist {
    struct duel *d;
    int reason;
};

static void *cancel_with(void *p)
{
    struct duelist *x = p;
    pthread_barrier_wait(&x->d->start);
    ASSERT_OK(cancel_source_cancel_reason(x->d->src, x->reason));
    return NULL;
}

struct seen {
    cancel_source *src;
    int reason;
    int runs;
};

static void reason_cb(void *arg)
{
    struct seen *s = arg;
    s->reason = cancel_reason(cancel_source_token(s->src));
    s->runs++;
}

TEST(concurrent_reasons_one_wins)
{
    long n = harness_scale(2000);
    long wins[2] = {0, 0};
    for (long i = 0; i < n; i++) {
        struct duel d;
        d.src = cancel_source_new();
        ASSERT_NOT_NULL(d.src);
        pthread_barrier_init(&d.start, NULL, 2);
        struct seen s = {d.src, 0, 0};
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(
            cancel_register(cancel_source_token(d.src), &reg, reason_cb, &s));
        struct duelist x[2] = {{&d, 100}, {&d, 200}};
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            ASSERT_EQ(pthread_create(&th[k], NULL, cancel_with, &x[k]), 0);
        for (int k = 0; k < 2; k++)
            pthread_join(th[k], NULL);
        int r = cancel_reason(cancel_source_token(d.src));
        ASSERT_TRUE(r == 100 || r == 200);
        ASSERT_EQ(s.runs, 1);
        ASSERT_EQ(s.reason, r);
        wins[r == 200]++;
        pthread_barrier_destroy(&d.start);
        cancel_source_free(d.src);
    }
    ASSERT_EQ(wins[0] + wins[1], n);
}
