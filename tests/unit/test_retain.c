/* Unit tests of the lifetime of a source's state: cancel_source_free,
 * cancel_token_retain / cancel_token_release and registrations left on a
 * freed source (semantic 6). ASan checks that nothing is touched after it is
 * freed; the allocation counter checks that the state is destroyed by the
 * very call that drops its last reference. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

/* Live allocations after the library's lazy one-time set-up (if any). */
static long baseline(void)
{
    cancel_source *warm = cancel_source_new();
    ASSERT_NOT_NULL(warm);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(warm), &reg, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel(warm));
    cancel_source_free(warm);
    return cancel__alloc_live();
}

TEST(retain_returns_the_token)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_token r = cancel_token_retain(t);
    ASSERT_TRUE(cancel_token_equal(r, t));
    cancel_token_release(r);
    cancel_source_free(src);
}

TEST(retain_release_none_are_noops)
{
    cancel_token r = cancel_token_retain(CANCEL_NONE);
    ASSERT_TRUE(cancel_token_equal(r, CANCEL_NONE));
    cancel_token_release(CANCEL_NONE);
    cancel_token_release(r);
    ASSERT_FALSE(cancel_can_be_canceled(r));
}

TEST(retained_token_readable_after_free)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    ASSERT_OK(cancel_source_cancel_reason(src, 42));
    cancel_source_free(src);
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 42);
    ASSERT_TRUE(cancel_can_be_canceled(t));
    ASSERT_ERR(cancel_check(t), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    /* Registering on it still runs at once. */
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(t, &reg, count_cb, &runs), -ECANCELED);
    ASSERT_EQ(runs, 1);
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_token_release(t);
}

TEST(retained_token_of_uncanceled_freed_source)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    cancel_source_free(src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 0);
    ASSERT_OK(cancel_check(t));
    /* Nobody can cancel it any more: register is inert. */
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, count_cb, &runs));
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_registration reg2 = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_try_register(t, &reg2, count_cb, &runs));
    ASSERT_FALSE(cancel_unregister_nowait(&reg2));
    ASSERT_EQ(runs, 0);
    cancel_token_release(t);
    ASSERT_EQ(runs, 0);
}

TEST(several_retains)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_token_retain(t);
    cancel_token_retain(t);
    ASSERT_OK(cancel_source_cancel_reason(src, 9));
    cancel_source_free(src);
    ASSERT_GT(cancel__alloc_live(), live);
    cancel_token_release(t);
    ASSERT_EQ(cancel_reason(t), 9); /* one retain left */
    ASSERT_GT(cancel__alloc_live(), live);
    cancel_token_release(t); /* the last one destroys the state */
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(release_before_free_keeps_source)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    cancel_token_release(t);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 1);
    cancel_source_free(src); /* the owner's reference was the last */
    ASSERT_EQ(cancel__alloc_live(), live);
}

/* Semantic 6: registrations left on a freed source stay registered and
 * never run; unregistering returns true and the last one destroys the
 * state. */
TEST(unregister_after_free_returns_true)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    cancel_source_free(src);
    ASSERT_GT(cancel__alloc_live(), live); /* the registration keeps it */
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_EQ(cancel__alloc_live(), live); /* destroyed by that call */
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(runs, 0);
}

TEST(unregister_nowait_after_free_returns_true)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration r1 = CANCEL_REGISTRATION_INIT;
    cancel_registration r2 = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &r1, count_cb, &runs));
    ASSERT_OK(cancel_register(cancel_source_token(src), &r2, count_cb, &runs));
    cancel_source_free(src);
    ASSERT_TRUE(cancel_unregister_nowait(&r2));
    ASSERT_GT(cancel__alloc_live(), live);
    ASSERT_TRUE(cancel_unregister_nowait(&r1));
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_EQ(runs, 0);
}

TEST(unregister_after_last_token_released)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, count_cb, &runs));
    cancel_source_free(src);
    cancel_token_release(t);
    ASSERT_GT(cancel__alloc_live(), live); /* the registration keeps it */
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_EQ(runs, 0);
}

