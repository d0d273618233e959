/* Unit tests of cancel_semaphore (SemaphoreSlim).
 *
 * Time comes from a manual clock.  To act while another thread is blocked
 * in a wait, a test spins until that thread is asleep in the kernel (state
 * S in /proc): the waiter raises `entered` right before the call, and the
 * first place inside a wait that can sleep comes after the waiter joined
 * the semaphore's queue (so _destroy says -EBUSY) and computed its
 * deadline.  That is a gate, not a sleep. */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

struct waiter {
    harness_call call;
    cancel_semaphore *s;
    cancel_token t;
    int64_t timeout;
};

static int waiter_wait(void *arg)
{
    struct waiter *w = arg;
    return cancel_semaphore_wait(w->s, w->t, w->timeout);
}

static void start(struct waiter *w, cancel_semaphore *s, cancel_token t,
                  int64_t timeout)
{
    w->s = s;
    w->t = t;
    w->timeout = timeout;
    harness_call_start(&w->call, waiter_wait, w);
}

static void await_blocked(struct waiter *w)
{
    harness_call_await_asleep(&w->call);
    ASSERT_FALSE(atomic_load(&w->call.done));
    ASSERT_ERR(cancel_semaphore_destroy(w->s), -EBUSY);
}

/* ---- init, release, count ----------------------------------------------- */

TEST(sem_init_validation)
{
    cancel_semaphore s;
    ASSERT_ERR(cancel_semaphore_init(&s, 0, 0), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 0, -1), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, -1, 5), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 6, 5), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, INT_MIN, INT_MAX), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 2, 1), -EINVAL);

    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    ASSERT_OK(cancel_semaphore_init(&s, 1, 1));
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    ASSERT_OK(cancel_semaphore_init(&s, 5, 5));
    ASSERT_EQ(cancel_semaphore_count(&s), 5);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    ASSERT_OK(cancel_semaphore_init(&s, INT_MAX, INT_MAX));
    ASSERT_EQ(cancel_semaphore_count(&s), INT_MAX);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_failed_init_changes_nothing)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 3, 4));
    ASSERT_ERR(cancel_semaphore_init(&s, 5, 4), -EINVAL);
    ASSERT_ERR(cancel_semaphore_init(&s, 0, 0), -EINVAL);
    ASSERT_EQ(cancel_semaphore_count(&s), 3);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 3); /* max still 4 */
    ASSERT_ERR(cancel_semaphore_release(&s, 1), -EOVERFLOW);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_release_returns_previous_count)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 10));
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    ASSERT_EQ(cancel_semaphore_release(&s, 2), 1);
    ASSERT_EQ(cancel_semaphore_count(&s), 3);
    ASSERT_EQ(cancel_semaphore_release(&s, 7), 3);
    ASSERT_EQ(cancel_semaphore_count(&s), 10);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_release_past_max_is_eoverflow_and_changes_nothing)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 2, 3));
    ASSERT_ERR(cancel_semaphore_release(&s, 2), -EOVERFLOW);
    ASSERT_EQ(cancel_semaphore_count(&s), 2);
    ASSERT_ERR(cancel_semaphore_release(&s, INT_MAX), -EOVERFLOW);
    ASSERT_EQ(cancel_semaphore_count(&s), 2);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 2);
    ASSERT_EQ(cancel_semaphore_count(&s), 3);
    ASSERT_ERR(cancel_semaphore_release(&s, 1), -EOVERFLOW);
    ASSERT_EQ(cancel_semaphore_count(&s), 3);
    ASSERT_OK(cancel_semaphore_destroy(&s));

    /* No signed overflow near INT_MAX either. */
    ASSERT_OK(cancel_semaphore_init(&s, INT_MAX - 1, INT_MAX));
    ASSERT_ERR(cancel_semaphore_release(&s, 2), -EOVERFLOW);
    ASSERT_ERR(cancel_semaphore_release(&s, INT_MAX), -EOVERFLOW);
    ASSERT_EQ(cancel_semaphore_count(&s), INT_MAX - 1);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), INT_MAX - 1);
    ASSERT_EQ(cancel_semaphore_count(&s), INT_MAX);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_release_bad_n_is_einval_and_changes_nothing)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 1, 5));
    ASSERT_ERR(cancel_semaphore_release(&s, 0), -EINVAL);
    ASSERT_ERR(cancel_semaphore_release(&s, -1), -EINVAL);
    ASSERT_ERR(cancel_semaphore_release(&s, INT_MIN), -EINVAL);
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

