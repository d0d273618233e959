/* The thread pool: a fixed set of workers and one FIFO queue.
 *
 * Invariants (under `lock`, a spinlock: critical sections are a few pointer
 * writes): the queue holds items not yet taken; `idle` is a stack of
 * workers that found the queue empty and are parked, each with a parker on
 * its own stack; `spinning` counts workers that found it empty and look at
 * it a little longer (unlocked) before they park - at most half of them
 * (rounded up) at a time, so an idle many-core pool does not burn CPUs.
 * A producer that queues an item wakes one idle worker (after unlocking)
 * only when nobody spins: a spinner takes the item under the lock, and if
 * more is queued by then and nobody else spins it wakes an idle worker
 * itself, so a burst still fans out to every worker.  A steady stream of
 * items thus costs no system call on either side, and a parked worker
 * costs one futex wake.
 * `closing` makes workers exit once the queue is empty (cancel_pool_free
 * drains: an item that runs may still queue more, and a worker still
 * running picks those up).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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
    struct cancel__work *_Atomic head; /* read unlocked by spinners */
    struct cancel__work *tail;
    struct idle *idle;
    int spinning; /* workers looking for work before they park */
    int max_spinning; /* half the workers: the rest park at once */
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

/* How long a worker that found the queue empty keeps looking before it
 * parks: about a microsecond of pauses, then a few yields (which let a
 * producer on the same CPU run). */
#define SPIN_PAUSES 256
#define SPIN_YIELDS 4

/* Under the lock: the idle worker to wake, if any. */
static struct idle *take_idle(struct cancel_pool *pool)
{
    struct idle *i = pool->idle;
    if (i != NULL)
        pool->idle = i->next;
    return i;
}

static struct cancel__work *peek(struct cancel_pool *pool)
{
    return atomic_load_explicit(&pool->head, memory_order_relaxed);
}

/* Look at the queue without the lock for a while, until work comes. */
static void spin_for_work(struct cancel_pool *pool)
{
    for (int i = 0; i < SPIN_PAUSES; i++) {
        if (peek(pool) != NULL)
            return;
        cancel__cpu_relax();
    }
    for (int i = 0; i < SPIN_YIELDS && peek(pool) == NULL; i++)
        sched_yield();
}

static void *worker(void *arg)
{
    struct cancel_pool *pool = arg;
    bool spun = false;
    cancel__spin_lock(&pool->lock);
    for (;;) {
        /* Here the lock is held. */
        struct cancel__work *w = peek(pool);
        if (w != NULL) {
            struct cancel__work *next = w->next;
            atomic_store_explicit(&pool->head, next, memory_order_relaxed);
            if (next == NULL)
                pool->tail = NULL;
            /* More work and nobody looking for it: hand it to a sleeper,
             * so a burst fans out to every worker. */
            struct idle *i = next != NULL && pool->spinning == 0
                                 ? take_idle(pool)
                                 : NULL;
            cancel__spin_unlock(&pool->lock);
            if (i != NULL)
                cancel__unpark(&i->parker);
            w->run(w);
            spun = false;
            cancel__spin_lock(&pool->lock);
            continue;
        }
        if (pool->closing) {
            cancel__spin_unlock(&pool->lock);
            return NULL;
        }
        if (!spun && pool->spinning < pool->max_spinning) {
            /* A producer that sees us spinning wakes nobody: the common
             * case of a busy pool costs no system call on either side. */
            pool->spinning++;
            cancel__spin_unlock(&pool->lock);
            /* Unlocked peeks at head: decided again under the lock. */
            CANCEL__ANNOTATE_ATOMIC_BEGIN();
            spin_for_work(pool);
            CANCEL__ANNOTATE_ATOMIC_END();
            cancel__spin_lock(&pool->lock);
            pool->spinning--;
            spun = true;
            continue; /* decide again under the lock */
        }
        struct idle me = {.parker = CANCEL__PARKER_INIT};
        me.next = pool->idle;
        pool->idle = &me;
        cancel__spin_unlock(&pool->lock);
        struct cancel__deadline forever = {NULL, INT64_MAX};
        /* A producer or the closing pool takes us off the stack first. */
        while (cancel__parker_reset(&me.parker) != 1)
            cancel__park(&me.parker, &forever);
        spun = false;
        cancel__spin_lock(&pool->lock);
    }
}

void cancel__pool_push(struct cancel_pool *pool, struct cancel__work *w)
{
    w->next = NULL;
    cancel__spin_lock(&pool->lock);
    if (pool->tail != NULL)
        pool->tail->next = w;
    else
        atomic_store_explicit(&pool->head, w, memory_order_relaxed);
    pool->tail = w;
    /* A spinning worker takes it under this lock (and wakes a sleeper if
     * more is queued by then); otherwise wake one. */
    struct idle *i = pool->spinning == 0 ? take_idle(pool) : NULL;
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
    pool->max_spinning = (nthreads + 1) / 2;
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
