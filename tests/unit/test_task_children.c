/* Unit tests of task.h rule 6: attached child tasks (AttachedToParent).
 * The parent finishes only after its attached children, its status takes
 * theirs into account, and every error is collected (AggregateException):
 * none is dropped.  Also SCENARIOS.md E10 with attached children.
 *
 * Children are created with CANCEL_TASK_ATTACHED from inside the parent's
 * body (the task running on the calling thread).  On a 1-thread pool the
 * children run after the parent's body, in the order they were created, so
 * the order in which they finish is known. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#define MAXKIDS 64

/* ---- a family ----------------------------------------------------------- */

typedef struct family family;

/* One child: what it returns, and whether it waits on `go` first. */
typedef struct kid {
    family *fam;
    int code;       /* returned as it is (0, -EIO, ...) */
    bool check;     /* return cancel_check(t) instead */
    bool gated;
    int grandkids;  /* attached grandchildren it starts, each with gcode */
    int gcode;
    unsigned flags; /* CANCEL_TASK_ATTACHED or 0 */
    cancel_task *task;
    atomic_int runs;
    harness_gate started, go;
} kid;

struct family {
    cancel_pool *pool;
    cancel_token token; /* the children's token */
    int nkids;
    kid kids[MAXKIDS];
    int parent_code;
    bool parent_gated; /* after starting the children: open pstarted,
                          wait pgo */
    harness_gate pstarted, pgo;
    atomic_int created_failed;
    /* grandchildren handles, to release at the end */
    cancel_task *grand[MAXKIDS * 4];
    atomic_int ngrand;
    atomic_int grand_runs;
};

static int grand_fn(void *arg, cancel_token t)
{
    (void)t;
    kid *k = arg;
    atomic_fetch_add(&k->fam->grand_runs, 1);
    return k->gcode;
}

static int kid_fn(void *arg, cancel_token t)
{
    kid *k = arg;
    atomic_fetch_add(&k->runs, 1);
    for (int i = 0; i < k->grandkids; i++) {
        cancel_task *g = cancel_task_run(k->fam->pool, grand_fn, k,
                                         k->fam->token, CANCEL_TASK_ATTACHED);
        ASSERT_NOT_NULL(g);
        k->fam->grand[atomic_fetch_add(&k->fam->ngrand, 1)] = g;
    }
    if (k->gated) {
        harness_gate_open(&k->started);
        harness_gate_wait(&k->go);
    }
    return k->check ? cancel_check(t) : k->code;
}

static int parent_fn(void *arg, cancel_token t)
{
    (void)t;
    family *f = arg;
    for (int i = 0; i < f->nkids; i++) {
        kid *k = &f->kids[i];
        k->task = cancel_task_run(f->pool, kid_fn, k, f->token, k->flags);
        if (k->task == NULL)
            atomic_fetch_add(&f->created_failed, 1);
    }
    if (f->parent_gated) {
        harness_gate_open(&f->pstarted);
        harness_gate_wait(&f->pgo);
    }
    return f->parent_code;
}

static void family_init(family *f, cancel_pool *pool, cancel_token t,
                        int nkids)
{
    memset(f, 0, sizeof(*f));
    f->pool = pool;
    f->token = t;
    f->nkids = nkids;
    harness_gate_init(&f->pstarted);
    harness_gate_init(&f->pgo);
    for (int i = 0; i < MAXKIDS; i++) {
        f->kids[i].fam = f;
        f->kids[i].flags = CANCEL_TASK_ATTACHED;
        harness_gate_init(&f->kids[i].started);
        harness_gate_init(&f->kids[i].go);
    }
}

static void family_destroy(family *f)
{
    ASSERT_EQ(atomic_load(&f->created_failed), 0);
    for (int i = 0; i < MAXKIDS; i++) {
        cancel_task_release(f->kids[i].task);
        harness_gate_destroy(&f->kids[i].started);
        harness_gate_destroy(&f->kids[i].go);
    }
    for (int i = 0; i < atomic_load(&f->ngrand); i++)
        cancel_task_release(f->grand[i]);
    harness_gate_destroy(&f->pstarted);
    harness_gate_destroy(&f->pgo);
}

