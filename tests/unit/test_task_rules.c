/* Unit tests of task.h: the six rules of .NET's Task Cancellation (rules 1-5
 * here, attached children in test_task_children.c), the thread's canceled
 * token as tasks see it, bad input, and the life of a task handle.
 *
 * SCENARIOS.md F6, F8 and the negative cases of E9.  Orders are forced with
 * gates: a body that waits on a gate stays RUNNING, and on a 1-thread pool
 * a task that does so keeps every task queued after it WAITING_TO_RUN. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* ---- a configurable body ------------------------------------------------ */

enum mode {
    RET_ZERO,        /* return 0 */
    RET_CHECK,       /* return cancel_check(task token) */
    RET_THROW,       /* return cancel_throw(task token) */
    RET_WAIT,        /* return cancel_wait(task token, infinite) */
    RET_CHECK_OTHER, /* return cancel_check(other) */
    RET_THROW_OTHER, /* return cancel_throw(other) */
    RET_PLAIN,       /* return code, recording nothing */
    RET_CHECK_THEN_CODE, /* cancel_check(task token), then return code */
};

typedef struct body {
    enum mode mode;
    int code;
    cancel_token other;
    bool gated; /* open `started`, then wait for `go` */
    harness_gate started, go;
    atomic_int runs;
    pthread_t thread;
    cancel_task *current;
    cancel_token token;
    bool requested_at_return;
} body;

static void body_init(body *b, enum mode mode, bool gated)
{
    memset(b, 0, sizeof(*b));
    b->mode = mode;
    b->gated = gated;
    harness_gate_init(&b->started);
    harness_gate_init(&b->go);
}

static void body_destroy(body *b)
{
    harness_gate_destroy(&b->started);
    harness_gate_destroy(&b->go);
}

static int body_fn(void *arg, cancel_token t)
{
    body *b = arg;
    atomic_fetch_add(&b->runs, 1);
    b->thread = pthread_self();
    b->current = cancel_task_current();
    b->token = t;
    if (b->gated) {
        harness_gate_open(&b->started);
        harness_gate_wait(&b->go);
    }
    b->requested_at_return = cancel_requested(t);
    switch (b->mode) {
    case RET_ZERO:
        return 0;
    case RET_CHECK:
        return cancel_check(t);
    case RET_THROW:
        return cancel_throw(t);
    case RET_WAIT:
        return cancel_wait(t, CANCEL_INFINITE);
    case RET_CHECK_OTHER:
        return cancel_check(b->other);
    case RET_THROW_OTHER:
        return cancel_throw(b->other);
    case RET_PLAIN:
        return b->code;
    case RET_CHECK_THEN_CODE:
        (void)cancel_check(t);
        return b->code;
    }
    return -1;
}

static int count_fn(void *arg, cancel_token t)
{
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* A 1-thread pool whose worker is held by a gated task. */
typedef struct held_pool {
    cancel_pool *pool;
    body blocker;
    cancel_task *task;
} held_pool;

static void hold(held_pool *h)
{
    h->pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(h->pool);
    body_init(&h->blocker, RET_ZERO, true);
    h->task = cancel_task_run(h->pool, body_fn, &h->blocker, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(h->task);
    harness_gate_wait(&h->blocker.started);
}

static void release_hold(held_pool *h)
{
    harness_gate_open(&h->blocker.go);
    ASSERT_OK(cancel_task_wait(h->task, CANCEL_NONE, CANCEL_INFINITE));
    cancel_task_release(h->task);
    cancel_pool_free(h->pool);
    ASSERT_EQ(atomic_load(&h->blocker.runs), 1);
    body_destroy(&h->blocker);
}

/* Run a gated body with token `t` on `pool`; once it is running, cancel
 * `src` (if any) and let it return.  Returns the task, finished. */
static cancel_task *run_cancel_midway(cancel_pool *pool, body *b,
                                      cancel_source *task_src,
                                      cancel_source *cancel_src)
{
    cancel_task *task = cancel_task_run(pool, body_fn, b,
                                        cancel_source_token(task_src), 0);
    ASSERT_NOT_NULL(task);
    harness_gate_wait(&b->started);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RUNNING);
    if (cancel_src != NULL)
        ASSERT_OK(cancel_source_cancel(cancel_src));
    harness_gate_open(&b->go);
    return task;
}

static void assert_canceled(cancel_task *task)
{
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_error(task), 0);
    int codes[4] = {1, 1, 1, 1};
    ASSERT_EQ(cancel_task_errors(task, codes, 4), 0);
    ASSERT_EQ(codes[0], 1); /* nothing copied */
    ASSERT_EQ(cancel_task_errors(task, NULL, 0), 0);
}

