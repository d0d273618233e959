/* libcancel tasks: a thread pool and tasks with .NET's cancellation rules.
 *
 * A task runs `int fn(void *arg, cancel_token t)` on a pool with a *task
 * token*.  How it ends is decided exactly as .NET decides it:
 *   1. task token canceled before the task starts: fn never runs; CANCELED;
 *   2. fn returns 0: RAN_TO_COMPLETION, even if cancellation was requested;
 *   3. fn returns -ECANCELED, the thread's canceled token (cancel_check /
 *      cancel_throw / a canceled wait, see token.h) is the task token, and
 *      that token is canceled: CANCELED;
 *   4. any other non-zero return - -ECANCELED with another token, or with the
 *      task token not canceled, included - FAULTED, and the code is kept;
 *   5. waiting on a CANCELED task reports cancellation (-ECANCELED) and its
 *      error is 0: cancellation is not failure;
 *   6. attached children: the parent finishes only after them; it is
 *      FAULTED if it or any of them faulted, and every error is kept
 *      (cancel_task_errors: .NET's AggregateException); otherwise it is
 *      CANCELED if it was, or if a child was canceled while the parent's
 *      token is canceled (children canceled by the shared token).
 *
 * Errors follow the library's convention (token.h): negative errno values.
 * A body's non-zero return is kept as it is, a positive one included, and
 * a wait reports it unchanged: return negative codes.
 */
#ifndef CANCEL_TASK_H
#define CANCEL_TASK_H

#include "wait.h"

