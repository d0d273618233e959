/* Unit tests of cancel_source_new_linked (CreateLinkedTokenSource):
 * semantic 5 and the model facts F2 (several tokens join into one), F5 and
 * F7 (a cancellation raised through a linked token carries the linked
 * token). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

typedef struct trace {
    char log[64];
    int n;
} trace;

typedef struct entry {
    trace *t;
    char id;
    int runs;
} entry;

static void log_cb(void *arg)
{
    entry *e = arg;
    e->t->log[e->t->n++] = e->id;
    e->runs++;
}

#define ASSERT_LOG(tr, want)                                                   \
    do {                                                                       \
        if (strcmp((tr)->log, (want)) != 0)                                    \
            harness_fail(__FILE__, __LINE__, "log is \"%s\", want \"%s\"",     \
                         (tr)->log, (want));                                   \
    } while (0)

static void plain_inc_cb(void *arg)
{
    (*(int *)arg)++;
}

static void inc_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* ---- tests -------------------------------------------------------------- */

TEST(any_parent_cancels_child_with_its_reason)
{
    for (int which = 0; which < 3; which++) {
        cancel_source *p[3];
        cancel_token toks[3];
        for (int i = 0; i < 3; i++) {
            p[i] = cancel_source_new();
            toks[i] = cancel_source_token(p[i]);
        }
        cancel_source *child = cancel_source_new_linked(toks, 3);
        ASSERT_NOT_NULL(child);
        cancel_token ct = cancel_source_token(child);
        ASSERT_FALSE(cancel_requested(ct));
        int runs = 0;
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register(ct, &reg, plain_inc_cb, &runs));

        ASSERT_OK(cancel_source_cancel_reason(p[which], 1234 + which));
        ASSERT_TRUE(cancel_requested(ct));
        ASSERT_EQ(cancel_reason(ct), 1234 + which);
        ASSERT_EQ(runs, 1); /* synchronously, inside the parent's cancel */
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(cancel_requested(toks[i]), i == which);

        /* A second parent firing later changes nothing. */
        int other = (which + 1) % 3;
        ASSERT_OK(cancel_source_cancel_reason(p[other], 99));
        ASSERT_EQ(cancel_reason(ct), 1234 + which);
        ASSERT_EQ(runs, 1);

        cancel_source_free(child);
        for (int i = 0; i < 3; i++)
            cancel_source_free(p[i]);
    }
}

TEST(plain_cancel_of_parent_gives_ecanceled)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), ECANCELED);
    cancel_source_free(child);
    cancel_source_free(p);
}

TEST(already_canceled_parent_gives_canceled_child)
{
    cancel_source *p1 = cancel_source_new();
    cancel_source *p2 = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_reason(p2, 1234));
    cancel_token toks[2] = {cancel_source_token(p1), cancel_source_token(p2)};
    cancel_source *child = cancel_source_new_linked(toks, 2);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_source_token(child);
    ASSERT_TRUE(cancel_requested(ct));
    ASSERT_EQ(cancel_reason(ct), 1234);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(ct, &reg, plain_inc_cb, &runs), -ECANCELED);
    ASSERT_EQ(runs, 1);
    /* p1 firing later changes nothing. */
    ASSERT_OK(cancel_source_cancel_reason(p1, 5));
    ASSERT_EQ(cancel_reason(ct), 1234);
    ASSERT_EQ(runs, 1);
    cancel_source_free(child);
    cancel_source_free(p1);
    cancel_source_free(p2);
}

TEST(none_and_duplicate_tokens_are_harmless)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_token toks[5] = {CANCEL_NONE, tp, tp, CANCEL_NONE, tp};
    cancel_source *child = cancel_source_new_linked(toks, 5);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_source_token(child);
    ASSERT_TRUE(cancel_can_be_canceled(ct));
    trace tr = {{0}, 0};
    entry e = {&tr, 'X', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(ct, &reg, log_cb, &e));
    ASSERT_OK(cancel_source_cancel_reason(p, 1234));
    ASSERT_TRUE(cancel_requested(ct));
    ASSERT_EQ(cancel_reason(ct), 1234);
    ASSERT_EQ(e.runs, 1);
    ASSERT_LOG(&tr, "X");
    cancel_source_free(child);
    cancel_source_free(p);
}

