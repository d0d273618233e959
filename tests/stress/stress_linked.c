/* Stress: linked sources (semantic 5).  Each round has fresh parents, each
 * with a sentinel registration made first.  Worker threads create linked
 * children of random sets of parents (with duplicates and CANCEL_NONE),
 * sometimes grandchildren linked to a child and a parent, and free some of
 * them at once (in either order) while a canceller thread cancels the
 * parents one after the other, each with its own reason.  In a quarter of
 * the rounds nobody cancels, so that the children are created and freed
 * against live parents.
 *
 * Invariants:
 *   - a child created when one of its parents had already been canceled is
 *     canceled when new_linked returns;
 *   - every child still alive at the end is canceled, with the reason of
 *     one of its parents; if it was complete before the first cancel began,
 *     with the reason of whichever of its parents was canceled first;
 *     a grandchild with its child's reason or its other parent's;
 *   - a callback registered on a child runs once, and sees that reason;
 *   - freeing the children leaves nothing on the parents: the count of
 *     live allocations comes back to what the parents alone hold, and each
 *     parent's sentinel, the oldest registration, runs exactly once (a
 *     leftover link would run before it, on freed memory: ASan, and the
 *     plain build's scribbled frees, catch that). */
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

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static unsigned jitter(uint64_t *s)
{
    return below(s, 1u << below(s, 14));
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x11dced5ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

#define NPARENTS 3
#define NWORKERS 4
#define NCHILD 16
#define MAXQ 3

struct crec {
    cancel_registration reg;
    cancel_token tok;
    atomic_int runs, reason;
    int reg_rc;
};

struct child {
    cancel_source *src; /* NULL once freed */
    int q[MAXQ], nq;    /* parents it is linked to (indexes) */
    long done_before;   /* parent cancels complete before creation */
    long started_after; /* parent cancels begun when creation returned */
    struct crec rec;
    cancel_source *grand; /* linked to src and to parent `extra` (or none) */
    int extra;
    struct crec grec;
};

struct lworker {
    pthread_t th;
    int id;
    uint64_t seed;
    struct child kids[NCHILD];
};

static struct {
    pthread_barrier_t start, end;
    bool stop;
    bool do_cancel;
    cancel_source *parents[NPARENTS];
    int reasons[NPARENTS];
    int order[NPARENTS]; /* cancel order */
    int pos[NPARENTS];   /* position of each parent in `order` */
    unsigned delays[NPARENTS];
    atomic_long started, done;
    struct crec sentinel[NPARENTS];
    struct lworker w[NWORKERS];
} g;

static void crec_cb(void *arg)
{
    struct crec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
    if (!cancel_requested(r->tok))
        harness_fail(__FILE__, __LINE__, "callback on an uncanceled token");
    atomic_store(&r->reason, cancel_reason(r->tok));
}

static void crec_register(struct crec *r, cancel_source *src)
{
    memset(&r->reg, 0, sizeof(r->reg));
    r->tok = cancel_source_token(src);
    atomic_store(&r->runs, 0);
    atomic_store(&r->reason, 0);
    r->reg_rc = cancel_register(r->tok, &r->reg, crec_cb, r);
    if (r->reg_rc == -ECANCELED)
        ASSERT_EQ(atomic_load(&r->runs), 1);
    else
        ASSERT_OK(r->reg_rc);
}

/* After the source of r was freed: either it ran (and unregister false)
 * or it was still registered (true) and never runs. */
static void crec_settle(struct crec *r)
{
    bool ok = cancel_unregister(&r->reg);
    ASSERT_EQ(atomic_load(&r->runs), ok ? 0 : 1);
}

static bool in_q(const struct child *c, int reason)
{
    for (int i = 0; i < c->nq; i++)
        if (g.reasons[c->q[i]] == reason)
            return true;
    return false;
}

static void free_kid(struct lworker *w, struct child *c)
{
    /* Either order: a grandchild keeps its link on the freed child's
     * state until the grandchild is freed. */
    if (below(&w->seed, 2)) {
        cancel_source_free(c->grand);
        cancel_source_free(c->src);
    } else {
        cancel_source_free(c->src);
        cancel_source_free(c->grand);
    }
    crec_settle(&c->rec);
    if (c->grand != NULL)
        crec_settle(&c->grec);
    c->src = c->grand = NULL;
}

static void make_kid(struct lworker *w, struct child *c)
{
    memset(c, 0, sizeof(*c));
    cancel_token toks[MAXQ];
    size_t n = 1 + below(&w->seed, MAXQ);
    for (size_t i = 0; i < n; i++) {
        if (below(&w->seed, 6) == 0) {
            toks[i] = CANCEL_NONE;
        } else {
            int p = (int)below(&w->seed, NPARENTS);
            toks[i] = cancel_source_token(g.parents[p]);
            c->q[c->nq++] = p;
        }
    }
    c->done_before = atomic_load(&g.done);
    c->src = cancel_source_new_linked(toks, n);
    c->started_after = atomic_load(&g.started);
    ASSERT_NOT_NULL(c->src);
    cancel_token t = cancel_source_token(c->src);

    bool must = false;
    for (int i = 0; i < c->nq; i++)
        must |= g.pos[c->q[i]] < c->done_before;
    if (must)
        ASSERT_TRUE(cancel_requested(t)); /* canceled at creation */
    int reason = cancel_reason(t);
    if (reason != 0 && !in_q(c, reason))
        harness_fail(__FILE__, __LINE__, "child canceled with reason %d",
                     reason);
    crec_register(&c->rec, c->src);

    c->extra = -1;
    if (below(&w->seed, 4) == 0) {
        cancel_token gt[2] = {t, CANCEL_NONE};
        if (below(&w->seed, 2)) {
            c->extra = (int)below(&w->seed, NPARENTS);
            gt[1] = cancel_source_token(g.parents[c->extra]);
        }
        c->grand = cancel_source_new_linked(gt, 2);
        ASSERT_NOT_NULL(c->grand);
        crec_register(&c->grec, c->grand);
    }
}

static void *lworker_main(void *arg)
{
    struct lworker *w = arg;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        for (int k = 0; k < NCHILD; k++) {
            spin(jitter(&w->seed));
            make_kid(w, &w->kids[k]);
            if (below(&w->seed, 3) == 0)
                free_kid(w, &w->kids[k]);
        }
        pthread_barrier_wait(&g.end);
    }
}

