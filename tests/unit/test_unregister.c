/* Unit tests of cancel_unregister / cancel_unregister_nowait: removal before
 * the cancel, removal during it (semantic 2 and the "turn has not come"
 * rule), waiting for a running callback (semantic 3, F3), and the
 * register/cancel race (semantic 4). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static void inc_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void *cancel_src_thread(void *p)
{
    ASSERT_OK(cancel_source_cancel(p));
    return NULL;
}

/* ---- before the cancel -------------------------------------------------- */

TEST(unregister_before_cancel_returns_true_and_fn_never_runs)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 0);
    cancel_source_free(src);
}

TEST(unregister_twice_second_is_false)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(atomic_load(&runs), 0);
    cancel_source_free(src);
}

TEST(unregister_after_fn_ran_is_false)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration r1 = CANCEL_REGISTRATION_INIT;
    cancel_registration r2 = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &r1, inc_cb, &runs));
    ASSERT_OK(cancel_register(cancel_source_token(src), &r2, inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 2);
    ASSERT_FALSE(cancel_unregister(&r1));
    ASSERT_FALSE(cancel_unregister_nowait(&r2));
    cancel_source_free(src);
}

TEST(unregister_nowait_before_cancel_returns_true)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister_nowait(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 0);
    cancel_source_free(src);
}

/* Removing from the head, the middle and the tail of the list keeps the
 * others intact. */
TEST(unregister_head_middle_tail)
{
    enum { N = 7 };
    cancel_source *src = cancel_source_new();
    atomic_int runs[N];
    cancel_registration reg[N];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < N; i++) {
        atomic_init(&runs[i], 0);
        ASSERT_OK(cancel_register(cancel_source_token(src), &reg[i], inc_cb,
                                  &runs[i]));
    }
    ASSERT_TRUE(cancel_unregister(&reg[N - 1])); /* newest */
    ASSERT_TRUE(cancel_unregister(&reg[0]));     /* oldest */
    ASSERT_TRUE(cancel_unregister(&reg[3]));     /* middle */
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(atomic_load(&runs[i]),
                  (i == 0 || i == 3 || i == N - 1) ? 0 : 1);
    cancel_source_free(src);
}

TEST(unregister_all_then_cancel)
{
    enum { N = 64 };
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg[N];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < N; i++)
        ASSERT_OK(
            cancel_register(cancel_source_token(src), &reg[i], inc_cb, &runs));
    for (int i = 0; i < N; i += 2)
        ASSERT_TRUE(cancel_unregister(&reg[i]));
    for (int i = 1; i < N; i += 2)
        ASSERT_TRUE(cancel_unregister_nowait(&reg[i]));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 0);
    cancel_source_free(src);
}

/* ---- while the callback runs on another thread -------------------------- */

struct running {
    cancel_source *src;
    cancel_registration reg;
    harness_gate entered;
    harness_gate release;
    harness_gate u_about; /* thread U is about to call unregister */
    atomic_int finished;
    atomic_int runs;
};

static void running_cb(void *arg)
{
    struct running *r = arg;
    atomic_fetch_add(&r->runs, 1);
    harness_gate_open(&r->entered);
    harness_gate_wait(&r->release);
    atomic_store(&r->finished, 1);
}

static void running_init(struct running *r)
{
    r->src = cancel_source_new();
    ASSERT_NOT_NULL(r->src);
    memset(&r->reg, 0, sizeof(r->reg));
    harness_gate_init(&r->entered);
    harness_gate_init(&r->release);
    harness_gate_init(&r->u_about);
    atomic_init(&r->finished, 0);
    atomic_init(&r->runs, 0);
    ASSERT_OK(
        cancel_register(cancel_source_token(r->src), &r->reg, running_cb, r));
}

static void running_destroy(struct running *r)
{
    cancel_source_free(r->src);
    harness_gate_destroy(&r->entered);
    harness_gate_destroy(&r->release);
    harness_gate_destroy(&r->u_about);
}

static void *unregister_thread(void *p)
{
    struct running *r = p;
    harness_gate_wait(&r->entered);
    harness_gate_open(&r->u_about);
    bool removed = cancel_unregister(&r->reg);
    /* Whether it got here before or after the release: fn has returned. */
    ASSERT_EQ(atomic_load(&r->finished), 1);
    ASSERT_FALSE(removed);
    return NULL;
}

/* Semantic 3 / F3: unregister from another thread while the callback runs
 * blocks until it returns. */
TEST(unregister_waits_for_running_callback)
{
    struct running r;
    running_init(&r);
    pthread_t c, u;
    ASSERT_EQ(pthread_create(&c, NULL, cancel_src_thread, r.src), 0);
    ASSERT_EQ(pthread_create(&u, NULL, unregister_thread, &r), 0);
    harness_gate_wait(&r.u_about);
    harness_gate_open(&r.release);
    pthread_join(u, NULL);
    pthread_join(c, NULL);
    ASSERT_EQ(atomic_load(&r.runs), 1);
    running_destroy(&r);
}

