/* libcancel core: sources, tokens, registrations, linked sources, timeouts.
 *
 * The model is .NET's cooperative cancellation.  A *source* issues one
 * cancellation request; its *token*, a one-pointer value, is copied to every
 * listener; listeners notice the request by polling (cancel_requested), by
 * registering a callback (cancel_register) or by waiting (cancel/wait.h).
 *
 * Conventions (every layer):
 *   - 0 or a count on success, a negative errno value on failure; errno is
 *     never an output.  Constructors return NULL and set errno.
 *   - Durations are int64_t nanoseconds: negative means infinite
 *     (CANCEL_INFINITE), 0 means "do not block".
 *   - Every function may be called from any thread, concurrently with any
 *     other on the same object, except *_free / *_destroy, which the owner
 *     calls once when no other thread uses the object through that pointer.
 *   - Memory ordering: everything a thread wrote before it canceled a source
 *     happens-before every callback of that source and every
 *     cancel_requested() that returns true for it.
 */
#ifndef CANCEL_TOKEN_H
#define CANCEL_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CANCEL_API __attribute__((visibility("default")))
#else
#define CANCEL_API
#endif

/* -------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------- */

/* A negative duration: wait forever. */
#define CANCEL_INFINITE ((int64_t)-1)

/* Opaque, heap-allocated, reference-counted cancellation source. */
typedef struct cancel_source cancel_source;

/* A token: a small value type, copied freely.  A copy is *borrowed*: it is
 * valid while its source is alive (cancel_token_retain extends that).
 * A zero-initialised token is CANCEL_NONE.  The field is private. */
typedef struct cancel_token {
    cancel_source *src_;
} cancel_token;

/* The token that can never be canceled (.NET's CancellationToken.None). */
#ifdef __cplusplus
#define CANCEL_NONE (cancel_token{nullptr})
#else
#define CANCEL_NONE ((cancel_token){NULL})
#endif

/* A callback run on cancellation. */
typedef void cancel_callback(void *arg);

/* An executor's "post": queue fn(arg) to run later on the executor's own
 * thread (an event loop, a GUI thread, a pool).  See cancel_register_on. */
typedef void cancel_post_fn(void *ctx, cancel_callback *fn, void *arg);

/* Caller-provided storage for one registration: 48 bytes, fields private.
 * Initialise with CANCEL_REGISTRATION_INIT (or zero it) so that an
 * unregister before any register is a harmless no-op. */
typedef struct cancel_registration {
    void *private_[6];
} cancel_registration;

#define CANCEL_REGISTRATION_INIT {{0}}

/* A replaceable clock for tests (.NET's TimeProvider). */
typedef struct cancel_clock cancel_clock;

/* -------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* The one code of the library that is not an errno value: several errors
 * happened (.NET's AggregateException); the function that returns it says
 * where the list is (cancel_parallel_for: its options' errors). */
#define CANCEL_EAGGREGATE (-4096)

/* The message for an error code the library returns (negative or positive:
 * -ECANCELED and ECANCELED give the same text; 0 gives "success"), also for
 * every errno the C library knows, which the I/O calls pass through.  Never
 * NULL; unknown codes give "unknown error".
 * Thread safety: any thread; the string is static. */
CANCEL_API const char *cancel_strerror(int err);

/* The symbolic name of an error code ("ECANCELED"; 0 gives "OK"), or
 * "UNKNOWN"; either sign.  Thread safety: any thread; the string is static. */
CANCEL_API const char *cancel_err_name(int err);

/* -------------------------------------------------------------------------
 * Sources
 * ---------------------------------------------------------------------- */

/* A new source, not canceled.  Returns NULL with errno = ENOMEM on failure.
 * A plain source takes one allocation of at most 64 bytes.
 * Thread safety: any thread.
 * Ownership: the caller owns one reference; cancel_source_free drops it. */
CANCEL_API cancel_source *cancel_source_new(void);

