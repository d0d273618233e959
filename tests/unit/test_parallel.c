/* Unit tests of the parallel loops and queries (task.h, "Parallel loops and
 * queries"): what each call returns, which errors it collects, and what it
 * promises about the element functions once it has returned.
 *
 * One harness drives cancel_parallel_for, _for_each, _map, _filter and
 * _reduce alike (sort has its own tests in test_parallel_query.c): the
 * call runs on a thread of its own, so that the test thread can cancel
 * while the elements run, and every element goes through element(), which
 * counts the elements started, running and finished, marks the element's
 * effect (a plain write, read by the test after the call returned), and
 * then does what the test asks (`behave`).
 *
 * Orders are forced with gates, never with sleeps: the first `hold`
 * elements started (one per worker: a worker blocked in one element cannot
 * take another) wait on a gate, or poll the token until it is canceled, so
 * the test knows that exactly `hold` elements are running when it cancels.
 * After a call returned, pool_flush() occupies every worker of the pool
 * with a marker: every helper that was queued before has then been taken
 * and has finished, so a count of started elements that did not move after
 * it proves that no element ran after the call returned.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* ---- the pool: flush ----------------------------------------------------- */

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

/* Return once every item queued on pool before the call has finished: one
 * marker per worker, each held until all of them run (the queue is FIFO). */
static void pool_flush(cancel_pool *pool)
{
    struct flush f = {.n = cancel_pool_size(pool)};
    ASSERT_GT(f.n, 0);
    harness_gate_init(&f.all_in);
    harness_gate_init(&f.all_out);
    for (int k = 0; k < f.n; k++)
        ASSERT_OK(cancel_pool_queue(pool, flush_marker, &f));
    harness_gate_wait(&f.all_out);
    harness_gate_destroy(&f.all_in);
    harness_gate_destroy(&f.all_out);
}

static cancel_pool *pool_new(int n)
{
    cancel_pool *p = cancel_pool_new(n);
    ASSERT_NOT_NULL(p);
    ASSERT_EQ(cancel_pool_size(p), n);
    return p;
}

/* ---- one call, any kind ------------------------------------------------- */

enum kind { K_FOR, K_EACH, K_MAP, K_FILTER, K_REDUCE };

static const char *kind_name[] = {"for", "for_each", "map", "filter", "reduce"};

#define FROM 1000 /* parallel_for runs [FROM, FROM + n) */

struct ctx;
typedef int behave_fn(struct ctx *c, size_t i, int ticket, cancel_token t);

struct ctx {
    enum kind kind;
    cancel_pool *pool;
    size_t n;
    int64_t *items; /* items[i] == i */
    int64_t *out;   /* map's output */
    int *effect;    /* effect[i]: the element ran to its end (plain) */
    cancel_source *src;
    cancel_token t;
    cancel_source *foreign; /* another source, for foreign cancellations */
    cancel_parallel_options opts;
    cancel_parallel_options *popts; /* &opts, or NULL */
    int errs[16];
    behave_fn *behave;
    int hold; /* the first `hold` elements hold their worker */
    harness_gate gate;

    atomic_int started, running, finished, started_after;
    atomic_bool after;          /* set right after the cancel returned */
    atomic_bool foreign_thread; /* an element ran off the calling thread */

    /* the call, filled on its thread */
    pthread_t th, caller;
    int result;
    cancel_token recorded;
    void *fout;
    size_t fcount;
    int64_t sum;
};

static int element(struct ctx *c, size_t i, cancel_token t)
{
    ASSERT(cancel_token_equal(t, c->t));
    ASSERT_LT(i, c->n);
    int ticket = atomic_fetch_add(&c->started, 1);
    if (atomic_load(&c->after))
        atomic_fetch_add(&c->started_after, 1);
    if (!pthread_equal(pthread_self(), c->caller))
        atomic_store(&c->foreign_thread, true);
    atomic_fetch_add(&c->running, 1);
    int e = c->behave != NULL ? c->behave(c, i, ticket, t) : 0;
    c->effect[i]++; /* the element's work: read by the test afterwards */
    atomic_fetch_sub(&c->running, 1);
    atomic_fetch_add(&c->finished, 1);
    return e;
}

static int for_body(int64_t i, void *arg, cancel_token t)
{
    struct ctx *c = arg;
    ASSERT_GE(i, FROM);
    return element(c, (size_t)(i - FROM), t);
}

static int each_body(void *item, void *arg, cancel_token t)
{
    struct ctx *c = arg;
    return element(c, (size_t)((int64_t *)item - c->items), t);
}

static int map_fn(const void *in, void *out, void *arg, cancel_token t)
{
    struct ctx *c = arg;
    const int64_t *x = in;
    int e = element(c, (size_t)(x - c->items), t);
    if (e == 0)
        *(int64_t *)out = *x * 2;
    return e;
}

static int pred_fn(const void *item, void *arg, cancel_token t)
{
    struct ctx *c = arg;
    const int64_t *x = item;
    int e = element(c, (size_t)(x - c->items), t);
    return e != 0 ? e : *x % 3 == 0;
}

static int fold_fn(void *acc, const void *item, void *arg, cancel_token t)
{
    struct ctx *c = arg;
    const int64_t *x = item;
    int e = element(c, (size_t)(x - c->items), t);
    if (e == 0)
        *(int64_t *)acc += *x;
    return e;
}

static void combine_fn(void *acc, const void *other, void *arg)
{
    (void)arg;
    *(int64_t *)acc += *(const int64_t *)other;
}

