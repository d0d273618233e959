/* Unit tests of timers and the clock: cancel_source_cancel_after,
 * cancel_source_new_timeout, cancel_clock_*.  Every timer that fires does so
 * on a manual clock: no sleeping, deterministic. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define MS ((int64_t)1000000)
#define SEC ((int64_t)1000000000)

static cancel_clock *manual(int64_t start)
{
    cancel_clock *c = cancel_clock_new_manual(start);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    return c;
}

static void manual_done(cancel_clock *c)
{
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

static void *advance_thread(void *c)
{
    ASSERT_OK(cancel_clock_advance(c, 100));
    return NULL;
}

/* What a timer callback saw.  Plain fields on purpose: advance returning
 * happens-after the callbacks returned (TSan checks it). */
struct seen {
    pthread_t thread;
    int runs;
    int reason;
};

static cancel_source *seen_src;

static void count_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void seen_cb(void *arg)
{
    struct seen *s = arg;
    s->thread = pthread_self();
    s->runs++;
    s->reason = cancel_reason(cancel_source_token(seen_src));
}

/* ---- cancel_after ------------------------------------------------------- */

TEST(cancel_after_fires_exactly_at_deadline)
{
    cancel_clock *c = manual(1000);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 100 * MS));
    ASSERT_OK(cancel_clock_advance(c, 100 * MS - 1));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    cancel_source_free(src);
    manual_done(c);
}

TEST(timer_callbacks_run_on_timer_thread)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    seen_src = src;
    struct seen s[3];
    memset(s, 0, sizeof(s));
    cancel_registration reg[3];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(
            cancel_register(cancel_source_token(src), &reg[i], seen_cb, &s[i]));
    ASSERT_OK(cancel_source_cancel_after(src, 10));
    ASSERT_OK(cancel_clock_advance(c, 10));
    /* Before advance returned the callbacks ran and returned. */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(s[i].runs, 1);
        ASSERT_EQ(s[i].reason, ETIMEDOUT);
        ASSERT_FALSE(pthread_equal(s[i].thread, pthread_self()));
        ASSERT_TRUE(pthread_equal(s[i].thread, s[0].thread));
    }
    cancel_source_free(src);
    manual_done(c);
}

TEST(cancel_after_zero_fires_on_timer_thread)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    seen_src = src;
    struct seen s;
    memset(&s, 0, sizeof(s));
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, seen_cb, &s));
    ASSERT_OK(cancel_source_cancel_after(src, 0));
    ASSERT_OK(cancel_clock_advance(c, 0));
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    ASSERT_EQ(s.runs, 1);
    ASSERT_EQ(s.reason, ETIMEDOUT);
    ASSERT_FALSE(pthread_equal(s.thread, pthread_self()));
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_source_free(src);
    manual_done(c);
}

TEST(rearm_replaces_earlier_delay)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_OK(cancel_source_cancel_after(src, 1000));
    ASSERT_OK(cancel_clock_advance(c, 500));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 499));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c);
}

TEST(rearm_to_shorter_delay)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 1000));
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_OK(cancel_clock_advance(c, 99));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c);
}

TEST(rearm_restarts_countdown)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_OK(cancel_clock_advance(c, 50));
    ASSERT_OK(cancel_source_cancel_after(src, 100)); /* due at 150 now */
    ASSERT_OK(cancel_clock_advance(c, 99));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c);
}

TEST(negative_delay_disarms)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, -1)); /* never armed: fine */
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    ASSERT_OK(cancel_source_cancel_after(src, CANCEL_INFINITE));
    ASSERT_OK(cancel_clock_advance(c, 1000 * SEC));
    ASSERT_FALSE(cancel_requested(t));
    /* Arming again after a disarm works. */
    ASSERT_OK(cancel_source_cancel_after(src, 5));
    ASSERT_OK(cancel_clock_advance(c, 5));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    cancel_source_free(src);
    manual_done(c);
}