static void *canceller_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        for (int k = 0; g.do_cancel && k < NPARENTS; k++) {
            spin(g.delays[k]);
            int p = g.order[k];
            atomic_fetch_add(&g.started, 1);
            ASSERT_OK(cancel_source_cancel_reason(g.parents[p], g.reasons[p]));
            atomic_fetch_add(&g.done, 1);
        }
        pthread_barrier_wait(&g.end);
    }
}

static void check_kept(struct child *c)
{
    cancel_token t = cancel_source_token(c->src);
    int reason = cancel_reason(t);
    if (!g.do_cancel || c->nq == 0) {
        ASSERT_EQ(reason, 0);
        ASSERT_EQ(atomic_load(&c->rec.runs), 0);
    } else {
        if (reason == 0 || !in_q(c, reason))
            harness_fail(__FILE__, __LINE__,
                         "a child of canceled parents has reason %d", reason);
        if (c->started_after == 0) {
            /* Complete before any cancel: the first parent canceled wins. */
            int first = c->q[0];
            for (int i = 1; i < c->nq; i++)
                if (g.pos[c->q[i]] < g.pos[first])
                    first = c->q[i];
            ASSERT_EQ(reason, g.reasons[first]);
        }
        ASSERT_EQ(atomic_load(&c->rec.runs), 1);
        ASSERT_EQ(atomic_load(&c->rec.reason), reason);
    }
    if (c->grand == NULL)
        return;
    int greason = cancel_reason(cancel_source_token(c->grand));
    bool extra_canceled = g.do_cancel && c->extra >= 0;
    if (reason == 0 && !extra_canceled) {
        ASSERT_EQ(greason, 0);
        ASSERT_EQ(atomic_load(&c->grec.runs), 0);
    } else {
        if (greason != reason &&
            !(c->extra >= 0 && greason == g.reasons[c->extra]))
            harness_fail(__FILE__, __LINE__,
                         "grandchild reason %d, child %d, extra parent %d",
                         greason, reason, c->extra);
        ASSERT_EQ(atomic_load(&c->grec.runs), 1);
        ASSERT_EQ(atomic_load(&c->grec.reason), greason);
    }
}

