/* S2 - a raw thread that polls.
 *
 * A port of .NET's "Canceling threads cooperatively": a plain thread (here a
 * pthread) is handed only the token, never the source, and polls
 * cancel_requested in its work loop; main owns the source and cancels it
 * when the user presses 'C'.  Polling needs no callback and no lock: one
 * atomic load per check.
 *
 * Keys.  Main reads standard input one character at a time.  'C' or 'c'
 * cancels; every other character, newlines included, is ignored, so the
 * input "x\nC\n" cancels at the 'C' (the original reads a single key and,
 * on any other, leaves the worker spinning forever).  The rest of the line
 * that carried the 'C' is discarded; the worker then waits for "any key":
 * one more character, or the end of input.  At a terminal, keys arrive a
 * line at a time, so each of the two presses takes Enter.
 * End of input before a 'C' cancels as well - nobody can press 'C' any more
 * and the worker must not spin forever - with the same output, a note on
 * stderr and exit status 1.
 *
 * Output, for the input "C\n":
 *   Press 'C' to terminate the application...
 *
 *   ServerClass.StaticMethod is running on another thread.
 *   The worker thread has been canceled. Press any key to exit.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A one-shot gate: the worker opens it once it has announced itself, and
 * main takes keys only after that, as the user of the original reads the
 * "running" line before pressing 'C'. */
struct gate {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool open;
};

static void die(const char *call, int err)
{
    fprintf(stderr, "s2_thread_polling: %s: %s\n", call, strerror(err));
    exit(EXIT_FAILURE);
}

static void gate_open(struct gate *g)
{
    int rc = pthread_mutex_lock(&g->mutex);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
    g->open = true;
    rc = pthread_cond_signal(&g->cond);
    if (rc != 0)
        die("pthread_cond_signal", rc);
    rc = pthread_mutex_unlock(&g->mutex);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

static void gate_wait(struct gate *g)
{
    int rc = pthread_mutex_lock(&g->mutex);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
    while (!g->open) {
        rc = pthread_cond_wait(&g->cond, &g->mutex);
        if (rc != 0)
            die("pthread_cond_wait", rc);
    }
    rc = pthread_mutex_unlock(&g->mutex);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

/* What the worker thread receives: the token and nothing that can cancel. */
struct server_args {
    cancel_token token;
    struct gate *started;
};

/* Thread.SpinWait(50000) of the original: a little work between two polls.
 * Nothing depends on how long it takes. */
static void simulate_work(void)
{
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL); /* EINTR only shortens the "work" */
}

/* ServerClass.StaticMethod.  The token is borrowed: main frees the source
 * only after joining this thread. */
static void *server_class_static_method(void *arg)
{
    const struct server_args *args = arg;
    cancel_token ct = args->token;

    puts("ServerClass.StaticMethod is running on another thread.");
    fflush(stdout);
    gate_open(args->started);

    /* Simulate work that can be canceled. */
    while (!cancel_requested(ct))
        simulate_work();

    puts("The worker thread has been canceled. Press any key to exit.");
    fflush(stdout);
    (void)getchar(); /* any key, or the end of input */
    return NULL;
}

/* Reads keys until 'C' or 'c' (returned) or the end of input (EOF). */
static int read_until_c(void)
{
    int key;
    while ((key = getchar()) != EOF && key != 'C' && key != 'c')
        continue;
    return key;
}

static void discard_rest_of_line(void)
{
    int c;
    while ((c = getchar()) != EOF && c != '\n')
        continue;
}

int main(void)
{
    /* Main controls access to the source; the worker only sees its token. */
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        die("cancel_source_new", errno);

    puts("Press 'C' to terminate the application...\n");
    fflush(stdout);

    /* Start the worker thread and pass it the token. */
    static struct gate started = {PTHREAD_MUTEX_INITIALIZER,
                                  PTHREAD_COND_INITIALIZER, false};
    struct server_args args = {cancel_source_token(cts), &started};
    pthread_t worker;
    int rc = pthread_create(&worker, NULL, server_class_static_method, &args);
    if (rc != 0)
        die("pthread_create", rc);
    gate_wait(&started);

    int status = EXIT_SUCCESS;
    if (read_until_c() == EOF) {
        fputs("s2_thread_polling: end of input before 'C'; canceling\n",
              stderr);
        status = EXIT_FAILURE;
    } else {
        discard_rest_of_line();
    }

    /* Request cancellation; the worker notices at its next poll. */
    int err = cancel_source_cancel(cts);
    if (err != 0) {
        fprintf(stderr, "s2_thread_polling: cancel_source_cancel: %s\n",
                cancel_strerror(err));
        exit(EXIT_FAILURE);
    }

    rc = pthread_join(worker, NULL);
    if (rc != 0)
        die("pthread_join", rc);
    cancel_source_free(cts);
    return status;
}
