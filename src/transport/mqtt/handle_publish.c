/* handle_publish.c — what a device does after CONNACK (reference §1.1.2–1.1.4):
 * PUBLISH to the device topics (telemetry, attributes, attribute requests,
 * RPC both ways, claim, provisioning), SUBSCRIBE / UNSUBSCRIBE against the
 * exact whitelist (granted QoS min(requested, 1)), and the downlink the core
 * sends to the session (shared attribute updates, RPC requests and responses,
 * "close this session").
 *
 * Every publish becomes a pend (session.c) so that its PUBACK leaves in
 * order and only once its work is done: telemetry and attributes once
 * durable in the queue, an attribute request once answered, the rest at once.
 * A payload that does not parse: MQTT 5 PUBACK 0x99 and the session stays;
 * MQTT 3.x closes the connection (ThingsBoard's default). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "transport/mqtt/mqtt_int.h"

size_t mqtt_arena_limit(const struct mconn *c) { return c->ml->srv->max_packet * 32 + (1u << 20); }

void mqtt_immediate(struct mconn *c, uint16_t pid, int qos, uint8_t reason) {
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (p) mqtt_pend_finish(p, 0, reason);
}

void mqtt_bad_payload(struct mconn *c, uint16_t pid, int qos, const char *what, const char *err) {
  td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"parsing %s\" err=TD_EPROTO reason=\"%s\"", c->id, what,
                 err && *err ? err : "malformed");
  if (c->level == TD_MQTT_V5) mqtt_immediate(c, pid, qos, TD_MQTT_RC_PAYLOAD_FORMAT_INVALID);
  else mqtt_conn_end(c, TD_MQTT_RC_PAYLOAD_FORMAT_INVALID);
}

static int sub_qos_or0(const struct mconn *c, int sub) { return c->sub_qos[sub] > 0 ? c->sub_qos[sub] : 0; }

/* ---- telemetry, attributes ---- */

static void do_telemetry(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos) {
  struct td_arena a;
  td_arena_init(&a, mqtt_arena_limit(c));
  struct td_payload_opts o = td_transport_payload_opts(mqtt_ctx(c));
  struct td_msg **msgs;
  size_t n;
  char err[256] = "";
  int rc = td_transport_telemetry_msgs(c->dev, &o, pkt->u.publish.payload.p, pkt->u.publish.payload.len, td_now_ms(),
                                       &a, &msgs, &n, err, sizeof err);
  if (rc == TD_EPROTO) {
    mqtt_bad_payload(c, pid, qos, "telemetry", err);
  } else if (rc) {
    mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
  } else {
    struct pend *p = mqtt_pend_new(c, pid, qos);
    if (p) {
      mqtt_pend_produce(p, msgs, n);
    } else {
      for (size_t i = 0; i < n; i++) td_msg_unref(msgs[i]);
    }
  }
  td_arena_deinit(&a);
}

static void do_attributes(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos) {
  struct td_arena a;
  td_arena_init(&a, mqtt_arena_limit(c));
  struct td_payload_opts o = td_transport_payload_opts(mqtt_ctx(c));
  struct td_msg *m;
  char err[256] = "";
  int rc = td_transport_attributes_msg(c->dev, &o, pkt->u.publish.payload.p, pkt->u.publish.payload.len, &a, &m, err,
                                       sizeof err);
  td_arena_deinit(&a);
  if (rc == TD_EPROTO) {
    mqtt_bad_payload(c, pid, qos, "attributes", err);
    return;
  }
  if (rc) {
    mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (p) mqtt_pend_produce(p, &m, 1);
  else td_msg_unref(m);
}

/* ---- attribute request ---- */

static void attr_run(struct td_dbjob *j, struct td_store *st) {
  struct pend *p = td_container_of(j, struct pend, job);
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = p->device_id};
  int rc = 0;
  /* the pend's arena is this job's alone while it runs */
  if (p->want_client)
    rc = td_store_attributes_get(st, &e, TD_SCOPE_CLIENT, p->ckeys, p->nck, &p->arena, &p->cattr, &p->ncattr);
  if (!rc && p->want_shared)
    rc = td_store_attributes_get(st, &e, TD_SCOPE_SHARED, p->skeys, p->nsk, &p->arena, &p->sattr, &p->nsattr);
  j->status = rc;
}

