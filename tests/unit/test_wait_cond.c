/* Unit tests of cancel_cond_wait: a condition wait that also wakes on
 * cancellation and on a timeout of the installed clock, and returns with
 * the mutex held on every path.
 *
 * The waiter takes the mutex, raises `entered` and calls cancel_cond_wait;
 * the main thread's pthread_mutex_lock then succeeds only once the waiter
 * is inside pthread_cond_wait (which released the mutex): a gate built on
 * the mutex itself, no sleeping.  Whether the mutex is held on return is
 * checked with an ERRORCHECK mutex (unlock fails with EPERM otherwise), or,
 * with a default mutex, by a trylock from another thread while the waiter
 * says it holds it.  Like pthread_cond_wait, cancel_cond_wait may return 0
 * spuriously, so the waiters loop on their predicate as real callers do. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static void errorcheck_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    ASSERT_OK(pthread_mutexattr_init(&a));
    ASSERT_OK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK));
    ASSERT_OK(pthread_mutex_init(m, &a));
    ASSERT_OK(pthread_mutexattr_destroy(&a));
}

static void cond_with_clock(pthread_cond_t *c, clockid_t clk)
{
    pthread_condattr_t a;
    ASSERT_OK(pthread_condattr_init(&a));
    ASSERT_OK(pthread_condattr_setclock(&a, clk));
    ASSERT_OK(pthread_cond_init(c, &a));
    ASSERT_OK(pthread_condattr_destroy(&a));
}

/* A waiter: wait on (c, m) until *pred, cancellation or timeout. */
struct waiter {
    pthread_t th;
    pthread_cond_t *c;
    pthread_mutex_t *m;
    cancel_token t;
    int64_t timeout; /* on the installed clock; negative: infinite */
    bool *pred;      /* under m */
    bool handshake;  /* default mutex: let main check that m is held */
    atomic_bool entered, returned, checked, done;
    int result;
    int unlock_rc;
    int spurious;
    cancel_token recorded;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    ASSERT_OK(pthread_mutex_lock(w->m));
    int64_t end = w->timeout < 0 ? 0 : cancel_clock_now() + w->timeout;
    atomic_store(&w->entered, true);
    int r;
    for (;;) {
        int64_t left = CANCEL_INFINITE;
        if (w->timeout >= 0) {
            left = end - cancel_clock_now();
            if (left < 0)
                left = 0;
        }
        r = cancel_cond_wait(w->c, w->m, w->t, left);
        if (r != 0 || (w->pred != NULL && *w->pred))
            break;
        w->spurious++;
    }
    w->result = r;
    w->recorded = cancel_canceled_token();
    if (w->handshake) {
        atomic_store(&w->returned, true);
        while (!atomic_load(&w->checked))
            sched_yield();
    }
    w->unlock_rc = pthread_mutex_unlock(w->m);
    atomic_store(&w->done, true);
    return NULL;
}

static void start_hs(struct waiter *w, pthread_cond_t *c, pthread_mutex_t *m,
                     cancel_token t, int64_t timeout, bool *pred,
                     bool handshake)
{
    memset(w, 0, sizeof(*w));
    w->c = c;
    w->m = m;
    w->t = t;
    w->timeout = timeout;
    w->pred = pred;
    w->handshake = handshake;
    ASSERT_OK(pthread_create(&w->th, NULL, waiter_main, w));
}

static void start(struct waiter *w, pthread_cond_t *c, pthread_mutex_t *m,
                  cancel_token t, int64_t timeout, bool *pred)
{
    start_hs(w, c, m, t, timeout, pred, false);
}

/* Gate: returns holding m, with the waiter inside pthread_cond_wait. */
static void lock_when_waiting(struct waiter *w)
{
    while (!atomic_load(&w->entered))
        sched_yield();
    ASSERT_OK(pthread_mutex_lock(w->m));
    ASSERT_FALSE(atomic_load(&w->done));
}

static int finish(struct waiter *w)
{
    ASSERT_OK(pthread_join(w->th, NULL));
    ASSERT_OK(w->unlock_rc); /* the waiter held m when it returned */
    return w->result;
}

/* ---- without blocking --------------------------------------------------- */

TEST(cond_canceled_on_entry_holds_mutex_and_records)
{
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));

    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_OK(pthread_mutex_lock(&m));
    ASSERT_ERR(cancel_cond_wait(&c, &m, t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));

    ASSERT_OK(pthread_mutex_lock(&m));
    ASSERT_ERR(cancel_cond_wait(&c, &m, t, 0), -ECANCELED); /* check first */
    ASSERT_OK(pthread_mutex_unlock(&m));

    cancel_source_free(src);
    cancel_source_free(other);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