#ifdef __cplusplus
extern "C" {
#endif

/* -------------------------------------------------------------------------
 * Pools
 * ---------------------------------------------------------------------- */

/* A fixed-size pool of worker threads with one FIFO queue. */
typedef struct cancel_pool cancel_pool;

/* A pool of nthreads workers (0: one per online CPU).  NULL with errno =
 * EINVAL (nthreads < 0), ENOMEM or EAGAIN (a thread could not start).
 * Ownership: the caller frees it with cancel_pool_free. */
CANCEL_API cancel_pool *cancel_pool_new(int nthreads);

/* Drain (every queued item and task still runs, also those they queue),
 * then join the workers and free the pool.  NULL is a no-op.
 * Thread safety: the owner, once, not from one of the pool's own workers,
 * and not concurrently with cancel_pool_queue or new tasks on it.
 * Ownership: task handles on this pool stay valid until released. */
CANCEL_API void cancel_pool_free(cancel_pool *pool);

/* The process-wide pool (one worker per CPU), created on first use and
 * never freed.  NULL (errno set) if it cannot be created. */
CANCEL_API cancel_pool *cancel_pool_default(void);

/* The number of worker threads. -EINVAL for NULL. */
CANCEL_API int cancel_pool_size(const cancel_pool *pool);

/* QueueUserWorkItem: run fn(arg) on a worker, in FIFO order with the other
 * items.  0, -EINVAL (NULL pool or fn), -ENOMEM.  Thread safety: any
 * thread, also from a worker.  Callback context: a worker thread. */
CANCEL_API int cancel_pool_queue(cancel_pool *pool, cancel_callback *fn,
                                 void *arg);

/* A cancel_post_fn (token.h) whose ctx is a cancel_pool: with
 * cancel_register_on(t, &reg, fn, arg, cancel_pool_post, pool) a
 * cancellation callback runs on the pool's threads.  Queueing allocates; if
 * that fails (or pool is NULL) fn runs at once on the posting thread, so it
 * is never lost.  A NULL fn does nothing. */
CANCEL_API void cancel_pool_post(void *pool, cancel_callback *fn, void *arg);

/* -------------------------------------------------------------------------
 * Tasks
 * ---------------------------------------------------------------------- */

typedef struct cancel_task cancel_task;

typedef enum cancel_task_status {
    CANCEL_TASK_CREATED = 0,
    CANCEL_TASK_WAITING_TO_RUN,
    CANCEL_TASK_RUNNING,
    CANCEL_TASK_WAITING_FOR_CHILDREN,
    CANCEL_TASK_RAN_TO_COMPLETION,
    CANCEL_TASK_CANCELED,
    CANCEL_TASK_FAULTED,
} cancel_task_status;

/* A task body: returns 0, or a negative error (see the rules above). */
typedef int cancel_task_fn(void *arg, cancel_token t);

/* Creation flags. */
enum {
    /* Attach to the task running on the calling thread (AttachedToParent):
     * that parent finishes only after this child - so an attached child
     * that is never started holds its parent forever, as in .NET.  Without
     * a current task the flag is ignored.  Continuations take it too. */
    CANCEL_TASK_ATTACHED = 1u << 0,
};

/* A task in state CREATED: nothing runs until cancel_task_start.  The task
 * keeps a reference on t (cancel_token_retain) until it finishes.  NULL with
 * errno = EINVAL (NULL pool or fn, unknown flags) or ENOMEM.
 * Ownership: the caller owns one handle; release it with
 * cancel_task_release (the task runs to its end regardless). */
CANCEL_API cancel_task *cancel_task_new(cancel_pool *pool, cancel_task_fn *fn,
                                        void *arg, cancel_token t,
                                        unsigned flags);

/* Queue a CREATED task: WAITING_TO_RUN.  If its token is canceled while it
 * waits, it becomes CANCELED at once (its waiters and continuations do not
 * wait for a worker to reach it) and fn never runs.  0; -EINVAL for NULL or
 * a task already started (or a continuation, which starts itself). */
CANCEL_API int cancel_task_start(cancel_task *task);

/* cancel_task_new + cancel_task_start (Task.Factory.StartNew). */
CANCEL_API cancel_task *cancel_task_run(cancel_pool *pool, cancel_task_fn *fn,
                                        void *arg, cancel_token t,
                                        unsigned flags);

/* Another handle on the task (returns task); release each once. */
CANCEL_API cancel_task *cancel_task_retain(cancel_task *task);
/* Drop a handle.  NULL is a no-op.  Using a handle after releasing it -
 * waiting on it included - is undefined, as with free(3). */
CANCEL_API void cancel_task_release(cancel_task *task);

/* The status now (any thread); CANCEL_TASK_CREATED for NULL. */
CANCEL_API cancel_task_status cancel_task_status_of(const cancel_task *task);
/* The task token. */
CANCEL_API cancel_token cancel_task_token(const cancel_task *task);

/* 0 unless FAULTED; then the first error: the body's own, else the first
 * faulted child's.  0 for a CANCELED task (cancellation is not failure). */
CANCEL_API int cancel_task_error(const cancel_task *task);

/* Every error of a FAULTED task - its own, then its attached children's in
 * the order they finished - copied into codes[0..cap); returns how many
 * there are (which may exceed cap).  0 unless FAULTED. */
CANCEL_API size_t cancel_task_errors(const cancel_task *task, int *codes,
                                     size_t cap);

/* The task running on the calling thread, or NULL.  Borrowed. */
CANCEL_API cancel_task *cancel_task_current(void);

/* Wait for the task to finish, with the wait's own token and timeout.
 * Returns 0 (RAN_TO_COMPLETION); -ECANCELED when the task is CANCELED (the
 * task token is recorded as the thread's canceled token) or when the wait's
 * token t fired (t is recorded); -ETIMEDOUT when the wait timed out; for a
 * FAULTED task its error (cancel_task_error) - which is -ECANCELED for a
 * body canceled by another token (rule 4), and may be -ETIMEDOUT if the
 * body returned that: cancel_task_status_of tells them from the wait's own
 * outcomes.
 * -EINVAL for NULL.  A task still waiting to run is run inline on the
 * waiting thread when the wait is infinite and t is CANCEL_NONE (.NET's
 * task inlining); a task never started (CREATED) is waited for until it is
 * started and ends.  Thread safety: any thread, any number of waiters. */
CANCEL_API int cancel_task_wait(cancel_task *task, cancel_token t,
                                int64_t timeout_ns);

/* Wait until every task finished.  0 if all ran to completion; otherwise
 * the first FAULTED task's error in array order, else -ECANCELED (some task
 * CANCELED); -ECANCELED / -ETIMEDOUT for the wait itself (then not all may
 * have finished; a t canceled on entry gives -ECANCELED at once, as every
 * wait).  -EINVAL for NULL tasks with n > 0 or a NULL entry.  Like
 * cancel_task_wait, an infinite wait with t = CANCEL_NONE runs the tasks
 * still waiting to run on the calling thread, in array order. */
CANCEL_API int cancel_task_wait_all(cancel_task *const *tasks, size_t n,
                                    cancel_token t, int64_t timeout_ns);

/* Wait until any task finished: the lowest index of a finished task;
 * -ECANCELED / -ETIMEDOUT for the wait (a t canceled on entry wins over
 * finished tasks, as in every wait); -EINVAL (n == 0, NULL); -ENOMEM past
 * CANCEL_WAIT_ANY_STACK - 1 tasks when out of memory. */
CANCEL_API int cancel_task_wait_any(cancel_task *const *tasks, size_t n,
                                    cancel_token t, int64_t timeout_ns);

/* -------------------------------------------------------------------------
 * Continuations
 * ---------------------------------------------------------------------- */

/* A continuation body: gets its antecedent (finished; borrowed). */
typedef int cancel_continuation_fn(cancel_task *antecedent, void *arg,
                                   cancel_token t);

/* Which endings of the antecedent run the continuation (0: any).  When the
 * antecedent ends otherwise, the continuation task is CANCELED and its body
 * never runs (TaskContinuationOptions.OnlyOn*). */
enum {
    CANCEL_CONTINUE_ON_RAN_TO_COMPLETION = 1u << 8,
    CANCEL_CONTINUE_ON_CANCELED = 1u << 9,
    CANCEL_CONTINUE_ON_FAULTED = 1u << 10,
};

/* A task that runs fn on the antecedent's pool once the antecedent has
 * finished (at once if it already has), filtered by flags; its own token t
 * works as any task token (canceled before it starts: CANCELED - decided
 * when the antecedent finishes, .NET's LazyCancellation).  Continuations
 * decided without running (filtered out, or canceled) are finished on the
 * thread that finished their antecedent, before that call returns, one
 * after the other (not recursively: a chain of any length needs no more
 * stack than one step).  Returns the continuation's handle (release it);
 * NULL with errno = EINVAL or ENOMEM.  Thread safety: any thread. */
CANCEL_API cancel_task *cancel_task_continue_with(cancel_task *antecedent,
                                                  cancel_continuation_fn *fn,
                                                  void *arg, cancel_token t,
                                                  unsigned flags);

/* -------------------------------------------------------------------------
 * Parallel loops and queries (Parallel.For, PLINQ's WithCancellation)
 *
 * The calling thread works too, with up to max_degree - 1 helpers queued on
 * the pool; elements are handed out in chunks from a shared counter, and the
 * loop's token (and a failing element) is checked before every element, so
 * the overrun after a cancel is bounded by the number of workers times one
 * element's time.  When a call returns, no element function is running or
 * will run.
 *
 * Results, as .NET reports them:
 *   0                  every element ran (or the range was empty);
 *   -ECANCELED         the call's own token fired and no element failed:
 *                      one cancellation, not a composite (the token is
 *                      recorded as the thread's canceled token);
 *   CANCEL_EAGGREGATE  one or more elements failed - with any error,
 *                      -ECANCELED for another token included; when the
 *                      call's token fired too, -ECANCELED is in the list.
 *                      Every error is in opts->errors (AggregateException);
 *   -EINVAL, -ENOMEM   bad input (NULL pool or function, from > to, ...),
 *                      out of memory; no element ran (every call allocates
 *                      all it needs before its first element).
 * An empty input returns 0 at once, whatever the token; a non-empty one
 * with an already-canceled token returns -ECANCELED before any element.
 * An element function "throws" cooperative cancellation by returning
 * -ECANCELED after cancel_check/cancel_throw on the call's token (while it
 * is canceled): that is the call's own cancellation, not an error.
 * A canceled query never hands back a partial result as if it were whole:
 * outputs are left unspecified (filter: *out = NULL, *count = 0).
 * ---------------------------------------------------------------------- */

/* Options; CANCEL_PARALLEL_OPTIONS_INIT gives the defaults. */
typedef struct cancel_parallel_options {
    int max_degree;    /* threads at most, the caller's included; 0: the
                          pool's size (at least 1); never more than the
                          pool's size + 1 */
    int *errors;       /* out: the errors, in the order they happened */
    size_t errors_cap; /* room in errors */
    size_t nerrors;    /* out: how many errors there were (may exceed cap) */
} cancel_parallel_options;

#define CANCEL_PARALLEL_OPTIONS_INIT {0, NULL, 0, 0}

/* Parallel.For: body(i, arg, t) for every i in [from, to).  opts may be
 * NULL.  Returns as described above; from == to: 0 without a call;
 * from > to: -EINVAL.  Thread safety: any thread, a pool worker included
 * (the caller works, so nested loops cannot starve). */
typedef int cancel_for_fn(int64_t i, void *arg, cancel_token t);
CANCEL_API int cancel_parallel_for(cancel_pool *pool, int64_t from, int64_t to,
                                   cancel_for_fn *body, void *arg,
                                   cancel_token t,
                                   cancel_parallel_options *opts);

/* Parallel.ForEach over n items of `size` bytes at `items`:
 * body(item pointer, arg, t). */
typedef int cancel_each_fn(void *item, void *arg, cancel_token t);
CANCEL_API int cancel_parallel_for_each(cancel_pool *pool, void *items,
                                        size_t n, size_t size,
                                        cancel_each_fn *body, void *arg,
                                        cancel_token t,
                                        cancel_parallel_options *opts);

/* Map: fn(&in[i], &out[i], arg, t) for every i; out has n elements of
 * out_size bytes.  Canceled or failed: out is unspecified. */
typedef int cancel_map_fn(const void *in, void *out, void *arg,
                          cancel_token t);
CANCEL_API int cancel_parallel_map(cancel_pool *pool, const void *in,
                                   size_t n, size_t in_size, void *out,
                                   size_t out_size, cancel_map_fn *fn,
                                   void *arg, cancel_token t,
                                   cancel_parallel_options *opts);

/* Filter: keep the items for which pred returns 1 (0: drop; negative: an
 * error), in their original order, in a new array *out (free(3) it) of
 * *count items.  Canceled or failed: *out = NULL and *count = 0. */
typedef int cancel_pred_fn(const void *item, void *arg, cancel_token t);
CANCEL_API int cancel_parallel_filter(cancel_pool *pool, const void *in,
                                      size_t n, size_t size, void **out,
                                      size_t *count, cancel_pred_fn *pred,
                                      void *arg, cancel_token t,
                                      cancel_parallel_options *opts);

/* Reduce: the input is cut in blocks; each block's accumulator starts as a
 * copy of identity (acc_size bytes), fold(acc, item, arg, t) folds each of
 * its items in, and combine(acc, other, arg) then merges the blocks in
 * order on the calling thread; the result goes to *result.  fold and
 * combine must make an associative reduction.  Canceled or failed:
 * *result is unspecified. */
typedef int cancel_fold_fn(void *acc, const void *item, void *arg,
                           cancel_token t);
typedef void cancel_combine_fn(void *acc, const void *other, void *arg);
CANCEL_API int cancel_parallel_reduce(cancel_pool *pool, const void *in,
                                      size_t n, size_t size, void *result,
                                      const void *identity, size_t acc_size,
                                      cancel_fold_fn *fold,
                                      cancel_combine_fn *combine, void *arg,
                                      cancel_token t,
                                      cancel_parallel_options *opts);

/* Sort n items of `size` bytes in place by cmp (stable: a merge sort).
 * Cancellation is checked every few thousand comparisons.  Canceled: the
 * array holds the same items in an unspecified order.  Allocates a buffer
 * of n * size bytes. */
typedef int cancel_cmp_fn(const void *a, const void *b, void *arg);
CANCEL_API int cancel_parallel_sort(cancel_pool *pool, void *base, size_t n,
                                    size_t size, cancel_cmp_fn *cmp,
                                    void *arg, cancel_token t,
                                    cancel_parallel_options *opts);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_TASK_H */
