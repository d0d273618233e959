/* Stress: many threads register, unregister (blocking and not), cancel,
 * try_reset and free+replace sources held in a small pool of shared slots,
 * for a fixed number of operations each (semantic 4 of the spec):
 *
 *   - a callback runs at most once;
 *   - none runs after cancel_unregister returned true for it;
 *   - a blocking cancel_unregister that returned false leaves the callback
 *     completely finished (its end flag set), and it never runs afterwards;
 *   - every registration that was not removed (by an unregister returning
 *     true or by a successful try_reset) runs exactly once if its source was
 *     canceled;
 *   - registrations dropped by try_reset never run and unregister false;
 *   - registrations left on a freed source never run, unregister true, and
 *     the last unregister destroys the state: nothing is left allocated.
 * Some registrations are posted (cancel_register_on, with an executor that
 * runs fn inline in post), so that lists mix both kinds; for those an
 * unregister never waits, the rest holds.
 *
 * Bookkeeping.  A slot's source pointer is guarded by a rwlock: cancel,
 * try_reset and register take it shared (so they race with each other on
 * the same source), replacing the source (free + new) takes it exclusive,
 * because cancel_source_free must not race with users of the pointer.  A
 * few registrations go through a retained token outside the lock, racing
 * with the free.  Whether a registration "was removed" is decided only from
 * the return values of unregister and from a per-source count of successful
 * try_resets: a reset can drop a registration only if it linearized after
 * the registration began, and then its count increment (made after
 * try_reset returned) was not visible to the load made before registering.
 * So "count unchanged since registration" proves "not dropped" (the check is
 * conservative: a changed count only weakens the check for that one). */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <limits.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt(M_PERTURB) */
#endif

/* ---- helpers ------------------------------------------------------------ */

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

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed1234abcdULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* Freed memory is scribbled over, so that a use after free shows in the
 * plain build too, not only under ASan. */
__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

/* ---- the model ---------------------------------------------------------- */

#define NSLOTS 4
#define NTHREADS 6

struct box {
    cancel_source *src;  /* owner pointer, under the slot lock */
    cancel_token tok;    /* borrowed copy, valid while src is */
    int reason;          /* what every canceller of this source uses */
    _Atomic long resets; /* successful try_resets, counted after return */
    bool freed_canceled; /* canceled when freed (exclusive lock held) */
    struct box *next;
    /* Successful try_resets as [start, end] ticket intervals. */
    pthread_mutex_t log_mu;
    struct span {
        long start, end;
    } * log;
    size_t nlog, caplog;
};

/* A global order of events, to prove that a reset came strictly after a
 * registration and before its unregister: seq_cst tickets taken before
 * and after the calls. */
static atomic_long ticket;

enum { UNREG_NONE, UNREG_TRUE, UNREG_FALSE };

struct rec {
    cancel_registration reg;
    struct box *box;
    cancel_token tok;
    atomic_int runs;
    atomic_int finished;
    atomic_int unreg_true; /* set once an unregister returned true */
    unsigned spin;
    long resets_seen;
    long t_registered; /* ticket after register returned */
    long t_unreg;      /* ticket before the unregister began (or max) */
    int reg_rc;
    bool tried;    /* cancel_try_register */
    bool posted;   /* cancel_register_on, with an executor that runs fn
                      inline in post: unregister never waits for it */
    bool retained; /* through a retained token, outside the slot lock */
    bool blocking; /* the unregister during the run was blocking */
    int unreg;     /* UNREG_*: result of the unregister during the run */
    int runs_at_unreg;
    bool final_true; /* the final unregister (main thread) returned true */
};

struct slot {
    pthread_rwlock_t lock;
    struct box *box;
};

struct worker {
    pthread_t th;
    int id;
    uint64_t seed;
    long ops;
    struct rec *recs;
    size_t nrecs, caprecs;
    size_t *live; /* indexes of records not yet unregistered */
    size_t nlive;
    struct box *boxes; /* sources this worker created */
    long n_cancel, n_reset_true, n_replace, n_unreg_true, n_unreg_false;
};

