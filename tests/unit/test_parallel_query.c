/* Unit tests of the parallel queries (PLINQ's WithCancellation): filter,
 * sort, map and reduce compute the right results, and a canceled query
 * hands back no partial result as if it were whole.
 *
 * E11 is checked at its full size: the multiples of 3 of 1..10,000,000,
 * sorted descending - 3,333,333 values from 9999999 down to 3.  The
 * cancellations come from inside the query (a predicate, fold or
 * comparison cancels the source when it reaches a given element), so each
 * test knows the query was still running when its token fired.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static cancel_pool *pool_new(int n)
{
    cancel_pool *p = cancel_pool_new(n);
    ASSERT_NOT_NULL(p);
    return p;
}

static cancel_source *source_new(void)
{
    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    return s;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    uint64_t x = rnd_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rnd_state = x;
    return x * 2685821657736338717ULL;
}

/* ---- E11: filter + sort descending over 1..10,000,000 -------------------- */

#define E11_N 10000000

static int32_t *e11_source(void)
{
    int32_t *a = malloc(sizeof(int32_t) * E11_N);
    ASSERT_NOT_NULL(a);
    for (int32_t i = 0; i < E11_N; i++)
        a[i] = i + 1;
    return a;
}

struct e11 {
    cancel_source *src;
    int32_t cancel_at; /* the predicate cancels when it sees it (0: never) */
    atomic_int after;  /* elements that ran after the query returned */
    atomic_bool returned;
};

static int multiple_of_3(const void *item, void *arg, cancel_token t)
{
    struct e11 *q = arg;
    int32_t x = *(const int32_t *)item;
    (void)t;
    if (atomic_load_explicit(&q->returned, memory_order_relaxed))
        atomic_fetch_add(&q->after, 1);
    if (x == q->cancel_at)
        ASSERT_OK(cancel_source_cancel(q->src));
    return x % 3 == 0;
}

static int descending(const void *a, const void *b, void *arg)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    (void)arg;
    return (x < y) - (x > y);
}

TEST(e11_multiples_of_3_sorted_descending)
{
    cancel_pool *pool = pool_new(0);
    int32_t *a = e11_source();
    struct e11 q = {.src = source_new()};
    cancel_token t = cancel_source_token(q.src);
    void *out = NULL;
    size_t count = 0;
    ASSERT_OK(cancel_parallel_filter(pool, a, E11_N, sizeof(int32_t), &out,
                                     &count, multiple_of_3, &q, t, NULL));
    ASSERT_EQ(count, 3333333);
    int32_t *r = out;
    for (size_t k = 0; k < count; k++) /* the source order is kept */
        ASSERT_EQ(r[k], 3 * (int32_t)(k + 1));
    ASSERT_OK(cancel_parallel_sort(pool, r, count, sizeof(int32_t), descending,
                                   NULL, t, NULL));
    ASSERT_EQ(r[0], 9999999);
    ASSERT_EQ(r[count - 1], 3);
    for (size_t k = 0; k < count; k++)
        ASSERT_EQ(r[k], 9999999 - 3 * (int32_t)k);
    free(out);
    free(a);
    cancel_source_free(q.src);
    cancel_pool_free(pool);
}

/* Canceled in the middle of the filter: -ECANCELED, no partial array, and
 * no predicate runs after the query returned. */
TEST(e11_canceled_during_filter_no_partial_array)
{
    cancel_pool *pool = pool_new(0);
    int32_t *a = e11_source();
    struct e11 q = {.src = source_new(), .cancel_at = 5000000};
    cancel_token t = cancel_source_token(q.src);
    void *out = (void *)a;
    size_t count = 77;
    int rc = cancel_parallel_filter(pool, a, E11_N, sizeof(int32_t), &out,
                                    &count, multiple_of_3, &q, t, NULL);
    atomic_store(&q.returned, true);
    ASSERT_ERR(rc, -ECANCELED);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_NULL(out);
    ASSERT_EQ(count, 0);
    cancel_pool_free(pool); /* drains: late helpers run now, if at all */
    ASSERT_EQ(atomic_load(&q.after), 0);
    free(a);
    cancel_source_free(q.src);
}

/* The predicate "throws" with the query's token: the same single
 * cancellation, not a composite. */
