/* Allocation-failure sweeps (SQLite's test_malloc): for every function of
 * the core that allocates, fail its n-th allocation for n = 0, 1, 2, ...
 * until it succeeds without reaching the failing one.  Each failure must
 *   - return NULL with errno == ENOMEM (or -ENOMEM for the int functions),
 *   - leave nothing allocated (cancel__alloc_live() as before the call),
 *   - leave the objects that existed intact: parents with registrations
 *     still run each of their callbacks exactly once when canceled later,
 *     and a failed linked child left nothing registered on them (a leftover
 *     link would run on freed memory when the parent is canceled: ASan, and
 *     the plain build's scribbled frees, catch that);
 *   - and change nothing: a failed cancel_after leaves the source
 *     uncanceled and without a timer, a failed cancel_async leaves it
 *     uncanceled.
 * A success in the middle of the sweep is checked and disposed of too.
 *
 * Also: the hot paths (register, unregister, cancel, reset, free, tokens)
 * never allocate — they all work while every allocation fails.
 *
 * Time is the manual clock: timers fire only when a test moves it. */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt(M_PERTURB) */
#endif

__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

#define MAX_STEPS 64

/* Which thread runs a callback: 0 for a library thread. */
static _Thread_local int role;

/* ---- the sweep ---------------------------------------------------------- */

/* How many more allocations the armed hook lets through (up to MAX_STEPS):
 * after a call that succeeded with the hook armed at n, a non-zero answer
 * proves the call never reached allocation n. */
static long room_left(void)
{
    void *p[MAX_STEPS + 1];
    long n = 0;
    while (n <= MAX_STEPS && (p[n] = cancel__malloc(1)) != NULL)
        n++;
    for (long i = 0; i < n; i++)
        cancel__free(p[i]);
    return n;
}

struct sweep {
    const char *what;
    void (*prepare)(void *ctx);  /* before arming the hook (optional) */
    void *(*attempt)(void *ctx); /* NULL + errno on failure */
    void (*after_fail)(void *ctx);
    void (*after_success)(void *ctx, void *obj, long live_before);
    void *ctx;
};

static bool quiet; /* no report line per sweep */

/* Returns the number of allocations the call makes (the first n at which
 * it succeeded). */
static long run_sweep(const struct sweep *sw)
{
    long first_success = -1;
    for (long n = 0; n < MAX_STEPS; n++) {
        if (sw->prepare)
            sw->prepare(sw->ctx);
        long live0 = cancel__alloc_live();
        cancel__alloc_fail_after(n);
        errno = 0;
        void *obj = sw->attempt(sw->ctx);
        int err = errno;
        long room = obj != NULL ? room_left() : 0;
        cancel__alloc_fail_after(-1);
        if (obj == NULL) {
            if (err != ENOMEM)
                harness_fail(__FILE__, __LINE__,
                             "%s, allocation %ld failing: errno %d (%s), "
                             "want ENOMEM",
                             sw->what, n, err, cancel_err_name(err));
            long live = cancel__alloc_live();
            if (live != live0)
                harness_fail(__FILE__, __LINE__,
                             "%s, allocation %ld failing: %ld allocation(s) "
                             "left behind",
                             sw->what, n, live - live0);
            if (sw->after_fail)
                sw->after_fail(sw->ctx);
            continue;
        }
        sw->after_success(sw->ctx, obj, live0);
        if (first_success < 0)
            first_success = n;
        if (room > 0) {
            if (!quiet)
                printf("%s: %ld allocation(s), every failure clean\n", sw->what,
                       first_success);
            return first_success;
        }
    }
    harness_fail(__FILE__, __LINE__, "%s: still failing after %d allocations",
                 sw->what, MAX_STEPS);
}

/* For the int functions: a non-NULL token for 0, NULL + errno for -ENOMEM;
 * any other error fails the test. */
static char ok_token;

static void *from_rc(const char *what, int rc)
{
    if (rc == 0)
        return &ok_token;
    if (rc != -ENOMEM)
        harness_fail(__FILE__, __LINE__, "%s: got %d (%s), want 0 or -ENOMEM",
                     what, rc, cancel_err_name(rc));
    errno = ENOMEM;
    return NULL;
}

/* Wait (yielding, bounded) until the live count comes back to `want`: the
 * library thread drops its references after the callbacks it ran. */
