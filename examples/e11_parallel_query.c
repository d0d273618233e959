/* E11 - cancel a parallel query over data.
 *
 * A port of the first example of .NET's "How to: Cancel a PLINQ Query"
 * (PLINQCancellation_1):
 *
 *     results = (from num in source.AsParallel().WithCancellation(cts.Token)
 *                where num % 3 == 0
 *                orderby num descending
 *                select num).ToArray();
 *
 * over the numbers 1..10,000,000.  Here the query is two calls that take
 * the same token: cancel_parallel_filter keeps the multiples of 3 (in
 * source order, in a new array) and cancel_parallel_sort orders them
 * descending in place.  A call whose own token fires returns -ECANCELED -
 * one cancellation, not a composite error - and hands back no partial
 * result as if it were whole: the filter's array is NULL and its count 0.
 *
 * The original cancels from another task after a random 150-500 ms
 * ("UserClicksTheCancelButton").  The port makes that click a scripted
 * trigger, so the output is always the same: with --cancel the predicate,
 * when it reaches 5,000,000, tells a "user" thread, which cancels the
 * source and only then lets the predicate go on - the query is certainly
 * still running when its token fires.
 *
 * What .NET prints for a canceled query is the exception's message; the
 * port prints the same text, "The operation was canceled.", for
 * -ECANCELED.  Instead of the 3,333,333 lines of results it prints their
 * count and both ends.
 *
 * Usage:
 *   e11_parallel_query            run the query to its end
 *   e11_parallel_query --cancel   cancel it while it runs
 *
 * The program also checks what the library promises - the result, that no
 * partial array came back, that no predicate runs once the query returned
 * - and on a broken promise says why on stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not part of the port: the error helpers and the monitor of the click. */
#define EXAMPLE_NAME "e11_parallel_query"
#include "script.h"

#define COUNT 10000000   /* Enumerable.Range(1, 10000000) */
#define CLICK_AT 5000000 /* --cancel: the user clicks when the query is here   \
                          */

/* ---- The click: a one-shot signal, plain pthreads ------------------------
 *
 * Scaffolding for the scripted cancel, apart from the library under test:
 * the predicate raises `reached` and waits for `clicked`; the user thread
 * waits for `reached`, cancels, and raises `clicked`.  (A monitor: see
 * script.h.) */
struct signal {
    struct monitor mon;
    bool raised;
};

static void signal_init(struct signal *s)
{
    monitor_init(&s->mon);
    s->raised = false;
}

static void signal_destroy(struct signal *s)
{
    monitor_destroy(&s->mon);
}

static void signal_raise(struct signal *s)
{
    monitor_lock(&s->mon);
    s->raised = true;
    monitor_broadcast(&s->mon);
    monitor_unlock(&s->mon);
}

static void signal_wait(struct signal *s)
{
    monitor_lock(&s->mon);
    while (!s->raised)
        monitor_wait(&s->mon);
    monitor_unlock(&s->mon);
}

/* ---- The query ----------------------------------------------------------- */

struct query {
    cancel_source *cts;
    int32_t click_at;      /* 0: nobody clicks */
    struct signal reached; /* the predicate is at click_at */
    struct signal clicked; /* the user canceled */
    atomic_long calls;     /* predicates started */
    atomic_long returns;   /* predicates that returned */
};

/* where num % 3 == 0 */
static int is_multiple_of_3(const void *item, void *arg, cancel_token token)
{
    struct query *q = arg;
    int32_t num = *(const int32_t *)item;
    (void)token; /* data traversal: the query itself watches the token */

    atomic_fetch_add_explicit(&q->calls, 1, memory_order_relaxed);
    if (num == q->click_at) {
        signal_raise(&q->reached);
        signal_wait(&q->clicked);
    }
    atomic_fetch_add_explicit(&q->returns, 1, memory_order_release);
    return num % 3 == 0;
}

/* orderby num descending */
static int descending(const void *a, const void *b, void *arg)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    (void)arg;
    return (x < y) - (x > y);
}

/* UserClicksTheCancelButton: once the query is at click_at. */
static void *user_clicks_the_cancel_button(void *arg)
{
    struct query *q = arg;
    signal_wait(&q->reached);
    int err = cancel_source_cancel(q->cts);
    if (err != 0)
        fail_err("cancel_source_cancel", err);
    signal_raise(&q->clicked);
    return NULL;
}

/* The query as one call: filter, then sort, with one token.  Returns 0 or
 * the first call's error; *results / *n are NULL / 0 unless it is 0. */
