/* Stress: timers.  Worker threads arm, re-arm and disarm (cancel_after with
 * random delays, 0, and negative values) timers on their sources, reset
 * them, cancel them and free them (creating new ones, plain or with
 * new_timeout), while the main thread moves a manual clock forward in small
 * random steps.  No sleeping: time is the manual clock.
 *
 * Invariants, checked once the workers are done and the clock has been
 * moved far past every deadline:
 *   - a source whose last operation armed its timer (and that nobody
 *     canceled otherwise) is canceled with ETIMEDOUT, and its callback ran
 *     on the library thread and had returned when cancel_clock_advance
 *     returned;
 *   - a source whose last operation disarmed its timer (or reset it) and
 *     that was not canceled when that call returned stays uncanceled: no
 *     timer fires after it was disarmed;
 *   - a source never armed nor canceled is never canceled;
 *   - a callback runs at most once, on the thread that canceled;
 *   - freeing a source with an armed timer is safe (ASan), and its
 *     registration is either still there (unregister true, never runs) or
 *     ran once. */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt(M_PERTURB) */
#endif

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static inline uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)((rnd(s) >> 32) % n);
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x7173e5ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

/* Which of our threads runs a callback: 0 for a library thread. */
static _Thread_local int role;

#define NWORKERS 4
#define NSRC 8
#define MAIN_ROLE 100
#define FAR_AHEAD ((int64_t)1000000000000)

enum { LAST_NONE, LAST_ARM, LAST_DISARM };

struct trec {
    cancel_registration reg;
    cancel_token tok;
    atomic_int runs, finished, ran_on, reason;
    int reg_rc;
};

struct tsrc {
    cancel_source *src;
    struct trec *rec;
    int last;                /* LAST_*: the last timer operation */
    bool canceled_otherwise; /* cancel_source_cancel was called */
    bool clean_after_disarm; /* uncanceled when the disarm returned */
};

struct tworker {
    pthread_t th;
    int id;
    uint64_t seed;
    long ops;
    struct tsrc s[NSRC];
    cancel_token *kept; /* retained tokens of freed sources */
    size_t nkept;
    long n_arm, n_disarm, n_reset, n_free, n_fired_live;
};

static atomic_int workers_left;
/* Clock advances made by main.  A worker waits for one every few
 * operations (a gate, not a sleep), so that timers fire among the
 * operations, however fast the workers are. */
static atomic_long advances;
#define OPS_PER_ADVANCE 8

static void tcb(void *arg)
{
    struct trec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
    atomic_store(&r->ran_on, role);
    atomic_store(&r->reason, cancel_reason(r->tok));
    atomic_store(&r->finished, 1);
}

static int64_t pick_delay(uint64_t *seed)
{
    switch (below(seed, 5)) {
    case 0:
        return below(seed, 64);
    case 1:
        return below(seed, 1024);
    case 2:
        return below(seed, 65536);
    case 3:
        return 0;
    default:
        return 1000000 + below(seed, 1000000); /* fires at the end only */
    }
}

static int64_t pick_negative(uint64_t *seed)
{
    switch (below(seed, 3)) {
    case 0:
        return CANCEL_INFINITE;
    case 1:
        return INT64_MIN;
    default:
        return -1 - (int64_t)below(seed, 1u << 30);
    }
}

static void attach(struct tworker *w, struct tsrc *t)
{
    struct trec *r = calloc(1, sizeof(*r));
    ASSERT_NOT_NULL(r);
    atomic_store(&r->ran_on, -1);
    r->tok = cancel_source_token(t->src);
    r->reg_rc = cancel_register(r->tok, &r->reg, tcb, r);
    if (r->reg_rc == -ECANCELED) {
        ASSERT_EQ(atomic_load(&r->runs), 1);
        ASSERT_EQ(atomic_load(&r->ran_on), 1 + w->id);
    } else {
        ASSERT_OK(r->reg_rc);
    }
    t->rec = r;
}

