/* telemetry.c — TelemetryController (reference §2.6) under
 * /api/plugins/telemetry: keys, attribute values, latest and historical
 * timeseries (raw or aggregated), saves and deletes.
 *
 * Entities: DEVICE (tenant admin of its tenant; customer user of its
 * customer), TENANT (the sysadmin, or its own tenant admin), CUSTOMER (tenant
 * admin of its tenant; its customer users may read). Other entity types are
 * answered 400. REST writes go straight to the store (no rule engine); after
 * the commit, shared-attribute changes of a device are pushed to its
 * subscribed sessions through its actor (td_core_attributes_changed):
 * {"k":v,...} on save, {"deleted":["k",...]} on delete. Successful saves
 * and attribute deletes are also published to the subscription registry
 * (src/core/subs.h) for WebSocket subscribers. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "base/assert.h"
#include "base/err.h"
#include "base/time.h"
#include "core/device_session.h"
#include "core/device_state.h"
#include "core/payload.h"
#include "core/subs.h"

#define BASE "/api/plugins/telemetry"
#define MAX_INTERVALS 700
#define MAX_KEYS 1000
#define MAX_LIMIT 100000

enum op {
  OP_TS_KEYS = 1, OP_ATTR_KEYS, OP_ATTR_VALUES, OP_TS_VALUES, OP_TS_SAVE, OP_ATTR_SAVE, OP_TS_DELETE, OP_ATTR_DELETE
};

struct tq {
  enum op op;
  struct td_entity_id e;
  int scope;                  /* 0 = all */
  const char **keys;
  size_t nkeys;
  bool history, strict, desc;
  int64_t start, end, interval, limit, ttl;
  int agg;
  bool delete_all, delete_latest, rewrite_latest;
};

/* ---- access ---- */

/* check_entity: the entity exists and me may read (or write) it; -1 after answering. */
static int check_entity(struct api_job *j, struct td_store *st, const struct tq *q, bool write) {
  json_t *e = NULL;
  int rc = 0;
  const char *what = "Entity";
  switch (q->e.type) {
  case TD_ENTITY_DEVICE: what = "Device"; rc = td_store_device_get(st, &q->e.id, &e); break;
  case TD_ENTITY_CUSTOMER: what = "Customer"; rc = td_store_customer_get(st, &q->e.id, &e); break;
  case TD_ENTITY_TENANT: what = "Tenant"; rc = td_store_tenant_get(st, &q->e.id, &e); break;
  default: TD_BUG_ON(1, "entity type checked on the loop");
  }
  if (rc) {
    api_fail_rc(j, rc, what, &q->e.id);
    return -1;
  }
  bool ok = false;
  const struct td_auth_principal *me = &j->me;
  switch (q->e.type) {
  case TD_ENTITY_DEVICE: ok = api_check_read(j, e) == 0; j->status = 0; j->tb_code = 0; break;
  case TD_ENTITY_CUSTOMER:
    ok = api_same_tenant(j, e) && (me->authority == TD_AUTHORITY_TENANT_ADMIN ||
                                   (!write && me->authority == TD_AUTHORITY_CUSTOMER_USER &&
                                    td_uuid_eq(&q->e.id, &me->customer_id)));
    break;
  default:
    ok = me->authority == TD_AUTHORITY_SYS_ADMIN ||
         (me->authority == TD_AUTHORITY_TENANT_ADMIN && td_uuid_eq(&q->e.id, &me->tenant_id));
  }
  json_decref(e);
  if (!ok) {
    api_fail_denied(j);
    return -1;
  }
  return 0;
}

/* ---- reads ---- */

static void ts_keys(struct api_job *j, struct td_store *st, struct tq *q) {
  const char **keys;
  size_t n;
  int rc = td_store_ts_keys(st, &q->e, &j->arena, &keys, &n);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(keys[i]));
  api_ok_json(j, a);
}

