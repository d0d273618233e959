/* Registrations: register, unregister, and running the callbacks.
 *
 * Invariants
 *   - A source's registration list (src->regs, newest first) and its flags
 *     are guarded by the source's *stripe lock*: one of STRIPES spinlocks in
 *     a static table, chosen by the source's address.  The table never goes
 *     away, so cancel_unregister can take the lock of a source that may
 *     already be destroyed and only then look at the registration, under the
 *     lock, to learn whether the source is still there.
 *   - A registration's `word` (see internal.h) changes only under the stripe
 *     lock of its source.  A PENDING registration keeps its source alive
 *     (a source is destroyed only when its list is empty).
 *   - A canceller takes registrations one at a time from the head of the
 *     list, under the lock, and marks each one FIRED.  While it runs the
 *     callbacks it keeps a *call record* on its own stack, linked into the
 *     stripe's list of running calls (under the stripe lock), naming the
 *     source and the registration whose fn is running.  An unregister that
 *     finds a FIRED registration searches that list, under the same lock,
 *     to learn whether its fn is still running: it never touches the
 *     registration's source or anything the callback may have freed, and
 *     the record is unlinked before the canceller's frame goes away.  After
 *     it calls fn the canceller never writes to the registration again.
 *
 * Lock order: a stripe lock is a leaf: nothing else is taken while one is
 * held, and no callback runs under it.  Critical sections are a few pointer
 * updates (O(n) only when removing a posted registration or resetting), so
 * the lock spins briefly and then yields; threads that wait for a running
 * callback sleep on a futex in the run record.
 *
 * Memory ordering: a cancel publishes the reason (a seq_cst CAS) before it
 * takes the lock; register reads the reason under the same lock.  So a
 * register either sees the cancellation (and runs fn itself) or links the
 * registration before the canceller looks at the list.  Everything the
 * canceller wrote before canceling happens-before each callback (the lock
 * is released after the reason was set and acquired before fn is read).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "internal.h"

_Static_assert(sizeof(struct cancel__reg) <= sizeof(cancel_registration),
               "cancel_registration too small");
_Static_assert(_Alignof(struct cancel__reg) <= _Alignof(cancel_registration),
               "cancel_registration misaligned");
_Static_assert(sizeof(cancel_registration) <= 48, "registration over 48 bytes");

/* ---- stripe locks ------------------------------------------------------- */

#define STRIPES 256

/* A call record: a canceller's note that fn of `reg` (of `src`) is running
 * on thread `owner`.  On the canceller's stack; linked in its stripe's
 * `running` list while the canceller drains; read only under the lock. */
struct call {
    struct call *next, *prev;
    const cancel_source *src;
    const struct cancel__reg *reg; /* NULL between two callbacks */
    const void *owner;
    bool waited; /* an unregister sleeps on the stripe's epoch for it */
};

static struct stripe {
    _Alignas(64) _Atomic uint32_t locked;
    _Atomic uint32_t epoch; /* futex word: bumped when a waited call ends */
    struct call *running;
} stripes[STRIPES];

_Static_assert(sizeof(struct stripe) == 64, "one stripe per cache line");

static _Thread_local char thread_anchor; /* its address names the thread */

static const void *self_id(void)
{
    return &thread_anchor;
}

static struct stripe *stripe_of(const void *src)
{
    uintptr_t a = (uintptr_t)src;
    return &stripes[((a >> 6) ^ (a >> 14)) % STRIPES];
}

static inline void stripe_lock(struct stripe *s)
{
    cancel__spin_lock(&s->locked);
}

static inline void stripe_unlock(struct stripe *s)
{
    cancel__spin_unlock(&s->locked);
}

void cancel__lock(const cancel_source *src)
{
    stripe_lock(stripe_of(src));
}

void cancel__unlock(const cancel_source *src)
{
    stripe_unlock(stripe_of(src));
}

/* ---- the list ----------------------------------------------------------- */

static inline struct cancel__reg *as_reg(cancel_registration *r)
{
    return (struct cancel__reg *)(void *)r;
}

static inline bool is_posted(const struct cancel__reg *r)
{
    return (atomic_load_explicit(&r->word, memory_order_relaxed) &
            CANCEL__REG_POSTED) != 0;
}

/* Under the lock: unlink r, whose predecessor is `prev` unless r is the
 * head.  The head's b.prev is never read (a node is recognised as the head
 * by comparing it with src->regs), so taking the head - the drain's every
 * step - writes nothing to the node below it. */
