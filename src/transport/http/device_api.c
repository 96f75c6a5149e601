/* device_api.c — ThingsBoard's HTTP device API (reference §1.2) as routes on
 * the HTTP server: telemetry and attribute uploads, attribute reads, and
 * claiming (POST /api/v1/{token}/claim, optional {"secretKey","durationMs"},
 * kept in the core's claim table: td_core_claim_device).
 *
 * Every request: authenticate the token (credentials cache, else a storage
 * job), then either parse the payload into TbMsgs and hand them to the
 * durable queue (200 only once they are durable), or read attributes on a
 * storage thread. All callbacks arrive on the request's loop; the per-request
 * state lives in the request's arena and so ends with the answer. Long polls
 * for RPC and attribute updates, RPC replies and client-side RPC have their
 * own block below ("long polls"). */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/device_session.h"
#include "core/device_state.h"
#include "core/payload.h"
#include "store/store.h"
#include "transport/http/http.h"
#include "transport/transport.h"

enum op { OP_TELEMETRY, OP_ATTR_POST, OP_ATTR_GET, OP_CLAIM, OP_RPC_POLL, OP_ATTR_POLL, OP_RPC_REPLY, OP_CLIENT_RPC };

struct devreq {
  struct td_http_req *r;
  struct td_ctx *ctx;
  enum op op;
  struct td_auth_req auth;
  struct td_uplink_req up;
  struct td_dbjob job;
  struct td_device_ref *dev;
  /* attribute reads */
  const char **ckeys, **skeys;
  size_t nck, nsk;
  bool want_client, want_shared;
  struct td_attr *cattr, *sattr;
  size_t ncattr, nsattr;
};

static void answer_err(struct devreq *d, int err) {
  struct td_http_req *r = d->r;
  if (d->dev) td_device_ref_put(d->dev);
  d->dev = NULL;
  if (err == TD_EAUTH) {
    td_http_respond(r, 401, NULL, NULL, 0);
    return;
  }
  int code;
  int st = td_http_status_of(err, &code);
  td_http_respond_error(r, st, code, st == 503 ? "Server is busy, try again later" : td_strerror(err));
}

static void answer_ok(struct devreq *d) {
  if (d->dev) td_device_ref_put(d->dev);
  d->dev = NULL;
  td_http_respond(d->r, 200, NULL, NULL, 0);
}

static void on_uplink(struct td_uplink_req *u) {
  struct devreq *d = td_container_of(u, struct devreq, up);
  if (u->status == 0) answer_ok(d);
  else answer_err(d, u->status);
}

/* produce: hand msgs to the queue; consumes the caller's references. */
static void produce(struct devreq *d, struct td_msg **msgs, size_t n) {
  d->up.loop = d->r->loop;
  d->up.done = on_uplink;
  int rc = n ? td_transport_uplink(d->ctx->transport, msgs, n, &d->up) : 0;
  for (size_t i = 0; i < n; i++) td_msg_unref(msgs[i]);
  if (rc) answer_err(d, rc);
  else if (n == 0) answer_ok(d);
}

