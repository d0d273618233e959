/* libcancel beside C++20 std::stop_token and GLib's GCancellable.
 *
 * Every figure of SPEC section 6 / issue #2 point 5 is measured for the three
 * implementations in the same process and the same run: each repetition
 * measures libcancel, std::stop_token and GCancellable in turn (rotating who
 * goes first), and the table prints the median of the repetitions, the
 * ratios of the medians and the target.  A missed target is reported, never
 * fatal: timing assertions do not belong in tests.
 *
 *   bench_core [--reps N] [--quick] [--only a,b,...] [--single-thread]
 *              [--wall] [--tsv FILE] [--md FILE]   the benchmark table
 *                 (--tsv: the figures, tab-separated, for the chart;
 *                  --md: the tables in markdown, for report.md)
 *   bench_core --probe | --probe-std | --probe-none   work for `strace -c`
 *
 * Figures (names for --only): check reg1 reg2 cancel create linked children
 * timer.  A sample of a fast operation is a loop calibrated to last about
 * 20 ms; the results of every loop feed an asm barrier so that the compiler
 * cannot drop the work.  One-thread figures are timed in thread CPU time
 * (time preempted by other work on a shared machine does not count; --wall
 * uses CLOCK_MONOTONIC), the two-thread figure in wall time.  The process
 * starts a thread before measuring (libstdc++ changes behaviour after the
 * first one); --single-thread never does, for the figures that allow it. */
#include <cancel/cancel.h>

#include <gio/gio.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

using bench::fmt;
using bench::fmt_ratio;
using bench::keep;
using bench::median;
using bench::now_ns;

