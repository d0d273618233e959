/* cancopy - a copy tool that stops cleanly on Ctrl-C or a timeout.
 *
 *     cancopy [--timeout SECONDS] [SRC|-] [DST|-]
 *
 * Copies SRC (default, or "-": standard input) to DST (default, or "-":
 * standard output) in 64 KiB chunks, with a progress line on standard
 * error.  It shows libcancel in a real command-line program:
 *
 *   - Ctrl-C: cancel_source_on_signal turns the first SIGINT (or SIGTERM)
 *     into a cancellation of a source, on a library thread - no work is
 *     done in a signal handler - and a second one kills the program as
 *     usual, so a stuck copy can still be stopped.
 *   - --timeout: a cancel_source_new_timeout, linked with the signal source
 *     by cancel_source_new_linked, so one token bounds the whole copy.  The
 *     linked source takes the reason of the parent that fired first
 *     (ETIMEDOUT or EINTR), which tells the two apart at the end.
 *   - Each chunk is read with cancel_read on that token, which wakes up at
 *     once when the token is canceled, even while it waits for a pipe that
 *     says nothing.  The chunk is then written with cancel_write_full and
 *     CANCEL_NONE: completion beats cancellation - what was read is always
 *     written - so when the copy stops, DST holds exactly the first N bytes
 *     of SRC, and N is the number reported.
 *
 * Output on standard error: while copying, `\rcancopy: copied N bytes`,
 * updated at most every 100 ms (a copy that takes less shows none); then
 * one final line:
 *
 *     cancopy: copied N bytes             exit status 0
 *     cancopy: canceled after N bytes     exit status 130 (SIGINT, SIGTERM)
 *     cancopy: timed out after N bytes    exit status 124 (as timeout(1))
 *
 * Errors exit 1 with a message; usage errors exit 2 with the usage line.
 *
 * Two waits are not bounded by the token, and a second Ctrl-C ends them:
 * opening a DST that is a FIFO (it waits for a reader), and writing the
 * last chunk to a DST that does not drain.  A SRC that is a FIFO is opened
 * with O_NONBLOCK, so that waiting for its writer happens in cancel_read,
 * where Ctrl-C and the timeout reach it (on Linux, poll(2) reports nothing
 * on a FIFO that has not had a writer yet).
 */
#define _POSIX_C_SOURCE 200809L

#include <cancel/cancel.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define PROGRESS_NS INT64_C(100000000) /* 100 ms */
#define MAX_TIMEOUT_S 1e9              /* 31 years: fits in int64_t ns */

enum {
    EXIT_USAGE = 2,
    EXIT_TIMED_OUT = 124,
    EXIT_CANCELED = 130, /* 128 + SIGINT, as a shell reports Ctrl-C */
};

static const char usage_line[] =
    "usage: cancopy [--timeout SECONDS] [SRC|-] [DST|-]\n";

static const char help_text[] =
    "Copy SRC (default, or -: standard input) to DST (default, or -:\n"
    "standard output) in 64 KiB chunks, with progress on standard error.\n"
    "\n"
    "  --timeout SECONDS  stop after SECONDS (a decimal number, 0 or more)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM stops the copy cleanly: the chunk already\n"
    "read is still written, so DST holds exactly the first N bytes of SRC,\n"
    "N as reported.  A second Ctrl-C kills the program at once.\n"
    "\n"
    "Exit status: 0 copied; 1 error; 2 usage error; 124 timed out;\n"
    "130 canceled by SIGINT or SIGTERM.\n";

static void usage_error(const char *fmt, const char *arg)
{
    fputs("cancopy: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    fputs(usage_line, stderr);
    exit(EXIT_USAGE);
}

/* A library call failed: err is its negative errno value. */
static void fail_err(const char *what, int err)
{
    fprintf(stderr, "cancopy: %s: %s\n", what, cancel_strerror(err));
    exit(EXIT_FAILURE);
}

/* A POSIX call failed: err is errno. */
static void die(const char *what, int err)
{
    fprintf(stderr, "cancopy: %s: %s\n", what, strerror(err));
    exit(EXIT_FAILURE);
}

/* SECONDS as nanoseconds: a finite decimal number, 0 <= s <= 1e9. */
static int64_t parse_timeout(const char *arg)
{
    char *end;
    errno = 0;
    double s = strtod(arg, &end);
    if (end == arg || *end != '\0' || errno != 0 || !isfinite(s) ||
        !(s >= 0 && s <= MAX_TIMEOUT_S))
        usage_error("invalid timeout '%s'", arg);
    return (int64_t)(s * 1e9);
}

struct options {
    int64_t timeout_ns; /* CANCEL_INFINITE: none */
    const char *src;    /* "-": standard input */
    const char *dst;    /* "-": standard output */
};

static void parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){CANCEL_INFINITE, "-", "-"};
    const char *operands[2];
    int count = 0;
    bool options_done = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (count == 2)
                usage_error("extra operand '%s'", arg);
            operands[count++] = arg;
        } else if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(usage_line, stdout);
            fputs(help_text, stdout);
            exit(EXIT_SUCCESS);
        } else if (strcmp(arg, "--timeout") == 0) {
            if (i + 1 == argc)
                usage_error("option '%s' needs a value", arg);
            o->timeout_ns = parse_timeout(argv[++i]);
        } else if (strncmp(arg, "--timeout=", 10) == 0) {
            o->timeout_ns = parse_timeout(arg + 10);
        } else {
            usage_error("unknown option '%s'", arg);
        }
    }
    if (count > 0)
        o->src = operands[0];
    if (count > 1)
        o->dst = operands[1];
}

/* The file names as messages show them. */
static const char *src_name(const struct options *o)
{
    return strcmp(o->src, "-") == 0 ? "standard input" : o->src;
}

