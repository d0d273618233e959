/* Parallel loops and queries with cancellation.
 *
 * One engine runs everything: `struct run` hands out [0, n) in chunks from
 * an atomic counter to the calling thread and to helpers queued on the
 * pool.  Before every element a worker checks `stop`, which the call's
 * token sets (through a registration) and which a failing element sets, so
 * no element starts after either, and the overrun is at most one element
 * per worker.  Chunks shrink as the range drains (guided scheduling), so
 * slow elements still spread over the workers.
 *
 * Lifetime: the run is on the heap with a reference per queued helper.  A
 * helper that starts after the caller closed the run (all elements were
 * handed out and the workers that took part are done) does nothing, so the
 * caller never waits for helpers that a busy pool has not started yet, and
 * no element function runs after the call returned.
 *
 * The queries are phases of the engine over fixed blocks: map and reduce
 * are one phase; filter counts per block, then copies at prefix offsets;
 * sort merge-sorts blocks, then merges pairs of runs, a phase per level.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct run;
/* Process elements [a, b) of phase work: 0 when all ran, STOPPED when it
 * saw `stop` and left some out, FAILED when an element failed (recorded by
 * element_failed).  Element functions' own values never come back here. */
typedef int chunk_fn(struct run *r, size_t a, size_t b);
#define STOPPED 1
#define FAILED 2

struct run {
    _Atomic size_t next;
    size_t n;
    size_t grain; /* largest chunk */
    chunk_fn *fn;
    void *ctx;
    cancel_token t;
    _Atomic bool stop;
    int workers;

    _Atomic uint32_t refs;
    _Atomic uint32_t lock;
    bool closed;
    int active;          /* helpers inside */
    cancel_event idle;   /* set when closed and active == 0 */
    bool own_canceled;   /* an element canceled with the call's token */
    bool skipped;        /* some element never ran */
    size_t nerrors;
    int *errors;
    size_t errors_cap;
};

static void run_release(struct run *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        cancel_event_destroy(&r->idle);
        cancel__free(r);
    }
}

/* An element returned err != 0: record it and stop the run.  -ECANCELED
 * after a check of the call's own canceled token is cooperative
 * cancellation, not an error. */
static int element_failed(struct run *r, int err)
{
    bool own = err == -ECANCELED && cancel_requested(r->t) &&
               cancel_token_equal(cancel_canceled_token(), r->t);
    cancel__spin_lock(&r->lock);
    if (own) {
        r->own_canceled = true;
    } else {
        if (r->nerrors < r->errors_cap)
            r->errors[r->nerrors] = err;
        r->nerrors++;
    }
    cancel__spin_unlock(&r->lock);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* a flag polled lock-free */
    atomic_store_explicit(&r->stop, true, memory_order_relaxed);
    CANCEL__ANNOTATE_ATOMIC_END();
    return FAILED;
}

/* A chunk's result; true if the worker goes on. */
static bool account(struct run *r, int res)
{
    if (res == STOPPED) {
        cancel__spin_lock(&r->lock);
        r->skipped = true;
        cancel__spin_unlock(&r->lock);
    }
    return res == 0;
}

static void work(struct run *r)
{
    for (;;) {
        if (atomic_load_explicit(&r->stop, memory_order_relaxed))
            return;
        size_t cur = atomic_load_explicit(&r->next, memory_order_relaxed);
        if (cur >= r->n)
            return;
        size_t c = (r->n - cur) / (4 * (size_t)r->workers);
        c = c < 1 ? 1 : c > r->grain ? r->grain : c;
        size_t a = atomic_fetch_add_explicit(&r->next, c, memory_order_relaxed);
        if (a >= r->n)
            return;
        size_t b = a + c < r->n ? a + c : r->n;
        if (!account(r, r->fn(r, a, b)))
            return;
    }
}

