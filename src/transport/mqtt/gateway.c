/* gateway.c — the MQTT gateway API (reference §1.1.6) for devices whose
 * additionalInfo.gateway is true: one connection carries many child devices.
 *
 * Each child the gateway names becomes a device of the gateway's tenant
 * (found by name, else created with the profile named by "type" when it
 * exists, else the tenant's default profile; an ACCESS_TOKEN, a "Created"
 * relation from the gateway and the server attribute lastConnectedGateway
 * like ThingsBoard) and gets its own core session on the gateway's
 * connection, subscribed to attribute updates and RPC; the downlink is
 * wrapped as {"device":name,"data":...} on v1/gateway/attributes and
 * v1/gateway/rpc.
 *
 * Finding or creating children is a storage job; while it runs the
 * connection's input waits (c->gw_wait), so every child's messages keep
 * their order. Children per connection are bounded (GW_MAX_CHILDREN). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/auth.h"
#include "core/device_state.h"
#include "core/subs.h"
#include "transport/mqtt/mqtt_int.h"

#define GW_MAX_CHILDREN 5000
#define GW_MAX_LOOKUP 256 /* children found per storage job; more wait for the next publish */

struct gw_item {
  char name[256];
  char type[256];
  struct td_device_ref *dev;
  int status;
};

struct gw_wait {
  struct td_dbjob job;
  struct mconn *c;                 /* NULL once the connection is gone */
  struct td_uuid tenant_id, customer_id, gateway_id;
  struct gw_item *items;
  size_t n;
  /* the publish that continues once they are known */
  json_t *body;
  enum mtopic t;
  uint16_t pid;
  int qos;
};

static const struct td_dsession_ops child_ops;

static struct gw_child *find(struct mconn *c, const char *name) {
  for (struct gw_child *k = c->children; k; k = k->next)
    if (!strcmp(k->name, name)) return k;
  return NULL;
}

/* child_close: end a child's session and forget it. */
static void child_close(struct mconn *c, struct gw_child *k, bool tell_core) {
  for (struct gw_child **pp = &c->children; *pp; pp = &(*pp)->next) {
    if (*pp == k) {
      *pp = k->next;
      break;
    }
  }
  c->nchildren--;
  if (k->ds) {
    if (tell_core && !c->ml->srv->stopping) td_core_session_close(mqtt_ctx(c), k->ds);
    if (tell_core && !c->ml->srv->stopping)
      td_device_state_disconnect(mqtt_ctx(c)->device_state, &k->ds->tenant_id, &k->ds->device_id, td_now_ms());
    k->ds->owner = NULL;
    td_dsession_unref(k->ds);
  }
  td_device_ref_put(k->dev);
  free(k);
}

static int child_open(struct mconn *c, const char *name, struct td_device_ref *dev) {
  struct gw_child *k = calloc(1, sizeof *k);
  if (!k) return TD_ENOMEM;
  k->c = c;
  k->dev = dev;
  snprintf(k->name, sizeof k->name, "%s", name);
  k->ds = td_dsession_new(c->ml->loop, &child_ops, k, &dev->info.device_id, &dev->info.tenant_id);
  if (!k->ds) {
    free(k);
    return TD_ENOMEM;
  }
  k->next = c->children;
  c->children = k;
  c->nchildren++;
  struct td_ctx *ctx = mqtt_ctx(c);
  int rc = td_core_session_open(ctx, k->ds);
  if (!rc) rc = td_core_session_subscribe(ctx, k->ds, true, true); /* ThingsBoard subscribes children to both */
  if (rc) td_log(TD_LOG_WARN, "mqtt", "conn=%u action=\"opening child session\" err=%s", c->id, td_errname(rc));
  else td_device_state_connect(ctx->device_state, &dev->info.tenant_id, &dev->info.device_id, td_now_ms());
  return 0;
}

void mqtt_gw_teardown(struct mconn *c) {
  if (c->gw_wait) {
    c->gw_wait->c = NULL; /* its job still runs; it frees itself */
    c->gw_wait = NULL;
  }
  while (c->children) child_close(c, c->children, true);
}

/* ---- finding / creating children (storage thread) ---- */

