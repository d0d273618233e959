/* Unit tests of continuations (cancel_task_continue_with): they run after
 * their antecedent, get it as an argument, are filtered by how it ended
 * (TaskContinuationOptions.OnlyOn*: a continuation that does not match ends
 * CANCELED and never runs its body), start at once on a finished
 * antecedent, follow the task rules with their own token, and chain. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- antecedents -------------------------------------------------------- */

typedef struct ante {
    harness_gate started, go;
    bool gated;
    int how; /* 0: return 0; 1: cancel_check(t) (canceled); 2: -EIO */
    atomic_int runs;
} ante;

static int ante_fn(void *arg, cancel_token t)
{
    ante *a = arg;
    atomic_fetch_add(&a->runs, 1);
    if (a->gated) {
        harness_gate_open(&a->started);
        harness_gate_wait(&a->go);
    }
    switch (a->how) {
    case 0:
        return 0;
    case 1:
        return cancel_check(t);
    default:
        return -EIO;
    }
}

static void ante_init(ante *a, int how, bool gated)
{
    memset(a, 0, sizeof(*a));
    a->how = how;
    a->gated = gated;
    harness_gate_init(&a->started);
    harness_gate_init(&a->go);
}

static void ante_destroy(ante *a)
{
    harness_gate_destroy(&a->started);
    harness_gate_destroy(&a->go);
}

static int count_fn(void *arg, cancel_token t)
{
    (void)t;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* ---- continuations ------------------------------------------------------ */

typedef struct cont {
    atomic_int runs;
    cancel_task *antecedent;       /* as passed in */
    cancel_task_status ante_status; /* as seen inside */
    cancel_task *current;
    cancel_token token;
    int ret;
    bool check; /* return cancel_check(t) */
    /* a shared log of run order */
    atomic_int *log_n;
    int *log;
    int id;
} cont;

static int cont_fn(cancel_task *antecedent, void *arg, cancel_token t)
{
    cont *c = arg;
    atomic_fetch_add(&c->runs, 1);
    c->antecedent = antecedent;
    c->ante_status = cancel_task_status_of(antecedent);
    c->current = cancel_task_current();
    c->token = t;
    if (c->log != NULL)
        c->log[atomic_fetch_add(c->log_n, 1)] = c->id;
    return c->check ? cancel_check(t) : c->ret;
}

/* An antecedent on token t that will end `how` (0 ran, 1 canceled, 2
 * faulted), running and held at its gate until a->go opens. */
static cancel_task *running_antecedent(cancel_pool *pool, ante *a,
                                       cancel_token t, int how)
{
    ante_init(a, how, true);
    cancel_task *task = cancel_task_run(pool, ante_fn, a, t, 0);
    ASSERT_NOT_NULL(task);
    harness_gate_wait(&a->started);
    return task;
}

/* An antecedent that ended `how` (0 ran, 1 canceled, 2 faulted). */
static cancel_task *finished_antecedent(cancel_pool *pool, ante *a,
                                        cancel_source *src, int how)
{
    cancel_task *task =
        running_antecedent(pool, a, cancel_source_token(src), how);
    if (how == 1)
        ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&a->go);
    return task;
}

static const cancel_task_status ending[3] = {
    CANCEL_TASK_RAN_TO_COMPLETION, CANCEL_TASK_CANCELED, CANCEL_TASK_FAULTED};

/* For one filter: a continuation made before the antecedent ends, and one
 * made after, for each of the three endings.  `runs_on[how]` says whether
 * the filter accepts that ending. */
