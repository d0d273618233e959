/* Stress: cancel_source_cancel_async racing with register and unregister
 * from several threads.  Each round a fresh source gets a sentinel
 * registration first (it runs last: LIFO), then worker threads register and
 * unregister (blocking or not) while another thread calls cancel_async at a
 * random moment — holding a mutex that every callback takes, which would
 * deadlock if the callbacks ran on the caller.  In half the rounds the
 * canceller frees the source right after cancel_async returned (the
 * cancellation under way must complete on the library thread).
 *
 * Invariants: the token reads canceled when cancel_async returns; every
 * registration either was removed (unregister true, never ran) or ran
 * exactly once — on the library thread if it was pending, inline on the
 * registering thread if the token was already canceled; a blocking
 * unregister that returned false found the callback finished. */
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
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0xa5c0ffee77ULL;
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
#define NOPS 40

enum { UNREG_NONE, UNREG_TRUE, UNREG_FALSE };

struct arec {
    cancel_registration reg;
    atomic_int runs, finished, ran_on;
    int reg_rc;
    int unreg;
    bool blocking;
    int runs_at_unreg, fin_at_unreg;
};

struct aworker {
    pthread_t th;
    int id;
    uint64_t seed;
    struct arec recs[NOPS];
    int nrecs;
};

static struct {
    pthread_barrier_t start, end;
    bool stop;
    cancel_token tok; /* retained by main for the round */
    cancel_source *src;
    bool free_early;
    unsigned cancel_delay;
    pthread_mutex_t mu; /* held by the canceller around cancel_async */
    atomic_int sentinel_runs;
} g;

static void acb(void *arg)
{
    struct arec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
    atomic_store(&r->ran_on, role);
    if (!cancel_requested(g.tok))
        harness_fail(__FILE__, __LINE__, "callback on an uncanceled token");
    pthread_mutex_lock(&g.mu);
    pthread_mutex_unlock(&g.mu);
    atomic_store(&r->finished, 1);
}

static void sentinel_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g.sentinel_runs, 1);
}

static void *aworker_main(void *arg)
{
    struct aworker *w = arg;
    role = 1 + w->id;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        memset(w->recs, 0, sizeof(w->recs));
        w->nrecs = 0;
        int live[NOPS], nlive = 0;
        for (int op = 0; op < NOPS; op++) {
            spin(jitter(&w->seed) / 8);
            if (nlive > 0 && below(&w->seed, 3) == 0) {
                int k = (int)below(&w->seed, (uint32_t)nlive);
                struct arec *r = &w->recs[live[k]];
                live[k] = live[--nlive];
                r->blocking = below(&w->seed, 2);
                bool ok = r->blocking ? cancel_unregister(&r->reg)
                                      : cancel_unregister_nowait(&r->reg);
                r->unreg = ok ? UNREG_TRUE : UNREG_FALSE;
                r->runs_at_unreg = atomic_load(&r->runs);
                r->fin_at_unreg = atomic_load(&r->finished);
            } else {
                struct arec *r = &w->recs[w->nrecs];
                r->reg_rc = cancel_register(g.tok, &r->reg, acb, r);
                live[nlive++] = w->nrecs++;
            }
        }
        pthread_barrier_wait(&g.end);
    }
}

static void *canceller_main(void *arg)
{
    (void)arg;
    role = 100;
    for (;;) {
        pthread_barrier_wait(&g.start);
        if (g.stop)
            return NULL;
        spin(g.cancel_delay);
        pthread_mutex_lock(&g.mu);
        ASSERT_OK(cancel_source_cancel_async(g.src));
        ASSERT_TRUE(cancel_requested(g.tok)); /* before the call returned */
        ASSERT_EQ(cancel_reason(g.tok), ECANCELED);
        pthread_mutex_unlock(&g.mu);
        if (g.free_early) {
            cancel_source_free(g.src);
            g.src = NULL;
        }
        pthread_barrier_wait(&g.end);
    }
}

