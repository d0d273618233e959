/* Per-thread allocation counting for bench_sizes (see alloc_count.c). */
#ifndef CANCEL_BENCH_ALLOC_COUNT_H
#define CANCEL_BENCH_ALLOC_COUNT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Start counting the calling thread's allocation requests from zero. */
void bench_count_start(void);
/* Stop, and report the number of requests and the bytes requested. */
void bench_count_stop(long *allocs, long *bytes);

#ifdef __cplusplus
}
#endif

#endif /* CANCEL_BENCH_ALLOC_COUNT_H */