static void bad_payload(struct devreq *d, int rc, const char *err) {
  td_log_limited(5, TD_LOG_INFO, "http", "action=\"device %s\" status=400 reason=\"%s\"",
                 d->op == OP_TELEMETRY ? "telemetry" : d->op == OP_ATTR_POST ? "attributes" : "RPC", err);
  if (d->dev) td_device_ref_put(d->dev);
  d->dev = NULL;
  if (rc == TD_ENOMEM) {
    td_http_respond_error(d->r, 413, TD_TB_BAD_REQUEST_PARAMS, "Payload Too Large");
    return;
  }
  char msg[300];
  snprintf(msg, sizeof msg, "Invalid JSON: %s", err[0] ? err : "malformed");
  td_http_respond_error(d->r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
}

static void do_telemetry(struct devreq *d) {
  struct td_http_req *r = d->r;
  struct td_payload_opts o = td_transport_payload_opts(d->ctx);
  struct td_msg **msgs;
  size_t n;
  char err[256] = "";
  int rc = td_transport_telemetry_msgs(d->dev, &o, r->body, r->body_len, td_now_ms(), &r->arena, &msgs, &n, err,
                                       sizeof err);
  if (rc == TD_EPROTO || rc == TD_ENOMEM) bad_payload(d, rc, err); /* ENOMEM: the arena's cap, 413 */
  else if (rc) answer_err(d, rc);
  else produce(d, msgs, n);
}

static void do_attr_post(struct devreq *d) {
  struct td_http_req *r = d->r;
  struct td_payload_opts o = td_transport_payload_opts(d->ctx);
  struct td_msg *m;
  char err[256] = "";
  int rc = td_transport_attributes_msg(d->dev, &o, r->body, r->body_len, &r->arena, &m, err, sizeof err);
  if (rc == TD_EPROTO || rc == TD_ENOMEM) bad_payload(d, rc, err); /* ENOMEM: the arena's cap, 413 */
  else if (rc) answer_err(d, rc);
  else produce(d, &m, 1);
}

/* ---- attribute reads ---- */

static void attr_run(struct td_dbjob *j, struct td_store *st) {
  struct devreq *d = td_container_of(j, struct devreq, job);
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = d->dev->info.device_id};
  int rc = 0;
  /* the arena is ours alone while the request waits for this job */
  if (d->want_client)
    rc = td_store_attributes_get(st, &e, TD_SCOPE_CLIENT, d->ckeys, d->nck, &d->r->arena, &d->cattr, &d->ncattr);
  if (!rc && d->want_shared)
    rc = td_store_attributes_get(st, &e, TD_SCOPE_SHARED, d->skeys, d->nsk, &d->r->arena, &d->sattr, &d->nsattr);
  j->status = rc;
}