static void ctx_init(struct ctx *c, enum kind kind, cancel_pool *pool, size_t n,
                     int max_degree)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->pool = pool;
    c->n = n;
    c->items = malloc((n ? n : 1) * sizeof(int64_t));
    c->out = calloc(n ? n : 1, sizeof(int64_t));
    c->effect = calloc(n ? n : 1, sizeof(int));
    ASSERT(c->items && c->out && c->effect);
    for (size_t i = 0; i < n; i++)
        c->items[i] = (int64_t)i;
    c->src = cancel_source_new();
    c->foreign = cancel_source_new();
    ASSERT(c->src && c->foreign);
    c->t = cancel_source_token(c->src);
    c->opts = (cancel_parallel_options)CANCEL_PARALLEL_OPTIONS_INIT;
    c->opts.max_degree = max_degree;
    c->opts.errors = c->errs;
    c->opts.errors_cap = sizeof(c->errs) / sizeof(c->errs[0]);
    c->opts.nerrors = 12345; /* the call resets it */
    c->popts = &c->opts;
    harness_gate_init(&c->gate);
}

static void ctx_free(struct ctx *c)
{
    free(c->fout);
    free(c->items);
    free(c->out);
    free(c->effect);
    harness_gate_destroy(&c->gate);
    cancel_source_free(c->src);
    cancel_source_free(c->foreign);
}

/* Run the call on the calling thread. */
static void call_run(struct ctx *c)
{
    c->caller = pthread_self();
    /* Something else is recorded first, so that a recorded token after the
     * call is the call's doing. */
    cancel_throw(cancel_source_token(c->foreign));
    cancel_token t = c->t;
    switch (c->kind) {
    case K_FOR:
        c->result = cancel_parallel_for(c->pool, FROM, FROM + (int64_t)c->n,
                                        for_body, c, t, c->popts);
        break;
    case K_EACH:
        c->result =
            cancel_parallel_for_each(c->pool, c->items, c->n, sizeof(int64_t),
                                     each_body, c, t, c->popts);
        break;
    case K_MAP:
        c->result = cancel_parallel_map(
            c->pool, c->items, c->n, sizeof(int64_t), c->out, sizeof(int64_t),
            map_fn, c, t, c->popts);
        break;
    case K_FILTER:
        c->result = cancel_parallel_filter(c->pool, c->items, c->n,
                                           sizeof(int64_t), &c->fout,
                                           &c->fcount, pred_fn, c, t, c->popts);
        break;
    case K_REDUCE: {
        int64_t zero = 0;
        c->sum = -1;
        c->result = cancel_parallel_reduce(
            c->pool, c->items, c->n, sizeof(int64_t), &c->sum, &zero,
            sizeof(int64_t), fold_fn, combine_fn, c, t, c->popts);
        break;
    }
    }
    c->recorded = cancel_canceled_token();
}

static void *call_main(void *arg)
{
    call_run(arg);
    return NULL;
}

static void call_start(struct ctx *c)
{
    ASSERT_EQ(pthread_create(&c->th, NULL, call_main, c), 0);
}

static void call_join(struct ctx *c)
{
    ASSERT_EQ(pthread_join(c->th, NULL), 0);
}

/* Wait (yielding) until n elements have started. */
static void await_started(struct ctx *c, int n)
{
    while (atomic_load(&c->started) < n)
        sched_yield();
}

static void cancel_now(struct ctx *c)
{
    ASSERT_OK(cancel_source_cancel(c->src));
    atomic_store(&c->after, true);
}

/* After the call returned: nothing runs, nothing will, and what ran is
 * visible. */
static void check_quiet(struct ctx *c)
{
    ASSERT_EQ(atomic_load(&c->running), 0);
    int started = atomic_load(&c->started);
    ASSERT_EQ(atomic_load(&c->finished), started);
    pool_flush(c->pool);
    for (int k = 0; k < 200; k++)
        sched_yield();
    ASSERT_EQ(atomic_load(&c->started), started);
    ASSERT_EQ(atomic_load(&c->running), 0);
    long marks = 0;
    for (size_t i = 0; i < c->n; i++) {
        ASSERT_LE(c->effect[i], 1); /* no element ran twice */
        marks += c->effect[i];
    }
    ASSERT_EQ(marks, started);
}

/* The call completed: every element once, and the outputs are right. */
static void check_complete(struct ctx *c)
{
    ASSERT_OK(c->result);
    ASSERT_EQ(c->opts.nerrors, 0);
    ASSERT_EQ(atomic_load(&c->started), (int)c->n);
    for (size_t i = 0; i < c->n; i++)
        ASSERT_EQ(c->effect[i], 1);
    int64_t sum = 0;
    switch (c->kind) {
    case K_MAP:
        for (size_t i = 0; i < c->n; i++)
            ASSERT_EQ(c->out[i], 2 * (int64_t)i);
        break;
    case K_FILTER:
        ASSERT_EQ(c->fcount, (c->n + 2) / 3);
        ASSERT_NOT_NULL(c->fout);
        for (size_t k = 0; k < c->fcount; k++)
            ASSERT_EQ(((int64_t *)c->fout)[k], 3 * (int64_t)k);
        break;
    case K_REDUCE:
        for (size_t i = 0; i < c->n; i++)
            sum += (int64_t)i;
        ASSERT_EQ(c->sum, sum);
        break;
    default:
        break;
    }
}

/* A canceled or failed call hands back no partial result. */
static void check_no_result(struct ctx *c)
{
    if (c->kind == K_FILTER) {
        ASSERT_NULL(c->fout);
        ASSERT_EQ(c->fcount, 0);
    }
}

/* The call's own cancellation: one -ECANCELED, nothing in the error list,
 * the token recorded on the calling thread. */
static void check_own_canceled(struct ctx *c)
{
    ASSERT_ERR(c->result, -ECANCELED);
    ASSERT_EQ(c->opts.nerrors, 0);
    ASSERT(cancel_token_equal(c->recorded, c->t));
    check_no_result(c);
}