TEST(cancel_async_vs_register_unregister)
{
    uint64_t seed = base_seed();
    long live0 = cancel__alloc_live();
    role = 200;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.mu, NULL);
    pthread_barrier_init(&g.start, NULL, NWORKERS + 2);
    pthread_barrier_init(&g.end, NULL, NWORKERS + 2);
    static struct aworker w[NWORKERS];
    for (int i = 0; i < NWORKERS; i++) {
        w[i].id = i;
        w[i].seed = seed * (2 * (uint64_t)i + 5) | 1;
        ASSERT_EQ(pthread_create(&w[i].th, NULL, aworker_main, &w[i]), 0);
    }
    pthread_t canceller;
    ASSERT_EQ(pthread_create(&canceller, NULL, canceller_main, NULL), 0);

    long rounds = harness_scale(8000);
    long removed = 0, ran_async = 0, ran_inline = 0;
    for (long round = 0; round < rounds; round++) {
        g.src = cancel_source_new();
        ASSERT_NOT_NULL(g.src);
        g.tok = cancel_token_retain(cancel_source_token(g.src));
        g.free_early = below(&seed, 2);
        g.cancel_delay = jitter(&seed) * 4;
        atomic_store(&g.sentinel_runs, 0);
        cancel_registration sentinel = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register(g.tok, &sentinel, sentinel_cb, NULL));

        pthread_barrier_wait(&g.start);
        pthread_barrier_wait(&g.end);

        /* The sentinel, oldest, runs last on the library thread: once it
         * has run, every pending registration has been run or removed. */
        while (atomic_load(&g.sentinel_runs) == 0)
            sched_yield();
        ASSERT_FALSE(cancel_unregister(&sentinel));
        ASSERT_EQ(atomic_load(&g.sentinel_runs), 1);

        for (int i = 0; i < NWORKERS; i++) {
            for (int k = 0; k < w[i].nrecs; k++) {
                struct arec *r = &w[i].recs[k];
                int runs = atomic_load(&r->runs);
                ASSERT_LE(runs, 1);
                if (runs)
                    ASSERT_EQ(atomic_load(&r->finished), 1);
                if (r->reg_rc == -ECANCELED) {
                    ASSERT_EQ(runs, 1);
                    ASSERT_EQ(atomic_load(&r->ran_on), 1 + i);
                    ASSERT_TRUE(r->unreg != UNREG_TRUE);
                    ran_inline++;
                    continue;
                }
                ASSERT_OK(r->reg_rc);
                if (r->unreg == UNREG_TRUE) {
                    ASSERT_EQ(runs, 0);
                    ASSERT_EQ(r->runs_at_unreg, 0);
                    removed++;
                    continue;
                }
                if (runs != 1)
                    harness_fail(__FILE__, __LINE__,
                                 "round %ld: a registration neither removed "
                                 "nor run (unreg %d, blocking %d)",
                                 round, r->unreg, r->blocking);
                if (r->unreg == UNREG_FALSE && r->blocking) {
                    ASSERT_EQ(r->runs_at_unreg, 1);
                    ASSERT_EQ(r->fin_at_unreg, 1);
                }
                /* Pending when canceled: run by the library thread. */
                ASSERT_EQ(atomic_load(&r->ran_on), 0);
                ASSERT_FALSE(cancel_unregister(&r->reg));
                ran_async++;
            }
        }
        cancel_source_free(g.src); /* NULL when freed early */
        cancel_token_release(g.tok);
    }
    g.stop = true;
    pthread_barrier_wait(&g.start);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(w[i].th, NULL);
    pthread_join(canceller, NULL);
    pthread_barrier_destroy(&g.start);
    pthread_barrier_destroy(&g.end);
    pthread_mutex_destroy(&g.mu);
    printf("%ld rounds: removed %ld, ran on the library thread %ld, ran "
           "inline %ld\n",
           rounds, removed, ran_async, ran_inline);
    ASSERT_GT(ran_async, 0);
    ASSERT_EQ(cancel__alloc_live(), live0);
}
