/* Unit tests of the token waits of cancel/wait.h: cancel_wait and
 * cancel_sleep.
 *
 * Time comes from a manual clock (no sleeping).  To act while another
 * thread is blocked in a wait, a test spins until that thread is asleep in
 * the kernel (state S in /proc): the waiter raises `entered` right before
 * the call, and the first thing inside a wait that can sleep comes after
 * its deadline has been computed and its wake-up hooks are in place.  That
 * is a gate, not a sleep; every assertion also holds if the action comes
 * earlier than the gate intends. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

/* ---- helpers ------------------------------------------------------------ */

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

enum op { OP_WAIT, OP_SLEEP };

/* One thread running one wait. */
struct waiter {
    harness_call call;
    enum op op;
    cancel_token t;
    int64_t timeout;
};

static int waiter_wait(void *arg)
{
    struct waiter *w = arg;
    if (w->op == OP_WAIT)
        return cancel_wait(w->t, w->timeout);
    return cancel_sleep(w->t, w->timeout);
}

static void start(struct waiter *w, enum op op, cancel_token t, int64_t timeout)
{
    w->op = op;
    w->t = t;
    w->timeout = timeout;
    harness_call_start(&w->call, waiter_wait, w);
}

/* ---- cancel_wait -------------------------------------------------------- */

TEST(wait_canceled_returns_ecanceled_and_records_token)
{
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));

    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_wait(t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));

    /* The cancellation check comes before the timeout. */
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_wait(t, 0), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_wait(t, 5 * SEC), -ECANCELED);

    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(wait_timeout_zero_returns_etimedout_at_once)
{
    /* a wait that blocked would never end */
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    ASSERT_ERR(cancel_wait(cancel_source_token(src), 0), -ETIMEDOUT);
    ASSERT_ERR(cancel_wait(CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(wait_times_out_exactly_at_deadline)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, OP_WAIT, cancel_source_token(src), 100 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));

    ASSERT_OK(cancel_clock_advance(c, 100 * MS - 1));
    harness_call_await_asleep(&w.call); /* a woken waiter goes back to sleep */
    ASSERT_FALSE(atomic_load(&w.call.done));

    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(wait_none_with_finite_timeout_times_out)
{
    cancel_clock *c = harness_manual_clock();
    struct waiter w;
    start(&w, OP_WAIT, CANCEL_NONE, 1 * SEC);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, SEC - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    harness_manual_clock_done(c);
}

/* A wait keeps the clock it started with: installing another clock while
 * it waits changes nothing for it. */
TEST(wait_keeps_its_manual_clock)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, OP_WAIT, cancel_source_token(src), 40 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_install(NULL)); /* the system clock again */
    ASSERT_OK(cancel_clock_advance(c, 40 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    cancel_source_free(src);
    cancel_clock_free(c);
}

TEST(wait_keeps_the_system_clock)
{
    cancel_source *src = cancel_source_new();
    struct waiter w;
    int64_t t0 = mono_now();
    start(&w, OP_WAIT, cancel_source_token(src), 5 * MS);
    harness_call_await_asleep(&w.call);
    cancel_clock *c = harness_manual_clock(); /* never advanced */
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_GE(mono_now() - t0, 5 * MS);
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(wait_real_clock_timeout_is_not_early)
{
    cancel_source *src = cancel_source_new();
    int64_t t0 = mono_now();
    ASSERT_ERR(cancel_wait(cancel_source_token(src), 2 * MS), -ETIMEDOUT);
    ASSERT_GE(mono_now() - t0, 2 * MS);
    cancel_source_free(src);
}

TEST(wait_cancel_wakes_blocked_waiter)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, OP_WAIT, t, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    /* Recording is per thread: this one recorded nothing. */
    ASSERT_FALSE(cancel_token_equal(cancel_canceled_token(), t));
    cancel_source_free(src);
}

TEST(wait_cancel_wins_over_pending_timeout)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, OP_WAIT, t, 10 * SEC);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_EQ(cancel_clock_now(), 0); /* no time was needed */
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(wait_woken_by_timer_cancel)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 50 * MS));
    struct waiter w;
    start(&w, OP_WAIT, t, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 50 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(wait_linked_token_woken_by_parent)
{
    cancel_source *parent = cancel_source_new();
    cancel_token pt = cancel_source_token(parent);
    cancel_source *child = cancel_source_new_linked(&pt, 1);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_source_token(child);
    struct waiter w;
    start(&w, OP_WAIT, ct, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_source_cancel(parent));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, ct));
    cancel_source_free(child);
    cancel_source_free(parent);
}