static void await_live(long want)
{
    for (long i = 0; i < 20000000 && cancel__alloc_live() != want; i++)
        sched_yield();
    ASSERT_EQ(cancel__alloc_live(), want);
}

/* ---- registrations that record their order ------------------------------ */

struct prec {
    cancel_registration reg;
    atomic_int runs, seq, ran_on;
};

static atomic_int seq_counter;

/* `runs` is written last: a thread that waits for it to turn 1 may then
 * reuse the record (it may live on that thread's stack). */
static void prec_cb(void *arg)
{
    struct prec *r = arg;
    atomic_store(&r->seq, atomic_fetch_add(&seq_counter, 1) + 1);
    atomic_store(&r->ran_on, role);
    atomic_fetch_add(&r->runs, 1);
}

static void prec_register(struct prec *r, cancel_source *src)
{
    memset(r, 0, sizeof(*r));
    atomic_store(&r->ran_on, -1);
    ASSERT_OK(cancel_register(cancel_source_token(src), &r->reg, prec_cb, r));
}

/* ---- manual clock ------------------------------------------------------- */

static cancel_clock *clock_;

static void use_manual_clock(void)
{
    role = 1;
    clock_ = cancel_clock_new_manual(1000000);
    ASSERT_NOT_NULL(clock_);
    ASSERT_OK(cancel_clock_install(clock_));
}

static void drop_manual_clock(void)
{
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(clock_);
    clock_ = NULL;
}

/* Start the library thread and let the timer structure reach its working
 * size, so that a sweep measures the call, not the process's first use. */
static void warm_up(void)
{
    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    ASSERT_OK(cancel_source_cancel_after(s, 10));
    cancel_source_free(s);
    s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    struct prec r;
    prec_register(&r, s);
    long live = cancel__alloc_live();
    ASSERT_OK(cancel_source_cancel_async(s));
    cancel_source_free(s);
    while (atomic_load(&r.runs) == 0)
        sched_yield();
    await_live(live - 1); /* the source and the ext cancel_async added */
}

/* ---- cancel_source_new -------------------------------------------------- */

static void *attempt_new(void *ctx)
{
    (void)ctx;
    return cancel_source_new();
}

static void success_plain(void *ctx, void *obj, long live0)
{
    (void)ctx;
    cancel_source *s = obj;
    cancel_token t = cancel_source_token(s);
    ASSERT_FALSE(cancel_requested(t));
    struct prec r;
    prec_register(&r, s);
    ASSERT_OK(cancel_source_cancel(s));
    ASSERT_EQ(atomic_load(&r.runs), 1);
    cancel_source_free(s);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

TEST(sweep_source_new)
{
    struct sweep sw = {"cancel_source_new", NULL, attempt_new, NULL,
                       success_plain,       NULL};
    ASSERT_GE(run_sweep(&sw), 1);
}

/* ---- cancel_source_new_linked ------------------------------------------- */

#define NPAR 3

struct lctx {
    cancel_source *par[NPAR];
    struct prec recs[NPAR][2];
    cancel_token toks[6];
    size_t n;
    int canceled_parent; /* index of a parent canceled beforehand, or -1 */
};

static void lctx_init(struct lctx *c, int canceled_parent)
{
    memset(c, 0, sizeof(*c));
    c->canceled_parent = canceled_parent;
    for (int p = 0; p < NPAR; p++) {
        c->par[p] = cancel_source_new();
        ASSERT_NOT_NULL(c->par[p]);
        prec_register(&c->recs[p][0], c->par[p]);
        prec_register(&c->recs[p][1], c->par[p]);
        if (p == canceled_parent)
            ASSERT_OK(cancel_source_cancel_reason(c->par[p], 300 + p));
    }
}

/* The parents are as they were: uncanceled (but the one canceled before),
 * none of their callbacks ran since. */
static void lctx_intact(void *ctx)
{
    struct lctx *c = ctx;
    for (int p = 0; p < NPAR; p++) {
        bool pre = p == c->canceled_parent;
        ASSERT_EQ(cancel_requested(cancel_source_token(c->par[p])), pre);
        ASSERT_EQ(atomic_load(&c->recs[p][0].runs), pre ? 1 : 0);
        ASSERT_EQ(atomic_load(&c->recs[p][1].runs), pre ? 1 : 0);
    }
}

/* Cancel every parent: each callback runs once, newest first; then free. */
static void lctx_finish(struct lctx *c, long live_before_parents)
{
    for (int p = 0; p < NPAR; p++) {
        if (p != c->canceled_parent) {
            ASSERT_OK(cancel_source_cancel_reason(c->par[p], 300 + p));
            ASSERT_EQ(atomic_load(&c->recs[p][0].runs), 1);
            ASSERT_EQ(atomic_load(&c->recs[p][1].runs), 1);
            ASSERT_GT(atomic_load(&c->recs[p][0].seq),
                      atomic_load(&c->recs[p][1].seq)); /* LIFO */
        }
        ASSERT_FALSE(cancel_unregister(&c->recs[p][0].reg));
        ASSERT_FALSE(cancel_unregister(&c->recs[p][1].reg));
        cancel_source_free(c->par[p]);
    }
    ASSERT_EQ(cancel__alloc_live(), live_before_parents);
}

static void *attempt_linked(void *ctx)
{
    struct lctx *c = ctx;
    return cancel_source_new_linked(c->n ? c->toks : NULL, c->n);
}

static int lctx_want_reason(struct lctx *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->canceled_parent >= 0 &&
            cancel_token_equal(c->toks[i],
                               cancel_source_token(c->par[c->canceled_parent])))
            return 300 + c->canceled_parent;
    return 0;
}

