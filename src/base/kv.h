/* kv.h — typed key/value pairs: what telemetry and attributes are made of.
 *
 * Types and their numbers are ThingsBoard's KeyValueType (BOOLEAN_V=0 ...
 * JSON_V=4). A td_kv does not own its strings: they live in whatever arena or
 * message the kv came from. */
#ifndef TD_BASE_KV_H
#define TD_BASE_KV_H
#include <stdbool.h>
#include <stdint.h>
#include "base/buf.h"

enum td_kv_type { TD_KV_BOOLEAN = 0, TD_KV_LONG = 1, TD_KV_DOUBLE = 2, TD_KV_STRING = 3, TD_KV_JSON = 4 };

struct td_kv {
  const char *key;
  enum td_kv_type type;
  union {
    bool b;
    int64_t l;
    double d;
    const char *s; /* STRING: the text; JSON: compact JSON text */
  } v;
};

/* td_kv_type_name: "BOOLEAN", "LONG", "DOUBLE", "STRING", "JSON". */
const char *td_kv_type_name(enum td_kv_type t);

/* td_kv_append_json_value: the value as a typed JSON value (true, 42, 1.5,
 * "text", or the JSON itself) — what attribute REST and strict timeseries return. */
int td_kv_append_json_value(struct td_buf *b, const struct td_kv *kv);
/* td_kv_append_string_value: the value as ThingsBoard's string form, quoted
 * ("true", "42", "1.5", "text", "{\"a\":1}") — what non-strict timeseries return. */
int td_kv_append_string_value(struct td_buf *b, const struct td_kv *kv);
/* td_kv_double_str: ThingsBoard (Java Double.toString-compatible enough) text of a
 * double into out (TD_KV_NUM_LEN bytes): 1.0 -> "1.0", 21.5 -> "21.5". */
#define TD_KV_NUM_LEN 48
void td_kv_double_str(double d, char out[TD_KV_NUM_LEN]);
#endif
