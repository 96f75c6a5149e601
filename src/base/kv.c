/* kv.c — text forms of typed values (kv.h). */
#include "base/kv.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *td_kv_type_name(enum td_kv_type t) {
  static const char *n[] = {"BOOLEAN", "LONG", "DOUBLE", "STRING", "JSON"};
  return (unsigned)t <= TD_KV_JSON ? n[t] : "STRING";
}

void td_kv_double_str(double d, char out[TD_KV_NUM_LEN]) {
  if (isnan(d)) { strcpy(out, "NaN"); return; }
  if (isinf(d)) { strcpy(out, d > 0 ? "Infinity" : "-Infinity"); return; }
  double a = fabs(d);
  char tmp[TD_KV_NUM_LEN];
  if (d == 0 || (a >= 1e-3 && a < 1e7)) {
    /* Plain notation with at least one fractional digit, like Java. */
    int prec = 1;
    for (; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*f", prec, d);
      if (strtod(tmp, NULL) == d) break;
    }
    /* drop trailing zeros but keep one fractional digit */
    size_t len = strlen(tmp);
    while (len > 2 && tmp[len - 1] == '0' && tmp[len - 2] != '.') tmp[--len] = '\0';
    memcpy(out, tmp, len + 1);
    return;
  }
  /* Scientific: shortest mantissa, "E" exponent, mantissa always with a '.'. */
  int prec = 0;
  for (; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  char *e = strchr(tmp, 'e');
  int exp10 = atoi(e + 1);
  *e = '\0';
  if (!strchr(tmp, '.')) strcat(tmp, ".0");
  snprintf(out, TD_KV_NUM_LEN, "%.30sE%d", tmp, exp10);
}

int td_kv_append_json_value(struct td_buf *b, const struct td_kv *kv) {
  char num[TD_KV_NUM_LEN];
  switch (kv->type) {
  case TD_KV_BOOLEAN: return td_buf_puts(b, kv->v.b ? "true" : "false");
  case TD_KV_LONG: return td_buf_printf(b, "%" PRId64, kv->v.l);
  case TD_KV_DOUBLE:
    if (!isfinite(kv->v.d)) { td_kv_double_str(kv->v.d, num); return td_buf_json_str(b, num); }
    td_kv_double_str(kv->v.d, num);
    return td_buf_puts(b, num);
  case TD_KV_JSON: return td_buf_puts(b, kv->v.s ? kv->v.s : "null");
  case TD_KV_STRING:
  default: return td_buf_json_str(b, kv->v.s ? kv->v.s : "");
  }
}

int td_kv_append_string_value(struct td_buf *b, const struct td_kv *kv) {
  char num[TD_KV_NUM_LEN];
  switch (kv->type) {
  case TD_KV_BOOLEAN: return td_buf_puts(b, kv->v.b ? "\"true\"" : "\"false\"");
  case TD_KV_LONG: return td_buf_printf(b, "\"%" PRId64 "\"", kv->v.l);
  case TD_KV_DOUBLE: td_kv_double_str(kv->v.d, num); return td_buf_json_str(b, num);
  case TD_KV_JSON:
  case TD_KV_STRING:
  default: return td_buf_json_str(b, kv->v.s ? kv->v.s : "");
  }
}