static void success_linked(void *ctx, void *obj, long live0)
{
    struct lctx *c = ctx;
    cancel_source *child = obj;
    lctx_intact(c);
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), lctx_want_reason(c));
    cancel_source_free(child);
    ASSERT_EQ(cancel__alloc_live(), live0);
    lctx_intact(c);
}

/* After the sweep: a child made now is linked to every parent. */
static void check_linked_works(struct lctx *c)
{
    cancel_source *child = attempt_linked(c);
    ASSERT_NOT_NULL(child);
    struct prec r;
    memset(&r, 0, sizeof(r));
    int rc = cancel_register(cancel_source_token(child), &r.reg, prec_cb, &r);
    int want = lctx_want_reason(c);
    ASSERT_ERR(rc, want ? -ECANCELED : 0); /* canceled at creation */
    if (want == 0 && c->n > 0) {
        /* Cancel the parent of its first real token. */
        for (int p = 0; p < NPAR && want == 0; p++)
            if (cancel_token_equal(c->toks[0], cancel_source_token(c->par[p])))
                want = 300 + p;
        if (want == 0) { /* CANCEL_NONE first: nothing to cancel by */
            cancel_source_free(child);
            ASSERT_TRUE(cancel_unregister(&r.reg)); /* still registered */
            return;
        }
        ASSERT_OK(cancel_source_cancel_reason(c->par[want - 300], want));
    }
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), want);
    ASSERT_EQ(atomic_load(&r.runs), want ? 1 : 0);
    cancel_source_free(child);
    ASSERT_EQ(atomic_load(&r.runs), want ? 1 : 0);
    ASSERT_EQ(cancel_unregister(&r.reg), want == 0);
}

static void linked_sweep(const char *what, const int *which, size_t n,
                         int canceled_parent)
{
    long live_start = cancel__alloc_live();
    struct lctx c;
    lctx_init(&c, canceled_parent);
    c.n = n;
    for (size_t i = 0; i < n; i++)
        c.toks[i] =
            which[i] < 0 ? CANCEL_NONE : cancel_source_token(c.par[which[i]]);
    struct sweep sw = {what,        NULL,           attempt_linked,
                       lctx_intact, success_linked, &c};
    run_sweep(&sw);
    lctx_intact(&c);
    check_linked_works(&c);
    lctx_finish(&c, live_start);
}

TEST(sweep_linked_one_token)
{
    int which[] = {0};
    linked_sweep("cancel_source_new_linked(1 token)", which, 1, -1);
}

TEST(sweep_linked_three_tokens)
{
    int which[] = {0, 1, 2};
    linked_sweep("cancel_source_new_linked(3 tokens)", which, 3, -1);
}

TEST(sweep_linked_zero_tokens)
{
    linked_sweep("cancel_source_new_linked(NULL, 0)", NULL, 0, -1);
    int which[] = {-1, -1};
    linked_sweep("cancel_source_new_linked(2 x CANCEL_NONE)", which, 2, -1);
}