TEST(linked_children_vs_parent_cancel)
{
    uint64_t seed = base_seed();
    long live0 = cancel__alloc_live();
    memset(&g, 0, sizeof(g));
    pthread_barrier_init(&g.start, NULL, NWORKERS + 2);
    pthread_barrier_init(&g.end, NULL, NWORKERS + 2);
    for (int i = 0; i < NWORKERS; i++) {
        g.w[i].id = i;
        g.w[i].seed = seed * (2 * (uint64_t)i + 9) | 1;
        ASSERT_EQ(pthread_create(&g.w[i].th, NULL, lworker_main, &g.w[i]), 0);
    }
    pthread_t canceller;
    ASSERT_EQ(pthread_create(&canceller, NULL, canceller_main, NULL), 0);

    long rounds = harness_scale(6000);
    long kept_canceled = 0, early_complete = 0;
    for (long round = 0; round < rounds; round++) {
        g.do_cancel = below(&seed, 4) != 0;
        for (int p = 0; p < NPARENTS; p++) {
            g.parents[p] = cancel_source_new();
            ASSERT_NOT_NULL(g.parents[p]);
            g.reasons[p] = 100 + p;
            g.order[p] = p;
            g.delays[p] = jitter(&seed) * 4;
            crec_register(&g.sentinel[p], g.parents[p]);
        }
        for (int p = NPARENTS - 1; p > 0; p--) {
            int k = (int)below(&seed, (uint32_t)p + 1);
            int tmp = g.order[p];
            g.order[p] = g.order[k];
            g.order[k] = tmp;
        }
        for (int k = 0; k < NPARENTS; k++)
            g.pos[g.order[k]] = g.do_cancel ? k : NPARENTS;
        atomic_store(&g.started, 0);
        atomic_store(&g.done, 0);
        long live_parents = cancel__alloc_live();

        pthread_barrier_wait(&g.start);
        pthread_barrier_wait(&g.end);

        for (int i = 0; i < NWORKERS; i++) {
            for (int k = 0; k < NCHILD; k++) {
                struct child *c = &g.w[i].kids[k];
                if (c->src == NULL)
                    continue;
                check_kept(c);
                kept_canceled += cancel_requested(cancel_source_token(c->src));
                early_complete += g.do_cancel && c->started_after == 0;
                free_kid(&g.w[i], c);
            }
        }
        /* Nothing of the children is left, on the parents or anywhere. */
        if (cancel__alloc_live() != live_parents)
            harness_fail(__FILE__, __LINE__,
                         "round %ld: %ld allocations left by freed children",
                         round, cancel__alloc_live() - live_parents);
        for (int p = 0; p < NPARENTS; p++) {
            if (!g.do_cancel)
                ASSERT_OK(
                    cancel_source_cancel_reason(g.parents[p], g.reasons[p]));
            ASSERT_EQ(atomic_load(&g.sentinel[p].runs), 1);
            ASSERT_EQ(atomic_load(&g.sentinel[p].reason), g.reasons[p]);
            ASSERT_FALSE(cancel_unregister(&g.sentinel[p].reg));
            cancel_source_free(g.parents[p]);
        }
        ASSERT_EQ(cancel__alloc_live(), live0);
    }
    g.stop = true;
    pthread_barrier_wait(&g.start);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(g.w[i].th, NULL);
    pthread_join(canceller, NULL);
    pthread_barrier_destroy(&g.start);
    pthread_barrier_destroy(&g.end);
    printf("%ld rounds: children kept and canceled %ld, of them complete "
           "before the first cancel %ld\n",
           rounds, kept_canceled, early_complete);
    ASSERT_GT(kept_canceled, 0);
}
