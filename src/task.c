/* Tasks with .NET's cancellation rules (see task.h for the rules).
 *
 * Life of a task:
 *   CREATED --start--> WAITING_TO_RUN --worker or inlining waiter claims it
 *   (CAS)--> RUNNING --body returns--> [WAITING_FOR_CHILDREN] --> final
 *   WAITING_TO_RUN --token canceled (registration callback, CAS)--> CANCELED
 * Only a CAS out of WAITING_TO_RUN decides who runs or cancels a queued
 * task, so the body runs at most once and never after the cancel won.
 *
 * `pending` counts the body plus unfinished attached children; whoever
 * brings it to 0 finalizes: computes the final status, sets the `done`
 * event (waiters), starts or cancels the continuations, and reports to the
 * parent.  Per-task state that several threads touch (the faulted-children
 * array, the continuation list, `finished`) is under the task's spinlock.
 *
 * References: the caller's handle; the queue's, from start until the
 * worker has finished with the item; a continuation list's on each
 * continuation until triggered; a parent's on each faulted child (for
 * cancel_task_errors); a child's on its parent until it reported.  A queued
 * task's registration on its token is unregistered (waiting for a running
 * callback) before the queue's reference is dropped, so the callback never
 * outlives the task.
 *
 * Attached children reserve their slot in the parent's faulted-children
 * array when they are created (which may fail with ENOMEM), so recording a
 * fault never allocates and no error is ever dropped.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

enum kind { BODY, CONTINUATION };

/* What only some tasks need, allocated on first need (an attached child
 * and its parent, a continuation and its antecedent), so that a plain task
 * is 120 bytes: two cache lines. */
struct more {
    struct cancel_task **faulted; /* faulted children, retained */
    size_t nfaulted, capfaulted;
    struct cancel_task *conts;      /* continuations waiting for us */
    struct cancel_task *cont_next;  /* link in the antecedent's list */
    struct cancel_task *antecedent; /* of a continuation, retained */
    unsigned cont_flags;
    struct cancel_task *fin_next; /* in this thread's finalize queue */
    struct cancel_task *parent;   /* attached to, retained until reported */
    /* The first slots of `faulted`, so a parent's first attached children
     * need no allocation beyond this struct: a failed child creation then
     * leaves nothing allocated behind it. */
    struct cancel_task *first[4];
};

struct cancel_task {
    struct cancel__work work; /* first: the pool's queue item */
    /* What a waiter and the last release read, side by side: a waiter that
     * walks many tasks gone cold in the cache misses once per task. */
    _Atomic uint32_t refs;
    _Atomic uint32_t status;
    cancel_event done;
    _Atomic int pending; /* body + unfinished attached children */
    _Atomic uint32_t lock;
    union {
        cancel_task_fn *fn;
        cancel_continuation_fn *cfn;
    } body;
    void *arg;
    cancel_pool *pool;
    cancel_token token; /* retained */
    struct more *_Atomic more;
    int own_error;       /* the body's fault code, or 0 */
    uint8_t kind;        /* enum kind */
    bool has_reg;        /* token can be canceled: reg[0] exists */
    bool own_canceled;   /* the body ended CANCELED */
    bool child_canceled; /* an attached child ended CANCELED (lock) */
    bool finished;       /* final status set; continuations started (lock) */
    /* On the token while WAITING_TO_RUN; only for a token that can be
     * canceled (CANCEL_NONE tasks never register). */
    cancel_registration reg[];
};

#if UINTPTR_MAX == UINT64_MAX
/* glibc keeps freed chunks of up to 128 bytes (120 requested) in fast bins
 * for reuse; a bigger task is returned to the kernel when many are freed
 * and page-faulted back in (docs/design.md, section 9). */
_Static_assert(sizeof(struct cancel_task) <= 120, "a task grew past 120 bytes");
#endif

static _Thread_local cancel_task *tls_current;

static void finish_body(cancel_task *task, int code, bool canceled);

static struct more *more_of(const cancel_task *task)
{
    struct more *m = atomic_load_explicit(&((cancel_task *)task)->more,
                                          memory_order_acquire);
    if (m != NULL) /* get_more published it initialised */
        CANCEL__ANNOTATE_HAPPENS_AFTER(&((cancel_task *)task)->more);
    return m;
}