static void attr_done(struct td_dbjob *j) {
  struct devreq *d = td_container_of(j, struct devreq, job);
  if (j->status) {
    answer_err(d, j->status == TD_EFULL ? TD_EFULL : TD_EIO);
    return;
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_transport_attr_response_json(&b, d->cattr, d->ncattr, d->sattr, d->nsattr);
  if (rc) {
    td_buf_deinit(&b);
    answer_err(d, TD_ENOMEM);
    return;
  }
  td_device_ref_put(d->dev);
  d->dev = NULL;
  size_t len = b.len;
  td_http_respond_json_take(d->r, 200, td_buf_take(&b), len);
}

static void do_attr_get(struct devreq *d) {
  struct td_http_req *r = d->r;
  const char *ck = td_http_query_get(r, "clientKeys");
  const char *sk = td_http_query_get(r, "sharedKeys");
  bool has_c = ck && *ck, has_s = sk && *sk;
  if (!has_c && !has_s) {
    d->want_client = d->want_shared = true; /* all client and shared attributes */
  } else {
    if (has_c && td_transport_split_keys(&r->arena, ck, &d->ckeys, &d->nck)) goto nomem;
    if (has_s && td_transport_split_keys(&r->arena, sk, &d->skeys, &d->nsk)) goto nomem;
    d->want_client = has_c && d->nck > 0;
    d->want_shared = has_s && d->nsk > 0;
  }
  memset(&d->job, 0, sizeof d->job);
  d->job.run = attr_run;
  d->job.done = attr_done;
  d->job.reply_loop = r->loop;
  int rc = d->ctx->db ? td_dbpool_submit(d->ctx->db, &d->job) : TD_ECLOSED;
  if (rc) answer_err(d, rc == TD_EFULL ? TD_EFULL : TD_EIO);
  return;
nomem:
  answer_err(d, TD_ENOMEM);
}

/* ---- claiming ---- */

static void do_claim(struct devreq *d) {
  struct td_http_req *r = d->r;
  const char *secret = "";
  int64_t duration = 0;
  json_t *b = NULL;
  if (r->body_len) {
    b = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *k = json_object_get(b, "secretKey"), *du = json_object_get(b, "durationMs");
    if (!json_is_object(b) || (k && !json_is_null(k) && !json_is_string(k)) ||
        (du && !json_is_null(du) && !json_is_integer(du))) {
      json_decref(b);
      bad_payload(d, TD_EINVAL, "invalid claim request");
      return;
    }
    if (json_is_string(k)) secret = json_string_value(k);
    if (json_is_integer(du)) duration = json_integer_value(du);
  }
  int rc = td_core_claim_device(d->ctx, &d->dev->info.tenant_id, &d->dev->info.device_id, secret, duration);
  json_decref(b);
  if (rc) answer_err(d, rc);
  else answer_ok(d);
}

/* ---- long polls, RPC replies and client-side RPC (reference §1.2, §8 items
 * 3-4): GET .../rpc?timeout=, GET .../attributes/updates?timeout=,
 * POST .../rpc/{id}, POST .../rpc ----
 *
 * A long poll or a client-side RPC call is a short-lived device session
 * (td_core_session_open_sync): the Device actor hands it what it hands an
 * MQTT session, through the same ops, and the first of those answers the
 * request and ends the session. A timer on the loop ends it at the latest
 * (408; a client-side RPC {"error":"timeout"}), also when the client went
 * away meanwhile: the request stays valid until answered (http.h). The
 * struct lpoll is on the heap because its timer handle outlives the answer
 * by one close callback. Live ones are listed in one process-wide registry
 * (under a mutex: several loops) so that polls still open when the server
 * stops — their loops closed the timers without callbacks — stay reachable
 * instead of looking like leaks; the number is bounded by the connection
 * limit (one request per connection). */

#define POLL_MAX_MS 300000   /* ThingsBoard's servlet cap */
#define RPC_MAX_BODY 65536   /* the /api/v1/{token}/rpc routes: 413 past it */

enum pkind { P_RPC, P_ATTRS, P_CLIENT_RPC };

struct lpoll {
  struct lpoll *prev, *next;  /* the registry */
  uv_timer_t timer;
  struct td_uplink_req up;    /* client-side RPC: the request into the queue */
  struct td_http_req *r;      /* NULL once answered */
  struct td_ctx *ctx;
  struct td_dsession *s;      /* our reference; NULL once ended */
  enum pkind kind;
  int refs;                   /* the timer handle + a pending uplink (loop thread only) */
};

static pthread_mutex_t lp_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lpoll *lp_live;

static void lpoll_register(struct lpoll *p) {
  pthread_mutex_lock(&lp_mu);
  p->next = lp_live;
  if (lp_live) lp_live->prev = p;
  lp_live = p;
  pthread_mutex_unlock(&lp_mu);
}

static void lpoll_release(struct lpoll *p) {
  if (--p->refs > 0) return;
  pthread_mutex_lock(&lp_mu);
  if (p->prev) p->prev->next = p->next;
  else lp_live = p->next;
  if (p->next) p->next->prev = p->prev;
  pthread_mutex_unlock(&lp_mu);
  free(p);
}

static void lpoll_timer_closed(uv_handle_t *h) { lpoll_release(h->data); }

/* lpoll_end: answer once, end the session (events to the actor keep their
 * order: a delivery acknowledgement sent before this goes first). */
static void lpoll_end(struct lpoll *p, int status, const char *ctype, const char *body, size_t len) {
  if (!p->r) return;
  td_http_respond(p->r, status, ctype, body, len);
  p->r = NULL;
  p->s->owner = NULL; /* late deliveries are dropped */
  (void)td_core_session_close(p->ctx, p->s);
  td_dsession_unref(p->s);
  p->s = NULL;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, lpoll_timer_closed);
}

static void lpoll_timeout(uv_timer_t *t) {
  struct lpoll *p = t->data;
  if (p->kind == P_CLIENT_RPC) lpoll_end(p, 200, "application/json", "{\"error\":\"timeout\"}", 19);
  else lpoll_end(p, 408, NULL, NULL, 0);
}

static void lp_on_attributes(void *owner, struct td_dsession *s, const char *payload, size_t len) {
  (void)s;
  struct lpoll *p = owner;
  if (p->kind == P_ATTRS) lpoll_end(p, 200, "application/json", payload, len);
}

