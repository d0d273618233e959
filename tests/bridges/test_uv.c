/* Tests of the libuv bridge (bridges/uv/cancel_uv.h): watches, the executor
 * behind cancel_uv_post, and triggers.
 *
 * Each test runs its own uv_loop_t on the test's thread (the "loop
 * thread") and checks that what must run there does, that a cancel from
 * another thread wakes a loop blocked in uv_run, that libuv requests
 * canceled from on_cancel report UV_ECANCELED, and that every handle closes
 * and frees cleanly (uv_loop_close returns 0; ASan sees no leak).  Other
 * threads are ordered with harness gates, never with sleeps.
 */
#include "harness.h"

#include "cancel_uv.h"
#include "internal.h" /* cancel__alloc_live */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define MS INT64_C(1000000)

/* ---- helpers ------------------------------------------------------------ */

static pthread_t loop_thread;

static void loop_init(uv_loop_t *loop)
{
    ASSERT_OK(uv_loop_init(loop));
    loop_thread = pthread_self();
}

/* Run the loop until nothing is left and close it: every handle of the
 * test must have been closed, or uv_loop_close says UV_EBUSY. */
static void loop_finish(uv_loop_t *loop)
{
    ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
    ASSERT_ERR(uv_loop_close(loop), 0);
}

/* A referenced handle that keeps the loop turning: the executor's own
 * handle is unreferenced, so a loop with nothing else would not run. */
static void hold_init(uv_loop_t *loop, uv_async_t *hold)
{
    ASSERT_OK(uv_async_init(loop, hold, NULL));
}

static void hold_close(uv_async_t *hold)
{
    uv_close((uv_handle_t *)hold, NULL);
}

static bool on_loop_thread(void)
{
    return pthread_equal(pthread_self(), loop_thread);
}

/* A thread that cancels a source, optionally after a gate opens. */
struct canceler {
    cancel_source *src;
    harness_gate *after; /* NULL: at once */
    pthread_t thread;
};

static void *canceler_main(void *p)
{
    struct canceler *c = p;
    if (c->after != NULL)
        harness_gate_wait(c->after);
    ASSERT_OK(cancel_source_cancel(c->src));
    return NULL;
}

static void canceler_start(struct canceler *c, cancel_source *src,
                           harness_gate *after)
{
    c->src = src;
    c->after = after;
    ASSERT_EQ(pthread_create(&c->thread, NULL, canceler_main, c), 0);
}

static void canceler_join(struct canceler *c)
{
    ASSERT_EQ(pthread_join(c->thread, NULL), 0);
}

/* A watch and what its on_cancel saw (arg is the struct, w its first
 * member). */
struct seen {
    cancel_uv_watch w;
    int runs;
    bool on_loop;
    bool close_in_cb;
    int closed;
};

static void watch_closed(cancel_uv_watch *w)
{
    struct seen *s = (struct seen *)w;
    s->closed++;
}

static void record_cancel(cancel_uv_watch *w, void *arg)
{
    struct seen *s = arg;
    s->runs++;
    s->on_loop = on_loop_thread();
    if (s->close_in_cb)
        cancel_uv_watch_close(w, watch_closed);
}

/* A uv_prepare_t that opens a gate right before the loop first blocks. */
struct opener {
    uv_prepare_t prepare;
    harness_gate *gate;
};

static void opener_cb(uv_prepare_t *p)
{
    struct opener *o = (struct opener *)p;
    harness_gate_open(o->gate);
    uv_prepare_stop(p);
    uv_close((uv_handle_t *)p, NULL);
}

static void opener_start(uv_loop_t *loop, struct opener *o, harness_gate *g)
{
    o->gate = g;
    ASSERT_OK(uv_prepare_init(loop, &o->prepare));
    ASSERT_OK(uv_prepare_start(&o->prepare, opener_cb));
}

/* ---- watches ------------------------------------------------------------ */

TEST(watch_cancel_from_another_thread_ends_the_loops_wait)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s = {.close_in_cb = true};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    /* The other thread cancels once the loop is about to block: the watch
     * is then the only thing that can wake it. */
    harness_gate running;
    harness_gate_init(&running);
    struct opener o;
    opener_start(&loop, &o, &running);
    struct canceler c;
    canceler_start(&c, src, &running);

    ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT)); /* returns: nothing active */
    canceler_join(&c);
    ASSERT_EQ(s.runs, 1);
    ASSERT_TRUE(s.on_loop);
    ASSERT_EQ(s.closed, 1);
    ASSERT_ERR(uv_loop_close(&loop), 0);
    harness_gate_destroy(&running);
    cancel_source_free(src);
}

