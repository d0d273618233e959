/* Unit tests of cancel_register / cancel_try_register: registering on live
 * and on canceled tokens (F4), what a callback may do on its own source
 * (semantic 2), and a callback that frees its own registration (semantic 7). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

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

static void inc_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* ---- registering -------------------------------------------------------- */

TEST(register_then_cancel_runs_once)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_EQ(atomic_load(&runs), 0);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_source_free(src);
}

TEST(register_passes_arg)
{
    cancel_source *src = cancel_source_new();
    trace tr = {{0}, 0};
    entry e = {&tr, 'X', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, log_cb, &e));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(e.runs, 1);
    ASSERT_LOG(&tr, "X");
    cancel_source_free(src);
}

static void plain_inc_cb(void *arg)
{
    (*(int *)arg)++;
}

/* F4: on a canceled token fn runs inline, before the call returns; the call
 * returns -ECANCELED and the registration is inert. */
TEST(register_on_canceled_token_runs_fn_and_returns_ecanceled)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(
        cancel_register(cancel_source_token(src), &reg, plain_inc_cb, &runs),
        -ECANCELED);
    ASSERT_EQ(runs, 1);
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
    ASSERT_EQ(runs, 1);
}

TEST(try_register_on_canceled_does_not_run_fn)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_try_register(cancel_source_token(src), &reg, plain_inc_cb,
                                   &runs),
               -ECANCELED);
    ASSERT_EQ(runs, 0);
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(runs, 0);
    cancel_source_free(src);
    ASSERT_EQ(runs, 0);
}

TEST(try_register_on_live_token_registers)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration r1 = CANCEL_REGISTRATION_INIT;
    cancel_registration r2 = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_try_register(cancel_source_token(src), &r1, inc_cb, &runs));
    ASSERT_OK(
        cancel_try_register(cancel_source_token(src), &r2, inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&r2));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT_FALSE(cancel_unregister(&r1));
    cancel_source_free(src);
}

TEST(register_on_none_never_runs)
{
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(CANCEL_NONE, &reg, plain_inc_cb, &runs));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_OK(cancel_try_register(CANCEL_NONE, &reg, plain_inc_cb, &runs));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    ASSERT_EQ(runs, 0);
}

TEST(registration_can_be_reused)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    /* Unregistered, then reused on another source. */
    ASSERT_OK(
        cancel_register(cancel_source_token(a), &reg, plain_inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(
        cancel_register(cancel_source_token(b), &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_EQ(runs, 0);
    ASSERT_OK(cancel_source_cancel(b));
    ASSERT_EQ(runs, 1);
    /* Run, then reused on a fresh source. */
    cancel_source *c = cancel_source_new();
    ASSERT_OK(
        cancel_register(cancel_source_token(c), &reg, plain_inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(
        cancel_register(cancel_source_token(c), &reg, plain_inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(c));
    ASSERT_EQ(runs, 2);
    cancel_source_free(a);
    cancel_source_free(b);
    cancel_source_free(c);
}

TEST(many_registrations_all_run_once)
{
    enum { N = 1000 };
    cancel_source *src = cancel_source_new();
    static cancel_registration reg[N];
    static int runs[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(cancel_register(cancel_source_token(src), &reg[i],
                                  plain_inc_cb, &runs[i]));
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(runs[i], 1);
    cancel_source_free(src);
}

/* ---- semantic 2: a callback calls back into its own source -------------- */

struct reentrant {
    cancel_source *src;
    cancel_registration *self;
    cancel_registration *other;
    cancel_registration inner;
    int result;
    bool bresult;
    int inner_runs;
    int inner_runs_at_return;
    int runs;
};

static void cancel_self_cb(void *arg)
{
    struct reentrant *r = arg;
    r->result = cancel_source_cancel(r->src);
    r->runs++;
}

TEST(callback_may_cancel_its_own_source)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry a = {&tr, 'A', 0}, c = {&tr, 'C', 0};
    struct reentrant r = {.src = src, .result = -1};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &ra, log_cb, &a));
    ASSERT_OK(cancel_register(t, &rb, cancel_self_cb, &r));
    ASSERT_OK(cancel_register(t, &rc, log_cb, &c));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(r.result);
    ASSERT_EQ(r.runs, 1);
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(c.runs, 1);
    ASSERT_LOG(&tr, "CA");
    cancel_source_free(src);
}

static void cancel_reason_self_cb(void *arg)
{
    struct reentrant *r = arg;
    r->result = cancel_source_cancel_reason(r->src, 999);
    r->runs++;
}

TEST(callback_cancel_with_reason_keeps_first_reason)
{
    cancel_source *src = cancel_source_new();
    struct reentrant r = {.src = src, .result = -1};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg,
                              cancel_reason_self_cb, &r));
    ASSERT_OK(cancel_source_cancel_reason(src, 1234));
    ASSERT_OK(r.result);
    ASSERT_EQ(r.runs, 1);
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 1234);
    cancel_source_free(src);
}

static void count_inner_cb(void *arg)
{
    struct reentrant *r = arg;
    r->inner_runs++;
}

static void register_inside_cb(void *arg)
{
    struct reentrant *r = arg;
    r->result = cancel_register(cancel_source_token(r->src), &r->inner,
                                count_inner_cb, r);
    r->inner_runs_at_return = r->inner_runs;
    r->runs++;
}

TEST(callback_may_register_on_its_own_source)
{
    cancel_source *src = cancel_source_new();
    struct reentrant r = {.src = src, .result = -1};
    memset(&r.inner, 0, sizeof(r.inner));
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg,
                              register_inside_cb, &r));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_ERR(r.result, -ECANCELED);
    ASSERT_EQ(r.inner_runs_at_return, 1); /* it ran at once */
    ASSERT_EQ(r.inner_runs, 1);
    ASSERT_FALSE(cancel_unregister(&r.inner));
    cancel_source_free(src);
    ASSERT_EQ(r.inner_runs, 1);
}

