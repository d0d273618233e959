/* Signal-to-token: the first delivery of a signal cancels sources.
 *
 * The handler is async-signal-safe: it writes the signal number to a pipe
 * and nothing else.  It is installed with SA_RESETHAND, so the kernel puts
 * the default action back as it enters the handler: a second delivery
 * (a second Ctrl-C) gets the default action at once, whatever the library
 * thread is doing.  The signal thread (started on first use, with every
 * signal blocked) reads the pipe and cancels, with reason EINTR, every
 * source waiting for that signal; the callbacks run there.
 *
 * Invariants (under `mu`): `waiting[signo]` lists the sources (each holding
 * a reference) still waiting for signo; a source is in at most one list per
 * signal; cancel_source_free detaches it (cancel__signal_detach), so a freed
 * source is never canceled by a signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

#include "cancel/io.h"

#ifndef NSIG
#define NSIG 65
#endif

struct waiter {
    cancel_source *src;
    struct waiter *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct waiter *waiting[NSIG];
static int pipe_w = -1, pipe_r = -1;
static bool started;
/* Sources in the lists: lets cancel_source_free skip the lists when empty. */
static _Atomic long nwaiting;

static void handler(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    ssize_t r = write(pipe_w, &b, 1);
    (void)r; /* a full pipe already holds a wake-up */
    errno = saved;
}

static void *signal_thread(void *unused)
{
    (void)unused;
    for (;;) {
        unsigned char b;
        ssize_t r = read(pipe_r, &b, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1)
            continue;
        int signo = b;
        if (signo <= 0 || signo >= NSIG)
            continue;
        pthread_mutex_lock(&mu);
        struct waiter *list = waiting[signo];
        waiting[signo] = NULL;
        pthread_mutex_unlock(&mu);
        while (list != NULL) {
            struct waiter *w = list;
            list = w->next;
            cancel__cancel(w->src, EINTR);
            cancel__unref(w->src);
            cancel__free(w);
            atomic_fetch_sub_explicit(&nwaiting, 1, memory_order_relaxed);
        }
    }
    return NULL;
}

/* Under mu. */
static int start(void)
{
    if (started)
        return 0;
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++)
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    /* Published before the thread exists (pthread_create orders them). */
    pipe_r = p[0];
    pipe_w = p[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int err = pthread_create(&th, NULL, signal_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        close(p[0]);
        close(p[1]);
        pipe_r = pipe_w = -1;
        return -EAGAIN;
    }
    pthread_detach(th);
    started = true;
    return 0;
}

int cancel_source_on_signal(cancel_source *src, int signo)
{
    if (src == NULL || signo <= 0 || signo >= NSIG || signo == SIGKILL ||
        signo == SIGSTOP)
        return -EINVAL;
    struct waiter *w = cancel__malloc(sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&mu);
    int err = start();
    if (err == 0) {
        struct sigaction sa;
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND | SA_RESTART;
        if (sigaction(signo, &sa, NULL) < 0)
            err = -errno; /* e.g. a number the system does not have */
    }
    if (err < 0) {
        pthread_mutex_unlock(&mu);
        cancel__free(w);
        return err;
    }
    cancel__ref(src);
    w->src = src;
    w->next = waiting[signo];
    waiting[signo] = w;
    atomic_fetch_add_explicit(&nwaiting, 1, memory_order_relaxed);
    pthread_mutex_unlock(&mu);
    return 0;
}

void cancel__signal_detach(cancel_source *src)
{
    /* on_signal happened-before the free that calls this, so a source of
     * ours is counted here. */
    if (atomic_load_explicit(&nwaiting, memory_order_relaxed) == 0)
        return;
    struct waiter *drop = NULL;
    pthread_mutex_lock(&mu);
    for (int s = 1; s < NSIG; s++) {
        for (struct waiter **pp = &waiting[s]; *pp != NULL;) {
            struct waiter *w = *pp;
            if (w->src == src) {
                *pp = w->next;
                w->next = drop;
                drop = w;
            } else {
                pp = &w->next;
            }
        }
    }
    pthread_mutex_unlock(&mu);
    while (drop != NULL) {
        struct waiter *w = drop;
        drop = w->next;
        cancel__unref(w->src);
        cancel__free(w);
        atomic_fetch_sub_explicit(&nwaiting, 1, memory_order_relaxed);
    }
}