TEST(wait_woken_by_cancel_async)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, OP_WAIT, t, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    cancel_source_free(src);
}

TEST(wait_none_infinite_is_einval)
{
    ASSERT_ERR(cancel_wait(CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_wait(CANCEL_NONE, -12345), -EINVAL);
}

TEST(wait_many_waiters_all_wake_on_one_cancel)
{
    enum { N = 8 };
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w[N];
    for (int i = 0; i < N; i++)
        start(&w[i], OP_WAIT, t, CANCEL_INFINITE);
    for (int i = 0; i < N; i++)
        harness_call_await_asleep(&w[i].call);
    for (int i = 0; i < N; i++)
        ASSERT_FALSE(atomic_load(&w[i].call.done));
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < N; i++) {
        ASSERT_ERR(harness_call_finish(&w[i].call), -ECANCELED);
        ASSERT_TRUE(cancel_token_equal(w[i].call.recorded, t));
    }
    cancel_source_free(src);
}

TEST(wait_retained_token_outlives_freed_source)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    struct waiter w;
    start(&w, OP_WAIT, t, 20 * MS);
    harness_call_await_asleep(&w.call);
    cancel_source_free(src); /* nobody can cancel it any more */
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 20 * MS));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    cancel_token_release(t);
    harness_manual_clock_done(c);
}

/* ---- cancel_sleep ------------------------------------------------------- */

TEST(sleep_returns_zero_after_full_time)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, OP_SLEEP, cancel_source_token(src), 3 * SEC);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 3 * SEC - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_OK(harness_call_finish(&w.call));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(sleep_none_returns_zero_after_full_time)
{
    cancel_clock *c = harness_manual_clock();
    struct waiter w;
    start(&w, OP_SLEEP, CANCEL_NONE, 7 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 7 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_OK(harness_call_finish(&w.call));
    harness_manual_clock_done(c);
}

TEST(sleep_zero_on_live_token_returns_zero)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_sleep(cancel_source_token(src), 0));
    ASSERT_OK(cancel_sleep(CANCEL_NONE, 0));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(sleep_canceled_token_returns_at_once_even_for_zero)
{
    /* a sleep that blocked would never end */
    cancel_clock *c = harness_manual_clock();
    cancel_source *other = cancel_source_new();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));

    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_sleep(t, 0), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));

    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_sleep(t, 10 * SEC), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_ERR(cancel_sleep(t, CANCEL_INFINITE), -ECANCELED);
    ASSERT_EQ(cancel_clock_now(), 0);

    cancel_source_free(src);
    cancel_source_free(other);
    harness_manual_clock_done(c);
}