/* The task's struct more, allocated if it has none yet; NULL (ENOMEM). */
static struct more *get_more(cancel_task *task)
{
    struct more *m = more_of(task);
    if (m != NULL)
        return m;
    struct more *fresh = cancel__calloc(1, sizeof(*fresh));
    if (fresh == NULL)
        return NULL;
    fresh->faulted = fresh->first;
    fresh->capfaulted = sizeof(fresh->first) / sizeof(fresh->first[0]);
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&task->more); /* fresh is initialised */
    if (atomic_compare_exchange_strong_explicit(&task->more, &m, fresh,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return fresh;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&task->more);
    cancel__free(fresh); /* another thread installed one first */
    return m;
}

/* ---- handles ------------------------------------------------------------ */

cancel_task *cancel_task_retain(cancel_task *task)
{
    if (task != NULL)
        atomic_fetch_add_explicit(&task->refs, 1, memory_order_relaxed);
    return task;
}

void cancel_task_release(cancel_task *task)
{
    if (task == NULL)
        return;
    /* Release what we did with the task to whoever frees it. */
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&task->refs);
    if (atomic_fetch_sub_explicit(&task->refs, 1, memory_order_acq_rel) != 1)
        return;
    CANCEL__ANNOTATE_HAPPENS_AFTER(&task->refs);
    struct more *m = more_of(task);
    if (m != NULL) {
        for (size_t i = 0; i < m->nfaulted; i++)
            cancel_task_release(m->faulted[i]);
        if (m->faulted != m->first)
            cancel__free(m->faulted);
        cancel_task_release(m->antecedent);
        cancel__free(m);
    }
    cancel_token_release(task->token);
    /* No cancel_event_destroy: its only work is the EBUSY check, and a
     * waiter holds a reference, so nobody waits on `done` now. */
    cancel__free(task);
}

static cancel_task *task_alloc(cancel_pool *pool, void *arg, cancel_token t,
                               unsigned flags)
{
    bool has_reg = t.src_ != NULL;
    size_t size = sizeof(cancel_task) +
                  (has_reg ? sizeof(cancel_registration) : 0);
    cancel_task *task = cancel__malloc(size);
    if (task == NULL)
        return NULL;
    task->work.next = NULL;
    task->work.run = NULL;
    atomic_init(&task->refs, 1);
    atomic_init(&task->status, CANCEL_TASK_CREATED);
    atomic_init(&task->pending, 1);
    atomic_init(&task->lock, 0);
    task->body.fn = NULL;
    task->arg = arg;
    task->pool = pool;
    task->token = CANCEL_NONE;
    cancel_event_init(&task->done, false);
    atomic_init(&task->more, NULL);
    task->own_error = 0;
    task->kind = BODY;
    task->has_reg = has_reg;
    task->own_canceled = false;
    task->child_canceled = false;
    task->finished = false;
    if (has_reg)
        task->reg[0] = (cancel_registration)CANCEL_REGISTRATION_INIT;

    cancel_task *parent = tls_current;
    if ((flags & CANCEL_TASK_ATTACHED) && parent != NULL) {
        struct more *cm = get_more(task); /* not shared yet */
        struct more *pm = cm != NULL ? get_more(parent) : NULL;
        if (pm == NULL) {
            cancel__free(cm);
            cancel__free(task);
            return NULL;
        }
        /* Reserve our slot in the parent's faulted-children array now. */
        cancel__spin_lock(&parent->lock);
        /* Slots needed with this child: the faults recorded plus every
         * unfinished child (pending counts the body too).  Children take
         * their pending count down under this lock, so it is exact. */
        size_t need = pm->nfaulted + (size_t)atomic_load_explicit(
                                         &parent->pending,
                                         memory_order_relaxed);
        if (pm->capfaulted < need) {
            size_t cap = pm->capfaulted * 2;
            if (cap < need)
                cap = need;
            struct cancel_task **bigger =
                cancel__malloc(cap * sizeof(*bigger));
            if (bigger == NULL) {
                cancel__spin_unlock(&parent->lock);
                cancel__free(cm);
                cancel__free(task);
                return NULL;
            }
            for (size_t i = 0; i < pm->nfaulted; i++)
                bigger[i] = pm->faulted[i];
            if (pm->faulted != pm->first)
                cancel__free(pm->faulted);
            pm->faulted = bigger;
            pm->capfaulted = cap;
        }
        atomic_fetch_add_explicit(&parent->pending, 1, memory_order_relaxed);
        cancel__spin_unlock(&parent->lock);
        cm->parent = cancel_task_retain(parent);
    }
    task->token = cancel_token_retain(t);
    return task;
}

