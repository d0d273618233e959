/* Token waits, the token's wait handle (fd), sleep, condition-variable
 * waits and wait-any.
 *
 * Each wait hangs a parker (park.c) on what can wake it: a registration on
 * the token, the wait queues of events and semaphores, a manual-clock
 * watch; wait-any with file descriptors makes its parker signal an eventfd
 * it polls together with the caller's fds.
 *
 * cancel_cond_wait cannot hang a parker on a pthread condvar: it must
 * broadcast the condvar, and must do so while holding the mutex, or a
 * broadcast that falls between the waiter's check and its sleep is lost.
 * Its callback therefore *tries* the mutex; if it is busy (held by the
 * waiter on its way to sleep, by the canceller itself, by anyone), it hands
 * the broadcast to a *cond helper* thread, which can afford to block on
 * the mutex (and another helper starts if none is idle, so one busy mutex
 * never delays another waiter's broadcast).  Before returning, the waiter withdraws a queued hand-off, or,
 * if the helper already took it, lets go of the mutex until the helper is
 * done with it: the library never touches the condvar or mutex after
 * cancel_cond_wait returned.
 *
 * Lock order: the cond helper's lock `hq_mu` is taken after a caller's
 * mutex or the timer lock, never before; the helper takes a caller's mutex
 * only without holding `hq_mu`.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* ---- cancel_wait, cancel_sleep ------------------------------------------ */

static int wait_token_until(cancel_token t, struct cancel__deadline d)
{
    struct cancel__parker p = CANCEL__PARKER_INIT;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    int res;
    bool seen3 = false;

    cancel_register(t, &reg, cancel__unpark_token_cb, &p);
    for (;;) {
        seen3 |= cancel__parker_reset(&p) == 3;
        if (cancel_requested(t)) {
            res = -ECANCELED;
            break;
        }
        if (cancel__deadline_passed(&d)) {
            res = -ETIMEDOUT;
            break;
        }
        cancel__park(&p, &d);
    }
    /* Woken by the cancel: do not wait for its callback to return. */
    cancel__parker_unhook(&p, &reg, seen3);
    if (res == -ECANCELED)
        cancel__record(t);
    return res;
}

static int wait_token(cancel_token t, int64_t timeout_ns)
{
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return wait_token_until(t, d);
}

int cancel__wait_real(cancel_token t, int64_t ns)
{
    struct cancel__deadline d = {NULL, cancel__system_now() + ns};
    return wait_token_until(t, d);
}

int cancel_wait(cancel_token t, int64_t timeout_ns)
{
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (timeout_ns == 0)
        return -ETIMEDOUT;
    if (t.src_ == NULL && timeout_ns < 0)
        return -EINVAL; /* nothing could ever wake it */
    return wait_token(t, timeout_ns);
}

int cancel_sleep(cancel_token t, int64_t ns)
{
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (ns == 0)
        return 0;
    if (t.src_ == NULL && ns < 0)
        return -EINVAL;
    int err = wait_token(t, ns);
    return err == -ETIMEDOUT ? 0 : err;
}

/* ---- the wait handle ---------------------------------------------------- */

static pthread_mutex_t fd_mu = PTHREAD_MUTEX_INITIALIZER;

int cancel_token_fd(cancel_token t)
{
    cancel_source *src = t.src_;
    if (src == NULL)
        return -EINVAL;
    struct cancel__ext *ext = cancel__get_ext(src);
    if (ext == NULL)
        return -ENOMEM;
    int fd = atomic_load_explicit(&ext->fd, memory_order_acquire);
    if (fd >= 0) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&ext->fd);
        return fd;
    }

    pthread_mutex_lock(&fd_mu);
    fd = atomic_load_explicit(&ext->fd, memory_order_acquire);
    if (fd < 0) {
        int rfd, wfd;
        int err = cancel__sigfd_open(&rfd, &wfd);
        if (err < 0) {
            pthread_mutex_unlock(&fd_mu);
            return err;
        }
        ext->wfd = wfd;
        CANCEL__ANNOTATE_HAPPENS_BEFORE(&ext->fd); /* wfd is set */
        CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by cancellers */
        atomic_store_explicit(&ext->fd, rfd, memory_order_seq_cst);
        CANCEL__ANNOTATE_ATOMIC_END();
        fd = rfd;
        /* A cancel that read fd == -1 left the signal to us (see
         * cancel__set_canceled for the other half). */
        if (__atomic_load_n(&src->head.reason, __ATOMIC_SEQ_CST) != 0)
            cancel__sigfd_signal(wfd);
    }
    pthread_mutex_unlock(&fd_mu);
    return fd;
}

/* ---- condition variables ------------------------------------------------ */

enum { CW_IDLE, CW_QUEUED, CW_BUSY, CW_DONE };