static int multiple_of_3_polling(const void *item, void *arg, cancel_token t)
{
    struct e11 *q = arg;
    int32_t x = *(const int32_t *)item;
    if (x == q->cancel_at)
        ASSERT_OK(cancel_source_cancel(q->src));
    int e = cancel_check(t);
    return e != 0 ? e : x % 3 == 0;
}

TEST(e11_canceled_cooperatively_single_cancellation)
{
    cancel_pool *pool = pool_new(3);
    int32_t *a = e11_source();
    struct e11 q = {.src = source_new(), .cancel_at = 1234567};
    cancel_token t = cancel_source_token(q.src);
    int errs[4];
    cancel_parallel_options o = {4, errs, 4, 99};
    void *out = NULL;
    size_t count = 1;
    ASSERT_ERR(cancel_parallel_filter(pool, a, E11_N, sizeof(int32_t), &out,
                                      &count, multiple_of_3_polling, &q, t, &o),
               -ECANCELED);
    ASSERT_EQ(o.nerrors, 0);
    ASSERT_NULL(out);
    ASSERT_EQ(count, 0);
    free(a);
    cancel_source_free(q.src);
    cancel_pool_free(pool);
}

/* Canceled during the sort: -ECANCELED, and the array still holds the same
 * values (a permutation), whatever phase the cancel hit - the first
 * comparison, the blocks, every merge level, the very last comparison. */
struct cmp_cancel {
    cancel_source *src;
    atomic_long calls;
    long cancel_at;
    bool stable_key; /* compare only the key of struct rec */
};

static int descending_counting(const void *a, const void *b, void *arg)
{
    struct cmp_cancel *c = arg;
    if (atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed) ==
        c->cancel_at)
        ASSERT_OK(cancel_source_cancel(c->src));
    return descending(a, b, NULL);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void fill_ascending(int32_t *a, size_t n)
{
    for (size_t k = 0; k < n; k++)
        a[k] = 3 * (int32_t)(k + 1);
}

TEST(sort_descending_canceled_leaves_permutation)
{
    cancel_pool *pool = pool_new(3);
    size_t n = 333333; /* E11's results over 1..1,000,000 */
    int32_t *a = malloc(n * sizeof(int32_t));
    ASSERT_NOT_NULL(a);
    /* A run to completion counts the comparisons (the same blocks and
     * merges every time: the count does not depend on the timing). */
    fill_ascending(a, n);
    struct cmp_cancel dry = {.src = source_new(), .cancel_at = -1};
    ASSERT_OK(cancel_parallel_sort(pool, a, n, sizeof(int32_t),
                                   descending_counting, &dry,
                                   cancel_source_token(dry.src), NULL));
    long total = atomic_load(&dry.calls);
    cancel_source_free(dry.src);
    long points[] = {0,        1000, total / 3, total / 2, total - total / 10,
                     total - 1};
    for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
        fill_ascending(a, n);
        struct cmp_cancel c = {.src = source_new(), .cancel_at = points[p]};
        cancel_token t = cancel_source_token(c.src);
        int rc = cancel_parallel_sort(pool, a, n, sizeof(int32_t),
                                      descending_counting, &c, t, NULL);
        ASSERT_ERR(rc, -ECANCELED);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        qsort(a, n, sizeof(int32_t), cmp_i32);
        for (size_t k = 0; k < n; k++)
            ASSERT_EQ(a[k], 3 * (int32_t)(k + 1));
        cancel_source_free(c.src);
    }
    free(a);
    cancel_pool_free(pool);
}

/* ---- sort ---------------------------------------------------------------- */

struct rec {
    uint32_t key;
    uint32_t seq; /* position in the input */
};

static int by_key(const void *a, const void *b, void *arg)
{
    const struct rec *x = a, *y = b;
    (void)arg;
    return (x->key > y->key) - (x->key < y->key);
}

static int by_key_counting(const void *a, const void *b, void *arg)
{
    struct cmp_cancel *c = arg;
    if (atomic_fetch_add_explicit(&c->calls, 1, memory_order_relaxed) ==
        c->cancel_at)
        ASSERT_OK(cancel_source_cancel(c->src));
    return by_key(a, b, NULL);
}