static void assert_faulted(cancel_task *task, int code)
{
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_FAULTED);
    ASSERT_ERR(cancel_task_error(task), code);
    int codes[4] = {0};
    ASSERT_EQ(cancel_task_errors(task, codes, 4), 1);
    ASSERT_ERR(codes[0], code);
}

/* ---- rule 1: canceled before it starts ---------------------------------- */

TEST(rule1_canceled_before_run_never_runs)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    atomic_int n = 0;
    cancel_task *task = cancel_task_run(pool, count_fn, &n, t, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    assert_canceled(task);
    cancel_pool_free(pool); /* drains: a queued body would run here */
    ASSERT_EQ(atomic_load(&n), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    cancel_task_release(task);
    cancel_source_free(src);
}

TEST(rule1_canceled_between_new_and_start_never_runs)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    atomic_int n = 0;
    cancel_task *task =
        cancel_task_new(pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    assert_canceled(task);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 0);
    cancel_task_release(task);
    cancel_source_free(src);
}

/* A task canceled while it waits in the queue is CANCELED at once: its
 * waiter wakes while the only worker is still held by another task.  The
 * wait uses a token of its own (never canceled) so that it cannot run the
 * task inline: a wait that needed a worker would never return. */
TEST(rule1_canceled_in_queue_wakes_waiter_without_a_worker)
{
    held_pool h;
    hold(&h);
    cancel_source *src = cancel_source_new();
    cancel_source *waits = cancel_source_new();
    atomic_int n = 0;
    cancel_task *task =
        cancel_task_run(h.pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_WAITING_TO_RUN);

    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    ASSERT_ERR(cancel_task_wait(task, cancel_source_token(waits),
                                CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(src)));
    assert_canceled(task);
    /* The worker never got there. */
    ASSERT_FALSE(harness_gate_is_open(&h.blocker.go));
    ASSERT_EQ(cancel_task_status_of(h.task), CANCEL_TASK_RUNNING);

    release_hold(&h); /* drains the queue: the body still never runs */
    ASSERT_EQ(atomic_load(&n), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    cancel_task_release(task);
    cancel_source_free(src);
    cancel_source_free(waits);
}

/* The same with the waiter already blocked when the cancel comes: it is
 * woken by the cancel, not by a worker. */
static void *wait_task_thread(void *arg)
{
    cancel_task *task = arg;
    cancel_source *own = cancel_source_new();
    intptr_t r = cancel_task_wait(task, cancel_source_token(own),
                                  CANCEL_INFINITE);
    cancel_source_free(own);
    return (void *)r;
}

TEST(rule1_canceled_in_queue_wakes_blocked_waiter)
{
    held_pool h;
    hold(&h);
    cancel_source *src = cancel_source_new();
    atomic_int n = 0;
    cancel_task *task =
        cancel_task_run(h.pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, wait_task_thread, task), 0);
    ASSERT_OK(cancel_source_cancel(src));
    void *r;
    pthread_join(th, &r);
    ASSERT_ERR((intptr_t)r, -ECANCELED);
    ASSERT_FALSE(harness_gate_is_open(&h.blocker.go));
    release_hold(&h);
    ASSERT_EQ(atomic_load(&n), 0);
    assert_canceled(task);
    cancel_task_release(task);
    cancel_source_free(src);
}

/* ---- rule 2: a body that returns 0 ran to completion -------------------- */

