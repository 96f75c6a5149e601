/* codec.c — MQTT 3.1/3.1.1/5.0 packet decoder: framing (td_mqtt_peek), the
 * bounded reader, UTF-8 validation, the per-packet layouts, and the small
 * helpers of codec.h (names, comparison, reason-code mapping). Encoding is in
 * codec_encode.c, v5 properties in codec_props.c. Spec references are to the
 * OASIS MQTT 3.1.1 and 5.0 standards. */
#include <string.h>

#include "base/err.h"
#include "transport/mqtt/codec_int.h"

/* ---- errors ------------------------------------------------------------ */

static const struct {
  const char *name;
  uint8_t reason;
} err_info[] = {
  [TD_MQTT_E_NONE] = {"TD_MQTT_E_NONE", 0},
  [TD_MQTT_E_VARINT] = {"TD_MQTT_E_VARINT", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_TOO_LARGE] = {"TD_MQTT_E_TOO_LARGE", TD_MQTT_RC_PACKET_TOO_LARGE},
  [TD_MQTT_E_PACKET_TYPE] = {"TD_MQTT_E_PACKET_TYPE", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_FLAGS] = {"TD_MQTT_E_FLAGS", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_QOS] = {"TD_MQTT_E_QOS", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_UTF8] = {"TD_MQTT_E_UTF8", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_TRUNCATED] = {"TD_MQTT_E_TRUNCATED", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_TRAILING] = {"TD_MQTT_E_TRAILING", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_PROP_DUP] = {"TD_MQTT_E_PROP_DUP", TD_MQTT_RC_PROTOCOL_ERROR},
  [TD_MQTT_E_PROP_NOT_ALLOWED] = {"TD_MQTT_E_PROP_NOT_ALLOWED", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_PROP_VALUE] = {"TD_MQTT_E_PROP_VALUE", TD_MQTT_RC_PROTOCOL_ERROR},
  [TD_MQTT_E_PACKET_ID] = {"TD_MQTT_E_PACKET_ID", TD_MQTT_RC_PROTOCOL_ERROR},
  [TD_MQTT_E_EMPTY_LIST] = {"TD_MQTT_E_EMPTY_LIST", TD_MQTT_RC_PROTOCOL_ERROR},
  [TD_MQTT_E_TOO_MANY] = {"TD_MQTT_E_TOO_MANY", TD_MQTT_RC_IMPLEMENTATION_SPECIFIC},
  [TD_MQTT_E_PROTOCOL_NAME] = {"TD_MQTT_E_PROTOCOL_NAME", TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION},
  [TD_MQTT_E_PROTOCOL_VERSION] = {"TD_MQTT_E_PROTOCOL_VERSION", TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION},
  [TD_MQTT_E_CONNECT_FLAGS] = {"TD_MQTT_E_CONNECT_FLAGS", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_PASSWORD] = {"TD_MQTT_E_PASSWORD", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_TOPIC] = {"TD_MQTT_E_TOPIC", TD_MQTT_RC_TOPIC_NAME_INVALID},
  [TD_MQTT_E_TOPIC_FILTER] = {"TD_MQTT_E_TOPIC_FILTER", TD_MQTT_RC_TOPIC_FILTER_INVALID},
  [TD_MQTT_E_REASON_CODE] = {"TD_MQTT_E_REASON_CODE", TD_MQTT_RC_MALFORMED_PACKET},
  [TD_MQTT_E_SUB_OPTIONS] = {"TD_MQTT_E_SUB_OPTIONS", TD_MQTT_RC_MALFORMED_PACKET},
};
#define N_ERR (sizeof err_info / sizeof err_info[0])

const char *td_mqtt_err_name(enum td_mqtt_err e) {
  return (unsigned)e < N_ERR ? err_info[e].name : "?";
}

static int set_err(struct td_mqtt_error *err, enum td_mqtt_err e) {
  err->code = e;
  err->reason = err_info[e].reason;
  return TD_EPROTO;
}

