/* Stress: parallel loops and queries with random cancels and random element
 * failures.  Each round picks a function (for, for_each, map, filter,
 * reduce), a size, a degree, and a plan: a canceller thread cancels the
 * call's token before the call, when a random number of elements have
 * started, after a random spin, or never; up to three random elements fail
 * (with -EIO, with a foreign token's cancellation, or not at all); the
 * elements either poll the token and "throw" with it, or ignore it.  The
 * elements log what they returned.
 *
 * Invariants checked every round, against what the elements logged:
 *   - no element ran twice; once the call returned none is running, and
 *     after the pool ran everything queued before, none started since;
 *   - elements started after the cancel returned: at most max_degree;
 *   - a failure logged -> CANCEL_EAGGREGATE, and the error list is exactly
 *     the logged failures plus, at most once, -ECANCELED for the call's own
 *     token (only if it fired; always if an element "threw" with it);
 *   - no failure: 0 or -ECANCELED; -ECANCELED only if the token fired, with
 *     an empty list and the token recorded on the calling thread; 0 only
 *     if every element ran once (and then the outputs are right); an
 *     element that "threw" with the call's token means -ECANCELED;
 *   - filter failed or canceled: *out == NULL, *count == 0.
 * Sort rounds: random cancels at a random comparison; 0 with a sorted,
 * stable result, or -ECANCELED with the same items.
 *
 * CANCEL_TEST_SEED replays a run; CANCEL_TEST_SCALE makes it longer. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

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
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed0fa11ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* Every worker of the pool runs a marker at once: all queued before ran. */
struct flush {
    int n;
    atomic_int in, out;
    harness_gate all_in, all_out;
};

static void flush_marker(void *arg)
{
    struct flush *f = arg;
    int n = f->n; /* f is on the flusher's stack: gone once all are out */
    if (atomic_fetch_add(&f->in, 1) + 1 == n)
        harness_gate_open(&f->all_in);
    harness_gate_wait(&f->all_in);
    if (atomic_fetch_add(&f->out, 1) + 1 == n)
        harness_gate_open(&f->all_out);
}

static void pool_flush(cancel_pool *pool)
{
    struct flush f = {.n = cancel_pool_size(pool)};
    harness_gate_init(&f.all_in);
    harness_gate_init(&f.all_out);
    for (int k = 0; k < f.n; k++)
        ASSERT_OK(cancel_pool_queue(pool, flush_marker, &f));
    harness_gate_wait(&f.all_out);
    harness_gate_destroy(&f.all_in);
    harness_gate_destroy(&f.all_out);
}

/* ---- one round ----------------------------------------------------------- */

enum kind { K_FOR, K_EACH, K_MAP, K_FILTER, K_REDUCE, K_KINDS };
enum plan { NO_CANCEL, CANCEL_BEFORE, CANCEL_AT_COUNT, CANCEL_AFTER_SPIN };
enum failure { F_EIO, F_FOREIGN };

#define MAXN 6000
#define MAXF 3

struct round {
    enum kind kind;
    cancel_pool *pool;
    size_t n;
    int degree;
    bool poll;
    cancel_source *src, *foreign;
    cancel_token t;
    size_t fail_at[MAXF];
    enum failure fail_how[MAXF];
    int nfail;

    enum plan plan;
    int cancel_count;
    unsigned cancel_spin;

    atomic_int started, running, started_after;
    atomic_bool after, done;
    atomic_uchar ran[MAXN];
    atomic_int nfailed, nown; /* failures and own cancellations returned */
    int failed_codes[MAXN];   /* indexed by element: 0 or the code */

    int64_t in[MAXN], out[MAXN];
};

static int element(struct round *r, size_t i, cancel_token t)
{
    ASSERT_LT(i, r->n);
    ASSERT(cancel_token_equal(t, r->t));
    atomic_fetch_add(&r->started, 1);
    if (atomic_load(&r->after))
        atomic_fetch_add(&r->started_after, 1);
    atomic_fetch_add(&r->running, 1);
    ASSERT_EQ(atomic_fetch_add(&r->ran[i], 1), 0); /* never twice */
    int e = 0;
    for (int k = 0; k < r->nfail && e == 0; k++) {
        if (r->fail_at[k] != i)
            continue;
        e = r->fail_how[k] == F_EIO
                ? -EIO
                : cancel_check(cancel_source_token(r->foreign));
    }
    if (e != 0) {
        r->failed_codes[i] = e;
        atomic_fetch_add(&r->nfailed, 1);
    } else if (r->poll && cancel_check(t) != 0) {
        e = -ECANCELED; /* the call's own token, canceled: cooperative */
        atomic_fetch_add(&r->nown, 1);
    }
    spin(50);
    atomic_fetch_sub(&r->running, 1);
    return e;
}

