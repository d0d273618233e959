/* Allocation failures in the task layer (SQLite's malloc sweep, with the
 * test hooks of src/internal.h): for every function of task.h that
 * allocates, fail its n-th allocation for n = 0, 1, 2, ... until it
 * succeeds.  Each failure must return NULL with errno == ENOMEM (or
 * -ENOMEM), leave nothing allocated (cancel__alloc_live() as before), and
 * leave the existing tasks intact: they still run, finish and report as
 * they would have.  The calls whose contract has no ENOMEM
 * (cancel_task_start, the waits on a few tasks, status, errors, finishing
 * a task with continuations and faulting children) are shown to work while
 * every allocation fails.
 *
 * Pool workers are idle, or blocked on gates, while a sweep runs, so every
 * counted allocation is the call's own. */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define MAX_STEPS 32

/* ---- bodies ------------------------------------------------------------- */

static int count_fn(void *arg, cancel_token t)
{
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static int cont_count(cancel_task *ante, void *arg, cancel_token t)
{
    (void)ante;
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static void count_item(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

typedef struct gated {
    harness_gate started, go;
    atomic_int runs;
    int code;
} gated;

static int gated_fn(void *arg, cancel_token t)
{
    (void)t;
    gated *g = arg;
    atomic_fetch_add(&g->runs, 1);
    harness_gate_open(&g->started);
    harness_gate_wait(&g->go);
    return g->code;
}

static void gated_init(gated *g, int code)
{
    memset(g, 0, sizeof(*g));
    g->code = code;
    harness_gate_init(&g->started);
    harness_gate_init(&g->go);
}

static void gated_destroy(gated *g)
{
    harness_gate_destroy(&g->started);
    harness_gate_destroy(&g->go);
}

/* ---- the sweep ---------------------------------------------------------- */

/* attempt() returns an object, or NULL with errno set.  Each failure is
 * checked; the first success is handed to keep().  Returns the step at
 * which it succeeded (how many allocations the call makes). */
typedef void *attempt_fn(void *ctx);
typedef void keep_fn(void *obj, void *ctx);

static long sweep(attempt_fn *attempt, keep_fn *keep, void *ctx)
{
    for (long n = 0; n < MAX_STEPS; n++) {
        long live0 = cancel__alloc_live();
        cancel__alloc_fail_after(n);
        errno = 0;
        void *obj = attempt(ctx);
        int err = errno;
        cancel__alloc_fail_after(-1);
        if (obj == NULL) {
            ASSERT_EQ(err, ENOMEM);
            ASSERT_EQ(cancel__alloc_live(), live0);
            continue;
        }
        keep(obj, ctx);
        return n;
    }
    harness_fail(__FILE__, __LINE__, "no success in %d steps", MAX_STEPS);
}

/* ---- pools -------------------------------------------------------------- */

static void *attempt_pool(void *ctx)
{
    return cancel_pool_new(*(int *)ctx);
}

static void keep_pool(void *obj, void *ctx)
{
    cancel_pool *pool = obj;
    int want = *(int *)ctx;
    ASSERT_EQ(cancel_pool_size(pool),
              want ? want : sysconf(_SC_NPROCESSORS_ONLN));
    atomic_int n = 0;
    cancel_task *t = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(t);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
    cancel_task_release(t);
}

TEST(alloc_pool_new)
{
    long live = cancel__alloc_live();
    int nthreads = 3;
    ASSERT_GT(sweep(attempt_pool, keep_pool, &nthreads), 0);
    nthreads = 0;
    ASSERT_GT(sweep(attempt_pool, keep_pool, &nthreads), 0);
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(alloc_pool_queue)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    long live0 = cancel__alloc_live();
    cancel__alloc_fail_after(0);
    ASSERT_ERR(cancel_pool_queue(pool, NULL, &n), -EINVAL); /* checked first */
    for (int i = 0; i < 5; i++)
        ASSERT_ERR(cancel_pool_queue(pool, count_item, &n), -ENOMEM);
    cancel__alloc_fail_after(-1);
    ASSERT_EQ(cancel__alloc_live(), live0);
    ASSERT_OK(cancel_pool_queue(pool, count_item, &n)); /* works again */
    cancel_pool_free(pool); /* drains: only the last one was queued */
    ASSERT_EQ(atomic_load(&n), 1);
}

/* A posted cancellation callback whose queueing fails runs at once on the
 * posting (canceling) thread: it is never lost. */
typedef struct post_seen {
    atomic_int runs;
    pthread_t thread;
} post_seen;

static void post_cb(void *arg)
{
    post_seen *p = arg;
    p->thread = pthread_self();
    atomic_fetch_add(&p->runs, 1);
}

TEST(alloc_pool_post_failure_runs_callback_on_canceling_thread)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    post_seen p = {.runs = 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, post_cb, &p,
                                 cancel_pool_post, pool));
    long live0 = cancel__alloc_live();
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_source_cancel(src));
    cancel__alloc_fail_after(-1);
    ASSERT_EQ(atomic_load(&p.runs), 1); /* before cancel returned */
    ASSERT_TRUE(pthread_equal(p.thread, pthread_self()));
    ASSERT_EQ(cancel__alloc_live(), live0);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&p.runs), 1);
    cancel_source_free(src);
}

