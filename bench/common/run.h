/* run.h — what the main thread of every bench tool needs: the phases it
 * drives its worker threads through, monotonic clocks, and the process's
 * descriptor limit.
 *
 * Where it sits: bench/common (the benchcommon library that every bench tool
 * links, see CMakeLists.txt); no state, callable from any thread. */
#ifndef BENCH_COMMON_RUN_H
#define BENCH_COMMON_RUN_H
#include <stdint.h>

/* The phases of a load run. The main thread stores the current one in an
 * atomic_int; each worker's tick timer notices the change. */
enum bench_phase {
  BENCH_CONNECT, /* connect everything, bounded by a timeout */
  BENCH_RUN,     /* the measured part */
  BENCH_DRAIN,   /* nothing new is sent; wait (bounded) for what is outstanding */
  BENCH_STOP,    /* say goodbye, close everything, end the worker loops */
};

/* Monotonic time (libuv's uv_hrtime) in microseconds. */
uint64_t bench_now_us(void);
/* Monotonic time in milliseconds. */
uint64_t bench_now_ms(void);
/* Monotonic time in seconds, with fractions. */
double bench_mono_s(void);
/* Sleep ms milliseconds (the main thread's polling step). */
void bench_sleep_ms(int ms);
/* Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in
 * force (0 if it cannot be read). Main thread, before any connection. */
uint64_t bench_raise_nofile(void);
/* What the whole process has used so far (getrusage RUSAGE_SELF). */
struct bench_usage {
  double user_s, sys_s; /* CPU seconds */
  long maxrss_kb;       /* peak RSS */
};
void bench_usage_get(struct bench_usage *u);
#endif
