/* Stress: the task layer under every interleaving the threads can produce.
 *
 * Several driver threads each build batches of tasks on one shared pool:
 * plain tasks, parents with attached children, continuations (chained,
 * filtered) - with random bodies (return 0, check the token, poll it, fault,
 * throw another token, cancel their own batch).  Each batch has a source
 * whose token most tasks carry; it is canceled at random moments by its
 * driver, by a canceler thread, or by a body.  Some tasks carry a token
 * canceled before they start.  Some CREATED tasks are handed to a helper
 * thread that waits on them with CANCEL_NONE and an infinite timeout, so
 * the helper's wait may run them inline (racing the worker's claim and the
 * cancel callback; continuations are handed over before they start
 * themselves; plain tasks only once started unless CANCEL_TEST_START_RACE
 * is set, see start_race).  The driver waits
 * in several ways (one task inline, with a token, wait_all, wait_any,
 * polling with a timeout of 0).
 *
 * Invariants checked on every task once its batch is done:
 *   - it reached a final status, and its waiters saw it;
 *   - its body ran at most once; never if its token was canceled before it
 *     started; if it did not run, it is CANCELED and its token is canceled
 *     (or it is a continuation whose filter did not match);
 *   - if it ran, its status is what the rules make of what the body
 *     returned (the body writes down its own prediction), combined, for a
 *     parent, with its children's (FAULTED if any faulted, else CANCELED if
 *     any was canceled, and all the errors, none dropped);
 *   - a continuation ran only after its antecedent finished, saw it, and
 *     matched its filter;
 *   - the counts add up: body runs counted globally == runs recorded per
 *     task.
 * Seeded; CANCEL_TEST_SEED replays a schedule of choices. */
#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#define DRIVERS 3
#define BATCH 24       /* top-level tasks and continuations per batch */
#define KIDS 4         /* attached children per parent, at most */
#define RECS (BATCH * (KIDS + 1))

/* ---- randomness --------------------------------------------------------- */

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static inline uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)((rnd(s) >> 32) % n);
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

