/* epoll_loop - an epoll event loop that watches the token's fd.
 *
 * An event loop cannot block in cancel_wait: it blocks in epoll_wait, on
 * every fd it serves at once.  cancel_token_fd gives the token a place
 * there - an fd that becomes readable once the token is canceled and stays
 * readable - so the loop watches it next to the pipe it serves jobs from,
 * and a cancel from any thread, or from a library timer, wakes the loop out
 * of epoll_wait and ends it cleanly:
 *
 *     epoll_ctl(ep, EPOLL_CTL_ADD, jobs_fd,  {EPOLLIN, JOBS});
 *     epoll_ctl(ep, EPOLL_CTL_ADD, cancel_token_fd(token), {EPOLLIN, TOKEN});
 *     for (;;) {
 *         epoll_wait(ep, events, ...);
 *         if (one of them is TOKEN) break;      cancellation wins
 *         serve the jobs that are readable;
 *     }
 *
 * The loop never reads or closes the token's fd (the source owns it), and
 * takes it out of the epoll set before the source is freed.  Within one
 * batch of events, cancellation wins over work, as it does on entry to the
 * library's waits; jobs still queued are counted, not served.
 *
 * Usage:
 *   epoll_loop
 *       A producer thread sends three jobs through the pipe, one at a time,
 *       each once the loop has served the one before.  Then it waits until
 *       the loop sleeps in epoll_wait (Linux: /proc says the thread is
 *       asleep) and cancels the token from its own thread: the token's fd
 *       wakes the loop.
 *   epoll_loop --idle-timeout-ms N
 *       The three jobs are queued before the loop starts; the loop serves
 *       them and, each time it runs out of work - an epoll_wait that does
 *       not block finds nothing ready - arms the source's timer
 *       (cancel_source_cancel_after, N >= 1 ms) before it blocks; serving
 *       a job disarms it.  Nobody sends more, so the library's timer thread
 *       cancels the token with reason ETIMEDOUT and the loop ends.
 *   epoll_loop --canceled-first
 *       Three jobs are queued and the token is canceled before the loop
 *       starts: the first epoll_wait reports both, cancellation wins, and
 *       the three jobs are left in the pipe.
 *
 * The output is the same on every run.  On a failed call the program says
 * why on stderr and exits 1; on a usage error it exits 2.
 */
#define _GNU_SOURCE /* pipe2 */

#include <cancel/cancel.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Scaffolding, not part of the pattern: the error helpers, and the meeting
 * that makes the producer's cancel wake a sleeping epoll_wait. */
#define EXAMPLE_NAME "epoll_loop"
#include "script.h"

#define MS INT64_C(1000000) /* nanoseconds */
#define NJOBS 3

static const char *const job_names[NJOBS] = {
    "resize photo.jpg", "compress notes.txt", "upload report.pdf"};

static void usage(void)
{
    fputs("usage: epoll_loop [--idle-timeout-ms N | --canceled-first]\n",
          stderr);
    exit(2);
}

/* ---- The pipe the loop serves ------------------------------------------- */

static void send_job(int fd, int i)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%d: %s\n", i + 1, job_names[i]);
    /* A line is far below PIPE_BUF: written whole, never split. */
    if (write(fd, line, (size_t)n) != n)
        die("write", errno);
}

/* ---- What the loop and the producer share ------------------------------
 *
 * Scaffolding for a deterministic run, not part of the pattern: the loop
 * says at the meeting (script.h) when it is about to block, and the
 * producer waits for that before it cancels, so that the cancel has to
 * wake a sleeping epoll_wait.
 */
struct shared {
    cancel_source *src;
    int jobs_wr;                /* the producer's end of the pipe */
    cancel_semaphore served;    /* one count per job the loop served */
    struct worker_meeting meet; /* its waits: the loop's epoll_wait calls */
    int served_in; /* under meet.mon: the wait that brought the last job */
};

