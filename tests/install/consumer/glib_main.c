/* A consumer of the installed GLib bridge, built by tests/install/run.sh
 * through `pkg-config cancel-glib` and find_package(cancel_glib): a
 * GCancellable follows a token, and a source follows a GCancellable. */
#include <cancel/cancel.h>
#include <cancel/cancel_glib.h>
#include <errno.h>
#include <stdio.h>

int main(void)
{
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        return 1;
    GCancellable *c = cancel_glib_cancellable_new(cancel_source_token(src));
    if (g_cancellable_is_cancelled(c))
        return 1;
    cancel_source_cancel(src);
    if (!g_cancellable_is_cancelled(c)) /* canceled on the canceling thread */
        return 1;
    g_object_unref(c);
    cancel_source_free(src);

    GCancellable *g = g_cancellable_new();
    cancel_source *from = cancel_glib_source_new(g);
    if (from == NULL || cancel_check(cancel_source_token(from)) != 0)
        return 1;
    g_cancellable_cancel(g);
    int err = cancel_check(cancel_source_token(from));
    cancel_glib_source_free(from);
    g_object_unref(g);
    if (err != -ECANCELED)
        return 1;
    printf("consumer glib: GCancellable <-> token both ways (%s)\n",
           cancel_strerror(err));
    return 0;
}
