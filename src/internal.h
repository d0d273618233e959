/* Declarations shared between the library's .c files (cancel__ prefix).
 * Never installed; hidden from the shared library by visibility and by the
 * version map.  Tests link the static library and may use the hooks marked
 * "test hook". */
#ifndef CANCEL_INTERNAL_H
#define CANCEL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cancel/token.h"
#include "cancel/wait.h"
#include "cancel/task.h"

/* ---- alloc.c: every allocation of the library goes through here -------- */

void *cancel__malloc(size_t n);
void *cancel__calloc(size_t n, size_t size);
void cancel__free(void *p);

/* Test hook: make the allocation `n` allocations from now fail (0: the next
 * one), and every one after it until the hook is set again; -1 disables.
 * Failed allocations set errno = ENOMEM and return NULL. */
void cancel__alloc_fail_after(long n);
/* Test hook: allocations made and not yet freed, across the process.
 * Counted only in the test build of the library (CANCEL_TEST_HOOKS,
 * target cancel_test, which the tests link); 0 elsewhere. */
long cancel__alloc_live(void);


/* ---- platform/futex.c ---------------------------------------------------- */

/* Block while *addr == val (a spurious return is allowed); wake waiters.
 * Linux: futex(2).  Elsewhere: a hashed table of mutexes and condvars. */
void cancel__futex_wait(_Atomic uint32_t *addr, uint32_t val);
void cancel__futex_wake(_Atomic uint32_t *addr, int n);
/* The same with an absolute CLOCK_MONOTONIC deadline in ns. */
void cancel__futex_wait_until(_Atomic uint32_t *addr, uint32_t val,
                              int64_t deadline_ns);

/* ---- platform/eventfd.c ------------------------------------------------- */

/* A signal fd: readable once signaled, and stays so.  An eventfd on Linux
 * (*rfd == *wfd), a non-blocking pipe elsewhere.  0 or -errno. */
int cancel__sigfd_open(int *rfd, int *wfd);
void cancel__sigfd_signal(int wfd);
/* Consume pending signals (used by private parkers only). */
void cancel__sigfd_drain(int rfd);
void cancel__sigfd_close(int rfd, int wfd);

/* ---- annotations for valgrind's thread checkers ------------------------ */

/* Valgrind's DRD knows pthread primitives only.  A CANCEL_VALGRIND build
 * (cmake -DCANCEL_VALGRIND=ON; valgrind/run.sh threads) tells it about the
 * rest; every other build expands these to nothing and includes nothing of
 * valgrind.
 *   LOCK_ACQUIRED / LOCK_RELEASED(l)   a spinlock was taken / is let go;
 *   HAPPENS_BEFORE / HAPPENS_AFTER(a)  the release / acquire side of a
 *       lock-free hand-off through the atomic at a: what the releasing
 *       thread did before its mark is visible after an acquiring thread's
 *       mark (put AFTER only where the acquire saw the released value);
 *   ATOMIC_BEGIN / ATOMIC_END()        the accesses between them, on this
 *       thread, are atomic operations, not data accesses (never nested).
 *       DRD takes a read-modify-write for a read, but an atomic load or
 *       store is a plain mov on x86-64, which it would take for a racy
 *       access.  Only around atomic accesses that race by design: a
 *       release store read lock-free, a peek checked again under a lock,
 *       a futex call (valgrind reports the kernel as writing the word).
 * No address range is ignored.  Each use says why it is right; TSan (make
 * test) checks the same code with its own understanding of atomics. */
#ifdef CANCEL_VALGRIND
#include <valgrind/drd.h>
#define CANCEL__ANNOTATE_LOCK_ACQUIRED(l) ANNOTATE_RWLOCK_ACQUIRED((l), 1)
#define CANCEL__ANNOTATE_LOCK_RELEASED(l)                                      \
    do {                                                                       \
        ANNOTATE_RWLOCK_RELEASED((l), 1);                                      \
    } while (0)
