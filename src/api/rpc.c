/* rpc.c — server-side RPC from REST to a device (reference §2.7;
 * ThingsBoard's RpcV1Controller/RpcV2Controller, AbstractRpcController,
 * DefaultTbCoreDeviceRpcService).
 *
 *   POST /api/rpc/{oneway|twoway}/{deviceId}          (v2: 504 on timeout and
 *   POST /api/plugins/rpc/{oneway|twoway}/{deviceId}   when no session; legacy:
 *                                                       408 timeout, 409 no session)
 * Body {"method","params","timeout"(ms, default 10000, at least 5000),
 * "expirationTime"?, "requestUUID"?, "persistent"? (true: 400, not supported
 * yet), "additionalInfo"?}. TENANT_ADMIN of the device's tenant or a
 * CUSTOMER_USER of its customer.
 *
 * Flow: a storage job checks the device and the caller; back on the loop the
 * call registers a waiter under its requestUUID (td_rpc_waiter, bounded), arms
 * a timer on the loop and produces RPC_CALL_FROM_SERVER_TO_DEVICE (metadata
 * requestUUID, originServiceId, expirationTime, oneway, persistent,
 * deviceName, deviceType; data {"method":..,"params":"<params JSON text>"})
 * to the queue. The root chain's "rpc call request" node hands it to the
 * device's actor, which completes the waiter: twoway -> 200 with the device's
 * reply (JSON; 406 if it is not JSON), oneway -> 200 once sent. Error answers
 * have an empty body, as in ThingsBoard. The request cannot notice a client
 * that went away (http.h): the timer ends every call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/device_session.h"
#include "msg/msg.h"
#include "transport/transport.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MIN_TIMEOUT_MS 5000
#define GRACE_MS 1000 /* the device actor answers at expiry; this timer is the safety net */

struct call {
  struct td_rpc_waiter w;
  struct td_uplink_req up;
  uv_timer_t timer;
  struct td_http_req *r;
  struct td_ctx *ctx;
  int refs;               /* the timer handle + the pending uplink (loop thread only) */
  bool answered, oneway, v2;
  struct td_uuid device_id, tenant_id, customer_id;
  int64_t exp;
  char *method, *params, *info;
  char name[256], type[256];
};

static void call_release(struct call *c) {
  if (--c->refs > 0) return;
  free(c->method);
  free(c->params);
  free(c->info);
  free(c);
}

static void on_timer_closed(uv_handle_t *h) { call_release(h->data); }

