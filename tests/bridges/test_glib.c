/* Tests of the GLib bridge (bridges/glib/cancel_glib.h): a GCancellable
 * that follows a token, a source that follows a GCancellable, and
 * cancel_glib_post for cancel_register_on.
 *
 * They check on which thread things run, that a real GIO operation is
 * canceled through the bridge, that dropping either side first - also from
 * inside a callback, also racing a cancel on another thread - is clean
 * (ASan, TSan, libcancel's live-allocation count), and that nothing
 * deadlocks.  Other threads are ordered with harness gates, never sleeps.
 *
 * Shared state that GLib hands between threads is kept in C11 atomics or
 * read after pthread_join: GLib synchronises with futexes that TSan does
 * not see.
 */
#include "harness.h"

#include "cancel_glib.h"
#include "internal.h" /* cancel__alloc_live */

#include <gio/gunixinputstream.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* GLib is not built with ThreadSanitizer and locks with futexes TSan
 * cannot see, so the allocations it makes and frees on different threads
 * (a GSource attached by one thread, dispatched and freed by another) look
 * like races.  Ignore what GLib's own calls into malloc and free do - only
 * those: every access of the bridge and of these tests is still checked. */
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifdef TEST_TSAN
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "called_from_lib:libglib-2.0.so\n"
           "called_from_lib:libgobject-2.0.so\n"
           "called_from_lib:libgio-2.0.so\n";
}
#endif

/* ---- helpers ------------------------------------------------------------ */

struct canceler {
    cancel_source *src;        /* cancel this ... */
    GCancellable *cancellable; /* ... or this */
    harness_gate *after;       /* NULL: at once */
    pthread_t thread;
};

static void *canceler_main(void *p)
{
    struct canceler *c = p;
    if (c->after != NULL)
        harness_gate_wait(c->after);
    if (c->src != NULL)
        ASSERT_OK(cancel_source_cancel(c->src));
    else
        g_cancellable_cancel(c->cancellable);
    return NULL;
}

static void canceler_start(struct canceler *c, cancel_source *src,
                           GCancellable *cancellable, harness_gate *after)
{
    c->src = src;
    c->cancellable = cancellable;
    c->after = after;
    ASSERT_EQ(pthread_create(&c->thread, NULL, canceler_main, c), 0);
}

static pthread_t canceler_join(struct canceler *c)
{
    ASSERT_EQ(pthread_join(c->thread, NULL), 0);
    return c->thread;
}

/* A "cancelled" handler that records where it ran. */
struct handler_seen {
    atomic_int runs;
    pthread_t thread;
};

static void on_cancelled(GCancellable *c, gpointer data)
{
    (void)c;
    struct handler_seen *h = data;
    h->thread = pthread_self();
    atomic_fetch_add(&h->runs, 1);
}

/* ---- token -> GCancellable ---------------------------------------------- */

TEST(cancellable_follows_a_token_canceled_on_another_thread)
{
    cancel_source *src = cancel_source_new();
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    ASSERT_NOT_NULL(c);
    ASSERT_FALSE(g_cancellable_is_cancelled(c));
    struct handler_seen h = {0};
    g_signal_connect(c, "cancelled", G_CALLBACK(on_cancelled), &h);

    struct canceler k;
    canceler_start(&k, src, NULL, NULL);
    pthread_t canceling = canceler_join(&k);
    ASSERT_TRUE(g_cancellable_is_cancelled(c));
    ASSERT_EQ(atomic_load(&h.runs), 1);
    /* "cancelled" is emitted on the thread that canceled the token. */
    ASSERT_TRUE(pthread_equal(h.thread, canceling));
    /* The token itself is untouched by the bridge: its own reason. */
    ASSERT_ERR(cancel_reason(cancel_source_token(src)), ECANCELED);
    g_object_unref(c);
    cancel_source_free(src);
}

TEST(cancellable_of_a_canceled_token_is_canceled_at_once)
{
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    ASSERT_TRUE(g_cancellable_is_cancelled(c));
    g_object_unref(c);
    cancel_source_free(src);
}

TEST(cancellable_of_none_is_never_canceled)
{
    GCancellable *c = cancel_glib_cancellable_new(CANCEL_NONE);
    ASSERT_NOT_NULL(c);
    ASSERT_FALSE(g_cancellable_is_cancelled(c));
    g_object_unref(c);
}