/* The error list holds exactly the codes of want[0..n) in some order. */
static void check_errors(struct ctx *c, const int *want, size_t n)
{
    ASSERT_ERR(c->result, CANCEL_EAGGREGATE);
    ASSERT_EQ(c->opts.nerrors, n);
    ASSERT_LE(n, c->opts.errors_cap);
    bool used[16] = {false};
    for (size_t k = 0; k < n; k++) {
        size_t j = 0;
        while (j < n && (used[j] || c->errs[j] != want[k]))
            j++;
        if (j == n)
            harness_fail(__FILE__, __LINE__, "%s: error %s missing",
                         kind_name[c->kind], cancel_err_name(want[k]));
        used[j] = true;
    }
    check_no_result(c);
}

/* ---- behaviours ---------------------------------------------------------- */

/* The first `hold` elements poll the token until it is canceled and
 * "throw" with it; the others check it once. */
static int poll_until_canceled(struct ctx *c, size_t i, int ticket,
                               cancel_token t)
{
    (void)i;
    if (ticket >= c->hold)
        return cancel_check(t);
    for (;;) {
        int e = cancel_check(t);
        if (e != 0)
            return e;
        sched_yield();
    }
}

/* The first `hold` elements wait on the gate, then return 0; none looks at
 * the token. */
static int hold_on_gate(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket < c->hold)
        harness_gate_wait(&c->gate);
    return 0;
}

/* ---- the call's own token: exactly -ECANCELED ----------------------------
 *
 * Four workers (the caller and three pool threads); the first four
 * elements hold their workers until the cancel.  Cooperative: they poll
 * cancel_check and return its -ECANCELED.  Ignoring: they never look at the
 * token; the call stops handing out elements by itself.  Either way exactly
 * four elements ran, each to its end, and none started after the cancel. */

static void own_cancel(enum kind kind, bool cooperative)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, kind, pool, 100000, 4);
    c.hold = 4;
    c.behave = cooperative ? poll_until_canceled : hold_on_gate;
    call_start(&c);
    await_started(&c, 4);
    cancel_now(&c);
    if (!cooperative)
        harness_gate_open(&c.gate);
    call_join(&c);

    check_own_canceled(&c);
    ASSERT_EQ(atomic_load(&c.started), 4);
    ASSERT_EQ(atomic_load(&c.started_after), 0);
    check_quiet(&c); /* the four finished: their effects are visible */
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_own_token_cooperative)
{
    own_cancel(K_FOR, true);
}
TEST(for_own_token_ignored)
{
    own_cancel(K_FOR, false);
}
TEST(for_each_own_token_cooperative)
{
    own_cancel(K_EACH, true);
}
TEST(for_each_own_token_ignored)
{
    own_cancel(K_EACH, false);
}
TEST(map_own_token_cooperative)
{
    own_cancel(K_MAP, true);
}
TEST(map_own_token_ignored)
{
    own_cancel(K_MAP, false);
}
TEST(filter_own_token_cooperative)
{
    own_cancel(K_FILTER, true);
}
TEST(filter_own_token_ignored)
{
    own_cancel(K_FILTER, false);
}
TEST(reduce_own_token_cooperative)
{
    own_cancel(K_REDUCE, true);
}
TEST(reduce_own_token_ignored)
{
    own_cancel(K_REDUCE, false);
}

/* cancel_throw(t) while t is canceled is the call's own cancellation too. */
static int throw_own_when_canceled(struct ctx *c, size_t i, int ticket,
                                   cancel_token t)
{
    (void)i;
    if (ticket == 0) {
        ASSERT_OK(cancel_source_cancel(c->src));
        return cancel_throw(t);
    }
    return 0;
}

TEST(for_own_token_cancel_throw_from_element)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 100000, 4);
    c.behave = throw_own_when_canceled;
    call_run(&c);
    check_own_canceled(&c);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* Canceled before the call: -ECANCELED, and no element runs at all. */
static void pre_canceled(enum kind kind)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, kind, pool, 1000, 0);
    ASSERT_OK(cancel_source_cancel(c.src));
    call_run(&c);
    check_own_canceled(&c);
    ASSERT_EQ(atomic_load(&c.started), 0);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_pre_canceled)
{
    pre_canceled(K_FOR);
}
TEST(for_each_pre_canceled)
{
    pre_canceled(K_EACH);
}
TEST(map_pre_canceled)
{
    pre_canceled(K_MAP);
}
TEST(filter_pre_canceled)
{
    pre_canceled(K_FILTER);
}
TEST(reduce_pre_canceled)
{
    pre_canceled(K_REDUCE);
}

/* Not canceled: every element once, right outputs; with and without
 * options, several degrees. */
static void completes(enum kind kind)
{
    cancel_pool *pool = pool_new(3);
    size_t sizes[] = {1, 2, 3, 7, 1000, 100003};
    int degrees[] = {0, 1, 2, 4, 16};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (size_t d = 0; d < sizeof(degrees) / sizeof(degrees[0]); d++) {
            struct ctx c;
            ctx_init(&c, kind, pool, sizes[s], degrees[d]);
            if (d == 0)
                c.popts = NULL;
            call_run(&c);
            if (d == 0)
                c.opts.nerrors = 0;
            check_complete(&c);
            check_quiet(&c);
            ctx_free(&c);
        }
    }
    cancel_pool_free(pool);
}

TEST(for_completes)
{
    completes(K_FOR);
}
TEST(for_each_completes)
{
    completes(K_EACH);
}
TEST(map_completes)
{
    completes(K_MAP);
}
TEST(filter_completes)
{
    completes(K_FILTER);
}
TEST(reduce_completes)
{
    completes(K_REDUCE);
}

/* ---- failures: CANCEL_EAGGREGATE with every error (F9, F10) -------------- */

