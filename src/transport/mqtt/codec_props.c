/* codec_props.c — MQTT 5 properties: one table of every property identifier
 * (value type, the packets that may carry it, where it lives in struct
 * td_mqtt_props), and the decoder, encoder and comparison driven by it.
 * Part of the MQTT codec (codec.h); the packet layouts are in codec.c and
 * codec_encode.c. */
#include <stddef.h>
#include <string.h>

#include "base/err.h"
#include "transport/mqtt/codec_int.h"

enum kind { K_NONE, K_BYTE, K_U16, K_U32, K_VBI, K_STR, K_BIN, K_PAIR };

/* Packet-type bits of the `allowed` masks; bit 0 stands for the will
 * properties of CONNECT (type 0 is reserved, so it is free). */
#define B(t) (1u << (t))
#define WILL B(0)
#define ACKS (B(TD_MQTT_PUBACK) | B(TD_MQTT_PUBREC) | B(TD_MQTT_PUBREL) | B(TD_MQTT_PUBCOMP))
#define ALL (WILL | B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK) | B(TD_MQTT_PUBLISH) | ACKS |        \
             B(TD_MQTT_SUBSCRIBE) | B(TD_MQTT_SUBACK) | B(TD_MQTT_UNSUBSCRIBE) |                  \
             B(TD_MQTT_UNSUBACK) | B(TD_MQTT_DISCONNECT) | B(TD_MQTT_AUTH))

/* Value rules: F_BOOL 0 or 1 (every byte property is one), F_NONZERO 0 is a
 * Protocol Error (receive maximum, topic alias, maximum packet size,
 * subscription identifier). */
#define F_BOOL 1
#define F_NONZERO 2

struct prop_def {
  uint8_t kind, rules;
  uint16_t allowed;
  size_t off; /* offset of the field in struct td_mqtt_props */
};

#define OFF(f) offsetof(struct td_mqtt_props, f)
#define MAX_ID TD_MQTT_PROP_SHARED_SUB_AVAILABLE

