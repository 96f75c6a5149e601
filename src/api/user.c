/* user.c — UserController and activation (reference §2.3).
 *
 * Authority rules: SYS_ADMIN creates and manages TENANT_ADMINs (tenantId in
 * the body); a TENANT_ADMIN creates and manages TENANT_ADMINs and
 * CUSTOMER_USERs of its own tenant; a CUSTOMER_USER can only read itself.
 * A new user has no password: it is activated through the link from
 * GET /api/user/{id}/activationLink and POST /api/noauth/activate.
 * sendActivationMail=true: thingsd has no mail service, so the user is still
 * created and returned, and an INFO line says where to get the activation
 * link (the token itself is never logged). ThingsBoard would instead fail
 * the request when the mail cannot be sent. */
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"

/* may_manage: me may modify user u. */
static bool may_manage(const struct api_job *j, json_t *u) {
  enum td_authority a = td_authority_parse(api_json_str(u, "authority"));
  switch (j->me.authority) {
  case TD_AUTHORITY_SYS_ADMIN: return a == TD_AUTHORITY_TENANT_ADMIN || a == TD_AUTHORITY_SYS_ADMIN;
  case TD_AUTHORITY_TENANT_ADMIN:
    return (a == TD_AUTHORITY_TENANT_ADMIN || a == TD_AUTHORITY_CUSTOMER_USER) && api_same_tenant(j, u);
  default: return false;
  }
}

/* load_user: the user j->id if me may read (or, with manage, modify) it; NULL after answering. */
static json_t *load_user(struct api_job *j, struct td_store *st, bool manage) {
  json_t *u = NULL;
  int rc = td_store_user_get(st, &j->id, &u);
  if (rc) {
    api_fail_rc(j, rc, "User", &j->id);
    return NULL;
  }
  bool self = td_uuid_eq(&j->id, &j->me.user_id);
  if (may_manage(j, u) || (!manage && self)) return u;
  json_decref(u);
  api_fail_denied(j);
  return NULL;
}

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *u = load_user(j, st, false);
  if (u) api_ok_json(j, u);
}

