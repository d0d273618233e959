/* E7 - a linked token of an internal timeout and an external cancel.
 *
 * A port of .NET's "How to: Listen for Multiple Cancellation Requests"
 * (LinkedTokenSourceDemo).  A worker owns an internal source with a timer -
 * a toy cancellation trigger that fires after 3 s if the user does not
 * press c - and is handed an external token by its caller.  It joins the two
 * into one linked token and works on that alone:
 *
 *     const cancel_token parents[] = { internal, external };
 *     cancel_source *linked = cancel_source_new_linked(parents, 2);
 *     rc = do_work_internal(cancel_source_token(linked));
 *     if (rc == -ECANCELED) {                 // catch (OperationCanceled...)
 *         if (cancel_requested(internal))     // which parent fired?
 *             puts("Operation timed out."), rc = 0;
 *         else if (cancel_requested(external))
 *             puts("Cancelling per user request."),
 *             rc = cancel_check(external);    // rethrow with that token
 *     }
 *     cancel_source_free(linked);             // using: Dispose
 *
 * The cancellation raised inside carries the linked token (F7), so the
 * worker checks the parents to know which one fired.  A timeout is the
 * worker's own business: it returns normally and the task ends
 * RanToCompletion.  A user cancel is the caller's: the worker "throws" it
 * with the external token - the task's token - so the task ends Canceled,
 * and main, waiting on the task with that token (task.Wait(cts.Token)),
 * prints `Canceled from UI thread throwing OCE.`.
 *
 * The internal source cancels itself: cancel_source_new_timeout.  Its
 * `Timer fired.` is a callback on the internal token, registered after the
 * link, so that it runs before the linked token is canceled (callbacks run
 * newest first): the message always comes before the worker notices.
 *
 * Usage:
 *   e7_linked_timeout [--script timeout|cancel] [--timeout-ms N]
 *       Scripted, the default.  A manual clock is installed, so the timer
 *       fires only when the script moves the clock, and the worker stops
 *       at each pass of its work until it is let go on - so the output is
 *       always the same.  The UI task (a task on the pool, as in the
 *       original) plays the user:
 *         timeout  (default) no key: once the worker is in its first pass,
 *                 the clock is moved by the timeout; the timer fires.
 *         cancel   c (echoed as `[c] cancel`) during the first pass.
 *   e7_linked_timeout --keys [--timeout-ms N]
 *       By hand, with the real clock: c cancels; the end of input does
 *       nothing (the timer fires after N ms).
 *   e7_linked_timeout --variants
 *       What the model promises about linked tokens, one line each: the
 *       error raised inside carries the linked token; the linked token takes
 *       the reason of the parent that fired; both parents canceled, the
 *       internal check wins; once the linked source is freed, canceling a
 *       parent leaves it alone (and touches no freed memory: the ASan build
 *       runs this); canceling the linked source cancels neither parent.
 *
 * --timeout-ms sets the timer, N >= 1 (default 3000, as documented).
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1; a Faulted worker exits 1 too.
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
#include <unistd.h>

/* Not part of the port: the error helpers, the monitor of the meeting and
 * the task status names. */
#define EXAMPLE_NAME "e7_linked_timeout"
#include "script.h"

#define MS INT64_C(1000000) /* nanoseconds */

static void say(const char *line)
{
    puts(line);
    fflush(stdout);
}

/* ---- Where the UI meets the worker ----------------------------------------
 *
 * Scaffolding for the scripted runs, not part of the port (a monitor of
 * script.h, plain pthreads): the worker counts the passes of work it
 * begins and, when gated, stops in each until it is let go on; the UI task
 * says when it has shown its message (instead of main's Thread.Sleep(1000))
 * and when its cancel has returned.
 */
struct meeting {
    struct monitor mon;
    bool gated;
    bool ui_ready; /* the UI task has printed its message */
    int passes;    /* passes of work begun */
    int released;  /* passes of work let finish */
    int canceled;  /* the UI task's cancel has returned (callbacks ran) */
};

static void meeting_init(struct meeting *m, bool gated)
{
    *m = (struct meeting){.gated = gated};
    monitor_init(&m->mon);
}

static void meeting_destroy(struct meeting *m)
{
    monitor_destroy(&m->mon);
}

/* Worker: one pass of work, Thread.SpinWait(7500000) of the original.
 * Gated, it lasts until released; by hand, 20 ms.  Either way the token is
 * not looked at meanwhile. */
