/* common.c — shared parts of the REST controllers (api_int.h): the JWT check
 * and authority masks, the request job (loop -> storage thread -> loop),
 * ownership checks, paging parameters and JSON helpers. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/api.h"
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "transport/transport.h"

#define MAX_PAGE_SIZE 100000

struct td_ctx *api_ctx(struct td_http_req *r) { return (struct td_ctx *)r->route_data; }

void api_respond_error(struct td_http_req *r, int status, int tb_code, const char *msg) {
  td_http_respond_error(r, status, tb_code, msg);
}

/* bearer: the token after "Bearer " in X-Authorization, else Authorization. */
static const char *bearer(struct td_http_req *r) {
  const char *h = td_http_header_get(r, "x-authorization");
  if (!h) h = td_http_header_get(r, "authorization");
  if (!h || strncmp(h, "Bearer ", 7) != 0) return NULL;
  h += 7;
  while (*h == ' ') h++;
  return *h ? h : NULL;
}

int api_begin(struct td_http_req *r, unsigned mask, struct td_auth_principal *me) {
  struct td_ctx *ctx = api_ctx(r);
  const char *tok = bearer(r);
  if (!tok) {
    api_respond_error(r, 401, TD_TB_AUTHENTICATION, "Authentication failed");
    return -1;
  }
  int rc = td_auth_verify(ctx->auth, tok, td_now_ms() / 1000, me);
  if (rc == TD_ETIMEDOUT) {
    api_respond_error(r, 401, TD_TB_JWT_TOKEN_EXPIRED, "Token has expired");
    return -1;
  }
  if (rc || me->authority == TD_AUTHORITY_REFRESH_TOKEN) {
    td_log_limited(5, TD_LOG_INFO, "api", "path=\"%s\" action=\"checking JWT\" err=%s", r->path,
                   rc ? td_errname(rc) : "refresh-token-as-access");
    api_respond_error(r, 401, TD_TB_AUTHENTICATION, "Invalid username or password");
    return -1;
  }
  if (!(mask & (1u << me->authority))) {
    api_respond_error(r, 403, TD_TB_PERMISSION_DENIED, API_MSG_DENIED);
    return -1;
  }
  return 0;
}

static void job_run(struct td_dbjob *d, struct td_store *st) {
  struct api_job *j = td_container_of(d, struct api_job, db);
  j->work(j, st);
  if (j->status == 0) api_fail(j, 500, TD_TB_GENERAL, "Internal server error");
}

static void job_free(struct api_job *j) {
  for (int i = 0; i < j->ninvalidate; i++) free(j->invalidate[i]);
  free(j->body);
  td_arena_deinit(&j->arena);
  free(j);
}

static void job_done(struct td_dbjob *d) {
  struct api_job *j = td_container_of(d, struct api_job, db);
  struct td_http_req *r = j->r;
  if (j->ctx->transport) {
    if (j->invalidate_all) td_transport_invalidate(j->ctx->transport, NULL);
    for (int i = 0; i < j->ninvalidate; i++) td_transport_invalidate(j->ctx->transport, j->invalidate[i]);
  }
  if (j->tb_code) {
    td_http_respond_error(r, j->status, j->tb_code, j->msg);
  } else if (j->body && !j->ctype) {
    char *b = j->body;
    j->body = NULL;
    td_http_respond_json_take(r, j->status, b, j->len);
  } else if (j->body) {
    td_http_respond(r, j->status, j->ctype, j->body, j->len);
  } else {
    td_http_respond(r, j->status, NULL, NULL, 0);
  }
  job_free(j);
}

int api_tx_begin(struct api_job *j, struct td_store *st) {
  int rc = td_store_begin(st);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  return rc ? -1 : 0;
}

void api_run(struct td_http_req *r, unsigned mask, api_work_fn work) {
  struct td_auth_principal me;
  if (api_begin(r, mask, &me)) return;
  struct api_job *j = api_job_new(r, &me, work);
  if (j) api_submit(j);
}

struct api_job *api_job_new(struct td_http_req *r, const struct td_auth_principal *me, api_work_fn work) {
  struct api_job *j = calloc(1, sizeof *j);
  if (!j) {
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return NULL;
  }
  j->r = r;
  j->ctx = api_ctx(r);
  if (me) j->me = *me;
  j->work = work;
  td_arena_init(&j->arena, 0);
  j->db.run = job_run;
  j->db.done = job_done;
  j->db.reply_loop = r->loop;
  return j;
}