static int by_key_then_seq(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->key != y->key)
        return (x->key > y->key) - (x->key < y->key);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static struct rec *random_recs(size_t n, uint32_t keys)
{
    struct rec *r = malloc((n ? n : 1) * sizeof(*r));
    ASSERT_NOT_NULL(r);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct rec){(uint32_t)(rnd() % keys), (uint32_t)i};
    return r;
}

/* Sorted by key, equal keys in input order: exactly qsort by (key, seq). */
static void check_stably_sorted(const struct rec *r, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        ASSERT_LE(r[i - 1].key, r[i].key);
        if (r[i - 1].key == r[i].key)
            ASSERT_LT(r[i - 1].seq, r[i].seq);
    }
    /* ... and a permutation of the input: every seq once. */
    unsigned char *seen = calloc(n ? n : 1, 1);
    ASSERT_NOT_NULL(seen);
    for (size_t i = 0; i < n; i++) {
        ASSERT_LT(r[i].seq, n);
        ASSERT_EQ(seen[r[i].seq], 0);
        seen[r[i].seq] = 1;
    }
    free(seen);
}

static void sort_sizes(int degree, uint32_t keys)
{
    cancel_pool *pool = pool_new(3);
    size_t sizes[] = {0, 1, 2, 3, 4, 5, 17, 1000, 4097, 100003};
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = degree;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        struct rec *r = random_recs(n, keys);
        struct rec *want = malloc((n ? n : 1) * sizeof(*want));
        ASSERT_NOT_NULL(want);
        memcpy(want, r, n * sizeof(*r));
        qsort(want, n, sizeof(*want), by_key_then_seq);
        ASSERT_OK(cancel_parallel_sort(pool, r, n, sizeof(*r), by_key, NULL,
                                       CANCEL_NONE, &o));
        check_stably_sorted(r, n);
        ASSERT_EQ(memcmp(r, want, n * sizeof(*r)), 0);
        free(want);
        free(r);
    }
    cancel_pool_free(pool);
}

TEST(sort_random_sizes_default_degree)
{
    sort_sizes(0, 1u << 30);
}
TEST(sort_random_sizes_degree_1)
{
    sort_sizes(1, 1u << 30);
}
TEST(sort_random_sizes_degree_3)
{
    sort_sizes(3, 1u << 30);
}
TEST(sort_random_sizes_degree_16)
{
    sort_sizes(16, 1u << 30);
}
TEST(sort_is_stable_few_keys)
{
    sort_sizes(0, 10);
}
TEST(sort_is_stable_one_key)
{
    sort_sizes(4, 1);
}

/* Already sorted and reversed inputs, and elements of an odd size. */
static int cmp3(const void *a, const void *b, void *arg)
{
    (void)arg;
    return memcmp(a, b, 3);
}

static size_t get3(const unsigned char *p)
{
    return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
}

TEST(sort_sorted_reversed_and_odd_sizes)
{
    cancel_pool *pool = pool_new(3);
    size_t n = 50001;
    unsigned char *v = malloc(n * 3);
    ASSERT_NOT_NULL(v);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            size_t x = pass == 0 ? i : n - 1 - i;
            v[3 * i] = (unsigned char)(x >> 16);
            v[3 * i + 1] = (unsigned char)(x >> 8);
            v[3 * i + 2] = (unsigned char)x;
        }
        ASSERT_OK(
            cancel_parallel_sort(pool, v, n, 3, cmp3, NULL, CANCEL_NONE, NULL));
        for (size_t i = 0; i < n; i++)
            ASSERT_EQ(get3(v + 3 * i), i);
    }
    free(v);
    cancel_pool_free(pool);
}

/* Canceled at many points (the block phase, every merge level): always
 * -ECANCELED, the thread's canceled token is the sort's, and the array
 * holds exactly the input's items. */