static void helper(void *arg)
{
    struct run *r = arg;
    cancel__spin_lock(&r->lock);
    bool late = r->closed;
    if (!late)
        r->active++;
    cancel__spin_unlock(&r->lock);
    if (!late) {
        work(r);
        cancel__spin_lock(&r->lock);
        bool last = --r->active == 0 && r->closed;
        cancel__spin_unlock(&r->lock);
        if (last)
            cancel_event_set(&r->idle);
    }
    run_release(r);
}

static void stop_cb(void *arg)
{
    struct run *r = arg;
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* a flag polled lock-free */
    atomic_store_explicit(&r->stop, true, memory_order_relaxed);
    CANCEL__ANNOTATE_ATOMIC_END();
}

/* Threads working: the caller plus helpers, at most one per pool worker. */
static int degree(cancel_pool *pool, const cancel_parallel_options *opts)
{
    int size = cancel_pool_size(pool);
    int d = opts != NULL && opts->max_degree > 0 ? opts->max_degree : size;
    if (d > size + 1)
        d = size + 1;
    return d < 1 ? 1 : d;
}

/* A run's memory, taken before any element runs, so that a call with
 * several phases cannot fail for lack of memory half-way. */
static struct run *run_alloc(void)
{
    return cancel__calloc(1, sizeof(struct run));
}

/* Run fn over [0, n) in parallel on r (consumed).  The elements check the
 * token through `stop`; a cancel also stops a run whose elements never look
 * at it. */
static int run_phase(struct run *r, cancel_pool *pool, size_t n,
                     size_t grain, chunk_fn *fn, void *ctx, cancel_token t,
                     cancel_parallel_options *opts)
{
    if (n == 0) {
        cancel__free(r);
        return 0;
    }
    if (cancel_requested(t)) {
        cancel__free(r);
        cancel__record(t);
        return -ECANCELED;
    }
    r->n = n;
    r->grain = grain;
    r->fn = fn;
    r->ctx = ctx;
    r->t = t;
    r->workers = degree(pool, opts);
    atomic_init(&r->refs, 1);
    cancel_event_init(&r->idle, false);
    if (opts != NULL) {
        r->errors = opts->errors;
        r->errors_cap = opts->errors == NULL ? 0 : opts->errors_cap;
    }

    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    cancel_register(t, &reg, stop_cb, r);
    for (int k = 1; k < r->workers && (size_t)k < n; k++) {
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
        if (cancel_pool_queue(pool, helper, r) < 0) {
            run_release(r); /* fewer helpers: the caller does more */
            break;
        }
    }
    work(r);

    cancel__spin_lock(&r->lock);
    r->closed = true;
    bool wait = r->active > 0;
    cancel__spin_unlock(&r->lock);
    if (wait)
        cancel_event_wait(&r->idle, CANCEL_NONE, CANCEL_INFINITE);
    cancel_unregister(&reg);

    /* Some element never ran if a chunk was cut short or never handed out;
     * only the token or a failure stops a run. */
    bool incomplete = r->skipped ||
                      atomic_load_explicit(&r->next, memory_order_relaxed) < n;
    bool canceled = r->own_canceled || (incomplete && cancel_requested(t));
    int res = 0;
    if (r->nerrors > 0) {
        if (canceled) {
            /* The call's own cancellation joins the composite. */
            if (r->nerrors < r->errors_cap)
                r->errors[r->nerrors] = -ECANCELED;
            r->nerrors++;
        }
        res = CANCEL_EAGGREGATE;
    } else if (canceled) {
        cancel__record(t);
        res = -ECANCELED;
    }
    if (opts != NULL)
        opts->nerrors += r->nerrors;
    run_release(r);
    return res;
}

/* One-phase calls: allocate and run. */
static int run_once(cancel_pool *pool, size_t n, size_t grain, chunk_fn *fn,
                    void *ctx, cancel_token t, cancel_parallel_options *opts)
{
    if (n == 0)
        return 0;
    struct run *r = run_alloc();
    if (r == NULL)
        return -ENOMEM;
    return run_phase(r, pool, n, grain, fn, ctx, t, opts);
}

