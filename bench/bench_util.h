/* Helpers shared by the benchmark programs: the clock, optimisation
 * barriers, medians and a plain-text table.
 *
 * Every figure is the median of repeated samples; the implementations are
 * measured in turn inside each repetition (libcancel, std, GLib, libcancel,
 * std, GLib, ...), so that a slow phase of the shared machine hits all three
 * alike instead of one of them. */
#ifndef CANCEL_BENCH_UTIL_H
#define CANCEL_BENCH_UTIL_H

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <time.h>

namespace bench
{

/* The clock of single-threaded timings: the calling thread's CPU time by
 * default, so that time the thread spends preempted by other work on a
 * shared machine does not count; CLOCK_MONOTONIC with --wall. */
inline clockid_t &timing_clock()
{
    static clockid_t c = CLOCK_THREAD_CPUTIME_ID;
    return c;
}

inline int64_t read_clock(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

inline int64_t now_ns()
{
    return read_clock(timing_clock());
}

/* Wall time, for timings that span several threads. */
inline int64_t wall_ns()
{
    return read_clock(CLOCK_MONOTONIC);
}

/* The compiler must assume `v` is read (and the memory behind it written). */
template <class T> inline void keep(const T &v)
{
    asm volatile("" : : "r,m"(v) : "memory");
}

inline void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

inline double median(std::vector<double> v)
{
    if (v.empty())
        return -1;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A number with three significant digits, or "-" for a missing figure. */
inline std::string fmt(double x)
{
    char b[64];
    if (x < 0)
        return "-";
    if (x >= 1000)
        snprintf(b, sizeof b, "%.0f", x);
    else if (x >= 100)
        snprintf(b, sizeof b, "%.0f", x);
    else if (x >= 10)
        snprintf(b, sizeof b, "%.1f", x);
    else if (x >= 1)
        snprintf(b, sizeof b, "%.2f", x);
    else
        snprintf(b, sizeof b, "%.3f", x);
    return b;
}

inline std::string fmt_ratio(double num, double den)
{
    char b[64];
    if (num <= 0 || den <= 0)
        return "-";
    double r = num / den;
    snprintf(b, sizeof b, r >= 100 ? "%.0fx" : r >= 10 ? "%.1fx" : "%.2fx", r);
    return b;
}

/* A markdown table whose columns are padded to their widest cell. */
struct table {
    std::vector<std::vector<std::string>> rows;

    void add(std::vector<std::string> r)
    {
        rows.push_back(std::move(r));
    }

    void print(FILE *f) const
    {
        if (rows.empty())
            return;
        std::vector<size_t> w(rows[0].size(), 0);
        for (const auto &r : rows)
            for (size_t i = 0; i < r.size() && i < w.size(); i++)
                w[i] = std::max(w[i], r[i].size());
        for (size_t k = 0; k < rows.size(); k++) {
            fputs("|", f);
            for (size_t i = 0; i < w.size(); i++) {
                const std::string &c = i < rows[k].size() ? rows[k][i] : "";
                fprintf(f, " %-*s |", (int)w[i], c.c_str());
            }
            fputs("\n", f);
            if (k == 0) {
                fputs("|", f);
                for (size_t i = 0; i < w.size(); i++)
                    fprintf(f, "%s|", std::string(w[i] + 2, '-').c_str());
                fputs("\n", f);
            }
        }
    }
};

} // namespace bench

#endif /* CANCEL_BENCH_UTIL_H */