TEST(cond_timeout_zero_holds_mutex)
{
    /* a wait that blocked would never end */
    cancel_clock *clk = harness_manual_clock();
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(pthread_mutex_lock(&m));
    ASSERT_ERR(cancel_cond_wait(&c, &m, cancel_source_token(src), 0),
               -ETIMEDOUT);
    ASSERT_ERR(cancel_cond_wait(&c, &m, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(pthread_mutex_unlock(&m));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
    harness_manual_clock_done(clk);
}

/* ---- blocked waiters ---------------------------------------------------- */

TEST(cond_times_out_with_manual_clock)
{
    cancel_clock *clk = harness_manual_clock();
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &c, &m, cancel_source_token(src), 50 * MS, NULL);
    lock_when_waiting(&w);
    ASSERT_OK(pthread_mutex_unlock(&m));

    ASSERT_OK(cancel_clock_advance(clk, 50 * MS - 1));
    ASSERT_OK(pthread_mutex_lock(&m)); /* the waiter is not returning */
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(pthread_mutex_unlock(&m));

    ASSERT_OK(cancel_clock_advance(clk, 1));
    ASSERT_ERR(finish(&w), -ETIMEDOUT);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
    harness_manual_clock_done(clk);
}

/* The deadline passes while another thread holds the mutex: the wake is
 * handed off, and the waiter returns once the mutex is free. */
TEST(cond_times_out_while_mutex_is_held_elsewhere)
{
    cancel_clock *clk = harness_manual_clock();
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    struct waiter w;
    start(&w, &c, &m, CANCEL_NONE, 5 * MS, NULL);
    lock_when_waiting(&w);
    ASSERT_OK(cancel_clock_advance(clk, 5 * MS)); /* holding m */
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_ERR(finish(&w), -ETIMEDOUT);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
    harness_manual_clock_done(clk);
}

TEST(cond_cancel_wakes_blocked_waiter)
{
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, &c, &m, t, CANCEL_INFINITE, NULL);
    lock_when_waiting(&w);
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(finish(&w), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.recorded, t));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

TEST(cond_cancel_wakes_all_waiters)
{
    enum { N = 4 };
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    struct waiter w[N];
    for (int i = 0; i < N; i++) {
        start(&w[i], &c, &m, cancel_source_token(src), CANCEL_INFINITE, NULL);
        lock_when_waiting(&w[i]);
        ASSERT_OK(pthread_mutex_unlock(&m));
    }
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < N; i++)
        ASSERT_ERR(finish(&w[i]), -ECANCELED);
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

TEST(cond_broadcast_wakes_with_zero)
{
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    bool pred = false;
    struct waiter a, b;
    start(&a, &c, &m, cancel_source_token(src), CANCEL_INFINITE, &pred);
    lock_when_waiting(&a);
    ASSERT_OK(pthread_mutex_unlock(&m));
    start(&b, &c, &m, CANCEL_NONE, CANCEL_INFINITE, &pred);
    lock_when_waiting(&b);
    pred = true;
    ASSERT_OK(pthread_cond_broadcast(&c));
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_OK(finish(&a));
    ASSERT_OK(finish(&b));
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

TEST(cond_signal_before_timeout_returns_zero)
{
    cancel_clock *clk = harness_manual_clock();
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    bool pred = false;
    struct waiter w;
    start(&w, &c, &m, CANCEL_NONE, SEC, &pred);
    lock_when_waiting(&w);
    pred = true;
    ASSERT_OK(pthread_cond_signal(&c));
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_OK(finish(&w));
    ASSERT_OK(cancel_clock_advance(clk, 2 * SEC)); /* the watch is gone */
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
    harness_manual_clock_done(clk);
}

TEST(cond_timer_cancel_wakes_waiter)
{
    cancel_clock *clk = harness_manual_clock();
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    ASSERT_OK(pthread_cond_init(&c, NULL));
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 10 * MS));
    struct waiter w;
    start(&w, &c, &m, t, CANCEL_INFINITE, NULL);
    lock_when_waiting(&w);
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_OK(cancel_clock_advance(clk, 10 * MS));
    ASSERT_ERR(finish(&w), -ECANCELED);
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    ASSERT_TRUE(cancel_token_equal(w.recorded, t));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
    harness_manual_clock_done(clk);
}

/* The canceller holds the waiter's mutex while it cancels: no deadlock.  A
 * default mutex, so that a library that locked it on the canceller's
 * thread would hang here (an errorcheck mutex would say EDEADLK). */
TEST(cond_cancel_while_holding_the_mutex_does_not_deadlock)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start_hs(&w, &c, &m, t, CANCEL_INFINITE, NULL, true);
    lock_when_waiting(&w);
    ASSERT_OK(cancel_source_cancel(src)); /* holding m */
    ASSERT_FALSE(atomic_load(&w.done));
    ASSERT_OK(pthread_mutex_unlock(&m));
    while (!atomic_load(&w.returned))
        sched_yield();
    ASSERT_ERR(pthread_mutex_trylock(&m), EBUSY); /* the waiter holds it */
    atomic_store(&w.checked, true);
    ASSERT_ERR(finish(&w), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.recorded, t));
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

/* After cancel_cond_wait returns the library no longer refers to the
 * condvar and mutex, also when the wake went through the hand-off: they
 * can be destroyed and freed at once (ASan checks). */
