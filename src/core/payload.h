/* payload.h — device telemetry and attribute JSON payloads (reference §1.0.2, §1.0.3).
 *
 * The same rules serve every transport and REST "save telemetry": a pure
 * parser of network bytes (it has a fuzz target) that keeps each number's
 * literal so the typing rules come out exactly as ThingsBoard's JsonConverter:
 * true/false -> BOOLEAN; 42 and 4.2e1 -> LONG; 42.0 -> DOUBLE; a number with
 * more than 16 fractional digits or an integer beyond int64 -> STRING;
 * numeric strings -> numbers when type casting is on; objects/arrays -> JSON;
 * null values skipped. Everything it returns lives in the caller's arena. */
#ifndef TD_CORE_PAYLOAD_H
#define TD_CORE_PAYLOAD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/arena.h"
#include "base/buf.h"
#include "base/kv.h"

struct td_payload_opts {
  bool type_cast;             /* transport.json.type_cast_enabled (default true) */
  int max_string_len;         /* 0 = unlimited */
  int max_depth;              /* nesting limit for JSON values (default 32) */
};

/* One timestamp's worth of values: one TbMsg each. has_ts is false for
 * objects without {"ts","values"}; their ts is the server time. */
struct td_ts_group {
  bool has_ts;
  int64_t ts;
  struct td_kv *kvs;
  size_t n;
};

/* td_payload_telemetry: parse the three telemetry shapes. Returns 0, or
 * TD_EPROTO with a one-line reason in err (no payload bytes are echoed). */
int td_payload_telemetry(const char *p, size_t n, const struct td_payload_opts *o, struct td_arena *a,
                         struct td_ts_group **groups, size_t *ngroups, char *err, size_t errlen);
/* td_payload_attributes: a flat JSON object of attributes (arrays refused). */
int td_payload_attributes(const char *p, size_t n, const struct td_payload_opts *o, struct td_arena *a,
                          struct td_kv **kvs, size_t *nkvs, char *err, size_t errlen);
/* td_payload_kvs_json: append {"k":v,...} with values typed so that parsing the
 * result again yields the same types (doubles always carry a '.' or exponent). */
int td_payload_kvs_json(const struct td_kv *kvs, size_t n, struct td_buf *out);
#endif