static void sort_canceled(size_t n, int degree)
{
    cancel_pool *pool = pool_new(3);
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = degree;
    /* The comparisons of one whole sort of this input, counted in a dry
     * run; then cancel at spread fractions of them, the last one
     * included (a cancel during the last merge still reports it). */
    uint64_t seed = rnd_state;
    struct rec *r0 = random_recs(n, 1000);
    struct cmp_cancel dry = {.src = source_new(), .cancel_at = -1};
    ASSERT_OK(cancel_parallel_sort(pool, r0, n, sizeof(*r0), by_key_counting,
                                   &dry, cancel_source_token(dry.src), &o));
    long total = atomic_load(&dry.calls);
    cancel_source_free(dry.src);
    free(r0);
    for (int step = 0; step <= 12; step++) {
        rnd_state = seed;
        struct rec *r = random_recs(n, 1000);
        struct rec *want = malloc(n * sizeof(*want));
        ASSERT_NOT_NULL(want);
        memcpy(want, r, n * sizeof(*r));
        struct cmp_cancel c = {.src = source_new(),
                               .cancel_at =
                                   step == 12 ? total - 1 : total * step / 12};
        cancel_token t = cancel_source_token(c.src);
        int rc = cancel_parallel_sort(pool, r, n, sizeof(*r), by_key_counting,
                                      &c, t, &o);
        ASSERT_ERR(rc, -ECANCELED);
        ASSERT_EQ(o.nerrors, 0);
        ASSERT(cancel_token_equal(cancel_canceled_token(), t));
        qsort(r, n, sizeof(*r), by_key_then_seq);
        qsort(want, n, sizeof(*want), by_key_then_seq);
        ASSERT_EQ(memcmp(r, want, n * sizeof(*r)), 0); /* same multiset */
        cancel_source_free(c.src);
        free(want);
        free(r);
    }
    cancel_pool_free(pool);
}

TEST(sort_canceled_leaves_permutation_small)
{
    sort_canceled(1000, 0);
}
TEST(sort_canceled_leaves_permutation_large)
{
    sort_canceled(100003, 0);
}
TEST(sort_canceled_leaves_permutation_degree_1)
{
    sort_canceled(100003, 1);
}
TEST(sort_canceled_leaves_permutation_degree_8)
{
    sort_canceled(100003, 8);
}

TEST(sort_pre_canceled_touches_nothing)
{
    cancel_pool *pool = pool_new(2);
    cancel_source *src = source_new();
    ASSERT_OK(cancel_source_cancel(src));
    struct rec *r = random_recs(1000, 50);
    struct rec *copy = malloc(1000 * sizeof(*copy));
    ASSERT_NOT_NULL(copy);
    memcpy(copy, r, 1000 * sizeof(*r));
    struct cmp_cancel c = {.src = src, .cancel_at = -1};
    ASSERT_ERR(cancel_parallel_sort(pool, r, 1000, sizeof(*r), by_key_counting,
                                    &c, cancel_source_token(src), NULL),
               -ECANCELED);
    ASSERT_EQ(atomic_load(&c.calls), 0);
    ASSERT_EQ(memcmp(r, copy, 1000 * sizeof(*r)), 0);
    free(copy);
    free(r);
    cancel_source_free(src);
    cancel_pool_free(pool);
}

/* ---- map and reduce: results equal the sequential computation ------------ */

#define MR_N 1000003