TEST(rule2_return_zero_after_cancel_is_ran_to_completion)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    body b;
    body_init(&b, RET_ZERO, true);
    cancel_task *task = run_cancel_midway(pool, &b, src, src);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_TRUE(b.requested_at_return); /* it did see the request */
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_error(task), 0);
    ASSERT_EQ(cancel_task_errors(task, NULL, 0), 0);
    ASSERT_EQ(atomic_load(&b.runs), 1);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
}

TEST(rule2_return_zero_uncanceled_is_ran_to_completion)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    body b;
    body_init(&b, RET_ZERO, false);
    cancel_task *task = cancel_task_run(pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_error(task), 0);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
}

/* ---- rule 3: cancellation with the task token --------------------------- */

static void rule3_case(enum mode mode)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_source *other = cancel_source_new();
    body b;
    body_init(&b, mode, true);
    cancel_task *task = run_cancel_midway(pool, &b, src, src);

    /* Something else is recorded before the wait: the wait replaces it. */
    ASSERT_ERR(cancel_throw(cancel_source_token(other)), -ECANCELED);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(src)));
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_task_token(task)));
    assert_canceled(task);
    ASSERT_EQ(atomic_load(&b.runs), 1);
    /* A second wait says the same. */
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(rule3_check_on_canceled_task_token_is_canceled)
{
    rule3_case(RET_CHECK);
}

TEST(rule3_throw_on_canceled_task_token_is_canceled)
{
    rule3_case(RET_THROW);
}

TEST(rule3_canceled_wait_on_task_token_is_canceled)
{
    rule3_case(RET_WAIT);
}

/* ---- rule 4: any other cancellation is a fault -------------------------- */

TEST(rule4_throw_with_other_canceled_token_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_source *other = cancel_source_new();
    body b;
    body_init(&b, RET_THROW_OTHER, true);
    b.other = cancel_source_token(other);
    cancel_task *task = run_cancel_midway(pool, &b, src, other);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    assert_faulted(task, -ECANCELED);
    ASSERT_FALSE(cancel_requested(cancel_task_token(task)));
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
    cancel_source_free(other);
}

/* Library code canceled by its own token (F8) while the task token is
 * canceled too: still the other token's cancellation, so FAULTED. */
TEST(rule4_check_other_token_while_task_token_canceled_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_source *other = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(other));
    body b;
    body_init(&b, RET_CHECK_OTHER, true);
    b.other = cancel_source_token(other);
    cancel_task *task = run_cancel_midway(pool, &b, src, src);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(b.requested_at_return);
    assert_faulted(task, -ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
    cancel_source_free(other);
}

TEST(rule4_throw_task_token_not_canceled_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    body b;
    body_init(&b, RET_THROW, true);
    cancel_task *task = run_cancel_midway(pool, &b, src, NULL);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_FALSE(b.requested_at_return);
    assert_faulted(task, -ECANCELED);
    /* Canceling afterwards changes nothing. */
    ASSERT_OK(cancel_source_cancel(src));
    assert_faulted(task, -ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
}

TEST(rule4_throw_none_token_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    body b;
    body_init(&b, RET_THROW, false);
    cancel_task *task = cancel_task_run(pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    assert_faulted(task, -ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
}

TEST(rule4_plain_ecanceled_without_record_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    body b;
    body_init(&b, RET_PLAIN, true);
    b.code = -ECANCELED;
    cancel_task *task = run_cancel_midway(pool, &b, src, src);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(b.requested_at_return);
    assert_faulted(task, -ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
}

/* Recording the task token and then failing otherwise is a plain fault. */
TEST(rule4_record_then_other_error_is_faulted_with_it)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    body b;
    body_init(&b, RET_CHECK_THEN_CODE, true);
    b.code = -EIO;
    cancel_task *task = run_cancel_midway(pool, &b, src, src);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    assert_faulted(task, -EIO);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
}

/* ---- other errors ------------------------------------------------------- */

TEST(other_negative_codes_are_faulted_and_kept)
{
    static const int codes[] = {-EIO,     -EPERM,  -ENOMEM, -ETIMEDOUT,
                                -EINVAL,  -EAGAIN, -1,      -4095};
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        body b;
        body_init(&b, RET_PLAIN, false);
        b.code = codes[i];
        cancel_task *task = cancel_task_run(pool, body_fn, &b,
                                            cancel_source_token(src), 0);
        ASSERT_NOT_NULL(task);
        /* The wait reports the task's error: for -ETIMEDOUT that looks
         * like the wait's own timeout; the status tells them apart. */
        ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
                   codes[i]);
        assert_faulted(task, codes[i]);
        cancel_task_release(task);
        body_destroy(&b);
    }
    cancel_pool_free(pool);
    cancel_source_free(src);
}

/* A positive return is "any other non-zero return" too: FAULTED, the code
 * kept as it is, and the wait returns it unchanged (observed behaviour: the
 * wait does not negate or map it). */
TEST(positive_code_is_faulted_and_kept)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    body b;
    body_init(&b, RET_PLAIN, false);
    b.code = 42;
    cancel_task *task = cancel_task_run(pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), 42);
    assert_faulted(task, 42);
    cancel_task_release(task);

    /* ECANCELED as a positive code is not a cancellation either. */
    body c;
    body_init(&c, RET_PLAIN, false);
    c.code = ECANCELED;
    task = cancel_task_run(pool, body_fn, &c, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
              ECANCELED);
    assert_faulted(task, ECANCELED);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    body_destroy(&c);
}

