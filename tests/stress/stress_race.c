/* Stress: the two races of one registration, thousands of times each, on a
 * fresh source per iteration, with the threads released together by a
 * barrier and jittered by random spins:
 *
 *   register_cancel_race     thread A registers then unregisters while
 *                            thread B cancels: exactly one of {unregister
 *                            returned true, the callback ran} (semantic 4).
 *   unregister_while_running thread B's cancel is inside the callback while
 *                            thread A unregisters: a blocking unregister
 *                            returns false only after the callback returned
 *                            (semantic 3), a pending registration whose turn
 *                            has not come is removed (true, never runs), and
 *                            unregister_nowait does not wait.
 */
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

/* A delay spread over several orders of magnitude, so that the start of
 * one thread's action falls before, inside and after the other's, however
 * long the wakeup from the barrier takes. */
static unsigned jitter(uint64_t *s)
{
    return below(s, 1u << below(s, 17));
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0xfeedbeef1234ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

/* The start of an iteration: both threads spin (yielding) on a generation
 * counter, so that they leave within a few microseconds of each other and
 * the random spins, not the scheduler's wakeup latency, decide the order. */
static long await_gen(atomic_long *gen, long seen)
{
    long g;
    for (unsigned n = 0; (g = atomic_load(gen)) == seen; n++)
        if (n > 64)
            sched_yield();
    HARNESS_HAPPENS_AFTER(gen);
    return g;
}

/* Wait for an atomic flag set by another thread: a gate, not a sleep. */
static void await(atomic_int *flag)
{
    while (!atomic_load(flag))
        sched_yield();
    HARNESS_HAPPENS_AFTER(flag);
}

/* ---- register / cancel -------------------------------------------------- */

enum { HOW_BLOCKING, HOW_NOWAIT, HOW_TRY, HOW_REASON, HOW_COUNT };

struct race {
    atomic_long gen; /* bumped by main to start an iteration; -1: stop */
    pthread_barrier_t end;
    cancel_source *src;
    cancel_registration reg;
    atomic_int runs, finished;
    int how;
    unsigned delay_a1, delay_a2, delay_b;
    /* results of thread A */
    int reg_rc;
    bool unreg;
    int runs_at_unreg, fin_at_unreg;
};

static void race_cb(void *arg)
{
    struct race *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
    spin(r->delay_a2 / 8);
    atomic_store(&r->finished, 1);
}

static void *race_a(void *arg)
{
    struct race *r = arg;
    for (long g = 0;;) {
        if ((g = await_gen(&r->gen, g)) < 0)
            return NULL;
        spin(r->delay_a1);
        cancel_token t = cancel_source_token(r->src);
        r->reg_rc = r->how == HOW_TRY
                        ? cancel_try_register(t, &r->reg, race_cb, r)
                        : cancel_register(t, &r->reg, race_cb, r);
        spin(r->delay_a2);
        r->unreg = r->how == HOW_NOWAIT ? cancel_unregister_nowait(&r->reg)
                                        : cancel_unregister(&r->reg);
        r->runs_at_unreg = atomic_load(&r->runs);
        r->fin_at_unreg = atomic_load(&r->finished);
        pthread_barrier_wait(&r->end);
    }
}

static void *race_b(void *arg)
{
    struct race *r = arg;
    for (long g = 0;;) {
        if ((g = await_gen(&r->gen, g)) < 0)
            return NULL;
        spin(r->delay_b);
        if (r->how == HOW_REASON)
            ASSERT_OK(cancel_source_cancel_reason(r->src, 777));
        else
            ASSERT_OK(cancel_source_cancel(r->src));
        pthread_barrier_wait(&r->end);
    }
}

TEST(register_cancel_race)
{
    uint64_t seed = base_seed();
    long live0 = cancel__alloc_live();
    struct race r;
    memset(&r, 0, sizeof(r));
    pthread_barrier_init(&r.end, NULL, 3);
    pthread_t a, b;
    ASSERT_EQ(pthread_create(&a, NULL, race_a, &r), 0);
    ASSERT_EQ(pthread_create(&b, NULL, race_b, &r), 0);

    long iters = harness_scale(50000);
    long removed = 0, ran = 0, ran_inline = 0;
    for (long i = 0; i < iters; i++) {
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        memset(&r.reg, 0, sizeof(r.reg));
        atomic_store(&r.runs, 0);
        atomic_store(&r.finished, 0);
        r.how = (int)below(&seed, HOW_COUNT);
        r.delay_a1 = jitter(&seed);
        r.delay_a2 = jitter(&seed);
        r.delay_b = jitter(&seed);
        HARNESS_HAPPENS_BEFORE(&r.gen);
        atomic_store(&r.gen, i + 1);
        pthread_barrier_wait(&r.end);

        /* B's cancel has returned: every callback that was going to run has
         * run to completion. */
        int runs = atomic_load(&r.runs);
        ASSERT_LE(runs, 1);
        if (r.reg_rc == -ECANCELED) {
            ASSERT_EQ(runs, r.how == HOW_TRY ? 0 : 1);
            ASSERT_FALSE(r.unreg);
            ran_inline += runs;
        } else {
            ASSERT_OK(r.reg_rc);
            if (r.unreg != (runs == 0))
                harness_fail(__FILE__, __LINE__,
                             "iteration %ld (how %d): unregister returned %d "
                             "and the callback ran %d times",
                             i, r.how, r.unreg, runs);
            if (!r.unreg && r.how != HOW_NOWAIT) {
                ASSERT_EQ(r.runs_at_unreg, 1);
                ASSERT_EQ(r.fin_at_unreg, 1);
            }
            if (r.unreg)
                removed++;
            else
                ran++;
        }
        if (runs)
            ASSERT_EQ(atomic_load(&r.finished), 1);
        ASSERT_EQ(cancel_reason(cancel_source_token(r.src)),
                  r.how == HOW_REASON ? 777 : ECANCELED);
        ASSERT_FALSE(cancel_unregister(&r.reg));
        cancel_source_free(r.src);
    }
    HARNESS_HAPPENS_BEFORE(&r.gen);
    atomic_store(&r.gen, -1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&r.end);
    /* Which outcomes were hit depends on the scheduler: reported, not
     * asserted, so that a loaded machine cannot fail the test. */
    printf("%ld iterations: removed %ld, ran on cancel %ld, ran inline %ld\n",
           iters, removed, ran, ran_inline);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

/* ---- unregister while the callback runs --------------------------------- */

enum {
    MODE_REMOVE_PENDING, /* remove the next one while the first runs */
    MODE_NOWAIT,         /* unregister_nowait does not wait */
    MODE_RANDOM,         /* blocking unregister at a random moment */
    MODE_SELF,           /* the callback unregisters itself meanwhile */
    MODE_COUNT
};

struct running {
    pthread_barrier_t start, end;
    bool stop;
    int mode;
    unsigned delay_cb, delay_a;
    cancel_source *src;
    cancel_registration reg1, reg2; /* reg2 first: it runs after reg1 */
    atomic_int started1, finished1, runs1, runs2, released;
    bool self_unreg;
};

static void running_cb1(void *arg)
{
    struct running *r = arg;
    if (atomic_fetch_add(&r->runs1, 1) != 0)
        harness_fail(__FILE__, __LINE__, "callback ran twice");
    HARNESS_HAPPENS_BEFORE(&r->started1);
    atomic_store(&r->started1, 1);
    if (r->mode == MODE_REMOVE_PENDING || r->mode == MODE_NOWAIT)
        await(&r->released);
    if (r->mode == MODE_SELF)
        r->self_unreg = cancel_unregister(&r->reg1); /* false at once */
    spin(r->delay_cb);
    atomic_store(&r->finished1, 1);
}

static void running_cb2(void *arg)
{
    struct running *r = arg;
    atomic_fetch_add(&r->runs2, 1);
}

static void *running_a(void *arg)
{
    struct running *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->stop)
            return NULL;
        await(&r->started1);
        switch (r->mode) {
        case MODE_REMOVE_PENDING:
            /* reg1's callback is held inside: reg2's turn has not come. */
            ASSERT_TRUE(cancel_unregister(&r->reg2));
            HARNESS_HAPPENS_BEFORE(&r->released);
            atomic_store(&r->released, 1);
            ASSERT_FALSE(cancel_unregister(&r->reg1));
            ASSERT_EQ(atomic_load(&r->finished1), 1);
            break;
        case MODE_NOWAIT:
            /* Would deadlock (and time out) if it waited for the callback,
             * which waits for us. */
            ASSERT_FALSE(cancel_unregister_nowait(&r->reg1));
            ASSERT_EQ(atomic_load(&r->finished1), 0);
            HARNESS_HAPPENS_BEFORE(&r->released);
            atomic_store(&r->released, 1);
            break;
        case MODE_RANDOM:
        case MODE_SELF:
            spin(r->delay_a);
            ASSERT_FALSE(cancel_unregister(&r->reg1));
            ASSERT_EQ(atomic_load(&r->finished1), 1);
            break;
        }
        pthread_barrier_wait(&r->end);
    }
}