static const struct prop_def defs[MAX_ID + 1] = {
  [TD_MQTT_PROP_PAYLOAD_FORMAT] = {K_BYTE, F_BOOL, WILL | B(TD_MQTT_PUBLISH), OFF(payload_format)},
  [TD_MQTT_PROP_MESSAGE_EXPIRY] = {K_U32, 0, WILL | B(TD_MQTT_PUBLISH), OFF(message_expiry)},
  [TD_MQTT_PROP_CONTENT_TYPE] = {K_STR, 0, WILL | B(TD_MQTT_PUBLISH), OFF(content_type)},
  [TD_MQTT_PROP_RESPONSE_TOPIC] = {K_STR, 0, WILL | B(TD_MQTT_PUBLISH), OFF(response_topic)},
  [TD_MQTT_PROP_CORRELATION_DATA] = {K_BIN, 0, WILL | B(TD_MQTT_PUBLISH), OFF(correlation_data)},
  [TD_MQTT_PROP_SUBSCRIPTION_ID] = {K_VBI, F_NONZERO, B(TD_MQTT_PUBLISH) | B(TD_MQTT_SUBSCRIBE), 0},
  [TD_MQTT_PROP_SESSION_EXPIRY] = {K_U32, 0, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK) | B(TD_MQTT_DISCONNECT),
                                   OFF(session_expiry)},
  [TD_MQTT_PROP_ASSIGNED_CLIENT_ID] = {K_STR, 0, B(TD_MQTT_CONNACK), OFF(assigned_client_id)},
  [TD_MQTT_PROP_SERVER_KEEP_ALIVE] = {K_U16, 0, B(TD_MQTT_CONNACK), OFF(server_keep_alive)},
  [TD_MQTT_PROP_AUTH_METHOD] = {K_STR, 0, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK) | B(TD_MQTT_AUTH),
                                OFF(auth_method)},
  [TD_MQTT_PROP_AUTH_DATA] = {K_BIN, 0, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK) | B(TD_MQTT_AUTH),
                              OFF(auth_data)},
  [TD_MQTT_PROP_REQUEST_PROBLEM_INFO] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNECT), OFF(request_problem_info)},
  [TD_MQTT_PROP_WILL_DELAY] = {K_U32, 0, WILL, OFF(will_delay)},
  [TD_MQTT_PROP_REQUEST_RESPONSE_INFO] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNECT), OFF(request_response_info)},
  [TD_MQTT_PROP_RESPONSE_INFO] = {K_STR, 0, B(TD_MQTT_CONNACK), OFF(response_info)},
  [TD_MQTT_PROP_SERVER_REFERENCE] = {K_STR, 0, B(TD_MQTT_CONNACK) | B(TD_MQTT_DISCONNECT),
                                     OFF(server_reference)},
  [TD_MQTT_PROP_REASON_STRING] = {K_STR, 0,
                                  B(TD_MQTT_CONNACK) | ACKS | B(TD_MQTT_SUBACK) | B(TD_MQTT_UNSUBACK) |
                                      B(TD_MQTT_DISCONNECT) | B(TD_MQTT_AUTH),
                                  OFF(reason_string)},
  [TD_MQTT_PROP_RECEIVE_MAXIMUM] = {K_U16, F_NONZERO, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK),
                                    OFF(receive_maximum)},
  [TD_MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = {K_U16, 0, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK),
                                        OFF(topic_alias_maximum)},
  [TD_MQTT_PROP_TOPIC_ALIAS] = {K_U16, F_NONZERO, B(TD_MQTT_PUBLISH), OFF(topic_alias)},
  [TD_MQTT_PROP_MAXIMUM_QOS] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNACK), OFF(maximum_qos)},
  [TD_MQTT_PROP_RETAIN_AVAILABLE] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNACK), OFF(retain_available)},
  [TD_MQTT_PROP_USER] = {K_PAIR, 0, ALL, 0},
  [TD_MQTT_PROP_MAXIMUM_PACKET_SIZE] = {K_U32, F_NONZERO, B(TD_MQTT_CONNECT) | B(TD_MQTT_CONNACK),
                                        OFF(max_packet_size)},
  [TD_MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNACK), OFF(wildcard_sub_available)},
  [TD_MQTT_PROP_SUB_ID_AVAILABLE] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNACK), OFF(sub_id_available)},
  [TD_MQTT_PROP_SHARED_SUB_AVAILABLE] = {K_BYTE, F_BOOL, B(TD_MQTT_CONNACK), OFF(shared_sub_available)},
};

/* The user property and the subscription identifier are counted by n_user /
 * n_sub_ids; their `present` bits are set on decode but never consulted. */
#define LIST_BITS (TD_MQTT_PROP_BIT(TD_MQTT_PROP_USER) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_SUBSCRIPTION_ID))

static bool allowed(int id, int ptype) {
  return id > 0 && id <= MAX_ID && defs[id].kind != K_NONE && (defs[id].allowed & B(ptype));
}

