/* Unit tests of cancel_register_on: registration with a target executor
 * (.NET's registration with a SynchronizationContext). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* A toy executor: post() records each call and queues (fn, arg); the test
 * plays the executor's thread and drains the queue when it wants. */
typedef struct executor {
    pthread_mutex_t mu;
    struct {
        cancel_callback *fn;
        void *arg;
        pthread_t thread;
    } q[32];
    int n;    /* posts so far */
    int done; /* drained so far */
    char log[64];
    int nlog;
} executor;

static void executor_init(executor *ex)
{
    memset(ex, 0, sizeof(*ex));
    pthread_mutex_init(&ex->mu, NULL);
}

static void executor_destroy(executor *ex)
{
    pthread_mutex_destroy(&ex->mu);
}

/* The log is shared by posts and by plain callbacks (both run on the
 * canceling thread): a post logs the lowercase id of its entry. */
typedef struct entry {
    executor *ex;
    char id;
    int runs;
} entry;

static void post(void *ctx, cancel_callback *fn, void *arg)
{
    executor *ex = ctx;
    pthread_mutex_lock(&ex->mu);
    ASSERT_LT(ex->n, 32);
    ex->q[ex->n].fn = fn;
    ex->q[ex->n].arg = arg;
    ex->q[ex->n].thread = pthread_self();
    ex->n++;
    entry *e = arg;
    if (e != NULL && e->ex == ex)
        ex->log[ex->nlog++] = e->id;
    pthread_mutex_unlock(&ex->mu);
}

static int posts(executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    int n = ex->n;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

/* Run everything posted so far, on the calling thread. */
static void drain(executor *ex)
{
    for (;;) {
        pthread_mutex_lock(&ex->mu);
        if (ex->done == ex->n) {
            pthread_mutex_unlock(&ex->mu);
            return;
        }
        cancel_callback *fn = ex->q[ex->done].fn;
        void *arg = ex->q[ex->done].arg;
        ex->done++;
        pthread_mutex_unlock(&ex->mu);
        fn(arg);
    }
}

static void entry_cb(void *arg)
{
    entry *e = arg;
    e->runs++;
}

/* A plain callback logs its id in uppercase. */
static void plain_log_cb(void *arg)
{
    entry *e = arg;
    executor *ex = e->ex;
    pthread_mutex_lock(&ex->mu);
    ex->log[ex->nlog++] = e->id;
    pthread_mutex_unlock(&ex->mu);
    e->runs++;
}

#define ASSERT_LOG(ex, want)                                                   \
    do {                                                                       \
        if (strcmp((ex)->log, (want)) != 0)                                    \
            harness_fail(__FILE__, __LINE__, "log is \"%s\", want \"%s\"",     \
                         (ex)->log, (want));                                   \
    } while (0)

struct canceler {
    cancel_source *src;
    pthread_t self;
};

static void *cancel_thread(void *p)
{
    struct canceler *c = p;
    c->self = pthread_self();
    ASSERT_OK(cancel_source_cancel(c->src));
    return NULL;
}

/* ---- tests -------------------------------------------------------------- */

TEST(post_called_on_canceling_thread_with_users_fn_and_arg)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                 post, &ex));
    ASSERT_EQ(posts(&ex), 0);

    struct canceler c = {src, pthread_self()};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, cancel_thread, &c), 0);
    pthread_join(th, NULL);

    ASSERT_EQ(posts(&ex), 1);
    ASSERT_TRUE(ex.q[0].fn == entry_cb);
    ASSERT_TRUE(ex.q[0].arg == &e);
    ASSERT_TRUE(pthread_equal(ex.q[0].thread, c.self));
    ASSERT_EQ(e.runs, 0); /* posted, not run: the executor runs it */
    drain(&ex);
    ASSERT_EQ(e.runs, 1);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(unregister_before_cancel_means_post_never_called)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                 post, &ex));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(posts(&ex), 0);
    ASSERT_EQ(e.runs, 0);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(unregister_nowait_before_cancel_means_post_never_called)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                 post, &ex));
    ASSERT_TRUE(cancel_unregister_nowait(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(posts(&ex), 0);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(unregister_after_post_returns_false_without_waiting_for_fn)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                 post, &ex));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(posts(&ex), 1);
    /* fn has not run and only this thread would run it: an unregister that
     * waited for fn would never return. */
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_FALSE(cancel_unregister_nowait(&reg));
    ASSERT_EQ(e.runs, 0);
    drain(&ex);
    ASSERT_EQ(e.runs, 1);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(register_on_canceled_token_posts_before_returning)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                  post, &ex),
               -ECANCELED);
    ASSERT_EQ(posts(&ex), 1);
    ASSERT_TRUE(ex.q[0].fn == entry_cb);
    ASSERT_TRUE(ex.q[0].arg == &e);
    ASSERT_TRUE(pthread_equal(ex.q[0].thread, pthread_self()));
    ASSERT_EQ(e.runs, 0); /* not run inline: posted */
    ASSERT_FALSE(cancel_unregister(&reg));
    drain(&ex);
    ASSERT_EQ(e.runs, 1);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(register_on_none_never_posts)
{
    executor ex;
    executor_init(&ex);
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(CANCEL_NONE, &reg, entry_cb, &e, post, &ex));
    ASSERT_FALSE(cancel_unregister(&reg));
    ASSERT_EQ(posts(&ex), 0);
    executor_destroy(&ex);
}

