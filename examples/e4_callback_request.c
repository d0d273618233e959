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
 * stopped by a source of its own.
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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Not part of the port: the error helpers. */
#define EXAMPLE_NAME "e4_callback_request"
#include "script.h"

#define RESPONSE_BODY "Hello from the local server.\n"

/* ---- The local server ---------------------------------------------------
 *
 * Scaffolding, not part of the port: it stands in for www.contoso.com.  It
 * serves one connection at a time until main cancels its `stop` source.
 */

enum server_mode {
    SERVER_SILENT,    /* reads the request, never answers */
    SERVER_ANSWERING, /* reads the request, answers with RESPONSE_BODY */
};

struct server {
    enum server_mode mode;
    int listen_fd;
    struct sockaddr_in addr;   /* 127.0.0.1 and the port the kernel chose */
    cancel_source *stop;       /* main cancels it to stop the server */
    cancel_event request_read; /* set once a whole request was read */
    int connections;           /* accepted; main reads it after the join */
    const char *failed_call;   /* the first failure, if any */
    int err;                   /* its negative errno value */
    pthread_t thread;
};

/* Send all of buf with cancel_send, which never raises SIGPIPE. */
static int send_all(int fd, const char *buf, size_t n, cancel_token stop)
{
    while (n > 0) {
        ssize_t sent = cancel_send(fd, buf, n, 0, stop, CANCEL_INFINITE);
        if (sent < 0)
            return (int)sent;
        buf += sent;
        n -= (size_t)sent;
    }
    return 0;
}

/* Serve one connection: read the request up to its blank line, tell main,
 * then answer or keep silent until the client hangs up.  Returns 0 or the
 * negative errno value of the call named in *call. */
static int serve(struct server *s, int fd, cancel_token stop, const char **call)
{
    char buf[1024];
    size_t len = 0;

    for (;;) {
        *call = "cancel_read";
        if (len == sizeof buf - 1)
            return -EMSGSIZE;
        ssize_t n = cancel_read(fd, buf + len, sizeof buf - 1 - len, stop,
                                CANCEL_INFINITE);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return 0; /* the client left before a whole request */
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }

    /* The gate: main cancels only once the request is this far. */
    *call = "cancel_event_set";
    int err = cancel_event_set(&s->request_read);
    if (err != 0)
        return err;

    if (s->mode == SERVER_ANSWERING) {
        static const char response[] = "HTTP/1.0 200 OK\r\n"
                                       "Content-Type: text/plain\r\n"
                                       "Connection: close\r\n"
                                       "\r\n" RESPONSE_BODY;
        *call = "cancel_send";
        return send_all(fd, response, sizeof response - 1, stop);
    }

    /* Silent: never answer; read (and drop) until the client hangs up. */
    for (;;) {
        *call = "cancel_read";
        ssize_t n = cancel_read(fd, buf, sizeof buf, stop, CANCEL_INFINITE);
        if (n <= 0)
            return (int)n;
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    cancel_token stop = cancel_source_token(s->stop);
    const char *call = "cancel_accept";

    for (;;) {
        int fd = cancel_accept(s->listen_fd, NULL, NULL, stop, CANCEL_INFINITE);
        if (fd == -ECANCELED)
            return NULL; /* main stopped the server */
        if (fd < 0) {
            s->failed_call = "cancel_accept";
            s->err = fd;
            return NULL;
        }
        s->connections++;
        int err = serve(s, fd, stop, &call);
        if (close(fd) < 0 && err == 0) {
            call = "close";
            err = -errno;
        }
        if (err == -ECANCELED)
            return NULL;
        if (err < 0) {
            s->failed_call = call;
            s->err = err;
            return NULL;
        }
    }
}

static void server_start(struct server *s, enum server_mode mode)
{
    *s = (struct server){.mode = mode, .listen_fd = -1};
    s->addr.sin_family = AF_INET;
    s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->addr.sin_port = 0; /* any free port */

    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0)
        die("socket", errno);
    socklen_t len = sizeof s->addr;
    if (bind(s->listen_fd, (struct sockaddr *)&s->addr, sizeof s->addr) < 0)
        die("bind", errno);
    if (listen(s->listen_fd, 4) < 0)
        die("listen", errno);
    if (getsockname(s->listen_fd, (struct sockaddr *)&s->addr, &len) < 0)
        die("getsockname", errno);

    s->stop = cancel_source_new();
    if (s->stop == NULL)
        fail_err("cancel_source_new", -errno);
    check("cancel_event_init", cancel_event_init(&s->request_read, false));
    int rc = pthread_create(&s->thread, NULL, server_main, s);
    if (rc != 0)
        die("pthread_create", rc);
}

