/* hist.h — the latency histogram of the bench tools: log-linear, 128
 * sub-buckets per power of two (< 1% error), fixed size, so a run of any
 * length records every sample without keeping one per message.
 *
 * Where it sits: bench/common (benchcommon). A histogram has one owner
 * thread; the main thread merges the workers' histograms after joining them. */
#ifndef BENCH_COMMON_HIST_H
#define BENCH_COMMON_HIST_H
#include <stddef.h>
#include <stdint.h>

#define BENCH_HIST_SUB_BITS 7
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_MAX_EXP 34 /* values up to 2^(34+7), far beyond any run */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB + (BENCH_HIST_MAX_EXP + 1) * BENCH_HIST_SUB)

/* Zero-initialised storage is an empty histogram. */
struct bench_hist {
  uint64_t count[BENCH_HIST_BUCKETS];
  uint64_t n, sum, max, min;
};

/* Record one sample v (any unit; the tools use microseconds). */
void bench_hist_add(struct bench_hist *h, uint64_t v);
/* Add every sample of h to into. */
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *h);
/* The pct-th percentile (0 < pct <= 100): the upper bound of its bucket, at
 * most the largest sample; 0 for an empty histogram. */
uint64_t bench_hist_pct(const struct bench_hist *h, double pct);
/* The mean of the samples; 0 for an empty histogram. */
double bench_hist_mean(const struct bench_hist *h);
#endif
