/* Stress of the waiting layer (cancel/wait.h): many threads wait on one
 * token, one event, one semaphore, with cond waits and wait-any, while
 * other threads cancel (a fresh source each round), set and reset the event,
 * release the semaphore and write to a pipe.
 *
 * Every wait below has an infinite timeout, or a manual-clock one that the
 * test drives to expiry, or is retried until it succeeds; and each round
 * ends with something that must end all of them: a cancel, a final set,
 * enough releases.  A lost wake-up
 * therefore hangs the test, and CTest's timeout fails it.  At the end of
 * each round the objects must have no waiter left (_destroy returns 0), and
 * semaphore counts are conserved: successful takes + final count ==
 * initial + released.
 *
 * Threads are created once per test and meet at a barrier between rounds,
 * so the rounds cost waits, not thread creation. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MS ((int64_t)1000000)

/* ---- helpers ------------------------------------------------------------ */

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

static void jitter(uint64_t *s)
{
    unsigned n = below(s, 8);
    if (n == 0)
        sched_yield();
    else
        for (volatile unsigned i = 0; i < n * 50; i++)
            ;
}

static uint64_t base_seed(void)
{
    const char *s = getenv("CANCEL_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed77a17ULL;
    printf("seed %#" PRIx64 " (set CANCEL_TEST_SEED to replay)\n", seed);
    return seed | 1;
}

/* Freed memory is scribbled over, so that a use after free shows in the
 * plain build too. */
__attribute__((constructor)) static void perturb_free(void)
{
#ifdef M_PERTURB
    mallopt(M_PERTURB, 0xa5);
#endif
}

/* Voluntary context switches of the calling thread: a wait that slept in
 * the kernel adds one.  Used to report how many waits really blocked, so
 * that a change that made the stress miss its target shows in the log. */
static long slept_marks(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nvcsw;
}

static atomic_long slept;

static void count_sleep(long before)
{
    if (slept_marks() != before)
        atomic_fetch_add(&slept, 1);
}

/* The round's token, published by the main thread before the start
 * barrier (the barrier orders it). */
static cancel_source *round_src;
static atomic_bool stop;
static uint64_t seed0;

static pthread_barrier_t barrier;

/* Every test starts here: the program may run all of them in one process
 * (no arguments), so nothing is left over from the previous one. */
static void begin(void)
{
    atomic_store(&stop, false);
    atomic_store(&slept, 0);
    seed0 = base_seed();
}

static void meet(void)
{
    int r = pthread_barrier_wait(&barrier);
    ASSERT_TRUE(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD);
}

/* ---- token, event and semaphore under cancels, sets and releases -------- */

enum { TES_WAITERS = 6, TES_INITIAL = 3 };

static cancel_event tes_ev;
static cancel_semaphore tes_sem;
static atomic_long tes_taken, tes_released, tes_event_ok, tes_canceled;

static void *tes_waiter(void *arg)
{
    long id = (long)arg;
    for (long round = 0;; round++) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token t = cancel_source_token(round_src);
        int r;
        long before;
        switch ((id + round) % 3) {
        case 0:
            before = slept_marks();
            r = cancel_wait(t, CANCEL_INFINITE);
            count_sleep(before);
            ASSERT_ERR(r, -ECANCELED);
            ASSERT_TRUE(cancel_token_equal(cancel_canceled_token(), t));
            atomic_fetch_add(&tes_canceled, 1);
            break;
        case 1:
            before = slept_marks();
            r = cancel_event_wait(&tes_ev, t, CANCEL_INFINITE);
            count_sleep(before);
            if (r == 0) {
                atomic_fetch_add(&tes_event_ok, 1);
                r = cancel_wait(t, CANCEL_INFINITE); /* no busy loop */
            }
            ASSERT_ERR(r, -ECANCELED);
            atomic_fetch_add(&tes_canceled, 1);
            break;
        default:
            for (;;) {
                before = slept_marks();
                r = cancel_semaphore_wait(&tes_sem, t, CANCEL_INFINITE);
                count_sleep(before);
                if (r != 0)
                    break;
                atomic_fetch_add(&tes_taken, 1);
            }
            ASSERT_ERR(r, -ECANCELED);
            atomic_fetch_add(&tes_canceled, 1);
            break;
        }
        meet();
    }
}

