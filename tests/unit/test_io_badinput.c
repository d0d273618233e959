/* Bad input to the I/O layer: a clear negative errno, never a crash, never
 * a block, and nothing changed.
 *   - invalid fds (-1, a closed fd): -EBADF from read, write, recv, send,
 *     accept, connect and the _full calls (with *done = 0);
 *   - NULL buffers with n > 0, NULL addr to connect, NULL fds with n > 0 to
 *     poll: -EINVAL;
 *   - socket calls on what is not a socket, accept on a socket that does
 *     not listen: the errno of the POSIX call;
 *   - process_wait: -ECHILD for a stranger, -EINVAL for pid <= 0;
 *   - on_signal: -EINVAL for signals that cannot be caught.
 * Each is tried with CANCEL_NONE and with a live token, with infinite and
 * zero timeouts, and the token is not canceled by it. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SEC ((int64_t)1000000000)

/* An fd number that is surely closed: high, so that nothing the library
 * opens meanwhile (lowest number first) takes it. */
static int closed_fd(void)
{
    int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(n, 0);
    int fd = fcntl(n, F_DUPFD_CLOEXEC, 700);
    ASSERT_GE(fd, 700);
    close(fd);
    close(n);
    return fd;
}

static const int64_t timeouts[] = {-1, 0, SEC};

static void for_each_token(void (*check)(cancel_token t, int64_t timeout))
{
    cancel_source *src = cancel_source_new();
    cancel_token tokens[] = {CANCEL_NONE, cancel_source_token(src)};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            check(tokens[i], timeouts[k]);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}

/* ---- invalid fds -------------------------------------------------------- */

static int bad_fds[2];

static void check_bad_fd(cancel_token t, int64_t timeout)
{
    for (int i = 0; i < 2; i++) {
        int fd = bad_fds[i];
        char buf[8] = "abc";
        ASSERT_ERR(cancel_read(fd, buf, sizeof(buf), t, timeout), -EBADF);
        ASSERT_ERR(cancel_write(fd, buf, 3, t, timeout), -EBADF);
        ASSERT_ERR(cancel_recv(fd, buf, sizeof(buf), 0, t, timeout), -EBADF);
        ASSERT_ERR(cancel_send(fd, buf, 3, 0, t, timeout), -EBADF);
        ASSERT_ERR(cancel_accept(fd, NULL, NULL, t, timeout), -EBADF);
        struct sockaddr_in addr = {.sin_family = AF_INET,
                                   .sin_port = htons(9),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ASSERT_ERR(cancel_connect(fd, (struct sockaddr *)&addr, sizeof(addr), t,
                                  timeout),
                   -EBADF);
        size_t done = 99;
        ASSERT_ERR(cancel_read_full(fd, buf, sizeof(buf), &done, t, timeout),
                   -EBADF);
        ASSERT_EQ(done, 0);
        done = 99;
        ASSERT_ERR(cancel_write_full(fd, buf, 3, &done, t, timeout), -EBADF);
        ASSERT_EQ(done, 0);
    }
}

TEST(badinput_invalid_fds)
{
    bad_fds[0] = -1;
    bad_fds[1] = closed_fd();
    for_each_token(check_bad_fd);
}

TEST(badinput_invalid_fds_manual_clock)
{
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    bad_fds[0] = -1;
    bad_fds[1] = closed_fd();
    for_each_token(check_bad_fd);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

/* poll reports a closed fd as poll(2) does: POLLNVAL, not an error. */
TEST(badinput_poll_closed_fd_is_pollnval)
{
    struct pollfd f = {closed_fd(), POLLIN, 0};
    ASSERT_EQ(cancel_poll(&f, 1, CANCEL_NONE, -1), 1);
    ASSERT_EQ(f.revents, POLLNVAL);
}

/* ---- NULL pointers ------------------------------------------------------ */

static int pipe_fds[2], sock_fds[2];

static void check_null(cancel_token t, int64_t timeout)
{
    size_t done = 99;
    ASSERT_ERR(cancel_read(pipe_fds[0], NULL, 1, t, timeout), -EINVAL);
    ASSERT_ERR(cancel_write(pipe_fds[1], NULL, 1, t, timeout), -EINVAL);
    ASSERT_ERR(cancel_recv(sock_fds[0], NULL, 1, 0, t, timeout), -EINVAL);
    ASSERT_ERR(cancel_send(sock_fds[1], NULL, 1, 0, t, timeout), -EINVAL);
    ASSERT_ERR(cancel_read_full(pipe_fds[0], NULL, 5, &done, t, timeout),
               -EINVAL);
    ASSERT_EQ(done, 0);
    done = 99;
    ASSERT_ERR(cancel_write_full(pipe_fds[1], NULL, 5, &done, t, timeout),
               -EINVAL);
    ASSERT_EQ(done, 0);
    ASSERT_ERR(cancel_poll(NULL, 1, t, timeout), -EINVAL);
    ASSERT_ERR(cancel_poll(NULL, 3, t, timeout), -EINVAL);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    ASSERT_ERR(cancel_connect(s, NULL, sizeof(struct sockaddr_in), t, timeout),
               -EINVAL);
    ASSERT_ERR(cancel_connect(s, NULL, 0, t, timeout), -EINVAL);
    close(s);
}

TEST(badinput_null_pointers)
{
    ASSERT_OK(pipe2(pipe_fds, O_CLOEXEC));
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock_fds));
    /* Data there, so that a call that went ahead would find something. */
    ASSERT_EQ(write(pipe_fds[1], "data", 4), 4);
    ASSERT_EQ(send(sock_fds[1], "data", 4, 0), 4);
    for_each_token(check_null);
    /* Nothing was read or written. */
    char buf[8];
    ASSERT_EQ(read(pipe_fds[0], buf, sizeof(buf)), 4);
    ASSERT_EQ(recv(sock_fds[0], buf, sizeof(buf), MSG_DONTWAIT), 4);
    ASSERT_EQ(recv(sock_fds[1], buf, sizeof(buf), MSG_DONTWAIT), -1);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    close(sock_fds[0]);
    close(sock_fds[1]);
}