static int for_body(int64_t i, void *arg, cancel_token t)
{
    return element(arg, (size_t)i, t);
}

static int each_body(void *item, void *arg, cancel_token t)
{
    struct round *r = arg;
    return element(r, (size_t)((int64_t *)item - r->in), t);
}

static int map_fn(const void *in, void *out, void *arg, cancel_token t)
{
    struct round *r = arg;
    const int64_t *x = in;
    int e = element(r, (size_t)(x - r->in), t);
    *(int64_t *)out = *x * 3 + 1;
    return e;
}

static int pred_fn(const void *item, void *arg, cancel_token t)
{
    struct round *r = arg;
    const int64_t *x = item;
    int e = element(r, (size_t)(x - r->in), t);
    return e != 0 ? e : *x % 4 == 1;
}

static int fold_fn(void *acc, const void *item, void *arg, cancel_token t)
{
    struct round *r = arg;
    const int64_t *x = item;
    int e = element(r, (size_t)(x - r->in), t);
    *(int64_t *)acc += *x;
    return e;
}

static void combine_fn(void *acc, const void *other, void *arg)
{
    (void)arg;
    *(int64_t *)acc += *(const int64_t *)other;
}

static void *canceller(void *arg)
{
    struct round *r = arg;
    if (r->plan == CANCEL_AT_COUNT) {
        while (atomic_load(&r->started) < r->cancel_count &&
               !atomic_load(&r->done))
            sched_yield();
    } else {
        spin(r->cancel_spin);
    }
    ASSERT_OK(cancel_source_cancel(r->src));
    atomic_store(&r->after, true);
    return NULL;
}

/* What the rounds ended with, for the summary line. */
static long n_ok, n_canceled, n_aggregate, n_with_own, n_elements;