static void unregister_self_cb(void *arg)
{
    struct reentrant *r = arg;
    r->bresult = cancel_unregister(r->self);
    r->runs++;
}

TEST(callback_may_unregister_itself)
{
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    struct reentrant r = {.src = src, .self = &reg, .bresult = true};
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg,
                              unregister_self_cb, &r));
    /* A waiting unregister would deadlock here (and time out). */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(r.runs, 1);
    ASSERT_FALSE(r.bresult);
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_source_free(src);
}

static void unregister_self_nowait_cb(void *arg)
{
    struct reentrant *r = arg;
    r->bresult = cancel_unregister_nowait(r->self);
    r->runs++;
}

TEST(callback_may_unregister_nowait_itself)
{
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    struct reentrant r = {.src = src, .self = &reg, .bresult = true};
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg,
                              unregister_self_nowait_cb, &r));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(r.runs, 1);
    ASSERT_FALSE(r.bresult);
    cancel_source_free(src);
}

static void unregister_other_cb(void *arg)
{
    struct reentrant *r = arg;
    r->bresult = cancel_unregister(r->other);
    r->runs++;
}

TEST(callback_may_unregister_a_pending_registration)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry a = {&tr, 'A', 0}, c = {&tr, 'C', 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    struct reentrant r = {.src = src, .other = &ra, .bresult = false};
    ASSERT_OK(cancel_register(t, &ra, log_cb, &a)); /* runs last */
    ASSERT_OK(cancel_register(t, &rb, unregister_other_cb, &r));
    ASSERT_OK(cancel_register(t, &rc, log_cb, &c)); /* runs first */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(r.runs, 1);
    ASSERT_TRUE(r.bresult); /* removed before its turn */
    ASSERT_EQ(a.runs, 0);   /* and never run */
    ASSERT_EQ(c.runs, 1);
    ASSERT_LOG(&tr, "C");
    ASSERT_FALSE(cancel_unregister(&ra));
    cancel_source_free(src);
}

TEST(callback_unregister_of_already_run_registration_is_false)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry c = {&tr, 'C', 0};
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    struct reentrant r = {.src = src, .other = &rc, .bresult = true};
    ASSERT_OK(cancel_register(t, &rb, unregister_other_cb, &r)); /* second */
    ASSERT_OK(cancel_register(t, &rc, log_cb, &c));              /* first */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(c.runs, 1);
    ASSERT_FALSE(r.bresult);
    cancel_source_free(src);
}

static void requested_cb(void *arg)
{
    struct reentrant *r = arg;
    cancel_token t = cancel_source_token(r->src);
    r->bresult = cancel_requested(t);
    r->result = cancel_reason(t);
    r->runs++;
}

TEST(callback_sees_cancel_requested)
{
    cancel_source *src = cancel_source_new();
    struct reentrant r = {.src = src, .bresult = false, .result = 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &reg, requested_cb, &r));
    ASSERT_OK(cancel_source_cancel_reason(src, 321));
    ASSERT_EQ(r.runs, 1);
    ASSERT_TRUE(r.bresult);
    ASSERT_EQ(r.result, 321);
    cancel_source_free(src);
}

/* A callback nested inside another on the same thread unregistering the
 * outer one gets false at once (the header's "or from a callback nested
 * inside it on the same thread"). */
struct nested {
    cancel_source *inner_src;
    cancel_registration *outer_reg;
    bool result;
    int inner_runs;
    int outer_runs;
};