static void filter_case(unsigned flags, const bool runs_on[3])
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    for (int how = 0; how < 3; how++) {
        for (int late = 0; late < 2; late++) {
            cancel_source *src = cancel_source_new();
            ante a;
            cont c;
            memset(&c, 0, sizeof(c));
            cancel_task *task, *ct;
            if (!late) {
                ante_init(&a, how, true);
                task = cancel_task_run(pool, ante_fn, &a,
                                       cancel_source_token(src), 0);
                ASSERT_NOT_NULL(task);
                harness_gate_wait(&a.started);
                ct = cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE,
                                               flags);
                ASSERT_NOT_NULL(ct);
                ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CREATED);
                if (how == 1)
                    ASSERT_OK(cancel_source_cancel(src));
                harness_gate_open(&a.go);
            } else {
                task = finished_antecedent(pool, &a, src, how);
                cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
                ct = cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE,
                                               flags);
                ASSERT_NOT_NULL(ct);
            }
            int r = cancel_task_wait(ct, CANCEL_NONE, CANCEL_INFINITE);
            ASSERT_EQ(cancel_task_status_of(task), ending[how]);
            if (runs_on[how]) {
                ASSERT_OK(r);
                ASSERT_EQ(atomic_load(&c.runs), 1);
                ASSERT_TRUE(c.antecedent == task);
                ASSERT_EQ(c.ante_status, ending[how]);
                ASSERT_EQ(cancel_task_status_of(ct),
                          CANCEL_TASK_RAN_TO_COMPLETION);
            } else {
                ASSERT_ERR(r, -ECANCELED);
                ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CANCELED);
                ASSERT_EQ(cancel_task_error(ct), 0);
            }
            cancel_task_release(ct);
            cancel_task_release(task);
            cancel_source_free(src);
            /* Bodies that did not run never will: check after a drain. */
            if (how == 2 && late == 1) {
                cancel_pool_free(pool);
                pool = cancel_pool_new(2);
                ASSERT_NOT_NULL(pool);
            }
            ASSERT_EQ(atomic_load(&c.runs), runs_on[how] ? 1 : 0);
            ante_destroy(&a);
        }
    }
    cancel_pool_free(pool);
}

TEST(continue_any_runs_on_every_ending)
{
    filter_case(0, (const bool[3]){true, true, true});
}

TEST(continue_on_ran_to_completion_filter)
{
    filter_case(CANCEL_CONTINUE_ON_RAN_TO_COMPLETION,
                (const bool[3]){true, false, false});
}

TEST(continue_on_canceled_filter)
{
    filter_case(CANCEL_CONTINUE_ON_CANCELED,
                (const bool[3]){false, true, false});
}

TEST(continue_on_faulted_filter)
{
    filter_case(CANCEL_CONTINUE_ON_FAULTED,
                (const bool[3]){false, false, true});
}

TEST(continue_on_combined_filters)
{
    filter_case(CANCEL_CONTINUE_ON_CANCELED | CANCEL_CONTINUE_ON_FAULTED,
                (const bool[3]){false, true, true});
    filter_case(CANCEL_CONTINUE_ON_RAN_TO_COMPLETION |
                    CANCEL_CONTINUE_ON_FAULTED,
                (const bool[3]){true, false, true});
    filter_case(CANCEL_CONTINUE_ON_RAN_TO_COMPLETION |
                    CANCEL_CONTINUE_ON_CANCELED | CANCEL_CONTINUE_ON_FAULTED,
                (const bool[3]){true, true, true});
}

/* ---- when it runs ------------------------------------------------------- */

