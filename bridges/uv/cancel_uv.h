/* cancel_uv: libcancel and libuv, both ways.
 *
 * A token reaches a libuv loop in two ways:
 *
 *   - cancel_uv_watch: a handle of the loop that calls on_cancel on the
 *     loop's thread once a token is canceled.  It polls the token's wait
 *     handle (cancel_token_fd), so no thread of libcancel ever touches the
 *     loop: the kernel does the hop.  on_cancel may then uv_cancel() a
 *     uv_work_t / uv_fs_t / uv_getaddrinfo_t that has not started, or
 *     uv_close() a handle - libuv functions that only the loop's thread may
 *     call.
 *
 *   - cancel_uv_executor + cancel_uv_post: an executor for
 *     cancel_register_on (a registration with a SynchronizationContext):
 *
 *         cancel_register_on(t, &reg, fn, arg, cancel_uv_post, executor);
 *
 *     runs fn(arg) on the loop's thread once t is canceled.  The canceling
 *     thread only queues and wakes the loop (uv_async_send).  One executor
 *     serves any number of registrations and tokens.
 *
 * And a libuv event reaches a token through a cancel_uv_trigger, which
 * cancels a source when a signal arrives (cancel_uv_cancel_on_signal) or a
 * timer of the loop expires (cancel_uv_cancel_after).  The source's
 * callbacks then run on the loop's thread, inside uv_run, where they may
 * call any libuv function of that loop.
 *
 * Conventions are libcancel's and libuv's, which agree: 0 on success, a
 * negative errno value on failure (on Unix libuv's UV_E* codes are the
 * negative errno values, so UV_ECANCELED == -ECANCELED).  Handles live in
 * the caller's storage (cancel_uv_watch, cancel_uv_trigger) and are closed
 * with a close callback, after which the storage may be freed - as with any
 * uv_handle_t.  Their first member is their libuv handle, so
 * (uv_handle_t *)w may be given to uv_ref, uv_unref, uv_is_active and
 * uv_has_ref; close them only with their own _close function.  Like every
 * libuv handle, an active watch or trigger keeps uv_run(UV_RUN_DEFAULT)
 * running; the executor does not (see cancel_uv_executor_new).
 *
 * Thread safety: as libuv's: everything here is called on the loop's
 * thread, except cancel_uv_post, which any thread may call (it is what
 * cancel_register_on calls on the canceling thread).
 *
 * Build: link the cancel_uv library (CMake target cancel_uv), libcancel and
 * libuv (pkg-config libuv).  uv.h needs the POSIX types, so under a strict
 * -std=c11 compile with -D_POSIX_C_SOURCE=200809L (or _GNU_SOURCE).
 * Installed, it is <cancel/cancel_uv.h> with `pkg-config --cflags --libs
 * cancel-uv`, or find_package(cancel_uv) and the target cancel::cancel_uv.
 */
#ifndef CANCEL_UV_H
#define CANCEL_UV_H

#include <stdint.h>

#include <uv.h>

#include <cancel/token.h>

