/* The one place that knows how to sleep on a 32-bit word.
 * Linux: futex(2), private to the process.  Elsewhere: a small table of
 * mutex/condvar pairs hashed by address; a waiter rechecks the word under
 * the bucket's mutex, so a wake between its check and its sleep is not
 * lost (the waker takes the same mutex). */
#include "internal.h"

#ifdef __linux__

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The kernel reads the word atomically, but valgrind's futex wrapper
 * reports the word as read and written by the call: tell DRD these are
 * atomic accesses, not data accesses. */

void cancel__futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    CANCEL__ANNOTATE_ATOMIC_BEGIN();
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL,
            0);
    CANCEL__ANNOTATE_ATOMIC_END();
}

void cancel__futex_wake(_Atomic uint32_t *addr, int n)
{
    CANCEL__ANNOTATE_ATOMIC_BEGIN();
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    CANCEL__ANNOTATE_ATOMIC_END();
}

void cancel__futex_wait_until(_Atomic uint32_t *addr, uint32_t val,
                              int64_t deadline_ns)
{
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
    struct timespec ts = {deadline_ns / 1000000000, deadline_ns % 1000000000};
    CANCEL__ANNOTATE_ATOMIC_BEGIN();
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET_PRIVATE, val, &ts,
            NULL, FUTEX_BITSET_MATCH_ANY);
    CANCEL__ANNOTATE_ATOMIC_END();
}

#else /* portable fallback */

#include <pthread.h>
#include <time.h>

#define BUCKETS 64

static struct bucket {
    pthread_mutex_t mu;
    pthread_cond_t cv;
} buckets[BUCKETS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    for (int i = 0; i < BUCKETS; i++) {
        pthread_mutex_init(&buckets[i].mu, NULL);
        pthread_cond_init(&buckets[i].cv, NULL);
    }
}

static struct bucket *bucket_of(const void *addr)
{
    pthread_once(&once, init);
    return &buckets[((uintptr_t)addr >> 4) % BUCKETS];
}

void cancel__futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    struct bucket *b = bucket_of(addr);
    pthread_mutex_lock(&b->mu);
    if (atomic_load(addr) == val)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

void cancel__futex_wait_until(_Atomic uint32_t *addr, uint32_t val,
                              int64_t deadline_ns)
{
    struct bucket *b = bucket_of(addr);
    /* The condvars use the default clock: convert the deadline. */
    struct timespec now, rt;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = deadline_ns - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
    if (left <= 0)
        return;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t at = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec + left;
    struct timespec ts = {at / 1000000000, at % 1000000000};
    pthread_mutex_lock(&b->mu);
    if (atomic_load(addr) == val)
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    pthread_mutex_unlock(&b->mu);
}

void cancel__futex_wake(_Atomic uint32_t *addr, int n)
{
    (void)n;
    struct bucket *b = bucket_of(addr);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

#endif