/* Bad input and a canceled token at once: the header does not say which
 * check comes first, so -EINVAL and -ECANCELED are both right - anything
 * else (a crash, a transfer, a block) is not. */
TEST(badinput_null_buffer_with_canceled_token)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    cancel_source *src = cancel_source_new();
    ASSERT_OK(cancel_source_cancel(src));
    cancel_token t = cancel_source_token(src);
    ssize_t r = cancel_read(p[0], NULL, 1, t, -1);
    ASSERT(r == -EINVAL || r == -ECANCELED);
    r = cancel_write(p[1], NULL, 1, t, -1);
    ASSERT(r == -EINVAL || r == -ECANCELED);
    r = cancel_poll(NULL, 1, t, -1);
    ASSERT(r == -EINVAL || r == -ECANCELED);
    r = cancel_connect(p[0], NULL, 0, t, -1);
    ASSERT(r == -EINVAL || r == -ECANCELED);
    cancel_source_free(src);
    close(p[0]);
    close(p[1]);
}

/* ---- the wrong kind of fd ----------------------------------------------- */

TEST(badinput_socket_calls_on_a_pipe)
{
    int p[2];
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_EQ(write(p[1], "x", 1), 1);
    char buf[4];
    ASSERT_ERR(cancel_recv(p[0], buf, sizeof(buf), 0, CANCEL_NONE, -1),
               -ENOTSOCK);
    ASSERT_ERR(cancel_send(p[1], "x", 1, 0, CANCEL_NONE, -1), -ENOTSOCK);
    ASSERT_ERR(cancel_accept(p[0], NULL, NULL, CANCEL_NONE, -1), -ENOTSOCK);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(9),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_ERR(cancel_connect(p[1], (struct sockaddr *)&addr, sizeof(addr),
                              CANCEL_NONE, -1),
               -ENOTSOCK);
    /* The byte is still there. */
    ASSERT_EQ(read(p[0], buf, sizeof(buf)), 1);
    close(p[0]);
    close(p[1]);
}

TEST(badinput_accept_on_socket_not_listening)
{
    for (int nb = 0; nb < 2; nb++) {
        int s = socket(
            AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nb ? SOCK_NONBLOCK : 0), 0);
        ASSERT_GE(s, 0);
        cancel_source *src = cancel_source_new();
        ASSERT_ERR(cancel_accept(s, NULL, NULL, cancel_source_token(src), -1),
                   -EINVAL);
        ASSERT_ERR(cancel_accept(s, NULL, NULL, CANCEL_NONE, 0), -EINVAL);
        cancel_source_free(src);
        close(s);
    }
}

TEST(badinput_connect_bad_address)
{
    for (int nb = 0; nb < 2; nb++) {
        int s = socket(
            AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nb ? SOCK_NONBLOCK : 0), 0);
        ASSERT_GE(s, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET,
                                   .sin_port = htons(9),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        /* A length too short for the family: connect(2) says EINVAL. */
        ASSERT_ERR(
            cancel_connect(s, (struct sockaddr *)&addr, 4, CANCEL_NONE, -1),
            -EINVAL);
        /* The wrong family for the socket: EAFNOSUPPORT. */
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        ASSERT_ERR(cancel_connect(s, (struct sockaddr *)&un, sizeof(un),
                                  CANCEL_NONE, -1),
                   -EAFNOSUPPORT);
        close(s);
    }
}

TEST(badinput_read_write_on_a_directory)
{
    int d = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(d, 0);
    char buf[4];
    ASSERT_ERR(cancel_read(d, buf, sizeof(buf), CANCEL_NONE, -1), -EISDIR);
    ASSERT_ERR(cancel_write(d, "x", 1, CANCEL_NONE, -1), -EBADF);
    close(d);
}

/* ---- processes and signals ---------------------------------------------- */

TEST(badinput_process_wait)
{
    int status = 42;
    ASSERT_ERR(cancel_process_wait(0, &status, CANCEL_NONE, -1), -EINVAL);
    ASSERT_ERR(cancel_process_wait(-1, &status, CANCEL_NONE, -1), -EINVAL);
    ASSERT_ERR(cancel_process_wait(getppid(), &status, CANCEL_NONE, -1),
               -ECHILD);
    ASSERT_ERR(cancel_process_wait(getpid(), NULL, CANCEL_NONE, 0), -ECHILD);
    ASSERT_EQ(status, 42);
}

TEST(badinput_on_signal)
{
    cancel_source *src = cancel_source_new();
    int bad[] = {SIGKILL, SIGSTOP, 0, -1, -SIGINT, 1000, NSIG, 65536};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_ERR(cancel_source_on_signal(src, bad[i]), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(NULL, SIGINT), -EINVAL);
    ASSERT_ERR(cancel_source_on_signal(NULL, SIGTERM), -EINVAL);
    /* Nothing was installed for SIGINT by the NULL calls. */
    struct sigaction sa;
    ASSERT_OK(sigaction(SIGINT, NULL, &sa));
    ASSERT(sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN);
    ASSERT_FALSE(cancel_requested(cancel_source_token(src)));
    cancel_source_free(src);
}