/* Wait (without sleeping) until a task leaves the given status. */
static cancel_task_status await_not(cancel_task *t, cancel_task_status s)
{
    cancel_task_status now;
    while ((now = cancel_task_status_of(t)) == s)
        sched_yield();
    return now;
}

static bool is_final(cancel_task_status s)
{
    return s == CANCEL_TASK_RAN_TO_COMPLETION || s == CANCEL_TASK_CANCELED ||
           s == CANCEL_TASK_FAULTED;
}

/* ---- the parent waits ---------------------------------------------------- */

TEST(parent_finishes_only_after_attached_child)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 1);
    f.kids[0].gated = true;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.kids[0].started);

    /* The parent's body returns 0; the child is still running. */
    ASSERT_EQ(await_not(parent, CANCEL_TASK_RUNNING),
              CANCEL_TASK_WAITING_FOR_CHILDREN);
    ASSERT_EQ(cancel_task_status_of(f.kids[0].task), CANCEL_TASK_RUNNING);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, 0), -ETIMEDOUT);
    cancel_source *own = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(own));
    ASSERT_ERR(cancel_task_wait(parent, cancel_source_token(own),
                                CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_WAITING_FOR_CHILDREN);
    ASSERT_EQ(cancel_task_error(parent), 0);

    harness_gate_open(&f.kids[0].go);
    ASSERT_OK(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_RAN_TO_COMPLETION);
    /* The child had finished before the parent did. */
    ASSERT_EQ(cancel_task_status_of(f.kids[0].task),
              CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(own);
}

/* A continuation of the parent runs only once the children are done. */
static int cont_sees_kids(cancel_task *ante, void *arg, cancel_token t)
{
    (void)t;
    family *f = arg;
    ASSERT_EQ(cancel_task_status_of(ante), CANCEL_TASK_RAN_TO_COMPLETION);
    for (int i = 0; i < f->nkids; i++)
        ASSERT_TRUE(is_final(cancel_task_status_of(f->kids[i].task)));
    return 0;
}

TEST(parent_continuation_runs_after_children)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 3);
    for (int i = 0; i < 3; i++)
        f.kids[i].gated = true;
    f.parent_gated = true;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.pstarted);
    cancel_task *cont =
        cancel_task_continue_with(parent, cont_sees_kids, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(cont);
    harness_gate_open(&f.pgo);
    for (int i = 0; i < 3; i++)
        harness_gate_open(&f.kids[i].go);
    ASSERT_OK(cancel_task_wait(cont, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(cont);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* ---- faults are collected ----------------------------------------------- */

TEST(faulted_child_faults_parent)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 2);
    f.kids[0].code = 0;
    f.kids[1].code = -EIO;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    ASSERT_ERR(cancel_task_error(parent), -EIO);
    int codes[4] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 4), 1);
    ASSERT_ERR(codes[0], -EIO);
    ASSERT_EQ(cancel_task_status_of(f.kids[0].task),
              CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_status_of(f.kids[1].task), CANCEL_TASK_FAULTED);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* On one worker the children run after the parent's body, in creation
 * order: the errors are the parent's own, then the children's in order. */
TEST(errors_are_parents_own_then_childrens_in_finish_order)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 4);
    f.parent_code = -EPERM;
    f.kids[0].code = -EIO;
    f.kids[1].code = 0;
    f.kids[2].code = -ENOENT;
    f.kids[3].code = -E2BIG;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EPERM);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    ASSERT_ERR(cancel_task_error(parent), -EPERM);
    int codes[8] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 8), 4);
    ASSERT_ERR(codes[0], -EPERM);
    ASSERT_ERR(codes[1], -EIO);
    ASSERT_ERR(codes[2], -ENOENT);
    ASSERT_ERR(codes[3], -E2BIG);

    /* A short buffer gets the first ones; the count is still all of them. */
    int two[3] = {0, 0, 99};
    ASSERT_EQ(cancel_task_errors(parent, two, 2), 4);
    ASSERT_ERR(two[0], -EPERM);
    ASSERT_ERR(two[1], -EIO);
    ASSERT_EQ(two[2], 99);
    ASSERT_EQ(cancel_task_errors(parent, NULL, 0), 4);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* Without an error of its own, the parent's error is its first faulted
 * child's. */
