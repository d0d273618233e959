/* E9 - the basic task pattern.
 *
 * A port of the example of .NET's "Task Cancellation": a task checks its
 * token on entry ("were we already canceled?"), then polls it in an endless
 * loop and "throws" on cancellation; the token is passed both to the body
 * and to Task.Run, so that the task knows the cancellation is its own:
 *
 *     static int body(void *arg, cancel_token ct)
 *     {
 *         int err = cancel_check(ct);          // ThrowIfCancellationRequested
 *         if (err != 0)
 *             return err;
 *         for (;;)
 *             if (cancel_requested(ct))        // clean up here, then...
 *                 return cancel_check(ct);
 *     }
 *     task = cancel_task_run(pool, body, NULL, ct, 0);
 *     cancel_source_cancel(cts);
 *     rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
 *
 * Main cancels at once, so sometimes the body has started and notices the
 * cancel itself, and sometimes the task is still queued and the body never
 * runs (the cancel ends it in the queue).  Either way the task ends
 * Canceled, the wait reports -ECANCELED - the OperationCanceledException
 * main catches - with the task's token recorded, and the task's error is 0:
 * cancellation is not failure.
 *
 * Usage:
 *   e9_task_pattern [--repeat N] [--verbose]
 *       Runs the pattern N times (default 100), prints what the first run
 *       gave and a summary of all:
 *           OperationCanceledException thrown with message: ...
 *           Task status: Canceled; wait: -ECANCELED; error: 0.
 *           N runs: N Canceled, 0 other
 *       How many times the body ran depends on timing; --verbose prints
 *       that split on stderr.
 *   e9_task_pattern --variants
 *       How else a task can end, one line each: canceled before it starts
 *       (Canceled, the body never runs); "throws" with another token
 *       (Faulted); "throws" with its own token that is not canceled
 *       (Faulted); returns normally after the cancel (RanToCompletion).
 *
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not part of the port: the error helpers and the task status names. */
#define EXAMPLE_NAME "e9_task_pattern"
#include "script.h"

/* "0" or "-ECANCELED". */
static const char *code_name(int rc, char *buf, size_t len)
{
    if (rc == 0)
        return "0";
    snprintf(buf, len, "%s%s", rc < 0 ? "-" : "", cancel_err_name(rc));
    return buf;
}

static cancel_source *new_source(void)
{
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);
    return cts;
}

/* ---- The pattern --------------------------------------------------------- */

static int body(void *arg, cancel_token ct)
{
    atomic_bool *ran = arg;
    atomic_store(ran, true);

    /* Were we already canceled? */
    int err = cancel_check(ct);
    if (err != 0)
        return err;

    bool more_to_do = true;
    while (more_to_do) {
        /* Poll on this property if you have to do other cleanup before
         * throwing. */
        if (cancel_requested(ct)) {
            /* Clean up here, then... */
            return cancel_check(ct);
        }
    }
    return 0;
}

/* One run; true if it ended as the pattern promises.  *ran: whether the
 * body ran. */
static bool run_once(cancel_pool *pool, bool print, bool *ran)
{
    cancel_source *token_source = new_source();
    cancel_token ct = cancel_source_token(token_source);
    atomic_bool body_ran;
    atomic_init(&body_ran, false);

    /* Pass the same token to the body and to Task.Run. */
    cancel_task *task = cancel_task_run(pool, body, &body_ran, ct, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);

    check("cancel_source_cancel", cancel_source_cancel(token_source));

    /* await task, in a try/catch. */
    int rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    bool recorded = cancel_token_equal(cancel_canceled_token(), ct);
    cancel_task_status status = cancel_task_status_of(task);
    int error = cancel_task_error(task);
    char b1[32], b2[32];
    if (print) {
        if (rc == -ECANCELED)
            printf("OperationCanceledException thrown with message: %s\n",
                   cancel_strerror(rc));
        printf("Task status: %s; wait: %s; error: %s.\n", status_name(status),
               code_name(rc, b1, sizeof b1), code_name(error, b2, sizeof b2));
        fflush(stdout);
    }
    bool ok = status == CANCEL_TASK_CANCELED && rc == -ECANCELED && recorded &&
              error == 0;
    if (!ok)
        fprintf(stderr,
                "e9_task_pattern: a run ended %s (wait %d, error %d, %s)\n",
                status_name(status), rc, error,
                recorded ? "its token recorded" : "its token not recorded");

    *ran = atomic_load(&body_ran);
    cancel_task_release(task);
    cancel_source_free(token_source); /* finally: Dispose */
    return ok;
}

/* ---- Variants ------------------------------------------------------------ */

/* A body that starts, tells main, waits until its own token is canceled
 * and then ends as `how` says. */
enum how { THROW_OTHER, THROW_OWN_AT_ONCE, RETURN_NORMALLY };

struct variant {
    enum how how;
    cancel_token other; /* THROW_OTHER: a canceled token of another source */
    cancel_event started;
    atomic_bool ran;
};

