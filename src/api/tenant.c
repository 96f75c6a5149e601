/* tenant.c — TenantController (reference §2.3): SYS_ADMIN manages tenants; a
 * tenant admin may read its own tenant. Creating a tenant also creates its
 * default device profile and root rule chain in the same transaction. */
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "core/tenant_defaults.h"

/* Tenant profiles are not modelled yet: every tenant shows the "Default" profile. */
static void add_info(json_t *t) {
  if (!json_object_get(t, "tenantProfileName")) json_object_set_new(t, "tenantProfileName", json_string("Default"));
}

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *t = NULL;
  int rc = td_store_tenant_get(st, &j->id, &t);
  if (rc) {
    api_fail_rc(j, rc, "Tenant", &j->id);
    return;
  }
  if (j->f[0]) add_info(t);
  api_ok_json(j, t);
}

static void get_common(struct td_http_req *r, bool info) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_SYS | API_TENANT, &me) || api_uuid_param(r, "tenantId", &id)) return;
  if (me.authority == TD_AUTHORITY_TENANT_ADMIN && !td_uuid_eq(&id, &me.tenant_id)) {
    api_respond_error(r, 403, TD_TB_PERMISSION_DENIED, API_MSG_DENIED);
    return;
  }
  struct api_job *j = api_job_new(r, &me, get_work);
  if (!j) return;
  j->id = id;
  j->f[0] = info;
  api_submit(j);
}

static void get_tenant(struct td_http_req *r) { get_common(r, false); }
static void get_tenant_info(struct td_http_req *r) { get_common(r, true); }

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *t = NULL;
  int rc = td_store_tenant_get(st, &j->id, &t);
  if (rc == 0) rc = td_store_tenant_delete(st, &j->id);
  json_decref(t);
  if (rc) {
    api_fail_rc(j, rc, "Tenant", &j->id);
    return;
  }
  j->invalidate_all = true; /* its devices' credentials are gone */
  char s[TD_UUID_STR_LEN + 1];
  td_log(TD_LOG_INFO, "api", "action=deleteTenant tenant=%s", td_uuid_fmt(&j->id, s));
  api_ok_empty(j);
}

static void delete_tenant(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_SYS, &me) || api_uuid_param(r, "tenantId", &id)) return;
  struct api_job *j = api_job_new(r, &me, delete_work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static void save_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *out = NULL;
  if (!in) return;
  const char *title = api_json_str(in, "title");
  if (!title || !*title) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Tenant title should be specified!");
    goto out;
  }
  struct td_uuid id;
  int idrc = api_json_id(in, "id", &id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid tenant id");
    goto out;
  }
  int rc;
  if (idrc == 0) { /* update */
    json_t *old = NULL;
    rc = td_store_tenant_get(st, &id, &old);
    json_decref(old);
    if (rc == 0) rc = td_store_tenant_save(st, in, &out);
    if (rc) {
      api_fail_rc(j, rc, "Tenant", &id);
      goto out;
    }
    api_ok_json(j, out);
    goto out;
  }
  json_object_del(in, "id");
  if ((rc = td_store_begin(st))) {
    api_fail_rc(j, rc, "Tenant", NULL);
    goto out;
  }
  rc = td_store_tenant_save(st, in, &out);
  if (rc == 0 && api_json_id(out, "id", &id)) rc = TD_EIO;
  if (rc == 0) rc = td_tenant_defaults_create(st, &id);
  if (rc == 0) rc = td_store_commit(st);
  if (rc) {
    td_store_rollback(st);
    json_decref(out);
    api_fail_rc(j, rc, "Tenant", NULL);
    goto out;
  }
  char s[TD_UUID_STR_LEN + 1];
  td_log(TD_LOG_INFO, "api", "action=createTenant tenant=%s", td_uuid_fmt(&id, s));
  api_ok_json(j, out);
out:
  json_decref(in);
}

static void save_tenant(struct td_http_req *r) { api_run(r, API_SYS, save_work); }

static void page_work(struct api_job *j, struct td_store *st) {
  json_t *pg = NULL;
  int rc = td_store_tenants_page(st, &j->pl, &pg);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  if (j->f[0]) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(pg, "data"), i, t) add_info(t);
  }
  api_ok_json(j, pg);
}

static void page_common(struct td_http_req *r, bool info) {
  struct td_auth_principal me;
  struct td_page_link pl;
  if (api_begin(r, API_SYS, &me) || api_page_params(r, &pl)) return;
  struct api_job *j = api_job_new(r, &me, page_work);
  if (!j) return;
  j->pl = pl;
  j->f[0] = info;
  api_submit(j);
}

static void tenants(struct td_http_req *r) { page_common(r, false); }
static void tenant_infos(struct td_http_req *r) { page_common(r, true); }

int api_tenant_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, "/api/tenant/{tenantId}", get_tenant},
      {TD_HTTP_DELETE, "/api/tenant/{tenantId}", delete_tenant},
      {TD_HTTP_POST, "/api/tenant", save_tenant},
      {TD_HTTP_GET, "/api/tenants", tenants},
      {TD_HTTP_GET, "/api/tenant/info/{tenantId}", get_tenant_info},
      {TD_HTTP_GET, "/api/tenantInfos", tenant_infos},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