TEST(canceling_the_cancellable_does_not_cancel_the_token)
{
    cancel_source *src = cancel_source_new();
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    g_cancellable_cancel(c);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    g_object_unref(c);
    ASSERT_OK(cancel_source_cancel(src)); /* nothing left registered */
    cancel_source_free(src);
}

TEST(cancellable_dropped_first_leaves_nothing_on_the_token)
{
    cancel_source *src = cancel_source_new();
    GCancellable *warm = cancel_glib_cancellable_new(cancel_source_token(src));
    g_object_unref(warm);
    long live = cancel__alloc_live();
    for (int i = 0; i < 100; i++) {
        GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
        g_object_unref(c);
    }
    ASSERT_EQ(cancel__alloc_live(), live);
    ASSERT_OK(cancel_source_cancel(src)); /* touches no freed block (ASan) */
    cancel_source_free(src);
}

TEST(cancellable_outlives_its_source)
{
    cancel_source *src = cancel_source_new();
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    cancel_source_free(src); /* freed uncanceled: never cancels c */
    ASSERT_FALSE(g_cancellable_is_cancelled(c));
    g_object_unref(c); /* unregisters from the freed source's state */
}

static void unref_in_handler(GCancellable *c, gpointer data)
{
    struct handler_seen *h = data;
    atomic_fetch_add(&h->runs, 1);
    g_object_unref(c); /* the caller's only reference */
}

TEST(last_reference_dropped_inside_cancelled_handler)
{
    /* The bridge's callback holds the only other reference, so the
     * GCancellable is finalized inside the token's callback, which then
     * unregisters itself from inside itself. */
    long live = cancel__alloc_live();
    cancel_source *src = cancel_source_new();
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    GWeakRef weak;
    g_weak_ref_init(&weak, c);
    struct handler_seen h = {0};
    g_signal_connect(c, "cancelled", G_CALLBACK(unref_in_handler), &h);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(atomic_load(&h.runs), 1);
    ASSERT_NULL(g_weak_ref_get(&weak)); /* finalized */
    g_weak_ref_clear(&weak);
    cancel_source_free(src);
    ASSERT_EQ(cancel__alloc_live(), live);
}

/* The last unref on one thread races the token's cancel on another. */
struct racer {
    GCancellable *c;
    harness_gate *go;
    pthread_t thread;
};

static void *unref_racer(void *p)
{
    struct racer *r = p;
    harness_gate_wait(r->go);
    g_object_unref(r->c);
    return NULL;
}

TEST(stress_last_unref_races_the_cancel)
{
    const int rounds = (int)harness_scale(2000);
    long live = cancel__alloc_live();
    for (int i = 0; i < rounds; i++) {
        cancel_source *src = cancel_source_new();
        GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
        harness_gate go;
        harness_gate_init(&go);
        struct racer r = {c, &go, 0};
        ASSERT_EQ(pthread_create(&r.thread, NULL, unref_racer, &r), 0);
        struct canceler k;
        canceler_start(&k, src, NULL, &go);
        harness_gate_open(&go);
        canceler_join(&k);
        ASSERT_EQ(pthread_join(r.thread, NULL), 0);
        harness_gate_destroy(&go);
        cancel_source_free(src);
    }
    ASSERT_EQ(cancel__alloc_live(), live);
}

/* Real GIO operations, canceled through the bridge. */

/* A blocking read of a pipe nobody writes to, in a thread of its own (the
 * direct GCancellable: GIO polls its fd next to the pipe's). */
struct blocking_read {
    GInputStream *in;
    GCancellable *c;
    harness_gate reading;
    gssize n;
    GError *error;
    pthread_t thread;
};

static void *blocking_reader(void *p)
{
    struct blocking_read *r = p;
    char buf[16];
    harness_gate_open(&r->reading);
    r->n = g_input_stream_read(r->in, buf, sizeof buf, r->c, &r->error);
    return NULL;
}