/* ---- rule 5: a canceled task is not a faulted one ----------------------- */

TEST(rule5_waiting_on_canceled_differs_from_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_source *src2 = cancel_source_new(); /* never canceled */
    cancel_source *other = cancel_source_new();

    body bc, bf;
    body_init(&bc, RET_CHECK, true);
    body_init(&bf, RET_CHECK_OTHER, true);
    bf.other = cancel_source_token(other);
    ASSERT_OK(cancel_source_cancel(other));
    cancel_task *canceled = run_cancel_midway(pool, &bc, src, src);
    cancel_task *faulted = run_cancel_midway(pool, &bf, src2, NULL);

    ASSERT_ERR(cancel_task_wait(canceled, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                   cancel_source_token(src)));
    ASSERT_ERR(cancel_task_wait(faulted, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    /* Both waits said -ECANCELED; status and error tell them apart. */
    ASSERT_EQ(cancel_task_status_of(canceled), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(faulted), CANCEL_TASK_FAULTED);
    ASSERT_EQ(cancel_task_error(canceled), 0);
    ASSERT_ERR(cancel_task_error(faulted), -ECANCELED);
    ASSERT_EQ(cancel_task_errors(canceled, NULL, 0), 0);
    ASSERT_EQ(cancel_task_errors(faulted, NULL, 0), 1);

    cancel_task_release(canceled);
    cancel_task_release(faulted);
    cancel_pool_free(pool);
    body_destroy(&bc);
    body_destroy(&bf);
    cancel_source_free(src);
    cancel_source_free(src2);
    cancel_source_free(other);
}

/* ---- the thread's canceled token across tasks --------------------------- */

/* Task A leaves token X recorded on the worker; task B, with token X, runs
 * next on the same worker, sees X canceled and returns -ECANCELED without
 * recording anything.  Only what B's body recorded counts: FAULTED. */
TEST(stale_record_on_worker_does_not_make_next_task_canceled)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_source *x = cancel_source_new();
    body a, b;
    body_init(&a, RET_THROW_OTHER, false);
    a.other = cancel_source_token(x);
    body_init(&b, RET_PLAIN, true);
    b.code = -ECANCELED;

    cancel_task *ta = cancel_task_run(pool, body_fn, &a, CANCEL_NONE, 0);
    cancel_task *tb =
        cancel_task_run(pool, body_fn, &b, cancel_source_token(x), 0);
    ASSERT_NOT_NULL(ta);
    ASSERT_NOT_NULL(tb);
    harness_gate_wait(&b.started);
    ASSERT_EQ(cancel_task_status_of(ta), CANCEL_TASK_FAULTED);
    ASSERT_TRUE(pthread_equal(a.thread, b.thread)); /* same worker */
    ASSERT_OK(cancel_source_cancel(x));
    harness_gate_open(&b.go);

    ASSERT_ERR(cancel_task_wait(tb, CANCEL_NONE, CANCEL_INFINITE), -ECANCELED);
    assert_faulted(tb, -ECANCELED);
    assert_faulted(ta, -ECANCELED);
    cancel_task_release(ta);
    cancel_task_release(tb);
    cancel_pool_free(pool);
    body_destroy(&a);
    body_destroy(&b);
    cancel_source_free(x);
}

/* The same on a thread that runs a task inline in a wait: what the waiting
 * thread recorded before does not count for the inlined body. */
struct canceler {
    atomic_int runs;
    pthread_t thread;
    cancel_source *src;
};

static int cancel_own_then_plain(void *arg, cancel_token t)
{
    struct canceler *c = arg;
    atomic_fetch_add(&c->runs, 1);
    c->thread = pthread_self();
    ASSERT_OK(cancel_source_cancel(c->src));
    ASSERT_TRUE(cancel_requested(t));
    return -ECANCELED; /* nothing recorded by this body */
}

TEST(stale_record_on_inlining_thread_does_not_make_task_canceled)
{
    held_pool h;
    hold(&h);
    struct canceler c = {.runs = 0};
    c.src = cancel_source_new();
    cancel_token x = cancel_source_token(c.src);
    cancel_task *task = cancel_task_run(h.pool, cancel_own_then_plain, &c, x,
                                        0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_WAITING_TO_RUN);

    ASSERT_ERR(cancel_throw(x), -ECANCELED); /* the waiting thread's record */
    /* CANCEL_NONE and an infinite wait: run inline on this thread. */
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_EQ(atomic_load(&c.runs), 1);
    ASSERT_TRUE(pthread_equal(c.thread, pthread_self()));
    assert_faulted(task, -ECANCELED);
    release_hold(&h);
    ASSERT_EQ(atomic_load(&c.runs), 1);
    cancel_task_release(task);
    cancel_source_free(c.src);
}

/* ---- bad input ---------------------------------------------------------- */

TEST(task_new_bad_input_is_einval)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    errno = 0;
    ASSERT_NULL(cancel_task_new(NULL, count_fn, &n, CANCEL_NONE, 0));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_task_new(pool, NULL, &n, CANCEL_NONE, 0));
    ASSERT_EQ(errno, EINVAL);
    static const unsigned bad[] = {1u << 1, 1u << 7, 1u << 31,
                                   CANCEL_CONTINUE_ON_CANCELED,
                                   CANCEL_CONTINUE_ON_FAULTED |
                                       CANCEL_TASK_ATTACHED};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        ASSERT_NULL(cancel_task_new(pool, count_fn, &n, CANCEL_NONE, bad[i]));
        ASSERT_EQ(errno, EINVAL);
        errno = 0;
        ASSERT_NULL(cancel_task_run(pool, count_fn, &n, CANCEL_NONE, bad[i]));
        ASSERT_EQ(errno, EINVAL);
    }
    errno = 0;
    ASSERT_NULL(cancel_task_run(NULL, count_fn, &n, CANCEL_NONE, 0));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_task_run(pool, NULL, &n, CANCEL_NONE, 0));
    ASSERT_EQ(errno, EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 0);
}

