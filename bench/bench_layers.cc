/* libcancel's layers above the core: waiting, I/O, tasks, parallel loops.
 *
 * Each figure (issues #3 to #6) is measured beside its nearest plain
 * equivalent in the same process and the same run; each repetition measures
 * every implementation in turn, rotating who goes first, and the tables
 * print medians (and, for wake-ups, the 99th percentile), ratios and the
 * target.  A missed target is reported, never fatal.
 *
 *   bench_layers [--reps N] [--quick] [--only wait,io,tasks,qcancel,par,stop]
 *                [--md FILE]   (--md: the tables in markdown, for report.md)
 *
 * Every figure here spans several threads, so every time is wall time
 * (CLOCK_MONOTONIC), taken on the machine as it is: nothing is pinned.
 * Sizes (full run, about 20-30 s on an idle 2-core machine):
 *   wait     2000 rounds per implementation (one waiter thread, kept
 *            across rounds; the waker sleeps 200 us before the wake so
 *            that the waiter is asleep in the kernel, not spinning)
 *   io       256 MiB per run through a pipe, 64 KiB reads and writes
 *   tasks    1,000,000 empty tasks in flight (libcancel, GThreadPool),
 *            10,000 threads (pthread_create + pthread_join); then
 *            100 batches of 10,000 tasks (libcancel, GThreadPool)
 *   qcancel  100,000 queued tasks canceled by one token
 *   par      100,000,000 iterations, libcancel and a hand split on 2 threads
 *   stop     a loop of 1 us elements canceled after 20 ms, 11 runs
 * --quick divides the sizes by 10 and runs each figure 3 times. */
#include <cancel/cancel.h>

#include <glib.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench_util.h"

using bench::fmt;
using bench::keep;
using bench::median;
using bench::wall_ns;

namespace
{

int g_reps = 11;
bool g_quick = false;
long g_div = 1; /* --quick: sizes / 10 */
std::vector<std::string> g_only;
const char *g_md_path = nullptr;

bool wanted(const char *name)
{
    if (g_only.empty())
        return true;
    for (const auto &o : g_only)
        if (o == name)
            return true;
    return false;
}

/* ---- results ------------------------------------------------------------ */

struct row {
    std::string who;
    std::vector<double> samples;
    bool err = false;
    double med() const { return samples.empty() ? -1 : median(samples); }
    double pct(double p) const
    {
        if (samples.empty())
            return -1;
        auto s = samples;
        std::sort(s.begin(), s.end());
        size_t k = (size_t)(p * (double)(s.size() - 1) + 0.5);
        return s[std::min(k, s.size() - 1)];
    }
    double lo() const
    {
        return samples.empty() ? -1
                               : *std::min_element(samples.begin(), samples.end());
    }
    double hi() const
    {
        return samples.empty() ? -1
                               : *std::max_element(samples.begin(), samples.end());
    }
};

struct section {
    std::string title;
    std::string unit;
    bool higher_better = false; /* throughput rather than time */
    bool p99 = false;           /* show the 99th percentile, not min - max */
    std::vector<row> rows;      /* rows[0] is libcancel */
    std::string note;
};

struct verdict {
    std::string figure, value, target, result, why;
};

std::vector<section> g_secs;
std::vector<verdict> g_verdicts;

void add_verdict(const std::string &fig, const std::string &value,
                 const std::string &target, bool ok, bool err,
                 const std::string &why = "")
{
    g_verdicts.push_back(
        {fig, value, target, err ? "ERR" : ok ? "PASS" : "MISS", why});
    printf("    -> %s: %s (target %s)\n", err ? "ERR" : ok ? "PASS" : "MISS",
           value.c_str(), target.c_str());
}

void print_section(const section &s)
{
    printf("%s (%s)\n", s.title.c_str(), s.unit.c_str());
    for (const auto &r : s.rows)
        printf("    %-40s median %-8s %s %-8s %s %-8s (%zu samples)%s\n",
               r.who.c_str(), fmt(r.med()).c_str(), s.p99 ? "p99" : "min",
               fmt(s.p99 ? r.pct(0.99) : r.lo()).c_str(),
               s.p99 ? "max" : "max", fmt(r.hi()).c_str(), r.samples.size(),
               r.err ? "  ERROR" : "");
    fflush(stdout);
}

bench::table section_table(const section &s)
{
    bench::table t;
    if (s.p99)
        t.add({"implementation", "median " + s.unit, "p99 " + s.unit,
               "max " + s.unit, "median / libcancel's"});
    else
        t.add({"implementation", "median " + s.unit,
               "min - max " + s.unit, "libcancel / this"});
    double l = s.rows[0].med();
    for (const auto &r : s.rows) {
        std::string rel = s.higher_better ? bench::fmt_ratio(l, r.med())
                                          : bench::fmt_ratio(r.med(), l);
        std::string name = r.who + (r.err ? " (ERROR)" : "");
        if (s.p99)
            t.add({name, fmt(r.med()), fmt(r.pct(0.99)), fmt(r.hi()), rel});
        else
            t.add({name, fmt(r.med()), fmt(r.lo()) + " - " + fmt(r.hi()),
                   rel});
    }
    return t;
}

/* ---- waiting (issue #3) ------------------------------------------------- */

long futex_op(std::atomic<int> *w, int op, int val)
{
    return syscall(SYS_futex, (int *)w, op, val, nullptr, nullptr, 0);
}

/* A persistent waiter thread: for each round the main thread hands it
 * block(), waits until it is about to call it, lets it fall asleep, then
 * takes t0 and wakes it (wake()); the waiter takes t1 when block() returns.
 * A fresh thread per round would cost a thread creation per round, which
 * dominates the run time on a loaded machine. */
struct waiter {
    std::atomic<int> state{0}; /* 0 idle, 1 go, 2 blocking, 3 done, 4 quit */
    std::function<bool()> block;
    std::atomic<int64_t> t1{0};
    bool ok = true;
    std::thread th;