TEST(duplicates_are_all_removed_on_free)
{
    /* Free the child before the parent fires: no duplicate link survives
     * (ASan reports a use after free if one does). */
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_token toks[3] = {tp, tp, tp};
    cancel_source *child = cancel_source_new_linked(toks, 3);
    ASSERT_NOT_NULL(child);
    cancel_source_free(child);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(tp, &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_EQ(runs, 1);
    cancel_source_free(p);
}

TEST(only_none_tokens_give_a_cancelable_source)
{
    cancel_token toks[2] = {CANCEL_NONE, CANCEL_NONE};
    cancel_source *child = cancel_source_new_linked(toks, 2);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_source_token(child);
    ASSERT_TRUE(cancel_can_be_canceled(ct));
    ASSERT_FALSE(cancel_requested(ct));
    ASSERT_OK(cancel_source_cancel(child));
    ASSERT_TRUE(cancel_requested(ct));
    cancel_source_free(child);
}

TEST(count_zero_gives_plain_source)
{
    cancel_source *a = cancel_source_new_linked(NULL, 0);
    ASSERT_NOT_NULL(a);
    cancel_token toks[1] = {CANCEL_NONE};
    cancel_source *b = cancel_source_new_linked(toks, 0);
    ASSERT_NOT_NULL(b);
    for (int i = 0; i < 2; i++) {
        cancel_source *s = i ? b : a;
        cancel_token t = cancel_source_token(s);
        ASSERT_TRUE(cancel_can_be_canceled(t));
        ASSERT_FALSE(cancel_requested(t));
        int runs = 0;
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register(t, &reg, plain_inc_cb, &runs));
        ASSERT_OK(cancel_source_cancel_reason(s, 7));
        ASSERT_EQ(runs, 1);
        ASSERT_EQ(cancel_reason(t), 7);
    }
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(null_tokens_with_count_is_einval)
{
    errno = 0;
    ASSERT_NULL(cancel_source_new_linked(NULL, 1));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_source_new_linked(NULL, 3));
    ASSERT_EQ(errno, EINVAL);
}

TEST(linked_of_linked_propagates)
{
    cancel_source *a = cancel_source_new();
    cancel_token ta = cancel_source_token(a);
    cancel_source *b = cancel_source_new_linked(&ta, 1);
    ASSERT_NOT_NULL(b);
    cancel_token tb = cancel_source_token(b);
    cancel_source *other = cancel_source_new();
    cancel_token toks[2] = {cancel_source_token(other), tb};
    cancel_source *c = cancel_source_new_linked(toks, 2);
    ASSERT_NOT_NULL(c);
    cancel_token tc = cancel_source_token(c);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(tc, &reg, plain_inc_cb, &runs));

    ASSERT_OK(cancel_source_cancel_reason(a, 1234));
    ASSERT_TRUE(cancel_requested(tb));
    ASSERT_TRUE(cancel_requested(tc));
    ASSERT_EQ(cancel_reason(tb), 1234);
    ASSERT_EQ(cancel_reason(tc), 1234);
    ASSERT_EQ(runs, 1);
    ASSERT_FALSE(cancel_requested(cancel_source_token(other)));

    cancel_source_free(c);
    cancel_source_free(b);
    cancel_source_free(other);
    cancel_source_free(a);
}