static void attr_keys(struct api_job *j, struct td_store *st, struct tq *q) {
  struct td_attr *at;
  size_t n;
  int rc = td_store_attributes_get(st, &q->e, q->scope, NULL, 0, &j->arena, &at, &n);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  json_t *a = json_array(), *seen = json_object();
  for (size_t i = 0; i < n; i++) {
    if (json_object_get(seen, at[i].kv.key)) continue;
    json_object_set_new(seen, at[i].kv.key, json_true());
    json_array_append_new(a, json_string(at[i].kv.key));
  }
  json_decref(seen);
  api_ok_json(j, a);
}

static void attr_values(struct api_job *j, struct td_store *st, struct tq *q) {
  struct td_attr *at;
  size_t n;
  int rc = td_store_attributes_get(st, &q->e, q->scope, q->keys, q->nkeys, &j->arena, &at, &n);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  rc = td_buf_puts(&b, "[");
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = td_buf_printf(&b, "%s{\"lastUpdateTs\":%" PRId64 ",\"key\":", i ? "," : "", at[i].last_update_ts);
    if (rc == 0) rc = td_buf_json_str(&b, at[i].kv.key);
    if (rc == 0) rc = td_buf_puts(&b, ",\"value\":");
    if (rc == 0) rc = td_kv_append_json_value(&b, &at[i].kv);
    if (rc == 0) rc = td_buf_puts(&b, "}");
  }
  if (rc == 0) rc = td_buf_puts(&b, "]");
  if (rc) api_fail(j, 500, TD_TB_GENERAL, "Response too large");
  else api_ok_buf(j, &b);
  td_buf_deinit(&b);
}

/* append_points: "key":[{"ts":..,"value":..},...] */
static int append_points(struct td_buf *b, const char *key, const struct td_ts_point *p, size_t n, bool strict,
                         bool first) {
  int rc = first ? 0 : td_buf_puts(b, ",");
  if (rc == 0) rc = td_buf_json_str(b, key);
  if (rc == 0) rc = td_buf_puts(b, ":[");
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = td_buf_printf(b, "%s{\"ts\":%" PRId64 ",\"value\":", i ? "," : "", p[i].ts);
    if (rc == 0) rc = strict ? td_kv_append_json_value(b, &p[i].kv) : td_kv_append_string_value(b, &p[i].kv);
    if (rc == 0) rc = td_buf_puts(b, "}");
  }
  if (rc == 0) rc = td_buf_puts(b, "]");
  return rc;
}

static void ts_values(struct api_job *j, struct td_store *st, struct tq *q) {
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, "{");
  bool first = true;
  if (!q->history) {
    struct td_ts_point *p;
    size_t n;
    rc = td_store_ts_latest(st, &q->e, q->keys, q->nkeys, &j->arena, &p, &n);
    /* keys without a value are left out */
    for (size_t i = 0; i < n && rc == 0; i++, first = false)
      rc = append_points(&b, p[i].kv.key, &p[i], 1, q->strict, first);
  } else {
    for (size_t k = 0; k < q->nkeys && rc == 0; k++) {
      struct td_ts_query tq = {.key = q->keys[k], .start_ts = q->start, .end_ts = q->end, .interval = q->interval,
                               .limit = (int)q->limit, .agg = q->agg, .order_desc = q->desc};
      struct td_ts_point *p;
      size_t n;
      rc = td_store_ts_query(st, &q->e, &tq, &j->arena, &p, &n);
      if (rc == 0 && n) {
        rc = append_points(&b, q->keys[k], p, n, q->strict, first);
        first = false;
      }
    }
  }
  if (rc == 0) rc = td_buf_puts(&b, "}");
  if (rc == TD_ETOOBIG) api_fail(j, 500, TD_TB_GENERAL, "Response too large");
  else if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_buf(j, &b);
  td_buf_deinit(&b);
}

/* ---- writes ---- */

static struct td_payload_opts popts(const struct api_job *j) {
  struct td_payload_opts o = {.type_cast = j->ctx->cfg->json_type_cast_enabled,
                              .max_string_len = j->ctx->cfg->json_max_string_value_length,
                              .max_depth = 32};
  return o;
}

