/* Semaphores (SemaphoreSlim).
 *
 * The count is taken lock-free by a CAS on the fast path; releases and
 * sleeping waiters use the wait queue's lock.  A release dequeues and
 * unparks up to n waiters; a woken waiter that finds the count taken by a
 * faster thread queues again, and one that gives up (canceled, timed out)
 * while a count is left passes its wake to the next waiter, so no count
 * sits unclaimed while somebody sleeps.
 */
#include <errno.h>

#include "internal.h"

_Static_assert(sizeof(struct cancel__semaphore) <= sizeof(cancel_semaphore),
               "cancel_semaphore too small");

static struct cancel__semaphore *sem_of(const cancel_semaphore *s)
{
    return (struct cancel__semaphore *)(void *)s;
}

int cancel_semaphore_init(cancel_semaphore *s, int initial, int max)
{
    if (s == NULL || max < 1 || initial < 0 || initial > max)
        return -EINVAL;
    *s = (cancel_semaphore){{0}};
    atomic_init(&sem_of(s)->count, initial);
    sem_of(s)->max = max;
    return 0;
}

int cancel_semaphore_destroy(cancel_semaphore *s)
{
    if (s == NULL)
        return -EINVAL;
    struct cancel__semaphore *m = sem_of(s);
    cancel__spin_lock(&m->q.lock);
    int err = m->q.users != 0 ? -EBUSY : 0;
    cancel__spin_unlock(&m->q.lock);
    return err;
}

bool cancel__semaphore_try_take(struct cancel__semaphore *m)
{
    int32_t c = atomic_load_explicit(&m->count, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&m->count, &c, c - 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            CANCEL__ANNOTATE_HAPPENS_AFTER(&m->count);
            return true;
        }
    }
    return false;
}

void cancel__semaphore_forward(struct cancel__semaphore *m)
{
    if (atomic_load_explicit(&m->count, memory_order_relaxed) > 0)
        cancel__waitq_wake(&m->q, 1);
}

static bool sem_ready(void *obj)
{
    return cancel__semaphore_try_take(obj);
}

static void sem_leave(void *obj)
{
    cancel__semaphore_forward(obj);
}

int cancel_semaphore_wait(cancel_semaphore *s, cancel_token t,
                          int64_t timeout_ns)
{
    if (s == NULL)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED; /* a canceled token wins over a count */
    struct cancel__semaphore *m = sem_of(s);
    if (cancel__semaphore_try_take(m))
        return 0;
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    return cancel__waitq_wait(&m->q, sem_ready, sem_leave, m, t, timeout_ns);
}

int cancel_semaphore_release(cancel_semaphore *s, int n)
{
    if (s == NULL || n < 1)
        return -EINVAL;
    struct cancel__semaphore *m = sem_of(s);
    cancel__spin_lock(&m->q.lock);
    int32_t c = atomic_load_explicit(&m->count, memory_order_relaxed);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&m->count);
    do {
        if (n > m->max - c) {
            cancel__spin_unlock(&m->q.lock);
            return -EOVERFLOW;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &m->count, &c, c + n, memory_order_release, memory_order_relaxed));
    cancel__waitq_wake(&m->q, n);
    cancel__spin_unlock(&m->q.lock);
    return c;
}

int cancel_semaphore_count(const cancel_semaphore *s)
{
    if (s == NULL)
        return -EINVAL;
    return atomic_load_explicit(&sem_of(s)->count, memory_order_acquire);
}