    waiter()
    {
        th = std::thread([this] {
            for (;;) {
                int st;
                while ((st = state.load(std::memory_order_acquire)) != 1 && st != 4)
                    sched_yield();
                if (st == 4)
                    return;
                state.store(2, std::memory_order_release);
                ok = block();
                t1.store(wall_ns(), std::memory_order_relaxed);
                state.store(3, std::memory_order_release);
            }
        });
    }
    ~waiter()
    {
        state.store(4, std::memory_order_release);
        th.join();
    }

    /* One round: t1 - t0 in us, or -1 if the waiter failed. */
    double round(std::function<bool()> b, const std::function<void()> &wake)
    {
        block = std::move(b);
        state.store(1, std::memory_order_release);
        while (state.load(std::memory_order_acquire) != 2)
            bench::cpu_relax();
        usleep(200); /* past every spin phase: it sleeps in the kernel */
        int64_t t0 = wall_ns();
        wake();
        while (state.load(std::memory_order_acquire) != 3)
            sched_yield();
        state.store(0, std::memory_order_relaxed);
        return ok ? (double)(t1.load(std::memory_order_relaxed) - t0) / 1e3
                  : -1;
    }
};

void fig_wait()
{
    const int rounds = 2000 / (int)g_div;
    section s;
    s.title = "Waiting: cancel -> wake latency of a blocked thread";
    s.unit = "us";
    s.p99 = true;
    s.rows.resize(4);
    s.rows[0].who = "libcancel cancel_wait(token, infinite)";
    s.rows[1].who = "raw futex wait / wake";
    s.rows[2].who = "eventfd + poll";
    s.rows[3].who = "condition_variable_any + stop_token";
    int efd = eventfd(0, EFD_CLOEXEC);
    waiter wt;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 4; k++) {
            int which = (k + r) % 4;
            double us = -1;
            if (which == 0) {
                cancel_source *src = cancel_source_new();
                cancel_token t = cancel_source_token(src);
                us = wt.round([&] { return cancel_wait(t, -1) == -ECANCELED; },
                              [&] { cancel_source_cancel(src); });
                cancel_source_free(src);
            } else if (which == 1) {
                std::atomic<int> w{0};
                us = wt.round(
                    [&] {
                        while (w.load(std::memory_order_acquire) == 0)
                            futex_op(&w, FUTEX_WAIT_PRIVATE, 0);
                        return true;
                    },
                    [&] {
                        w.store(1, std::memory_order_release);
                        futex_op(&w, FUTEX_WAKE_PRIVATE, 1);
                    });
            } else if (which == 2) {
                us = wt.round(
                    [&] {
                        struct pollfd p = {efd, POLLIN, 0};
                        while (poll(&p, 1, -1) != 1)
                            ;
                        uint64_t v;
                        return read(efd, &v, sizeof v) == (ssize_t)sizeof v;
                    },
                    [&] {
                        uint64_t one = 1;
                        if (write(efd, &one, sizeof one) != sizeof one)
                            perror("eventfd write");
                    });
            } else {
                std::stop_source ss;
                std::mutex m;
                std::condition_variable_any cv;
                us = wt.round(
                    [&] {
                        std::unique_lock<std::mutex> lk(m);
                        return !cv.wait(lk, ss.get_token(), [] { return false; });
                    },
                    [&] { ss.request_stop(); });
            }
            if (us < 0)
                s.rows[which].err = true;
            else
                s.rows[which].samples.push_back(us);
        }
    }
    close(efd);
    char b[512];
    snprintf(b, sizeof b,
             "%d rounds per implementation, interleaved; one waiter "
             "thread (kept across rounds); the waker sleeps 200 us before the "
             "wake, so the waiter is asleep in the kernel; t0 (CLOCK_MONOTONIC) just before the cancel / "
             "wake, t1 when the waiter's call returns; nothing pinned.",
             rounds);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med(), f = s.rows[1].med();
    snprintf(b, sizeof b, "%s us, %.2fx futex (%s us)", fmt(l).c_str(), l / f,
             fmt(f).c_str());
    add_verdict("wake latency, median", b, "<= 1.2x raw futex", l <= 1.2 * f,
                s.rows[0].err);
    g_secs.push_back(s);
}