TEST(canceling_child_never_cancels_a_parent)
{
    cancel_source *p1 = cancel_source_new();
    cancel_source *p2 = cancel_source_new();
    cancel_token toks[2] = {cancel_source_token(p1), cancel_source_token(p2)};
    int runs = 0;
    cancel_registration rp = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(toks[0], &rp, plain_inc_cb, &runs));
    cancel_source *child = cancel_source_new_linked(toks, 2);
    ASSERT_NOT_NULL(child);
    cancel_source *grandchild = cancel_source_new_linked(
        (cancel_token[]){cancel_source_token(child)}, 1);
    ASSERT_NOT_NULL(grandchild);
    ASSERT_OK(cancel_source_cancel(grandchild));
    ASSERT_FALSE(cancel_requested(cancel_source_token(child)));
    ASSERT_OK(cancel_source_cancel(child));
    ASSERT_TRUE(cancel_requested(cancel_source_token(child)));
    ASSERT_FALSE(cancel_requested(toks[0]));
    ASSERT_FALSE(cancel_requested(toks[1]));
    ASSERT_EQ(runs, 0);
    /* The parent still works, and runs only its own callback. */
    ASSERT_OK(cancel_source_cancel(p1));
    ASSERT_EQ(runs, 1);
    cancel_source_free(grandchild);
    cancel_source_free(child);
    cancel_source_free(p1);
    cancel_source_free(p2);
}

/* A child is an ordinary registration of its parent: LIFO among them. */
TEST(child_runs_in_lifo_order_among_parent_callbacks)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    trace tr = {{0}, 0};
    entry a = {&tr, 'A', 0}, x = {&tr, 'X', 0}, b = {&tr, 'B', 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rx = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(tp, &ra, log_cb, &a));
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(cancel_register(cancel_source_token(child), &rx, log_cb, &x));
    ASSERT_OK(cancel_register(tp, &rb, log_cb, &b));
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_LOG(&tr, "BXA");
    cancel_source_free(child);
    cancel_source_free(p);
}

/* F7: the cancellation raised through the linked token carries it. */
TEST(check_on_linked_token_records_the_linked_token)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_source_token(child);
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_ERR(cancel_check(ct), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), ct));
    ASSERT_FALSE(cancel_token_equal(cancel_canceled_token(), tp));
    /* Which parent fired: check the parents. */
    ASSERT_TRUE(cancel_requested(tp));
    cancel_source_free(child);
    cancel_source_free(p);
}

/* After the child is freed, canceling the parent touches none of the
 * child's memory (ASan) and runs none of its machinery: the child's own
 * callbacks never run, the parent's before and after the child still do. */
TEST(freed_child_is_unlinked_from_parent)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    trace tr = {{0}, 0};
    entry before = {&tr, 'A', 0}, after = {&tr, 'B', 0}, mine = {&tr, 'X', 0};
    cancel_registration rbefore = CANCEL_REGISTRATION_INIT;
    cancel_registration rafter = CANCEL_REGISTRATION_INIT;
    cancel_registration rmine = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(tp, &rbefore, log_cb, &before));
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(
        cancel_register(cancel_source_token(child), &rmine, log_cb, &mine));
    ASSERT_OK(cancel_register(tp, &rafter, log_cb, &after));
    cancel_source_free(child);

    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_LOG(&tr, "BA");
    ASSERT_EQ(before.runs, 1);
    ASSERT_EQ(after.runs, 1);
    ASSERT_EQ(mine.runs, 0);
    /* The child's registration stayed registered on the freed child. */
    ASSERT_TRUE(cancel_unregister(&rmine));
    cancel_source_free(p);
}

TEST(freed_child_with_retained_token_is_not_canceled_by_parent)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    cancel_token ct = cancel_token_retain(cancel_source_token(child));
    cancel_source_free(child);
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_FALSE(cancel_requested(ct));
    cancel_token_release(ct);
    cancel_source_free(p);
}