/* ---- wait --------------------------------------------------------------- */

TEST(sem_wait_takes_one)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 2, 2));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_semaphore_wait(&s, cancel_source_token(src), 0));
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    ASSERT_OK(cancel_semaphore_wait(&s, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_ERR(cancel_semaphore_wait(&s, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_ERR(cancel_semaphore_wait(&s, cancel_source_token(src), 0),
               -ETIMEDOUT);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(cancel_semaphore_wait(&s, cancel_source_token(src), 5 * SEC));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

TEST(sem_canceled_token_wins_over_count_on_entry)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 3, 3));
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_semaphore_wait(&s, t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_semaphore_wait(&s, t, 0), -ECANCELED);
    ASSERT_EQ(cancel_semaphore_count(&s), 3); /* nothing taken */
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(sem_canceled_token_on_entry_with_zero_count)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(
        cancel_semaphore_wait(&s, cancel_source_token(src), CANCEL_INFINITE),
        -ECANCELED);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

TEST(sem_release_wakes_blocked_waiter)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    struct waiter w;
    start(&w, &s, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_release_n_wakes_n_waiters)
{
    enum { N = 5 };
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, N));
    struct waiter w[N];
    for (int i = 0; i < N; i++)
        start(&w[i], &s, CANCEL_NONE, CANCEL_INFINITE);
    for (int i = 0; i < N; i++)
        await_blocked(&w[i]);
    ASSERT_EQ(cancel_semaphore_release(&s, 3), 0);
    /* Gate: three of them return; then the others are asleep again. */
    int done;
    do {
        sched_yield();
        done = 0;
        for (int i = 0; i < N; i++)
            done += atomic_load(&w[i].call.done);
    } while (done < 3);
    for (int i = 0; i < N; i++)
        harness_call_await_asleep(&w[i].call);
    done = 0;
    for (int i = 0; i < N; i++)
        done += atomic_load(&w[i].call.done);
    ASSERT_EQ(done, 3);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_ERR(cancel_semaphore_destroy(&s), -EBUSY);
    ASSERT_EQ(cancel_semaphore_release(&s, 2), 0);
    for (int i = 0; i < N; i++)
        ASSERT_OK(harness_call_finish(&w[i].call));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

TEST(sem_cancel_wakes_blocked_waiter)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, &s, t, CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    /* The count released later is still there for the next taker. */
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    cancel_source_free(src);
}

/* Completion beats cancellation: a blocked waiter woken by a release takes
 * the count even if its token is canceled right after. */
TEST(sem_blocked_waiter_release_then_cancel_takes_count)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &s, cancel_source_token(src), CANCEL_INFINITE);
    await_blocked(&w);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

/* A canceled waiter does not take the count meant for another: the count
 * released after the cancel goes to the waiter that is still waiting. */
TEST(sem_canceled_waiter_leaves_count_to_others)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    struct waiter a, b;
    start(&a, &s, cancel_source_token(src), CANCEL_INFINITE);
    await_blocked(&a);
    start(&b, &s, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&b);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&a.call), -ECANCELED);
    await_blocked(&b);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(harness_call_finish(&b.call));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    cancel_source_free(src);
}