namespace
{

int g_reps = 11;
bool g_single_thread = false; /* --single-thread: never start a thread */
double g_sample_ns = 20e6;    /* target length of one calibrated sample */
bool g_quick = false;
std::vector<std::string> g_only;
const char *g_tsv_path = nullptr; /* --tsv FILE: the figures, tab-separated */
const char *g_md_path = nullptr;  /* --md FILE: the tables in markdown */
/* What --tsv reports about the run besides the figures (key, value). */
std::vector<std::pair<std::string, std::string>> g_meta;

/* ---- results ---------------------------------------------------------- */

struct cell {
    std::vector<double> samples;
    bool err = false; /* the implementation misbehaved: figure not valid */
    bool na = false;  /* no equivalent */
    double med() const
    {
        return na || samples.empty() ? -1 : median(samples);
    }
    std::string show() const
    {
        if (na)
            return "n/a";
        if (err)
            return "ERR";
        return fmt(med());
    }
};

struct figure {
    std::string key;   /* machine-readable id (--tsv) */
    std::string label; /* short name, for the chart */
    std::string unit;
    std::string name;
    std::string target;
    cell lib, std_, glib;
    std::string note;    /* printed under the table */
    std::string verdict; /* PASS/MISS text, filled by the figure */
};

std::vector<figure> g_figs;

void print_spread(const char *who, const cell &c)
{
    if (c.na || c.samples.empty())
        return;
    auto s = c.samples;
    std::sort(s.begin(), s.end());
    printf("    %-16s median %-8s min %-8s max %-8s (%zu runs)%s\n", who,
           fmt(median(s)).c_str(), fmt(s.front()).c_str(),
           fmt(s.back()).c_str(), s.size(), c.err ? "  ERROR" : "");
}

void report_progress(const figure &f)
{
    printf("%s\n", f.name.c_str());
    print_spread("libcancel", f.lib);
    print_spread("std::stop_token", f.std_);
    print_spread("GCancellable", f.glib);
    if (!f.verdict.empty())
        printf("    -> %s (target %s)\n", f.verdict.c_str(), f.target.c_str());
    fflush(stdout);
}

/* ---- runners ------------------------------------------------------------ */

/* fn(n) runs n operations and returns the elapsed ns. */
using loop_fn = std::function<double(long)>;

struct contender {
    cell *out;
    loop_fn fn;
    long n = 0;
};

/* The n that makes one sample last about g_sample_ns; the calls warm up
 * caches, branch predictors and the allocator on the way. */
long calibrate(const loop_fn &fn)
{
    long n = 16;
    for (;;) {
        double t = fn(n);
        if (t >= g_sample_ns / 16 || n >= (1L << 36)) {
            double per = t / (double)n;
            long m = (long)(g_sample_ns / (per > 0 ? per : 1e-3));
            return m < 1 ? 1 : m;
        }
        n *= 4;
    }
}

void run_loops(std::vector<contender> cs)
{
    for (auto &c : cs) {
        c.n = calibrate(c.fn);
        c.fn(c.n); /* one full-length warm-up */
    }
    for (int r = 0; r < g_reps; r++)
        for (size_t k = 0; k < cs.size(); k++) {
            contender &c = cs[(k + (size_t)r) % cs.size()];
            c.out->samples.push_back(c.fn(c.n) / (double)c.n);
        }
}

/* fn() takes one whole sample and returns the figure itself (setup and
 * teardown inside fn are not timed). */
using sample_fn = std::function<double()>;

void run_samples(std::vector<std::pair<cell *, sample_fn>> cs, int warmup)
{
    for (int w = 0; w < warmup; w++)
        for (auto &c : cs)
            c.second();
    for (int r = 0; r < g_reps; r++)
        for (size_t k = 0; k < cs.size(); k++) {
            auto &c = cs[(k + (size_t)r) % cs.size()];
            c.first->samples.push_back(c.second());
        }
}

/* Wall time of two threads that each run body(n) from a common start. */
double run_two_threads(long n, const std::function<double(long)> &body)
{
    std::atomic<int> ready{0};
    std::atomic<bool> failed{false};
    std::atomic<bool> go{false};
    std::thread th[2];
    for (auto &t : th)
        t = std::thread([&] {
            ready.fetch_add(1);
            while (!go.load(std::memory_order_acquire))
                bench::cpu_relax();
            if (body(n) < 0)
                failed.store(true);
        });
    while (ready.load() < 2)
        bench::cpu_relax();
    int64_t t0 = bench::wall_ns();
    go.store(true, std::memory_order_release);
    for (auto &t : th)
        t.join();
    double dt = (double)(bench::wall_ns() - t0);
    return failed.load() ? -1e30 : dt;
}

bool wanted(const char *name)
{
    if (g_only.empty())
        return true;
    for (auto &o : g_only)
        if (o == name)
            return true;
    return false;
}

/* ---- callbacks of the three libraries ------------------------------------ */

void lib_nop(void *)
{
}
void lib_count(void *arg)
{
    ++*(long *)arg;
}

struct std_nop {
    void operator()() const noexcept
    {
    }
};
struct std_count {
    long *c;
    void operator()() const noexcept
    {
        ++*c;
    }
};

void glib_nop(GCancellable *, gpointer)
{
}
void glib_count(GCancellable *, gpointer arg)
{
    ++*(long *)arg;
}
void glib_cancel_child(GCancellable *, gpointer child)
{
    g_cancellable_cancel((GCancellable *)child);
}

/* A linked source the std way: a stop_source and a stop_callback on the
 * parent that requests stop on it. */
struct std_child {
    struct forward {
        std::stop_source *s;
        void operator()() const noexcept
        {
            s->request_stop();
        }
    };
    std::stop_source ss;
    std::stop_callback<forward> cb;
    explicit std_child(const std::stop_token &parent)
        : ss(), cb(parent, forward{&ss})
    {
    }
};

/* ---- 1. cancel_requested in a loop --------------------------------------- */

/* Each loop polls until the token reads canceled, as real code does.  The
 * loads are acquire atomic loads (or library calls), which the compiler may
 * neither hoist out of the loop nor merge. */
__attribute__((noinline)) long poll_raw(const int *flag, long n)
{
    for (long i = 0; i < n; i++)
        if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
            return i;
    return n;
}

__attribute__((noinline)) long poll_lib(cancel_token t, long n)
{
    for (long i = 0; i < n; i++)
        if (cancel_requested(t))
            return i;
    return n;
}

__attribute__((noinline)) long poll_std(const std::stop_token &t, long n)
{
    for (long i = 0; i < n; i++)
        if (t.stop_requested())
            return i;
    return n;
}

__attribute__((noinline)) long poll_glib(GCancellable *c, long n)
{
    for (long i = 0; i < n; i++)
        if (g_cancellable_is_cancelled(c))
            return i;
    return n;
}

void fig_check()
{
    figure f;
    f.key = "check";
    f.label = "cancel_requested";
    f.unit = "ns/check";
    f.name = "cancel_requested in a loop (ns/check)";
    f.target = "<= 1.2x raw atomic load";
    cell raw;
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    std::stop_source ss;
    std::stop_token st = ss.get_token();
    GCancellable *gc = g_cancellable_new();
    /* The raw flag: the compiler must not know that nobody writes it (clang
     * drops the loads of a static int that is never written). */
    std::unique_ptr<int> flag(new int(0));
    const int *raw_flag = flag.get();
    keep(raw_flag);
    auto timed = [](auto &&body) {
        return [body](long n) {
            int64_t t0 = now_ns();
            long r = body(n);
            double dt = (double)(now_ns() - t0);
            keep(r);
            return dt;
        };
    };
    run_loops({
        {&raw, timed([raw_flag](long n) { return poll_raw(raw_flag, n); })},
        {&f.lib, timed([t](long n) { return poll_lib(t, n); })},
        {&f.std_, timed([&st](long n) { return poll_std(st, n); })},
        {&f.glib, timed([gc](long n) { return poll_glib(gc, n); })},
    });
    double r = f.lib.med() / raw.med();
    char b[128];
    snprintf(b, sizeof b, "%s (%.2fx raw)", r <= 1.2 ? "PASS" : "MISS", r);
    f.verdict = b;
    f.note = "raw loop of acquire atomic loads of an int: " + fmt(raw.med()) +
             " ns/check; every loop polls until it reads canceled.";
    print_spread("raw atomic load", raw);
    g_object_unref(gc);
    cancel_source_free(src);
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 2. register + unregister, one thread -------------------------------- */

cancel_token g_lib_tok;
std::stop_token g_std_tok;
GCancellable *g_glib_c;

double lib_regpair(long n)
{
    cancel_registration reg = CANCEL_REGISTRATION_INIT;
    cancel_token t = g_lib_tok;
    int bad = 0;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        bad |= cancel_register(t, &reg, lib_nop, nullptr);
        bad |= !cancel_unregister(&reg);
    }
    double dt = (double)(now_ns() - t0);
    if (bad) {
        fprintf(stderr, "libcancel: register/unregister failed\n");
        return -1e30;
    }
    return dt;
}

double std_regpair(long n)
{
    const std::stop_token &t = g_std_tok;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        std::stop_callback<std_nop> cb(t, std_nop{});
        keep(cb);
    }
    return (double)(now_ns() - t0);
}