static int check_opts(cancel_parallel_options *opts)
{
    if (opts != NULL && opts->max_degree < 0)
        return -EINVAL;
    if (opts != NULL)
        opts->nerrors = 0;
    return 0;
}

/* ---- loops -------------------------------------------------------------- */

struct loop {
    int64_t from;
    cancel_for_fn *body;
    cancel_each_fn *each;
    char *items;
    size_t size;
    void *arg;
};

/* The element check inside a chunk: the token or a failure elsewhere. */
static bool stopped(struct run *r)
{
    return atomic_load_explicit(&r->stop, memory_order_relaxed) ||
           cancel_requested(r->t);
}

static int loop_chunk(struct run *r, size_t a, size_t b)
{
    struct loop *l = r->ctx;
    for (size_t i = a; i < b; i++) {
        if (stopped(r))
            return STOPPED;
        int e = l->body != NULL
                    ? l->body(l->from + (int64_t)i, l->arg, r->t)
                    : l->each(l->items + i * l->size, l->arg, r->t);
        if (e != 0)
            return element_failed(r, e);
    }
    return 0;
}

int cancel_parallel_for(cancel_pool *pool, int64_t from, int64_t to,
                        cancel_for_fn *body, void *arg, cancel_token t,
                        cancel_parallel_options *opts)
{
    if (pool == NULL || body == NULL || from > to || check_opts(opts) < 0)
        return -EINVAL;
    if (from == to)
        return 0;
    struct loop l = {.from = from, .body = body, .arg = arg};
    return run_once(pool, (size_t)((uint64_t)to - (uint64_t)from), 4096,
                    loop_chunk, &l, t, opts);
}