/* ---- I/O (issue #4) ----------------------------------------------------- */

constexpr size_t kChunk = 64 * 1024;

/* Pushes `total` bytes through a fresh pipe in 64 KiB writes while the
 * calling thread reads them with rd(fd, buf); returns GiB/s (-1: error). */
double pipe_run(size_t total,
                const std::function<ssize_t(int, char *)> &rd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    std::thread w([&] {
        std::vector<char> buf(kChunk, 'x');
        size_t sent = 0;
        while (sent < total) {
            ssize_t n = write(p[1], buf.data(), std::min(kChunk, total - sent));
            if (n <= 0)
                break;
            sent += (size_t)n;
        }
        close(p[1]);
    });
    static char buf[kChunk];
    size_t got = 0;
    int64_t t0 = wall_ns();
    for (;;) {
        ssize_t n = rd(p[0], buf);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    int64_t t1 = wall_ns();
    w.join();
    close(p[0]);
    keep(buf[0]);
    if (got != total)
        return -1;
    return (double)total / (1024.0 * 1024 * 1024) / ((double)(t1 - t0) / 1e9);
}

void fig_io()
{
    const size_t total = (size_t)256 * 1024 * 1024 / (size_t)g_div;
    section s;
    s.title = "I/O: reading a pipe in 64 KiB reads";
    s.unit = "GiB/s";
    s.higher_better = true;
    s.rows.resize(2);
    s.rows[0].who = "libcancel cancel_read (live token, infinite)";
    s.rows[1].who = "poll + read";
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    auto lib = [&](int fd, char *b) {
        return cancel_read(fd, b, kChunk, t, -1);
    };
    auto plain = [](int fd, char *b) -> ssize_t {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, -1) < 0)
            return -1;
        return read(fd, b, kChunk);
    };
    pipe_run(total / 8, lib); /* warm-up */
    pipe_run(total / 8, plain);
    for (int r = 0; r < g_reps; r++)
        for (int k = 0; k < 2; k++) {
            int which = (k + r) % 2;
            double v = which == 0 ? pipe_run(total, lib) : pipe_run(total, plain);
            if (v < 0)
                s.rows[which].err = true;
            else
                s.rows[which].samples.push_back(v);
        }
    cancel_source_free(src);
    char b[512];
    snprintf(b, sizeof b,
             "%zu MiB per run through a fresh pipe (default capacity, 64 KiB) "
             "from a writer thread doing 64 KiB write(2)s; the reader uses a "
             "live (never canceled) token; wall time of the reader, %d runs.",
             total >> 20, g_reps);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med(), p = s.rows[1].med();
    snprintf(b, sizeof b, "%s GiB/s, %.2fx poll+read (%s GiB/s)",
             fmt(l).c_str(), l / p, fmt(p).c_str());
    add_verdict("pipe read throughput", b, ">= 0.9x poll+read", l >= 0.9 * p,
                s.rows[0].err);
    g_secs.push_back(s);
}

