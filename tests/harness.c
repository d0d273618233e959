/* The test runner: see harness.h. */
#define _GNU_SOURCE /* syscall, O_CLOEXEC */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HARNESS_MAX 512

static struct {
    const char *name;
    harness_fn *fn;
} tests[HARNESS_MAX];
static int ntests;

void harness_register(const char *name, harness_fn *fn)
{
    if (ntests == HARNESS_MAX) {
        fprintf(stderr, "harness: too many tests\n");
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void harness_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
};

_Static_assert(sizeof(struct gate *) <= sizeof(harness_gate), "gate");

void harness_gate_init(harness_gate *g)
{
    struct gate *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    g->impl_[0] = p;
}

void harness_gate_open(harness_gate *g)
{
    struct gate *p = g->impl_[0];
    pthread_mutex_lock(&p->mu);
    p->open = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void harness_gate_wait(harness_gate *g)
{
    struct gate *p = g->impl_[0];
    pthread_mutex_lock(&p->mu);
    while (!p->open)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

bool harness_gate_is_open(harness_gate *g)
{
    struct gate *p = g->impl_[0];
    pthread_mutex_lock(&p->mu);
    bool open = p->open;
    pthread_mutex_unlock(&p->mu);
    return open;
}

void harness_gate_destroy(harness_gate *g)
{
    struct gate *p = g->impl_[0];
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    g->impl_[0] = NULL;
}

pid_t harness_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

char harness_proc_state(const char *stat_path)
{
    char buf[512];
    int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may contain anything */
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

bool harness_thread_asleep(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    return harness_proc_state(path) == 'S';
}

cancel_clock *harness_manual_clock(void)
{
    cancel_clock *c = cancel_clock_new_manual(0);
    ASSERT_NOT_NULL(c);
    ASSERT_OK(cancel_clock_install(c));
    return c;
}

void harness_manual_clock_done(cancel_clock *c)
{
    ASSERT_OK(cancel_clock_install(NULL));
    cancel_clock_free(c);
}

static void *call_main(void *arg)
{
    harness_call *c = arg;
    atomic_store(&c->tid, harness_gettid());
    atomic_store(&c->entered, true);
    c->result = c->fn(c->arg);
    c->recorded = cancel_canceled_token();
    atomic_store(&c->done, true);
    return NULL;
}

void harness_call_start(harness_call *c, int (*fn)(void *arg), void *arg)
{
    memset(c, 0, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    ASSERT_OK(pthread_create(&c->th, NULL, call_main, c));
}

void harness_call_await_asleep(harness_call *c)
{
    while (!atomic_load(&c->entered))
        sched_yield();
    while (!atomic_load(&c->done) &&
           !harness_thread_asleep(atomic_load(&c->tid)))
        sched_yield();
}

int harness_call_finish(harness_call *c)
{
    ASSERT_OK(pthread_join(c->th, NULL));
    ASSERT_TRUE(atomic_load(&c->done));
    return c->result;
}

long harness_scale(long n)
{
    const char *s = getenv("CANCEL_TEST_SCALE");
    long k = s ? strtol(s, NULL, 10) : 1;
    if (k < 1)
        k = 1;
#if defined(__SANITIZE_THREAD__)
    n /= 4;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    n /= 4;
#endif
#endif
    /* Valgrind runs threads one at a time, tens of times slower. */
    const char *d = getenv("CANCEL_TEST_DIV");
    long div = d ? strtol(d, NULL, 10) : 1;
    if (div > 1)
        n /= div;
    return n * k > 0 ? n * k : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    int ran = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        if (argc <= 1)
            printf("[ RUN  ] %s\n", tests[i].name);
        tests[i].fn();
        if (argc <= 1)
            printf("[  OK  ] %s\n", tests[i].name);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "harness: no test named %s\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return 0;
}
