/* SCENARIOS.md E9, the basic task pattern, run thousands of times to cover
 * both sides of its race: a task checks its token on entry, then polls it
 * in an endless loop and "throws" on cancellation; main cancels right after
 * starting it (after a random spin of 0 to 2^17 iterations, so that both
 * sides of the race come up) and waits.  Whether the body ran or not (the cancel came
 * before a worker claimed the task, or after), the task ends CANCELED, the
 * wait reports -ECANCELED with the task token recorded, and its error is
 * empty.  Its negative cases (other token, token not canceled, return 0)
 * are in test_task_rules.c. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

static atomic_long ran;

/* A delay spread over several orders of magnitude (a spin, not a sleep),
 * so that the cancel falls before, during and after a worker's claim. */
static _Thread_local uint64_t seed = 0x9e3779b97f4a7c15ULL;

static unsigned jitter(void)
{
    seed ^= seed >> 12;
    seed ^= seed << 25;
    seed ^= seed >> 27;
    uint64_t x = seed * 2685821657736338717ULL;
    unsigned bits = (unsigned)(x >> 59); /* 0..31 */
    return (unsigned)((x >> 16) & ((1u << (bits % 18)) - 1));
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static int e9_body(void *arg, cancel_token t)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
    int r = cancel_check(t); /* on entry */
    if (r != 0)
        return r;
    for (;;) {
        r = cancel_check(t);
        if (r != 0)
            return r;
    }
}

/* wait_token: CANCEL_NONE lets the wait run a still-queued task inline; a
 * token of its own (never canceled) keeps the race between the worker's
 * claim and the cancel callback pure. */
static void e9_rounds(long rounds, bool inline_ok)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *ws = cancel_source_new();
    cancel_token wait_token = inline_ok ? CANCEL_NONE : cancel_source_token(ws);
    atomic_store(&ran, 0);
    for (long i = 0; i < rounds; i++) {
        cancel_source *src = cancel_source_new();
        ASSERT_NOT_NULL(src);
        cancel_token t = cancel_source_token(src);
        cancel_task *task = cancel_task_run(pool, e9_body, NULL, t, 0);
        ASSERT_NOT_NULL(task);
        spin(jitter());
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_ERR(cancel_task_wait(task, wait_token, CANCEL_INFINITE),
                   -ECANCELED);
        ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
        ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
        ASSERT_EQ(cancel_task_error(task), 0);
        ASSERT_EQ(cancel_task_errors(task, NULL, 0), 0);
        cancel_task_release(task);
        cancel_source_free(src);
    }
    cancel_pool_free(pool);
    cancel_source_free(ws);
    long r = atomic_load(&ran);
    ASSERT_LE(r, rounds);
    printf("%ld rounds: the body ran in %ld, never in %ld\n", rounds, r,
           rounds - r);
}

TEST(e9_basic_pattern_race)
{
    e9_rounds(harness_scale(10000), true);
}

TEST(e9_basic_pattern_race_without_inlining)
{
    e9_rounds(harness_scale(10000), false);
}

/* The same race with the cancel coming from another thread, released
 * together with the start. */
typedef struct duel {
    pthread_barrier_t bar;
    cancel_source *src;
    atomic_bool stop;
} duel;

static void *canceler(void *arg)
{
    duel *d = arg;
    for (;;) {
        pthread_barrier_wait(&d->bar);
        if (atomic_load(&d->stop))
            return NULL;
        spin(jitter());
        cancel_source_cancel(d->src);
        pthread_barrier_wait(&d->bar);
    }
}

TEST(e9_cancel_from_another_thread_race)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    duel d;
    pthread_barrier_init(&d.bar, NULL, 2);
    atomic_store(&d.stop, false);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, canceler, &d), 0);
    atomic_store(&ran, 0);
    long rounds = harness_scale(4000);
    for (long i = 0; i < rounds; i++) {
        d.src = cancel_source_new();
        cancel_token t = cancel_source_token(d.src);
        cancel_task *task = cancel_task_new(pool, e9_body, NULL, t, 0);
        ASSERT_NOT_NULL(task);
        pthread_barrier_wait(&d.bar);
        ASSERT_OK(cancel_task_start(task));
        pthread_barrier_wait(&d.bar); /* the cancel has returned */
        ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
                   -ECANCELED);
        ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
        ASSERT_EQ(cancel_task_error(task), 0);
        cancel_task_release(task);
        cancel_source_free(d.src);
    }
    atomic_store(&d.stop, true);
    pthread_barrier_wait(&d.bar);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&d.bar);
    cancel_pool_free(pool);
    printf("%ld rounds: the body ran in %ld\n", rounds, atomic_load(&ran));
}
