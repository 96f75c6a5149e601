/* ws_data.c — the store work of WebSocket telemetry commands, on a storage
 * thread (ws_api_int.h): who may read which entity (as the REST telemetry
 * controller decides: tenant admin of the entity's tenant, customer user of
 * its customer, the sysadmin for tenants), and the initial data of a
 * subscription or the answer of a one-shot command, formatted as its first
 * update text. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "api/ws_api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"

#define MSG_FETCH "Failed to fetch data!"

static void fail(struct ws_job *j, int code, const char *msg) {
  j->err = code;
  snprintf(j->msg, sizeof j->msg, "%s", msg);
}

/* ---- copying a command out of its message's arena ---- */

static const char **copy_keys(struct td_arena *a, const char *const *keys, size_t n, int *rc) {
  if (!n) return NULL;
  const char **v = td_arena_alloc(a, n * sizeof *v);
  if (!v) {
    *rc = TD_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!(v[i] = td_arena_strdup(a, keys[i]))) *rc = TD_ENOMEM;
  return v;
}

static struct ws_key *copy_wkeys(struct td_arena *a, const struct ws_key *k, size_t n, int *rc) {
  if (!n) return NULL;
  struct ws_key *v = td_arena_alloc(a, n * sizeof *v);
  if (!v) {
    *rc = TD_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    v[i].type = k[i].type;
    if (!(v[i].key = td_arena_strdup(a, k[i].key))) *rc = TD_ENOMEM;
  }
  return v;
}

int ws_cmd_copy(struct td_arena *a, const struct ws_cmd *in, struct ws_cmd *out) {
  int rc = 0;
  *out = *in; /* error and name are static strings */
  out->keys = copy_keys(a, in->keys, in->nkeys, &rc);
  if (!in->edq) return rc;
  struct ws_edq *q = td_arena_alloc(a, sizeof *q);
  if (!q) return TD_ENOMEM;
  *q = *in->edq;
  out->edq = q;
  if (q->nids) {
    q->ids = td_arena_alloc(a, q->nids * sizeof *q->ids);
    if (!q->ids) return TD_ENOMEM;
    memcpy(q->ids, in->edq->ids, q->nids * sizeof *q->ids);
  }
  q->fields = copy_wkeys(a, in->edq->fields, in->edq->nfields, &rc);
  q->latest = copy_wkeys(a, in->edq->latest, in->edq->nlatest, &rc);
  q->ts.keys = copy_keys(a, in->edq->ts.keys, in->edq->ts.nkeys, &rc);
  q->history.keys = copy_keys(a, in->edq->history.keys, in->edq->history.nkeys, &rc);
  return rc;
}

/* ---- access ---- */

static int load_entity(struct td_store *st, const struct td_entity_id *e, json_t **out) {
  switch (e->type) {
  case TD_ENTITY_DEVICE: return td_store_device_get(st, &e->id, out);
  case TD_ENTITY_CUSTOMER: return td_store_customer_get(st, &e->id, out);
  case TD_ENTITY_TENANT: return td_store_tenant_get(st, &e->id, out);
  default: return TD_EINVAL;
  }
}

/* may_read: me may read e's telemetry; *owner = e's tenant. */
static bool may_read(const struct td_auth_principal *me, const struct td_entity_id *e, json_t *ej,
                     struct td_uuid *owner) {
  if (e->type == TD_ENTITY_TENANT) {
    *owner = e->id;
    return me->authority == TD_AUTHORITY_SYS_ADMIN ||
           (me->authority == TD_AUTHORITY_TENANT_ADMIN && td_uuid_eq(&e->id, &me->tenant_id));
  }
  if (api_json_id(ej, "tenantId", owner) || !td_uuid_eq(owner, &me->tenant_id)) return false;
  if (me->authority == TD_AUTHORITY_TENANT_ADMIN) return true;
  if (me->authority != TD_AUTHORITY_CUSTOMER_USER) return false;
  if (e->type == TD_ENTITY_CUSTOMER) return td_uuid_eq(&e->id, &me->customer_id);
  struct td_uuid c;
  return api_json_id(ej, "customerId", &c) == 0 && !td_uuid_is_null(&c) && td_uuid_eq(&c, &me->customer_id);
}

