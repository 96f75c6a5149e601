/* ws_cmd.c — the WebSocket telemetry API's wire formats (reference §3.2,
 * §3.3): command messages parsed into struct ws_cmd, and the update texts.
 * Pure functions (no session, no store), shared by ws_session.c (loop and
 * publisher threads) and ws_data.c (storage threads); see ws_api_int.h. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ws_api_int.h"
#include "base/err.h"

/* ---- parsing ---- */

struct pctx {
  struct td_arena *a;
  bool bad;                  /* the message is not a command wrapper: TD_EPROTO */
};

static char *adup(struct pctx *p, const char *s) {
  char *d = td_arena_strdup(p->a, s);
  if (!d) p->bad = true;
  return d;
}

static void *aalloc(struct pctx *p, size_t n) {
  void *v = n ? td_arena_alloc(p->a, n) : NULL;
  if (n && !v) p->bad = true;
  if (v) memset(v, 0, n);
  return v;
}

/* get_i64: o[name] as an integer (JSON integer, integral real or numeric
 * string, as Jackson coerces them); dflt when absent or null. */
static int64_t get_i64(struct pctx *p, json_t *o, const char *name, int64_t dflt) {
  json_t *v = json_object_get(o, name);
  if (!v || json_is_null(v)) return dflt;
  if (json_is_integer(v)) return (int64_t)json_integer_value(v);
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d > -9.2e18 && d < 9.2e18) return (int64_t)d;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*s && !*end && !errno) return x;
  }
  p->bad = true;
  return dflt;
}

static int get_int(struct pctx *p, json_t *o, const char *name, int dflt) {
  int64_t v = get_i64(p, o, name, dflt);
  if (v < INT32_MIN || v > INT32_MAX) {
    p->bad = true;
    return dflt;
  }
  return (int)v;
}

/* get_str: o[name] as a string (arena); NULL when absent or null. */
static const char *get_str(struct pctx *p, json_t *o, const char *name) {
  json_t *v = json_object_get(o, name);
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_string(v)) {
    p->bad = true;
    return NULL;
  }
  return adup(p, json_string_value(v));
}

static bool get_bool(struct pctx *p, json_t *o, const char *name) {
  json_t *v = json_object_get(o, name);
  if (!v || json_is_null(v)) return false;
  if (json_is_boolean(v)) return json_is_true(v);
  if (json_is_string(v) && !strcmp(json_string_value(v), "true")) return true;
  if (json_is_string(v) && !strcmp(json_string_value(v), "false")) return false;
  p->bad = true;
  return false;
}

/* split_keys: "a,b , c" into trimmed non-empty keys; NULL/0 for none. */
static int split_keys(struct pctx *p, const char *csv, const char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!csv) return 0;
  size_t cap = 1;
  for (const char *s = csv; *s; s++) cap += *s == ',';
  if (cap > WS_MAX_KEYS) return -1;
  const char **v = aalloc(p, cap * sizeof *v);
  if (!v) return 0;
  size_t k = 0;
  for (const char *s = csv;;) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    const char *b = s;
    while (len && (*b == ' ' || *b == '\t')) b++, len--;
    while (len && (b[len - 1] == ' ' || b[len - 1] == '\t')) len--;
    if (len) {
      char *c = td_arena_strndup(p->a, b, len);
      if (!c) {
        p->bad = true;
        return 0;
      }
      v[k++] = c;
    }
    if (!e) break;
    s = e + 1;
  }
  if (k) {
    *out = v;
    *n = k;
  }
  return 0;
}

/* entity: entityType + entityId of a v1 command, or the command's error. */
static void parse_entity(struct pctx *p, json_t *o, struct ws_cmd *c) {
  const char *id = get_str(p, o, "entityId");
  const char *type = get_str(p, o, "entityType");
  if (!id || !*id) {
    c->error = "Device id is empty!";
    return;
  }
  if (!type || !*type) {
    c->error = "Entity type is empty!";
    return;
  }
  c->e.type = td_entity_type_parse(type);
  if (c->e.type == TD_ENTITY_NONE) {
    c->error = "Unsupported entity type!";
    return;
  }
  if (td_uuid_parse(id, &c->e.id)) c->error = "Invalid entity id!";
}

