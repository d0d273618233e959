/* A consumer of an installed libcancel: built through pkg-config and through
 * find_package(cancel) by tests/install/run.sh. */
#include <cancel/cancel.h>
#include <errno.h>
#include <stdio.h>

static void on_cancel(void *arg)
{
    ++*(int *)arg;
}

int main(void)
{
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        return 1;
    int ran = 0;
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    cancel_register(cancel_source_token(src), &reg, on_cancel, &ran);
    cancel_source_cancel(src);
    int err = cancel_check(cancel_source_token(src));
    cancel_source_free(src);
    if (ran != 1 || err != -ECANCELED)
        return 1;
    printf("consumer: %s\n", cancel_strerror(err));
    return 0;
}