double glib_regpair(long n)
{
    GCancellable *c = g_glib_c;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        gulong id =
            g_cancellable_connect(c, G_CALLBACK(glib_nop), nullptr, nullptr);
        g_cancellable_disconnect(c, id);
    }
    return (double)(now_ns() - t0);
}

/* What two threads pay on this machine for sharing one token, whatever the
 * library: (a) a fetch_add on one shared cache line; (b) the least a
 * lock-based register+unregister can do: a test-and-set spinlock around a
 * push and an unlink on a shared list head (lock and head on separate
 * lines, as libcancel's stripe lock and source are). */
struct alignas(64) floor_line {
    std::atomic<long> v{0};
};
floor_line g_floor_add, g_floor_lock;
struct floor_node {
    floor_node *next, *prev;
};
alignas(64) floor_node *g_floor_head;

double floor_fetch_add(long n)
{
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        g_floor_add.v.fetch_add(1, std::memory_order_acq_rel);
    return (double)(now_ns() - t0);
}

inline void floor_lock()
{
    while (g_floor_lock.v.exchange(1, std::memory_order_acquire))
        while (g_floor_lock.v.load(std::memory_order_relaxed))
            bench::cpu_relax();
}

inline void floor_unlock()
{
    g_floor_lock.v.store(0, std::memory_order_release);
}

double floor_pair(long n)
{
    floor_node me{};
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        floor_lock();
        me.next = g_floor_head;
        me.prev = nullptr;
        if (me.next)
            me.next->prev = &me;
        g_floor_head = &me;
        floor_unlock();
        floor_lock();
        if (me.prev)
            me.prev->next = me.next;
        else
            g_floor_head = me.next;
        if (me.next)
            me.next->prev = me.prev;
        floor_unlock();
    }
    return (double)(now_ns() - t0);
}

void mark_errors(figure &f)
{
    for (cell *c : {&f.lib, &f.std_, &f.glib})
        for (double s : c->samples)
            if (s < 0)
                c->err = true;
}

