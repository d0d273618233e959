/* The thread pool: a fixed set of workers and one FIFO queue.
 *
 * Invariants (under `lock`, a spinlock: critical sections are a few pointer
 * writes): the queue holds items not yet taken; `idle` is a stack of
 * workers that found the queue empty and are parked, each with a parker on
 * its own stack.  A producer that queues an item pops one idle worker and
 * unparks it after unlocking, so a busy pool makes no system call per item,
 * and a parked worker costs one futex wake.  `closing` makes workers exit
 * once the queue is empty (cancel_pool_free drains: an item that runs may
 * still queue more, and a worker still running picks those up).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct idle {
    struct idle *next;
    struct cancel__parker parker;
};

struct cancel_pool {
    _Atomic uint32_t lock;
    struct cancel__work *head, *tail;
    struct idle *idle;
    bool closing;
    int nthreads;
    pthread_t *threads;
};

/* A cancel_pool_queue item. */
struct item {
    struct cancel__work work;
    cancel_callback *fn;
    void *arg;
};

static void *worker(void *arg)
{
    struct cancel_pool *pool = arg;
    for (;;) {
        cancel__spin_lock(&pool->lock);
        struct cancel__work *w = pool->head;
        if (w != NULL) {
            pool->head = w->next;
            if (pool->head == NULL)
                pool->tail = NULL;
            cancel__spin_unlock(&pool->lock);
            w->run(w);
            continue;
        }
        if (pool->closing) {
            cancel__spin_unlock(&pool->lock);
            return NULL;
        }
        struct idle me = {.parker = CANCEL__PARKER_INIT};
        me.next = pool->idle;
        pool->idle = &me;
        cancel__spin_unlock(&pool->lock);
        struct cancel__deadline forever = {NULL, INT64_MAX};
        /* A producer or the closing pool takes us off the stack first. */
        while (cancel__parker_reset(&me.parker) != 1)
            cancel__park(&me.parker, &forever);
    }
}

/* Under the lock: the idle worker to wake, if any. */
static struct idle *take_idle(struct cancel_pool *pool)
{
    struct idle *i = pool->idle;
    if (i != NULL)
        pool->idle = i->next;
    return i;
}

void cancel__pool_push(struct cancel_pool *pool, struct cancel__work *w)
{
    w->next = NULL;
    cancel__spin_lock(&pool->lock);
    if (pool->tail != NULL)
        pool->tail->next = w;
    else
        pool->head = w;
    pool->tail = w;
    struct idle *i = take_idle(pool);
    cancel__spin_unlock(&pool->lock);
    /* Off the stack, the worker waits for exactly this unpark; once it sees
     * it, a late futex wake on its reused stack is only a spurious one. */
    if (i != NULL)
        cancel__unpark(&i->parker);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

cancel_pool *cancel_pool_new(int nthreads)
{
    if (nthreads < 0) {
        errno = EINVAL;
        return NULL;
    }
    if (nthreads == 0)
        nthreads = online_cpus();
    struct cancel_pool *pool = cancel__calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->threads = cancel__calloc((size_t)nthreads, sizeof(pthread_t));
    if (pool->threads == NULL) {
        cancel__free(pool);
        return NULL;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = 0, err = 0;
    for (; started < nthreads; started++) {
        err = pthread_create(&pool->threads[started], NULL, worker, pool);
        if (err != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pool->nthreads = started;
    if (err != 0) {
        cancel_pool_free(pool);
        errno = EAGAIN;
        return NULL;
    }
    return pool;
}

void cancel_pool_free(cancel_pool *pool)
{
    if (pool == NULL)
        return;
    cancel__spin_lock(&pool->lock);
    pool->closing = true;
    struct idle *i;
    while ((i = take_idle(pool)) != NULL)
        cancel__unpark(&i->parker);
    cancel__spin_unlock(&pool->lock);
    for (int k = 0; k < pool->nthreads; k++)
        pthread_join(pool->threads[k], NULL);
    cancel__free(pool->threads);
    cancel__free(pool);
}

static cancel_pool *default_pool;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static int default_errno;

static void make_default(void)
{
    default_pool = cancel_pool_new(0);
    if (default_pool == NULL)
        default_errno = errno;
}

cancel_pool *cancel_pool_default(void)
{
    pthread_once(&default_once, make_default);
    if (default_pool == NULL)
        errno = default_errno;
    return default_pool;
}

int cancel_pool_size(const cancel_pool *pool)
{
    return pool == NULL ? -EINVAL : pool->nthreads;
}

static void run_item(struct cancel__work *w)
{
    struct item *it = (struct item *)w;
    cancel_callback *fn = it->fn;
    void *arg = it->arg;
    cancel__free(it);
    fn(arg);
}

int cancel_pool_queue(cancel_pool *pool, cancel_callback *fn, void *arg)
{
    if (pool == NULL || fn == NULL)
        return -EINVAL;
    struct item *it = cancel__malloc(sizeof(*it));
    if (it == NULL)
        return -ENOMEM;
    it->work.run = run_item;
    it->fn = fn;
    it->arg = arg;
    cancel__pool_push(pool, &it->work);
    return 0;
}

void cancel_pool_post(void *pool, cancel_callback *fn, void *arg)
{
    if (fn == NULL)
        return;
    if (pool == NULL || cancel_pool_queue(pool, fn, arg) < 0)
        fn(arg); /* never lose a cancellation callback */
}