void api_job_finish(struct api_job *j) { job_done(&j->db); }
void api_job_free(struct api_job *j) { job_free(j); }

void api_submit(struct api_job *j) {
  int rc = td_dbpool_submit(j->ctx->db, &j->db);
  if (rc) {
    struct td_http_req *r = j->r;
    int code = TD_TB_GENERAL;
    int status = rc == TD_EFULL ? 503 : td_http_status_of(rc, &code);
    td_log_limited(1, TD_LOG_WARN, "api", "path=\"%s\" action=\"submitting storage job\" err=%s", r->path,
                   td_errname(rc));
    job_free(j);
    api_respond_error(r, status, code, "Server is busy, try again later");
  }
}

int api_uuid_param(struct td_http_req *r, const char *name, struct td_uuid *out) {
  const char *v = td_http_param(r, name);
  if (!v || td_uuid_parse(v, out)) {
    char msg[128];
    snprintf(msg, sizeof msg, "Invalid UUID string: %.60s", v ? v : "");
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
    return -1;
  }
  return 0;
}

int api_query_i64(struct td_http_req *r, const char *name, int64_t *out) {
  const char *v = td_http_query_get(r, name);
  if (!v || !*v) return 0;
  errno = 0;
  char *end;
  long long x = strtoll(v, &end, 10);
  if (errno || *end) return -1;
  *out = x;
  return 1;
}

bool api_query_bool(struct td_http_req *r, const char *name, bool dflt) {
  const char *v = td_http_query_get(r, name);
  if (!v || !*v) return dflt;
  return strcasecmp(v, "true") == 0;
}

int api_page_params(struct td_http_req *r, struct td_page_link *pl) {
  memset(pl, 0, sizeof *pl);
  int64_t ps = 0, pg = 0;
  char msg[160];
  const char *names[2] = {"pageSize", "page"};
  int64_t *vals[2] = {&ps, &pg};
  for (int i = 0; i < 2; i++) {
    int k = api_query_i64(r, names[i], vals[i]);
    if (k == 0) {
      snprintf(msg, sizeof msg, "Required request parameter '%s' for method parameter type int is not present",
               names[i]);
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
      return -1;
    }
    if (k < 0) {
      snprintf(msg, sizeof msg, "Failed to convert value of parameter '%s' to int", names[i]);
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
      return -1;
    }
  }
  if (ps < 1 || ps > MAX_PAGE_SIZE || pg < 0 || pg > 1000000000) {
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, ps < 1 || ps > MAX_PAGE_SIZE ? "Invalid page size" : "Invalid page");
    return -1;
  }
  pl->page_size = (int)ps;
  pl->page = (int)pg;
  const char *ts = td_http_query_get(r, "textSearch");
  pl->text_search = ts && *ts ? ts : NULL;
  const char *sp = td_http_query_get(r, "sortProperty");
  if (sp && *sp) {
    /* only identifiers reach the store: the sort property names a column */
    size_t n = strlen(sp);
    for (size_t i = 0; i < n; i++)
      if (!isalnum((unsigned char)sp[i]) && sp[i] != '_' && sp[i] != '.') n = 0;
    if (n == 0 || n > 64) {
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid sort property");
      return -1;
    }
    pl->sort_property = sp;
  }
  const char *so = td_http_query_get(r, "sortOrder");
  if (so && *so) {
    if (strcasecmp(so, "DESC") == 0) pl->sort_desc = true;
    else if (strcasecmp(so, "ASC") != 0) {
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid sort order, expected ASC or DESC");
      return -1;
    }
  }
  return 0;
}

int api_split_csv(struct td_http_req *r, const char *csv, const char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!csv) return 0;
  size_t cap = 1;
  for (const char *p = csv; *p; p++) cap += *p == ',';
  const char **v = td_arena_alloc(&r->arena, cap * sizeof *v);
  if (!v) return TD_ENOMEM;
  size_t k = 0;
  const char *p = csv;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *s = p;
    while (len && isspace((unsigned char)*s)) { s++; len--; }
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len) {
      char *c = td_arena_strndup(&r->arena, s, len);
      if (!c) return TD_ENOMEM;
      v[k++] = c;
    }
    if (!e) break;
    p = e + 1;
  }
  *out = v;
  *n = k;
  return 0;
}

/* ---- answers (storage side) ---- */

