/* E6 - an event wait that takes the token.
 *
 * A port of the second example of .NET's "How to: Listen for Cancellation
 * Requests That Have Wait Handles" (CancelNewStyleEvents).  E5 needed
 * wait-any on the event and the token's wait handle because its event knows
 * nothing of cancellation; ManualResetEventSlim - here cancel_event - takes
 * the token in its wait, so the worker simply calls
 *
 *     cancel_event_wait(&mres, token, CANCEL_INFINITE)
 *
 * which returns 0 once the event is set and -ECANCELED, with the token
 * recorded as the thread's canceled token, once the token is canceled.
 * Each pass of the worker:
 *
 *   checks the token (cancel_check)  Canceled while running.           Canceled
 *   waits on the event with it       The wait operation was canceled.  Canceled
 *   works                            Working...
 *
 * The task of the original is a plain thread here, so that the example is
 * only about the wait: its body returns -ECANCELED with its token recorded
 * (Canceled), or 0 (RanToCompletion), the rules cancel_task applies (E9
 * shows them on real tasks); main prints `Status: <status>` once it ended.
 *
 * Usage:
 *   e6_event_wait [--script NAME]
 *       Scripted, the default.  Main "presses" the keys at fixed points of
 *       the worker's loop - it stops the worker at the end of each pass of
 *       work until main lets it go on - so the output is always the same.
 *       Each key is echoed as `[k] ...`.
 *         canceled-waiting  (default) s; three passes of work, p during the
 *                 third; c once the worker is asleep in its next wait: the
 *                 cancel wakes it.
 *         canceled-running  s; c during the second pass: the check at the
 *                 start of the next pass sees it.
 *   e6_event_wait --variants
 *       A canceled token wins on entry (F11), one line each: a wait on a set
 *       event, on a semaphore at count 0 and on a semaphore with a count
 *       all return -ECANCELED, take nothing, and record the token - after a
 *       first line that shows the set event returning 0 before the cancel.
 *   e6_event_wait --keys
 *       By hand: s sets the event (start/restart), p resets it (pause),
 *       c cancels; other characters are ignored.  The end of input cancels
 *       too.
 *
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1; a Faulted worker exits 1 too.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Scaffolding, not part of the port: the error helpers, and the meeting
 * where main meets the worker in the scripted runs - the worker announces
 * there each event wait it is about to make and each pass of work it
 * begins, and, when gated, stops at each pass until main lets it go on. */
#define EXAMPLE_NAME "e6_event_wait"
#include "script.h"

/* ---- The worker: DoWork(token) ------------------------------------------ */

struct worker {
    cancel_token token; /* borrowed: main frees the source after the join */
    cancel_event *mres; /* the new-style event: its wait takes the token */
    struct worker_meeting *meet;
    cancel_event *ended; /* set when the body has returned */
    int rc;              /* what the body returned */
    const char *status;  /* the task status that gives */
};

static int do_work(struct worker *w)
{
    cancel_token token = w->token;

    for (;;) {
        int err = cancel_check(token);
        if (err != 0) {
            puts("Canceled while running.");
            fflush(stdout);
            return err; /* ThrowIfCancellationRequested */
        }

        /* Wait on the event to be signaled or the token to be canceled,
         * whichever comes first. */
        announce_wait(w->meet);
        err = cancel_event_wait(w->mres, token, CANCEL_INFINITE);
        if (err == -ECANCELED) {
            /* Give up at once, to be responsive; the alternative is one
             * more pass of work and the check of the next pass.  The wait
             * recorded the token, so returning its error is `throw;`. */
            puts("The wait operation was canceled.");
            fflush(stdout);
            return err;
        }
        if (err != 0)
            return err; /* the wait itself failed: Faulted */

        puts("Working...");
        fflush(stdout);
        /* Simulating work: Thread.SpinWait(500000). */
        work_a_pass(w->meet);
    }
}

/* The task's status, decided on its own thread, where the canceled token
 * was recorded: -ECANCELED counts as Canceled only with this token, and
 * only once it is canceled (the rule of .NET's tasks). */
static const char *task_status(int rc, cancel_token token)
{
    if (rc == 0)
        return "RanToCompletion";
    if (rc == -ECANCELED && cancel_requested(token) &&
        cancel_token_equal(cancel_canceled_token(), token))
        return "Canceled";
    return "Faulted";
}

/* Task.Run(() => DoWork(cts.Token), cts.Token), as a thread. */
static void *run_task(void *arg)
{
    struct worker *w = arg;

    w->rc = do_work(w);
    w->status = task_status(w->rc, w->token);
    check("cancel_event_set", cancel_event_set(w->ended));
    return NULL;
}