/* Releases the semaphore, sets and resets the event, then cancels. */
static void *tes_signaler(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0x9e3779b97f4a7c15ULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = 4 + below(&s, 12);
        for (unsigned k = 0; k < n; k++) {
            int n_rel = 1 + (int)below(&s, 2);
            ASSERT_GE(cancel_semaphore_release(&tes_sem, n_rel), 0);
            atomic_fetch_add(&tes_released, n_rel);
            switch (below(&s, 4)) {
            case 0:
                ASSERT_OK(cancel_event_set(&tes_ev));
                break;
            case 1:
                ASSERT_OK(cancel_event_reset(&tes_ev));
                break;
            default:
                break;
            }
            jitter(&s);
        }
        ASSERT_OK(cancel_source_cancel(round_src));
        meet();
    }
}

/* Only cancels, at a random moment: races the other canceller. */
static void *tes_canceller(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0xc2b2ae3d27d4eb4fULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = below(&s, 6);
        for (unsigned k = 0; k < n; k++)
            jitter(&s);
        ASSERT_OK(cancel_source_cancel(round_src));
        meet();
    }
}

TEST(token_event_semaphore_rounds)
{
    enum { THREADS = TES_WAITERS + 2 };
    begin();
    long rounds = harness_scale(20000);
    ASSERT_OK(cancel_event_init(&tes_ev, false));
    ASSERT_OK(cancel_semaphore_init(&tes_sem, TES_INITIAL, INT_MAX));
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < TES_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, tes_waiter, (void *)i));
    ASSERT_OK(pthread_create(&th[TES_WAITERS], NULL, tes_signaler, (void *)1L));
    ASSERT_OK(
        pthread_create(&th[TES_WAITERS + 1], NULL, tes_canceller, (void *)2L));

    for (long round = 0; round < rounds; round++) {
        round_src = cancel_source_new();
        ASSERT_NOT_NULL(round_src);
        meet(); /* start */
        meet(); /* every waiter returned */
        cancel_source_free(round_src);
        round_src = NULL;
        ASSERT_OK(cancel_event_destroy(&tes_ev));
        ASSERT_OK(cancel_semaphore_destroy(&tes_sem));
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    ASSERT_EQ(atomic_load(&tes_canceled), rounds * TES_WAITERS);
    ASSERT_EQ(atomic_load(&tes_taken) + cancel_semaphore_count(&tes_sem),
              TES_INITIAL + atomic_load(&tes_released));
    printf("taken %ld, event waits ok %ld, final count %d, slept %ld\n",
           atomic_load(&tes_taken), atomic_load(&tes_event_ok),
           cancel_semaphore_count(&tes_sem), atomic_load(&slept));
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- events: a final set must wake every waiter ------------------------- */

enum { EV_WAITERS = 7 };

static cancel_event ev_ev;
static cancel_source *ev_live; /* never canceled */

static void *ev_waiter(void *arg)
{
    long id = (long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token t = id % 2 ? cancel_source_token(ev_live) : CANCEL_NONE;
        long before = slept_marks();
        ASSERT_OK(cancel_event_wait(&ev_ev, t, CANCEL_INFINITE));
        count_sleep(before);
        meet();
    }
}

static void *ev_toggler(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0x9e3779b97f4a7c15ULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = below(&s, 6);
        for (unsigned k = 0; k < n; k++) {
            ASSERT_OK(cancel_event_set(&ev_ev));
            jitter(&s);
            ASSERT_OK(cancel_event_reset(&ev_ev));
            jitter(&s);
        }
        ASSERT_OK(cancel_event_set(&ev_ev)); /* the last word: set */
        meet();
    }
}