void fig_reg(bool two)
{
    figure f;
    cancel_source *src = cancel_source_new();
    std::stop_source ss;
    g_lib_tok = cancel_source_token(src);
    g_std_tok = ss.get_token();
    g_glib_c = g_cancellable_new();
    if (!two) {
        f.key = "reg1";
        f.label = "register + unregister";
        f.unit = "ns/pair";
        f.name = "register+unregister, 1 thread (ns/pair)";
        f.target = "<= 12 ns and >= 3x faster than std";
        cell fa, fp;
        run_loops({{&f.lib, lib_regpair},
                   {&f.std_, std_regpair},
                   {&f.glib, glib_regpair},
                   {&fa, floor_fetch_add},
                   {&fp, floor_pair}});
        mark_errors(f);
        f.note = "floor of this machine: one locked read-modify-write "
                 "(fetch_add) costs " +
                 fmt(fa.med()) +
                 " ns; a spinlock-protected push+unlink on a list head (two "
                 "lock/unlock pairs, the least a lock-based "
                 "register+unregister does) " +
                 fmt(fp.med()) + " ns.";
        print_spread("floor fetch_add", fa);
        print_spread("floor lock+list", fp);
        double l = f.lib.med(), s = f.std_.med();
        bool ok = !f.lib.err && l <= 12 && s / l >= 3;
        char b[128];
        snprintf(b, sizeof b, "%s (%s ns, %.1fx std)", ok ? "PASS" : "MISS",
                 fmt(l).c_str(), s / l);
        f.verdict = b;
    } else {
        f.key = "reg2";
        f.label = "register + unregister, 2 threads";
        f.unit = "ns/pair/thread";
        f.name = "register+unregister, 2 threads, 1 token (ns/pair/thread)";
        f.target = "<= 40 ns";
        auto two_of = [](double (*fn)(long)) {
            return [fn](long n) { return run_two_threads(n, fn); };
        };
        cell fa, fp;
        run_loops({{&f.lib, two_of(lib_regpair)},
                   {&f.std_, two_of(std_regpair)},
                   {&f.glib, two_of(glib_regpair)},
                   {&fa, two_of(floor_fetch_add)},
                   {&fp, two_of(floor_pair)}});
        mark_errors(f);
        double l = f.lib.med();
        f.verdict =
            (!f.lib.err && l <= 40 ? "PASS (" : "MISS (") + fmt(l) + " ns)";
        f.note = "wall time of both loops / pairs per thread.  Floor of "
                 "this machine, same method: a fetch_add on one shared line "
                 "costs " +
                 fmt(fa.med()) +
                 " ns/op per thread; a spinlock-protected push+unlink on a "
                 "shared list head (the least a lock-based "
                 "register+unregister does) " +
                 fmt(fp.med()) + " ns/pair per thread.";
        print_spread("floor fetch_add", fa);
        print_spread("floor lock+list", fp);
    }
    g_object_unref(g_glib_c);
    g_glib_c = nullptr;
    g_lib_tok = CANCEL_NONE;
    g_std_tok = std::stop_token();
    cancel_source_free(src);
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 3. cancel with 1,000,000 registered callbacks ----------------------- */

void fig_cancel()
{
    const long n_lib = g_quick ? 100000 : 1000000;
    const long n_std = n_lib;
    const long n_glib = g_quick ? 20000 : 100000;
    figure f;
    f.key = "cancel";
    f.label = "cancel, " + std::string(g_quick ? "100k" : "1M") + " callbacks";
    f.unit = "ns/callback";
    f.name =
        "cancel with " + std::to_string(n_lib) + " callbacks (ns/callback)";
    f.target = "<= 5 ns/callback";
    f.note = "GCancellable: " + std::to_string(n_glib) +
             " handlers (scaled: ns per callback); the others " +
             std::to_string(n_lib) + ".";

    std::vector<cancel_registration> regs((size_t)n_lib);
    auto lib = [&]() -> double {
        memset(regs.data(), 0, regs.size() * sizeof regs[0]);
        long count = 0;
        cancel_source *src = cancel_source_new();
        cancel_token t = cancel_source_token(src);
        for (long i = 0; i < n_lib; i++)
            cancel_register(t, &regs[(size_t)i], lib_count, &count);
        int64_t t0 = now_ns();
        cancel_source_cancel(src);
        double dt = (double)(now_ns() - t0);
        cancel_source_free(src);
        return count == n_lib ? dt / (double)n_lib : -1;
    };

    using cb_t = std::stop_callback<std_count>;
    std::unique_ptr<std::optional<cb_t>[]> cbs(
        new std::optional<cb_t>[(size_t)n_std]);
    auto stdf = [&]() -> double {
        long count = 0;
        std::stop_source ss;
        std::stop_token t = ss.get_token();
        for (long i = 0; i < n_std; i++)
            cbs[(size_t)i].emplace(t, std_count{&count});
        int64_t t0 = now_ns();
        ss.request_stop();
        double dt = (double)(now_ns() - t0);
        for (long i = 0; i < n_std; i++)
            cbs[(size_t)i].reset();
        return count == n_std ? dt / (double)n_std : -1;
    };

    auto glib = [&]() -> double {
        long count = 0;
        GCancellable *c = g_cancellable_new();
        for (long i = 0; i < n_glib; i++)
            g_cancellable_connect(c, G_CALLBACK(glib_count), &count, nullptr);
        int64_t t0 = now_ns();
        g_cancellable_cancel(c);
        double dt = (double)(now_ns() - t0);
        g_object_unref(c); /* drops every handler */
        return count == n_glib ? dt / (double)n_glib : -1;
    };

    run_samples({{&f.lib, lib}, {&f.std_, stdf}, {&f.glib, glib}}, 1);
    mark_errors(f);
    double l = f.lib.med();
    f.verdict = (!f.lib.err && l <= 5 ? "PASS (" : "MISS (") + fmt(l) + " ns)";
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 4. create + free a source ------------------------------------------- */

void fig_create()
{
    figure f;
    f.key = "create";
    f.label = "create+free a source";
    f.unit = "ns";
    f.name = "create+free a source (ns)";
    f.target = "<= 20 ns";
    auto lib = [](long n) {
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            cancel_source *s = cancel_source_new();
            keep(s);
            cancel_source_free(s);
        }
        return (double)(now_ns() - t0);
    };
    auto stdf = [](long n) {
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            std::stop_source s;
            keep(s);
        }
        return (double)(now_ns() - t0);
    };
    auto glib = [](long n) {
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            GCancellable *c = g_cancellable_new();
            keep(c);
            g_object_unref(c);
        }
        return (double)(now_ns() - t0);
    };
    run_loops({{&f.lib, lib}, {&f.std_, stdf}, {&f.glib, glib}});
    double l = f.lib.med();
    f.verdict = (l <= 20 ? "PASS (" : "MISS (") + fmt(l) + " ns)";
    f.note = "std: a stop_source (allocates its shared state); GLib: "
             "g_cancellable_new + g_object_unref.";
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 5. linked source with one parent: create + free -------------------- */

void fig_linked()
{
    figure f;
    f.key = "linked";
    f.label = "linked source create+free";
    f.unit = "ns";
    f.name = "linked source, 1 parent: create+free (ns)";
    f.target = "<= 40 ns";
    f.note = "std: stop_source + stop_callback on the parent that requests "
             "stop on it; GLib: g_cancellable_new + g_cancellable_connect on "
             "the parent, then disconnect + unref.";
    cancel_source *parent = cancel_source_new();
    cancel_token pt = cancel_source_token(parent);
    std::stop_source sparent;
    std::stop_token spt = sparent.get_token();
    GCancellable *gparent = g_cancellable_new();

    auto lib = [pt](long n) {
        int bad = 0;
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            cancel_source *c = cancel_source_new_linked(&pt, 1);
            bad |= c == nullptr;
            keep(c);
            cancel_source_free(c);
        }
        double dt = (double)(now_ns() - t0);
        return bad ? -1e30 : dt;
    };
    auto stdf = [&spt](long n) {
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            std_child c(spt);
            keep(c);
        }
        return (double)(now_ns() - t0);
    };
    auto glib = [gparent](long n) {
        int64_t t0 = now_ns();
        for (long i = 0; i < n; i++) {
            GCancellable *c = g_cancellable_new();
            gulong id = g_cancellable_connect(
                gparent, G_CALLBACK(glib_cancel_child), c, nullptr);
            g_cancellable_disconnect(gparent, id);
            g_object_unref(c);
        }
        return (double)(now_ns() - t0);
    };
    run_loops({{&f.lib, lib}, {&f.std_, stdf}, {&f.glib, glib}});
    mark_errors(f);
    double l = f.lib.med();
    f.verdict = (!f.lib.err && l <= 40 ? "PASS (" : "MISS (") + fmt(l) + " ns)";
    g_object_unref(gparent);
    cancel_source_free(parent);
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 6. cancel a parent with 100,000 linked children ----------------------
 */

