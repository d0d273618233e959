/* E8 - a callback aborts a download inside a task.
 *
 * A port of the example of .NET's "How to: Register Callbacks for
 * Cancellation Requests": a task downloads a page with a client that knows
 * nothing of tokens but can abort its pending request; the task registers a
 * callback that aborts it, and keeps the registration (a `using`) until the
 * download has finished:
 *
 *     Task.Run(() => {
 *         if (!token.IsCancellationRequested) {
 *             using (token.Register(() => client.CancelPendingRequests())) {
 *                 Console.WriteLine("Starting request");
 *                 try {
 *                     string page = client.GetString(uri);
 *                     Console.WriteLine("The download has completed:");
 *                     Console.WriteLine(page);
 *                 } catch (canceled) {
 *                     Console.WriteLine("The download was canceled.");
 *                     throw new OperationCanceledException(token);
 *                 }
 *             }
 *         }
 *     }, token);
 *
 * The client here is a blocking socket on the task's pool thread; its abort
 * shuts the socket down, which wakes the blocked recv, and the client,
 * remembering it was told to abort, reports *canceled*, not an I/O error.
 * There is no real network: the program runs its own HTTP-like server on
 * 127.0.0.1 (a free port, on a thread), written with the library's
 * cancelable I/O and stopped by a source of its own.  The server and the
 * client are scaffolding shared with E4, in local_http.h.
 *
 * Usage:
 *   e8_download_task                     a silent server (it reads the
 *         request and never answers); main cancels once the server has read
 *         the request - a gate, not a sleep: `The download was canceled.`,
 *         the body "throws" with its token, the task ends Canceled.
 *   e8_download_task --answering         the server answers, nothing is
 *         canceled: `The download has completed:` and the body;
 *         RanToCompletion.
 *   e8_download_task --canceled-first    the source is canceled before the
 *         task runs: the body never runs, the task ends Canceled.
 *   e8_download_task --unregister-early  the negative case: the body
 *         disposes of its registration right after connecting; main
 *         cancels once the server has read the request, which no longer
 *         aborts anything, and only then lets the server answer: the
 *         download completes and the task ends RanToCompletion.
 *
 * The program checks the model's promises itself - the callback finished
 * inside cancel_source_cancel (F3), the registration is disposed before the
 * client it uses goes away, an unregistered callback never runs - and on a
 * broken promise or a failed call it says why on stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not part of the port: the error helpers and the task status names, and
 * the local server and the client. */
#define EXAMPLE_NAME "e8_download_task"
#include "script.h"
#include "local_http.h"

/* ---- The port: the task ------------------------------------------------- */

struct job {
    const struct sockaddr_in *server;
    bool unregister_early; /* the negative case */
    atomic_bool body_ran;
    atomic_bool callback_ran;      /* set as the callback's very last step */
    atomic_bool callback_finished; /* likewise */
};

struct abort_ctx {
    struct job *job;
    struct client *client;
};

/* () => client.CancelPendingRequests() */
static void abort_download(void *arg)
{
    struct abort_ctx *ctx = arg;
    atomic_store(&ctx->job->callback_ran, true);
    client_abort(ctx->client);
    atomic_store(&ctx->job->callback_finished, true);
}

static int download_body(void *arg, cancel_token token)
{
    struct job *job = arg;
    atomic_store(&job->body_ran, true);
    if (cancel_requested(token))
        return 0; /* as in .NET: nothing to do */

    struct client client;
    client_init(&client, job->server);
    struct abort_ctx ctx = {job, &client};
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    /* On a token canceled since the check the callback runs here, and the
     * client, told to abort, never connects. */
    int rc = cancel_register(token, &reg, abort_download, &ctx);
    if (rc != 0 && rc != -ECANCELED)
        fail_err("cancel_register", rc);

    puts("Starting request");
    fflush(stdout);
    enum outcome outcome;
    if (client_connect(&client)) {
        if (job->unregister_early) {
            /* The mistake: the registration is gone while the download is
             * still pending, so a cancel can no longer abort it. */
            if (!cancel_unregister(&reg))
                fail("the early unregister found the callback already run");
            puts("Unregistered the callback right after starting.");
            fflush(stdout);
        }
        outcome = client_transfer(&client);
    } else {
        outcome = client.outcome;
    }

    int result = 0;
    switch (outcome) {
    case REQUEST_COMPLETED: {
        const char *body = strstr(client.response, "\r\n\r\n");
        if (body == NULL || strcmp(body + 4, RESPONSE_BODY) != 0 ||
            strncmp(client.response, "HTTP/1.0 200 ", 13) != 0)
            fail("the response is not the server's");
        printf("The download has completed:\n%s", body + 4);
        break;
    }
    case REQUEST_CANCELED:
        puts("The download was canceled.");
        result = cancel_throw(token); /* OperationCanceledException(token) */
        break;
    case REQUEST_FAILED:
        /* Exit rather than fault the task: main may be waiting for a gate
         * that this download will never open. */
        fprintf(stderr, "e8_download_task: %s: %s\n", client.failed_call,
                strerror(client.error));
        exit(EXIT_FAILURE);
    }
    fflush(stdout);

    /* End of the `using`: the registration lives until the download has
     * finished.  Once cancel_unregister returns the callback neither runs
     * nor will, so the client it uses may go away. */
    if (!job->unregister_early)
        (void)cancel_unregister(&reg); /* false if the callback ran */
    client_destroy(&client);
    return result;
}