TEST(event_final_set_wakes_every_waiter)
{
    enum { THREADS = EV_WAITERS + 1 };
    begin();
    long rounds = harness_scale(16000);
    ev_live = cancel_source_new();
    ASSERT_OK(cancel_event_init(&ev_ev, false));
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < EV_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, ev_waiter, (void *)i));
    ASSERT_OK(pthread_create(&th[EV_WAITERS], NULL, ev_toggler, (void *)3L));
    for (long round = 0; round < rounds; round++) {
        ASSERT_OK(cancel_event_reset(&ev_ev));
        meet();
        meet();
        ASSERT_TRUE(cancel_event_is_set(&ev_ev));
        ASSERT_OK(cancel_event_destroy(&ev_ev));
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    printf("waits %ld, slept %ld\n", rounds * EV_WAITERS, atomic_load(&slept));
    ASSERT_FALSE(cancel_requested(cancel_source_token(ev_live)));
    cancel_source_free(ev_live);
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- semaphores: every count released reaches a waiter ------------------ */

enum { SEM_WAITERS = 6, SEM_QUOTA = 12, SEM_RELEASERS = 2 };

static cancel_semaphore sem_sem;
static cancel_source *sem_live; /* never canceled */
static atomic_long sem_timeouts, sem_cancels;

/* Each waiter takes exactly SEM_QUOTA counts per round, in its own way:
 * blocking with CANCEL_NONE or a live token, polling with zero or tiny
 * real timeouts, or with the round's token, which the canceller fires
 * mid-round (the waiter then goes on with CANCEL_NONE).  Those that give
 * up (timeout, cancel) exercise the hand-over of a wake to the next
 * waiter; if a count were stranded, a blocked waiter would hang. */
static void *sem_waiter(void *arg)
{
    long id = (long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token round_t = cancel_source_token(round_src);
        for (int got = 0; got < SEM_QUOTA;) {
            int r;
            long before = slept_marks();
            switch (id % 5) {
            case 0:
                r = cancel_semaphore_wait(&sem_sem, CANCEL_NONE,
                                          CANCEL_INFINITE);
                break;
            case 1:
                r = cancel_semaphore_wait(
                    &sem_sem, cancel_source_token(sem_live), CANCEL_INFINITE);
                break;
            case 2:
                r = cancel_semaphore_wait(&sem_sem, CANCEL_NONE, 0);
                if (r == -ETIMEDOUT)
                    sched_yield();
                break;
            case 3:
                r = cancel_semaphore_wait(&sem_sem, CANCEL_NONE, 20000);
                break;
            default:
                r = cancel_semaphore_wait(&sem_sem, round_t, CANCEL_INFINITE);
                if (r == -ECANCELED)
                    round_t = CANCEL_NONE;
                break;
            }
            count_sleep(before);
            if (r == 0)
                got++;
            else if (r == -ETIMEDOUT)
                atomic_fetch_add(&sem_timeouts, 1);
            else if (r == -ECANCELED)
                atomic_fetch_add(&sem_cancels, 1);
            else
                ASSERT_ERR(r, 0);
        }
        meet();
    }
}

static void *sem_releaser(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0x9e3779b97f4a7c15ULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        int left = SEM_WAITERS * SEM_QUOTA / SEM_RELEASERS;
        while (left > 0) {
            int n = 1 + (int)below(&s, 3);
            if (n > left)
                n = left;
            ASSERT_GE(cancel_semaphore_release(&sem_sem, n), 0);
            left -= n;
            jitter(&s);
        }
        meet();
    }
}

static void *sem_canceller(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0xc2b2ae3d27d4eb4fULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = below(&s, 10);
        for (unsigned k = 0; k < n; k++)
            jitter(&s);
        ASSERT_OK(cancel_source_cancel(round_src));
        meet();
    }
}

