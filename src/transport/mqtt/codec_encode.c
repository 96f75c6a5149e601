/* codec_encode.c — MQTT 3.1/3.1.1/5.0 packet encoder (codec.h).
 *
 * Each packet body is written by one function that runs twice: first into a
 * counting writer to learn the remaining length, then into the td_buf after
 * one td_buf_reserve() of the exact total. So the fixed header is written in
 * place, the payload is copied once, and a failure leaves the buffer as it
 * was. Property blocks are in codec_props.c. */
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "transport/mqtt/codec_int.h"

/* ---- writer ------------------------------------------------------------ */

void td_mqtt_wr_bytes(struct td_mqtt_wr *w, const void *p, size_t len) {
  if (w->count) {
    w->n += len;
    return;
  }
  if (len && w->rc == 0) {
    int rc = td_buf_append(w->b, p, len);
    if (rc) w->rc = rc;
  }
}

void td_mqtt_wr_u8(struct td_mqtt_wr *w, uint8_t v) { td_mqtt_wr_bytes(w, &v, 1); }

void td_mqtt_wr_u16(struct td_mqtt_wr *w, uint16_t v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  td_mqtt_wr_bytes(w, b, 2);
}

void td_mqtt_wr_u32(struct td_mqtt_wr *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  td_mqtt_wr_bytes(w, b, 4);
}

size_t td_mqtt_varint_len(uint32_t v) { return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4; }

void td_mqtt_wr_varint(struct td_mqtt_wr *w, uint32_t v) {
  uint8_t b[4];
  size_t n = 0;
  if (v > TD_MQTT_MAX_REMAINING) {
    w->rc = TD_EINVAL;
    return;
  }
  do {
    b[n] = v & 0x7f;
    v >>= 7;
    if (v) b[n] |= 0x80;
    n++;
  } while (v);
  td_mqtt_wr_bytes(w, b, n);
}

void td_mqtt_wr_str(struct td_mqtt_wr *w, struct td_mqtt_str s) {
  if (s.len > 0xFFFF) {
    w->rc = TD_EINVAL;
    return;
  }
  td_mqtt_wr_u16(w, (uint16_t)s.len);
  td_mqtt_wr_bytes(w, s.p, s.len);
}

/* ---- framing ----------------------------------------------------------- */

typedef void td_mqtt_body_fn(struct td_mqtt_wr *w, const void *ctx);

/* Count the body, reserve, write fixed header + body; undo on failure. */
static int emit(struct td_buf *b, uint8_t first, td_mqtt_body_fn *body, const void *ctx) {
  struct td_mqtt_wr c = {.count = true};
  body(&c, ctx);
  if (c.rc) return c.rc;
  if (c.n > TD_MQTT_MAX_REMAINING) return TD_EINVAL;
  size_t total = 1 + td_mqtt_varint_len((uint32_t)c.n) + c.n;
  int rc = td_buf_reserve(b, total);
  if (rc) return rc;
  size_t start = b->len;
  struct td_mqtt_wr w = {.b = b};
  td_mqtt_wr_u8(&w, first);
  td_mqtt_wr_varint(&w, (uint32_t)c.n);
  body(&w, ctx);
  TD_BUG_ON(w.rc == 0 && b->len - start != total, "mqtt encoder passes disagree");
  if (w.rc) {
    b->len = start;
    if (b->cap) b->data[start] = '\0';
  }
  return w.rc;
}

/* ---- bodies ------------------------------------------------------------ */

struct publish_args {
  int level, qos;
  uint16_t packet_id;
  struct td_mqtt_str topic, payload;
  const struct td_mqtt_props *props;
};

static void body_publish(struct td_mqtt_wr *w, const void *ctx) {
  const struct publish_args *a = ctx;
  td_mqtt_wr_str(w, a->topic);
  if (a->qos > 0) td_mqtt_wr_u16(w, a->packet_id);
  if (a->level == TD_MQTT_V5) td_mqtt_props_encode(w, TD_MQTT_PUBLISH, a->props);
  td_mqtt_wr_bytes(w, a->payload.p, a->payload.len);
}

struct pkt_args {
  int level;
  const struct td_mqtt_packet *pkt;
};