#define CANCEL__ANNOTATE_HAPPENS_BEFORE(a) ANNOTATE_HAPPENS_BEFORE(a)
#define CANCEL__ANNOTATE_HAPPENS_AFTER(a) ANNOTATE_HAPPENS_AFTER(a)
#define CANCEL__ANNOTATE_ATOMIC_BEGIN() ANNOTATE_IGNORE_READS_AND_WRITES_BEGIN()
#define CANCEL__ANNOTATE_ATOMIC_END() ANNOTATE_IGNORE_READS_AND_WRITES_END()
#else
#define CANCEL__ANNOTATE_LOCK_ACQUIRED(l) ((void)0)
#define CANCEL__ANNOTATE_LOCK_RELEASED(l) ((void)0)
#define CANCEL__ANNOTATE_HAPPENS_BEFORE(a) ((void)0)
#define CANCEL__ANNOTATE_HAPPENS_AFTER(a) ((void)0)
#define CANCEL__ANNOTATE_ATOMIC_BEGIN() ((void)0)
#define CANCEL__ANNOTATE_ATOMIC_END() ((void)0)
#endif

/* ---- spinlocks (registration.c) ---------------------------------------- */

/* A test-and-test-and-set lock for critical sections of a few pointer
 * writes: one CAS to take it, a release store to drop it.  Under contention
 * it spins briefly with a pause and then yields, so a preempted holder gets
 * the CPU back.  Never held across a callback or a blocking call. */
void cancel__spin_lock_slow(_Atomic uint32_t *l);

static inline void cancel__spin_lock(_Atomic uint32_t *l)
{
    uint32_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(l, &expected, 1,
                                                 memory_order_acquire,
                                                 memory_order_relaxed))
        cancel__spin_lock_slow(l);
    CANCEL__ANNOTATE_LOCK_ACQUIRED(l);
}

static inline void cancel__spin_unlock(_Atomic uint32_t *l)
{
    CANCEL__ANNOTATE_LOCK_RELEASED(l);
    /* The lock word is only ever accessed atomically. */
    CANCEL__ANNOTATE_ATOMIC_BEGIN();
    atomic_store_explicit(l, 0, memory_order_release);
    CANCEL__ANNOTATE_ATOMIC_END();
}

static inline void cancel__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- the state behind a source and its tokens (source.c) ----------------- */

struct cancel__ext;

/* Flags of a source, guarded by its stripe lock. */
enum {
    CANCEL__FREED = 1u << 0,      /* the owner called cancel_source_free */
    CANCEL__DEAD = 1u << 1,       /* no reference left: destroy when unlinked */
    CANCEL__EXT_INLINE = 1u << 2, /* ext shares the source's allocation */
};

/* A source.  Without timer, fd or links it is this struct alone: 32 bytes.
 * Lifetime: `refs` counts the owner, retained tokens and short-lived
 * internal references (a canceller running callbacks, the timer thread).
 * When it drops to 0 the source is DEAD and is destroyed as soon as no
 * registration is pending on it (the list is empty). */
struct cancel_source {
    struct cancel__head head;   /* reason: 0, then > 0; read lock-free */
    _Atomic uint32_t refs;
    uint32_t flags;             /* CANCEL__*, under the stripe lock */
    _Atomic uint32_t waiters;   /* threads blocked on head.reason */
    struct cancel__reg *regs;   /* pending registrations, newest first */
    struct cancel__ext *_Atomic ext;
};

/* A registration, as the library sees the caller's cancel_registration.
 * `word` says where it is:
 *   0                          inert: never registered, unregistered, run
 *                              inline, dropped by try_reset, or posted
 *   src | REG_PENDING          linked in src->regs (| REG_POSTED: posted kind)
 *   src | REG_FIRED            taken by a canceller of src: fn has been or is
 *                              being called (a call record in src's stripe
 *                              says which, while it runs)
 * Only REG_PENDING registrations are linked.  Plain ones keep b.prev; posted
 * ones keep the post function there instead, so removing a posted
 * registration searches the list for its predecessor. */
struct cancel__reg {
    union {
        struct cancel__reg *next;   /* PENDING */
    } a;
    union {
        struct cancel__reg *prev;   /* PENDING, plain */
        cancel_post_fn *post;       /* PENDING, posted */
    } b;
    _Atomic uintptr_t word;
    cancel_callback *fn;
    void *arg;
    void *ctx; /* posted: the post function's context */
};

#define CANCEL__REG_PENDING ((uintptr_t)1)
#define CANCEL__REG_POSTED ((uintptr_t)2)
#define CANCEL__REG_FIRED ((uintptr_t)4)
#define CANCEL__REG_TAGS ((uintptr_t)7)

/* A link of a linked source to one parent. */
struct cancel__link {
    cancel_registration reg; /* on the parent */
    cancel_source *parent;
    cancel_source *child;
};

/* What only some sources need: a timer entry, a wait fd, parent links.
 * Allocated on first use (timer, fd) or with the source (links). */