static int create_child(struct td_store *st, struct gw_wait *w, struct gw_item *it, json_t **out) {
  json_t *prof = NULL;
  int rc = td_store_device_profile_by_name(st, &w->tenant_id, it->type, &prof);
  if (rc == TD_ENOTFOUND) rc = td_store_device_profile_default(st, &w->tenant_id, &prof);
  if (rc) return rc;
  char tid[TD_UUID_STR_LEN + 1], cid[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(&w->tenant_id, tid);
  td_uuid_fmt(&w->customer_id, cid);
  json_t *pid = json_object_get(json_object_get(prof, "id"), "id");
  json_t *in = json_pack("{s:s, s:O, s:{s:s,s:O}, s:{s:s,s:s}, s:{s:s,s:s}, s:{}}", "name", it->name, "type",
                         json_object_get(prof, "name"), "deviceProfileId", "entityType", "DEVICE_PROFILE", "id",
                         pid ? pid : json_null(), "tenantId", "entityType", "TENANT", "id", tid, "customerId",
                         "entityType", "CUSTOMER", "id", cid, "additionalInfo");
  json_decref(prof);
  if (!in) return TD_ENOMEM;
  rc = td_store_device_save(st, in, out);
  json_decref(in);
  if (rc) return rc;
  /* an access token like any device ThingsBoard creates, the relation and lastConnectedGateway */
  char tok[21];
  json_t *cred = NULL;
  if (td_auth_random_token(tok, sizeof tok) == 0) {
    json_t *c = json_pack("{s:O, s:s, s:s, s:n}", "deviceId", json_object_get(*out, "id"), "credentialsType",
                          "ACCESS_TOKEN", "credentialsId", tok, "credentialsValue");
    if (c) td_store_device_credentials_save(st, c, &cred);
    json_decref(c);
    json_decref(cred);
  }
  struct td_uuid did;
  const char *ids = json_string_value(json_object_get(json_object_get(*out, "id"), "id"));
  if (ids && td_uuid_parse(ids, &did) == 0) {
    struct td_entity_id from = {.type = TD_ENTITY_DEVICE, .id = w->gateway_id};
    struct td_entity_id to = {.type = TD_ENTITY_DEVICE, .id = did};
    td_store_relation_save(st, &from, &to, "Created", "COMMON");
  }
  return 0;
}

static void lookup_run(struct td_dbjob *j, struct td_store *st) {
  struct gw_wait *w = td_container_of(j, struct gw_wait, job);
  char gw[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(&w->gateway_id, gw);
  for (size_t i = 0; i < w->n; i++) {
    struct gw_item *it = &w->items[i];
    json_t *d = NULL;
    int rc = td_store_device_by_name(st, &w->tenant_id, it->name, &d);
    if (rc == TD_ENOTFOUND) {
      rc = create_child(st, w, it, &d);
      if (rc == TD_EEXIST) rc = td_store_device_by_name(st, &w->tenant_id, it->name, &d); /* another gateway won */
    }
    struct td_uuid did;
    const char *ids = rc ? NULL : json_string_value(json_object_get(json_object_get(d, "id"), "id"));
    if (!rc && (!ids || td_uuid_parse(ids, &did))) rc = TD_EIO;
    json_decref(d);
    if (!rc) {
      struct td_device_ref *dev = calloc(1, sizeof *dev);
      if (!dev) rc = TD_ENOMEM;
      else {
        atomic_init(&dev->refs, 1);
        rc = td_store_device_auth_by_id(st, &did, &dev->info);
        if (rc) free(dev);
        else it->dev = dev;
      }
    }
    if (!rc) {
      struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = did};
      struct td_kv kv = {.key = "lastConnectedGateway", .type = TD_KV_STRING, .v.s = gw};
      int64_t ts = td_now_ms();
      if (td_store_attributes_save(st, &e, TD_SCOPE_SERVER, &kv, 1, ts) == 0)
        td_subs_publish_attrs(&w->tenant_id, &e, TD_SCOPE_SERVER, &kv, 1, ts); /* WebSocket subscribers */
    }
    it->status = rc;
  }
  j->status = 0;
}

static void gw_continue(struct mconn *c, json_t *v, enum mtopic t, uint16_t pid, int qos);

static void wait_free(struct gw_wait *w) {
  for (size_t i = 0; i < w->n; i++) td_device_ref_put(w->items[i].dev);
  free(w->items);
  json_decref(w->body);
  free(w);
}

static void lookup_done(struct td_dbjob *j) {
  struct gw_wait *w = td_container_of(j, struct gw_wait, job);
  struct mconn *c = w->c;
  if (!c) {
    wait_free(w);
    return;
  }
  c->gw_wait = NULL;
  int failed = 0;
  for (size_t i = 0; i < w->n; i++) {
    struct gw_item *it = &w->items[i];
    if (it->status || !it->dev) {
      failed = it->status ? it->status : TD_EIO;
      continue;
    }
    if (it->dev->info.gateway || td_uuid_eq(&it->dev->info.device_id, &w->gateway_id)) {
      failed = TD_EPERM; /* a gateway cannot act as another gateway (or itself) */
      continue;
    }
    if (!find(c, it->name) && child_open(c, it->name, it->dev) == 0) it->dev = NULL; /* taken */
  }
  if (failed) {
    td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"gateway child lookup\" err=%s", c->id, td_errname(failed));
    if (c->level == TD_MQTT_V5) mqtt_immediate(c, w->pid, w->qos, TD_MQTT_RC_UNSPECIFIED_ERROR);
    else mqtt_conn_end(c, TD_MQTT_RC_UNSPECIFIED_ERROR);
  } else {
    gw_continue(c, w->body, w->t, w->pid, w->qos);
  }
  wait_free(w);
  if (c->closing) return;
  mqtt_conn_update_reading(c);
  mqtt_session_process(c);
}