TEST(semaphore_releases_reach_waiters)
{
    enum { THREADS = SEM_WAITERS + SEM_RELEASERS + 1 };
    _Static_assert(SEM_WAITERS * SEM_QUOTA % SEM_RELEASERS == 0, "quota");
    begin();
    long rounds = harness_scale(6000);
    sem_live = cancel_source_new();
    ASSERT_OK(cancel_semaphore_init(&sem_sem, 0, SEM_WAITERS * SEM_QUOTA));
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < SEM_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, sem_waiter, (void *)i));
    for (long i = 0; i < SEM_RELEASERS; i++)
        ASSERT_OK(pthread_create(&th[SEM_WAITERS + i], NULL, sem_releaser,
                                 (void *)(i + 5)));
    ASSERT_OK(
        pthread_create(&th[THREADS - 1], NULL, sem_canceller, (void *)9L));
    for (long round = 0; round < rounds; round++) {
        round_src = cancel_source_new();
        ASSERT_NOT_NULL(round_src);
        meet();
        meet();
        /* Released == taken, exactly: nothing left over, nobody inside. */
        ASSERT_EQ(cancel_semaphore_count(&sem_sem), 0);
        ASSERT_OK(cancel_semaphore_destroy(&sem_sem));
        cancel_source_free(round_src);
        round_src = NULL;
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    printf("timeouts %ld, cancels %ld, slept %ld\n", atomic_load(&sem_timeouts),
           atomic_load(&sem_cancels), atomic_load(&slept));
    cancel_source_free(sem_live);
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- wait-any over mixed items under concurrent signaling --------------- */

enum { ANY_WAITERS = 4, ANY_PLAIN = 2, ANY_ITEMS = 4 };

static cancel_event any_ev;
static cancel_semaphore any_sem;
static int any_pipe[2];
static atomic_long any_taken, any_released, any_fd_hits, any_ev_hits;

/* Items in a different order for each waiter: T token, S sem, E event,
 * F fd.  Level-triggered items (event, fd) are dropped from the waiter's
 * list once they fired, so it does not spin; the semaphore is finite; so
 * each waiter ends on its token. */
static const char *const any_orders[ANY_WAITERS] = {"TSEF", "SFET", "ETFS",
                                                    "FSTE"};

static void *any_waiter(void *arg)
{
    long id = (long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token t = cancel_source_token(round_src);
        cancel_waitable items[ANY_ITEMS];
        char kinds[ANY_ITEMS];
        size_t n = 0;
        for (const char *k = any_orders[id]; *k; k++) {
            kinds[n] = *k;
            switch (*k) {
            case 'T':
                items[n++] = CANCEL_WAIT_TOKEN(t);
                break;
            case 'S':
                items[n++] = CANCEL_WAIT_SEM(&any_sem);
                break;
            case 'E':
                items[n++] = CANCEL_WAIT_EVENT(&any_ev);
                break;
            default:
                items[n++] = CANCEL_WAIT_FD(any_pipe[0], POLLIN);
                break;
            }
        }
        for (;;) {
            long before = slept_marks();
            int r = cancel_wait_any(items, n, CANCEL_INFINITE);
            count_sleep(before);
            ASSERT_GE(r, 0);
            ASSERT_LT(r, (int)n);
            char k = kinds[r];
            if (k == 'T') {
                ASSERT_TRUE(cancel_requested(t));
                break;
            }
            if (k == 'S') {
                atomic_fetch_add(&any_taken, 1);
                continue;
            }
            if (k == 'E')
                atomic_fetch_add(&any_ev_hits, 1);
            else
                atomic_fetch_add(&any_fd_hits, 1);
            /* Drop the fired level-triggered item. */
            memmove(&items[r], &items[r + 1], (n - r - 1) * sizeof(*items));
            memmove(&kinds[r], &kinds[r + 1], n - r - 1);
            n--;
        }
        meet();
    }
}

/* Plain semaphore waiters queue beside wait-any's hooks. */
static void *any_plain(void *arg)
{
    (void)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token t = cancel_source_token(round_src);
        int r;
        for (;;) {
            long before = slept_marks();
            r = cancel_semaphore_wait(&any_sem, t, CANCEL_INFINITE);
            count_sleep(before);
            if (r != 0)
                break;
            atomic_fetch_add(&any_taken, 1);
        }
        ASSERT_ERR(r, -ECANCELED);
        meet();
    }
}