struct cancel__ext {
    cancel_source *src;
    size_t heap_index;        /* timer: position in the heap or NOT_ARMED */
    struct cancel__ext *async_next; /* cancel_async queue; timer lock */
    _Atomic int fd;           /* cancel_token_fd: read end, or -1 */
    int wfd;                  /* its write end (== fd for an eventfd) */
    size_t nlinks;
    struct cancel__link links[];
};

#define CANCEL__NOT_ARMED ((size_t)-1)

/* ---- registration.c ------------------------------------------------------ */

/* The stripe lock that guards a source's registration list and flags.
 * Locks live in a static table indexed by the source's address, so a
 * thread may take the lock of a source that may already be destroyed. */
void cancel__lock(const cancel_source *src);
void cancel__unlock(const cancel_source *src);

/* Run and drain every pending registration of a canceled source, newest
 * first.  Called once, by the thread whose cancel won. */
void cancel__notify(cancel_source *src);

/* ---- source.c ------------------------------------------------------------ */

/* Cancel with `reason` (> 0) and run the callbacks on this thread.
 * Returns true if this call did it (false: already canceled). */
bool cancel__cancel(cancel_source *src, int reason);
/* Set the reason only; the caller runs cancel__notify later. */
bool cancel__set_canceled(cancel_source *src, int reason);
void cancel__ref(cancel_source *src);
void cancel__unref(cancel_source *src);
/* Destroy a DEAD source whose registration list is empty. */
void cancel__destroy(cancel_source *src);
/* The source's ext, allocated on first use; NULL when out of memory. */
struct cancel__ext *cancel__get_ext(cancel_source *src);
/* The two halves, for callers that must fail without leaving an ext:
 * allocate one privately, then publish it (returns the winner and frees
 * `fresh` if another thread published first). */
struct cancel__ext *cancel__ext_alloc(cancel_source *src);
struct cancel__ext *cancel__ext_publish(cancel_source *src,
                                        struct cancel__ext *fresh);
/* Record t as this thread's canceled token. */
void cancel__record(cancel_token t);

/* ---- linked.c ------------------------------------------------------------ */

void cancel__unlink_parents(struct cancel__ext *ext);

/* ---- pool.c ------------------------------------------------------------- */

/* An item of a pool's queue; tasks embed one. */
struct cancel__work {
    struct cancel__work *next;
    void (*run)(struct cancel__work *w);
};

struct cancel_pool;
/* Queue w (never fails: the caller allocated it). */
void cancel__pool_push(struct cancel_pool *pool, struct cancel__work *w);

/* ---- process.c ---------------------------------------------------------- */

/* Test hook: act as on a kernel without pidfd_open, so that
 * cancel_process_wait takes its waitpid-polling fallback. */
extern _Atomic bool cancel__no_pidfd;

/* ---- signal.c ----------------------------------------------------------- */

/* Forget a freed source's cancel_source_on_signal requests. */
void cancel__signal_detach(cancel_source *src);

/* ---- timer.c: the library thread, the timer heap, the clock -------------- */

/* Arm a source's timer (delay >= 0): 0, -ENOMEM, -EAGAIN; all or nothing. */
int cancel__timer_set(cancel_source *src, int64_t delay_ns);
void cancel__timer_disarm(struct cancel__ext *ext);
/* Queue the callbacks of an already-canceled source (holding a reference
 * for the queue) to run on the library thread. 0 or -EAGAIN. */
int cancel__async_prepare(void);
void cancel__async_queue(struct cancel__ext *ext);

int64_t cancel__system_now(void);
cancel_clock *cancel__clock_installed(void);
int64_t cancel__clock_read(cancel_clock *c); /* NULL: the system clock */

/* A manual-clock watch: cancel_clock_advance calls fn(arg) with the timer
 * lock held (fn must not block) once `clock` reads >= at.  Returns false,
 * without adding it, if that is already the case. */
struct cancel__clock_watch {
    struct cancel__clock_watch *next, *prev;
    cancel_clock *clock;
    int64_t at;
    void (*fn)(void *arg);
    void *arg;
};
bool cancel__clock_watch(struct cancel__clock_watch *w);
void cancel__clock_unwatch(struct cancel__clock_watch *w);

/* ---- park.c: how every wait sleeps ------------------------------------- */

