/* topics.c — the device topics of reference §1.1.2 (v1) and §1.1.4 (v2
 * short, JSON only) as exact strings: a publish topic names an operation
 * (with its {requestId} suffix), a subscription filter must be on the
 * whitelist. No wildcard matching: ThingsBoard compares strings too. */
#include <string.h>

#include "transport/mqtt/mqtt_int.h"

static bool eq(struct td_mqtt_str t, const char *s) {
  size_t n = strlen(s);
  return t.len == n && memcmp(t.p, s, n) == 0;
}

/* suffix_id: t starts with prefix and the rest is an int32 (Integer.parseInt:
 * optional sign, decimal digits, no blanks). 1 = match with id, 0 = prefix
 * does not match, -1 = prefix matches but the id is bad. */
static int suffix_id(struct td_mqtt_str t, const char *prefix, int32_t *id) {
  size_t n = strlen(prefix);
  if (t.len < n || memcmp(t.p, prefix, n) != 0) return 0;
  const char *p = t.p + n, *e = t.p + t.len;
  bool neg = false;
  if (p < e && (*p == '-' || *p == '+')) neg = *p++ == '-';
  if (p == e || e - p > 11) return -1;
  int64_t v = 0;
  for (; p < e; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  if (neg) v = -v;
  if (v < INT32_MIN || v > INT32_MAX) return -1;
  *id = (int32_t)v;
  return 1;
}

enum mtopic mqtt_topic_parse(struct td_mqtt_str t, enum mfam *fam, int32_t *id, bool *id_bad) {
  *fam = FAM_V1;
  *id = 0;
  *id_bad = false;
  if (eq(t, "v1/devices/me/telemetry")) return T_TELEMETRY;
  if (eq(t, "v1/devices/me/attributes")) return T_ATTRIBUTES;
  if (eq(t, "v1/devices/me/claim")) return T_CLAIM;
  if (eq(t, "/provision/request")) return T_PROVISION;
  if (t.len > 11 && !memcmp(t.p, "v1/gateway/", 11)) {
    if (eq(t, "v1/gateway/connect")) return T_GW_CONNECT;
    if (eq(t, "v1/gateway/disconnect")) return T_GW_DISCONNECT;
    if (eq(t, "v1/gateway/telemetry")) return T_GW_TELEMETRY;
    if (eq(t, "v1/gateway/attributes")) return T_GW_ATTRIBUTES;
    if (eq(t, "v1/gateway/attributes/request")) return T_GW_ATTR_REQUEST;
    if (eq(t, "v1/gateway/rpc")) return T_GW_RPC;
    if (eq(t, "v1/gateway/claim")) return T_GW_CLAIM;
    return T_UNKNOWN;
  }
  static const struct {
    const char *prefix;
    enum mtopic topic;
    enum mfam fam;
  } with_id[] = {
    {"v1/devices/me/attributes/request/", T_ATTR_REQUEST, FAM_V1},
    {"v1/devices/me/rpc/response/", T_RPC_RESPONSE, FAM_V1},
    {"v1/devices/me/rpc/request/", T_RPC_REQUEST, FAM_V1},
    {"v2/a/req/j/", T_ATTR_REQUEST, FAM_V2},
    {"v2/a/req/", T_ATTR_REQUEST, FAM_V2},
    {"v2/r/res/j/", T_RPC_RESPONSE, FAM_V2},
    {"v2/r/res/", T_RPC_RESPONSE, FAM_V2},
    {"v2/r/req/j/", T_RPC_REQUEST, FAM_V2},
    {"v2/r/req/", T_RPC_REQUEST, FAM_V2},
  };
  for (size_t i = 0; i < sizeof with_id / sizeof *with_id; i++) {
    int r = suffix_id(t, with_id[i].prefix, id);
    if (r == 0) continue;
    *fam = with_id[i].fam;
    if (r < 0) {
      /* "v2/a/req/j/5" also starts with "v2/a/req/": only a bad id after the
       * longest matching prefix counts */
      *id_bad = true;
      continue;
    }
    *id_bad = false;
    return with_id[i].topic;
  }
  if (*id_bad) return T_UNKNOWN;
  *fam = FAM_V2;
  if (eq(t, "v2/t") || eq(t, "v2/t/j")) return T_TELEMETRY;
  if (eq(t, "v2/a") || eq(t, "v2/a/j")) return T_ATTRIBUTES;
  *fam = FAM_V1;
  return T_UNKNOWN;
}

int mqtt_filter_parse(struct td_mqtt_str f, enum mfam *fam) {
  static const struct {
    const char *filter;
    int sub;
    enum mfam fam;
  } wl[] = {
    {"v1/devices/me/attributes", SUB_ATTR, FAM_V1},
    {"v1/devices/me/attributes/response/+", SUB_ATTR_RESP, FAM_V1},
    {"v1/devices/me/rpc/request/+", SUB_RPC, FAM_V1},
    {"v1/devices/me/rpc/response/+", SUB_RPC_RESP, FAM_V1},
    {"v2/a", SUB_ATTR, FAM_V2},
    {"v2/a/j", SUB_ATTR, FAM_V2},
    {"v2/a/res/+", SUB_ATTR_RESP, FAM_V2},
    {"v2/a/res/j/+", SUB_ATTR_RESP, FAM_V2},
    {"v2/r/req/+", SUB_RPC, FAM_V2},
    {"v2/r/req/j/+", SUB_RPC, FAM_V2},
    {"v2/r/res/+", SUB_RPC_RESP, FAM_V2},
    {"v2/r/res/j/+", SUB_RPC_RESP, FAM_V2},
    {"v2/fw/response/+/chunk/+", SUB_OTA, FAM_V2},
    {"v2/fw/error", SUB_OTA, FAM_V2},
    {"v2/sw/response/+/chunk/+", SUB_OTA, FAM_V2},
    {"v2/sw/error", SUB_OTA, FAM_V2},
    {"/provision/response", SUB_PROVISION, FAM_V1},
    {"v1/gateway/attributes", SUB_GW_ATTR, FAM_V1},
    {"v1/gateway/rpc", SUB_GW_RPC, FAM_V1},
    {"v1/gateway/attributes/response", SUB_GW_ATTR_RESP, FAM_V1},
  };
  for (size_t i = 0; i < sizeof wl / sizeof *wl; i++) {
    if (eq(f, wl[i].filter)) {
      *fam = wl[i].fam;
      return wl[i].sub;
    }
  }
  return -1;
}