TEST(parent_error_is_first_faulted_child_without_own)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 3);
    f.kids[0].code = 0;
    f.kids[1].code = -ENOENT;
    f.kids[2].code = -EIO;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE),
               -ENOENT);
    ASSERT_ERR(cancel_task_error(parent), -ENOENT);
    int codes[4] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 4), 2);
    ASSERT_ERR(codes[0], -ENOENT);
    ASSERT_ERR(codes[1], -EIO);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

TEST(grandchildren_errors_are_collected)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 2);
    f.parent_code = 0;
    f.kids[0].code = -ENOENT; /* own error, then its 2 grandchildren's */
    f.kids[0].grandkids = 2;
    f.kids[0].gcode = -EIO;
    f.kids[1].code = 0; /* no error of its own; one faulted grandchild */
    f.kids[1].grandkids = 1;
    f.kids[1].gcode = -EPERM;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE),
               -ENOENT);
    ASSERT_EQ(atomic_load(&f.grand_runs), 3);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);

    int codes[8] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 8), 4);
    /* Kid 0 (own, then its grandchildren), then kid 1's grandchild. */
    ASSERT_ERR(codes[0], -ENOENT);
    ASSERT_ERR(codes[1], -EIO);
    ASSERT_ERR(codes[2], -EIO);
    ASSERT_ERR(codes[3], -EPERM);

    /* Each child carries its own subtree. */
    ASSERT_EQ(cancel_task_status_of(f.kids[1].task), CANCEL_TASK_FAULTED);
    ASSERT_ERR(cancel_task_error(f.kids[1].task), -EPERM);
    ASSERT_EQ(cancel_task_errors(f.kids[1].task, codes, 8), 1);
    ASSERT_EQ(cancel_task_errors(f.kids[0].task, codes, 8), 3);
    ASSERT_ERR(codes[0], -ENOENT);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* Many faulting children at once, on several workers: every code is kept
 * exactly once, whatever the order. */
static void many_faulting(int nworkers, int nkids)
{
    cancel_pool *pool = cancel_pool_new(nworkers);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, nkids);
    for (int i = 0; i < nkids; i++)
        f.kids[i].code = -(1000 + i);
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    int r = cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE);
    ASSERT_TRUE(r <= -1000 && r > -1000 - nkids);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    int codes[MAXKIDS + 1];
    ASSERT_EQ(cancel_task_errors(parent, codes, MAXKIDS + 1), (size_t)nkids);
    bool seen[MAXKIDS] = {false};
    for (int i = 0; i < nkids; i++) {
        int k = -codes[i] - 1000;
        ASSERT_TRUE(k >= 0 && k < nkids);
        ASSERT_FALSE(seen[k]);
        seen[k] = true;
    }
    ASSERT_EQ(cancel_task_error(parent), codes[0]);
    if (nworkers == 1)
        for (int i = 0; i < nkids; i++)
            ASSERT_EQ(codes[i], -(1000 + i));
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

TEST(fifty_faulting_children_none_dropped)
{
    many_faulting(4, 50);
}

TEST(fifty_faulting_children_in_order_on_one_worker)
{
    many_faulting(1, 50);
}

/* Regression: a sibling created while another child finished used to get
 * no slot in the parent's faulted array (the count it sized the array by
 * counted the finishing child twice), and later faults overflowed it. */
TEST(many_faulting_children_repeated)
{
    long rounds = harness_scale(200);
    for (long i = 0; i < rounds; i++)
        many_faulting(3, MAXKIDS);
}

/* ---- cancellation of the family ------------------------------------------ */

/* E10 with attached children: the parent returns 0 after the cancel and
 * its children throw with the shared token: the parent is CANCELED. */