/* push_shared: tell the device's actor (after the commit); a failure only costs the push. */
static void push_shared(struct api_job *j, struct tq *q, const struct td_kv *kvs, size_t n, const char **keys,
                        size_t nkeys) {
  if (q->e.type != TD_ENTITY_DEVICE || q->scope != TD_SCOPE_SHARED || !j->ctx->rules) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, kvs ? "{" : "{\"deleted\":[");
  for (size_t i = 0; i < (kvs ? n : nkeys) && !rc; i++) {
    if (i) rc = td_buf_puts(&b, ",");
    if (!rc) rc = td_buf_json_str(&b, kvs ? kvs[i].key : keys[i]);
    if (!rc && kvs) rc = td_buf_puts(&b, ":");
    if (!rc && kvs) rc = td_kv_append_json_value(&b, &kvs[i]);
  }
  if (!rc) rc = td_buf_puts(&b, kvs ? "}" : "]}");
  /* the device's tenant is the caller's: check_entity allowed the write */
  if (!rc) rc = td_core_attributes_changed(j->ctx, &j->me.tenant_id, &q->e.id, b.data, b.len);
  td_buf_deinit(&b);
}

/* owner_tenant: the tenant that owns q's entity (check_entity allowed the
 * write: a device or customer of me's tenant, or the tenant itself). */
static const struct td_uuid *owner_tenant(const struct api_job *j, const struct tq *q) {
  return q->e.type == TD_ENTITY_TENANT ? &q->e.id : &j->me.tenant_id;
}

static void ts_save(struct api_job *j, struct td_store *st, struct tq *q) {
  struct td_payload_opts o = popts(j);
  struct td_ts_group *g;
  size_t ng;
  char err[160];
  const struct td_http_req *r = j->r;
  if (td_payload_telemetry(r->body, r->body_len, &o, &j->arena, &g, &ng, err, sizeof err)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Unable to parse time series payload: %s", err);
    return;
  }
  size_t total = 0;
  for (size_t i = 0; i < ng; i++) total += g[i].n;
  if (total == 0) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "No time series data found in request body!");
    return;
  }
  struct td_ts_point *pts = td_arena_alloc(&j->arena, total * sizeof *pts);
  if (!pts) {
    api_fail(j, 413, TD_TB_GENERAL, "Payload too large");
    return;
  }
  int64_t now = td_now_ms();
  size_t k = 0;
  for (size_t i = 0; i < ng; i++)
    for (size_t m = 0; m < g[i].n; m++) {
      pts[k].ts = g[i].has_ts ? g[i].ts : now;
      pts[k++].kv = g[i].kvs[m];
    }
  int rc = td_store_ts_save(st, &q->e, pts, total, q->ttl);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  td_subs_publish_ts(owner_tenant(j, q), &q->e, pts, total);
  api_ok_empty(j);
}

static void attr_save(struct api_job *j, struct td_store *st, struct tq *q) {
  struct td_payload_opts o = popts(j);
  struct td_kv *kvs;
  size_t n;
  char err[160];
  const struct td_http_req *r = j->r;
  if (td_payload_attributes(r->body, r->body_len, &o, &j->arena, &kvs, &n, err, sizeof err)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Unable to parse attributes payload: %s", err);
    return;
  }
  if (n == 0) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "No attributes data found in request body!");
    return;
  }
  int64_t now = td_now_ms();
  int rc = td_store_attributes_save(st, &q->e, q->scope, kvs, n, now);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  push_shared(j, q, kvs, n, NULL, 0);
  td_device_state_attrs_saved(j->ctx->device_state, &j->me.tenant_id, &q->e, q->scope, kvs, n);
  td_subs_publish_attrs(owner_tenant(j, q), &q->e, q->scope, kvs, n, now);
  api_ok_empty(j);
}

static void ts_delete(struct api_job *j, struct td_store *st, struct tq *q) {
  int rc = td_store_ts_delete(st, &q->e, q->keys, q->nkeys, q->delete_all, q->start, q->end, q->delete_latest,
                              q->rewrite_latest);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_empty(j);
}

static void attr_delete(struct api_job *j, struct td_store *st, struct tq *q) {
  int rc = td_store_attributes_delete(st, &q->e, q->scope, q->keys, q->nkeys, NULL);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  push_shared(j, q, NULL, 0, q->keys, q->nkeys);
  td_device_state_attrs_deleted(j->ctx->device_state, &j->me.tenant_id, &q->e, q->scope, q->keys, q->nkeys);
  td_subs_publish_attrs_deleted(owner_tenant(j, q), &q->e, q->scope, q->keys, q->nkeys);
  api_ok_empty(j);
}