/* ---- uplink ---- */

static const char *device_of(json_t *v) { return json_string_value(json_object_get(v, "device")); }

/* names: the children a publish names (object keys, or its "device"). */
static int collect_missing(struct mconn *c, json_t *v, enum mtopic t, struct gw_item **out, size_t *n) {
  *out = NULL;
  *n = 0;
  const char *names[GW_MAX_LOOKUP];
  const char *types[GW_MAX_LOOKUP];
  size_t k = 0;
  if (t == T_GW_CONNECT || t == T_GW_ATTR_REQUEST) {
    const char *d = device_of(v);
    if (!d || !*d) return TD_EPROTO;
    if (!find(c, d)) {
      names[k] = d;
      const char *ty = t == T_GW_CONNECT ? json_string_value(json_object_get(v, "type")) : NULL;
      types[k++] = ty && *ty ? ty : "default";
    }
  } else if (t == T_GW_TELEMETRY || t == T_GW_ATTRIBUTES || t == T_GW_CLAIM) {
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      if (!*key) return TD_EPROTO;
      if (find(c, key)) continue;
      if (k == GW_MAX_LOOKUP) return TD_ETOOBIG;
      names[k] = key;
      types[k++] = "default";
    }
  }
  if (!k) return 0;
  if (c->nchildren + (int)k > GW_MAX_CHILDREN) return TD_EFULL;
  struct gw_item *items = calloc(k, sizeof *items);
  if (!items) return TD_ENOMEM;
  for (size_t i = 0; i < k; i++) {
    if (strlen(names[i]) >= sizeof items[i].name) {
      free(items);
      return TD_EPROTO;
    }
    snprintf(items[i].name, sizeof items[i].name, "%s", names[i]);
    snprintf(items[i].type, sizeof items[i].type, "%.255s", types[i]);
  }
  *out = items;
  *n = k;
  return 0;
}

