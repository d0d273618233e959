/* E1 - polling from a thread-pool work item.
 *
 * A port of the first example of .NET's "Cancellation in Managed Threads"
 * (the listener polls IsCancellationRequested from a work item queued with
 * ThreadPool.QueueUserWorkItem).  Main creates a source, queues a work item
 * with cancel_pool_queue and hands it the token by value; the item loops up
 * to 100000 iterations and checks the token *first* in each one:
 *
 *     for (int i = 0; i < 100000; i++) {
 *         if (cancel_requested(token)) {
 *             printf("In iteration %d, cancellation has been requested...\n",
 *                    i + 1);
 *             break;                       // clean up, then stop
 *         }
 *         work();                          // Thread.SpinWait(500000)
 *     }
 *
 * Main cancels, prints `Cancellation set in token source...`, and frees the
 * source once the item is done with the token (cts.Dispose()).  Polling is
 * the cheapest way to listen: cancel_requested is one atomic load, and the
 * item decides where it is safe to stop.
 *
 * Usage:
 *   e1_polling_work_item [--iterations K]
 *       Gated, the default.  The item's work is instant, except in
 *       iteration K (0 <= K <= 99999; K = 0: before the first iteration),
 *       where it waits until main lets it go on: main cancels while the item
 *       is held there, so it has run exactly K iterations before the cancel
 *       and reports it in iteration K + 1.  The default K is 1429, so the
 *       output is the documented one:
 *           Cancellation set in token source...
 *           In iteration 1430, cancellation has been requested...
 *   e1_polling_work_item --timed [--sleep-ms N]
 *       As the original: main sleeps 2.5 s (N ms), cancels, sleeps again,
 *       and each iteration spins; the iteration printed depends on the
 *       machine.
 *
 * The pool is one of the program's own (cancel_pool_new), so that it can be
 * freed before exit; the process-wide pool (cancel_pool_default) would do
 * the same work.  On a broken promise or a failed call the program says why
 * on stderr and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Not part of the port: the error helpers and the monitor of the gate. */
#define EXAMPLE_NAME "e1_polling_work_item"
#include "script.h"

#define MS INT64_C(1000000) /* nanoseconds */
#define ITERATIONS 100000   /* the loop bound of the original */

/* ---- Where main meets the work item -------------------------------------
 *
 * Scaffolding for the gated run, not part of the port: a monitor of
 * script.h, plain pthreads, so that it is clearly apart from the library
 * under test.
 */
struct meeting {
    struct monitor mon;
    bool gated;    /* the item is held in the work of iteration hold_at */
    long hold_at;  /* K */
    bool held;     /* the item has reached that work and waits */
    bool released; /* main let it go on */
    bool done;     /* the item has finished with the token */
};

/* A spin of about `ns` that does not look at the token: the work. */
static void spin_for(int64_t ns)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do
        clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000 * MS +
               (now.tv_nsec - start.tv_nsec) <
           ns);
}

/* The work of iteration n (n = 0: before the first one).  Gated, it is
 * instant except in iteration K, which lasts until main releases it.
 * Timed, it spins about a millisecond, as Thread.SpinWait(500000) does. */
static void work(struct meeting *m, long n)
{
    if (!m->gated) {
        if (n > 0)
            spin_for(MS);
        return;
    }
    if (n != m->hold_at)
        return;
    monitor_lock(&m->mon);
    m->held = true;
    monitor_broadcast(&m->mon);
    while (!m->released)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* ---- Thread 2: the listener ---------------------------------------------- */

struct work_item {
    cancel_token token; /* borrowed: main frees the source after `done` */
    struct meeting *meet;
};

/* DoSomeWork, in the shape of a cancel_callback (QueueUserWorkItem's
 * WaitCallback). */
static void do_some_work(void *arg)
{
    struct work_item *item = arg;
    cancel_token token = item->token;

    work(item->meet, 0);
    for (long i = 0; i < ITERATIONS; i++) {
        if (cancel_requested(token)) {
            printf("In iteration %ld, cancellation has been requested...\n",
                   i + 1);
            fflush(stdout);
            /* Perform cleanup if necessary, then terminate the
             * operation. */
            break;
        }
        /* Simulate some work. */
        work(item->meet, i + 1);
    }

    /* Tell main that the token is no longer used: from here on it may free
     * the source. */
    monitor_lock(&item->meet->mon);
    item->meet->done = true;
    monitor_broadcast(&item->meet->mon);
    monitor_unlock(&item->meet->mon);
}

/* ---- Thread 1: main ------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * MS};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--iterations K]      (0 <= K <= %d, default 1429)\n"
            "       %s --timed [--sleep-ms N]\n",
            argv0, ITERATIONS - 1, argv0);
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *argv0)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi)
        usage(argv0);
    return v;
}

int main(int argc, char **argv)
{
    bool timed = false;
    long iterations = 1429;
    long sleep_ms_arg = 2500;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = parse_long(argv[++i], 0, ITERATIONS - 1, argv[0]);
        else if (strcmp(argv[i], "--timed") == 0)
            timed = true;
        else if (strcmp(argv[i], "--sleep-ms") == 0 && i + 1 < argc)
            sleep_ms_arg = parse_long(argv[++i], 0, 3600 * 1000L, argv[0]);
        else
            usage(argv[0]);
    }

    static struct meeting meet;
    meet = (struct meeting){.gated = !timed, .hold_at = iterations};
    monitor_init(&meet.mon);

    cancel_pool *pool = cancel_pool_new(1);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);

    /* Create the token source. */
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);

    /* Pass the token to the cancelable operation. */
    static struct work_item item;
    item = (struct work_item){.token = cancel_source_token(cts), .meet = &meet};
    check("cancel_pool_queue", cancel_pool_queue(pool, do_some_work, &item));

    if (timed) {
        sleep_ms(sleep_ms_arg);
    } else {
        /* Instead of Thread.Sleep(2500): until the item has run K
         * iterations and is held in the work of the last of them. */
        monitor_lock(&meet.mon);
        while (!meet.held && !meet.done)
            monitor_wait(&meet.mon);
        bool early = meet.done;
        monitor_unlock(&meet.mon);
        if (early)
            fail("the work item ended before the cancel");
    }

    /* Request cancellation. */
    check("cancel_source_cancel", cancel_source_cancel(cts));
    puts("Cancellation set in token source...");
    fflush(stdout);

    if (timed) {
        sleep_ms(sleep_ms_arg);
    } else {
        monitor_lock(&meet.mon);
        meet.released = true;
        monitor_broadcast(&meet.mon);
        monitor_unlock(&meet.mon);
    }

    /* Cancellation should have happened, so free the source - once the item
     * no longer uses its token (the original trusts the second sleep). */
    monitor_lock(&meet.mon);
    while (!meet.done)
        monitor_wait(&meet.mon);
    monitor_unlock(&meet.mon);
    cancel_source_free(cts);

    cancel_pool_free(pool);
    monitor_destroy(&meet.mon);
    return EXIT_SUCCESS;
}