static unsigned jitter(uint64_t *s)
{
    return below(s, 1u << below(s, 14));
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed7a5c0ffeeULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* ---- shared state ------------------------------------------------------- */

static cancel_pool *pool;
static cancel_source *always_canceled; /* a foreign token, canceled */
static atomic_long body_runs;          /* every body run, globally */
static atomic_long stat_ran, stat_not_run, stat_inline, stat_tasks;
static atomic_long stat_status[7];

/* Batch sources the canceler may cancel: slot i belongs to driver i. */
static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static cancel_source *slots[DRIVERS];
static bool visited[DRIVERS]; /* the canceler decided on this batch */
static atomic_bool stopping;

/* Hand CREATED tasks to the helper before starting them, so that its
 * inlining wait races cancel_task_start itself (that race once ran a body
 * twice: start() stored WAITING_TO_RUN again over a waiter's claim).  On
 * by default; CANCEL_TEST_START_RACE=0 turns it off.  Continuations are
 * always handed over before they start (they start themselves), and
 * started tasks are handed over too. */
static bool start_race;

/* CREATED tasks handed to the helper (retained handles). */
#define MAILBOX 64
static pthread_mutex_t mail_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mail_cv = PTHREAD_COND_INITIALIZER;
static cancel_task *mail[MAILBOX];
static int mail_n;

/* ---- a task's record ---------------------------------------------------- */

enum kind { PLAIN, PARENT, CHILD, CONT };
enum beh { B_ZERO, B_CHECK, B_POLL, B_FAULT, B_OTHER, B_SELF, B_COUNT };

typedef struct rec rec;
struct rec {
    enum kind kind;
    enum beh beh;
    bool pre_canceled; /* its token was canceled before it started */
    unsigned filter;   /* CONT: its CANCEL_CONTINUE_* flags */
    rec *ante;         /* CONT: its antecedent's record */
    cancel_source *batch;
    cancel_task *task;
    cancel_token token;
    uint64_t seed;     /* the body's own choices */
    atomic_int runs;
    /* written by the body before it returns */
    int predicted;     /* a cancel_task_status */
    int code;          /* the body's return value */
    cancel_task_status ante_seen;
    cancel_task *current;     /* cancel_task_current() in the body */
    bool requested_at_return; /* its token, as the body returned */
    bool mailed;              /* handed to the helper */
    /* PARENT: its children */
    int nkids;
    rec *kids[KIDS];
};

typedef struct driver {
    int id;
    uint64_t seed;
    cancel_source *batch;
    cancel_source *pre; /* canceled before use */
    rec recs[RECS];
    int nrecs;
} driver;

static bool is_final(cancel_task_status s)
{
    return s == CANCEL_TASK_RAN_TO_COMPLETION || s == CANCEL_TASK_CANCELED ||
           s == CANCEL_TASK_FAULTED;
}

static bool wanted(unsigned filter, cancel_task_status s)
{
    unsigned f = filter & (CANCEL_CONTINUE_ON_RAN_TO_COMPLETION |
                           CANCEL_CONTINUE_ON_CANCELED |
                           CANCEL_CONTINUE_ON_FAULTED);
    if (f == 0)
        return true;
    switch (s) {
    case CANCEL_TASK_RAN_TO_COMPLETION:
        return f & CANCEL_CONTINUE_ON_RAN_TO_COMPLETION;
    case CANCEL_TASK_CANCELED:
        return f & CANCEL_CONTINUE_ON_CANCELED;
    case CANCEL_TASK_FAULTED:
        return f & CANCEL_CONTINUE_ON_FAULTED;
    default:
        harness_fail(__FILE__, __LINE__, "antecedent not final: %d", (int)s);
    }
}

/* Run the record's behaviour and write down what the rules make of it. */
static int behave(rec *r, cancel_token t)
{
    if (atomic_fetch_add(&r->runs, 1) != 0)
        harness_fail(__FILE__, __LINE__,
                     "a body ran twice: kind %d, mailed %d, status %d",
                     (int)r->kind, (int)r->mailed,
                     (int)cancel_task_status_of(cancel_task_current()));
    atomic_fetch_add(&body_runs, 1);
    ASSERT_TRUE(cancel_token_equal(t, r->token));
    r->current = cancel_task_current(); /* r->task may not be set yet */
    int ret = 0;
    bool own = false; /* a cancellation recorded with t */
    switch (r->beh) {
    case B_ZERO:
        ret = 0;
        break;
    case B_CHECK:
        ret = cancel_check(t);
        own = true;
        break;
    case B_POLL: {
        unsigned n = below(&r->seed, 4000);
        for (unsigned i = 0; i < n && ret == 0; i++)
            ret = cancel_check(t);
        own = true;
        break;
    }
    case B_FAULT:
        ret = -EIO;
        break;
    case B_OTHER:
        ret = cancel_throw(cancel_source_token(always_canceled));
        break;
    case B_SELF:
        /* The batch source outlives every task of the batch. */
        cancel_source_cancel(r->batch);
        ret = cancel_check(t);
        own = true;
        break;
    default:
        break;
    }
    if (ret == 0)
        r->predicted = CANCEL_TASK_RAN_TO_COMPLETION;
    else if (ret == -ECANCELED && own)
        r->predicted = CANCEL_TASK_CANCELED; /* cancel_check said so */
    else
        r->predicted = CANCEL_TASK_FAULTED;
    r->code = ret;
    r->requested_at_return = cancel_requested(t);
    return ret;
}

static int plain_fn(void *arg, cancel_token t)
{
    return behave(arg, t);
}

static int parent_fn(void *arg, cancel_token t)
{
    rec *r = arg;
    for (int i = 0; i < r->nkids; i++) {
        rec *k = r->kids[i];
        k->task = cancel_task_new(pool, plain_fn, k, k->token,
                                  CANCEL_TASK_ATTACHED);
        ASSERT_NOT_NULL(k->task);
        if (k->pre_canceled)
            ASSERT_TRUE(cancel_requested(k->token));
        ASSERT_OK(cancel_task_start(k->task));
        if (below(&r->seed, 4) == 0)
            spin(jitter(&r->seed));
    }
    return behave(r, t);
}

static int cont_fn(cancel_task *ante, void *arg, cancel_token t)
{
    rec *r = arg;
    ASSERT_TRUE(ante == r->ante->task);
    r->ante_seen = cancel_task_status_of(ante);
    ASSERT_TRUE(is_final(r->ante_seen));
    ASSERT_TRUE(wanted(r->filter, r->ante_seen));
    return behave(r, t);
}

/* ---- checking ----------------------------------------------------------- */

/* Checks r (and its children) and returns how many errors it carries. */
static size_t check(rec *r)
{
    cancel_task_status s = cancel_task_status_of(r->task);
    ASSERT_TRUE(is_final(s));
    atomic_fetch_add(&stat_status[s], 1);
    atomic_fetch_add(&stat_tasks, 1);
    int runs = atomic_load(&r->runs);
    ASSERT_LE(runs, 1);
    if (runs)
        atomic_fetch_add(&stat_ran, 1);
    else
        atomic_fetch_add(&stat_not_run, 1);
    if (r->pre_canceled) {
        ASSERT_EQ(runs, 0);
        ASSERT_EQ(s, CANCEL_TASK_CANCELED);
    }
    if (r->kind == CONT) {
        cancel_task_status as = cancel_task_status_of(r->ante->task);
        if (!wanted(r->filter, as)) {
            ASSERT_EQ(runs, 0);
            ASSERT_EQ(s, CANCEL_TASK_CANCELED);
            ASSERT_EQ(cancel_task_error(r->task), 0);
            return 0;
        }
        if (runs)
            ASSERT_EQ(r->ante_seen, as);
    }
    if (runs == 0) {
        ASSERT_EQ(s, CANCEL_TASK_CANCELED);
        ASSERT_TRUE(cancel_requested(r->token));
        ASSERT_EQ(cancel_task_error(r->task), 0);
        ASSERT_EQ(cancel_task_errors(r->task, NULL, 0), 0);
        for (int i = 0; i < r->nkids; i++)
            ASSERT_NULL(r->kids[i]->task); /* the parent never ran */
        return 0;
    }

    /* It ran: the rules, applied to what it returned and to its kids. */
    ASSERT_TRUE(r->current == r->task);
    size_t nerr = r->predicted == CANCEL_TASK_FAULTED ? 1 : 0;
    bool kid_faulted = false, kid_canceled = false;
    for (int i = 0; i < r->nkids; i++) {
        size_t k = check(r->kids[i]);
        nerr += k;
        cancel_task_status ks = cancel_task_status_of(r->kids[i]->task);
        kid_faulted |= ks == CANCEL_TASK_FAULTED;
        kid_canceled |= ks == CANCEL_TASK_CANCELED;
    }
    int expect;
    if (r->predicted == CANCEL_TASK_FAULTED || kid_faulted)
        expect = CANCEL_TASK_FAULTED;
    else if (r->predicted == CANCEL_TASK_CANCELED ||
             (kid_canceled && r->requested_at_return))
        expect = CANCEL_TASK_CANCELED;
    else
        expect = CANCEL_TASK_RAN_TO_COMPLETION;
    /* A child canceled, and the parent's token canceled only after its
     * body returned: whether that was before the parent finished is not
     * known here, so either ending is right then. */
    if (expect == CANCEL_TASK_RAN_TO_COMPLETION && kid_canceled &&
        cancel_requested(r->token) && s == CANCEL_TASK_CANCELED)
        expect = CANCEL_TASK_CANCELED;
    ASSERT_EQ(s, expect);
    if (s == CANCEL_TASK_FAULTED) {
        int codes[KIDS + 1];
        ASSERT_EQ(cancel_task_errors(r->task, codes, KIDS + 1), nerr);
        if (r->predicted == CANCEL_TASK_FAULTED)
            ASSERT_EQ(codes[0], r->code);
        ASSERT_EQ(cancel_task_error(r->task), codes[0]);
        ASSERT_NE(codes[0], 0);
        return nerr;
    }
    ASSERT_EQ(cancel_task_error(r->task), 0);
    return 0;
}

/* ---- the helper: infinite waits without a token (inlining) -------------- */

static void *helper_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mail_mu);
        while (mail_n == 0 && !atomic_load(&stopping))
            pthread_cond_wait(&mail_cv, &mail_mu);
        if (mail_n == 0) {
            pthread_mutex_unlock(&mail_mu);
            return NULL;
        }
        cancel_task *t = mail[--mail_n];
        pthread_mutex_unlock(&mail_mu);
        int r = cancel_task_wait(t, CANCEL_NONE, CANCEL_INFINITE);
        cancel_task_status s = cancel_task_status_of(t);
        ASSERT_TRUE(is_final(s));
        if (s == CANCEL_TASK_RAN_TO_COMPLETION)
            ASSERT_OK(r);
        else if (s == CANCEL_TASK_CANCELED)
            ASSERT_ERR(r, -ECANCELED);
        else
            ASSERT_EQ(r, cancel_task_error(t));
        cancel_task_release(t);
    }
}

