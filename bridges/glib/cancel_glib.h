/* cancel_glib: libcancel and GLib/GIO, both ways.
 *
 *   - cancel_glib_cancellable_new(t): a GCancellable that is canceled when
 *     the token t is - to hand a libcancel token to any GIO call
 *     (g_input_stream_read_async, g_file_copy, g_task_run_in_thread, ...).
 *     cancel_glib_cancellable_new_on(t, context) does the same, but
 *     cancels it on the thread of a GMainContext.
 *
 *   - cancel_glib_source_new(c): a cancel_source that is canceled when the
 *     GCancellable c is - to hand a GLib cancellation to libcancel's waits,
 *     I/O, tasks and callbacks.  Free it with cancel_glib_source_free.
 *
 *   - cancel_glib_post: a cancel_post_fn that runs a function on a
 *     GMainContext's thread, for cancel_register_on:
 *
 *         cancel_register_on(t, &reg, fn, arg, cancel_glib_post, context);
 *
 *     runs fn(arg) on the thread that iterates `context` (a GTK main loop,
 *     a worker's own context) once t is canceled.
 *
 * Threads.  GCancellable is thread-safe: g_cancellable_cancel may be called
 * from any thread, and it emits "cancelled" - and runs the callbacks of
 * g_cancellable_connect - synchronously on the thread that calls it.  So a
 * cancellation crosses the bridge on the canceling thread in both
 * directions, with no hop, exactly as libcancel's own callbacks run on the
 * canceling thread.  Where code must run on a particular GMainContext (GTK
 * widgets, objects confined to one thread), use
 * cancel_glib_cancellable_new_on, or register the code with
 * cancel_register_on + cancel_glib_post.
 *
 * A GLib bug to know of: up to at least GLib 2.74, the GCancellableSource
 * that GIO's asynchronous operations attach to their context leaks (about
 * 120 bytes) when it is destroyed on that context while another thread is
 * still inside g_cancellable_cancel for it - a window of microseconds
 * after the operation's callback.  Canceling on the operation's own
 * context closes it: prefer cancel_glib_cancellable_new_on(t, context) for
 * asynchronous GIO calls whose token is canceled from other threads.
 *
 * Memory: GLib aborts the process when it cannot allocate (g_malloc); the
 * functions here follow GLib in that.
 *
 * Build: link the cancel_glib library (CMake target cancel_glib), libcancel
 * and gio-2.0 (pkg-config gio-2.0).  Installed, it is <cancel/cancel_glib.h>
 * with `pkg-config --cflags --libs cancel-glib`, or find_package(cancel_glib)
 * and the target cancel::cancel_glib.
 */
#ifndef CANCEL_GLIB_H
#define CANCEL_GLIB_H

#include <gio/gio.h>

#include <cancel/token.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A new GCancellable that is canceled (g_cancellable_cancel) when t is:
 * before this call returns if t is canceled already; never for CANCEL_NONE.
 * Only that direction: canceling the GCancellable does not cancel t.
 * Returns a new reference; never NULL (GLib aborts on out-of-memory).
 * Thread safety: any thread; t may be canceled concurrently.
 * Ownership: the caller owns the reference (g_object_unref).  t is borrowed
 * for the call: the registration on t lives as long as the GCancellable and
 * is removed when it is finalized, so t's source may be freed first (a
 * source freed uncanceled then never cancels it), and the GCancellable may
 * be dropped first (a later cancel of t does nothing for it).  Dropping the
 * last reference while t is being canceled on another thread is safe:
 * either that cancel completes first or it no longer sees the GCancellable.
 * Callback context: the GCancellable is canceled on the thread that cancels
 * t (inside cancel_source_cancel, or on libcancel's timer or signal thread
 * for cancel_source_cancel_after / cancel_source_on_signal), so its
 * "cancelled" handlers and g_cancellable_connect callbacks run there, with
 * no lock of libcancel held; they may unref the GCancellable, and call any
 * libcancel function.  GIO operations that watch it complete on their own
 * GMainContext as usual. */
CANCEL_API GCancellable *cancel_glib_cancellable_new(cancel_token t);

/* The same, except that the GCancellable is canceled on the thread that
 * iterates context (NULL: the global default context), through
 * cancel_glib_post: later, never inside this call - also when t is
 * canceled already - so its "cancelled" handlers run there.
 * Returns a new reference; never NULL.
 * Thread safety: any thread.
 * Ownership: as cancel_glib_cancellable_new; and context must stay alive
 * until a cancellation posted to it has run (see cancel_glib_post).  The
 * GCancellable may be dropped while its cancellation is pending: the
 * posted call then finds it gone and does nothing.
 * Callback context: "cancelled" handlers run on the context's thread,
 * inside its dispatch, no lock of libcancel held. */
CANCEL_API GCancellable *cancel_glib_cancellable_new_on(cancel_token t,
                                                        GMainContext *context);

/* A new cancel_source that is canceled, with reason ECANCELED, when c is:
 * before this call returns if c is canceled already.  Only that direction:
 * canceling the source does not cancel c.  A g_cancellable_reset of c does
 * not reset the source (libcancel's cancellation is final); a later
 * cancellation of c is then a no-op for it.
 * Returns NULL with errno = EINVAL when c is not a GCancellable (NULL
 * included), ENOMEM.
 * Thread safety: any thread; c may be canceled concurrently.
 * Ownership: the caller frees the source with cancel_glib_source_free, never
 * with cancel_source_free.  The source holds a reference to c until then.
 * Callback context: the source is canceled on the thread that cancels c,
 * inside g_cancellable_cancel (or inside this call when c is canceled
 * already), so the source's callbacks run there, with no lock of GLib
 * held. */
CANCEL_API cancel_source *cancel_glib_source_new(GCancellable *c);

/* Dispose a source of cancel_glib_source_new: disconnect it from its
 * GCancellable, drop the reference to it, and free the source as
 * cancel_source_free does (no cancel; registrations still on it never run).
 * Unlike g_cancellable_disconnect it never blocks, so it may be called from
 * inside one of the source's callbacks, on the thread that is canceling c.
 * A cancellation that c began on another thread before this call completes
 * (as with cancel_source_free); none starts after it returns.  NULL, and a
 * source that did not come from cancel_glib_source_new, are ignored.
 * Thread safety: the owner, once, when no other thread uses src. */
CANCEL_API void cancel_glib_source_free(cancel_source *src);

/* A cancel_post_fn: queue fn(arg) on the GMainContext ctx (NULL: the global
 * default context, g_main_context_default) and wake it.  fn runs once, on
 * the thread that iterates that context, at G_PRIORITY_DEFAULT, from an idle
 * source - never inside cancel_glib_post, even when called on the context's
 * own thread (g_main_context_invoke would run it at once there).  Functions
 * posted to one context run in the order of their posts.  A NULL fn is
 * ignored.
 * Thread safety: any thread.
 * Ownership: the context must stay alive until fn has run (it holds the
 * pending call; destroying the context drops it without running it), and
 * so must arg.
 * Callback context: fn runs on the context's thread, inside its dispatch,
 * no lock held; it may call any GLib or libcancel function. */
CANCEL_API void cancel_glib_post(void *ctx, cancel_callback *fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_GLIB_H */
