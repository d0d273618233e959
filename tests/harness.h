/* The in-house test harness: a tiny runner in the spirit of libuv's.
 *
 * A test file defines cases with TEST(name) { ... }.  CMake registers every
 * case as its own CTest test (`prog name`), so each case runs in its own
 * process with its own timeout: a deadlock fails one case, not the run.
 * Run a program without arguments to run all of its cases in one process.
 *
 * Assertions abort the process after printing both sides of the comparison;
 * ASSERT_ERR prints error codes by name (ECANCELED, ...).
 */
#ifndef CANCEL_TEST_HARNESS_H
#define CANCEL_TEST_HARNESS_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "cancel/cancel.h"

typedef void harness_fn(void);
void harness_register(const char *name, harness_fn *fn);
void harness_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define TEST(name)                                                             \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void harness_reg_##name(void)          \
    {                                                                          \
        harness_register(#name, test_##name);                                  \
    }                                                                          \
    static void test_##name(void)

#define ASSERT(cond)                                                           \
    do {                                                                       \
        if (!(cond))                                                           \
            harness_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);   \
    } while (0)

#define ASSERT_INT_OP(a, op, b)                                                \
    do {                                                                       \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                       \
        if (!(a_ op b_))                                                       \
            harness_fail(__FILE__, __LINE__,                                   \
                         "%s %s %s: %jd vs %jd", #a, #op, #b, a_, b_);         \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)
#define ASSERT_TRUE(a) ASSERT(a)
#define ASSERT_FALSE(a) ASSERT(!(a))
#define ASSERT_NULL(p) ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

/* Compare two error codes and print them by name on failure. */
#define ASSERT_ERR(expr, want)                                                 \
    do {                                                                       \
        int got_ = (int)(expr), want_ = (int)(want);                           \
        if (got_ != want_)                                                     \
            harness_fail(__FILE__, __LINE__, "%s: got %d (%s), want %d (%s)",  \
                         #expr, got_, cancel_err_name(got_), want_,            \
                         cancel_err_name(want_));                              \
    } while (0)

#define ASSERT_OK(expr) ASSERT_ERR(expr, 0)

/* ---- small helpers shared by the tests ---------------------------------- */

/* A one-shot gate: threads wait until it is opened.  Built on pthreads only
 * so that the tests do not depend on the code under test to synchronise. */
typedef struct harness_gate {
    void *impl_[4];
} harness_gate;
void harness_gate_init(harness_gate *g);
void harness_gate_open(harness_gate *g);
void harness_gate_wait(harness_gate *g);
bool harness_gate_is_open(harness_gate *g);
void harness_gate_destroy(harness_gate *g);

/* Thread states from /proc, to gate on a thread blocked in the kernel: a
 * test acts once the thread sleeps (state S), rather than after a sleep.
 *   harness_gettid()          the calling thread's kernel id (gettid);
 *   harness_proc_state(path)  the state letter of a /proc/.../stat file
 *                             (/proc/<pid>/stat, /proc/self/task/<tid>/stat),
 *                             or 0 if it is gone or unreadable;
 *   harness_thread_asleep(t)  whether thread t of this process is in state S
 *                             (false if it is gone). */
pid_t harness_gettid(void);
char harness_proc_state(const char *stat_path);
bool harness_thread_asleep(pid_t tid);

/* A manual clock for a test's timeouts:
 *   harness_manual_clock()        installs a new manual clock that starts
 *                                 at 0, and returns it;
 *   harness_manual_clock_done(c)  uninstalls clock c and frees it. */
cancel_clock *harness_manual_clock(void);
void harness_manual_clock_done(cancel_clock *c);

/* One blocking call on a thread of its own, to act while it is blocked.
 * The thread stores its tid, raises `entered` right before fn(arg), then
 * stores fn's result, its canceled token (cancel_canceled_token) in
 * `recorded`, and raises `done`.
 *   harness_call_start(c, fn, arg)  runs fn(arg) on a new thread;
 *   harness_call_await_asleep(c)    returns once the call has entered and
 *                                   its thread is asleep in the kernel
 *                                   (state S), or the call is done: a
 *                                   gate, not a sleep;
 *   harness_call_finish(c)          joins the thread, asserts the call is
 *                                   done, and returns its result. */
typedef struct harness_call {
    pthread_t th;
    int (*fn)(void *arg);
    void *arg;
    _Atomic pid_t tid;
    atomic_bool entered, done;
    int result;
    cancel_token recorded;
} harness_call;
void harness_call_start(harness_call *c, int (*fn)(void *arg), void *arg);
void harness_call_await_asleep(harness_call *c);
int harness_call_finish(harness_call *c);

/* Annotations for valgrind's thread checkers.  The stress tests start and
 * stop their threads with atomic flags and counters polled in yield loops
 * (gates that let threads leave within microseconds of each other), which
 * DRD does not see as synchronisation.  In a CANCEL_VALGRIND build
 * (valgrind/run.sh threads) these tell it, as src/internal.h's
 * CANCEL__ANNOTATE_* do for the library; elsewhere they are nothing.
 *   HARNESS_HAPPENS_BEFORE(a)   just before the store that opens gate a;
 *   HARNESS_HAPPENS_AFTER(a)    once a thread has seen gate a open. */
#ifdef CANCEL_VALGRIND
#include <valgrind/drd.h>
#define HARNESS_HAPPENS_BEFORE(a) ANNOTATE_HAPPENS_BEFORE(a)
#define HARNESS_HAPPENS_AFTER(a) ANNOTATE_HAPPENS_AFTER(a)
#else
#define HARNESS_HAPPENS_BEFORE(a) ((void)0)
#define HARNESS_HAPPENS_AFTER(a) ((void)0)
#endif

/* An integer scale for stress loops: CANCEL_TEST_SCALE (default 1) times n,
 * divided by 4 under sanitizers that are much slower (TSan) and by
 * CANCEL_TEST_DIV (default 1; valgrind/run.sh sets it); never below 1. */
long harness_scale(long n);

#endif /* CANCEL_TEST_HARNESS_H */