/* ---- running ------------------------------------------------------------ */

/* Claim a WAITING_TO_RUN task and run it here (a worker, or a waiter that
 * inlines it).  false if another thread claimed or canceled it first. */
static bool run_claimed(cancel_task *task)
{
    uint32_t expected = CANCEL_TASK_WAITING_TO_RUN;
    if (!atomic_compare_exchange_strong_explicit(
            &task->status, &expected, CANCEL_TASK_RUNNING,
            memory_order_acq_rel, memory_order_acquire))
        return false;
    if (task->has_reg)
        cancel_unregister(&task->reg[0]);
    if (cancel_requested(task->token)) {
        /* Canceled before it started (rule 1): the body never runs. */
        finish_body(task, 0, true);
        return true;
    }
    cancel_task *outer = tls_current;
    cancel_token outer_canceled = cancel_canceled_token();
    tls_current = task;
    cancel__record(CANCEL_NONE); /* only what the body records counts */
    int r = task->kind == BODY ? task->body.fn(task->arg, task->token)
                               : task->body.cfn(more_of(task)->antecedent,
                                                task->arg, task->token);
    /* Rule 3; any other non-zero return is rule 4: FAULTED. */
    bool canceled = r == -ECANCELED &&
                    cancel_token_equal(cancel_canceled_token(), task->token) &&
                    cancel_requested(task->token);
    tls_current = outer;
    if (outer != NULL)
        cancel__record(outer_canceled);
    finish_body(task, canceled ? 0 : r, canceled);
    return true;
}

static void run_work(struct cancel__work *w)
{
    cancel_task *task = (cancel_task *)(void *)w;
    if (!run_claimed(task) && task->has_reg)
        cancel_unregister(&task->reg[0]); /* let a cancel callback finish */
    cancel_task_release(task);         /* the queue's reference */
}

/* The task token fired while the task waited in the queue. */
static void canceled_in_queue(void *arg)
{
    cancel_task *task = arg;
    uint32_t expected = CANCEL_TASK_WAITING_TO_RUN;
    if (atomic_compare_exchange_strong_explicit(
            &task->status, &expected, CANCEL_TASK_CANCELED,
            memory_order_acq_rel, memory_order_acquire))
        finish_body(task, 0, true);
}

/* Queue a task the caller made WAITING_TO_RUN (or cancel it at once), with
 * a reference the caller took for the queue.  (Storing the status here
 * again would undo the claim of a waiter that inlined it meanwhile.) */
static void start(cancel_task *task)
{
    task->work.run = run_work;
    if (task->has_reg && cancel_register(task->token, &task->reg[0],
                                         canceled_in_queue, task) < 0) {
        /* Already canceled: the callback ran and the task is CANCELED. */
        cancel_task_release(task);
        return;
    }
    cancel__pool_push(task->pool, &task->work);
}

/* ---- finishing ---------------------------------------------------------- */

static bool wanted(const cancel_task *cont, uint32_t status)
{
    unsigned f = more_of(cont)->cont_flags &
                 (CANCEL_CONTINUE_ON_RAN_TO_COMPLETION |
                  CANCEL_CONTINUE_ON_CANCELED | CANCEL_CONTINUE_ON_FAULTED);
    if (f == 0)
        return true;
    switch (status) {
    case CANCEL_TASK_RAN_TO_COMPLETION:
        return f & CANCEL_CONTINUE_ON_RAN_TO_COMPLETION;
    case CANCEL_TASK_CANCELED:
        return f & CANCEL_CONTINUE_ON_CANCELED;
    default:
        return f & CANCEL_CONTINUE_ON_FAULTED;
    }
}

/* The antecedent finished: run the continuation, or cancel it. */
static void trigger(cancel_task *cont, uint32_t antecedent_status)
{
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&cont->status);
    if (wanted(cont, antecedent_status)) {
        CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by waiters */
        atomic_store_explicit(&cont->status, CANCEL_TASK_WAITING_TO_RUN,
                              memory_order_release);
        CANCEL__ANNOTATE_ATOMIC_END();
        start(cancel_task_retain(cont)); /* the queue's reference */
    } else {
        CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by waiters */
        atomic_store_explicit(&cont->status, CANCEL_TASK_CANCELED,
                              memory_order_release);
        CANCEL__ANNOTATE_ATOMIC_END();
        finish_body(cont, 0, true);
    }
}