static struct slot slots[NSLOTS];

static void on_cancel(void *arg)
{
    struct rec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "a callback ran twice");
    if (atomic_load(&r->unreg_true))
        harness_fail(__FILE__, __LINE__,
                     "a callback ran after its unregister returned true");
    if (!cancel_requested(r->tok))
        harness_fail(__FILE__, __LINE__, "callback on an uncanceled token");
    int reason = cancel_reason(r->tok);
    if (reason != r->box->reason)
        harness_fail(__FILE__, __LINE__, "callback sees reason %d, want %d",
                     reason, r->box->reason);
    spin(r->spin);
    atomic_store(&r->finished, 1);
}

static void post_inline(void *ctx, cancel_callback *fn, void *arg)
{
    (void)ctx;
    fn(arg);
}

static int register_on_inline(cancel_token t, cancel_registration *reg,
                              cancel_callback *fn, void *arg)
{
    return cancel_register_on(t, reg, fn, arg, post_inline, NULL);
}

static struct box *new_box(uint64_t *seed, struct box **list, int id)
{
    struct box *b = calloc(1, sizeof(*b));
    ASSERT_NOT_NULL(b);
    switch (below(seed, 4)) {
    case 0:
        b->src = cancel_source_new_linked(NULL, 0);
        break;
    case 1: {
        cancel_token none[2] = {CANCEL_NONE, CANCEL_NONE};
        b->src = cancel_source_new_linked(none, 2);
        break;
    }
    default:
        b->src = cancel_source_new();
        break;
    }
    ASSERT_NOT_NULL(b->src);
    b->tok = cancel_source_token(b->src);
    b->reason = below(seed, 2) ? ECANCELED : 1000 + id;
    pthread_mutex_init(&b->log_mu, NULL);
    b->next = *list;
    *list = b;
    return b;
}

/* ---- operations --------------------------------------------------------- */

static void op_register(struct worker *w, struct slot *sl)
{
    struct rec *r = &w->recs[w->nrecs];
    r->spin = below(&w->seed, 4) == 0 ? below(&w->seed, 2000) : 0;
    r->tried = below(&w->seed, 8) == 0;
    r->posted = !r->tried && below(&w->seed, 6) == 0;
    r->retained = below(&w->seed, 8) == 0;
    cancel_callback *fn = on_cancel;
    int (*reg)(cancel_token, cancel_registration *, cancel_callback *, void *) =
        r->tried    ? cancel_try_register
        : r->posted ? register_on_inline
                    : cancel_register;
    if (!r->retained) {
        pthread_rwlock_rdlock(&sl->lock);
        r->box = sl->box;
        r->tok = r->box->tok;
        r->resets_seen = atomic_load(&r->box->resets);
        r->reg_rc = reg(r->tok, &r->reg, fn, r);
        pthread_rwlock_unlock(&sl->lock);
    } else {
        /* Outside the lock: the slot's source may be freed meanwhile. */
        pthread_rwlock_rdlock(&sl->lock);
        r->box = sl->box;
        r->tok = cancel_token_retain(r->box->tok);
        pthread_rwlock_unlock(&sl->lock);
        r->resets_seen = atomic_load(&r->box->resets);
        r->reg_rc = reg(r->tok, &r->reg, fn, r);
        cancel_token_release(r->tok);
    }
    r->t_registered = atomic_fetch_add(&ticket, 1);
    r->t_unreg = LONG_MAX;
    if (r->reg_rc != 0 && r->reg_rc != -ECANCELED)
        ASSERT_ERR(r->reg_rc, 0);
    if (r->reg_rc == -ECANCELED) {
        ASSERT_EQ(atomic_load(&r->runs), r->tried ? 0 : 1);
        ASSERT_EQ(atomic_load(&r->finished), r->tried ? 0 : 1);
    }
    w->live[w->nlive++] = w->nrecs++;
}