void fig_children()
{
    const long n = g_quick ? 20000 : 100000;
    figure f;
    f.key = "children";
    f.label =
        "cancel " + std::string(g_quick ? "20k" : "100k") + " linked children";
    f.unit = "ms";
    f.name =
        "cancel a parent with " + std::to_string(n) + " linked children (ms)";
    f.target = "<= 10 ms";
    f.note = "children emulated as in the row above; the time is the "
             "parent's cancel call, which cancels every child.";

    std::vector<cancel_source *> kids((size_t)n);
    auto lib = [&]() -> double {
        cancel_source *p = cancel_source_new();
        cancel_token pt = cancel_source_token(p);
        for (long i = 0; i < n; i++)
            kids[(size_t)i] = cancel_source_new_linked(&pt, 1);
        int64_t t0 = now_ns();
        cancel_source_cancel(p);
        double dt = (double)(now_ns() - t0);
        long ok = 0;
        for (long i = 0; i < n; i++) {
            ok += cancel_requested(cancel_source_token(kids[(size_t)i]));
            cancel_source_free(kids[(size_t)i]);
        }
        cancel_source_free(p);
        return ok == n ? dt / 1e6 : -1;
    };

    std::unique_ptr<std::optional<std_child>[]> skids(
        new std::optional<std_child>[(size_t)n]);
    auto stdf = [&]() -> double {
        std::stop_source p;
        std::stop_token pt = p.get_token();
        for (long i = 0; i < n; i++)
            skids[(size_t)i].emplace(pt);
        int64_t t0 = now_ns();
        p.request_stop();
        double dt = (double)(now_ns() - t0);
        long ok = 0;
        for (long i = 0; i < n; i++) {
            ok += skids[(size_t)i]->ss.stop_requested();
            skids[(size_t)i].reset();
        }
        return ok == n ? dt / 1e6 : -1;
    };

    std::vector<GCancellable *> gkids((size_t)n);
    auto glib = [&]() -> double {
        GCancellable *p = g_cancellable_new();
        for (long i = 0; i < n; i++) {
            gkids[(size_t)i] = g_cancellable_new();
            g_cancellable_connect(p, G_CALLBACK(glib_cancel_child),
                                  gkids[(size_t)i], nullptr);
        }
        int64_t t0 = now_ns();
        g_cancellable_cancel(p);
        double dt = (double)(now_ns() - t0);
        long ok = 0;
        g_object_unref(p);
        for (long i = 0; i < n; i++) {
            ok += g_cancellable_is_cancelled(gkids[(size_t)i]);
            g_object_unref(gkids[(size_t)i]);
        }
        return ok == n ? dt / 1e6 : -1;
    };
    run_samples({{&f.lib, lib}, {&f.std_, stdf}, {&f.glib, glib}}, 1);
    mark_errors(f);
    double l = f.lib.med();
    f.verdict = (!f.lib.err && l <= 10 ? "PASS (" : "MISS (") + fmt(l) + " ms)";
    report_progress(f);
    g_figs.push_back(f);
}

/* ---- 7. 1,000,000 armed cancel_after timers -------------------------------
 */

gboolean glib_never(GSource *, GSourceFunc, gpointer)
{
    return G_SOURCE_CONTINUE;
}

GSourceFuncs g_plain_funcs = {nullptr, nullptr, glib_never,
                              nullptr, nullptr, nullptr};

