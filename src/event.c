/* Events (ManualResetEventSlim) and countdowns (CountdownEvent).
 *
 * Both are a state word read lock-free by the fast paths plus a wait queue
 * (park.c).  A waiter decides to sleep under the queue's lock, and set /
 * signal-to-zero changes the state under the same lock before waking the
 * queue, so no wake is lost; with an empty queue they make no system call.
 * Memory ordering: the state is published with a release store and read
 * with acquire loads, so what the setter wrote before setting is visible to
 * a waiter that returns 0.
 */
#include <errno.h>
#include <limits.h>

#include "internal.h"

_Static_assert(sizeof(struct cancel__event) <= sizeof(cancel_event),
               "cancel_event too small");
_Static_assert(_Alignof(struct cancel__event) <= _Alignof(cancel_event),
               "cancel_event misaligned");

static struct cancel__event *ev_of(const cancel_event *ev)
{
    return (struct cancel__event *)(void *)ev;
}

int cancel_event_init(cancel_event *ev, bool set)
{
    if (ev == NULL)
        return -EINVAL;
    *ev = (cancel_event)CANCEL_EVENT_INIT;
    atomic_init(&ev_of(ev)->set, set ? 1u : 0u);
    return 0;
}

int cancel_event_destroy(cancel_event *ev)
{
    if (ev == NULL)
        return -EINVAL;
    struct cancel__event *e = ev_of(ev);
    cancel__spin_lock(&e->q.lock);
    int err = e->q.users != 0 ? -EBUSY : 0;
    cancel__spin_unlock(&e->q.lock);
    return err;
}

int cancel_event_set(cancel_event *ev)
{
    if (ev == NULL)
        return -EINVAL;
    struct cancel__event *e = ev_of(ev);
    if (atomic_load_explicit(&e->set, memory_order_acquire))
        return 0;
    cancel__spin_lock(&e->q.lock);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&e->set);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by the waiters */
    atomic_store_explicit(&e->set, 1, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    cancel__waitq_wake(&e->q, -1);
    cancel__spin_unlock(&e->q.lock);
    return 0;
}

int cancel_event_reset(cancel_event *ev)
{
    if (ev == NULL)
        return -EINVAL;
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by the waiters */
    atomic_store_explicit(&ev_of(ev)->set, 0, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    return 0;
}

bool cancel_event_is_set(const cancel_event *ev)
{
    bool set = ev != NULL &&
               atomic_load_explicit(&ev_of(ev)->set, memory_order_acquire) != 0;
    if (set)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&ev_of(ev)->set);
    return set;
}

static bool event_ready(void *obj)
{
    struct cancel__event *e = obj;
    bool set = atomic_load_explicit(&e->set, memory_order_acquire) != 0;
    if (set)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&e->set);
    return set;
}

int cancel_event_wait(cancel_event *ev, cancel_token t, int64_t timeout_ns)
{
    if (ev == NULL)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED; /* a canceled token wins over a set event */
    struct cancel__event *e = ev_of(ev);
    if (event_ready(e))
        return 0;
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    return cancel__waitq_wait(&e->q, event_ready, NULL, e, t, timeout_ns);
}

/* ---- countdowns --------------------------------------------------------- */

struct cancel__countdown {
    _Atomic int32_t count;
    struct cancel__waitq q;
};

_Static_assert(sizeof(struct cancel__countdown) <= sizeof(cancel_countdown),
               "cancel_countdown too small");

static struct cancel__countdown *cd_of(const cancel_countdown *c)
{
    return (struct cancel__countdown *)(void *)c;
}

int cancel_countdown_init(cancel_countdown *c, int count)
{
    if (c == NULL || count < 0)
        return -EINVAL;
    *c = (cancel_countdown){{0}};
    atomic_init(&cd_of(c)->count, count);
    return 0;
}

int cancel_countdown_destroy(cancel_countdown *c)
{
    if (c == NULL)
        return -EINVAL;
    struct cancel__countdown *d = cd_of(c);
    cancel__spin_lock(&d->q.lock);
    int err = d->q.users != 0 ? -EBUSY : 0;
    cancel__spin_unlock(&d->q.lock);
    return err;
}

static void wake_all(struct cancel__countdown *d)
{
    cancel__spin_lock(&d->q.lock);
    cancel__waitq_wake(&d->q, -1);
    cancel__spin_unlock(&d->q.lock);
}

int cancel_countdown_signal(cancel_countdown *c, int n)
{
    if (c == NULL || n < 1)
        return -EINVAL;
    struct cancel__countdown *d = cd_of(c);
    int32_t cur = atomic_load_explicit(&d->count, memory_order_relaxed);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&d->count);
    do {
        if (n > cur)
            return -EINVAL; /* would go below 0 */
    } while (!atomic_compare_exchange_weak_explicit(
        &d->count, &cur, cur - n, memory_order_acq_rel, memory_order_relaxed));
    if (cur - n != 0)
        return 0;
    wake_all(d);
    return 1;
}

int cancel_countdown_add(cancel_countdown *c, int n)
{
    if (c == NULL || n < 1)
        return -EINVAL;
    struct cancel__countdown *d = cd_of(c);
    int32_t cur = atomic_load_explicit(&d->count, memory_order_relaxed);
    do {
        if (cur == 0)
            return -EINVAL; /* already set */
        if (n > INT32_MAX - cur)
            return -EOVERFLOW;
    } while (!atomic_compare_exchange_weak_explicit(
        &d->count, &cur, cur + n, memory_order_acq_rel, memory_order_relaxed));
    return 0;
}

int cancel_countdown_reset(cancel_countdown *c, int count)
{
    if (c == NULL || count < 0)
        return -EINVAL;
    struct cancel__countdown *d = cd_of(c);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&d->count);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by the waiters */
    atomic_store_explicit(&d->count, count, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    if (count == 0)
        wake_all(d);
    return 0;
}

int cancel_countdown_count(const cancel_countdown *c)
{
    if (c == NULL)
        return -EINVAL;
    return atomic_load_explicit(&cd_of(c)->count, memory_order_acquire);
}

static bool countdown_ready(void *obj)
{
    struct cancel__countdown *d = obj;
    bool zero = atomic_load_explicit(&d->count, memory_order_acquire) == 0;
    if (zero)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&d->count);
    return zero;
}

int cancel_countdown_wait(cancel_countdown *c, cancel_token t,
                          int64_t timeout_ns)
{
    if (c == NULL)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    struct cancel__countdown *d = cd_of(c);
    if (countdown_ready(d))
        return 0;
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    return cancel__waitq_wait(&d->q, countdown_ready, NULL, d, t, timeout_ns);
}