static void parse_agg(struct pctx *p, json_t *o, struct ws_cmd *c, int *agg) {
  const char *s = get_str(p, o, "agg");
  *agg = TD_AGG_NONE;
  if (s && *s && (*agg = td_agg_parse(s)) < 0) {
    *agg = TD_AGG_NONE;
    if (!c->error) c->error = "Unsupported aggregation type!";
  }
}

static void parse_v1(struct pctx *p, json_t *o, struct ws_cmd *c) {
  c->unsubscribe = get_bool(p, o, "unsubscribe");
  parse_entity(p, o, c);
  if (c->unsubscribe) {
    c->error = NULL; /* unsubscribing needs only the cmdId */
    return;
  }
  if (split_keys(p, get_str(p, o, "keys"), &c->keys, &c->nkeys) && !c->error) c->error = "Too many keys!";
  const char *scope = get_str(p, o, "scope");
  if (c->type == WS_CMD_ATTRS && scope && *scope) {
    c->scope = td_attr_scope_parse(scope);
    if (!c->scope && !c->error) c->error = "Unsupported attribute scope!";
  }
  c->start_ts = get_i64(p, o, "startTs", 0);
  c->end_ts = get_i64(p, o, "endTs", 0);
  c->time_window = get_i64(p, o, "timeWindow", 0);
  c->interval = get_i64(p, o, "interval", 0);
  c->limit = get_int(p, o, "limit", 0);
  parse_agg(p, o, c, &c->agg);
  if (c->type == WS_CMD_HISTORY && !c->error && c->nkeys == 0) c->error = "Keys are empty!";
}

static int key_type_parse(const char *s) {
  static const char *const names[] = {NULL, "TIME_SERIES", "ATTRIBUTE", "CLIENT_ATTRIBUTE", "SHARED_ATTRIBUTE",
                                      "SERVER_ATTRIBUTE", "ENTITY_FIELD"};
  for (int i = 1; i <= WS_KEY_FIELD; i++)
    if (s && !strcmp(s, names[i])) return i;
  return 0;
}

const char *ws_key_type_name(enum ws_key_type t) {
  switch (t) {
  case WS_KEY_TS: return "TIME_SERIES";
  case WS_KEY_ATTR: return "ATTRIBUTE";
  case WS_KEY_CLIENT_ATTR: return "CLIENT_ATTRIBUTE";
  case WS_KEY_SHARED_ATTR: return "SHARED_ATTRIBUTE";
  case WS_KEY_SERVER_ATTR: return "SERVER_ATTRIBUTE";
  case WS_KEY_FIELD: return "ENTITY_FIELD";
  }
  return "";
}

int ws_key_type_scope(enum ws_key_type t) {
  switch (t) {
  case WS_KEY_CLIENT_ATTR: return TD_SCOPE_CLIENT;
  case WS_KEY_SHARED_ATTR: return TD_SCOPE_SHARED;
  case WS_KEY_SERVER_ATTR: return TD_SCOPE_SERVER;
  default: return 0;
  }
}

/* parse_keys: [{"type":..,"key":..},...] appended to (*v, *n). */
static void parse_keys(struct pctx *p, json_t *arr, struct ws_cmd *c, struct ws_key **v, size_t *n) {
  if (!arr || json_is_null(arr)) return;
  if (!json_is_array(arr)) {
    p->bad = true;
    return;
  }
  size_t add = json_array_size(arr);
  if (*n + add > WS_MAX_KEYS) {
    if (!c->error) c->error = "Too many keys!";
    return;
  }
  struct ws_key *nv = aalloc(p, (*n + add) * sizeof *nv);
  if (!nv && add) return;
  if (*n) memcpy(nv, *v, *n * sizeof *nv);
  size_t i;
  json_t *k;
  json_array_foreach(arr, i, k) {
    if (!json_is_object(k)) {
      p->bad = true;
      return;
    }
    const char *type = get_str(p, k, "type");
    const char *key = get_str(p, k, "key");
    int t = key_type_parse(type);
    if (!t) {
      if (!c->error) c->error = "Unsupported entity key type (supported: TIME_SERIES, ATTRIBUTE, "
                                "CLIENT_ATTRIBUTE, SHARED_ATTRIBUTE, SERVER_ATTRIBUTE, ENTITY_FIELD)!";
      continue;
    }
    if (!key || !*key) {
      if (!c->error) c->error = "Entity key is empty!";
      continue;
    }
    nv[*n].type = (enum ws_key_type)t;
    nv[*n].key = key;
    (*n)++;
  }
  *v = nv;
}