/* ---- tasks (issue #5) --------------------------------------------------- */

int empty_task(void *, cancel_token)
{
    return 0;
}

/* Tasks per second in batches: submit `batch`, wait for all, release all;
 * `nb` times (1: all of them in flight at once).  The pool is the
 * caller's, kept across runs. */
double lib_batches(cancel_pool *pool, long batch, long nb, bool *err)
{
    std::vector<cancel_task *> v((size_t)batch);
    int64_t t0 = wall_ns();
    for (long b = 0; b < nb; b++) {
        for (long i = 0; i < batch; i++) {
            v[(size_t)i] =
                cancel_task_run(pool, empty_task, nullptr, CANCEL_NONE, 0);
            if (!v[(size_t)i]) {
                *err = true;
                for (long j = 0; j < i; j++)
                    cancel_task_release(v[(size_t)j]);
                return -1;
            }
        }
        if (cancel_task_wait_all(v.data(), v.size(), CANCEL_NONE, -1) != 0)
            *err = true;
        for (auto *t : v)
            cancel_task_release(t);
    }
    int64_t t1 = wall_ns();
    return (double)(batch * nb) / ((double)(t1 - t0) / 1e9);
}

std::atomic<long> g_done{0};

void glib_item(gpointer, gpointer)
{
    g_done.fetch_add(1, std::memory_order_relaxed);
}

double glib_tasks(long n, bool *err)
{
    g_done = 0;
    int64_t t0 = wall_ns();
    GThreadPool *pool = g_thread_pool_new(glib_item, nullptr, 2, FALSE, nullptr);
    for (long i = 0; i < n; i++)
        g_thread_pool_push(pool, GINT_TO_POINTER(1), nullptr);
    g_thread_pool_free(pool, FALSE, TRUE); /* waits for every item */
    int64_t t1 = wall_ns();
    if (g_done.load() != n)
        *err = true;
    return (double)n / ((double)(t1 - t0) / 1e9);
}

void *thread_body(void *)
{
    return nullptr;
}

double pthread_tasks(long n, bool *err)
{
    int64_t t0 = wall_ns();
    for (long i = 0; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, nullptr, thread_body, nullptr) != 0) {
            *err = true;
            return -1;
        }
        pthread_join(th, nullptr);
    }
    int64_t t1 = wall_ns();
    return (double)n / ((double)(t1 - t0) / 1e9);
}

