/* local_http.h - a local HTTP-like server and a blocking web client for the
 * examples that cancel a web request: e4_callback_request and
 * e8_download_task.
 *
 * Not part of any port: there is no real network, so the server stands in
 * for www.contoso.com, and the client for .NET's WebClient and HttpClient,
 * the clients that know nothing of tokens but have an abort method of
 * their own.  What the examples show - the callback that ties a token to
 * that abort - stays in each of them.
 *
 *   struct server, server_start, server_stop
 *                 an HTTP-like server on 127.0.0.1 (a free port, on a
 *                 thread), written with the library's cancelable I/O
 *                 (cancel_accept, cancel_read, cancel_send) and stopped by
 *                 a source of its own; it sets an event once it has read a
 *                 request, the gate where main cancels a pending request
 *   struct client, client_connect, client_transfer, client_abort
 *                 one GET with plain blocking sockets and no token; its
 *                 abort shuts the socket down, which wakes the blocked
 *                 recv, and the client, remembering it was told to abort,
 *                 reports the request *canceled*, not an I/O error
 *
 * A failed call or a broken promise ends the program with the helpers of
 * script.h.  Everything is static inline: each program compiles the part
 * it uses.
 *
 * Use: as script.h - define _POSIX_C_SOURCE 200809L (or more) before any
 * #include, and EXAMPLE_NAME before this one:
 *
 *     #define EXAMPLE_NAME "e4_callback_request"
 *     #include "script.h"
 *     #include "local_http.h"
 */
#ifndef CANCEL_EXAMPLES_LOCAL_HTTP_H
#define CANCEL_EXAMPLES_LOCAL_HTTP_H

#include <cancel/cancel.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "script.h"

/* The body of the server's answer. */
#define RESPONSE_BODY "Hello from the local server.\n"

/* ---- The local server ---------------------------------------------------
 *
 * It stands in for www.contoso.com, and serves one connection at a time
 * until main cancels its `stop` source.
 */

enum server_mode {
    SERVER_SILENT,       /* reads the request, never answers */
    SERVER_ANSWERING,    /* reads the request, answers at once */
    SERVER_ANSWER_LATER, /* reads the request, answers once `answer` is set */
};

struct server {
    enum server_mode mode;
    int listen_fd;
    struct sockaddr_in addr;   /* 127.0.0.1 and the port the kernel chose */
    cancel_source *stop;       /* main cancels it to stop the server */
    cancel_event request_read; /* set once a whole request was read */
    cancel_event answer;       /* SERVER_ANSWER_LATER: main sets it */
    int connections;           /* accepted; main reads it after the join */
    const char *failed_call;   /* the first failure, if any */
    int err;                   /* its negative errno value */
    pthread_t thread;
};

/* Serve one connection: read the request up to its blank line, tell main,
 * then answer or keep silent until the client hangs up.  Returns 0 or the
 * negative errno value of the call named in *call. */
static inline int serve(struct server *s, int fd, cancel_token stop,
                        const char **call)
{
    char buf[1024];
    size_t len = 0;

    do {
        *call = "cancel_read";
        if (len == sizeof buf - 1)
            return -EMSGSIZE;
        ssize_t n = cancel_read(fd, buf + len, sizeof buf - 1 - len, stop,
                                CANCEL_INFINITE);
        if (n <= 0)
            return (int)n; /* an error, or the client left early */
        len += (size_t)n;
        buf[len] = '\0';
    } while (strstr(buf, "\r\n\r\n") == NULL);

    /* The gate: main cancels only once the request is this far. */
    *call = "cancel_event_set";
    int err = cancel_event_set(&s->request_read);
    if (err != 0)
        return err;

    if (s->mode == SERVER_SILENT) {
        /* Never answer; read (and drop) until the client hangs up. */
        for (;;) {
            *call = "cancel_read";
            ssize_t n = cancel_read(fd, buf, sizeof buf, stop, CANCEL_INFINITE);
            if (n <= 0)
                return (int)n;
        }
    }
    if (s->mode == SERVER_ANSWER_LATER) {
        *call = "cancel_event_wait";
        err = cancel_event_wait(&s->answer, stop, CANCEL_INFINITE);
        if (err != 0)
            return err;
    }
    static const char response[] = "HTTP/1.0 200 OK\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Connection: close\r\n"
                                   "\r\n" RESPONSE_BODY;
    *call = "cancel_send"; /* which never raises SIGPIPE */
    for (size_t sent = 0; sent < sizeof response - 1;) {
        ssize_t n = cancel_send(fd, response + sent, sizeof response - 1 - sent,
                                0, stop, CANCEL_INFINITE);
        if (n < 0)
            return (int)n;
        sent += (size_t)n;
    }
    return 0;
}

static inline void *server_main(void *arg)
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

/* Listen on a free port of 127.0.0.1 (s->addr) and serve on a thread. */
static inline void server_start(struct server *s, enum server_mode mode)
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
    check("cancel_event_init", cancel_event_init(&s->answer, false));
    int rc = pthread_create(&s->thread, NULL, server_main, s);
    if (rc != 0)
        die("pthread_create", rc);
}