int cancel_parallel_for_each(cancel_pool *pool, void *items, size_t n,
                             size_t size, cancel_each_fn *body, void *arg,
                             cancel_token t, cancel_parallel_options *opts)
{
    if (pool == NULL || body == NULL || (items == NULL && n > 0) ||
        size == 0 || check_opts(opts) < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    struct loop l = {.each = body, .items = items, .size = size, .arg = arg};
    return run_once(pool, n, 4096, loop_chunk, &l, t, opts);
}

/* ---- map, reduce -------------------------------------------------------- */

struct map {
    const char *in;
    char *out;
    size_t in_size, out_size;
    cancel_map_fn *fn;
    void *arg;
};

static int map_chunk(struct run *r, size_t a, size_t b)
{
    struct map *m = r->ctx;
    for (size_t i = a; i < b; i++) {
        if (stopped(r))
            return STOPPED;
        int e = m->fn(m->in + i * m->in_size, m->out + i * m->out_size,
                      m->arg, r->t);
        if (e != 0)
            return element_failed(r, e);
    }
    return 0;
}

int cancel_parallel_map(cancel_pool *pool, const void *in, size_t n,
                        size_t in_size, void *out, size_t out_size,
                        cancel_map_fn *fn, void *arg, cancel_token t,
                        cancel_parallel_options *opts)
{
    if (pool == NULL || fn == NULL || in_size == 0 || out_size == 0 ||
        ((in == NULL || out == NULL) && n > 0) || check_opts(opts) < 0)
        return -EINVAL;
    struct map m = {in, out, in_size, out_size, fn, arg};
    return run_once(pool, n, 4096, map_chunk, &m, t, opts);
}

/* Blocks: the unit of work of reduce, filter and sort. */
static size_t nblocks(cancel_pool *pool, size_t n,
                      const cancel_parallel_options *opts)
{
    size_t b = (size_t)degree(pool, opts) * 8;
    if (b > n)
        b = n;
    return b == 0 ? 1 : b;
}

/* n * k / blocks without overflow (k <= blocks). */
static size_t block_start(size_t n, size_t blocks, size_t k)
{
    return n / blocks * k + n % blocks * k / blocks;
}

struct reduce {
    const char *in;
    size_t n, size, blocks, acc_size;
    char *accs;
    cancel_fold_fn *fold;
    void *arg;
};

static int reduce_chunk(struct run *r, size_t a, size_t b)
{
    struct reduce *q = r->ctx;
    for (size_t k = a; k < b; k++) {
        char *acc = q->accs + k * q->acc_size;
        size_t lo = block_start(q->n, q->blocks, k);
        size_t hi = block_start(q->n, q->blocks, k + 1);
        for (size_t i = lo; i < hi; i++) {
            if (stopped(r))
                return STOPPED;
            int e = q->fold(acc, q->in + i * q->size, q->arg, r->t);
            if (e != 0)
                return element_failed(r, e);
        }
    }
    return 0;
}

int cancel_parallel_reduce(cancel_pool *pool, const void *in, size_t n,
                           size_t size, void *result, const void *identity,
                           size_t acc_size, cancel_fold_fn *fold,
                           cancel_combine_fn *combine, void *arg,
                           cancel_token t, cancel_parallel_options *opts)
{
    if (pool == NULL || fold == NULL || combine == NULL || result == NULL ||
        identity == NULL || acc_size == 0 || size == 0 ||
        (in == NULL && n > 0) || check_opts(opts) < 0)
        return -EINVAL;
    size_t blocks = nblocks(pool, n, opts);
    char *accs = cancel__malloc(blocks * acc_size);
    if (accs == NULL)
        return -ENOMEM;
    for (size_t k = 0; k < blocks; k++)
        memcpy(accs + k * acc_size, identity, acc_size);
    struct reduce q = {in, n, size, blocks, acc_size, accs, fold, arg};
    int err = n == 0 ? 0 : run_once(pool, blocks, 1, reduce_chunk, &q, t, opts);
    if (err == 0) {
        memcpy(result, accs, acc_size);
        for (size_t k = 1; k < blocks; k++)
            combine(result, accs + k * acc_size, arg);
    }
    cancel__free(accs);
    return err;
}

/* ---- filter ------------------------------------------------------------- */

struct filter {
    const char *in;
    size_t n, size, blocks;
    unsigned char *keep;
    size_t *counts; /* per block; then prefix offsets */
    char *out;
    cancel_pred_fn *pred;
    void *arg;
};

static int filter_count(struct run *r, size_t a, size_t b)
{
    struct filter *f = r->ctx;
    for (size_t k = a; k < b; k++) {
        size_t lo = block_start(f->n, f->blocks, k);
        size_t hi = block_start(f->n, f->blocks, k + 1);
        size_t c = 0;
        for (size_t i = lo; i < hi; i++) {
            if (stopped(r))
                return STOPPED;
            int e = f->pred(f->in + i * f->size, f->arg, r->t);
            if (e < 0)
                return element_failed(r, e);
            f->keep[i] = e > 0;
            c += e > 0;
        }
        f->counts[k] = c;
    }
    return 0;
}

static int filter_copy(struct run *r, size_t a, size_t b)
{
    struct filter *f = r->ctx;
    for (size_t k = a; k < b; k++) {
        size_t lo = block_start(f->n, f->blocks, k);
        size_t hi = block_start(f->n, f->blocks, k + 1);
        char *dst = f->out + f->counts[k] * f->size;
        for (size_t i = lo; i < hi; i++) {
            if (f->keep[i]) {
                memcpy(dst, f->in + i * f->size, f->size);
                dst += f->size;
            }
        }
    }
    return 0;
}

int cancel_parallel_filter(cancel_pool *pool, const void *in, size_t n,
                           size_t size, void **out, size_t *count,
                           cancel_pred_fn *pred, void *arg, cancel_token t,
                           cancel_parallel_options *opts)
{
    if (out != NULL)
        *out = NULL;
    if (count != NULL)
        *count = 0;
    if (pool == NULL || pred == NULL || out == NULL || count == NULL ||
        size == 0 || (in == NULL && n > 0) || check_opts(opts) < 0)
        return -EINVAL;
    if (n == 0) {
        /* An empty result; the caller frees it. */
        *out = malloc(1);
        return *out == NULL ? -ENOMEM : 0;
    }
    size_t blocks = nblocks(pool, n, opts);
    struct filter f = {.in = in, .n = n, .size = size, .blocks = blocks,
                       .pred = pred, .arg = arg};
    /* Everything is allocated before the first predicate runs, the result
     * at its largest (it shrinks below), so -ENOMEM means nothing ran. */
    struct run *count_run = run_alloc(), *copy_run = run_alloc();
    f.keep = cancel__malloc(n);
    f.counts = cancel__calloc(blocks, sizeof(size_t));
    f.out = n > SIZE_MAX / size ? NULL : malloc(n * size);
    if (count_run == NULL || copy_run == NULL || f.keep == NULL ||
        f.counts == NULL || f.out == NULL) {
        cancel__free(count_run);
        cancel__free(copy_run);
        cancel__free(f.keep);
        cancel__free(f.counts);
        free(f.out);
        return -ENOMEM;
    }
    int err = run_phase(count_run, pool, blocks, 1, filter_count, &f, t, opts);
    size_t total = 0;
    if (err == 0) {
        for (size_t k = 0; k < blocks; k++) {
            size_t c = f.counts[k];
            f.counts[k] = total;
            total += c;
        }
        err = run_phase(copy_run, pool, blocks, 1, filter_copy, &f,
                        CANCEL_NONE, opts);
    } else {
        cancel__free(copy_run);
    }
    if (err == 0 && cancel_requested(t)) {
        /* Canceled during the copy: all elements were seen, but report the
         * cancellation rather than a result the caller stopped wanting. */
        cancel__record(t);
        err = -ECANCELED;
    }
    if (err == 0) {
        /* Give back what the result does not use. */
        char *fit = realloc(f.out, total ? total * size : 1);
        if (fit != NULL)
            f.out = fit;
    }
    if (err == 0) {
        *out = f.out;
        *count = total;
    } else {
        free(f.out);
    }
    cancel__free(f.keep);
    cancel__free(f.counts);
    return err;
}

/* ---- sort --------------------------------------------------------------- */

struct sort {
    char *base, *tmp;
    size_t n, size, blocks;
    size_t width; /* merge phase: blocks per run being merged */
    cancel_cmp_fn *cmp;
    void *arg;
};

#define SORT_CHECK 4096 /* elements merged between two looks at the token */

/* Merge [lo, mid) and [mid, hi) of src into dst; false if stopped. */
static bool merge(struct run *r, struct sort *s, const char *src, char *dst,
                  size_t lo, size_t mid, size_t hi)
{
    size_t i = lo, j = mid, k = lo, z = s->size;
    while (i < mid && j < hi) {
        if (((k - lo) % SORT_CHECK) == 0 && stopped(r))
            return false;
        if (s->cmp(src + j * z, src + i * z, s->arg) < 0)
            memcpy(dst + k++ * z, src + j++ * z, z);
        else
            memcpy(dst + k++ * z, src + i++ * z, z);
    }
    memcpy(dst + k * z, src + i * z, (mid - i) * z);
    k += mid - i;
    memcpy(dst + k * z, src + j * z, (hi - j) * z);
    return true;
}

/* Sort one block bottom-up, leaving the result in base. */
static int sort_block(struct run *r, size_t a, size_t b)
{
    struct sort *s = r->ctx;
    for (size_t k = a; k < b; k++) {
        size_t lo = block_start(s->n, s->blocks, k);
        size_t hi = block_start(s->n, s->blocks, k + 1);
        char *src = s->base, *dst = s->tmp;
        for (size_t w = 1; w < hi - lo; w *= 2) {
            for (size_t x = lo; x < hi; x += 2 * w) {
                size_t mid = x + w < hi ? x + w : hi;
                size_t end = x + 2 * w < hi ? x + 2 * w : hi;
                if (!merge(r, s, src, dst, x, mid, end)) {
                    /* src holds the whole block (dst only part of it):
                     * leave the items in base, in some order. */
                    if (src != s->base)
                        memcpy(s->base + lo * s->size, src + lo * s->size,
                               (hi - lo) * s->size);
                    return STOPPED;
                }
            }
            char *swap = src;
            src = dst;
            dst = swap;
        }
        if (src != s->base)
            memcpy(s->base + lo * s->size, src + lo * s->size,
                   (hi - lo) * s->size);
    }
    return 0;
}

/* Merge pairs of runs of `width` blocks from base into tmp. */
static int sort_merge(struct run *r, size_t a, size_t b)
{
    struct sort *s = r->ctx;
    for (size_t p = a; p < b; p++) {
        size_t first = p * 2 * s->width;
        size_t lo = block_start(s->n, s->blocks, first);
        size_t mid = block_start(
            s->n, s->blocks,
            first + s->width < s->blocks ? first + s->width : s->blocks);
        size_t hi = block_start(s->n, s->blocks,
                                first + 2 * s->width < s->blocks
                                    ? first + 2 * s->width
                                    : s->blocks);
        if (!merge(r, s, s->base, s->tmp, lo, mid, hi))
            return STOPPED;
    }
    return 0;
}

int cancel_parallel_sort(cancel_pool *pool, void *base, size_t n, size_t size,
                         cancel_cmp_fn *cmp, void *arg, cancel_token t,
                         cancel_parallel_options *opts)
{
    if (pool == NULL || cmp == NULL || size == 0 || (base == NULL && n > 0) ||
        check_opts(opts) < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / size)
        return -ENOMEM;
    if (cancel_requested(t)) {
        cancel__record(t);
        return -ECANCELED;
    }
    if (n < 2)
        return 0;
    struct sort s = {.base = base, .n = n, .size = size, .cmp = cmp,
                     .arg = arg, .blocks = nblocks(pool, n, opts)};
    /* One run per phase - the block sorts, then each merge level - and the
     * buffer, all before the first comparison: -ENOMEM means none ran. */
    enum { MAX_PHASES = 8 * sizeof(size_t) + 1 };
    struct run *runs[MAX_PHASES] = {0};
    size_t phases = 1;
    for (size_t w = 1; w < s.blocks; w *= 2)
        phases++;
    s.tmp = cancel__malloc(n * size);
    bool ok = s.tmp != NULL;
    for (size_t i = 0; ok && i < phases; i++)
        ok = (runs[i] = run_alloc()) != NULL;
    if (!ok) {
        for (size_t i = 0; i < phases; i++)
            cancel__free(runs[i]);
        cancel__free(s.tmp);
        return -ENOMEM;
    }
    size_t phase = 0;
    int err = run_phase(runs[phase++], pool, s.blocks, 1, sort_block, &s, t,
                        opts);
    for (s.width = 1; err == 0 && s.width < s.blocks; s.width *= 2) {
        size_t pairs = (s.blocks + 2 * s.width - 1) / (2 * s.width);
        err = run_phase(runs[phase++], pool, pairs, 1, sort_merge, &s, t,
                        opts);
        if (err == 0) {
            char *swap = s.base;
            s.base = s.tmp;
            s.tmp = swap;
        }
    }
    while (phase < phases)
        cancel__free(runs[phase++]); /* phases a failure left unused */
    if (err == 0 && cancel_requested(t)) {
        cancel__record(t);
        err = -ECANCELED;
    }
    if (s.base != base) {
        /* The sorted (or, if stopped, permuted) items ended in tmp. */
        memcpy(base, s.base, n * size);
        s.tmp = s.base;
    }
    cancel__free(s.tmp);
    return err;
}