TEST(continuation_waits_for_its_antecedent)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ante a;
    cancel_task *task = running_antecedent(pool, &a, CANCEL_NONE, 0);
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_source *src = cancel_source_new();
    cancel_task *ct = cancel_task_continue_with(task, cont_fn, &c,
                                                cancel_source_token(src), 0);
    ASSERT_NOT_NULL(ct);
    ASSERT_TRUE(cancel_token_equal(cancel_task_token(ct),
                                   cancel_source_token(src)));
    /* The other worker is free and runs other tasks meanwhile; the
     * continuation waits for its antecedent. */
    atomic_int n = 0;
    for (int i = 0; i < 10; i++) {
        cancel_task *other =
            cancel_task_run(pool, count_fn, &n, CANCEL_NONE, 0);
        ASSERT_NOT_NULL(other);
        cancel_source *w = cancel_source_new(); /* no inlining */
        ASSERT_OK(cancel_task_wait(other, cancel_source_token(w),
                                   CANCEL_INFINITE));
        cancel_source_free(w);
        cancel_task_release(other);
    }
    ASSERT_EQ(atomic_load(&n), 10);
    ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CREATED);
    ASSERT_ERR(cancel_task_wait(ct, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_EQ(atomic_load(&c.runs), 0);

    harness_gate_open(&a.go);
    ASSERT_OK(cancel_task_wait(ct, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&c.runs), 1);
    ASSERT_TRUE(c.antecedent == task);
    ASSERT_EQ(c.ante_status, CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_TRUE(c.current == ct);
    ASSERT_TRUE(cancel_token_equal(c.token, cancel_source_token(src)));
    cancel_task_release(ct);
    cancel_task_release(task);
    cancel_pool_free(pool);
    ante_destroy(&a);
    cancel_source_free(src);
}

/* On a finished antecedent the continuation starts at once: a wait that
 * cannot run it inline (it has a token) still returns. */
TEST(continuation_on_finished_antecedent_starts_at_once)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ante a;
    ante_init(&a, 2, false);
    cancel_task *task = cancel_task_run(pool, ante_fn, &a, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_task *ct = cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE,
                                                CANCEL_CONTINUE_ON_FAULTED);
    ASSERT_NOT_NULL(ct);
    ASSERT_NE(cancel_task_status_of(ct), CANCEL_TASK_CREATED);
    cancel_source *w = cancel_source_new();
    ASSERT_OK(cancel_task_wait(ct, cancel_source_token(w), CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&c.runs), 1);
    ASSERT_TRUE(c.antecedent == task);
    cancel_task_release(ct);
    cancel_task_release(task);
    cancel_pool_free(pool);
    ante_destroy(&a);
    cancel_source_free(w);
}

/* A non-matching continuation on a finished antecedent is CANCELED at once,
 * before continue_with returns. */
TEST(non_matching_continuation_on_finished_antecedent_canceled_at_once)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    ante a;
    ante_init(&a, 0, false);
    cancel_task *task = cancel_task_run(pool, ante_fn, &a, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_task *ct = cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE,
                                                CANCEL_CONTINUE_ON_FAULTED);
    ASSERT_NOT_NULL(ct);
    ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CANCELED);
    ASSERT_ERR(cancel_task_wait(ct, CANCEL_NONE, 0), -ECANCELED);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&c.runs), 0);
    cancel_task_release(ct);
    cancel_task_release(task);
    ante_destroy(&a);
}

/* An antecedent canceled in the queue (no worker free) cancels its
 * non-matching continuation at once too. */
TEST(continuation_of_task_canceled_in_queue_is_decided_at_once)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    ante blocker;
    cancel_task *bt = running_antecedent(pool, &blocker, CANCEL_NONE, 0);

    cancel_source *src = cancel_source_new();
    ante a;
    ante_init(&a, 0, false);
    cancel_task *task =
        cancel_task_run(pool, ante_fn, &a, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(task);
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_task *ct =
        cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE,
                                  CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
    ASSERT_NOT_NULL(ct);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(bt), CANCEL_TASK_RUNNING);

    harness_gate_open(&blocker.go);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&a.runs), 0);
    ASSERT_EQ(atomic_load(&c.runs), 0);
    cancel_task_release(ct);
    cancel_task_release(task);
    cancel_task_release(bt);
    ante_destroy(&a);
    ante_destroy(&blocker);
    cancel_source_free(src);
}

/* ---- its own token ------------------------------------------------------- */

TEST(continuation_with_canceled_token_never_runs)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    for (int late = 0; late < 2; late++) {
        ante a;
        cancel_task *task = running_antecedent(pool, &a, CANCEL_NONE, 0);
        cancel_source *cs = cancel_source_new();
        cont c;
        memset(&c, 0, sizeof(c));
        if (late) {
            harness_gate_open(&a.go);
            ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));
        }
        ASSERT_OK(cancel_source_cancel(cs));
        cancel_task *ct = cancel_task_continue_with(
            task, cont_fn, &c, cancel_source_token(cs), 0);
        ASSERT_NOT_NULL(ct);
        harness_gate_open(&a.go);
        ASSERT_ERR(cancel_task_wait(ct, CANCEL_NONE, CANCEL_INFINITE),
                   -ECANCELED);
        ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                       cancel_source_token(cs)));
        ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CANCELED);
        ASSERT_EQ(cancel_task_error(ct), 0);
        ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_RAN_TO_COMPLETION);
        cancel_pool_free(pool);
        ASSERT_EQ(atomic_load(&c.runs), 0);
        pool = cancel_pool_new(2);
        ASSERT_NOT_NULL(pool);
        cancel_task_release(ct);
        cancel_task_release(task);
        cancel_source_free(cs);
        ante_destroy(&a);
    }
    cancel_pool_free(pool);
}