TEST(cancel_after_on_canceled_source_is_noop)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    seen_src = src;
    struct seen s;
    memset(&s, 0, sizeof(s));
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, seen_cb, &s));
    ASSERT_OK(cancel_source_cancel_reason(src, 77));
    ASSERT_EQ(s.runs, 1);
    ASSERT_OK(cancel_source_cancel_after(src, 0));
    ASSERT_OK(cancel_source_cancel_after(src, 10));
    ASSERT_OK(cancel_source_cancel_after(src, -1));
    ASSERT_OK(cancel_clock_advance(c, 100));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 77);
    ASSERT_EQ(s.runs, 1);
    cancel_source_free(src);
    manual_done(c);
}

TEST(timers_fire_in_deadline_order_only_when_due)
{
    cancel_clock *c = manual(0);
    cancel_source *s[4];
    int64_t delay[4] = {30, 10, 40, 20};
    for (int i = 0; i < 4; i++) {
        s[i] = cancel_source_new();
        ASSERT_OK(cancel_source_cancel_after(s[i], delay[i]));
    }
    for (int64_t now = 0; now <= 40; now += 10) {
        if (now > 0)
            ASSERT_OK(cancel_clock_advance(c, 10));
        for (int i = 0; i < 4; i++)
            ASSERT_EQ(cancel_requested(cancel_source_token(s[i])),
                      delay[i] <= now);
    }
    for (int i = 0; i < 4; i++)
        cancel_source_free(s[i]);
    manual_done(c);
}

TEST(free_disarms_timer)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    cancel_source_free(src);
    ASSERT_OK(cancel_clock_advance(c, 200));
    ASSERT_FALSE(cancel_requested(t));
    cancel_token_release(t);
    manual_done(c);
}

TEST(free_armed_source_without_retain)
{
    cancel_clock *c = manual(0);
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_after(a, 100));
    ASSERT_OK(cancel_source_cancel_after(b, 50));
    cancel_source_free(a);
    ASSERT_OK(cancel_clock_advance(c, 200)); /* ASan: a is not touched */
    ASSERT_TRUE(cancel_requested(cancel_source_token(b)));
    cancel_source_free(b);
    manual_done(c);
}

/* The owner frees a source while its timer is firing (the callback is
 * inside, gated): the cancellation under way completes, its callbacks run
 * once, and nothing freed is touched (ASan). */
struct firing {
    harness_gate entered, release, freeing;
    atomic_int runs;
};

static void firing_cb(void *arg)
{
    struct firing *f = arg;
    atomic_fetch_add(&f->runs, 1);
    harness_gate_open(&f->entered);
    harness_gate_wait(&f->release);
}

struct free_arg {
    cancel_source *src;
    struct firing *f;
};

static void *free_source_thread(void *p)
{
    struct free_arg *a = p;
    harness_gate_open(&a->f->freeing);
    cancel_source_free(a->src);
    return NULL;
}

TEST(free_while_timer_fires)
{
    cancel_clock *c = manual(0);
    struct firing f;
    harness_gate_init(&f.entered);
    harness_gate_init(&f.release);
    harness_gate_init(&f.freeing);
    atomic_init(&f.runs, 0);
    cancel_source *src = cancel_source_new();
    cancel_registration reg[2];
    memset(reg, 0, sizeof(reg));
    atomic_int later = 0;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg[0], count_cb,
                              &later)); /* runs after firing_cb */
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &reg[1], firing_cb, &f));
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    pthread_t adv, fr;
    ASSERT_EQ(pthread_create(&adv, NULL, advance_thread, c), 0);
    harness_gate_wait(&f.entered);
    struct free_arg a = {src, &f};
    ASSERT_EQ(pthread_create(&fr, NULL, free_source_thread, &a), 0);
    harness_gate_wait(&f.freeing);
    harness_gate_open(&f.release);
    pthread_join(fr, NULL);
    pthread_join(adv, NULL); /* advance returned: the callbacks returned */
    ASSERT_EQ(atomic_load(&f.runs), 1);
    ASSERT_EQ(atomic_load(&later), 1);
    ASSERT_FALSE(cancel_unregister(&reg[0]));
    ASSERT_FALSE(cancel_unregister(&reg[1]));
    harness_gate_destroy(&f.entered);
    harness_gate_destroy(&f.release);
    harness_gate_destroy(&f.freeing);
    manual_done(c);
}

/* ---- new_timeout -------------------------------------------------------- */

TEST(new_timeout_zero_is_canceled_at_once)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new_timeout(0);
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    cancel_source_free(src);
    manual_done(c);
}