TEST(gio_blocking_read_in_a_thread_is_canceled_by_the_token)
{
    int p[2];
    ASSERT_OK(pipe(p));
    cancel_source *src = cancel_source_new();
    struct blocking_read r = {
        .in = g_unix_input_stream_new(p[0], TRUE),
        .c = cancel_glib_cancellable_new(cancel_source_token(src)),
    };
    harness_gate_init(&r.reading);
    ASSERT_EQ(pthread_create(&r.thread, NULL, blocking_reader, &r), 0);
    harness_gate_wait(&r.reading); /* in the read, or about to be */
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(pthread_join(r.thread, NULL), 0);
    ASSERT_EQ(r.n, -1);
    ASSERT_NOT_NULL(r.error);
    ASSERT_TRUE(g_error_matches(r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    g_error_free(r.error);
    g_object_unref(r.c);
    g_object_unref(r.in);
    close(p[1]);
    cancel_source_free(src);
    harness_gate_destroy(&r.reading);
}

/* An asynchronous read of a pipe nobody writes to, started on this
 * thread's own GMainContext, ends with G_IO_ERROR_CANCELLED once another
 * thread cancels the token: the GCancellable of cancellable_new_on is
 * canceled on that context, as GIO's asynchronous calls would have it (see
 * the GLib 2.74 leak in cancel_glib.h, which canceling from the other
 * thread directly runs into). */
struct read_op {
    GMainLoop *loop;
    GError *error;
    gssize n;
    pthread_t thread;
    int done;
};

static void read_done(GObject *stream, GAsyncResult *res, gpointer data)
{
    struct read_op *op = data;
    op->n = g_input_stream_read_finish(G_INPUT_STREAM(stream), res, &op->error);
    op->thread = pthread_self();
    op->done++;
    g_main_loop_quit(op->loop);
}

static gboolean open_gate_idle(gpointer data)
{
    harness_gate_open(data);
    return G_SOURCE_REMOVE;
}

TEST(gio_read_async_is_canceled_by_the_token_on_its_context)
{
    int p[2];
    ASSERT_OK(pipe(p));
    GInputStream *in = g_unix_input_stream_new(p[0], TRUE);
    GMainContext *ctx = g_main_context_new();
    g_main_context_push_thread_default(ctx);
    struct read_op op = {.loop = g_main_loop_new(ctx, FALSE)};

    cancel_source *src = cancel_source_new();
    GCancellable *c =
        cancel_glib_cancellable_new_on(cancel_source_token(src), ctx);
    struct handler_seen h = {0};
    g_signal_connect(c, "cancelled", G_CALLBACK(on_cancelled), &h);
    char buf[16];
    g_input_stream_read_async(in, buf, sizeof buf, G_PRIORITY_DEFAULT, c,
                              read_done, &op);
    /* Cancel once the loop runs (the read is then waiting on the pipe). */
    harness_gate running;
    harness_gate_init(&running);
    GSource *idle = g_idle_source_new();
    g_source_set_callback(idle, open_gate_idle, &running, NULL);
    g_source_attach(idle, ctx);
    g_source_unref(idle);
    struct canceler k;
    canceler_start(&k, src, NULL, &running);

    g_main_loop_run(op.loop);
    canceler_join(&k);
    ASSERT_EQ(op.done, 1);
    ASSERT_EQ(op.n, -1);
    ASSERT_NOT_NULL(op.error);
    ASSERT_TRUE(g_error_matches(op.error, G_IO_ERROR, G_IO_ERROR_CANCELLED));
    /* GIO completes on the context that started the read, and the
     * GCancellable was canceled there too. */
    ASSERT_TRUE(pthread_equal(op.thread, pthread_self()));
    ASSERT_EQ(atomic_load(&h.runs), 1);
    ASSERT_TRUE(pthread_equal(h.thread, pthread_self()));

    g_error_free(op.error);
    g_object_unref(c);
    cancel_source_free(src);
    g_object_unref(in);
    close(p[1]);
    g_main_loop_unref(op.loop);
    g_main_context_pop_thread_default(ctx);
    g_main_context_unref(ctx);
    harness_gate_destroy(&running);
}

/* ---- token -> GCancellable, canceled on a context ---------------------- */

TEST(cancellable_on_a_canceled_token_is_canceled_later_on_the_context)
{
    GMainContext *ctx = g_main_context_new();
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    GCancellable *c =
        cancel_glib_cancellable_new_on(cancel_source_token(src), ctx);
    ASSERT_FALSE(g_cancellable_is_cancelled(c)); /* posted, not yet run */
    struct handler_seen h = {0};
    g_signal_connect(c, "cancelled", G_CALLBACK(on_cancelled), &h);
    while (g_main_context_iteration(ctx, FALSE))
        ;
    ASSERT_TRUE(g_cancellable_is_cancelled(c));
    ASSERT_EQ(atomic_load(&h.runs), 1);
    ASSERT_TRUE(pthread_equal(h.thread, pthread_self()));
    g_object_unref(c);
    cancel_source_free(src);
    g_main_context_unref(ctx);
}

TEST(cancellable_on_dropped_while_its_cancel_is_pending)
{
    long live = cancel__alloc_live();
    GMainContext *ctx = g_main_context_new();
    cancel_source *src = cancel_source_new();
    GCancellable *c =
        cancel_glib_cancellable_new_on(cancel_source_token(src), ctx);
    ASSERT_OK(cancel_source_cancel(src)); /* posted to ctx */
    g_object_unref(c);                    /* gone before ctx runs it */
    while (g_main_context_iteration(ctx, FALSE))
        ;
    cancel_source_free(src);
    g_main_context_unref(ctx);
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(cancellable_on_dropped_before_the_cancel)
{
    long live = cancel__alloc_live();
    cancel_source *src = cancel_source_new();
    for (int i = 0; i < 50; i++)
        g_object_unref(
            cancel_glib_cancellable_new_on(cancel_source_token(src), NULL));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_FALSE(g_main_context_pending(NULL)); /* nothing was posted */
    cancel_source_free(src);
    ASSERT_EQ(cancel__alloc_live(), live);
}

/* ---- GCancellable -> source --------------------------------------------- */

struct cb_seen {
    atomic_int runs;
    pthread_t thread;
};

static void token_cb(void *arg)
{
    struct cb_seen *s = arg;
    s->thread = pthread_self();
    atomic_fetch_add(&s->runs, 1);
}

TEST(source_follows_a_cancellable_canceled_on_another_thread)
{
    GCancellable *c = g_cancellable_new();
    cancel_source *src = cancel_glib_source_new(c);
    ASSERT_NOT_NULL(src);
    cancel_token t = cancel_source_token(src);
    ASSERT_FALSE(cancel_requested(t));
    struct cb_seen s = {0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, token_cb, &s));

    struct canceler k;
    canceler_start(&k, NULL, c, NULL);
    pthread_t canceling = canceler_join(&k);
    ASSERT_TRUE(cancel_requested(t));
    ASSERT_ERR(cancel_reason(t), ECANCELED);
    ASSERT_EQ(atomic_load(&s.runs), 1);
    ASSERT_TRUE(pthread_equal(s.thread, canceling));
    ASSERT_OK(cancel_wait(t, 0) == -ECANCELED ? 0 : -1);
    cancel_glib_source_free(src);
    g_object_unref(c);
}

TEST(source_of_a_canceled_cancellable_is_canceled_at_once)
{
    long live = cancel__alloc_live();
    GCancellable *c = g_cancellable_new();
    g_cancellable_cancel(c);
    cancel_source *src = cancel_glib_source_new(c);
    ASSERT_NOT_NULL(src);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    cancel_glib_source_free(src);
    g_object_unref(c);
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(canceling_the_source_does_not_cancel_the_cancellable)
{
    GCancellable *c = g_cancellable_new();
    cancel_source *src = cancel_glib_source_new(c);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_FALSE(g_cancellable_is_cancelled(c));
    cancel_glib_source_free(src);
    g_object_unref(c);
}

TEST(source_freed_first_is_disconnected)
{
    long live = cancel__alloc_live();
    GCancellable *c = g_cancellable_new();
    guint sig = g_signal_lookup("cancelled", G_TYPE_CANCELLABLE);
    for (int i = 0; i < 50; i++) {
        cancel_source *src = cancel_glib_source_new(c);
        ASSERT_TRUE(g_signal_has_handler_pending(c, sig, 0, TRUE));
        cancel_glib_source_free(src);
        ASSERT_FALSE(g_signal_has_handler_pending(c, sig, 0, TRUE));
    }
    ASSERT_EQ(cancel__alloc_live(), live);
    g_cancellable_cancel(c); /* touches no freed source (ASan) */
    g_object_unref(c);
}

TEST(source_holds_its_cancellable)
{
    GCancellable *c = g_cancellable_new();
    GWeakRef weak;
    g_weak_ref_init(&weak, c);
    cancel_source *src = cancel_glib_source_new(c);
    g_object_unref(c); /* the source's reference keeps it */
    GCancellable *still = g_weak_ref_get(&weak);
    ASSERT_NOT_NULL(still);
    g_cancellable_cancel(still);
    g_object_unref(still);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src)));
    cancel_glib_source_free(src);
    ASSERT_NULL(g_weak_ref_get(&weak)); /* and lets it go */
    g_weak_ref_clear(&weak);
}

