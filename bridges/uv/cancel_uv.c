/* cancel_uv: libcancel and libuv, both ways.  See cancel_uv.h.
 *
 * Threads.  libuv lets one thread - the loop's - call its functions, with
 * one exception, uv_async_send.  So:
 *
 *   - A watch never meets another thread: it polls its own dup() of the
 *     token's eventfd, which the canceling thread writes inside
 *     cancel_source_cancel; the kernel wakes the loop.  The dup makes each
 *     watch independent: libuv forbids two poll handles on one fd, and the
 *     token's fd is closed when its source's state is destroyed, which may
 *     happen while the watch is still polling.  Its state_ is touched on the
 *     loop's thread only.
 *
 *   - An executor is the one place with two threads.  Invariant: the queue
 *     (head, tail, queued) is read and written under mu only.  A post links
 *     its node under mu, then calls uv_async_send outside the lock; the loop
 *     pops one node at a time under mu and runs it with mu released, so a
 *     posted function may post again or close the executor.  Lock order:
 *     mu is a leaf (nothing is called with it held).  Memory ordering:
 *     everything a thread wrote before cancel_uv_post happens-before the
 *     posted function runs (mu's unlock by the poster, its lock by the
 *     loop), so the canceller's writes before cancel_source_cancel reach fn.
 *
 *   - A trigger is driven by libuv callbacks on the loop's thread and
 *     cancels its source there; the source's own callbacks then run there.
 */
#define _POSIX_C_SOURCE 200809L

#include "cancel_uv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cancel/wait.h>

/* state_ of watches and triggers. */
enum { ACTIVE = 1, FIRED, INERT, CLOSING };

/* ---- watches ------------------------------------------------------------ */

static void watch_poll_cb(uv_poll_t *poll, int status, int events)
{
    cancel_uv_watch *w = (cancel_uv_watch *)poll;
    (void)events;
    /* A readiness that libuv collected in the same batch as a close is
     * ignored; so is a second one before the stop took effect.  An error
     * status cannot come from an eventfd; should one come, reporting it as
     * the cancellation would be wrong, so the watch just stays armed. */
    if (w->state_ != ACTIVE || status < 0)
        return;
    w->state_ = FIRED;
    /* The fd stays readable: stop, or a level-triggered poll would spin. */
    uv_poll_stop(&w->u_.poll);
    w->on_cancel_(w, w->arg_);
}

int cancel_uv_watch_start(uv_loop_t *loop, cancel_uv_watch *w, cancel_token t,
                          cancel_uv_watch_cb *on_cancel, void *arg)
{
    if (loop == NULL || w == NULL || on_cancel == NULL)
        return -EINVAL;
    w->on_cancel_ = on_cancel;
    w->arg_ = arg;
    w->close_cb_ = NULL;
    w->fd_ = -1;

    if (!cancel_can_be_canceled(t)) {
        /* CANCEL_NONE: a handle, so that close works as for any watch,
         * but one that never starts and so never holds the loop. */
        int err = uv_idle_init(loop, &w->u_.idle);
        if (err < 0)
            return err;
        w->state_ = INERT;
        return 0;
    }

    int fd = cancel_token_fd(t);
    if (fd < 0)
        return fd;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    /* uv_poll_init makes the fd non-blocking; the eventfd is already, so
     * the flags the dup shares with the token's fd do not change. */
    int err = uv_poll_init(loop, &w->u_.poll, dfd);
    if (err < 0) {
        close(dfd);
        return err;
    }
    w->fd_ = dfd;
    w->state_ = ACTIVE;
    err = uv_poll_start(&w->u_.poll, UV_READABLE, watch_poll_cb);
    if (err < 0) {
        /* Not reached with an eventfd; if it were, the handle is already
         * in the loop and has to be closed like any other. */
        w->state_ = CLOSING;
        uv_close(&w->u_.handle, NULL);
        close(dfd);
        return err;
    }
    return 0;
}