static bool post_mail(cancel_task *t)
{
    pthread_mutex_lock(&mail_mu);
    bool ok = mail_n < MAILBOX;
    if (ok) {
        mail[mail_n++] = cancel_task_retain(t);
        pthread_cond_signal(&mail_cv);
    }
    pthread_mutex_unlock(&mail_mu);
    return ok;
}

/* ---- the canceler ------------------------------------------------------- */

static void *canceler_main(void *arg)
{
    uint64_t seed = *(uint64_t *)arg;
    while (!atomic_load(&stopping)) {
        int i = (int)below(&seed, DRIVERS);
        spin(jitter(&seed));
        /* One decision per batch: cancel a third of them, at a random
         * moment of their life. */
        pthread_mutex_lock(&slots_mu);
        if (slots[i] != NULL && !visited[i]) {
            visited[i] = true;
            if (below(&seed, 3) == 0)
                cancel_source_cancel(slots[i]);
        }
        pthread_mutex_unlock(&slots_mu);
        sched_yield();
    }
    return NULL;
}

/* ---- a driver ----------------------------------------------------------- */

static rec *new_rec(driver *d, enum kind kind)
{
    ASSERT_LT(d->nrecs, RECS);
    rec *r = &d->recs[d->nrecs++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    /* B_SELF cancels the whole batch: rarer than the others. */
    r->beh = (enum beh)below(&d->seed, B_COUNT);
    if (r->beh == B_SELF && below(&d->seed, 4) != 0)
        r->beh = B_POLL;
    r->batch = d->batch;
    r->seed = rnd(&d->seed) | 1;
    unsigned tok = below(&d->seed, 8);
    if (tok == 0) {
        r->token = CANCEL_NONE;
        if (r->beh == B_SELF)
            r->beh = B_ZERO; /* cannot cancel CANCEL_NONE */
    } else if (tok == 1) {
        r->token = cancel_source_token(d->pre);
        r->pre_canceled = true;
    } else {
        r->token = cancel_source_token(d->batch);
    }
    return r;
}

static const unsigned filters[] = {
    0,
    CANCEL_CONTINUE_ON_RAN_TO_COMPLETION,
    CANCEL_CONTINUE_ON_CANCELED,
    CANCEL_CONTINUE_ON_FAULTED,
    CANCEL_CONTINUE_ON_CANCELED | CANCEL_CONTINUE_ON_FAULTED,
};

static void wait_batch(driver *d, cancel_task **tasks, int n)
{
    switch (below(&d->seed, 5)) {
    case 0: /* one by one, inline where possible */
        for (int i = 0; i < n; i++) {
            bool queued =
                cancel_task_status_of(tasks[i]) == CANCEL_TASK_WAITING_TO_RUN;
            int r = cancel_task_wait(tasks[i], CANCEL_NONE, CANCEL_INFINITE);
            (void)r;
            if (queued)
                atomic_fetch_add(&stat_inline, 1);
        }
        break;
    case 1: { /* with a token that never fires: no inlining */
        cancel_source *w = cancel_source_new();
        for (int i = n - 1; i >= 0; i--) {
            int r = cancel_task_wait(tasks[i], cancel_source_token(w),
                                     CANCEL_INFINITE);
            ASSERT_NE(r, -ETIMEDOUT);
        }
        cancel_source_free(w);
        break;
    }
    case 2: {
        int r = cancel_task_wait_all(tasks, (size_t)n, CANCEL_NONE,
                                     CANCEL_INFINITE);
        ASSERT_NE(r, -ETIMEDOUT);
        break;
    }
    case 3: { /* wait_any, removing each finished task, until none is left */
        cancel_task *rest[BATCH];
        int m = n;
        memcpy(rest, tasks, sizeof(*tasks) * (size_t)n);
        while (m > 0) {
            int idx = cancel_task_wait_any(rest, (size_t)m, CANCEL_NONE,
                                           CANCEL_INFINITE);
            ASSERT_TRUE(idx >= 0 && idx < m);
            ASSERT_TRUE(is_final(cancel_task_status_of(rest[idx])));
            rest[idx] = rest[--m];
        }
        break;
    }
    default: /* poll with a timeout of 0, then block */
        for (int k = 0; k < 50; k++) {
            if (cancel_task_wait_all(tasks, (size_t)n, CANCEL_NONE, 0) !=
                -ETIMEDOUT)
                break;
            sched_yield();
        }
        ASSERT_NE(cancel_task_wait_all(tasks, (size_t)n, CANCEL_NONE,
                                       CANCEL_INFINITE),
                  -ETIMEDOUT);
        break;
    }
    /* Whatever the way, each is final and its wait agrees with it. */
    for (int i = 0; i < n; i++) {
        cancel_task_status s = cancel_task_status_of(tasks[i]);
        ASSERT_TRUE(is_final(s));
        int r = cancel_task_wait(tasks[i], CANCEL_NONE, 0);
        if (s == CANCEL_TASK_RAN_TO_COMPLETION)
            ASSERT_OK(r);
        else if (s == CANCEL_TASK_CANCELED) {
            ASSERT_ERR(r, -ECANCELED);
            ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(),
                                           cancel_task_token(tasks[i])));
        } else {
            ASSERT_EQ(r, cancel_task_error(tasks[i]));
            ASSERT_NE(r, 0);
        }
    }
}