static void fresh(struct tworker *w, struct tsrc *t)
{
    t->canceled_otherwise = false;
    t->clean_after_disarm = false;
    if (below(&w->seed, 2)) {
        t->src = cancel_source_new();
        ASSERT_NOT_NULL(t->src);
        t->last = LAST_NONE;
    } else {
        int64_t d = pick_delay(&w->seed);
        t->src = cancel_source_new_timeout(d);
        ASSERT_NOT_NULL(t->src);
        t->last = LAST_ARM;
        if (d == 0)
            ASSERT_EQ(cancel_reason(cancel_source_token(t->src)), ETIMEDOUT);
    }
    attach(w, t);
}

/* Free the source; its registration either ran or is still there. */
static void retire(struct tworker *w, struct tsrc *t)
{
    if (below(&w->seed, 4) == 0)
        w->kept[w->nkept++] = cancel_token_retain(cancel_source_token(t->src));
    cancel_source_free(t->src);
    t->src = NULL;
    struct trec *r = t->rec;
    bool ok = cancel_unregister(&r->reg);
    ASSERT_EQ(atomic_load(&r->runs), ok ? 0 : 1);
    if (!ok)
        ASSERT_EQ(atomic_load(&r->finished), 1);
    free(r);
    t->rec = NULL;
}

static void check_live(struct tsrc *t)
{
    int reason = cancel_reason(cancel_source_token(t->src));
    if (reason == 0)
        return;
    if (reason != ETIMEDOUT && !(t->canceled_otherwise && reason == ECANCELED))
        harness_fail(__FILE__, __LINE__, "reason %d", reason);
    if (t->last == LAST_NONE && !t->canceled_otherwise)
        harness_fail(__FILE__, __LINE__,
                     "a source never armed was canceled (reason %d)", reason);
}

static void *tworker_main(void *arg)
{
    struct tworker *w = arg;
    role = 1 + w->id;
    for (int i = 0; i < NSRC; i++)
        fresh(w, &w->s[i]);
    for (long i = 0; i < w->ops; i++) {
        while (atomic_load(&advances) < i / OPS_PER_ADVANCE)
            sched_yield();
        struct tsrc *t = &w->s[below(&w->seed, NSRC)];
        unsigned op = below(&w->seed, 100);
        if (op < 40) {
            ASSERT_OK(cancel_source_cancel_after(t->src, pick_delay(&w->seed)));
            t->last = LAST_ARM; /* (a no-op once canceled: then it stays) */
            t->clean_after_disarm = false;
            w->n_arm++;
        } else if (op < 65) {
            ASSERT_OK(
                cancel_source_cancel_after(t->src, pick_negative(&w->seed)));
            t->last = LAST_DISARM;
            t->clean_after_disarm =
                !cancel_requested(cancel_source_token(t->src));
            w->n_disarm++;
        } else if (op < 70) {
            if (cancel_source_try_reset(t->src)) {
                /* Disarmed, and our registration dropped: it must never
                 * run and unregisters false.  Register it again. */
                struct trec *r = t->rec;
                ASSERT_FALSE(cancel_unregister(&r->reg));
                ASSERT_EQ(atomic_load(&r->runs), 0);
                free(r);
                t->last = LAST_DISARM;
                t->clean_after_disarm = true;
                attach(w, t);
                w->n_reset++;
            } else {
                ASSERT_TRUE(cancel_requested(cancel_source_token(t->src)));
            }
        } else if (op < 72) {
            ASSERT_OK(cancel_source_cancel(t->src));
            t->canceled_otherwise = true;
        } else if (op < 82) {
            if (cancel_requested(cancel_source_token(t->src)) &&
                !t->canceled_otherwise)
                w->n_fired_live++;
            retire(w, t);
            fresh(w, t);
            w->n_free++;
        } else {
            check_live(t);
        }
    }
    atomic_fetch_sub(&workers_left, 1);
    return NULL;
}