/* start: authenticate, parse {userId} into j->id, submit work. */
static void start(struct td_http_req *r, unsigned mask, api_work_fn work) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, mask, &me) || api_uuid_param(r, "userId", &id)) return;
  struct api_job *j = api_job_new(r, &me, work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static void get_user(struct td_http_req *r) { start(r, API_ANY_USER, get_work); }

static void delete_work(struct api_job *j, struct td_store *st) {
  if (td_uuid_eq(&j->id, &j->me.user_id)) {
    api_fail(j, 403, TD_TB_PERMISSION_DENIED, "It is not allowed to delete its own user!");
    return;
  }
  json_t *u = load_user(j, st, true);
  if (!u) return;
  json_decref(u);
  int rc = td_store_user_delete(st, &j->id);
  if (rc) {
    api_fail_rc(j, rc, "User", &j->id);
    return;
  }
  td_auth_outdate_user(j->ctx->auth, &j->id, td_now_ms() / 1000 + 1);
  api_ok_empty(j);
}

static void delete_user(struct td_http_req *r) { start(r, API_SYS | API_TENANT, delete_work); }

static void save_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *out = NULL, *old = NULL;
  if (!in) return;
  bool tx = false;
  const char *email = api_json_str(in, "email");
  if (!email || !*email) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User email should be specified!");
    goto out;
  }
  const char *at = strchr(email, '@');
  if (!at || at == email || !at[1] || strchr(email, ' ')) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid email address format '%.100s'!", email);
    goto out;
  }
  struct td_uuid id;
  int idrc = api_json_id(in, "id", &id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid user id");
    goto out;
  }
  int rc;
  if (idrc == 0) {
    /* update: tenant, customer and authority stay as stored */
    j->id = id;
    if (!(old = load_user(j, st, true))) goto out;
    json_object_set(in, "tenantId", json_object_get(old, "tenantId"));
    json_object_set(in, "customerId", json_object_get(old, "customerId"));
    json_object_set(in, "authority", json_object_get(old, "authority"));
    rc = td_store_user_save(st, in, &out);
    if (rc == TD_EEXIST)
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User with email '%.100s'  already present in database!", email);
    else if (rc) api_fail_rc(j, rc, "User", &id);
    else {
      api_ok_json(j, out);
      out = NULL;
    }
    goto out;
  }

  json_object_del(in, "id");
  enum td_authority a = td_authority_parse(api_json_str(in, "authority"));
  struct td_uuid tenant, customer = *td_uuid_null();
  if (a == TD_AUTHORITY_NONE || a == TD_AUTHORITY_REFRESH_TOKEN) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User authority isn't defined!");
    goto out;
  }
  if (j->me.authority == TD_AUTHORITY_SYS_ADMIN) {
    if (a != TD_AUTHORITY_TENANT_ADMIN) {
      api_fail_denied(j);
      goto out;
    }
    json_t *t = NULL;
    if (api_json_id(in, "tenantId", &tenant) || td_uuid_is_null(&tenant) ||
        td_store_tenant_get(st, &tenant, &t) != 0) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User is referencing to non-existent tenant!");
      goto out;
    }
    json_decref(t);
  } else {
    tenant = j->me.tenant_id;
    if (a == TD_AUTHORITY_CUSTOMER_USER) {
      json_t *c = NULL;
      if (api_json_id(in, "customerId", &customer) || td_uuid_is_null(&customer)) {
        api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Customer user should be assigned to customer!");
        goto out;
      }
      rc = td_store_customer_get(st, &customer, &c);
      if (rc == TD_ENOTFOUND) {
        api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User is referencing to non-existent customer!");
        goto out;
      }
      bool mine = rc == 0 && api_same_tenant(j, c);
      json_decref(c);
      if (rc) {
        api_fail_rc(j, rc, NULL, NULL);
        goto out;
      }
      if (!mine) {
        api_fail_denied(j);
        goto out;
      }
    } else if (a != TD_AUTHORITY_TENANT_ADMIN) {
      api_fail_denied(j);
      goto out;
    }
  }
  api_json_set_id(in, "tenantId", TD_ENTITY_TENANT, &tenant);
  api_json_set_id(in, "customerId", TD_ENTITY_CUSTOMER, &customer);

  struct td_user_credentials c;
  memset(&c, 0, sizeof c);
  if (td_auth_random_token(c.activate_token, 31)) {
    api_fail(j, 500, TD_TB_GENERAL, "Unable to generate activation token");
    goto out;
  }
  if ((rc = td_store_begin(st))) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  tx = true;
  rc = td_store_user_save(st, in, &out);
  if (rc == TD_EEXIST) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User with email '%.100s'  already present in database!", email);
    goto out;
  }
  if (rc == 0 && api_json_id(out, "id", &c.user_id)) rc = TD_EIO;
  if (rc == 0) rc = td_store_user_credentials_put(st, &c);
  if (rc == 0) rc = td_store_commit(st);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  tx = false;
  char s[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(&c.user_id, s);
  if (j->f[0])
    td_log(TD_LOG_INFO, "api",
           "action=createUser user=%s note=\"no mail service: get the activation link with GET /api/user/%s/activationLink\"",
           s, s);
  api_ok_json(j, out);
  out = NULL;
out:
  if (tx) td_store_rollback(st);
  json_decref(out);
  json_decref(old);
  json_decref(in);
}

static void save_user(struct td_http_req *r) {
  struct td_auth_principal me;
  if (api_begin(r, API_SYS | API_TENANT, &me)) return;
  struct api_job *j = api_job_new(r, &me, save_work);
  if (!j) return;
  j->f[0] = api_query_bool(r, "sendActivationMail", true);
  api_submit(j);
}

/* ---- lists ---- */

static void users_work(struct api_job *j, struct td_store *st) {
  json_t *pg = NULL;
  int rc;
  if (j->n[0] == 1) { /* /api/users: the tenant's users */
    rc = td_store_users_page(st, &j->me.tenant_id, NULL, NULL, &j->pl, &pg);
  } else if (j->n[0] == 2) { /* /api/tenant/{tenantId}/users: its tenant admins */
    rc = td_store_users_page(st, &j->id, NULL, "TENANT_ADMIN", &j->pl, &pg);
  } else { /* /api/customer/{customerId}/users */
    json_t *c = NULL;
    rc = td_store_customer_get(st, &j->id, &c);
    if (rc) {
      api_fail_rc(j, rc, "Customer", &j->id);
      return;
    }
    int denied = api_check_tenant_write(j, c);
    json_decref(c);
    if (denied) return;
    rc = td_store_users_page(st, &j->me.tenant_id, &j->id, "CUSTOMER_USER", &j->pl, &pg);
  }
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, pg);
}

static void list(struct td_http_req *r, unsigned mask, int which, const char *param) {
  struct td_auth_principal me;
  struct td_page_link pl;
  struct td_uuid id = {{0}};
  if (api_begin(r, mask, &me) || (param && api_uuid_param(r, param, &id)) || api_page_params(r, &pl)) return;
  struct api_job *j = api_job_new(r, &me, users_work);
  if (!j) return;
  j->id = id;
  j->pl = pl;
  j->n[0] = which;
  api_submit(j);
}

static void users(struct td_http_req *r) { list(r, API_TENANT, 1, NULL); }
static void tenant_users(struct td_http_req *r) { list(r, API_SYS, 2, "tenantId"); }
static void customer_users(struct td_http_req *r) { list(r, API_TENANT, 3, "customerId"); }

