/* E3 - nested loops that poll once per column.
 *
 * A port of .NET's "How to: Listen for Cancellation Requests by Polling":
 * a task walks a rectangle of 1000 columns by 500 rows.  The inner loop is
 * known to be fast, so the token is polled only in the outer loop's
 * condition, between columns:
 *
 *     for (col = 0; col < columns && !cancel_requested(token); col++)
 *         for (row = 0; row < rows; row++)
 *             visit(col, row);
 *     if (cancel_requested(token)) {
 *         printf("Cancelling before column %d.\n", col);
 *         return 0;                  // or: return cancel_check(token);
 *     }
 *
 * Returning normally after noticing the cancel is "simple cancellation
 * scenario #1" of the original: the task ends RanToCompletion, since .NET
 * (and libcancel) only count a body that "throws" the cancellation with its
 * own token as Canceled.  The commented alternative of the original, "if
 * using Task: token.ThrowIfCancellationRequested()", is cancel_check; with
 * it the task ends Canceled.  Either way a column, once begun, is finished:
 * every printed column is whole.
 *
 * The original writes each cell as "col,row "; here each column prints one
 * line that sums it up - its cells are counted, and the rows checked to run
 * 0 to 499 in order - so the output stays small:
 *     Column 0: 0,0 .. 0,499 (500 cells)
 *
 * Usage:
 *   e3_nested_loops [--cancel-after K] [--throw]
 *       Scripted, the default.  The task stops after each column until main
 *       lets it go on; main "presses" c (echoed as `[c] cancel`) after
 *       column K (default 2), so the task prints columns 0..K whole, then
 *       `Cancelling before column K+1.`, and main prints the task's status:
 *       RanToCompletion, or Canceled with --throw.
 *   e3_nested_loops --keys [--throw]
 *       By hand: the task runs freely (each cell a little spinning work);
 *       c cancels, the end of input too.
 *
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Not part of the port: the error helpers, the monitor of the gate and
 * the task status names. */
#define EXAMPLE_NAME "e3_nested_loops"
#include "script.h"

#define COLUMNS 1000
#define ROWS 500

/* ---- Where main meets the task --------------------------------------------
 *
 * Scaffolding for the scripted run, not part of the port (a monitor of
 * script.h, plain pthreads): when gated, the task stops after each column
 * until main lets it go on.
 */
struct meeting {
    struct monitor mon;
    bool gated;
    int columns_done; /* columns the task has finished */
    int released;     /* columns after which main let it go on */
};

