/* cancel_glib: libcancel and GLib/GIO, both ways.  See cancel_glib.h.
 *
 * Token -> GCancellable (struct follow).  A libcancel registration on the
 * token - plain, or with cancel_glib_post for cancellable_new_on - cancels
 * the GCancellable.  The registration lives in a block attached to the
 * GCancellable (object data) whose destroy notify, at finalize, unregisters.
 * The callback must never touch a GCancellable that is being finalized, so
 * it holds only a GWeakRef: g_weak_ref_get gives a strong reference or
 * NULL, atomically with respect to the last g_object_unref.
 * The block has two references: the GCancellable's and the callback's.
 * The callback drops its own when it has run.  The finalize unregisters:
 * true means the callback will never run, so it drops both; false means it
 * ran, runs (a plain cancel_unregister waits for it on another thread, and
 * returns at once inside it, when the callback's own g_object_unref is the
 * last), or is posted and will run later - it drops one, and whichever side
 * is last frees the block.
 *
 * GCancellable -> source (struct mirror).  g_cancellable_connect attaches a
 * handler whose data is the mirror block.  cancel_glib_source_free cannot
 * use g_cancellable_disconnect: it blocks until a running handler returns,
 * which deadlocks when the free is called from a callback of the source
 * (the handler is below it on the stack).  It disconnects with
 * g_signal_handler_disconnect, which never blocks, and the block is
 * reference-counted: one reference for the owner (dropped by the free), one
 * for the handler's closure (dropped by the closure's destroy notify, which
 * GLib calls only once no emission uses the handler any more).  The last
 * reference frees the source - so no handler can be inside
 * cancel_source_cancel on it - and drops the GCancellable.  The owner finds
 * the block from the source through a table (src -> block) under table_mu.
 *
 * Memory ordering.  GLib synchronises its own threads with futexes that
 * ThreadSanitizer does not see, so what this file hands from one thread to
 * another through GLib is also published with C11 atomics (release by the
 * writer, acquire by the reader): the mirror's source pointer, and each
 * post's function and argument.  Everything a thread wrote before it
 * canceled the token or the GCancellable happens-before the other side's
 * callbacks (libcancel's and GLib's guarantees, and these atomics).
 *
 * Lock order: table_mu is a leaf; nothing is called with it held.
 */
#include "cancel_glib.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* ---- token -> GCancellable ---------------------------------------------- */

struct follow {
    cancel_registration reg;
    GWeakRef cancellable;
    atomic_int refs;
};

static const char follow_key[] = "cancel-glib-follow";

static void follow_unref(struct follow *f, int n)
{
    if (atomic_fetch_sub_explicit(&f->refs, n, memory_order_acq_rel) != n)
        return;
    g_weak_ref_clear(&f->cancellable);
    g_free(f);
}

static void follow_cancel(void *arg)
{
    struct follow *f = arg;
    GCancellable *c = g_weak_ref_get(&f->cancellable);
    if (c != NULL) {
        g_cancellable_cancel(c);
        g_object_unref(c); /* may be the last: finalize drops its ref */
    }
    follow_unref(f, 1);
}

static void follow_finalized(gpointer data)
{
    struct follow *f = data;
    follow_unref(f, cancel_unregister(&f->reg) ? 2 : 1);
}

static GCancellable *follow_new(cancel_token t, bool post, void *ctx)
{
    GCancellable *c = g_cancellable_new();
    if (!cancel_can_be_canceled(t))
        return c;
    struct follow *f = g_new0(struct follow, 1); /* reg zeroed: INIT */
    atomic_init(&f->refs, 2);
    g_weak_ref_init(&f->cancellable, c);
    g_object_set_data_full(G_OBJECT(c), follow_key, f, follow_finalized);
    /* On a canceled token follow_cancel runs (or is posted) now;
     * -ECANCELED is then not an error. */
    if (post)
        (void)cancel_register_on(t, &f->reg, follow_cancel, f, cancel_glib_post,
                                 ctx);
    else
        (void)cancel_register(t, &f->reg, follow_cancel, f);
    return c;
}