TEST(watch_wakes_a_blocked_run_once)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    harness_gate running;
    harness_gate_init(&running);
    struct opener o;
    opener_start(&loop, &o, &running);
    struct canceler c;
    canceler_start(&c, src, &running);
    /* UV_RUN_ONCE blocks for I/O until the cancel arrives; the prepare
     * handle's close callback may take one more turn. */
    while (s.runs == 0)
        uv_run(&loop, UV_RUN_ONCE);
    canceler_join(&c);
    ASSERT_EQ(s.runs, 1);
    ASSERT_TRUE(s.on_loop);
    cancel_uv_watch_close(&s.w, watch_closed);
    loop_finish(&loop);
    ASSERT_EQ(s.closed, 1);
    harness_gate_destroy(&running);
    cancel_source_free(src);
}

TEST(watch_on_canceled_token_runs_on_next_iteration_not_inside_start)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    struct seen s = {.close_in_cb = true};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    ASSERT_EQ(s.runs, 0);
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 1);
    ASSERT_TRUE(s.on_loop);
    ASSERT_EQ(s.closed, 1);
    cancel_source_free(src);
}

TEST(watch_fires_once_although_the_fd_stays_readable)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    /* Fired and stopped: the loop has nothing active left and returns. */
    ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
    ASSERT_EQ(s.runs, 1);
    ASSERT_FALSE(uv_is_active((uv_handle_t *)&s.w));
    uv_async_t hold;
    hold_init(&loop, &hold);
    for (int i = 0; i < 3; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(s.runs, 1);
    hold_close(&hold);
    cancel_uv_watch_close(&s.w, watch_closed);
    loop_finish(&loop);
    ASSERT_EQ(s.closed, 1);
    cancel_source_free(src);
}

TEST(watch_closed_before_cancel_never_runs)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    cancel_uv_watch_close(&s.w, watch_closed);
    cancel_uv_watch_close(&s.w, watch_closed); /* closing already: no-op */
    ASSERT_OK(cancel_source_cancel(src));
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 0);
    ASSERT_EQ(s.closed, 1);
    cancel_source_free(src);
}

TEST(watch_closed_after_cancel_in_the_same_turn_never_runs)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    ASSERT_OK(cancel_source_cancel(src)); /* fd readable, not yet polled */
    cancel_uv_watch_close(&s.w, NULL);
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 0);
    cancel_source_free(src);
}

TEST(watch_outlives_the_source)
{
    /* The watch polls its own dup of the token's fd: freeing the source
     * (which closes the token's fd) neither breaks the loop nor fires. */
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    cancel_source_free(src);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(s.runs, 0);
    cancel_uv_watch_close(&s.w, watch_closed);
    loop_finish(&loop);
    ASSERT_EQ(s.closed, 1);

    /* And a source canceled, then freed before the loop ran: it fires. */
    loop_init(&loop);
    src = cancel_source_new();
    struct seen s2 = {.close_in_cb = true};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s2.w, cancel_source_token(src),
                                    record_cancel, &s2));
    ASSERT_OK(cancel_source_cancel(src));
    cancel_source_free(src);
    loop_finish(&loop);
    ASSERT_EQ(s2.runs, 1);
    ASSERT_EQ(s2.closed, 1);
}

TEST(many_watches_on_one_token_in_one_loop)
{
    /* libuv forbids two poll handles on one fd; each watch has its own. */
    enum { N = 8 };
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    struct seen s[N];
    for (int i = 0; i < N; i++) {
        s[i] = (struct seen){.close_in_cb = true};
        ASSERT_OK(cancel_uv_watch_start(
            &loop, &s[i].w, cancel_source_token(src), record_cancel, &s[i]));
    }
    struct canceler c;
    canceler_start(&c, src, NULL);
    loop_finish(&loop);
    canceler_join(&c);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(s[i].runs, 1);
        ASSERT_TRUE(s[i].on_loop);
        ASSERT_EQ(s[i].closed, 1);
    }
    cancel_source_free(src);
}