static void lp_on_rpc_request(void *owner, struct td_dsession *s, int32_t request_id, const char *method,
                              const char *params, int64_t expiration_ms, bool oneway) {
  (void)expiration_ms;
  (void)oneway;
  struct lpoll *p = owner;
  if (p->kind != P_RPC) return;
  /* over HTTP the request carries its id (reference §8 item 3) */
  json_t *pv = params && *params ? json_loads(params, JSON_DECODE_ANY, NULL) : json_object();
  if (!pv && params) pv = json_string(params); /* not JSON text: passed on as a string */
  json_t *o = json_pack("{s:i,s:s,s:o}", "id", (int)request_id, "method", method ? method : "", "params",
                        pv ? pv : json_null());
  char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!body) { /* not acknowledged: the actor sends it to the next poll */
    lpoll_end(p, 503, NULL, NULL, 0);
    return;
  }
  (void)td_core_rpc_delivered(p->ctx, s, request_id); /* ThingsBoard: DELIVERED once returned */
  lpoll_end(p, 200, "application/json", body, strlen(body));
  free(body);
}

static void lp_on_rpc_response(void *owner, struct td_dsession *s, int32_t request_id, const char *payload,
                               size_t len) {
  (void)s;
  (void)request_id;
  struct lpoll *p = owner;
  if (p->kind == P_CLIENT_RPC) lpoll_end(p, 200, "application/json", payload, len);
}

static void lp_on_close(void *owner, struct td_dsession *s, int reason) {
  (void)s;
  (void)reason;
  lpoll_timeout(&((struct lpoll *)owner)->timer);
}

static const struct td_dsession_ops lpoll_ops = {
    .on_attributes = lp_on_attributes,
    .on_rpc_request = lp_on_rpc_request,
    .on_rpc_response = lp_on_rpc_response,
    .on_close = lp_on_close,
};

static void lpoll_on_uplink(struct td_uplink_req *u) {
  struct lpoll *p = td_container_of(u, struct lpoll, up);
  if (u->status) {
    int code;
    int st = td_http_status_of(u->status, &code);
    lpoll_end(p, st, NULL, NULL, 0);
  }
  lpoll_release(p);
}

/* client_rpc_msg: TO_SERVER_RPC_REQUEST for the body {"method","params"}, as
 * MQTT's v1/devices/me/rpc/request/{id} (the reply node answers session s). */
