/* errkind.c — failure counts by kind (see errkind.h). */
#include "errkind.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void bench_errkind_count(struct bench_errkind *errs, const char *name) {
  for (int i = 0; i < BENCH_ERRKINDS; i++) {
    if (errs[i].name[0] == '\0') snprintf(errs[i].name, sizeof errs[i].name, "%s", name);
    if (strncmp(errs[i].name, name, sizeof errs[i].name - 1) == 0) {
      errs[i].n++;
      return;
    }
  }
  errs[BENCH_ERRKINDS - 1].n++; /* table full: lump into the last kind */
}

void bench_errkind_merge(struct bench_errkind *into, size_t *n, size_t cap, const struct bench_errkind *from,
                         size_t nfrom) {
  for (size_t k = 0; k < nfrom && from[k].name[0]; k++) {
    size_t j = 0;
    while (j < *n && strcmp(into[j].name, from[k].name) != 0) j++;
    if (j == *n) {
      if (*n == cap) continue;
      into[(*n)++] = from[k];
    } else {
      into[j].n += from[k].n;
    }
  }
}

void bench_errkind_json(char *buf, size_t cap, const struct bench_errkind *errs, size_t n) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < n; k++)
    if (len + 64 < cap)
      len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\":%" PRIu64, len ? "," : "", errs[k].name, errs[k].n);
}