struct free_inside {
    cancel_source *src;
    int runs;
};

static void free_source_cb(void *arg)
{
    struct free_inside *f = arg;
    f->runs++;
    /* Inside g_cancellable_cancel's emission, on this thread:
     * g_cancellable_disconnect would deadlock here. */
    cancel_glib_source_free(f->src);
}

TEST(source_freed_inside_its_own_callback_does_not_deadlock)
{
    long live = cancel__alloc_live();
    GCancellable *c = g_cancellable_new();
    struct free_inside f = {cancel_glib_source_new(c), 0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(
        cancel_register(cancel_source_token(f.src), &reg, free_source_cb, &f));
    g_cancellable_cancel(c);
    ASSERT_EQ(f.runs, 1);
    ASSERT_EQ(cancel__alloc_live(), live); /* freed once the emission ended */
    g_object_unref(c);
}

TEST(source_reset_and_canceled_again_is_harmless)
{
    GCancellable *c = g_cancellable_new();
    cancel_source *src = cancel_glib_source_new(c);
    struct cb_seen s = {0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(src), &reg, token_cb, &s));
    g_cancellable_cancel(c);
    g_cancellable_reset(c);
    ASSERT_TRUE(cancel_requested(cancel_source_token(src))); /* final */
    g_cancellable_cancel(c);
    ASSERT_EQ(atomic_load(&s.runs), 1);
    cancel_glib_source_free(src);
    g_object_unref(c);
}