/* Stop the server and return how many connections it accepted. */
static inline int server_stop(struct server *s)
{
    check("cancel_source_cancel", cancel_source_cancel(s->stop));
    int rc = pthread_join(s->thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
    if (s->err != 0) {
        fprintf(stderr, EXAMPLE_NAME ": server: ");
        fail_err(s->failed_call, s->err);
    }
    if (close(s->listen_fd) < 0)
        die("close", errno);
    check("cancel_event_destroy", cancel_event_destroy(&s->request_read));
    check("cancel_event_destroy", cancel_event_destroy(&s->answer));
    cancel_source_free(s->stop);
    return s->connections;
}

/* ---- The client: a blocking request with its own abort ------------------
 *
 * Plain blocking sockets, no token anywhere: like WebClient and HttpClient,
 * the client can only be canceled through its own method, client_abort,
 * which any thread may call.  The request runs on the caller's thread, in
 * two halves: client_connect, then client_transfer.
 */

enum outcome { REQUEST_COMPLETED, REQUEST_CANCELED, REQUEST_FAILED };

struct client {
    pthread_mutex_t lock; /* guards aborted, finished and fd */
    bool aborted;         /* client_abort was called in time */
    bool finished;        /* the request ended: an abort comes too late */
    int fd;               /* the request's socket, or -1 */
    int abort_error;      /* errno of a failed shutdown in client_abort */
    struct sockaddr_in server;

    /* The result, once client_finish returned. */
    enum outcome outcome;
    const char *failed_call; /* REQUEST_FAILED: the call and its errno */
    int error;
    char response[512]; /* what the server sent, NUL-terminated */
    size_t response_len;
};

static inline void client_lock(struct client *c)
{
    int rc = pthread_mutex_lock(&c->lock);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
}

static inline void client_unlock(struct client *c)
{
    int rc = pthread_mutex_unlock(&c->lock);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

/* A client of the server at *server, with no request yet. */
static inline void client_init(struct client *c,
                               const struct sockaddr_in *server)
{
    *c = (struct client){.fd = -1, .server = *server};
    int rc = pthread_mutex_init(&c->lock, NULL);
    if (rc != 0)
        die("pthread_mutex_init", rc);
}

/* Abort the pending request (WebClient.CancelAsync,
 * HttpClient.CancelPendingRequests): never blocks.  It shuts the socket
 * down, which wakes the request's send or recv; before the socket exists
 * it only leaves a note, and the request then never connects; after the
 * request ended it does nothing. */
static inline void client_abort(struct client *c)
{
    client_lock(c);
    if (!c->finished) {
        c->aborted = true;
        /* ENOTCONN: the socket exists but is not connected yet; the
         * request looks at `aborted` again once it is. */
        if (c->fd >= 0 && shutdown(c->fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
            c->abort_error = errno;
    }
    client_unlock(c);
}

/* Whether client_abort has been called in time. */
static inline bool client_aborted(struct client *c)
{
    client_lock(c);
    bool aborted = c->aborted;
    client_unlock(c);
    return aborted;
}

/* The request ends: canceled if aborted while pending, whatever the I/O
 * returned; otherwise as the I/O says. */
static inline enum outcome client_finish(struct client *c, const char *call,
                                         int error)
{
    client_lock(c);
    c->finished = true;
    if (c->aborted)
        c->outcome = REQUEST_CANCELED;
    else if (call != NULL)
        c->outcome = REQUEST_FAILED;
    else
        c->outcome = REQUEST_COMPLETED;
    c->failed_call = call;
    c->error = error;
    client_unlock(c);
    return c->outcome;
}

/* The first half of the request: the socket and the connection.  true if
 * the request goes on; false if it already ended (see c->outcome). */
static inline bool client_connect(struct client *c)
{
    client_lock(c);
    if (c->aborted) {
        client_unlock(c);
        client_finish(c, NULL, 0); /* never connects */
        return false;
    }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int fd = c->fd;
    client_unlock(c);
    if (fd < 0) {
        client_finish(c, "socket", errno);
        return false;
    }
    if (connect(fd, (const struct sockaddr *)&c->server, sizeof c->server) <
        0) {
        client_finish(c, "connect", errno);
        return false;
    }
    return true;
}

/* The second half: send the request, read the response until the server
 * closes the connection (HTTP/1.0). */
static inline enum outcome client_transfer(struct client *c)
{
    static const char request[] = "GET / HTTP/1.0\r\n"
                                  "Host: 127.0.0.1\r\n"
                                  "\r\n";
    /* An abort before the connection existed had nothing to shut down;
     * from now on a shutdown reaches the send and the recv. */
    if (client_aborted(c))
        return client_finish(c, NULL, 0);

    for (size_t sent = 0; sent < sizeof request - 1;) {
        ssize_t n = send(c->fd, request + sent, sizeof request - 1 - sent,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return client_finish(c, "send", errno);
        sent += (size_t)n;
    }
    /* The pending part: a silent server leaves this recv blocked until
     * client_abort shuts the socket down, which makes it return 0. */
    for (;;) {
        size_t room = sizeof c->response - 1 - c->response_len;
        if (room == 0)
            return client_finish(c, "recv", EMSGSIZE);
        ssize_t n = recv(c->fd, c->response + c->response_len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return client_finish(c, "recv", errno);
        if (n == 0)
            break;
        c->response_len += (size_t)n;
    }
    c->response[c->response_len] = '\0';
    return client_finish(c, NULL, 0);
}

/* Dispose: only once nothing can call client_abort any more. */
static inline void client_destroy(struct client *c)
{
    if (c->abort_error != 0)
        die("shutdown (in client_abort)", c->abort_error);
    if (c->fd >= 0 && close(c->fd) < 0)
        die("close", errno);
    int rc = pthread_mutex_destroy(&c->lock);
    if (rc != 0)
        die("pthread_mutex_destroy", rc);
}

#endif /* CANCEL_EXAMPLES_LOCAL_HTTP_H */