static void op_unregister(struct worker *w)
{
    if (w->nlive == 0)
        return;
    size_t k = below(&w->seed, (uint32_t)w->nlive);
    struct rec *r = &w->recs[w->live[k]];
    w->live[k] = w->live[--w->nlive];
    r->blocking = below(&w->seed, 4) != 0;
    r->t_unreg = atomic_fetch_add(&ticket, 1);
    bool ok = r->blocking ? cancel_unregister(&r->reg)
                          : cancel_unregister_nowait(&r->reg);
    int runs = atomic_load(&r->runs);
    int fin = atomic_load(&r->finished);
    if (ok) {
        atomic_store(&r->unreg_true, 1);
        r->unreg = UNREG_TRUE;
        ASSERT_EQ(runs, 0);
        ASSERT_EQ(r->reg_rc, 0);
        w->n_unreg_true++;
    } else {
        r->unreg = UNREG_FALSE;
        r->runs_at_unreg = runs;
        if (r->blocking && runs == 1 && !r->posted)
            ASSERT_EQ(fin, 1); /* never half: it has returned */
        w->n_unreg_false++;
    }
}

static void op_cancel(struct worker *w, struct slot *sl)
{
    pthread_rwlock_rdlock(&sl->lock);
    struct box *b = sl->box;
    bool was = cancel_requested(b->tok);
    if (b->reason == ECANCELED)
        ASSERT_OK(cancel_source_cancel(b->src));
    else
        ASSERT_OK(cancel_source_cancel_reason(b->src, b->reason));
    ASSERT_TRUE(cancel_requested(b->tok));
    if (was) /* the first reason wins */
        ASSERT_OK(cancel_source_cancel_reason(b->src, 4242));
    ASSERT_EQ(cancel_reason(b->tok), b->reason);
    pthread_rwlock_unlock(&sl->lock);
    w->n_cancel++;
}

static void op_reset(struct worker *w, struct slot *sl)
{
    pthread_rwlock_rdlock(&sl->lock);
    struct box *b = sl->box;
    long start = atomic_fetch_add(&ticket, 1);
    if (cancel_source_try_reset(b->src)) {
        long end = atomic_fetch_add(&ticket, 1);
        atomic_fetch_add(&b->resets, 1);
        pthread_mutex_lock(&b->log_mu);
        if (b->nlog == b->caplog) {
            b->caplog = b->caplog ? 2 * b->caplog : 8;
            b->log = realloc(b->log, b->caplog * sizeof(*b->log));
            ASSERT_NOT_NULL(b->log);
        }
        b->log[b->nlog].start = start;
        b->log[b->nlog].end = end;
        b->nlog++;
        pthread_mutex_unlock(&b->log_mu);
        w->n_reset_true++;
    } else {
        ASSERT_TRUE(cancel_requested(b->tok)); /* false only once canceled */
    }
    pthread_rwlock_unlock(&sl->lock);
}

static void op_replace(struct worker *w, struct slot *sl)
{
    pthread_rwlock_wrlock(&sl->lock);
    struct box *b = sl->box;
    bool canceled = cancel_requested(b->tok);
    if (!canceled && below(&w->seed, 4) != 0) {
        pthread_rwlock_unlock(&sl->lock);
        return; /* mostly replace sources that have been canceled */
    }
    cancel_token keep = cancel_token_retain(b->tok);
    cancel_source_free(b->src);
    ASSERT_EQ(cancel_requested(keep), canceled); /* free does not cancel */
    b->freed_canceled = canceled;
    b->src = NULL;
    cancel_token_release(keep);
    sl->box = new_box(&w->seed, &w->boxes, w->id);
    pthread_rwlock_unlock(&sl->lock);
    w->n_replace++;
}