static void body_connect(struct td_mqtt_wr *w, const struct td_mqtt_packet *p) {
  const struct td_mqtt_connect *c = &p->u.connect;
  int lvl = c->protocol_level;
  td_mqtt_wr_str(w, lvl == TD_MQTT_V31 ? TD_MQTT_STR("MQIsdp") : TD_MQTT_STR("MQTT"));
  td_mqtt_wr_u8(w, (uint8_t)lvl);
  if (c->will_qos > 2) w->rc = TD_EINVAL;
  td_mqtt_wr_u8(w, (uint8_t)((c->has_username ? 0x80 : 0) | (c->has_password ? 0x40 : 0) |
                             (c->will_retain ? 0x20 : 0) | (c->will_qos & 3) << 3 | (c->will ? 0x04 : 0) |
                             (c->clean_start ? 0x02 : 0)));
  td_mqtt_wr_u16(w, c->keep_alive);
  if (lvl == TD_MQTT_V5) td_mqtt_props_encode(w, TD_MQTT_CONNECT, &p->props);
  td_mqtt_wr_str(w, c->client_id);
  if (c->will) {
    if (lvl == TD_MQTT_V5) td_mqtt_props_encode(w, 0, &c->will_props);
    td_mqtt_wr_str(w, c->will_topic);
    td_mqtt_wr_str(w, c->will_payload);
  }
  if (c->has_username) td_mqtt_wr_str(w, c->username);
  if (c->has_password) td_mqtt_wr_str(w, c->password);
}

/* v5 tail of PUBACK..PUBCOMP, DISCONNECT and AUTH: omitted entirely for
 * reason 0 without properties, the property length omitted for a reason
 * without properties (except AUTH, whose short form is only the empty one). */
static void reason_tail(struct td_mqtt_wr *w, int type, uint8_t reason, const struct td_mqtt_props *props) {
  bool empty = td_mqtt_props_empty(props);
  if (reason == 0 && empty) return;
  td_mqtt_wr_u8(w, reason);
  if (!empty || type == TD_MQTT_AUTH) td_mqtt_props_encode(w, type, props);
}

static void body_packet(struct td_mqtt_wr *w, const void *ctx) {
  const struct pkt_args *a = ctx;
  const struct td_mqtt_packet *p = a->pkt;
  int level = a->level;
  bool v5 = level == TD_MQTT_V5;
  switch (p->type) {
  case TD_MQTT_CONNECT: body_connect(w, p); break;
  case TD_MQTT_CONNACK:
    td_mqtt_wr_u8(w, level >= TD_MQTT_V311 && p->u.connack.session_present ? 1 : 0);
    td_mqtt_wr_u8(w, p->reason);
    if (v5) td_mqtt_props_encode(w, TD_MQTT_CONNACK, &p->props);
    break;
  case TD_MQTT_PUBLISH: {
    struct publish_args pa = {level, p->u.publish.qos, p->packet_id, p->u.publish.topic, p->u.publish.payload,
                              &p->props};
    body_publish(w, &pa);
    break;
  }
  case TD_MQTT_PUBACK:
  case TD_MQTT_PUBREC:
  case TD_MQTT_PUBREL:
  case TD_MQTT_PUBCOMP:
    td_mqtt_wr_u16(w, p->packet_id);
    if (v5) reason_tail(w, p->type, p->reason, &p->props);
    break;
  case TD_MQTT_SUBSCRIBE:
  case TD_MQTT_UNSUBSCRIBE:
    if (p->u.subscribe.n > TD_MQTT_MAX_TOPICS) {
      w->rc = TD_EINVAL;
      return;
    }
    td_mqtt_wr_u16(w, p->packet_id);
    if (v5) td_mqtt_props_encode(w, p->type, &p->props);
    for (size_t i = 0; i < p->u.subscribe.n; i++) {
      td_mqtt_wr_str(w, p->u.subscribe.subs[i].filter);
      if (p->type == TD_MQTT_SUBSCRIBE) td_mqtt_wr_u8(w, p->u.subscribe.subs[i].opts);
    }
    break;
  case TD_MQTT_SUBACK:
  case TD_MQTT_UNSUBACK:
    if (p->u.suback.n > TD_MQTT_MAX_TOPICS) {
      w->rc = TD_EINVAL;
      return;
    }
    td_mqtt_wr_u16(w, p->packet_id);
    if (!v5 && p->type == TD_MQTT_UNSUBACK) break;
    if (v5) td_mqtt_props_encode(w, p->type, &p->props);
    td_mqtt_wr_bytes(w, p->u.suback.codes, p->u.suback.n);
    break;
  case TD_MQTT_PINGREQ:
  case TD_MQTT_PINGRESP: break;
  case TD_MQTT_DISCONNECT:
  case TD_MQTT_AUTH:
    if (v5) reason_tail(w, p->type, p->reason, &p->props);
    break;
  default: w->rc = TD_EINVAL;
  }
}