int td_mqtt_fail(struct td_mqtt_rd *r, enum td_mqtt_err e) { return set_err(r->err, e); }

const char *td_mqtt_type_name(int type) {
  static const char *const names[] = {"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
                                      "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE",
                                      "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
  return type >= 0 && type < 16 ? names[type] : "?";
}

/* ---- reader ------------------------------------------------------------ */

int td_mqtt_rd_u8(struct td_mqtt_rd *r, uint8_t *v) {
  if (r->end - r->pos < 1) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
  *v = r->p[r->pos++];
  return 0;
}

int td_mqtt_rd_u16(struct td_mqtt_rd *r, uint16_t *v) {
  if (r->end - r->pos < 2) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
  *v = (uint16_t)(r->p[r->pos] << 8 | r->p[r->pos + 1]);
  r->pos += 2;
  return 0;
}

int td_mqtt_rd_u32(struct td_mqtt_rd *r, uint32_t *v) {
  if (r->end - r->pos < 4) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
  const uint8_t *q = r->p + r->pos;
  *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
  r->pos += 4;
  return 0;
}

int td_mqtt_rd_varint(struct td_mqtt_rd *r, uint32_t *v) {
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) {
    if (r->pos >= r->end) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
    uint8_t b = r->p[r->pos++];
    x |= (uint32_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return td_mqtt_fail(r, TD_MQTT_E_VARINT);
}

int td_mqtt_rd_bin(struct td_mqtt_rd *r, struct td_mqtt_str *s) {
  uint16_t len;
  int rc = td_mqtt_rd_u16(r, &len);
  if (rc) return rc;
  if (r->end - r->pos < len) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
  s->p = (const char *)r->p + r->pos;
  s->len = len;
  r->pos += len;
  return 0;
}

int td_mqtt_rd_str(struct td_mqtt_rd *r, struct td_mqtt_str *s) {
  int rc = td_mqtt_rd_bin(r, s);
  if (rc) return rc;
  if (!td_mqtt_utf8_valid(s->p, s->len)) return td_mqtt_fail(r, TD_MQTT_E_UTF8);
  return 0;
}

/* MQTT 3.1.1 §1.5.3 / 5.0 §1.5.4: well-formed UTF-8 (RFC 3629), no surrogates
 * U+D800..U+DFFF, no U+0000. Other control characters and non-characters are
 * allowed (the specs say SHOULD NOT, the receiver MAY accept). */
bool td_mqtt_utf8_valid(const char *str, size_t n) {
  const uint8_t *s = (const uint8_t *)str;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0) return false;
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

bool td_mqtt_filter_valid(struct td_mqtt_str f) {
  if (f.len == 0) return false;
  for (size_t i = 0; i < f.len; i++) {
    char c = f.p[i];
    if (c != '+' && c != '#') continue;
    bool level_start = i == 0 || f.p[i - 1] == '/';
    bool level_end = i + 1 == f.len || f.p[i + 1] == '/';
    if (!level_start || !level_end) return false;
    if (c == '#' && i + 1 != f.len) return false;
  }
  return true;
}

/* ---- framing ----------------------------------------------------------- */

int td_mqtt_peek(const uint8_t *p, size_t n, size_t max_packet, struct td_mqtt_error *err) {
  struct td_mqtt_error dummy;
  if (!err) err = &dummy;
  memset(err, 0, sizeof *err);
  if (n < 1) return TD_EAGAIN;
  err->type = p[0] >> 4;
  if (err->type == 0) return set_err(err, TD_MQTT_E_PACKET_TYPE);
  uint32_t rl = 0;
  size_t i = 1;
  for (;; i++) {
    if (i > 4) return set_err(err, TD_MQTT_E_VARINT); /* a 5th length byte */
    if (i >= n) return TD_EAGAIN;
    rl |= (uint32_t)(p[i] & 0x7f) << (7 * (i - 1));
    if (!(p[i] & 0x80)) break;
  }
  size_t total = i + 1 + rl;
  if (max_packet == 0 || max_packet > TD_MQTT_MAX_PACKET) max_packet = TD_MQTT_MAX_PACKET;
  if (total > max_packet) return set_err(err, TD_MQTT_E_TOO_LARGE);
  return (int)total;
}

/* ---- reason codes ------------------------------------------------------ */

/* The v5 reason codes each packet may carry (MQTT 5.0 §3.x.2.1 tables). */
static const uint8_t rc_connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                                     0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

#define IN(set, v) in_set((set), sizeof(set), (v))
static bool in_set(const uint8_t *set, size_t n, uint8_t v) {
  for (size_t i = 0; i < n; i++)
    if (set[i] == v) return true;
  return false;
}

static bool reason_valid(int type, int level, uint8_t rc) {
  switch (type) {
  case TD_MQTT_CONNACK: return level < 5 ? rc <= TD_MQTT_V3_NOT_AUTHORIZED : IN(rc_connack, rc);
  case TD_MQTT_PUBACK:
  case TD_MQTT_PUBREC: return IN(rc_puback, rc);
  case TD_MQTT_PUBREL:
  case TD_MQTT_PUBCOMP: return IN(rc_pubrel, rc);
  case TD_MQTT_SUBACK:
    return level < 5 ? rc <= 2 || rc == TD_MQTT_V3_SUBACK_FAILURE : IN(rc_suback, rc);
  case TD_MQTT_UNSUBACK: return IN(rc_unsuback, rc);
  case TD_MQTT_DISCONNECT: return IN(rc_disconnect, rc);
  case TD_MQTT_AUTH: return IN(rc_auth, rc);
  }
  return false;
}

int td_mqtt_v3_connack_code(uint8_t v5_reason) {
  switch (v5_reason) {
  case TD_MQTT_RC_SUCCESS: return TD_MQTT_V3_ACCEPTED;
  case TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION: return TD_MQTT_V3_BAD_PROTOCOL_VERSION;
  case TD_MQTT_RC_CLIENT_ID_NOT_VALID: return TD_MQTT_V3_IDENTIFIER_REJECTED;
  /* ThingsBoard answers bad credentials with 0x05 on 3.x (reference §1.1.1). */
  case TD_MQTT_RC_BAD_USERNAME_OR_PASSWORD:
  case TD_MQTT_RC_NOT_AUTHORIZED:
  case TD_MQTT_RC_BANNED:
  case TD_MQTT_RC_BAD_AUTHENTICATION_METHOD: return TD_MQTT_V3_NOT_AUTHORIZED;
  case TD_MQTT_RC_UNSPECIFIED_ERROR:
  case TD_MQTT_RC_IMPLEMENTATION_SPECIFIC:
  case TD_MQTT_RC_SERVER_UNAVAILABLE:
  case TD_MQTT_RC_SERVER_BUSY:
  case TD_MQTT_RC_QUOTA_EXCEEDED:
  case TD_MQTT_RC_USE_ANOTHER_SERVER:
  case TD_MQTT_RC_SERVER_MOVED:
  case TD_MQTT_RC_CONNECTION_RATE_EXCEEDED: return TD_MQTT_V3_SERVER_UNAVAILABLE;
  }
  return TD_EINVAL;
}

/* ---- packets ----------------------------------------------------------- */

static bool has_wildcard(struct td_mqtt_str t) {
  return memchr(t.p, '+', t.len) != NULL || memchr(t.p, '#', t.len) != NULL;
}

static int dec_connect(struct td_mqtt_rd *r, struct td_mqtt_packet *out) {
  struct td_mqtt_str name;
  uint8_t lvl, fl;
  int rc;
  if ((rc = td_mqtt_rd_str(r, &name))) return rc;
  bool mqtt = td_mqtt_str_eq(name, TD_MQTT_STR("MQTT"));
  bool isdp = td_mqtt_str_eq(name, TD_MQTT_STR("MQIsdp"));
  if (!mqtt && !isdp) return td_mqtt_fail(r, TD_MQTT_E_PROTOCOL_NAME);
  if ((rc = td_mqtt_rd_u8(r, &lvl))) return rc;
  r->err->level = lvl;
  if (mqtt ? lvl != TD_MQTT_V311 && lvl != TD_MQTT_V5 : lvl != TD_MQTT_V31)
    return td_mqtt_fail(r, TD_MQTT_E_PROTOCOL_VERSION);
  out->level = lvl;
  out->u.connect.protocol_level = lvl;
  if ((rc = td_mqtt_rd_u8(r, &fl))) return rc;
  /* The reserved bit is checked from 3.1.1 on, as mosquitto does: 3.1 left it
   * unspecified. */
  if (lvl >= TD_MQTT_V311 && (fl & 0x01)) return td_mqtt_fail(r, TD_MQTT_E_CONNECT_FLAGS);
  out->u.connect.clean_start = fl & 0x02;
  out->u.connect.will = fl & 0x04;
  out->u.connect.will_qos = (fl >> 3) & 3;
  out->u.connect.will_retain = fl & 0x20;
  out->u.connect.has_password = fl & 0x40;
  out->u.connect.has_username = fl & 0x80;
  if (out->u.connect.will_qos == 3) return td_mqtt_fail(r, TD_MQTT_E_QOS);
  if (!out->u.connect.will && (out->u.connect.will_qos || out->u.connect.will_retain))
    return td_mqtt_fail(r, TD_MQTT_E_CONNECT_FLAGS);
  if (lvl == TD_MQTT_V311 && out->u.connect.has_password && !out->u.connect.has_username)
    return td_mqtt_fail(r, TD_MQTT_E_PASSWORD);
  if ((rc = td_mqtt_rd_u16(r, &out->u.connect.keep_alive))) return rc;
  if (lvl == TD_MQTT_V5 && (rc = td_mqtt_props_decode(r, TD_MQTT_CONNECT, &out->props))) return rc;
  if ((rc = td_mqtt_rd_str(r, &out->u.connect.client_id))) return rc;
  if (out->u.connect.will) {
    if (lvl == TD_MQTT_V5 && (rc = td_mqtt_props_decode(r, 0, &out->u.connect.will_props))) return rc;
    if ((rc = td_mqtt_rd_str(r, &out->u.connect.will_topic))) return rc;
    if (out->u.connect.will_topic.len == 0 || has_wildcard(out->u.connect.will_topic))
      return td_mqtt_fail(r, TD_MQTT_E_TOPIC);
    if ((rc = td_mqtt_rd_bin(r, &out->u.connect.will_payload))) return rc;
  }
  if (out->u.connect.has_username && (rc = td_mqtt_rd_str(r, &out->u.connect.username))) return rc;
  if (out->u.connect.has_password && (rc = td_mqtt_rd_bin(r, &out->u.connect.password))) return rc;
  return 0;
}

static int dec_connack(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  uint8_t fl;
  int rc;
  if ((rc = td_mqtt_rd_u8(r, &fl)) || (rc = td_mqtt_rd_u8(r, &out->reason))) return rc;
  /* In 3.1 the first byte is reserved and ignored; from 3.1.1 on bits 7-1 are
   * reserved and bit 0 is session present. */
  if (level >= TD_MQTT_V311) {
    if (fl & 0xFE) return td_mqtt_fail(r, TD_MQTT_E_FLAGS);
    out->u.connack.session_present = fl & 1;
  }
  if (!reason_valid(TD_MQTT_CONNACK, level, out->reason)) return td_mqtt_fail(r, TD_MQTT_E_REASON_CODE);
  if (out->u.connack.session_present && out->reason != 0) return td_mqtt_fail(r, TD_MQTT_E_FLAGS);
  if (level == TD_MQTT_V5) return td_mqtt_props_decode(r, TD_MQTT_CONNACK, &out->props);
  return 0;
}

static int dec_publish(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  int rc;
  if ((rc = td_mqtt_rd_str(r, &out->u.publish.topic))) return rc;
  if (out->u.publish.qos > 0) {
    if ((rc = td_mqtt_rd_u16(r, &out->packet_id))) return rc;
    if (out->packet_id == 0) return td_mqtt_fail(r, TD_MQTT_E_PACKET_ID);
  }
  if (level == TD_MQTT_V5 && (rc = td_mqtt_props_decode(r, TD_MQTT_PUBLISH, &out->props))) return rc;
  if (has_wildcard(out->u.publish.topic)) return td_mqtt_fail(r, TD_MQTT_E_TOPIC);
  /* An empty topic is only meaningful with a v5 topic alias (§3.3.2.3.4). */
  if (out->u.publish.topic.len == 0 && !(out->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS)))
    return td_mqtt_fail(r, TD_MQTT_E_TOPIC);
  out->u.publish.payload.p = (const char *)r->p + r->pos;
  out->u.publish.payload.len = r->end - r->pos;
  r->pos = r->end;
  return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. v5 (§3.4.2.1): remaining length 2 means
 * reason 0 and no properties, 3 means a reason and no properties. */
static int dec_ack(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  int rc;
  if ((rc = td_mqtt_rd_u16(r, &out->packet_id))) return rc;
  if (out->packet_id == 0) return td_mqtt_fail(r, TD_MQTT_E_PACKET_ID);
  if (level < TD_MQTT_V5 || r->pos == r->end) return 0;
  if ((rc = td_mqtt_rd_u8(r, &out->reason))) return rc;
  if (!reason_valid(out->type, level, out->reason)) return td_mqtt_fail(r, TD_MQTT_E_REASON_CODE);
  if (r->pos == r->end) return 0;
  return td_mqtt_props_decode(r, out->type, &out->props);
}

/* SUBSCRIBE and UNSUBSCRIBE. */
static int dec_subscribe(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  int rc;
  if ((rc = td_mqtt_rd_u16(r, &out->packet_id))) return rc;
  if (out->packet_id == 0) return td_mqtt_fail(r, TD_MQTT_E_PACKET_ID);
  if (level == TD_MQTT_V5 && (rc = td_mqtt_props_decode(r, out->type, &out->props))) return rc;
  bool sub = out->type == TD_MQTT_SUBSCRIBE;
  while (r->pos < r->end) {
    if (out->u.subscribe.n == TD_MQTT_MAX_TOPICS) return td_mqtt_fail(r, TD_MQTT_E_TOO_MANY);
    struct td_mqtt_sub *s = &out->u.subscribe.subs[out->u.subscribe.n++];
    if ((rc = td_mqtt_rd_str(r, &s->filter))) return rc;
    if (s->filter.len == 0) return td_mqtt_fail(r, TD_MQTT_E_TOPIC_FILTER);
    if (!sub) continue;
    if ((rc = td_mqtt_rd_u8(r, &s->opts))) return rc;
    if (TD_MQTT_SUB_QOS(s->opts) == 3) return td_mqtt_fail(r, TD_MQTT_E_QOS);
    /* 3.x: only the QoS bits; v5: bits 6-7 reserved, retain handling 3 invalid. */
    if (level < TD_MQTT_V5 ? (s->opts & 0xFC) : ((s->opts & 0xC0) || ((s->opts >> 4) & 3) == 3))
      return td_mqtt_fail(r, TD_MQTT_E_SUB_OPTIONS);
  }
  if (out->u.subscribe.n == 0) return td_mqtt_fail(r, TD_MQTT_E_EMPTY_LIST);
  return 0;
}

/* SUBACK and UNSUBACK (a 3.x UNSUBACK is just the packet id). */
static int dec_suback(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  int rc;
  if ((rc = td_mqtt_rd_u16(r, &out->packet_id))) return rc;
  if (out->packet_id == 0) return td_mqtt_fail(r, TD_MQTT_E_PACKET_ID);
  if (level < TD_MQTT_V5 && out->type == TD_MQTT_UNSUBACK) return 0;
  if (level == TD_MQTT_V5 && (rc = td_mqtt_props_decode(r, out->type, &out->props))) return rc;
  while (r->pos < r->end) {
    if (out->u.suback.n == TD_MQTT_MAX_TOPICS) return td_mqtt_fail(r, TD_MQTT_E_TOO_MANY);
    uint8_t c = r->p[r->pos++];
    if (!reason_valid(out->type, level, c)) return td_mqtt_fail(r, TD_MQTT_E_REASON_CODE);
    out->u.suback.codes[out->u.suback.n++] = c;
  }
  if (out->u.suback.n == 0) return td_mqtt_fail(r, TD_MQTT_E_EMPTY_LIST);
  return 0;
}

/* v5 DISCONNECT and AUTH: remaining length 0 means reason 0, no properties;
 * 1 means a reason and no properties (§3.14.2.2.1; tolerated for AUTH). */
static int dec_reason_props(struct td_mqtt_rd *r, int level, struct td_mqtt_packet *out) {
  int rc;
  if (level < TD_MQTT_V5 || r->pos == r->end) return 0;
  if ((rc = td_mqtt_rd_u8(r, &out->reason))) return rc;
  if (!reason_valid(out->type, level, out->reason)) return td_mqtt_fail(r, TD_MQTT_E_REASON_CODE);
  if (r->pos == r->end) return 0;
  return td_mqtt_props_decode(r, out->type, &out->props);
}

/* The fixed-header flags each type must carry (§2.2.2); PUBLISH is checked
 * on its own. */
static int check_flags(struct td_mqtt_rd *r, int type, uint8_t fl, struct td_mqtt_packet *out) {
  if (type == TD_MQTT_PUBLISH) {
    out->u.publish.dup = fl & 8;
    out->u.publish.qos = (fl >> 1) & 3;
    out->u.publish.retain = fl & 1;
    if (out->u.publish.qos == 3) return td_mqtt_fail(r, TD_MQTT_E_QOS);
    /* "The DUP flag MUST be set to 0 for all QoS 0 messages" [MQTT-3.3.1-2]. */
    if (out->u.publish.dup && out->u.publish.qos == 0) return td_mqtt_fail(r, TD_MQTT_E_FLAGS);
    return 0;
  }
  uint8_t want = (type == TD_MQTT_PUBREL || type == TD_MQTT_SUBSCRIBE || type == TD_MQTT_UNSUBSCRIBE) ? 2 : 0;
  return fl == want ? 0 : td_mqtt_fail(r, TD_MQTT_E_FLAGS);
}

int td_mqtt_decode(const uint8_t *p, size_t n, int level, size_t max_packet, struct td_mqtt_packet *out,
                   struct td_mqtt_error *err) {
  struct td_mqtt_error dummy;
  if (!err) err = &dummy;
  int total = td_mqtt_peek(p, n, max_packet, err);
  if (total < 0) return total;
  if ((size_t)total > n) return TD_EAGAIN;
  if (level != TD_MQTT_V31 && level != TD_MQTT_V5) level = TD_MQTT_V311;
  memset(out, 0, sizeof *out);
  int type = p[0] >> 4;
  out->type = (uint8_t)type;
  out->flags = p[0] & 0x0F;
  out->level = (uint8_t)level;
  size_t hdr = 2;
  while (p[hdr - 1] & 0x80) hdr++; /* td_mqtt_peek validated the length bytes */
  struct td_mqtt_rd r = {.p = p, .pos = hdr, .end = (size_t)total, .err = err};
  if (type == TD_MQTT_AUTH && level < TD_MQTT_V5) return td_mqtt_fail(&r, TD_MQTT_E_PACKET_TYPE);
  int rc = check_flags(&r, type, out->flags, out);
  if (rc) return rc;
  switch (type) {
  case TD_MQTT_CONNECT: rc = dec_connect(&r, out); break;
  case TD_MQTT_CONNACK: rc = dec_connack(&r, level, out); break;
  case TD_MQTT_PUBLISH: rc = dec_publish(&r, level, out); break;
  case TD_MQTT_PUBACK:
  case TD_MQTT_PUBREC:
  case TD_MQTT_PUBREL:
  case TD_MQTT_PUBCOMP: rc = dec_ack(&r, level, out); break;
  case TD_MQTT_SUBSCRIBE:
  case TD_MQTT_UNSUBSCRIBE: rc = dec_subscribe(&r, level, out); break;
  case TD_MQTT_SUBACK:
  case TD_MQTT_UNSUBACK: rc = dec_suback(&r, level, out); break;
  case TD_MQTT_PINGREQ:
  case TD_MQTT_PINGRESP: break;
  case TD_MQTT_DISCONNECT:
  case TD_MQTT_AUTH: rc = dec_reason_props(&r, level, out); break;
  }
  if (rc) return rc;
  if (r.pos != r.end) return td_mqtt_fail(&r, TD_MQTT_E_TRAILING);
  return total;
}

/* ---- comparison -------------------------------------------------------- */

bool td_mqtt_packet_equal(const struct td_mqtt_packet *a, const struct td_mqtt_packet *b) {
  if (a->type != b->type || a->flags != b->flags || a->level != b->level || a->reason != b->reason ||
      a->packet_id != b->packet_id || !td_mqtt_props_equal(&a->props, &b->props))
    return false;
  switch (a->type) {
  case TD_MQTT_CONNECT: {
    /* Fields behind a cleared flag are not part of the packet. */
    const struct td_mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
    return x->protocol_level == y->protocol_level && x->clean_start == y->clean_start && x->will == y->will &&
           x->will_retain == y->will_retain && x->has_username == y->has_username &&
           x->has_password == y->has_password && x->will_qos == y->will_qos && x->keep_alive == y->keep_alive &&
           td_mqtt_str_eq(x->client_id, y->client_id) &&
           (!x->will || (td_mqtt_str_eq(x->will_topic, y->will_topic) &&
                         td_mqtt_str_eq(x->will_payload, y->will_payload) &&
                         td_mqtt_props_equal(&x->will_props, &y->will_props))) &&
           (!x->has_username || td_mqtt_str_eq(x->username, y->username)) &&
           (!x->has_password || td_mqtt_str_eq(x->password, y->password));
  }
  case TD_MQTT_CONNACK: return a->u.connack.session_present == b->u.connack.session_present;
  case TD_MQTT_PUBLISH:
    return a->u.publish.qos == b->u.publish.qos && a->u.publish.dup == b->u.publish.dup &&
           a->u.publish.retain == b->u.publish.retain && td_mqtt_str_eq(a->u.publish.topic, b->u.publish.topic) &&
           td_mqtt_str_eq(a->u.publish.payload, b->u.publish.payload);
  case TD_MQTT_SUBSCRIBE:
  case TD_MQTT_UNSUBSCRIBE:
    if (a->u.subscribe.n != b->u.subscribe.n || a->u.subscribe.n > TD_MQTT_MAX_TOPICS) return false;
    for (size_t i = 0; i < a->u.subscribe.n; i++)
      if (a->u.subscribe.subs[i].opts != b->u.subscribe.subs[i].opts ||
          !td_mqtt_str_eq(a->u.subscribe.subs[i].filter, b->u.subscribe.subs[i].filter))
        return false;
    return true;
  case TD_MQTT_SUBACK:
  case TD_MQTT_UNSUBACK:
    return a->u.suback.n == b->u.suback.n && a->u.suback.n <= TD_MQTT_MAX_TOPICS &&
           memcmp(a->u.suback.codes, b->u.suback.codes, a->u.suback.n) == 0;
  }
  return true;
}