TEST(task_start_twice_is_einval)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    body b;
    body_init(&b, RET_ZERO, true);
    cancel_task *task = cancel_task_new(pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_ERR(cancel_task_start(task), -EINVAL); /* queued or running */
    harness_gate_wait(&b.started);
    ASSERT_ERR(cancel_task_start(task), -EINVAL); /* running */
    harness_gate_open(&b.go);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_ERR(cancel_task_start(task), -EINVAL); /* finished */
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&b.runs), 1);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(task);

    /* cancel_task_run already started it. */
    pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    task = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_ERR(cancel_task_start(task), -EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
    cancel_task_release(task);
    body_destroy(&b);
}

TEST(task_start_null_is_einval)
{
    ASSERT_ERR(cancel_task_start(NULL), -EINVAL);
}

/* A canceled-before-start task cannot be started again either. */
TEST(task_start_after_canceled_start_is_einval)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    atomic_int n = 0;
    cancel_task *task =
        cancel_task_new(pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_ERR(cancel_task_start(task), -EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    cancel_task_release(task);
    cancel_source_free(src);
}

static int cont_count(cancel_task *antecedent, void *arg, cancel_token t)
{
    (void)antecedent;
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

TEST(task_start_on_continuation_is_einval)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0, m = 0;
    cancel_task *ante = cancel_task_new(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(ante);
    cancel_task *cont =
        cancel_task_continue_with(ante, cont_count, &m, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(cont);
    ASSERT_EQ(cancel_task_status_of(cont), CANCEL_TASK_CREATED);
    ASSERT_ERR(cancel_task_start(cont), -EINVAL);
    ASSERT_EQ(cancel_task_status_of(cont), CANCEL_TASK_CREATED);
    ASSERT_OK(cancel_task_start(ante));
    ASSERT_OK(cancel_task_wait(cont, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_ERR(cancel_task_start(cont), -EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
    ASSERT_EQ(atomic_load(&m), 1); /* it started itself, once */
    cancel_task_release(ante);
    cancel_task_release(cont);
}

TEST(continue_with_bad_input_is_einval)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0, m = 0;
    cancel_task *ante = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(ante);
    errno = 0;
    ASSERT_NULL(cancel_task_continue_with(NULL, cont_count, &m, CANCEL_NONE,
                                          0));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_task_continue_with(ante, NULL, &m, CANCEL_NONE, 0));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(
        cancel_task_continue_with(ante, cont_count, &m, CANCEL_NONE, 1u << 3));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_task_continue_with(ante, cont_count, &m, CANCEL_NONE,
                                          1u << 20));
    ASSERT_EQ(errno, EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&m), 0);
    cancel_task_release(ante);
}

TEST(null_handles_are_harmless)
{
    cancel_task_release(NULL);
    ASSERT_NULL(cancel_task_retain(NULL));
    ASSERT_EQ(cancel_task_status_of(NULL), CANCEL_TASK_CREATED);
    ASSERT_TRUE(cancel_token_equal(cancel_task_token(NULL), CANCEL_NONE));
    ASSERT_FALSE(cancel_can_be_canceled(cancel_task_token(NULL)));
    ASSERT_EQ(cancel_task_error(NULL), 0);
    int codes[2] = {7, 7};
    ASSERT_EQ(cancel_task_errors(NULL, codes, 2), 0);
    ASSERT_EQ(codes[0], 7);
    ASSERT_ERR(cancel_task_wait(NULL, CANCEL_NONE, 0), -EINVAL);
    ASSERT_ERR(cancel_task_wait(NULL, CANCEL_NONE, CANCEL_INFINITE), -EINVAL);
}

/* ---- the life of a task ------------------------------------------------- */

TEST(created_task_never_runs_until_started)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0, other = 0;
    cancel_task *task = cancel_task_new(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    /* The pool is busy with other work meanwhile. */
    for (int i = 0; i < 20; i++) {
        cancel_task *t2 = cancel_task_run(pool, count_fn, &other, CANCEL_NONE,
                                          0);
        ASSERT_NOT_NULL(t2);
        ASSERT_OK(cancel_task_wait(t2, CANCEL_NONE, CANCEL_INFINITE));
        cancel_task_release(t2);
    }
    ASSERT_EQ(atomic_load(&other), 20);
    ASSERT_EQ(atomic_load(&n), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_EQ(cancel_task_error(task), 0);

    ASSERT_OK(cancel_task_start(task));
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&n), 1);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
    cancel_task_release(task);
}

/* A CREATED task is not run by the drain of its pool either. */
TEST(created_task_is_not_run_by_pool_free)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    cancel_task *task = cancel_task_new(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 0);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    cancel_task_release(task);
}

