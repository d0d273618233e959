/* The library thread: timers, cancel_async, and the clock.
 *
 * One thread, started on first need, serves every timer of the process from
 * a binary min-heap of ext entries keyed by deadline (each entry knows its
 * index, so arm, re-arm and disarm are O(log n)), and runs the callbacks of
 * sources canceled with cancel_source_cancel_async.
 *
 * Invariants (all under `mu`): an ext is in the heap iff its heap_index is
 * not CANCEL__NOT_ARMED; deadlines are on the installed clock; an ext in the
 * heap or the async queue belongs to a live source (free disarms under `mu`
 * before dropping its reference; the async queue holds a reference).
 * The thread cancels a due source (the reason CAS) under `mu`, so a disarm
 * is atomic with respect to firing, then takes a reference before it lets
 * go of `mu` to run the callbacks, so a concurrent free cannot destroy it
 * underneath.
 *
 * Lock order: `mu` is never held while callbacks run or while a stripe lock
 * is taken.
 *
 * Manual clocks: cancel_clock_advance bumps `advance_gen` and waits until
 * the thread has fired everything due at that time (`served_gen`).  Waits
 * whose deadline is on a manual clock put a watch (on their stack) in
 * `watches`; advance runs the due ones' functions under `mu`, and a wait
 * removes its watch under `mu` before it returns.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

struct cancel_clock {
    _Atomic int64_t now;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv;   /* the thread sleeps here */
static pthread_cond_t served_cv; /* advance waits here */
static bool started;
static pthread_t thread;

/* The heap keeps each deadline beside its entry, so sifting compares
 * without touching the entries (one cache miss per level, not two). */
struct slot {
    int64_t deadline;
    struct cancel__ext *ext;
};
static struct slot *heap;
static size_t heap_len, heap_cap;

static struct cancel__ext *async_head, *async_tail;

static cancel_clock *_Atomic installed; /* NULL: CLOCK_MONOTONIC */
static struct cancel__clock_watch *watches; /* waits on manual clocks */
static uint64_t advance_gen, served_gen;

/* ---- clock -------------------------------------------------------------- */

int64_t cancel__system_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

cancel_clock *cancel__clock_installed(void)
{
    cancel_clock *c = atomic_load_explicit(&installed, memory_order_acquire);
    if (c != NULL)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&installed);
    return c;
}

int64_t cancel__clock_read(cancel_clock *c)
{
    if (c == NULL)
        return cancel__system_now();
    int64_t now = atomic_load_explicit(&c->now, memory_order_acquire);
    CANCEL__ANNOTATE_HAPPENS_AFTER(&c->now);
    return now;
}

int64_t cancel_clock_now(void)
{
    return cancel__clock_read(cancel__clock_installed());
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

cancel_clock *cancel_clock_new_manual(int64_t start_ns)
{
    cancel_clock *c = cancel__malloc(sizeof(*c));
    if (c != NULL)
        atomic_init(&c->now, start_ns);
    return c;
}

void cancel_clock_free(cancel_clock *c)
{
    cancel__free(c);
}

int cancel_clock_install(cancel_clock *c)
{
    pthread_mutex_lock(&mu);
    int64_t before = cancel_clock_now();
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&installed);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by every wait */
    atomic_store_explicit(&installed, c, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    int64_t after = cancel_clock_now();
    /* Keep every armed timer's remaining delay: the same shift for all
     * entries keeps the heap ordered. */
    for (size_t i = 0; i < heap_len; i++) {
        int64_t left = heap[i].deadline - before;
        heap[i].deadline = add_sat(after, left < 0 ? 0 : left);
    }
    if (started)
        pthread_cond_signal(&wake_cv);
    pthread_mutex_unlock(&mu);
    return 0;
}

static void unwatch_locked(struct cancel__clock_watch *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else if (watches == w)
        watches = w->next;
    else
        return; /* not watched (any more) */
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

bool cancel__clock_watch(struct cancel__clock_watch *w)
{
    w->next = w->prev = NULL;
    pthread_mutex_lock(&mu);
    bool added = atomic_load_explicit(&w->clock->now, memory_order_relaxed) <
                 w->at;
    if (added) {
        w->next = watches;
        if (watches != NULL)
            watches->prev = w;
        watches = w;
    }
    pthread_mutex_unlock(&mu);
    return added;
}

void cancel__clock_unwatch(struct cancel__clock_watch *w)
{
    pthread_mutex_lock(&mu);
    unwatch_locked(w);
    pthread_mutex_unlock(&mu);
}

int cancel_clock_advance(cancel_clock *c, int64_t ns)
{
    if (c == NULL || ns < 0)
        return -EINVAL;
    pthread_mutex_lock(&mu);
    int64_t later =
        add_sat(atomic_load_explicit(&c->now, memory_order_relaxed), ns);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&c->now);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by every wait */
    atomic_store_explicit(&c->now, later, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    int64_t now = atomic_load_explicit(&c->now, memory_order_relaxed);
    for (struct cancel__clock_watch *w = watches, *next; w != NULL; w = next) {
        next = w->next;
        if (w->clock == c && w->at <= now) {
            unwatch_locked(w);
            w->fn(w->arg);
        }
    }
    if (started && atomic_load_explicit(&installed, memory_order_relaxed) == c) {
        uint64_t gen = ++advance_gen;
        pthread_cond_signal(&wake_cv);
        if (!pthread_equal(pthread_self(), thread))
            while (served_gen < gen)
                pthread_cond_wait(&served_cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

/* ---- heap (under mu) ---------------------------------------------------- */

static void heap_place(size_t i, struct slot e)
{
    heap[i] = e;
    e.ext->heap_index = i;
}

static void sift_up(size_t i)
{
    struct slot e = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent].deadline <= e.deadline)
            break;
        heap_place(i, heap[parent]);
        i = parent;
    }
    heap_place(i, e);
}

static void sift_down(size_t i)
{
    struct slot e = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap_len)
            break;
        if (child + 1 < heap_len &&
            heap[child + 1].deadline < heap[child].deadline)
            child++;
        if (e.deadline <= heap[child].deadline)
            break;
        heap_place(i, heap[child]);
        i = child;
    }
    heap_place(i, e);
}