/* The first element "throws" cancellation with a token that is not the
 * call's (canceled, or not): a failure, not cooperative cancellation. */
static int throw_foreign(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket == 0)
        return cancel_check(cancel_source_token(c->foreign));
    return 0;
}

static int throw_foreign_uncanceled(struct ctx *c, size_t i, int ticket,
                                    cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket == 0)
        return cancel_throw(cancel_source_token(c->foreign));
    return 0;
}

/* -ECANCELED with the call's own token while it is not canceled: .NET's
 * rule, a failure too. */
static int throw_own_uncanceled(struct ctx *c, size_t i, int ticket,
                                cancel_token t)
{
    (void)c;
    (void)i;
    if (ticket == 0)
        return cancel_throw(t);
    return 0;
}

static int fail_eio(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)c;
    (void)i;
    (void)t;
    return ticket == 0 ? -EIO : 0;
}

static void one_failure(enum kind kind, behave_fn *behave, int want)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, kind, pool, 100000, 4);
    ASSERT_OK(cancel_source_cancel(c.foreign));
    c.behave = behave;
    call_run(&c);
    check_errors(&c, &want, 1);
    ASSERT_FALSE(cancel_requested(c.t));
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_foreign_token_is_a_failure)
{
    one_failure(K_FOR, throw_foreign, -ECANCELED);
}
TEST(for_each_foreign_token_is_a_failure)
{
    one_failure(K_EACH, throw_foreign, -ECANCELED);
}
TEST(map_foreign_token_is_a_failure)
{
    one_failure(K_MAP, throw_foreign, -ECANCELED);
}
TEST(filter_foreign_token_is_a_failure)
{
    one_failure(K_FILTER, throw_foreign, -ECANCELED);
}
TEST(reduce_foreign_token_is_a_failure)
{
    one_failure(K_REDUCE, throw_foreign, -ECANCELED);
}
TEST(for_foreign_token_not_canceled_is_a_failure)
{
    one_failure(K_FOR, throw_foreign_uncanceled, -ECANCELED);
}
TEST(for_own_token_not_canceled_is_a_failure)
{
    one_failure(K_FOR, throw_own_uncanceled, -ECANCELED);
}
TEST(map_own_token_not_canceled_is_a_failure)
{
    one_failure(K_MAP, throw_own_uncanceled, -ECANCELED);
}
TEST(for_other_error)
{
    one_failure(K_FOR, fail_eio, -EIO);
}
TEST(for_each_other_error)
{
    one_failure(K_EACH, fail_eio, -EIO);
}
TEST(map_other_error)
{
    one_failure(K_MAP, fail_eio, -EIO);
}
TEST(filter_other_error)
{
    one_failure(K_FILTER, fail_eio, -EIO);
}
TEST(reduce_other_error)
{
    one_failure(K_REDUCE, fail_eio, -EIO);
}

/* F9: the call's own token fires while another element fails.  Two
 * workers, both elements held until the cancel; then one returns -EIO and
 * the other the cooperative -ECANCELED: a composite of both. */
static int both_cooperative(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)c;
    (void)i;
    if (ticket >= 2)
        return cancel_check(t);
    while (!cancel_requested(t))
        sched_yield();
    return ticket == 0 ? -EIO : cancel_check(t);
}

/* The same when the other elements ignore the token: the call stopped
 * handing them out because of its token, so -ECANCELED joins the list. */
static int both_ignoring(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket >= 2)
        return 0;
    harness_gate_wait(&c->gate);
    return ticket == 0 ? -EIO : 0;
}

static void own_cancel_and_error(enum kind kind, bool cooperative)
{
    cancel_pool *pool = pool_new(1);
    struct ctx c;
    ctx_init(&c, kind, pool, 100000, 2);
    c.hold = 2;
    c.behave = cooperative ? both_cooperative : both_ignoring;
    call_start(&c);
    await_started(&c, 2);
    cancel_now(&c);
    harness_gate_open(&c.gate);
    call_join(&c);
    int want[] = {-EIO, -ECANCELED};
    check_errors(&c, want, 2);
    ASSERT_EQ(atomic_load(&c.started), 2);
    ASSERT_EQ(atomic_load(&c.started_after), 0);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_own_token_and_error_cooperative)
{
    own_cancel_and_error(K_FOR, true);
}
TEST(for_own_token_and_error_ignoring)
{
    own_cancel_and_error(K_FOR, false);
}
TEST(for_each_own_token_and_error)
{
    own_cancel_and_error(K_EACH, true);
}
TEST(map_own_token_and_error_cooperative)
{
    own_cancel_and_error(K_MAP, true);
}
TEST(map_own_token_and_error_ignoring)
{
    own_cancel_and_error(K_MAP, false);
}
TEST(filter_own_token_and_error_cooperative)
{
    own_cancel_and_error(K_FILTER, true);
}
TEST(filter_own_token_and_error_ignoring)
{
    own_cancel_and_error(K_FILTER, false);
}
TEST(reduce_own_token_and_error)
{
    own_cancel_and_error(K_REDUCE, true);
}

/* F10 with both tokens fired: an element canceled by a foreign token while
 * the call's own token fired too - the foreign cancellation stays a failure
 * and the call's own cancellation joins it. */
static int foreign_after_own(struct ctx *c, size_t i, int ticket,
                             cancel_token t)
{
    (void)i;
    if (ticket >= 2)
        return 0;
    harness_gate_wait(&c->gate);
    if (ticket == 0)
        return cancel_check(cancel_source_token(c->foreign));
    return cancel_check(t);
}