void mqtt_gw_publish(struct mconn *c, const struct td_mqtt_packet *pkt, enum mtopic t, uint16_t pid, int qos) {
  const struct td_mqtt_str *pl = &pkt->u.publish.payload;
  json_t *v = json_loadb(pl->p, pl->len, 0, NULL);
  if (!json_is_object(v)) {
    json_decref(v);
    mqtt_bad_payload(c, pid, qos, "gateway message", "not a JSON object");
    return;
  }
  struct gw_item *items;
  size_t n;
  int rc = collect_missing(c, v, t, &items, &n);
  if (rc) {
    json_decref(v);
    if (rc == TD_EFULL && c->level == TD_MQTT_V5) mqtt_immediate(c, pid, qos, TD_MQTT_RC_QUOTA_EXCEEDED);
    else if (rc == TD_EFULL) mqtt_conn_end(c, TD_MQTT_RC_QUOTA_EXCEEDED);
    else if (rc == TD_ENOMEM) mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    else mqtt_bad_payload(c, pid, qos, "gateway message", "bad device names");
    return;
  }
  if (!n) {
    gw_continue(c, v, t, pid, qos);
    json_decref(v);
    return;
  }
  struct gw_wait *w = calloc(1, sizeof *w);
  if (!w) {
    free(items);
    json_decref(v);
    mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  w->c = c;
  w->tenant_id = c->dev->info.tenant_id;
  w->customer_id = td_uuid_is_zero(&c->dev->info.customer_id) ? *td_uuid_null() : c->dev->info.customer_id;
  w->gateway_id = c->dev->info.device_id;
  w->items = items;
  w->n = n;
  w->body = v;
  w->t = t;
  w->pid = pid;
  w->qos = qos;
  w->job.run = lookup_run;
  w->job.done = lookup_done;
  w->job.reply_loop = c->ml->loop;
  struct td_ctx *ctx = mqtt_ctx(c);
  rc = ctx->db ? td_dbpool_submit(ctx->db, &w->job) : TD_ECLOSED;
  if (rc) {
    wait_free(w);
    mqtt_conn_end(c, rc == TD_EFULL ? TD_MQTT_RC_SERVER_BUSY : TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  c->gw_wait = w; /* input waits until the children are known */
  mqtt_conn_update_reading(c);
}

/* add_msgs: append n messages to a growing array. */
static int add_msgs(struct td_msg ***all, size_t *n, size_t *cap, struct td_msg **m, size_t k) {
  if (*n + k > *cap) {
    size_t nc = (*cap ? *cap * 2 : 8);
    while (nc < *n + k) nc *= 2;
    struct td_msg **na = realloc(*all, nc * sizeof *na);
    if (!na) return TD_ENOMEM;
    *all = na;
    *cap = nc;
  }
  memcpy(*all + *n, m, k * sizeof *m);
  *n += k;
  return 0;
}

static void data_upload(struct mconn *c, json_t *v, bool telemetry, uint16_t pid, int qos) {
  struct td_payload_opts o = td_transport_payload_opts(mqtt_ctx(c));
  struct td_msg **all = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  char err[256] = "";
  const char *key;
  json_t *val;
  int64_t now = td_now_ms();
  json_object_foreach(v, key, val) {
    struct gw_child *k = find(c, key);
    if (!k || (telemetry ? !json_is_array(val) : !json_is_object(val))) {
      rc = TD_EPROTO;
      snprintf(err, sizeof err, "%s", telemetry ? "each device's value must be an array" : "each device's value must be an object");
      break;
    }
    td_device_state_activity(mqtt_ctx(c)->device_state, &k->dev->info.tenant_id, &k->dev->info.device_id, now);
    char *text = json_dumps(val, JSON_COMPACT);
    if (!text) {
      rc = TD_ENOMEM;
      break;
    }
    struct td_arena a;
    td_arena_init(&a, mqtt_arena_limit(c));
    struct td_msg **msgs = NULL, *one = NULL;
    size_t nm = 0;
    if (telemetry) {
      rc = td_transport_telemetry_msgs(k->dev, &o, text, strlen(text), now, &a, &msgs, &nm, err, sizeof err);
    } else {
      rc = td_transport_attributes_msg(k->dev, &o, text, strlen(text), &a, &one, err, sizeof err);
      msgs = &one;
      nm = rc ? 0 : 1;
    }
    free(text);
    if (!rc && add_msgs(&all, &n, &cap, msgs, nm)) {
      for (size_t i = 0; i < nm; i++) td_msg_unref(msgs[i]);
      rc = TD_ENOMEM;
    }
    td_arena_deinit(&a);
    if (rc) break;
  }
  if (rc) {
    for (size_t i = 0; i < n; i++) td_msg_unref(all[i]);
    free(all);
    if (rc == TD_EPROTO) mqtt_bad_payload(c, pid, qos, telemetry ? "gateway telemetry" : "gateway attributes", err);
    else mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return;
  }
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (p) {
    mqtt_pend_produce(p, all, n);
  } else {
    for (size_t i = 0; i < n; i++) td_msg_unref(all[i]);
  }
  free(all);
}

static void attr_request(struct mconn *c, json_t *v, uint16_t pid, int qos) {
  struct gw_child *k = find(c, device_of(v));
  json_t *id = json_object_get(v, "id");
  json_t *key = json_object_get(v, "key"), *keys = json_object_get(v, "keys");
  if (!k || !json_is_integer(id) || (!json_is_string(key) && !json_is_array(keys))) {
    mqtt_bad_payload(c, pid, qos, "gateway attribute request", "want {\"id\",\"device\",\"client\",\"key\"|\"keys\"}");
    return;
  }
  td_device_state_activity(mqtt_ctx(c)->device_state, &k->dev->info.tenant_id, &k->dev->info.device_id, td_now_ms());
  struct pend *p = mqtt_pend_new(c, pid, qos);
  if (!p) return;
  td_arena_init(&p->arena, mqtt_arena_limit(c));
  p->arena_on = true;
  p->device_id = k->dev->info.device_id;
  p->req_id = (int32_t)json_integer_value(id);
  p->gw_device = strdup(k->name);
  p->gw_single = json_is_string(key);
  bool client = json_is_true(json_object_get(v, "client"));
  size_t nk = p->gw_single ? 1 : json_array_size(keys);
  const char **ks = td_arena_alloc(&p->arena, (nk ? nk : 1) * sizeof *ks);
  int rc = p->gw_device && ks ? 0 : TD_ENOMEM;
  size_t m = 0;
  for (size_t i = 0; i < nk && !rc; i++) {
    const char *s = p->gw_single ? json_string_value(key) : json_string_value(json_array_get(keys, i));
    if (!s) continue;
    if (!(ks[m++] = td_arena_strdup(&p->arena, s))) rc = TD_ENOMEM;
  }
  if (rc) {
    mqtt_pend_finish(p, rc, 0);
    return;
  }
  if (client) {
    p->want_client = true;
    p->ckeys = ks;
    p->nck = m;
  } else {
    p->want_shared = true;
    p->skeys = ks;
    p->nsk = m;
  }
  if (m == 0) { /* nothing asked: answer without reading */
    p->want_client = p->want_shared = false;
  }
  mqtt_attr_job_start(c, p);
}

int mqtt_gw_attr_response(struct mconn *c, struct pend *p) {
  const struct td_attr *a = p->want_client ? p->cattr : p->sattr;
  size_t n = p->want_client ? p->ncattr : p->nsattr;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_printf(&b, "{\"id\":%" PRId32 ",\"device\":", p->req_id);
  if (!rc) rc = td_buf_json_str(&b, p->gw_device);
  if (!rc && p->gw_single) {
    if (n) {
      rc = td_buf_puts(&b, ",\"value\":");
      if (!rc) rc = td_kv_append_json_value(&b, &a[0].kv);
    }
  } else if (!rc) {
    rc = td_buf_puts(&b, ",\"values\":{");
    for (size_t i = 0; i < n && !rc; i++) {
      if (i) rc = td_buf_puts(&b, ",");
      if (!rc) rc = td_buf_json_str(&b, a[i].kv.key);
      if (!rc) rc = td_buf_puts(&b, ":");
      if (!rc) rc = td_kv_append_json_value(&b, &a[i].kv);
    }
    if (!rc) rc = td_buf_puts(&b, "}");
  }
  if (!rc) rc = td_buf_puts(&b, "}");
  if (!rc) {
    int q = c->sub_qos[SUB_GW_ATTR_RESP] > 0 ? 1 : 0;
    mqtt_send_publish(c, "v1/gateway/attributes/response", b.data, b.len, q, -1, NULL);
  }
  td_buf_deinit(&b);
  return rc ? TD_ENOMEM : 0;
}

static void gw_continue(struct mconn *c, json_t *v, enum mtopic t, uint16_t pid, int qos) {
  struct td_ctx *ctx = mqtt_ctx(c);
  switch (t) {
  case T_GW_CONNECT: mqtt_immediate(c, pid, qos, 0); break; /* the child session is open */
  case T_GW_DISCONNECT: {
    struct gw_child *k = device_of(v) ? find(c, device_of(v)) : NULL;
    if (k) child_close(c, k, true);
    mqtt_immediate(c, pid, qos, 0);
    break;
  }
  case T_GW_TELEMETRY: data_upload(c, v, true, pid, qos); break;
  case T_GW_ATTRIBUTES: data_upload(c, v, false, pid, qos); break;
  case T_GW_ATTR_REQUEST: attr_request(c, v, pid, qos); break;
  case T_GW_RPC: {
    struct gw_child *k = device_of(v) ? find(c, device_of(v)) : NULL;
    json_t *id = json_object_get(v, "id");
    if (!k || !json_is_integer(id)) {
      mqtt_bad_payload(c, pid, qos, "gateway RPC reply", "want {\"device\",\"id\",\"data\"}");
      return;
    }
    td_device_state_activity(ctx->device_state, &k->dev->info.tenant_id, &k->dev->info.device_id, td_now_ms());
    json_t *data = json_object_get(v, "data");
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = text ? td_core_rpc_reply(ctx, k->ds, (int32_t)json_integer_value(id), text, strlen(text)) : TD_ENOMEM;
    free(text);
    if (rc) td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"gateway RPC reply\" err=%s", c->id, td_errname(rc));
    mqtt_immediate(c, pid, qos, 0);
    break;
  }
  case T_GW_CLAIM: {
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      struct gw_child *k = find(c, key);
      const char *secret = json_string_value(json_object_get(val, "secretKey"));
      json_t *d = json_object_get(val, "durationMs");
      if (k) td_core_claim(ctx, k->ds, secret ? secret : "", json_is_integer(d) ? json_integer_value(d) : 0);
    }
    mqtt_immediate(c, pid, qos, 0);
    break;
  }
  default: mqtt_immediate(c, pid, qos, TD_MQTT_RC_TOPIC_NAME_INVALID); break;
  }
}

/* ---- downlink for children ---- */

static void child_attributes(void *owner, struct td_dsession *s, const char *payload, size_t len) {
  struct gw_child *k = owner;
  struct mconn *c = k->c;
  if (c->closing || c->sub_qos[SUB_GW_ATTR] < 0) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, "{\"device\":");
  if (!rc) rc = td_buf_json_str(&b, k->name);
  if (!rc) rc = td_buf_puts(&b, ",\"data\":");
  if (!rc) rc = td_buf_append(&b, payload, len);
  if (!rc) rc = td_buf_puts(&b, "}");
  if (!rc) mqtt_send_publish(c, "v1/gateway/attributes", b.data, b.len, c->sub_qos[SUB_GW_ATTR], -1, NULL);
  td_buf_deinit(&b);
}