TEST(stress_source_free_races_the_cancel)
{
    const int rounds = (int)harness_scale(2000);
    long live = cancel__alloc_live();
    for (int i = 0; i < rounds; i++) {
        GCancellable *c = g_cancellable_new();
        cancel_source *src = cancel_glib_source_new(c);
        struct cb_seen s = {0};
        cancel_registration reg = CANCEL_REGISTRATION_INIT;
        ASSERT_OK(
            cancel_register(cancel_source_token(src), &reg, token_cb, &s));
        harness_gate go;
        harness_gate_init(&go);
        struct canceler k;
        canceler_start(&k, NULL, c, &go);
        harness_gate_open(&go);
        /* The registration's storage is ours: take it back first (waits
         * for token_cb if it runs), then free while c may be emitting. */
        cancel_unregister(&reg);
        cancel_glib_source_free(src);
        canceler_join(&k);
        ASSERT_LE(atomic_load(&s.runs), 1);
        g_object_unref(c);
        harness_gate_destroy(&go);
    }
    ASSERT_EQ(cancel__alloc_live(), live);
}

TEST(source_bad_input)
{
    errno = 0;
    ASSERT_NULL(cancel_glib_source_new(NULL));
    ASSERT_EQ(errno, EINVAL);
    cancel_glib_source_free(NULL); /* no-op */
    cancel_source *plain = cancel_source_new();
    cancel_glib_source_free(plain); /* not ours: ignored */
    ASSERT_FALSE(cancel_requested(cancel_source_token(plain)));
    cancel_source_free(plain);
}

/* ---- cancel_glib_post --------------------------------------------------- */

/* A GMainLoop on a thread of its own, with its own context.  What the
 * test hands to that thread goes through pthread_create or a harness gate,
 * which TSan sees, not through GLib alone. */
struct loop_thread {
    GMainContext *ctx;
    GMainLoop *loop;
    harness_gate running;
    pthread_t thread; /* the handle, for the join */
    pthread_t self;   /* the thread's own id, set before `running` opens */
};

static void *loop_thread_main(void *p)
{
    struct loop_thread *lt = p;
    lt->self = pthread_self();
    g_main_context_push_thread_default(lt->ctx);
    GSource *idle = g_idle_source_new();
    g_source_set_callback(idle, open_gate_idle, &lt->running, NULL);
    g_source_attach(idle, lt->ctx);
    g_source_unref(idle);
    g_main_loop_run(lt->loop);
    g_main_context_pop_thread_default(lt->ctx);
    return NULL;
}

/* Start the thread; first(data), if not NULL, is the first thing its loop
 * dispatches. */
