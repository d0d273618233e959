/* Unit tests of the token's wait handle, cancel_token_fd: one fd per
 * source, readable once canceled and for good, owned by the source's state
 * and closed by the call that destroys that state.
 *
 * The tests that check an fd was closed do so right after the call that
 * should close it, with no fd opened in between, so the number cannot have
 * been reused. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

#define MS ((int64_t)1000000)

/* poll(2) with a zero timeout: the revents of fd. */
static short revents_now(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 0);
    ASSERT_GE(r, 0);
    return r == 0 ? 0 : p.revents;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static bool fd_is_closed(int fd)
{
    errno = 0;
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static void noop_cb(void *arg)
{
    (void)arg;
}

TEST(fd_same_fd_every_call)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cancel_token_fd(t), fd);
    ASSERT_EQ(cancel_token_fd(cancel_source_token(src)), fd);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(cancel_token_fd(t), fd);
    cancel_source_free(src);
}

TEST(fd_distinct_sources_distinct_fds)
{
    cancel_source *a = cancel_source_new();
    cancel_source *b = cancel_source_new();
    int fa = cancel_token_fd(cancel_source_token(a));
    int fb = cancel_token_fd(cancel_source_token(b));
    ASSERT_GE(fa, 0);
    ASSERT_GE(fb, 0);
    ASSERT_NE(fa, fb);
    ASSERT_OK(cancel_source_cancel(a));
    ASSERT_TRUE(revents_now(fa) & POLLIN);
    ASSERT_EQ(revents_now(fb), 0); /* canceling a does not touch b */
    cancel_source_free(a);
    cancel_source_free(b);
}

TEST(fd_readable_only_after_cancel_and_stays_readable)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(revents_now(fd), 0);
    ASSERT_EQ(revents_now(fd), 0);
    ASSERT_OK(cancel_source_cancel(src));
    for (int i = 0; i < 5; i++)
        ASSERT_TRUE(revents_now(fd) & POLLIN);
    ASSERT_OK(cancel_source_cancel(src)); /* idempotent: still readable */
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
}

TEST(fd_created_after_cancel_is_readable)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    ASSERT_OK(cancel_source_cancel(src));
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
}

TEST(fd_readable_on_timer_cancel)
{
    cancel_clock *c = harness_manual_clock();
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    ASSERT_OK(cancel_source_cancel_after(src, 5 * MS));
    ASSERT_OK(cancel_clock_advance(c, 5 * MS - 1));
    ASSERT_EQ(revents_now(fd), 0);
    ASSERT_OK(cancel_clock_advance(c, 1));
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
    harness_manual_clock_done(c);
}

TEST(fd_readable_when_linked_parent_cancels)
{
    cancel_source *parent = cancel_source_new();
    cancel_token pt = cancel_source_token(parent);
    cancel_source *child = cancel_source_new_linked(&pt, 1);
    ASSERT_NOT_NULL(child);
    int cfd = cancel_token_fd(cancel_source_token(child));
    ASSERT_GE(cfd, 0);
    ASSERT_EQ(revents_now(cfd), 0);
    ASSERT_OK(cancel_source_cancel(parent));
    ASSERT_TRUE(revents_now(cfd) & POLLIN);
    cancel_source_free(child);
    cancel_source_free(parent);
}

/* A thread blocked in poll(2) on the fd is woken by the cancel. */
struct poller {
    int fd;
    short revents;
    int rc;
    atomic_bool entered, done;
    _Atomic pid_t tid;
};

static void *poller_main(void *arg)
{
    struct poller *p = arg;
    struct pollfd pfd = {p->fd, POLLIN, 0};
    atomic_store(&p->tid, harness_gettid());
    atomic_store(&p->entered, true);
    p->rc = poll(&pfd, 1, -1);
    p->revents = pfd.revents;
    atomic_store(&p->done, true);
    return NULL;
}

TEST(fd_wakes_a_blocked_poll)
{
    cancel_source *src = cancel_source_new();
    struct poller p;
    memset(&p, 0, sizeof(p));
    p.fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(p.fd, 0);
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, poller_main, &p));
    while (!atomic_load(&p.entered))
        sched_yield();
    while (!atomic_load(&p.done) && !harness_thread_asleep(atomic_load(&p.tid)))
        sched_yield();
    ASSERT_FALSE(atomic_load(&p.done));
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_OK(pthread_join(th, NULL));
    ASSERT_EQ(p.rc, 1);
    ASSERT_TRUE(p.revents & POLLIN);
    cancel_source_free(src);
}

TEST(fd_works_with_epoll)
{
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    ASSERT_GE(ep, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
    struct epoll_event out;
    ASSERT_EQ(epoll_wait(ep, &out, 1, 0), 0);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_EQ(epoll_wait(ep, &out, 1, 0), 1);
    ASSERT_EQ(out.data.u64, 77);
    ASSERT_TRUE(out.events & EPOLLIN);
    ASSERT_EQ(epoll_wait(ep, &out, 1, 0), 1); /* level: stays readable */
    ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL));
    close(ep);
    cancel_source_free(src);
}