static void attr_done(struct td_dbjob *j) {
  struct pend *p = td_container_of(j, struct pend, job);
  struct mconn *c = p->c;
  if (!c || j->status) {
    mqtt_pend_finish(p, j->status == TD_EFULL ? TD_EFULL : j->status ? TD_EIO : 0, 0);
    return;
  }
  if (p->gw_device) {
    mqtt_pend_finish(p, mqtt_gw_attr_response(c, p), 0);
    return;
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_transport_attr_response_json(&b, p->cattr, p->ncattr, p->sattr, p->nsattr);
  if (!rc) {
    char topic[64];
    snprintf(topic, sizeof topic, p->fam == FAM_V2 ? "v2/a/res/%" PRId32 : "v1/devices/me/attributes/response/%" PRId32,
             p->req_id);
    mqtt_send_publish(c, topic, b.data, b.len, sub_qos_or0(c, SUB_ATTR_RESP), -1, NULL);
  }
  td_buf_deinit(&b);
  mqtt_pend_finish(p, rc ? TD_ENOMEM : 0, 0);
}

static void do_attr_request(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos, int32_t id,
                            enum mfam fam) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  json_t *v = NULL;
  if (pl->len) {
    v = json_loadb(pl->p, pl->len, 0, NULL);
    if (!json_is_object(v)) {
      json_decref(v);
      mqtt_bad_payload(c, pid, qos, "attribute request", "not a JSON object");
      return;
    }
  }
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (!p) {
    json_decref(v);
    return;
  }
  td_arena_init(&p->arena, mqtt_arena_limit(c));
  p->arena_on = true;
  p->device_id = c->dev->info.device_id;
  p->req_id = id;
  p->fam = fam;
  const char *ck = json_string_value(json_object_get(v, "clientKeys"));
  const char *sk = json_string_value(json_object_get(v, "sharedKeys"));
  bool has_c = ck && *ck, has_s = sk && *sk;
  int rc = 0;
  if (!has_c && !has_s) {
    p->want_client = p->want_shared = true; /* all client and shared attributes */
  } else {
    if (has_c) rc = td_transport_split_keys(&p->arena, ck, &p->ckeys, &p->nck);
    if (!rc && has_s) rc = td_transport_split_keys(&p->arena, sk, &p->skeys, &p->nsk);
    p->want_client = has_c && p->nck > 0;
    p->want_shared = has_s && p->nsk > 0;
  }
  json_decref(v);
  if (rc) {
    mqtt_pend_finish(p, rc, 0);
    return;
  }
  mqtt_attr_job_start(c, p);
}

void mqtt_attr_job_start(struct mconn *c, struct pend *p) {
  p->job.run = attr_run;
  p->job.done = attr_done;
  p->job.reply_loop = c->ml->loop;
  struct td_ctx *ctx = mqtt_ctx(c);
  int rc = ctx->db ? td_dbpool_submit(ctx->db, &p->job) : TD_ECLOSED;
  if (rc) mqtt_pend_finish(p, rc, 0);
}

/* ---- RPC, claim, provisioning ---- */

static void session_limits(struct mconn *c, int32_t id, enum mfam fam) {
  char body[256], topic[64];
  int n = snprintf(body, sizeof body,
                   "{\"maxPayloadSize\":%zu,\"maxInflightMessages\":%d,\"rateLimits\":{\"messages\":\"\","
                   "\"telemetryMessages\":\"\",\"telemetryDataPoints\":\"\"}}",
                   c->ml->srv->max_packet, c->ml->srv->receive_max);
  snprintf(topic, sizeof topic, fam == FAM_V2 ? "v2/r/res/%" PRId32 : "v1/devices/me/rpc/response/%" PRId32, id);
  mqtt_send_publish(c, topic, body, (size_t)n, sub_qos_or0(c, SUB_RPC_RESP), -1, NULL);
}

static void do_rpc_request(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos, int32_t id,
                           enum mfam fam) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  json_t *v = json_loadb(pl->p, pl->len, JSON_DECODE_ANY, NULL);
  const char *method = json_string_value(json_object_get(v, "method"));
  if (!json_is_object(v) || !method) {
    json_decref(v);
    mqtt_bad_payload(c, pid, qos, "RPC request", "want {\"method\":..,\"params\":..}");
    return;
  }
  c->rpc_fam = fam;
  if (!strcmp(method, "getSessionLimits")) {
    json_decref(v);
    session_limits(c, id, fam);
    mqtt_immediate(c, pid, qos, 0);
    return;
  }
  json_t *params = json_object_get(v, "params");
  json_t *data = json_pack("{s:s, s:O}", "method", method, "params", params ? params : json_null());
  char *text = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(data);
  json_decref(v);
  char rid[16], sid[TD_UUID_STR_LEN + 1];
  snprintf(rid, sizeof rid, "%" PRId32, id);
  td_uuid_fmt(&c->ds->session_id, sid);
  struct td_msg_md md[3] = {{"requestId", rid}, {"sessionId", sid}, {"serviceId", "thingsd"}};
  struct td_msg *m = text ? td_transport_device_msg(c->dev, TD_MSG_TO_SERVER_RPC, md, 3, text, strlen(text)) : NULL;
  free(text);
  if (!m) {
    mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (p) mqtt_pend_produce(p, &m, 1);
  else td_msg_unref(m);
}