TEST(sweep_linked_duplicates_and_none)
{
    int which[] = {1, -1, 1, 2, 2};
    linked_sweep("cancel_source_new_linked(duplicates, CANCEL_NONE)", which, 5,
                 -1);
}

TEST(sweep_linked_with_a_canceled_parent)
{
    int which[] = {0, 1, 2};
    linked_sweep("cancel_source_new_linked(middle parent canceled)", which, 3,
                 1);
    int last[] = {0, 2, 1};
    linked_sweep("cancel_source_new_linked(last parent canceled)", last, 3, 1);
}

/* ---- cancel_source_new_timeout ------------------------------------------ */

#define DELAY 5000

static void *attempt_timeout(void *ctx)
{
    (void)ctx;
    return cancel_source_new_timeout(DELAY);
}

/* A failed new_timeout left no timer behind: had it left one on freed
 * memory, firing it would be a use after free. */
static void fail_timeout(void *ctx)
{
    (void)ctx;
    long live = cancel__alloc_live();
    ASSERT_OK(cancel_clock_advance(clock_, 2 * DELAY));
    ASSERT_EQ(cancel__alloc_live(), live);
}

static void success_timeout(void *ctx, void *obj, long live0)
{
    (void)ctx;
    cancel_source *s = obj;
    cancel_token t = cancel_source_token(s);
    ASSERT_FALSE(cancel_requested(t));
    struct prec r;
    prec_register(&r, s);
    ASSERT_OK(cancel_clock_advance(clock_, DELAY - 1));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(clock_, 1));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    ASSERT_EQ(atomic_load(&r.runs), 1);
    ASSERT_EQ(atomic_load(&r.ran_on), 0); /* on the timer thread */
    cancel_source_free(s);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

TEST(sweep_new_timeout)
{
    use_manual_clock();
    warm_up();
    struct sweep sw = {"cancel_source_new_timeout(>0)",
                       NULL,
                       attempt_timeout,
                       fail_timeout,
                       success_timeout,
                       NULL};
    ASSERT_GE(run_sweep(&sw), 2); /* the source, its timer entry */
    drop_manual_clock();
}