void fig_timer()
{
    const long n = g_quick ? 100000 : 1000000;
    const int64_t hour = 3600 * (int64_t)1000000000;
    figure seq, rnd, nf;
    seq.key = "timer-seq";
    rnd.key = "timer-rnd";
    nf.key = "timer-new";
    seq.label = "re-arm a timer, in order";
    rnd.label = "re-arm a timer, random";
    nf.label = "timeout source new+free";
    seq.unit = rnd.unit = "ns/disarm+arm";
    nf.unit = "ns";
    seq.name = "re-arm a timer in order, " + std::to_string(n) +
               " armed (ns/disarm+arm)";
    rnd.name = "re-arm a timer, random order, " + std::to_string(n) +
               " armed (ns/disarm+arm)";
    seq.target = rnd.target = "<= 150 ns";
    seq.std_.na = rnd.std_.na = true;
    seq.note = "libcancel: cancel_source_cancel_after(src, -1) then "
               "(src, 3600 s + i) on source i, i = 0, 1, 2, ...; GLib: "
               "g_source_set_ready_time(-1) then (now + 3600 s + i) on as "
               "many attached GSources of an idle GMainContext (O(1), but "
               "GLib scans every source on each loop iteration; each call "
               "also signals the context's wakeup fd).";
    rnd.note = "the same, with the sources taken in a random order (every "
               "source, heap slot and entry touched is a cache miss).";
    nf.name =
        "timeout source new+arm+free, " + std::to_string(n) + " armed (ns)";
    nf.target = "(none)";
    nf.std_.na = true;
    nf.note = "libcancel: cancel_source_new_timeout(3600 s) + "
              "cancel_source_free; GLib: g_timeout_source_new + "
              "g_source_attach + g_source_destroy + g_source_unref, on the "
              "same loaded timer structure / context.";

    std::vector<uint32_t> order((size_t)n), perm((size_t)n);
    for (long i = 0; i < n; i++)
        order[(size_t)i] = perm[(size_t)i] = (uint32_t)i;
    std::mt19937 rng(12345);
    std::shuffle(perm.begin(), perm.end(), rng);

    /* libcancel: n sources, each armed once (that allocates its entry). */
    std::vector<cancel_source *> srcs((size_t)n);
    for (long i = 0; i < n; i++)
        srcs[(size_t)i] = cancel_source_new();
    int bad = 0;
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++)
        bad |= cancel_source_cancel_after(srcs[(size_t)i], hour + i);
    double first_arm = (double)(now_ns() - t0) / (double)n;
    if (bad)
        fprintf(stderr, "libcancel: cancel_source_cancel_after failed\n");

    /* GLib: n plain GSources with a ready time on an idle context. */
    GMainContext *ctx = g_main_context_new();
    std::vector<GSource *> gsrcs((size_t)n);
    int64_t gnow = g_get_monotonic_time();
    for (long i = 0; i < n; i++) {
        GSource *s = g_source_new(&g_plain_funcs, sizeof(GSource));
        g_source_set_ready_time(s, gnow + hour / 1000 + i);
        g_source_attach(s, ctx);
        gsrcs[(size_t)i] = s;
    }

    /* A pass re-arms m sources in the order `ord`, continuing where the
     * previous pass stopped. */
    struct cursor {
        const std::vector<uint32_t> *ord;
        size_t at = 0;
        uint32_t next()
        {
            uint32_t i = (*ord)[at];
            at = at + 1 == ord->size() ? 0 : at + 1;
            return i;
        }
    };
    auto lib_re = [&](cursor c) {
        return [&, c](long m) mutable {
            int b = 0;
            int64_t s0 = now_ns();
            for (long k = 0; k < m; k++) {
                uint32_t i = c.next();
                b |= cancel_source_cancel_after(srcs[i], -1);
                b |= cancel_source_cancel_after(srcs[i], hour + i);
            }
            double dt = (double)(now_ns() - s0);
            return b ? -1e30 : dt;
        };
    };
    auto glib_re = [&](cursor c) {
        return [&, c](long m) mutable {
            int64_t s0 = now_ns();
            for (long k = 0; k < m; k++) {
                uint32_t i = c.next();
                g_source_set_ready_time(gsrcs[i], -1);
                g_source_set_ready_time(gsrcs[i], g_get_monotonic_time() +
                                                      hour / 1000 + i);
            }
            return (double)(now_ns() - s0);
        };
    };
    for (figure *f : {&seq, &rnd}) {
        const auto *ord = f == &seq ? &order : &perm;
        run_loops(
            {{&f->lib, lib_re(cursor{ord})}, {&f->glib, glib_re(cursor{ord})}});
        mark_errors(*f);
        double l = f->lib.med();
        f->verdict =
            (!f->lib.err && l <= 150 ? "PASS (" : "MISS (") + fmt(l) + " ns)";
        report_progress(*f);
    }
    seq.note += " The first arm of each libcancel source (which allocates "
                "its timer entry) took " +
                fmt(first_arm) + " ns.";

    auto lib_nf = [&](long m) {
        int64_t s0 = now_ns();
        for (long k = 0; k < m; k++) {
            cancel_source *s = cancel_source_new_timeout(hour + (k & 1023));
            keep(s);
            cancel_source_free(s);
        }
        return (double)(now_ns() - s0);
    };
    auto glib_nf = [&](long m) {
        int64_t s0 = now_ns();
        for (long k = 0; k < m; k++) {
            GSource *s =
                g_timeout_source_new((guint)(hour / 1000000 + (k & 1023)));
            g_source_attach(s, ctx);
            g_source_destroy(s);
            g_source_unref(s);
        }
        return (double)(now_ns() - s0);
    };
    run_loops({{&nf.lib, lib_nf}, {&nf.glib, glib_nf}});
    nf.verdict = "info";
    report_progress(nf);

    for (auto s : srcs)
        cancel_source_free(s);
    for (auto s : gsrcs) {
        g_source_destroy(s);
        g_source_unref(s);
    }
    g_main_context_unref(ctx);
    g_figs.push_back(seq);
    g_figs.push_back(rnd);
    g_figs.push_back(nf);
}

/* ---- the table ------------------------------------------------------------
 */

bench::table timing_table()
{
    bench::table t;
    t.add({"figure", "libcancel", "std::stop_token", "GCancellable", "std/lib",
           "glib/lib", "target", "result"});
    for (const auto &f : g_figs) {
        t.add({f.name, f.lib.show(), f.std_.show(), f.glib.show(),
               f.std_.na || f.std_.err ? "-"
                                       : fmt_ratio(f.std_.med(), f.lib.med()),
               f.glib.na || f.glib.err ? "-"
                                       : fmt_ratio(f.glib.med(), f.lib.med()),
               f.target, f.verdict});
    }
    return t;
}

void print_table()
{
    printf("\n");
    timing_table().print(stdout);
    printf("\nmedians of %d runs each; std/lib and glib/lib > 1 mean "
           "libcancel is faster.\n",
           g_reps);
    for (const auto &f : g_figs)
        if (!f.note.empty())
            printf("- %s: %s\n", f.name.c_str(), f.note.c_str());
    for (const auto &f : g_figs)
        if (f.verdict.rfind("MISS", 0) == 0 || f.lib.err)
            printf("MISSED: %s: %s, target %s\n", f.name.c_str(),
                   f.verdict.c_str(), f.target.c_str());
}