/* The wait whose events brought the last job served. */
static int served_in(struct shared *sh)
{
    monitor_lock(&sh->meet.mon);
    int n = sh->served_in;
    monitor_unlock(&sh->meet.mon);
    return n;
}

/* ---- The producer thread ------------------------------------------------ */

static void *producer(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < NJOBS; i++) {
        printf("producer: sends job %d\n", i + 1);
        send_job(sh->jobs_wr, i);
        check("cancel_semaphore_wait",
              cancel_semaphore_wait(&sh->served, CANCEL_NONE, CANCEL_INFINITE));
    }
    /* The loop served the last job; let it go back to sleep first, in the
     * wait after the one that brought the job. */
    await_asleep(&sh->meet, served_in(sh) + 1);
    printf("producer: all %d jobs served; cancels the token from its own "
           "thread\n",
           NJOBS);
    check("cancel_source_cancel", cancel_source_cancel(sh->src));
    return NULL;
}

/* ---- The loop ----------------------------------------------------------- */

enum { TOKEN = 1, JOBS = 2 };

struct loop {
    int ep;
    int jobs_rd;
    cancel_source *src;
    int64_t idle_timeout_ns; /* < 0: none */
    struct shared *sh;       /* NULL: no producer to tell */
    char buf[256];           /* a partial line waits here */
    size_t have;
    int served;
};

static void watch(int ep, int fd, uint32_t what)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = what};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl(ADD)", errno);
}

/* Serve every whole line in the buffer. */
static void serve_lines(struct loop *l)
{
    char *start = l->buf, *nl;
    while ((nl = memchr(start, '\n', l->have - (size_t)(start - l->buf)))) {
        *nl = '\0';
        printf("loop: served job %s\n", start);
        l->served++;
        if (l->sh != NULL) {
            monitor_lock(&l->sh->meet.mon);
            l->sh->served_in = l->sh->meet.waits;
            monitor_unlock(&l->sh->meet.mon);
            check("cancel_semaphore_release",
                  cancel_semaphore_release(&l->sh->served, 1));
        }
        start = nl + 1;
    }
    l->have -= (size_t)(start - l->buf);
    memmove(l->buf, start, l->have);
}

/* Read what the pipe holds until it would block.  Returns false at end of
 * file (every writer closed it). */
static bool serve_jobs(struct loop *l)
{
    for (;;) {
        ssize_t n = read(l->jobs_rd, l->buf + l->have, sizeof l->buf - l->have);
        if (n > 0) {
            l->have += (size_t)n;
            serve_lines(l);
            continue;
        }
        if (n == 0)
            return false;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        die("read", errno);
    }
}