static const char *dst_name(const struct options *o)
{
    return strcmp(o->dst, "-") == 0 ? "standard output" : o->dst;
}

static int open_src(const struct options *o)
{
    if (strcmp(o->src, "-") == 0)
        return STDIN_FILENO;
    /* O_NONBLOCK: see the top of the file.  It is our own open file
     * description, so nobody else sees the flag; cancel_read waits. */
    int fd = open(o->src, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        die(o->src, errno);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die(o->src, errno);
    if (S_ISDIR(st.st_mode))
        die(o->src, EISDIR); /* before DST is touched */
    return fd;
}

/* Open DST without truncating it first, so that copying a file onto itself
 * is refused before it is emptied. */
static int open_dst(const struct options *o, int in)
{
    if (strcmp(o->dst, "-") == 0)
        return STDOUT_FILENO;
    int fd = open(o->dst, O_WRONLY | O_CREAT, 0666);
    if (fd < 0)
        die(o->dst, errno);

    struct stat si, so;
    if (fstat(in, &si) < 0)
        die(src_name(o), errno);
    if (fstat(fd, &so) < 0)
        die(o->dst, errno);
    if (S_ISREG(so.st_mode)) {
        if (si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            fprintf(stderr, "cancopy: '%s' and '%s' are the same file\n",
                    src_name(o), o->dst);
            exit(EXIT_FAILURE);
        }
        if (ftruncate(fd, 0) < 0)
            die(o->dst, errno);
    }
    return fd;
}

/* The progress line, at most every PROGRESS_NS. */
struct progress {
    int64_t last; /* when it was last shown (or the copy began) */
    bool shown;   /* a progress line is on the screen */
};

static void progress_update(struct progress *p, uint64_t total)
{
    int64_t now = cancel_clock_now();
    if (now - p->last < PROGRESS_NS)
        return;
    fprintf(stderr, "\rcancopy: copied %" PRIu64 " bytes", total);
    p->last = now;
    p->shown = true;
}

/* The final line; it overwrites the progress line (and is longer). */
static void progress_end(const struct progress *p, const char *what,
                         uint64_t total)
{
    fprintf(stderr, "%scancopy: %s %" PRIu64 " bytes\n", p->shown ? "\r" : "",
            what, total);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);

    /* Ctrl-C and SIGTERM cancel `interrupt`, with reason EINTR. */
    cancel_source *interrupt = cancel_source_new();
    if (interrupt == NULL)
        fail_err("cancel_source_new", -errno);
    int err = cancel_source_on_signal(interrupt, SIGINT);
    if (err == 0)
        err = cancel_source_on_signal(interrupt, SIGTERM);
    if (err != 0)
        fail_err("cancel_source_on_signal", err);

    /* --timeout: a timer source, and the token of both. */
    cancel_source *timer = NULL, *linked = NULL;
    cancel_token token = cancel_source_token(interrupt);
    if (o.timeout_ns >= 0) {
        timer = cancel_source_new_timeout(o.timeout_ns);
        if (timer == NULL)
            fail_err("cancel_source_new_timeout", -errno);
        const cancel_token parents[] = {token, cancel_source_token(timer)};
        linked = cancel_source_new_linked(parents, 2);
        if (linked == NULL)
            fail_err("cancel_source_new_linked", -errno);
        token = cancel_source_token(linked);
    }

    int in = open_src(&o);
    int out = open_dst(&o, in);

    static char buf[CHUNK];
    uint64_t total = 0;
    struct progress progress = {cancel_clock_now(), false};
    int status = EXIT_SUCCESS;

    for (;;) {
        ssize_t n = cancel_read(in, buf, sizeof buf, token, CANCEL_INFINITE);
        if (n == -EINTR)
            continue;
        if (n == -ECANCELED) {
            /* Nothing was read by this call: DST is whole up to total. */
            if (cancel_reason(token) == ETIMEDOUT) {
                progress_end(&progress, "timed out after", total);
                status = EXIT_TIMED_OUT;
            } else {
                progress_end(&progress, "canceled after", total);
                status = EXIT_CANCELED;
            }
            break;
        }
        if (n < 0) {
            /* The kernel's own error, passed through: strerror names it. */
            progress_end(&progress, "stopped after", total);
            fprintf(stderr, "cancopy: reading %s: %s\n", src_name(&o),
                    strerror((int)-n));
            status = EXIT_FAILURE;
            break;
        }
        if (n == 0) {
            progress_end(&progress, "copied", total);
            break;
        }

        /* Completion beats cancellation: the chunk that was read is
         * written whole, whatever the token says by now. */
        size_t off = 0;
        while (off < (size_t)n) {
            size_t done;
            err = cancel_write_full(out, buf + off, (size_t)n - off, &done,
                                    CANCEL_NONE, CANCEL_INFINITE);
            off += done;
            total += done;
            if (err != -EINTR && err != 0)
                break;
        }
        if (off < (size_t)n) {
            progress_end(&progress, "stopped after", total);
            fprintf(stderr, "cancopy: writing %s: %s\n", dst_name(&o),
                    strerror(-err));
            status = EXIT_FAILURE;
            break;
        }
        progress_update(&progress, total);
    }

    if (out != STDOUT_FILENO && close(out) < 0) {
        fprintf(stderr, "cancopy: closing %s: %s\n", dst_name(&o),
                strerror(errno));
        if (status == EXIT_SUCCESS)
            status = EXIT_FAILURE;
    }
    if (in != STDIN_FILENO)
        (void)close(in); /* read-only: nothing to lose */

    cancel_source_free(linked);
    cancel_source_free(timer);
    cancel_source_free(interrupt);
    return status;
}
