/* Unit tests of the task waits: cancel_task_wait, cancel_task_wait_all and
 * cancel_task_wait_any, each with its own token and timeout, and the
 * inlining of a queued task by an infinite wait without a token.
 *
 * Time comes from a manual clock.  To act while another thread is blocked
 * in a wait, a test spins until that thread is asleep in the kernel (state
 * S in /proc) after raising `entered` right before the call; every
 * assertion also holds if the action comes earlier than that gate
 * intends. */
#include "harness.h"
#include "internal.h"


#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define MS ((int64_t)1000000)

/* ---- helpers ------------------------------------------------------------ */

/* A body that runs until its gate opens, then returns `code`. */
typedef struct job {
    harness_gate started, go;
    bool gated;
    int code;
    bool check; /* return cancel_check(t) */
    atomic_int runs;
    pthread_t thread;
    cancel_task *current;
} job;

static int job_fn(void *arg, cancel_token t)
{
    job *j = arg;
    atomic_fetch_add(&j->runs, 1);
    j->thread = pthread_self();
    j->current = cancel_task_current();
    if (j->gated) {
        harness_gate_open(&j->started);
        harness_gate_wait(&j->go);
    }
    return j->check ? cancel_check(t) : j->code;
}

static void job_init(job *j, int code, bool gated)
{
    memset(j, 0, sizeof(*j));
    j->code = code;
    j->gated = gated;
    harness_gate_init(&j->started);
    harness_gate_init(&j->go);
}

static void job_destroy(job *j)
{
    harness_gate_destroy(&j->started);
    harness_gate_destroy(&j->go);
}

static cancel_task *run_job(cancel_pool *pool, job *j, cancel_token t)
{
    cancel_task *task = cancel_task_run(pool, job_fn, j, t, 0);
    ASSERT_NOT_NULL(task);
    if (j->gated)
        harness_gate_wait(&j->started);
    return task;
}

enum op { OP_ONE, OP_ALL, OP_ANY };

/* One thread running one wait. */
typedef struct waiter {
    harness_call call;
    enum op op;
    cancel_task *const *tasks;
    size_t n;
    cancel_token t;
    int64_t timeout;
} waiter;

static int waiter_wait(void *arg)
{
    waiter *w = arg;
    switch (w->op) {
    case OP_ONE:
        return cancel_task_wait(w->tasks[0], w->t, w->timeout);
    case OP_ALL:
        return cancel_task_wait_all(w->tasks, w->n, w->t, w->timeout);
    case OP_ANY:
        return cancel_task_wait_any(w->tasks, w->n, w->t, w->timeout);
    }
    return 0;
}

static void start(waiter *w, enum op op, cancel_task *const *tasks, size_t n,
                  cancel_token t, int64_t timeout)
{
    w->op = op;
    w->tasks = tasks;
    w->n = n;
    w->t = t;
    w->timeout = timeout;
    harness_call_start(&w->call, waiter_wait, w);
}

/* ---- cancel_task_wait --------------------------------------------------- */

TEST(wait_with_canceled_token_returns_at_once_and_records_it)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, true);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    cancel_source *ws = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(ws));
    ASSERT_ERR(cancel_task_wait(task, cancel_source_token(ws), CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(ws)));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RUNNING);
    harness_gate_open(&j.go);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
    cancel_source_free(ws);
}

TEST(wait_token_canceled_while_blocked)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, true);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    cancel_source *ws = cancel_source_new();
    waiter w;
    start(&w, OP_ONE, &task, 1, cancel_source_token(ws), CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel(ws));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, cancel_source_token(ws)));
    /* The wait's cancellation is not the task's. */
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RUNNING);
    ASSERT_FALSE(cancel_requested(cancel_task_token(task)));
    harness_gate_open(&j.go);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&j.runs), 1);
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
    cancel_source_free(ws);
}