TEST(cond_objects_can_be_freed_right_after_return)
{
    long rounds = harness_scale(50);
    for (long i = 0; i < rounds; i++) {
        pthread_mutex_t *m = malloc(sizeof(*m));
        pthread_cond_t *c = malloc(sizeof(*c));
        ASSERT_NOT_NULL(m);
        ASSERT_NOT_NULL(c);
        errorcheck_mutex(m);
        ASSERT_OK(pthread_cond_init(c, NULL));
        cancel_source *src = cancel_source_new();
        struct waiter w;
        start(&w, c, m, cancel_source_token(src), CANCEL_INFINITE, NULL);
        lock_when_waiting(&w);
        ASSERT_OK(cancel_source_cancel(src)); /* hand-off: we hold m */
        ASSERT_OK(pthread_mutex_unlock(m));
        ASSERT_ERR(finish(&w), -ECANCELED);
        ASSERT_OK(pthread_cond_destroy(c));
        ASSERT_OK(pthread_mutex_destroy(m));
        memset(c, 0xdd, sizeof(*c));
        memset(m, 0xdd, sizeof(*m));
        free(c);
        free(m);
        cancel_source_free(src);
    }
}

static void real_timeout(pthread_cond_t *c)
{
    pthread_mutex_t m;
    errorcheck_mutex(&m);
    cancel_source *src = cancel_source_new();
    const int64_t timeout = 20 * MS;
    ASSERT_OK(pthread_mutex_lock(&m));
    int64_t t0 = mono_now(), end = t0 + timeout;
    int r;
    do {
        int64_t left = end - mono_now();
        r = cancel_cond_wait(c, &m, cancel_source_token(src),
                             left > 0 ? left : 0);
    } while (r == 0);
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_ERR(r, -ETIMEDOUT);
    ASSERT_GE(mono_now() - t0, timeout); /* never early */
    cancel_source_free(src);
    ASSERT_OK(pthread_mutex_destroy(&m));
}

TEST(cond_monotonic_condvar_times_out)
{
    pthread_cond_t c;
    cond_with_clock(&c, CLOCK_MONOTONIC);
    real_timeout(&c);
    ASSERT_OK(pthread_cond_destroy(&c));
}

TEST(cond_default_clock_condvar_times_out)
{
    pthread_cond_t c;
    ASSERT_OK(pthread_cond_init(&c, NULL));
    real_timeout(&c);
    ASSERT_OK(pthread_cond_destroy(&c));
}

TEST(cond_realtime_condvar_times_out)
{
    pthread_cond_t c;
    cond_with_clock(&c, CLOCK_REALTIME);
    real_timeout(&c);
    ASSERT_OK(pthread_cond_destroy(&c));
}

TEST(cond_monotonic_condvar_canceled_while_blocked)
{
    pthread_mutex_t m;
    pthread_cond_t c;
    errorcheck_mutex(&m);
    cond_with_clock(&c, CLOCK_MONOTONIC);
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, &c, &m, cancel_source_token(src), 3600 * SEC, NULL);
    lock_when_waiting(&w);
    ASSERT_OK(pthread_mutex_unlock(&m));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(finish(&w), -ECANCELED);
    cancel_source_free(src);
    ASSERT_OK(pthread_cond_destroy(&c));
    ASSERT_OK(pthread_mutex_destroy(&m));
}

/* Regression: a hand-off blocked on one busy mutex must not delay the
 * broadcast for a waiter on another mutex (one helper thread used to serve
 * every hand-off in turn). */
TEST(cond_handoff_not_blocked_by_unrelated_mutex)
{
    pthread_mutex_t mx, my;
    pthread_cond_t cx, cy;
    errorcheck_mutex(&mx);
    errorcheck_mutex(&my);
    ASSERT_OK(pthread_cond_init(&cx, NULL));
    ASSERT_OK(pthread_cond_init(&cy, NULL));
    cancel_source *sx = cancel_source_new(), *sy = cancel_source_new();
    struct waiter x, y;
    start(&x, &cx, &mx, cancel_source_token(sx), CANCEL_INFINITE, NULL);
    start(&y, &cy, &my, cancel_source_token(sy), CANCEL_INFINITE, NULL);
    lock_when_waiting(&x);               /* holds mx */
    lock_when_waiting(&y);               /* holds my */
    ASSERT_OK(cancel_source_cancel(sx)); /* handed off; blocks on mx */
    ASSERT_OK(cancel_source_cancel(sy)); /* handed off too */
    ASSERT_OK(pthread_mutex_unlock(&my));
    ASSERT_ERR(finish(&y), -ECANCELED); /* while mx is still held */
    ASSERT_OK(pthread_mutex_unlock(&mx));
    ASSERT_ERR(finish(&x), -ECANCELED);
    cancel_source_free(sx);
    cancel_source_free(sy);
    pthread_cond_destroy(&cx);
    pthread_cond_destroy(&cy);
    pthread_mutex_destroy(&mx);
    pthread_mutex_destroy(&my);
}