void fig_tasks()
{
    const long n = 1000000 / g_div, nth = 10000 / g_div;
    section s;
    s.title = "Tasks: submit + run + wait of empty tasks, 2 worker threads";
    s.unit = "tasks/s";
    s.higher_better = true;
    s.rows.resize(3);
    s.rows[0].who = "libcancel cancel_task_run + wait_all + release";
    s.rows[1].who = "GLib GThreadPool (push + free(wait))";
    s.rows[2].who = "pthread_create + pthread_join per task";
    cancel_pool *pool = cancel_pool_new(2);
    bool err[3] = {false, false, false};
    lib_batches(pool, n / 10, 1, &err[0]); /* warm-up */
    glib_tasks(n / 10, &err[1]);
    for (int r = 0; r < g_reps; r++)
        for (int k = 0; k < 3; k++) {
            int which = (k + r) % 3;
            double v = which == 0   ? lib_batches(pool, n, 1, &err[0])
                       : which == 1 ? glib_tasks(n, &err[1])
                                    : pthread_tasks(nth, &err[2]);
            if (v > 0)
                s.rows[which].samples.push_back(v);
        }
    for (int k = 0; k < 3; k++)
        s.rows[k].err = err[k];
    cancel_pool_free(pool);
    char b[512];
    snprintf(b, sizeof b,
             "%ld tasks per run for libcancel (a 2-thread cancel_pool, token "
             "CANCEL_NONE) and GThreadPool (2 threads, non-exclusive; "
             "g_thread_pool_free(pool, FALSE, TRUE) waits for every item), "
             "%ld threads created and joined one by one; from the first "
             "submit to the last release / free; wall time, %d runs.",
             n, nth, g_reps);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med(), gl = s.rows[1].med();
    snprintf(b, sizeof b, "%.2f M/s", l / 1e6);
    add_verdict("task throughput", b, ">= 2 M/s", l >= 2e6, s.rows[0].err);
    snprintf(b, sizeof b, "%.2fx GThreadPool (%.2f M/s)", l / gl, gl / 1e6);
    add_verdict("task throughput vs GThreadPool, 1M in flight", b, ">= 3x",
                l >= 3 * gl, s.rows[0].err);
    g_secs.push_back(s);
}

/* GThreadPool has no per-item handle: a batch is done when a counter
 * reaches its end, and the item that gets it there signals the waiter. */
struct glib_batch {
    GMutex mu;
    GCond cv;
    std::atomic<long> done{0};
    long target = 0;
};

void glib_batch_item(gpointer, gpointer user)
{
    auto *gb = static_cast<glib_batch *>(user);
    if (gb->done.fetch_add(1, std::memory_order_acq_rel) + 1 == gb->target) {
        g_mutex_lock(&gb->mu);
        g_cond_signal(&gb->cv);
        g_mutex_unlock(&gb->mu);
    }
}

double glib_batches(long batch, long nb, bool *err)
{
    glib_batch gb;
    g_mutex_init(&gb.mu);
    g_cond_init(&gb.cv);
    GThreadPool *pool =
        g_thread_pool_new(glib_batch_item, &gb, 2, FALSE, nullptr);
    int64_t t0 = wall_ns();
    for (long b = 0; b < nb; b++) {
        g_mutex_lock(&gb.mu);
        gb.target = (b + 1) * batch; /* before any item of the batch runs */
        g_mutex_unlock(&gb.mu);
        for (long i = 0; i < batch; i++)
            g_thread_pool_push(pool, GINT_TO_POINTER(1), nullptr);
        g_mutex_lock(&gb.mu);
        while (gb.done.load(std::memory_order_acquire) < gb.target)
            g_cond_wait(&gb.cv, &gb.mu);
        g_mutex_unlock(&gb.mu);
    }
    int64_t t1 = wall_ns();
    g_thread_pool_free(pool, FALSE, TRUE);
    if (gb.done.load() != batch * nb)
        *err = true;
    g_cond_clear(&gb.cv);
    g_mutex_clear(&gb.mu);
    return (double)(batch * nb) / ((double)(t1 - t0) / 1e9);
}

