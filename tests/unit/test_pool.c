/* Unit tests of the thread pool of cancel/task.h: cancel_pool_new / _free /
 * _default / _size / _queue, and cancel_pool_post as the executor of
 * cancel_register_on.
 *
 * Orders are forced with gates: an item that waits on a gate keeps its
 * worker busy, so on a 1-thread pool everything queued after it stays in the
 * queue until the test opens the gate. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static void *nothing(void *arg)
{
    return arg;
}

/* The number of threads of this process (entries of /proc/self/task).
 * The first call creates and joins a thread first, so that a sanitizer's
 * helper thread, started on the first pthread_create, is already there. */
static int thread_count(void)
{
    static bool settled;
    if (!settled) {
        pthread_t th;
        ASSERT_EQ(pthread_create(&th, NULL, nothing, NULL), 0);
        pthread_join(th, NULL);
        settled = true;
    }
    DIR *d = opendir("/proc/self/task");
    ASSERT_NOT_NULL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* An item that blocks its worker until `go` opens. */
typedef struct blocker {
    harness_gate started, go;
    pthread_t thread;
} blocker;

static void blocker_init(blocker *b)
{
    harness_gate_init(&b->started);
    harness_gate_init(&b->go);
}

static void blocker_destroy(blocker *b)
{
    harness_gate_destroy(&b->started);
    harness_gate_destroy(&b->go);
}

static void block_item(void *arg)
{
    blocker *b = arg;
    b->thread = pthread_self();
    harness_gate_open(&b->started);
    harness_gate_wait(&b->go);
}

static void count_item(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Items that write their index into a shared log, in the order they run. */
typedef struct order_log {
    atomic_int n;
    int seq[256];
} order_log;

typedef struct order_item {
    order_log *log;
    int index;
} order_item;

static void order_run(void *arg)
{
    order_item *it = arg;
    int k = atomic_fetch_add(&it->log->n, 1);
    it->log->seq[k] = it->index;
}

static int order_task(void *arg, cancel_token t)
{
    (void)t;
    order_run(arg);
    return 0;
}

/* ---- creation ----------------------------------------------------------- */

TEST(pool_new_zero_has_one_worker_per_cpu)
{
    cancel_pool *pool = cancel_pool_new(0);
    ASSERT_NOT_NULL(pool);
    ASSERT_EQ(cancel_pool_size(pool), sysconf(_SC_NPROCESSORS_ONLN));
    cancel_pool_free(pool);
}

TEST(pool_new_n_has_n_workers)
{
    int before = thread_count();
    cancel_pool *pool = cancel_pool_new(3);
    ASSERT_NOT_NULL(pool);
    ASSERT_EQ(cancel_pool_size(pool), 3);
    ASSERT_EQ(thread_count(), before + 3);
    cancel_pool_free(pool);
    ASSERT_EQ(thread_count(), before); /* joined */
}

TEST(pool_new_negative_is_einval)
{
    errno = 0;
    ASSERT_NULL(cancel_pool_new(-1));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(cancel_pool_new(INT_MIN));
    ASSERT_EQ(errno, EINVAL);
}

TEST(pool_size_null_is_einval)
{
    ASSERT_ERR(cancel_pool_size(NULL), -EINVAL);
}

TEST(pool_free_null_is_noop)
{
    cancel_pool_free(NULL);
    ASSERT_EQ(cancel_pool_size(NULL), -EINVAL);
}

TEST(pool_default_is_one_pool)
{
    cancel_pool *a = cancel_pool_default();
    ASSERT_NOT_NULL(a);
    ASSERT_TRUE(cancel_pool_default() == a);
    ASSERT_TRUE(cancel_pool_default() == a);
    ASSERT_EQ(cancel_pool_size(a), sysconf(_SC_NPROCESSORS_ONLN));

    /* It works: an item runs on it.  Static: the item may still be
     * returning when the test ends (the default pool is never freed). */
    static blocker b;
    blocker_init(&b);
    harness_gate_open(&b.go);
    ASSERT_OK(cancel_pool_queue(a, block_item, &b));
    harness_gate_wait(&b.started);
    ASSERT_FALSE(pthread_equal(b.thread, pthread_self()));
}

/* Two threads asking for the default pool at once get the same one. */
static void *get_default(void *arg)
{
    harness_gate_wait(arg);
    return cancel_pool_default();
}

TEST(pool_default_concurrent_first_use)
{
    harness_gate go;
    harness_gate_init(&go);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, get_default, &go), 0);
    harness_gate_open(&go);
    void *first = NULL;
    for (int i = 0; i < 4; i++) {
        void *p;
        pthread_join(th[i], &p);
        ASSERT_NOT_NULL(p);
        if (i == 0)
            first = p;
        ASSERT_TRUE(p == first);
    }
    ASSERT_TRUE(cancel_pool_default() == first);
    harness_gate_destroy(&go);
}