/* Task: column `done` columns are finished; gated, wait for main. */
static void column_finished(struct meeting *m, int done)
{
    monitor_lock(&m->mon);
    m->columns_done = done;
    monitor_broadcast(&m->mon);
    while (m->gated && m->released < done)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* Main: wait until the task has finished n columns. */
static void await_columns(struct meeting *m, int n)
{
    monitor_lock(&m->mon);
    while (m->columns_done < n)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* Main: let the task go on after its n-th column. */
static void release_columns(struct meeting *m, int n)
{
    monitor_lock(&m->mon);
    m->released = n;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

/* ---- The task: NestedLoops(rect, token) ---------------------------------- */

struct rectangle {
    int columns;
    int rows;
};

struct nested {
    struct rectangle rect;
    bool throw_on_cancel; /* ThrowIfCancellationRequested instead of return */
    bool spin;            /* by hand: each cell is a little work */
    struct meeting *meet;
};

/* Thread.SpinWait(5000): work that does not look at the token. */
static void simulate_work(bool spin)
{
    static volatile unsigned sink;
    if (spin)
        for (int i = 0; i < 5000; i++)
            sink = sink + (unsigned)i;
}

static int nested_loops(void *arg, cancel_token token)
{
    struct nested *n = arg;
    int col;

    for (col = 0; col < n->rect.columns && !cancel_requested(token); col++) {
        /* Assume that we know that the inner loop is very fast.  Therefore,
         * polling once per column in the outer loop condition is
         * sufficient. */
        int cells = 0, first = -1, last = -1;
        for (int row = 0; row < n->rect.rows; row++) {
            /* Simulating work. */
            simulate_work(n->spin);
            if (row != last + 1)
                fail("a row was skipped");
            if (first < 0)
                first = row;
            last = row;
            cells++;
        }
        printf("Column %d: %d,%d .. %d,%d (%d cells)\n", col, col, first, col,
               last, cells);
        fflush(stdout);
        column_finished(n->meet, col + 1);
    }

    if (cancel_requested(token)) {
        /* Cleanup or undo here if necessary... */
        printf("Cancelling before column %d.\n", col);
        fflush(stdout);
        /* If using Task: token.ThrowIfCancellationRequested(). */
        if (n->throw_on_cancel)
            return cancel_check(token);
    }
    return 0;
}

/* ---- Main ---------------------------------------------------------------- */

/* By hand: read keys until c or the end of input.  The task may finish all
 * its columns first; then the key only ends the program. */
static void read_keys(void)
{
    for (;;) {
        char key;
        ssize_t n = read(STDIN_FILENO, &key, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read", errno);
        if (n == 0 || key == 'c')
            return;
    }
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--cancel-after K] [--throw]   (0 <= K < %d)\n"
            "       %s --keys [--throw]\n",
            argv0, COLUMNS - 1, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    bool keys = false, throw_on_cancel = false;
    long cancel_after = 2;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0) {
            keys = true;
        } else if (strcmp(argv[i], "--throw") == 0) {
            throw_on_cancel = true;
        } else if (strcmp(argv[i], "--cancel-after") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            cancel_after = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || end == argv[i] ||
                cancel_after < 0 || cancel_after >= COLUMNS - 1)
                usage(argv[0]);
        } else {
            usage(argv[0]);
        }
    }

    static struct meeting meet;
    meet = (struct meeting){.gated = !keys};
    monitor_init(&meet.mon);

    cancel_pool *pool = cancel_pool_new(1);
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);
    cancel_source *token_source = cancel_source_new();
    if (token_source == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(token_source);

    /* Toy object for demo purposes. */
    static struct nested nested;
    nested = (struct nested){
        .rect = {.columns = COLUMNS, .rows = ROWS},
        .throw_on_cancel = throw_on_cancel,
        .spin = keys,
        .meet = &meet,
    };

    /* The original prints this right after starting the task; printed
     * first, it cannot come after the task's first column. */
    puts("Press 'c' to cancel");
    fflush(stdout);

    /* Task.Run(() => NestedLoops(rect, token), token). */
    cancel_task *task = cancel_task_run(pool, nested_loops, &nested, token, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);

    if (keys) {
        read_keys();
    } else {
        for (int c = 1; c <= cancel_after; c++) {
            await_columns(&meet, c);
            release_columns(&meet, c);
        }
        await_columns(&meet, (int)cancel_after + 1);
        puts("[c] cancel");
        fflush(stdout);
    }
    check("cancel_source_cancel", cancel_source_cancel(token_source));
    release_columns(&meet, COLUMNS);

    /* The original does not wait for the task; the port does, so that it
     * can print how the task ended and free the source after it. */
    int rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    cancel_task_status status = cancel_task_status_of(task);
    printf("Task status: %s\n", status_name(status));
    fflush(stdout);
    if (status == CANCEL_TASK_CANCELED) {
        if (rc != -ECANCELED || cancel_task_error(task) != 0)
            fail("a Canceled task must report -ECANCELED and no error");
    } else if (status == CANCEL_TASK_RAN_TO_COMPLETION) {
        if (rc != 0)
            fail("a task that ran to completion must report 0");
    } else {
        fail_err("the task failed", rc);
    }
    if (!keys && status != (throw_on_cancel ? CANCEL_TASK_CANCELED
                                            : CANCEL_TASK_RAN_TO_COMPLETION))
        fail("the task did not end as the run expects");

    cancel_task_release(task);
    cancel_source_free(token_source);
    cancel_pool_free(pool);
    monitor_destroy(&meet.mon);
    return EXIT_SUCCESS;
}
