/* Stress: the lifetime of a source's state (semantic 6).  Each round,
 * several threads hold retained tokens of one source, register on them and
 * churn retain/release, while the owner frees the source at a random moment
 * (after canceling it, in a third of the rounds).  Then every registration
 * is handed to a *different* thread, which unregisters it; the state must
 * be destroyed exactly once, by whichever call drops the last reference or
 * the last pending registration (ASan: no leak, no use after free, no double
 * free; the plain build: the live-allocation count comes back).
 *
 * Invariants: free does not cancel: without a cancel no callback ever runs;
 * a registration that completed before the free started stays registered
 * and unregisters true; one made after the free is inert (false); with a
 * cancel before the free, every registration ran exactly once (pending or
 * inline) and unregisters false. */
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
    return below(s, 1u << below(s, 15));
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x11fe71e5ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

#define NTHREADS 4
#define NREGS 12

struct lrec {
    cancel_registration reg;
    atomic_int runs;
    int reg_rc;
    bool none;        /* registered on CANCEL_NONE: inert */
    bool before_free; /* register returned before the free started */
    bool after_free;  /* register began after the free had returned */
};

struct lworker {
    pthread_t th;
    int id;
    uint64_t seed;
    cancel_token tok; /* retained for this worker by main */
    struct lrec recs[NREGS];
};

static struct {
    pthread_barrier_t start, mid, end;
    bool stop;
    cancel_source *src;
    bool cancel_first;
    unsigned free_delay;
    atomic_int free_started, free_done;
    struct lworker w[NTHREADS];
    atomic_long kept, inert, ran, late; /* outcomes, for the report */
} g;

static void lcb(void *arg)
{
    struct lrec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
}

static void check_unregister(struct lrec *r)
{
    bool ok = cancel_unregister(&r->reg);
    int runs = atomic_load(&r->runs);
    if (r->none) {
        ASSERT_OK(r->reg_rc);
        ASSERT_EQ(runs, 0);
        ASSERT_FALSE(ok);
        return;
    }
    if (g.cancel_first) {
        ASSERT_EQ(runs, 1);
        ASSERT_FALSE(ok);
        atomic_fetch_add(&g.ran, 1);
        return;
    }
    atomic_fetch_add(ok ? &g.kept : &g.inert, 1);
    atomic_fetch_add(&g.late, r->after_free);
    ASSERT_EQ(runs, 0); /* free does not cancel */
    ASSERT_OK(r->reg_rc);
    if (r->before_free && !ok)
        harness_fail(__FILE__, __LINE__,
                     "a registration made before the free was lost: "
                     "unregister returned false");
    if (r->after_free && ok)
        harness_fail(__FILE__, __LINE__,
                     "a registration made after the free was linked: "
                     "unregister returned true");
    ASSERT_FALSE(cancel_unregister(&r->reg)); /* already unregistered */
}

static void *lworker_main(void *arg)
{
    struct lworker *w = arg;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        /* Phase 1: register on the retained token, churn the count. */
        memset(w->recs, 0, sizeof(w->recs));
        int release_at = (int)below(&w->seed, NREGS + 1);
        cancel_token mine = w->tok;
        for (int k = 0; k < NREGS; k++) {
            if (k == release_at) {
                cancel_token_release(mine);
                mine = CANCEL_NONE; /* registrations from here are inert */
            }
            spin(jitter(&w->seed) / 4);
            /* Churn the reference count around the registration. */
            cancel_token extra = cancel_token_retain(mine);
            struct lrec *r = &w->recs[k];
            r->none = !cancel_can_be_canceled(mine);
            r->after_free = atomic_load(&g.free_done) != 0;
            r->reg_rc = cancel_register(mine, &r->reg, lcb, r);
            r->before_free = !r->none && atomic_load(&g.free_started) == 0;
            if (r->reg_rc == -ECANCELED)
                ASSERT_EQ(atomic_load(&r->runs), 1);
            else
                ASSERT_OK(r->reg_rc);
            cancel_token_release(extra);
        }
        if (release_at == NREGS)
            cancel_token_release(mine);
        pthread_barrier_wait(&g.mid);
        /* Phase 2: unregister the registrations of the next thread. */
        struct lworker *other = &g.w[(w->id + 1) % NTHREADS];
        for (int k = 0; k < NREGS; k++) {
            spin(jitter(&w->seed) / 8);
            check_unregister(&other->recs[k]);
        }
        pthread_barrier_wait(&g.end);
    }
}

static void *owner_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        spin(g.free_delay);
        if (g.cancel_first)
            ASSERT_OK(cancel_source_cancel(g.src));
        atomic_store(&g.free_started, 1);
        cancel_source_free(g.src);
        atomic_store(&g.free_done, 1);
        pthread_barrier_wait(&g.mid);
        pthread_barrier_wait(&g.end);
    }
}

TEST(retain_release_free_unregister_elsewhere)
{
    uint64_t seed = base_seed();
    long live0 = cancel__alloc_live();
    memset(&g, 0, sizeof(g));
    pthread_barrier_init(&g.start, NULL, NTHREADS + 2);
    pthread_barrier_init(&g.mid, NULL, NTHREADS + 1);
    pthread_barrier_init(&g.end, NULL, NTHREADS + 2);
    for (int i = 0; i < NTHREADS; i++) {
        g.w[i].id = i;
        g.w[i].seed = seed * (2 * (uint64_t)i + 7) | 1;
        ASSERT_EQ(pthread_create(&g.w[i].th, NULL, lworker_main, &g.w[i]), 0);
    }
    pthread_t owner;
    ASSERT_EQ(pthread_create(&owner, NULL, owner_main, NULL), 0);

    long rounds = harness_scale(10000);
    for (long round = 0; round < rounds; round++) {
        g.src = cancel_source_new();
        ASSERT_NOT_NULL(g.src);
        for (int i = 0; i < NTHREADS; i++)
            g.w[i].tok = cancel_token_retain(cancel_source_token(g.src));
        g.cancel_first = below(&seed, 3) == 0;
        g.free_delay = jitter(&seed) * 2;
        atomic_store(&g.free_started, 0);
        atomic_store(&g.free_done, 0);
        pthread_barrier_wait(&g.start);
        pthread_barrier_wait(&g.end);
        /* Every registration was unregistered and every token released:
         * the state is gone. */
        if (cancel__alloc_live() != live0)
            harness_fail(__FILE__, __LINE__,
                         "round %ld (cancel %d): %ld allocations left", round,
                         g.cancel_first, cancel__alloc_live() - live0);
    }
    g.stop = true;
    pthread_barrier_wait(&g.start);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(g.w[i].th, NULL);
    pthread_join(owner, NULL);
    printf("%ld rounds: left on the freed source and unregistered true %ld, "
           "inert %ld (%ld made after the free), ran %ld\n",
           rounds, atomic_load(&g.kept), atomic_load(&g.inert),
           atomic_load(&g.late), atomic_load(&g.ran));
    ASSERT_GT(atomic_load(&g.kept), 0);
    pthread_barrier_destroy(&g.start);
    pthread_barrier_destroy(&g.mid);
    pthread_barrier_destroy(&g.end);
}