/* A median, minimum or maximum for --tsv: NaN when there is none. */
std::string tsv_num(const cell &c, int which)
{
    if (c.na || c.err || c.samples.empty())
        return "NaN";
    auto s = c.samples;
    std::sort(s.begin(), s.end());
    double v = which == 0 ? median(s) : which < 0 ? s.front() : s.back();
    char b[64];
    snprintf(b, sizeof b, "%.6g", v);
    return b;
}

std::string first_word(const std::string &s)
{
    return s.substr(0, s.find(' '));
}

/* --tsv FILE: one "meta" line per fact about the run, one "fig" line per
 * figure (medians, minima and maxima in the figure's unit, NaN where an
 * implementation has no equivalent or misbehaved).  Fields never contain a
 * tab. */
bool write_tsv(const char *path)
{
    FILE *o = fopen(path, "w");
    if (!o) {
        fprintf(stderr, "bench_core: %s: %s\n", path, strerror(errno));
        return false;
    }
    fprintf(o, "# meta\tkey\tvalue\n");
    for (const auto &m : g_meta)
        fprintf(o, "meta\t%s\t%s\n", m.first.c_str(), m.second.c_str());
    fprintf(o, "# fig\tkey\tlabel\tunit\tlib\tstd\tglib\tlib_min\tlib_max"
               "\tstd_min\tstd_max\tglib_min\tglib_max\tresult\ttarget"
               "\tverdict\tname\n");
    for (const auto &f : g_figs) {
        fprintf(o, "fig\t%s\t%s\t%s", f.key.c_str(), f.label.c_str(),
                f.unit.c_str());
        for (const cell *c : {&f.lib, &f.std_, &f.glib})
            fprintf(o, "\t%s", tsv_num(*c, 0).c_str());
        for (const cell *c : {&f.lib, &f.std_, &f.glib})
            fprintf(o, "\t%s\t%s", tsv_num(*c, -1).c_str(),
                    tsv_num(*c, 1).c_str());
        fprintf(o, "\t%s\t%s\t%s\t%s\n",
                f.lib.err ? "ERR" : first_word(f.verdict).c_str(),
                f.target.c_str(), f.verdict.c_str(), f.name.c_str());
    }
    return fclose(o) == 0;
}

std::string spread(const cell &c)
{
    if (c.na)
        return "n/a";
    if (c.err || c.samples.empty())
        return "-";
    auto s = c.samples;
    std::sort(s.begin(), s.end());
    return fmt(s.front()) + " - " + fmt(s.back());
}

/* --md FILE: the timing table, its notes, the spread of the runs and the
 * missed targets, as a markdown fragment that run.sh puts in report.md. */
bool write_md(const char *path)
{
    FILE *o = fopen(path, "w");
    if (!o) {
        fprintf(stderr, "bench_core: %s: %s\n", path, strerror(errno));
        return false;
    }
    timing_table().print(o);
    fprintf(o,
            "\nMedians of %d runs each; `std/lib` and `glib/lib` > 1 mean "
            "libcancel is faster.\n\n",
            g_reps);
    for (const auto &f : g_figs)
        if (!f.note.empty())
            fprintf(o, "- *%s*: %s\n", f.name.c_str(), f.note.c_str());
    bench::table t;
    t.add({"figure", "libcancel", "std::stop_token", "GCancellable"});
    for (const auto &f : g_figs)
        t.add({f.name, spread(f.lib), spread(f.std_), spread(f.glib)});
    fprintf(o, "\nSpread of the %d runs (min - max):\n\n", g_reps);
    t.print(o);
    return fclose(o) == 0;
}

/* The machine is shared: the load average says whether other work ran
 * beside the benchmark (it disturbs the two-thread figure most). */
void print_load(const char *when)
{
    double l1 = -1;
    if (FILE *f = fopen("/proc/loadavg", "r")) {
        if (fscanf(f, "%lf", &l1) != 1)
            l1 = -1;
        fclose(f);
    }
    char b[32];
    snprintf(b, sizeof b, "%.2f", l1);
    g_meta.push_back({std::string("load_") + when, l1 >= 0 ? b : "NaN"});
    if (l1 >= 0)
        printf("load average %s the run: %.2f%s\n", when, l1,
               l1 > 0.5 ? " (other work is running: figures are noisier)" : "");
}

void print_setup()
{
    char model[256] = "unknown CPU";
    if (FILE *f = fopen("/proc/cpuinfo", "r")) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                const char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        fclose(f);
    }
    g_meta.push_back({"cpu", model});
    g_meta.push_back(
        {"hw_threads", std::to_string(std::thread::hardware_concurrency())});
    g_meta.push_back({"libstdcxx", std::to_string(_GLIBCXX_RELEASE)});
    g_meta.push_back({"cxx", __VERSION__});
    g_meta.push_back({"glib", std::to_string(glib_major_version) + "." +
                                  std::to_string(glib_minor_version) + "." +
                                  std::to_string(glib_micro_version)});
    g_meta.push_back({"reps", std::to_string(g_reps)});
    g_meta.push_back({"clock", bench::timing_clock() == CLOCK_MONOTONIC
                                   ? "CLOCK_MONOTONIC"
                                   : "CLOCK_THREAD_CPUTIME_ID"});
    g_meta.push_back({"quick", g_quick ? "1" : "0"});
    g_meta.push_back({"single_thread", g_single_thread ? "1" : "0"});
    printf("libcancel benchmarks beside std::stop_token (libstdc++ %d, "
           "%s) and GCancellable (GLib %u.%u.%u)\n",
           _GLIBCXX_RELEASE, __VERSION__, glib_major_version,
           glib_minor_version, glib_micro_version);
    printf("CPU: %s, %u hardware threads; %d runs per figure\n", model,
           std::thread::hardware_concurrency(), g_reps);
    printf("clock: %s for one-thread figures, wall time for two threads\n",
           bench::timing_clock() == CLOCK_MONOTONIC
               ? "wall time (CLOCK_MONOTONIC)"
               : "thread CPU time (CLOCK_THREAD_CPUTIME_ID)");
    print_load("before");
    printf("\n");
}