static bool level_ok(int level) { return level >= TD_MQTT_V31 && level <= TD_MQTT_V5; }

/* ---- entry points ------------------------------------------------------ */

int td_mqtt_encode(struct td_buf *b, int level, const struct td_mqtt_packet *pkt) {
  if (pkt->type == TD_MQTT_CONNECT) level = pkt->u.connect.protocol_level;
  if (!level_ok(level) || (pkt->type == TD_MQTT_AUTH && level < TD_MQTT_V5)) return TD_EINVAL;
  uint8_t first = (uint8_t)(pkt->type << 4);
  switch (pkt->type) {
  case TD_MQTT_PUBLISH:
    if (pkt->u.publish.qos > 2) return TD_EINVAL;
    first |= (uint8_t)((pkt->u.publish.dup ? 8 : 0) | pkt->u.publish.qos << 1 | (pkt->u.publish.retain ? 1 : 0));
    break;
  case TD_MQTT_PUBREL:
  case TD_MQTT_SUBSCRIBE:
  case TD_MQTT_UNSUBSCRIBE: first |= 2; break;
  }
  struct pkt_args a = {level, pkt};
  return emit(b, first, body_packet, &a);
}

int td_mqtt_encode_publish(struct td_buf *b, int level, struct td_mqtt_str topic, struct td_mqtt_str payload,
                           int qos, bool retain, bool dup, uint16_t packet_id, const struct td_mqtt_props *props) {
  if (!level_ok(level) || qos < 0 || qos > 2) return TD_EINVAL;
  struct publish_args a = {level, qos, packet_id, topic, payload, props};
  uint8_t first = (uint8_t)(TD_MQTT_PUBLISH << 4 | (dup ? 8 : 0) | qos << 1 | (retain ? 1 : 0));
  return emit(b, first, body_publish, &a);
}

struct ack_args {
  int level, type;
  uint16_t packet_id;
  uint8_t reason;
};

static void body_ack(struct td_mqtt_wr *w, const void *ctx) {
  const struct ack_args *a = ctx;
  td_mqtt_wr_u16(w, a->packet_id);
  if (a->level == TD_MQTT_V5) reason_tail(w, a->type, a->reason, NULL);
}

int td_mqtt_encode_ack(struct td_buf *b, int level, int type, uint16_t packet_id, uint8_t reason) {
  if (!level_ok(level) || type < TD_MQTT_PUBACK || type > TD_MQTT_PUBCOMP) return TD_EINVAL;
  struct ack_args a = {level, type, packet_id, reason};
  return emit(b, (uint8_t)(type << 4 | (type == TD_MQTT_PUBREL ? 2 : 0)), body_ack, &a);
}

struct connack_args {
  int level;
  bool session_present;
  uint8_t code;
  const struct td_mqtt_props *props;
};

static void body_connack(struct td_mqtt_wr *w, const void *ctx) {
  const struct connack_args *a = ctx;
  td_mqtt_wr_u8(w, a->level >= TD_MQTT_V311 && a->session_present ? 1 : 0);
  td_mqtt_wr_u8(w, a->code);
  if (a->level == TD_MQTT_V5) td_mqtt_props_encode(w, TD_MQTT_CONNACK, a->props);
}

int td_mqtt_encode_connack(struct td_buf *b, int level, bool session_present, uint8_t code,
                           const struct td_mqtt_props *props) {
  if (!level_ok(level)) return TD_EINVAL;
  struct connack_args a = {level, session_present, code, props};
  return emit(b, TD_MQTT_CONNACK << 4, body_connack, &a);
}