static void list_unlink(cancel_source *src, struct cancel__reg *r,
                        struct cancel__reg *prev)
{
    struct cancel__reg *next = r->a.next;
    if (src->regs == r) {
        src->regs = next;
        return;
    }
    prev->a.next = next;
    if (next != NULL && !is_posted(next))
        next->b.prev = prev;
}

/* Under the lock: r's predecessor. */
static struct cancel__reg *list_prev(cancel_source *src, struct cancel__reg *r)
{
    if (!is_posted(r))
        return r->b.prev;
    struct cancel__reg *p = NULL;
    for (struct cancel__reg *q = src->regs; q != r; q = q->a.next)
        p = q;
    return p;
}

/* ---- register ----------------------------------------------------------- */

enum on_canceled { RUN_INLINE, DONT_RUN };

static inline __attribute__((always_inline)) int do_register(cancel_token t, struct cancel__reg *r,
                       cancel_callback *fn, void *arg, cancel_post_fn *post,
                       void *ctx, enum on_canceled mode)
{
    cancel_source *src = t.src_;

    if (src != NULL &&
        __atomic_load_n(&src->head.reason, __ATOMIC_ACQUIRE) == 0) {
        struct stripe *s = stripe_of(src);
        stripe_lock(s);
        bool canceled = __atomic_load_n(&src->head.reason, __ATOMIC_RELAXED);
        if (!canceled && !(src->flags & CANCEL__FREED)) {
            /* Fill the registration under the lock: the canceller reads it
             * under the same lock. */
            r->fn = fn;
            r->arg = arg;
            struct cancel__reg *head = src->regs;
            r->a.next = head;
            uintptr_t word = (uintptr_t)src | CANCEL__REG_PENDING;
            if (post != NULL) {
                r->b.post = post;
                r->ctx = ctx;
                word |= CANCEL__REG_POSTED;
            }
            atomic_store_explicit(&r->word, word, memory_order_relaxed);
            if (head != NULL && !is_posted(head))
                head->b.prev = r;
            src->regs = r;
            stripe_unlock(s);
            return 0;
        }
        stripe_unlock(s);
        if (!canceled) {
            /* Freed uncanceled: nobody can cancel it any more. */
            atomic_store_explicit(&r->word, 0, memory_order_relaxed);
            return 0;
        }
    }

    /* CANCEL_NONE, or already canceled: the registration stays inert. */
    atomic_store_explicit(&r->word, 0, memory_order_relaxed);
    if (src == NULL)
        return 0;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&src->head.reason); /* we saw it set */
    if (mode == RUN_INLINE) {
        if (post != NULL)
            post(ctx, fn, arg);
        else
            fn(arg);
    }
    return -ECANCELED;
}

int cancel_register(cancel_token t, cancel_registration *reg,
                    cancel_callback *fn, void *arg)
{
    if (reg == NULL || fn == NULL)
        return -EINVAL;
    return do_register(t, as_reg(reg), fn, arg, NULL, NULL, RUN_INLINE);
}

int cancel_try_register(cancel_token t, cancel_registration *reg,
                        cancel_callback *fn, void *arg)
{
    if (reg == NULL || fn == NULL)
        return -EINVAL;
    return do_register(t, as_reg(reg), fn, arg, NULL, NULL, DONT_RUN);
}

int cancel_register_on(cancel_token t, cancel_registration *reg,
                       cancel_callback *fn, void *arg, cancel_post_fn *post,
                       void *ctx)
{
    if (reg == NULL || fn == NULL || post == NULL)
        return -EINVAL;
    return do_register(t, as_reg(reg), fn, arg, post, ctx, RUN_INLINE);
}

/* ---- unregister --------------------------------------------------------- */