TEST(watch_on_none_is_inert_and_does_not_hold_the_loop)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct seen s = {0};
    ASSERT_OK(
        cancel_uv_watch_start(&loop, &s.w, CANCEL_NONE, record_cancel, &s));
    ASSERT_FALSE(uv_is_active((uv_handle_t *)&s.w));
    ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT)); /* returns at once */
    ASSERT_EQ(s.runs, 0);
    cancel_uv_watch_close(&s.w, watch_closed);
    loop_finish(&loop);
    ASSERT_EQ(s.closed, 1);
}

TEST(watch_bad_input)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct seen s = {0};
    ASSERT_ERR(cancel_uv_watch_start(NULL, &s.w, t, record_cancel, &s),
               -EINVAL);
    ASSERT_ERR(cancel_uv_watch_start(&loop, NULL, t, record_cancel, &s),
               -EINVAL);
    ASSERT_ERR(cancel_uv_watch_start(&loop, &s.w, t, NULL, &s), -EINVAL);
    cancel_uv_watch_close(NULL, NULL); /* no-op */
    loop_finish(&loop);
    cancel_source_free(src);
}

/* ---- canceling libuv requests from on_cancel ----------------------------- */

/* The thread pool gets one thread, and a blocker occupies it until the test
 * lets it go, so that the request under test is still queued - the state
 * in which uv_cancel can take it back. */
struct blocker {
    uv_work_t req;
    harness_gate started, release;
    int after_status;
};

static void blocker_work(uv_work_t *req)
{
    struct blocker *b = (struct blocker *)req;
    harness_gate_open(&b->started);
    harness_gate_wait(&b->release);
}

static void blocker_after(uv_work_t *req, int status)
{
    struct blocker *b = (struct blocker *)req;
    b->after_status = status;
}

static void blocker_start(uv_loop_t *loop, struct blocker *b)
{
    ASSERT_OK(setenv("UV_THREADPOOL_SIZE", "1", 1));
    harness_gate_init(&b->started);
    harness_gate_init(&b->release);
    b->after_status = 1;
    ASSERT_OK(uv_queue_work(loop, &b->req, blocker_work, blocker_after));
}

static void blocker_destroy(struct blocker *b)
{
    ASSERT_OK(b->after_status);
    harness_gate_destroy(&b->started);
    harness_gate_destroy(&b->release);
}

struct guarded_work {
    uv_work_t req;
    struct blocker *blocker;
    atomic_int work_ran;
    int after_status;
    int after_runs;
    int cancel_rc;
    bool on_loop;
};

static void guarded_work(uv_work_t *req)
{
    struct guarded_work *g = (struct guarded_work *)req;
    atomic_store(&g->work_ran, 1);
}

static void guarded_after(uv_work_t *req, int status)
{
    struct guarded_work *g = (struct guarded_work *)req;
    g->after_status = status;
    g->after_runs++;
}

static void cancel_the_work(cancel_uv_watch *w, void *arg)
{
    struct guarded_work *g = arg;
    g->on_loop = on_loop_thread();
    g->cancel_rc = uv_cancel((uv_req_t *)&g->req);
    harness_gate_open(&g->blocker->release);
    cancel_uv_watch_close(w, NULL);
}

TEST(canceled_uv_work_reports_ECANCELED)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct blocker b;
    blocker_start(&loop, &b);
    struct guarded_work g = {.blocker = &b, .after_status = 1};
    ASSERT_OK(uv_queue_work(&loop, &g.req, guarded_work, guarded_after));

    cancel_source *src = cancel_source_new();
    cancel_uv_watch w;
    ASSERT_OK(cancel_uv_watch_start(&loop, &w, cancel_source_token(src),
                                    cancel_the_work, &g));
    struct canceler c;
    canceler_start(&c, src, &b.started); /* once the pool is busy */
    loop_finish(&loop);
    canceler_join(&c);

    ASSERT_TRUE(g.on_loop);
    ASSERT_ERR(g.cancel_rc, 0);
    ASSERT_EQ(g.after_runs, 1);
    ASSERT_ERR(g.after_status, UV_ECANCELED);
    ASSERT_EQ(UV_ECANCELED, -ECANCELED);
    ASSERT_EQ(atomic_load(&g.work_ran), 0);
    blocker_destroy(&b);
    cancel_source_free(src);
}