static void answer(struct call *c, int status, const char *ctype, const char *body, size_t len) {
  if (c->answered) return;
  c->answered = true;
  if (status >= 400 && ctype) td_http_respond_error(c->r, status, status == 503 ? TD_TB_GENERAL : TD_TB_BAD_REQUEST_PARAMS, body);
  else td_http_respond(c->r, status, ctype, body, len);
  c->r = NULL;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void answer_error(struct call *c, int err) {
  if (err == TD_ECLOSED) answer(c, c->v2 ? 504 : 409, NULL, NULL, 0); /* NO_ACTIVE_CONNECTION */
  else answer(c, c->v2 ? 504 : 408, NULL, NULL, 0);                   /* TIMEOUT and others */
}

/* Loop: the device actor finished the call. */
static void on_result(struct td_rpc_waiter *w) {
  struct call *c = td_container_of(w, struct call, w);
  if (w->error) {
    answer_error(c, w->error);
  } else if (!w->payload || w->len == 0) {
    answer(c, 200, NULL, NULL, 0);
  } else {
    json_t *v = json_loadb(w->payload, w->len, JSON_DECODE_ANY, NULL);
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (s) answer(c, 200, "application/json", s, strlen(s));
    else answer(c, v ? 500 : 406, NULL, NULL, 0); /* not JSON: 406 Not Acceptable */
    free(s);
    json_decref(v);
  }
  free(w->payload);
  w->payload = NULL;
}

static void on_timer(uv_timer_t *t) {
  struct call *c = t->data;
  if (td_rpc_waiter_cancel(&c->w)) answer_error(c, TD_ETIMEDOUT);
}

static void on_uplink(struct td_uplink_req *up) {
  struct call *c = td_container_of(up, struct call, up);
  if (up->status && td_rpc_waiter_cancel(&c->w)) {
    td_log_limited(1, TD_LOG_WARN, "api", "action=\"queueing RPC\" err=%s", td_errname(up->status));
    answer(c, 503, "", "Server is busy, try again later", 0);
  }
  call_release(c);
}

/* send: the device is known and the caller may use it (loop). */
static void call_send(struct call *c) {
  struct td_http_req *r = c->r;
  char uuid[TD_UUID_STR_LEN + 1], exp[24];
  td_uuid_fmt(&c->w.request_uuid, uuid);
  snprintf(exp, sizeof exp, "%lld", (long long)c->exp);
  struct td_msg_md md[] = {{"requestUUID", uuid}, {"originServiceId", "thingsd"}, {"expirationTime", exp},
                           {"oneway", c->oneway ? "true" : "false"}, {"persistent", "false"},
                           {"deviceName", c->name}, {"deviceType", c->type}};
  json_t *d = json_pack("{s:s,s:s}", "method", c->method, "params", c->params);
  if (d && c->info) json_object_set_new(d, "additionalInfo", json_string(c->info));
  char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
  json_decref(d);
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE, .id = c->device_id};
  struct td_msg *m = data ? td_msg_new(TD_MSG_RPC_TO_DEVICE, &orig, &c->tenant_id, &c->customer_id, md,
                                       sizeof md / sizeof *md, TD_MSG_DATA_JSON, data, strlen(data))
                          : NULL;
  free(data);
  c->w.loop = r->loop;
  c->w.on_done = on_result;
  uv_timer_init(&r->loop->uv, &c->timer);
  c->timer.data = c;
  c->refs = 1; /* the timer handle */
  int rc = m ? td_rpc_waiter_add(&c->w) : TD_ENOMEM;
  if (rc) {
    td_msg_unref(m);
    if (rc == TD_EEXIST) answer(c, 400, "", "RPC with such requestUUID is already in progress", 0);
    else answer(c, rc == TD_EFULL ? 503 : 500, "", rc == TD_EFULL ? "Server is busy, try again later" : td_strerror(rc), 0);
    return;
  }
  int64_t wait = c->exp - td_now_ms();
  uv_timer_start(&c->timer, on_timer, (uint64_t)(wait > 0 ? wait : 0) + GRACE_MS, 0);
  c->up.loop = r->loop;
  c->up.done = on_uplink;
  c->refs++; /* the uplink */
  rc = c->ctx->transport ? td_transport_uplink(c->ctx->transport, &m, 1, &c->up) : TD_ECLOSED;
  td_msg_unref(m);
  if (rc) {
    c->refs--;
    if (td_rpc_waiter_cancel(&c->w)) answer(c, 503, "", "Server is busy, try again later", 0);
  }
}

/* Storage thread: the device exists and the caller may send it RPC. */
static void load_work(struct api_job *j, struct td_store *st) {
  struct call *c = j->x;
  json_t *d = NULL;
  int rc = td_store_device_get(st, &c->device_id, &d);
  if (rc) {
    api_fail_rc(j, rc, "Device", &c->device_id);
    return;
  }
  if (api_check_read(j, d) == 0) {
    snprintf(c->name, sizeof c->name, "%s", api_json_str(d, "name") ? api_json_str(d, "name") : "");
    snprintf(c->type, sizeof c->type, "%s", api_json_str(d, "type") ? api_json_str(d, "type") : "default");
    if (api_json_id(d, "tenantId", &c->tenant_id)) c->tenant_id = j->me.tenant_id;
    struct td_uuid cid;
    if (api_json_id(d, "customerId", &cid) == 0 && !td_uuid_is_null(&cid)) c->customer_id = cid;
    api_ok_empty(j);
  }
  json_decref(d);
}