static void do_rpc_response(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos, int32_t id) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  int rc = td_core_rpc_reply(mqtt_ctx(c), c->ds, id, pl->p, pl->len);
  if (rc) td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"RPC reply\" err=%s", c->id, td_errname(rc));
  mqtt_immediate(c, pid, qos, 0);
}

static void do_claim(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  const char *key = "";
  int64_t dur = 0;
  json_t *v = NULL;
  if (pl->len) {
    v = json_loadb(pl->p, pl->len, 0, NULL);
    if (!json_is_object(v)) {
      json_decref(v);
      mqtt_bad_payload(c, pid, qos, "claim", "not a JSON object");
      return;
    }
    const char *k = json_string_value(json_object_get(v, "secretKey"));
    if (k) key = k;
    json_t *d = json_object_get(v, "durationMs");
    if (json_is_integer(d)) dur = (int64_t)json_integer_value(d);
  }
  int rc = td_core_claim(mqtt_ctx(c), c->ds, key, dur);
  json_decref(v);
  if (rc) td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=claim err=%s", c->id, td_errname(rc));
  mqtt_immediate(c, pid, qos, 0);
}

/* provision_done: answer on /provision/response, acknowledge, then end the
 * session (ThingsBoard closes it 60 s after answering; we close as soon as
 * the answer is written — docs/compatibility.md). */
static void provision_done(struct td_provision_req *r) {
  struct pend *p = td_container_of(r, struct pend, prov);
  struct mconn *c = p->c;
  free((char *)r->request);
  r->request = NULL;
  if (c && r->status == 0)
    mqtt_send_publish(c, "/provision/response", r->response, r->response_len, sub_qos_or0(c, SUB_PROVISION), -1,
                      NULL);
  free(r->response);
  r->response = NULL;
  int st = r->status;
  mqtt_pend_finish(p, st, 0); /* frees p when c is gone */
  if (c && st == 0) mqtt_conn_end(c, TD_MQTT_RC_NORMAL_DISCONNECTION);
}

static void do_provision(struct mconn *c, const struct td_mqtt_packet *pkt, uint16_t pid, int qos) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  json_t *v = json_loadb(pl->p, pl->len, 0, NULL);
  bool ok = json_is_object(v);
  json_decref(v);
  if (!ok) {
    mqtt_bad_payload(c, pid, qos, "provision request", "not a JSON object");
    return;
  }
  char *copy = malloc(pl->len + 1);
  if (!copy) {
    mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  memcpy(copy, pl->p, pl->len);
  copy[pl->len] = '\0';
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (!p) {
    free(copy);
    return;
  }
  p->prov.loop = c->ml->loop;
  p->prov.request = copy;
  p->prov.request_len = pl->len;
  p->prov.done = provision_done;
  int rc = td_transport_provision(mqtt_ctx(c)->transport, &p->prov);
  if (rc) {
    free(copy);
    p->prov.request = NULL;
    mqtt_pend_finish(p, rc, 0);
  }
}

/* ---- PUBLISH ---- */

static bool qos2_seen(const struct mconn *c, uint16_t pid) {
  for (int i = 0; i < c->nqos2; i++)
    if (c->qos2[i] == pid) return true;
  return false;
}