/* parse_str_keys: tsCmd/historyCmd "keys":["a","b"]. */
static void parse_str_keys(struct pctx *p, json_t *arr, struct ws_cmd *c, struct ws_range *r) {
  if (!arr || json_is_null(arr)) return;
  if (!json_is_array(arr)) {
    p->bad = true;
    return;
  }
  size_t n = json_array_size(arr);
  if (n > WS_MAX_KEYS) {
    if (!c->error) c->error = "Too many keys!";
    return;
  }
  r->keys = aalloc(p, n * sizeof *r->keys);
  size_t i;
  json_t *k;
  json_array_foreach(arr, i, k) {
    if (!json_is_string(k)) {
      p->bad = true;
      return;
    }
    if (r->keys && *json_string_value(k)) r->keys[r->nkeys++] = adup(p, json_string_value(k));
  }
}

static void parse_range(struct pctx *p, json_t *o, struct ws_cmd *c, struct ws_range *r, bool window) {
  if (!json_is_object(o)) {
    p->bad = true;
    return;
  }
  parse_str_keys(p, json_object_get(o, "keys"), c, r);
  r->start = get_i64(p, o, "startTs", 0);
  if (window) r->end = r->start + get_i64(p, o, "timeWindow", 0);
  else r->end = get_i64(p, o, "endTs", 0);
  r->interval = get_i64(p, o, "interval", 0);
  r->limit = get_int(p, o, "limit", 0);
  struct ws_cmd tmp = {0};
  parse_agg(p, o, &tmp, &r->agg);
  if (tmp.error && !c->error) c->error = tmp.error;
}

static void parse_filter(struct pctx *p, json_t *f, struct ws_cmd *c, struct ws_edq *q) {
  if (!json_is_object(f)) {
    if (f && !json_is_null(f)) p->bad = true;
    else if (!c->error) c->error = "Entity filter is empty!";
    return;
  }
  const char *type = get_str(p, f, "type");
  if (type && !strcmp(type, "singleEntity")) {
    json_t *se = json_object_get(f, "singleEntity");
    const char *et = json_is_object(se) ? get_str(p, se, "entityType") : NULL;
    const char *id = json_is_object(se) ? get_str(p, se, "id") : NULL;
    q->ids = aalloc(p, sizeof *q->ids);
    if (!et || !id || !q->ids) {
      if (!c->error) c->error = "Single entity filter needs singleEntity {entityType, id}!";
      return;
    }
    q->etype = td_entity_type_parse(et);
    if (q->etype == TD_ENTITY_NONE || td_uuid_parse(id, &q->ids[0])) {
      if (!c->error) c->error = "Invalid entity id!";
      return;
    }
    q->nids = 1;
  } else if (type && !strcmp(type, "entityList")) {
    const char *et = get_str(p, f, "entityType");
    json_t *list = json_object_get(f, "entityList");
    if (!et || (list && !json_is_null(list) && !json_is_array(list))) {
      if (!c->error) c->error = "Entity list filter needs entityType and entityList!";
      return;
    }
    q->etype = td_entity_type_parse(et);
    if (q->etype == TD_ENTITY_NONE) {
      if (!c->error) c->error = "Unsupported entity type!";
      return;
    }
    size_t n = json_array_size(list);
    if (n > WS_MAX_EDQ_ENTITIES) {
      if (!c->error) c->error = "Too many entities in entityList!";
      return;
    }
    q->ids = aalloc(p, (n ? n : 1) * sizeof *q->ids);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
      if (!json_is_string(v) || !q->ids || td_uuid_parse(json_string_value(v), &q->ids[q->nids])) {
        if (!c->error) c->error = "Invalid entity id!";
        return;
      }
      q->nids++;
    }
  } else if (!c->error) {
    c->error = "Unsupported entity filter type (supported: singleEntity, entityList)!";
  }
}