int td_mqtt_props_decode(struct td_mqtt_rd *r, int ptype, struct td_mqtt_props *out) {
  uint32_t len;
  int rc = td_mqtt_rd_varint(r, &len);
  if (rc) return rc;
  if (len > r->end - r->pos) return td_mqtt_fail(r, TD_MQTT_E_TRUNCATED);
  /* A sub-reader bounded by the property length: a value that runs past the
   * block is truncated even if the packet has more bytes. */
  struct td_mqtt_rd s = {.p = r->p, .pos = r->pos, .end = r->pos + len, .err = r->err};
  while (s.pos < s.end) {
    uint32_t id;
    if ((rc = td_mqtt_rd_varint(&s, &id))) return rc;
    if (!allowed((int)id, ptype)) return td_mqtt_fail(r, TD_MQTT_E_PROP_NOT_ALLOWED);
    const struct prop_def *d = &defs[id];
    uint64_t bit = TD_MQTT_PROP_BIT(id);
    bool multi = id == TD_MQTT_PROP_USER || (id == TD_MQTT_PROP_SUBSCRIPTION_ID && ptype == TD_MQTT_PUBLISH);
    if ((out->present & bit) && !multi) return td_mqtt_fail(r, TD_MQTT_E_PROP_DUP);
    out->present |= bit;
    char *field = (char *)out + d->off;
    uint32_t v = 0;
    switch (d->kind) {
    case K_BYTE: {
      uint8_t b;
      if ((rc = td_mqtt_rd_u8(&s, &b))) return rc;
      if ((d->rules & F_BOOL) && b > 1) return td_mqtt_fail(r, TD_MQTT_E_PROP_VALUE);
      *(uint8_t *)field = b;
      v = b;
      break;
    }
    case K_U16: {
      uint16_t h;
      if ((rc = td_mqtt_rd_u16(&s, &h))) return rc;
      *(uint16_t *)field = h;
      v = h;
      break;
    }
    case K_U32:
      if ((rc = td_mqtt_rd_u32(&s, &v))) return rc;
      *(uint32_t *)field = v;
      break;
    case K_VBI: /* only the subscription identifier */
      if ((rc = td_mqtt_rd_varint(&s, &v))) return rc;
      if (out->n_sub_ids == TD_MQTT_MAX_SUB_IDS) return td_mqtt_fail(r, TD_MQTT_E_TOO_MANY);
      out->sub_ids[out->n_sub_ids++] = v;
      break;
    case K_STR:
      if ((rc = td_mqtt_rd_str(&s, (struct td_mqtt_str *)field))) return rc;
      v = 1;
      break;
    case K_BIN:
      if ((rc = td_mqtt_rd_bin(&s, (struct td_mqtt_str *)field))) return rc;
      v = 1;
      break;
    case K_PAIR: {
      struct td_mqtt_user_prop up;
      if ((rc = td_mqtt_rd_str(&s, &up.key)) || (rc = td_mqtt_rd_str(&s, &up.value))) return rc;
      if (out->n_user == TD_MQTT_MAX_USER_PROPS) return td_mqtt_fail(r, TD_MQTT_E_TOO_MANY);
      out->user[out->n_user++] = up;
      v = 1;
      break;
    }
    }
    if ((d->rules & F_NONZERO) && v == 0) return td_mqtt_fail(r, TD_MQTT_E_PROP_VALUE);
  }
  /* "It is a Protocol Error to include Authentication Data if there is no
   * Authentication Method" (MQTT 5.0 §3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3). */
  if ((out->present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_DATA)) &&
      !(out->present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_METHOD)))
    return td_mqtt_fail(r, TD_MQTT_E_PROP_VALUE);
  r->pos = s.end;
  return 0;
}

bool td_mqtt_props_empty(const struct td_mqtt_props *p) {
  return !p || ((p->present & ~LIST_BITS) == 0 && p->n_user == 0 && p->n_sub_ids == 0);
}