/* ---- queueing ----------------------------------------------------------- */

TEST(pool_queue_bad_input_is_einval)
{
    atomic_int n = 0;
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    ASSERT_ERR(cancel_pool_queue(NULL, count_item, &n), -EINVAL);
    ASSERT_ERR(cancel_pool_queue(pool, NULL, &n), -EINVAL);
    ASSERT_ERR(cancel_pool_queue(NULL, NULL, NULL), -EINVAL);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&n), 0);
}

TEST(pool_queue_runs_item_on_a_worker)
{
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    blocker b;
    blocker_init(&b);
    harness_gate_open(&b.go);
    ASSERT_OK(cancel_pool_queue(pool, block_item, &b));
    harness_gate_wait(&b.started); /* it runs without free draining it */
    ASSERT_FALSE(pthread_equal(b.thread, pthread_self()));
    cancel_pool_free(pool);
    blocker_destroy(&b);
}

TEST(pool_queue_is_fifo_on_one_thread)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    blocker b;
    blocker_init(&b);
    ASSERT_OK(cancel_pool_queue(pool, block_item, &b));
    harness_gate_wait(&b.started);

    /* Everything below is queued before any of it can run. */
    order_log log = {.n = 0};
    order_item items[200];
    for (int i = 0; i < 200; i++) {
        items[i] = (order_item){&log, i};
        ASSERT_OK(cancel_pool_queue(pool, order_run, &items[i]));
    }
    ASSERT_EQ(atomic_load(&log.n), 0);
    harness_gate_open(&b.go);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&log.n), 200);
    for (int i = 0; i < 200; i++)
        ASSERT_EQ(log.seq[i], i);
    blocker_destroy(&b);
}

/* A tree of items: each queues `fan` children until `depth` is 0. */
typedef struct tree {
    cancel_pool *pool;
    atomic_int ran;
    atomic_int failed;
} tree;

typedef struct node {
    tree *t;
    int depth;
} node;

static node nodes[1 + 6 + 36 + 216];
static atomic_int next_node;

static void tree_item(void *arg)
{
    node *n = arg;
    atomic_fetch_add(&n->t->ran, 1);
    if (n->depth == 0)
        return;
    for (int i = 0; i < 6; i++) {
        node *c = &nodes[atomic_fetch_add(&next_node, 1)];
        c->t = n->t;
        c->depth = n->depth - 1;
        if (cancel_pool_queue(n->t->pool, tree_item, c) != 0)
            atomic_fetch_add(&n->t->failed, 1);
    }
}

TEST(pool_items_queued_from_items_run)
{
    tree t = {.ran = 0, .failed = 0};
    t.pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(t.pool);
    atomic_store(&next_node, 1);
    nodes[0] = (node){&t, 3};
    ASSERT_OK(cancel_pool_queue(t.pool, tree_item, &nodes[0]));
    /* Free at once: the drain covers what the items queue later. */
    cancel_pool_free(t.pool);
    ASSERT_EQ(atomic_load(&t.failed), 0);
    ASSERT_EQ(atomic_load(&t.ran), 1 + 6 + 36 + 216);
}

/* An item of a burst: it returns only once every item of its burst is
 * running, so the burst completes only if it reached as many workers. */
#define BURST_LIMIT_NS (10 * 1000000000LL) /* a lost wake-up, not slowness */

typedef struct burst {
    cancel_countdown all;
    atomic_int late, finished;
} burst;

static void burst_item(void *arg)
{
    burst *b = arg;
    cancel_countdown_signal(&b->all, 1);
    if (cancel_countdown_wait(&b->all, CANCEL_NONE, BURST_LIMIT_NS) != 0)
        atomic_fetch_add(&b->late, 1);
    atomic_fetch_add(&b->finished, 1); /* the item's last touch of b */
}

