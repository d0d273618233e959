/* Sources: creation, cancellation, reset, free, and the token functions.
 *
 * State machine of a source (the reason word is the state):
 *
 *     reason == 0  --cancel (CAS 0 -> r, first one wins)-->  reason == r > 0
 *          |                                                   (final)
 *          +-- try_reset: drops the registrations, stays at 0
 *
 * Lifetime: refs counts the owner (dropped by cancel_source_free), each
 * cancel_token_retain, and short internal references (a canceller running
 * callbacks, the timer thread firing).  When refs reaches 0 the source is
 * marked DEAD under its stripe lock; whoever then finds it DEAD with an
 * empty registration list (this call, or the unregister that removes the
 * last pending registration) destroys it.  Both decisions are made under
 * the same lock, so exactly one thread destroys.
 *
 * Memory ordering: the CAS that sets the reason is seq_cst; cancel_requested
 * is an acquire load of it, so what the canceller wrote before canceling is
 * visible to whoever sees the token canceled.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

_Static_assert(sizeof(cancel_source) <= 64, "a plain source fits 64 bytes");
_Static_assert(offsetof(cancel_source, head) == 0, "head first");

static _Thread_local cancel_token tls_canceled;

cancel_source *cancel_source_new(void)
{
    cancel_source *src = cancel__malloc(sizeof(*src));
    if (src == NULL)
        return NULL;
    src->head.reason = 0;
    atomic_init(&src->refs, 1);
    src->flags = 0;
    atomic_init(&src->waiters, 0);
    src->regs = NULL;
    atomic_init(&src->ext, NULL);
    return src;
}

cancel_source *cancel_source_new_timeout(int64_t delay_ns)
{
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        return NULL;
    if (delay_ns == 0) {
        cancel__cancel(src, ETIMEDOUT);
    } else if (delay_ns > 0) {
        int err = cancel_source_cancel_after(src, delay_ns);
        if (err < 0) {
            cancel_source_free(src);
            errno = -err;
            return NULL;
        }
    }
    return src;
}

struct cancel__ext *cancel__ext_alloc(cancel_source *src)
{
    struct cancel__ext *ext = cancel__calloc(1, sizeof(*ext));
    if (ext == NULL)
        return NULL;
    ext->src = src;
    ext->heap_index = CANCEL__NOT_ARMED;
    atomic_init(&ext->fd, -1);
    ext->wfd = -1;
    return ext;
}

struct cancel__ext *cancel__ext_publish(cancel_source *src,
                                        struct cancel__ext *fresh)
{
    struct cancel__ext *ext = NULL;
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&src->ext); /* fresh is initialised */
    if (atomic_compare_exchange_strong_explicit(&src->ext, &ext, fresh,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return fresh;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
    cancel__free(fresh); /* another thread won: use its ext */
    return ext;
}

struct cancel__ext *cancel__get_ext(cancel_source *src)
{
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
        return ext;
    }
    struct cancel__ext *fresh = cancel__ext_alloc(src);
    return fresh != NULL ? cancel__ext_publish(src, fresh) : NULL;
}

void cancel__destroy(cancel_source *src)
{
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
        int fd = atomic_load_explicit(&ext->fd, memory_order_relaxed);
        if (fd >= 0)
            cancel__sigfd_close(fd, ext->wfd);
        if (!(src->flags & CANCEL__EXT_INLINE))
            cancel__free(ext);
    }
    cancel__free(src);
}

void cancel__ref(cancel_source *src)
{
    atomic_fetch_add_explicit(&src->refs, 1, memory_order_relaxed);
}

/* Under the lock: the source has no reference left. */
static bool mark_dead(cancel_source *src)
{
    src->flags |= CANCEL__DEAD;
    return src->regs == NULL;
}

void cancel__unref(cancel_source *src)
{
    /* Release what we did with the source to whoever destroys it. */
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&src->refs);
    if (atomic_fetch_sub_explicit(&src->refs, 1, memory_order_acq_rel) != 1)
        return;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&src->refs);
    cancel__lock(src);
    bool destroy = mark_dead(src);
    cancel__unlock(src);
    if (destroy)
        cancel__destroy(src);
}

bool cancel__set_canceled(cancel_source *src, int reason)
{
    int expected = 0;
    /* Before the CAS: a thread that sees the reason must see all of this. */
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&src->head.reason);
    if (!__atomic_compare_exchange_n(&src->head.reason, &expected, reason,
                                     false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_RELAXED))
        return false;
    /* The wait handle.  cancel_token_fd publishes the fd and then reads the
     * reason, both seq_cst, as this does in the other order: one of the two
     * sees the other and signals (twice is harmless). */
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_seq_cst);
    if (ext != NULL) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
        int fd = atomic_load_explicit(&ext->fd, memory_order_seq_cst);
        if (fd >= 0) {
            CANCEL__ANNOTATE_HAPPENS_AFTER(&ext->fd); /* wfd is set */
            cancel__sigfd_signal(ext->wfd);
        }
    }
    return true;
}

bool cancel__cancel(cancel_source *src, int reason)
{
    if (!cancel__set_canceled(src, reason))
        return false;
    cancel__notify(src);
    return true;
}