TEST(free_many_children_of_one_parent)
{
    enum { N = 100 };
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    int before = 0, middle = 0, after = 0;
    cancel_registration rbefore = CANCEL_REGISTRATION_INIT;
    cancel_registration rmiddle = CANCEL_REGISTRATION_INIT;
    cancel_registration rafter = CANCEL_REGISTRATION_INIT;
    cancel_source_free(cancel_source_new_linked(&tp, 1)); /* warm up */
    long live = cancel__alloc_live();
    ASSERT_OK(cancel_register(tp, &rbefore, plain_inc_cb, &before));
    cancel_source *child[N];
    for (int i = 0; i < N; i++) {
        child[i] = cancel_source_new_linked(&tp, 1);
        ASSERT_NOT_NULL(child[i]);
        if (i == N / 2)
            ASSERT_OK(cancel_register(tp, &rmiddle, plain_inc_cb, &middle));
    }
    ASSERT_OK(cancel_register(tp, &rafter, plain_inc_cb, &after));
    /* Free in an order that is neither LIFO nor FIFO. */
    for (int i = 0; i < N; i += 2)
        cancel_source_free(child[i]);
    for (int i = N - 1; i > 0; i -= 2)
        cancel_source_free(child[i]);
    /* No leak however long the parent lives. */
    ASSERT_EQ(cancel__alloc_live(), live);

    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_EQ(before, 1);
    ASSERT_EQ(middle, 1);
    ASSERT_EQ(after, 1);
    cancel_source_free(p);
}

TEST(create_and_free_children_does_not_grow_parent)
{
    cancel_source *p1 = cancel_source_new();
    cancel_source *p2 = cancel_source_new();
    cancel_token toks[2] = {cancel_source_token(p1), cancel_source_token(p2)};
    cancel_source_free(cancel_source_new_linked(toks, 2)); /* warm up */
    long live = cancel__alloc_live();
    for (int i = 0; i < 10000; i++) {
        cancel_source *c = cancel_source_new_linked(toks, 2);
        ASSERT_NOT_NULL(c);
        cancel_source_free(c);
    }
    ASSERT_EQ(cancel__alloc_live(), live);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(toks[1], &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(p2));
    ASSERT_EQ(runs, 1);
    cancel_source_free(p1);
    cancel_source_free(p2);
}

/* The child freed after its parent fired: nothing left to unlink. */
TEST(free_child_after_parent_canceled)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    ASSERT_OK(cancel_source_cancel(p));
    ASSERT_TRUE(cancel_requested(cancel_source_token(child)));
    cancel_source_free(child);
    cancel_source_free(p);
}

/* The parent freed before the child (its token retained by nobody): the
 * child frees cleanly afterwards. */
TEST(free_parent_before_child)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    cancel_source_free(p);
    ASSERT_FALSE(cancel_requested(cancel_source_token(child)));
    ASSERT_OK(cancel_source_cancel(child));
    ASSERT_TRUE(cancel_requested(cancel_source_token(child)));
    cancel_source_free(child);
}

/* A child of a parent that fires from another thread. */
static void *cancel_src_thread(void *p)
{
    ASSERT_OK(cancel_source_cancel_reason(p, 4321));
    return NULL;
}

TEST(parent_canceled_on_other_thread)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(child), &reg, plain_inc_cb, &runs));
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, cancel_src_thread, p), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(runs, 1);
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), 4321);
    cancel_source_free(child);
    cancel_source_free(p);
}

/* Cancel is a hot path: canceling a deep chain of linked sources (each
 * parent's cancel runs the child's cancel inside it) never allocates. */
TEST(cancel_deep_linked_chain_does_not_allocate)
{
    enum { DEPTH = 40 };
    cancel_source *s[DEPTH];
    s[0] = cancel_source_new();
    ASSERT_NOT_NULL(s[0]);
    for (int i = 1; i < DEPTH; i++) {
        cancel_token t = cancel_source_token(s[i - 1]);
        s[i] = cancel_source_new_linked(&t, 1);
        ASSERT_NOT_NULL(s[i]);
    }
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(s[DEPTH - 1]), &reg,
                              plain_inc_cb, &runs));
    long live = cancel__alloc_live();
    ASSERT_OK(cancel_source_cancel_reason(s[0], 1234));
    ASSERT_EQ(runs, 1);
    ASSERT_EQ(cancel_reason(cancel_source_token(s[DEPTH - 1])), 1234);
    ASSERT_EQ(cancel__alloc_live(), live);
    for (int i = DEPTH - 1; i >= 0; i--)
        cancel_source_free(s[i]);
}