static void meeting_work(struct meeting *m)
{
    if (m == NULL || !m->gated) {
        struct timespec pass = {0, 20 * MS};
        nanosleep(&pass, NULL); /* EINTR only shortens the "work" */
        return;
    }
    monitor_lock(&m->mon);
    int pass = ++m->passes;
    monitor_broadcast(&m->mon);
    while (m->released < pass)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* Wait until *counter (a field of m) reaches n. */
static void meeting_await(struct meeting *m, const int *counter, int n)
{
    monitor_lock(&m->mon);
    while (*counter < n)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* Let the worker finish the pass it is in. */
static void meeting_release(struct meeting *m)
{
    monitor_lock(&m->mon);
    m->released++;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

/* The UI task: the external source is canceled, and so, by the callbacks
 * that call ran, is the worker's linked token. */
static void meeting_canceled(struct meeting *m)
{
    monitor_lock(&m->mon);
    m->canceled = 1;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

static void meeting_ui_ready(struct meeting *m)
{
    monitor_lock(&m->mon);
    m->ui_ready = true;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

static void meeting_await_ui(struct meeting *m)
{
    monitor_lock(&m->mon);
    while (!m->ui_ready)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* ---- The worker: WorkerWithTimer ----------------------------------------- */

struct worker {
    cancel_source *internal_source; /* internalTokenSource, with its timer */
    cancel_token internal_token;
    cancel_token external_token;
    cancel_registration timer_reg; /* `Timer fired.` */
    struct meeting *meet;          /* NULL or not gated: real work */

    /* For the variants: record what DoWork says instead of printing it,
     * and which token the cancellation it caught carried. */
    bool quiet;
    const char *said;
    bool timer_said;
    bool caught;
    bool caught_linked;
    bool caught_parent;
};

/* What the worker says: printed, or recorded by the variants. */
static void worker_say(struct worker *w, const char *line)
{
    if (w->quiet)
        w->said = line;
    else
        say(line);
}

/* The constructor: a toy cancellation trigger that times out after
 * timeout_ns if the user does not cancel first (negative: no timer). */
static void worker_init(struct worker *w, int64_t timeout_ns,
                        struct meeting *meet)
{
    *w = (struct worker){.meet = meet, .timer_reg = CANCEL_REGISTRATION_INIT};
    w->internal_source = cancel_source_new_timeout(timeout_ns);
    if (w->internal_source == NULL)
        fail_err("cancel_source_new_timeout", -errno);
    w->internal_token = cancel_source_token(w->internal_source);
}

static void worker_destroy(struct worker *w)
{
    cancel_source_free(w->internal_source); /* also disarms the timer */
}

/* CancelAfterTimeout: runs on the library's timer thread once the internal
 * source's timer fired (or at once, on the registering thread, if it
 * already had).  The source has canceled itself. */
static void timer_fired(void *arg)
{
    struct worker *w = arg;
    if (w->quiet)
        w->timer_said = true;
    else
        say("Timer fired.");
}

static int do_work_internal(struct worker *w, cancel_token token)
{
    for (int i = 0; i < 1000; i++) {
        if (cancel_requested(token)) {
            /* We need to dispose the timer if cancellation was requested
             * by the external token. */
            check("cancel_source_cancel_after",
                  cancel_source_cancel_after(w->internal_source, -1));
            /* Throw the exception. */
            return cancel_check(token);
        }
        /* Simulating work. */
        meeting_work(w->meet);
    }
    return 0;
}

static int do_work(struct worker *w, cancel_token external_token)
{
    /* Create a new token that combines the internal and external tokens. */
    w->external_token = external_token;
    const cancel_token parents[] = {w->internal_token, external_token};
    cancel_source *linked_cts = cancel_source_new_linked(parents, 2);
    if (linked_cts == NULL)
        return -errno; /* not a cancellation: Faulted */
    cancel_token linked_token = cancel_source_token(linked_cts);

    /* Registered after the link, so it runs before the link's own
     * registration on the internal token: `Timer fired.` comes first. */
    int rc = cancel_register(w->internal_token, &w->timer_reg, timer_fired, w);
    if (rc != 0 && rc != -ECANCELED)
        fail_err("cancel_register", rc);

    rc = do_work_internal(w, linked_token);
    if (rc == -ECANCELED) {
        /* catch (OperationCanceledException): it carries the linked token;
         * which parent fired is for us to find out. */
        cancel_token raised = cancel_canceled_token();
        w->caught = true;
        w->caught_linked = cancel_token_equal(raised, linked_token);
        w->caught_parent = cancel_token_equal(raised, w->internal_token) ||
                           cancel_token_equal(raised, external_token);
        if (cancel_requested(w->internal_token)) {
            worker_say(w, "Operation timed out.");
            rc = 0;
        } else if (cancel_requested(external_token)) {
            worker_say(w, "Cancelling per user request.");
            rc = cancel_check(external_token);
        } else {
            rc = 0; /* cannot happen: the linked token has only them */
        }
    }

    /* Whether the timer fired or not, its callback is done after this. */
    cancel_unregister(&w->timer_reg);
    cancel_source_free(linked_cts); /* end of using: Dispose */
    return rc;
}

/* ---- The UI thread and main ---------------------------------------------- */

enum script { SCRIPT_TIMEOUT, SCRIPT_CANCEL, KEYS };

struct demo {
    enum script script;
    int64_t timeout_ns;
    cancel_clock *clock;    /* scripted: the manual clock */
    cancel_source *cts;     /* the external source */
    cancel_source *ui_stop; /* by hand: main stops the UI task's read */
    struct meeting meet;
    struct worker worker;
};

/* Task.Run(() => worker.DoWork(cts.Token), cts.Token). */
static int worker_task(void *arg, cancel_token t)
{
    struct demo *d = arg;
    (void)t; /* the same token as cts's: the lambda captures cts.Token */
    return do_work(&d->worker, cancel_source_token(d->cts));
}

/* The UI task: shows the message, then plays (or reads) the user. */
static int ui_task(void *arg, cancel_token t)
{
    struct demo *d = arg;
    struct meeting *m = &d->meet;
    (void)t;

    long long ms = (long long)(d->timeout_ns / MS);
    if (ms % 1000 == 0)
        printf("Press 'c' to cancel within %lld seconds after work begins.\n",
               ms / 1000);
    else
        printf("Press 'c' to cancel within %lld ms after work begins.\n", ms);
    say("Or let the task time out by doing nothing.");
    meeting_ui_ready(m);

    switch (d->script) {
    case SCRIPT_TIMEOUT:
        meeting_await(m, &m->passes, 1);
        if (ms % 1000 == 0)
            printf("[no key for %lld s]\n", ms / 1000);
        else
            printf("[no key for %lld ms]\n", ms);
        fflush(stdout);
        /* The timer fires on the timer thread, and its callbacks - `Timer
         * fired.` and the link - have returned when this returns. */
        check("cancel_clock_advance",
              cancel_clock_advance(d->clock, d->timeout_ns));
        if (!cancel_requested(d->worker.internal_token))
            fail("the timer did not fire");
        meeting_release(m);
        break;
    case SCRIPT_CANCEL:
        meeting_await(m, &m->passes, 1);
        say("[c] cancel");
        check("cancel_source_cancel", cancel_source_cancel(d->cts));
        meeting_canceled(m);
        /* Main releases the worker once it has printed its line. */
        break;
    case KEYS:
        for (;;) {
            char key;
            ssize_t n =
                cancel_read(STDIN_FILENO, &key, 1,
                            cancel_source_token(d->ui_stop), CANCEL_INFINITE);
            if (n == -ECANCELED || n == 0)
                break; /* the work is over, or no more keys: do nothing */
            if (n == -EINTR)
                continue;
            if (n < 0)
                fail_err("cancel_read", (int)n);
            if (key == 'c') {
                check("cancel_source_cancel", cancel_source_cancel(d->cts));
                break;
            }
        }
        break;
    }
    return 0;
}

static int run_demo(enum script script, int64_t timeout_ns)
{
    static struct demo d;
    d = (struct demo){.script = script, .timeout_ns = timeout_ns};
    meeting_init(&d.meet, script != KEYS);
    if (script != KEYS) {
        /* Time stands still unless the script moves it. */
        d.clock = cancel_clock_new_manual(0);
        if (d.clock == NULL)
            fail_err("cancel_clock_new_manual", -errno);
        check("cancel_clock_install", cancel_clock_install(d.clock));
    }
    cancel_pool *pool = cancel_pool_new(2); /* the UI task and the worker */
    if (pool == NULL)
        fail_err("cancel_pool_new", -errno);

    worker_init(&d.worker, timeout_ns, &d.meet);
    d.cts = cancel_source_new();
    d.ui_stop = cancel_source_new();
    if (d.cts == NULL || d.ui_stop == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(d.cts);

    /* Task for the UI thread, so that main can wait on the worker. */
    cancel_task *ui = cancel_task_run(pool, ui_task, &d, CANCEL_NONE, 0);
    if (ui == NULL)
        fail_err("cancel_task_run", -errno);

    /* Let the user read the UI message. */
    meeting_await_ui(&d.meet);

    /* Start the worker task. */
    cancel_task *task = cancel_task_run(pool, worker_task, &d, token, 0);
    if (task == NULL)
        fail_err("cancel_task_run", -errno);

    int rc = cancel_task_wait(task, token, CANCEL_INFINITE);
    if (rc == -ECANCELED) {
        /* catch (OperationCanceledException e) */
        if (cancel_token_equal(cancel_canceled_token(), token))
            say("Canceled from UI thread throwing OCE.");
    } else if (rc != 0) {
        /* catch (AggregateException ae) */
        printf("AggregateException caught: %s\n", cancel_strerror(rc));
        fflush(stdout);
    }
    if (script == SCRIPT_CANCEL) {
        /* Main's wait can end as soon as the external token reads
         * canceled, while the UI thread is still running the cancel's
         * callbacks - the one that cancels the linked token among them.
         * Let the worker look at its token only once they all ran. */
        meeting_await(&d.meet, &d.meet.canceled, 1);
        meeting_release(&d.meet);
    }

    /* Before anything is freed, the worker must be done: wait again,
     * without a token this time. */
    rc = cancel_task_wait(task, CANCEL_NONE, CANCEL_INFINITE);
    cancel_task_status status = cancel_task_status_of(task);
    printf("Task status: %s\n", status_name(status));
    fflush(stdout);
    check("cancel_source_cancel", cancel_source_cancel(d.ui_stop));
    int ui_rc = cancel_task_wait(ui, CANCEL_NONE, CANCEL_INFINITE);
    if (ui_rc != 0)
        fail_err("the UI task", ui_rc);
    say("Press any key to exit.");

    int exit_status = EXIT_SUCCESS;
    if (status == CANCEL_TASK_FAULTED) {
        fprintf(stderr, "e7_linked_timeout: the worker failed: %s (%s)\n",
                cancel_strerror(rc), cancel_err_name(rc));
        exit_status = EXIT_FAILURE;
    } else if (script != KEYS && status != (script == SCRIPT_TIMEOUT
                                                ? CANCEL_TASK_RAN_TO_COMPLETION
                                                : CANCEL_TASK_CANCELED)) {
        fail("the worker did not end as the script expects");
    }
    if (d.worker.caught && (!d.worker.caught_linked || d.worker.caught_parent))
        fail("the cancellation caught did not carry the linked token");

    cancel_task_release(ui);
    cancel_task_release(task);
    cancel_source_free(d.ui_stop);
    cancel_source_free(d.cts);
    worker_destroy(&d.worker);
    cancel_pool_free(pool);
    if (d.clock != NULL) {
        check("cancel_clock_install", cancel_clock_install(NULL));
        cancel_clock_free(d.clock);
    }
    meeting_destroy(&d.meet);
    return exit_status;
}

/* ---- Variants ------------------------------------------------------------ */

static cancel_source *new_source(void)
{
    cancel_source *src = cancel_source_new();
    if (src == NULL)
        fail_err("cancel_source_new", -errno);
    return src;
}

static cancel_source *new_linked(cancel_source *a, cancel_source *b)
{
    const cancel_token parents[] = {cancel_source_token(a),
                                    cancel_source_token(b)};
    cancel_source *linked = cancel_source_new_linked(parents, 2);
    if (linked == NULL)
        fail_err("cancel_source_new_linked", -errno);
    return linked;
}

/* The user cancels: DoWork catches a cancellation that carries the linked
 * token, not a parent, and rethrows it with the external token. */
static void variant_raised_token(void)
{
    static struct worker w;
    worker_init(&w, -1, NULL); /* no timer */
    w.quiet = true;
    cancel_source *cts = new_source();
    check("cancel_source_cancel", cancel_source_cancel(cts));

    int rc = do_work(&w, cancel_source_token(cts));
    if (rc != -ECANCELED || !w.caught || !w.caught_linked || w.caught_parent ||
        !cancel_token_equal(cancel_canceled_token(), cancel_source_token(cts)))
        fail("DoWork did not catch the linked token and rethrow the "
             "external one");
    printf("User cancel: DoWork caught the linked token (not a parent), "
           "said \"%s\", then threw with the external token.\n",
           w.said);
    fflush(stdout);
    cancel_source_free(cts);
    worker_destroy(&w);
}

/* The linked token's reason is that of the parent that fired. */
static void variant_reason(void)
{
    cancel_source *timer = cancel_source_new_timeout(0); /* fired */
    cancel_source *user = new_source();
    if (timer == NULL)
        fail_err("cancel_source_new_timeout", -errno);
    cancel_source *linked = new_linked(timer, user);
    int by_timer = cancel_reason(cancel_source_token(linked));
    cancel_source_free(linked);
    cancel_source_free(timer);

    cancel_source *idle = new_source();
    linked = new_linked(idle, user);
    check("cancel_source_cancel", cancel_source_cancel(user));
    int by_user = cancel_reason(cancel_source_token(linked));
    cancel_source_free(linked);
    cancel_source_free(idle);
    cancel_source_free(user);

    if (by_timer != ETIMEDOUT || by_user != ECANCELED)
        fail("the linked token did not take its parent's reason");
    printf("Reasons: the linked token takes its parent's, %s from the "
           "timer, %s from the user.\n",
           cancel_err_name(by_timer), cancel_err_name(by_user));
    fflush(stdout);
}

/* Both parents canceled: the internal check comes first. */
static void variant_both(void)
{
    static struct worker w;
    worker_init(&w, 0, NULL); /* the timer has fired already */
    w.quiet = true;
    cancel_source *cts = new_source();
    check("cancel_source_cancel", cancel_source_cancel(cts));

    int rc = do_work(&w, cancel_source_token(cts));
    if (rc != 0 || !w.timer_said || w.said == NULL ||
        strcmp(w.said, "Operation timed out.") != 0)
        fail("with both parents canceled, DoWork must report the timeout");
    printf("Both parents canceled: DoWork said \"%s\" and returned 0 - the "
           "internal check comes first.\n",
           w.said);
    fflush(stdout);
    cancel_source_free(cts);
    worker_destroy(&w);
}

static void count_call(void *arg)
{
    (*(int *)arg)++;
}

/* After the linked source is freed, canceling a parent leaves it alone. */
static void variant_freed(void)
{
    cancel_source *internal = new_source();
    cancel_source *external = new_source();
    cancel_source *linked = new_linked(internal, external);
    cancel_token kept = cancel_token_retain(cancel_source_token(linked));
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    int calls = 0;
    check("cancel_register", cancel_register(kept, &reg, count_call, &calls));

    /* A second linked source, freed without a retained token: canceling
     * its parents must not touch it (ASan would see it). */
    cancel_source *gone = new_linked(internal, external);
    cancel_source_free(gone);
    cancel_source_free(linked);

    check("cancel_source_cancel", cancel_source_cancel(external));
    check("cancel_source_cancel", cancel_source_cancel(internal));
    bool canceled = cancel_requested(kept);
    bool removed = cancel_unregister(&reg);
    if (canceled || calls != 0 || !removed)
        fail("a freed linked source was canceled by its parent");
    puts("Linked source freed, then both parents canceled: its retained "
         "token stays uncanceled, its callback never ran.");
    fflush(stdout);
    cancel_token_release(kept);
    cancel_source_free(external);
    cancel_source_free(internal);
}

/* Canceling the linked source never cancels a parent. */
static void variant_child_cancel(void)
{
    cancel_source *internal = new_source();
    cancel_source *external = new_source();
    cancel_source *linked = new_linked(internal, external);
    check("cancel_source_cancel", cancel_source_cancel(linked));
    if (!cancel_requested(cancel_source_token(linked)) ||
        cancel_requested(cancel_source_token(internal)) ||
        cancel_requested(cancel_source_token(external)))
        fail("canceling the linked source reached a parent");
    puts("Linked source canceled: it is canceled, neither parent is.");
    fflush(stdout);
    cancel_source_free(linked);
    cancel_source_free(external);
    cancel_source_free(internal);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--script timeout|cancel] [--timeout-ms N]\n"
            "       %s --keys [--timeout-ms N]\n"
            "       %s --variants\n",
            argv0, argv0, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    enum script script = SCRIPT_TIMEOUT;
    bool variants = false;
    long long timeout_ms = 3000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0) {
            script = KEYS;
        } else if (strcmp(argv[i], "--variants") == 0) {
            variants = true;
        } else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            if (strcmp(name, "timeout") == 0)
                script = SCRIPT_TIMEOUT;
            else if (strcmp(name, "cancel") == 0)
                script = SCRIPT_CANCEL;
            else
                usage(argv[0]);
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            timeout_ms = strtoll(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || end == argv[i] ||
                timeout_ms <= 0 || timeout_ms > INT64_MAX / MS)
                usage(argv[0]);
        } else {
            usage(argv[0]);
        }
    }

    if (variants) {
        variant_raised_token();
        variant_reason();
        variant_both();
        variant_freed();
        variant_child_cancel();
        return EXIT_SUCCESS;
    }
    return run_demo(script, (int64_t)timeout_ms * MS);
}
