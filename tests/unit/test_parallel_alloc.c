/* Allocation failures in the parallel loops and queries (SQLite's sweep):
 * for each function, fail its n-th allocation (and every one after it) for
 * n = 0, 1, 2, ... until a call no longer reaches the failing allocation.
 * Each call then either
 *   - returns -ENOMEM: its outputs say "nothing" (filter: *out == NULL,
 *     *count == 0; sort: the array holds the same items), and where the
 *     failing allocation comes before any element - for, for_each, map,
 *     reduce - no element ran; or
 *   - succeeds with fewer helpers (a helper that cannot be queued leaves
 *     its share to the others) and a right result;
 * and either way leaves nothing allocated once the pool has run whatever
 * was queued (cancel__alloc_live as before the call).
 */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_STEPS 64
#define N 5000

/* How many more allocations the armed hook lets through (up to
 * MAX_STEPS): after a call that succeeded with the hook armed at n, a
 * non-zero answer proves the call never reached allocation n. */
static long room_left(void)
{
    void *p[MAX_STEPS + 1];
    long n = 0;
    while (n <= MAX_STEPS && (p[n] = cancel__malloc(1)) != NULL)
        n++;
    for (long i = 0; i < n; i++)
        cancel__free(p[i]);
    return n;
}

/* Every worker of the pool runs a marker at once: everything queued before
 * has been run (and its item freed). */
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

static atomic_long elements;
static int64_t in[N], out[N];

static int for_body(int64_t i, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    out[i] = i;
    atomic_fetch_add(&elements, 1);
    return 0;
}

static int each_body(void *item, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    int64_t *x = item;
    out[x - in] = *x;
    atomic_fetch_add(&elements, 1);
    return 0;
}

static int map_fn(const void *a, void *b, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    *(int64_t *)b = *(const int64_t *)a;
    atomic_fetch_add(&elements, 1);
    return 0;
}

static int pred(const void *a, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    atomic_fetch_add(&elements, 1);
    return *(const int64_t *)a % 2 == 0;
}

static int fold(void *acc, const void *a, void *arg, cancel_token t)
{
    (void)arg;
    (void)t;
    *(int64_t *)acc += *(const int64_t *)a;
    atomic_fetch_add(&elements, 1);
    return 0;
}

static void combine(void *acc, const void *other, void *arg)
{
    (void)arg;
    *(int64_t *)acc += *(const int64_t *)other;
}

static int cmp(const void *a, const void *b, void *arg)
{
    (void)arg;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    atomic_fetch_add(&elements, 1);
    return (x > y) - (x < y);
}

enum kind { K_FOR, K_EACH, K_MAP, K_FILTER, K_REDUCE, K_SORT };

static int64_t sum_of_in(void)
{
    int64_t s = 0;
    for (int i = 0; i < N; i++)
        s += in[i];
    return s;
}

/* One call with the hook armed at step; checks the outcome; returns true
 * once the call made fewer than step + 1 allocations. */
static bool one_step(cancel_pool *pool, enum kind kind, long step,
                     cancel_token t, int degree, int *result)
{
    for (int i = 0; i < N; i++) {
        in[i] = kind == K_SORT ? (int64_t)((i * 7919) % N) : i;
        out[i] = -1;
    }
    atomic_store(&elements, 0);
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = degree;
    void *fout = NULL;
    size_t count = 0;
    int64_t zero = 0, sum = 0;
    long before = cancel__alloc_live();

    cancel__alloc_fail_after(step);
    int rc = 0;
    switch (kind) {
    case K_FOR:
        rc = cancel_parallel_for(pool, 0, N, for_body, NULL, t, &o);
        break;
    case K_EACH:
        rc = cancel_parallel_for_each(pool, in, N, sizeof(int64_t), each_body,
                                      NULL, t, &o);
        break;
    case K_MAP:
        rc = cancel_parallel_map(pool, in, N, sizeof(int64_t), out,
                                 sizeof(int64_t), map_fn, NULL, t, &o);
        break;
    case K_FILTER:
        fout = in; /* must become NULL on failure */
        count = 99;
        rc = cancel_parallel_filter(pool, in, N, sizeof(int64_t), &fout, &count,
                                    pred, NULL, t, &o);
        break;
    case K_REDUCE:
        rc =
            cancel_parallel_reduce(pool, in, N, sizeof(int64_t), &sum, &zero,
                                   sizeof(int64_t), fold, combine, NULL, t, &o);
        break;
    case K_SORT:
        rc = cancel_parallel_sort(pool, in, N, sizeof(int64_t), cmp, NULL, t,
                                  &o);
        break;
    }
    bool done = rc == 0 && room_left() > 0;
    cancel__alloc_fail_after(-1);
    *result = rc;

    if (rc == -ENOMEM) {
        ASSERT_EQ(o.nerrors, 0);
        switch (kind) {
        case K_FOR:
        case K_EACH:
        case K_MAP:
        case K_REDUCE:
            /* The allocations come before the first element. */
            ASSERT_EQ(atomic_load(&elements), 0);
            break;
        case K_FILTER:
            ASSERT_NULL(fout);
            ASSERT_EQ(count, 0);
            break;
        case K_SORT: {
            /* The same items, in some order. */
            static unsigned char seen[N];
            memset(seen, 0, sizeof(seen));
            for (int i = 0; i < N; i++) {
                ASSERT(in[i] >= 0 && in[i] < N);
                ASSERT_EQ(seen[in[i]], 0);
                seen[in[i]] = 1;
            }
            break;
        }
        }
    } else {
        ASSERT_OK(rc);
        ASSERT_EQ(o.nerrors, 0);
        switch (kind) {
        case K_FOR:
        case K_EACH:
        case K_MAP:
            for (int i = 0; i < N; i++)
                ASSERT_EQ(out[i], i);
            break;
        case K_FILTER:
            ASSERT_EQ(count, N / 2);
            for (size_t k = 0; k < count; k++)
                ASSERT_EQ(((int64_t *)fout)[k], 2 * (int64_t)k);
            break;
        case K_REDUCE:
            ASSERT_EQ(sum, sum_of_in());
            break;
        case K_SORT:
            for (int i = 0; i < N; i++)
                ASSERT_EQ(in[i], i);
            break;
        }
    }
    free(fout == in ? NULL : fout);
    pool_flush(pool); /* late helpers free their items */
    ASSERT_EQ(cancel__alloc_live(), before);
    return done;
}

