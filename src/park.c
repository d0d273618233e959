/* How every wait of the library sleeps: deadlines, parkers, wait queues.
 *
 * A waiting thread owns a parker on its stack and hangs it wherever a wake
 * can come from: a registration on its token (the callback unparks it), a
 * wait queue of an event or semaphore, a watch on a manual clock.  It then
 * re-checks its condition and parks.  Unparking sets the state to 1 and
 * makes the futex system call only if the waiter is asleep (state 2), so a
 * wake of a thread that is still spinning costs no system call.
 *
 * Lifetime: every unparker either holds a lock the waiter takes before it
 * leaves (a queue's spinlock, the timer lock) or runs in a registration
 * callback the waiter unregisters (which waits for it), so no unpark
 * touches a parker after its wait returned.
 *
 * Memory ordering: unpark is a release exchange; cancel__parker_reset is an
 * acquire exchange, so what the unparker did before waking is visible to
 * the waiter's next check.
 */
#include <errno.h>
#include <limits.h>

#include "internal.h"

#define SPINS 100

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

void cancel__deadline_init(struct cancel__deadline *d, int64_t timeout_ns)
{
    d->clock = cancel__clock_installed();
    d->at = timeout_ns < 0 ? INT64_MAX
                           : add_sat(cancel__clock_read(d->clock), timeout_ns);
}

int64_t cancel__deadline_left(const struct cancel__deadline *d)
{
    if (d->at == INT64_MAX)
        return -1;
    int64_t left = d->at - cancel__clock_read(d->clock);
    return left < 0 ? 0 : left;
}

bool cancel__deadline_passed(const struct cancel__deadline *d)
{
    return d->at != INT64_MAX && cancel__clock_read(d->clock) >= d->at;
}

static void unpark_as(struct cancel__parker *p, uint32_t how)
{
    int fd = p->fd;
    /* After this exchange nothing below reads the parker's memory: the
     * futex call only names its address, and the fd was read before. */
    if (atomic_exchange_explicit(&p->state, how, memory_order_acq_rel) == 2)
        cancel__futex_wake(&p->state, 1);
    if (fd >= 0)
        cancel__sigfd_signal(fd);
}

void cancel__unpark(struct cancel__parker *p)
{
    unpark_as(p, 1);
}

void cancel__unpark_cb(void *parker)
{
    unpark_as(parker, 1);
}

void cancel__unpark_token_cb(void *parker)
{
    unpark_as(parker, 3);
}

void cancel__parker_unhook(struct cancel__parker *p, cancel_registration *reg,
                           bool seen3)
{
    if (seen3 || atomic_load_explicit(&p->state, memory_order_acquire) == 3)
        cancel_unregister_nowait(reg); /* fired: its callback is done with us */
    else
        cancel_unregister(reg);
}

void cancel__park(struct cancel__parker *p, const struct cancel__deadline *d)
{
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(&p->state, memory_order_acquire) != 0)
            return;
        cancel__cpu_relax();
    }
    if (d->at != INT64_MAX && d->clock != NULL) {
        /* A manual clock: advance unparks us once the deadline is due. */
        struct cancel__clock_watch w = {
            .clock = d->clock, .at = d->at, .fn = cancel__unpark_cb, .arg = p};
        if (!cancel__clock_watch(&w))
            return; /* due already */
        uint32_t zero = 0;
        if (atomic_compare_exchange_strong_explicit(&p->state, &zero, 2,
                                                    memory_order_acq_rel,
                                                    memory_order_acquire))
            cancel__futex_wait(&p->state, 2);
        cancel__clock_unwatch(&w);
        return;
    }
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&p->state, &zero, 2,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        return; /* unparked meanwhile */
    if (d->at == INT64_MAX)
        cancel__futex_wait(&p->state, 2);
    else
        cancel__futex_wait_until(&p->state, 2, d->at);
}

/* ---- wait queues -------------------------------------------------------- */

void cancel__waitq_push(struct cancel__waitq *q, struct cancel__waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = true;
}

void cancel__waitq_remove(struct cancel__waitq *q, struct cancel__waiter *w)
{
    if (!w->queued)
        return;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->queued = false;
}

void cancel__waitq_wake(struct cancel__waitq *q, int n)
{
    while (n != 0 && q->head != NULL) {
        struct cancel__waiter *w = q->head;
        cancel__waitq_remove(q, w);
        cancel__unpark(w->parker);
        if (n > 0)
            n--;
    }
}

/* The slow path of every queue wait: hang a parker on the queue and on the
 * token, then re-check `ready` (under the queue lock; it may take what it
 * waits for, like a semaphore count) each time we are woken.  The order of
 * the checks is the contract: what we wait for beats cancellation, which
 * beats the timeout.  `leave`, if any, runs under the lock when we give up
 * (a semaphore passes its wake on). */
int cancel__waitq_wait(struct cancel__waitq *q, bool (*ready)(void *obj),
                       void (*leave)(void *obj), void *obj, cancel_token t,
                       int64_t timeout_ns)
{
    struct cancel__deadline d;
    struct cancel__parker p = CANCEL__PARKER_INIT;
    struct cancel__waiter w = {.parker = &p};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    int res = 0;
    bool seen3 = false;

    cancel__deadline_init(&d, timeout_ns);
    cancel__spin_lock(&q->lock);
    q->users++;
    if (!ready(obj)) {
        cancel__waitq_push(q, &w);
        cancel__spin_unlock(&q->lock);
        /* Already canceled: the callback unparks us inline. */
        cancel_register(t, &reg, cancel__unpark_token_cb, &p);
        for (;;) {
            seen3 |= cancel__parker_reset(&p) == 3;
            cancel__spin_lock(&q->lock);
            if (ready(obj))
                break;
            if (cancel_requested(t)) {
                res = -ECANCELED;
                break;
            }
            if (cancel__deadline_passed(&d)) {
                res = -ETIMEDOUT;
                break;
            }
            if (!w.queued) /* woken, but someone else took it */
                cancel__waitq_push(q, &w);
            cancel__spin_unlock(&q->lock);
            cancel__park(&p, &d);
        }
        cancel__waitq_remove(q, &w);
        if (res != 0 && leave != NULL)
            leave(obj);
    }
    q->users--;
    cancel__spin_unlock(&q->lock);
    cancel__parker_unhook(&p, &reg, seen3);
    if (res == -ECANCELED)
        cancel__record(t);
    return res;
}