static struct td_msg *client_rpc_msg(struct devreq *d, struct td_dsession *s, json_t *req) {
  json_t *params = json_object_get(req, "params");
  json_t *data = json_pack("{s:s, s:O}", "method", json_string_value(json_object_get(req, "method")), "params",
                           params ? params : json_null());
  char *text = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(data);
  char sid[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(&s->session_id, sid);
  struct td_msg_md md[3] = {{"requestId", "0"}, {"sessionId", sid}, {"serviceId", "thingsd"}};
  struct td_msg *m = text ? td_transport_device_msg(d->dev, TD_MSG_TO_SERVER_RPC, md, 3, text, strlen(text)) : NULL;
  free(text);
  return m;
}

static void do_poll(struct devreq *d, enum pkind kind) {
  struct td_http_req *r = d->r;
  int64_t timeout = d->ctx->cfg && d->ctx->cfg->http_request_timeout_ms > 0 ? d->ctx->cfg->http_request_timeout_ms
                                                                             : 60000;
  json_t *req = NULL;
  if (kind == P_CLIENT_RPC) {
    req = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_object(req) || !json_is_string(json_object_get(req, "method"))) {
      json_decref(req);
      bad_payload(d, TD_EPROTO, "want {\"method\":..,\"params\":..}");
      return;
    }
    timeout = d->ctx->cfg && d->ctx->cfg->client_side_rpc_timeout_ms > 0 ? d->ctx->cfg->client_side_rpc_timeout_ms
                                                                          : 60000;
  } else {
    const char *t = td_http_query_get(r, "timeout");
    char *end = NULL;
    long long v = t && *t ? strtoll(t, &end, 10) : 0;
    if (t && *t && (*end || v < 0)) {
      td_log_limited(5, TD_LOG_INFO, "http", "action=\"long poll\" status=400 reason=\"bad timeout\"");
      if (d->dev) td_device_ref_put(d->dev);
      d->dev = NULL;
      td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Failed to convert value of parameter 'timeout'");
      return;
    }
    if (v > 0) timeout = v;
    if (timeout > POLL_MAX_MS) timeout = POLL_MAX_MS;
  }
  struct lpoll *p = calloc(1, sizeof *p);
  if (p) p->s = td_dsession_new(r->loop, &lpoll_ops, p, &d->dev->info.device_id, &d->dev->info.tenant_id);
  if (!p || !p->s) {
    free(p);
    json_decref(req);
    answer_err(d, TD_ENOMEM);
    return;
  }
  p->r = r;
  p->ctx = d->ctx;
  p->kind = kind;
  p->refs = 1; /* the timer handle */
  lpoll_register(p);
  uv_timer_init(&r->loop->uv, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, lpoll_timeout, (uint64_t)timeout, 0);
  int rc = td_core_session_open_sync(d->ctx, p->s, kind == P_ATTRS, kind == P_RPC);
  if (rc == 0 && kind == P_CLIENT_RPC) {
    struct td_msg *m = client_rpc_msg(d, p->s, req);
    p->up.loop = r->loop;
    p->up.done = lpoll_on_uplink;
    rc = m ? td_transport_uplink(d->ctx->transport, &m, 1, &p->up) : TD_ENOMEM;
    if (rc == 0) p->refs++; /* the uplink */
    td_msg_unref(m);
  }
  json_decref(req);
  td_device_ref_put(d->dev);
  d->dev = NULL;
  if (rc) {
    int code;
    int st = td_http_status_of(rc, &code);
    lpoll_end(p, st, NULL, NULL, 0);
  }
}

static void do_rpc_reply(struct devreq *d) {
  struct td_http_req *r = d->r;
  const char *ids = td_http_param(r, "id");
  char *end = NULL;
  long long id = ids && *ids ? strtoll(ids, &end, 10) : -1;
  if (!end || *end || id < INT32_MIN || id > INT32_MAX) {
    bad_payload(d, TD_EINVAL, "RPC id is not an integer");
    return;
  }
  /* the reply needs no registered session: the actor finds the RPC by its id */
  struct td_dsession *s = td_dsession_new(r->loop, NULL, NULL, &d->dev->info.device_id, &d->dev->info.tenant_id);
  int rc = s ? td_core_rpc_reply(d->ctx, s, (int32_t)id, r->body, r->body_len) : TD_ENOMEM;
  td_dsession_unref(s);
  if (rc) answer_err(d, rc);
  else answer_ok(d);
}

/* ---- entry ---- */

static void on_auth(struct td_auth_req *a) {
  struct devreq *d = td_container_of(a, struct devreq, auth);
  if (a->status) {
    answer_err(d, a->status);
    return;
  }
  d->dev = a->device;
  if (strcmp(d->dev->info.credentials_type, "ACCESS_TOKEN") != 0) {
    answer_err(d, TD_EAUTH); /* the HTTP API takes access tokens only */
    return;
  }
  td_device_state_activity(d->ctx->device_state, &d->dev->info.tenant_id, &d->dev->info.device_id, td_now_ms());
  switch (d->op) {
  case OP_TELEMETRY: do_telemetry(d); break;
  case OP_ATTR_POST: do_attr_post(d); break;
  case OP_ATTR_GET: do_attr_get(d); break;
  case OP_CLAIM: do_claim(d); break;
  case OP_RPC_POLL: do_poll(d, P_RPC); break;
  case OP_ATTR_POLL: do_poll(d, P_ATTRS); break;
  case OP_CLIENT_RPC: do_poll(d, P_CLIENT_RPC); break;
  case OP_RPC_REPLY: do_rpc_reply(d); break;
  }
}