static void nested_inner_cb(void *arg)
{
    struct nested *n = arg;
    n->result = cancel_unregister(n->outer_reg);
    n->inner_runs++;
}

static void nested_outer_cb(void *arg)
{
    struct nested *n = arg;
    ASSERT_OK(cancel_source_cancel(n->inner_src));
    n->outer_runs++;
}

TEST(nested_callback_unregistering_outer_returns_false)
{
    cancel_source *outer = cancel_source_new();
    cancel_source *inner = cancel_source_new();
    cancel_registration ro = CANCEL_REGISTRATION_INIT;
    cancel_registration ri = CANCEL_REGISTRATION_INIT;
    struct nested n = {inner, &ro, true, 0, 0};
    ASSERT_OK(
        cancel_register(cancel_source_token(outer), &ro, nested_outer_cb, &n));
    ASSERT_OK(
        cancel_register(cancel_source_token(inner), &ri, nested_inner_cb, &n));
    ASSERT_OK(cancel_source_cancel(outer));
    ASSERT_EQ(n.outer_runs, 1);
    ASSERT_EQ(n.inner_runs, 1);
    ASSERT_FALSE(n.result);
    cancel_source_free(outer);
    cancel_source_free(inner);
}

/* A callback canceling another source whose callback cancels back: no
 * deadlock, each runs once. */
struct ping {
    cancel_source *other;
    int runs;
};

static void ping_cb(void *arg)
{
    struct ping *p = arg;
    ASSERT_OK(cancel_source_cancel(p->other));
    p->runs++;
}

TEST(callbacks_cancel_each_others_sources)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    struct ping pa = {b, 0}, pb = {a, 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(a), &ra, ping_cb, &pa));
    ASSERT_OK(cancel_register(cancel_source_token(b), &rb, ping_cb, &pb));
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_EQ(pa.runs, 1);
    ASSERT_EQ(pb.runs, 1);
    ASSERT_TRUE(cancel_requested(cancel_source_token(b)));
    cancel_source_free(a);
    cancel_source_free(b);
}

/* ---- semantic 7: a callback frees its own registration and arg ---------- */

struct request {
    cancel_registration *reg; /* malloc'd: freed by the callback */
    atomic_int *freed;
    char payload[24];
};

static void free_request_cb(void *arg)
{
    struct request *rq = arg;
    atomic_int *freed = rq->freed;
    memset(rq->reg, 0xA5, sizeof(*rq->reg));
    free(rq->reg);
    memset(rq, 0x5A, sizeof(*rq));
    free(rq);
    atomic_fetch_add(freed, 1);
}

static struct request *new_request(atomic_int *freed)
{
    struct request *rq = malloc(sizeof(*rq));
    ASSERT_NOT_NULL(rq);
    rq->reg = calloc(1, sizeof(*rq->reg));
    ASSERT_NOT_NULL(rq->reg);
    rq->freed = freed;
    return rq;
}

TEST(callback_frees_its_registration_and_arg)
{
    enum { N = 5 };
    cancel_source *src = cancel_source_new();
    atomic_int freed = 0;
    for (int i = 0; i < N; i++) {
        struct request *rq = new_request(&freed);
        ASSERT_OK(cancel_register(cancel_source_token(src), rq->reg,
                                  free_request_cb, rq));
    }
    /* One that stays: the library walks past freed ones to reach it. */
    int runs = 0;
    cancel_registration keep = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(src), &keep, plain_inc_cb, &runs));
    for (int i = 0; i < N; i++) {
        struct request *rq = new_request(&freed);
        ASSERT_OK(cancel_register(cancel_source_token(src), rq->reg,
                                  free_request_cb, rq));
    }
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&freed), 2 * N);
    ASSERT_EQ(runs, 1);
    cancel_source_free(src);
}

TEST(callback_frees_its_registration_inline)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    atomic_int freed = 0;
    struct request *rq = new_request(&freed);
    ASSERT_ERR(
        cancel_register(cancel_source_token(src), rq->reg, free_request_cb, rq),
        -ECANCELED);
    ASSERT_EQ(atomic_load(&freed), 1);
    cancel_source_free(src);
}

static void *cancel_src_thread(void *p)
{
    ASSERT_OK(cancel_source_cancel(p));
    return NULL;
}

TEST(callback_frees_its_registration_on_other_thread)
{
    enum { N = 8 };
    cancel_source *src = cancel_source_new();
    atomic_int freed = 0;
    for (int i = 0; i < N; i++) {
        struct request *rq = new_request(&freed);
        ASSERT_OK(cancel_register(cancel_source_token(src), rq->reg,
                                  free_request_cb, rq));
    }
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, cancel_src_thread, src), 0);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&freed), N);
    cancel_source_free(src);
}