static void loop_thread_start(struct loop_thread *lt, GSourceFunc first,
                              gpointer data)
{
    lt->ctx = g_main_context_new();
    lt->loop = g_main_loop_new(lt->ctx, FALSE);
    harness_gate_init(&lt->running);
    if (first != NULL) {
        GSource *idle = g_idle_source_new();
        g_source_set_callback(idle, first, data, NULL);
        g_source_attach(idle, lt->ctx);
        g_source_unref(idle);
    }
    ASSERT_EQ(pthread_create(&lt->thread, NULL, loop_thread_main, lt), 0);
    harness_gate_wait(&lt->running);
}

static void loop_thread_join(struct loop_thread *lt)
{
    ASSERT_EQ(pthread_join(lt->thread, NULL), 0);
    g_main_loop_unref(lt->loop);
    g_main_context_unref(lt->ctx);
    harness_gate_destroy(&lt->running);
}

struct posted {
    struct loop_thread *lt;
    char log[64];
    int n;          /* written on the loop thread; read after the join */
    int off_thread; /* runs not on lt's thread */
    int quit_after; /* quit lt's loop once n reaches it */
};

struct post_item {
    struct posted *p;
    char id;
};

static void log_item(void *arg)
{
    struct post_item *it = arg;
    struct posted *p = it->p;
    if (!pthread_equal(pthread_self(), p->lt->self))
        p->off_thread++;
    p->log[p->n++] = it->id;
    if (p->n == p->quit_after)
        g_main_loop_quit(p->lt->loop);
}

TEST(register_on_runs_fn_on_the_contexts_thread_in_post_order)
{
    struct loop_thread lt;
    loop_thread_start(&lt, NULL, NULL);
    cancel_source *src = cancel_source_new();
    struct posted p = {.lt = &lt, .quit_after = 3};
    struct post_item items[3] = {{&p, 'a'}, {&p, 'b'}, {&p, 'c'}};
    cancel_registration reg[3];
    for (int i = 0; i < 3; i++) {
        reg[i] = (cancel_registration)CANCEL_REGISTRATION_INIT;
        ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg[i],
                                     log_item, &items[i], cancel_glib_post,
                                     lt.ctx));
    }
    ASSERT_OK(cancel_source_cancel(src)); /* from this, another thread */
    loop_thread_join(&lt);
    /* Posted newest first (LIFO), run in the order of the posts. */
    ASSERT_EQ(strcmp(p.log, "cba"), 0);
    ASSERT_EQ(p.off_thread, 0);
    for (int i = 0; i < 3; i++)
        ASSERT_FALSE(cancel_unregister(&reg[i]));
    cancel_source_free(src);
}

/* Posting on the context's own thread queues; it never runs inline. */
struct inline_check {
    struct posted *p;
    struct post_item item;
    int n_right_after;
};

static gboolean post_from_loop_thread(gpointer data)
{
    struct inline_check *ic = data;
    cancel_glib_post(ic->p->lt->ctx, log_item, &ic->item);
    ic->n_right_after = ic->p->n;
    return G_SOURCE_REMOVE;
}

TEST(post_on_the_contexts_own_thread_never_runs_inside_post)
{
    struct loop_thread lt;
    struct posted p = {.lt = &lt, .quit_after = 1};
    struct inline_check ic = {&p, {&p, 'x'}, -1};
    loop_thread_start(&lt, post_from_loop_thread, &ic);
    loop_thread_join(&lt);
    ASSERT_EQ(ic.n_right_after, 0);
    ASSERT_EQ(p.n, 1);
    ASSERT_EQ(p.off_thread, 0);
}

TEST(post_to_the_default_context)
{
    /* ctx NULL: the global default context, iterated here. */
    struct loop_thread self = {.self = pthread_self()};
    struct posted p = {.lt = &self};
    struct post_item it = {&p, 'd'};
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, log_item, &it,
                                 cancel_glib_post, NULL));
    struct canceler k;
    canceler_start(&k, src, NULL, NULL);
    canceler_join(&k);
    ASSERT_EQ(p.n, 0); /* queued, not run by the canceling thread */
    while (p.n == 0)
        g_main_context_iteration(NULL, TRUE);
    ASSERT_EQ(p.n, 1);
    ASSERT_EQ(p.off_thread, 0);
    cancel_glib_post(NULL, NULL, NULL); /* NULL fn: ignored */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    cancel_source_free(src);
}