static int run_query(cancel_pool *pool, const int32_t *source, struct query *q,
                     int32_t **results, size_t *n)
{
    cancel_token token = cancel_source_token(q->cts);
    void *out = NULL;
    size_t count = 0;
    *results = NULL;
    *n = 0;
    int err = cancel_parallel_filter(pool, source, COUNT, sizeof(int32_t), &out,
                                     &count, is_multiple_of_3, q, token, NULL);
    if (err != 0) {
        if (out != NULL || count != 0)
            fail("a failed filter handed back a partial array");
        return err;
    }
    err = cancel_parallel_sort(pool, out, count, sizeof(int32_t), descending,
                               NULL, token, NULL);
    if (err != 0) {
        free(out); /* canceled while sorting: the items, in some order */
        return err;
    }
    *results = out;
    *n = count;
    return 0;
}

static void print_results(const int32_t *r, size_t n)
{
    printf("%zu results:", n);
    if (n <= 10) {
        for (size_t k = 0; k < n; k++)
            printf(" %d", (int)r[k]);
    } else {
        for (size_t k = 0; k < 5; k++)
            printf(" %d", (int)r[k]);
        printf(" ...");
        for (size_t k = n - 5; k < n; k++)
            printf(" %d", (int)r[k]);
    }
    printf("\n");
    if (n > 0)
        printf("First: %d, last: %d.\n", (int)r[0], (int)r[n - 1]);
}

/* The query's results must be the multiples of 3, descending. */
static void check_results(const int32_t *r, size_t n)
{
    if (n != COUNT / 3)
        fail("wrong number of results");
    for (size_t k = 0; k < n; k++)
        if (r[k] != (int32_t)(COUNT / 3 * 3 - 3 * k))
            fail("wrong result");
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--cancel]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    bool cancel = false;
    if (argc == 2 && strcmp(argv[1], "--cancel") == 0)
        cancel = true;
    else if (argc != 1)
        usage(argv[0]);

    /* int[] source = Enumerable.Range(1, 10000000).ToArray(); */
    int32_t *source = malloc(sizeof(int32_t) * COUNT);
    if (source == NULL)
        fail("out of memory");
    for (int32_t i = 0; i < COUNT; i++)
        source[i] = i + 1;

    cancel_pool *pool = cancel_pool_new(0); /* one thread per CPU */
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);
    static struct query q;
    q.cts = cancel_source_new();
    if (q.cts == NULL)
        fail_err("cancel_source_new", -errno);
    signal_init(&q.reached);
    signal_init(&q.clicked);

    printf("Query: the multiples of 3 in 1..%d, sorted descending.\n", COUNT);
    pthread_t user;
    if (cancel) {
        q.click_at = CLICK_AT;
        int rc = pthread_create(&user, NULL, user_clicks_the_cancel_button, &q);
        if (rc != 0)
            die("pthread_create", rc);
        printf("The user clicks Cancel when the query reaches %d.\n", CLICK_AT);
    }

    int32_t *results;
    size_t n;
    int err = run_query(pool, source, &q, &results, &n);
    long returns = atomic_load_explicit(&q.returns, memory_order_acquire);
    long calls = atomic_load(&q.calls);
    if (calls != returns)
        fail("a predicate still runs after the query returned");
    if (cancel) {
        int rc = pthread_join(user, NULL);
        if (rc != 0)
            die("pthread_join", rc);
    }

    if (err == -ECANCELED) {
        /* catch (OperationCanceledException e) { WriteLine(e.Message); } */
        printf("The operation was canceled.\n");
        if (!cancel_token_equal(cancel_canceled_token(),
                                cancel_source_token(q.cts)))
            fail("the query's token is not the canceled token recorded");
        if (results != NULL || n != 0)
            fail("a canceled query handed back results");
        printf("No results: the query handed back no array.\n");
    } else if (err == 0) {
        check_results(results, n);
        print_results(results, n);
    } else {
        fail_err("the query", err);
    }

    /* Draining the pool runs whatever it still holds: a predicate that
     * started now would show in the count. */
    cancel_pool_free(pool);
    if (atomic_load(&q.calls) != calls)
        fail("a predicate ran after the query returned");
    if (cancel)
        printf("No predicate ran after the query returned.\n");

    if (cancel != (err == -ECANCELED))
        fail(cancel ? "the query was not canceled" : "the query was canceled");
    free(results);
    free(source);
    signal_destroy(&q.reached);
    signal_destroy(&q.clicked);
    cancel_source_free(q.cts); /* using CancellationTokenSource cts */
    return EXIT_SUCCESS;
}