/* A deadline on the clock a wait started with. */
struct cancel__deadline {
    cancel_clock *clock; /* NULL: CLOCK_MONOTONIC */
    int64_t at;          /* INT64_MAX: never */
};
void cancel__deadline_init(struct cancel__deadline *d, int64_t timeout_ns);
bool cancel__deadline_passed(const struct cancel__deadline *d);
/* The timeout left, for a call that takes a relative one: -1 (infinite)
 * for no deadline, else at least 0 - never -1 for a deadline that passed
 * by 1 ns, which would read as infinite. */
int64_t cancel__deadline_left(const struct cancel__deadline *d);

/* A parker lives on a waiting thread's stack.  Whoever may unpark it does
 * so under a lock (a wait queue's, the timer lock) or from a registration
 * the waiter unregisters before it returns, so the parker outlives every
 * unpark.  state: 0 running, 1 unparked, 2 asleep in the kernel, 3 unparked
 * by the token callback (cancel__unpark_token_cb), whose exchange is its
 * last access to the waiter's memory: a waiter that saw 3 need not wait for
 * that callback to return (cancel__parker_unhook). */
struct cancel__parker {
    _Atomic uint32_t state;
    int fd; /* >= 0: also signal this fd (cancel_wait_any with fds) */
};
#define CANCEL__PARKER_INIT {0, -1}

void cancel__unpark(struct cancel__parker *p);
/* As a cancel_callback / clock-watch function: arg is the parker. */
void cancel__unpark_cb(void *parker);
/* The token registration's callback of a wait (marks the parker 3). */
void cancel__unpark_token_cb(void *parker);
/* Drop the wait's token registration: without waiting when the token
 * callback already unparked us (it touches nothing of ours after that),
 * else as cancel_unregister.  `seen3`: a reset returned 3 earlier. */
void cancel__parker_unhook(struct cancel__parker *p, cancel_registration *reg,
                           bool seen3);
/* Reset before checking the wait's condition: returns the old state.
 * Acquire: what an unparker wrote before unparking is visible. */
static inline uint32_t cancel__parker_reset(struct cancel__parker *p)
{
    return atomic_exchange_explicit(&p->state, 0, memory_order_acq_rel);
}
/* Spin briefly, then sleep until unparked or the deadline; may return
 * early.  Callers re-check their condition in a loop. */
void cancel__park(struct cancel__parker *p, const struct cancel__deadline *d);

/* A wait queue: a spinlock and a FIFO list of waiters, embedded in events,
 * semaphores and countdowns.  `users` counts threads inside a slow-path
 * wait (queued or not), which _destroy refuses (-EBUSY). */
struct cancel__waiter {
    struct cancel__waiter *next, *prev;
    struct cancel__parker *parker;
    bool queued;
};
struct cancel__waitq {
    _Atomic uint32_t lock;
    uint32_t users;
    struct cancel__waiter *head, *tail;
};
/* Under the queue's lock. */
void cancel__waitq_push(struct cancel__waitq *q, struct cancel__waiter *w);
void cancel__waitq_remove(struct cancel__waitq *q, struct cancel__waiter *w);
/* Dequeue and unpark up to n waiters (n < 0: all). */
void cancel__waitq_wake(struct cancel__waitq *q, int n);

/* Block on q until ready(obj) (0), t is canceled (-ECANCELED, recorded) or
 * the timeout passes (-ETIMEDOUT).  The caller did the entry checks. */
int cancel__waitq_wait(struct cancel__waitq *q, bool (*ready)(void *obj),
                       void (*leave)(void *obj), void *obj, cancel_token t,
                       int64_t timeout_ns);

/* cancel_wait_any with an absolute deadline (on its clock), for callers
 * that computed one already: re-deriving it from a relative timeout would
 * read the clock again and could miss an advance in between. */
int cancel__wait_any_until(const cancel_waitable *items, size_t n,
                           const struct cancel__deadline *d);
/* Wait for t for ns of real time (CLOCK_MONOTONIC, whatever clock is
 * installed): -ECANCELED or -ETIMEDOUT, nothing recorded. */
int cancel__wait_real(cancel_token t, int64_t ns);

/* The private layouts of the caller-storage objects. */
struct cancel__event {
    _Atomic uint32_t set;
    struct cancel__waitq q;
};
struct cancel__semaphore {
    _Atomic int32_t count;
    int32_t max;
    struct cancel__waitq q;
};
bool cancel__semaphore_try_take(struct cancel__semaphore *s);
/* Under the lock, when a waiter leaves without taking: pass the wake on. */
void cancel__semaphore_forward(struct cancel__semaphore *s);

#endif /* CANCEL_INTERNAL_H */
