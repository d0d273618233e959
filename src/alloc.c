/* Every allocation of the library goes through this file, so that tests can
 * make the n-th allocation fail (SQLite's malloc sweep) and count what is
 * still allocated.  The counters are relaxed atomics: they are statistics,
 * they order nothing.  Counting live allocations costs two atomic
 * read-modify-writes per object, so only the test build of the library
 * (CANCEL_TEST_HOOKS) keeps that count; the failure hook is one relaxed
 * load and is always there. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static _Atomic long fail_countdown = -1; /* -1: never fail */
static _Atomic long live;

static inline void count(void *p, long d)
{
#ifdef CANCEL_TEST_HOOKS
    if (p != NULL)
        atomic_fetch_add_explicit(&live, d, memory_order_relaxed);
#else
    (void)p;
    (void)d;
#endif
}

static bool should_fail(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    while (n >= 0) {
        if (n == 0)
            return true; /* stays 0: every later allocation fails too */
        if (atomic_compare_exchange_weak_explicit(&fail_countdown, &n, n - 1,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            return false;
    }
    return false;
}

void *cancel__malloc(size_t n)
{
    if (should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(n);
    count(p, 1);
    return p;
}

void *cancel__calloc(size_t n, size_t size)
{
    if (should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = calloc(n, size);
    count(p, 1);
    return p;
}

void cancel__free(void *p)
{
    count(p, -1);
    free(p);
}

void cancel__alloc_fail_after(long n)
{
    atomic_store_explicit(&fail_countdown, n < 0 ? -1 : n,
                          memory_order_relaxed);
}

long cancel__alloc_live(void)
{
    return atomic_load_explicit(&live, memory_order_relaxed);
}