static void success_timeout_zero(void *ctx, void *obj, long live0)
{
    (void)ctx;
    cancel_source *s = obj;
    ASSERT_EQ(cancel_reason(cancel_source_token(s)), ETIMEDOUT);
    cancel_source_free(s);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

static void *attempt_timeout_zero(void *ctx)
{
    (void)ctx;
    return cancel_source_new_timeout(0);
}

static void *attempt_timeout_negative(void *ctx)
{
    (void)ctx;
    return cancel_source_new_timeout(-1);
}

TEST(sweep_new_timeout_zero_and_negative)
{
    use_manual_clock();
    struct sweep zero = {"cancel_source_new_timeout(0)", NULL,
                         attempt_timeout_zero,           NULL,
                         success_timeout_zero,           NULL};
    ASSERT_GE(run_sweep(&zero), 1);
    struct sweep neg = {"cancel_source_new_timeout(-1)",
                        NULL,
                        attempt_timeout_negative,
                        NULL,
                        success_plain,
                        NULL};
    ASSERT_GE(run_sweep(&neg), 1);
    drop_manual_clock();
}

/* The first use of timers in the process (the library thread starts, the
 * timer structure is allocated): run alone, as CTest does, it is cold. */
TEST(sweep_new_timeout_cold)
{
    use_manual_clock();
    /* The success may keep the timer structure for later timers: only the
     * failures are held to "nothing left behind". */
    for (long n = 0; n < MAX_STEPS; n++) {
        long live0 = cancel__alloc_live();
        cancel__alloc_fail_after(n);
        errno = 0;
        cancel_source *s = cancel_source_new_timeout(DELAY);
        int err = errno;
        long room = s != NULL ? room_left() : 0;
        cancel__alloc_fail_after(-1);
        if (s == NULL) {
            ASSERT_EQ(err, ENOMEM);
            ASSERT_EQ(cancel__alloc_live(), live0);
            fail_timeout(NULL);
            continue;
        }
        struct prec r;
        prec_register(&r, s);
        ASSERT_OK(cancel_clock_advance(clock_, DELAY));
        ASSERT_EQ(cancel_reason(cancel_source_token(s)), ETIMEDOUT);
        ASSERT_EQ(atomic_load(&r.runs), 1);
        cancel_source_free(s);
        if (room > 0)
            break;
    }
    drop_manual_clock();
}

/* ---- cancel_source_cancel_after: the first arm -------------------------- */

struct actx {
    bool cold; /* the success may keep the timer structure allocated */
    cancel_source *src;
    struct prec recs[2];
    long live_before_src;
    int fails;
};

static void prepare_after(void *ctx)
{
    struct actx *c = ctx;
    if (c->src != NULL)
        return; /* the same source again: it must be as it was */
    c->live_before_src = cancel__alloc_live();
    c->src = cancel_source_new();
    ASSERT_NOT_NULL(c->src);
    prec_register(&c->recs[0], c->src);
    prec_register(&c->recs[1], c->src);
}

static void *attempt_after(void *ctx)
{
    struct actx *c = ctx;
    return from_rc("cancel_source_cancel_after",
                   cancel_source_cancel_after(c->src, DELAY));
}

/* Not canceled, and no timer: moving the clock far does nothing. */
static void fail_after(void *ctx)
{
    struct actx *c = ctx;
    cancel_token t = cancel_source_token(c->src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(clock_, 100 * DELAY));
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_EQ(atomic_load(&c->recs[0].runs), 0);
    ASSERT_EQ(atomic_load(&c->recs[1].runs), 0);
    c->fails++;
}

static void success_after(void *ctx, void *obj, long live0)
{
    (void)obj;
    (void)live0;
    struct actx *c = ctx;
    cancel_token t = cancel_source_token(c->src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_OK(cancel_clock_advance(clock_, DELAY));
    ASSERT_EQ(cancel_reason(t), ETIMEDOUT);
    ASSERT_EQ(atomic_load(&c->recs[0].runs), 1);
    ASSERT_EQ(atomic_load(&c->recs[1].runs), 1);
    ASSERT_GT(atomic_load(&c->recs[0].seq), atomic_load(&c->recs[1].seq));
    ASSERT_EQ(atomic_load(&c->recs[0].ran_on), 0);
    cancel_source_free(c->src);
    c->src = NULL;
    if (!c->cold)
        ASSERT_EQ(cancel__alloc_live(), c->live_before_src);
}

static void after_sweep(const char *what, bool cold)
{
    struct actx c;
    memset(&c, 0, sizeof(c));
    c.cold = cold;
    struct sweep sw = {what,       prepare_after, attempt_after,
                       fail_after, success_after, &c};
    long n = run_sweep(&sw);
    ASSERT_GE(n, 1); /* the first arm allocates its timer entry */
    ASSERT_EQ(c.fails, n);
}

TEST(sweep_cancel_after_first_arm)
{
    use_manual_clock();
    warm_up();
    after_sweep("cancel_source_cancel_after, first arm", false);
    drop_manual_clock();
}

TEST(sweep_cancel_after_first_arm_cold)
{
    use_manual_clock();
    after_sweep("cancel_source_cancel_after, first timer of the process", true);
    drop_manual_clock();
}

/* The first arm of the k-th armed timer, for k up to 300: whatever the
 * timer structure has to grow for, a failure leaves nothing behind. */
TEST(sweep_cancel_after_with_many_armed)
{
    use_manual_clock();
    warm_up();
    enum { K = 300 };
    static cancel_source *armed[K];
    quiet = true;
    for (int k = 0; k < K; k++) {
        char what[96];
        snprintf(what, sizeof(what),
                 "cancel_source_cancel_after, first arm, %d armed", k);
        after_sweep(what, false);
        armed[k] = cancel_source_new();
        ASSERT_NOT_NULL(armed[k]);
        ASSERT_OK(cancel_source_cancel_after(armed[k], INT64_MAX / 2));
    }
    quiet = false;
    printf("first arm with 0..%d timers armed: every failure clean\n", K - 1);
    for (int k = 0; k < K; k++) {
        ASSERT_FALSE(cancel_requested(cancel_source_token(armed[k])));
        cancel_source_free(armed[k]);
    }
    drop_manual_clock();
}

/* The same for new_timeout. */
TEST(sweep_new_timeout_with_many_armed)
{
    use_manual_clock();
    warm_up();
    enum { K = 300 };
    static cancel_source *armed[K];
    quiet = true;
    for (int k = 0; k < K; k++) {
        struct sweep sw = {"cancel_source_new_timeout(>0), many armed",
                           NULL,
                           attempt_timeout,
                           fail_timeout,
                           success_timeout,
                           NULL};
        run_sweep(&sw);
        armed[k] = cancel_source_new_timeout(INT64_MAX / 2);
        ASSERT_NOT_NULL(armed[k]);
    }
    quiet = false;
    printf("new_timeout with 0..%d timers armed: every failure clean\n", K - 1);
    for (int k = 0; k < K; k++)
        cancel_source_free(armed[k]);
    drop_manual_clock();
}

/* Once armed, disarming and re-arming need nothing new. */
TEST(rearm_and_disarm_do_not_allocate)
{
    use_manual_clock();
    warm_up();
    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    ASSERT_OK(cancel_source_cancel_after(s, DELAY));
    long live = cancel__alloc_live();
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_source_cancel_after(s, 2 * DELAY)); /* re-arm */
    ASSERT_OK(cancel_source_cancel_after(s, -1));        /* disarm */
    cancel__alloc_fail_after(-1);
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_OK(cancel_clock_advance(clock_, 10 * DELAY));
    ASSERT_FALSE(cancel_requested(cancel_source_token(s)));
    cancel_source_free(s);
    drop_manual_clock();
}

/* ---- cancel_source_cancel_async ----------------------------------------- */

struct asctx {
    cancel_source *src;
    struct prec recs[3]; /* recs[0] first: it runs last */
    long live_before_src;
};

static void prepare_async(void *ctx)
{
    struct asctx *c = ctx;
    if (c->src != NULL)
        return;
    c->live_before_src = cancel__alloc_live();
    c->src = cancel_source_new();
    ASSERT_NOT_NULL(c->src);
    for (int i = 0; i < 3; i++)
        prec_register(&c->recs[i], c->src);
}

static void *attempt_async(void *ctx)
{
    struct asctx *c = ctx;
    return from_rc("cancel_source_cancel_async",
                   cancel_source_cancel_async(c->src));
}

static void fail_async(void *ctx)
{
    struct asctx *c = ctx;
    ASSERT_FALSE(cancel_requested(cancel_source_token(c->src)));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(atomic_load(&c->recs[i].runs), 0);
}

static void success_async(void *ctx, void *obj, long live0)
{
    (void)obj;
    (void)live0;
    struct asctx *c = ctx;
    ASSERT_EQ(cancel_reason(cancel_source_token(c->src)), ECANCELED);
    cancel_source_free(c->src);
    c->src = NULL;
    while (atomic_load(&c->recs[0].runs) == 0)
        sched_yield();
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&c->recs[i].runs), 1);
        ASSERT_EQ(atomic_load(&c->recs[i].ran_on), 0);
    }
    ASSERT_GT(atomic_load(&c->recs[0].seq), atomic_load(&c->recs[2].seq));
    for (int i = 0; i < 3; i++)
        ASSERT_FALSE(cancel_unregister(&c->recs[i].reg));
    await_live(c->live_before_src);
}