/* The same through cancel_register_on + cancel_uv_post, on a uv_fs_t. */
struct guarded_fs {
    uv_fs_t req;
    struct blocker *blocker;
    ssize_t result;
    int cb_runs;
    int cancel_rc;
    bool on_loop;
};

static void guarded_fs_cb(uv_fs_t *req)
{
    struct guarded_fs *g = (struct guarded_fs *)req;
    g->result = req->result;
    g->cb_runs++;
    uv_fs_req_cleanup(req);
}

static void cancel_the_fs(void *arg)
{
    struct guarded_fs *g = arg;
    g->on_loop = on_loop_thread();
    g->cancel_rc = uv_cancel((uv_req_t *)&g->req);
    harness_gate_open(&g->blocker->release);
}

TEST(canceled_uv_fs_through_register_on_reports_ECANCELED)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    struct blocker b;
    blocker_start(&loop, &b);
    struct guarded_fs g = {.blocker = &b};
    ASSERT_OK(uv_fs_stat(&loop, &g.req, "/", guarded_fs_cb));

    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, cancel_the_fs,
                                 &g, cancel_uv_post, ex));
    struct canceler c;
    canceler_start(&c, src, &b.started);
    /* The requests keep the loop running; the executor does not. */
    ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
    canceler_join(&c);

    ASSERT_TRUE(g.on_loop);
    ASSERT_ERR(g.cancel_rc, 0);
    ASSERT_EQ(g.cb_runs, 1);
    ASSERT_ERR(g.result, UV_ECANCELED);
    ASSERT_FALSE(cancel_unregister(&reg)); /* posted and run */
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
    blocker_destroy(&b);
    cancel_source_free(src);
}

TEST(too_late_to_cancel_uv_work_reports_EBUSY_and_the_work_completes)
{
    uv_loop_t loop;
    loop_init(&loop);
    struct blocker b;
    blocker_start(&loop, &b); /* it is the running request itself */
    cancel_source *src = cancel_source_new();
    struct seen s = {0};
    ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                    record_cancel, &s));
    struct canceler c;
    canceler_start(&c, src, &b.started);
    while (s.runs == 0)
        uv_run(&loop, UV_RUN_ONCE);
    /* on_cancel ran once the blocker was running: too late for it. */
    ASSERT_ERR(uv_cancel((uv_req_t *)&b.req), UV_EBUSY);
    harness_gate_open(&b.release);
    cancel_uv_watch_close(&s.w, NULL);
    loop_finish(&loop);
    canceler_join(&c);
    ASSERT_ERR(b.after_status, 0);
    blocker_destroy(&b);
    cancel_source_free(src);
}

/* ---- the executor ------------------------------------------------------- */

struct posted {
    char log[64];
    int n;
    int off_loop;
};

struct post_item {
    struct posted *p;
    char id;
};

static void log_item(void *arg)
{
    struct post_item *it = arg;
    if (!on_loop_thread())
        it->p->off_loop++;
    it->p->log[it->p->n++] = it->id;
}

TEST(register_on_runs_fn_on_the_loop_thread_in_post_order)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    /* Something that holds the loop until the test is done: the executor
     * itself does not. */
    uv_async_t hold;
    hold_init(&loop, &hold);

    cancel_source *src = cancel_source_new();
    struct posted p = {{0}, 0, 0};
    struct post_item items[3] = {{&p, 'a'}, {&p, 'b'}, {&p, 'c'}};
    cancel_registration reg[3];
    for (int i = 0; i < 3; i++) {
        reg[i] = (cancel_registration)CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg[i],
                                     log_item, &items[i], cancel_uv_post, ex));
    }
    struct canceler c;
    canceler_start(&c, src, NULL);
    while (p.n < 3)
        uv_run(&loop, UV_RUN_ONCE);
    canceler_join(&c);
    /* Posted newest first (LIFO), run in the order of the posts. */
    ASSERT_EQ(strcmp(p.log, "cba"), 0);
    ASSERT_EQ(p.off_loop, 0);
    hold_close(&hold);
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
    cancel_source_free(src);
}

