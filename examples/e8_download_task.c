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
 * cancelable I/O and stopped by a source of its own.
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

/* Not part of the port: the error helpers and the task status names. */
#define EXAMPLE_NAME "e8_download_task"
#include "script.h"

#define RESPONSE_BODY "Hello from the local server.\n"

/* ---- The local server (scaffolding: it stands in for www.contoso.com) --- */

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
static int serve(struct server *s, int fd, cancel_token stop, const char **call)
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

static void *server_main(void *arg)
{
    struct server *s = arg;
    cancel_token stop = cancel_source_token(s->stop);
    const char *call = "cancel_accept";

    for (;;) {
        int fd = cancel_accept(s->listen_fd, NULL, NULL, stop, CANCEL_INFINITE);
        int err = fd < 0 ? fd : 0;
        if (fd >= 0) {
            s->connections++;
            err = serve(s, fd, stop, &call);
            if (close(fd) < 0 && err == 0) {
                call = "close";
                err = -errno;
            }
        }
        if (err == -ECANCELED)
            return NULL; /* main stopped the server */
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
    check("cancel_event_init", cancel_event_init(&s->answer, false));
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
        fprintf(stderr, "e8_download_task: server: ");
        fail_err(s->failed_call, s->err);
    }
    if (close(s->listen_fd) < 0)
        die("close", errno);
    check("cancel_event_destroy", cancel_event_destroy(&s->request_read));
    check("cancel_event_destroy", cancel_event_destroy(&s->answer));
    cancel_source_free(s->stop);
    return s->connections;
}

/* ---- The client: a blocking download with its own abort ----------------
 *
 * No token anywhere: like HttpClient, it can only be canceled through its
 * own method, client_abort, which any thread may call.
 */

enum outcome { DOWNLOAD_COMPLETED, DOWNLOAD_CANCELED, DOWNLOAD_FAILED };

struct client {
    pthread_mutex_t lock; /* guards aborted, finished and fd */
    bool aborted;         /* client_abort was called in time */
    bool finished;        /* the download ended: an abort comes too late */
    int fd;               /* the socket, or -1 */
    int abort_error;      /* errno of a failed shutdown in client_abort */
    struct sockaddr_in server;

    /* The result, once client_finish returned. */
    enum outcome outcome;
    const char *failed_call; /* DOWNLOAD_FAILED: the call and its errno */
    int error;
    char response[512]; /* what the server sent, NUL-terminated */
    size_t response_len;
};

static void client_lock(struct client *c)
{
    int rc = pthread_mutex_lock(&c->lock);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
}

static void client_unlock(struct client *c)
{
    int rc = pthread_mutex_unlock(&c->lock);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

static void client_init(struct client *c, const struct sockaddr_in *server)
{
    *c = (struct client){.fd = -1, .server = *server};
    int rc = pthread_mutex_init(&c->lock, NULL);
    if (rc != 0)
        die("pthread_mutex_init", rc);
}

/* CancelPendingRequests: never blocks.  It shuts the socket down, which
 * wakes the download's send or recv; before the socket exists it only
 * leaves a note; after the download ended it does nothing. */
static void client_abort(struct client *c)
{
    client_lock(c);
    if (!c->finished) {
        c->aborted = true;
        /* ENOTCONN: not connected yet; the download looks at `aborted`
         * again once it is. */
        if (c->fd >= 0 && shutdown(c->fd, SHUT_RDWR) < 0 && errno != ENOTCONN)
            c->abort_error = errno;
    }
    client_unlock(c);
}

static bool client_aborted(struct client *c)
{
    client_lock(c);
    bool aborted = c->aborted;
    client_unlock(c);
    return aborted;
}

/* The download ends: canceled if aborted while pending, whatever the I/O
 * returned; otherwise as the I/O says. */
static enum outcome client_finish(struct client *c, const char *call, int error)
{
    client_lock(c);
    c->finished = true;
    if (c->aborted)
        c->outcome = DOWNLOAD_CANCELED;
    else if (call != NULL)
        c->outcome = DOWNLOAD_FAILED;
    else
        c->outcome = DOWNLOAD_COMPLETED;
    c->failed_call = call;
    c->error = error;
    client_unlock(c);
    return c->outcome;
}

/* The first half of the download: the socket and the connection.  true if
 * the download goes on; false if it already ended (see c->outcome). */
static bool client_connect(struct client *c)
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
static enum outcome client_transfer(struct client *c)
{
    static const char request[] = "GET / HTTP/1.0\r\n"
                                  "Host: 127.0.0.1\r\n"
                                  "\r\n";
    /* An abort before the connection existed had nothing to shut down. */
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
static void client_destroy(struct client *c)
{
    if (c->abort_error != 0)
        die("shutdown (in client_abort)", c->abort_error);
    if (c->fd >= 0 && close(c->fd) < 0)
        die("close", errno);
    int rc = pthread_mutex_destroy(&c->lock);
    if (rc != 0)
        die("pthread_mutex_destroy", rc);
}

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
    case DOWNLOAD_COMPLETED: {
        const char *body = strstr(client.response, "\r\n\r\n");
        if (body == NULL || strcmp(body + 4, RESPONSE_BODY) != 0 ||
            strncmp(client.response, "HTTP/1.0 200 ", 13) != 0)
            fail("the response is not the server's");
        printf("The download has completed:\n%s", body + 4);
        break;
    }
    case DOWNLOAD_CANCELED:
        puts("The download was canceled.");
        result = cancel_throw(token); /* OperationCanceledException(token) */
        break;
    case DOWNLOAD_FAILED:
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