void api_ok_status_json(struct api_job *j, int status, json_t *v) {
  if (!v) {
    api_fail(j, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(v);
  if (!s) {
    api_fail(j, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  free(j->body);
  j->body = s;
  j->len = strlen(s);
  j->ctype = NULL;
  j->status = status;
  j->tb_code = 0;
}

void api_ok_json(struct api_job *j, json_t *v) { api_ok_status_json(j, 200, v); }

void api_ok_buf(struct api_job *j, struct td_buf *b) {
  size_t len = b->len;
  free(j->body);
  j->body = td_buf_take(b);
  j->len = len;
  j->ctype = NULL;
  j->status = 200;
  j->tb_code = 0;
}

void api_ok_empty(struct api_job *j) {
  free(j->body);
  j->body = NULL;
  j->status = 200;
  j->tb_code = 0;
}

void api_ok_text(struct api_job *j, const char *ctype, const char *text) {
  free(j->body);
  j->body = strdup(text);
  j->len = j->body ? strlen(text) : 0;
  j->ctype = ctype;
  j->status = j->body ? 200 : 500;
  j->tb_code = j->body ? 0 : TD_TB_GENERAL;
}

void api_fail(struct api_job *j, int status, int tb_code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->msg, sizeof j->msg, fmt, ap);
  va_end(ap);
  free(j->body);
  j->body = NULL;
  j->status = status;
  j->tb_code = tb_code;
}

void api_fail_denied(struct api_job *j) { api_fail(j, 403, TD_TB_PERMISSION_DENIED, API_MSG_DENIED); }

void api_fail_rc(struct api_job *j, int rc, const char *what, const struct td_uuid *id) {
  char s[TD_UUID_STR_LEN + 1];
  switch (rc) {
  case TD_ENOTFOUND:
    if (what && id) api_fail(j, 404, TD_TB_ITEM_NOT_FOUND, "%s with id [%s] is not found", what, td_uuid_fmt(id, s));
    else api_fail(j, 404, TD_TB_ITEM_NOT_FOUND, "Requested item wasn't found!");
    return;
  case TD_EEXIST:
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "%s with such name already exists!", what ? what : "Entity");
    return;
  case TD_ECONFLICT:
    api_fail(j, 409, TD_TB_VERSION_CONFLICT, "%s was already changed by someone else", what ? what : "Entity");
    return;
  case TD_EINVAL:
  case TD_EPROTO:
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid request");
    return;
  default: {
    int code = TD_TB_GENERAL;
    int status = td_http_status_of(rc, &code);
    if (status < 500) status = 500, code = TD_TB_GENERAL;
    td_log(TD_LOG_ERROR, "api", "path=\"%s\" action=\"store call\" err=%s", j->r->path, td_errname(rc));
    api_fail(j, status, code == TD_TB_GENERAL ? TD_TB_DATABASE : code, "Database error");
  }
  }
}

json_t *api_body_object(struct api_job *j) {
  json_error_t e;
  json_t *v = j->r->body_len ? json_loadb(j->r->body, j->r->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
  if (!json_is_object(v)) {
    json_decref(v);
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid request body");
    return NULL;
  }
  return v;
}

void api_invalidate(struct api_job *j, const char *credentials_id) {
  if (!credentials_id || !*credentials_id) return;
  if (j->ninvalidate == API_MAX_INVALIDATE) {
    j->invalidate_all = true;
    return;
  }
  char *c = strdup(credentials_id);
  if (!c) {
    j->invalidate_all = true;
    return;
  }
  j->invalidate[j->ninvalidate++] = c;
}

/* ---- ownership ---- */

bool api_same_tenant(const struct api_job *j, json_t *e) {
  struct td_uuid t;
  return api_json_id(e, "tenantId", &t) == 0 && td_uuid_eq(&t, &j->me.tenant_id);
}

int api_check_tenant_write(struct api_job *j, json_t *e) {
  if (j->me.authority == TD_AUTHORITY_TENANT_ADMIN && api_same_tenant(j, e)) return 0;
  api_fail_denied(j);
  return -1;
}

int api_check_read(struct api_job *j, json_t *e) {
  if (j->me.authority == TD_AUTHORITY_TENANT_ADMIN && api_same_tenant(j, e)) return 0;
  if (j->me.authority == TD_AUTHORITY_CUSTOMER_USER && api_same_tenant(j, e)) {
    struct td_uuid c;
    if (api_json_id(e, "customerId", &c) == 0 && !td_uuid_is_null(&c) && td_uuid_eq(&c, &j->me.customer_id)) return 0;
  }
  api_fail_denied(j);
  return -1;
}

/* ---- JSON helpers ---- */

int api_json_id(json_t *o, const char *field, struct td_uuid *out) {
  json_t *v = json_object_get(o, field);
  if (!v || json_is_null(v)) return TD_ENOTFOUND;
  if (json_is_object(v)) v = json_object_get(v, "id");
  if (!json_is_string(v)) return v && json_is_null(v) ? TD_ENOTFOUND : TD_EINVAL;
  return td_uuid_parse(json_string_value(v), out) ? TD_EINVAL : 0;
}

void api_json_set_id(json_t *o, const char *field, enum td_entity_type type, const struct td_uuid *u) {
  char s[TD_UUID_STR_LEN + 1];
  json_object_set_new(o, field, json_pack("{s:s,s:s}", "entityType", td_entity_type_name(type), "id", td_uuid_fmt(u, s)));
}

const char *api_json_str(json_t *o, const char *field) {
  json_t *v = json_object_get(o, field);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

void api_ok_pair(struct api_job *j, json_t *user, bool enabled, const struct td_uuid *session_id) {
  struct td_auth_user u;
  memset(&u, 0, sizeof u);
  u.email = api_json_str(user, "email");
  u.first_name = api_json_str(user, "firstName");
  u.last_name = api_json_str(user, "lastName");
  u.authority = td_authority_parse(api_json_str(user, "authority"));
  u.enabled = enabled;
  if (!u.email || u.authority == TD_AUTHORITY_NONE || u.authority == TD_AUTHORITY_REFRESH_TOKEN ||
      api_json_id(user, "id", &u.user_id)) {
    api_fail(j, 500, TD_TB_GENERAL, "Stored user is incomplete");
    return;
  }
  if (api_json_id(user, "tenantId", &u.tenant_id)) u.tenant_id = *td_uuid_null();
  if (api_json_id(user, "customerId", &u.customer_id)) u.customer_id = *td_uuid_null();
  char *t = NULL, *rt = NULL;
  int rc = td_auth_issue_pair(j->ctx->auth, &u, session_id, &t, &rt);
  if (rc) {
    api_fail(j, 500, TD_TB_GENERAL, "Unable to issue token");
    return;
  }
  json_t *o = json_object();
  json_object_set_new(o, "token", json_string(t));
  json_object_set_new(o, "refreshToken", json_string(rt));
  free(t);
  free(rt);
  api_ok_json(j, o);
}

int api_page_all(struct td_store *st, api_page_fn fn, void *arg, size_t max, json_t **arr) {
  json_t *all = json_array();
  if (!all) return TD_ENOMEM;
  struct td_page_link pl = {.page_size = 1000, .page = 0, .sort_property = "name"};
  for (;;) {
    json_t *pg = NULL;
    int rc = fn(st, arg, &pl, &pg);
    if (rc) {
      json_decref(all);
      return rc;
    }
    json_array_extend(all, json_object_get(pg, "data"));
    bool more = json_is_true(json_object_get(pg, "hasNext"));
    json_decref(pg);
    if (!more || json_array_size(all) >= max) break;
    pl.page++;
  }
  *arr = all;
  return 0;
}

/* ---- registration ---- */

int api_routes(struct td_http_router *rt, struct td_ctx *ctx, const struct api_route *routes, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = td_http_route(rt, routes[i].m, routes[i].pattern, routes[i].h, ctx, 0);
    if (rc) return rc;
  }
  return 0;
}

const char *api_password_policy(const char *pw) {
  size_t n = pw ? strlen(pw) : 0;
  if (n < 6) return "Password must be 6 or more characters in length.";
  if (n > 72) return "Password must be no more than 72 characters in length.";
  return NULL;
}

int td_api_register(struct td_http_router *rt, struct td_ctx *ctx) {
  int rc;
  if ((rc = api_auth_register(rt, ctx)) || (rc = api_tenant_register(rt, ctx)) ||
      (rc = api_customer_register(rt, ctx)) || (rc = api_user_register(rt, ctx)) ||
      (rc = api_device_register(rt, ctx)) || (rc = api_device_profile_register(rt, ctx)) ||
      (rc = api_telemetry_register(rt, ctx)) || (rc = api_rule_chain_register(rt, ctx)) ||
      (rc = api_rpc_register(rt, ctx)) || (rc = api_claim_register(rt, ctx)) ||
      (rc = api_ws_register(rt, ctx)))
    return rc;
  return 0;
}
