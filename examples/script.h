/* script.h - scaffolding for the examples' scripted, deterministic runs.
 *
 * Not part of any port: nothing here shows how to use libcancel.  Every
 * example is also a test whose output must be the same on every run, so
 * its threads meet at fixed points instead of racing, and it says why on
 * stderr when a call or a promise fails.  What several examples need for
 * that lives here, once:
 *
 *   fail, fail_err, die, check   say why on stderr and exit 1
 *   struct monitor               a mutex and a condition variable
 *   current_tid, thread_asleep   whether a thread sleeps in the kernel
 *   struct worker_meeting        where main meets a worker that waits and
 *                                works in passes (e5, e6, epoll_loop)
 *   status_name                  .NET's names of the task statuses
 *
 * Plain pthreads and POSIX, never the library's own waits, so that the
 * scaffolding stays apart from the library under test.  Everything is
 * static inline: each program compiles the part it uses.
 *
 * Use: define _POSIX_C_SOURCE 200809L (or more) before any #include, and
 * EXAMPLE_NAME, the program's name as a string literal, before this one:
 *
 *     #define EXAMPLE_NAME "e5_wait_any"
 *     #include "script.h"
 */
#ifndef CANCEL_EXAMPLES_SCRIPT_H
#define CANCEL_EXAMPLES_SCRIPT_H

#include <cancel/cancel.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef EXAMPLE_NAME
#error "define EXAMPLE_NAME, the program's name, before including script.h"
#endif

/* ---- Saying why, and exiting 1 ----------------------------------------- */

/* A broken promise: what went wrong. */
static inline _Noreturn void fail(const char *what)
{
    fprintf(stderr, EXAMPLE_NAME ": %s\n", what);
    exit(EXIT_FAILURE);
}

/* A library call failed: err is its negative errno value. */
static inline _Noreturn void fail_err(const char *call, int err)
{
    fprintf(stderr, EXAMPLE_NAME ": %s: %s (%s)\n", call, cancel_strerror(err),
            cancel_err_name(err));
    exit(EXIT_FAILURE);
}

/* A POSIX or pthread call failed: rc is its (positive) error number. */
static inline _Noreturn void die(const char *call, int rc)
{
    fprintf(stderr, EXAMPLE_NAME ": %s: %s\n", call, strerror(rc));
    exit(EXIT_FAILURE);
}

/* The result of a library call: 0 or a count goes on, a negative errno
 * value fails (fail_err). */
static inline void check(const char *call, int err)
{
    if (err < 0)
        fail_err(call, err);
}

/* ---- A monitor: a mutex and a condition variable ------------------------
 *
 * What every meeting point of the examples is made of: the fields it
 * guards sit next to it, and a thread that changes them broadcasts.  A
 * failed pthread call ends the program (die).
 */
struct monitor {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
};

/* A monitor nobody holds or waits in. */
static inline void monitor_init(struct monitor *m)
{
    int rc = pthread_mutex_init(&m->mutex, NULL);
    if (rc != 0)
        die("pthread_mutex_init", rc);
    rc = pthread_cond_init(&m->cond, NULL);
    if (rc != 0)
        die("pthread_cond_init", rc);
}

/* Only once no thread uses it any more. */
static inline void monitor_destroy(struct monitor *m)
{
    int rc = pthread_cond_destroy(&m->cond);
    if (rc == 0)
        rc = pthread_mutex_destroy(&m->mutex);
    if (rc != 0)
        die("pthread_cond/mutex_destroy", rc);
}

/* Take the mutex: the fields it guards are this thread's until unlock. */
static inline void monitor_lock(struct monitor *m)
{
    int rc = pthread_mutex_lock(&m->mutex);
    if (rc != 0)
        die("pthread_mutex_lock", rc);
}

/* Give the mutex back. */
static inline void monitor_unlock(struct monitor *m)
{
    int rc = pthread_mutex_unlock(&m->mutex);
    if (rc != 0)
        die("pthread_mutex_unlock", rc);
}

/* Wake every thread in monitor_wait: something it waits for changed. */
static inline void monitor_broadcast(struct monitor *m)
{
    int rc = pthread_cond_broadcast(&m->cond);
    if (rc != 0)
        die("pthread_cond_broadcast", rc);
}

/* Locked: sleep until a broadcast (or a spurious wake-up), locked again on
 * return - so always in a loop that tests what it waits for. */
static inline void monitor_wait(struct monitor *m)
{
    int rc = pthread_cond_wait(&m->cond, &m->mutex);
    if (rc != 0)
        die("pthread_cond_wait", rc);
}

/* ---- Whether a thread sleeps in the kernel (Linux) --------------------- */

/* The calling thread's kernel id on Linux; 0 where /proc cannot tell it
 * (not Linux), and thread_asleep(0) cannot tell either.  /proc/thread-self
 * links to "<pid>/task/<tid>", which names it without gettid(2), a call
 * outside POSIX. */