static void child_rpc(void *owner, struct td_dsession *s, int32_t request_id, const char *method, const char *params,
                      int64_t expiration_ms, bool oneway) {
  struct gw_child *k = owner;
  struct mconn *c = k->c;
  if (c->closing || c->sub_qos[SUB_GW_RPC] < 0) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, "{\"device\":");
  if (!rc) rc = td_buf_json_str(&b, k->name);
  if (!rc) rc = td_buf_printf(&b, ",\"data\":{\"id\":%" PRId32 ",\"method\":", request_id);
  if (!rc) rc = td_buf_json_str(&b, method ? method : "");
  if (!rc) rc = td_buf_printf(&b, ",\"params\":%s}}", params && *params ? params : "{}");
  if (!rc) {
    int qos = c->sub_qos[SUB_GW_RPC];
    rc = mqtt_send_publish(c, "v1/gateway/rpc", b.data, b.len, qos, request_id, s);
    if (!rc && qos == 0) td_core_rpc_delivered(mqtt_ctx(c), s, request_id);
  }
  td_buf_deinit(&b);
}

static void child_rpc_response(void *owner, struct td_dsession *s, int32_t request_id, const char *payload,
                               size_t len) {
  (void)owner; /* children make no client-side RPC in the gateway API */
}

static void child_on_close(void *owner, struct td_dsession *s, int reason) {
  struct gw_child *k = owner;
  struct mconn *c = k->c;
  if (c->level == TD_MQTT_V5 && !c->closing) {
    struct td_buf b;
    td_buf_init(&b, 0);
    int rc = td_buf_puts(&b, "{\"device\":");
    if (!rc) rc = td_buf_json_str(&b, k->name);
    if (!rc) rc = td_buf_printf(&b, ",\"reason\":%d}", reason);
    if (!rc) mqtt_send_publish(c, "v1/gateway/disconnect", b.data, b.len, 0, -1, NULL);
    td_buf_deinit(&b);
  }
  child_close(c, k, true); /* the core ignores a close of a session it already dropped */
}

static const struct td_dsession_ops child_ops = {
  .on_attributes = child_attributes,
  .on_rpc_request = child_rpc,
  .on_rpc_response = child_rpc_response,
  .on_close = child_on_close,
};