static int variant_body(void *arg, cancel_token ct)
{
    struct variant *v = arg;
    atomic_store(&v->ran, true);
    if (v->how == THROW_OWN_AT_ONCE)
        return cancel_throw(ct); /* ct was never canceled */
    check("cancel_event_set", cancel_event_set(&v->started));
    int rc = cancel_wait(ct, CANCEL_INFINITE);
    if (rc != -ECANCELED)
        fail_err("cancel_wait", rc);
    if (v->how == THROW_OTHER)
        return cancel_throw(v->other);
    return 0; /* noticed the cancel, returns anyway */
}

/* Run one variant: cancel ct once the body started (unless `how` is
 * THROW_OWN_AT_ONCE), wait, print one line, check what it must give. */
static void run_variant(cancel_pool *pool, const char *title, enum how how,
                        cancel_task_status want_status, int want_wait,
                        int want_error)
{
    cancel_source *token_source = new_source();
    cancel_source *other_source = new_source();
    cancel_token ct = cancel_source_token(token_source);
    check("cancel_source_cancel", cancel_source_cancel(other_source));

    static struct variant v;
    v = (struct variant){.how = how,
                         .other = cancel_source_token(other_source)};
    atomic_init(&v.ran, false);
    check("cancel_event_init", cancel_event_init(&v.started, false));

    cancel_task *task = cancel_task_run(pool, variant_body, &v, ct, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);
    if (how != THROW_OWN_AT_ONCE) {
        check("cancel_event_wait",
              cancel_event_wait(&v.started, CANCEL_NONE, CANCEL_INFINITE));
        check("cancel_source_cancel", cancel_source_cancel(token_source));
    }
    int rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    cancel_task_status status = cancel_task_status_of(task);
    int error = cancel_task_error(task);

    char b1[32], b2[32];
    printf("%s: %s; wait: %s; error: %s.\n", title, status_name(status),
           code_name(rc, b1, sizeof b1), code_name(error, b2, sizeof b2));
    fflush(stdout);
    if (status != want_status || rc != want_wait || error != want_error ||
        !atomic_load(&v.ran))
        fail("the task did not end as .NET's rules say");

    cancel_task_release(task);
    check("cancel_event_destroy", cancel_event_destroy(&v.started));
    cancel_source_free(other_source);
    cancel_source_free(token_source);
}

static void run_variants(cancel_pool *pool)
{
    /* Canceled before it starts: the body never runs. */
    cancel_source *token_source = new_source();
    cancel_token ct = cancel_source_token(token_source);
    check("cancel_source_cancel", cancel_source_cancel(token_source));
    atomic_bool ran;
    atomic_init(&ran, false);
    cancel_task *task = cancel_task_run(pool, body, &ran, ct, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);
    int rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    cancel_task_status status = cancel_task_status_of(task);
    int error = cancel_task_error(task);
    char b1[32], b2[32];
    printf("Canceled before it started: %s, the body %s; wait: %s; "
           "error: %s.\n",
           status_name(status), atomic_load(&ran) ? "ran" : "never ran",
           code_name(rc, b1, sizeof b1), code_name(error, b2, sizeof b2));
    fflush(stdout);
    if (status != CANCEL_TASK_CANCELED || atomic_load(&ran) ||
        rc != -ECANCELED || error != 0)
        fail("a task canceled before it started must be Canceled, unrun");
    cancel_task_release(task);
    cancel_source_free(token_source);

    run_variant(pool, "Throws with another token", THROW_OTHER,
                CANCEL_TASK_FAULTED, -ECANCELED, -ECANCELED);
    run_variant(pool, "Throws with its own token, not canceled",
                THROW_OWN_AT_ONCE, CANCEL_TASK_FAULTED, -ECANCELED, -ECANCELED);
    run_variant(pool, "Returns normally after the cancel", RETURN_NORMALLY,
                CANCEL_TASK_RAN_TO_COMPLETION, 0, 0);
}

/* ---- Main ---------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--repeat N] [--verbose]   (N >= 1, default 100)\n"
            "       %s --variants\n",
            argv0, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    long repeat = 100;
    bool variants = false, verbose = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--variants") == 0) {
            variants = true;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            repeat = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || end == argv[i] || repeat < 1 ||
                repeat > 100000000L)
                usage(argv[0]);
        } else {
            usage(argv[0]);
        }
    }

    cancel_pool *pool = cancel_pool_new(2);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);

    int status = EXIT_SUCCESS;
    if (variants) {
        run_variants(pool);
    } else {
        long canceled = 0, other = 0, ran = 0;
        for (long i = 0; i < repeat; i++) {
            bool body_ran;
            if (run_once(pool, i == 0, &body_ran))
                canceled++;
            else
                other++;
            ran += body_ran;
        }
        printf("%ld runs: %ld Canceled, %ld other\n", repeat, canceled, other);
        fflush(stdout);
        if (verbose)
            fprintf(stderr, "the body ran in %ld runs, not in %ld\n", ran,
                    repeat - ran);
        if (other != 0)
            status = EXIT_FAILURE;
    }

    cancel_pool_free(pool);
    return status;
}
