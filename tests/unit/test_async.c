/* Unit tests of cancel_source_cancel_async (CancelAsync). */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* The callbacks take a lock that the canceller holds across the call: a
 * synchronous cancel would deadlock; an async one must not. */
struct async_state {
    pthread_mutex_t lock;
    harness_gate all_ran;
    char log[8];
    int n;
    pthread_t threads[3];
    bool canceled_seen[3];
};

struct async_entry {
    struct async_state *st;
    cancel_token t;
    int idx;
};

static void locking_cb(void *arg)
{
    struct async_entry *e = arg;
    struct async_state *st = e->st;
    pthread_mutex_lock(&st->lock);
    st->log[st->n++] = (char)('A' + e->idx);
    st->threads[e->idx] = pthread_self();
    st->canceled_seen[e->idx] = cancel_requested(e->t);
    bool last = st->n == 3;
    pthread_mutex_unlock(&st->lock);
    if (last)
        harness_gate_open(&st->all_ran);
}

TEST(cancel_async_reads_canceled_at_once_and_runs_callbacks_elsewhere)
{
    struct async_state st;
    memset(&st, 0, sizeof(st));
    pthread_mutex_init(&st.lock, NULL);
    harness_gate_init(&st.all_ran);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct async_entry e[3];
    cancel_registration reg[3];
    memset(reg, 0, sizeof(reg));
    for (int i = 0; i < 3; i++) {
        e[i] = (struct async_entry){&st, t, i};
        ASSERT_OK(cancel_register(t, &reg[i], locking_cb, &e[i]));
    }

    pthread_mutex_lock(&st.lock);
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_EQ(cancel_reason(t), ECANCELED);
    ASSERT_EQ(st.n, 0); /* nothing ran on this thread */
    pthread_mutex_unlock(&st.lock);

    harness_gate_wait(&st.all_ran);
    pthread_mutex_lock(&st.lock);
    ASSERT_TRUE(strcmp(st.log, "CBA") == 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_FALSE(pthread_equal(st.threads[i], pthread_self()));
        ASSERT_TRUE(cancel_requested(t));
        ASSERT_TRUE(st.canceled_seen[i]);
    }
    pthread_mutex_unlock(&st.lock);

    /* Each ran, so none can be removed. */
    for (int i = 0; i < 3; i++)
        ASSERT_FALSE(cancel_unregister(&reg[i]));
    cancel_source_free(src);
    harness_gate_destroy(&st.all_ran);
    pthread_mutex_destroy(&st.lock);
}

static void gate_cb(void *arg)
{
    harness_gate_open(arg);
}

static void count_cb(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

TEST(cancel_async_is_idempotent)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    harness_gate done;
    harness_gate_init(&done);
    atomic_int runs = 0;
    cancel_registration rg = CANCEL_REGISTRATION_INIT;
    cancel_registration rc = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &rg, gate_cb, &done)); /* runs last */
    ASSERT_OK(cancel_register(t, &rc, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_wait(&done);
    /* cancel_unregister waits for a running callback: after it, gate_cb has
     * returned and the source may be freed. */
    ASSERT_FALSE(cancel_unregister(&rg));
    ASSERT_EQ(atomic_load(&runs), 1);
    cancel_source_free(src);
    harness_gate_destroy(&done);
}

TEST(cancel_async_after_cancel_runs_nothing_again)
{
    cancel_source *src = cancel_source_new();
    atomic_int runs = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, count_cb, &runs));
    ASSERT_OK(cancel_source_cancel_reason(src, 31));
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_EQ(cancel_reason(cancel_source_token(src)), 31);
    /* A registration made now runs inline; if the async cancel ran the old
     * one again, the count below would show it once the gate opens. */
    harness_gate done;
    harness_gate_init(&done);
    cancel_registration rg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register(cancel_source_token(src), &rg, gate_cb, &done),
               -ECANCELED);
    harness_gate_wait(&done);
    ASSERT_EQ(atomic_load(&runs), 1);
    cancel_source_free(src);
    harness_gate_destroy(&done);
}

TEST(cancel_async_without_registrations)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel_async(src));
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    ASSERT_FALSE(cancel_source_try_reset(src));
    cancel_source_free(src); /* free right away: the library holds its own */
}

TEST(cancel_async_then_free_at_once)
{
    /* Free the source right after cancel_async: the pending callbacks still
     * run (the cancellation is under way) and nothing freed is touched. */
    cancel_source *src = cancel_source_new();
    harness_gate done;
    harness_gate_init(&done);
    cancel_registration rg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &rg, gate_cb, &done));
    ASSERT_OK(cancel_source_cancel_async(src));
    cancel_source_free(src);
    harness_gate_wait(&done);
    ASSERT_FALSE(cancel_unregister(&rg));
    harness_gate_destroy(&done);
}

TEST(cancel_async_cancels_linked_children)
{
    cancel_source *p = cancel_source_new();
    cancel_token tp = cancel_source_token(p);
    cancel_source *child = cancel_source_new_linked(&tp, 1);
    ASSERT_NOT_NULL(child);
    harness_gate done;
    harness_gate_init(&done);
    cancel_registration rg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(child), &rg, gate_cb, &done));
    ASSERT_OK(cancel_source_cancel_async(p));
    ASSERT_TRUE(cancel_requested(tp));
    harness_gate_wait(&done);
    ASSERT_FALSE(cancel_unregister(&rg));
    ASSERT_EQ(cancel_reason(cancel_source_token(child)), ECANCELED);
    cancel_source_free(child);
    cancel_source_free(p);
    harness_gate_destroy(&done);
}