static void watch_closed(uv_handle_t *h)
{
    cancel_uv_watch *w = (cancel_uv_watch *)h;
    /* libuv no longer polls it, so it can go now. */
    if (w->fd_ >= 0)
        close(w->fd_);
    w->fd_ = -1;
    if (w->close_cb_ != NULL)
        w->close_cb_(w);
}

void cancel_uv_watch_close(cancel_uv_watch *w,
                           cancel_uv_watch_close_cb *close_cb)
{
    if (w == NULL || w->state_ == CLOSING)
        return;
    w->state_ = CLOSING;
    w->close_cb_ = close_cb;
    uv_close(&w->u_.handle, watch_closed);
}

/* ---- executors ---------------------------------------------------------- */

struct node {
    struct node *next;
    cancel_callback *fn;
    void *arg;
};

struct cancel_uv_executor {
    uv_async_t async; /* first: the handle's address is the executor's */
    pthread_mutex_t mu;
    struct node *head; /* under mu */
    struct node **tail;
    size_t queued;
    bool closing; /* loop thread only */
};

/* Pop the oldest node, or NULL. */
static struct node *executor_pop(cancel_uv_executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    struct node *n = ex->head;
    if (n != NULL) {
        ex->head = n->next;
        if (ex->head == NULL)
            ex->tail = &ex->head;
        ex->queued--;
    }
    pthread_mutex_unlock(&ex->mu);
    return n;
}

static void executor_async_cb(uv_async_t *async)
{
    cancel_uv_executor *ex = (cancel_uv_executor *)async;
    /* Run what was queued when we woke, not what those functions post in
     * turn: a function that keeps posting must not starve the loop. */
    pthread_mutex_lock(&ex->mu);
    size_t budget = ex->queued;
    pthread_mutex_unlock(&ex->mu);
    while (budget-- > 0 && !ex->closing) {
        struct node *n = executor_pop(ex);
        if (n == NULL)
            return;
        cancel_callback *fn = n->fn;
        void *arg = n->arg;
        free(n);
        fn(arg);
    }
    if (ex->closing)
        return;
    pthread_mutex_lock(&ex->mu);
    bool more = ex->head != NULL;
    pthread_mutex_unlock(&ex->mu);
    if (more)
        uv_async_send(&ex->async);
}

cancel_uv_executor *cancel_uv_executor_new(uv_loop_t *loop)
{
    if (loop == NULL) {
        errno = EINVAL;
        return NULL;
    }
    cancel_uv_executor *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = pthread_mutex_init(&ex->mu, NULL);
    if (rc != 0) {
        free(ex);
        errno = rc;
        return NULL;
    }
    int err = uv_async_init(loop, &ex->async, executor_async_cb);
    if (err < 0) {
        pthread_mutex_destroy(&ex->mu);
        free(ex);
        errno = -err;
        return NULL;
    }
    uv_unref((uv_handle_t *)&ex->async);
    ex->tail = &ex->head;
    return ex;
}

void cancel_uv_post(void *ctx, cancel_callback *fn, void *arg)
{
    cancel_uv_executor *ex = ctx;
    if (ex == NULL || fn == NULL)
        return;
    struct node *n = malloc(sizeof(*n));
    if (n == NULL) {
        fputs("cancel_uv_post: out of memory\n", stderr);
        abort();
    }
    n->next = NULL;
    n->fn = fn;
    n->arg = arg;
    pthread_mutex_lock(&ex->mu);
    *ex->tail = n;
    ex->tail = &n->next;
    ex->queued++;
    pthread_mutex_unlock(&ex->mu);
    /* Outside mu: the loop may already be running the node. */
    uv_async_send(&ex->async);
}

static void executor_closed(uv_handle_t *h)
{
    cancel_uv_executor *ex = (cancel_uv_executor *)h;
    pthread_mutex_destroy(&ex->mu);
    free(ex);
}