static void check_one(struct ws_job *j, struct td_store *st) {
  const struct ws_cmd *c = &j->cmd;
  json_t *ej = NULL;
  int rc = load_entity(st, &c->e, &ej);
  if (rc == TD_EINVAL) {
    fail(j, WS_ERR_BAD_REQUEST, "Unsupported entity type!");
    return;
  }
  if (rc == TD_ENOTFOUND) {
    fail(j, WS_ERR_BAD_REQUEST, "Entity with requested id wasn't found!");
    return;
  }
  if (rc) {
    td_log_limited(1, TD_LOG_WARN, "ws", "action=\"checking subscription entity\" err=%s", td_errname(rc));
    fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  struct td_uuid owner;
  bool ok = may_read(&j->me, &c->e, ej, &owner);
  json_decref(ej);
  if (!ok) {
    fail(j, WS_ERR_UNAUTHORIZED, WS_MSG_DENIED);
    return;
  }
  j->ents = td_arena_alloc(&j->arena, sizeof *j->ents);
  if (!j->ents) {
    fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  memset(j->ents, 0, sizeof *j->ents);
  j->ents[0].e = c->e;
  j->ents[0].tenant_id = owner;
  j->nents = 1;
}

/* check_edq: the readable entities of the list, then the page of them.
 * Entities that do not exist or belong to someone else are left out, as
 * ThingsBoard's entity query only ever returns the user's entities. */
static void check_edq(struct ws_job *j, struct td_store *st) {
  const struct ws_edq *q = j->cmd.edq;
  size_t from = (size_t)q->page * (size_t)q->page_size;
  j->ents = td_arena_alloc(&j->arena, (q->nids ? q->nids : 1) * sizeof *j->ents);
  if (!j->ents) {
    fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  for (size_t i = 0; i < q->nids; i++) {
    struct td_entity_id e = {.type = q->etype, .id = q->ids[i]};
    bool dup = false;
    for (size_t k = 0; k < i && !dup; k++) dup = td_uuid_eq(&q->ids[k], &e.id);
    if (dup) continue;
    json_t *ej = NULL;
    int rc = load_entity(st, &e, &ej);
    if (rc && rc != TD_ENOTFOUND && rc != TD_EINVAL) {
      td_log_limited(1, TD_LOG_WARN, "ws", "action=\"running entity data query\" err=%s", td_errname(rc));
      fail(j, WS_ERR_INTERNAL, MSG_FETCH);
      return;
    }
    struct td_uuid owner;
    if (rc || !may_read(&j->me, &e, ej, &owner)) {
      json_decref(ej);
      continue;
    }
    size_t idx = j->total++;
    if (idx < from || idx >= from + (size_t)q->page_size) {
      json_decref(ej);
      continue;
    }
    struct ws_ent *x = &j->ents[j->nents++];
    x->e = e;
    x->tenant_id = owner;
    x->json = ej;
  }
}

void ws_data_check(struct ws_job *j, struct td_store *st) {
  if (j->cmd.type == WS_CMD_EDQ) check_edq(j, st);
  else check_one(j, st);
}

void ws_data_free(struct ws_job *j) {
  for (size_t i = 0; i < j->nents; i++) json_decref(j->ents[i].json);
  j->nents = 0;
  free(j->text);
  j->text = NULL;
}

/* ---- reads ---- */

/* range_points: the points of keys in [start, end] (history semantics of
 * the REST API: limit 0 -> 100, newest first, aggregated buckets when agg),
 * all keys in one array. TD_ETOOBIG past 700 intervals. */
static int range_points(struct ws_job *j, struct td_store *st, const struct td_entity_id *e, const char *const *keys,
                        size_t nkeys, int64_t start, int64_t end, int64_t interval, int limit, int agg,
                        struct td_ts_point **out, size_t *nout) {
  *out = NULL;
  *nout = 0;
  if (limit <= 0) limit = WS_DEFAULT_LIMIT;
  if (limit > WS_MAX_LIMIT) limit = WS_MAX_LIMIT;
  if (agg != TD_AGG_NONE) {
    if (interval > 0 && (end - start) / interval > WS_MAX_INTERVALS) return TD_ETOOBIG;
    limit = WS_MAX_INTERVALS + 1;
  }
  struct td_ts_point **parts = td_arena_alloc(&j->arena, (nkeys ? nkeys : 1) * sizeof *parts);
  size_t *np = td_arena_alloc(&j->arena, (nkeys ? nkeys : 1) * sizeof *np);
  if (!parts || !np) return TD_ENOMEM;
  size_t total = 0;
  for (size_t k = 0; k < nkeys; k++) {
    struct td_ts_query tq = {.key = keys[k], .start_ts = start, .end_ts = end, .interval = interval,
                             .limit = limit, .agg = agg, .order_desc = true};
    int rc = td_store_ts_query(st, e, &tq, &j->arena, &parts[k], &np[k]);
    if (rc) return rc;
    total += np[k];
  }
  if (!total) return 0;
  struct td_ts_point *all = td_arena_alloc(&j->arena, total * sizeof *all);
  if (!all) return TD_ENOMEM;
  size_t n = 0;
  for (size_t k = 0; k < nkeys; k++) {
    for (size_t i = 0; i < np[k]; i++) {
      all[n] = parts[k][i];
      all[n++].kv.key = keys[k]; /* aggregated points may carry no key */
    }
  }
  *out = all;
  *nout = n;
  return 0;
}

/* latest_points: latest values of keys (all keys when none); a requested
 * key without a value gets [now, null] as ThingsBoard's findLatest gives. */
static int latest_points(struct ws_job *j, struct td_store *st, const struct td_entity_id *e, const char *const *keys,
                         size_t nkeys, int64_t now, struct td_ts_point **out, size_t *nout) {
  struct td_ts_point *p;
  size_t n;
  int rc = td_store_ts_latest(st, e, keys, nkeys, &j->arena, &p, &n);
  if (rc) return rc;
  size_t missing = 0;
  for (size_t k = 0; k < nkeys; k++) {
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) found = !strcmp(p[i].kv.key, keys[k]);
    missing += !found;
  }
  if (!missing) {
    *out = p;
    *nout = n;
    return 0;
  }
  struct td_ts_point *all = td_arena_alloc(&j->arena, (n + missing) * sizeof *all);
  if (!all) return TD_ENOMEM;
  if (n) memcpy(all, p, n * sizeof *all);
  size_t m = n;
  for (size_t k = 0; k < nkeys; k++) {
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) found = !strcmp(p[i].kv.key, keys[k]);
    if (found) continue;
    memset(&all[m], 0, sizeof all[m]);
    all[m].ts = now;
    all[m].kv.key = keys[k];
    all[m].kv.type = TD_KV_STRING;
    all[m++].kv.v.s = NULL;
  }
  *out = all;
  *nout = m;
  return 0;
}

/* take_text: the formatted update becomes j->text. */
static void take_text(struct ws_job *j, struct td_buf *b, int rc) {
  if (rc) {
    fail(j, WS_ERR_INTERNAL, rc == TD_ETOOBIG ? "Too much data requested!" : MSG_FETCH);
    return;
  }
  j->len = b->len;
  j->text = td_buf_take(b);
  if (!j->text) fail(j, WS_ERR_INTERNAL, MSG_FETCH);
}

static void read_v1(struct ws_job *j, struct td_store *st) {
  const struct ws_cmd *c = &j->cmd;
  struct td_ts_point *p = NULL;
  size_t n = 0;
  int rc = 0;
  int64_t now = td_now_ms();
  switch (c->type) {
  case WS_CMD_TS:
    if (c->time_window > 0 && c->nkeys)
      rc = range_points(j, st, &c->e, c->keys, c->nkeys, c->start_ts, c->start_ts + c->time_window, c->interval,
                        c->limit, c->agg, &p, &n);
    else
      rc = latest_points(j, st, &c->e, c->keys, c->nkeys, now, &p, &n);
    break;
  case WS_CMD_HISTORY:
    rc = range_points(j, st, &c->e, c->keys, c->nkeys, c->start_ts, c->end_ts, c->interval, c->limit, c->agg, &p, &n);
    break;
  case WS_CMD_ATTRS: {
    struct td_attr *at;
    rc = td_store_attributes_get(st, &c->e, c->scope, c->keys, c->nkeys, &j->arena, &at, &n);
    if (!rc && n && !(p = td_arena_alloc(&j->arena, n * sizeof *p))) rc = TD_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
      p[i].ts = at[i].last_update_ts;
      p[i].kv = at[i].kv;
    }
    break;
  }
  default: rc = TD_EINVAL;
  }
  if (rc == TD_ETOOBIG) {
    fail(j, WS_ERR_BAD_REQUEST, "Can't process more than 700 intervals");
    return;
  }
  if (rc) {
    td_log_limited(1, TD_LOG_WARN, "ws", "action=\"reading initial data\" err=%s", td_errname(rc));
    fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  take_text(j, &b, ws_fmt_ts(&b, c->cmd_id, p, n));
  td_buf_deinit(&b);
}

/* ---- entity data ---- */

/* kv_json: ThingsBoard's string form of a value as a JSON string (new ref). */
static json_t *kv_json(const struct td_kv *kv) {
  char num[TD_KV_NUM_LEN];
  switch (kv->type) {
  case TD_KV_BOOLEAN: return json_string(kv->v.b ? "true" : "false");
  case TD_KV_LONG: snprintf(num, sizeof num, "%" PRId64, kv->v.l); return json_string(num);
  case TD_KV_DOUBLE: td_kv_double_str(kv->v.d, num); return json_string(num);
  default: return json_string(kv->v.s ? kv->v.s : "");
  }
}

static json_t *tsvalue(int64_t ts, json_t *value) { return json_pack("{s:I,s:o}", "ts", (json_int_t)ts, "value", value); }

/* field_value: an ENTITY_FIELD of the entity JSON as text (null when absent). */
static json_t *field_value(json_t *ej, const char *key) {
  json_t *v = json_object_get(ej, key);
  if (!v || json_is_null(v)) return json_null();
  if (json_is_string(v)) return json_string(json_string_value(v));
  if (json_is_integer(v)) {
    char num[32];
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return json_string(num);
  }
  if (json_is_object(v) && json_is_string(json_object_get(v, "id"))) /* an id: its uuid */
    return json_string(json_string_value(json_object_get(v, "id")));
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  json_t *r = s ? json_string(s) : json_null();
  free(s);
  return r;
}

/* put_latest: latest[type][key] = v (steals v). */
static void put_latest(json_t *latest, enum ws_key_type t, const char *key, json_t *v) {
  const char *g = ws_key_type_name(t);
  json_t *grp = json_object_get(latest, g);
  if (!grp) {
    grp = json_object();
    json_object_set_new(latest, g, grp);
  }
  json_object_set_new(grp, key, v);
}

static int add_series(struct ws_job *j, struct td_store *st, const struct td_entity_id *e, const struct ws_range *r,
                      json_t *series) {
  struct td_ts_point *p;
  size_t n;
  int rc = range_points(j, st, e, r->keys, r->nkeys, r->start, r->end, r->interval, r->limit, r->agg, &p, &n);
  if (rc) return rc;
  for (size_t k = 0; k < r->nkeys; k++) {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
      if (!strcmp(p[i].kv.key, r->keys[k])) json_array_append_new(arr, tsvalue(p[i].ts, kv_json(&p[i].kv)));
    json_object_set_new(series, r->keys[k], arr);
  }
  return 0;
}

/* entity_data: one EntityData of the page. */
static int entity_data(struct ws_job *j, struct td_store *st, const struct ws_ent *x, int64_t now, json_t **out) {
  const struct ws_edq *q = j->cmd.edq;
  size_t nk = q->nfields + q->nlatest;
  const struct ws_key **all = td_arena_alloc(&j->arena, (nk ? nk : 1) * sizeof *all);
  const char **tsk = td_arena_alloc(&j->arena, (nk ? nk : 1) * sizeof *tsk);
  const char **atk = td_arena_alloc(&j->arena, (nk ? nk : 1) * sizeof *atk);
  if (!all || !tsk || !atk) return TD_ENOMEM;
  size_t nts = 0, nat = 0;
  for (size_t i = 0; i < nk; i++) {
    all[i] = i < q->nfields ? &q->fields[i] : &q->latest[i - q->nfields];
    if (all[i]->type == WS_KEY_TS) tsk[nts++] = all[i]->key;
    else if (all[i]->type != WS_KEY_FIELD) atk[nat++] = all[i]->key;
  }
  struct td_ts_point *p = NULL;
  size_t np = 0;
  struct td_attr *at = NULL;
  size_t nat_found = 0;
  int rc = nts ? td_store_ts_latest(st, &x->e, tsk, nts, &j->arena, &p, &np) : 0;
  if (!rc && nat) rc = td_store_attributes_get(st, &x->e, 0, atk, nat, &j->arena, &at, &nat_found);
  if (rc) return rc;

  json_t *ed = json_object(), *latest = json_object(), *series = json_object();
  char id[TD_UUID_STR_LEN + 1];
  json_object_set_new(ed, "entityId", json_pack("{s:s,s:s}", "entityType", td_entity_type_name(x->e.type), "id",
                                                td_uuid_fmt(&x->e.id, id)));
  for (size_t i = 0; i < nk; i++) {
    const struct ws_key *k = all[i];
    json_t *v = NULL;
    if (k->type == WS_KEY_FIELD) {
      v = tsvalue(now, field_value(x->json, k->key));
    } else if (k->type == WS_KEY_TS) {
      for (size_t m = 0; m < np && !v; m++)
        if (!strcmp(p[m].kv.key, k->key)) v = tsvalue(p[m].ts, kv_json(&p[m].kv));
    } else {
      int scope = ws_key_type_scope(k->type);
      const struct td_attr *best = NULL;
      for (size_t m = 0; m < nat_found; m++)
        if (!strcmp(at[m].kv.key, k->key) && (!scope || at[m].scope == scope) &&
            (!best || at[m].last_update_ts > best->last_update_ts))
          best = &at[m];
      if (best) v = tsvalue(best->last_update_ts, kv_json(&best->kv));
    }
    if (!v) v = tsvalue(0, json_string("")); /* no value yet */
    put_latest(latest, k->type, k->key, v);
  }
  if (q->has_ts && q->ts.nkeys) rc = add_series(j, st, &x->e, &q->ts, series);
  if (!rc && q->has_history && q->history.nkeys) rc = add_series(j, st, &x->e, &q->history, series);
  json_object_set_new(ed, "latest", latest);
  json_object_set_new(ed, "timeseries", series);
  json_object_set_new(ed, "aggLatest", json_object());
  if (rc) {
    json_decref(ed);
    return rc;
  }
  *out = ed;
  return 0;
}

static void read_edq(struct ws_job *j, struct td_store *st) {
  const struct ws_edq *q = j->cmd.edq;
  int64_t now = td_now_ms();
  json_t *list = json_array();
  int rc = 0;
  for (size_t i = 0; i < j->nents && !rc; i++) {
    json_t *ed = NULL;
    rc = entity_data(j, st, &j->ents[i], now, &ed);
    if (!rc) json_array_append_new(list, ed);
  }
  if (rc) {
    json_decref(list);
    if (rc == TD_ETOOBIG) fail(j, WS_ERR_BAD_REQUEST, "Can't process more than 700 intervals");
    else fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  size_t from = (size_t)q->page * (size_t)q->page_size;
  int pages = (int)((j->total + (size_t)q->page_size - 1) / (size_t)q->page_size);
  json_t *root = json_object();
  json_object_set_new(root, "cmdId", json_integer(j->cmd.cmd_id));
  json_object_set_new(root, "cmdUpdateType", json_string("ENTITY_DATA"));
  json_object_set_new(root, "errorCode", json_integer(0));
  json_object_set_new(root, "errorMsg", json_null());
  json_object_set_new(root, "data",
                      json_pack("{s:o,s:i,s:I,s:b}", "data", list, "totalPages", pages, "totalElements",
                                (json_int_t)j->total, "hasNext", j->total > from + j->nents));
  json_object_set_new(root, "update", json_null());
  json_object_set_new(root, "allowedEntities", json_integer(j->allowed));
  char *s = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!s) {
    fail(j, WS_ERR_INTERNAL, MSG_FETCH);
    return;
  }
  j->text = s;
  j->len = strlen(s);
}

void ws_data_read(struct ws_job *j, struct td_store *st) {
  if (j->cmd.type == WS_CMD_EDQ) read_edq(j, st);
  else read_v1(j, st);
}