static void async_sweep(const char *what)
{
    struct asctx c;
    memset(&c, 0, sizeof(c));
    struct sweep sw = {what,       prepare_async, attempt_async,
                       fail_async, success_async, &c};
    run_sweep(&sw);
}

TEST(sweep_cancel_async)
{
    use_manual_clock();
    warm_up();
    async_sweep("cancel_source_cancel_async");
    drop_manual_clock();
}

TEST(sweep_cancel_async_cold)
{
    use_manual_clock();
    async_sweep("cancel_source_cancel_async, first use of the library thread");
    drop_manual_clock();
}

/* A source whose cancel_async failed can still be canceled, once. */
TEST(cancel_after_failed_cancel_async)
{
    role = 1;
    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    struct prec r[2];
    prec_register(&r[0], s);
    prec_register(&r[1], s);
    long live = cancel__alloc_live();
    cancel__alloc_fail_after(0);
    int rc = cancel_source_cancel_async(s);
    cancel__alloc_fail_after(-1);
    if (rc == 0) {
        printf("cancel_async did not allocate: nothing to test\n");
        while (atomic_load(&r[0].runs) == 0)
            sched_yield();
    } else {
        ASSERT_ERR(rc, -ENOMEM);
        ASSERT_EQ(cancel__alloc_live(), live);
        ASSERT_FALSE(cancel_requested(cancel_source_token(s)));
        ASSERT_OK(cancel_source_cancel(s));
        ASSERT_EQ(atomic_load(&r[0].ran_on), 1); /* synchronously, here */
    }
    ASSERT_EQ(atomic_load(&r[0].runs), 1);
    ASSERT_EQ(atomic_load(&r[1].runs), 1);
    ASSERT_OK(cancel_source_cancel_async(s)); /* canceled: a no-op */
    ASSERT_EQ(atomic_load(&r[0].runs), 1);
    cancel_source_free(s);
}

