/* E2 - object cancellation through callbacks.
 *
 * A port of the "Object cancellation" example of .NET's "Cancellation in
 * Managed Threads": objects that have their own cancel method register it on
 * one token, and a single cancel of the source calls every one of them -
 * newest first, synchronously, on the thread that canceled, before
 * cancel_source_cancel returns.  Each object embeds its cancel_registration,
 * so registering never allocates.
 *
 * Usage:
 *   e2_object_callbacks             the documented output:
 *                                       Object 3 Cancel callback
 *                                       Object 2 Cancel callback
 *                                       Object 1 Cancel callback
 *   e2_object_callbacks --variants  what else the model promises:
 *                                   A. a second cancel calls nothing;
 *                                   B. an unregistered callback never runs;
 *                                   C. a callback registered after the cancel
 *                                      runs inside cancel_register, which
 *                                      returns -ECANCELED;
 *                                   D. canceled from another thread, the
 *                                      callbacks run on that thread.
 *
 * The program checks each promise itself - how often each callback ran, on
 * which thread, and that it ran inside the library call - and on a broken
 * promise prints why on stderr and exits 1.  Its tests compare the exact
 * output of both modes.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not part of the port: the error helpers. */
#define EXAMPLE_NAME "e2_object_callbacks"
#include "script.h"

/* A user-defined object with its own method for cancellation. */
struct cancelable_object {
    int id;
    cancel_registration reg; /* ties cancelable_object_cancel to a token */

    /* Bookkeeping for the checks: how often Cancel ran, on which thread,
     * and whether that thread was inside a library call at the time. */
    int calls;
    pthread_t ran_on;
    bool ran_inside_call;
};

/* Where the library is being called from.  Only the thread that makes the
 * call writes it, and the callbacks read it on that same thread. */
static struct {
    pthread_t thread;
    bool inside;
} call_site;

/* CancelableObject.Cancel, in the shape of a cancel_callback. */
static void cancelable_object_cancel(void *arg)
{
    struct cancelable_object *obj = arg;

    printf("Object %d Cancel callback\n", obj->id);
    obj->calls++;
    obj->ran_on = pthread_self();
    obj->ran_inside_call =
        call_site.inside && pthread_equal(call_site.thread, pthread_self());
}

static void cancelable_object_init(struct cancelable_object *obj, int id)
{
    *obj =
        (struct cancelable_object){.id = id, .reg = CANCEL_REGISTRATION_INIT};
}

/* token.Register(() => obj.Cancel()) on a token that is not canceled yet. */
static void register_object(cancel_token token, struct cancelable_object *obj)
{
    int err = cancel_register(token, &obj->reg, cancelable_object_cancel, obj);
    if (err != 0)
        fail_err("cancel_register", err);
}

/* cts.Cancel(), noting for the checks that this thread is inside it. */
static void cancel_here(cancel_source *cts)
{
    call_site.thread = pthread_self();
    call_site.inside = true;
    int err = cancel_source_cancel(cts);
    call_site.inside = false;
    if (err != 0)
        fail_err("cancel_source_cancel", err);
}

/* The object's Cancel ran exactly `calls` times; if it ran, then on
 * `thread` and inside the library call that thread was making. */
static void expect_calls(const struct cancelable_object *obj, int calls,
                         pthread_t thread)
{
    char msg[128];

    if (obj->calls != calls) {
        snprintf(msg, sizeof msg, "object %d: Cancel ran %d times, not %d",
                 obj->id, obj->calls, calls);
        fail(msg);
    }
    if (calls > 0 && !pthread_equal(obj->ran_on, thread)) {
        snprintf(msg, sizeof msg, "object %d: Cancel ran on another thread",
                 obj->id);
        fail(msg);
    }
    if (calls > 0 && !obj->ran_inside_call) {
        snprintf(msg, sizeof msg,
                 "object %d: Cancel did not run inside the library call",
                 obj->id);
        fail(msg);
    }
}

static cancel_source *new_source(void)
{
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);
    return cts;
}

/* The example as the documentation shows it. */
static void documented_example(void)
{
    cancel_source *cts = new_source();
    cancel_token token = cancel_source_token(cts);

    /* User-defined objects with their own method for cancellation. */
    struct cancelable_object obj1, obj2, obj3;
    cancelable_object_init(&obj1, 1);
    cancelable_object_init(&obj2, 2);
    cancelable_object_init(&obj3, 3);

    /* Register each object's cancel method with the token. */
    register_object(token, &obj1);
    register_object(token, &obj2);
    register_object(token, &obj3);

    /* Request cancellation: prints objects 3, 2, 1 before it returns. */
    cancel_here(cts);

    expect_calls(&obj1, 1, pthread_self());
    expect_calls(&obj2, 1, pthread_self());
    expect_calls(&obj3, 1, pthread_self());

    /* Dispose of the source when done with it. */
    cancel_source_free(cts);
}