TEST(status_goes_through_the_states)
{
    held_pool h;
    hold(&h);
    body b;
    body_init(&b, RET_ZERO, true);
    cancel_task *task = cancel_task_new(h.pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CREATED);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_WAITING_TO_RUN);
    harness_gate_open(&h.blocker.go);
    harness_gate_wait(&b.started);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RUNNING);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ETIMEDOUT);
    harness_gate_open(&b.go);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
    release_hold(&h);
    cancel_task_release(task);
    body_destroy(&b);
}

TEST(current_is_the_running_task_and_null_outside)
{
    ASSERT_NULL(cancel_task_current());
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    body b;
    body_init(&b, RET_ZERO, false);
    cancel_task *task = cancel_task_new(pool, body_fn, &b, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_start(task));
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_TRUE(b.current == task);
    ASSERT_NULL(cancel_task_current());
    cancel_pool_free(pool);
    cancel_task_release(task);
    body_destroy(&b);
}

/* A plain pool item on a worker that has run tasks sees no current task. */
static void current_item(void *arg)
{
    *(cancel_task *volatile *)arg = cancel_task_current();
}

TEST(current_is_null_in_a_pool_item_after_a_task)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    cancel_task *task = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    cancel_task *seen = task; /* anything but NULL */
    ASSERT_OK(cancel_pool_queue(pool, current_item, &seen));
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
    ASSERT_NULL(seen);
    cancel_task_release(task);
}

