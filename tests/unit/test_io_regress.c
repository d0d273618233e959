/* Regressions for bugs the I/O suites found. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

/* cancel_poll on a manual clock treated a negative fd as fd 0 and, with fd 0
 * readable, spun forever; negative fds are ignored, as poll(2) does. */
TEST(poll_negative_fd_on_manual_clock)
{
    int p[2];
    ASSERT_OK(pipe(p));
    ASSERT_EQ(write(p[1], "x", 1), 1);
    ASSERT_EQ(dup2(p[0], 0), 0); /* fd 0 readable */
    cancel_clock *c = cancel_clock_new_manual(0);
    cancel_clock_install(c);
    cancel_source *s = cancel_source_new();
    struct pollfd fds[1] = {{-1, POLLIN, 0}};
    ASSERT_EQ(cancel_poll(fds, 1, cancel_source_token(s), 0), 0);
    ASSERT_EQ(fds[0].revents, 0);
    cancel_source_free(s);
    cancel_clock_install(NULL);
    cancel_clock_free(c);
    close(p[0]);
    close(p[1]);
}

/* A read on a write-only fd (and a write on a read-only one) waited for a
 * readiness that never comes instead of failing as read(2) does. */
TEST(read_on_write_end_is_ebadf)
{
    int p[2];
    char b[4] = "abc";
    ASSERT_OK(pipe(p));
    ASSERT_ERR(cancel_read(p[1], b, sizeof(b), CANCEL_NONE, CANCEL_INFINITE),
               -EBADF);
    ASSERT_ERR(cancel_write(p[0], b, sizeof(b), CANCEL_NONE, CANCEL_INFINITE),
               -EBADF);
    close(p[0]);
    close(p[1]);
}

struct connector {
    cancel_source *src;
    long spin;
    pthread_barrier_t go;
};

static void *cancel_soon(void *arg)
{
    struct connector *c = arg;
    pthread_barrier_wait(&c->go); /* start with the connect */
    for (volatile long i = 0; i < c->spin; i++)
        ;
    cancel_source_cancel(c->src);
    return NULL;
}

/* A cancel landing as a blocking connect completed used to shut the fresh
 * connection down while cancel_connect still reported success: a success
 * must leave a usable socket. */
TEST(connect_success_is_usable_despite_cancel_race)
{
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(ls, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_OK(bind(ls, (struct sockaddr *)&a, sizeof(a)));
    socklen_t al = sizeof(a);
    ASSERT_OK(getsockname(ls, (struct sockaddr *)&a, &al));
    ASSERT_OK(listen(ls, 128));
    /* Drained without waiting after each round. */
    ASSERT_OK(fcntl(ls, F_SETFL, fcntl(ls, F_GETFL) | O_NONBLOCK));
    long rounds = harness_scale(400), ok = 0;
    for (long i = 0; i < rounds; i++) {
        struct connector c = {.src = cancel_source_new(),
                              .spin = (i * 37) % 3000};
        ASSERT_OK(pthread_barrier_init(&c.go, NULL, 2));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_GE(fd, 0);
        pthread_t th;
        ASSERT_OK(pthread_create(&th, NULL, cancel_soon, &c));
        pthread_barrier_wait(&c.go);
        int r = cancel_connect(fd, (struct sockaddr *)&a, sizeof(a),
                               cancel_source_token(c.src), CANCEL_INFINITE);
        ASSERT_OK(pthread_join(th, NULL));
        pthread_barrier_destroy(&c.go);
        if (r == 0) {
            ok++;
            ASSERT_EQ(send(fd, "x", 1, MSG_NOSIGNAL), 1);
        } else {
            ASSERT_ERR(r, -ECANCELED);
        }
        close(fd);
        int afd;
        while ((afd = accept(ls, NULL, NULL)) >= 0)
            close(afd);
        cancel_source_free(c.src);
    }
    printf("%ld of %ld connects completed before the cancel\n", ok, rounds);
    close(ls);
}
