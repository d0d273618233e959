/* Unit tests of cancel_source_try_reset (TryReset). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static void plain_inc_cb(void *arg)
{
    (*(int *)arg)++;
}

static void inc_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

TEST(reset_of_fresh_source_is_true)
{
    cancel_source *src = cancel_source_new();
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 0);
    cancel_source_free(src);
}

TEST(reset_drops_pending_registrations)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs[3] = {0, 0, 0};
    cancel_registration reg[3];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cancel_register(t, &reg[i], plain_inc_cb, &runs[i]));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(t));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(runs[i], 0);
    ASSERT_FALSE(cancel_unregister(&reg[0]));
    ASSERT_FALSE(cancel_unregister_nowait(&reg[1]));
    ASSERT_FALSE(cancel_unregister(&reg[2]));
    cancel_source_free(src);
}

TEST(reset_dropped_registration_unregister_before_cancel_is_false)
{
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &reg, plain_inc_cb, &runs));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 0);
    cancel_source_free(src);
}

TEST(source_is_reusable_after_reset)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int old_runs = 0, new_runs = 0;
    cancel_registration old_reg = CANCEL_REGISTRATION_INIT;
    cancel_registration new_reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &old_reg, plain_inc_cb, &old_runs));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_OK(cancel_register(t, &new_reg, plain_inc_cb, &new_runs));
    /* A registration made after the reset can still be removed. */
    cancel_registration removed = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &removed, plain_inc_cb, &new_runs));
    ASSERT_TRUE(cancel_unregister(&removed));
    ASSERT_OK(cancel_source_cancel_reason(src, 88));
    ASSERT_EQ(old_runs, 0);
    ASSERT_EQ(new_runs, 1);
    ASSERT_EQ(cancel_reason(t), 88);
    cancel_source_free(src);
}

TEST(reset_reuses_dropped_registration_storage)
{
    /* The storage of a dropped registration may be registered again. */
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, plain_inc_cb, &runs));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_OK(cancel_register(t, &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
}

TEST(reset_of_canceled_source_is_false_and_changes_nothing)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel_reason(src, 55));
    ASSERT_EQ(runs, 1);
    ASSERT_FALSE(cancel_source_try_reset(src));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 55);
    ASSERT_EQ(runs, 1);
    ASSERT_FALSE(cancel_unregister(&reg));
    /* Still canceled: registering runs at once. */
    cancel_registration late = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(t, &late, plain_inc_cb, &runs), -ECANCELED);
    ASSERT_EQ(runs, 2);
    ASSERT_FALSE(cancel_source_try_reset(src));
    cancel_source_free(src);
}

TEST(reset_disarms_timer)
{
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_OK(cancel_clock_advance(c, 1000));
    ASSERT_FALSE(cancel_requested(t));
    /* The timer can be armed again. */
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_OK(cancel_clock_advance(c, 100));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    ASSERT_FALSE(cancel_source_try_reset(src));
    cancel_source_free(src);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

TEST(reset_after_timer_fired_is_false)
{
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    cancel_source *src = cancel_source_new_timeout(10);
    ASSERT_NOT_NULL(src);
    ASSERT_OK(cancel_clock_advance(c, 10));
    ASSERT_FALSE(cancel_source_try_reset(src));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ETIMEDOUT);
    cancel_source_free(src);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

struct reset_in_cb {
    cancel_source *src;
    bool result;
};

static void reset_cb(void *arg)
{
    struct reset_in_cb *r = arg;
    r->result = cancel_source_try_reset(r->src);
}

TEST(reset_from_inside_callback_is_false)
{
    cancel_source *src = cancel_source_new();
    struct reset_in_cb r = {src, true};
    int runs = 0;
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &ra, plain_inc_cb, &runs));
    ASSERT_OK(cancel_register(cancel_source_token(src), &rb, reset_cb, &r));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_FALSE(r.result);
    ASSERT_EQ(runs, 1); /* the cancel went on */
    cancel_source_free(src);
}

TEST(reset_of_null_is_false)
{
    ASSERT_FALSE(cancel_source_try_reset(NULL));
}

/* A concurrent cancel and reset: one of them wins.  If the reset won, the
 * registration was dropped (never runs) and the cancel that followed
 * canceled an empty source; if the cancel won, the callback ran once. */
struct reset_race {
    pthread_barrier_t start, done;
    cancel_source *src;
    bool reset_result;
    long iterations;
};

static void *reset_thread(void *p)
{
    struct reset_race *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        r->reset_result = cancel_source_try_reset(r->src);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(reset_races_cancel)
{
    struct reset_race r;
    r.iterations = harness_scale(4000);
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, reset_thread, &r), 0);
    for (long i = 0; i < r.iterations; i++) {
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        atomic_int runs = 0;
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(
            cancel_register(cancel_source_token(r.src), &reg, inc_cb, &runs));
        pthread_barrier_wait(&r.start);
        ASSERT_OK(cancel_source_cancel(r.src));
        pthread_barrier_wait(&r.done);
        ASSERT_TRUE(cancel_requested(cancel_source_token(r.src)));
        int ran = atomic_load(&runs);
        if (ran != (r.reset_result ? 0 : 1))
            harness_fail(__FILE__, __LINE__,
                         "iteration %ld: reset %d, callback ran %d times", i,
                         r.reset_result, ran);
        ASSERT_FALSE(cancel_unregister(&reg));
        cancel_source_free(r.src);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
}