struct condwait {
    pthread_cond_t *c;
    pthread_mutex_t *m;
    int state; /* CW_*, under hq_mu */
    struct condwait *next;
};

static pthread_mutex_t hq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hq_cv = PTHREAD_COND_INITIALIZER;   /* work queued */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER; /* job finished */
static struct condwait *hq_head, *hq_tail;
static int queued;  /* jobs in the queue */
static int helpers; /* cond helper threads alive */
static int idle;    /* of which waiting for work */

/* A helper blocks on one caller's mutex at a time.  So that a busy mutex
 * never delays the broadcast for another one, a job queued while no helper
 * is idle starts another helper; helpers beyond one exit when the queue is
 * empty.  There are never more helpers than jobs that were blocked at once. */
static void *cond_helper(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&hq_mu);
    for (;;) {
        while (hq_head == NULL) {
            if (helpers > 1) {
                helpers--;
                pthread_mutex_unlock(&hq_mu);
                return NULL;
            }
            idle++;
            pthread_cond_wait(&hq_cv, &hq_mu);
            idle--;
        }
        struct condwait *w = hq_head;
        hq_head = w->next;
        if (hq_head == NULL)
            hq_tail = NULL;
        queued--;
        w->state = CW_BUSY;
        pthread_mutex_unlock(&hq_mu);
        pthread_mutex_lock(w->m);
        pthread_cond_broadcast(w->c);
        pthread_mutex_unlock(w->m);
        pthread_mutex_lock(&hq_mu);
        w->state = CW_DONE;
        pthread_cond_broadcast(&done_cv);
    }
}

/* Under hq_mu, after queueing a job: make sure an idle helper is there for
 * every queued job.  false if no helper exists and none can be started. */
static bool ensure_helper(void)
{
    if (queued <= idle) {
        pthread_cond_signal(&hq_cv);
        return true;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int err = pthread_create(&th, NULL, cond_helper, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0)
        return helpers > 0; /* a busy helper gets to it eventually */
    pthread_detach(th);
    helpers++;
    return true;
}

/* Under hq_mu: take a queued job out of the queue. */
static void cond_unqueue(struct condwait *w)
{
    struct condwait **pp = &hq_head, *prev = NULL;
    while (*pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = w->next;
    if (hq_tail == w)
        hq_tail = prev;
    queued--;
    w->state = CW_DONE;
}

/* Runs on the canceling thread, or under the timer lock (manual clock):
 * never blocks on the caller's mutex. */
static void cond_wake(void *arg)
{
    struct condwait *w = arg;
    if (pthread_mutex_trylock(w->m) == 0) {
        pthread_cond_broadcast(w->c);
        pthread_mutex_unlock(w->m);
        return;
    }
    pthread_mutex_lock(&hq_mu);
    if (w->state == CW_IDLE) {
        w->state = CW_QUEUED;
        w->next = NULL;
        if (hq_tail != NULL)
            hq_tail->next = w;
        else
            hq_head = w;
        hq_tail = w;
        queued++;
        if (!ensure_helper()) {
            /* Withdraw it again. */
            cond_unqueue(w);
            /* No thread: broadcast without the mutex.  A waiter between
             * its check and its sleep may miss it; it then wakes at its
             * deadline or on the next broadcast. */
            pthread_cond_broadcast(w->c);
        }
    }
    pthread_mutex_unlock(&hq_mu);
}

/* Called with *m held: make sure the helper is done with w. */
static void cond_withdraw(struct condwait *w)
{
    pthread_mutex_lock(&hq_mu);
    if (w->state == CW_QUEUED) {
        cond_unqueue(w);
    } else if (w->state == CW_BUSY) {
        /* The helper may be blocked on our mutex: let go of it. */
        pthread_mutex_unlock(w->m);
        while (w->state != CW_DONE)
            pthread_cond_wait(&done_cv, &hq_mu);
        pthread_mutex_unlock(&hq_mu);
        pthread_mutex_lock(w->m);
        return;
    }
    pthread_mutex_unlock(&hq_mu);
}

int cancel_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, cancel_token t,
                     int64_t timeout_ns)
{
    if (c == NULL || m == NULL)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    if (timeout_ns == 0)
        return -ETIMEDOUT;

    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    struct condwait w = {.c = c, .m = m, .state = CW_IDLE};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    struct cancel__clock_watch watch = {
        .clock = d.clock, .at = d.at, .fn = cond_wake, .arg = &w};
    bool watched = false;

    /* We hold m, so cond_wake cannot broadcast before we sleep: it either
     * gets the mutex after we are asleep, or hands off to the helper,
     * which blocks on m until we are. */
    if (cancel_try_register(t, &reg, cond_wake, &w) == 0) {
        if (d.at == INT64_MAX) {
            pthread_cond_wait(c, m);
        } else if (d.clock != NULL) {
            watched = cancel__clock_watch(&watch);
            if (watched)
                pthread_cond_wait(c, m);
        } else {
            struct timespec ts = {d.at / 1000000000, d.at % 1000000000};
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
            pthread_cond_clockwait(c, m, CLOCK_MONOTONIC, &ts);
#else
            /* No clockwait: assume the condvar's default clock. */
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            int64_t left = d.at - cancel__system_now();
            int64_t at = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec +
                         (left > 0 ? left : 0);
            ts.tv_sec = at / 1000000000;
            ts.tv_nsec = at % 1000000000;
            pthread_cond_timedwait(c, m, &ts);
#endif
        }
    }
    if (watched)
        cancel__clock_unwatch(&watch);
    cancel_unregister(&reg); /* cond_wake never blocks, so neither do we */
    cond_withdraw(&w);

    if (cancel_requested(t)) {
        cancel__record(t);
        return -ECANCELED;
    }
    if (cancel__deadline_passed(&d))
        return -ETIMEDOUT;
    return 0;
}

/* ---- wait-any ----------------------------------------------------------- */

/* What wait-any hangs on one item. */
union hook {
    cancel_registration reg;      /* TOKEN */
    struct cancel__waiter waiter; /* EVENT, SEM */
};

static struct cancel__waitq *queue_of(const cancel_waitable *it)
{
    if (it->kind == CANCEL_WAITABLE_EVENT)
        return &((struct cancel__event *)(void *)it->event)->q;
    return &((struct cancel__semaphore *)(void *)it->sem)->q;
}

/* The lowest signaled index, taking one count of a semaphore it returns;
 * fds were polled into pfd (by fd item order).  -1: none. */
static int scan(const cancel_waitable *items, size_t n,
                const struct pollfd *pfd)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const cancel_waitable *it = &items[i];
        switch (it->kind) {
        case CANCEL_WAITABLE_TOKEN:
            if (cancel_requested(it->token))
                return (int)i;
            break;
        case CANCEL_WAITABLE_EVENT:
            if (cancel_event_is_set(it->event))
                return (int)i;
            break;
        case CANCEL_WAITABLE_SEM:
            if (cancel__semaphore_try_take(
                    (struct cancel__semaphore *)(void *)it->sem))
                return (int)i;
            break;
        case CANCEL_WAITABLE_FD:
            if (pfd[k++].revents &
                (it->events | POLLERR | POLLHUP | POLLNVAL))
                return (int)i;
            break;
        }
    }
    return -1;
}