/* Workers that find the queue empty spin a while before they park, and a
 * producer wakes nobody while one spins: the spinner that takes the first
 * item of a burst must wake a parked worker for the rest.  Bursts as wide
 * as the pool, landing on workers that are running, spinning, parking or
 * parked. */
TEST(pool_burst_reaches_every_worker)
{
    enum { WORKERS = 3 };
    cancel_pool *pool = cancel_pool_new(WORKERS);
    ASSERT_NOT_NULL(pool);
    long rounds = harness_scale(2000);
    for (long r = 0; r < rounds; r++) {
        burst b = {.late = 0, .finished = 0};
        ASSERT_OK(cancel_countdown_init(&b.all, WORKERS));
        for (int i = 0; i < WORKERS; i++)
            ASSERT_OK(cancel_pool_queue(pool, burst_item, &b));
        while (atomic_load(&b.finished) < WORKERS)
            sched_yield();
        ASSERT_EQ(atomic_load(&b.late), 0);
        ASSERT_OK(cancel_countdown_destroy(&b.all));
        /* Vary where the next burst finds the workers. */
        for (volatile long k = 0, n = r % 64 * 40; k < n; k++)
            ;
    }
    cancel_pool_free(pool);
}

struct opener {
    harness_gate *freeing;
    blocker *b;
    int nb;
};

static void *open_after_free_began(void *arg)
{
    struct opener *o = arg;
    harness_gate_wait(o->freeing);
    for (int i = 0; i < o->nb; i++)
        harness_gate_open(&o->b[i].go);
    return NULL;
}

TEST(pool_free_drains_everything_queued_and_joins)
{
    int before = thread_count();
    cancel_pool *pool = cancel_pool_new(2);
    ASSERT_NOT_NULL(pool);
    ASSERT_EQ(thread_count(), before + 2);

    /* Both workers busy: the items below are all in the queue when
     * cancel_pool_free is called. */
    blocker b[2];
    for (int i = 0; i < 2; i++) {
        blocker_init(&b[i]);
        ASSERT_OK(cancel_pool_queue(pool, block_item, &b[i]));
    }
    for (int i = 0; i < 2; i++)
        harness_gate_wait(&b[i].started);
    int queued = (int)harness_scale(2000);
    atomic_int n = 0;
    for (int i = 0; i < queued; i++)
        ASSERT_OK(cancel_pool_queue(pool, count_item, &n));

    harness_gate freeing;
    harness_gate_init(&freeing);
    struct opener o = {&freeing, b, 2};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, open_after_free_began, &o), 0);
    harness_gate_open(&freeing);
    cancel_pool_free(pool);

    ASSERT_EQ(atomic_load(&n), queued);
    pthread_join(th, NULL);
    ASSERT_EQ(thread_count(), before); /* the workers were joined */
    for (int i = 0; i < 2; i++)
        blocker_destroy(&b[i]);
    harness_gate_destroy(&freeing);
}

TEST(pool_free_of_idle_pool_joins)
{
    int before = thread_count();
    for (int k = 0; k < 20; k++) {
        cancel_pool *pool = cancel_pool_new(2);
        ASSERT_NOT_NULL(pool);
        cancel_pool_free(pool);
    }
    ASSERT_EQ(thread_count(), before);
}

TEST(pool_tasks_and_items_share_the_fifo)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    blocker b;
    blocker_init(&b);
    ASSERT_OK(cancel_pool_queue(pool, block_item, &b));
    harness_gate_wait(&b.started);
    order_log log = {.n = 0};
    order_item items[2] = {{&log, 0}, {&log, 2}};
    ASSERT_OK(cancel_pool_queue(pool, order_run, &items[0]));
    /* A task queued between two items runs between them. */
    order_item mid = {&log, 1};
    cancel_task *t = cancel_task_run(pool, order_task, &mid, CANCEL_NONE, 0);
    ASSERT_NOT_NULL(t);
    ASSERT_OK(cancel_pool_queue(pool, order_run, &items[1]));
    harness_gate_open(&b.go);
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&log.n), 3);
    ASSERT_EQ(log.seq[0], 0);
    ASSERT_EQ(log.seq[1], 1);
    ASSERT_EQ(log.seq[2], 2);
    ASSERT_EQ(cancel_task_status_of(t), CANCEL_TASK_RAN_TO_COMPLETION);
    cancel_task_release(t);
    blocker_destroy(&b);
}