/* Several threads ask for the fd of a fresh source at once: one fd. */
struct fd_race {
    harness_gate *go;
    cancel_token t;
    int fd;
};

static void *fd_race_main(void *arg)
{
    struct fd_race *r = arg;
    harness_gate_wait(r->go);
    r->fd = cancel_token_fd(r->t);
    return NULL;
}

TEST(fd_concurrent_creation_gives_one_fd)
{
    enum { N = 6 };
    long rounds = harness_scale(40);
    for (long round = 0; round < rounds; round++) {
        cancel_source *src = cancel_source_new();
        harness_gate go;
        harness_gate_init(&go);
        struct fd_race r[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            r[i] = (struct fd_race){&go, cancel_source_token(src), -100};
            ASSERT_OK(pthread_create(&th[i], NULL, fd_race_main, &r[i]));
        }
        harness_gate_open(&go);
        for (int i = 0; i < N; i++)
            ASSERT_OK(pthread_join(th[i], NULL));
        harness_gate_destroy(&go);
        ASSERT_GE(r[0].fd, 0);
        for (int i = 1; i < N; i++)
            ASSERT_EQ(r[i].fd, r[0].fd);
        ASSERT_EQ(cancel_token_fd(cancel_source_token(src)), r[0].fd);
        ASSERT_EQ(revents_now(r[0].fd), 0);
        ASSERT_OK(cancel_source_cancel(src));
        ASSERT_TRUE(revents_now(r[0].fd) & POLLIN);
        int fd = r[0].fd;
        cancel_source_free(src);
        ASSERT_TRUE(fd_is_closed(fd)); /* no duplicate fd was kept either */
    }
}

TEST(fd_none_is_einval)
{
    ASSERT_ERR(cancel_token_fd(CANCEL_NONE), -EINVAL);
    /* The negative number is ignored by poll(2): it never fires. */
    struct pollfd p = {cancel_token_fd(CANCEL_NONE), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 0), 0);
}

TEST(fd_closed_when_source_freed)
{
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(fd_is_open(fd));
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_closed_when_canceled_source_freed)
{
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    ASSERT_OK(cancel_source_cancel(src));
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_kept_open_by_retained_token_until_release)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_open(fd));
    ASSERT_EQ(cancel_token_fd(t), fd);
    ASSERT_EQ(revents_now(fd), 0); /* freed uncanceled: never fires */
    cancel_token_release(t);
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_created_from_retained_token_after_free)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_token_retain(cancel_source_token(src));
    ASSERT_OK(cancel_source_cancel(src));
    cancel_source_free(src);
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_token_release(t);
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_kept_open_by_pending_registration_until_unregister)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    ASSERT_OK(cancel_register(t, &reg, noop_cb, NULL));
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_open(fd));
    ASSERT_TRUE(cancel_unregister(&reg));
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_out_of_memory_is_enomem_then_works)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel__alloc_fail_after(0);
    int err = cancel_token_fd(t);
    cancel__alloc_fail_after(-1);
    ASSERT_ERR(err, -ENOMEM);
    int fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_closed(fd));
}

TEST(fd_readable_right_after_cancel_async_returns)
{
    cancel_source *src = cancel_source_new();
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    ASSERT_OK(cancel_source_cancel_async(src));
    /* The token reads canceled before the call returns: so does the fd. */
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
}

TEST(fd_of_source_created_with_zero_timeout_is_readable)
{
    cancel_source *src = cancel_source_new_timeout(0);
    ASSERT_NOT_NULL(src);
    int fd = cancel_token_fd(cancel_source_token(src));
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_closed(fd));
}

/* Out of file descriptors: -EMFILE, and nothing is lost - a later call
 * creates the fd and it works. */
TEST(fd_out_of_descriptors_is_emfile_then_works)
{
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    struct rlimit old, low;
    ASSERT_OK(getrlimit(RLIMIT_NOFILE, &old));
    int probe = dup(0);
    ASSERT_GE(probe, 0);
    ASSERT_OK(close(probe));
    low = old;
    low.rlim_cur = (rlim_t)probe + 8; /* keep the exhaustion small */
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
    int fds[64], n = 0, fd;
    while (n < 64 && (fd = dup(0)) >= 0)
        fds[n++] = fd;
    int err = cancel_token_fd(t);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &old));
    ASSERT_LT(n, 64);
    ASSERT_ERR(err, -EMFILE);

    fd = cancel_token_fd(t);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(cancel_token_fd(t), fd);
    ASSERT_EQ(revents_now(fd), 0);
    ASSERT_OK(cancel_source_cancel(src));
    ASSERT_TRUE(revents_now(fd) & POLLIN);
    cancel_source_free(src);
    ASSERT_TRUE(fd_is_closed(fd));
}
