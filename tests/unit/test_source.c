/* Unit tests of sources and cancel_source_cancel: SPEC section 2, the rows
 * cancel_source_new / cancel_source_token / cancel_source_cancel /
 * cancel_requested, semantic 1 (LIFO), semantic 8 (memory) and the model
 * facts F1 (one request, seen by every copy, sticky) and F3 (callbacks run
 * synchronously inside cancel). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

/* ---- helpers ------------------------------------------------------------ */

/* An order log written by callbacks that all run on one thread. */
typedef struct trace {
    char log[64];
    int n;
} trace;

typedef struct entry {
    trace *t;
    char id;
    pthread_t thread; /* the thread the callback ran on */
    int runs;
} entry;

static void log_cb(void *arg)
{
    entry *e = arg;
    e->t->log[e->t->n++] = e->id;
    e->thread = pthread_self();
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

/* ---- cancel_source_new / cancel_source_token ---------------------------- */

TEST(new_source_is_not_canceled)
{
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_TRUE(cancel_can_be_canceled(t));
    ASSERT_EQ(cancel_reason(t), 0);
    ASSERT_OK(cancel_check(t));
    cancel_source_free(src);
}

TEST(token_is_stable_and_distinct_per_source)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_TRUE(
        cancel_token_equal(cancel_source_token(a), cancel_source_token(a)));
    ASSERT_FALSE(
        cancel_token_equal(cancel_source_token(a), cancel_source_token(b)));
    ASSERT_FALSE(cancel_token_equal(cancel_source_token(a), CANCEL_NONE));
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(free_does_not_cancel)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, inc_cb, &runs));
    cancel_source_free(src);
    ASSERT_FALSE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), 0);
    ASSERT_EQ(atomic_load(&runs), 0);
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_EQ(atomic_load(&runs), 0);
    cancel_token_release(t);
}

/* ---- cancel_source_cancel ----------------------------------------------- */

TEST(cancel_sets_every_copy_of_the_token)
{
    cancel_source *src = cancel_source_new();
    cancel_token t1 = cancel_source_token(src);
    cancel_token t2 = t1;
    cancel_token copies[8];
    for (int i = 0; i < 8; i++)
        copies[i] = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(t1));
    ASSERT_TRUE(cancel_requested(t2));
    for (int i = 0; i < 8; i++) {
        ASSERT_TRUE(cancel_requested(copies[i]));
        ASSERT_EQ(cancel_reason(copies[i]), ECANCELED);
        ASSERT_ERR(cancel_check(copies[i]), -ECANCELED);
    }
    cancel_source_free(src);
}

TEST(cancel_is_sticky)
{
    /* F1: a token never goes back to "not canceled", whatever is tried. */
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_FALSE(cancel_source_try_reset(src));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_OK(cancel_source_cancel_after(src, -1));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(t));
    cancel_source_free(src);
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ECANCELED);
    cancel_token_release(t);
}

TEST(cancel_returns_zero_and_is_idempotent)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(cancel_source_cancel_reason(src, 77));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), ECANCELED);
    cancel_source_free(src);
}

TEST(cancel_without_registrations)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

/* Semantic 1: A, B, C registered run C, B, A. */
TEST(lifo_order)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry e[3] = {{&tr, 'A', 0, 0}, {&tr, 'B', 0, 0}, {&tr, 'C', 0, 0}};
    cancel_registration reg[3] = {CANCEL_REGISTRATION_INIT,
                                  CANCEL_REGISTRATION_INIT,
                                  CANCEL_REGISTRATION_INIT};
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cancel_register(t, &reg[i], log_cb, &e[i]));
    ASSERT_LOG(&tr, "");
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_LOG(&tr, "CBA");
    for (int i = 0; i < 3; i++)
        ASSERT_FALSE(cancel_unregister(&reg[i]));
    cancel_source_free(src);
}