TEST(body_gets_its_arg_and_the_task_token)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    body b;
    body_init(&b, RET_ZERO, false);
    cancel_task *task =
        cancel_task_run(pool, body_fn, &b, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    ASSERT_TRUE(cancel_token_equal(cancel_task_token(task),
                                   cancel_source_token(src)));
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_TRUE(cancel_token_equal(b.token, cancel_source_token(src)));
    ASSERT_EQ(atomic_load(&b.runs), 1);
    cancel_task_release(task);
    cancel_pool_free(pool);
    body_destroy(&b);
    cancel_source_free(src);
}

/* The task holds a reference on its token: the source may be freed before
 * the task runs (ASan sees a use after free otherwise). */
TEST(task_keeps_its_token_alive)
{
    held_pool h;
    hold(&h);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    body b;
    body_init(&b, RET_CHECK, false);
    cancel_task *task = cancel_task_run(h.pool, body_fn, &b, t, 0);
    ASSERT_NOT_NULL(task);
    cancel_source_free(src); /* uncanceled: now it never can be */
    release_hold(&h);
    ASSERT_EQ(atomic_load(&b.runs), 1);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_FALSE(b.requested_at_return);
    cancel_task_release(task);
    body_destroy(&b);
}

/* Canceled, then freed, while queued: still CANCELED without running. */
TEST(task_keeps_its_canceled_token_alive)
{
    held_pool h;
    hold(&h);
    cancel_source *src = cancel_source_new();
    atomic_int n = 0;
    cancel_task *task =
        cancel_task_run(h.pool, count_fn, &n, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_source_cancel(src));
    cancel_source_free(src);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, 0), -ECANCELED);
    ASSERT_TRUE(cancel_requested(cancel_task_token(task)));
    release_hold(&h);
    ASSERT_EQ(atomic_load(&n), 0);
    assert_canceled(task);
    cancel_task_release(task);
}

TEST(retain_gives_another_handle)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    atomic_int n = 0;
    cancel_task *task = cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    cancel_task *again = cancel_task_retain(task);
    ASSERT_TRUE(again == task);
    cancel_task_release(task);
    /* The second handle still works. */
    ASSERT_OK(cancel_task_wait(again, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(again), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(again);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 1);
}

/* Releasing the only handle does not stop the task: it runs to its end. */
TEST(release_before_run_still_runs)
{
    held_pool h;
    hold(&h);
    atomic_int n = 0;
    for (int i = 0; i < 10; i++) {
        cancel_task *task =
            cancel_task_run(h.pool, count_fn, &n, CANCEL_NONE, 0);
        ASSERT_NOT_NULL(task);
        cancel_task_release(task);
    }
    ASSERT_EQ(atomic_load(&n), 0);
    release_hold(&h);
    ASSERT_EQ(atomic_load(&n), 10);
}
