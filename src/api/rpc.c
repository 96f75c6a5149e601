/* rpc.c — server-side RPC from REST to a device (reference §2.7;
 * ThingsBoard's RpcV1Controller/RpcV2Controller, AbstractRpcController,
 * DefaultTbCoreDeviceRpcService).
 *
 *   POST /api/rpc/{oneway|twoway}/{deviceId}          (v2: 504 on timeout and
 *   POST /api/plugins/rpc/{oneway|twoway}/{deviceId}   when no session; legacy:
 *                                                       408 timeout, 409 no session)
 * Body {"method","params","timeout"(ms, default 10000, at least 5000),
 * "expirationTime"?, "requestUUID"?, "persistent"?, "retries"?,
 * "additionalInfo"?}. TENANT_ADMIN of the device's tenant or a CUSTOMER_USER
 * of its customer.
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
 * that went away (http.h): the timer ends every call. Live calls are listed
 * in a process-wide registry (several loops: a mutex) so that calls still
 * open when the server stops — their completions posted to loops that no
 * longer run — stay reachable instead of looking like leaks; they are
 * bounded by the waiter limit and the connection limit.
 *
 * Persistent RPC ("persistent":true): the same storage job also stores the
 * Rpc row (status QUEUED, id = requestUUID, emits RPC_QUEUED); once the
 * RPC_CALL message is durable in the queue the answer is 200
 * {"rpcId":"<uuid>"}, and the device's actor carries it on (device_session.h).
 *   GET    /api/rpc/persistent/{rpcId}              -> Rpc JSON
 *   GET    /api/rpc/persistent/device/{deviceId}?pageSize&page&rpcStatus
 *          &textSearch&sortProperty&sortOrder       -> PageData<Rpc>
 *   DELETE /api/rpc/persistent/{rpcId}              -> 200 (RPC_DELETED emitted,
 *                                                       the actor drops it)
 * with the same access rule as the device (403 for another tenant's, or a
 * customer user's device it does not own). */
#include <pthread.h>
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
  struct call *prev, *next;  /* the registry */
  struct td_rpc_waiter w;
  struct td_uplink_req up;
  uv_timer_t timer;
  struct td_http_req *r;
  struct td_ctx *ctx;
  int refs;               /* the timer handle + the pending uplink (loop thread only) */
  bool answered, oneway, v2, persistent, timer_on;
  int retries;            /* persistent: < 0 = not given */
  struct td_uuid device_id, tenant_id, customer_id;
  int64_t exp;
  char *method, *params, *info;
  char name[256], type[256];
};

static pthread_mutex_t calls_mu = PTHREAD_MUTEX_INITIALIZER;
static struct call *calls_live;

static void call_register(struct call *c) {
  pthread_mutex_lock(&calls_mu);
  c->next = calls_live;
  if (calls_live) calls_live->prev = c;
  calls_live = c;
  pthread_mutex_unlock(&calls_mu);
}

static void call_release(struct call *c) {
  if (--c->refs > 0) return;
  pthread_mutex_lock(&calls_mu);
  if (c->prev) c->prev->next = c->next;
  else calls_live = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&calls_mu);
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
  if (c->timer_on) {
    c->timer_on = false;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  }
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

/* Loop: a persistent RPC's request is durable (or not). */
static void on_uplink_persistent(struct td_uplink_req *up) {
  struct call *c = td_container_of(up, struct call, up);
  if (up->status) {
    /* The row stays QUEUED: the device's actor reads it when a session next subscribes. */
    td_log_limited(1, TD_LOG_WARN, "api", "action=\"queueing persistent RPC\" err=%s", td_errname(up->status));
    answer(c, 503, "", "Server is busy, try again later", 0);
  } else {
    char body[64], u[TD_UUID_STR_LEN + 1];
    int n = snprintf(body, sizeof body, "{\"rpcId\":\"%s\"}", td_uuid_fmt(&c->w.request_uuid, u));
    answer(c, 200, "application/json", body, (size_t)n);
  }
  call_release(c);
}

/* request_msg: the RPC_CALL_FROM_SERVER_TO_DEVICE message (caller owns it), or NULL. */
static struct td_msg *request_msg(struct call *c) {
  char uuid[TD_UUID_STR_LEN + 1], exp[24], retries[16];
  td_uuid_fmt(&c->w.request_uuid, uuid);
  snprintf(exp, sizeof exp, "%lld", (long long)c->exp);
  snprintf(retries, sizeof retries, "%d", c->retries);
  struct td_msg_md md[] = {{"requestUUID", uuid}, {"originServiceId", "thingsd"}, {"expirationTime", exp},
                           {"oneway", c->oneway ? "true" : "false"}, {"persistent", c->persistent ? "true" : "false"},
                           {"deviceName", c->name}, {"deviceType", c->type}, {"retries", retries}};
  size_t nmd = sizeof md / sizeof *md - (c->retries < 0 ? 1 : 0);
  json_t *d = json_pack("{s:s,s:s}", "method", c->method, "params", c->params);
  if (d && c->info) json_object_set_new(d, "additionalInfo", json_string(c->info));
  char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
  json_decref(d);
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE, .id = c->device_id};
  struct td_msg *m = data ? td_msg_new(TD_MSG_RPC_TO_DEVICE, &orig, &c->tenant_id, &c->customer_id, md, nmd,
                                       TD_MSG_DATA_JSON, data, strlen(data))
                          : NULL;
  free(data);
  return m;
}

