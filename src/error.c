/* Names and messages of the error codes the library returns. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cancel/token.h"

static const struct {
    int code;
    const char *name;
    const char *msg;
} errors[] = {
    {0, "OK", "success"},
    {-CANCEL_EAGGREGATE, "EAGGREGATE", "several errors (see the error list)"},
    {ECANCELED, "ECANCELED", "operation canceled"},
    {ETIMEDOUT, "ETIMEDOUT", "deadline passed"},
    {EINVAL, "EINVAL", "invalid argument"},
    {ENOMEM, "ENOMEM", "out of memory"},
    {EOVERFLOW, "EOVERFLOW", "count past its maximum"},
    {EAGAIN, "EAGAIN", "resource temporarily unavailable"},
    {EBUSY, "EBUSY", "object in use"},
    {EINTR, "EINTR", "interrupted by a signal"},
    {EBADF, "EBADF", "bad file descriptor"},
    {EMFILE, "EMFILE", "too many open files"},
    {ENFILE, "ENFILE", "too many open files in system"},
    {ECHILD, "ECHILD", "no such child process"},
    {EPIPE, "EPIPE", "broken pipe"},
    {ECONNREFUSED, "ECONNREFUSED", "connection refused"},
    {ECONNRESET, "ECONNRESET", "connection reset by peer"},
    {EINPROGRESS, "EINPROGRESS", "operation in progress"},
    {ENOTSOCK, "ENOTSOCK", "not a socket"},
    {ESRCH, "ESRCH", "no such process"},
    {EPERM, "EPERM", "operation not permitted"},
    {ENOSYS, "ENOSYS", "function not implemented"},
};

static int find(int err)
{
    if (err == INT_MIN)
        return -1; /* -INT_MIN does not exist; no errno is that large */
    if (err < 0)
        err = -err;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].code == err)
            return (int)i;
    return -1;
}

/* The I/O calls pass any errno through: beyond the table, ask the C
 * library, whose descriptions are static strings (thread-safe). */
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#define HAVE_ERRNO_NAMES 1
#endif

const char *cancel_strerror(int err)
{
    int i = find(err);
    if (i >= 0)
        return errors[i].msg;
#ifdef HAVE_ERRNO_NAMES
    if (err != INT_MIN) {
        const char *d = strerrordesc_np(err < 0 ? -err : err);
        if (d != NULL)
            return d;
    }
#endif
    return "unknown error";
}

const char *cancel_err_name(int err)
{
    int i = find(err);
    if (i >= 0)
        return errors[i].name;
#ifdef HAVE_ERRNO_NAMES
    if (err != INT_MIN) {
        const char *n = strerrorname_np(err < 0 ? -err : err);
        if (n != NULL)
            return n;
    }
#endif
    return "UNKNOWN";
}
