/* libcancel I/O, child processes and signals: cancellation meets the OS.
 *
 * Each call is the POSIX call plus a token and a timeout.  It blocks only
 * until the operation can make progress, the token is canceled, or the
 * timeout passes - on an O_NONBLOCK fd too (the token and timeout bound the
 * wait) - and it never changes an fd's flags, not even for the duration of
 * the call (they are shared with every process that holds the file).
 *
 * Rules shared by every call:
 *   - A canceled token on entry returns -ECANCELED before any transfer.
 *   - No data is lost, and completion beats cancellation: bytes moved are
 *     reported as a (short) count; a call that returns -ECANCELED or
 *     -ETIMEDOUT moved nothing; the _full calls return the error and report
 *     the bytes already moved in *done.
 *   - A timeout of 0 never blocks: -ETIMEDOUT (0 from cancel_poll) when
 *     nothing can be done at once; negative is infinite; timeouts follow the
 *     installed clock (cancel_clock_install).
 *   - A canceled or timed-out call records its token as the thread's
 *     canceled token (cancel_canceled_token).
 *   - The call's own errors come back as negative errno values (-EBADF,
 *     -EPIPE, -ECONNREFUSED, ...); -EINVAL for a NULL buffer with n > 0.
 *   - A transfer of 0 bytes never waits: it is the plain call's result.
 *
 * How: the call polls the fd together with the token's wait handle
 * (cancel_token_fd) and transfers only once poll reports the fd ready, with
 * MSG_DONTWAIT on sockets and, on a blocking pipe, no more than the pipe can
 * take.  One limit remains: on a *blocking* pipe, FIFO or terminal that
 * another thread reads at the same time, that thread may take the data
 * between the poll and the read, and the read then blocks until more data
 * comes; give such an fd O_NONBLOCK.
 *
 * Thread safety: any thread, as the POSIX calls they wrap.
 */
#ifndef CANCEL_IO_H
#define CANCEL_IO_H

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "wait.h"

#ifdef __cplusplus
extern "C" {
#endif

/* read(2): bytes read (0 at end of file), -ECANCELED, -ETIMEDOUT, -errno. */
CANCEL_API ssize_t cancel_read(int fd, void *buf, size_t n, cancel_token t,
                               int64_t timeout_ns);

/* write(2): bytes written (possibly short), -ECANCELED, -ETIMEDOUT, -errno.
 * Behaves as write(2) does about SIGPIPE. */
CANCEL_API ssize_t cancel_write(int fd, const void *buf, size_t n,
                                cancel_token t, int64_t timeout_ns);

/* recv(2) with its flags: as cancel_read. */
CANCEL_API ssize_t cancel_recv(int fd, void *buf, size_t n, int flags,
                               cancel_token t, int64_t timeout_ns);

/* send(2) with its flags: as cancel_write, but never raises SIGPIPE
 * (MSG_NOSIGNAL is added): a closed peer gives -EPIPE. */
CANCEL_API ssize_t cancel_send(int fd, const void *buf, size_t n, int flags,
                               cancel_token t, int64_t timeout_ns);

/* accept(2): the new fd (with FD_CLOEXEC), -ECANCELED, -ETIMEDOUT, -errno.
 * addr/len as accept(2) (both may be NULL). */
CANCEL_API int cancel_accept(int fd, struct sockaddr *addr, socklen_t *len,
                             cancel_token t, int64_t timeout_ns);

/* connect(2): 0 once connected; -ECANCELED, -ETIMEDOUT, -errno
 * (-ECONNREFUSED, ...).  A canceled or timed-out connect leaves the socket
 * unusable, as a failed connect does: close it.  On a blocking socket the
 * connect happens in the kernel; cancellation or the timeout then aborts it
 * by shutting the socket down, which Linux honours for TCP; a blocking
 * connect of another family (AF_UNIX to a full backlog) is released only on
 * an O_NONBLOCK socket.  Allocates (a private timer source) on a blocking
 * socket: -ENOMEM is possible.  On a blocking socket a timeout of 0 returns
 * -ETIMEDOUT without trying (the connect could block).  -EINVAL for a NULL
 * addr. */
CANCEL_API int cancel_connect(int fd, const struct sockaddr *addr,
                              socklen_t len, cancel_token t,
                              int64_t timeout_ns);

/* poll(2): the number of entries with revents set, 0 on timeout (as poll),
 * -ECANCELED on cancellation, -EINVAL for NULL fds with n > 0. */
CANCEL_API int cancel_poll(struct pollfd *fds, nfds_t n, cancel_token t,
                           int64_t timeout_ns);

/* Read until n bytes arrived: 0 when all n arrived or end of file came first
 * (then *done < n); otherwise the error (-ECANCELED, -ETIMEDOUT, -errno).
 * *done is right on every return (NULL allowed when not wanted).  The
 * timeout covers the whole transfer. */
CANCEL_API int cancel_read_full(int fd, void *buf, size_t n, size_t *done,
                                cancel_token t, int64_t timeout_ns);

/* Write all n bytes: 0, or the error with *done bytes already written. */
CANCEL_API int cancel_write_full(int fd, const void *buf, size_t n,
                                 size_t *done, cancel_token t,
                                 int64_t timeout_ns);

/* -------------------------------------------------------------------------
 * Child processes
 * ---------------------------------------------------------------------- */

/* waitpid(pid, status, 0) that, when t is canceled, sends the child
 * SIGTERM, then SIGKILL after grace_ns (on the installed clock; negative:
 * never SIGKILL), and still reaps it: no zombie is left.  Returns 0 when the
 * child ended by itself, -ECANCELED when it was stopped (the token is
 * recorded); *status (may be NULL) says how it ended in both cases.
 * -ECHILD for a pid that is not a child of this process, -EINVAL for
 * pid <= 0.  Thread safety: one waiter per child, as waitpid. */
CANCEL_API int cancel_process_wait(pid_t pid, int *status, cancel_token t,
                                   int64_t grace_ns);

/* -------------------------------------------------------------------------
 * Signals
 * ---------------------------------------------------------------------- */

/* The first delivery of signo (SIGINT for Ctrl-C, SIGTERM, ...) cancels src
 * with reason EINTR.  The handler only writes a byte to a pipe; the
 * callbacks run on a library thread, never inside the signal handler.  The
 * handler is installed with SA_RESETHAND: a second delivery gets the default
 * action back at once, even while callbacks are still running, so a second
 * Ctrl-C still kills a stuck program.  Several sources may wait for one
 * signal; all are canceled by its first delivery.  Returns 0; -EINVAL for
 * NULL, SIGKILL, SIGSTOP or an invalid number; -ENOMEM; -EAGAIN (no library
 * thread).  cancel_source_free detaches the source.
 * Thread safety: any thread; it replaces the process's handler for signo
 * (as sigaction does) until the signal arrives - also a disposition of
 * SIG_IGN inherited from a shell (background jobs ignore SIGINT): a program
 * that asks for Ctrl-C handling gets it.
 * Callback context: the library's signal thread, no library lock held. */
CANCEL_API int cancel_source_on_signal(cancel_source *src, int signo);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_IO_H */