static void *running_b(void *arg)
{
    struct running *r = arg;
    for (;;) {
        pthread_barrier_wait(&r->start);
        if (r->stop)
            return NULL;
        ASSERT_OK(cancel_source_cancel(r->src));
        pthread_barrier_wait(&r->end);
    }
}

TEST(unregister_while_running)
{
    uint64_t seed = base_seed();
    long live0 = cancel__alloc_live();
    struct running r;
    memset(&r, 0, sizeof(r));
    pthread_barrier_init(&r.start, NULL, 3);
    pthread_barrier_init(&r.end, NULL, 3);
    pthread_t a, b;
    ASSERT_EQ(pthread_create(&a, NULL, running_a, &r), 0);
    ASSERT_EQ(pthread_create(&b, NULL, running_b, &r), 0);

    long iters = harness_scale(40000);
    for (long i = 0; i < iters; i++) {
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        r.mode = (int)(i % MODE_COUNT);
        r.delay_cb = jitter(&seed);
        r.delay_a = jitter(&seed);
        memset(&r.reg1, 0, sizeof(r.reg1));
        memset(&r.reg2, 0, sizeof(r.reg2));
        atomic_store(&r.started1, 0);
        atomic_store(&r.finished1, 0);
        atomic_store(&r.runs1, 0);
        atomic_store(&r.runs2, 0);
        atomic_store(&r.released, 0);
        r.self_unreg = true;
        cancel_token t = cancel_source_token(r.src);
        ASSERT_OK(cancel_register(t, &r.reg2, running_cb2, &r));
        ASSERT_OK(cancel_register(t, &r.reg1, running_cb1, &r));
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.end);

        ASSERT_EQ(atomic_load(&r.runs1), 1);
        ASSERT_EQ(atomic_load(&r.finished1), 1);
        if (r.mode == MODE_REMOVE_PENDING) {
            ASSERT_EQ(atomic_load(&r.runs2), 0);
        } else {
            ASSERT_EQ(atomic_load(&r.runs2), 1);
            ASSERT_FALSE(cancel_unregister(&r.reg2));
        }
        if (r.mode == MODE_SELF)
            ASSERT_FALSE(r.self_unreg);
        ASSERT_FALSE(cancel_unregister(&r.reg1));
        cancel_source_free(r.src);
    }
    r.stop = true;
    pthread_barrier_wait(&r.start);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.end);
    ASSERT_EQ(cancel__alloc_live(), live0);
}