GCancellable *cancel_glib_cancellable_new(cancel_token t)
{
    return follow_new(t, false, NULL);
}

GCancellable *cancel_glib_cancellable_new_on(cancel_token t,
                                             GMainContext *context)
{
    return follow_new(t, true, context);
}

/* ---- GCancellable -> source --------------------------------------------- */

struct mirror {
    atomic_int refs;
    _Atomic(cancel_source *) src; /* published before the connect */
    GCancellable *cancellable;    /* a reference, dropped with the block */
    gulong handler;               /* 0: not connected (c was canceled) */
};

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *table; /* cancel_source * -> struct mirror *, table_mu */

static void mirror_unref(gpointer data)
{
    struct mirror *m = data;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    cancel_source_free(atomic_load_explicit(&m->src, memory_order_relaxed));
    g_object_unref(m->cancellable);
    free(m);
}

static void mirror_cancelled(GCancellable *c, gpointer data)
{
    struct mirror *m = data;
    (void)c;
    cancel_source_cancel(atomic_load_explicit(&m->src, memory_order_acquire));
}

cancel_source *cancel_glib_source_new(GCancellable *c)
{
    if (!G_IS_CANCELLABLE(c)) {
        errno = EINVAL;
        return NULL;
    }
    struct mirror *m = malloc(sizeof(*m));
    if (m == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    cancel_source *src = cancel_source_new();
    if (src == NULL) {
        free(m);
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&m->refs, 2); /* the owner's and the closure's */
    m->cancellable = g_object_ref(c);
    atomic_store_explicit(&m->src, src, memory_order_release);

    pthread_mutex_lock(&table_mu);
    if (table == NULL)
        table = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_hash_table_insert(table, src, m);
    pthread_mutex_unlock(&table_mu);

    /* On a canceled c, GLib runs mirror_cancelled and then mirror_unref
     * right here, and returns 0. */
    m->handler =
        g_cancellable_connect(c, G_CALLBACK(mirror_cancelled), m, mirror_unref);
    return src;
}

void cancel_glib_source_free(cancel_source *src)
{
    if (src == NULL)
        return;
    pthread_mutex_lock(&table_mu);
    struct mirror *m = table != NULL ? g_hash_table_lookup(table, src) : NULL;
    if (m != NULL)
        g_hash_table_remove(table, src);
    pthread_mutex_unlock(&table_mu);
    if (m == NULL)
        return;
    /* Never blocks, also inside the emission: the closure (and its
     * reference to m) goes once no emission holds it. */
    if (m->handler != 0)
        g_signal_handler_disconnect(m->cancellable, m->handler);
    mirror_unref(m);
}

/* ---- posting to a GMainContext ------------------------------------------ */

struct post {
    cancel_callback *fn;
    void *arg;
    atomic_int ready; /* publishes fn and arg to the context's thread */
};

static gboolean post_dispatch(gpointer data)
{
    struct post *p = data;
    (void)atomic_load_explicit(&p->ready, memory_order_acquire);
    p->fn(p->arg);
    return G_SOURCE_REMOVE;
}

void cancel_glib_post(void *ctx, cancel_callback *fn, void *arg)
{
    if (fn == NULL)
        return;
    GMainContext *context = ctx != NULL ? ctx : g_main_context_default();
    struct post *p = g_new(struct post, 1);
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->ready, 1, memory_order_release);
    /* An idle source always queues; g_main_context_invoke would run fn at
     * once on the context's own thread, inside the cancel. */
    GSource *s = g_idle_source_new();
    g_source_set_priority(s, G_PRIORITY_DEFAULT);
    g_source_set_callback(s, post_dispatch, p, g_free);
    g_source_set_name(s, "cancel_glib_post");
    g_source_attach(s, context);
    g_source_unref(s);
}