TEST(lifo_across_plain_and_posted)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    entry a = {&ex, 'A', 0}, b = {&ex, 'b', 0}, c = {&ex, 'C', 0},
          d = {&ex, 'd', 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    cancel_registration rd = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &ra, plain_log_cb, &a));
    ASSERT_OK(cancel_register_on(t, &rb, entry_cb, &b, post, &ex));
    ASSERT_OK(cancel_register(t, &rc, plain_log_cb, &c));
    ASSERT_OK(cancel_register_on(t, &rd, entry_cb, &d, post, &ex));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_LOG(&ex, "dCbA");
    ASSERT_EQ(posts(&ex), 2);
    ASSERT_TRUE(ex.q[0].arg == &d);
    ASSERT_TRUE(ex.q[1].arg == &b);
    drain(&ex);
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(b.runs, 1);
    ASSERT_EQ(c.runs, 1);
    ASSERT_EQ(d.runs, 1);
    cancel_source_free(src);
    executor_destroy(&ex);
}

/* Removing posted registrations from the middle, the head and the tail of a
 * list that mixes them with plain ones keeps every other one intact. */
TEST(remove_posted_registration_in_middle_of_plain_ones)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    entry a = {&ex, 'A', 0}, b = {&ex, 'b', 0}, c = {&ex, 'C', 0};
    cancel_registration ra = CANCEL_REGISTRATION_INIT;
    cancel_registration rb = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &ra, plain_log_cb, &a));
    ASSERT_OK(cancel_register_on(t, &rb, entry_cb, &b, post, &ex));
    ASSERT_OK(cancel_register(t, &rc, plain_log_cb, &c));
    ASSERT_TRUE(cancel_unregister(&rb));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_LOG(&ex, "CA");
    ASSERT_EQ(posts(&ex), 0);
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(c.runs, 1);
    ASSERT_EQ(b.runs, 0);
    cancel_source_free(src);
    executor_destroy(&ex);
}

TEST(remove_posted_registrations_at_every_position)
{
    /* P = posted, L = plain: registered in the order of `kinds`. */
    static const char kinds[] = "PLPPLPLLP";
    enum { N = sizeof(kinds) - 1 };
    for (int victim = 0; victim < N; victim++) {
        if (kinds[victim] != 'P')
            continue;
        executor ex;
        executor_init(&ex);
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        entry e[N];
        cancel_registration reg[N];
        memset(reg, 0, sizeof(reg));
        for (int i = 0; i < N; i++) {
            e[i] = (entry){&ex, (char)(kinds[i] == 'P' ? 'a' + i : 'A' + i), 0};
            if (kinds[i] == 'P')
                ASSERT_OK(
                    cancel_register_on(t, &reg[i], entry_cb, &e[i], post, &ex));
            else
                ASSERT_OK(cancel_register(t, &reg[i], plain_log_cb, &e[i]));
        }
        ASSERT_TRUE(cancel_unregister(&reg[victim]));
        ASSERT_OK(cancel_source_cancel(src));
        char want[N + 1];
        int k = 0;
        for (int i = N - 1; i >= 0; i--)
            if (i != victim)
                want[k++] = e[i].id;
        want[k] = '\0';
        ASSERT_LOG(&ex, want);
        ASSERT_EQ(posts(&ex), 4);
        drain(&ex);
        for (int i = 0; i < N; i++)
            ASSERT_EQ(e[i].runs, i == victim ? 0 : 1);
        cancel_source_free(src);
        executor_destroy(&ex);
    }
}

TEST(remove_all_posted_registrations_keeps_plain_ones)
{
    enum { N = 10 };
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    entry e[N];
    cancel_registration reg[N];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < N; i++) {
        e[i] = (entry){&ex, (char)(i % 2 ? 'a' + i : 'A' + i), 0};
        if (i % 2)
            ASSERT_OK(
                cancel_register_on(t, &reg[i], entry_cb, &e[i], post, &ex));
        else
            ASSERT_OK(cancel_register(t, &reg[i], plain_log_cb, &e[i]));
    }
    /* Newest first, then oldest first, then the rest. */
    ASSERT_TRUE(cancel_unregister(&reg[9]));
    ASSERT_TRUE(cancel_unregister(&reg[1]));
    ASSERT_TRUE(cancel_unregister_nowait(&reg[5]));
    ASSERT_TRUE(cancel_unregister(&reg[3]));
    ASSERT_TRUE(cancel_unregister(&reg[7]));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_LOG(&ex, "IGECA");
    ASSERT_EQ(posts(&ex), 0);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(e[i].runs, i % 2 ? 0 : 1);
    cancel_source_free(src);
    executor_destroy(&ex);
}

/* A posted registration on a source that try_reset drops is never posted. */
TEST(try_reset_drops_posted_registration)
{
    executor ex;
    executor_init(&ex);
    cancel_source *src = cancel_source_new();
    entry e = {&ex, 'a', 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, entry_cb, &e,
                                 post, &ex));
    ASSERT_TRUE(cancel_source_try_reset(src));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(posts(&ex), 0);
    ASSERT_FALSE(cancel_unregister(&reg));
    cancel_source_free(src);
    executor_destroy(&ex);
}
