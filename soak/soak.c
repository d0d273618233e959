/* Soak: the core's operations from several threads, for a long time, with
 * the invariants of the stress tests checked on the way and memory watched:
 *
 *   soak [seconds] [threads] [report-interval-seconds]
 *
 * Threads share NSLOT source slots (a slot's pointer is guarded by a
 * rwlock: using a source takes it shared, replacing one - free + new plain,
 * timeout or linked - takes it exclusive, as cancel_source_free requires)
 * and each owns a few registrations (the API: one thread at a time per
 * registration).  Operations, chosen at random: register / try_register /
 * register_on, unregister (blocking or not), cancel, cancel with a reason,
 * cancel_after (real clock, 0-2 ms), cancel_async, try_reset, replace,
 * retain + register on the retained token after the source was replaced +
 * release, and short cancel_waits.
 *
 * Checked on the way: a callback runs at most once; never after an
 * unregister returned true; a blocking unregister that returned false
 * leaves it finished.  Watched: VmRSS and the library's live allocations
 * (cancel__alloc_live, test build), printed every interval.  Fails if,
 * after the warm-up (a fifth of the run, at least 5 s), RSS goes above the
 * warm-up's peak by more than RSS_SLACK (25% + 4 MiB), if live allocations
 * exceed what the slots can hold, or if anything is left allocated after
 * the final cleanup.  Exit 0 on success. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cancel/cancel.h"
#include "internal.h" /* cancel__alloc_live: the test build counts */

#define NSLOT 16
#define NREC 8 /* registrations per thread */
#define MAXTHREADS 64

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#include <stdarg.h>
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "soak: FAIL: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

static inline uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static inline uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)((rnd(s) >> 32) % n);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---- shared state ------------------------------------------------------- */

static struct slot {
    pthread_rwlock_t lock;
    cancel_source *src;
} slots[NSLOT];

static atomic_bool stop;
static atomic_ulong ops, callbacks, inline_runs, removed, replaced;

struct rec {
    cancel_registration reg;
    atomic_int runs;
    atomic_int finished;
    bool armed;       /* registered and not yet unregistered */
    bool inline_ran;  /* register ran fn itself (-ECANCELED) */
};

static void rec_cb(void *arg)
{
    struct rec *r = arg;
    if (atomic_fetch_add(&r->runs, 1) != 0)
        die("a callback ran twice");
    atomic_fetch_add_explicit(&callbacks, 1, memory_order_relaxed);
    atomic_store(&r->finished, 1);
}

/* Posted registrations count in a global: once posted, the executor owns
 * the call and unregister returns false without waiting, so the record may
 * be reused while the call is still on its way; per-record checks would
 * misfire.  (The stress tests check posted registrations precisely.) */
static atomic_ulong posted_runs;

static void posted_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&posted_runs, 1, memory_order_relaxed);
}

/* An executor that runs the posted call at once (on the canceller). */
static void post_inline(void *ctx, cancel_callback *fn, void *arg)
{
    (void)ctx;
    fn(arg);
}

static cancel_source *make_source(uint64_t *seed, cancel_token parent)
{
    cancel_source *s;
    switch (below(seed, 4)) {
    case 0:
        s = cancel_source_new_timeout((int64_t)below(seed, 2000000));
        break;
    case 1:
        s = cancel_source_new_linked(&parent, 1);
        break;
    default:
        s = cancel_source_new();
        break;
    }
    if (s == NULL)
        die("source allocation failed: %s", strerror(errno));
    return s;
}

/* Unregister r (blocking unless nowait) and check what the result means. */
static void rec_unregister(struct rec *r, bool nowait)
{
    if (!r->armed)
        return;
    bool rm = nowait ? cancel_unregister_nowait(&r->reg)
                     : cancel_unregister(&r->reg);
    if (rm) {
        if (atomic_load(&r->runs) != 0)
            die("unregister returned true after the callback ran");
        atomic_fetch_add_explicit(&removed, 1, memory_order_relaxed);
    } else if (!nowait && atomic_load(&r->runs) != atomic_load(&r->finished)) {
        die("blocking unregister returned while the callback ran");
    }
    if (nowait && !rm) {
        /* It may still run on another thread: wait it out before reuse. */
        cancel_unregister(&r->reg);
    }
    r->armed = false;
}