static void run_batch(driver *d)
{
    d->batch = cancel_source_new();
    d->pre = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(d->pre));
    d->nrecs = 0;
    pthread_mutex_lock(&slots_mu);
    slots[d->id] = d->batch;
    visited[d->id] = false;
    pthread_mutex_unlock(&slots_mu);

    cancel_task *tasks[BATCH];
    rec *top[BATCH];
    int n = 0;
    unsigned cancel_at = below(&d->seed, 2 * BATCH); /* maybe never */
    for (int i = 0; i < BATCH; i++) {
        if ((unsigned)i == cancel_at)
            cancel_source_cancel(d->batch);
        unsigned what = i == 0 ? 0 : below(&d->seed, 8);
        rec *r;
        if (what < 4) {
            r = new_rec(d, PLAIN);
            r->task = cancel_task_new(pool, plain_fn, r, r->token, 0);
            ASSERT_NOT_NULL(r->task);
            bool mail = below(&d->seed, 4) == 0;
            if (mail && start_race && post_mail(r->task)) {
                r->mailed = true;
                spin(jitter(&d->seed)); /* the helper may wait already */
            }
            ASSERT_OK(cancel_task_start(r->task));
            if (mail && !start_race)
                r->mailed = post_mail(r->task);
        } else if (what < 6) {
            r = new_rec(d, PARENT);
            r->nkids = (int)below(&d->seed, KIDS + 1);
            for (int k = 0; k < r->nkids; k++) {
                rec *kid = new_rec(d, CHILD);
                r->kids[k] = kid;
            }
            r->task = cancel_task_run(pool, parent_fn, r, r->token, 0);
            ASSERT_NOT_NULL(r->task);
        } else {
            r = new_rec(d, CONT);
            r->ante = top[below(&d->seed, (uint32_t)n)];
            r->filter = filters[below(&d->seed, 5)];
            r->task = cancel_task_continue_with(r->ante->task, cont_fn, r,
                                                r->token, r->filter);
            ASSERT_NOT_NULL(r->task);
            if (below(&d->seed, 4) == 0)
                r->mailed = post_mail(r->task);
        }
        top[n] = r;
        tasks[n++] = r->task;
        if (below(&d->seed, 4) == 0)
            spin(jitter(&d->seed));
    }
    wait_batch(d, tasks, n);

    for (int i = 0; i < n; i++)
        check(top[i]);
    long runs = 0;
    for (int i = 0; i < d->nrecs; i++)
        runs += atomic_load(&d->recs[i].runs);
    ASSERT_LE(runs, d->nrecs);

    pthread_mutex_lock(&slots_mu);
    slots[d->id] = NULL;
    pthread_mutex_unlock(&slots_mu);
    for (int i = 0; i < d->nrecs; i++)
        cancel_task_release(d->recs[i].task);
    cancel_source_free(d->batch);
    cancel_source_free(d->pre);
}