static void *any_signaler(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg * 0x9e3779b97f4a7c15ULL;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = 2 + below(&s, 10);
        unsigned set_at = below(&s, n + 1), write_at = below(&s, n + 1);
        for (unsigned k = 0; k <= n; k++) {
            if (k == set_at)
                ASSERT_OK(cancel_event_set(&any_ev));
            if (k == write_at)
                ASSERT_EQ(write(any_pipe[1], "x", 1), 1);
            if (k < n) {
                ASSERT_GE(cancel_semaphore_release(&any_sem, 1), 0);
                atomic_fetch_add(&any_released, 1);
            }
            jitter(&s);
        }
        ASSERT_OK(cancel_source_cancel(round_src));
        meet();
    }
}

TEST(wait_any_mixed_items)
{
    enum { THREADS = ANY_WAITERS + ANY_PLAIN + 1 };
    begin();
    long rounds = harness_scale(15000);
    ASSERT_OK(pipe(any_pipe));
    ASSERT_OK(fcntl(any_pipe[0], F_SETFL, O_NONBLOCK));
    ASSERT_OK(cancel_event_init(&any_ev, false));
    ASSERT_OK(cancel_semaphore_init(&any_sem, 0, INT_MAX));
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < ANY_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, any_waiter, (void *)i));
    for (long i = 0; i < ANY_PLAIN; i++)
        ASSERT_OK(
            pthread_create(&th[ANY_WAITERS + i], NULL, any_plain, (void *)i));
    ASSERT_OK(
        pthread_create(&th[THREADS - 1], NULL, any_signaler, (void *)11L));
    for (long round = 0; round < rounds; round++) {
        round_src = cancel_source_new();
        ASSERT_NOT_NULL(round_src);
        meet();
        meet();
        ASSERT_OK(cancel_event_destroy(&any_ev));
        ASSERT_OK(cancel_semaphore_destroy(&any_sem));
        ASSERT_EQ(atomic_load(&any_taken) + cancel_semaphore_count(&any_sem),
                  atomic_load(&any_released));
        ASSERT_OK(cancel_event_reset(&any_ev));
        char buf[16];
        ASSERT_EQ(read(any_pipe[0], buf, sizeof(buf)), 1); /* one per round */
        cancel_source_free(round_src);
        round_src = NULL;
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    printf("taken %ld of %ld, event hits %ld, fd hits %ld, slept %ld\n",
           atomic_load(&any_taken), atomic_load(&any_released),
           atomic_load(&any_ev_hits), atomic_load(&any_fd_hits),
           atomic_load(&slept));
    close(any_pipe[0]);
    close(any_pipe[1]);
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- the wait handle racing the cancel ---------------------------------- */

enum { FD_MAKERS = 2 };

static atomic_int fd_seen[FD_MAKERS];

static void *fd_maker(void *arg)
{
    long id = (long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        atomic_store(&fd_seen[id],
                     cancel_token_fd(cancel_source_token(round_src)));
        meet();
    }
}

static void *fd_canceller(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        if (below(&s, 2))
            jitter(&s);
        ASSERT_OK(cancel_source_cancel(round_src));
        meet();
    }
}

TEST(token_fd_races_cancel)
{
    enum { THREADS = FD_MAKERS + 1 };
    begin();
    long rounds = harness_scale(30000);
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < FD_MAKERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, fd_maker, (void *)i));
    ASSERT_OK(pthread_create(&th[FD_MAKERS], NULL, fd_canceller, (void *)7L));
    for (long round = 0; round < rounds; round++) {
        round_src = cancel_source_new();
        ASSERT_NOT_NULL(round_src);
        meet();
        meet();
        int fd = atomic_load(&fd_seen[0]);
        ASSERT_GE(fd, 0);
        for (int i = 1; i < FD_MAKERS; i++)
            ASSERT_EQ(atomic_load(&fd_seen[i]), fd);
        /* Whoever came second, the cancel reached the fd. */
        struct pollfd p = {fd, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, 0), 1);
        ASSERT_TRUE(p.revents & POLLIN);
        cancel_source_free(round_src);
        round_src = NULL;
        errno = 0;
        ASSERT_EQ(fcntl(fd, F_GETFD), -1); /* closed with the state */
        ASSERT_EQ(errno, EBADF);
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- condition waits canceled with and without the mutex held ----------- */

