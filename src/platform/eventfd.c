/* Signal fds: an fd that becomes readable once signaled and stays so.
 * Linux: one eventfd (read end == write end).  Elsewhere: a pipe whose ends
 * are non-blocking, so a signal never blocks on a full pipe (a full pipe is
 * readable already). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"

#ifdef __linux__
#include <sys/eventfd.h>

int cancel__sigfd_open(int *rfd, int *wfd)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    *rfd = *wfd = fd;
    return 0;
}

void cancel__sigfd_signal(int wfd)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(wfd, &one, sizeof(one));
    while (r < 0 && errno == EINTR);
}

void cancel__sigfd_drain(int rfd)
{
    uint64_t v;
    ssize_t r;
    do
        r = read(rfd, &v, sizeof(v));
    while (r < 0 && errno == EINTR);
}

void cancel__sigfd_close(int rfd, int wfd)
{
    (void)wfd;
    close(rfd);
}

#else

int cancel__sigfd_open(int *rfd, int *wfd)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    }
    *rfd = p[0];
    *wfd = p[1];
    return 0;
}

void cancel__sigfd_signal(int wfd)
{
    char c = 1;
    ssize_t r;
    do
        r = write(wfd, &c, 1);
    while (r < 0 && errno == EINTR);
}

void cancel__sigfd_drain(int rfd)
{
    char buf[64];
    while (read(rfd, buf, sizeof(buf)) > 0)
        ;
}

void cancel__sigfd_close(int rfd, int wfd)
{
    close(rfd);
    close(wfd);
}

#endif
