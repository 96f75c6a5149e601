/* errkind.h — counts of failures by kind ("ECONNREFUSED", "connack_0x05",
 * ...) for the bench tools' summaries: a small fixed table per worker thread,
 * merged by the main thread and printed as the body of a JSON object.
 *
 * Where it sits: bench/common (benchcommon). A table has one owner thread. */
#ifndef BENCH_COMMON_ERRKIND_H
#define BENCH_COMMON_ERRKIND_H
#include <stddef.h>
#include <stdint.h>

#define BENCH_ERRKINDS 16 /* kinds per worker table */

/* A table is an array of BENCH_ERRKINDS (zeroed: empty); used entries come
 * first, an empty name ends them. */
struct bench_errkind {
  char name[40];
  uint64_t n;
};

/* Count one failure of kind name (truncated to 39 bytes) in a table of
 * BENCH_ERRKINDS; when the table is full it goes to the last kind. */
void bench_errkind_count(struct bench_errkind *errs, const char *name);
/* Add the first nfrom entries of from (up to an empty name) into the list
 * into[0..*n), which holds at most cap; kinds beyond cap are dropped. */
void bench_errkind_merge(struct bench_errkind *into, size_t *n, size_t cap, const struct bench_errkind *from,
                         size_t nfrom);
/* Write errs[0..n) as "\"kind\":count,..." (a JSON object's body, nothing for
 * n == 0) into buf (cap bytes, always NUL-terminated); stops before it would
 * get within 64 bytes of the end. */
void bench_errkind_json(char *buf, size_t cap, const struct bench_errkind *errs, size_t n);
#endif