static void run_round(struct round *r, uint64_t *seed, cancel_pool *pool)
{
    r->pool = pool;
    r->kind = (enum kind)below(seed, K_KINDS);
    r->n = below(seed, 4) == 0 ? below(seed, 8) : below(seed, MAXN);
    static const int degrees[] = {0, 1, 2, 3, 4, 8};
    r->degree = degrees[below(seed, 6)];
    r->poll = below(seed, 2);
    r->src = cancel_source_new();
    r->foreign = cancel_source_new();
    ASSERT(r->src && r->foreign);
    r->t = cancel_source_token(r->src);
    if (below(seed, 2))
        ASSERT_OK(cancel_source_cancel(r->foreign));
    r->nfail = below(seed, 3) == 0 ? (int)below(seed, MAXF + 1) : 0;
    for (int k = 0; k < r->nfail; k++) {
        r->fail_at[k] = r->n ? below(seed, (uint32_t)r->n) : 0;
        r->fail_how[k] = (enum failure)below(seed, 2);
    }
    r->plan = (enum plan)below(seed, 4);
    r->cancel_count = (int)below(seed, (uint32_t)r->n + 1);
    r->cancel_spin = below(seed, 1u << below(seed, 17));
    for (size_t i = 0; i < r->n; i++) {
        r->in[i] = (int64_t)i;
        r->out[i] = -1;
    }

    int errs[MAXF + 2];
    for (int k = 0; k < MAXF + 2; k++)
        errs[k] = 4242;
    cancel_parallel_options o = {r->degree, errs, MAXF + 2, 77};
    pthread_t th;
    bool threaded = r->plan == CANCEL_AT_COUNT || r->plan == CANCEL_AFTER_SPIN;
    if (r->plan == CANCEL_BEFORE) {
        ASSERT_OK(cancel_source_cancel(r->src));
        atomic_store(&r->after, true);
    }
    if (threaded)
        ASSERT_EQ(pthread_create(&th, NULL, canceller, r), 0);

    cancel_throw(cancel_source_token(r->foreign)); /* recorded before */
    void *fout = r->in;
    size_t count = 12345;
    int64_t zero = 0, sum = -1;
    int rc = 0;
    switch (r->kind) {
    case K_FOR:
        rc = cancel_parallel_for(pool, 0, (int64_t)r->n, for_body, r, r->t, &o);
        break;
    case K_EACH:
        rc = cancel_parallel_for_each(pool, r->in, r->n, sizeof(int64_t),
                                      each_body, r, r->t, &o);
        break;
    case K_MAP:
        rc = cancel_parallel_map(pool, r->in, r->n, sizeof(int64_t), r->out,
                                 sizeof(int64_t), map_fn, r, r->t, &o);
        break;
    case K_FILTER:
        rc = cancel_parallel_filter(pool, r->in, r->n, sizeof(int64_t), &fout,
                                    &count, pred_fn, r, r->t, &o);
        break;
    case K_REDUCE:
        rc = cancel_parallel_reduce(pool, r->in, r->n, sizeof(int64_t), &sum,
                                    &zero, sizeof(int64_t), fold_fn, combine_fn,
                                    r, r->t, &o);
        break;
    default:
        break;
    }
    cancel_token recorded = cancel_canceled_token();
    bool canceled = cancel_requested(r->t); /* when the call returned */
    atomic_store(&r->done, true);

    /* Nothing runs now, and nothing will. */
    ASSERT_EQ(atomic_load(&r->running), 0);
    int started = atomic_load(&r->started);
    if (threaded)
        ASSERT_EQ(pthread_join(th, NULL), 0);
    pool_flush(pool);
    ASSERT_EQ(atomic_load(&r->started), started);
    ASSERT_LE(atomic_load(&r->started_after),
              r->degree > 0 ? r->degree : cancel_pool_size(pool));

    size_t ran = 0;
    for (size_t i = 0; i < r->n; i++)
        ran += atomic_load(&r->ran[i]);
    ASSERT_EQ(ran, (size_t)started);
    int nfailed = atomic_load(&r->nfailed);
    int nown = atomic_load(&r->nown);

    if (nfailed > 0) {
        ASSERT_ERR(rc, CANCEL_EAGGREGATE);
        /* The logged failures, each once, plus at most one -ECANCELED of
         * the call's own. */
        ASSERT((int)o.nerrors == nfailed || (int)o.nerrors == nfailed + 1);
        if (nown > 0)
            ASSERT_EQ(o.nerrors, nfailed + 1);
        if ((int)o.nerrors == nfailed + 1) {
            ASSERT(canceled);
            ASSERT_ERR(errs[nfailed], -ECANCELED); /* it comes last */
        }
        int want[MAXF];
        int nw = 0;
        for (size_t i = 0; i < r->n; i++)
            if (r->failed_codes[i] != 0)
                want[nw++] = r->failed_codes[i];
        ASSERT_EQ(nw, nfailed);
        bool used[MAXF] = {false};
        for (int k = 0; k < nfailed; k++) {
            int j = 0;
            while (j < nw && (used[j] || want[j] != errs[k]))
                j++;
            ASSERT_LT(j, nw);
            used[j] = true;
        }
    } else {
        ASSERT(rc == 0 || rc == -ECANCELED);
        ASSERT_EQ(o.nerrors, 0);
        if (nown > 0)
            ASSERT_ERR(rc, -ECANCELED);
        if ((size_t)started < r->n && canceled)
            ASSERT_ERR(rc, -ECANCELED); /* stopped by its own token */
        if (rc == -ECANCELED) {
            ASSERT(canceled);
            ASSERT(cancel_token_equal(recorded, r->t));
        } else {
            ASSERT_EQ((size_t)started, r->n);
            for (size_t i = 0; i < r->n; i++)
                ASSERT_EQ(atomic_load(&r->ran[i]), 1);
            if (r->kind == K_MAP)
                for (size_t i = 0; i < r->n; i++)
                    ASSERT_EQ(r->out[i], 3 * (int64_t)i + 1);
            if (r->kind == K_FILTER) {
                ASSERT_EQ(count, (r->n + 2) / 4);
                for (size_t k = 0; k < count; k++)
                    ASSERT_EQ(((int64_t *)fout)[k], 4 * (int64_t)k + 1);
            }
            if (r->kind == K_REDUCE)
                ASSERT_EQ(sum, (int64_t)r->n * ((int64_t)r->n - 1) / 2);
        }
    }
    n_ok += rc == 0;
    n_canceled += rc == -ECANCELED;
    n_aggregate += rc == CANCEL_EAGGREGATE;
    n_with_own += rc == CANCEL_EAGGREGATE && (int)o.nerrors > nfailed;
    n_elements += started;
    if (r->kind == K_FILTER) {
        if (rc != 0) {
            ASSERT_NULL(fout);
            ASSERT_EQ(count, 0);
        } else {
            free(fout);
        }
    }
    cancel_source_free(r->src);
    cancel_source_free(r->foreign);
}