TEST(post_on_the_loop_thread_never_runs_inside_post)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    struct posted p = {{0}, 0, 0};
    struct post_item it = {&p, 'x'};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    /* Already canceled: post is called inside register_on, on this (the
     * loop's) thread, and only queues. */
    ASSERT_ERR(cancel_register_on(cancel_source_token(src), &reg, log_item, &it,
                                  cancel_uv_post, ex),
               -ECANCELED);
    ASSERT_EQ(p.n, 0);
    uv_async_t hold;
    hold_init(&loop, &hold);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(p.n, 1);
    hold_close(&hold);
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
    cancel_source_free(src);
}

TEST(executor_close_runs_what_is_still_queued)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    struct posted p = {{0}, 0, 0};
    struct post_item a = {&p, 'a'}, b = {&p, 'b'};
    cancel_uv_post(ex, log_item, &a);
    cancel_uv_post(ex, log_item, &b);
    cancel_uv_post(ex, NULL, &b);       /* ignored */
    cancel_uv_post(NULL, log_item, &b); /* ignored */
    ASSERT_EQ(p.n, 0);
    cancel_uv_executor_close(ex);
    ASSERT_EQ(strcmp(p.log, "ab"), 0);
    loop_finish(&loop);
    ASSERT_EQ(strcmp(p.log, "ab"), 0);
}

struct closer {
    cancel_uv_executor *ex;
    struct posted *p;
};

static void close_from_inside(void *arg)
{
    struct closer *c = arg;
    c->p->log[c->p->n++] = 'C';
    cancel_uv_executor_close(c->ex);
}

TEST(executor_closed_from_inside_a_posted_function)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    struct posted p = {{0}, 0, 0};
    struct closer c = {ex, &p};
    struct post_item after = {&p, 'z'};
    cancel_uv_post(ex, close_from_inside, &c);
    cancel_uv_post(ex, log_item, &after);
    uv_async_t hold;
    hold_init(&loop, &hold);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(strcmp(p.log, "Cz"), 0);
    hold_close(&hold);
    loop_finish(&loop);
}

struct reposter {
    cancel_uv_executor *ex;
    int runs;
};

static void repost(void *arg)
{
    struct reposter *r = arg;
    if (++r->runs < 3)
        cancel_uv_post(r->ex, repost, r);
}

TEST(a_function_that_posts_again_runs_on_a_later_turn)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    struct reposter r = {ex, 0};
    cancel_uv_post(ex, repost, &r);
    uv_async_t hold;
    hold_init(&loop, &hold);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(r.runs, 1); /* the loop is not starved */
    while (r.runs < 3)
        uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(r.runs, 3);
    hold_close(&hold);
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
}

TEST(unregister_before_cancel_posts_nothing)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    cancel_source *src = cancel_source_new();
    struct posted p = {{0}, 0, 0};
    struct post_item it = {&p, 'x'};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, log_item, &it,
                                 cancel_uv_post, ex));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    uv_async_t hold;
    hold_init(&loop, &hold);
    uv_run(&loop, UV_RUN_NOWAIT);
    hold_close(&hold);
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
    ASSERT_EQ(p.n, 0);
    cancel_source_free(src);
}

TEST(executor_bad_input)
{
    errno = 0;
    ASSERT_NULL(cancel_uv_executor_new(NULL));
    ASSERT_EQ(errno, EINVAL);
    cancel_uv_executor_close(NULL); /* no-op */
}

/* Many threads cancel many tokens whose registrations all post to one
 * executor: every function runs once, on the loop's thread. */
struct stress_item {
    atomic_int runs;
    int off_loop;
};

static void stress_fn(void *arg)
{
    struct stress_item *it = arg;
    if (!on_loop_thread())
        it->off_loop++;
    atomic_fetch_add(&it->runs, 1);
}

struct stress_thread {
    cancel_source **src;
    int from, to;
    harness_gate *go;
    pthread_t thread;
};

static void *stress_canceler(void *p)
{
    struct stress_thread *t = p;
    harness_gate_wait(t->go);
    for (int i = t->from; i < t->to; i++)
        ASSERT_OK(cancel_source_cancel(t->src[i]));
    return NULL;
}