void fig_task_batches()
{
    const long batch = 10000, nb = 100 / g_div;
    section s;
    s.title = "Tasks: submit + run + wait of empty tasks in batches of 10,000, "
              "2 worker threads";
    s.unit = "tasks/s";
    s.higher_better = true;
    s.rows.resize(2);
    s.rows[0].who = "libcancel cancel_task_run + wait_all + release";
    s.rows[1].who = "GLib GThreadPool (push + counter/GCond wait)";
    cancel_pool *pool = cancel_pool_new(2);
    bool err[2] = {false, false};
    lib_batches(pool, batch, nb / 10 + 1, &err[0]); /* warm-up */
    glib_batches(batch, nb / 10 + 1, &err[1]);
    for (int r = 0; r < g_reps; r++)
        for (int k = 0; k < 2; k++) {
            int which = (k + r) % 2;
            double v = which == 0 ? lib_batches(pool, batch, nb, &err[0])
                                  : glib_batches(batch, nb, &err[1]);
            if (v > 0)
                s.rows[which].samples.push_back(v);
        }
    for (int k = 0; k < 2; k++)
        s.rows[k].err = err[k];
    cancel_pool_free(pool);
    char b[512];
    snprintf(b, sizeof b,
             "%ld batches of %ld tasks per run: submit the batch, wait for "
             "all of it (libcancel: cancel_task_wait_all, then release every "
             "handle; GThreadPool: a counter the last item signals with a "
             "GCond), next batch; both pools have 2 threads and are made "
             "before the clock starts; wall time, %d runs.",
             nb, batch, g_reps);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med(), gl = s.rows[1].med();
    snprintf(b, sizeof b, "%.2fx GThreadPool (%.2f M/s)", l / gl, gl / 1e6);
    add_verdict("task throughput vs GThreadPool, batches of 10,000", b,
                ">= 3x", l >= 3 * gl, s.rows[0].err);
    g_secs.push_back(s);
}

int gate_task(void *arg, cancel_token)
{
    return cancel_event_wait((cancel_event *)arg, CANCEL_NONE, -1);
}

void fig_qcancel()
{
    const long n = 100000 / g_div;
    section s;
    s.title = "Tasks: canceling queued tasks (one token), cancel -> wait_all returns";
    s.unit = "ms";
    s.rows.resize(1);
    s.rows[0].who = "libcancel";
    cancel_pool *pool = cancel_pool_new(1);
    std::vector<cancel_task *> v((size_t)n);
    for (int r = 0; r < g_reps; r++) {
        cancel_event gate;
        cancel_event_init(&gate, false);
        cancel_task *g = cancel_task_run(pool, gate_task, &gate, CANCEL_NONE, 0);
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        bool bad = !g;
        for (long i = 0; i < n; i++) {
            v[(size_t)i] = cancel_task_run(pool, empty_task, nullptr, t, 0);
            bad |= !v[(size_t)i];
        }
        if (bad) {
            s.rows[0].err = true;
            break;
        }
        int64_t t0 = wall_ns();
        cancel_source_cancel(src);
        int rc = cancel_task_wait_all(v.data(), v.size(), CANCEL_NONE, -1);
        int64_t t1 = wall_ns();
        long canceled = 0;
        for (auto *task : v)
            canceled += cancel_task_status_of(task) == CANCEL_TASK_CANCELED;
        if (rc != -ECANCELED || canceled != n) {
            fprintf(stderr, "qcancel: wait_all %d, %ld of %ld canceled\n", rc,
                    canceled, n);
            s.rows[0].err = true;
        }
        s.rows[0].samples.push_back((double)(t1 - t0) / 1e6);
        cancel_event_set(&gate);
        cancel_task_wait(g, CANCEL_NONE, -1);
        cancel_task_release(g);
        for (auto *task : v)
            cancel_task_release(task);
        cancel_source_free(src);
        cancel_event_destroy(&gate);
    }
    cancel_pool_free(pool);
    char b[512];
    snprintf(b, sizeof b,
             "%ld tasks sharing one token queued on a 1-thread pool whose "
             "worker is held by a gated task; from just before "
             "cancel_source_cancel to the return of cancel_task_wait_all over "
             "all of them, every one checked CANCELED; wall time, %d runs.",
             n, g_reps);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med();
    snprintf(b, sizeof b, "%s ms for %ld tasks", fmt(l).c_str(), n);
    add_verdict("cancel queued tasks", b, "<= 50 ms", l <= 50, s.rows[0].err);
    g_secs.push_back(s);
}