static void work(struct api_job *j, struct td_store *st) {
  struct tq *q = j->x;
  bool write = q->op >= OP_TS_SAVE;
  if (check_entity(j, st, q, write)) return;
  switch (q->op) {
  case OP_TS_KEYS: ts_keys(j, st, q); break;
  case OP_ATTR_KEYS: attr_keys(j, st, q); break;
  case OP_ATTR_VALUES: attr_values(j, st, q); break;
  case OP_TS_VALUES: ts_values(j, st, q); break;
  case OP_TS_SAVE: ts_save(j, st, q); break;
  case OP_ATTR_SAVE: attr_save(j, st, q); break;
  case OP_TS_DELETE: ts_delete(j, st, q); break;
  case OP_ATTR_DELETE: attr_delete(j, st, q); break;
  }
}

/* ---- request parsing (loop) ---- */

static void bad(struct td_http_req *r, const char *msg) { api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg); }
#define BAD(msg)  \
  do {            \
    bad(r, msg);  \
    return;       \
  } while (0)

/* begin: auth, entity type/id (entityType absent: the v1 device form), scope
 * param when scope_param. Returns the query or NULL after answering. */
static struct tq *begin(struct td_http_req *r, enum op op, const char *scope_param, struct td_auth_principal *me) {
  if (api_begin(r, API_ANY_USER, me)) return NULL;
  struct tq *q = td_arena_alloc(&r->arena, sizeof *q);
  if (!q) {
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return NULL;
  }
  memset(q, 0, sizeof *q);
  q->op = op;
  const char *et = td_http_param(r, "entityType");
  const char *idp = et ? "entityId" : "deviceId";
  q->e.type = et ? td_entity_type_parse(et) : TD_ENTITY_DEVICE;
  if (q->e.type != TD_ENTITY_DEVICE && q->e.type != TD_ENTITY_TENANT && q->e.type != TD_ENTITY_CUSTOMER) {
    bad(r, "Unsupported entity type");
    return NULL;
  }
  if (api_uuid_param(r, idp, &q->e.id)) return NULL;
  if (scope_param) {
    q->scope = td_attr_scope_parse(td_http_param(r, scope_param));
    if (!q->scope) {
      bad(r, "Invalid scope");
      return NULL;
    }
  }
  const char *keys = td_http_query_get(r, "keys");
  if (keys && (api_split_csv(r, keys, &q->keys, &q->nkeys) || q->nkeys > MAX_KEYS)) {
    bad(r, "Invalid keys");
    return NULL;
  }
  return q;
}

static void go(struct td_http_req *r, struct td_auth_principal *me, struct tq *q) {
  struct api_job *j = api_job_new(r, me, work);
  if (!j) return;
  j->x = q;
  api_submit(j);
}

static void h_ts_keys(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_TS_KEYS, NULL, &me);
  if (q) go(r, &me, q);
}

static void h_attr_keys(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_ATTR_KEYS, td_http_param(r, "scope") ? "scope" : NULL, &me);
  if (q) go(r, &me, q);
}

static void h_attr_values(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_ATTR_VALUES, td_http_param(r, "scope") ? "scope" : NULL, &me);
  if (q) go(r, &me, q);
}