TEST(stress_many_threads_post_to_one_loop)
{
    enum { THREADS = 4, PER = 3 };
    const int n = (int)harness_scale(2000);
    uv_loop_t loop;
    loop_init(&loop);
    cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
    ASSERT_NOT_NULL(ex);
    uv_async_t hold;
    hold_init(&loop, &hold);
    cancel_source **src = calloc((size_t)n, sizeof(*src));
    struct stress_item *items = calloc((size_t)n * PER, sizeof(*items));
    cancel_registration *reg = calloc((size_t)n * PER, sizeof(*reg));
    ASSERT_NOT_NULL(src);
    ASSERT_NOT_NULL(items);
    ASSERT_NOT_NULL(reg);
    for (int i = 0; i < n; i++) {
        src[i] = cancel_source_new();
        for (int k = 0; k < PER; k++)
            ASSERT_OK(cancel_register_on(
                cancel_source_token(src[i]), &reg[i * PER + k], stress_fn,
                &items[i * PER + k], cancel_uv_post, ex));
    }
    harness_gate go;
    harness_gate_init(&go);
    struct stress_thread th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        th[t] = (struct stress_thread){src, n * t / THREADS,
                                       n * (t + 1) / THREADS, &go, 0};
        ASSERT_EQ(pthread_create(&th[t].thread, NULL, stress_canceler, &th[t]),
                  0);
    }
    harness_gate_open(&go);
    for (int t = 0; t < THREADS; t++)
        ASSERT_EQ(pthread_join(th[t].thread, NULL), 0);
    /* Every post has been made; run until every function ran. */
    for (;;) {
        int done = 0;
        for (int i = 0; i < n * PER; i++)
            done += atomic_load(&items[i].runs);
        if (done == n * PER)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    for (int i = 0; i < n * PER; i++) {
        ASSERT_EQ(atomic_load(&items[i].runs), 1);
        ASSERT_EQ(items[i].off_loop, 0);
    }
    hold_close(&hold);
    cancel_uv_executor_close(ex);
    loop_finish(&loop);
    for (int i = 0; i < n; i++)
        cancel_source_free(src[i]);
    free(src);
    free(items);
    free(reg);
    harness_gate_destroy(&go);
}

/* ---- triggers ----------------------------------------------------------- */

struct trig_seen {
    cancel_uv_trigger *tr;
    uv_loop_t *loop;
    uint64_t fired_at; /* uv_now */
    int runs;
    bool on_loop;
    int reason;
    cancel_token token;
    int closed;
};

static void trigger_closed(cancel_uv_trigger *tr)
{
    (void)tr;
}

static void on_source_canceled(void *arg)
{
    struct trig_seen *s = arg;
    s->runs++;
    s->on_loop = on_loop_thread();
    s->reason = cancel_reason(s->token);
    s->fired_at = uv_now(s->loop);
    /* The callback may close the trigger that fired it. */
    cancel_uv_trigger_close(s->tr, trigger_closed);
    s->closed++;
}

TEST(cancel_after_fires_on_the_loop_thread_with_ETIMEDOUT)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    struct trig_seen s = {
        .tr = &tr, .loop = &loop, .token = cancel_source_token(src)};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(s.token, &reg, on_source_canceled, &s));
    uint64_t start = uv_now(&loop);
    ASSERT_OK(cancel_uv_cancel_after(&loop, &tr, src, 5 * MS + 1));
    ASSERT_FALSE(cancel_requested(s.token));
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 1);
    ASSERT_TRUE(s.on_loop);
    ASSERT_ERR(s.reason, ETIMEDOUT);
    ASSERT_GE(s.fired_at - start, 6); /* rounded up, never early */
    cancel_source_free(src);
}

TEST(cancel_after_zero_fires_on_the_next_turn_not_inside_the_call)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    struct trig_seen s = {
        .tr = &tr, .loop = &loop, .token = cancel_source_token(src)};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(s.token, &reg, on_source_canceled, &s));
    ASSERT_OK(cancel_uv_cancel_after(&loop, &tr, src, 0));
    ASSERT_FALSE(cancel_requested(s.token));
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 1);
    ASSERT_ERR(s.reason, ETIMEDOUT);
    cancel_source_free(src);
}