TEST(wait_timeout_zero_does_not_block)
{
    /* a wait that blocked would never end */
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, -EIO, true);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ETIMEDOUT);
    harness_gate_open(&j.go);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    /* Finished: a wait of 0 reports the outcome. */
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -EIO);
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
    harness_manual_clock_done(c);
}

TEST(wait_times_out_on_manual_clock)
{
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, true);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    waiter w;
    start(&w, OP_ONE, &task, 1, CANCEL_NONE, 100 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 100 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RUNNING);
    harness_gate_open(&j.go);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
    harness_manual_clock_done(c);
}

TEST(wait_wakes_when_task_finishes)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, -EPERM, true);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    waiter w[3];
    for (int i = 0; i < 3; i++)
        start(&w[i], OP_ONE, &task, 1, CANCEL_NONE, CANCEL_INFINITE);
    for (int i = 0; i < 3; i++)
        harness_call_await_asleep(&w[i].call);
    harness_gate_open(&j.go);
    for (int i = 0; i < 3; i++)
        ASSERT_ERR(harness_call_finish(&w[i].call), -EPERM);
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
}

/* Waiters on a task that ends CANCELED all report it, each with the task
 * token recorded on its own thread. */
TEST(every_waiter_of_canceled_task_gets_ecanceled)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    job j;
    job_init(&j, 0, true);
    j.check = true;
    cancel_task *task = run_job(pool, &j, cancel_source_token(src));
    waiter w[3];
    for (int i = 0; i < 3; i++)
        start(&w[i], OP_ONE, &task, 1, CANCEL_NONE, CANCEL_INFINITE);
    for (int i = 0; i < 3; i++)
        harness_call_await_asleep(&w[i].call);
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < 3; i++)
        ASSERT_FALSE(atomic_load(&w[i].call.done)); /* the body decides */
    harness_gate_open(&j.go);
    for (int i = 0; i < 3; i++) {
        ASSERT_ERR(harness_call_finish(&w[i].call), -ECANCELED);
        ASSERT_TRUE(cancel_token_equal(w[i].call.recorded,
                                       cancel_source_token(src)));
    }
    cancel_task_release(task);
    cancel_pool_free(pool);
    job_destroy(&j);
    cancel_source_free(src);
}

/* ---- inlining ----------------------------------------------------------- */

TEST(infinite_wait_without_token_runs_queued_task_inline)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job blocker;
    job_init(&blocker, 0, true);
    cancel_task *bt = run_job(pool, &blocker, CANCEL_NONE);

    job j;
    job_init(&j, -EIO, false);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_WAITING_TO_RUN);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    ASSERT_TRUE(pthread_equal(j.thread, pthread_self()));
    ASSERT_TRUE(j.current == task); /* the inlined task is current */
    ASSERT_NULL(cancel_task_current());
    ASSERT_EQ(cancel_task_status_of(bt), CANCEL_TASK_RUNNING);

    harness_gate_open(&blocker.go);
    cancel_pool_free(pool); /* the worker skips the item it already ran */
    ASSERT_EQ(atomic_load(&j.runs), 1);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_FAULTED);
    cancel_task_release(task);
    cancel_task_release(bt);
    job_destroy(&j);
    job_destroy(&blocker);
}

TEST(infinite_wait_all_without_token_runs_queued_tasks_inline_in_order)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job blocker;
    job_init(&blocker, 0, true);
    cancel_task *bt = run_job(pool, &blocker, CANCEL_NONE);

    /* Queued behind the blocker: only an inlining wait can run them. */
    job j[3];
    cancel_task *tasks[3];
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], i == 1 ? -EIO : 0, false);
        tasks[i] = run_job(pool, &j[i], CANCEL_NONE);
        ASSERT_EQ(cancel_task_status_of(tasks[i]),
                  CANCEL_TASK_WAITING_TO_RUN);
    }
    ASSERT_ERR(cancel_task_wait_all(tasks, 3, CANCEL_NONE, CANCEL_INFINITE),
               -EIO);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&j[i].runs), 1);
        ASSERT_TRUE(pthread_equal(j[i].thread, pthread_self()));
        ASSERT_TRUE(j[i].current == tasks[i]);
    }
    ASSERT_NULL(cancel_task_current());
    ASSERT_EQ(cancel_task_status_of(bt), CANCEL_TASK_RUNNING);

    harness_gate_open(&blocker.go);
    cancel_pool_free(pool); /* the worker skips the items already run */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&j[i].runs), 1);
        cancel_task_release(tasks[i]);
        job_destroy(&j[i]);
    }
    cancel_task_release(bt);
    job_destroy(&blocker);
}