static bool do_unregister(struct cancel__reg *r, bool wait)
{
    /* A peek without the lock: checked again under it below. */
    CANCEL__ANNOTATE_ATOMIC_BEGIN();
    uintptr_t word = atomic_load_explicit(&r->word, memory_order_relaxed);
    CANCEL__ANNOTATE_ATOMIC_END();
    for (;;) {
        if (word == 0)
            return false;
        cancel_source *src = (cancel_source *)(word & ~CANCEL__REG_TAGS);
        struct stripe *s = stripe_of(src);
        stripe_lock(s);
        uintptr_t now = atomic_load_explicit(&r->word, memory_order_relaxed);
        if (now != word) {
            /* Fired or dropped between our look and the lock. */
            stripe_unlock(s);
            word = now;
            continue;
        }
        if (word & CANCEL__REG_PENDING) {
            /* Still linked, so src is alive. */
            struct cancel__reg *prev = src->regs == r ? NULL
                                       : (word & CANCEL__REG_POSTED)
                                           ? list_prev(src, r)
                                           : r->b.prev;
            list_unlink(src, r, prev);
            atomic_store_explicit(&r->word, 0, memory_order_relaxed);
            bool destroy = (src->flags & CANCEL__DEAD) && src->regs == NULL;
            stripe_unlock(s);
            if (destroy)
                cancel__destroy(src);
            return true;
        }
        /* FIRED: fn was called; src may be gone, but a canceller still
         * running fn has its call record in this stripe. */
        for (;;) {
            struct call *c = s->running;
            while (c != NULL && (c->reg != r || c->src != src))
                c = c->next;
            if (c == NULL || !wait || c->owner == self_id()) {
                /* Finished; or the caller does not wait; or we are inside
                 * fn (or a callback nested in it): waiting would deadlock. */
                stripe_unlock(s);
                return false;
            }
            c->waited = true;
            uint32_t epoch = atomic_load_explicit(&s->epoch,
                                                  memory_order_relaxed);
            stripe_unlock(s);
            cancel__futex_wait(&s->epoch, epoch);
            stripe_lock(s);
        }
    }
}

bool cancel_unregister(cancel_registration *reg)
{
    return reg != NULL && do_unregister(as_reg(reg), true);
}

bool cancel_unregister_nowait(cancel_registration *reg)
{
    return reg != NULL && do_unregister(as_reg(reg), false);
}

/* ---- running the callbacks ---------------------------------------------- */

/* Under the lock: the call that ran c->reg has returned.  true if an
 * unregister waits for it (the caller then wakes the stripe's epoch). */
static bool finish_call(struct stripe *s, struct call *c)
{
    c->reg = NULL;
    if (!c->waited)
        return false;
    c->waited = false;
    atomic_fetch_add_explicit(&s->epoch, 1, memory_order_relaxed);
    return true;
}

static void wake_waiters(struct stripe *s)
{
    cancel__futex_wake(&s->epoch, 0x7fffffff);
}

void cancel__notify(cancel_source *src)
{
    struct stripe *s = stripe_of(src);
    struct call call = {.src = src, .owner = self_id()};
    bool wake = false;

    stripe_lock(s);
    if (src->regs == NULL) {
        stripe_unlock(s);
        return;
    }
    /* A callback may free the source: keep the state until we are done. */
    atomic_fetch_add_explicit(&src->refs, 1, memory_order_relaxed);
    call.next = s->running;
    if (s->running != NULL)
        s->running->prev = &call;
    s->running = &call;

    for (;;) {
        struct cancel__reg *r = src->regs;
        if (r == NULL)
            break;
        list_unlink(src, r, NULL);
        cancel_callback *fn = r->fn;
        void *arg = r->arg;
        cancel_post_fn *post = NULL;
        void *ctx = NULL;
        if (is_posted(r)) {
            /* Once posted, the executor owns the call: inert now. */
            post = r->b.post;
            ctx = r->ctx;
            atomic_store_explicit(&r->word, 0, memory_order_relaxed);
        } else {
            atomic_store_explicit(&r->word,
                                  (uintptr_t)src | CANCEL__REG_FIRED,
                                  memory_order_relaxed);
            call.reg = r;
        }
        stripe_unlock(s);
        if (wake) {
            wake_waiters(s);
            wake = false;
        }
        /* From here on r belongs to the caller again: never touched. */
        if (post != NULL)
            post(ctx, fn, arg);
        else
            fn(arg);
        stripe_lock(s);
        wake = finish_call(s, &call);
    }
    if (call.prev != NULL)
        call.prev->next = call.next;
    else
        s->running = call.next;
    if (call.next != NULL)
        call.next->prev = call.prev;
    stripe_unlock(s);
    if (wake)
        wake_waiters(s);
    cancel__unref(src);
}

void cancel__spin_lock_slow(_Atomic uint32_t *l)
{
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(l, memory_order_relaxed) == 0) {
            uint32_t expected = 0;
            if (atomic_compare_exchange_weak_explicit(l, &expected, 1,
                                                      memory_order_acquire,
                                                      memory_order_relaxed))
                return;
        }
        /* A critical section is a few stores: a holder that is still
         * busy after a few pauses was most likely preempted, and spinning
         * on then only keeps it off the CPU.  Let it run. */
        if (spins < 8)
            cancel__cpu_relax();
        else
            sched_yield();
    }
}
