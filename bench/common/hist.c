/* hist.c — log-linear latency histogram (see hist.h). */
#include "hist.h"

#define SUB BENCH_HIST_SUB

static size_t hist_index(uint64_t v) {
  if (v < SUB) return (size_t)v;
  int msb = 63 - __builtin_clzll(v);
  int e = msb - BENCH_HIST_SUB_BITS; /* >= 0 */
  if (e > BENCH_HIST_MAX_EXP) return BENCH_HIST_BUCKETS - 1;
  uint64_t m = v >> e; /* in [SUB, 2*SUB) */
  return SUB + (size_t)e * SUB + (size_t)(m - SUB);
}

/* Largest value that falls into bucket idx. */
static uint64_t hist_upper(size_t idx) {
  if (idx < SUB) return idx;
  size_t e = (idx - SUB) / SUB, m = SUB + (idx - SUB) % SUB;
  return (((uint64_t)m + 1) << e) - 1;
}

void bench_hist_add(struct bench_hist *h, uint64_t v) {
  h->count[hist_index(v)]++;
  h->n++;
  h->sum += v;
  if (v > h->max) h->max = v;
  if (h->n == 1 || v < h->min) h->min = v;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *h) {
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) into->count[i] += h->count[i];
  if (h->n && (into->n == 0 || h->min < into->min)) into->min = h->min;
  into->n += h->n;
  into->sum += h->sum;
  if (h->max > into->max) into->max = h->max;
}

uint64_t bench_hist_pct(const struct bench_hist *h, double pct) {
  if (!h->n) return 0;
  uint64_t want = (uint64_t)((double)h->n * pct / 100.0 + 0.5), acc = 0;
  if (want < 1) want = 1;
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
    acc += h->count[i];
    if (acc >= want) {
      uint64_t u = hist_upper(i);
      return u > h->max ? h->max : u;
    }
  }
  return h->max;
}

double bench_hist_mean(const struct bench_hist *h) { return h->n ? (double)h->sum / (double)h->n : 0; }