/* ---- cancel_clock_new_manual -------------------------------------------- */

static void *attempt_clock(void *ctx)
{
    (void)ctx;
    return cancel_clock_new_manual(12345);
}

static void success_clock(void *ctx, void *obj, long live0)
{
    (void)ctx;
    cancel_clock *c = obj;
    ASSERT_OK(cancel_clock_install(c));
    ASSERT_EQ(cancel_clock_now(), 12345);
    ASSERT_OK(cancel_clock_advance(c, 5));
    ASSERT_EQ(cancel_clock_now(), 12350);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

TEST(sweep_clock_new_manual)
{
    struct sweep sw = {"cancel_clock_new_manual",
                       NULL,
                       attempt_clock,
                       NULL,
                       success_clock,
                       NULL};
    ASSERT_GE(run_sweep(&sw), 1);
}

/* ---- the hot paths never allocate --------------------------------------- */

static void post_now(void *ctx, cancel_callback *fn, void *arg)
{
    (void)ctx;
    fn(arg);
}

static void *hot_paths(void *arg)
{
    (void)arg;
    role = 2;
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    cancel_token ta = cancel_source_token(a), tb = cancel_source_token(b);
    cancel_token toks[2] = {ta, tb};
    cancel_source *child = cancel_source_new_linked(toks, 2);
    ASSERT_NOT_NULL(child);
    cancel_token tc = cancel_source_token(child);
    struct prec r[6];
    memset(r, 0, sizeof(r));

    /* From here on every allocation fails. */
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_register(ta, &r[0].reg, prec_cb, &r[0])); /* first reg */
    ASSERT_OK(cancel_try_register(ta, &r[1].reg, prec_cb, &r[1]));
    ASSERT_OK(
        cancel_register_on(tc, &r[2].reg, prec_cb, &r[2], post_now, NULL));
    ASSERT_OK(cancel_register(tc, &r[3].reg, prec_cb, &r[3]));
    ASSERT_OK(cancel_register(tb, &r[4].reg, prec_cb, &r[4]));
    ASSERT_OK(cancel_register(CANCEL_NONE, &r[5].reg, prec_cb, &r[5]));
    ASSERT_TRUE(cancel_unregister(&r[1].reg));
    ASSERT_TRUE(cancel_unregister_nowait(&r[4].reg));
    ASSERT_FALSE(cancel_unregister(&r[5].reg));
    ASSERT_TRUE(cancel_source_try_reset(b));
    cancel_token kept = cancel_token_retain(ta);
    ASSERT_FALSE(cancel_requested(ta));
    ASSERT_OK(cancel_check(ta));
    /* The parent's cancel runs its callback and, nested, the child's. */
    ASSERT_OK(cancel_source_cancel_reason(a, 42));
    ASSERT_EQ(cancel_reason(tc), 42);
    ASSERT_ERR(cancel_check(tc), -ECANCELED);
    ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), tc));
    ASSERT_ERR(cancel_throw(ta), -ECANCELED);
    ASSERT_ERR(cancel_register(ta, &r[1].reg, prec_cb, &r[1]), -ECANCELED);
    ASSERT_FALSE(cancel_source_try_reset(a));
    ASSERT_OK(cancel_source_cancel(a)); /* already: a no-op */
    cancel_source_free(child);
    cancel_source_free(a);
    ASSERT_EQ(cancel_reason(kept), 42);
    cancel_token_release(kept);
    /* A registration left on a freed source: true, and the state goes. */
    ASSERT_OK(cancel_register(tb, &r[4].reg, prec_cb, &r[4]));
    cancel_source_free(b);
    ASSERT_TRUE(cancel_unregister(&r[4].reg));
    cancel__alloc_fail_after(-1);

    ASSERT_EQ(atomic_load(&r[0].runs), 1);
    ASSERT_EQ(atomic_load(&r[1].runs), 1);
    ASSERT_EQ(atomic_load(&r[2].runs), 1);
    ASSERT_EQ(atomic_load(&r[3].runs), 1);
    ASSERT_EQ(atomic_load(&r[4].runs), 0);
    ASSERT_EQ(atomic_load(&r[5].runs), 0);
    return NULL;
}