/* The child freed on one thread while its parent's cancel runs it on
 * another (its callback is inside, gated): the cancellation under way
 * completes, the callback runs once, and nothing freed is touched (ASan). */
struct under_way {
    cancel_source *parent, *child;
    harness_gate entered, release, freeing;
    atomic_int finished;
    atomic_int runs;
};

static void under_way_cb(void *arg)
{
    struct under_way *u = arg;
    atomic_fetch_add(&u->runs, 1);
    harness_gate_open(&u->entered);
    harness_gate_wait(&u->release);
    atomic_store(&u->finished, 1);
}

static void *cancel_parent_thread(void *p)
{
    struct under_way *u = p;
    ASSERT_OK(cancel_source_cancel(u->parent));
    return NULL;
}

static void *free_child_thread(void *p)
{
    struct under_way *u = p;
    harness_gate_open(&u->freeing);
    cancel_source_free(u->child);
    return NULL;
}

TEST(free_child_while_parent_cancel_runs_it)
{
    struct under_way u;
    memset(&u, 0, sizeof(u));
    harness_gate_init(&u.entered);
    harness_gate_init(&u.release);
    harness_gate_init(&u.freeing);
    atomic_init(&u.finished, 0);
    atomic_init(&u.runs, 0);
    u.parent = cancel_source_new();
    cancel_token tp = cancel_source_token(u.parent);
    u.child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(u.child);
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(u.child), &reg, under_way_cb, &u));
    pthread_t c, f;
    ASSERT_EQ(pthread_create(&c, NULL, cancel_parent_thread, &u), 0);
    harness_gate_wait(&u.entered);
    ASSERT_EQ(pthread_create(&f, NULL, free_child_thread, &u), 0);
    harness_gate_wait(&u.freeing);
    harness_gate_open(&u.release);
    pthread_join(f, NULL);
    pthread_join(c, NULL);
    ASSERT_EQ(atomic_load(&u.runs), 1);
    ASSERT_EQ(atomic_load(&u.finished), 1);
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_source_free(u.parent);
    harness_gate_destroy(&u.entered);
    harness_gate_destroy(&u.release);
    harness_gate_destroy(&u.freeing);
}

/* A parent's cancel racing the child's free: the child's callback runs at
 * most once, and after both the child is gone without a trace. */
struct child_race {
    pthread_barrier_t start, done;
    cancel_source *child;
    long iterations;
};

static void *free_child_racer(void *p)
{
    struct child_race *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        cancel_source_free(r->child);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(child_free_races_parent_cancel)
{
    struct child_race r;
    r.iterations = harness_scale(4000);
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, free_child_racer, &r), 0);
    {
        cancel_source *warm = cancel_source_new();
        cancel_token tw = cancel_source_token(warm);
        cancel_source_free(cancel_source_new_linked(&tw, 1));
        cancel_source_free(warm);
    }
    long live = cancel__alloc_live();
    for (long i = 0; i < r.iterations; i++) {
        cancel_source *p = cancel_source_new();
        cancel_token tp = cancel_source_token(p);
        r.child = cancel_source_new_linked(&tp, 1);
        ASSERT_NOT_NULL(r.child);
        atomic_int runs = 0;
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(
            cancel_register(cancel_source_token(r.child), &reg, inc_cb, &runs));
        pthread_barrier_wait(&r.start);
        ASSERT_OK(cancel_source_cancel(p));
        pthread_barrier_wait(&r.done);
        int ran = atomic_load(&runs);
        ASSERT_LE(ran, 1);
        /* Ran: inert now.  Did not run: still registered on the freed
         * child, whose state it keeps alive until this unregister. */
        ASSERT_EQ(cancel_unregister(&reg), ran == 0);
        cancel_source_free(p);
        ASSERT_EQ(cancel__alloc_live(), live);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
}