static inline long current_tid(void)
{
    char link[64];
    ssize_t n = readlink("/proc/thread-self", link, sizeof link - 1);
    if (n <= 0)
        return 0;
    link[n] = '\0';
    const char *tid = strrchr(link, '/');
    return tid != NULL ? strtol(tid + 1, NULL, 10) : 0;
}

/* Whether thread tid sleeps in the kernel (state S in
 * /proc/self/task/<tid>/stat): 1 yes, 0 not now, -1 cannot tell. */
static inline int thread_asleep(long tid)
{
    char path[64], buf[256];
    if (tid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after "tid (name)" */
    if (p == NULL || p[1] != ' ')
        return -1;
    return p[2] == 'S';
}

/* ---- Where main meets a worker ------------------------------------------
 *
 * The worker announces here each blocking wait it is about to make and
 * each pass of work it begins, and, when gated, stops at each pass until
 * main lets it go on.  Main waits for the n-th wait or the n-th pass, and
 * can wait until the worker is asleep in a wait, so that a cancel has to
 * wake a blocked waiter: gates, never sleeps.
 */
struct worker_meeting {
    struct monitor mon; /* guards the fields below */
    bool gated;         /* scripted: each pass of work waits for main */
    int waits;          /* blocking waits the worker announced */
    int passes;         /* passes of work begun */
    int released;       /* passes of work main let finish */
    long tid;           /* the worker's kernel thread id (Linux) */
};

/* gated: the scripted runs, where each pass of work waits for main; not
 * gated: by hand, where a pass is a tenth of a second, or where only the
 * waits count (epoll_loop). */
static inline void worker_meeting_init(struct worker_meeting *m, bool gated)
{
    *m = (struct worker_meeting){.gated = gated};
    monitor_init(&m->mon);
}

/* Once the worker has been joined. */
static inline void worker_meeting_destroy(struct worker_meeting *m)
{
    monitor_destroy(&m->mon);
}

/* Worker: about to make its blocking call. */
static inline void announce_wait(struct worker_meeting *m)
{
    monitor_lock(&m->mon);
    m->tid = current_tid();
    m->waits++;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

/* Worker: one pass of work (the original's Thread.SpinWait).  Gated, it
 * lasts until main releases it; not gated, a tenth of a second.  Either
 * way the token is not looked at meanwhile. */
static inline void work_a_pass(struct worker_meeting *m)
{
    monitor_lock(&m->mon);
    int pass = ++m->passes;
    monitor_broadcast(&m->mon);
    while (m->gated && m->released < pass)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
    if (!m->gated) {
        struct timespec tenth = {0, 100000000};
        nanosleep(&tenth, NULL); /* EINTR only shortens the "work" */
    }
}

/* Main: wait until *counter, a field of m, reaches n. */
static inline void await_count(struct worker_meeting *m, const int *counter,
                               int n)
{
    monitor_lock(&m->mon);
    while (*counter < n)
        monitor_wait(&m->mon);
    monitor_unlock(&m->mon);
}

/* Main: wait until the worker has announced its n-th wait. */
static inline void await_waits(struct worker_meeting *m, int n)
{
    await_count(m, &m->waits, n);
}

/* Main: wait until the worker has begun its n-th pass of work. */
static inline void await_passes(struct worker_meeting *m, int n)
{
    await_count(m, &m->passes, n);
}

/* Main: let the worker finish the pass it is in. */
static inline void release_pass(struct worker_meeting *m)
{
    monitor_lock(&m->mon);
    m->released++;
    monitor_broadcast(&m->mon);
    monitor_unlock(&m->mon);
}

/* Main: wait until the worker has announced its n-th wait and sleeps in
 * it, blocked in the kernel.  A gate, not a sleep (the unit tests use the
 * same one): the worker announces right before its blocking call
 * (cancel_wait_any, cancel_event_wait, epoll_wait), and the first place in
 * it that can sleep comes after the wait has read its deadline and hooked
 * itself on everything that can wake it.  Where /proc cannot tell (not
 * Linux), it returns after the announcement only. */
static inline void await_asleep(struct worker_meeting *m, int n)
{
    await_waits(m, n);
    monitor_lock(&m->mon);
    long tid = m->tid;
    monitor_unlock(&m->mon);
    while (thread_asleep(tid) == 0)
        sched_yield();
}

/* ---- Printing ------------------------------------------------------------ */

/* A task's status as .NET's TaskStatus names it. */
static inline const char *status_name(cancel_task_status s)
{
    switch (s) {
    case CANCEL_TASK_CREATED:
        return "Created";
    case CANCEL_TASK_WAITING_TO_RUN:
        return "WaitingToRun";
    case CANCEL_TASK_RUNNING:
        return "Running";
    case CANCEL_TASK_WAITING_FOR_CHILDREN:
        return "WaitingForChildrenToComplete";
    case CANCEL_TASK_RAN_TO_COMPLETION:
        return "RanToCompletion";
    case CANCEL_TASK_CANCELED:
        return "Canceled";
    case CANCEL_TASK_FAULTED:
        return "Faulted";
    }
    return "?";
}

#endif /* CANCEL_EXAMPLES_SCRIPT_H */