/* A source canceled when any of tokens[0..count) is (CreateLinkedTokenSource),
 * with that parent's reason: at once if one is already canceled, otherwise
 * when the first one fires.  CANCEL_NONE entries and duplicates are harmless;
 * count == 0 gives a plain source.  Returns NULL with errno = EINVAL when
 * tokens is NULL and count > 0, ENOMEM on allocation failure.
 * The child is an ordinary registration of each parent (it runs in LIFO
 * order among the parent's callbacks).  Canceling the child never cancels a
 * parent.  Thread safety: the tokens may be canceled concurrently.
 * Ownership: the tokens are borrowed for the call only; freeing the child
 * unregisters it from every parent, so no parent keeps anything of it. */
CANCEL_API cancel_source *cancel_source_new_linked(const cancel_token *tokens,
                                                   size_t count);

/* cancel_source_new + cancel_source_cancel_after(delay_ns).  A delay of 0
 * gives a source that is already canceled with reason ETIMEDOUT; a negative
 * delay gives a source without a timer.  NULL/ENOMEM (or EAGAIN when the
 * library's timer thread cannot be started).
 * Thread safety: any thread.  Ownership: as cancel_source_new.
 * Callback context: as cancel_source_cancel_after (the timer thread). */
CANCEL_API cancel_source *cancel_source_new_timeout(int64_t delay_ns);

/* Dispose: drop the owner's reference, disarm the timer and unlink the
 * source from its parents.  Does not cancel.  NULL is a no-op.
 * Registrations still on the source stay registered and never run
 * (unregistering one returns true); a later register on a retained token of
 * it is inert if it was never canceled (on a canceled one fn runs at once,
 * as on any canceled token).  A cancellation already under way when free is called (a
 * timer that is firing, a parent that is canceling) completes; none starts
 * after free returns.  The state lives on while retained tokens or pending
 * registrations refer to it.
 * Thread safety: the owner calls it once, when no other thread uses `src`.
 * It may be called from inside one of the source's own callbacks. */
CANCEL_API void cancel_source_free(cancel_source *src);

/* The source's token; CANCEL_NONE for NULL.  Thread safety: any thread.
 * Ownership: the token is borrowed: valid while the source is alive (until
 * cancel_source_free), longer only with cancel_token_retain. */
CANCEL_API cancel_token cancel_source_token(cancel_source *src);

/* Request cancellation with reason ECANCELED.  Idempotent: the first call
 * wins; a concurrent or later call returns 0 at once.  The first call runs
 * the callbacks synchronously on the calling thread, newest first (LIFO),
 * and returns after the last one returned.  Returns 0, or -EINVAL for NULL.
 * Never allocates.
 * Thread safety: any thread, concurrently with anything but free.
 * Callback context: the calling thread, no library lock held; callbacks may
 * call any function of the library, on this source too (a nested cancel of
 * it is a no-op; a register runs the new callback at once). */
CANCEL_API int cancel_source_cancel(cancel_source *src);

/* The same with a caller-chosen reason, a positive code saying why (the
 * library uses ECANCELED, ETIMEDOUT for timers and EINTR for signals).  The
 * first cancellation's reason wins.  Returns 0; -EINVAL for NULL or
 * reason <= 0 (nothing changes).  Thread safety and callback context: as
 * cancel_source_cancel. */
CANCEL_API int cancel_source_cancel_reason(cancel_source *src, int reason);

/* Arm, or re-arm, a timer that cancels the source with reason ETIMEDOUT
 * after delay_ns on the installed clock.  Each call restarts the countdown;
 * a negative delay disarms.  No-op (0) once canceled.  Returns 0, -EINVAL
 * for NULL, -ENOMEM (the first arm of a source allocates its timer entry),
 * -EAGAIN if the timer thread cannot be started.
 * Thread safety: any thread; concurrent arms of one source: the last wins.
 * Callback context: the callbacks run on the library's timer thread, never
 * on the caller's, also for a delay of 0 - so right after
 * cancel_after(src, 0) returns the token may still read not canceled
 * (cancel_source_new_timeout(0), by contrast, is canceled on return).  One thread serves every timer of
 * the process from a binary heap: arm and disarm are O(log n). */
CANCEL_API int cancel_source_cancel_after(cancel_source *src,
                                          int64_t delay_ns);

/* CancelAsync: the token reads canceled before the call returns; the
 * callbacks run later on the library thread, so a caller holding a lock the
 * callbacks take cannot deadlock with them.  Returns 0 (also when already
 * canceled), -EINVAL, -ENOMEM (the first use allocates the source's
 * extension), -EAGAIN (no library thread); nothing is canceled on an error.
 * Thread safety: any thread.  Ownership: the library keeps the source's
 * state alive until the callbacks ran, even if it is freed meanwhile.
 * Callback context: the library thread, no library lock held. */