/* The task rules apply to a continuation's body with its own token. */
TEST(continuation_body_follows_the_task_rules)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ante a;
    ante_init(&a, 0, false);
    cancel_task *task = cancel_task_run(pool, ante_fn, &a, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    ASSERT_OK(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE));

    cont c1, c2, c3;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    memset(&c3, 0, sizeof(c3));
    c1.ret = -EIO;
    c2.check = true; /* token never canceled: 0 */
    c3.ret = -ECANCELED; /* nothing recorded: FAULTED */
    cancel_source *s = cancel_source_new();
    cancel_task *t1 = cancel_task_continue_with(task, cont_fn, &c1,
                                                CANCEL_NONE, 0);
    cancel_task *t2 = cancel_task_continue_with(task, cont_fn, &c2,
                                                cancel_source_token(s), 0);
    cancel_task *t3 = cancel_task_continue_with(task, cont_fn, &c3,
                                                CANCEL_NONE, 0);
    ASSERT_NOT_NULL(t1);
    ASSERT_NOT_NULL(t2);
    ASSERT_NOT_NULL(t3);
    ASSERT_ERR(cancel_task_wait(t1, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(t1), CANCEL_TASK_FAULTED);
    ASSERT_OK(cancel_task_wait(t2, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(t2), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_ERR(cancel_task_wait(t3, CANCEL_NONE, CANCEL_INFINITE), -ECANCELED);
    ASSERT_EQ(cancel_task_status_of(t3), CANCEL_TASK_FAULTED);
    cancel_task_release(t1);
    cancel_task_release(t2);
    cancel_task_release(t3);
    cancel_task_release(task);
    cancel_pool_free(pool);
    ante_destroy(&a);
    cancel_source_free(s);
}

/* A continuation canceled with its own token while it runs (rule 3). */
typedef struct gated_cont {
    harness_gate started, go;
    atomic_int runs;
} gated_cont;

static int gated_cont_fn(cancel_task *antecedent, void *arg, cancel_token t)
{
    (void)antecedent;
    gated_cont *g = arg;
    atomic_fetch_add(&g->runs, 1);
    harness_gate_open(&g->started);
    harness_gate_wait(&g->go);
    return cancel_check(t);
}

TEST(continuation_canceled_while_running_is_canceled)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ante a;
    ante_init(&a, 0, false);
    cancel_task *task = cancel_task_run(pool, ante_fn, &a, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(task);
    gated_cont g = {.runs = 0};
    harness_gate_init(&g.started);
    harness_gate_init(&g.go);
    cancel_source *s = cancel_source_new();
    cancel_task *ct = cancel_task_continue_with(task, gated_cont_fn, &g,
                                                cancel_source_token(s), 0);
    ASSERT_NOT_NULL(ct);
    harness_gate_wait(&g.started);
    ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_RUNNING);
    ASSERT_OK(cancel_source_cancel(s));
    harness_gate_open(&g.go);
    ASSERT_ERR(cancel_task_wait(ct, CANCEL_NONE, CANCEL_INFINITE), -ECANCELED);
    ASSERT_EQ(cancel_task_status_of(ct), CANCEL_TASK_CANCELED);
    ASSERT_EQ(atomic_load(&g.runs), 1);
    cancel_task_release(ct);
    cancel_task_release(task);
    cancel_pool_free(pool);
    ante_destroy(&a);
    harness_gate_destroy(&g.started);
    harness_gate_destroy(&g.go);
    cancel_source_free(s);
}

/* ---- chains and fans ---------------------------------------------------- */

TEST(chain_of_continuations_runs_in_order)
{
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    ante a;
    cancel_task *first = running_antecedent(pool, &a, CANCEL_NONE, 0);

    enum { N = 8 };
    atomic_int log_n = 0;
    int log[N];
    cont c[N];
    cancel_task *t[N + 1];
    t[0] = first;
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].log_n = &log_n;
        c[i].log = log;
        c[i].id = i;
        t[i + 1] = cancel_task_continue_with(t[i], cont_fn, &c[i], CANCEL_NONE,
                                             0);
        ASSERT_NOT_NULL(t[i + 1]);
    }
    ASSERT_EQ(atomic_load(&log_n), 0);
    harness_gate_open(&a.go);
    ASSERT_OK(cancel_task_wait(t[N], CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&log_n), N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(log[i], i);
        ASSERT_TRUE(c[i].antecedent == t[i]);
        ASSERT_EQ(c[i].ante_status, CANCEL_TASK_RAN_TO_COMPLETION);
        ASSERT_EQ(atomic_load(&c[i].runs), 1);
    }
    for (int i = 0; i <= N; i++)
        cancel_task_release(t[i]);
    cancel_pool_free(pool);
    ante_destroy(&a);
}

