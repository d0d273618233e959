/* E12 - cancel a parallel query whose element function polls.
 *
 * A port of the second example of .NET's "How to: Cancel a PLINQ Query"
 * (PLINQCancellation_2):
 *
 *     results = (from num in source.AsParallel().WithCancellation(cts.Token)
 *                where num % 3 == 0
 *                select Function(num, cts.Token)).ToArray();
 *
 * over 1..1,000,000, where Function works in five slices of about a
 * millisecond and calls ThrowIfCancellationRequested after each, so a
 * cancel is noticed within a slice.  Here the query is
 * cancel_parallel_filter then cancel_parallel_map with one token, and
 * Function "throws" the C way: it returns cancel_check(token), which
 * records the token as this thread's canceled token and returns -ECANCELED.
 * The query sees its own token recorded and canceled, so that is its own
 * cancellation, and the call returns a single -ECANCELED (F9).
 *
 * What comes back, as .NET reports it (its catch blocks print each
 * exception's message):
 *   canceled (the default)   The operation was canceled.
 *   --fail   one Function fails with another error while the token fires:
 *            CANCEL_EAGGREGATE, and the error list holds both - the
 *            failure and the query's cancellation (AggregateException)
 *   --foreign  one Function is canceled by a token of its own (a deadline
 *            of that element), not the query's: a failure inside the
 *            composite, not cooperative cancellation
 * Each error of a list is printed with .NET's message: -ECANCELED as
 * "The operation was canceled.", -EIO as IOException's "I/O error
 * occurred.".
 *
 * The original's user cancels after a random wait; the port scripts the
 * click: the 1000th Function to start (and with --fail the 1001st too,
 * which another worker runs, since the 1000th holds its own) tells a
 * "user" thread that it runs and waits in its first slice until the user
 * has canceled.  A slice of work is a short spin here, so the run takes
 * milliseconds; --slice-us N makes each slice about N microseconds (1000:
 * the original's millisecond; the click then comes after about a second).
 *
 * Usage:
 *   e12_query_polls [--fail | --foreign] [--slice-us N]
 *
 * The program checks the library's promises (the result, the error list,
 * the canceled token recorded, no partial array, no element function
 * running after the query returned) and on a broken one says why on
 * stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Not part of the port: the error helpers and the monitor of the click. */
#define EXAMPLE_NAME "e12_query_polls"
#include "script.h"

#define COUNT 1000000 /* Enumerable.Range(1, 1000000) */
#define FIRST 1000  /* the Function running when the user clicks: the 1000th */
#define SECOND 1001 /* --fail: the other one, the 1001st */
#define WORKERS 4   /* the calling thread and three pool threads */

/* ---- The click: a counter under a mutex, plain pthreads -----------------
 *
 * Scaffolding for the scripted cancel, apart from the library under test:
 * each scripted Function raises `reached` and waits for `clicked`; the
 * user waits until all of them are there, cancels, and raises `clicked`.
 * (A monitor: see script.h.) */
struct meeting {
    struct monitor mon;
    int reached;
    bool clicked;
};

static void meeting_init(struct meeting *m)
{
    *m = (struct meeting){.reached = 0};
    monitor_init(&m->mon);
}

static void meeting_destroy(struct meeting *m)
{
    monitor_destroy(&m->mon);
}