CANCEL_API int cancel_source_cancel_async(cancel_source *src);

/* TryReset, to pool a source for an unrelated operation: if it was never
 * canceled, disarm its timer, drop every pending registration (unregistering
 * one of them later returns false; its callback never runs) and return true;
 * otherwise change nothing and return false.  false for NULL.  As in .NET,
 * reset only a source nobody uses any more: the registrations that waits
 * (cancel/wait.h) hang on the token are dropped too, so a thread still
 * blocked in such a wait is no longer woken by a later cancel.
 * Thread safety: any thread; racing a cancel, one of them wins.
 * Ownership: dropped registrations belong to their callers again at once. */
CANCEL_API bool cancel_source_try_reset(cancel_source *src);

/* -------------------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------------- */

/* Private: the first member of every source. */
struct cancel__head {
    int reason; /* 0 while not canceled, then the positive reason */
};

/* IsCancellationRequested: one acquire load.  Once true, never false again.
 * false for CANCEL_NONE.  Thread safety: any thread, wait-free. */
static inline bool cancel_requested(cancel_token t)
{
    return t.src_ != NULL &&
           __atomic_load_n(&((const struct cancel__head *)(const void *)t.src_)
                                ->reason,
                           __ATOMIC_ACQUIRE) != 0;
}

/* false only for CANCEL_NONE.  Thread safety: any thread. */
CANCEL_API bool cancel_can_be_canceled(cancel_token t);

/* 0 while not canceled, then the positive reason of the first cancel.
 * 0 for CANCEL_NONE.  Thread safety: any thread (an acquire load). */
CANCEL_API int cancel_reason(cancel_token t);

/* ThrowIfCancellationRequested: 0 if not canceled (the thread's recorded
 * token is left as it was, like errno); otherwise records t as this thread's
 * canceled token and returns -ECANCELED.
 * Thread safety: any thread; the record is per thread. */
CANCEL_API int cancel_check(cancel_token t);

/* throw new OperationCanceledException(t): records t as this thread's
 * canceled token and returns -ECANCELED unconditionally.
 * Thread safety: any thread; the record is per thread. */
CANCEL_API int cancel_throw(cancel_token t);

/* The token recorded by the last cancel_check / cancel_throw / canceled wait
 * on this thread; CANCEL_NONE before any.  Like errno it says which token a
 * cancellation came from.  Thread safety: per thread.
 * Ownership: borrowed: it is only as valid as its source. */
CANCEL_API cancel_token cancel_canceled_token(void);

/* Same source (two CANCEL_NONE are equal).  It compares addresses: a token
 * of a destroyed source may equal one of a newer source at the same
 * address.  Thread safety: any thread. */
CANCEL_API bool cancel_token_equal(cancel_token a, cancel_token b);

/* Keep a source's state alive past its owner's free: returns t.  No-ops on
 * CANCEL_NONE.  Thread safety: any thread; retain while the token is still
 * valid (before the owner's free, or from another retained copy).
 * Ownership: release each retain once; the state (and its fd) is destroyed
 * by the call that drops the last reference or pending registration. */
CANCEL_API cancel_token cancel_token_retain(cancel_token t);
CANCEL_API void cancel_token_release(cancel_token t);

/* -------------------------------------------------------------------------
 * Registrations
 * ---------------------------------------------------------------------- */

/* Register fn(arg) to run when t is canceled.  Never allocates.
 * Returns 0 when fn is registered, or when t can never be canceled
 * (CANCEL_NONE, or a retained token whose source was freed uncanceled):
 * then fn never runs and unregistering returns false.  If t is already
 * canceled, fn(arg) runs on the calling thread before the call returns and
 * the call returns -ECANCELED; reg is then inert.  -EINVAL for NULL reg or
 * fn (fn does not run).
 * Ownership: reg belongs to the call while it runs and must not be
 * registered already; it stays in use until unregistered or until fn has
 * been called.  Once fn has been called the library never touches reg
 * again, so fn may free reg and arg.
 * Callback context: the canceling thread (or this one), no library lock
 * held; fn may call any library function, on this source too. */