static void op_check(struct slot *sl)
{
    pthread_rwlock_rdlock(&sl->lock);
    struct box *b = sl->box;
    int reason = cancel_reason(b->tok);
    ASSERT_TRUE(cancel_can_be_canceled(b->tok));
    if (reason != 0) {
        ASSERT_EQ(reason, b->reason);
        ASSERT_TRUE(cancel_requested(b->tok)); /* never false again */
    }
    pthread_rwlock_unlock(&sl->lock);
}

static harness_gate start;

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    harness_gate_wait(&start);
    for (long i = 0; i < w->ops; i++) {
        unsigned op = below(&w->seed, 100);
        struct slot *sl = &slots[below(&w->seed, NSLOTS)];
        if (op < 45 && w->nrecs < w->caprecs)
            op_register(w, sl);
        else if (op < 45)
            op_unregister(w);
        else if (op < 80)
            op_unregister(w);
        else if (op < 84)
            op_cancel(w, sl);
        else if (op < 86)
            op_reset(w, sl);
        else if (op < 93)
            op_replace(w, sl);
        else
            op_check(sl);
    }
    return NULL;
}

/* ---- the final verdict -------------------------------------------------- */

struct tally {
    long ran, inline_ran, removed, dropped_or_inert, left_on_freed, must_run;
    long dropped;
};

static void check_rec(struct rec *r, struct tally *t)
{
    if (r->unreg == UNREG_NONE)
        r->final_true = cancel_unregister(&r->reg);
    int runs = atomic_load(&r->runs);
    bool canceled = r->box->freed_canceled;
    bool maybe_dropped = atomic_load(&r->box->resets) != r->resets_seen;
    bool removed = r->unreg == UNREG_TRUE || r->final_true;

    ASSERT_LE(runs, 1);
    if (runs == 1) {
        ASSERT_EQ(atomic_load(&r->finished), 1);
        ASSERT_TRUE(canceled);
    }
    if (r->reg_rc == -ECANCELED) {
        /* Ran inline (or, tried, did not run): inert from then on. */
        ASSERT_TRUE(canceled);
        ASSERT_EQ(runs, r->tried ? 0 : 1);
        ASSERT_FALSE(removed);
        t->inline_ran += runs;
        return;
    }
    ASSERT_EQ(r->reg_rc, 0);
    /* A successful reset that began after the registration returned and
     * ended before the unregister began dropped it, for sure (try_reset
     * only drops registrations of a source never canceled, so it was
     * pending): it never runs, and no unregister finds it. */
    bool dropped = false;
    for (size_t i = 0; i < r->box->nlog && !dropped; i++)
        dropped = r->t_registered < r->box->log[i].start &&
                  r->box->log[i].end < r->t_unreg;
    if (dropped) {
        t->dropped++;
        if (runs != 0 || removed)
            harness_fail(__FILE__, __LINE__,
                         "a registration dropped by try_reset ran %d "
                         "time(s) / unregistered %s",
                         runs, removed ? "true" : "false");
    }
    if (removed)
        ASSERT_EQ(runs, 0);
    if (r->unreg == UNREG_FALSE && r->blocking && !r->posted)
        ASSERT_EQ(runs, r->runs_at_unreg); /* nothing after it returned */
    if (r->final_true && canceled)
        harness_fail(__FILE__, __LINE__,
                     "a registration was still pending on a canceled "
                     "source (box %p, rec %p)",
                     (void *)r->box, (void *)r);
    if (canceled && !removed && !maybe_dropped)
        t->must_run++;
    if (canceled && !removed && !maybe_dropped && runs != 1)
        harness_fail(__FILE__, __LINE__,
                     "a registration that was not removed did not run when "
                     "its source was canceled (unreg %d, blocking %d, "
                     "retained %d)",
                     r->unreg, r->blocking, r->retained);
    if (!canceled && !removed && !maybe_dropped && !r->retained)
        harness_fail(__FILE__, __LINE__,
                     "unregister returned false for a registration that was "
                     "never run nor dropped (unreg %d, blocking %d)",
                     r->unreg, r->blocking);
    if (runs)
        t->ran++;
    else if (removed)
        t->removed++;
    else
        t->dropped_or_inert++;
    if (r->final_true && !canceled)
        t->left_on_freed++;
}