TEST(lifo_order_many)
{
    enum { N = 40 };
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry e[N];
    cancel_registration reg[N];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < N; i++) {
        e[i] = (entry){&tr, (char)('0' + i), 0, 0};
        ASSERT_OK(cancel_register(t, &reg[i], log_cb, &e[i]));
    }
    /* Remove every third one: the others keep their order. */
    for (int i = 0; i < N; i += 3)
        ASSERT_TRUE(cancel_unregister(&reg[i]));
    ASSERT_OK(cancel_source_cancel(src));
    char want[N + 1];
    int k = 0;
    for (int i = N - 1; i >= 0; i--)
        if (i % 3 != 0)
            want[k++] = (char)('0' + i);
    want[k] = '\0';
    ASSERT_LOG(&tr, want);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(e[i].runs, i % 3 != 0);
    cancel_source_free(src);
}

/* F3: all on the canceling thread, before cancel returns; a second cancel
 * runs nothing. */
struct cancel_thread_arg {
    cancel_source *src;
    pthread_t self;
    trace *tr;
    char log_at_return[64];
};

static void *cancel_thread(void *p)
{
    struct cancel_thread_arg *a = p;
    a->self = pthread_self();
    ASSERT_OK(cancel_source_cancel(a->src));
    memcpy(a->log_at_return, a->tr->log, sizeof(a->log_at_return));
    return NULL;
}

TEST(callbacks_run_on_canceling_thread_before_cancel_returns)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry e[3] = {{&tr, 'A', 0, 0}, {&tr, 'B', 0, 0}, {&tr, 'C', 0, 0}};
    cancel_registration reg[3] = {CANCEL_REGISTRATION_INIT,
                                  CANCEL_REGISTRATION_INIT,
                                  CANCEL_REGISTRATION_INIT};
    for (int i = 0; i < 3; i++)
        ASSERT_OK(cancel_register(t, &reg[i], log_cb, &e[i]));

    struct cancel_thread_arg a = {src, pthread_self(), &tr, {0}};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, cancel_thread, &a), 0);
    pthread_join(th, NULL);

    ASSERT_TRUE(strcmp(a.log_at_return, "CBA") == 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(pthread_equal(e[i].thread, a.self));
        ASSERT_FALSE(pthread_equal(e[i].thread, pthread_self()));
        ASSERT_EQ(e[i].runs, 1);
    }

    /* A second cancel runs nothing. */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_LOG(&tr, "CBA");
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(e[i].runs, 1);
    cancel_source_free(src);
}

/* A concurrent second cancel returns at once, while the first one is still
 * running a callback. */
struct blocking {
    harness_gate entered;
    harness_gate release;
    atomic_int finished;
    atomic_int runs;
};

static void blocking_cb(void *arg)
{
    struct blocking *b = arg;
    atomic_fetch_add(&b->runs, 1);
    harness_gate_open(&b->entered);
    harness_gate_wait(&b->release);
    atomic_store(&b->finished, 1);
}

static void *cancel_src_thread(void *p)
{
    ASSERT_OK(cancel_source_cancel(p));
    return NULL;
}

TEST(concurrent_second_cancel_returns_at_once)
{
    cancel_source *src = cancel_source_new();
    struct blocking b;
    harness_gate_init(&b.entered);
    harness_gate_init(&b.release);
    atomic_init(&b.finished, 0);
    atomic_init(&b.runs, 0);
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, blocking_cb, &b));

    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, cancel_src_thread, src), 0);
    harness_gate_wait(&b.entered);
    /* The first cancel is inside the callback, which waits for us: a second
     * cancel that waited for it would deadlock (and time out). */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    ASSERT_EQ(atomic_load(&b.finished), 0);
    harness_gate_open(&b.release);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&b.finished), 1);
    ASSERT_EQ(atomic_load(&b.runs), 1);

    cancel_source_free(src);
    harness_gate_destroy(&b.entered);
    harness_gate_destroy(&b.release);
}

/* Memory ordering: what the canceller wrote before cancel is visible to the
 * callbacks and to a reader that saw cancel_requested() true.  Plain (not
 * atomic) data on purpose: TSan reports a missing happens-before. */
static int published;

static void read_published_cb(void *arg)
{
    *(int *)arg = published;
}

static void *publish_and_cancel(void *p)
{
    published = 42;
    ASSERT_OK(cancel_source_cancel(p));
    return NULL;
}

TEST(cancel_publishes_prior_writes)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int seen_in_cb = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, read_published_cb, &seen_in_cb));
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, publish_and_cancel, src), 0);
    while (!cancel_requested(t))
        ; /* spin on the acquire load itself: it is what is tested */
    ASSERT_EQ(published, 42);
    pthread_join(th, NULL);
    ASSERT_EQ(seen_in_cb, 42);
    cancel_source_free(src);
}