TEST(parallel_random_cancels_and_failures)
{
    uint64_t seed = base_seed();
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    long rounds = harness_scale(20000);
    static struct round r;
    for (long k = 0; k < rounds; k++) {
        memset(&r, 0, sizeof(r));
        run_round(&r, &seed, pool);
    }
    printf("%ld rounds: %ld ran to the end, %ld canceled, %ld failed (%ld of "
           "them with the call's own cancellation); %ld elements\n",
           rounds, n_ok, n_canceled, n_aggregate, n_with_own, n_elements);
    cancel_pool_free(pool);
}

/* ---- sort ---------------------------------------------------------------- */

struct rec {
    uint32_t key, seq;
};

struct sort_round {
    cancel_source *src;
    atomic_long calls;
    long cancel_at; /* -1: never */
};

static int by_key(const void *a, const void *b, void *arg)
{
    struct sort_round *s = arg;
    if (atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed) ==
        s->cancel_at)
        ASSERT_OK(cancel_source_cancel(s->src));
    const struct rec *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

struct sorter {
    struct sort_round *s;
    unsigned spin;
};

static void *sort_canceller(void *arg)
{
    struct sorter *c = arg;
    spin(c->spin);
    ASSERT_OK(cancel_source_cancel(c->s->src));
    return NULL;
}

TEST(sort_random_cancels)
{
    uint64_t seed = base_seed();
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    long rounds = harness_scale(2000);
    enum { SN = 20000 };
    static struct rec a[SN];
    static unsigned char seen[SN];
    for (long k = 0; k < rounds; k++) {
        size_t n = below(&seed, 4) == 0 ? below(&seed, 6) : below(&seed, SN);
        uint32_t keys = 1u + below(&seed, 1u << below(&seed, 20));
        for (size_t i = 0; i < n; i++)
            a[i] = (struct rec){below(&seed, keys), (uint32_t)i};
        struct sort_round s = {.src = cancel_source_new(), .cancel_at = -1};
        ASSERT_NOT_NULL(s.src);
        cancel_token t = cancel_source_token(s.src);
        int how = (int)below(&seed, 3); /* never, at a comparison, thread */
        if (how == 1)
            s.cancel_at = (long)below(&seed, (uint32_t)(n * 16 + 1));
        struct sorter c = {&s, below(&seed, 1u << below(&seed, 18))};
        pthread_t th;
        if (how == 2)
            ASSERT_EQ(pthread_create(&th, NULL, sort_canceller, &c), 0);
        static const int degrees[] = {0, 1, 2, 3, 4, 8};
        cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
        o.max_degree = degrees[below(&seed, 6)];
        int rc = cancel_parallel_sort(pool, a, n, sizeof(struct rec), by_key,
                                      &s, t, &o);
        long calls = atomic_load(&s.calls);
        if (how == 2)
            ASSERT_EQ(pthread_join(th, NULL), 0);
        pool_flush(pool);
        ASSERT_EQ(atomic_load(&s.calls), calls); /* no comparison later */
        ASSERT(rc == 0 || rc == -ECANCELED);
        ASSERT_EQ(o.nerrors, 0);
        if (rc == 0) {
            for (size_t i = 1; i < n; i++) {
                ASSERT_LE(a[i - 1].key, a[i].key);
                if (a[i - 1].key == a[i].key)
                    ASSERT_LT(a[i - 1].seq, a[i].seq);
            }
        } else {
            ASSERT(cancel_requested(t));
            ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        }
        memset(seen, 0, n);
        for (size_t i = 0; i < n; i++) {
            ASSERT_LT(a[i].seq, n);
            ASSERT_EQ(seen[a[i].seq], 0);
            seen[a[i].seq] = 1;
        }
        cancel_source_free(s.src);
    }
    cancel_pool_free(pool);
}