/* ---- Main ---------------------------------------------------------------- */

enum run {
    RUN_CANCEL,           /* default: silent server, cancel while pending */
    RUN_ANSWERING,        /* answering server, no cancel */
    RUN_CANCELED_FIRST,   /* canceled before the task runs */
    RUN_UNREGISTER_EARLY, /* the negative case */
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--answering | --canceled-first | --unregister-early]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    enum run run = RUN_CANCEL;
    if (argc == 2 && strcmp(argv[1], "--answering") == 0)
        run = RUN_ANSWERING;
    else if (argc == 2 && strcmp(argv[1], "--canceled-first") == 0)
        run = RUN_CANCELED_FIRST;
    else if (argc == 2 && strcmp(argv[1], "--unregister-early") == 0)
        run = RUN_UNREGISTER_EARLY;
    else if (argc != 1)
        usage(argv[0]);

    static const enum server_mode modes[] = {
        [RUN_CANCEL] = SERVER_SILENT,
        [RUN_ANSWERING] = SERVER_ANSWERING,
        [RUN_CANCELED_FIRST] = SERVER_SILENT,
        [RUN_UNREGISTER_EARLY] = SERVER_ANSWER_LATER,
    };
    static struct server server;
    server_start(&server, modes[run]);

    cancel_pool *pool = cancel_pool_new(1);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(cts);

    static struct job job;
    job.server = &server.addr;
    job.unregister_early = run == RUN_UNREGISTER_EARLY;
    atomic_init(&job.body_ran, false);
    atomic_init(&job.callback_ran, false);
    atomic_init(&job.callback_finished, false);

    if (run == RUN_CANCELED_FIRST) {
        puts("Canceling before the task runs.");
        fflush(stdout);
        check("cancel_source_cancel", cancel_source_cancel(cts));
    }

    cancel_task *task = cancel_task_run(pool, download_body, &job, token, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);

    if (run == RUN_CANCEL || run == RUN_UNREGISTER_EARLY) {
        /* The gate: the server has read the request, so the download is
         * pending.  (A download that fails before that exits the program
         * from the body, so this wait cannot hang on it.) */
        check("cancel_event_wait",
              cancel_event_wait(&server.request_read, CANCEL_NONE,
                                CANCEL_INFINITE));
        check("cancel_source_cancel", cancel_source_cancel(cts));
        if (run == RUN_CANCEL && !atomic_load(&job.callback_finished))
            fail("cancel_source_cancel returned before the callback finished");
        if (run == RUN_UNREGISTER_EARLY) {
            if (atomic_load(&job.callback_ran))
                fail("an unregistered callback ran");
            puts("Canceled: no callback is left to abort the download.");
            fflush(stdout);
            /* Only now may the server answer. */
            check("cancel_event_set", cancel_event_set(&server.answer));
        }
    }

    int rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    cancel_task_status status = cancel_task_status_of(task);
    printf("Task status: %s\n", status_name(status));
    fflush(stdout);

    cancel_task_status want = CANCEL_TASK_CANCELED;
    if (run == RUN_ANSWERING || run == RUN_UNREGISTER_EARLY)
        want = CANCEL_TASK_RAN_TO_COMPLETION;
    int want_rc = want == CANCEL_TASK_CANCELED ? -ECANCELED : 0;
    if (status != want || rc != want_rc || cancel_task_error(task) != 0)
        fail("the task did not end as this run expects");
    if (run == RUN_CANCELED_FIRST && atomic_load(&job.body_ran))
        fail("the body of a task canceled before it started ran");
    if ((run == RUN_CANCEL) != atomic_load(&job.callback_ran))
        fail(run == RUN_CANCEL ? "the callback never ran"
                               : "the callback ran, yet should not have");

    cancel_task_release(task);
    cancel_pool_free(pool);
    cancel_source_free(cts);
    int connections = server_stop(&server);
    if (connections != (run == RUN_CANCELED_FIRST ? 0 : 1))
        fail("the server saw an unexpected number of connections");
    return EXIT_SUCCESS;
}