TEST(children_canceled_by_shared_token_make_parent_canceled)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    family f;
    family_init(&f, pool, t, 4);
    for (int i = 0; i < 4; i++)
        f.kids[i].check = true;
    f.kids[0].gated = true; /* surely running when the cancel comes */
    f.parent_gated = true;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, t, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.pstarted);
    harness_gate_wait(&f.kids[0].started);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&f.kids[0].go);
    harness_gate_open(&f.pgo);

    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_error(parent), 0);
    ASSERT_EQ(cancel_task_errors(parent, NULL, 0), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(cancel_task_status_of(f.kids[i].task),
                  CANCEL_TASK_CANCELED);
    ASSERT_EQ(atomic_load(&f.kids[0].runs), 1);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(src);
}

/* A child canceled by a token of its own, while the parent's token is not
 * canceled, does not make the parent CANCELED (task.h rule 6). */
TEST(child_canceled_by_own_token_leaves_parent_ran_to_completion)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *kids_src = cancel_source_new();
    cancel_source *parent_src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(kids_src));
    family f;
    family_init(&f, pool, cancel_source_token(kids_src), 2);
    f.kids[0].check = true;
    f.kids[1].check = true;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f,
                                          cancel_source_token(parent_src), 0);
    ASSERT_NOT_NULL(parent);
    ASSERT_OK(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_RAN_TO_COMPLETION);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(cancel_task_status_of(f.kids[i].task),
                  CANCEL_TASK_CANCELED);
        ASSERT_EQ(atomic_load(&f.kids[i].runs), 0); /* rule 1 */
    }
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(kids_src);
    cancel_source_free(parent_src);
}

/* A fault beats a cancellation in the family: FAULTED, and the canceled
 * children add no error. */
TEST(faulted_and_canceled_children_make_parent_faulted)
{
    cancel_pool *pool = cancel_pool_new(4);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    family f;
    family_init(&f, pool, t, 3);
    f.kids[0].check = true;
    f.kids[1].code = -EIO;
    f.kids[2].check = true;
    for (int i = 0; i < 3; i++)
        f.kids[i].gated = true;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, t, 0);
    ASSERT_NOT_NULL(parent);
    for (int i = 0; i < 3; i++)
        harness_gate_wait(&f.kids[i].started);
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < 3; i++)
        harness_gate_open(&f.kids[i].go);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    ASSERT_EQ(cancel_task_status_of(f.kids[0].task), CANCEL_TASK_CANCELED);
    ASSERT_EQ(cancel_task_status_of(f.kids[1].task), CANCEL_TASK_FAULTED);
    ASSERT_EQ(cancel_task_status_of(f.kids[2].task), CANCEL_TASK_CANCELED);
    int codes[4] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 4), 1);
    ASSERT_ERR(codes[0], -EIO);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(src);
}

/* The parent's own cancellation with a faulted child is FAULTED. */
static int throw_own_fn(void *arg, cancel_token t)
{
    family *f = arg;
    for (int i = 0; i < f->nkids; i++) {
        f->kids[i].task = cancel_task_run(f->pool, kid_fn, &f->kids[i],
                                          f->token, CANCEL_TASK_ATTACHED);
        ASSERT_NOT_NULL(f->kids[i].task);
    }
    harness_gate_open(&f->pstarted);
    harness_gate_wait(&f->pgo);
    return cancel_check(t);
}

TEST(canceled_parent_with_faulted_child_is_faulted)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    family f;
    family_init(&f, pool, CANCEL_NONE, 2);
    f.kids[0].code = -EIO;
    f.kids[1].code = 0;
    cancel_task *parent =
        cancel_task_run(pool, throw_own_fn, &f, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.pstarted);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&f.pgo);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    int codes[4] = {0};
    ASSERT_EQ(cancel_task_errors(parent, codes, 4), 1); /* no "canceled" */
    ASSERT_ERR(codes[0], -EIO);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(src);
}

/* A parent that throws with its own canceled token and has children that
 * ran to completion is CANCELED. */
