/* Counts the bytes that the calling thread asks the allocator for, by
 * replacing malloc and friends (glibc allows it: see "Replacing malloc" in
 * its manual) and forwarding every call to glibc's own implementation.
 * Linked into bench_sizes only, so that the timing program runs on the
 * untouched allocator.  Every library of the process (libcancel, libstdc++,
 * GLib) allocates through these functions.  Counting is per thread: the
 * library's timer thread does not disturb a measurement. */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>

#include "alloc_count.h"

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

static _Thread_local int counting;
static _Thread_local long n_allocs;
static _Thread_local long n_bytes;

static void note(size_t n)
{
    if (counting) {
        n_allocs++;
        n_bytes += (long)n;
    }
}

void bench_count_start(void)
{
    n_allocs = 0;
    n_bytes = 0;
    counting = 1;
}

void bench_count_stop(long *allocs, long *bytes)
{
    counting = 0;
    *allocs = n_allocs;
    *bytes = n_bytes;
}

void *malloc(size_t n)
{
    note(n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    note(n * size);
    return __libc_calloc(n, size);
}

/* A realloc counts as one request for the bytes it adds. */
void *realloc(void *p, size_t n)
{
    size_t old = p != NULL ? malloc_usable_size(p) : 0;
    note(n > old ? n - old : 0);
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    note(n);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    note(n);
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;
    if (align == 0 || (align & (align - 1)) != 0 || align % sizeof(void *))
        return EINVAL;
    note(n);
    p = __libc_memalign(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}