/* ---- cancel_pool_post --------------------------------------------------- */

typedef struct posted {
    harness_gate ran;
    pthread_t thread;
    atomic_int runs;
} posted;

static void posted_cb(void *arg)
{
    posted *p = arg;
    p->thread = pthread_self();
    atomic_fetch_add(&p->runs, 1);
    harness_gate_open(&p->ran);
}

static void record_thread(void *arg)
{
    *(pthread_t *)arg = pthread_self();
}

TEST(pool_post_runs_cancellation_callback_on_a_pool_thread)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    /* The pool's only worker, to compare with. */
    pthread_t worker;
    blocker b;
    blocker_init(&b);
    harness_gate_open(&b.go);
    ASSERT_OK(cancel_pool_queue(pool, block_item, &b));
    harness_gate_wait(&b.started);
    worker = b.thread;

    posted p = {.runs = 0};
    harness_gate_init(&p.ran);
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, posted_cb, &p,
                                 cancel_pool_post, pool));
    ASSERT_EQ(atomic_load(&p.runs), 0);
    ASSERT_OK(cancel_source_cancel(src));
    harness_gate_wait(&p.ran);
    ASSERT_EQ(atomic_load(&p.runs), 1);
    ASSERT_FALSE(pthread_equal(p.thread, pthread_self()));
    ASSERT_TRUE(pthread_equal(p.thread, worker));
    ASSERT_FALSE(cancel_unregister(&reg)); /* posted: too late */

    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&p.runs), 1);
    cancel_source_free(src);
    harness_gate_destroy(&p.ran);
    blocker_destroy(&b);
}

TEST(pool_post_on_canceled_token_runs_on_a_pool_thread)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    pthread_t worker;
    ASSERT_OK(cancel_pool_queue(pool, record_thread, &worker));

    /* Keep the worker busy so the callback is still queued when register
     * returns: it is posted, not run inline. */
    blocker b;
    blocker_init(&b);
    ASSERT_OK(cancel_pool_queue(pool, block_item, &b));
    harness_gate_wait(&b.started);

    posted p = {.runs = 0};
    harness_gate_init(&p.ran);
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_ERR(cancel_register_on(cancel_source_token(src), &reg, posted_cb,
                                  &p, cancel_pool_post, pool),
               -ECANCELED);
    ASSERT_EQ(atomic_load(&p.runs), 0); /* queued behind the blocker */
    harness_gate_open(&b.go);
    harness_gate_wait(&p.ran);
    ASSERT_EQ(atomic_load(&p.runs), 1);
    ASSERT_TRUE(pthread_equal(p.thread, worker));
    cancel_pool_free(pool);
    cancel_source_free(src);
    harness_gate_destroy(&p.ran);
    blocker_destroy(&b);
}

TEST(pool_post_unregistered_before_cancel_never_runs)
{
    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    posted p = {.runs = 0};
    harness_gate_init(&p.ran);
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, posted_cb, &p,
                                 cancel_pool_post, pool));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    cancel_pool_free(pool); /* drains: a posted callback would have run */
    ASSERT_EQ(atomic_load(&p.runs), 0);
    cancel_source_free(src);
    harness_gate_destroy(&p.ran);
}

/* A NULL pool runs the callback at once on the posting thread; a NULL fn
 * does nothing. */
TEST(pool_post_null_pool_runs_at_once_and_null_fn_is_noop)
{
    posted p = {.runs = 0};
    harness_gate_init(&p.ran);
    cancel_pool_post(NULL, posted_cb, &p);
    ASSERT_EQ(atomic_load(&p.runs), 1);
    ASSERT_TRUE(pthread_equal(p.thread, pthread_self()));

    cancel_pool *pool = cancel_pool_new(1);
    ASSERT_NOT_NULL(pool);
    cancel_pool_post(pool, NULL, &p);
    cancel_pool_post(NULL, NULL, &p);
    cancel_pool_post(pool, posted_cb, &p); /* the ordinary case */
    cancel_pool_free(pool);
    ASSERT_EQ(atomic_load(&p.runs), 2);
    ASSERT_FALSE(pthread_equal(p.thread, pthread_self()));
    harness_gate_destroy(&p.ran);
}
