/* S1 - cancel a parallel for-each loop.
 *
 * A port of .NET's "How to: Cancel a Parallel.For or ForEach Loop":
 *
 *     ParallelOptions po = new ParallelOptions();
 *     po.CancellationToken = cts.Token;
 *     po.MaxDegreeOfParallelism = System.Environment.ProcessorCount;
 *     ...
 *     Parallel.ForEach(nums, po, (num) => {
 *         double d = Math.Sqrt(num);
 *         Console.WriteLine("{0} on {1}", d,
 *                           Thread.CurrentThread.ManagedThreadId);
 *     });
 *
 * over the numbers 0..9,999,999, canceled from another thread when the
 * user presses 'c'.  Here the loop is cancel_parallel_for_each with the
 * token in its call and max_degree in cancel_parallel_options.  The body
 * never looks at the token, as in the original: the loop itself stops
 * handing out iterations once the token is canceled.  Iterations already
 * running finish; none starts after the cancel; and the loop returns a
 * single -ECANCELED, "The operation was canceled." (F10: the loop's own
 * token gives one cancellation).
 *
 * --foreign: one iteration is canceled by a token that is not the loop's
 * (a deadline of its own): that is a failure of the body, not a
 * cancellation of the loop, so the loop returns CANCEL_EAGGREGATE with the
 * cancellation inside its error list (AggregateException).
 *
 * The original prints a line per iteration, in whatever order the threads
 * ran them, and cancels at a key press.  The port prints counts instead
 * and scripts the key: four workers (the calling thread and three pool
 * threads, whatever the machine); each iteration waits, before its work,
 * until the user has pressed 'c' - so when the user presses it, exactly
 * four iterations are running, one per worker.  The output is always the
 * same.
 *
 * Usage:
 *   s1_parallel_foreach [--foreign]
 *
 * The program checks the library's promises and on a broken one says why
 * on stderr and exits 1.
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

/* Not part of the port: the error helpers and the monitor of the key press. */
#define EXAMPLE_NAME "s1_parallel_foreach"
#include "script.h"

#define COUNT 10000000  /* Enumerable.Range(0, 10000000) */
#define WORKERS 4       /* po.MaxDegreeOfParallelism */
#define FOREIGN_AT 5000 /* --foreign: the iteration that is canceled */

/* ---- The key press: plain pthreads ---------------------------------------
 *
 * Scaffolding for the scripted key, apart from the library under test:
 * each iteration counts itself in and waits until the key was pressed;
 * the user waits until WORKERS iterations are in, cancels, and lets them
 * go on.  (A monitor: see script.h.) */
struct meeting {
    struct monitor mon;
    int in;       /* iterations that reached the meeting */
    bool pressed; /* the user pressed 'c' (and canceled) */
};

/* ---- The loop ------------------------------------------------------------ */

struct loop {
    bool foreign; /* --foreign */
    cancel_source *cts;
    cancel_source *deadline; /* --foreign: the iteration's own token */
    struct meeting meet;
    atomic_long started;     /* iterations begun */
    atomic_long finished;    /* iterations that did their work */
    atomic_long running;     /* iterations inside now */
    atomic_long after_press; /* iterations begun after the cancel */
    atomic_bool canceled;    /* set once the cancel returned */
    double *roots;           /* each iteration's work: sqrt(num) */
    unsigned char *done;     /* done[num]: its work is written */
};

/* (num) => { double d = Math.Sqrt(num); ... } */
static int body(void *item, void *arg, cancel_token token)
{
    struct loop *l = arg;
    int32_t num = *(const int32_t *)item;
    (void)token; /* the body, as in the original, ignores the token */

    atomic_fetch_add(&l->started, 1);
    if (atomic_load(&l->canceled))
        atomic_fetch_add(&l->after_press, 1);
    atomic_fetch_add(&l->running, 1);
    int err = 0;
    if (!l->foreign) {
        /* Wait for the key: the user presses it while we run. */
        monitor_lock(&l->meet.mon);
        l->meet.in++;
        monitor_broadcast(&l->meet.mon);
        while (!l->meet.pressed)
            monitor_wait(&l->meet.mon);
        monitor_unlock(&l->meet.mon);
    } else if (num == FOREIGN_AT) {
        /* Its own deadline passed: canceled, but not by the loop's token. */
        err = cancel_check(cancel_source_token(l->deadline));
    }
    if (err == 0) {
        l->roots[num] = sqrt((double)num); /* the work, after the cancel */
        l->done[num] = 1;
        atomic_fetch_add(&l->finished, 1);
    }
    atomic_fetch_sub_explicit(&l->running, 1, memory_order_release);
    return err;
}