/* A chain through filters: the antecedent is canceled; the
 * ON_RAN_TO_COMPLETION step is CANCELED without running, so the next,
 * ON_CANCELED, runs; the one after, ON_FAULTED, does not. */
TEST(chain_with_filters_follows_each_ending)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    ante a;
    cancel_task *t0 = finished_antecedent(pool, &a, src, 1);
    cont c1, c2, c3, c4;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    memset(&c3, 0, sizeof(c3));
    memset(&c4, 0, sizeof(c4));
    c2.ret = -EIO;
    cancel_task *t1 = cancel_task_continue_with(
        t0, cont_fn, &c1, CANCEL_NONE, CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
    cancel_task *t2 = cancel_task_continue_with(t1, cont_fn, &c2, CANCEL_NONE,
                                                CANCEL_CONTINUE_ON_CANCELED);
    cancel_task *t3 = cancel_task_continue_with(
        t2, cont_fn, &c3, CANCEL_NONE, CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
    cancel_task *t4 = cancel_task_continue_with(t3, cont_fn, &c4, CANCEL_NONE,
                                                CANCEL_CONTINUE_ON_CANCELED);
    ASSERT_NOT_NULL(t1);
    ASSERT_NOT_NULL(t2);
    ASSERT_NOT_NULL(t3);
    ASSERT_NOT_NULL(t4);
    ASSERT_OK(cancel_task_wait(t4, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(t0), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(t1), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(t2), CANCEL_TASK_FAULTED);
    ASSERT_EQ(cancel_task_status_of(t3), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(t4), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(atomic_load(&c2.runs), 1);
    ASSERT_EQ(atomic_load(&c4.runs), 1);
    ASSERT_EQ(c2.ante_status, CANCEL_TASK_CANCELED);
    ASSERT_EQ(c4.ante_status, CANCEL_TASK_CANCELED);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&c1.runs), 0);
    ASSERT_EQ(atomic_load(&c3.runs), 0);
    cancel_task *all[] = {t0, t1, t2, t3, t4};
    for (int i = 0; i < 5; i++)
        cancel_task_release(all[i]);
    ante_destroy(&a);
    cancel_source_free(src);
}

static void *cancel_main(void *src)
{
    cancel_source_cancel(src);
    return NULL;
}

/* A long chain of continuations that are all filtered out: each is
 * decided (CANCELED) on the thread that finished the one before it, one
 * after the other, not recursively.  The antecedent is canceled in the
 * queue by a thread with a 256 KiB stack, so the whole chain is decided on
 * it: 100,000 nested finalizations would overflow that stack many times. */
TEST(long_chain_of_skipped_continuations_needs_no_deep_stack)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    ante blocker;
    cancel_task *bt = running_antecedent(pool, &blocker, CANCEL_NONE, 0);
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    ante a;
    ante_init(&a, 0, false);
    cancel_task *t0 =
        cancel_task_run(pool, ante_fn, &a, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(t0); /* queued behind the blocker */
    size_t n = (size_t)harness_scale(100000);
    cancel_task **chain = malloc(n * sizeof(*chain));
    ASSERT_NOT_NULL(chain);
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_task *prev = t0;
    for (size_t i = 0; i < n; i++) {
        chain[i] = cancel_task_continue_with(
            prev, cont_fn, &c, CANCEL_NONE,
            CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
        ASSERT_NOT_NULL(chain[i]);
        prev = chain[i];
    }
    pthread_attr_t attr;
    ASSERT_EQ(pthread_attr_init(&attr), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&attr, 256 * 1024), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, &attr, cancel_main, src), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    /* Decided before cancel returned, on that thread. */
    ASSERT_EQ(cancel_task_status_of(t0), CANCEL_TASK_CANCELED);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(cancel_task_status_of(chain[i]), CANCEL_TASK_CANCELED);
    ASSERT_EQ(atomic_load(&c.runs), 0);
    ASSERT_EQ(atomic_load(&a.runs), 0);
    harness_gate_open(&blocker.go);
    cancel_pool_free(pool);
    for (size_t i = 0; i < n; i++)
        cancel_task_release(chain[i]);
    cancel_task_release(t0);
    cancel_task_release(bt);
    cancel_source_free(src);
    ante_destroy(&a);
    ante_destroy(&blocker);
    free(chain);
}

TEST(many_continuations_on_one_antecedent_each_run_once)
{
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    ante a;
    cancel_task *task = running_antecedent(pool, &a, CANCEL_NONE, 2);
    enum { N = 32 };
    cont c[N];
    cancel_task *ct[N];
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        ct[i] = cancel_task_continue_with(
            task, cont_fn, &c[i], CANCEL_NONE,
            i % 2 ? CANCEL_CONTINUE_ON_FAULTED
                  : CANCEL_CONTINUE_ON_RAN_TO_COMPLETION);
        ASSERT_NOT_NULL(ct[i]);
    }
    harness_gate_open(&a.go);
    ASSERT_ERR(cancel_task_wait_all(ct, N, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(cancel_task_status_of(ct[i]),
                  i % 2 ? CANCEL_TASK_RAN_TO_COMPLETION
                        : CANCEL_TASK_CANCELED);
    }
    cancel_pool_free(pool);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&c[i].runs), i % 2);
        cancel_task_release(ct[i]);
    }
    cancel_task_release(task);
    ante_destroy(&a);
}