/* Lines still in the pipe, counted without serving them. */
static int jobs_left(struct loop *l)
{
    int left = 0;
    char buf[256];
    ssize_t n;
    while ((n = read(l->jobs_rd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            left += buf[i] == '\n';
    return left;
}

static void run_loop(struct loop *l)
{
    cancel_token token = cancel_source_token(l->src);
    bool armed = false; /* the idle timer */
    for (;;) {
        /* With an idle timeout, look first without blocking; only when
         * nothing is ready is the loop idle: arm the timer, then block. */
        int timeout = l->idle_timeout_ns >= 0 && !armed ? 0 : -1;
        if (l->sh != NULL)
            announce_wait(&l->sh->meet);
        struct epoll_event events[4];
        int n = epoll_wait(l->ep, events, 4, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", errno);
        }
        if (n == 0) {
            printf("loop: out of work; the token cancels itself in %lld ms\n",
                   (long long)(l->idle_timeout_ns / MS));
            check("cancel_source_cancel_after",
                  cancel_source_cancel_after(l->src, l->idle_timeout_ns));
            armed = true;
            continue;
        }
        bool canceled = false, jobs = false;
        for (int i = 0; i < n; i++) {
            canceled |= events[i].data.u32 == TOKEN;
            jobs |= events[i].data.u32 == JOBS;
        }
        if (canceled) {
            printf("loop: the token's fd is readable: canceled, reason %s\n",
                   cancel_err_name(cancel_reason(token)));
            return;
        }
        if (jobs) {
            /* Busy: no idle timeout while jobs are served. */
            if (armed)
                check("cancel_source_cancel_after",
                      cancel_source_cancel_after(l->src, -1));
            armed = false;
            if (!serve_jobs(l)) {
                printf("loop: the producer hung up\n");
                return;
            }
        }
    }
}

int main(int argc, char **argv)
{
    enum { PRODUCER, IDLE_TIMEOUT, CANCELED_FIRST } mode = PRODUCER;
    long timeout_ms = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--idle-timeout-ms") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            timeout_ms = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || timeout_ms < 1 ||
                timeout_ms > 3600000)
                usage();
            mode = IDLE_TIMEOUT;
        } else if (strcmp(argv[i], "--canceled-first") == 0) {
            mode = CANCELED_FIRST;
        } else {
            usage();
        }
    }

    cancel_source *src = cancel_source_new();
    if (src == NULL)
        die("cancel_source_new", errno);
    cancel_token token = cancel_source_token(src);

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe2", errno);
    /* Our own pipe: the loop's end may be non-blocking. */
    if (fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK) < 0)
        die("fcntl", errno);

    struct loop l = {.jobs_rd = p[0], .src = src, .idle_timeout_ns = -1};
    l.ep = epoll_create1(EPOLL_CLOEXEC);
    if (l.ep < 0)
        die("epoll_create1", errno);
    int token_fd = cancel_token_fd(token);
    check("cancel_token_fd", token_fd);
    watch(l.ep, p[0], JOBS);
    watch(l.ep, token_fd, TOKEN);

    struct shared sh = {.src = src, .jobs_wr = p[1]};
    pthread_t thread;
    switch (mode) {
    case PRODUCER:
        printf("epoll_loop: the loop serves a pipe; a producer thread "
               "cancels\n");
        check("cancel_semaphore_init",
              cancel_semaphore_init(&sh.served, 0, NJOBS));
        worker_meeting_init(&sh.meet, false);
        l.sh = &sh;
        if ((errno = pthread_create(&thread, NULL, producer, &sh)) != 0)
            die("pthread_create", errno);
        break;
    case IDLE_TIMEOUT:
        printf("epoll_loop: the loop serves a pipe; it stops after %ld ms "
               "without work\n",
               timeout_ms);
        l.idle_timeout_ns = timeout_ms * MS;
        for (int i = 0; i < NJOBS; i++)
            send_job(p[1], i);
        break;
    case CANCELED_FIRST:
        printf("epoll_loop: %d jobs are queued and the token is canceled "
               "before the loop starts\n",
               NJOBS);
        for (int i = 0; i < NJOBS; i++)
            send_job(p[1], i);
        check("cancel_source_cancel", cancel_source_cancel(src));
        break;
    }

    run_loop(&l);

    if (mode == PRODUCER) {
        if ((errno = pthread_join(thread, NULL)) != 0)
            die("pthread_join", errno);
        check("cancel_semaphore_destroy", cancel_semaphore_destroy(&sh.served));
        worker_meeting_destroy(&sh.meet);
    }
    printf("loop: ended; %d jobs served, %d left in the pipe\n", l.served,
           jobs_left(&l));

    /* The token's fd belongs to the source: take it out of the set, never
     * close it, and only then free the source (which closes it). */
    if (epoll_ctl(l.ep, EPOLL_CTL_DEL, token_fd, NULL) < 0)
        die("epoll_ctl(DEL)", errno);
    close(l.ep);
    close(p[0]);
    close(p[1]);
    cancel_source_free(src);
    printf("epoll_loop: closed cleanly\n");
    return 0;
}