/* The user presses 'c' once every worker is inside an iteration. */
static void *user_presses_c(void *arg)
{
    struct loop *l = arg;
    monitor_lock(&l->meet.mon);
    while (l->meet.in < WORKERS)
        monitor_wait(&l->meet.mon);
    int err = cancel_source_cancel(l->cts); /* cts.Cancel() */
    if (err != 0)
        fail_err("cancel_source_cancel", err);
    atomic_store(&l->canceled, true);
    l->meet.pressed = true;
    monitor_broadcast(&l->meet.mon);
    monitor_unlock(&l->meet.mon);
    return NULL;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--foreign]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    static struct loop l;
    if (argc == 2 && strcmp(argv[1], "--foreign") == 0)
        l.foreign = true;
    else if (argc != 1)
        usage(argv[0]);

    /* int[] nums = Enumerable.Range(0, 10000000).ToArray(); */
    int32_t *nums = malloc(sizeof(int32_t) * COUNT);
    l.roots = malloc(sizeof(double) * COUNT);
    l.done = calloc(COUNT, 1);
    if (nums == NULL || l.roots == NULL || l.done == NULL)
        fail("out of memory");
    for (int32_t i = 0; i < COUNT; i++)
        nums[i] = i;

    cancel_pool *pool = cancel_pool_new(WORKERS - 1);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);
    l.cts = cancel_source_new();
    l.deadline = cancel_source_new();
    if (l.cts == NULL || l.deadline == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(l.cts);
    monitor_init(&l.meet.mon);

    printf("Parallel.ForEach over %d numbers, %d at a time, with the loop's "
           "token.\n",
           COUNT, WORKERS);
    pthread_t user;
    if (l.foreign) {
        int err = cancel_source_cancel_reason(l.deadline, ETIMEDOUT);
        if (err != 0)
            fail_err("cancel_source_cancel_reason", err);
        printf("Iteration %d is canceled by its own deadline's token, not "
               "the loop's.\n",
               FOREIGN_AT);
    } else {
        int rc = pthread_create(&user, NULL, user_presses_c, &l);
        if (rc != 0)
            die("pthread_create", rc);
        printf("The user presses 'c' while %d iterations run.\n", WORKERS);
    }

    int errors[4];
    cancel_parallel_options po = CANCEL_PARALLEL_OPTIONS_INIT;
    po.max_degree = WORKERS;
    po.errors = errors;
    po.errors_cap = 4;
    int err = cancel_parallel_for_each(pool, nums, COUNT, sizeof(int32_t), body,
                                       &l, token, &po);
    cancel_token recorded = cancel_canceled_token();
    long started = atomic_load(&l.started);
    if (atomic_load_explicit(&l.running, memory_order_acquire) != 0)
        fail("an iteration still runs after the loop returned");
    if (!l.foreign) {
        int rc = pthread_join(user, NULL);
        if (rc != 0)
            die("pthread_join", rc);
    }

    if (err == -ECANCELED) {
        /* catch (OperationCanceledException e) { WriteLine(e.Message); } */
        printf("The operation was canceled.\n");
        if (po.nerrors != 0)
            fail("a single cancellation came with an error list");
        if (!cancel_token_equal(recorded, token))
            fail("the loop's token is not the canceled token recorded");
    } else if (err == CANCEL_EAGGREGATE) {
        printf("The loop failed with %zu error%s (AggregateException):\n",
               po.nerrors, po.nerrors == 1 ? "" : "s");
        for (size_t k = 0; k < po.nerrors && k < po.errors_cap; k++)
            printf("  %s: %s\n", cancel_err_name(errors[k]),
                   errors[k] == -ECANCELED ? "The operation was canceled."
                                           : cancel_strerror(errors[k]));
        printf("The loop's token %s canceled: the cancellation inside is a "
               "failure of the body.\n",
               cancel_requested(token) ? "was" : "was not");
    } else {
        fail_err("cancel_parallel_for_each", err);
    }

    /* cts.Dispose() comes after the loop; drain the pool first, so that an
     * iteration started now would show. */
    cancel_pool_free(pool);
    if (atomic_load(&l.started) != started)
        fail("an iteration started after the loop returned");

    /* The work of every iteration that finished is visible here: plain
     * writes on the workers, ordered before the loop's return. */
    long finished = atomic_load(&l.finished);
    long done = 0;
    for (int32_t i = 0; i < COUNT; i++) {
        if (l.done[i]) {
            if (l.roots[i] != sqrt((double)i))
                fail("an iteration's work is not visible after the loop");
            done++;
        }
    }
    if (done != finished)
        fail("the iterations' work is not visible after the loop");
    if (!l.foreign) {
        /* Exactly the four that ran when the user pressed 'c': each did its
         * work, after the cancel. */
        if (err != -ECANCELED || started != WORKERS || finished != WORKERS ||
            atomic_load(&l.after_press) != 0)
            fail("the canceled loop did not stop as F10 says");
        printf("%ld iterations were running at the cancel; all %ld "
               "finished their work; none started after it.\n",
               started, finished);
    } else {
        if (err != CANCEL_EAGGREGATE || po.nerrors != 1 ||
            errors[0] != -ECANCELED || cancel_requested(token) ||
            finished != started - 1)
            fail("the loop with a foreign cancellation did not fail as F10 "
                 "says");
        printf("The other iterations that had started ran to their end.\n");
    }
    printf("No iteration runs, or will run, once the loop returned.\n");

    monitor_destroy(&l.meet.mon);
    free(l.roots);
    free(l.done);
    free(nums);
    cancel_source_free(l.deadline);
    cancel_source_free(l.cts);
    return EXIT_SUCCESS;
}