/* After unregister returned, what the callback used may be freed: the
 * callback writes plain memory up to its return, the unregistering thread
 * reads it (TSan reports a missing happens-before). */
struct handoff {
    cancel_registration reg;
    harness_gate entered;
    harness_gate release;
    int data[16];
};

static void handoff_cb(void *arg)
{
    struct handoff *h = arg;
    harness_gate_open(&h->entered);
    harness_gate_wait(&h->release);
    for (int i = 0; i < 16; i++)
        h->data[i] = i + 1;
}

static void *open_release_thread(void *p)
{
    harness_gate_open(p);
    return NULL;
}

TEST(unregister_then_free_arg)
{
    cancel_source *src = cancel_source_new();
    struct handoff *h = calloc(1, sizeof(*h));
    ASSERT_NOT_NULL(h);
    harness_gate_init(&h->entered);
    harness_gate_init(&h->release);
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &h->reg, handoff_cb, h));
    pthread_t c, o;
    ASSERT_EQ(pthread_create(&c, NULL, cancel_src_thread, src), 0);
    harness_gate_wait(&h->entered);
    ASSERT_EQ(pthread_create(&o, NULL, open_release_thread, &h->release), 0);
    ASSERT_FALSE(cancel_unregister(&h->reg));
    for (int i = 0; i < 16; i++)
        ASSERT_EQ(h->data[i], i + 1);
    pthread_join(o, NULL);
    harness_gate_destroy(&h->entered);
    harness_gate_destroy(&h->release);
    free(h); /* the canceling thread must not touch h any more */
    pthread_join(c, NULL);
    cancel_source_free(src);
}

TEST(unregister_nowait_does_not_block_on_running_callback)
{
    struct running r;
    running_init(&r);
    pthread_t c;
    ASSERT_EQ(pthread_create(&c, NULL, cancel_src_thread, r.src), 0);
    harness_gate_wait(&r.entered);
    /* The callback waits for us: a blocking nowait would deadlock. */
    ASSERT_FALSE(cancel_unregister_nowait(&r.reg));
    ASSERT_EQ(atomic_load(&r.finished), 0);
    harness_gate_open(&r.release);
    pthread_join(c, NULL);
    ASSERT_EQ(atomic_load(&r.finished), 1);
    ASSERT_EQ(atomic_load(&r.runs), 1);
    ASSERT_FALSE(cancel_unregister(&r.reg));
    running_destroy(&r);
}

/* ---- removal during the cancel, before its turn ------------------------- */

/* B runs first (newest) and waits inside; another thread removes A, whose
 * turn has not come: true, and A never runs. */
struct midcancel {
    cancel_source *src;
    cancel_registration ra, rb;
    harness_gate in_b;
    harness_gate release;
    atomic_int a_runs, b_runs;
};

static void mid_a_cb(void *arg)
{
    struct midcancel *m = arg;
    atomic_fetch_add(&m->a_runs, 1);
}

static void mid_b_cb(void *arg)
{
    struct midcancel *m = arg;
    atomic_fetch_add(&m->b_runs, 1);
    harness_gate_open(&m->in_b);
    harness_gate_wait(&m->release);
}

static void midcancel_run(bool nowait)
{
    struct midcancel m;
    memset(&m, 0, sizeof(m));
    m.src = cancel_source_new();
    harness_gate_init(&m.in_b);
    harness_gate_init(&m.release);
    atomic_init(&m.a_runs, 0);
    atomic_init(&m.b_runs, 0);
    cancel_token t = cancel_source_token(m.src);
    ASSERT_OK(cancel_register(t, &m.ra, mid_a_cb, &m));
    ASSERT_OK(cancel_register(t, &m.rb, mid_b_cb, &m));

    pthread_t c;
    ASSERT_EQ(pthread_create(&c, NULL, cancel_src_thread, m.src), 0);
    harness_gate_wait(&m.in_b);
    /* A's turn has not come: it is removed without waiting for the cancel
     * (a waiting unregister would deadlock here). */
    bool removed =
        nowait ? cancel_unregister_nowait(&m.ra) : cancel_unregister(&m.ra);
    ASSERT_TRUE(removed);
    harness_gate_open(&m.release);
    pthread_join(c, NULL);
    ASSERT_EQ(atomic_load(&m.b_runs), 1);
    ASSERT_EQ(atomic_load(&m.a_runs), 0);
    ASSERT_FALSE(cancel_unregister(&m.ra));
    ASSERT_FALSE(cancel_unregister(&m.rb));
    cancel_source_free(m.src);
    harness_gate_destroy(&m.in_b);
    harness_gate_destroy(&m.release);
}

TEST(unregister_from_other_thread_during_cancel_before_turn)
{
    midcancel_run(false);
}

TEST(unregister_nowait_from_other_thread_during_cancel_before_turn)
{
    midcancel_run(true);
}