/* Stop the server and return how many connections it accepted. */
static int server_stop(struct server *s)
{
    check("cancel_source_cancel", cancel_source_cancel(s->stop));
    int rc = pthread_join(s->thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
    if (s->err != 0) {
        fprintf(stderr, "e4_callback_request: server: ");
        fail_err(s->failed_call, s->err);
    }
    if (close(s->listen_fd) < 0)
        die("close", errno);
    check("cancel_event_destroy", cancel_event_destroy(&s->request_read));
    cancel_source_free(s->stop);
    return s->connections;
}

/* ---- The web client: WebClient with DownloadStringAsync and CancelAsync -
 *
 * Plain blocking sockets, no token anywhere: like WebClient, the client
 * can only be canceled through its own method, web_client_cancel_async.
 */

enum outcome {
    REQUEST_COMPLETED,
    REQUEST_CANCELED,
    REQUEST_FAILED,
};

struct web_client {
    pthread_mutex_t lock; /* guards canceled, finished and fd */
    bool canceled;        /* CancelAsync was called */
    bool finished;        /* the request ended: CancelAsync comes too late */
    int fd;               /* the request's socket, or -1 */
    int abort_error;      /* errno of a failed shutdown in CancelAsync */

    struct sockaddr_in server;
    pthread_t thread;
    cancel_event ended; /* set when the request has ended */

    /* The result, read once `ended` is set. */
    enum outcome outcome;
    const char *failed_call; /* REQUEST_FAILED: the call and its errno */
    int error;
    char response[512]; /* what the server sent, NUL-terminated */
    size_t response_len;
};

static void client_lock(struct web_client *wc)
{
    int rc = pthread_mutex_lock(&wc->lock);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
}

static void client_unlock(struct web_client *wc)
{
    int rc = pthread_mutex_unlock(&wc->lock);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

static void web_client_init(struct web_client *wc,
                            const struct sockaddr_in *server)
{
    *wc = (struct web_client){.fd = -1, .server = *server};
    int rc = pthread_mutex_init(&wc->lock, NULL);
    if (rc != 0)
        die("pthread_mutex_init", rc);
    check("cancel_event_init", cancel_event_init(&wc->ended, false));
}

/* WebClient.CancelAsync: abort the pending request, if any.  It never
 * blocks: it shuts the socket down, and the request's own thread, woken
 * from its recv, sees that it was canceled.  Called before the request
 * starts it only leaves a note, and the request then never connects;
 * called after the request ended it does nothing. */
static void web_client_cancel_async(struct web_client *wc)
{
    client_lock(wc);
    if (!wc->finished) {
        wc->canceled = true;
        /* ENOTCONN: the socket exists but is not connected yet; the
         * request looks at `canceled` again once it is. */
        if (wc->fd >= 0 && shutdown(wc->fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
            wc->abort_error = errno;
    }
    client_unlock(wc);
}

/* The request ends: canceled if CancelAsync came while it was pending,
 * whatever the I/O returned; otherwise as the I/O says. */
static void *web_client_finish(struct web_client *wc, const char *call,
                               int error)
{
    client_lock(wc);
    wc->finished = true;
    if (wc->canceled)
        wc->outcome = REQUEST_CANCELED;
    else if (call != NULL)
        wc->outcome = REQUEST_FAILED;
    else
        wc->outcome = REQUEST_COMPLETED;
    wc->failed_call = call;
    wc->error = error;
    client_unlock(wc);
    check("cancel_event_set", cancel_event_set(&wc->ended));
    return NULL;
}

/* Whether CancelAsync has been called. */
static bool web_client_canceled(struct web_client *wc)
{
    client_lock(wc);
    bool canceled = wc->canceled;
    client_unlock(wc);
    return canceled;
}

/* The download, on its own thread: connect, send the request, read the
 * response until the server closes the connection (HTTP/1.0). */
static void *web_client_download(void *arg)
{
    struct web_client *wc = arg;
    static const char request[] = "GET / HTTP/1.0\r\n"
                                  "Host: 127.0.0.1\r\n"
                                  "\r\n";

    client_lock(wc);
    if (wc->canceled) {
        client_unlock(wc);
        return web_client_finish(wc, NULL, 0); /* never connects */
    }
    wc->fd = socket(AF_INET, SOCK_STREAM, 0);
    int fd = wc->fd;
    client_unlock(wc);
    if (fd < 0)
        return web_client_finish(wc, "socket", errno);

    if (connect(fd, (const struct sockaddr *)&wc->server, sizeof wc->server) <
        0)
        return web_client_finish(wc, "connect", errno);
    /* A CancelAsync before the connection existed had nothing to shut
     * down; from now on a shutdown reaches the send and the recv. */
    if (web_client_canceled(wc))
        return web_client_finish(wc, NULL, 0);

    for (size_t sent = 0; sent < sizeof request - 1;) {
        ssize_t n =
            send(fd, request + sent, sizeof request - 1 - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return web_client_finish(wc, "send", errno);
        sent += (size_t)n;
    }

    /* The pending part: a silent server leaves this recv blocked until
     * CancelAsync shuts the socket down, which makes it return 0. */
    for (;;) {
        size_t room = sizeof wc->response - 1 - wc->response_len;
        if (room == 0)
            return web_client_finish(wc, "recv", EMSGSIZE);
        ssize_t n = recv(fd, wc->response + wc->response_len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return web_client_finish(wc, "recv", errno);
        if (n == 0)
            break;
        wc->response_len += (size_t)n;
    }
    wc->response[wc->response_len] = '\0';
    return web_client_finish(wc, NULL, 0);
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
    if (wc->abort_error != 0)
        die("shutdown (in CancelAsync)", wc->abort_error);
}

/* Dispose: only once the request has ended and nothing can call
 * web_client_cancel_async any more. */
static void web_client_destroy(struct web_client *wc)
{
    if (wc->fd >= 0 && close(wc->fd) < 0)
        die("close", errno);
    check("cancel_event_destroy", cancel_event_destroy(&wc->ended));
    int rc = pthread_mutex_destroy(&wc->lock);
    if (rc != 0)
        die("pthread_mutex_destroy", rc);
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
    const struct web_client *wc = &req.client;
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