/* Make r ready for another register (it is not registered). */
static void rec_reuse(struct rec *r)
{
    atomic_store(&r->runs, 0);
    atomic_store(&r->finished, 0);
    memset(&r->reg, 0, sizeof(r->reg));
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL | 1;
    struct rec *recs = calloc(NREC, sizeof(*recs));
    if (recs == NULL)
        die("out of memory");
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        struct slot *sl = &slots[below(&seed, NSLOT)];
        struct rec *r = &recs[below(&seed, NREC)];
        unsigned op = below(&seed, 100);
        if (op < 30) { /* register */
            rec_unregister(r, false);
            rec_reuse(r);
            pthread_rwlock_rdlock(&sl->lock);
            cancel_token t = cancel_source_token(sl->src);
            unsigned how = below(&seed, 3);
            int rc = how == 0   ? cancel_register(t, &r->reg, rec_cb, r)
                     : how == 1 ? cancel_try_register(t, &r->reg, rec_cb, r)
                                : cancel_register_on(t, &r->reg, posted_cb,
                                                     NULL, post_inline, NULL);
            pthread_rwlock_unlock(&sl->lock);
            if (rc == -ECANCELED) {
                if (how != 2 && atomic_load(&r->runs) != (how == 1 ? 0 : 1))
                    die("register on a canceled token: %d runs",
                        atomic_load(&r->runs));
                atomic_fetch_add_explicit(&inline_runs, 1,
                                          memory_order_relaxed);
            } else if (rc != 0) {
                die("register returned %d", rc);
            }
            r->armed = true;
        } else if (op < 50) { /* unregister */
            rec_unregister(r, below(&seed, 3) == 0);
        } else if (op < 58) {
            pthread_rwlock_rdlock(&sl->lock);
            if (below(&seed, 2))
                cancel_source_cancel(sl->src);
            else
                cancel_source_cancel_reason(sl->src,
                                            1 + (int)below(&seed, 1000));
            pthread_rwlock_unlock(&sl->lock);
        } else if (op < 64) {
            pthread_rwlock_rdlock(&sl->lock);
            int rc = cancel_source_cancel_after(
                sl->src, (int64_t)below(&seed, 2000000));
            pthread_rwlock_unlock(&sl->lock);
            if (rc != 0)
                die("cancel_after returned %d", rc);
        } else if (op < 67) {
            pthread_rwlock_rdlock(&sl->lock);
            int rc = cancel_source_cancel_async(sl->src);
            pthread_rwlock_unlock(&sl->lock);
            if (rc != 0)
                die("cancel_async returned %d", rc);
        } else if (op < 73) {
            pthread_rwlock_rdlock(&sl->lock);
            cancel_source_try_reset(sl->src);
            pthread_rwlock_unlock(&sl->lock);
        } else if (op < 85) { /* replace, maybe linked to another slot */
            struct slot *other = &slots[below(&seed, NSLOT)];
            pthread_rwlock_rdlock(&other->lock);
            cancel_token parent =
                cancel_token_retain(cancel_source_token(other->src));
            pthread_rwlock_unlock(&other->lock);
            cancel_source *fresh = make_source(&seed, parent);
            pthread_rwlock_wrlock(&sl->lock);
            cancel_source *old = sl->src;
            sl->src = fresh;
            pthread_rwlock_unlock(&sl->lock);
            cancel_source_free(old);
            cancel_token_release(parent);
            atomic_fetch_add_explicit(&replaced, 1, memory_order_relaxed);
        } else if (op < 92) { /* a retained token outlives its owner */
            pthread_rwlock_rdlock(&sl->lock);
            cancel_token t =
                cancel_token_retain(cancel_source_token(sl->src));
            pthread_rwlock_unlock(&sl->lock);
            rec_unregister(r, false);
            rec_reuse(r);
            int rc = cancel_register(t, &r->reg, rec_cb, r);
            if (rc != 0 && rc != -ECANCELED)
                die("register on a retained token returned %d", rc);
            r->armed = true;
            if (below(&seed, 2))
                rec_unregister(r, false);
            cancel_token_release(t);
        } else { /* a short wait */
            pthread_rwlock_rdlock(&sl->lock);
            cancel_token t =
                cancel_token_retain(cancel_source_token(sl->src));
            pthread_rwlock_unlock(&sl->lock);
            int rc = cancel_wait(t, (int64_t)below(&seed, 200000));
            if (rc != -ECANCELED && rc != -ETIMEDOUT)
                die("cancel_wait returned %d", rc);
            if (rc == -ECANCELED && !cancel_requested(t))
                die("cancel_wait canceled on an uncanceled token");
            cancel_token_release(t);
        }
        atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
    }
    for (int i = 0; i < NREC; i++)
        rec_unregister(&recs[i], false);
    free(recs);
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 60;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    double interval = argc > 3 ? atof(argv[3]) : 5;
    if (nthreads < 1 || nthreads > MAXTHREADS || seconds <= 0 ||
        interval <= 0) {
        fprintf(stderr, "usage: soak [seconds] [threads] [interval]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Warm the library up (its thread, the timer heap) before counting. */
    cancel_source *w = cancel_source_new_timeout(1);
    cancel_wait(cancel_source_token(w), -1);
    cancel_source_free(w);
    long live0 = cancel__alloc_live();

    uint64_t seed = (uint64_t)now_ns() | 1;
    for (int i = 0; i < NSLOT; i++) {
        pthread_rwlock_init(&slots[i].lock, NULL);
        slots[i].src = make_source(&seed, CANCEL_NONE);
    }
    pthread_t th[MAXTHREADS];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)))
            die("pthread_create");

    const int64_t start = now_ns();
    const int64_t end = start + (int64_t)(seconds * 1e9);
    const int64_t warm = start + (int64_t)(seconds / 5 < 5 ? 5e9 : seconds / 5 * 1e9);
    long peak_warm = 0, peak_after = 0, max_live = 0;
    /* Every slot's source with an ext, sources kept by pending
     * registrations of freed sources and by retained tokens (a few per
     * thread), and freed sources still queued for cancel_async or being
     * drained: generous, since a leak grows without bound over a soak. */
    const long live_bound = 4L * (NSLOT + (long)nthreads * (NREC + 2)) + 256;
    printf("soak: %.0f s, %d threads, %d slots; report every %.0f s\n",
           seconds, nthreads, NSLOT, interval);
    printf("%8s %12s %11s %10s %10s %9s %9s\n", "t(s)", "ops", "callbacks",
           "removed", "replaced", "rss(KiB)", "live");
    for (int64_t next = start;;) {
        next += (int64_t)(interval * 1e9);
        if (next > end)
            next = end;
        while (now_ns() < next)
            usleep(20000);
        long rss = rss_kib();
        long live = cancel__alloc_live() - live0;
        int64_t t = now_ns();
        printf("%8.1f %12lu %11lu %10lu %10lu %9ld %9ld\n",
               (double)(t - start) / 1e9, atomic_load(&ops),
               atomic_load(&callbacks), atomic_load(&removed),
               atomic_load(&replaced), rss, live);
        if (live > max_live)
            max_live = live;
        if (live > live_bound)
            die("%ld live allocations, more than the slots can hold (%ld): "
                "a leak", live, live_bound);
        if (t < warm) {
            if (rss > peak_warm)
                peak_warm = rss;
        } else {
            if (rss > peak_after)
                peak_after = rss;
            long slack = peak_warm / 4 + 4096;
            if (peak_warm > 0 && rss > peak_warm + slack)
                die("RSS %ld KiB after warm-up, warm-up peak %ld KiB "
                    "(bound %ld KiB): memory grows",
                    rss, peak_warm, peak_warm + slack);
        }
        if (t >= end)
            break;
    }
    atomic_store(&stop, true);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NSLOT; i++) {
        cancel_source_free(slots[i].src);
        pthread_rwlock_destroy(&slots[i].lock);
    }
    /* cancel_async and timer callbacks of freed sources may still hold a
     * reference for a moment: let the library thread drain. */
    for (int i = 0; i < 500 && cancel__alloc_live() != live0; i++)
        usleep(10000);
    long left = cancel__alloc_live() - live0;
    printf("soak: %lu operations, %lu callbacks and %lu posted calls (%lu registers found the token canceled), "
           "%lu removed, %lu sources replaced\n",
           atomic_load(&ops), atomic_load(&callbacks),
           atomic_load(&posted_runs), atomic_load(&inline_runs),
           atomic_load(&removed), atomic_load(&replaced));
    printf("soak: RSS warm-up peak %ld KiB, after warm-up peak %ld KiB; "
           "live allocations peak %ld, after cleanup %ld\n",
           peak_warm, peak_after, max_live, left);
    if (left != 0)
        die("%ld allocations left after every source was freed", left);
    printf("soak: PASS\n");
    return 0;
}