static atomic_long recorded_runs;

static void *driver_main(void *arg)
{
    driver *d = arg;
    long rounds = harness_scale(30000);
    for (long i = 0; i < rounds; i++) {
        run_batch(d);
        long runs = 0;
        for (int k = 0; k < d->nrecs; k++)
            runs += atomic_load(&d->recs[k].runs);
        atomic_fetch_add(&recorded_runs, runs);
    }
    return NULL;
}

TEST(stress_tasks_children_continuations_cancels_waits)
{
    uint64_t seed = base_seed();
    const char *sr = getenv("CANCEL_TEST_START_RACE");
    start_race = sr == NULL || strcmp(sr, "0") != 0;
    if (start_race)
        printf("handing CREATED tasks to the inlining helper\n");
    pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    always_canceled = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(always_canceled));

    static driver drivers[DRIVERS];
    pthread_t th[DRIVERS], helper, canceler;
    uint64_t cseed = rnd(&seed) | 1;
    ASSERT_OK(pthread_create(&helper, NULL, helper_main, NULL));
    ASSERT_OK(pthread_create(&canceler, NULL, canceler_main, &cseed));
    for (int i = 0; i < DRIVERS; i++) {
        drivers[i].id = i;
        drivers[i].seed = rnd(&seed) | 1;
        ASSERT_OK(pthread_create(&th[i], NULL, driver_main, &drivers[i]));
    }
    for (int i = 0; i < DRIVERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stopping, true);
    pthread_mutex_lock(&mail_mu);
    pthread_cond_broadcast(&mail_cv);
    pthread_mutex_unlock(&mail_mu);
    pthread_join(helper, NULL);
    pthread_join(canceler, NULL);
    cancel_pool_free(pool);

    ASSERT_EQ(atomic_load(&body_runs), atomic_load(&recorded_runs));
    ASSERT_EQ(atomic_load(&stat_ran) + atomic_load(&stat_not_run),
              atomic_load(&stat_tasks));
    ASSERT_EQ(atomic_load(&stat_ran), atomic_load(&body_runs));
    printf("%ld tasks: %ld ran (%ld inline candidates), %ld never ran; "
           "ran to completion %ld, canceled %ld, faulted %ld\n",
           atomic_load(&stat_tasks), atomic_load(&stat_ran),
           atomic_load(&stat_inline), atomic_load(&stat_not_run),
           atomic_load(&stat_status[CANCEL_TASK_RAN_TO_COMPLETION]),
           atomic_load(&stat_status[CANCEL_TASK_CANCELED]),
           atomic_load(&stat_status[CANCEL_TASK_FAULTED]));
    cancel_source_free(always_canceled);
}