TEST(new_timeout_zero_on_system_clock)
{
    cancel_source *src = cancel_source_new_timeout(0);
    ASSERT_NOT_NULL(src);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ETIMEDOUT);
    cancel_source_free(src);
}

TEST(new_timeout_fires_after_delay)
{
    cancel_clock *c = manual(123456);
    cancel_source *src = cancel_source_new_timeout(250 * MS);
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 250 * MS - 1));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    cancel_source_free(src);
    manual_done(c);
}

TEST(new_timeout_negative_has_no_timer)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new_timeout(-1);
    ASSERT_NOT_NULL(src);
    ASSERT_OK(cancel_clock_advance(c, 3600 * SEC));
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
    manual_done(c);
}

TEST(new_timeout_can_be_canceled_first)
{
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new_timeout(100);
    ASSERT_NOT_NULL(src);
    ASSERT_OK(cancel_source_cancel_reason(src, 55));
    ASSERT_OK(cancel_clock_advance(c, 100));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 55);
    cancel_source_free(src);
    manual_done(c);
}

/* A timer that fires cancels linked children on the timer thread. */
TEST(timer_cancels_linked_child)
{
    cancel_clock *c = manual(0);
    cancel_source *p = cancel_source_new_timeout(10);
    ASSERT_NOT_NULL(p);
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    seen_src = child;
    struct seen s;
    memset(&s, 0, sizeof(s));
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(child), &reg, seen_cb, &s));
    ASSERT_OK(cancel_clock_advance(c, 10));
    ASSERT_EQ(s.runs, 1);
    ASSERT_EQ(s.reason, ETIMEDOUT);
    ASSERT_FALSE(pthread_equal(s.thread, pthread_self()));
    cancel_source_free(child);
    cancel_source_free(p);
    manual_done(c);
}

/* ---- the clock ---------------------------------------------------------- */

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

TEST(clock_now_follows_manual_clock)
{
    cancel_clock *c = manual(5000);
    ASSERT_EQ(cancel_clock_now(), 5000);
    ASSERT_OK(cancel_clock_advance(c, 10));
    ASSERT_EQ(cancel_clock_now(), 5010);
    ASSERT_OK(cancel_clock_advance(c, 0));
    ASSERT_EQ(cancel_clock_now(), 5010);
    ASSERT_OK(cancel_clock_advance(c, 3 * SEC));
    ASSERT_EQ(cancel_clock_now(), 5010 + 3 * SEC);
    manual_done(c);
}

TEST(install_null_goes_back_to_monotonic)
{
    int64_t a = mono_now();
    int64_t n0 = cancel_clock_now();
    int64_t b = mono_now();
    ASSERT_LE(a, n0);
    ASSERT_LE(n0, b);

    cancel_clock *c = manual(7);
    ASSERT_EQ(cancel_clock_now(), 7);
    ASSERT_OK(cancel_clock_install(NULL));
    a = mono_now();
    int64_t n1 = cancel_clock_now();
    b = mono_now();
    ASSERT_LE(a, n1);
    ASSERT_LE(n1, b);
    cancel_clock_free(c);
}

TEST(advance_negative_is_einval)
{
    cancel_clock *c = manual(100);
    ASSERT_ERR(cancel_clock_advance(c, -1), -EINVAL);
    ASSERT_ERR(cancel_clock_advance(c, INT64_MIN), -EINVAL);
    ASSERT_EQ(cancel_clock_now(), 100);
    ASSERT_ERR(cancel_clock_advance(NULL, 1), -EINVAL);
    manual_done(c);
}

TEST(timers_keep_remaining_delay_across_manual_clocks)
{
    cancel_clock *c1 = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 1000));
    ASSERT_OK(cancel_clock_advance(c1, 400)); /* 600 left */
    ASSERT_FALSE(cancel_requested(t));

    cancel_clock *c2 = cancel_clock_new_manual(1000000000);
    ASSERT_NOT_NULL(c2);
    ASSERT_OK(cancel_clock_install(c2));
    ASSERT_FALSE(cancel_requested(t)); /* a jump forward is not elapsed time */
    cancel_clock_free(c1);
    ASSERT_OK(cancel_clock_advance(c2, 599));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c2, 1));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    cancel_source_free(src);
    manual_done(c2);
}