enum { CW_WAITERS = 4 };

static pthread_mutex_t cw_m;
static pthread_cond_t cw_c;
static atomic_long cw_spurious;

static void *cw_waiter(void *arg)
{
    (void)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        cancel_token t = cancel_source_token(round_src);
        ASSERT_OK(pthread_mutex_lock(&cw_m));
        int r;
        for (;;) {
            long before = slept_marks();
            r = cancel_cond_wait(&cw_c, &cw_m, t, CANCEL_INFINITE);
            count_sleep(before);
            if (r != 0)
                break;
            atomic_fetch_add(&cw_spurious, 1);
        }
        ASSERT_ERR(r, -ECANCELED);
        ASSERT_OK(pthread_mutex_unlock(&cw_m)); /* ERRORCHECK: we held it */
        meet();
    }
}

/* Broadcasts now and then (wakes that return 0), then cancels - holding
 * the waiters' mutex in some rounds. */
static void *cw_canceller(void *arg)
{
    uint64_t s = seed0 ^ (uint64_t)(long)arg;
    for (;;) {
        meet();
        if (atomic_load(&stop))
            return NULL;
        unsigned n = below(&s, 4);
        for (unsigned k = 0; k < n; k++) {
            ASSERT_OK(pthread_mutex_lock(&cw_m));
            ASSERT_OK(pthread_cond_broadcast(&cw_c));
            ASSERT_OK(pthread_mutex_unlock(&cw_m));
            jitter(&s);
        }
        bool hold = below(&s, 2);
        if (hold)
            ASSERT_OK(pthread_mutex_lock(&cw_m));
        ASSERT_OK(cancel_source_cancel(round_src));
        if (hold) {
            jitter(&s);
            ASSERT_OK(pthread_mutex_unlock(&cw_m));
        }
        meet();
    }
}

TEST(cond_wait_canceled_holding_or_not)
{
    enum { THREADS = CW_WAITERS + 1 };
    begin();
    long rounds = harness_scale(10000);
    pthread_mutexattr_t a;
    ASSERT_OK(pthread_mutexattr_init(&a));
    ASSERT_OK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK));
    ASSERT_OK(pthread_mutex_init(&cw_m, &a));
    ASSERT_OK(pthread_mutexattr_destroy(&a));
    ASSERT_OK(pthread_cond_init(&cw_c, NULL));
    ASSERT_OK(pthread_barrier_init(&barrier, NULL, THREADS + 1));
    pthread_t th[THREADS];
    for (long i = 0; i < CW_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, cw_waiter, (void *)i));
    ASSERT_OK(pthread_create(&th[CW_WAITERS], NULL, cw_canceller, (void *)5L));
    for (long round = 0; round < rounds; round++) {
        round_src = cancel_source_new();
        ASSERT_NOT_NULL(round_src);
        meet();
        meet();
        cancel_source_free(round_src);
        round_src = NULL;
    }
    atomic_store(&stop, true);
    meet();
    for (int i = 0; i < THREADS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    printf("zero returns %ld, slept %ld\n", atomic_load(&cw_spurious),
           atomic_load(&slept));
    ASSERT_OK(pthread_mutex_trylock(&cw_m)); /* nobody kept it */
    ASSERT_OK(pthread_mutex_unlock(&cw_m));
    ASSERT_OK(pthread_cond_destroy(&cw_c));
    ASSERT_OK(pthread_mutex_destroy(&cw_m));
    ASSERT_OK(pthread_barrier_destroy(&barrier));
}