/* The same from inside another callback, with several pending ones. */
struct remover {
    cancel_registration *victims[3];
    bool results[3];
};

static void remover_cb(void *arg)
{
    struct remover *r = arg;
    for (int i = 0; i < 3; i++)
        r->results[i] = cancel_unregister(r->victims[i]);
}

TEST(callback_removes_several_pending_registrations)
{
    enum { N = 6 };
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    atomic_int runs[N];
    cancel_registration reg[N], rr = CANCEL_REGISTRATION_INIT;
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < N; i++) {
        atomic_init(&runs[i], 0);
        ASSERT_OK(cancel_register(t, &reg[i], inc_cb, &runs[i]));
    }
    /* Registered last, so it runs first: removes 0, 2 and 5. */
    struct remover r = {{&reg[0], &reg[2], &reg[5]}, {false, false, false}};
    ASSERT_OK(cancel_register(t, &rr, remover_cb, &r));
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(r.results[i]);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(atomic_load(&runs[i]), (i == 0 || i == 2 || i == 5) ? 0 : 1);
    cancel_source_free(src);
}

/* ---- semantic 3/4: the register/cancel race ----------------------------- */

struct race {
    pthread_barrier_t start, done;
    cancel_source *src;
    cancel_registration reg;
    atomic_int ran;
    int reg_result;
    bool unreg_result;
    long iterations;
};

static void *race_registrar(void *p)
{
    struct race *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        r->reg_result = cancel_register(cancel_source_token(r->src), &r->reg,
                                        inc_cb, &r->ran);
        r->unreg_result = cancel_unregister(&r->reg);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(register_unregister_cancel_race)
{
    struct race r;
    r.iterations = harness_scale(10000);
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    long saw_removed = 0, saw_ran = 0;
    r.src = NULL;
    ASSERT_EQ(pthread_create(&th, NULL, race_registrar, &r), 0);
    for (long i = 0; i < r.iterations; i++) {
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        memset(&r.reg, 0, sizeof(r.reg));
        atomic_store(&r.ran, 0);
        pthread_barrier_wait(&r.start);
        ASSERT_OK(cancel_source_cancel(r.src));
        pthread_barrier_wait(&r.done);
        int ran = atomic_load(&r.ran);
        ASSERT_LE(ran, 1);
        /* Exactly one of "removed" and "ran". */
        if (r.unreg_result != (ran == 0))
            harness_fail(__FILE__, __LINE__,
                         "iteration %ld: register %d, unregister %d, ran %d", i,
                         r.reg_result, r.unreg_result, ran);
        if (r.reg_result == -ECANCELED)
            ASSERT_FALSE(r.unreg_result);
        else
            ASSERT_OK(r.reg_result);
        saw_removed += r.unreg_result;
        saw_ran += ran;
        cancel_source_free(r.src);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    ASSERT_EQ(saw_removed + saw_ran, r.iterations);
}

/* Semantic 4: register racing cancel, nothing removed: whatever register
 * returned, once both calls returned the callback has run exactly once. */
struct race2 {
    pthread_barrier_t start, done;
    cancel_source *src;
    cancel_registration reg;
    atomic_int ran;
    int reg_result;
    long iterations;
};

static void *race2_registrar(void *p)
{
    struct race2 *r = p;
    for (long i = 0; i < r->iterations; i++) {
        pthread_barrier_wait(&r->start);
        r->reg_result = cancel_register(cancel_source_token(r->src), &r->reg,
                                        inc_cb, &r->ran);
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

TEST(register_cancel_race_every_registration_runs)
{
    struct race2 r;
    r.iterations = harness_scale(10000);
    pthread_barrier_init(&r.start, NULL, 2);
    pthread_barrier_init(&r.done, NULL, 2);
    pthread_t th;
    long inline_runs = 0;
    ASSERT_EQ(pthread_create(&th, NULL, race2_registrar, &r), 0);
    for (long i = 0; i < r.iterations; i++) {
        r.src = cancel_source_new();
        ASSERT_NOT_NULL(r.src);
        memset(&r.reg, 0, sizeof(r.reg));
        atomic_store(&r.ran, 0);
        pthread_barrier_wait(&r.start);
        ASSERT_OK(cancel_source_cancel(r.src));
        pthread_barrier_wait(&r.done);
        if (atomic_load(&r.ran) != 1)
            harness_fail(__FILE__, __LINE__,
                         "iteration %ld: register %d, callback ran %d times", i,
                         r.reg_result, atomic_load(&r.ran));
        ASSERT_TRUE(r.reg_result == 0 || r.reg_result == -ECANCELED);
        inline_runs += r.reg_result == -ECANCELED;
        ASSERT_FALSE(cancel_unregister(&r.reg));
        cancel_source_free(r.src);
    }
    pthread_join(th, NULL);
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    ASSERT_LE(inline_runs, r.iterations);
}
