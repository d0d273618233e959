/* E4 - a callback cancels a pending request.
 *
 * A port of the callback example of .NET's "Cancellation in Managed
 * Threads" (listening by registering a callback), which "How to: Register
 * Callbacks for Cancellation Requests" expands: a helper starts a web
 * request with WebClient.DownloadStringAsync, an API that knows nothing of
 * tokens but has its own abort method, CancelAsync.  To make the request
 * cancelable all the same, the helper registers a callback on the token
 * that calls that method:
 *
 *     token.Register(() => { wc.CancelAsync();
 *                            Console.WriteLine("Request cancelled!"); });
 *     Console.WriteLine("Starting request.");
 *     wc.DownloadStringAsync(new Uri("http://www.contoso.com"));
 *
 * and main cancels the source.  Here the web client is a small one written
 * with plain blocking sockets (connect, send, recv on its own thread), and
 * its CancelAsync shuts the request's socket down (shutdown(SHUT_RDWR)),
 * which makes the blocked recv return.  The client remembers that it was
 * told to cancel, so the request ends *canceled*, not with an I/O error.
 * There is no real network: the program starts its own HTTP-like server on
 * 127.0.0.1 (a free port, on a thread); the server is written with the
 * library's cancelable I/O (cancel_accept, cancel_read, cancel_send) and is
 * stopped by a source of its own.  The server and the blocking client are
 * scaffolding shared with E8, in local_http.h.
 *
 * Usage:
 *   e4_callback_request                   the documented run: a silent
 *         server (it reads the request and never answers); main cancels
 *         once the server has read the request - a gate, not a sleep - so
 *         the output is always
 *             Starting request.
 *             Request cancelled!
 *             Request ended: canceled
 *   e4_callback_request --canceled-first  the source is canceled before
 *         the helper runs: the callback runs inside cancel_register (which
 *         returns -ECANCELED) and its abort is harmless; the client, already
 *         told to cancel, never connects and its request ends canceled.
 *   e4_callback_request --answering       the server answers, nothing is
 *         canceled: the request completes and its body is printed.
 *
 * The program checks the promises of the model itself - the callback had
 * finished when cancel_source_cancel returned (F3) or, registered on a
 * canceled token, ran inside cancel_register (F4); the registration is
 * disposed before the client it uses is freed - and on a broken promise or
 * a failed call it says why on stderr and exits 1.  So does a request that
 * ends in any other way than the run expects.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not part of the port: the error helpers, and the local server and the
 * blocking client. */
#define EXAMPLE_NAME "e4_callback_request"
#include "script.h"
#include "local_http.h"

/* ---- The web client: WebClient with DownloadStringAsync and CancelAsync -
 *
 * The blocking client of local_http.h, its request on a thread of its own.
 * No token anywhere: like WebClient, the client can only be canceled
 * through its own method, web_client_cancel_async.
 */

struct web_client {
    struct client http; /* the request: plain blocking sockets */
    pthread_t thread;
    cancel_event ended; /* set when the request has ended */
};

static void web_client_init(struct web_client *wc,
                            const struct sockaddr_in *server)
{
    client_init(&wc->http, server);
    check("cancel_event_init", cancel_event_init(&wc->ended, false));
}

/* WebClient.CancelAsync: abort the pending request, if any.  It never
 * blocks: it shuts the socket down, and the request's own thread, woken
 * from its recv, sees that it was canceled.  Called before the request
 * starts it only leaves a note, and the request then never connects;
 * called after the request ended it does nothing. */
static void web_client_cancel_async(struct web_client *wc)
{
    client_abort(&wc->http);
}

/* The download, on its own thread: connect, send the request, read the
 * response until the server closes the connection (HTTP/1.0). */
static void *web_client_download(void *arg)
{
    struct web_client *wc = arg;

    if (client_connect(&wc->http))
        client_transfer(&wc->http);
    check("cancel_event_set", cancel_event_set(&wc->ended));
    return NULL;
}

/* WebClient.DownloadStringAsync: start the request and return at once. */
static void web_client_download_async(struct web_client *wc)
{
    int rc = pthread_create(&wc->thread, NULL, web_client_download, wc);
    if (rc != 0)
        die("pthread_create", rc);
}