/* ---- activation ---- */

static void link_work(struct api_job *j, struct td_store *st) {
  json_t *u = load_user(j, st, true);
  if (!u) return;
  json_decref(u);
  struct td_user_credentials c;
  int rc = td_store_user_credentials_get(st, &j->id, &c);
  if (rc) {
    api_fail_rc(j, rc, "User", &j->id);
    return;
  }
  if (!c.activate_token[0]) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "User is already activated!");
    return;
  }
  struct td_buf b;
  td_buf_init(&b, 4096);
  td_buf_printf(&b, "%s://%s/api/noauth/activate?activateToken=%s", j->s[0], j->s[1], c.activate_token);
  api_ok_text(j, "text/plain", b.data ? b.data : "");
  td_buf_deinit(&b);
}

/* host_ok: a Host header we are willing to echo into a link. */
static bool host_ok(const char *h) {
  if (!h || !*h || strlen(h) > 255) return false;
  for (const char *p = h; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr(".-:[]_", *p)))
      return false;
  return true;
}

static void activation_link(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_SYS | API_TENANT, &me) || api_uuid_param(r, "userId", &id)) return;
  const char *host = td_http_header_get(r, "host");
  const char *proto = td_http_header_get(r, "x-forwarded-proto");
  struct api_job *j = api_job_new(r, &me, link_work);
  if (!j) return;
  j->id = id;
  j->s[0] = proto && strcmp(proto, "https") == 0 ? "https" : "http";
  j->s[1] = host_ok(host) ? host : "localhost";
  api_submit(j);
}

static void activate_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *u = NULL;
  if (!in) return;
  struct td_user_credentials c;
  memset(&c, 0, sizeof c);
  const char *tok = api_json_str(in, "activateToken"), *pw = api_json_str(in, "password");
  int rc = tok && *tok ? td_store_user_credentials_by_activate_token(st, tok, &c) : TD_ENOTFOUND;
  if (rc == TD_ENOTFOUND) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Unable to find user credentials by activateToken");
    goto out;
  }
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  const char *why = api_password_policy(pw);
  if (why) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "%s", why);
    goto out;
  }
  if (td_auth_password_hash(pw, c.password_hash)) {
    api_fail(j, 500, TD_TB_GENERAL, "Unable to hash password");
    goto out;
  }
  c.enabled = true;
  c.activate_token[0] = '\0';
  if ((rc = td_store_user_credentials_put(st, &c)) || (rc = td_store_user_get(st, &c.user_id, &u))) {
    api_fail_rc(j, rc, "User", &c.user_id);
    goto out;
  }
  api_ok_pair(j, u, true, NULL);
out:
  memset(&c, 0, sizeof c);
  json_decref(u);
  json_decref(in);
}

static void activate(struct td_http_req *r) {
  struct api_job *j = api_job_new(r, NULL, activate_work);
  if (j) api_submit(j);
}

static void enabled_work(struct api_job *j, struct td_store *st) {
  json_t *u = load_user(j, st, true);
  if (!u) return;
  json_decref(u);
  struct td_user_credentials c;
  int rc = td_store_user_credentials_get(st, &j->id, &c);
  if (rc == 0) {
    c.enabled = j->f[0];
    rc = td_store_user_credentials_put(st, &c);
  }
  memset(&c, 0, sizeof c);
  if (rc) {
    api_fail_rc(j, rc, "User", &j->id);
    return;
  }
  if (!j->f[0]) td_auth_outdate_user(j->ctx->auth, &j->id, td_now_ms() / 1000 + 1);
  api_ok_empty(j);
}

static void credentials_enabled(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_SYS | API_TENANT, &me) || api_uuid_param(r, "userId", &id)) return;
  struct api_job *j = api_job_new(r, &me, enabled_work);
  if (!j) return;
  j->id = id;
  j->f[0] = api_query_bool(r, "userCredentialsEnabled", true);
  api_submit(j);
}

int api_user_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/user", save_user},
      {TD_HTTP_GET, "/api/user/{userId}", get_user},
      {TD_HTTP_DELETE, "/api/user/{userId}", delete_user},
      {TD_HTTP_GET, "/api/users", users},
      {TD_HTTP_GET, "/api/tenant/{tenantId}/users", tenant_users},
      {TD_HTTP_GET, "/api/customer/{customerId}/users", customer_users},
      {TD_HTTP_GET, "/api/user/{userId}/activationLink", activation_link},
      {TD_HTTP_POST, "/api/noauth/activate", activate},
      {TD_HTTP_POST, "/api/user/{userId}/userCredentialsEnabled", credentials_enabled},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