/* ---- Main: the UI thread ------------------------------------------------- */

struct demo {
    cancel_source *cts;
    cancel_event mres;  /* ManualResetEventSlim mres = new(false) */
    cancel_event ended; /* the worker's body returned */
    bool echo;          /* scripted: echo each key */
    struct worker_meeting meet;
    struct worker worker;
    pthread_t thread;
};

/* Scripted runs show each key they press. */
static void echo(const struct demo *d, const char *line)
{
    if (d->echo) {
        puts(line);
        fflush(stdout);
    }
}

/* One key of the original's switch. */
static void press(struct demo *d, char key)
{
    switch (key) {
    case 'c':
        echo(d, "[c] cancel");
        check("cancel_source_cancel", cancel_source_cancel(d->cts));
        break;
    case 'p':
        echo(d, "[p] pause");
        check("cancel_event_reset", cancel_event_reset(&d->mres));
        break;
    case 's':
        echo(d, "[s] start/restart");
        check("cancel_event_set", cancel_event_set(&d->mres));
        break;
    default:
        break; /* other keys are ignored */
    }
}

static void join_worker(struct demo *d)
{
    int rc = pthread_join(d->thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
}

/* s; three passes, p during the third; c while the worker waits again. */
static void script_canceled_waiting(struct demo *d)
{
    struct worker_meeting *m = &d->meet;

    await_waits(m, 1);
    press(d, 's');
    for (int pass = 1; pass <= 3; pass++) {
        await_passes(m, pass);
        if (pass == 3)
            press(d, 'p');
        release_pass(m);
    }
    /* The worker has passed the check of its fourth pass and waits on a
     * reset event: let it fall asleep there, so that the cancel wakes a
     * blocked waiter.  (Where that cannot be told, the cancel may come
     * first; the wait then sees the canceled token on entry and returns
     * -ECANCELED all the same.) */
    await_asleep(m, 4);
    press(d, 'c');
    join_worker(d);
}

/* s; c during the second pass: the next pass's check sees it. */
static void script_canceled_running(struct demo *d)
{
    struct worker_meeting *m = &d->meet;

    await_waits(m, 1);
    press(d, 's');
    await_passes(m, 1);
    release_pass(m);
    await_passes(m, 2);
    press(d, 'c');
    release_pass(m);
    join_worker(d);
}

/* By hand: keys until c or the end of input.  Main waits on standard
 * input and on the worker's end at once, with cancel_wait_any. */
static void run_keys(struct demo *d)
{
    const cancel_waitable items[] = {
        CANCEL_WAIT_EVENT(&d->ended),
        CANCEL_WAIT_FD(STDIN_FILENO, POLLIN),
    };

    await_waits(&d->meet, 1); /* the worker is ready */
    for (;;) {
        int index = cancel_wait_any(items, 2, CANCEL_INFINITE);
        if (index < 0)
            fail_err("cancel_wait_any", index);
        if (index == 0)
            break; /* the worker ended by itself */
        char key;
        ssize_t n = read(STDIN_FILENO, &key, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read", errno);
        if (n == 0 || key == 'c') {
            press(d, 'c'); /* the end of input cancels too */
            break;
        }
        press(d, key);
    }
    join_worker(d);
}

/* ---- --variants: a canceled token wins on entry (F11) ------------------- */

/* "0", or the negative error's name: "-ECANCELED". */
static const char *result(int rc, char *buf, size_t size)
{
    if (rc == 0)
        snprintf(buf, size, "0");
    else
        snprintf(buf, size, "%s%s", rc < 0 ? "-" : "", cancel_err_name(rc));
    return buf;
}

/* A wait that returned -ECANCELED must have recorded token. */
static bool recorded(int rc, cancel_token token)
{
    return rc != -ECANCELED ||
           cancel_token_equal(cancel_canceled_token(), token);
}

static void run_variants(void)
{
    char buf[32];
    bool ok = true;
    cancel_source *cts = cancel_source_new();
    if (cts == NULL)
        fail_err("cancel_source_new", -errno);
    cancel_token token = cancel_source_token(cts);

    cancel_event mres;
    check("cancel_event_init", cancel_event_init(&mres, true));
    cancel_semaphore empty, one;
    check("cancel_semaphore_init", cancel_semaphore_init(&empty, 0, 1));
    check("cancel_semaphore_init", cancel_semaphore_init(&one, 1, 1));

    /* Before the cancel, for contrast: a set event lets the waiter in. */
    int rc = cancel_event_wait(&mres, token, CANCEL_INFINITE);
    printf("Event set, token not canceled: cancel_event_wait returned %s.\n",
           result(rc, buf, sizeof buf));
    ok = ok && rc == 0;

    check("cancel_source_cancel", cancel_source_cancel(cts));

    /* The event is set, yet the canceled token wins: Wait(token) throws. */
    rc = cancel_event_wait(&mres, token, CANCEL_INFINITE);
    bool set = cancel_event_is_set(&mres);
    printf("Event set, token canceled: cancel_event_wait returned %s; "
           "the event is %s.\n",
           result(rc, buf, sizeof buf), set ? "still set" : "not set");
    ok = ok && rc == -ECANCELED && set && recorded(rc, token);

    /* Nothing to take and a canceled token: no blocking at all. */
    rc = cancel_semaphore_wait(&empty, token, CANCEL_INFINITE);
    int count = cancel_semaphore_count(&empty);
    printf("Semaphore at count 0, token canceled: cancel_semaphore_wait "
           "returned %s; the count is %d.\n",
           result(rc, buf, sizeof buf), count);
    ok = ok && rc == -ECANCELED && count == 0 && recorded(rc, token);

    /* A count to take, and still the canceled token wins on entry. */
    rc = cancel_semaphore_wait(&one, token, CANCEL_INFINITE);
    count = cancel_semaphore_count(&one);
    printf("Semaphore at count 1, token canceled: cancel_semaphore_wait "
           "returned %s; the count is %s%d.\n",
           result(rc, buf, sizeof buf), count == 1 ? "still " : "", count);
    ok = ok && rc == -ECANCELED && count == 1 && recorded(rc, token);
    fflush(stdout);

    check("cancel_semaphore_destroy", cancel_semaphore_destroy(&one));
    check("cancel_semaphore_destroy", cancel_semaphore_destroy(&empty));
    check("cancel_event_destroy", cancel_event_destroy(&mres));
    cancel_source_free(cts);
    if (!ok)
        fail("a wait did not report the canceled token as expected");
}

struct script {
    const char *name;
    void (*run)(struct demo *d);
};

static const struct script scripts[] = {
    {"canceled-waiting", script_canceled_waiting},
    {"canceled-running", script_canceled_running},
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--script canceled-waiting|canceled-running]\n"
            "       %s --variants\n"
            "       %s --keys\n",
            argv0, argv0, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const struct script *script = &scripts[0];
    bool keys = false;

    if (argc == 2 && strcmp(argv[1], "--variants") == 0) {
        run_variants();
        return EXIT_SUCCESS;
    } else if (argc == 2 && strcmp(argv[1], "--keys") == 0) {
        keys = true;
    } else if (argc == 3 && strcmp(argv[1], "--script") == 0) {
        script = NULL;
        for (size_t k = 0; k < sizeof scripts / sizeof scripts[0]; k++)
            if (strcmp(scripts[k].name, argv[2]) == 0)
                script = &scripts[k];
        if (script == NULL)
            usage(argv[0]);
    } else if (argc != 1) {
        usage(argv[0]);
    }

    static struct demo d;
    d.cts = cancel_source_new();
    if (d.cts == NULL)
        fail_err("cancel_source_new", -errno);
    check("cancel_event_init", cancel_event_init(&d.mres, false));
    check("cancel_event_init", cancel_event_init(&d.ended, false));
    d.echo = !keys;
    worker_meeting_init(&d.meet, !keys);
    d.worker = (struct worker){
        .token = cancel_source_token(d.cts),
        .mres = &d.mres,
        .meet = &d.meet,
        .ended = &d.ended,
    };

    puts("Press c to cancel, p to pause, or s to start/restart.");
    fflush(stdout);
    int rc = pthread_create(&d.thread, NULL, run_task, &d.worker);
    if (rc != 0)
        die("pthread_create", rc);

    if (keys)
        run_keys(&d);
    else
        script->run(&d);

    /* The worker has been joined: its results are ours to read. */
    printf("Status: %s\n", d.worker.status);
    fflush(stdout);
    int status = EXIT_SUCCESS;
    if (strcmp(d.worker.status, "Faulted") == 0) {
        fprintf(stderr, "e6_event_wait: the worker failed: %s (%s)\n",
                cancel_strerror(d.worker.rc), cancel_err_name(d.worker.rc));
        status = EXIT_FAILURE;
    }

    check("cancel_event_destroy", cancel_event_destroy(&d.mres));
    check("cancel_event_destroy", cancel_event_destroy(&d.ended));
    worker_meeting_destroy(&d.meet);
    cancel_source_free(d.cts); /* cts.Dispose() */
    return status;
}