static void mixed_round(uint64_t seed, long ops)
{
    long live0 = cancel__alloc_live();
    struct box *main_boxes = NULL;

    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    /* Readers come all the time: without this the writer may starve. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    for (int i = 0; i < NSLOTS; i++) {
        pthread_rwlock_init(&slots[i].lock, &attr);
        slots[i].box = new_box(&seed, &main_boxes, 99);
    }
    pthread_rwlockattr_destroy(&attr);

    struct worker w[NTHREADS];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NTHREADS; i++) {
        w[i].id = i;
        w[i].seed = seed * (2 * (uint64_t)i + 3) | 1;
        w[i].ops = ops;
        w[i].caprecs = (size_t)ops / 2 + 64;
        w[i].recs = calloc(w[i].caprecs, sizeof(struct rec));
        w[i].live = calloc(w[i].caprecs, sizeof(size_t));
        ASSERT_NOT_NULL(w[i].recs);
        ASSERT_NOT_NULL(w[i].live);
    }
    harness_gate_init(&start);
    for (int i = 0; i < NTHREADS; i++)
        ASSERT_EQ(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    harness_gate_open(&start);
    for (int i = 0; i < NTHREADS; i++)
        ASSERT_EQ(pthread_join(w[i].th, NULL), 0);
    harness_gate_destroy(&start);

    /* Free what is left in the slots, then settle every registration. */
    for (int i = 0; i < NSLOTS; i++) {
        struct box *b = slots[i].box;
        b->freed_canceled = cancel_requested(b->tok);
        cancel_source_free(b->src);
        b->src = NULL;
        pthread_rwlock_destroy(&slots[i].lock);
    }
    struct tally t = {0};
    long n_cancel = 0, n_reset = 0, n_replace = 0, n_recs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        for (size_t k = 0; k < w[i].nrecs; k++)
            check_rec(&w[i].recs[k], &t);
        n_cancel += w[i].n_cancel;
        n_reset += w[i].n_reset_true;
        n_replace += w[i].n_replace;
        n_recs += (long)w[i].nrecs;
    }
    printf("registrations %ld: ran on cancel %ld, ran inline %ld, removed "
           "%ld (left on a freed source %ld), dropped/inert %ld; proven "
           "must-run %ld, proven dropped by a reset %ld; cancels %ld, "
           "resets %ld, replaced sources %ld\n",
           n_recs, t.ran, t.inline_ran, t.removed, t.left_on_freed,
           t.dropped_or_inert, t.must_run, t.dropped, n_cancel, n_reset,
           n_replace);
    /* The run must have exercised every path. */
    ASSERT_GT(t.ran, 0);
    ASSERT_GT(t.inline_ran, 0);
    ASSERT_GT(t.removed, 0);
    ASSERT_GT(t.must_run, 0);
    ASSERT_GT(t.dropped, 0);
    ASSERT_GT(n_reset, 0);
    ASSERT_GT(n_replace, 0);

    for (int i = 0; i < NTHREADS; i++) {
        for (struct box *b = w[i].boxes, *n; b != NULL; b = n) {
            n = b->next;
            pthread_mutex_destroy(&b->log_mu);
            free(b->log);
            free(b);
        }
        free(w[i].recs);
        free(w[i].live);
    }
    for (struct box *b = main_boxes, *n; b != NULL; b = n) {
        n = b->next;
        pthread_mutex_destroy(&b->log_mu);
        free(b->log);
        free(b);
    }
    /* Every state is gone: the last unregister destroyed those that
     * registrations kept alive after their free. */
    ASSERT_EQ(cancel__alloc_live(), live0);
}

TEST(mixed_register_unregister_cancel_reset_free)
{
    uint64_t seed = base_seed();
    long ops = harness_scale(150000);
    for (int round = 0; round < 4; round++)
        mixed_round(seed * (2 * (uint64_t)round + 1) | 1, ops);
}