/* ---- parallel loops (issue #6) ------------------------------------------ */

thread_local int64_t t_sink[64];

int sum_body(int64_t i, void *, cancel_token)
{
    t_sink[i & 63] += i;
    return 0;
}

/* Read through a volatile pointer: the hand split cannot inline the body. */
cancel_for_fn *volatile g_body = sum_body;

struct split_arg {
    int64_t from, to;
    cancel_token t;
};

void *split_run(void *p)
{
    auto *a = (split_arg *)p;
    cancel_for_fn *fn = g_body;
    for (int64_t i = a->from; i < a->to; i++)
        fn(i, nullptr, a->t);
    keep(t_sink);
    return nullptr;
}

double hand_split(int64_t n, cancel_token t)
{
    split_arg a[2] = {{0, n / 2, t}, {n / 2, n, t}};
    pthread_t th[2];
    int64_t t0 = wall_ns();
    for (int k = 0; k < 2; k++)
        pthread_create(&th[k], nullptr, split_run, &a[k]);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], nullptr);
    return (double)(wall_ns() - t0) / 1e6;
}

double lib_for(cancel_pool *pool, int64_t n, cancel_token t, bool *err)
{
    cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
    o.max_degree = 2;
    int64_t t0 = wall_ns();
    int rc = cancel_parallel_for(pool, 0, n, g_body, nullptr, t, &o);
    double ms = (double)(wall_ns() - t0) / 1e6;
    keep(t_sink);
    if (rc != 0)
        *err = true;
    return ms;
}

void fig_par()
{
    const int64_t n = 100000000 / g_div;
    section s;
    s.title = "Parallel: 100M trivial iterations on 2 threads";
    if (g_div != 1)
        s.title = "Parallel: 10M trivial iterations on 2 threads";
    s.unit = "ms";
    s.rows.resize(2);
    s.rows[0].who = "libcancel cancel_parallel_for (max_degree 2)";
    s.rows[1].who = "hand split: 2 pthreads, half the range each";
    cancel_pool *pool = cancel_pool_new(2);
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    bool err = false;
    lib_for(pool, n / 10, t, &err); /* warm-up */
    hand_split(n / 10, t);
    for (int r = 0; r < g_reps; r++)
        for (int k = 0; k < 2; k++) {
            int which = (k + r) % 2;
            double v = which == 0 ? lib_for(pool, n, t, &err) : hand_split(n, t);
            s.rows[which].samples.push_back(v);
        }
    s.rows[0].err = err;
    cancel_source_free(src);
    cancel_pool_free(pool);
    char b[512];
    snprintf(b, sizeof b,
             "%lld iterations; the body (`sink[i & 63] += i` on a thread-local "
             "array) is called through a function pointer by both; libcancel "
             "uses a 2-thread pool with max_degree 2 (the caller and one "
             "helper) and a live token; the hand split starts and joins its 2 "
             "threads inside the timed region; wall time, %d runs.",
             (long long)n, g_reps);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med(), h = s.rows[1].med();
    snprintf(b, sizeof b, "%s ms, %.2fx hand split (%s ms)", fmt(l).c_str(),
             l / h, fmt(h).c_str());
    add_verdict("parallel_for vs hand split", b, "<= 1.3x", l <= 1.3 * h, err);
    g_secs.push_back(s);
}

int spin_body(int64_t, void *, cancel_token)
{
    int64_t end = wall_ns() + 1000;
    while (wall_ns() < end)
        ;
    return 0;
}