TEST(sem_destroy_with_waiters_is_ebusy)
{
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 2));
    struct waiter a, b;
    start(&a, &s, CANCEL_NONE, CANCEL_INFINITE);
    start(&b, &s, CANCEL_NONE, CANCEL_INFINITE);
    await_blocked(&a);
    await_blocked(&b);
    ASSERT_ERR(cancel_semaphore_destroy(&s), -EBUSY);
    ASSERT_EQ(cancel_semaphore_count(&s), 0); /* nothing changed */
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    /* One of them is still in: still busy. */
    while (!atomic_load(&a.call.done) && !atomic_load(&b.call.done))
        sched_yield();
    ASSERT_ERR(cancel_semaphore_destroy(&s), -EBUSY);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(harness_call_finish(&a.call));
    ASSERT_OK(harness_call_finish(&b.call));
    ASSERT_OK(cancel_semaphore_destroy(&s));
}

/* ---- timeouts ----------------------------------------------------------- */

TEST(sem_times_out_exactly_at_deadline)
{
    cancel_clock *c = harness_manual_clock();
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &s, cancel_source_token(src), 40 * MS);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, 40 * MS - 1));
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    /* A release after the timeout stays in the semaphore. */
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_EQ(cancel_semaphore_count(&s), 1);
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(sem_release_before_timeout_returns_zero)
{
    cancel_clock *c = harness_manual_clock();
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    struct waiter w;
    start(&w, &s, CANCEL_NONE, SEC);
    await_blocked(&w);
    ASSERT_OK(cancel_clock_advance(c, SEC - 1));
    await_blocked(&w);
    ASSERT_EQ(cancel_semaphore_release(&s, 1), 0);
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(cancel_semaphore_count(&s), 0);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    harness_manual_clock_done(c);
}

TEST(sem_timeout_zero_does_not_block)
{
    cancel_clock *c = harness_manual_clock();
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, 0, 1));
    ASSERT_ERR(cancel_semaphore_wait(&s, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_semaphore_destroy(&s));
    harness_manual_clock_done(c);
}

/* ---- conservation ------------------------------------------------------- */

struct worker {
    cancel_semaphore *s;
    harness_gate *go;
    long n;
    long ok;
    int err;
};

static void *taker_main(void *arg)
{
    struct worker *k = arg;
    harness_gate_wait(k->go);
    for (long i = 0; i < k->n; i++) {
        int r = cancel_semaphore_wait(k->s, CANCEL_NONE, CANCEL_INFINITE);
        if (r != 0) {
            k->err = r;
            return NULL;
        }
        k->ok++;
    }
    return NULL;
}

static void *giver_main(void *arg)
{
    struct worker *k = arg;
    harness_gate_wait(k->go);
    for (long i = 0; i < k->n; i++) {
        int r = cancel_semaphore_release(k->s, 1);
        if (r < 0) {
            k->err = r;
            return NULL;
        }
        k->ok++;
        if (i % 7 == 0)
            sched_yield();
    }
    return NULL;
}

TEST(sem_count_conserved_across_threads)
{
    enum { T = 3, G = 3, INITIAL = 2 };
    long per = harness_scale(4000);
    cancel_semaphore s;
    ASSERT_OK(cancel_semaphore_init(&s, INITIAL, INT_MAX));
    harness_gate go;
    harness_gate_init(&go);
    struct worker takers[T], givers[G];
    pthread_t th[T + G];
    for (int i = 0; i < T; i++) {
        takers[i] = (struct worker){&s, &go, per, 0, 0};
        ASSERT_OK(pthread_create(&th[i], NULL, taker_main, &takers[i]));
    }
    for (int i = 0; i < G; i++) {
        givers[i] = (struct worker){&s, &go, per, 0, 0};
        ASSERT_OK(pthread_create(&th[T + i], NULL, giver_main, &givers[i]));
    }
    harness_gate_open(&go);
    for (int i = 0; i < T + G; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    harness_gate_destroy(&go);
    long taken = 0, given = 0;
    for (int i = 0; i < T; i++) {
        ASSERT_OK(takers[i].err);
        taken += takers[i].ok;
    }
    for (int i = 0; i < G; i++) {
        ASSERT_OK(givers[i].err);
        given += givers[i].ok;
    }
    ASSERT_EQ(taken, T * per);
    ASSERT_EQ(given, G * per);
    ASSERT_EQ(cancel_semaphore_count(&s), INITIAL);
    ASSERT_OK(cancel_semaphore_destroy(&s));
}