/* Restore the order around i after its deadline changed. */
static void sift(size_t i)
{
    if (i > 0 && heap[(i - 1) / 2].deadline > heap[i].deadline)
        sift_up(i);
    else
        sift_down(i);
}

static void heap_remove(struct cancel__ext *e)
{
    size_t i = e->heap_index;
    e->heap_index = CANCEL__NOT_ARMED;
    struct slot last = heap[--heap_len];
    if (last.ext == e)
        return;
    heap_place(i, last);
    sift(i);
}

static int heap_reserve(void)
{
    if (heap_len < heap_cap)
        return 0;
    size_t cap = heap_cap ? heap_cap * 2 : 64;
    struct slot *bigger = cancel__malloc(cap * sizeof(*bigger));
    if (bigger == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < heap_len; i++)
        bigger[i] = heap[i];
    cancel__free(heap);
    heap = bigger;
    heap_cap = cap;
    return 0;
}

/* ---- the thread --------------------------------------------------------- */

static void *library_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&mu);
    for (;;) {
        uint64_t gen = advance_gen;

        while (async_head != NULL) {
            struct cancel__ext *e = async_head;
            async_head = e->async_next;
            if (async_head == NULL)
                async_tail = NULL;
            e->async_next = NULL;
            pthread_mutex_unlock(&mu);
            cancel__notify(e->src);
            cancel__unref(e->src); /* the queue's reference */
            pthread_mutex_lock(&mu);
        }

        while (heap_len > 0 && heap[0].deadline <= cancel_clock_now()) {
            struct cancel__ext *e = heap[0].ext;
            heap_remove(e);
            cancel_source *src = e->src;
            /* Decide under mu, so that a disarm (free, cancel_after(-1),
             * try_reset) either comes first and the timer never fires, or
             * comes after and finds the source canceled. */
            if (!cancel__set_canceled(src, ETIMEDOUT))
                continue;
            cancel__ref(src);
            pthread_mutex_unlock(&mu);
            cancel__notify(src);
            cancel__unref(src);
            pthread_mutex_lock(&mu);
        }

        if (served_gen < gen) {
            served_gen = gen;
            pthread_cond_broadcast(&served_cv);
        }
        if (async_head != NULL || advance_gen != gen)
            continue;
        if (heap_len > 0 &&
            atomic_load_explicit(&installed, memory_order_relaxed) == NULL) {
            int64_t d = heap[0].deadline;
            struct timespec ts = {d / 1000000000, d % 1000000000};
            pthread_cond_timedwait(&wake_cv, &mu, &ts);
        } else {
            pthread_cond_wait(&wake_cv, &mu);
        }
    }
    return NULL;
}

/* Under mu: start the thread if needed.  0 or -EAGAIN. */
static int ensure_thread(void)
{
    if (started)
        return 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wake_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&served_cv, NULL);

    /* The thread must not take the process's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&thread, NULL, library_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        pthread_cond_destroy(&wake_cv);
        pthread_cond_destroy(&served_cv);
        return -EAGAIN;
    }
    pthread_detach(thread);
    started = true;
    return 0;
}

int cancel__timer_set(cancel_source *src, int64_t delay_ns)
{
    /* All or nothing: the ext is published only once the heap has room, so
     * a failure leaves the source as it was. */
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
    struct cancel__ext *fresh = NULL;
    if (ext == NULL && (fresh = cancel__ext_alloc(src)) == NULL)
        return -ENOMEM;

    pthread_mutex_lock(&mu);
    int err = ensure_thread();
    if (err == 0 && (ext == NULL || ext->heap_index == CANCEL__NOT_ARMED))
        err = heap_reserve();
    if (err < 0) {
        pthread_mutex_unlock(&mu);
        cancel__free(fresh);
        return err;
    }
    if (fresh != NULL)
        ext = cancel__ext_publish(src, fresh);
    struct slot e = {add_sat(cancel_clock_now(), delay_ns), ext};
    if (ext->heap_index == CANCEL__NOT_ARMED) {
        heap_place(heap_len++, e);
        sift_up(ext->heap_index);
    } else {
        heap[ext->heap_index].deadline = e.deadline;
        sift(ext->heap_index);
    }
    if (ext->heap_index == 0)
        pthread_cond_signal(&wake_cv); /* a new earliest deadline */
    pthread_mutex_unlock(&mu);
    return 0;
}

void cancel__timer_disarm(struct cancel__ext *ext)
{
    pthread_mutex_lock(&mu);
    if (ext->heap_index != CANCEL__NOT_ARMED)
        heap_remove(ext);
    pthread_mutex_unlock(&mu);
}

int cancel__async_prepare(void)
{
    pthread_mutex_lock(&mu);
    int err = ensure_thread();
    pthread_mutex_unlock(&mu);
    return err;
}

void cancel__async_queue(struct cancel__ext *ext)
{
    cancel__ref(ext->src);
    pthread_mutex_lock(&mu);
    ext->async_next = NULL;
    if (async_tail != NULL)
        async_tail->async_next = ext;
    else
        async_head = ext;
    async_tail = ext;
    pthread_cond_signal(&wake_cv);
    pthread_mutex_unlock(&mu);
}