TEST(sleep_ends_early_when_canceled)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct waiter w;
    start(&w, OP_SLEEP, t, 3600 * SEC);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 10 * SEC));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, t));
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(sleep_infinite_ends_only_on_cancel)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, OP_SLEEP, cancel_source_token(src), CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, INT64_MAX / 2));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(sleep_none_negative_is_einval)
{
    ASSERT_ERR(cancel_sleep(CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
    ASSERT_ERR(cancel_sleep(CANCEL_NONE, -7), -EINVAL);
}

/* ---- signals ------------------------------------------------------------ */

static atomic_int sig_hits;

static void sig_handler(int signo)
{
    (void)signo;
    atomic_fetch_add(&sig_hits, 1);
}

/* A signal handled by a blocked waiter (no SA_RESTART) does not end its
 * wait: a wait returns only on cancellation or its timeout. */
static void signals_do_not_end(enum op op, int64_t timeout)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sig_handler;
    ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
    cancel_source *src = cancel_source_new();
    struct waiter w;
    start(&w, op, cancel_source_token(src), timeout);
    harness_call_await_asleep(&w.call);
    for (int i = 0; i < 20; i++) {
        int before = atomic_load(&sig_hits);
        ASSERT_OK(pthread_kill(w.call.th, SIGUSR1));
        while (atomic_load(&sig_hits) == before) /* handled */
            sched_yield();
        harness_call_await_asleep(&w.call);
        ASSERT_FALSE(atomic_load(&w.call.done));
    }
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    cancel_source_free(src);
    sa.sa_handler = SIG_DFL;
    ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
}

TEST(signals_do_not_end_an_infinite_wait)
{
    signals_do_not_end(OP_WAIT, CANCEL_INFINITE);
}

TEST(signals_do_not_end_a_timed_wait)
{
    signals_do_not_end(OP_WAIT, 3600 * SEC); /* the real clock */
}

TEST(signals_do_not_end_a_sleep)
{
    signals_do_not_end(OP_SLEEP, 3600 * SEC);
}

/* ---- no allocation ------------------------------------------------------ */

/* Waits never allocate: with every allocation failing, blocked token,
 * event, semaphore and countdown waits still work (a wait that needed
 * memory would fail with -ENOMEM). */
enum obj_kind { K_EVENT, K_SEM, K_COUNTDOWN, K_TOKEN };

struct obj_waiter {
    enum obj_kind kind;
    cancel_event ev;
    cancel_semaphore sem;
    cancel_countdown cd;
    cancel_token t;
    int result;
};

static void *obj_waiter_main(void *arg)
{
    struct obj_waiter *o = arg;
    switch (o->kind) {
    case K_EVENT:
        o->result = cancel_event_wait(&o->ev, o->t, CANCEL_INFINITE);
        break;
    case K_SEM:
        o->result = cancel_semaphore_wait(&o->sem, o->t, CANCEL_INFINITE);
        break;
    case K_COUNTDOWN:
        o->result = cancel_countdown_wait(&o->cd, o->t, CANCEL_INFINITE);
        break;
    default:
        o->result = cancel_wait(o->t, CANCEL_INFINITE);
        break;
    }
    return NULL;
}

static bool obj_busy(struct obj_waiter *o)
{
    switch (o->kind) {
    case K_EVENT:
        return cancel_event_destroy(&o->ev) == -EBUSY;
    case K_SEM:
        return cancel_semaphore_destroy(&o->sem) == -EBUSY;
    case K_COUNTDOWN:
        return cancel_countdown_destroy(&o->cd) == -EBUSY;
    default:
        return true;
    }
}

TEST(blocked_waits_do_not_allocate)
{
    for (int k = K_EVENT; k <= K_TOKEN; k++) {
        for (int by_cancel = 0; by_cancel < 2; by_cancel++) {
            if (k == K_TOKEN && !by_cancel)
                continue;
            cancel_source *src = cancel_source_new();
            struct obj_waiter o;
            memset(&o, 0, sizeof(o));
            o.kind = (enum obj_kind)k;
            o.t = cancel_source_token(src);
            ASSERT_OK(cancel_event_init(&o.ev, false));
            ASSERT_OK(cancel_semaphore_init(&o.sem, 0, 1));
            ASSERT_OK(cancel_countdown_init(&o.cd, 1));
            cancel__alloc_fail_after(0);
            pthread_t th;
            ASSERT_OK(pthread_create(&th, NULL, obj_waiter_main, &o));
            while (!obj_busy(&o)) /* gate: the waiter is inside */
                sched_yield();
            if (by_cancel)
                ASSERT_OK(cancel_source_cancel(src));
            else if (k == K_EVENT)
                ASSERT_OK(cancel_event_set(&o.ev));
            else if (k == K_SEM)
                ASSERT_EQ(cancel_semaphore_release(&o.sem, 1), 0);
            else
                ASSERT_EQ(cancel_countdown_signal(&o.cd, 1), 1);
            ASSERT_OK(pthread_join(th, NULL));
            cancel__alloc_fail_after(-1);
            ASSERT_ERR(o.result, by_cancel ? -ECANCELED : 0);
            ASSERT_OK(cancel_event_destroy(&o.ev));
            ASSERT_OK(cancel_semaphore_destroy(&o.sem));
            ASSERT_OK(cancel_countdown_destroy(&o.cd));
            cancel_source_free(src);
        }
    }
}