/* ---- tasks -------------------------------------------------------------- */

typedef struct task_ctx {
    cancel_pool *pool;
    cancel_token t;
    atomic_int n;
    cancel_task *kept;
} task_ctx;

static void *attempt_new(void *ctx)
{
    task_ctx *c = ctx;
    return cancel_task_new(c->pool, count_fn, &c->n, c->t, 0);
}

static void *attempt_run(void *ctx)
{
    task_ctx *c = ctx;
    return cancel_task_run(c->pool, count_fn, &c->n, c->t, 0);
}

static void keep_task(void *obj, void *ctx)
{
    ((task_ctx *)ctx)->kept = obj;
}

/* Existing tasks: one running (gated), one CREATED, one queued behind the
 * running one on a 1-thread pool. */
typedef struct world {
    cancel_pool *pool;
    gated g;
    cancel_task *running, *created, *queued;
    atomic_int n;
} world;

static void world_init(world *w)
{
    memset(w, 0, sizeof(*w));
    w->pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(w->pool);
    gated_init(&w->g, -EIO);
    w->running = cancel_task_run(w->pool, gated_fn, &w->g, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(w->running);
    harness_gate_wait(&w->g.started);
    w->created = cancel_task_new(w->pool, count_fn, &w->n, CANCEL_NONE, 0);
    w->queued = cancel_task_run(w->pool, count_fn, &w->n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(w->created);
    ASSERT_NOT_NULL(w->queued);
}

/* They all still work as they would have. */
static void world_check(world *w)
{
    ASSERT_EQ(cancel_task_status_of(w->running), CANCEL_TASK_RUNNING);
    ASSERT_EQ(cancel_task_status_of(w->created), CANCEL_TASK_CREATED);
    ASSERT_EQ(cancel_task_status_of(w->queued), CANCEL_TASK_WAITING_TO_RUN);
    harness_gate_open(&w->g.go);
    ASSERT_OK(cancel_task_start(w->created));
    cancel_task *all[3] = {w->running, w->created, w->queued};
    ASSERT_ERR(cancel_task_wait_all(all, 3, CANCEL_NONE, CANCEL_INFINITE),
               -EIO);
    ASSERT_EQ(atomic_load(&w->n), 2);
    ASSERT_EQ(atomic_load(&w->g.runs), 1);
    for (int i = 0; i < 3; i++)
        cancel_task_release(all[i]);
    cancel_pool_free(w->pool);
    gated_destroy(&w->g);
}

static void task_sweep(attempt_fn *attempt, bool started)
{
    long live = cancel__alloc_live();
    world w;
    world_init(&w);
    cancel_source *src = cancel_source_new();
    task_ctx c = {.pool = w.pool, .t = cancel_source_token(src), .n = 0};
    ASSERT_GT(sweep(attempt, keep_task, &c), 0);
    ASSERT_EQ(cancel_task_status_of(c.kept),
              started ? CANCEL_TASK_WAITING_TO_RUN : CANCEL_TASK_CREATED);
    if (!started)
        ASSERT_OK(cancel_task_start(c.kept));
    world_check(&w);
    ASSERT_EQ(atomic_load(&c.n), 1); /* only the one that was made ran */
    ASSERT_EQ(cancel_task_status_of(c.kept), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(c.kept);
    cancel_source_free(src);
    /* Everything is gone, the source too: no failed attempt kept a
     * reference on the token. */
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(alloc_task_new)
{
    task_sweep(attempt_new, false);
}

TEST(alloc_task_run)
{
    task_sweep(attempt_run, true);
}

/* ---- continuations ------------------------------------------------------- */

typedef struct cont_ctx {
    cancel_task *ante;
    cancel_token t;
    unsigned flags;
    atomic_int m;
    cancel_task *kept;
} cont_ctx;

static void *attempt_cont(void *ctx)
{
    cont_ctx *c = ctx;
    return cancel_task_continue_with(c->ante, cont_count, &c->m, c->t,
                                     c->flags);
}

static void keep_cont(void *obj, void *ctx)
{
    ((cont_ctx *)ctx)->kept = obj;
}

TEST(alloc_continue_with_on_running_antecedent)
{
    long live = cancel__alloc_live();
    world w;
    world_init(&w);
    cancel_source *src = cancel_source_new();
    atomic_int m0 = 0;
    /* A continuation made before the failures: still runs, once. */
    cancel_task *before =
        cancel_task_continue_with(w.running, cont_count, &m0, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(before);
    cont_ctx c = {.ante = w.running, .t = cancel_source_token(src),
                  .flags = CANCEL_CONTINUE_ON_FAULTED, .m = 0};
    ASSERT_GT(sweep(attempt_cont, keep_cont, &c), 0);
    ASSERT_EQ(cancel_task_status_of(c.kept), CANCEL_TASK_CREATED);
    world_check(&w); /* the antecedent faults with -EIO */
    ASSERT_OK(cancel_task_wait(c.kept, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_task_wait(before, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&c.m), 1);
    ASSERT_EQ(atomic_load(&m0), 1);
    cancel_task_release(c.kept);
    cancel_task_release(before);
    cancel_source_free(src);
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(alloc_continue_with_on_finished_antecedent)
{
    long live = cancel__alloc_live();
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    cancel_task *ante = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(ante);
    ASSERT_OK(cancel_task_wait(ante, CANCEL_NONE, CANCEL_INFINITE));
    cont_ctx c = {.ante = ante, .t = CANCEL_NONE, .flags = 0, .m = 0};
    ASSERT_GT(sweep(attempt_cont, keep_cont, &c), 0);
    ASSERT_OK(cancel_task_wait(c.kept, CANCEL_NONE, CANCEL_INFINITE));
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&c.m), 1);
    ASSERT_EQ(cancel_task_status_of(ante), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(c.kept);
    cancel_task_release(ante);
    ASSERT_EQ(cancel__alloc_live(), live);
}

/* ---- attached children: the slot reservation ----------------------------- */

typedef struct parent_ctx {
    cancel_pool *pool;
    gated kid; /* the gated children share it */
    int npending; /* gated attached children made before the sweeps */
    cancel_task *pending[8];
    int kid_code;
    atomic_int n;
    cancel_task *kept[2];
    int nkept;
    long steps[2];
    harness_gate swept;
} parent_ctx;

static int kid_fn(void *arg, cancel_token t)
{
    (void)t;
    parent_ctx *p = arg;
    atomic_fetch_add(&p->n, 1);
    return p->kid_code;
}

static void *attempt_child(void *ctx)
{
    parent_ctx *p = ctx;
    return cancel_task_run(p->pool, kid_fn, p, CANCEL_NONE,
                           CANCEL_TASK_ATTACHED);
}

static void keep_child(void *obj, void *ctx)
{
    parent_ctx *p = ctx;
    p->kept[p->nkept++] = obj;
}

static int sweeping_parent(void *arg, cancel_token t)
{
    (void)t;
    parent_ctx *p = arg;
    /* The first attached child (its slot array is new). */
    p->steps[0] = sweep(attempt_child, keep_child, p);
    /* Enough unfinished children to fill the slots: the next one grows
     * them. */
    for (int i = 0; i < p->npending; i++) {
        p->pending[i] = cancel_task_run(p->pool, gated_fn, &p->kid, CANCEL_NONE,
                                        CANCEL_TASK_ATTACHED);
        ASSERT_NOT_NULL(p->pending[i]);
    }
    p->steps[1] = sweep(attempt_child, keep_child, p);
    harness_gate_open(&p->swept);
    return 0;
}

static void child_sweep(int kid_code)
{
    long live = cancel__alloc_live();
    parent_ctx p;
    memset(&p, 0, sizeof(p));
    p.pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(p.pool);
    gated_init(&p.kid, kid_code);
    harness_gate_init(&p.swept);
    p.npending = 7;
    p.kid_code = kid_code;
    cancel_task *parent =
        cancel_task_run(p.pool, sweeping_parent, &p, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&p.swept);
    ASSERT_GT(p.steps[0], 0);
    ASSERT_GT(p.steps[1], 0);
    ASSERT_EQ(p.nkept, 2);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, 0), -ETIMEDOUT);
    harness_gate_open(&p.kid.go);

    /* The failed children hold nothing: the parent finishes once the
     * real ones have, with all of their errors and no other. */
    int r = cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE);
    ASSERT_EQ(atomic_load(&p.n), 2);
    ASSERT_EQ(atomic_load(&p.kid.runs), p.npending);
    if (kid_code == 0) {
        ASSERT_OK(r);
        ASSERT_EQ(cancel_task_status_of(parent),
                  CANCEL_TASK_RAN_TO_COMPLETION);
    } else {
        ASSERT_ERR(r, kid_code);
        ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
        int codes[16];
        ASSERT_EQ(cancel_task_errors(parent, codes, 16),
                  (size_t)(2 + p.npending));
        for (int i = 0; i < 2 + p.npending; i++)
            ASSERT_ERR(codes[i], kid_code);
    }
    cancel_task_release(parent);
    for (int i = 0; i < p.nkept; i++)
        cancel_task_release(p.kept[i]);
    for (int i = 0; i < p.npending; i++)
        cancel_task_release(p.pending[i]);
    cancel_pool_free(p.pool);
    gated_destroy(&p.kid);
    harness_gate_destroy(&p.swept);
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(alloc_attached_child)
{
    child_sweep(0);
}

TEST(alloc_attached_child_faulting_family_keeps_every_error)
{
    child_sweep(-EIO);
}

/* ---- calls that do not allocate ------------------------------------------ */

typedef struct any_ctx {
    cancel_task **t;
    size_t n;
    int result;
} any_ctx;

static void *attempt_wait_any(void *ctx)
{
    any_ctx *a = ctx;
    a->result = cancel_task_wait_any(a->t, a->n, CANCEL_NONE, 0);
    if (a->result == -ENOMEM) {
        errno = ENOMEM;
        return NULL;
    }
    return a;
}

static void keep_any(void *obj, void *ctx)
{
    (void)ctx;
    ASSERT_ERR(((any_ctx *)obj)->result, -ETIMEDOUT);
}

/* Past CANCEL_WAIT_ANY_STACK tasks wait_any may need memory: -ENOMEM, and
 * no leak, when there is none. */
TEST(alloc_wait_any_over_many_tasks)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    gated g;
    gated_init(&g, 0);
    enum { N = 2 * CANCEL_WAIT_ANY_STACK };
    cancel_task *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = cancel_task_run(pool, gated_fn, &g, CANCEL_NONE, 0);
        ASSERT_NOT_NULL(t[i]);
    }
    any_ctx a = {t, N, 0};
    ASSERT_GT(sweep(attempt_wait_any, keep_any, &a), 0);
    harness_gate_open(&g.go);
    ASSERT_OK(cancel_task_wait_all(t, N, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < N; i++)
        cancel_task_release(t[i]);
    cancel_pool_free(pool);
    gated_destroy(&g);
}

typedef struct family {
    cancel_pool *pool;
    gated kids; /* the children share it; they return -EIO */
    harness_gate made, armed;
    cancel_task *kid[6];
} family;

static int family_parent(void *arg, cancel_token t)
{
    (void)t;
    family *f = arg;
    for (int i = 0; i < 6; i++) {
        f->kid[i] = cancel_task_run(f->pool, gated_fn, &f->kids, CANCEL_NONE,
                                    CANCEL_TASK_ATTACHED);
        ASSERT_NOT_NULL(f->kid[i]);
    }
    harness_gate_open(&f->made);
    harness_gate_wait(&f->armed);
    return -EPERM;
}

/* Starting, running, canceling in the queue, finishing (continuations,
 * faulting attached children), waiting and reporting: none of it needs
 * memory. */
TEST(task_life_works_while_every_allocation_fails)
{
    long live = cancel__alloc_live();
    family f;
    memset(&f, 0, sizeof(f));
    f.pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(f.pool);
    gated_init(&f.kids, -EIO);
    harness_gate_init(&f.made);
    harness_gate_init(&f.armed);
    cancel_source *src = cancel_source_new();
    atomic_int n = 0, m = 0;

    /* Everything allocated up front. */
    cancel_task *parent =
        cancel_task_run(f.pool, family_parent, &f, CANCEL_NONE, 0);
    cancel_task *plain = cancel_task_new(f.pool, count_fn, &n, CANCEL_NONE, 0);
    cancel_task *doomed =
        cancel_task_new(f.pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_NOT_NULL(plain);
    ASSERT_NOT_NULL(doomed);
    cancel_task *c1 = cancel_task_continue_with(parent, cont_count, &m,
                                                CANCEL_NONE,
                                                CANCEL_CONTINUE_ON_FAULTED);
    cancel_task *c2 = cancel_task_continue_with(
        parent, cont_count, &m, CANCEL_NONE,
        CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
    ASSERT_NOT_NULL(c1);
    ASSERT_NOT_NULL(c2);
    harness_gate_wait(&f.made);

    cancel__alloc_fail_after(0);
    ASSERT_NULL(cancel_task_new(f.pool, count_fn, &n, CANCEL_NONE, 0));
    harness_gate_open(&f.armed);
    harness_gate_open(&f.kids.go);
    ASSERT_OK(cancel_task_start(plain));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_task_start(doomed)); /* canceled before it starts */
    cancel_task *all[] = {parent, plain, doomed, c1, c2};
    ASSERT_ERR(cancel_task_wait_all(all, 5, CANCEL_NONE, CANCEL_INFINITE),
               -EPERM);
    ASSERT_EQ(cancel_task_wait_any(all, 5, CANCEL_NONE, CANCEL_INFINITE), 0);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EPERM);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    int codes[8];
    ASSERT_EQ(cancel_task_errors(parent, codes, 8), 7);
    ASSERT_ERR(codes[0], -EPERM);
    for (int i = 1; i < 7; i++)
        ASSERT_ERR(codes[i], -EIO);
    ASSERT_EQ(cancel_task_status_of(plain), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_status_of(c1), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_status_of(c2), CANCEL_TASK_CANCELED);
    cancel_pool_free(f.pool);
    cancel__alloc_fail_after(-1);

    ASSERT_EQ(atomic_load(&m), 1);
    ASSERT_EQ(atomic_load(&f.kids.runs), 6);
    /* doomed never ran: n counts only plain. */
    ASSERT_EQ(cancel_task_status_of(doomed), CANCEL_TASK_CANCELED);
    ASSERT_EQ(atomic_load(&n), 1);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        cancel_task_release(all[i]);
    for (int i = 0; i < 6; i++)
        cancel_task_release(f.kid[i]);
    gated_destroy(&f.kids);
    harness_gate_destroy(&f.made);
    harness_gate_destroy(&f.armed);
    cancel_source_free(src);
    ASSERT_EQ(cancel__alloc_live(), live);
}