/* Callbacks may free the source from inside its own cancel: the
 * cancellation under way completes and the other callbacks still run. */
struct free_in_cb {
    cancel_source *src;
    int freed;
};

static void free_source_cb(void *arg)
{
    struct free_in_cb *f = arg;
    cancel_source_free(f->src);
    f->freed = 1;
}

TEST(free_from_inside_own_callback)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    trace tr = {{0}, 0};
    entry a = {&tr, 'A', 0, 0}, c = {&tr, 'C', 0, 0};
    struct free_in_cb f = {src, 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &ra, log_cb, &a));
    ASSERT_OK(cancel_register(t, &rb, free_source_cb, &f));
    ASSERT_OK(cancel_register(t, &rc, log_cb, &c));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(f.freed, 1);
    ASSERT_LOG(&tr, "CA");
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(c.runs, 1);
}

/* ---- semantic 8: memory ------------------------------------------------- */

_Static_assert(sizeof(cancel_registration) <= 48,
               "a registration is at most 48 bytes");

TEST(registration_fits_48_bytes)
{
    ASSERT_LE(sizeof(cancel_registration), 48);
    ASSERT_EQ(sizeof(cancel_token), sizeof(void *));
}

TEST(first_registration_does_not_allocate)
{
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    long live = cancel__alloc_live();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_EQ(cancel__alloc_live(), live);
    cancel_source_free(src);
    ASSERT_TRUE(cancel_unregister(&reg));
}

TEST(hot_paths_never_allocate)
{
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    atomic_int runs = 0;
    cancel_registration reg[4];
    memset(reg, 0, sizeof(reg));

    /* From here every allocation fails: none of these may need one. */
    cancel__alloc_fail_after(0);
    ASSERT_OK(cancel_check(t));
    ASSERT_OK(cancel_register(t, &reg[0], inc_cb, &runs));
    ASSERT_OK(cancel_register(t, &reg[1], inc_cb, &runs));
    ASSERT_OK(cancel_try_register(t, &reg[2], inc_cb, &runs));
    ASSERT_TRUE(cancel_unregister(&reg[1]));
    ASSERT_TRUE(cancel_unregister_nowait(&reg[2]));
    ASSERT_OK(cancel_register(t, &reg[1], inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 2);
    ASSERT_ERR(cancel_check(t), -ECANCELED);
    ASSERT_ERR(cancel_register(t, &reg[3], inc_cb, &runs), -ECANCELED);
    ASSERT_EQ(atomic_load(&runs), 3);
    ASSERT_FALSE(cancel_unregister(&reg[0]));
    cancel__alloc_fail_after(-1);

    cancel_source_free(src);
}

/* Cancel is a hot path: it never allocates, however many threads have
 * canceled something before (and are still alive). */
struct parked {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int parked;
    bool release;
};

static void *cancel_then_park(void *p)
{
    struct parked *pk = p;
    cancel_source *src = cancel_source_new();
    ASSERT_NOT_NULL(src);
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 1);
    cancel_source_free(src);
    pthread_mutex_lock(&pk->mu);
    pk->parked++;
    pthread_cond_broadcast(&pk->cv);
    while (!pk->release)
        pthread_cond_wait(&pk->cv, &pk->mu);
    pthread_mutex_unlock(&pk->mu);
    return NULL;
}

TEST(cancel_does_not_allocate_after_many_threads_canceled)
{
    enum { N = 40 };
    struct parked pk = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
                        false};
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, cancel_then_park, &pk), 0);
    pthread_mutex_lock(&pk.mu);
    while (pk.parked < N)
        pthread_cond_wait(&pk.cv, &pk.mu);
    pthread_mutex_unlock(&pk.mu);

    /* Every one of the N threads is alive and has canceled a source with a
     * callback.  Now this thread's first cancel. */
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, inc_cb, &runs));
    long live = cancel__alloc_live();
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT_EQ(cancel__alloc_live(), live);

    pthread_mutex_lock(&pk.mu);
    pk.release = true;
    pthread_cond_broadcast(&pk.cv);
    pthread_mutex_unlock(&pk.mu);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    cancel_source_free(src);
}
