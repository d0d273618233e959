/* E10 - cancel a task and its children.
 *
 * A port of .NET's "How to: Cancel a Task and Its Children".  Main starts a
 * "cancellable" task and a parent task that starts up to 8 child tasks, one
 * token for all of them - passed to each body, so that it can stop during
 * its work, and to each task, so that a task canceled before it starts
 * never runs.  Each body polls the token at every step of its work:
 *
 *     if (cancel_requested(ct)) {              // on entry
 *         printf("Task %d was cancelled before it got started.\n", id);
 *         return cancel_check(ct);
 *     }
 *     for (i = 0; i <= max_iterations; i++) {
 *         work();                              // a bit, not too much
 *         if (cancel_requested(ct)) {
 *             printf("Task %d work cancelled\n", id);
 *             return cancel_check(ct);
 *         }
 *     }
 *
 * Main cancels, waits for every task (Task.WhenAll: cancel_task_wait_all),
 * which reports the cancellation - `Main: OperationCanceledException
 * thrown` - and prints each task's status in creation order.  A task that
 * finished before the cancel is RanToCompletion; one that was working
 * notices and ends Canceled; one still queued is ended Canceled by the
 * cancel itself and its body never runs; the parent stops, so no child is
 * created after the cancel.  Task ids are given in creation order (1, the
 * cancellable task; 2, the parent; 3..10, children), as Task.Id would.
 *
 * Usage:
 *   e10_task_children
 *       Scripted, the default.  A pool of 3 threads, and every body stops
 *       at each step of its work until main lets it go on, so that each
 *       kind of ending appears, always the same way: task 1 and children
 *       3 and 4 finish before the cancel (RanToCompletion); the parent 2
 *       and child 5 are working (`work cancelled`); child 6 has started
 *       but not yet looked at the token (`cancelled before it got
 *       started`); child 7 is queued behind them - all three threads are
 *       busy - and never runs.  Keys are echoed as `[k] ...`.
 *   e10_task_children --attached
 *       The children are attached to the parent (CANCEL_TASK_ATTACHED,
 *       TaskCreationOptions.AttachedToParent) and the parent stops after 5
 *       of them.  Its body ends before the cancel, but the parent waits for
 *       its children (WaitingForChildrenToComplete) and its outcome
 *       includes theirs: it ends Canceled, once they have.  Task 1 is kept
 *       working, so that child 7 stays queued.
 *   e10_task_children --keys [--attached]
 *       By hand: the tasks run freely; a key begins, c cancels.
 *
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Not part of the port: the error helpers, the monitor of the gates and
 * the task status names. */
#define EXAMPLE_NAME "e10_task_children"
#include "script.h"

#define MAX_CHILDREN 8
#define MAX_TASKS (2 + MAX_CHILDREN)
#define CANCELLABLE_ID 1
#define PARENT_ID 2

static void say(const char *line)
{
    puts(line);
    fflush(stdout);
}

/* ---- Where main meets the tasks -------------------------------------------
 *
 * Scaffolding for the scripted runs, not part of the port (a monitor of
 * script.h, plain pthreads).
 * Each body passes numbered gates: gate 1 on entry, before it looks at the
 * token, then one gate per step of work.  Gated, a task waits at gate n
 * until main allows it; main runs a task "to gate n" (it then waits there)
 * or "free" (to the end of its body).
 */
struct gates {
    struct monitor mon;
    bool gated;
    int reached[MAX_TASKS + 1]; /* gates reached, by task id */
    int allowed[MAX_TASKS + 1]; /* gates it may pass */
    bool ended[MAX_TASKS + 1];  /* its body has returned (or is about to) */
};

/* Task id: the next gate.  Not gated, a step of work is a little spinning
 * that does not look at the token (SpinWait.SpinOnce, 100 times). */
static void gate(struct gates *g, int id, bool work)
{
    if (!g->gated) {
        static volatile unsigned sink;
        if (work)
            for (unsigned i = 0; i < 100 * 100; i++)
                sink = sink + i;
        return;
    }
    monitor_lock(&g->mon);
    int n = ++g->reached[id];
    monitor_broadcast(&g->mon);
    while (g->allowed[id] < n)
        monitor_wait(&g->mon);
    monitor_unlock(&g->mon);
}

static void mark_ended(struct gates *g, int id)
{
    monitor_lock(&g->mon);
    g->ended[id] = true;
    monitor_broadcast(&g->mon);
    monitor_unlock(&g->mon);
}