void fig_stop()
{
    const int runs = g_quick ? 3 : 11;
    section s;
    s.title = "Parallel: stop latency of a running loop (1 us elements)";
    s.unit = "ms";
    s.rows.resize(1);
    s.rows[0].who = "libcancel cancel_parallel_for, 2 threads";
    cancel_pool *pool = cancel_pool_new(2);
    for (int r = 0; r < runs; r++) {
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        std::atomic<int64_t> t0{0};
        std::thread c([&] {
            usleep(20000);
            t0.store(wall_ns());
            cancel_source_cancel(src);
        });
        cancel_parallel_options o = CANCEL_PARALLEL_OPTIONS_INIT;
        o.max_degree = 2;
        int rc = cancel_parallel_for(pool, 0, (int64_t)1 << 40, spin_body,
                                     nullptr, t, &o);
        int64_t t1 = wall_ns();
        c.join();
        if (rc != -ECANCELED)
            s.rows[0].err = true;
        s.rows[0].samples.push_back((double)(t1 - t0.load()) / 1e6);
        cancel_source_free(src);
    }
    cancel_pool_free(pool);
    char b[512];
    snprintf(b, sizeof b,
             "a loop over 2^40 elements, each spinning 1 us on "
             "CLOCK_MONOTONIC, canceled by another thread after 20 ms; from "
             "just before cancel_source_cancel to the return of "
             "cancel_parallel_for (-ECANCELED); wall time, %d runs.",
             runs);
    s.note = b;
    print_section(s);
    double l = s.rows[0].med();
    snprintf(b, sizeof b, "%s ms", fmt(l).c_str());
    add_verdict("parallel_for stop latency", b, "<= 1 ms", l <= 1,
                s.rows[0].err);
    g_secs.push_back(s);
}

/* ---- output ------------------------------------------------------------- */

bench::table verdict_table()
{
    bench::table t;
    t.add({"figure", "libcancel", "target", "verdict"});
    for (const auto &v : g_verdicts)
        t.add({v.figure, v.value, v.target, v.result});
    return t;
}

bool write_md(const char *path, double took)
{
    FILE *o = fopen(path, "w");
    if (!o) {
        fprintf(stderr, "bench_layers: %s: %s\n", path, strerror(errno));
        return false;
    }
    int ok = 0;
    for (const auto &v : g_verdicts)
        ok += v.result == "PASS";
    fprintf(o,
            "Measured by `bench/bench_layers.cc` in %.1f s: every figure here "
            "spans threads, so all times are wall time (CLOCK_MONOTONIC); "
            "medians of %d runs unless said otherwise. %d of %zu targets "
            "met.\n\n",
            took, g_reps, ok, g_verdicts.size());
    verdict_table().print(o);
    for (const auto &s : g_secs) {
        fprintf(o, "\n### %s\n\n", s.title.c_str());
        section_table(s).print(o);
        if (!s.note.empty())
            fprintf(o, "\n%s\n", s.note.c_str());
    }
    return fclose(o) == 0;
}

} // namespace

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--md") && i + 1 < argc) {
            g_md_path = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            g_quick = true;
            g_reps = 3;
            g_div = 10;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            std::string s = argv[++i];
            size_t a = 0;
            while (a <= s.size()) {
                size_t b = s.find(',', a);
                if (b == std::string::npos)
                    b = s.size();
                g_only.push_back(s.substr(a, b - a));
                a = b + 1;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--reps N] [--quick] [--only "
                    "wait,io,tasks,qcancel,par,stop] [--md FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (g_reps < 1)
        g_reps = 1;
    setvbuf(stdout, nullptr, _IOLBF, 0);
    printf("\nlibcancel layers (waiting, I/O, tasks, parallel loops); wall "
           "time, medians of %d runs\n\n",
           g_reps);
    int64_t t0 = wall_ns();
    if (wanted("wait"))
        fig_wait();
    if (wanted("io"))
        fig_io();
    if (wanted("tasks")) {
        fig_tasks();
        fig_task_batches();
    }
    if (wanted("qcancel"))
        fig_qcancel();
    if (wanted("par"))
        fig_par();
    if (wanted("stop"))
        fig_stop();
    double took = (double)(wall_ns() - t0) / 1e9;
    printf("\n");
    for (const auto &s : g_secs) {
        printf("%s\n\n", s.title.c_str());
        section_table(s).print(stdout);
        printf("\n");
    }
    verdict_table().print(stdout);
    printf("\nbench_layers took %.1f s\n", took);
    if (g_md_path && !write_md(g_md_path, took))
        return 1;
    return 0;
}