void cancel_source_free(cancel_source *src)
{
    if (src == NULL)
        return;
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
        cancel__timer_disarm(ext);
        cancel__unlink_parents(ext);
    }
    cancel__signal_detach(src);
    cancel__lock(src);
    src->flags |= CANCEL__FREED;
    bool destroy = false;
    /* Every other reference is either a retained token (taken before this
     * call, by contract), a canceller (which takes its reference under this
     * lock) or the timer thread (whose entry was disarmed above).  So when
     * the count reads 1 it is ours alone and nobody can raise it again: a
     * plain store is enough, which saves a read-modify-write on the
     * create-and-free path. */
    if (atomic_load_explicit(&src->refs, memory_order_acquire) == 1) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->refs);
        CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* others' decrements were lock-free */
        atomic_store_explicit(&src->refs, 0, memory_order_relaxed);
        CANCEL__ANNOTATE_ATOMIC_END();
        destroy = mark_dead(src);
    } else {
        CANCEL__ANNOTATE_HAPPENS_BEFORE(&src->refs);
        if (atomic_fetch_sub_explicit(&src->refs, 1, memory_order_acq_rel) ==
            1) {
            CANCEL__ANNOTATE_HAPPENS_AFTER(&src->refs);
            destroy = mark_dead(src);
        }
    }
    cancel__unlock(src);
    if (destroy)
        cancel__destroy(src);
}

cancel_token cancel_source_token(cancel_source *src)
{
    cancel_token t = {src};
    return t;
}

int cancel_source_cancel(cancel_source *src)
{
    if (src == NULL)
        return -EINVAL;
    cancel__cancel(src, ECANCELED);
    return 0;
}

int cancel_source_cancel_reason(cancel_source *src, int reason)
{
    if (src == NULL || reason <= 0)
        return -EINVAL;
    cancel__cancel(src, reason);
    return 0;
}

int cancel_source_cancel_after(cancel_source *src, int64_t delay_ns)
{
    if (src == NULL)
        return -EINVAL;
    if (cancel_requested(cancel_source_token(src)))
        return 0;
    struct cancel__ext *ext;
    if (delay_ns < 0) {
        ext = atomic_load_explicit(&src->ext, memory_order_acquire);
        if (ext != NULL) {
            CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
            cancel__timer_disarm(ext);
        }
        return 0;
    }
    return cancel__timer_set(src, delay_ns);
}

int cancel_source_cancel_async(cancel_source *src)
{
    if (src == NULL)
        return -EINVAL;
    if (cancel_requested(cancel_source_token(src)))
        return 0;
    /* All or nothing: a failure leaves no ext attached behind. */
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
    struct cancel__ext *fresh = NULL;
    if (ext == NULL && (fresh = cancel__ext_alloc(src)) == NULL)
        return -ENOMEM;
    int err = cancel__async_prepare();
    if (err < 0) {
        cancel__free(fresh);
        return err;
    }
    if (fresh != NULL)
        ext = cancel__ext_publish(src, fresh);
    if (!cancel__set_canceled(src, ECANCELED))
        return 0;
    cancel__async_queue(ext);
    return 0;
}

bool cancel_source_try_reset(cancel_source *src)
{
    if (src == NULL)
        return false;
    if (cancel_requested(cancel_source_token(src)))
        return false;
    /* Disarm first: a timer that fires before this makes the reset fail
     * below; one that would fire after it is gone. */
    struct cancel__ext *ext =
        atomic_load_explicit(&src->ext, memory_order_acquire);
    if (ext != NULL) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&src->ext);
        cancel__timer_disarm(ext);
    }
    cancel__lock(src);
    if (__atomic_load_n(&src->head.reason, __ATOMIC_RELAXED) != 0) {
        cancel__unlock(src);
        return false;
    }
    for (struct cancel__reg *r = src->regs; r != NULL;) {
        struct cancel__reg *next = r->a.next;
        atomic_store_explicit(&r->word, 0, memory_order_relaxed);
        r = next;
    }
    src->regs = NULL;
    cancel__unlock(src);
    return true;
}

/* ---- tokens ------------------------------------------------------------- */

bool cancel_can_be_canceled(cancel_token t)
{
    return t.src_ != NULL;
}

int cancel_reason(cancel_token t)
{
    if (t.src_ == NULL)
        return 0;
    int reason = __atomic_load_n(&t.src_->head.reason, __ATOMIC_ACQUIRE);
    if (reason != 0)
        CANCEL__ANNOTATE_HAPPENS_AFTER(&t.src_->head.reason);
    return reason;
}

void cancel__record(cancel_token t)
{
    tls_canceled = t;
}

int cancel_check(cancel_token t)
{
    if (!cancel_requested(t))
        return 0;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&t.src_->head.reason);
    tls_canceled = t;
    return -ECANCELED;
}

int cancel_throw(cancel_token t)
{
    tls_canceled = t;
    return -ECANCELED;
}

cancel_token cancel_canceled_token(void)
{
    return tls_canceled;
}

bool cancel_token_equal(cancel_token a, cancel_token b)
{
    return a.src_ == b.src_;
}

cancel_token cancel_token_retain(cancel_token t)
{
    if (t.src_ != NULL)
        cancel__ref(t.src_);
    return t;
}

void cancel_token_release(cancel_token t)
{
    if (t.src_ != NULL)
        cancel__unref(t.src_);
}