void mqtt_handle_publish(struct mconn *c, const struct td_mqtt_packet *pkt) {
  int qos = pkt->u.publish.qos;
  uint16_t pid = pkt->packet_id;
  if (c->level == TD_MQTT_V5) {
    if (qos == 2) {
      /* we announced Maximum QoS 1 (docs/compatibility.md) */
      mqtt_conn_end(c, TD_MQTT_RC_QOS_NOT_SUPPORTED);
      return;
    }
    if (pkt->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS)) {
      mqtt_conn_end(c, TD_MQTT_RC_TOPIC_ALIAS_INVALID); /* topic alias maximum is 0 */
      return;
    }
    if (pkt->props.n_sub_ids) {
      mqtt_conn_end(c, TD_MQTT_RC_PROTOCOL_ERROR);
      return;
    }
    if (qos > 0 && c->inflight >= c->ml->srv->receive_max) {
      mqtt_conn_end(c, TD_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
      return;
    }
  }
  if (qos == 2 && qos2_seen(c, pid)) {
    mqtt_immediate(c, pid, qos, 0); /* a resent QoS 2 publish already stored: PUBREC again, once stored */
    return;
  }
  enum mfam fam;
  int32_t id;
  bool id_bad;
  enum mtopic t = mqtt_topic_parse(pkt->u.publish.topic, &fam, &id, &id_bad);
  if (id_bad) {
    mqtt_bad_payload(c, pid, qos, "request id", "not a 32-bit integer");
    return;
  }
  if ((c->state == MS_PROVISION) != (t == T_PROVISION)) t = T_UNKNOWN;
  if (t >= T_GW_CONNECT && !c->dev->info.gateway) t = T_UNKNOWN; /* gateway API for gateways only */
  if (c->level == TD_MQTT_V5 && (pkt->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_PAYLOAD_FORMAT)) &&
      pkt->props.payload_format == 1 &&
      !td_mqtt_utf8_valid(pkt->u.publish.payload.p, pkt->u.publish.payload.len)) {
    mqtt_bad_payload(c, pid, qos, "payload", "payload format indicator 1 but not UTF-8");
    return;
  }
  switch (t) {
  case T_TELEMETRY: do_telemetry(c, pkt, pid, qos); break;
  case T_ATTRIBUTES: do_attributes(c, pkt, pid, qos); break;
  case T_ATTR_REQUEST: do_attr_request(c, pkt, pid, qos, id, fam); break;
  case T_RPC_RESPONSE: do_rpc_response(c, pkt, pid, qos, id); break;
  case T_RPC_REQUEST: do_rpc_request(c, pkt, pid, qos, id, fam); break;
  case T_CLAIM: do_claim(c, pkt, pid, qos); break;
  case T_PROVISION: do_provision(c, pkt, pid, qos); break;
  case T_GW_CONNECT:
  case T_GW_DISCONNECT:
  case T_GW_TELEMETRY:
  case T_GW_ATTRIBUTES:
  case T_GW_ATTR_REQUEST:
  case T_GW_RPC:
  case T_GW_CLAIM: mqtt_gw_publish(c, pkt, t, pid, qos); break;
  case T_UNKNOWN:
    td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=PUBLISH topic_len=%zu err=\"unknown topic\"", c->id,
                   pkt->u.publish.topic.len);
    mqtt_immediate(c, pid, qos, TD_MQTT_RC_TOPIC_NAME_INVALID);
    if (c->state == MS_PROVISION) mqtt_conn_end(c, TD_MQTT_RC_TOPIC_NAME_INVALID);
    break;
  }
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ---- */

static void update_core_subs(struct mconn *c, bool attr_before, bool rpc_before) {
  bool attr = c->sub_qos[SUB_ATTR] >= 0, rpc = c->sub_qos[SUB_RPC] >= 0;
  if (!c->ds || (attr == attr_before && rpc == rpc_before)) return;
  int rc = td_core_session_subscribe(mqtt_ctx(c), c->ds, attr, rpc);
  if (rc) td_log(TD_LOG_WARN, "mqtt", "conn=%u action=subscribe err=%s", c->id, td_errname(rc));
}

void mqtt_handle_subscribe(struct mconn *c, const struct td_mqtt_packet *pkt) {
  bool attr_before = c->sub_qos[SUB_ATTR] >= 0, rpc_before = c->sub_qos[SUB_RPC] >= 0;
  struct td_mqtt_packet ack;
  memset(&ack, 0, sizeof ack);
  ack.type = TD_MQTT_SUBACK;
  ack.packet_id = pkt->packet_id;
  ack.u.suback.n = pkt->u.subscribe.n;
  for (size_t i = 0; i < pkt->u.subscribe.n; i++) {
    const struct td_mqtt_sub *s = &pkt->u.subscribe.subs[i];
    enum mfam fam = FAM_V1;
    int k = mqtt_filter_parse(s->filter, &fam);
    bool ok = k >= 0 && ((c->state == MS_PROVISION) == (k == SUB_PROVISION));
    if (!ok) {
      ack.u.suback.codes[i] = c->level == TD_MQTT_V5 ? TD_MQTT_RC_TOPIC_FILTER_INVALID : TD_MQTT_V3_SUBACK_FAILURE;
      continue;
    }
    int q = TD_MQTT_SUB_QOS(s->opts) > 1 ? 1 : TD_MQTT_SUB_QOS(s->opts);
    c->sub_qos[k] = (int8_t)q;
    c->sub_fam[k] = (uint8_t)fam;
    ack.u.suback.codes[i] = (uint8_t)q;
  }
  struct td_buf b;
  td_buf_init(&b, 1024);
  if (td_mqtt_encode(&b, c->level, &ack) == 0) mqtt_conn_send(c, b.data, b.len);
  td_buf_deinit(&b);
  update_core_subs(c, attr_before, rpc_before);
}

