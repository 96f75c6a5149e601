/* fuzz_payload.c — libFuzzer target for device JSON payloads (src/core/payload.c).
 * Any input must be accepted or refused with TD_EPROTO (TD_ENOMEM only at the
 * arena limit); an accepted payload's kvs JSON must parse back as attributes
 * with the same number of values and the same types. The first byte picks the
 * options (type cast on/off, a string length limit). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "core/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct td_kv *kvs, size_t n, const struct td_payload_opts *o) {
  struct td_buf b;
  td_buf_init(&b, 0);
  if (td_payload_kvs_json(kvs, n, &b) != 0) abort();
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv *k2;
  size_t n2;
  char err[128];
  struct td_payload_opts o2 = *o;
  o2.max_string_len = 0;
  o2.max_depth = 1000; /* JSON values were within the limit already */
  bool has_double = false;
  for (size_t i = 0; i < n; i++) has_double |= kvs[i].type == TD_KV_DOUBLE;
  int rc = td_payload_attributes(b.data, b.len, &o2, &a, &k2, &n2, err, sizeof err);
  /* Without type cast a double whose text needs > 16 fractional digits is refused
   * on the way back (ThingsBoard's rule); with it, it becomes a STRING. */
  if (rc != 0 && !(rc == TD_EPROTO && has_double && !o->type_cast)) abort();
  if (rc == 0) {
    if (n2 != n) abort();
    for (size_t i = 0; i < n; i++)
      if (k2[i].type != kvs[i].type && !(kvs[i].type == TD_KV_DOUBLE && k2[i].type == TD_KV_STRING)) abort();
  }
  td_arena_deinit(&a);
  td_buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  struct td_payload_opts o = {.type_cast = data[0] & 1, .max_string_len = (data[0] & 2) ? 8 : 0, .max_depth = 16};
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  struct td_arena a;
  td_arena_init(&a, 1 << 24);
  char err[128];
  struct td_ts_group *g;
  size_t ng;
  int rc = td_payload_telemetry(p, n, &o, &a, &g, &ng, err, sizeof err);
  if (rc != 0 && rc != TD_EPROTO && rc != TD_ENOMEM) abort();
  if (rc == 0)
    for (size_t i = 0; i < ng; i++) check_roundtrip(g[i].kvs, g[i].n, &o);
  struct td_kv *kvs;
  size_t nk;
  rc = td_payload_attributes(p, n, &o, &a, &kvs, &nk, err, sizeof err);
  if (rc != 0 && rc != TD_EPROTO && rc != TD_ENOMEM) abort();
  if (rc == 0) check_roundtrip(kvs, nk, &o);
  td_arena_deinit(&a);
  return 0;
}