TEST(cancel_after_closed_before_it_fires_does_nothing)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    ASSERT_OK(cancel_uv_cancel_after(&loop, &tr, src, 0));
    cancel_uv_trigger_close(&tr, trigger_closed);
    cancel_uv_trigger_close(&tr, trigger_closed); /* closing: no-op */
    loop_finish(&loop);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);

    /* Negative: inert, does not hold the loop. */
    loop_init(&loop);
    src = cancel_source_new();
    ASSERT_OK(cancel_uv_cancel_after(&loop, &tr, src, -1));
    ASSERT_FALSE(uv_is_active((uv_handle_t *)&tr));
    ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
    cancel_uv_trigger_close(&tr, NULL);
    loop_finish(&loop);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

TEST(cancel_on_signal_fires_on_the_loop_thread_with_EINTR)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    struct trig_seen s = {
        .tr = &tr, .loop = &loop, .token = cancel_source_token(src)};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(s.token, &reg, on_source_canceled, &s));
    ASSERT_OK(cancel_uv_cancel_on_signal(&loop, &tr, src, SIGUSR1));
    ASSERT_OK(uv_kill(getpid(), SIGUSR1));
    loop_finish(&loop);
    ASSERT_EQ(s.runs, 1);
    ASSERT_TRUE(s.on_loop);
    ASSERT_ERR(s.reason, EINTR);
    /* One-shot: the default action is back for a second delivery. */
    struct sigaction now;
    ASSERT_OK(sigaction(SIGUSR1, NULL, &now));
    ASSERT_TRUE(now.sa_handler == SIG_DFL);
    cancel_source_free(src);
}

TEST(cancel_on_signal_closed_before_the_signal_restores_the_default)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    ASSERT_OK(cancel_uv_cancel_on_signal(&loop, &tr, src, SIGUSR2));
    cancel_uv_trigger_close(&tr, NULL);
    loop_finish(&loop);
    struct sigaction now;
    ASSERT_OK(sigaction(SIGUSR2, NULL, &now));
    ASSERT_TRUE(now.sa_handler == SIG_DFL);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

TEST(trigger_bad_input)
{
    uv_loop_t loop;
    loop_init(&loop);
    cancel_source *src = cancel_source_new();
    cancel_uv_trigger tr;
    ASSERT_ERR(cancel_uv_cancel_after(NULL, &tr, src, 0), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_after(&loop, NULL, src, 0), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_after(&loop, &tr, NULL, 0), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(NULL, &tr, src, SIGINT), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, NULL, src, SIGINT), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, NULL, SIGINT), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, src, SIGKILL), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, src, SIGSTOP), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, src, 0), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, src, -3), -EINVAL);
    ASSERT_ERR(cancel_uv_cancel_on_signal(&loop, &tr, src, 4096), -EINVAL);
    cancel_uv_trigger_close(NULL, NULL); /* no-op */
    loop_finish(&loop);                  /* nothing was left open */
    cancel_source_free(src);
}

/* ---- nothing leaks --------------------------------------------------------
 */

TEST(watches_and_executors_leave_nothing_behind)
{
    long live = cancel__alloc_live();
    for (int round = 0; round < 20; round++) {
        uv_loop_t loop;
        loop_init(&loop);
        cancel_uv_executor *ex = cancel_uv_executor_new(&loop);
        ASSERT_NOT_NULL(ex);
        cancel_source *src = cancel_source_new();
        struct seen s = {.close_in_cb = true};
        ASSERT_OK(cancel_uv_watch_start(&loop, &s.w, cancel_source_token(src),
                                        record_cancel, &s));
        struct posted p = {{0}, 0, 0};
        struct post_item it = {&p, 'x'};
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, log_item,
                                     &it, cancel_uv_post, ex));
        if (round % 2 == 0)
            ASSERT_OK(cancel_source_cancel(src));
        cancel_source_free(src); /* before the loop ran: both still work */
        uv_run(&loop, UV_RUN_NOWAIT);
        if (round % 2 != 0) {
            ASSERT_EQ(s.runs, 0);
            cancel_uv_watch_close(&s.w, watch_closed);
        }
        cancel_unregister(&reg);
        cancel_uv_executor_close(ex);
        loop_finish(&loop);
        ASSERT_EQ(s.closed, 1);
        ASSERT_EQ(p.n, round % 2 == 0 ? 1 : 0);
    }
    ASSERT_EQ(cancel__alloc_live(), live);
}