static void start(struct td_http_req *r, enum op op) {
  struct td_ctx *ctx = r->route_data;
  const char *token = td_http_param(r, "token");
  struct devreq *d = td_arena_alloc(&r->arena, sizeof *d);
  if (!d) {
    td_http_respond_error(r, 503, TD_TB_GENERAL, "Server is busy, try again later");
    return;
  }
  memset(d, 0, sizeof *d);
  d->r = r;
  d->ctx = ctx;
  d->op = op;
  r->user = d;
  if (!token || !*token || strlen(token) >= sizeof d->auth.credentials_id) {
    td_http_respond(r, 401, NULL, NULL, 0);
    return;
  }
  if (op != OP_ATTR_GET && op != OP_CLAIM && op != OP_RPC_POLL && op != OP_ATTR_POLL && r->body_len == 0) {
    td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Required request body is missing");
    return;
  }
  strcpy(d->auth.credentials_id, token);
  d->auth.loop = r->loop;
  d->auth.done = on_auth;
  td_transport_auth(ctx->transport, &d->auth);
}

/* ---- provisioning (reference §1.1.9, §1.2): no token; 200 with the answer
 * JSON whatever its status ---- */

static void on_provision(struct td_provision_req *p) {
  struct td_http_req *r = p->request_owner;
  if (p->status == TD_EPROTO) {
    td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid JSON: provision request");
  } else if (p->status) {
    int code;
    int st = td_http_status_of(p->status, &code);
    td_http_respond_error(r, st, code, st == 503 ? "Server is busy, try again later" : td_strerror(p->status));
  } else {
    char *body = p->response; /* p lives in r's arena, which the answer frees */
    p->response = NULL;
    td_http_respond_json_take(r, 200, body, p->response_len);
  }
}

static void h_provision(struct td_http_req *r) {
  struct td_ctx *ctx = r->route_data;
  struct td_provision_req *p = td_arena_alloc(&r->arena, sizeof *p);
  if (!p) {
    td_http_respond_error(r, 503, TD_TB_GENERAL, "Server is busy, try again later");
    return;
  }
  if (r->body_len == 0) {
    td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Required request body is missing");
    return;
  }
  memset(p, 0, sizeof *p);
  p->loop = r->loop;
  p->request = r->body;
  p->request_len = r->body_len;
  p->request_owner = r;
  p->done = on_provision;
  int rc = td_transport_provision(ctx->transport, p);
  if (rc) td_http_respond_error(r, 503, TD_TB_GENERAL, "Server is busy, try again later");
}

static void h_telemetry(struct td_http_req *r) { start(r, OP_TELEMETRY); }
static void h_attr_post(struct td_http_req *r) { start(r, OP_ATTR_POST); }
static void h_attr_get(struct td_http_req *r) { start(r, OP_ATTR_GET); }
static void h_claim(struct td_http_req *r) { start(r, OP_CLAIM); }
static void h_rpc_poll(struct td_http_req *r) { start(r, OP_RPC_POLL); }
static void h_attr_poll(struct td_http_req *r) { start(r, OP_ATTR_POLL); }
static void h_rpc_reply(struct td_http_req *r) { start(r, OP_RPC_REPLY); }
static void h_client_rpc(struct td_http_req *r) { start(r, OP_CLIENT_RPC); }

int td_http_device_api_register(struct td_http_router *rt, struct td_ctx *ctx) {
  size_t max = ctx->cfg && ctx->cfg->http_device_max_body > 0 ? (size_t)ctx->cfg->http_device_max_body : 0;
  int rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/telemetry", h_telemetry, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/attributes", h_attr_post, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_GET, "/api/v1/{token}/attributes", h_attr_get, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/claim", h_claim, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/provision", h_provision, ctx, max);
  size_t rpc_max = max && max < RPC_MAX_BODY ? max : RPC_MAX_BODY;
  if (!rc) rc = td_http_route(rt, TD_HTTP_GET, "/api/v1/{token}/rpc", h_rpc_poll, ctx, rpc_max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/rpc", h_client_rpc, ctx, rpc_max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/rpc/{id}", h_rpc_reply, ctx, rpc_max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_GET, "/api/v1/{token}/attributes/updates", h_attr_poll, ctx, max);
  return rc;
}