static int poll_fds(struct pollfd *pfd, size_t nfds,
                    const struct cancel__deadline *d, bool block)
{
    struct timespec ts = {0, 0}, *tsp = &ts;
    if (block) {
        if (d->at == INT64_MAX || d->clock != NULL) {
            tsp = NULL; /* a manual clock's advance signals our eventfd */
        } else {
            int64_t left = d->at - cancel__system_now();
            if (left < 0)
                left = 0;
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
        }
    }
    int r;
    do
        r = ppoll(pfd, (nfds_t)nfds, tsp, NULL);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static int validate(const cancel_waitable *items, size_t n, size_t *nfds)
{
    *nfds = 0;
    for (size_t i = 0; i < n; i++) {
        const cancel_waitable *it = &items[i];
        switch (it->kind) {
        case CANCEL_WAITABLE_TOKEN:
            break;
        case CANCEL_WAITABLE_EVENT:
            if (it->event == NULL)
                return -EINVAL;
            break;
        case CANCEL_WAITABLE_SEM:
            if (it->sem == NULL)
                return -EINVAL;
            break;
        case CANCEL_WAITABLE_FD:
            if (it->fd < 0)
                return -EINVAL;
            if (fcntl(it->fd, F_GETFD) < 0)
                return -EBADF;
            (*nfds)++;
            break;
        default:
            return -EINVAL;
        }
    }
    return 0;
}

int cancel_wait_any(const cancel_waitable *items, size_t n,
                    int64_t timeout_ns)
{
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    return cancel__wait_any_until(items, n, &d);
}

int cancel__wait_any_until(const cancel_waitable *items, size_t n,
                           const struct cancel__deadline *dl)
{
    if (items == NULL || n == 0)
        return -EINVAL;
    size_t nfds;
    int err = validate(items, n, &nfds);
    if (err < 0)
        return err;
    struct cancel__deadline d = *dl;
    bool no_wait = d.at != INT64_MAX && cancel__deadline_passed(&d);

    union hook stack_hooks[CANCEL_WAIT_ANY_STACK];
    struct pollfd stack_pfd[CANCEL_WAIT_ANY_STACK + 1];
    union hook *hooks = stack_hooks;
    struct pollfd *pfd = stack_pfd;
    if (n > CANCEL_WAIT_ANY_STACK) {
        hooks = cancel__malloc(n * sizeof(*hooks));
        pfd = cancel__malloc((nfds + 1) * sizeof(*pfd));
        if (hooks == NULL || pfd == NULL) {
            cancel__free(hooks);
            cancel__free(pfd);
            return -ENOMEM;
        }
    }
    for (size_t i = 0, k = 0; i < n; i++)
        if (items[i].kind == CANCEL_WAITABLE_FD)
            pfd[k++] = (struct pollfd){items[i].fd, items[i].events, 0};

    /* Entry check: no hooks needed if something is signaled already. */
    int res = -1;
    if (nfds > 0 && (err = poll_fds(pfd, nfds, &d, false)) < 0)
        res = err;
    else
        res = scan(items, n, pfd);
    if (res != -1 || no_wait) {
        if (res == -1)
            res = -ETIMEDOUT;
        goto out;
    }

    struct cancel__parker p = CANCEL__PARKER_INIT;
    int rfd = -1, wfd = -1;
    if (nfds > 0) {
        err = cancel__sigfd_open(&rfd, &wfd);
        if (err < 0) {
            res = err;
            goto out;
        }
        p.fd = wfd;
        pfd[nfds] = (struct pollfd){rfd, POLLIN, 0};
    }
    for (size_t i = 0; i < n; i++) {
        const cancel_waitable *it = &items[i];
        if (it->kind == CANCEL_WAITABLE_TOKEN) {
            hooks[i].reg = (cancel_registration)CANCEL_REGISTRATION_INIT;
            cancel_register(it->token, &hooks[i].reg, cancel__unpark_cb, &p);
        } else if (it->kind != CANCEL_WAITABLE_FD) {
            struct cancel__waitq *q = queue_of(it);
            hooks[i].waiter = (struct cancel__waiter){.parker = &p};
            cancel__spin_lock(&q->lock);
            q->users++;
            cancel__waitq_push(q, &hooks[i].waiter);
            cancel__spin_unlock(&q->lock);
        }
    }

    struct cancel__clock_watch watch = {
        .clock = d.clock, .at = d.at, .fn = cancel__unpark_cb, .arg = &p};
    bool watched = false;
    for (;;) {
        cancel__parker_reset(&p);
        /* Re-queue on objects whose wake we consumed. */
        for (size_t i = 0; i < n; i++) {
            const cancel_waitable *it = &items[i];
            if (it->kind == CANCEL_WAITABLE_EVENT ||
                it->kind == CANCEL_WAITABLE_SEM) {
                struct cancel__waitq *q = queue_of(it);
                cancel__spin_lock(&q->lock);
                if (!hooks[i].waiter.queued)
                    cancel__waitq_push(q, &hooks[i].waiter);
                cancel__spin_unlock(&q->lock);
            }
        }
        if (nfds > 0 && (err = poll_fds(pfd, nfds, &d, false)) < 0) {
            res = err;
            break;
        }
        res = scan(items, n, pfd);
        if (res != -1)
            break;
        if (cancel__deadline_passed(&d)) {
            res = -ETIMEDOUT;
            break;
        }
        if (nfds == 0) {
            cancel__park(&p, &d);
            continue;
        }
        if (d.clock != NULL && d.at != INT64_MAX && !watched) {
            watched = cancel__clock_watch(&watch);
            if (!watched)
                continue; /* due: the next round times out */
        }
        if ((err = poll_fds(pfd, nfds + 1, &d, true)) < 0) {
            res = err;
            break;
        }
        if (pfd[nfds].revents)
            cancel__sigfd_drain(rfd);
    }
    if (watched)
        cancel__clock_unwatch(&watch);

    for (size_t i = 0; i < n; i++) {
        const cancel_waitable *it = &items[i];
        if (it->kind == CANCEL_WAITABLE_TOKEN) {
            cancel_unregister(&hooks[i].reg);
        } else if (it->kind != CANCEL_WAITABLE_FD) {
            struct cancel__waitq *q = queue_of(it);
            cancel__spin_lock(&q->lock);
            cancel__waitq_remove(q, &hooks[i].waiter);
            if (it->kind == CANCEL_WAITABLE_SEM && (size_t)res != i)
                cancel__semaphore_forward(
                    (struct cancel__semaphore *)(void *)it->sem);
            q->users--;
            cancel__spin_unlock(&q->lock);
        }
    }
    if (rfd >= 0)
        cancel__sigfd_close(rfd, wfd);
out:
    if (hooks != stack_hooks) {
        cancel__free(hooks);
        cancel__free(pfd);
    }
    return res;
}