static void child_done(cancel_task *parent, cancel_task *child,
                       uint32_t status);

/* Finalizing a task can finalize others on the same thread: continuations
 * decided without running (filtered out, or their token canceled) and a
 * parent whose last child this was.  Done recursively, a chain of 100,000
 * skipped continuations would overflow the stack; instead a finalize
 * called while one is running on this thread is queued here, and the
 * outermost one runs the queue before it returns.  Every task finalized
 * that way has a `struct more` (it is a continuation or a parent), which
 * holds the link, and is retained while queued. */
static _Thread_local struct {
    bool busy;
    cancel_task *head, *tail;
} tls_fin;

static void finalize_now(cancel_task *task);

/* pending reached 0: decide, publish, and tell whoever waits. */
static void finalize(cancel_task *task)
{
    struct more *m = more_of(task);
    if (tls_fin.busy && m != NULL) {
        /* The caller's reference may go as soon as we return (a child
         * drops its parent's right after reporting): the queue keeps one. */
        cancel_task_retain(task);
        m->fin_next = NULL;
        if (tls_fin.tail != NULL)
            more_of(tls_fin.tail)->fin_next = task;
        else
            tls_fin.head = task;
        tls_fin.tail = task;
        return;
    }
    if (tls_fin.busy) { /* not reached (see above); correct anyway */
        finalize_now(task);
        return;
    }
    tls_fin.busy = true;
    finalize_now(task);
    while (tls_fin.head != NULL) {
        cancel_task *next = tls_fin.head;
        tls_fin.head = more_of(next)->fin_next;
        if (tls_fin.head == NULL)
            tls_fin.tail = NULL;
        finalize_now(next);
        cancel_task_release(next); /* the queue's reference */
    }
    tls_fin.busy = false;
}

static void finalize_now(cancel_task *task)
{
    cancel__spin_lock(&task->lock);
    /* Under the lock: a continue_with that installed `more` and added to
     * its list did both before it took this lock and saw `finished`. */
    struct more *m = more_of(task);
    uint32_t status;
    if (task->own_error != 0 || (m != NULL && m->nfaulted > 0))
        status = CANCEL_TASK_FAULTED;
    else if (task->own_canceled ||
             (task->child_canceled && cancel_requested(task->token)))
        status = CANCEL_TASK_CANCELED;
    else
        status = CANCEL_TASK_RAN_TO_COMPLETION;
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&task->status);
    CANCEL__ANNOTATE_ATOMIC_BEGIN(); /* read lock-free by waiters */
    atomic_store_explicit(&task->status, status, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
    task->finished = true;
    cancel_task *conts = m != NULL ? m->conts : NULL;
    if (m != NULL)
        m->conts = NULL;
    cancel__spin_unlock(&task->lock);

    cancel_event_set(&task->done);
    while (conts != NULL) {
        cancel_task *c = conts;
        conts = more_of(c)->cont_next;
        trigger(c, status);
        cancel_task_release(c); /* the list's reference */
    }
    if (m != NULL && m->parent != NULL) {
        cancel_task *parent = m->parent;
        m->parent = NULL;
        child_done(parent, task, status);
        cancel_task_release(parent);
    }
}

static void finish_body(cancel_task *task, int code, bool canceled)
{
    /* Only the body's thread writes these, before its release of
     * `pending`; finalize reads them after the last acquire of it. */
    task->own_error = code;
    task->own_canceled = canceled;
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&task->pending);
    if (atomic_fetch_sub_explicit(&task->pending, 1, memory_order_acq_rel) ==
        1) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&task->pending);
        finalize(task);
        return;
    }
    uint32_t running = CANCEL_TASK_RUNNING;
    atomic_compare_exchange_strong_explicit(
        &task->status, &running, CANCEL_TASK_WAITING_FOR_CHILDREN,
        memory_order_acq_rel, memory_order_relaxed);
}