/* Wait until the request has ended (the DownloadStringCompleted event). */
static void web_client_wait(struct web_client *wc)
{
    check("cancel_event_wait",
          cancel_event_wait(&wc->ended, CANCEL_NONE, CANCEL_INFINITE));
    int rc = pthread_join(wc->thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
    if (wc->http.abort_error != 0)
        die("shutdown (in CancelAsync)", wc->http.abort_error);
}

/* Dispose: only once the request has ended and nothing can call
 * web_client_cancel_async any more. */
static void web_client_destroy(struct web_client *wc)
{
    check("cancel_event_destroy", cancel_event_destroy(&wc->ended));
    client_destroy(&wc->http);
}

/* ---- The port: StartWebRequest(token) ------------------------------------ */

struct web_request {
    struct web_client client;
    cancel_registration reg; /* ties the abort to the token */
    int register_rc;         /* what cancel_register returned */
    atomic_bool callback_finished;
};

/* () => { wc.CancelAsync(); Console.WriteLine("Request cancelled!"); } */
static void abort_request(void *arg)
{
    struct web_request *req = arg;

    web_client_cancel_async(&req->client);
    puts("Request cancelled!");
    fflush(stdout);
    atomic_store(&req->callback_finished, true); /* its very last step */
}

static void start_web_request(struct web_request *req, cancel_token token,
                              const struct sockaddr_in *server)
{
    web_client_init(&req->client, server);
    req->reg = (cancel_registration)CANCEL_REGISTRATION_INIT;
    atomic_init(&req->callback_finished, false);

    /* Cancellation on the token will call CancelAsync on the client.  On a
     * token that is already canceled the callback runs here, at once. */
    req->register_rc = cancel_register(token, &req->reg, abort_request, req);
    if (req->register_rc != 0 && req->register_rc != -ECANCELED)
        fail_err("cancel_register", req->register_rc);

    puts("Starting request.");
    fflush(stdout);
    web_client_download_async(&req->client);
}

/* ---- Main ---------------------------------------------------------------- */

enum run {
    RUN_CANCEL_PENDING, /* default: silent server, cancel while pending */
    RUN_CANCELED_FIRST, /* silent server, canceled before the helper */
    RUN_ANSWERING,      /* answering server, no cancel */
};

/* cts.Cancel(), with the check that the callback had finished by then. */
static void cancel_request(cancel_source *cts, struct web_request *req)
{
    check("cancel_source_cancel", cancel_source_cancel(cts));
    if (!atomic_load(&req->callback_finished))
        fail("cancel_source_cancel returned before the callback finished");
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--canceled-first | --answering]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    enum run run = RUN_CANCEL_PENDING;
    if (argc == 2 && strcmp(argv[1], "--canceled-first") == 0)
        run = RUN_CANCELED_FIRST;
    else if (argc == 2 && strcmp(argv[1], "--answering") == 0)
        run = RUN_ANSWERING;
    else if (argc != 1)
        usage(argv[0]);

    static struct server server;
    server_start(&server,
                 run == RUN_ANSWERING ? SERVER_ANSWERING : SERVER_SILENT);

    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(cts);
    static struct web_request req;

    if (run == RUN_CANCELED_FIRST) {
        puts("Canceling before the request starts.");
        fflush(stdout);
        check("cancel_source_cancel", cancel_source_cancel(cts));
    }

    start_web_request(&req, token, &server.addr);

    switch (run) {
    case RUN_CANCEL_PENDING: {
        /* The gate: wait until the server has read the request - or until
         * the request ended early, which the outcome below reports. */
        const cancel_waitable gate[] = {
            CANCEL_WAIT_EVENT(&server.request_read),
            CANCEL_WAIT_EVENT(&req.client.ended),
        };
        int index = cancel_wait_any(gate, 2, CANCEL_INFINITE);
        if (index < 0)
            fail_err("cancel_wait_any", index);
        if (index == 0)
            cancel_request(cts, &req);
        break;
    }
    case RUN_CANCELED_FIRST:
        if (req.register_rc != -ECANCELED)
            fail_err("cancel_register on a canceled token returned",
                     req.register_rc);
        if (!atomic_load(&req.callback_finished))
            fail("cancel_register returned before the callback finished");
        printf("The callback ran inside cancel_register, which returned "
               "-%s.\n",
               cancel_err_name(req.register_rc));
        fflush(stdout);
        break;
    case RUN_ANSWERING:
        break;
    }

    web_client_wait(&req.client);
    const struct client *wc = &req.client.http;
    const char *body = strstr(wc->response, "\r\n\r\n");
    switch (wc->outcome) {
    case REQUEST_CANCELED:
        puts("Request ended: canceled");
        break;
    case REQUEST_COMPLETED:
        puts("Request ended: completed");
        fputs(body != NULL ? body + 4 : wc->response, stdout);
        break;
    case REQUEST_FAILED:
        printf("Request ended: failed (%s: %s)\n", wc->failed_call,
               strerror(wc->error));
        break;
    }
    fflush(stdout);

    enum outcome want =
        run == RUN_ANSWERING ? REQUEST_COMPLETED : REQUEST_CANCELED;
    if (wc->outcome != want)
        fail("the request did not end as this run expects");
    if (want == REQUEST_COMPLETED &&
        (body == NULL || strcmp(body + 4, RESPONSE_BODY) != 0 ||
         strncmp(wc->response, "HTTP/1.0 200 ", 13) != 0))
        fail("the response is not the server's");

    /* Dispose of the registration before the client it uses: once
     * cancel_unregister returns, the callback neither runs nor will.  It
     * returns true only if the callback never ran - here only when nothing
     * was canceled. */
    bool removed = cancel_unregister(&req.reg);
    if (removed != (run == RUN_ANSWERING))
        fail(removed ? "the callback never ran, yet the source was canceled"
                     : "the callback ran, yet nothing was canceled");
    web_client_destroy(&req.client);
    cancel_source_free(cts);

    int connections = server_stop(&server);
    if (run == RUN_CANCELED_FIRST) {
        if (connections != 0)
            fail("the canceled request connected to the server");
        puts("The server accepted no connection.");
        fflush(stdout);
    } else if (connections != 1) {
        fail("the server did not see exactly one connection");
    }
    return EXIT_SUCCESS;
}