static int square(const void *in, void *out, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    int64_t x = *(const int64_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}

static int add_square(void *acc, const void *item, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    uint64_t x = (uint64_t) * (const int64_t *)item;
    *(uint64_t *)acc += x * x;
    return 0;
}

static void add_u64(void *acc, const void *other, void *arg)
{
    (void)arg;
    *(uint64_t *)acc += *(const uint64_t *)other;
}

static int64_t *iota(size_t n)
{
    int64_t *a = malloc(n * sizeof(int64_t));
    ASSERT_NOT_NULL(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (int64_t)i + 1;
    return a;
}

TEST(map_squares_match_sequential)
{
    cancel_pool *pool = pool_new(3);
    int64_t *in = iota(MR_N), *out = malloc(MR_N * sizeof(int64_t));
    ASSERT_NOT_NULL(out);
    int degrees[] = {0, 1, 2, 4, 9};
    for (size_t d = 0; d < sizeof(degrees) / sizeof(degrees[0]); d++) {
        memset(out, 0, MR_N * sizeof(int64_t));
        cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
        o.max_degree = degrees[d];
        ASSERT_OK(cancel_parallel_map(pool, in, MR_N, sizeof(int64_t), out,
                                      sizeof(int64_t), square, NULL,
                                      CANCEL_NONE, &o));
        for (size_t i = 0; i < MR_N; i++)
            ASSERT_EQ(out[i], in[i] * in[i]);
    }
    free(out);
    free(in);
    cancel_pool_free(pool);
}

/* Map to a different element size: int64 in, 2-byte out. */
static int low_bits(const void *in, void *out, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    *(uint16_t *)out = (uint16_t)(*(const int64_t *)in * 7);
    return 0;
}

TEST(map_other_output_size)
{
    cancel_pool *pool = pool_new(3);
    int64_t *in = iota(100001);
    uint16_t *out = calloc(100001, sizeof(uint16_t));
    ASSERT_NOT_NULL(out);
    ASSERT_OK(cancel_parallel_map(pool, in, 100001, sizeof(int64_t), out,
                                  sizeof(uint16_t), low_bits, NULL, CANCEL_NONE,
                                  NULL));
    for (size_t i = 0; i < 100001; i++)
        ASSERT_EQ(out[i], (uint16_t)(in[i] * 7));
    free(out);
    free(in);
    cancel_pool_free(pool);
}

TEST(reduce_sum_of_squares_matches_sequential)
{
    cancel_pool *pool = pool_new(3);
    size_t sizes[] = {1, 2, 3, 31, 32, 33, 1000, MR_N};
    int degrees[] = {0, 1, 2, 4, 9};
    int64_t *in = iota(MR_N);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint64_t want = 0;
        for (size_t i = 0; i < sizes[s]; i++)
            want += (uint64_t)in[i] * (uint64_t)in[i];
        for (size_t d = 0; d < sizeof(degrees) / sizeof(degrees[0]); d++) {
            cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
            o.max_degree = degrees[d];
            uint64_t zero = 0, sum = 1;
            ASSERT_OK(cancel_parallel_reduce(
                pool, in, sizes[s], sizeof(int64_t), &sum, &zero,
                sizeof(uint64_t), add_square, add_u64, NULL, CANCEL_NONE, &o));
            ASSERT_EQ(sum, want);
        }
    }
    free(in);
    cancel_pool_free(pool);
}

/* An associative reduction that is not commutative - composing affine maps
 * x -> a*x + b (mod 2^64) - comes out as the sequential one: the chunks
 * are folded and combined in order. */
struct affine {
    uint64_t a, b;
};

/* acc = item after acc: x -> item(acc(x)). */
static void compose(struct affine *acc, const struct affine *f)
{
    acc->b = f->a * acc->b + f->b;
    acc->a = f->a * acc->a;
}

static int fold_affine(void *acc, const void *item, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    compose(acc, item);
    return 0;
}

static void combine_affine(void *acc, const void *other, void *arg)
{
    (void)arg;
    compose(acc, other);
}

TEST(reduce_keeps_order_of_a_non_commutative_reduction)
{
    cancel_pool *pool = pool_new(3);
    size_t n = 200003;
    struct affine *f = malloc(n * sizeof(*f));
    ASSERT_NOT_NULL(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (struct affine){rnd() | 1, rnd()};
    struct affine want = {1, 0};
    for (size_t i = 0; i < n; i++)
        compose(&want, &f[i]);
    int degrees[] = {0, 1, 2, 3, 8};
    for (size_t d = 0; d < sizeof(degrees) / sizeof(degrees[0]); d++) {
        cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
        o.max_degree = degrees[d];
        struct affine id = {1, 0}, got = {0, 0};
        ASSERT_OK(cancel_parallel_reduce(
            pool, f, n, sizeof(*f), &got, &id, sizeof(id), fold_affine,
            combine_affine, NULL, CANCEL_NONE, &o));
        ASSERT_EQ(got.a, want.a);
        ASSERT_EQ(got.b, want.b);
    }
    free(f);
    cancel_pool_free(pool);
}

/* Canceled map and reduce: -ECANCELED, single, recorded. */
struct cancel_at {
    cancel_source *src;
    int64_t at;
    bool poll;
};

static int square_cancel_at(const void *in, void *out, void *arg,
                            cancel_token t)
{
    struct cancel_at *c = arg;
    if (*(const int64_t *)in == c->at)
        ASSERT_OK(cancel_source_cancel(c->src));
    if (c->poll && cancel_check(t) != 0)
        return -ECANCELED;
    return square(in, out, NULL, t);
}

static int add_square_cancel_at(void *acc, const void *item, void *arg,
                                cancel_token t)
{
    struct cancel_at *c = arg;
    if (*(const int64_t *)item == c->at)
        ASSERT_OK(cancel_source_cancel(c->src));
    if (c->poll && cancel_check(t) != 0)
        return -ECANCELED;
    return add_square(acc, item, NULL, t);
}

static void map_reduce_canceled(bool reduce, bool poll)
{
    cancel_pool *pool = pool_new(3);
    int64_t *in = iota(MR_N), *out = malloc(MR_N * sizeof(int64_t));
    ASSERT_NOT_NULL(out);
    int errs[4];
    cancel_parallel_options o = {0, errs, 4, 5};
    /* Polling, the element that cancels "throws" too: canceled, whatever
     * else ran.  Ignoring, it is the first element (1): the rest of its
     * chunk is never handed out, so the query cannot have completed. */
    struct cancel_at c = {
        .src = source_new(), .at = poll ? MR_N / 2 : 1, .poll = poll};
    cancel_token t = cancel_source_token(c.src);
    uint64_t zero = 0, sum = 0;
    int rc =
        reduce
            ? cancel_parallel_reduce(pool, in, MR_N, sizeof(int64_t), &sum,
                                     &zero, sizeof(uint64_t),
                                     add_square_cancel_at, add_u64, &c, t, &o)
            : cancel_parallel_map(pool, in, MR_N, sizeof(int64_t), out,
                                  sizeof(int64_t), square_cancel_at, &c, t, &o);
    ASSERT_ERR(rc, -ECANCELED);
    ASSERT_EQ(o.nerrors, 0);
    ASSERT(cancel_token_equal(cancel_canceled_token(), t));
    cancel_source_free(c.src);
    free(out);
    free(in);
    cancel_pool_free(pool);
}

TEST(map_canceled_ignoring)
{
    map_reduce_canceled(false, false);
}
TEST(map_canceled_polling)
{
    map_reduce_canceled(false, true);
}
TEST(reduce_canceled_ignoring)
{
    map_reduce_canceled(true, false);
}
TEST(reduce_canceled_polling)
{
    map_reduce_canceled(true, true);
}

/* A predicate that fails: the composite, and no partial array. */
static int pred_fails_at(const void *item, void *arg, cancel_token t)
{
    (void)t;
    return *(const int64_t *)item == *(const int64_t *)arg ? -EIO : 1;
}

TEST(filter_failure_no_partial_array)
{
    cancel_pool *pool = pool_new(3);
    int64_t *in = iota(100000);
    int64_t at = 77777;
    int errs[4];
    cancel_parallel_options o = {0, errs, 4, 0};
    void *out = in;
    size_t count = 5;
    ASSERT_ERR(cancel_parallel_filter(pool, in, 100000, sizeof(int64_t), &out,
                                      &count, pred_fails_at, &at, CANCEL_NONE,
                                      &o),
               CANCEL_EAGGREGATE);
    ASSERT_EQ(o.nerrors, 1);
    ASSERT_ERR(errs[0], -EIO);
    ASSERT_NULL(out);
    ASSERT_EQ(count, 0);
    free(in);
    cancel_pool_free(pool);
}

/* Any positive answer keeps the item; the order of the source is kept. */
static int keep_odd_positions(const void *item, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    int64_t x = *(const int64_t *)item;
    return x % 2 ? (int)(x % 5) + 1 : 0;
}

TEST(filter_keeps_order_and_positive_answers)
{
    cancel_pool *pool = pool_new(3);
    size_t sizes[] = {1, 2, 3, 10, 1000, 100003};
    int64_t *in = iota(100003);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        void *out = NULL;
        size_t count = 0;
        ASSERT_OK(cancel_parallel_filter(pool, in, sizes[s], sizeof(int64_t),
                                         &out, &count, keep_odd_positions, NULL,
                                         CANCEL_NONE, NULL));
        ASSERT_EQ(count, (sizes[s] + 1) / 2);
        for (size_t k = 0; k < count; k++)
            ASSERT_EQ(((int64_t *)out)[k], 2 * (int64_t)k + 1);
        free(out);
    }
    free(in);
    cancel_pool_free(pool);
}