/* The caller's handle may go before the continuation runs: it still runs. */
TEST(continuation_released_before_it_runs_still_runs)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ante a;
    cancel_task *task = running_antecedent(pool, &a, CANCEL_NONE, 0);
    cont c;
    memset(&c, 0, sizeof(c));
    cancel_task *ct =
        cancel_task_continue_with(task, cont_fn, &c, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(ct);
    cancel_task_release(ct);
    cancel_task_release(task); /* the continuation keeps it */
    harness_gate_open(&a.go);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&c.runs), 1);
    ASSERT_EQ(c.ante_status, CANCEL_TASK_RAN_TO_COMPLETION);
    ante_destroy(&a);
}

/* A continuation of a continuation added after the whole chain finished. */
TEST(continuation_of_finished_continuation_runs)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    ante a;
    ante_init(&a, 0, false);
    cancel_task *t0 = cancel_task_run(pool, ante_fn, &a, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(t0);
    cont c1, c2;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    cancel_task *t1 = cancel_task_continue_with(t0, cont_fn, &c1, CANCEL_NONE,
                                                0);
    ASSERT_NOT_NULL(t1);
    ASSERT_OK(cancel_task_wait(t1, CANCEL_NONE, CANCEL_INFINITE));
    cancel_task *t2 = cancel_task_continue_with(t1, cont_fn, &c2, CANCEL_NONE,
                                                0);
    ASSERT_NOT_NULL(t2);
    ASSERT_OK(cancel_task_wait(t2, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_TRUE(c2.antecedent == t1);
    ASSERT_EQ(atomic_load(&c1.runs), 1);
    ASSERT_EQ(atomic_load(&c2.runs), 1);
    cancel_task_release(t0);
    cancel_task_release(t1);
    cancel_task_release(t2);
    cancel_pool_free(pool);
    ante_destroy(&a);
}