static void child_done(cancel_task *parent, cancel_task *child,
                       uint32_t status)
{
    cancel__spin_lock(&parent->lock);
    if (status == CANCEL_TASK_FAULTED) {
        struct more *pm = more_of(parent); /* made when the child was */
        pm->faulted[pm->nfaulted++] = cancel_task_retain(child);
    } else if (status == CANCEL_TASK_CANCELED)
        parent->child_canceled = true;
    /* Under the lock, with the record: a sibling being created counts the
     * slots it needs from nfaulted + pending, and must not count us twice. */
    CANCEL__ANNOTATE_HAPPENS_BEFORE(&parent->pending);
    bool last = atomic_fetch_sub_explicit(&parent->pending, 1,
                                          memory_order_acq_rel) == 1;
    cancel__spin_unlock(&parent->lock);
    if (last) {
        CANCEL__ANNOTATE_HAPPENS_AFTER(&parent->pending);
        finalize(parent);
    }
}

/* ---- public ------------------------------------------------------------- */

cancel_task *cancel_task_new(cancel_pool *pool, cancel_task_fn *fn, void *arg,
                             cancel_token t, unsigned flags)
{
    if (pool == NULL || fn == NULL || (flags & ~CANCEL_TASK_ATTACHED)) {
        errno = EINVAL;
        return NULL;
    }
    cancel_task *task = task_alloc(pool, arg, t, flags);
    if (task != NULL) {
        task->kind = BODY;
        task->body.fn = fn;
    }
    return task;
}

int cancel_task_start(cancel_task *task)
{
    if (task == NULL || task->kind != BODY)
        return -EINVAL;
    uint32_t expected = CANCEL_TASK_CREATED;
    if (!atomic_compare_exchange_strong_explicit(
            &task->status, &expected, CANCEL_TASK_WAITING_TO_RUN,
            memory_order_acq_rel, memory_order_relaxed))
        return -EINVAL;
    start(cancel_task_retain(task)); /* the queue's reference */
    return 0;
}

cancel_task *cancel_task_run(cancel_pool *pool, cancel_task_fn *fn, void *arg,
                             cancel_token t, unsigned flags)
{
    cancel_task *task = cancel_task_new(pool, fn, arg, t, flags);
    if (task != NULL) {
        /* Not shared yet: plain stores, the handle's and the queue's
         * references at once. */
        atomic_store_explicit(&task->refs, 2, memory_order_relaxed);
        atomic_store_explicit(&task->status, CANCEL_TASK_WAITING_TO_RUN,
                              memory_order_relaxed);
        start(task);
    }
    return task;
}

cancel_task_status cancel_task_status_of(const cancel_task *task)
{
    if (task == NULL)
        return CANCEL_TASK_CREATED;
    cancel_task_status s = (cancel_task_status)atomic_load_explicit(
        &((cancel_task *)task)->status, memory_order_acquire);
    if (s >= CANCEL_TASK_RAN_TO_COMPLETION) /* final: finalize_now's store */
        CANCEL__ANNOTATE_HAPPENS_AFTER(&((cancel_task *)task)->status);
    return s;
}

cancel_token cancel_task_token(const cancel_task *task)
{
    return task == NULL ? CANCEL_NONE : task->token;
}

cancel_task *cancel_task_current(void)
{
    return tls_current;
}

static size_t collect(const cancel_task *task, int *codes, size_t cap,
                      size_t n)
{
    if (task->own_error != 0) {
        if (n < cap)
            codes[n] = task->own_error;
        n++;
    }
    const struct more *m = more_of(task);
    for (size_t i = 0; m != NULL && i < m->nfaulted; i++)
        n = collect(m->faulted[i], codes, cap, n);
    return n;
}

size_t cancel_task_errors(const cancel_task *task, int *codes, size_t cap)
{
    if (task == NULL || cancel_task_status_of(task) != CANCEL_TASK_FAULTED)
        return 0;
    return collect(task, codes, codes == NULL ? 0 : cap, 0);
}

int cancel_task_error(const cancel_task *task)
{
    int first = 0;
    cancel_task_errors(task, &first, 1);
    return first;
}

/* The outcome of a finished task, as a wait reports it. */
static int outcome(cancel_task *task)
{
    switch (cancel_task_status_of(task)) {
    case CANCEL_TASK_RAN_TO_COMPLETION:
        return 0;
    case CANCEL_TASK_CANCELED:
        cancel__record(task->token);
        return -ECANCELED;
    default:
        return cancel_task_error(task);
    }
}