TEST(timers_keep_remaining_delay_to_a_clock_behind)
{
    cancel_clock *c1 = manual(5 * SEC);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 100));
    cancel_clock *c2 = cancel_clock_new_manual(0); /* far behind c1 */
    ASSERT_NOT_NULL(c2);
    ASSERT_OK(cancel_clock_install(c2));
    cancel_clock_free(c1);
    ASSERT_OK(cancel_clock_advance(c2, 99));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c2, 1));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c2);
}

TEST(timers_keep_remaining_delay_from_system_clock)
{
    /* Armed on the system clock for an hour, then the manual clock takes
     * over: well under a second of real time passed, so between 59:59 and
     * 60:00 remain. */
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 3600 * SEC));
    cancel_clock *c = manual(0);
    ASSERT_OK(cancel_clock_advance(c, 3599 * SEC));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 1 * SEC));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c);
}

TEST(timers_keep_remaining_delay_back_to_system_clock)
{
    /* Armed for an hour on a manual clock, then the system clock returns:
     * the timer must not fire because of the difference between clocks. */
    cancel_clock *c = manual(0);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel_after(src, 3600 * SEC));
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
    /* A timer that fires now (due on the system clock) runs on the timer
     * thread, so a new manual clock's advance(0) synchronises with it. */
    c = manual(0);
    ASSERT_OK(cancel_clock_advance(c, 0));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(c, 3600 * SEC));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    manual_done(c);
}

/* ---- a million timers --------------------------------------------------- */

TEST(many_armed_sources_all_fire)
{
    long n = harness_scale(1000000);
    if (n < 100000)
        n = 100000;
    cancel_clock *c = manual(0);
    cancel_source **s = malloc((size_t)n * sizeof(*s));
    ASSERT_NOT_NULL(s);
    int64_t largest = 0;
    for (long i = 0; i < n; i++) {
        s[i] = cancel_source_new();
        ASSERT_NOT_NULL(s[i]);
        /* Delays in a scrambled order, with many equal ones. */
        int64_t d = (int64_t)((i * 7919) % 100003) * 10 + 1;
        if (d > largest)
            largest = d;
        ASSERT_OK(cancel_source_cancel_after(s[i], d));
    }
    /* Half way: some fired, some not. */
    ASSERT_OK(cancel_clock_advance(c, largest / 2));
    long fired = 0;
    for (long i = 0; i < n; i++)
        fired += cancel_requested(cancel_source_token(s[i]));
    ASSERT_GT(fired, 0);
    ASSERT_LT(fired, n);
    ASSERT_OK(cancel_clock_advance(c, largest - largest / 2));
    for (long i = 0; i < n; i++) {
        cancel_token t = cancel_source_token(s[i]);
        if (!cancel_requested(t) || cancel_reason(t) != ETIMEDOUT)
            harness_fail(__FILE__, __LINE__, "source %ld: reason %d", i,
                         cancel_reason(t));
    }
    for (long i = 0; i < n; i++)
        cancel_source_free(s[i]);
    free(s);
    manual_done(c);
}

TEST(many_armed_sources_freed_before_firing)
{
    long n = harness_scale(100000);
    if (n < 10000)
        n = 10000;
    cancel_clock *c = manual(0);
    cancel_source **s = malloc((size_t)n * sizeof(*s));
    ASSERT_NOT_NULL(s);
    for (long i = 0; i < n; i++) {
        s[i] = cancel_source_new();
        ASSERT_NOT_NULL(s[i]);
        ASSERT_OK(cancel_source_cancel_after(s[i], (i * 31) % 1000 + 1));
    }
    /* Free every other one (disarm from the middle of the heap), then fire
     * the rest. */
    for (long i = 0; i < n; i += 2)
        cancel_source_free(s[i]);
    ASSERT_OK(cancel_clock_advance(c, 1000));
    for (long i = 1; i < n; i += 2)
        ASSERT_TRUE(cancel_requested(cancel_source_token(s[i])));
    for (long i = 1; i < n; i += 2)
        cancel_source_free(s[i]);
    free(s);
    manual_done(c);
}