TEST(for_foreign_and_own_token_both_in_composite)
{
    cancel_pool *pool = pool_new(1);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 100000, 2);
    c.hold = 2;
    c.behave = foreign_after_own;
    call_start(&c);
    await_started(&c, 2);
    ASSERT_OK(cancel_source_cancel(c.foreign));
    cancel_now(&c);
    harness_gate_open(&c.gate);
    call_join(&c);
    int want[] = {-ECANCELED, -ECANCELED};
    check_errors(&c, want, 2);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* Every error is kept: four workers are all inside an element (held by the
 * gate), then all four fail at once with different codes. */
static const int four_errors[] = {-EIO, -EPIPE, -ENOSPC, -EBADF};

static int fail_all_held(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket >= 4)
        return 0;
    harness_gate_wait(&c->gate);
    return four_errors[ticket];
}

/* cap: room in the error list (16: the whole array; 0 with errors NULL). */
static void concurrent_failures(enum kind kind, size_t cap, bool null_errors)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, kind, pool, 100000, 4);
    for (size_t k = 0; k < 16; k++)
        c.errs[k] = 7777; /* sentinel */
    c.opts.errors_cap = cap;
    if (null_errors)
        c.opts.errors = NULL;
    c.hold = 4;
    c.behave = fail_all_held;
    call_start(&c);
    await_started(&c, 4);
    harness_gate_open(&c.gate);
    call_join(&c);

    ASSERT_ERR(c.result, CANCEL_EAGGREGATE);
    ASSERT_EQ(c.opts.nerrors, 4); /* the count is right past the cap */
    ASSERT_EQ(atomic_load(&c.started), 4);
    size_t kept = null_errors ? 0 : cap < 4 ? cap : 4;
    for (size_t k = 0; k < kept; k++) {
        bool known = false;
        for (size_t j = 0; j < 4; j++)
            known = known || c.errs[k] == four_errors[j];
        ASSERT(known);
        for (size_t j = 0; j < k; j++)
            ASSERT_NE(c.errs[j], c.errs[k]); /* each error once */
    }
    for (size_t k = kept; k < 16; k++)
        ASSERT_EQ(c.errs[k], 7777); /* nothing written past the cap */
    check_no_result(&c);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_concurrent_failures_all_kept)
{
    concurrent_failures(K_FOR, 16, 0);
}
TEST(for_each_concurrent_failures_all_kept)
{
    concurrent_failures(K_EACH, 16, 0);
}
TEST(map_concurrent_failures_all_kept)
{
    concurrent_failures(K_MAP, 16, 0);
}
TEST(filter_concurrent_failures_all_kept)
{
    concurrent_failures(K_FILTER, 16, 0);
}
TEST(reduce_concurrent_failures_all_kept)
{
    concurrent_failures(K_REDUCE, 16, 0);
}
TEST(for_concurrent_failures_past_cap)
{
    concurrent_failures(K_FOR, 2, 0);
}
TEST(map_concurrent_failures_past_cap)
{
    concurrent_failures(K_MAP, 1, 0);
}
TEST(for_concurrent_failures_no_list)
{
    concurrent_failures(K_FOR, 5, 1);
}
TEST(for_concurrent_failures_cap_zero)
{
    concurrent_failures(K_FOR, 0, 0);
}

TEST(failure_without_options_still_aggregate)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 1000, 0);
    c.popts = NULL;
    c.behave = fail_eio;
    call_run(&c);
    ASSERT_ERR(c.result, CANCEL_EAGGREGATE);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* A failure stops the call: on one worker, the elements after the failing
 * one are never handed out. */
static int fail_at_five(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)c;
    (void)i;
    (void)t;
    return ticket == 5 ? -EIO : 0;
}

static void failure_stops(enum kind kind)
{
    cancel_pool *pool = pool_new(2);
    struct ctx c;
    ctx_init(&c, kind, pool, 100000, 1);
    c.behave = fail_at_five;
    call_run(&c);
    int want = -EIO;
    check_errors(&c, &want, 1);
    ASSERT_EQ(atomic_load(&c.started), 6);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_failure_stops_handing_out)
{
    failure_stops(K_FOR);
}
TEST(map_failure_stops_handing_out)
{
    failure_stops(K_MAP);
}
TEST(filter_failure_stops_handing_out)
{
    failure_stops(K_FILTER);
}
TEST(reduce_failure_stops_handing_out)
{
    failure_stops(K_REDUCE);
}

/* ---- lifetime and overrun ------------------------------------------------ */

/* Fast elements that ignore the token; the test cancels once many have
 * run.  Elements started after the cancel returned: at most one per
 * worker (max_degree).  So that the call cannot end before the cancel on
 * a loaded machine, the elements from ticket c->hold on wait (without
 * "throwing") until the token is canceled. */
static int spin_a_little(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    if (c->hold > 0 && ticket >= c->hold)
        while (!cancel_requested(t))
            sched_yield();
    for (volatile int k = 0; k < 200; k++)
        ;
    return 0;
}

static void overrun(enum kind kind, int degree)
{
    cancel_pool *pool = pool_new(3);
    for (int round = 0; round < 5; round++) {
        struct ctx c;
        ctx_init(&c, kind, pool, 1000000, degree);
        c.behave = spin_a_little;
        c.hold = 2000 * (round + 1);
        call_start(&c);
        await_started(&c, c.hold);
        cancel_now(&c);
        call_join(&c);
        check_own_canceled(&c);
        ASSERT_LE(atomic_load(&c.started_after), degree);
        ASSERT_LT(atomic_load(&c.started), 1000000);
        check_quiet(&c);
        ctx_free(&c);
    }
    cancel_pool_free(pool);
}