void mqtt_handle_unsubscribe(struct mconn *c, const struct td_mqtt_packet *pkt) {
  bool attr_before = c->sub_qos[SUB_ATTR] >= 0, rpc_before = c->sub_qos[SUB_RPC] >= 0;
  struct td_mqtt_packet ack;
  memset(&ack, 0, sizeof ack);
  ack.type = TD_MQTT_UNSUBACK;
  ack.packet_id = pkt->packet_id;
  for (size_t i = 0; i < pkt->u.subscribe.n; i++) {
    enum mfam fam = FAM_V1;
    int k = mqtt_filter_parse(pkt->u.subscribe.subs[i].filter, &fam);
    bool had = k >= 0 && c->sub_qos[k] >= 0 && c->sub_fam[k] == fam;
    if (had) c->sub_qos[k] = -1;
    ack.u.suback.codes[i] = had ? TD_MQTT_RC_SUCCESS : TD_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
  }
  ack.u.suback.n = c->level == TD_MQTT_V5 ? pkt->u.subscribe.n : 0;
  struct td_buf b;
  td_buf_init(&b, 1024);
  if (td_mqtt_encode(&b, c->level, &ack) == 0) mqtt_conn_send(c, b.data, b.len);
  td_buf_deinit(&b);
  update_core_subs(c, attr_before, rpc_before);
}

/* ---- downlink from the core (loop thread, owner set) ---- */

static void on_attributes(void *owner, struct td_dsession *s, const char *payload, size_t len) {
  struct mconn *c = owner;
  if (c->closing || c->sub_qos[SUB_ATTR] < 0) return;
  mqtt_send_publish(c, c->sub_fam[SUB_ATTR] == FAM_V2 ? "v2/a" : "v1/devices/me/attributes", payload, len,
                    c->sub_qos[SUB_ATTR], -1, NULL);
}

static void on_rpc_request(void *owner, struct td_dsession *s, int32_t request_id, const char *method,
                           const char *params, int64_t expiration_ms, bool oneway) {
  struct mconn *c = owner;
  if (c->closing || c->sub_qos[SUB_RPC] < 0) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, "{\"method\":");
  if (!rc) rc = td_buf_json_str(&b, method ? method : "");
  if (!rc) rc = td_buf_printf(&b, ",\"params\":%s}", params && *params ? params : "{}");
  if (!rc) {
    char topic[64];
    snprintf(topic, sizeof topic,
             c->sub_fam[SUB_RPC] == FAM_V2 ? "v2/r/req/%" PRId32 : "v1/devices/me/rpc/request/%" PRId32, request_id);
    int qos = c->sub_qos[SUB_RPC];
    rc = mqtt_send_publish(c, topic, b.data, b.len, qos, request_id, NULL);
    /* QoS 0: delivered once written (reference §1.1.3); QoS 1: at its PUBACK */
    if (!rc && qos == 0) td_core_rpc_delivered(mqtt_ctx(c), s, request_id);
  }
  td_buf_deinit(&b);
}

static void on_rpc_response(void *owner, struct td_dsession *s, int32_t request_id, const char *payload, size_t len) {
  struct mconn *c = owner;
  if (c->closing) return;
  enum mfam fam = c->sub_qos[SUB_RPC_RESP] >= 0 ? (enum mfam)c->sub_fam[SUB_RPC_RESP] : c->rpc_fam;
  char topic[64];
  snprintf(topic, sizeof topic, fam == FAM_V2 ? "v2/r/res/%" PRId32 : "v1/devices/me/rpc/response/%" PRId32,
           request_id);
  mqtt_send_publish(c, topic, payload, len, sub_qos_or0(c, SUB_RPC_RESP), -1, NULL);
}

static void on_close(void *owner, struct td_dsession *s, int reason) {
  struct mconn *c = owner;
  td_log(TD_LOG_DEBUG, "mqtt", "conn=%u action=\"closed by core\" reason=0x%02x", c->id, reason);
  mqtt_conn_end(c, (uint8_t)reason);
}

const struct td_dsession_ops mqtt_dsession_ops = {
  .on_attributes = on_attributes,
  .on_rpc_request = on_rpc_request,
  .on_rpc_response = on_rpc_response,
  .on_close = on_close,
};
