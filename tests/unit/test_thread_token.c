/* Unit tests of the thread's canceled token: cancel_check, cancel_throw and
 * cancel_canceled_token (ThrowIfCancellationRequested, OperationCanceled-
 * Exception.CancellationToken). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

TEST(fresh_thread_has_none_recorded)
{
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
}

TEST(check_on_uncanceled_token_returns_zero_and_records_nothing)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_check(t));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    ASSERT_OK(cancel_check(CANCEL_NONE));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    cancel_source_free(src);
}

TEST(check_on_uncanceled_token_leaves_recorded_token)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    cancel_token ta = cancel_source_token(a);
    cancel_token tb = cancel_source_token(b);
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_ERR(cancel_check(ta), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    /* Like errno: a successful check leaves the record alone. */
    ASSERT_OK(cancel_check(tb));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    ASSERT_OK(cancel_check(CANCEL_NONE));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(check_on_canceled_token_records_it)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    cancel_token ta = cancel_source_token(a);
    cancel_token tb = cancel_source_token(b);
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_OK(cancel_source_cancel_reason(b, 1234));
    ASSERT_ERR(cancel_check(ta), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    /* Any reason: still -ECANCELED. */
    ASSERT_ERR(cancel_check(tb), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), tb));
    ASSERT_FALSE(cancel_token_equal(cancel_canceled_token(), ta));
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(throw_always_records_and_returns_ecanceled)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    cancel_token ta = cancel_source_token(a);
    cancel_token tb = cancel_source_token(b);
    /* Not canceled: still "thrown". */
    ASSERT_ERR(cancel_throw(ta), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    ASSERT_OK(cancel_source_cancel(b));
    ASSERT_ERR(cancel_throw(tb), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), tb));
    /* CANCEL_NONE is recorded too. */
    ASSERT_ERR(cancel_throw(CANCEL_NONE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), CANCEL_NONE));
    ASSERT_FALSE(cancel_requested(ta));
    cancel_source_free(a);
    cancel_source_free(b);
}

/* Per thread: another thread's record is not affected. */
struct other {
    cancel_token mine;
    harness_gate recorded;
    harness_gate main_recorded;
    bool fresh_was_none;
    bool kept_mine;
};

static void *other_thread(void *p)
{
    struct other *o = p;
    o->fresh_was_none =
        cancel_token_equal(cancel_canceled_token(), CANCEL_NONE);
    ASSERT_ERR(cancel_throw(o->mine), -ECANCELED);
    harness_gate_open(&o->recorded);
    harness_gate_wait(&o->main_recorded);
    o->kept_mine = cancel_token_equal(cancel_canceled_token(), o->mine);
    return NULL;
}

TEST(record_is_per_thread)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    cancel_token ta = cancel_source_token(a);
    cancel_token tb = cancel_source_token(b);
    /* Main records first, so the other thread starts after a record. */
    ASSERT_ERR(cancel_throw(ta), -ECANCELED);

    struct other o = {.mine = tb};
    harness_gate_init(&o.recorded);
    harness_gate_init(&o.main_recorded);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, other_thread, &o), 0);
    harness_gate_wait(&o.recorded);
    /* The other thread's record did not change ours. */
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_ERR(cancel_check(ta), -ECANCELED);
    harness_gate_open(&o.main_recorded);
    pthread_join(th, NULL);

    ASSERT_TRUE(o.fresh_was_none);
    ASSERT_TRUE(o.kept_mine);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ta));
    harness_gate_destroy(&o.recorded);
    harness_gate_destroy(&o.main_recorded);
    cancel_source_free(a);
    cancel_source_free(b);
}

/* A check from inside a callback records on the canceling thread. */
struct in_cb {
    cancel_token t;
    int result;
    bool recorded;
};

static void check_cb(void *arg)
{
    struct in_cb *c = arg;
    c->result = cancel_check(c->t);
    c->recorded = cancel_token_equal(cancel_canceled_token(), c->t);
}

TEST(check_inside_callback)
{
    cancel_source *src = cancel_source_new();
    struct in_cb c = {cancel_source_token(src), 0, false};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(c.t, &reg, check_cb, &c));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(c.result, -ECANCELED);
    ASSERT_TRUE(c.recorded);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), c.t));
    cancel_source_free(src);
}