static void h_ts_values(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_TS_VALUES, NULL, &me);
  if (!q) return;
  q->strict = api_query_bool(r, "useStrictDataTypes", false);
  int hs = api_query_i64(r, "startTs", &q->start);
  if (hs < 0) BAD("Invalid startTs");
  if (hs == 0) {
    go(r, &me, q);
    return;
  }
  /* history */
  q->history = true;
  if (api_query_i64(r, "endTs", &q->end) != 1) BAD("Required request parameter 'endTs' is not present");
  if (q->nkeys == 0) BAD("Required request parameter 'keys' is not present");
  q->limit = 100;
  if (api_query_i64(r, "interval", &q->interval) < 0 || api_query_i64(r, "limit", &q->limit) < 0)
    BAD("Invalid interval or limit");
  if (q->limit < 1) q->limit = 100;
  if (q->limit > MAX_LIMIT) q->limit = MAX_LIMIT;
  const char *agg = td_http_query_get(r, "agg");
  q->agg = agg && *agg ? td_agg_parse(agg) : TD_AGG_NONE;
  if (q->agg < 0) BAD("Invalid aggregation");
  const char *ob = td_http_query_get(r, "orderBy");
  q->desc = !(ob && strcasecmp(ob, "ASC") == 0);
  if (ob && *ob && strcasecmp(ob, "ASC") && strcasecmp(ob, "DESC")) BAD("Invalid orderBy");
  if (q->end < q->start) BAD("Invalid time range: endTs is before startTs");
  if (q->agg != TD_AGG_NONE) {
    if (q->interval > 0 && (q->end - q->start) / q->interval > MAX_INTERVALS)
      BAD("Can't process more than 700 intervals");
    q->limit = MAX_INTERVALS + 1;
  }
  go(r, &me, q);
}

static void h_ts_save(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_TS_SAVE, NULL, &me);
  if (!q) return;
  const char *ttl = td_http_param(r, "ttl");
  if (ttl) {
    char *end;
    long long v = strtoll(ttl, &end, 10);
    if (*end || v < 0) BAD("Invalid ttl");
    q->ttl = v;
  }
  go(r, &me, q);
}

static void h_attr_save(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_ATTR_SAVE, NULL, &me);
  if (!q) return;
  q->scope = td_attr_scope_parse(td_http_param(r, "scope"));
  if (q->scope != TD_SCOPE_SERVER && q->scope != TD_SCOPE_SHARED) BAD("Invalid scope");
  go(r, &me, q);
}

static void h_ts_delete(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_TS_DELETE, NULL, &me);
  if (!q) return;
  if (q->nkeys == 0) BAD("Required request parameter 'keys' is not present");
  q->delete_all = api_query_bool(r, "deleteAllDataForKeys", false);
  q->delete_latest = api_query_bool(r, "deleteLatest", true);
  q->rewrite_latest = api_query_bool(r, "rewriteLatestIfDeleted", false);
  if (!q->delete_all) {
    if (api_query_i64(r, "startTs", &q->start) != 1 || api_query_i64(r, "endTs", &q->end) != 1)
      BAD("When deleteAllDataForKeys is false, start and end timestamp values shouldn't be empty");
  } else {
    q->start = 0;
    q->end = INT64_MAX;
  }
  go(r, &me, q);
}

static void h_attr_delete(struct td_http_req *r) {
  struct td_auth_principal me;
  struct tq *q = begin(r, OP_ATTR_DELETE, "scope", &me);
  if (!q) return;
  if (q->nkeys == 0) BAD("Required request parameter 'keys' is not present");
  go(r, &me, q);
}

int api_telemetry_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/keys/timeseries", h_ts_keys},
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/keys/attributes", h_attr_keys},
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/keys/attributes/{scope}", h_attr_keys},
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/values/attributes", h_attr_values},
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/values/attributes/{scope}", h_attr_values},
      {TD_HTTP_GET, BASE "/{entityType}/{entityId}/values/timeseries", h_ts_values},
      {TD_HTTP_POST, BASE "/{entityType}/{entityId}/timeseries/{scope}", h_ts_save},
      {TD_HTTP_POST, BASE "/{entityType}/{entityId}/timeseries/{scope}/{ttl}", h_ts_save},
      {TD_HTTP_POST, BASE "/{entityType}/{entityId}/attributes/{scope}", h_attr_save},
      {TD_HTTP_POST, BASE "/{entityType}/{entityId}/{scope}", h_attr_save},
      {TD_HTTP_POST, BASE "/{deviceId}/{scope}", h_attr_save},
      {TD_HTTP_DELETE, BASE "/{entityType}/{entityId}/timeseries/delete", h_ts_delete},
      {TD_HTTP_DELETE, BASE "/{entityType}/{entityId}/{scope}", h_attr_delete},
      {TD_HTTP_DELETE, BASE "/{deviceId}/{scope}", h_attr_delete},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