TEST(for_overrun_bounded_degree_1)
{
    overrun(K_FOR, 1);
}
TEST(for_overrun_bounded_degree_2)
{
    overrun(K_FOR, 2);
}
TEST(for_overrun_bounded_degree_4)
{
    overrun(K_FOR, 4);
}
TEST(for_overrun_bounded_degree_8)
{
    overrun(K_FOR, 8);
}
TEST(for_each_overrun_bounded)
{
    overrun(K_EACH, 4);
}
TEST(map_overrun_bounded)
{
    overrun(K_MAP, 4);
}
TEST(filter_overrun_bounded)
{
    overrun(K_FILTER, 4);
}
TEST(reduce_overrun_bounded)
{
    overrun(K_REDUCE, 3);
}

/* Elements in flight when the call's token fires run to their end, and the
 * caller sees their work once the call returned (plain writes, checked by
 * check_quiet; TSan checks the ordering). */
static int work_after_gate(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)t;
    if (ticket < c->hold) {
        harness_gate_wait(&c->gate);
        c->out[i] = 1000 + (int64_t)i; /* after the cancel */
    }
    return 0;
}

TEST(for_running_iterations_finish_after_cancel)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 100000, 4);
    c.hold = 4;
    c.behave = work_after_gate;
    call_start(&c);
    await_started(&c, 4);
    cancel_now(&c);
    /* The call cannot return while its elements run. */
    for (int k = 0; k < 100; k++)
        sched_yield();
    ASSERT_EQ(atomic_load(&c.running), 4);
    harness_gate_open(&c.gate);
    call_join(&c);
    check_own_canceled(&c);
    int done = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (c.effect[i]) {
            ASSERT_EQ(c.out[i], 1000 + (int64_t)i);
            done++;
        }
    }
    ASSERT_EQ(done, 4);
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* A pool far busier than the call: the helpers it queued start only after
 * the call returned (the pool's threads are all held); they must do
 * nothing. */
static void hold_worker(void *arg)
{
    harness_gate_wait(arg);
}

static void late_helpers(enum kind kind)
{
    cancel_pool *pool = pool_new(2);
    harness_gate busy;
    harness_gate_init(&busy);
    ASSERT_OK(cancel_pool_queue(pool, hold_worker, &busy));
    ASSERT_OK(cancel_pool_queue(pool, hold_worker, &busy));
    struct ctx c;
    ctx_init(&c, kind, pool, 10000, 8); /* seven helpers queued */
    call_run(&c);
    check_complete(&c);
    ASSERT_FALSE(atomic_load(&c.foreign_thread)); /* the caller did it all */
    int started = atomic_load(&c.started);
    harness_gate_open(&busy);
    check_quiet(&c);
    ASSERT_EQ(atomic_load(&c.started), started);
    harness_gate_destroy(&busy);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_caller_participates_late_helpers_do_nothing)
{
    late_helpers(K_FOR);
}
TEST(map_caller_participates_late_helpers_do_nothing)
{
    late_helpers(K_MAP);
}
TEST(filter_caller_participates_late_helpers_do_nothing)
{
    late_helpers(K_FILTER);
}
TEST(reduce_caller_participates_late_helpers_do_nothing)
{
    late_helpers(K_REDUCE);
}

/* The same with a canceled call: late helpers of a canceled call do
 * nothing either. */
TEST(for_canceled_late_helpers_do_nothing)
{
    cancel_pool *pool = pool_new(1);
    harness_gate busy;
    harness_gate_init(&busy);
    ASSERT_OK(cancel_pool_queue(pool, hold_worker, &busy));
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 100000, 4);
    c.behave = throw_own_when_canceled;
    call_run(&c);
    check_own_canceled(&c);
    ASSERT_EQ(atomic_load(&c.started), 1);
    harness_gate_open(&busy);
    check_quiet(&c);
    harness_gate_destroy(&busy);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* ---- degree -------------------------------------------------------------- */

/* max_degree 1: every element on the calling thread, none on the pool. */
static void degree_one(enum kind kind)
{
    cancel_pool *pool = pool_new(3);
    struct ctx c;
    ctx_init(&c, kind, pool, 20000, 1);
    c.behave = spin_a_little;
    call_run(&c);
    check_complete(&c);
    ASSERT_FALSE(atomic_load(&c.foreign_thread));
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

TEST(for_degree_one_runs_on_caller)
{
    degree_one(K_FOR);
}
TEST(for_each_degree_one_runs_on_caller)
{
    degree_one(K_EACH);
}
TEST(map_degree_one_runs_on_caller)
{
    degree_one(K_MAP);
}
TEST(filter_degree_one_runs_on_caller)
{
    degree_one(K_FILTER);
}
TEST(reduce_degree_one_runs_on_caller)
{
    degree_one(K_REDUCE);
}

/* A one-thread pool and the default degree (the pool's size): the caller
 * alone, too. */
TEST(for_one_thread_pool_default_degree_runs_on_caller)
{
    cancel_pool *pool = pool_new(1);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 20000, 0);
    call_run(&c);
    check_complete(&c);
    ASSERT_FALSE(atomic_load(&c.foreign_thread));
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* With helpers available the work does spread (two elements held at once
 * on two threads, one of them the caller). */
static int two_threads(struct ctx *c, size_t i, int ticket, cancel_token t)
{
    (void)i;
    (void)t;
    if (ticket < 2)
        await_started(c, 2);
    return 0;
}

TEST(for_degree_two_uses_a_helper_and_the_caller)
{
    cancel_pool *pool = pool_new(1);
    struct ctx c;
    ctx_init(&c, K_FOR, pool, 10000, 2);
    c.behave = two_threads;
    call_run(&c);
    check_complete(&c);
    ASSERT(atomic_load(&c.foreign_thread));
    check_quiet(&c);
    ctx_free(&c);
    cancel_pool_free(pool);
}

/* Nested loops on a one-thread pool: the outer loop's helper occupies the
 * only worker, the inner loops' helpers can never start while it runs, and
 * still every loop finishes (the caller works). */
struct nest {
    cancel_pool *pool;
    atomic_long inner;
    cancel_token t;
};

static int inner_body(int64_t i, void *arg, cancel_token t)
{
    struct nest *n = arg;
    (void)i;
    ASSERT(cancel_token_equal(t, n->t));
    atomic_fetch_add(&n->inner, 1);
    return 0;
}

static int outer_body(int64_t i, void *arg, cancel_token t)
{
    struct nest *n = arg;
    (void)i;
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = 2;
    ASSERT_OK(cancel_parallel_for(n->pool, 0, 100, inner_body, n, t, &o));
    ASSERT_OK(cancel_parallel_for(n->pool, 0, 100, inner_body, n, t, NULL));
    return 0;
}

TEST(nested_for_on_one_thread_pool_does_not_deadlock)
{
    cancel_pool *pool = pool_new(1);
    cancel_source *src = cancel_source_new();
    struct nest n = {.pool = pool, .t = cancel_source_token(src)};
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = 2;
    ASSERT_OK(cancel_parallel_for(pool, 0, 64, outer_body, &n, n.t, &o));
    ASSERT_EQ(atomic_load(&n.inner), 64 * 200);
    cancel_source_free(src);
    cancel_pool_free(pool);
}

/* A loop started from a pool worker (inside a work item) finishes too. */
struct from_worker {
    struct nest n;
    int result;
    harness_gate done;
};

static void loop_in_item(void *arg)
{
    struct from_worker *w = arg;
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = 4;
    w->result =
        cancel_parallel_for(w->n.pool, 0, 32, outer_body, &w->n, w->n.t, &o);
    harness_gate_open(&w->done);
}

TEST(loop_from_the_only_pool_worker_finishes)
{
    cancel_pool *pool = pool_new(1);
    struct from_worker w = {.n = {.pool = pool, .t = CANCEL_NONE}};
    harness_gate_init(&w.done);
    ASSERT_OK(cancel_pool_queue(pool, loop_in_item, &w));
    harness_gate_wait(&w.done);
    ASSERT_OK(w.result);
    ASSERT_EQ(atomic_load(&w.n.inner), 32 * 200);
    harness_gate_destroy(&w.done);
    cancel_pool_free(pool);
}

/* ---- bad input ----------------------------------------------------------- */

static atomic_int bad_calls;

static int bad_for(int64_t i, void *arg, cancel_token t)
{
    (void)i, (void)arg, (void)t;
    atomic_fetch_add(&bad_calls, 1);
    return 0;
}

static int bad_each(void *item, void *arg, cancel_token t)
{
    (void)item, (void)arg, (void)t;
    atomic_fetch_add(&bad_calls, 1);
    return 0;
}

static int bad_map(const void *in, void *out, void *arg, cancel_token t)
{
    (void)in, (void)out, (void)arg, (void)t;
    atomic_fetch_add(&bad_calls, 1);
    return 0;
}

static int bad_pred(const void *item, void *arg, cancel_token t)
{
    (void)item, (void)arg, (void)t;
    atomic_fetch_add(&bad_calls, 1);
    return 1;
}

static int bad_fold(void *acc, const void *item, void *arg, cancel_token t)
{
    (void)acc, (void)item, (void)arg, (void)t;
    atomic_fetch_add(&bad_calls, 1);
    return 0;
}

static void bad_combine(void *acc, const void *other, void *arg)
{
    (void)acc, (void)other, (void)arg;
    atomic_fetch_add(&bad_calls, 1);
}

static int bad_cmp(const void *a, const void *b, void *arg)
{
    (void)arg;
    atomic_fetch_add(&bad_calls, 1);
    return *(const int *)a - *(const int *)b;
}

TEST(for_empty_range_calls_nothing)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.nerrors = 9;
    ASSERT_OK(cancel_parallel_for(pool, 5, 5, bad_for, NULL, t, &o));
    ASSERT_OK(cancel_parallel_for(pool, 0, 0, bad_for, NULL, t, NULL));
    ASSERT_OK(cancel_parallel_for(pool, INT64_MIN, INT64_MIN, bad_for, NULL, t,
                                  NULL));
    /* An empty range has nothing to cancel (Parallel.For returns at once). */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_parallel_for(pool, 7, 7, bad_for, NULL, t, NULL));
    ASSERT_OK(
        cancel_parallel_for_each(pool, NULL, 0, 4, bad_each, NULL, t, NULL));
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_source_free(src);
    cancel_pool_free(pool);
}

