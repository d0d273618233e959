/* libcancel waiting: block until canceled, signaled, or a timeout.
 *
 * Every wait here takes a token and a timeout in nanoseconds (negative:
 * infinite, 0: do not block) on the installed clock (cancel_clock_install);
 * a wait keeps the clock it started with.  A wait that ends because its
 * token was canceled returns -ECANCELED and records the token as the
 * thread's canceled token (cancel_canceled_token).
 *
 * Rules shared by every wait:
 *   - On entry the token is checked first: an already-canceled token gives
 *     -ECANCELED even if the event is set or the semaphore has a count
 *     (.NET's early check).
 *   - A waiter that is already blocked and is woken while what it waits for
 *     is available takes it: completion beats cancellation.
 *   - A blocked waiter spins briefly and then sleeps in the kernel (futex);
 *     a cancel wakes it with one wake per waiting object; a cancel, set or
 *     release with nobody waiting makes no system call.
 *   - Waits never allocate, except cancel_wait_any with more than
 *     CANCEL_WAIT_ANY_STACK items (it may then return -ENOMEM); a
 *     cancel_wait_any with fd items that has to block opens a private
 *     eventfd for the time of the call (-EMFILE / -ENFILE possible).
 *
 * Objects in caller storage (cancel_event, cancel_semaphore,
 * cancel_countdown) are set up with their _init function (an event also
 * has CANCEL_EVENT_INIT; a semaphore or countdown needs its counts, so a
 * zeroed one is not ready), and _destroy returns -EBUSY while a thread
 * waits on them.
 */
#ifndef CANCEL_WAIT_H
#define CANCEL_WAIT_H

#include <pthread.h>

#include "token.h"