/* A. Canceling is idempotent: the second cancel returns 0 and calls none. */
static void variant_cancel_twice(void)
{
    puts("-- A: cancel twice --");
    cancel_source *cts = new_source();
    cancel_token token = cancel_source_token(cts);
    struct cancelable_object obj[3];
    for (int i = 0; i < 3; i++) {
        cancelable_object_init(&obj[i], i + 1);
        register_object(token, &obj[i]);
    }

    puts("First cancel:");
    cancel_here(cts);
    puts("Second cancel:");
    cancel_here(cts);

    for (int i = 0; i < 3; i++)
        expect_calls(&obj[i], 1, pthread_self());
    puts("No callback ran again.");
    cancel_source_free(cts);
}

/* B. A registration removed before the cancel never runs; the others do. */
static void variant_unregister_first(void)
{
    puts("-- B: object 2 unregisters before the cancel --");
    cancel_source *cts = new_source();
    cancel_token token = cancel_source_token(cts);
    struct cancelable_object obj[3];
    for (int i = 0; i < 3; i++) {
        cancelable_object_init(&obj[i], i + 1);
        register_object(token, &obj[i]);
    }

    /* true: removed before it ran, so it never will. */
    if (!cancel_unregister(&obj[1].reg))
        fail("cancel_unregister of object 2 returned false");
    puts("Object 2 unregistered.");

    cancel_here(cts);

    expect_calls(&obj[0], 1, pthread_self());
    expect_calls(&obj[1], 0, pthread_self());
    expect_calls(&obj[2], 1, pthread_self());
    puts("Object 2's Cancel never ran.");
    cancel_source_free(cts);
}

/* C. Registering on a token that is already canceled runs the callback at
 * once, on the registering thread, and says so with -ECANCELED. */
static void variant_register_after_cancel(void)
{
    puts("-- C: object 4 registers after the cancel --");
    cancel_source *cts = new_source();
    cancel_token token = cancel_source_token(cts);
    struct cancelable_object obj[4];
    for (int i = 0; i < 3; i++) {
        cancelable_object_init(&obj[i], i + 1);
        register_object(token, &obj[i]);
    }
    cancel_here(cts);

    struct cancelable_object *late = &obj[3];
    cancelable_object_init(late, 4);
    puts("Registering object 4:");
    call_site.thread = pthread_self();
    call_site.inside = true;
    int err =
        cancel_register(token, &late->reg, cancelable_object_cancel, late);
    call_site.inside = false;
    if (err != -ECANCELED)
        fail_err("cancel_register after the cancel did not return -ECANCELED",
                 err);
    expect_calls(late, 1, pthread_self());
    printf("cancel_register returned -%s: the callback ran inside the "
           "call.\n",
           cancel_err_name(err));

    /* The registration is inert: there is nothing left to remove. */
    if (cancel_unregister(&late->reg))
        fail("cancel_unregister of a registration that ran returned true");
    for (int i = 0; i < 3; i++)
        expect_calls(&obj[i], 1, pthread_self());
    cancel_source_free(cts);
}

struct canceler_args {
    cancel_source *cts;
    struct cancelable_object *obj;
    int count;
};

/* Cancels, then checks on its own thread that every callback already ran
 * here, inside that cancel. */
static void *canceling_thread(void *arg)
{
    struct canceler_args *a = arg;

    cancel_here(a->cts);
    for (int i = 0; i < a->count; i++)
        expect_calls(&a->obj[i], 1, pthread_self());
    return NULL;
}

/* D. The callbacks run on whichever thread cancels - here not main. */
static void variant_cancel_from_thread(void)
{
    puts("-- D: cancel from another thread --");
    cancel_source *cts = new_source();
    cancel_token token = cancel_source_token(cts);
    struct cancelable_object obj[3];
    for (int i = 0; i < 3; i++) {
        cancelable_object_init(&obj[i], i + 1);
        register_object(token, &obj[i]);
    }

    struct canceler_args args = {cts, obj, 3};
    pthread_t canceler;
    int rc = pthread_create(&canceler, NULL, canceling_thread, &args);
    if (rc == 0)
        rc = pthread_join(canceler, NULL);
    if (rc != 0) {
        fprintf(stderr, "e2_object_callbacks: pthread: %s\n", strerror(rc));
        exit(EXIT_FAILURE);
    }

    puts("All three ran on the canceling thread, inside its cancel.");
    cancel_source_free(cts);
}

int main(int argc, char **argv)
{
    if (argc == 1) {
        documented_example();
    } else if (argc == 2 && strcmp(argv[1], "--variants") == 0) {
        variant_cancel_twice();
        variant_unregister_first();
        variant_register_after_cancel();
        variant_cancel_from_thread();
    } else {
        fprintf(stderr, "usage: %s [--variants]\n", argv[0]);
        return 2;
    }
    return 0;
}