static void parse_edq(struct pctx *p, json_t *o, struct ws_cmd *c) {
  struct ws_edq *q = aalloc(p, sizeof *q);
  if (!q) return;
  c->edq = q;
  json_t *query = json_object_get(o, "query");
  if (!query || json_is_null(query)) {
    c->error = "Query is empty!";
    return;
  }
  if (!json_is_object(query)) {
    p->bad = true;
    return;
  }
  parse_filter(p, json_object_get(query, "entityFilter"), c, q);
  json_t *pl = json_object_get(query, "pageLink");
  q->page_size = WS_MAX_EDQ_ENTITIES;
  if (json_is_object(pl)) {
    q->page_size = get_int(p, pl, "pageSize", WS_MAX_EDQ_ENTITIES);
    q->page = get_int(p, pl, "page", 0);
  } else if (pl && !json_is_null(pl)) {
    p->bad = true;
  }
  if ((q->page_size < 1 || q->page < 0) && !c->error) c->error = "Invalid page link!";
  if (q->page_size > WS_MAX_EDQ_ENTITIES) q->page_size = WS_MAX_EDQ_ENTITIES;
  parse_keys(p, json_object_get(query, "entityFields"), c, &q->fields, &q->nfields);
  parse_keys(p, json_object_get(query, "latestValues"), c, &q->fields, &q->nfields);
  json_t *lc = json_object_get(o, "latestCmd");
  if (json_is_object(lc)) {
    q->has_latest = true;
    parse_keys(p, json_object_get(lc, "keys"), c, &q->latest, &q->nlatest);
  } else if (lc && !json_is_null(lc)) {
    p->bad = true;
  }
  json_t *tc = json_object_get(o, "tsCmd");
  if (tc && !json_is_null(tc)) {
    q->has_ts = true;
    parse_range(p, tc, c, &q->ts, true);
  }
  json_t *hc = json_object_get(o, "historyCmd");
  if (hc && !json_is_null(hc)) {
    q->has_history = true;
    parse_range(p, hc, c, &q->history, false);
  }
}

/* parse_one: o is one command of type t (name: how the client named it). */
static void parse_one(struct pctx *p, json_t *o, enum ws_cmd_type t, const char *name, struct ws_cmd *c) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(o)) {
    p->bad = true;
    return;
  }
  c->type = t;
  c->name = name;
  c->cmd_id = get_int(p, o, "cmdId", 0);
  switch (t) {
  case WS_CMD_TS:
  case WS_CMD_ATTRS:
  case WS_CMD_HISTORY: parse_v1(p, o, c); break;
  case WS_CMD_EDQ: parse_edq(p, o, c); break;
  case WS_CMD_UNSUB:
  case WS_CMD_UNSUPPORTED: break;
  }
}

struct cmd_name {
  const char *name;
  enum ws_cmd_type type;
};

/* legacy wrapper arrays */
static const struct cmd_name legacy[] = {
    {"tsSubCmds", WS_CMD_TS},
    {"historyCmds", WS_CMD_HISTORY},
    {"attrSubCmds", WS_CMD_ATTRS},
    {"entityDataCmds", WS_CMD_EDQ},
    {"entityDataUnsubscribeCmds", WS_CMD_UNSUB},
    {"alarmDataCmds", WS_CMD_UNSUPPORTED},
    {"alarmDataUnsubscribeCmds", WS_CMD_UNSUB},
    {"entityCountCmds", WS_CMD_UNSUPPORTED},
    {"entityCountUnsubscribeCmds", WS_CMD_UNSUB},
    {"alarmCountCmds", WS_CMD_UNSUPPORTED},
    {"alarmCountUnsubscribeCmds", WS_CMD_UNSUB},
};