/* Main: let task id pass its gates up to n - 1 and wait until it waits at
 * gate n (it may not have started yet). */
static void run_to(struct gates *g, int id, int n)
{
    monitor_lock(&g->mon);
    g->allowed[id] = n - 1;
    monitor_broadcast(&g->mon);
    while (g->reached[id] < n && !g->ended[id])
        monitor_wait(&g->mon);
    bool ended = g->ended[id];
    monitor_unlock(&g->mon);
    if (ended)
        fail("a task ended before the gate the script expects");
}

/* Main: let task id run to the end of its body, and wait for that. */
static void run_free(struct gates *g, int id)
{
    monitor_lock(&g->mon);
    g->allowed[id] = INT_MAX;
    monitor_broadcast(&g->mon);
    while (!g->ended[id])
        monitor_wait(&g->mon);
    monitor_unlock(&g->mon);
}

static int gates_reached(struct gates *g, int id)
{
    monitor_lock(&g->mon);
    int n = g->reached[id];
    monitor_unlock(&g->mon);
    return n;
}

/* ---- The tasks ----------------------------------------------------------- */

struct demo {
    cancel_token token;
    cancel_pool *pool;
    struct gates g;
    unsigned child_flags; /* 0 or CANCEL_TASK_ATTACHED */
    int max_children;     /* the parent's loop bound: 8, as documented */
    int next_id;          /* written by main, then by the parent only */
    /* The bag of tasks (ConcurrentBag): by id, under g.mon. */
    cancel_task *tasks[MAX_TASKS + 1];
};

struct task_arg {
    struct demo *d;
    int id; /* Task.CurrentId */
};

static struct task_arg args[MAX_TASKS + 1];

static void bag_add(struct demo *d, int id, cancel_task *task)
{
    monitor_lock(&d->g.mon);
    d->tasks[id] = task;
    monitor_unlock(&d->g.mon);
}

static cancel_task *bag_get(struct demo *d, int id)
{
    monitor_lock(&d->g.mon);
    cancel_task *task = d->tasks[id];
    monitor_unlock(&d->g.mon);
    return task;
}

static int do_some_work(struct demo *d, int id, cancel_token ct,
                        int max_iterations)
{
    /* Was cancellation already requested? */
    if (cancel_requested(ct)) {
        printf("Task %d was cancelled before it got started.\n", id);
        fflush(stdout);
        return cancel_check(ct);
    }
    for (int i = 0; i <= max_iterations; i++) {
        /* Do a bit of work.  Not too much. */
        gate(&d->g, id, true);
        if (cancel_requested(ct)) {
            printf("Task %d work cancelled\n", id);
            fflush(stdout);
            return cancel_check(ct);
        }
    }
    return 0;
}

/* Task.Run(() => { DoSomeWork(token); ... }, token) */
static int cancellable_body(void *arg, cancel_token ct)
{
    struct task_arg *a = arg;
    gate(&a->d->g, a->id, false);
    int rc = do_some_work(a->d, a->id, ct, 10);
    if (rc == 0) {
        printf("Cancellable: Task %d ran to completion\n", a->id);
        fflush(stdout);
    }
    mark_ended(&a->d->g, a->id);
    return rc;
}

static int child_body(void *arg, cancel_token ct)
{
    struct task_arg *a = arg;
    gate(&a->d->g, a->id, false);
    int rc = do_some_work(a->d, a->id, ct, 10);
    if (rc == 0) {
        printf("Child: Task %d ran to completion\n", a->id);
        fflush(stdout);
    }
    mark_ended(&a->d->g, a->id);
    return rc;
}

static int parent_body(void *arg, cancel_token ct)
{
    struct task_arg *a = arg;
    struct demo *d = a->d;
    int rc = 0;
    (void)ct; /* the lambda captures `token`, the same */

    gate(&d->g, a->id, false);
    for (int i = 0; i < d->max_children; i++) {
        /* If cancellation was requested we don't need to start any more
         * child tasks (that would immediately cancel): break out of the
         * loop. */
        if (cancel_requested(d->token))
            break;

        /* For each child task, pass the same token to each body and to the
         * task. */
        int id = d->next_id++;
        args[id] = (struct task_arg){.d = d, .id = id};
        cancel_task *child = cancel_task_run(d->pool, child_body, &args[id],
                                             d->token, d->child_flags);
        if (child == NULL)
            fail_err("cancel_task_run", -errno);
        printf("Parent: Task %d created\n", id);
        fflush(stdout);
        bag_add(d, id, child);

        rc = do_some_work(d, a->id, d->token, 1);
        if (rc != 0)
            break;
    }
    if (rc == 0) {
        printf("Parent: Task %d ran to completion\n", a->id);
        fflush(stdout);
    }
    mark_ended(&d->g, a->id);
    return rc;
}