/* call_send_persistent: the row is stored; hand the request to the queue (loop). */
static void call_send_persistent(struct call *c) {
  struct td_msg *m = request_msg(c);
  c->up.loop = c->r->loop;
  c->up.done = on_uplink_persistent;
  c->refs = 1; /* the uplink */
  int rc = !m ? TD_ENOMEM : c->ctx->transport ? td_transport_uplink(c->ctx->transport, &m, 1, &c->up) : TD_ECLOSED;
  td_msg_unref(m);
  if (rc) {
    c->up.status = rc;
    on_uplink_persistent(&c->up);
  }
}

/* send: the device is known and the caller may use it (loop). */
static void call_send(struct call *c) {
  struct td_http_req *r = c->r;
  struct td_msg *m = request_msg(c);
  c->w.loop = r->loop;
  c->w.on_done = on_result;
  uv_timer_init(&r->loop->uv, &c->timer);
  c->timer.data = c;
  c->timer_on = true;
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

/* rpc_row: the Rpc JSON of a new persistent RPC (status QUEUED). */
static json_t *rpc_row(struct call *c) {
  char u[TD_UUID_STR_LEN + 1], t[TD_UUID_STR_LEN + 1], d[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(&c->w.request_uuid, u);
  td_uuid_fmt(&c->tenant_id, t);
  td_uuid_fmt(&c->device_id, d);
  json_t *info = c->info ? json_loads(c->info, JSON_DECODE_ANY, NULL) : NULL;
  /* ThingsBoard's ToDeviceRpcRequest, as its Rpc.request holds it */
  json_t *req = json_pack("{s:s,s:{s:s,s:s},s:{s:s,s:s},s:b,s:I,s:{s:s,s:s},s:b,s:o,s:O}", "id", u, "tenantId",
                          "entityType", "TENANT", "id", t, "deviceId", "entityType", "DEVICE", "id", d, "oneway",
                          c->oneway, "expirationTime", (json_int_t)c->exp, "body", "method", c->method, "params",
                          c->params, "persisted", 1, "retries",
                          c->retries >= 0 ? json_integer(c->retries) : json_null(), "additionalInfo",
                          info ? info : json_null());
  json_t *row = req ? json_pack("{s:{s:s,s:s},s:I,s:{s:s,s:s},s:{s:s,s:s},s:I,s:o,s:n,s:s,s:O}", "id", "entityType",
                                "RPC", "id", u, "createdTime", (json_int_t)td_now_ms(), "tenantId", "entityType",
                                "TENANT", "id", t, "deviceId", "entityType", "DEVICE", "id", d, "expirationTime",
                                (json_int_t)c->exp, "request", req, "response", "status", "QUEUED", "additionalInfo",
                                info ? info : json_null())
                    : NULL;
  json_decref(info);
  return row;
}

/* Storage thread: the device exists and the caller may send it RPC; a
 * persistent RPC's row is stored. */
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
    if (c->persistent) {
      json_t *row = rpc_row(c);
      rc = row ? td_store_rpc_insert(st, row) : TD_ENOMEM;
      if (rc == TD_EEXIST) api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "RPC with such requestUUID already exists");
      else if (rc) api_fail_rc(j, rc, NULL, NULL);
      else td_core_rpc_emit(j->ctx, row, "QUEUED");
      json_decref(row);
    }
    if (rc == 0) api_ok_empty(j);
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
  if (c->persistent) call_send_persistent(c);
  else call_send(c);
}

static void bad(struct td_http_req *r, json_t *b, const char *msg) {
  json_decref(b);
  api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
}

static bool opt_int(json_t *v) { return !v || json_is_null(v) || json_is_integer(v); }