TEST(unregister_before_cancel_posts_nothing)
{
    struct loop_thread self = {.self = pthread_self()};
    struct posted p = {.lt = &self};
    struct post_item it = {&p, 'u'};
    cancel_source *src = cancel_source_new();
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register_on(cancel_source_token(src), &reg, log_item, &it,
                                 cancel_glib_post, NULL));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_FALSE(g_main_context_pending(NULL));
    ASSERT_EQ(p.n, 0);
    cancel_source_free(src);
}

/* Many threads cancel many tokens whose registrations post to one loop
 * thread: each function runs once, there. */
struct stress_item {
    atomic_int runs;
    atomic_int off_thread;
    pthread_t *loop;
    atomic_int *left;
    GMainLoop *quit;
};

static void stress_fn(void *arg)
{
    struct stress_item *it = arg;
    if (!pthread_equal(pthread_self(), *it->loop))
        atomic_fetch_add(&it->off_thread, 1);
    atomic_fetch_add(&it->runs, 1);
    if (atomic_fetch_sub(it->left, 1) == 1)
        g_main_loop_quit(it->quit);
}

struct stress_thread {
    cancel_source **src;
    int from, to;
    harness_gate *go;
    pthread_t thread;
};

static void *stress_canceler(void *p)
{
    struct stress_thread *t = p;
    harness_gate_wait(t->go);
    for (int i = t->from; i < t->to; i++)
        ASSERT_OK(cancel_source_cancel(t->src[i]));
    return NULL;
}

TEST(stress_many_threads_post_to_one_context)
{
    enum { THREADS = 4, PER = 3 };
    const int n = (int)harness_scale(2000);
    struct loop_thread lt;
    loop_thread_start(&lt, NULL, NULL);
    atomic_int left;
    atomic_init(&left, n * PER);
    cancel_source **src = calloc((size_t)n, sizeof(*src));
    struct stress_item *items = calloc((size_t)n * PER, sizeof(*items));
    cancel_registration *reg = calloc((size_t)n * PER, sizeof(*reg));
    ASSERT_NOT_NULL(src);
    ASSERT_NOT_NULL(items);
    ASSERT_NOT_NULL(reg);
    for (int i = 0; i < n; i++) {
        src[i] = cancel_source_new();
        for (int k = 0; k < PER; k++) {
            struct stress_item *it = &items[i * PER + k];
            it->loop = &lt.self;
            it->left = &left;
            it->quit = lt.loop;
            ASSERT_OK(cancel_register_on(cancel_source_token(src[i]),
                                         &reg[i * PER + k], stress_fn, it,
                                         cancel_glib_post, lt.ctx));
        }
    }
    harness_gate go;
    harness_gate_init(&go);
    struct stress_thread th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        th[t] = (struct stress_thread){src, n * t / THREADS,
                                       n * (t + 1) / THREADS, &go, 0};
        ASSERT_EQ(pthread_create(&th[t].thread, NULL, stress_canceler, &th[t]),
                  0);
    }
    harness_gate_open(&go);
    for (int t = 0; t < THREADS; t++)
        ASSERT_EQ(pthread_join(th[t].thread, NULL), 0);
    loop_thread_join(&lt); /* quits after the last function */
    for (int i = 0; i < n * PER; i++) {
        ASSERT_EQ(atomic_load(&items[i].runs), 1);
        ASSERT_EQ(atomic_load(&items[i].off_thread), 0);
    }
    for (int i = 0; i < n; i++)
        cancel_source_free(src[i]);
    free(src);
    free(items);
    free(reg);
    harness_gate_destroy(&go);
}

/* ---- both ways at once -------------------------------------------------- */

TEST(token_to_cancellable_to_token_round_trip)
{
    /* token A -> GCancellable -> source B: canceling A cancels B on the
     * same thread, inside cancel_source_cancel(A). */
    long live = cancel__alloc_live();
    cancel_source *a = cancel_source_new();
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(a));
    cancel_source *b = cancel_glib_source_new(c);
    struct cb_seen s = {0};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(cancel_source_token(b), &reg, token_cb, &s));
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_EQ(atomic_load(&s.runs), 1);
    ASSERT_TRUE(pthread_equal(s.thread, pthread_self()));
    cancel_glib_source_free(b);
    g_object_unref(c);
    cancel_source_free(a);
    ASSERT_EQ(cancel__alloc_live(), live);
}