/* ---- --probe: libcancel work only, for `strace -c -f` ----------------------
 */

int probe()
{
    const long n = 1000000;
    long count = 0;
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    cancel_registration one = CANCEL_REGISTRATION_INIT;
    for (long i = 0; i < n; i++) {
        cancel_register(t, &one, lib_nop, nullptr);
        cancel_unregister(&one);
    }
    std::vector<cancel_registration> regs((size_t)n);
    for (long i = 0; i < n; i++)
        cancel_register(t, &regs[(size_t)i], lib_count, &count);
    cancel_source_cancel(src);
    cancel_source_free(src);

    cancel_source *p = cancel_source_new();
    cancel_token pt = cancel_source_token(p);
    std::vector<cancel_source *> kids(100000);
    for (auto &k : kids)
        k = cancel_source_new_linked(&pt, 1);
    cancel_source_cancel(p);
    for (auto k : kids)
        cancel_source_free(k);
    cancel_source_free(p);

    for (long i = 0; i < n; i++) {
        cancel_source *s = cancel_source_new();
        keep(s);
        cancel_source_free(s);
    }
    printf("probe: %ld callbacks ran\n", count);
    return count == n ? 0 : 1;
}

/* The same callback workload with std::stop_token, for comparison. */
int probe_std()
{
    const long n = 1000000;
    long count = 0;
    std::stop_source ss;
    std::stop_token t = ss.get_token();
    std::unique_ptr<std::optional<std::stop_callback<std_count>>[]> cbs(
        new std::optional<std::stop_callback<std_count>>[(size_t)n]);
    for (long i = 0; i < n; i++)
        cbs[(size_t)i].emplace(t, std_count{&count});
    std::thread([] {}).join(); /* a multi-threaded process, as in the table */
    ss.request_stop();
    cbs.reset();
    printf("probe-std: %ld callbacks ran\n", count);
    return count == n ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--probe"))
            return probe();
        if (!strcmp(argv[i], "--probe-none"))
            return 0;
        if (!strcmp(argv[i], "--probe-std"))
            return probe_std();
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tsv") && i + 1 < argc) {
            g_tsv_path = argv[++i];
        } else if (!strcmp(argv[i], "--md") && i + 1 < argc) {
            g_md_path = argv[++i];
        } else if (!strcmp(argv[i], "--wall")) {
            bench::timing_clock() = CLOCK_MONOTONIC;
        } else if (!strcmp(argv[i], "--single-thread")) {
            g_single_thread = true;
        } else if (!strcmp(argv[i], "--quick")) {
            g_quick = true;
            g_reps = 3;
            g_sample_ns = 5e6;
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
                    "check,reg1,reg2,cancel,create,linked,children,timer]"
                    " [--single-thread] [--wall] [--tsv FILE] [--md FILE]"
                    " | --probe | --probe-std | --probe-none\n",
                    argv[0]);
            return 2;
        }
    }
    if (g_reps < 1)
        g_reps = 1;
    setvbuf(stdout, nullptr, _IOLBF, 0);
    print_setup();
    if (g_single_thread) {
        /* Only figures that need no thread (the timer starts one). */
        if (g_only.empty())
            g_only = {"check",  "reg1",   "cancel",
                      "create", "linked", "children"};
        g_only.erase(std::remove_if(g_only.begin(), g_only.end(),
                                    [](const std::string &o) {
                                        return o == "reg2" || o == "timer";
                                    }),
                     g_only.end());
        printf("single-threaded process: no thread is ever started\n\n");
    } else {
        /* A program that cancels across threads is multi-threaded, and
         * libstdc++ behaves differently before the first thread starts:
         * start (and join) one now so that every figure sees the same
         * process. */
        std::thread([] {}).join();
    }
    int64_t t0 = bench::wall_ns();
    if (wanted("check"))
        fig_check();
    if (wanted("reg1"))
        fig_reg(false);
    if (wanted("reg2"))
        fig_reg(true);
    if (wanted("cancel"))
        fig_cancel();
    if (wanted("create"))
        fig_create();
    if (wanted("linked"))
        fig_linked();
    if (wanted("children"))
        fig_children();
    if (wanted("timer"))
        fig_timer();
    print_table();
    double took = (double)(bench::wall_ns() - t0) / 1e9;
    printf("\nbench_core took %.1f s; ", took);
    print_load("after");
    char b[32];
    snprintf(b, sizeof b, "%.1f", took);
    g_meta.push_back({"seconds", b});
    int status = 0;
    if (g_tsv_path && !write_tsv(g_tsv_path))
        status = 1;
    if (g_md_path && !write_md(g_md_path))
        status = 1;
    return status;
}