TEST(canceled_parent_with_completed_children_is_canceled)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    cancel_source *src = cancel_source_new();
    family f;
    family_init(&f, pool, CANCEL_NONE, 3);
    cancel_task *parent =
        cancel_task_run(pool, throw_own_fn, &f, cancel_source_token(src), 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.pstarted);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_open(&f.pgo);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE),
               -ECANCELED);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_CANCELED);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(cancel_task_status_of(f.kids[i].task),
                  CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
    cancel_source_free(src);
}

/* ---- detached children and the flag without a parent --------------------- */

TEST(detached_child_does_not_hold_parent)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 1);
    f.kids[0].flags = 0; /* detached */
    f.kids[0].gated = true;
    f.kids[0].code = -EIO;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.kids[0].started);
    ASSERT_OK(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_status_of(f.kids[0].task), CANCEL_TASK_RUNNING);
    harness_gate_open(&f.kids[0].go);
    ASSERT_ERR(cancel_task_wait(f.kids[0].task, CANCEL_NONE, CANCEL_INFINITE),
               -EIO);
    /* The child's fault is not the parent's. */
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_RAN_TO_COMPLETION);
    ASSERT_EQ(cancel_task_errors(parent, NULL, 0), 0);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* ATTACHED with no task running on the calling thread: a plain task. */
static int code_fn(void *arg, cancel_token t)
{
    (void)t;
    return *(int *)arg;
}

TEST(attached_flag_outside_a_task_is_ignored)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    int code = -EIO;
    cancel_task *task =
        cancel_task_run(pool, code_fn, &code, CANCEL_NONE, CANCEL_TASK_ATTACHED);
    ASSERT_NOT_NULL(task);
    ASSERT_ERR(cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(task), CANCEL_TASK_FAULTED);
    cancel_task_release(task);
    cancel_pool_free(pool);
}

/* A child created attached but started later still holds the parent until
 * it has run. */
static int late_start_parent(void *arg, cancel_token t)
{
    (void)t;
    family *f = arg;
    kid *k = &f->kids[0];
    k->task = cancel_task_new(f->pool, kid_fn, k, f->token,
                              CANCEL_TASK_ATTACHED);
    ASSERT_NOT_NULL(k->task);
    harness_gate_open(&f->pstarted);
    return 0;
}

TEST(attached_child_started_after_parent_body_holds_parent)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 1);
    f.kids[0].code = -EIO;
    cancel_task *parent =
        cancel_task_run(pool, late_start_parent, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    harness_gate_wait(&f.pstarted);
    ASSERT_EQ(await_not(parent, CANCEL_TASK_RUNNING),
              CANCEL_TASK_WAITING_FOR_CHILDREN);
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, 0), -ETIMEDOUT);
    ASSERT_OK(cancel_task_start(f.kids[0].task));
    ASSERT_ERR(cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE), -EIO);
    ASSERT_EQ(cancel_task_status_of(parent), CANCEL_TASK_FAULTED);
    cancel_task_release(parent);
    cancel_pool_free(pool);
    family_destroy(&f);
}

/* The parent's handle may be released while children run: they keep what
 * they need, and the parent still finishes (its continuation runs). */
static int count_cont(cancel_task *ante, void *arg, cancel_token t)
{
    (void)t;
    ASSERT_EQ(cancel_task_status_of(ante), CANCEL_TASK_FAULTED);
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

TEST(parent_released_while_children_run)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    family f;
    family_init(&f, pool, CANCEL_NONE, 2);
    f.kids[0].gated = true;
    f.kids[1].code = -EIO;
    cancel_task *parent = cancel_task_run(pool, parent_fn, &f, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(parent);
    atomic_int n = 0;
    cancel_task *cont =
        cancel_task_continue_with(parent, count_cont, &n, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(cont);
    harness_gate_wait(&f.kids[0].started);
    cancel_task_release(parent);
    harness_gate_open(&f.kids[0].go);
    ASSERT_OK(cancel_task_wait(cont, CANCEL_NONE, CANCEL_INFINITE));
    ASSERT_EQ(atomic_load(&n), 1);
    cancel_task_release(cont);
    cancel_pool_free(pool);
    family_destroy(&f);
}