static void sweep(enum kind kind, int degree)
{
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    long live = cancel__alloc_live();
    long step, enomem = 0;
    for (step = 0; step < MAX_STEPS; step++) {
        int rc;
        bool done = one_step(pool, kind, step, t, degree, &rc);
        if (step == 0)
            ASSERT_ERR(rc, -ENOMEM); /* the call's first allocation */
        enomem += rc == -ENOMEM;
        if (done)
            break;
    }
    ASSERT_LT(step, MAX_STEPS); /* the sweep reached a clean success */
    ASSERT_GE(enomem, 1);
    ASSERT_EQ(cancel__alloc_live(), live);
    cancel_source_free(src);
    cancel_pool_free(pool);
}

TEST(for_allocation_failures)
{
    sweep(K_FOR, 4);
}
TEST(for_each_allocation_failures)
{
    sweep(K_EACH, 4);
}
TEST(map_allocation_failures)
{
    sweep(K_MAP, 4);
}
TEST(filter_allocation_failures)
{
    sweep(K_FILTER, 4);
}
TEST(reduce_allocation_failures)
{
    sweep(K_REDUCE, 4);
}
TEST(sort_allocation_failures)
{
    sweep(K_SORT, 4);
}
TEST(for_allocation_failures_degree_1)
{
    sweep(K_FOR, 1);
}
TEST(filter_allocation_failures_default_degree)
{
    sweep(K_FILTER, 0);
}
TEST(sort_allocation_failures_default_degree)
{
    sweep(K_SORT, 0);
}

/* The first allocation failing gives -ENOMEM, and nothing ran. */
TEST(first_allocation_failing_is_enomem)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    for (int k = K_FOR; k <= K_SORT; k++) {
        cancel__alloc_fail_after(0);
        atomic_store(&elements, 0);
        int rc = 0;
        void *fout = in;
        size_t count = 1;
        int64_t zero = 0, sum = 0;
        switch (k) {
        case K_FOR:
            rc = cancel_parallel_for(pool, 0, N, for_body, NULL, CANCEL_NONE,
                                     NULL);
            break;
        case K_EACH:
            rc = cancel_parallel_for_each(pool, in, N, sizeof(int64_t),
                                          each_body, NULL, CANCEL_NONE, NULL);
            break;
        case K_MAP:
            rc = cancel_parallel_map(pool, in, N, sizeof(int64_t), out,
                                     sizeof(int64_t), map_fn, NULL, CANCEL_NONE,
                                     NULL);
            break;
        case K_FILTER:
            rc = cancel_parallel_filter(pool, in, N, sizeof(int64_t), &fout,
                                        &count, pred, NULL, CANCEL_NONE, NULL);
            ASSERT_NULL(fout);
            ASSERT_EQ(count, 0);
            break;
        case K_REDUCE:
            rc = cancel_parallel_reduce(pool, in, N, sizeof(int64_t), &sum,
                                        &zero, sizeof(int64_t), fold, combine,
                                        NULL, CANCEL_NONE, NULL);
            break;
        case K_SORT:
            rc = cancel_parallel_sort(pool, in, N, sizeof(int64_t), cmp, NULL,
                                      CANCEL_NONE, NULL);
            break;
        }
        cancel__alloc_fail_after(-1);
        ASSERT_ERR(rc, -ENOMEM);
        ASSERT_EQ(atomic_load(&elements), 0);
    }
    cancel_pool_free(pool);
}