TEST(release_after_last_unregister)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, count_cb, &runs));
    cancel_source_free(src);
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_GT(cancel__alloc_live(), live); /* the retain keeps it */
    ASSERT_FALSE(cancel_requested(t));
    cancel_token_release(t);
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_EQ(runs, 0);
}

TEST(free_plain_source_frees_everything)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    ASSERT_GT(cancel__alloc_live(), live);
    cancel_source_free(src);
    ASSERT_EQ(cancel__alloc_live(), live);

    src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    cancel_source_free(src); /* nothing pending: gone now */
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_EQ(runs, 1);
}

/* Unregistering a registration whose callback already ran, after the source
 * (and every reference to it) is gone: false, and no freed memory is read
 * (ASan).  The common C teardown order "free the source, then clean up the
 * request that was canceled". */
TEST(unregister_run_registration_after_source_gone)
{
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
}

TEST(unregister_inert_registration_after_source_gone)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(cancel_source_token(src), &reg, count_cb, &runs),
               -ECANCELED);
    cancel_source_free(src);
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(runs, 1);
}

/* Freeing the source from another thread while a registration is pending;
 * the registration is removed afterwards on this thread. */
static void *free_thread(void *p)
{
    cancel_source_free(p);
    return NULL;
}

TEST(free_on_other_thread_then_unregister)
{
    long live = baseline();
    cancel_source *src = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, free_thread, src), 0);
    pthread_join(th, NULL);
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_EQ(runs, 0);
}

/* The owner frees the source while another thread removes the last pending
 * registration: unregister returns true either way, and exactly one of the
 * two destroys the state (a double destroy is a double free for ASan; none
 * leaves the allocation counter above the baseline). */
struct free_race {
    pthread_barrier_t start, done;
    cancel_registration reg;
    bool result;
    long iterations;
};

static void *unregister_racer(void *p)
{
    struct free_race *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        r->result = cancel_unregister(&r->reg);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(free_races_unregister)
{
    long live = baseline();
    struct free_race r;
    r.iterations = harness_scale(4000);
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, unregister_racer, &r), 0);
    int runs = 0;
    for (long i = 0; i < r.iterations; i++) {
        cancel_source *src = cancel_source_new();
        ASSERT_NOT_NULL(src);
        memset(&r.reg, 0, sizeof(r.reg));
        ASSERT_OK(
            cancel_register(cancel_source_token(src), &r.reg, count_cb, &runs));
        pthread_barrier_wait(&r.start);
        cancel_source_free(src);
        pthread_barrier_wait(&r.done);
        ASSERT_TRUE(r.result);
        ASSERT_EQ(cancel__alloc_live(), live);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    ASSERT_EQ(runs, 0);
}

/* Registering through a retained token while the owner frees the source:
 * either registered (then it stays registered on the freed source and
 * unregister returns true) or inert (unregister returns false); fn never
 * runs, and the state is destroyed exactly once in the end. */
struct reg_race {
    pthread_barrier_t start, done;
    cancel_token t;
    cancel_registration reg;
    int reg_result;
    long iterations;
    int runs;
};

static void *register_racer(void *p)
{
    struct reg_race *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        r->reg_result = cancel_register(r->t, &r->reg, count_cb, &r->runs);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(register_on_retained_token_races_free)
{
    long live = baseline();
    struct reg_race r;
    r.iterations = harness_scale(4000);
    r.runs = 0;
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, register_racer, &r), 0);
    long registered = 0;
    for (long i = 0; i < r.iterations; i++) {
        cancel_source *src = cancel_source_new();
        ASSERT_NOT_NULL(src);
        r.t = cancel_token_retain(cancel_source_token(src));
        memset(&r.reg, 0, sizeof(r.reg));
        pthread_barrier_wait(&r.start);
        cancel_source_free(src);
        pthread_barrier_wait(&r.done);
        ASSERT_OK(r.reg_result);
        bool removed = cancel_unregister(&r.reg);
        registered += removed;
        ASSERT_FALSE(cancel_unregister(&r.reg));
        cancel_token_release(r.t);
        ASSERT_EQ(cancel__alloc_live(), live);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    ASSERT_EQ(r.runs, 0);
    ASSERT_LE(registered, r.iterations);
}