TEST(wait_with_token_or_timeout_does_not_inline)
{
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job blocker;
    job_init(&blocker, 0, true);
    cancel_task *bt = run_job(pool, &blocker, CANCEL_NONE);
    job j;
    job_init(&j, 0, false);
    cancel_task *task = run_job(pool, &j, CANCEL_NONE);
    cancel_source *ws = cancel_source_new();

    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_ERR(cancel_task_wait(task, cancel_source_token(ws), 0), -ETIMEDOUT);
    waiter w;
    start(&w, OP_ONE, &task, 1, cancel_source_token(ws), CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_EQ(atomic_load(&j.runs), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_WAITING_TO_RUN);

    harness_gate_open(&blocker.go);
    ASSERT_OK(harness_call_finish(&w.call));
    ASSERT_EQ(atomic_load(&j.runs), 1);
    ASSERT_FALSE(pthread_equal(j.thread, w.call.th));
    ASSERT_TRUE(pthread_equal(j.thread, blocker.thread));
    cancel_task_release(task);
    cancel_task_release(bt);
    cancel_pool_free(pool);
    job_destroy(&j);
    job_destroy(&blocker);
    cancel_source_free(ws);
    harness_manual_clock_done(c);
}

/* A body that waits for a task queued behind it on a 1-thread pool: the
 * wait runs it inline instead of deadlocking. */
typedef struct nest {
    cancel_pool *pool;
    job inner;
    cancel_task *inner_task;
    cancel_task *current_after;
    int inner_result;
    pthread_t thread;
} nest;

static int outer_fn(void *arg, cancel_token t)
{
    (void)t;
    nest *n = arg;
    n->thread = pthread_self();
    n->inner_task = cancel_task_run(n->pool, job_fn, &n->inner, CANCEL_NONE,
                                    0);
    ASSERT_NOT_NULL(n->inner_task);
    n->inner_result =
        cancel_task_wait(n->inner_task, CANCEL_NONE, CANCEL_INFINITE);
    n->current_after = cancel_task_current();
    return 0;
}

TEST(wait_inside_body_runs_queued_task_inline)
{
    nest n;
    memset(&n, 0, sizeof(n));
    n.pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(n.pool);
    job_init(&n.inner, -ENOENT, false);
    cancel_task *outer = cancel_task_run(n.pool, outer_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(outer);
    cancel_source *ws = cancel_source_new(); /* no inlining here */
    ASSERT_OK(cancel_task_wait(outer, cancel_source_token(ws),
                               CANCEL_INFINITE));
    ASSERT_ERR(n.inner_result, -ENOENT);
    ASSERT_TRUE(pthread_equal(n.inner.thread, n.thread));
    ASSERT_TRUE(n.inner.current == n.inner_task);
    ASSERT_TRUE(n.current_after == outer); /* restored after the inline */
    ASSERT_EQ(atomic_load(&n.inner.runs), 1);
    cancel_pool_free(n.pool);
    ASSERT_EQ(atomic_load(&n.inner.runs), 1);
    cancel_task_release(n.inner_task);
    cancel_task_release(outer);
    job_destroy(&n.inner);
    cancel_source_free(ws);
}

/* ---- cancel_task_wait_all ------------------------------------------------ */

TEST(wait_all_zero_when_all_ran)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    enum { N = 10 };
    job j[N];
    cancel_task *t[N];
    for (int i = 0; i < N; i++) {
        job_init(&j[i], 0, false);
        t[i] = run_job(pool, &j[i], CANCEL_NONE);
    }
    ASSERT_OK(cancel_task_wait_all(t, N, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(cancel_task_status_of(t[i]), CANCEL_TASK_RAN_TO_COMPLETION);
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
}

/* Tasks [ran, canceled, -EIO, -EPERM], where -EPERM finishes first: the
 * first FAULTED in array order wins, and a fault beats a cancellation. */
TEST(wait_all_first_faulted_in_array_order)
{
    cancel_pool *pool = cancel_pool_new(4);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    job j[4];
    job_init(&j[0], 0, true);
    job_init(&j[1], 0, true);
    j[1].check = true;
    job_init(&j[2], -EIO, true);
    job_init(&j[3], -EPERM, true);
    cancel_task *t[4];
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], cancel_source_token(src));
    t[2] = run_job(pool, &j[2], CANCEL_NONE);
    t[3] = run_job(pool, &j[3], CANCEL_NONE);
    harness_gate_open(&j[3].go);
    ASSERT_ERR(cancel_task_wait(t[3], CANCEL_NONE, CANCEL_INFINITE), -EPERM);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&j[1].go);
    ASSERT_ERR(cancel_task_wait(t[1], CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    harness_gate_open(&j[2].go);
    harness_gate_open(&j[0].go);
    ASSERT_ERR(cancel_task_wait_all(t, 4, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    /* Reordered: the other fault comes first. */
    cancel_task *r[4] = {t[1], t[3], t[0], t[2]};
    ASSERT_ERR(cancel_task_wait_all(r, 4, CANCEL_NONE, CANCEL_INFINITE),
               -EPERM);
    for (int i = 0; i < 4; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    cancel_source_free(src);
}

TEST(wait_all_ecanceled_when_some_canceled)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_source *other = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    job j[3];
    cancel_task *t[3];
    job_init(&j[0], 0, false);
    job_init(&j[1], 0, false); /* canceled before it starts */
    job_init(&j[2], 0, false);
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], cancel_source_token(src));
    t[2] = run_job(pool, &j[2], CANCEL_NONE);
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait_all(t, 3, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(src)));
    ASSERT_EQ(cancel_task_status_of(t[0]), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_status_of(t[2]), CANCEL_TASK_RAN_TO_COMPLETION);
    for (int i = 0; i < 3; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(wait_all_own_token)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    job j[2];
    cancel_task *t[2];
    job_init(&j[0], 0, false);
    job_init(&j[1], 0, true);
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], CANCEL_NONE);
    cancel_source *ws = cancel_source_new();
    waiter w;
    start(&w, OP_ALL, t, 2, cancel_source_token(ws), CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_source_cancel(ws));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, cancel_source_token(ws)));
    ASSERT_EQ(cancel_task_status_of(t[1]), CANCEL_TASK_RUNNING);
    /* Already canceled: at once. */
    ASSERT_ERR(cancel_task_wait_all(t, 2, cancel_source_token(ws),
                                    CANCEL_INFINITE),
               -ECANCELED);
    harness_gate_open(&j[1].go);
    ASSERT_OK(cancel_task_wait_all(t, 2, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < 2; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    cancel_source_free(ws);
}

TEST(wait_all_timeout_zero)
{
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    job j[2];
    cancel_task *t[2];
    job_init(&j[0], 0, false);
    job_init(&j[1], 0, true);
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], CANCEL_NONE);
    ASSERT_OK(cancel_task_wait(t[0], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_ERR(cancel_task_wait_all(t, 2, CANCEL_NONE, 0), -ETIMEDOUT);
    harness_gate_open(&j[1].go);
    ASSERT_OK(cancel_task_wait(t[1], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_task_wait_all(t, 2, CANCEL_NONE, 0));
    for (int i = 0; i < 2; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    harness_manual_clock_done(c);
}

/* One deadline for the whole wait: time spent waiting for the first task
 * counts against the second. */
TEST(wait_all_timeout_covers_the_whole_wait)
{
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    job j[2];
    cancel_task *t[2];
    job_init(&j[0], 0, true);
    job_init(&j[1], 0, true);
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], CANCEL_NONE);
    waiter w;
    start(&w, OP_ALL, t, 2, CANCEL_NONE, 100 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 40 * MS));
    harness_gate_open(&j[0].go);
    ASSERT_OK(cancel_task_wait(t[0], CANCEL_NONE, CANCEL_INFINITE));
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 60 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1)); /* exactly the deadline */
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    ASSERT_EQ(cancel_task_status_of(t[1]), CANCEL_TASK_RUNNING);
    harness_gate_open(&j[1].go);
    ASSERT_OK(cancel_task_wait_all(t, 2, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < 2; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    harness_manual_clock_done(c);
}

/* Not yet here: the deadline passing exactly 1 ns after the first task
 * finished.  wait_all passes `left < -1 ? 0 : left` to the next wait, so
 * left == -1 becomes an infinite wait and wait_all returns only when the
 * task finishes (0 instead of -ETIMEDOUT).  The test holds the waiter in a
 * signal handler while task 0 ends and the clock moves to deadline + 1;
 * add it with the fix (wait_all_deadline_passed_by_one_ns_between_tasks). */

TEST(wait_all_wakes_when_last_finishes)
{
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    job j[3];
    cancel_task *t[3];
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], 0, true);
        t[i] = run_job(pool, &j[i], CANCEL_NONE);
    }
    waiter w;
    start(&w, OP_ALL, t, 3, CANCEL_NONE, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    harness_gate_open(&j[2].go);
    harness_gate_open(&j[0].go);
    ASSERT_OK(cancel_task_wait(t[0], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_task_wait(t[2], CANCEL_NONE, CANCEL_INFINITE));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    harness_gate_open(&j[1].go);
    ASSERT_OK(harness_call_finish(&w.call));
    for (int i = 0; i < 3; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
}

TEST(wait_all_bad_input)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, false);
    cancel_task *t[2] = {run_job(pool, &j, CANCEL_NONE), NULL};
    ASSERT_ERR(cancel_task_wait_all(NULL, 1, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait_all(t, 2, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    cancel_task *u[2] = {NULL, t[0]};
    ASSERT_ERR(cancel_task_wait_all(u, 2, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    /* Nothing to wait for: done at once. */
    ASSERT_OK(cancel_task_wait_all(NULL, 0, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_task_wait_all(t, 0, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_OK(cancel_task_wait_all(t, 1, CANCEL_NONE, CANCEL_INFINITE));
    cancel_task_release(t[0]);
    cancel_pool_free(pool);
    job_destroy(&j);
}

/* ---- cancel_task_wait_any ------------------------------------------------ */

TEST(wait_any_returns_lowest_finished_index)
{
    cancel_pool *pool = cancel_pool_new(4);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    job j[4];
    cancel_task *t[4];
    for (int i = 0; i < 4; i++)
        job_init(&j[i], 0, true);
    j[1].check = true;
    j[3].code = -EIO;
    t[0] = run_job(pool, &j[0], CANCEL_NONE);
    t[1] = run_job(pool, &j[1], cancel_source_token(src));
    t[2] = run_job(pool, &j[2], CANCEL_NONE);
    t[3] = run_job(pool, &j[3], CANCEL_NONE);

    harness_gate_open(&j[3].go);
    ASSERT_ERR(cancel_task_wait(t[3], CANCEL_NONE, CANCEL_INFINITE), -EIO);
    /* A faulted task is a finished one: an index, not an error. */
    ASSERT_EQ(cancel_task_wait_any(t, 4, CANCEL_NONE, CANCEL_INFINITE), 3);
    harness_gate_open(&j[2].go);
    ASSERT_OK(cancel_task_wait(t[2], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_wait_any(t, 4, CANCEL_NONE, CANCEL_INFINITE), 2);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&j[1].go);
    ASSERT_ERR(cancel_task_wait(t[1], CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_EQ(cancel_task_wait_any(t, 4, CANCEL_NONE, 0), 1);
    harness_gate_open(&j[0].go);
    ASSERT_OK(cancel_task_wait(t[0], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_wait_any(t, 4, CANCEL_NONE, 0), 0);
    for (int i = 0; i < 4; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    cancel_source_free(src);
}

TEST(wait_any_wakes_when_one_finishes)
{
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    job j[3];
    cancel_task *t[3];
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], 0, true);
        t[i] = run_job(pool, &j[i], CANCEL_NONE);
    }
    waiter w;
    start(&w, OP_ANY, t, 3, CANCEL_NONE, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    harness_gate_open(&j[1].go);
    ASSERT_EQ(harness_call_finish(&w.call), 1);
    for (int i = 0; i < 3; i++)
        harness_gate_open(&j[i].go);
    ASSERT_OK(cancel_task_wait_all(t, 3, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < 3; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
}

TEST(wait_any_own_token)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    job j[2];
    cancel_task *t[2];
    for (int i = 0; i < 2; i++) {
        job_init(&j[i], 0, true);
        t[i] = run_job(pool, &j[i], CANCEL_NONE);
    }
    cancel_source *ws = cancel_source_new();
    waiter w;
    start(&w, OP_ANY, t, 2, cancel_source_token(ws), CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_source_cancel(ws));
    ASSERT_ERR(harness_call_finish(&w.call), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(w.call.recorded, cancel_source_token(ws)));
    ASSERT_ERR(cancel_task_wait_any(t, 2, cancel_source_token(ws),
                                    CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(ws)));
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(cancel_task_status_of(t[i]), CANCEL_TASK_RUNNING);
        harness_gate_open(&j[i].go);
    }
    ASSERT_OK(cancel_task_wait_all(t, 2, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < 2; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    cancel_source_free(ws);
}

TEST(wait_any_timeout)
{
    cancel_clock *c = harness_manual_clock();
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    job j[2];
    cancel_task *t[2];
    for (int i = 0; i < 2; i++) {
        job_init(&j[i], 0, true);
        t[i] = run_job(pool, &j[i], CANCEL_NONE);
    }
    ASSERT_ERR(cancel_task_wait_any(t, 2, CANCEL_NONE, 0), -ETIMEDOUT);
    waiter w;
    start(&w, OP_ANY, t, 2, CANCEL_NONE, 50 * MS);
    harness_call_await_asleep(&w.call);
    ASSERT_OK(cancel_clock_advance(c, 50 * MS - 1));
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_ERR(harness_call_finish(&w.call), -ETIMEDOUT);
    for (int i = 0; i < 2; i++)
        harness_gate_open(&j[i].go);
    ASSERT_OK(cancel_task_wait_all(t, 2, CANCEL_NONE, CANCEL_INFINITE));
    for (int i = 0; i < 2; i++) {
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
    harness_manual_clock_done(c);
}

TEST(wait_any_bad_input)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, false);
    cancel_task *t[2] = {run_job(pool, &j, CANCEL_NONE), NULL};
    ASSERT_ERR(cancel_task_wait_any(t, 0, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait_any(NULL, 0, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait_any(NULL, 2, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait_any(t, 2, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    cancel_task *u[2] = {NULL, t[0]};
    ASSERT_ERR(cancel_task_wait_any(u, 2, CANCEL_NONE, CANCEL_INFINITE),
               -EINVAL);
    ASSERT_EQ(cancel_task_wait_any(t, 1, CANCEL_NONE, CANCEL_INFINITE), 0);
    cancel_task_release(t[0]);
    cancel_pool_free(pool);
    job_destroy(&j);
}

/* More tasks than the waits keep on the stack. */
TEST(wait_any_and_all_over_many_tasks)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    enum { N = 3 * CANCEL_WAIT_ANY_STACK + 1 };
    job j[N];
    cancel_task *t[N];
    for (int i = 0; i < N; i++) {
        job_init(&j[i], 0, i == N - 1 ? false : true);
        t[i] = cancel_task_run(pool, job_fn, &j[i], CANCEL_NONE, 0);
        ASSERT_NOT_NULL(t[i]);
    }
    /* Only the last can finish: gated ones hold both workers, so open
     * them one by one from the first; the last is the lowest finished
     * only while the others are running or queued. */
    ASSERT_OK(cancel_task_wait(t[N - 1], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_wait_any(t, N, CANCEL_NONE, CANCEL_INFINITE), N - 1);
    for (int i = 0; i < N - 1; i++)
        harness_gate_open(&j[i].go);
    ASSERT_OK(cancel_task_wait_all(t, N, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_wait_any(t, N, CANCEL_NONE, 0), 0);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&j[i].runs), 1);
        cancel_task_release(t[i]);
        job_destroy(&j[i]);
    }
    cancel_pool_free(pool);
}

/* ---- a canceled wait token on entry wins, as in every wait -------------- */

TEST(canceled_wait_token_wins_over_finished_tasks)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, 0, false);
    cancel_task *t[1] = {run_job(pool, &j, CANCEL_NONE)};
    ASSERT_OK(cancel_task_wait(t[0], CANCEL_NONE, CANCEL_INFINITE));
    cancel_source *ws = cancel_source_new();
    cancel_source *other = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(ws));
    cancel_token wt = cancel_source_token(ws);

    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait_all(t, 1, wt, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), wt));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait_all(t, 0, wt, 0), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), wt));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait_any(t, 1, wt, CANCEL_INFINITE), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), wt));
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait(t[0], wt, 0), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), wt));
    /* Bad input is still bad input. */
    ASSERT_ERR(cancel_task_wait_any(t, 0, wt, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait_all(NULL, 1, wt, 0), -EINVAL);

    ASSERT_EQ(cancel_task_status_of(t[0]), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(t[0]);
    cancel_pool_free(pool);
    job_destroy(&j);
    cancel_source_free(ws);
    cancel_source_free(other);
}

/* A CREATED task is waited for until it is started and ends; the wait
 * does not start it. */
TEST(wait_on_created_task_waits_until_started)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    job j;
    job_init(&j, -EIO, false);
    cancel_task *task = cancel_task_new(pool, job_fn, &j, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    waiter w;
    start(&w, OP_ONE, &task, 1, CANCEL_NONE, CANCEL_INFINITE);
    harness_call_await_asleep(&w.call);
    ASSERT_FALSE(atomic_load(&w.call.done));
    ASSERT_EQ(atomic_load(&j.runs), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_ERR(harness_call_finish(&w.call), -EIO);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    cancel_task_release(task);
    job_destroy(&j);
}

/* Regression: wait_all turned the time left before its deadline into the
 * next event wait's timeout, and a deadline passed by exactly 1 ns gave -1:
 * infinite.  The conversion is cancel__deadline_left; pin it at the edge. */
TEST(deadline_left_never_reads_as_infinite)
{
    cancel_clock *c = harness_manual_clock();
    struct cancel__deadline d;
    cancel__deadline_init(&d, 100);
    ASSERT_EQ(cancel__deadline_left(&d), 100);
    ASSERT_OK(cancel_clock_advance(c, 100));
    ASSERT_EQ(cancel__deadline_left(&d), 0);
    ASSERT_OK(cancel_clock_advance(c, 1)); /* passed by 1 ns */
    ASSERT_EQ(cancel__deadline_left(&d), 0);
    ASSERT_OK(cancel_clock_advance(c, 1000));
    ASSERT_EQ(cancel__deadline_left(&d), 0);
    cancel__deadline_init(&d, -1);
    ASSERT_EQ(cancel__deadline_left(&d), -1);
    cancel_clock_install(NULL);
    cancel_clock_free(c);
}