/* Loop. */
static void load_done(struct td_dbjob *db) {
  struct api_job *j = td_container_of(db, struct api_job, db);
  struct call *c = j->x;
  if (j->tb_code || j->status != 200) {
    c->refs = 1;
    call_release(c);
    api_job_finish(j);
    return;
  }
  api_job_free(j);
  call_send(c);
}

static void bad(struct td_http_req *r, json_t *b, const char *msg) {
  json_decref(b);
  api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
}

static void handle(struct td_http_req *r, bool oneway, bool v2) {
  struct td_auth_principal me;
  struct td_uuid did;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "deviceId", &did)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  json_t *method = json_object_get(b, "method"), *params = json_object_get(b, "params");
  json_t *to = json_object_get(b, "timeout"), *et = json_object_get(b, "expirationTime");
  json_t *ru = json_object_get(b, "requestUUID"), *pe = json_object_get(b, "persistent");
  json_t *ai = json_object_get(b, "additionalInfo");
  if (!json_is_object(b) || !json_is_string(method) || !params) {
    bad(r, b, "Invalid request body");
    return;
  }
  if ((to && !json_is_null(to) && !json_is_integer(to)) || (et && !json_is_null(et) && !json_is_integer(et))) {
    bad(r, b, "Invalid request body");
    return;
  }
  if (pe && !json_is_null(pe) && !json_is_boolean(pe)) {
    bad(r, b, "Invalid request body");
    return;
  }
  if (json_is_true(pe)) {
    bad(r, b, "Persistent RPC is not supported yet");
    return;
  }
  struct call *c = calloc(1, sizeof *c);
  if (!c) {
    json_decref(b);
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  if (json_is_string(ru)) {
    if (td_uuid_parse(json_string_value(ru), &c->w.request_uuid)) {
      free(c);
      bad(r, b, "Invalid requestUUID");
      return;
    }
  } else {
    td_uuid_new(&c->w.request_uuid);
  }
  int64_t timeout = json_is_integer(to) ? json_integer_value(to) : DEFAULT_TIMEOUT_MS;
  if (timeout < MIN_TIMEOUT_MS) timeout = MIN_TIMEOUT_MS;
  c->exp = json_is_integer(et) ? json_integer_value(et) : td_now_ms() + timeout;
  c->r = r;
  c->ctx = api_ctx(r);
  c->oneway = oneway;
  c->v2 = v2;
  c->device_id = did;
  c->method = strdup(json_string_value(method));
  c->params = json_dumps(params, JSON_COMPACT | JSON_ENCODE_ANY);
  if (ai && !json_is_null(ai)) c->info = json_dumps(ai, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(b);
  c->refs = 1;
  if (!c->method || !c->params) {
    call_release(c);
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  struct api_job *j = api_job_new(r, &me, load_work);
  if (!j) {
    call_release(c);
    return;
  }
  j->x = c;
  j->db.done = load_done;
  /* api_submit frees the job and answers on failure; the call is ours to free then. */
  if (td_dbpool_submit(j->ctx->db, &j->db)) {
    j->db.done = NULL;
    call_release(c);
    api_job_free(j);
    api_respond_error(r, 503, TD_TB_GENERAL, "Server is busy, try again later");
  }
}

static void h_oneway(struct td_http_req *r) { handle(r, true, true); }
static void h_twoway(struct td_http_req *r) { handle(r, false, true); }
static void h_oneway_v1(struct td_http_req *r) { handle(r, true, false); }
static void h_twoway_v1(struct td_http_req *r) { handle(r, false, false); }

int api_rpc_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/rpc/oneway/{deviceId}", h_oneway},
      {TD_HTTP_POST, "/api/rpc/twoway/{deviceId}", h_twoway},
      {TD_HTTP_POST, "/api/plugins/rpc/oneway/{deviceId}", h_oneway_v1},
      {TD_HTTP_POST, "/api/plugins/rpc/twoway/{deviceId}", h_twoway_v1},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