CANCEL_API int cancel_register(cancel_token t, cancel_registration *reg,
                               cancel_callback *fn, void *arg);

/* The same, except that on an already-canceled token it returns -ECANCELED
 * without running fn: for callers that hold a lock fn needs.  Thread
 * safety, ownership and callback context: as cancel_register. */
CANCEL_API int cancel_try_register(cancel_token t, cancel_registration *reg,
                                   cancel_callback *fn, void *arg);

/* Registration.Dispose.  Returns true if fn was removed before it ran, also
 * while a cancel is running the source's other callbacks (a registration
 * whose turn has not come is removed and never runs).  If fn is running on
 * another thread, blocks until it returns.  Called from inside fn itself (or
 * from a callback nested inside it on the same thread), returns false at
 * once.  false on a zeroed, inert or already unregistered registration, and
 * for NULL.  Safe after the source was freed.  Never allocates.
 * Thread safety: any thread, concurrently with a cancel of the source; one
 * thread at a time per registration.
 * Ownership: after it returns (outside fn), fn is neither running nor will
 * run: reg and arg may be freed.  Everything fn did happens-before the
 * return of an unregister that waited for it. */
CANCEL_API bool cancel_unregister(cancel_registration *reg);

/* Registration.Unregister: the same but never blocks; true if removed
 * before it ran.  Thread safety: as cancel_unregister.
 * Ownership: when it returns false fn may still be running on another
 * thread, so reg and arg must outlive it (use cancel_unregister for that). */
CANCEL_API bool cancel_unregister_nowait(cancel_registration *reg);

/* Register with a target thread (a registration with a
 * SynchronizationContext): on cancellation the canceling thread calls
 * post(ctx, fn, arg) and the executor behind post runs fn(arg) later on its
 * own thread.  On an already-canceled token, post is called before the call
 * returns (and the call returns -ECANCELED).  Unregistering returns true only
 * if post was not called yet and never waits for fn: the executor owns the
 * call once posted.  Removing such a registration costs O(registrations on
 * the source), plain ones O(1).  -EINVAL for NULL reg, fn or post.
 * Thread safety: as cancel_register.
 * Ownership: reg as with cancel_register; fn, arg and ctx must stay valid
 * until the executor has run fn (or until unregister returned true).
 * Callback context: post runs on the canceling thread, no library lock
 * held, and should only queue; fn runs wherever the executor runs it. */
CANCEL_API int cancel_register_on(cancel_token t, cancel_registration *reg,
                                  cancel_callback *fn, void *arg,
                                  cancel_post_fn *post, void *ctx);

/* -------------------------------------------------------------------------
 * Clock
 * ---------------------------------------------------------------------- */

/* A manual clock starting at start_ns that moves only by
 * cancel_clock_advance.  NULL/ENOMEM.  Thread safety: any thread.
 * Ownership: the caller frees it with cancel_clock_free once uninstalled. */
CANCEL_API cancel_clock *cancel_clock_new_manual(int64_t start_ns);

/* From now on every timer and every wait timeout reads c (NULL: the system
 * CLOCK_MONOTONIC).  Timers armed before keep their remaining delay.
 * Returns 0.  Thread safety: any thread; meant for test set-up.
 * Ownership: c must stay alive until another clock is installed. */
CANCEL_API int cancel_clock_install(cancel_clock *c);

/* Move a manual clock forward by ns >= 0 (-EINVAL otherwise, or for NULL).
 * A deadline is due when now >= deadline.  Before it returns (when c is
 * installed), every timer that became due has fired on the timer thread and
 * its callbacks have returned, and every wait whose deadline passed has been
 * woken.  Called on the timer thread itself (from a timer callback) it does
 * not wait: the due timers fire after the callback returns.
 * Thread safety: any thread. */
CANCEL_API int cancel_clock_advance(cancel_clock *c, int64_t ns);

/* Now, in ns, on the installed clock.  Thread safety: any thread. */
CANCEL_API int64_t cancel_clock_now(void);

/* Free a clock that is not installed.  NULL is a no-op.
 * Thread safety: once, by the owner, when no thread uses it. */
CANCEL_API void cancel_clock_free(cancel_clock *c);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_TOKEN_H */