TEST(queries_on_no_items_call_nothing)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int in[1] = {42}, out[1] = {-1};
    ASSERT_OK(cancel_parallel_map(pool, in, 0, sizeof(int), out, sizeof(int),
                                  bad_map, NULL, CANCEL_NONE, NULL));
    ASSERT_OK(cancel_parallel_map(pool, NULL, 0, sizeof(int), NULL, sizeof(int),
                                  bad_map, NULL, CANCEL_NONE, NULL));
    ASSERT_EQ(out[0], -1);
    void *fout = (void *)in;
    size_t count = 99;
    ASSERT_OK(cancel_parallel_filter(pool, NULL, 0, sizeof(int), &fout, &count,
                                     bad_pred, NULL, CANCEL_NONE, NULL));
    ASSERT_EQ(count, 0);
    free(fout); /* an empty result, still the caller's to free */
    int64_t id = 17, result = 0;
    ASSERT_OK(cancel_parallel_reduce(pool, NULL, 0, 8, &result, &id, 8,
                                     bad_fold, bad_combine, NULL, CANCEL_NONE,
                                     NULL));
    ASSERT_EQ(result, 17); /* the identity */
    ASSERT_OK(cancel_parallel_sort(pool, NULL, 0, sizeof(int), bad_cmp, NULL,
                                   CANCEL_NONE, NULL));
    ASSERT_OK(cancel_parallel_sort(pool, in, 1, sizeof(int), bad_cmp, NULL,
                                   CANCEL_NONE, NULL));
    ASSERT_EQ(in[0], 42);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(for_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -1;
    ASSERT_ERR(
        cancel_parallel_for(pool, 5, 4, bad_for, NULL, CANCEL_NONE, NULL),
        -EINVAL);
    ASSERT_ERR(cancel_parallel_for(pool, INT64_MAX, INT64_MIN, bad_for, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_for(pool, 0, 10, NULL, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(
        cancel_parallel_for(NULL, 0, 10, bad_for, NULL, CANCEL_NONE, NULL),
        -EINVAL);
    ASSERT_ERR(
        cancel_parallel_for(pool, 0, 10, bad_for, NULL, CANCEL_NONE, &neg),
        -EINVAL);
    neg.max_degree = INT32_MIN;
    ASSERT_ERR(
        cancel_parallel_for(pool, 0, 10, bad_for, NULL, CANCEL_NONE, &neg),
        -EINVAL);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(for_each_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int items[4] = {0};
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -3;
    ASSERT_ERR(cancel_parallel_for_each(NULL, items, 4, sizeof(int), bad_each,
                                        NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_for_each(pool, items, 4, sizeof(int), NULL, NULL,
                                        CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_for_each(pool, NULL, 4, sizeof(int), bad_each,
                                        NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_for_each(pool, items, 4, 0, bad_each, NULL,
                                        CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_for_each(pool, items, 4, sizeof(int), bad_each,
                                        NULL, CANCEL_NONE, &neg),
               -EINVAL);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(map_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int in[4] = {0}, out[4] = {0};
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -1;
    ASSERT_ERR(cancel_parallel_map(NULL, in, 4, 4, out, 4, bad_map, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, in, 4, 4, out, 4, NULL, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, NULL, 4, 4, out, 4, bad_map, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, in, 4, 4, NULL, 4, bad_map, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, in, 4, 0, out, 4, bad_map, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, in, 4, 4, out, 0, bad_map, NULL,
                                   CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_map(pool, in, 4, 4, out, 4, bad_map, NULL,
                                   CANCEL_NONE, &neg),
               -EINVAL);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(filter_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int in[4] = {0};
    void *out = in;
    size_t count = 5;
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -1;
    ASSERT_ERR(cancel_parallel_filter(NULL, in, 4, 4, &out, &count, bad_pred,
                                      NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_NULL(out); /* the outputs are set on every return */
    ASSERT_EQ(count, 0);
    ASSERT_ERR(cancel_parallel_filter(pool, in, 4, 4, &out, &count, NULL, NULL,
                                      CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_filter(pool, NULL, 4, 4, &out, &count, bad_pred,
                                      NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_filter(pool, in, 4, 0, &out, &count, bad_pred,
                                      NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_filter(pool, in, 4, 4, NULL, &count, bad_pred,
                                      NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_filter(pool, in, 4, 4, &out, NULL, bad_pred,
                                      NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_filter(pool, in, 4, 4, &out, &count, bad_pred,
                                      NULL, CANCEL_NONE, &neg),
               -EINVAL);
    ASSERT_NULL(out);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(reduce_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int64_t in[4] = {0}, id = 0, res = 0;
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -1;
    ASSERT_ERR(cancel_parallel_reduce(NULL, in, 4, 8, &res, &id, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, &res, &id, 8, NULL,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, &res, &id, 8, bad_fold,
                                      NULL, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, NULL, &id, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, &res, NULL, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, &res, &id, 0, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 0, &res, &id, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, NULL, 4, 8, &res, &id, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(cancel_parallel_reduce(pool, in, 4, 8, &res, &id, 8, bad_fold,
                                      bad_combine, NULL, CANCEL_NONE, &neg),
               -EINVAL);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    cancel_pool_free(pool);
}

TEST(sort_bad_input)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    int a[4] = {3, 1, 2, 0};
    cancel_parallel_options neg = CANCEL_PARALLEL_OPTIONS_INIT;
    neg.max_degree = -1;
    ASSERT_ERR(
        cancel_parallel_sort(NULL, a, 4, 4, bad_cmp, NULL, CANCEL_NONE, NULL),
        -EINVAL);
    ASSERT_ERR(
        cancel_parallel_sort(pool, a, 4, 4, NULL, NULL, CANCEL_NONE, NULL),
        -EINVAL);
    ASSERT_ERR(cancel_parallel_sort(pool, NULL, 4, 4, bad_cmp, NULL,
                                    CANCEL_NONE, NULL),
               -EINVAL);
    ASSERT_ERR(
        cancel_parallel_sort(pool, a, 4, 0, bad_cmp, NULL, CANCEL_NONE, NULL),
        -EINVAL);
    ASSERT_ERR(
        cancel_parallel_sort(pool, a, 4, 4, bad_cmp, NULL, CANCEL_NONE, &neg),
        -EINVAL);
    ASSERT_EQ(atomic_load(&bad_calls), 0);
    ASSERT_EQ(a[0], 3); /* untouched */
    ASSERT_EQ(a[3], 0);
    cancel_pool_free(pool);
}

/* nerrors is reset by every call, even one that succeeds. */
TEST(options_nerrors_reset_on_entry)
{
    atomic_store(&bad_calls, 0);
    cancel_pool *pool = pool_new(2);
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.nerrors = 42;
    ASSERT_OK(
        cancel_parallel_for(pool, 0, 100, bad_for, NULL, CANCEL_NONE, &o));
    ASSERT_EQ(o.nerrors, 0);
    ASSERT_EQ(atomic_load(&bad_calls), 100);
    cancel_pool_free(pool);
}