TEST(hot_paths_never_allocate)
{
    long live0 = cancel__alloc_live();
    /* On a fresh thread: its first cancel must not allocate either. */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, hot_paths, NULL), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(cancel__alloc_live(), live0);
}

/* ---- cancel never allocates, whatever came before ------------------------ */

/* A watchdog for calls that must not block: fails the test with a message
 * instead of letting it hang until CTest's timeout.  (It only bounds a
 * failure; it forces no order.) */
struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    const char *what;
    pthread_t th;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 30;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) != 0 && !w->done)
            harness_fail(__FILE__, __LINE__,
                         "%s: still blocked after 30 s (waiting for an "
                         "allocation that cannot succeed?)",
                         w->what);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void watchdog_start(struct watchdog *w, const char *what)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->done = false;
    w->what = what;
    ASSERT_EQ(pthread_create(&w->th, NULL, watchdog_main, w), 0);
}

static void watchdog_stop(struct watchdog *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Many threads have canceled something and are still alive; then one more
 * cancels while every allocation fails: it runs its callbacks and returns,
 * without allocating. */
#define MANY 40

static pthread_barrier_t many_parked, many_release;

static void *cancel_once_and_park(void *arg)
{
    (void)arg;
    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    struct prec r;
    prec_register(&r, s);
    ASSERT_OK(cancel_source_cancel(s));
    ASSERT_EQ(atomic_load(&r.runs), 1);
    cancel_source_free(s);
    pthread_barrier_wait(&many_parked);
    pthread_barrier_wait(&many_release);
    return NULL;
}

TEST(cancel_with_many_live_threads_never_allocates)
{
    pthread_barrier_init(&many_parked, NULL, MANY + 1);
    pthread_barrier_init(&many_release, NULL, MANY + 1);
    pthread_t th[MANY];
    for (int i = 0; i < MANY; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, cancel_once_and_park, NULL), 0);
    pthread_barrier_wait(&many_parked);

    cancel_source *s = cancel_source_new();
    ASSERT_NOT_NULL(s);
    struct prec r;
    prec_register(&r, s);
    long live = cancel__alloc_live();
    struct watchdog wd;
    watchdog_start(&wd, "cancel_source_cancel with every allocation failing");
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_source_cancel(s));
    cancel__alloc_fail_after(-1);
    watchdog_stop(&wd);
    ASSERT_EQ(atomic_load(&r.runs), 1);
    ASSERT_EQ(cancel__alloc_live(), live);

    pthread_barrier_wait(&many_release);
    for (int i = 0; i < MANY; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&many_parked);
    pthread_barrier_destroy(&many_release);
    cancel_source_free(s);
}

/* A chain of linked sources: canceling the root cancels every link, each
 * nested in its parent's callback on this thread.  Deep nesting must not
 * need memory either. */
TEST(deep_linked_chain_cancel_never_allocates)
{
    enum { DEPTH = 64 };
    static cancel_source *chain[DEPTH];
    static struct prec recs[DEPTH];
    chain[0] = cancel_source_new();
    ASSERT_NOT_NULL(chain[0]);
    for (int i = 1; i < DEPTH; i++) {
        cancel_token t = cancel_source_token(chain[i - 1]);
        chain[i] = cancel_source_new_linked(&t, 1);
        ASSERT_NOT_NULL(chain[i]);
    }
    for (int i = 0; i < DEPTH; i++)
        prec_register(&recs[i], chain[i]);
    long live = cancel__alloc_live();
    struct watchdog wd;
    watchdog_start(&wd, "canceling a chain of 64 linked sources with every "
                        "allocation failing");
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_source_cancel_reason(chain[0], 77));
    cancel__alloc_fail_after(-1);
    watchdog_stop(&wd);
    for (int i = 0; i < DEPTH; i++) {
        ASSERT_EQ(cancel_reason(cancel_source_token(chain[i])), 77);
        ASSERT_EQ(atomic_load(&recs[i].runs), 1);
    }
    long grew = cancel__alloc_live() - live;
    for (int i = DEPTH - 1; i >= 0; i--)
        cancel_source_free(chain[i]);
    ASSERT_EQ(grew, 0);
}