/* ---- manual-clock timeouts of every kind of wait ------------------------ */

enum { MC_WAITERS = 6 };

static cancel_clock *mc_clock;
static cancel_event mc_ev;
static cancel_semaphore mc_sem;
static cancel_countdown mc_cd;
static pthread_mutex_t mc_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mc_c = PTHREAD_COND_INITIALIZER;
static int mc_pipe[2];
static atomic_int mc_done;
static long mc_iterations;

/* Every wait here has nothing that could end it but its timeout, which the
 * main thread reaches by advancing the manual clock.  A wait that missed
 * its clock wake-up would sleep forever. */
static void *mc_waiter(void *arg)
{
    long id = (long)arg;
    cancel_source *src = cancel_source_new();
    cancel_token t = cancel_source_token(src);
    for (long k = 0; k < mc_iterations; k++) {
        int64_t timeout = (1 + (id + k) % 4) * MS;
        int r;
        switch ((id + k) % 7) {
        case 0:
            r = cancel_wait(t, timeout);
            break;
        case 1:
            r = cancel_sleep(t, timeout);
            ASSERT_OK(r);
            r = -ETIMEDOUT;
            break;
        case 2:
            r = cancel_event_wait(&mc_ev, t, timeout);
            break;
        case 3:
            r = cancel_semaphore_wait(&mc_sem, t, timeout);
            break;
        case 4:
            r = cancel_countdown_wait(&mc_cd, t, timeout);
            break;
        case 5: {
            cancel_waitable items[] = {
                CANCEL_WAIT_TOKEN(t),
                CANCEL_WAIT_EVENT(&mc_ev),
                CANCEL_WAIT_SEM(&mc_sem),
                CANCEL_WAIT_FD(mc_pipe[0], POLLIN),
            };
            r = cancel_wait_any(items, (id % 2) ? 4 : 3, timeout);
            break;
        }
        default:
            ASSERT_OK(pthread_mutex_lock(&mc_m));
            do
                r = cancel_cond_wait(&mc_c, &mc_m, t, timeout);
            while (r == 0); /* spurious: wait again (a new deadline) */
            ASSERT_OK(pthread_mutex_unlock(&mc_m));
            break;
        }
        ASSERT_ERR(r, -ETIMEDOUT);
    }
    ASSERT_FALSE(cancel_requested(t));
    cancel_source_free(src);
    atomic_fetch_add(&mc_done, 1);
    return NULL;
}

TEST(manual_clock_timeouts_of_every_wait)
{
    begin();
    mc_iterations = harness_scale(3000);
    mc_clock = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(mc_clock);
    ASSERT_OK(cancel_clock_install(mc_clock));
    ASSERT_OK(cancel_event_init(&mc_ev, false));
    ASSERT_OK(cancel_semaphore_init(&mc_sem, 0, 1));
    ASSERT_OK(cancel_countdown_init(&mc_cd, 1));
    ASSERT_OK(pipe(mc_pipe));
    pthread_t th[MC_WAITERS];
    for (long i = 0; i < MC_WAITERS; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, mc_waiter, (void *)i));
    long advances = 0;
    while (atomic_load(&mc_done) < MC_WAITERS) {
        ASSERT_OK(cancel_clock_advance(mc_clock, MS / 2));
        advances++;
        sched_yield();
    }
    for (int i = 0; i < MC_WAITERS; i++)
        ASSERT_OK(pthread_join(th[i], NULL));
    printf("advances %ld\n", advances);
    ASSERT_OK(cancel_event_destroy(&mc_ev));
    ASSERT_OK(cancel_semaphore_destroy(&mc_sem));
    ASSERT_OK(cancel_countdown_destroy(&mc_cd));
    ASSERT_EQ(cancel_semaphore_count(&mc_sem), 0);
    close(mc_pipe[0]);
    close(mc_pipe[1]);
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(mc_clock);
}