/* A scripted Function: here now; wait for the click. */
static void meeting_arrive(struct meeting *m)
{
    monitor_lock(&m->mon);
    m->reached++;
    monitor_broadcast(&m->mon);
    while (!m->clicked)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* ---- The query ----------------------------------------------------------- */

enum mode { CANCELED, FAIL, FOREIGN };

struct query {
    enum mode mode;
    long slice_ns; /* one slice of Function's work */
    cancel_source *cts;
    cancel_source *deadline; /* --foreign: the FIRST Function's own token */
    struct meeting meet;
    int scripted;         /* Functions the user waits for */
    atomic_long running;  /* element functions inside now */
    atomic_long calls;    /* element functions started */
    atomic_long startedf; /* Functions started */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Work hard for about one slice (Thread.SpinWait). */
static void work_a_slice(long ns)
{
    if (ns <= 0) {
        for (volatile int k = 0; k < 200; k++)
            ;
        return;
    }
    int64_t end = now_ns() + ns;
    while (now_ns() < end)
        ;
}

static int is_multiple_of_3(const void *item, void *arg, cancel_token token)
{
    struct query *q = arg;
    (void)token;
    atomic_fetch_add_explicit(&q->calls, 1, memory_order_relaxed);
    return *(const int32_t *)item % 3 == 0;
}

/* Function(n, ct): five slices of work, a cancellation check after each;
 * the result is sqrt(n).  Returns 0, or the error it "throws". */
static int function(const void *in, void *out, void *arg, cancel_token ct)
{
    struct query *q = arg;
    int32_t n = *(const int32_t *)in;
    int err = 0;

    atomic_fetch_add_explicit(&q->calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->running, 1, memory_order_relaxed);
    long nth = atomic_fetch_add(&q->startedf, 1) + 1; /* the nth to start */
    for (int i = 0; i < 5 && err == 0; i++) {
        if (i == 0 && q->mode != FOREIGN &&
            (nth == FIRST || (q->mode == FAIL && nth == SECOND)))
            meeting_arrive(&q->meet); /* the user clicks meanwhile */
        else
            work_a_slice(q->slice_ns);

        if (q->mode == FAIL && nth == FIRST) {
            err = -EIO; /* throw new IOException() */
        } else if (q->mode == FOREIGN && nth == FIRST) {
            /* This element's own deadline has passed: its token, not the
             * query's, is canceled. */
            err = cancel_check(cancel_source_token(q->deadline));
        } else {
            err = cancel_check(ct); /* ct.ThrowIfCancellationRequested() */
        }
    }
    if (err == 0)
        *(double *)out = sqrt((double)n);
    atomic_fetch_sub_explicit(&q->running, 1, memory_order_release);
    return err;
}

static void *user_clicks_the_cancel_button(void *arg)
{
    struct query *q = arg;
    monitor_lock(&q->meet.mon);
    while (q->meet.reached < q->scripted)
        monitor_wait(&q->meet.mon);
    int err = cancel_source_cancel(q->cts);
    if (err != 0)
        fail_err("cancel_source_cancel", err);
    q->meet.clicked = true;
    monitor_broadcast(&q->meet.mon);
    monitor_unlock(&q->meet.mon);
    return NULL;
}

/* .NET's message for each error the query can report. */
static const char *message(int err)
{
    switch (err) {
    case -ECANCELED:
        return "The operation was canceled.";
    case -EIO:
        return "I/O error occurred.";
    default:
        return cancel_strerror(err);
    }
}

/* The error's symbolic name (the library's table does not hold EIO: no
 * call of the library returns it; Function does). */
static const char *name(int err)
{
    return err == -EIO ? "EIO" : cancel_err_name(err);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--fail | --foreign] [--slice-us N]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    static struct query q;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fail") == 0 && q.mode == CANCELED) {
            q.mode = FAIL;
        } else if (strcmp(argv[i], "--foreign") == 0 && q.mode == CANCELED) {
            q.mode = FOREIGN;
        } else if (strcmp(argv[i], "--slice-us") == 0 && i + 1 < argc) {
            char *end;
            long us = strtol(argv[++i], &end, 10);
            if (*end != '\0' || us < 0 || us > 1000000)
                usage(argv[0]);
            q.slice_ns = us * 1000;
        } else {
            usage(argv[0]);
        }
    }

    int32_t *source = malloc(sizeof(int32_t) * COUNT);
    if (source == NULL)
        fail("out of memory");
    for (int32_t i = 0; i < COUNT; i++)
        source[i] = i + 1;

    /* Four workers, whatever the machine: --fail needs two Functions to
     * run at once. */
    cancel_pool *pool = cancel_pool_new(WORKERS - 1);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);
    q.cts = cancel_source_new();
    q.deadline = cancel_source_new();
    if (q.cts == NULL || q.deadline == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(q.cts);
    meeting_init(&q.meet);

    printf("Query: Function(n) for the multiples of 3 in 1..%d; Function "
           "checks the token after each of its five slices of work.\n",
           COUNT);
    pthread_t user;
    if (q.mode == FOREIGN) {
        int err = cancel_source_cancel_reason(q.deadline, ETIMEDOUT);
        if (err != 0)
            fail_err("cancel_source_cancel_reason", err);
        printf("The %dth Function to start is canceled by its own "
               "deadline's token, not the query's.\n",
               FIRST);
    } else {
        q.scripted = q.mode == FAIL ? 2 : 1;
        int rc = pthread_create(&user, NULL, user_clicks_the_cancel_button, &q);
        if (rc != 0)
            die("pthread_create", rc);
        if (q.mode == FAIL)
            printf("The user clicks Cancel while the %dth and the %dst "
                   "Functions to start run; the %dth fails at the same "
                   "time.\n",
                   FIRST, SECOND, FIRST);
        else
            printf("The user clicks Cancel while the %dth Function to start "
                   "runs.\n",
                   FIRST);
    }

    /* from num in source.AsParallel().WithCancellation(cts.Token)
     * where num % 3 == 0 select Function(num, cts.Token) */
    int errors[8];
    cancel_parallel_options opts = CANCEL_PARALLEL_OPTIONS_INIT;
    opts.max_degree = WORKERS;
    opts.errors = errors;
    opts.errors_cap = 8;
    void *nums = NULL;
    size_t count = 0;
    double *results = NULL;
    int err =
        cancel_parallel_filter(pool, source, COUNT, sizeof(int32_t), &nums,
                               &count, is_multiple_of_3, &q, token, &opts);
    if (err == 0) {
        results = malloc(count * sizeof(double));
        if (results == NULL)
            fail("out of memory");
        err = cancel_parallel_map(pool, nums, count, sizeof(int32_t), results,
                                  sizeof(double), function, &q, token, &opts);
    }
    cancel_token recorded = cancel_canceled_token();
    long calls = atomic_load(&q.calls);
    if (atomic_load_explicit(&q.running, memory_order_acquire) != 0)
        fail("a Function still runs after the query returned");
    if (q.mode != FOREIGN) {
        int rc = pthread_join(user, NULL);
        if (rc != 0)
            die("pthread_join", rc);
    }

    if (err == -ECANCELED) {
        /* catch (OperationCanceledException e) */
        printf("%s\n", message(err));
        if (opts.nerrors != 0)
            fail("a single cancellation came with an error list");
        if (!cancel_token_equal(recorded, token))
            fail("the query's token is not the canceled token recorded");
    } else if (err == CANCEL_EAGGREGATE) {
        /* catch (AggregateException ae): each inner exception */
        printf("The query failed with %zu error%s (AggregateException):\n",
               opts.nerrors, opts.nerrors == 1 ? "" : "s");
        for (size_t k = 0; k < opts.nerrors && k < opts.errors_cap; k++)
            printf("  %s: %s\n", name(errors[k]), message(errors[k]));
    } else if (err != 0) {
        fail_err("the query", err);
    }

    /* Whatever the outcome, a query that did not complete hands back
     * nothing as if it were whole. */
    if (err == 0) {
        printf("%zu results, the first sqrt(3) = %.4f.\n", count, results[0]);
    } else {
        printf("No results.\n");
    }

    bool ok;
    switch (q.mode) {
    case CANCELED:
        ok = err == -ECANCELED;
        break;
    case FAIL:
        ok = err == CANCEL_EAGGREGATE && opts.nerrors == 2 &&
             ((errors[0] == -EIO && errors[1] == -ECANCELED) ||
              (errors[0] == -ECANCELED && errors[1] == -EIO)) &&
             cancel_requested(token);
        break;
    default:
        ok = err == CANCEL_EAGGREGATE && opts.nerrors == 1 &&
             errors[0] == -ECANCELED && !cancel_requested(token);
        break;
    }
    if (!ok)
        fail("the query did not end as F9 says");

    cancel_pool_free(pool); /* drains: nothing of the query may run now */
    if (atomic_load(&q.calls) != calls)
        fail("an element function ran after the query returned");
    printf("No element function ran after the query returned.\n");

    free(results);
    free(nums);
    free(source);
    meeting_destroy(&q.meet);
    cancel_source_free(q.deadline);
    cancel_source_free(q.cts);
    return EXIT_SUCCESS;
}