/* new wrapper "type" values (WsCmdType) */
static const struct cmd_name types[] = {
    {"TIMESERIES", WS_CMD_TS},
    {"ATTRIBUTES", WS_CMD_ATTRS},
    {"TIMESERIES_HISTORY", WS_CMD_HISTORY},
    {"ENTITY_DATA", WS_CMD_EDQ},
    {"ENTITY_DATA_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"ENTITY_COUNT", WS_CMD_UNSUPPORTED},
    {"ENTITY_COUNT_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"ALARM_DATA", WS_CMD_UNSUPPORTED},
    {"ALARM_DATA_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"ALARM_COUNT", WS_CMD_UNSUPPORTED},
    {"ALARM_COUNT_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"ALARM_STATUS", WS_CMD_UNSUPPORTED},
    {"ALARM_STATUS_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"NOTIFICATIONS", WS_CMD_UNSUPPORTED},
    {"NOTIFICATIONS_COUNT", WS_CMD_UNSUPPORTED},
    {"MARK_NOTIFICATIONS_AS_READ", WS_CMD_UNSUPPORTED},
    {"MARK_ALL_NOTIFICATIONS_AS_READ", WS_CMD_UNSUPPORTED},
    {"NOTIFICATIONS_UNSUBSCRIBE", WS_CMD_UNSUB},
    {"RPC", WS_CMD_UNSUPPORTED},
};

int ws_parse(const char *text, size_t len, struct td_arena *a, struct ws_msg *out) {
  memset(out, 0, sizeof *out);
  json_error_t je;
  json_t *root = json_loadb(text, len, 0, &je);
  if (!json_is_object(root)) {
    json_decref(root);
    return TD_EPROTO;
  }
  struct pctx p = {.a = a};
  /* authCmd */
  json_t *auth = json_object_get(root, "authCmd");
  if (auth && !json_is_null(auth)) {
    if (!json_is_object(auth)) p.bad = true;
    out->has_auth = true;
    out->token = json_is_object(auth) ? get_str(&p, auth, "token") : NULL;
  }
  /* count first: one allocation */
  size_t n = 0;
  for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++) {
    json_t *arr = json_object_get(root, legacy[i].name);
    if (arr && !json_is_null(arr) && !json_is_array(arr)) p.bad = true;
    n += json_array_size(arr);
  }
  json_t *cmds = json_object_get(root, "cmds");
  if (cmds && !json_is_null(cmds) && !json_is_array(cmds)) p.bad = true;
  n += json_array_size(cmds);
  if (n > WS_MAX_CMDS) p.bad = true;
  if (!p.bad && n) out->cmds = aalloc(&p, n * sizeof *out->cmds);
  size_t k = 0;
  for (size_t i = 0; i < sizeof legacy / sizeof legacy[0] && !p.bad; i++) {
    json_t *arr = json_object_get(root, legacy[i].name);
    size_t j;
    json_t *o;
    json_array_foreach(arr, j, o) parse_one(&p, o, legacy[i].type, legacy[i].name, &out->cmds[k++]);
  }
  size_t j;
  json_t *o;
  if (!p.bad) json_array_foreach(cmds, j, o) {
    const char *type = json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
    const struct cmd_name *cn = NULL;
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
      if (!strcmp(type, types[i].name)) cn = &types[i];
    if (!cn) { /* Jackson: unknown subtype -> the whole payload fails */
      p.bad = true;
      break;
    }
    parse_one(&p, o, cn->type, cn->name, &out->cmds[k++]);
  }
  json_decref(root);
  if (p.bad) {
    memset(out, 0, sizeof *out);
    return TD_EPROTO;
  }
  out->ncmds = k;
  return 0;
}

/* ---- formatting ---- */

int ws_fmt_error(struct td_buf *b, int sub_id, int code, const char *msg) {
  int rc = td_buf_printf(b, "{\"subscriptionId\":%d,\"errorCode\":%d,\"errorMsg\":", sub_id, code);
  if (!rc) rc = td_buf_json_str(b, msg ? msg : "");
  if (!rc) rc = td_buf_puts(b, ",\"data\":null,\"latestValues\":{}}");
  return rc;
}

/* value: ThingsBoard's string form of a value; null for a missing one. */
static int value_str(struct td_buf *b, const struct td_kv *kv) {
  if ((kv->type == TD_KV_STRING || kv->type == TD_KV_JSON) && !kv->v.s) return td_buf_puts(b, "null");
  return td_kv_append_string_value(b, kv);
}

struct order {
  const struct td_ts_point *p;
  size_t i;
};

static int order_cmp(const void *x, const void *y) {
  const struct order *a = x, *b = y;
  int c = strcmp(a->p->kv.key, b->p->kv.key);
  if (c) return c;
  return a->i < b->i ? -1 : a->i > b->i;
}

int ws_fmt_ts(struct td_buf *b, int sub_id, const struct td_ts_point *pts, size_t n) {
  struct order stack[32];
  struct order *o = n <= 32 ? stack : malloc(n * sizeof *o);
  if (!o) return TD_ENOMEM;
  for (size_t i = 0; i < n; i++) o[i] = (struct order){&pts[i], i};
  qsort(o, n, sizeof *o, order_cmp); /* by key, then arrival: ThingsBoard's TreeMap of lists */
  int rc = td_buf_printf(b, "{\"subscriptionId\":%d,\"errorCode\":0,\"errorMsg\":null,\"data\":{", sub_id);
  for (size_t i = 0; i < n && !rc; i++) {
    bool first = i == 0 || strcmp(o[i - 1].p->kv.key, o[i].p->kv.key) != 0;
    if (first) {
      if (i) rc = td_buf_puts(b, "],");
      if (!rc) rc = td_buf_json_str(b, o[i].p->kv.key);
      if (!rc) rc = td_buf_puts(b, ":[");
    } else {
      rc = td_buf_puts(b, ",");
    }
    if (!rc) rc = td_buf_printf(b, "[%" PRId64 ",", o[i].p->ts);
    if (!rc) rc = value_str(b, &o[i].p->kv);
    if (!rc) rc = td_buf_puts(b, "]");
  }
  if (!rc && n) rc = td_buf_puts(b, "]");
  if (!rc) rc = td_buf_puts(b, "},\"latestValues\":{");
  bool firstkey = true;
  for (size_t i = 0; i < n && !rc; i++) {
    bool last = i + 1 == n || strcmp(o[i + 1].p->kv.key, o[i].p->kv.key) != 0;
    if (!last) continue;
    if (!firstkey) rc = td_buf_puts(b, ",");
    firstkey = false;
    if (!rc) rc = td_buf_json_str(b, o[i].p->kv.key);
    if (!rc) rc = td_buf_printf(b, ":%" PRId64, o[i].p->ts);
  }
  if (!rc) rc = td_buf_puts(b, "}}");
  if (o != stack) free(o);
  return rc;
}

int ws_fmt_edq_error(struct td_buf *b, int cmd_id, int code, const char *msg, int allowed) {
  int rc = td_buf_printf(b, "{\"cmdId\":%d,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":%d,\"errorMsg\":", cmd_id,
                         code);
  if (!rc) rc = td_buf_json_str(b, msg ? msg : "");
  if (!rc) rc = td_buf_printf(b, ",\"data\":null,\"update\":null,\"allowedEntities\":%d}", allowed);
  return rc;
}

int ws_fmt_entity_id(struct td_buf *b, const struct td_entity_id *e) {
  char id[TD_UUID_STR_LEN + 1];
  return td_buf_printf(b, "{\"entityType\":\"%s\",\"id\":\"%s\"}", td_entity_type_name(e->type),
                       td_uuid_fmt(&e->id, id));
}

static bool in_keys(const char *const *keys, size_t n, const char *k) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(keys[i], k)) return true;
  return false;
}

static int edq_head(struct td_buf *b, int cmd_id, const struct td_entity_id *e) {
  int rc = td_buf_printf(b,
                         "{\"cmdId\":%d,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,"
                         "\"data\":null,\"update\":[{\"entityId\":",
                         cmd_id);
  if (!rc) rc = ws_fmt_entity_id(b, e);
  return rc;
}

/* tsv: {"ts":T,"value":"v"} */
static int tsv(struct td_buf *b, int64_t ts, const struct td_kv *kv, bool deleted) {
  int rc = td_buf_printf(b, "{\"ts\":%" PRId64 ",\"value\":", deleted ? 0 : ts);
  if (!rc) rc = deleted ? td_buf_puts(b, "\"\"") : value_str(b, kv);
  if (!rc) rc = td_buf_puts(b, "}");
  return rc;
}

int ws_fmt_edq_ts(struct td_buf *b, int cmd_id, const struct td_entity_id *e, const struct ws_edq_live *k,
                  const struct td_ts_point *pts, size_t n, int allowed, bool *any) {
  *any = false;
  int rc = edq_head(b, cmd_id, e);
  if (!rc) rc = td_buf_puts(b, ",\"latest\":{");
  /* latest: per key the newest point (a later one wins a tie) */
  bool open = false;
  for (size_t i = 0; i < n && !rc; i++) {
    if (!in_keys(k->ts_latest, k->n_ts_latest, pts[i].kv.key)) continue;
    bool newest = true;
    for (size_t j = 0; j < n && newest; j++) {
      if (j == i || strcmp(pts[j].kv.key, pts[i].kv.key)) continue;
      if (pts[j].ts > pts[i].ts || (pts[j].ts == pts[i].ts && j > i)) newest = false;
    }
    if (!newest) continue;
    rc = td_buf_puts(b, open ? "," : "\"TIME_SERIES\":{");
    open = true;
    if (!rc) rc = td_buf_json_str(b, pts[i].kv.key);
    if (!rc) rc = td_buf_puts(b, ":");
    if (!rc) rc = tsv(b, pts[i].ts, &pts[i].kv, false);
  }
  if (!rc && open) rc = td_buf_puts(b, "}");
  *any = open;
  if (!rc) rc = td_buf_puts(b, "},\"timeseries\":{");
  /* timeseries: every point of the tsCmd keys, grouped by key in first-seen order */
  bool firstkey = true;
  for (size_t i = 0; i < n && !rc; i++) {
    if (!in_keys(k->ts_series, k->n_ts_series, pts[i].kv.key)) continue;
    bool earlier = false;
    for (size_t j = 0; j < i && !earlier; j++) earlier = !strcmp(pts[j].kv.key, pts[i].kv.key);
    if (earlier) continue;
    if (!firstkey) rc = td_buf_puts(b, ",");
    firstkey = false;
    if (!rc) rc = td_buf_json_str(b, pts[i].kv.key);
    if (!rc) rc = td_buf_puts(b, ":[");
    bool firstpt = true;
    for (size_t j = i; j < n && !rc; j++) {
      if (strcmp(pts[j].kv.key, pts[i].kv.key)) continue;
      if (!firstpt) rc = td_buf_puts(b, ",");
      firstpt = false;
      if (!rc) rc = tsv(b, pts[j].ts, &pts[j].kv, false);
    }
    if (!rc) rc = td_buf_puts(b, "]");
    *any = true;
  }
  if (!rc) rc = td_buf_printf(b, "}}],\"allowedEntities\":%d}", allowed);
  return rc;
}

int ws_fmt_edq_attrs(struct td_buf *b, int cmd_id, const struct td_entity_id *e, const struct ws_edq_live *k, int scope,
                     const struct td_kv *kvs, size_t n, int64_t ts, bool deleted, int allowed, bool *any) {
  *any = false;
  int rc = edq_head(b, cmd_id, e);
  if (!rc) rc = td_buf_puts(b, ",\"latest\":{");
  /* one group per subscribed attribute key type that this scope feeds */
  static const enum ws_key_type groups[] = {WS_KEY_ATTR, WS_KEY_CLIENT_ATTR, WS_KEY_SHARED_ATTR, WS_KEY_SERVER_ATTR};
  bool firstgroup = true;
  for (size_t g = 0; g < sizeof groups / sizeof groups[0] && !rc; g++) {
    int gs = ws_key_type_scope(groups[g]);
    if (gs && gs != scope) continue;
    bool open = false;
    for (size_t i = 0; i < n && !rc; i++) {
      bool wanted = false;
      for (size_t j = 0; j < k->nattrs && !wanted; j++)
        wanted = k->attrs[j].type == groups[g] && !strcmp(k->attrs[j].key, kvs[i].key);
      if (!wanted) continue;
      if (!open) {
        if (!firstgroup) rc = td_buf_puts(b, ",");
        firstgroup = false;
        if (!rc) rc = td_buf_printf(b, "\"%s\":{", ws_key_type_name(groups[g]));
        open = true;
      } else {
        rc = td_buf_puts(b, ",");
      }
      if (!rc) rc = td_buf_json_str(b, kvs[i].key);
      if (!rc) rc = td_buf_puts(b, ":");
      if (!rc) rc = tsv(b, ts, &kvs[i], deleted);
    }
    if (!rc && open) rc = td_buf_puts(b, "}");
    if (open) *any = true;
  }
  if (!rc) rc = td_buf_printf(b, "},\"timeseries\":{}}],\"allowedEntities\":%d}", allowed);
  return rc;
}

/* ---- merging held updates ---- */

struct merge {
  bool edq;
  json_t *acc;          /* v1: {"key":[[ts,v],..]}; EDQ: [EntityData,..] */
  json_t *first;        /* the first update of the batch (its envelope fields) */
  size_t bytes;         /* source bytes in acc */
  ws_emit_fn emit;
  void *arg;
};

static int merge_flush(struct merge *m) {
  if (!m->acc) return 0;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = 0;
  char *body = json_dumps(m->acc, JSON_COMPACT | JSON_SORT_KEYS);
  if (!body) rc = TD_ENOMEM;
  if (!rc && m->edq) {
    rc = td_buf_printf(&b,
                       "{\"cmdId\":%d,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,"
                       "\"data\":null,\"update\":%s,\"allowedEntities\":%d}",
                       (int)json_integer_value(json_object_get(m->first, "cmdId")), body,
                       (int)json_integer_value(json_object_get(m->first, "allowedEntities")));
  } else if (!rc) {
    rc = td_buf_printf(&b, "{\"subscriptionId\":%d,\"errorCode\":0,\"errorMsg\":null,\"data\":%s,\"latestValues\":{",
                       (int)json_integer_value(json_object_get(m->first, "subscriptionId")), body);
    /* latestValues: the ts of each key's last entry, keys sorted as in data */
    const char **keys = malloc((json_object_size(m->acc) + 1) * sizeof *keys);
    size_t nk = 0;
    const char *k;
    json_t *v;
    if (!keys) rc = TD_ENOMEM;
    json_object_foreach(m->acc, k, v) if (keys) keys[nk++] = k;
    for (size_t i = 1; i < nk; i++) /* insertion sort: few keys */
      for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
        const char *t = keys[j];
        keys[j] = keys[j - 1];
        keys[j - 1] = t;
      }
    for (size_t i = 0; i < nk && !rc; i++) {
      json_t *arr = json_object_get(m->acc, keys[i]);
      json_t *last = json_array_get(arr, json_array_size(arr) - 1);
      if (i) rc = td_buf_puts(&b, ",");
      if (!rc) rc = td_buf_json_str(&b, keys[i]);
      if (!rc) rc = td_buf_printf(&b, ":%" JSON_INTEGER_FORMAT, json_integer_value(json_array_get(last, 0)));
    }
    free(keys);
    if (!rc) rc = td_buf_puts(&b, "}}");
  }
  free(body);
  if (!rc) m->emit(m->arg, b.data, b.len);
  td_buf_deinit(&b);
  json_decref(m->acc);
  json_decref(m->first);
  m->acc = m->first = NULL;
  m->bytes = 0;
  return rc;
}

int ws_merge_updates(const char *const *texts, const size_t *lens, size_t n, bool edq, size_t max_len,
                     ws_emit_fn emit, void *arg) {
  struct merge m = {.edq = edq, .emit = emit, .arg = arg};
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    json_error_t je;
    json_t *u = json_loadb(texts[i], lens[i], 0, &je);
    json_t *part = json_object_get(u, edq ? "update" : "data");
    if (edq ? !json_is_array(part) : !json_is_object(part)) {
      /* not an update of the expected shape: pass it on as it is, in order */
      json_decref(u);
      if (!(rc = merge_flush(&m))) emit(arg, texts[i], lens[i]);
      continue;
    }
    if (m.acc && m.bytes + lens[i] > max_len) rc = merge_flush(&m);
    if (rc) {
      json_decref(u);
      break;
    }
    if (!m.acc) {
      m.acc = edq ? json_array() : json_object();
      m.first = json_incref(u);
    }
    if (edq) {
      json_array_extend(m.acc, part);
    } else {
      const char *k;
      json_t *v;
      json_object_foreach(part, k, v) {
        json_t *arr = json_object_get(m.acc, k);
        if (!arr) json_object_set(m.acc, k, v);
        else json_array_extend(arr, v);
      }
    }
    m.bytes += lens[i];
    json_decref(u);
  }
  if (!rc) rc = merge_flush(&m);
  json_decref(m.acc);
  json_decref(m.first);
  return rc;
}