static void verdict(struct tworker *w, struct tsrc *t, bool before)
{
    cancel_token tok = cancel_source_token(t->src);
    bool canceled = cancel_requested(tok);
    int reason = cancel_reason(tok);
    struct trec *r = t->rec;
    if (t->canceled_otherwise) {
        ASSERT_TRUE(canceled);
        if (reason != ECANCELED && reason != ETIMEDOUT)
            ASSERT_ERR(reason, ECANCELED);
    } else if (t->last == LAST_ARM) {
        if (!canceled)
            harness_fail(__FILE__, __LINE__,
                         "an armed timer did not fire after the clock moved "
                         "past its deadline");
        ASSERT_ERR(reason, ETIMEDOUT);
    } else if (t->last == LAST_DISARM) {
        if (t->clean_after_disarm && canceled)
            harness_fail(__FILE__, __LINE__,
                         "a timer fired after cancel_after(<0) or try_reset "
                         "had returned with the source uncanceled (%s the "
                         "final advance)",
                         before ? "before" : "during");
    } else {
        ASSERT_FALSE(canceled);
    }
    int runs = atomic_load(&r->runs);
    ASSERT_EQ(runs, canceled ? 1 : 0);
    if (runs) {
        ASSERT_EQ(atomic_load(&r->finished), 1); /* advance waited for it */
        ASSERT_EQ(atomic_load(&r->reason), reason);
        int on = atomic_load(&r->ran_on);
        if (r->reg_rc == -ECANCELED || reason == ECANCELED)
            ASSERT_EQ(on, 1 + w->id); /* inline, or the worker's cancel */
        else
            ASSERT_EQ(on, 0); /* the library's timer thread */
    }
}

TEST(timers_arm_disarm_free_vs_manual_clock)
{
    uint64_t seed = base_seed();
    role = MAIN_ROLE;
    cancel_clock *clock = cancel_clock_new_manual(1000);
    ASSERT_NOT_NULL(clock);
    ASSERT_OK(cancel_clock_install(clock));

    long ops = harness_scale(100000);
    static struct tworker w[NWORKERS];
    atomic_store(&workers_left, NWORKERS);
    for (int i = 0; i < NWORKERS; i++) {
        w[i].id = i;
        w[i].seed = seed * (2 * (uint64_t)i + 11) | 1;
        w[i].ops = ops;
        w[i].kept = calloc((size_t)ops, sizeof(cancel_token));
        ASSERT_NOT_NULL(w[i].kept);
        ASSERT_EQ(pthread_create(&w[i].th, NULL, tworker_main, &w[i]), 0);
    }
    while (atomic_load(&workers_left) > 0) {
        ASSERT_OK(cancel_clock_advance(clock, 1 + below(&seed, 256)));
        atomic_fetch_add(&advances, 1);
    }
    for (int i = 0; i < NWORKERS; i++)
        ASSERT_EQ(pthread_join(w[i].th, NULL), 0);

    /* Settle what became due without an advance (a delay of 0): an
     * advance returns after every due timer has fired and its callbacks
     * have returned.  Then nothing runs. */
    ASSERT_OK(cancel_clock_advance(clock, 0));
    for (int i = 0; i < NWORKERS; i++)
        for (int k = 0; k < NSRC; k++)
            if (w[i].s[k].last != LAST_ARM || w[i].s[k].canceled_otherwise)
                verdict(&w[i], &w[i].s[k], true);
    ASSERT_OK(cancel_clock_advance(clock, FAR_AHEAD));
    long fired = 0, stayed = 0;
    for (int i = 0; i < NWORKERS; i++) {
        for (int k = 0; k < NSRC; k++) {
            struct tsrc *t = &w[i].s[k];
            verdict(&w[i], t, false);
            if (cancel_requested(cancel_source_token(t->src)))
                fired++;
            else
                stayed++;
            retire(&w[i], t);
        }
        for (size_t k = 0; k < w[i].nkept; k++) {
            int reason = cancel_reason(w[i].kept[k]);
            if (reason != 0 && reason != ETIMEDOUT && reason != ECANCELED)
                ASSERT_ERR(reason, ETIMEDOUT);
            cancel_token_release(w[i].kept[k]);
        }
        free(w[i].kept);
    }
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(clock);

    long n_arm = 0, n_disarm = 0, n_reset = 0, n_free = 0, n_fired_live = 0;
    for (int i = 0; i < NWORKERS; i++) {
        n_arm += w[i].n_arm;
        n_disarm += w[i].n_disarm;
        n_reset += w[i].n_reset;
        n_free += w[i].n_free;
        n_fired_live += w[i].n_fired_live;
    }
    printf("%ld clock advances; arms %ld, disarms %ld, resets %ld, frees %ld "
           "(%ld after their timer fired); at the end %ld canceled, %ld not\n",
           atomic_load(&advances), n_arm, n_disarm, n_reset, n_free,
           n_fired_live, fired, stayed);
}

