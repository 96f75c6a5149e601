/* device_api.c — ThingsBoard's HTTP device API (reference §1.2) as routes on
 * the HTTP server: telemetry and attribute uploads, attribute reads, and
 * claiming (POST /api/v1/{token}/claim, optional {"secretKey","durationMs"},
 * kept in the core's claim table: td_core_claim_device).
 *
 * Every request: authenticate the token (credentials cache, else a storage
 * job), then either parse the payload into TbMsgs and hand them to the
 * durable queue (200 only once they are durable), or read attributes on a
 * storage thread. All callbacks arrive on the request's loop; the per-request
 * state lives in the request's arena and so ends with the answer. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/device_session.h"
#include "core/payload.h"
#include "store/store.h"
#include "transport/http/http.h"
#include "transport/transport.h"

enum op { OP_TELEMETRY, OP_ATTR_POST, OP_ATTR_GET, OP_CLAIM };

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
                 d->op == OP_TELEMETRY ? "telemetry" : "attributes", err);
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
  switch (d->op) {
  case OP_TELEMETRY: do_telemetry(d); break;
  case OP_ATTR_POST: do_attr_post(d); break;
  case OP_ATTR_GET: do_attr_get(d); break;
  case OP_CLAIM: do_claim(d); break;
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
  if (op != OP_ATTR_GET && op != OP_CLAIM && r->body_len == 0) {
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

int td_http_device_api_register(struct td_http_router *rt, struct td_ctx *ctx) {
  size_t max = ctx->cfg && ctx->cfg->http_device_max_body > 0 ? (size_t)ctx->cfg->http_device_max_body : 0;
  int rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/telemetry", h_telemetry, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/attributes", h_attr_post, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_GET, "/api/v1/{token}/attributes", h_attr_get, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/claim", h_claim, ctx, max);
  if (!rc) rc = td_http_route(rt, TD_HTTP_POST, "/api/v1/provision", h_provision, ctx, max);
  return rc;
}