/* Write the properties themselves (no length). */
static void props_body(struct td_mqtt_wr *w, int ptype, const struct td_mqtt_props *p) {
  if (p->n_user > TD_MQTT_MAX_USER_PROPS || p->n_sub_ids > TD_MQTT_MAX_SUB_IDS ||
      (ptype == TD_MQTT_SUBSCRIBE && p->n_sub_ids > 1)) {
    w->rc = TD_EINVAL;
    return;
  }
  for (int id = 1; id <= MAX_ID; id++) {
    const struct prop_def *d = &defs[id];
    if (d->kind == K_NONE) continue;
    bool has = id == TD_MQTT_PROP_USER ? p->n_user > 0
               : id == TD_MQTT_PROP_SUBSCRIPTION_ID ? p->n_sub_ids > 0
                                                    : (p->present & TD_MQTT_PROP_BIT(id)) != 0;
    if (!has) continue;
    if (!allowed(id, ptype)) {
      w->rc = TD_EINVAL;
      return;
    }
    const char *field = (const char *)p + d->off;
    switch (d->kind) {
    case K_BYTE: td_mqtt_wr_u8(w, (uint8_t)id); td_mqtt_wr_u8(w, *(const uint8_t *)field); break;
    case K_U16: td_mqtt_wr_u8(w, (uint8_t)id); td_mqtt_wr_u16(w, *(const uint16_t *)field); break;
    case K_U32: td_mqtt_wr_u8(w, (uint8_t)id); td_mqtt_wr_u32(w, *(const uint32_t *)field); break;
    case K_VBI:
      for (size_t i = 0; i < p->n_sub_ids; i++) {
        if (p->sub_ids[i] == 0 || p->sub_ids[i] > TD_MQTT_MAX_REMAINING) w->rc = TD_EINVAL;
        td_mqtt_wr_u8(w, (uint8_t)id);
        td_mqtt_wr_varint(w, p->sub_ids[i]);
      }
      break;
    case K_STR:
    case K_BIN: td_mqtt_wr_u8(w, (uint8_t)id); td_mqtt_wr_str(w, *(const struct td_mqtt_str *)field); break;
    case K_PAIR:
      for (size_t i = 0; i < p->n_user; i++) {
        td_mqtt_wr_u8(w, (uint8_t)id);
        td_mqtt_wr_str(w, p->user[i].key);
        td_mqtt_wr_str(w, p->user[i].value);
      }
      break;
    }
  }
}

void td_mqtt_props_encode(struct td_mqtt_wr *w, int ptype, const struct td_mqtt_props *p) {
  if (td_mqtt_props_empty(p)) {
    td_mqtt_wr_u8(w, 0);
    return;
  }
  struct td_mqtt_wr c = {.count = true};
  props_body(&c, ptype, p);
  if (c.rc) {
    w->rc = c.rc;
    return;
  }
  if (c.n > TD_MQTT_MAX_REMAINING) {
    w->rc = TD_EINVAL;
    return;
  }
  td_mqtt_wr_varint(w, (uint32_t)c.n);
  props_body(w, ptype, p);
}

bool td_mqtt_str_eq(struct td_mqtt_str a, struct td_mqtt_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool td_mqtt_props_equal(const struct td_mqtt_props *a, const struct td_mqtt_props *b) {
  if ((a->present & ~LIST_BITS) != (b->present & ~LIST_BITS)) return false;
  if (a->n_user != b->n_user || a->n_sub_ids != b->n_sub_ids) return false;
  if (a->n_user > TD_MQTT_MAX_USER_PROPS || a->n_sub_ids > TD_MQTT_MAX_SUB_IDS) return false;
  for (size_t i = 0; i < a->n_user; i++)
    if (!td_mqtt_str_eq(a->user[i].key, b->user[i].key) || !td_mqtt_str_eq(a->user[i].value, b->user[i].value))
      return false;
  for (size_t i = 0; i < a->n_sub_ids; i++)
    if (a->sub_ids[i] != b->sub_ids[i]) return false;
  for (int id = 1; id <= MAX_ID; id++) {
    const struct prop_def *d = &defs[id];
    if (d->kind == K_NONE || d->kind == K_VBI || d->kind == K_PAIR) continue;
    if (!(a->present & TD_MQTT_PROP_BIT(id))) continue;
    const char *fa = (const char *)a + d->off, *fb = (const char *)b + d->off;
    switch (d->kind) {
    case K_BYTE: if (*(const uint8_t *)fa != *(const uint8_t *)fb) return false; break;
    case K_U16: if (*(const uint16_t *)fa != *(const uint16_t *)fb) return false; break;
    case K_U32: if (*(const uint32_t *)fa != *(const uint32_t *)fb) return false; break;
    default:
      if (!td_mqtt_str_eq(*(const struct td_mqtt_str *)fa, *(const struct td_mqtt_str *)fb)) return false;
    }
  }
  return true;
}
