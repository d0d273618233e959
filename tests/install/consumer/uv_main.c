/* A consumer of the installed libuv bridge, built by tests/install/run.sh
 * through `pkg-config cancel-uv` and find_package(cancel_uv): a watch on a
 * loop runs its callback on the loop once the token is canceled. */
#define _POSIX_C_SOURCE 200809L /* uv.h under -std=c11 */
#include <cancel/cancel.h>
#include <cancel/cancel_uv.h>
#include <errno.h>
#include <stdio.h>

static void on_cancel(cancel_uv_watch *w, void *arg)
{
    ++*(int *)arg;
    cancel_uv_watch_close(w, NULL);
}

int main(void)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return 1;
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        return 1;
    int ran = 0;
    cancel_uv_watch watch;
    if (cancel_uv_watch_start(&loop, &watch, cancel_source_token(src),
                              on_cancel, &ran) != 0)
        return 1;
    cancel_source_cancel(src);
    if (ran != 0) /* never inside the cancel: on the loop */
        return 1;
    uv_run(&loop, UV_RUN_DEFAULT); /* the watch keeps it running until then */
    int err = cancel_check(cancel_source_token(src));
    cancel_source_free(src);
    if (uv_loop_close(&loop) != 0 || ran != 1 || err != -ECANCELED)
        return 1;
    printf("consumer uv: watch ran on the loop (%s)\n", cancel_strerror(err));
    return 0;
}