#ifdef __cplusplus
extern "C" {
#endif

/* -------------------------------------------------------------------------
 * Watches: a token's cancellation, delivered on the loop's thread
 * ---------------------------------------------------------------------- */

typedef struct cancel_uv_watch cancel_uv_watch;

/* Called once, on the loop's thread, when the watched token is canceled. */
typedef void cancel_uv_watch_cb(cancel_uv_watch *w, void *arg);

/* Called on the loop's thread once a closed watch may be freed. */
typedef void cancel_uv_watch_close_cb(cancel_uv_watch *w);

/* Caller storage for one watch.  Fields private, except that the first
 * member is the watch's libuv handle (see the top of this file). */
struct cancel_uv_watch {
    union {
        uv_handle_t handle;
        uv_poll_t poll;
        uv_idle_t idle; /* CANCEL_NONE: a handle that never starts */
    } u_;
    cancel_uv_watch_cb *on_cancel_;
    void *arg_;
    cancel_uv_watch_close_cb *close_cb_;
    int fd_;
    int state_;
};

/* Start watching t on loop: on_cancel(w, arg) runs once, on the loop's
 * thread, inside uv_run, after t is canceled - on a later iteration of the
 * loop, never inside this call, also when t is canceled already.  The watch
 * then stops (it stays a handle of the loop until closed).  On CANCEL_NONE
 * the watch is inert: on_cancel never runs and it does not keep the loop
 * alive.
 * Returns 0; -EINVAL for NULL loop, w or on_cancel; -EMFILE, -ENFILE or
 * -ENOMEM when the token's fd cannot be created or duplicated; another
 * libuv error of uv_poll_init.  On an error w is not a handle (nothing to
 * close).
 * Thread safety: the loop's thread; t may be canceled concurrently from any
 * thread.
 * Ownership: t is borrowed for the call only - the watch polls its own
 * duplicate of cancel_token_fd(t), so t's source may be freed while the
 * watch is active (a source freed uncanceled never fires).  w and arg must
 * stay valid until the watch is closed (see cancel_uv_watch_close).
 * Callback context: on_cancel runs on the loop's thread with no lock held;
 * it may call any libuv function of the loop and any libcancel function,
 * and may close w itself. */
CANCEL_API int cancel_uv_watch_start(uv_loop_t *loop, cancel_uv_watch *w,
                                     cancel_token t,
                                     cancel_uv_watch_cb *on_cancel, void *arg);

/* Stop and close the watch.  From this call on, on_cancel never runs (if it
 * has not run yet).  close_cb(w), if not NULL, runs on a later iteration of
 * the loop (as uv_close's callback does); after it - or, without a
 * close_cb, once the loop has run that iteration - w may be freed.  NULL w,
 * or a watch that is already closing, is a no-op.
 * Thread safety: the loop's thread; also from inside on_cancel.
 * Ownership: the watch closes its fd; the token's own fd is untouched. */
CANCEL_API void cancel_uv_watch_close(cancel_uv_watch *w,
                                      cancel_uv_watch_close_cb *close_cb);

/* -------------------------------------------------------------------------
 * Executors: cancel_register_on callbacks, run on the loop's thread
 * ---------------------------------------------------------------------- */

/* Opaque: a queue and a uv_async_t of one loop. */
typedef struct cancel_uv_executor cancel_uv_executor;

/* A new executor for loop.  Its uv_async_t is unreferenced, like libuv's
 * own thread-pool handle: it never keeps uv_run running by itself - what
 * you guard with it (a request, a handle) does.
 * Returns NULL with errno = EINVAL (NULL loop), ENOMEM, or the (positive)
 * errno of uv_async_init.
 * Thread safety: the loop's thread.
 * Ownership: the caller closes it with cancel_uv_executor_close. */
CANCEL_API cancel_uv_executor *cancel_uv_executor_new(uv_loop_t *loop);

/* A cancel_post_fn: queue fn(arg) to run on the executor's loop thread and
 * wake the loop.  ctx is the cancel_uv_executor.  The functions posted run
 * in the order of their posts, each once, inside uv_run - never inside
 * cancel_uv_post, even when it is called on the loop's thread.
 * It allocates one small node; as a post has no way to report an error it
 * aborts the process, with a message, if that fails (as GLib's g_malloc
 * does): dropping a cancellation callback, or running it on the wrong
 * thread, would be worse.  A NULL ctx or fn is ignored.
 * Thread safety: any thread, concurrently with the loop.
 * Ownership: the executor must not be closed while a registration can still
 * post to it (unregister first: cancel_unregister returns after any post
 * under way has returned).  arg must stay valid until fn ran.
 * Callback context: fn runs on the loop's thread, no lock held; it may call
 * any libuv function of the loop and any libcancel function (also
 * cancel_uv_post). */
CANCEL_API void cancel_uv_post(void *ctx, cancel_callback *fn, void *arg);

/* Close the executor: first run, on this thread, every function that was
 * posted and has not run yet (the executor owns them once posted), then
 * close its handle; its memory is freed on a later iteration of the loop,
 * so run the loop once more before uv_loop_close.  NULL is a no-op.
 * Thread safety: the loop's thread, once no registration can post to it;
 * also from inside a posted function (the rest of the queue then runs
 * before close returns). */
CANCEL_API void cancel_uv_executor_close(cancel_uv_executor *ex);

/* -------------------------------------------------------------------------
 * Triggers: a libuv event cancels a source
 * ---------------------------------------------------------------------- */

typedef struct cancel_uv_trigger cancel_uv_trigger;

/* Called on the loop's thread once a closed trigger may be freed. */
typedef void cancel_uv_trigger_close_cb(cancel_uv_trigger *tr);

/* Caller storage for one trigger.  Fields private, except that the first
 * member is the trigger's libuv handle (see the top of this file). */
struct cancel_uv_trigger {
    union {
        uv_handle_t handle;
        uv_signal_t signal;
        uv_timer_t timer;
    } u_;
    cancel_source *src_;
    cancel_uv_trigger_close_cb *close_cb_;
    int state_;
};

/* The first delivery of signum to the process cancels src with reason
 * EINTR, on the loop's thread (uv_signal_start_oneshot): src's callbacks
 * run there, inside uv_run.  As with cancel_source_on_signal, the handler
 * is reset the moment the signal arrives (SA_RESETHAND), so a second Ctrl-C
 * gets the default action even while the callbacks run; libuv then leaves
 * the signal at SIG_DFL, not at what it was before.
 * Returns 0; -EINVAL for NULL loop, tr or src, or an invalid signum
 * (SIGKILL, SIGSTOP, ...: libuv's error); on an error tr is not a handle.
 * Thread safety: the loop's thread.
 * Ownership: src is borrowed: close the trigger before freeing src.  tr
 * must stay valid until closed.
 * Callback context: src's callbacks run on the loop's thread, no lock held,
 * and may call libuv functions of the loop, and close tr. */
CANCEL_API int cancel_uv_cancel_on_signal(uv_loop_t *loop,
                                          cancel_uv_trigger *tr,
                                          cancel_source *src, int signum);

/* A timer of the loop cancels src with reason ETIMEDOUT after delay_ns,
 * rounded up to whole milliseconds, on the loop's clock (uv_now, not the
 * clock of cancel_clock_install); src's callbacks then run on the loop's
 * thread, inside uv_run.  A delay of 0 fires on the next iteration of the
 * loop, never inside this call.  A negative delay never fires (the trigger
 * is inert and does not keep the loop alive).
 * Returns 0; -EINVAL for NULL loop, tr or src; on an error tr is not a
 * handle.
 * Thread safety, ownership, callback context: as cancel_uv_cancel_on_signal. */
CANCEL_API int cancel_uv_cancel_after(uv_loop_t *loop, cancel_uv_trigger *tr,
                                      cancel_source *src, int64_t delay_ns);

/* Stop and close the trigger.  It no longer cancels src (a cancel that has
 * begun on this thread - this call from inside one of src's callbacks -
 * completes).  close_cb(tr), if not NULL, runs on a later iteration of the
 * loop; after it, tr may be freed.  NULL tr, or a trigger that is already
 * closing, is a no-op.  Thread safety: the loop's thread. */
CANCEL_API void cancel_uv_trigger_close(cancel_uv_trigger *tr,
                                        cancel_uv_trigger_close_cb *close_cb);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_UV_H */
