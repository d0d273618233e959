/* E5 - wait-any on a plain event plus the token's wait handle.
 *
 * A port of the first example of .NET's "How to: Listen for Cancellation
 * Requests That Have Wait Handles" (CancelOldStyleEvents).  A worker pauses
 * on an event that knows nothing of cancellation - the ManualResetEvent of
 * the original; here a cancel_event that is waited on without a token - and,
 * so that a cancel still reaches it while it is blocked, it waits with
 * WaitHandle.WaitAny on that event *and* on the token's wait handle.  The
 * wait handle is cancel_token_fd, an fd that becomes readable once the
 * token is canceled, so the wait is
 *
 *     cancel_wait_any({ CANCEL_WAIT_EVENT(&mre),
 *                       CANCEL_WAIT_FD(cancel_token_fd(token), POLLIN) },
 *                     2, 20 s)
 *
 * and after it the worker decides as the original does:
 *
 *   returned 1, the token's handle   The wait operation was canceled.  Canceled
 *   the token is canceled anyway     I was canceled while running.     Canceled
 *   -ETIMEDOUT                       I timed out.              RanToCompletion
 *   returned 0, the event            Working...  (a little work, next pass)
 *
 * The task of the original is a plain thread here, so that the example is
 * only about the wait: its body returns 0 (RanToCompletion) or -ECANCELED
 * with its token recorded by cancel_throw / cancel_check (Canceled), the
 * rules cancel_task applies (E9 shows them on real tasks); main prints
 * `Status: <status>` once it ended.
 *
 * Usage:
 *   e5_wait_any [--script NAME] [--timeout-ms N]
 *       Scripted, the default.  A manual clock is installed, so no timeout
 *       elapses unless the script moves the clock, and main "presses" the
 *       keys at fixed points of the worker's loop - it stops the worker at
 *       the end of each pass of work until main lets it go on - so the
 *       output is always the same.  Each key is echoed as `[k] ...`.
 *         canceled-waiting  (default) s; three passes of work, p during the
 *                 third; c once the worker is asleep in its next wait-any:
 *                 the token's handle wakes it.  The program also checks
 *                 that the worker was back within 2 s (real time) of the
 *                 cancel while the manual clock never moved: only the
 *                 cancel can have woken it.
 *         canceled-running  s; c during the second pass.  The next wait-any
 *                 finds the event *and* the token's handle signaled and
 *                 returns the lower index, 0 (F11); the check after it
 *                 catches the cancel.
 *         timeout  s; p during the first pass; once the worker is asleep
 *                 in its next wait-any, the clock is moved by the timeout.
 *   e5_wait_any --keys [--timeout-ms N]
 *       By hand, with the real clock: s sets the event (start/restart),
 *       p resets it (pause), c cancels; other characters are ignored.  The
 *       end of input cancels too.  The program ends once the worker has.
 *
 * --timeout-ms sets the wait-any timeout, N >= 1 (default 20000, as
 * documented).
 * On a broken promise or a failed call the program says why on stderr and
 * exits 1; a Faulted worker exits 1 too.
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Scaffolding, not part of the port: the error helpers, and the meeting
 * where main meets the worker in the scripted runs - the worker announces
 * there each wait-any it is about to make and each pass of work it
 * begins, and, when gated, stops at each pass until main lets it go on. */
#define EXAMPLE_NAME "e5_wait_any"
#include "script.h"

#define MS INT64_C(1000000) /* nanoseconds */

/* How soon after the cancel the blocked worker must be back (real time).
 * A wake-up takes microseconds; the bound is loose on purpose, for
 * sanitizer builds on busy machines, and still far below any timeout. */
#define WAKE_BOUND_NS (2000 * MS)

/* ---- The worker: DoWork(token) ------------------------------------------ */

struct worker {
    cancel_token token; /* borrowed: main frees the source after the join */
    cancel_event *mre;  /* the old-style event: waited on without a token */
    int64_t timeout_ns; /* the wait-any timeout */
    struct worker_meeting *meet;
    cancel_event *ended; /* set when the body has returned */
    int rc;              /* what the body returned */
    const char *status;  /* the task status that gives */
};