int cancel_task_wait(cancel_task *task, cancel_token t, int64_t timeout_ns)
{
    if (task == NULL)
        return -EINVAL;
    if (t.src_ == NULL && timeout_ns < 0 &&
        cancel_task_status_of(task) == CANCEL_TASK_WAITING_TO_RUN)
        run_claimed(task); /* inline it; the worker will skip the item */
    int r = cancel_event_wait(&task->done, t, timeout_ns);
    return r < 0 ? r : outcome(task);
}

int cancel_task_wait_all(cancel_task *const *tasks, size_t n, cancel_token t,
                         int64_t timeout_ns)
{
    if (tasks == NULL && n > 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (tasks[i] == NULL)
            return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    bool inline_ok = t.src_ == NULL && timeout_ns < 0;
    struct cancel__deadline d;
    cancel__deadline_init(&d, timeout_ns);
    /* One pass: the outcome is decided as each task ends, so a big array
     * of tasks gone cold in the cache is walked once. */
    size_t faulted = n, canceled = n;
    for (size_t i = 0; i < n; i++) {
        /* As cancel_task_wait: run a task still queued here, in order. */
        if (inline_ok && cancel_task_status_of(tasks[i]) ==
                             CANCEL_TASK_WAITING_TO_RUN)
            run_claimed(tasks[i]);
        int r = cancel_event_wait(&tasks[i]->done, t,
                                  cancel__deadline_left(&d));
        if (r < 0)
            return r;
        cancel_task_status s = cancel_task_status_of(tasks[i]);
        if (s == CANCEL_TASK_FAULTED && faulted == n)
            faulted = i;
        else if (s == CANCEL_TASK_CANCELED && canceled == n)
            canceled = i;
    }
    if (faulted < n)
        return cancel_task_error(tasks[faulted]);
    if (canceled < n)
        return outcome(tasks[canceled]);
    return 0;
}

int cancel_task_wait_any(cancel_task *const *tasks, size_t n, cancel_token t,
                         int64_t timeout_ns)
{
    if (tasks == NULL || n == 0)
        return -EINVAL;
    if (cancel_check(t) < 0)
        return -ECANCELED;
    cancel_waitable stack[CANCEL_WAIT_ANY_STACK];
    cancel_waitable *items = stack;
    if (n + 1 > CANCEL_WAIT_ANY_STACK &&
        (items = cancel__malloc((n + 1) * sizeof(*items))) == NULL)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (tasks[i] == NULL) {
            r = -EINVAL;
            break;
        }
        items[i] = CANCEL_WAIT_EVENT(&tasks[i]->done);
    }
    if (r == 0) {
        items[n] = CANCEL_WAIT_TOKEN(t);
        r = cancel_wait_any(items, n + 1, timeout_ns);
        if (r == (int)n) {
            cancel__record(t);
            r = -ECANCELED;
        }
    }
    if (items != stack)
        cancel__free(items);
    return r;
}

cancel_task *cancel_task_continue_with(cancel_task *antecedent,
                                       cancel_continuation_fn *fn, void *arg,
                                       cancel_token t, unsigned flags)
{
    unsigned known = CANCEL_CONTINUE_ON_RAN_TO_COMPLETION |
                     CANCEL_CONTINUE_ON_CANCELED | CANCEL_CONTINUE_ON_FAULTED |
                     CANCEL_TASK_ATTACHED;
    if (antecedent == NULL || fn == NULL || (flags & ~known)) {
        errno = EINVAL;
        return NULL;
    }
    cancel_task *cont = task_alloc(antecedent->pool, arg, t, flags);
    if (cont == NULL)
        return NULL;
    struct more *cm = get_more(cont);
    struct more *am = cm != NULL ? get_more(antecedent) : NULL;
    if (am == NULL) {
        cancel_task_release(cont); /* frees cm and drops the token, parent */
        errno = ENOMEM;
        return NULL;
    }
    cont->kind = CONTINUATION;
    cont->body.cfn = fn;
    cm->cont_flags = flags;
    cm->antecedent = cancel_task_retain(antecedent);

    cancel__spin_lock(&antecedent->lock);
    bool finished = antecedent->finished;
    if (!finished) {
        cm->cont_next = am->conts;
        am->conts = cancel_task_retain(cont); /* the list's */
    }
    cancel__spin_unlock(&antecedent->lock);
    if (finished)
        trigger(cont, cancel_task_status_of(antecedent));
    return cont;
}