/* ---- Main ---------------------------------------------------------------- */

/* By hand: the next key, or EOF. */
static int read_key(void)
{
    for (;;) {
        char key;
        ssize_t n = read(STDIN_FILENO, &key, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read", errno);
        return n == 0 ? EOF : (unsigned char)key;
    }
}

static cancel_task_status status_of(struct demo *d, int id)
{
    return cancel_task_status_of(bag_get(d, id));
}

/* Detached children: every kind of ending, with task 1 finished. */
static void script_detached(struct demo *d)
{
    struct gates *g = &d->g;

    run_free(g, CANCELLABLE_ID);
    run_to(g, PARENT_ID, 2); /* creates child 3 */
    run_free(g, 3);
    run_to(g, PARENT_ID, 4); /* creates child 4 */
    run_free(g, 4);
    run_to(g, PARENT_ID, 6);  /* creates child 5 */
    run_to(g, 5, 3);          /* child 5 is at its second step of work */
    run_to(g, PARENT_ID, 8);  /* creates child 6 */
    run_to(g, 6, 1);          /* child 6 has entered its body */
    run_to(g, PARENT_ID, 10); /* creates child 7: no thread is free */
}

/* Attached children: the parent's body ends before the cancel. */
static void script_attached(struct demo *d)
{
    struct gates *g = &d->g;

    run_to(g, CANCELLABLE_ID, 3); /* task 1 keeps a thread busy */
    run_to(g, PARENT_ID, 2);
    run_free(g, 3);
    run_to(g, PARENT_ID, 4);
    run_free(g, 4);
    run_to(g, PARENT_ID, 6);
    run_to(g, 5, 3);
    run_to(g, PARENT_ID, 8);  /* child 6 waits for a thread */
    run_to(g, PARENT_ID, 10); /* and child 7 behind it */
    run_free(g, PARENT_ID);   /* the parent's thread takes child 6 */

    /* The body has returned; the parent now waits for its children. */
    cancel_task *parent = bag_get(d, PARENT_ID);
    while (cancel_task_status_of(parent) == CANCEL_TASK_RUNNING)
        sched_yield();
    printf("Main: Task %d status is now %s\n", PARENT_ID,
           status_name(cancel_task_status_of(parent)));
    fflush(stdout);
    if (cancel_task_status_of(parent) != CANCEL_TASK_WAITING_FOR_CHILDREN)
        fail("the parent does not wait for its attached children");
    run_to(g, 6, 1);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--attached] [--keys]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    bool attached = false, keys = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--attached") == 0)
            attached = true;
        else if (strcmp(argv[i], "--keys") == 0)
            keys = true;
        else
            usage(argv[0]);
    }

    static struct demo d;
    d = (struct demo){.child_flags = attached ? CANCEL_TASK_ATTACHED : 0,
                      .max_children = attached && !keys ? 5 : MAX_CHILDREN,
                      .next_id = 1};
    d.g.gated = !keys;
    monitor_init(&d.g.mon);

    d.pool = cancel_pool_new(3);
    if (d.pool == NULL)
        fail_err("cancel_pool_new", -errno);
    cancel_source *token_source = cancel_source_new();
    if (token_source == NULL)
        fail_err("cancel_source_new", -errno);
    d.token = cancel_source_token(token_source);

    say("Main: Press any key to begin tasks...");
    if (keys)
        (void)read_key();
    else
        say("[any key]");
    say("Main: To terminate the example, press 'c' to cancel and exit...");
    say("");

    /* Pass the token to the body so it can cancel during execution, and
     * to the task so it can cancel before execution starts. */
    int id = d.next_id++;
    args[id] = (struct task_arg){.d = &d, .id = id};
    cancel_task *task =
        cancel_task_run(d.pool, cancellable_body, &args[id], d.token, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);
    printf("Main: Cancellable Task %d created\n", id);
    fflush(stdout);
    bag_add(&d, id, task);

    id = d.next_id++;
    args[id] = (struct task_arg){.d = &d, .id = id};
    task = cancel_task_run(d.pool, parent_body, &args[id], d.token, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);
    printf("Main: Parent Task %d created\n", id);
    fflush(stdout);
    bag_add(&d, id, task);

    /* Request cancellation from the UI thread. */
    bool cancel = true;
    if (keys) {
        int ch = read_key();
        cancel = ch == 'c' || ch == 'C';
    } else {
        if (attached)
            script_attached(&d);
        else
            script_detached(&d);
        if (status_of(&d, 7) != CANCEL_TASK_WAITING_TO_RUN)
            fail("child 7 is not queued");
        say("[c] cancel");
    }
    if (cancel) {
        check("cancel_source_cancel", cancel_source_cancel(token_source));
        say("Main: Task cancellation requested.");
    }

    /* Let the tasks held at a gate notice, one at a time. */
    if (!keys) {
        int order[] = {CANCELLABLE_ID, PARENT_ID, 5, 6};
        for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
            int held = order[k];
            bool ended;
            monitor_lock(&d.g.mon);
            ended = d.g.ended[held];
            monitor_unlock(&d.g.mon);
            if (!ended)
                run_free(&d.g, held);
            if (attached && held == 5 &&
                status_of(&d, PARENT_ID) != CANCEL_TASK_WAITING_FOR_CHILDREN)
                fail("the parent finished before its attached children");
        }
    }

    /* The parent adds children to the bag: wait for it first, so that the
     * bag is complete (a child is created only before the parent's body
     * ends). */
    cancel_task *parent = bag_get(&d, PARENT_ID);
    int rc = cancel_task_wait(parent, CANCEL_NONE, CANCEL_INFINITE);
    if (rc != 0 && rc != -ECANCELED)
        fail_err("the parent task", rc);
    int count = d.next_id - 1; /* the parent has finished: no more */
    cancel_task *all[MAX_TASKS];
    for (int i = 1; i <= count; i++)
        all[i - 1] = bag_get(&d, i);

    /* Wait for all tasks before freeing the source. */
    rc = cancel_task_wait_all(all, (size_t)count, CANCEL_NONE, CANCEL_INFINITE);
    int exit_status = EXIT_SUCCESS;
    if (rc == -ECANCELED) {
        say("");
        say("Main: OperationCanceledException thrown");
        say("");
    } else if (rc != 0) {
        printf("Main: a task failed: %s\n", cancel_strerror(rc));
        fflush(stdout);
        exit_status = EXIT_FAILURE;
    }

    /* Display the status of all tasks. */
    for (int i = 1; i <= count; i++) {
        cancel_task_status s = cancel_task_status_of(all[i - 1]);
        printf("Main: Task %d status is now %s\n", i, status_name(s));
        if (s == CANCEL_TASK_CANCELED && cancel_task_error(all[i - 1]) != 0)
            fail("a Canceled task has an error");
    }
    fflush(stdout);

    if (!keys) {
        /* What the scripted runs must show. */
        static const cancel_task_status want[2][8] = {
            {0, CANCEL_TASK_RAN_TO_COMPLETION, CANCEL_TASK_CANCELED,
             CANCEL_TASK_RAN_TO_COMPLETION, CANCEL_TASK_RAN_TO_COMPLETION,
             CANCEL_TASK_CANCELED, CANCEL_TASK_CANCELED, CANCEL_TASK_CANCELED},
            {0, CANCEL_TASK_CANCELED, CANCEL_TASK_CANCELED,
             CANCEL_TASK_RAN_TO_COMPLETION, CANCEL_TASK_RAN_TO_COMPLETION,
             CANCEL_TASK_CANCELED, CANCEL_TASK_CANCELED, CANCEL_TASK_CANCELED},
        };
        if (count != 7)
            fail("the parent created a child after the cancel");
        for (int i = 1; i <= count; i++)
            if (cancel_task_status_of(all[i - 1]) != want[attached][i])
                fail("a task did not end as the script expects");
        if (gates_reached(&d.g, 7) != 0)
            fail("the body of a queued task ran");
    }

    for (int i = 1; i <= count; i++)
        cancel_task_release(all[i - 1]);
    cancel_source_free(token_source);
    cancel_pool_free(d.pool);
    monitor_destroy(&d.g.mon);
    return exit_status;
}