void cancel_uv_executor_close(cancel_uv_executor *ex)
{
    if (ex == NULL || ex->closing)
        return;
    ex->closing = true;
    /* Posted calls belong to the executor: run them, also those that they
     * post in turn, before the handle goes. */
    struct node *n;
    while ((n = executor_pop(ex)) != NULL) {
        cancel_callback *fn = n->fn;
        void *arg = n->arg;
        free(n);
        fn(arg);
    }
    uv_close((uv_handle_t *)&ex->async, executor_closed);
}

/* ---- triggers ----------------------------------------------------------- */

static void trigger_fire(cancel_uv_trigger *tr, int reason)
{
    if (tr->state_ != ACTIVE)
        return;
    tr->state_ = FIRED;
    /* The source's callbacks run here, on the loop's thread; one of them
     * may close tr, so tr is not touched after the cancel. */
    cancel_source_cancel_reason(tr->src_, reason);
}

static void trigger_signal_cb(uv_signal_t *sig, int signum)
{
    (void)signum;
    /* One-shot: libuv stops the handle after this callback. */
    trigger_fire((cancel_uv_trigger *)sig, EINTR);
}

static void trigger_timer_cb(uv_timer_t *timer)
{
    trigger_fire((cancel_uv_trigger *)timer, ETIMEDOUT);
}

static bool signal_is_valid(int signum)
{
    if (signum <= 0 || signum == SIGKILL || signum == SIGSTOP)
        return false;
    /* Ask the C library, which knows the range and refuses its own signals
     * (glibc's SIGCANCEL, SIGSETXID), so that uv_signal_start cannot fail
     * after uv_signal_init. */
    struct sigaction old;
    return sigaction(signum, NULL, &old) == 0;
}

int cancel_uv_cancel_on_signal(uv_loop_t *loop, cancel_uv_trigger *tr,
                               cancel_source *src, int signum)
{
    if (loop == NULL || tr == NULL || src == NULL || !signal_is_valid(signum))
        return -EINVAL;
    tr->src_ = src;
    tr->close_cb_ = NULL;
    int err = uv_signal_init(loop, &tr->u_.signal);
    if (err < 0)
        return err;
    tr->state_ = ACTIVE;
    err = uv_signal_start_oneshot(&tr->u_.signal, trigger_signal_cb, signum);
    if (err < 0) {
        /* Ruled out by signal_is_valid; the handle is in the loop now and
         * is closed as any other. */
        tr->state_ = CLOSING;
        uv_close(&tr->u_.handle, NULL);
        return err;
    }
    return 0;
}

int cancel_uv_cancel_after(uv_loop_t *loop, cancel_uv_trigger *tr,
                           cancel_source *src, int64_t delay_ns)
{
    if (loop == NULL || tr == NULL || src == NULL)
        return -EINVAL;
    tr->src_ = src;
    tr->close_cb_ = NULL;
    int err = uv_timer_init(loop, &tr->u_.timer);
    if (err < 0)
        return err;
    if (delay_ns < 0) {
        tr->state_ = INERT;
        return 0;
    }
    /* Round up: a timer never fires early. */
    uint64_t ms = (uint64_t)(delay_ns / 1000000) + (delay_ns % 1000000 != 0);
    tr->state_ = ACTIVE;
    return uv_timer_start(&tr->u_.timer, trigger_timer_cb, ms, 0);
}

static void trigger_closed(uv_handle_t *h)
{
    cancel_uv_trigger *tr = (cancel_uv_trigger *)h;
    if (tr->close_cb_ != NULL)
        tr->close_cb_(tr);
}

void cancel_uv_trigger_close(cancel_uv_trigger *tr,
                             cancel_uv_trigger_close_cb *close_cb)
{
    if (tr == NULL || tr->state_ == CLOSING)
        return;
    tr->state_ = CLOSING;
    tr->close_cb_ = close_cb;
    uv_close(&tr->u_.handle, trigger_closed);
}