#ifdef __cplusplus
extern "C" {
#endif

/* -------------------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------------- */

/* Block until t is canceled (-ECANCELED) or timeout_ns passes
 * (-ETIMEDOUT).  A timeout of 0 only checks.  -EINVAL for CANCEL_NONE with
 * an infinite timeout (it would block forever).
 * Thread safety: any thread, any number of waiters on one token.
 * Ownership: t must stay valid during the call (retain it if its owner may
 * free the source meanwhile). */
CANCEL_API int cancel_wait(cancel_token t, int64_t timeout_ns);

/* WaitHandle: a file descriptor that becomes readable (POLLIN) once t is
 * canceled and stays readable, for poll/epoll/select and event loops.
 * Created on first use (an eventfd on Linux, a pipe elsewhere); every call
 * returns the same fd.  Returns the fd; -EINVAL for CANCEL_NONE (a negative
 * number, which poll(2) ignores, so it never fires); -EMFILE, -ENFILE or
 * -ENOMEM on failure.
 * Thread safety: any thread.
 * Ownership: the source owns the fd and closes it when its state is
 * destroyed; do not close or read it; it is valid while t is. */
CANCEL_API int cancel_token_fd(cancel_token t);

/* Sleep ns nanoseconds: 0 after the full time, -ECANCELED as soon as t is
 * canceled - at once on a canceled token, even for ns == 0.  -EINVAL for a
 * negative ns on CANCEL_NONE (forever).  Thread safety: any thread. */
CANCEL_API int cancel_sleep(cancel_token t, int64_t ns);

/* -------------------------------------------------------------------------
 * Events (ManualResetEventSlim)
 * ---------------------------------------------------------------------- */

/* An event in caller storage: set or not set; waiters wake when set. */
typedef struct cancel_event {
    void *private_[4];
} cancel_event;

/* A not-set event, for static or automatic storage. */
#define CANCEL_EVENT_INIT {{0}}

/* Initialise ev, set or not.  Returns 0; -EINVAL for NULL.
 * Thread safety: before any other use.  Ownership: caller storage. */
CANCEL_API int cancel_event_init(cancel_event *ev, bool set);

/* Destroy ev: 0, -EBUSY while a thread waits on it (nothing changes),
 * -EINVAL for NULL.  Thread safety: the owner, once. */
CANCEL_API int cancel_event_destroy(cancel_event *ev);

/* Set ev and wake every waiter.  Setting a set event does nothing.  No
 * system call when nobody waits.  0 or -EINVAL.  Thread safety: any
 * thread.  Memory ordering: what the setter wrote before set happens-before
 * the return of every wait that sees it set. */
CANCEL_API int cancel_event_set(cancel_event *ev);

/* Reset ev to not set.  0 or -EINVAL.  Thread safety: any thread. */
CANCEL_API int cancel_event_reset(cancel_event *ev);

/* Whether ev is set; false for NULL.  Thread safety: any thread. */
CANCEL_API bool cancel_event_is_set(const cancel_event *ev);

/* Wait until ev is set (0), t is canceled (-ECANCELED) or timeout_ns passes
 * (-ETIMEDOUT).  A canceled token wins over a set event on entry; a blocked
 * waiter that is woken with the event set returns 0.  -EINVAL for NULL.
 * Thread safety: any thread, any number of waiters. */
CANCEL_API int cancel_event_wait(cancel_event *ev, cancel_token t,
                                 int64_t timeout_ns);

/* -------------------------------------------------------------------------
 * Semaphores (SemaphoreSlim)
 * ---------------------------------------------------------------------- */

typedef struct cancel_semaphore {
    void *private_[4];
} cancel_semaphore;

/* Initialise with 0 <= initial <= max, max >= 1.  0 or -EINVAL.
 * Thread safety: before any other use.  Ownership: caller storage. */
CANCEL_API int cancel_semaphore_init(cancel_semaphore *s, int initial,
                                     int max);

/* 0, -EBUSY while a thread waits (nothing changes), -EINVAL for NULL. */
CANCEL_API int cancel_semaphore_destroy(cancel_semaphore *s);

/* Take one count: 0; -ECANCELED, -ETIMEDOUT; -EINVAL for NULL.  A canceled
 * token wins over an available count on entry; a blocked waiter woken while
 * a count is available takes it.  Thread safety: any thread. */
CANCEL_API int cancel_semaphore_wait(cancel_semaphore *s, cancel_token t,
                                     int64_t timeout_ns);

/* Add n >= 1 counts, waking up to n waiters.  Returns the count before the
 * release (SemaphoreSlim.Release); -EOVERFLOW past max (nothing changes);
 * -EINVAL for NULL or n < 1.  No system call when nobody waits.
 * Thread safety: any thread. */
CANCEL_API int cancel_semaphore_release(cancel_semaphore *s, int n);

/* The current count; -EINVAL for NULL.  Thread safety: any thread. */
CANCEL_API int cancel_semaphore_count(const cancel_semaphore *s);

/* -------------------------------------------------------------------------
 * Countdowns (CountdownEvent)
 * ---------------------------------------------------------------------- */

typedef struct cancel_countdown {
    void *private_[4];
} cancel_countdown;

/* Initialise with count >= 0 (0: already set).  0 or -EINVAL. */
CANCEL_API int cancel_countdown_init(cancel_countdown *c, int count);

/* 0, -EBUSY while a thread waits, -EINVAL for NULL. */
CANCEL_API int cancel_countdown_destroy(cancel_countdown *c);

/* Subtract n >= 1.  Returns 1 if this call brought the count to 0 (and woke
 * the waiters), else 0.  -EINVAL, changing nothing, for NULL, n < 1 or a
 * count that would go below 0 (also on a set countdown). */
CANCEL_API int cancel_countdown_signal(cancel_countdown *c, int n);

/* Add n >= 1.  0; -EINVAL on a set countdown (count 0) or n < 1;
 * -EOVERFLOW past INT_MAX.  Nothing changes on an error. */
CANCEL_API int cancel_countdown_add(cancel_countdown *c, int n);

/* Set the count to count >= 0 (0 sets it and wakes the waiters).  0 or
 * -EINVAL. */
CANCEL_API int cancel_countdown_reset(cancel_countdown *c, int count);

/* The current count; -EINVAL for NULL. */
CANCEL_API int cancel_countdown_count(const cancel_countdown *c);

/* Wait until the count is 0 (0), -ECANCELED, -ETIMEDOUT, -EINVAL.
 * Thread safety (every countdown function): any thread. */
CANCEL_API int cancel_countdown_wait(cancel_countdown *c, cancel_token t,
                                     int64_t timeout_ns);

/* -------------------------------------------------------------------------
 * Condition variables
 * ---------------------------------------------------------------------- */

/* pthread_cond_wait that also wakes on cancellation: 0 when woken (maybe
 * spuriously, as pthread_cond_wait), -ECANCELED, -ETIMEDOUT (a timeout of 0
 * returns it at once, after the cancellation check), -EINVAL for NULL c or
 * m.  The mutex is held again on every return.  Works whatever clock the
 * condvar was made with (the timeout is on the installed clock).
 * On cancellation the callback broadcasts c under m; if m is busy (the
 * canceller may hold it) a library thread does it, so canceling while
 * holding m does not deadlock.
 * Thread safety: as pthread_cond_wait.  Ownership: c and m must outlive the
 * call; when it returns, the library no longer refers to them. */
CANCEL_API int cancel_cond_wait(pthread_cond_t *c, pthread_mutex_t *m,
                                cancel_token t, int64_t timeout_ns);

/* -------------------------------------------------------------------------
 * Wait-any
 * ---------------------------------------------------------------------- */

enum cancel_waitable_kind {
    CANCEL_WAITABLE_TOKEN = 1,
    CANCEL_WAITABLE_EVENT,
    CANCEL_WAITABLE_SEM,
    CANCEL_WAITABLE_FD,
};

/* One item of cancel_wait_any; build it with the CANCEL_WAIT_* macros. */
typedef struct cancel_waitable {
    enum cancel_waitable_kind kind;
    short events; /* FD: poll(2) events */
    int fd;       /* FD */
    cancel_token token;
    cancel_event *event;
    cancel_semaphore *sem;
} cancel_waitable;

#ifdef __cplusplus
#define CANCEL__WAITABLE(...) (cancel_waitable{__VA_ARGS__})
#else
#define CANCEL__WAITABLE(...) ((cancel_waitable){__VA_ARGS__})
#endif
#define CANCEL_WAIT_TOKEN(t)                                                   \
    CANCEL__WAITABLE(CANCEL_WAITABLE_TOKEN, 0, -1, (t), NULL, NULL)
#define CANCEL_WAIT_EVENT(ev)                                                  \
    CANCEL__WAITABLE(CANCEL_WAITABLE_EVENT, 0, -1, CANCEL_NONE, (ev), NULL)
#define CANCEL_WAIT_SEM(s)                                                     \
    CANCEL__WAITABLE(CANCEL_WAITABLE_SEM, 0, -1, CANCEL_NONE, NULL, (s))
#define CANCEL_WAIT_FD(f, ev)                                                  \
    CANCEL__WAITABLE(CANCEL_WAITABLE_FD, (short)(ev), (f), CANCEL_NONE, NULL, \
                     NULL)

/* Items up to this many are waited on without allocating. */
#define CANCEL_WAIT_ANY_STACK 16

/* WaitHandle.WaitAny: the lowest index that is signaled - a canceled token,
 * a set event, a semaphore with a count (one count is taken, only of the
 * semaphore returned), an fd poll(2) reports for any of its events or for
 * POLLERR/POLLHUP/POLLNVAL - checked on entry and whenever woken.
 * -ETIMEDOUT when timeout_ns passes first.  A token that fires is a result,
 * not an error: nothing is recorded as the thread's canceled token.
 * -EINVAL for NULL items, n == 0, an unknown kind, a NULL event/semaphore
 * or a negative fd; -EBADF for an fd that is not open on entry; -ENOMEM
 * past CANCEL_WAIT_ANY_STACK items when out of memory; -EMFILE / -ENFILE
 * when it must block on fds and cannot open its eventfd.
 * Thread safety: any thread; the objects may be used by others meanwhile.
 * Ownership: the items are read during the call only. */
CANCEL_API int cancel_wait_any(const cancel_waitable *items, size_t n,
                               int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_WAIT_H */