static void handle(struct td_http_req *r, bool oneway, bool v2) {
  struct td_auth_principal me;
  struct td_uuid did;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "deviceId", &did)) return;
  json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
  json_t *method = json_object_get(b, "method"), *params = json_object_get(b, "params");
  json_t *to = json_object_get(b, "timeout"), *et = json_object_get(b, "expirationTime");
  json_t *ru = json_object_get(b, "requestUUID"), *pe = json_object_get(b, "persistent");
  json_t *ai = json_object_get(b, "additionalInfo"), *re = json_object_get(b, "retries");
  if (!json_is_object(b) || !json_is_string(method) || !params) {
    bad(r, b, "Invalid request body");
    return;
  }
  if (!opt_int(to) || !opt_int(et) || !opt_int(re) || (json_is_integer(re) && json_integer_value(re) < 0)) {
    bad(r, b, "Invalid request body");
    return;
  }
  if (pe && !json_is_null(pe) && !json_is_boolean(pe)) {
    bad(r, b, "Invalid request body");
    return;
  }
  struct call *c = calloc(1, sizeof *c);
  if (!c) {
    json_decref(b);
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  call_register(c);
  if (json_is_string(ru)) {
    if (td_uuid_parse(json_string_value(ru), &c->w.request_uuid)) {
      c->refs = 1;
      call_release(c);
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
  c->persistent = json_is_true(pe);
  c->retries = json_is_integer(re) ? (int)(json_integer_value(re) > 1000000 ? 1000000 : json_integer_value(re)) : -1;
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

/* ---- persistent RPC rows ---- */

/* check_rpc_access: me may see rpc (through its device; a deleted device:
 * same tenant). On refusal answers 403 and returns -1. Storage thread. */
static int check_rpc_access(struct api_job *j, struct td_store *st, json_t *rpc) {
  struct td_uuid did;
  json_t *d = NULL;
  if (api_json_id(rpc, "deviceId", &did) == 0 && td_store_device_get(st, &did, &d) == 0) {
    int rc = api_check_read(j, d);
    json_decref(d);
    return rc;
  }
  if (j->me.authority == TD_AUTHORITY_TENANT_ADMIN && api_same_tenant(j, rpc)) return 0;
  api_fail_denied(j);
  return -1;
}

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *rpc = NULL;
  int rc = td_store_rpc_get(st, &j->id, &rpc);
  if (rc) api_fail_rc(j, rc, "Rpc", &j->id);
  else if (check_rpc_access(j, st, rpc) == 0) api_ok_json(j, json_incref(rpc));
  json_decref(rpc);
}

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *rpc = NULL;
  int rc = td_store_rpc_get(st, &j->id, &rpc);
  if (rc) {
    api_fail_rc(j, rc, "Rpc", &j->id);
  } else if (check_rpc_access(j, st, rpc) == 0) {
    rc = td_store_rpc_delete(st, &j->id);
    if (rc) {
      api_fail_rc(j, rc, "Rpc", &j->id);
    } else {
      struct td_uuid did, tid;
      if (api_json_id(rpc, "deviceId", &did) == 0 && api_json_id(rpc, "tenantId", &tid) == 0)
        (void)td_core_rpc_deleted(j->ctx, &tid, &did, &j->id);
      td_core_rpc_emit(j->ctx, rpc, "DELETED");
      api_ok_empty(j);
    }
  }
  json_decref(rpc);
}

static void list_work(struct api_job *j, struct td_store *st) {
  json_t *d = NULL, *page = NULL;
  int rc = td_store_device_get(st, &j->id, &d);
  if (rc) {
    api_fail_rc(j, rc, "Device", &j->id);
  } else if (api_check_read(j, d) == 0) {
    rc = td_store_rpcs_page(st, &j->id, j->s[0], &j->pl, &page);
    if (rc) api_fail_rc(j, rc, NULL, NULL);
    else api_ok_json(j, page);
  }
  json_decref(d);
}

static void h_get(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "rpcId", &id)) return;
  struct api_job *j = api_job_new(r, &me, get_work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static void h_delete(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "rpcId", &id)) return;
  struct api_job *j = api_job_new(r, &me, delete_work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static const char *const statuses[] = {"QUEUED", "SENT", "DELIVERED", "SUCCESSFUL", "TIMEOUT", "EXPIRED", "FAILED",
                                       "DELETED"};

static void h_list(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  struct td_page_link pl;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "deviceId", &id) ||
      api_page_params(r, &pl))
    return;
  const char *st = td_http_query_get(r, "rpcStatus");
  if (st && !*st) st = NULL;
  if (st) {
    bool known = false;
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++) known = known || strcmp(st, statuses[i]) == 0;
    if (!known) {
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid rpcStatus");
      return;
    }
  }
  struct api_job *j = api_job_new(r, &me, list_work);
  if (!j) return;
  j->id = id;
  j->pl = pl;
  j->s[0] = st;
  api_submit(j);
}

int api_rpc_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/rpc/oneway/{deviceId}", h_oneway},
      {TD_HTTP_POST, "/api/rpc/twoway/{deviceId}", h_twoway},
      {TD_HTTP_POST, "/api/plugins/rpc/oneway/{deviceId}", h_oneway_v1},
      {TD_HTTP_POST, "/api/plugins/rpc/twoway/{deviceId}", h_twoway_v1},
      {TD_HTTP_GET, "/api/rpc/persistent/{rpcId}", h_get},
      {TD_HTTP_DELETE, "/api/rpc/persistent/{rpcId}", h_delete},
      {TD_HTTP_GET, "/api/rpc/persistent/device/{deviceId}", h_list},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