/* A timer that is due (delay 0: the library thread fires it without any
 * advance) against try_reset or cancel_after(<0) on the same source from
 * another thread, in batches so that the library thread is busy firing
 * while the resets run.  When try_reset returned true (or the disarm
 * returned with the source uncanceled), the timer must not cancel the
 * source afterwards: the source may already be pooled for an unrelated
 * operation (.NET's TryReset returns false once the timer may have
 * fired).  The registration dropped by the reset never runs. */
TEST(reset_and_disarm_vs_firing_timer)
{
    enum { K = 32 };
    uint64_t seed = base_seed();
    role = MAIN_ROLE;
    cancel_clock *clock = cancel_clock_new_manual(1000);
    ASSERT_NOT_NULL(clock);
    ASSERT_OK(cancel_clock_install(clock));
    static cancel_source *src[K];
    static struct trec rec[K];
    bool clean[K];
    long iters = harness_scale(60000), n_clean = 0, late = 0;
    for (long i = 0; i < iters; i++) {
        bool reset = i & 1;
        for (int k = 0; k < K; k++) {
            src[k] = cancel_source_new();
            ASSERT_NOT_NULL(src[k]);
            memset(&rec[k], 0, sizeof(rec[k]));
            rec[k].tok = cancel_source_token(src[k]);
            ASSERT_OK(cancel_register(rec[k].tok, &rec[k].reg, tcb, &rec[k]));
            ASSERT_OK(cancel_source_cancel_after(src[k], 0));
        }
        for (volatile unsigned n = below(&seed, 2048); n > 0; n--)
            ;
        for (int k = 0; k < K; k++) {
            if (reset) {
                clean[k] = cancel_source_try_reset(src[k]);
            } else {
                ASSERT_OK(cancel_source_cancel_after(src[k], -1));
                clean[k] = !cancel_requested(rec[k].tok);
            }
        }
        /* Every due timer has fired and its callbacks have returned. */
        ASSERT_OK(cancel_clock_advance(clock, 0));
        for (int k = 0; k < K; k++) {
            bool canceled = cancel_requested(rec[k].tok);
            if (clean[k]) {
                n_clean++;
                if (canceled && late++ == 0)
                    printf("iteration %ld: the timer canceled the source "
                           "after %s had returned %s\n",
                           i, reset ? "try_reset" : "cancel_after(-1)",
                           reset ? "true" : "with it uncanceled");
                if (reset)
                    ASSERT_EQ(atomic_load(&rec[k].runs), 0);
                else
                    ASSERT_EQ(atomic_load(&rec[k].runs), canceled);
            } else {
                ASSERT_EQ(cancel_reason(rec[k].tok), ETIMEDOUT);
                ASSERT_EQ(atomic_load(&rec[k].runs), 1);
                ASSERT_EQ(atomic_load(&rec[k].ran_on), 0);
            }
            cancel_source_free(src[k]);
            if (reset && clean[k])
                ASSERT_FALSE(cancel_unregister(&rec[k].reg)); /* dropped */
            else
                ASSERT_EQ(cancel_unregister(&rec[k].reg), !canceled);
        }
    }
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(clock);
    printf("%ld sources reset or disarmed in time, %ld canceled afterwards "
           "by their timer\n",
           n_clean, late);
    ASSERT_EQ(late, 0);
}