static int do_work(struct worker *w)
{
    cancel_token token = w->token;

    /* token.WaitHandle: the fd belongs to the source; it is neither read
     * nor closed here. */
    int handle = cancel_token_fd(token);
    if (handle < 0)
        return handle;
    const cancel_waitable handles[] = {
        CANCEL_WAIT_EVENT(w->mre),
        CANCEL_WAIT_FD(handle, POLLIN),
    };

    for (;;) {
        /* Wait on the event if it is not signaled. */
        announce_wait(w->meet);
        int index = cancel_wait_any(handles, 2, w->timeout_ns);
        if (index < 0 && index != -ETIMEDOUT)
            return index; /* the wait itself failed: Faulted */

        if (index == 1) {
            /* Were we canceled while waiting? */
            puts("The wait operation was canceled.");
            fflush(stdout);
            return cancel_throw(token);
        } else if (cancel_requested(token)) {
            /* Were we canceled while running? */
            puts("I was canceled while running.");
            fflush(stdout);
            return cancel_check(token);
        } else if (index == -ETIMEDOUT) {
            /* Did we time out? */
            puts("I timed out.");
            fflush(stdout);
            return 0;
        } else {
            puts("Working...");
            fflush(stdout);
            /* Simulating work: Thread.SpinWait(5000000). */
            work_a_pass(w->meet);
        }
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
    cancel_event mre;    /* ManualResetEvent mre = new(false) */
    cancel_event ended;  /* the worker's body returned */
    cancel_clock *clock; /* scripted: the manual clock */
    bool echo;           /* scripted: echo each key */
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
        check("cancel_event_reset", cancel_event_reset(&d->mre));
        break;
    case 's':
        echo(d, "[s] start/restart");
        check("cancel_event_set", cancel_event_set(&d->mre));
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

static int64_t real_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime", errno);
    return (int64_t)ts.tv_sec * 1000 * MS + ts.tv_nsec;
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
    /* The worker waits on a reset event: let it fall asleep there, so that
     * the cancel wakes a blocked waiter.  (Where that cannot be told, the
     * cancel may come first; wait-any then finds the handle readable on
     * entry and returns 1 all the same.) */
    await_asleep(m, 4);
    int64_t canceled_at = real_now();
    press(d, 'c');
    join_worker(d);

    /* The manual clock never moved, so no timeout can have ended the wait:
     * the cancel woke it, and soon. */
    if (cancel_clock_now() != 0)
        fail("the manual clock moved");
    if (real_now() - canceled_at > WAKE_BOUND_NS)
        fail("the worker was not back within 2 s of the cancel");
}

/* s; c during the second pass: the next wait-any returns the event. */
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

/* s; p during the first pass; then the timeout passes with no key. */
static void script_timeout(struct demo *d)
{
    struct worker_meeting *m = &d->meet;

    await_waits(m, 1);
    press(d, 's');
    await_passes(m, 1);
    press(d, 'p');
    release_pass(m);
    await_asleep(m, 2);

    int64_t t = d->worker.timeout_ns;
    if (t % (1000 * MS) == 0)
        printf("[no key for %lld s]\n", (long long)(t / (1000 * MS)));
    else
        printf("[no key for %lld ms]\n", (long long)(t / MS));
    fflush(stdout);
    /* Before it returns, cancel_clock_advance wakes every wait whose
     * deadline passed: the worker's, since it sleeps in it. */
    check("cancel_clock_advance", cancel_clock_advance(d->clock, t));
    /* Where sleeping cannot be told, the clock may have moved before the
     * wait read its deadline, and its timeout counts from the new time:
     * then move the clock again until the worker has timed out.  Only the
     * number of moves depends on timing, not what the program prints. */
    for (int round = 0; !cancel_event_is_set(&d->ended); round++) {
        struct timespec ms = {0, MS};
        nanosleep(&ms, NULL);
        if (round == 10000)
            fail("the worker did not time out");
        check("cancel_clock_advance", cancel_clock_advance(d->clock, t));
    }
    join_worker(d);
}

/* By hand: keys until c or the end of input, or until the worker ended (it
 * times out after 20 s without a key).  Main waits on standard input and
 * on the worker's end at once: wait-any again. */
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

struct script {
    const char *name;
    void (*run)(struct demo *d);
};

static const struct script scripts[] = {
    {"canceled-waiting", script_canceled_waiting},
    {"canceled-running", script_canceled_running},
    {"timeout", script_timeout},
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--script canceled-waiting|canceled-running|timeout]"
            " [--timeout-ms N]\n"
            "       %s --keys [--timeout-ms N]\n",
            argv0, argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    const struct script *script = &scripts[0];
    bool keys = false;
    long long timeout_ms = 20000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0) {
            keys = true;
        } else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            script = NULL;
            for (size_t k = 0; k < sizeof scripts / sizeof scripts[0]; k++)
                if (strcmp(scripts[k].name, name) == 0)
                    script = &scripts[k];
            if (script == NULL)
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

    static struct demo d;
    d.cts = cancel_source_new();
    if (d.cts == NULL)
        fail_err("cancel_source_new", -errno);
    check("cancel_event_init", cancel_event_init(&d.mre, false));
    check("cancel_event_init", cancel_event_init(&d.ended, false));
    if (!keys) {
        /* Time stands still unless the script moves it. */
        d.clock = cancel_clock_new_manual(0);
        if (d.clock == NULL)
            fail_err("cancel_clock_new_manual", -errno);
        check("cancel_clock_install", cancel_clock_install(d.clock));
        d.echo = true;
    }
    worker_meeting_init(&d.meet, !keys);
    d.worker = (struct worker){
        .token = cancel_source_token(d.cts),
        .mre = &d.mre,
        .timeout_ns = (int64_t)timeout_ms * MS,
        .meet = &d.meet,
        .ended = &d.ended,
    };

    puts("Press s to start/restart, p to pause, or c to cancel.");
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
        fprintf(stderr, "e5_wait_any: the worker failed: %s (%s)\n",
                cancel_strerror(d.worker.rc), cancel_err_name(d.worker.rc));
        status = EXIT_FAILURE;
    }

    check("cancel_event_destroy", cancel_event_destroy(&d.mre));
    check("cancel_event_destroy", cancel_event_destroy(&d.ended));
    if (d.clock != NULL) {
        check("cancel_clock_install", cancel_clock_install(NULL));
        cancel_clock_free(d.clock);
    }
    worker_meeting_destroy(&d.meet);
    cancel_source_free(d.cts); /* cts.Dispose() */
    return status;
}
