/* customer.c — CustomerController (reference §2.3): tenant admins manage
 * their tenant's customers; a customer user may read its own customer. */
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL;
  int rc = td_store_customer_get(st, &j->id, &c);
  if (rc) {
    api_fail_rc(j, rc, "Customer", &j->id);
    return;
  }
  /* a customer user reads its own customer; the check compares the id itself */
  bool ok = api_same_tenant(j, c) &&
            (j->me.authority == TD_AUTHORITY_TENANT_ADMIN ||
             (j->me.authority == TD_AUTHORITY_CUSTOMER_USER && td_uuid_eq(&j->id, &j->me.customer_id)));
  if (!ok) {
    json_decref(c);
    api_fail_denied(j);
    return;
  }
  api_ok_json(j, c);
}

static void get_customer(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "customerId", &id)) return;
  struct api_job *j = api_job_new(r, &me, get_work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL;
  int rc = td_store_customer_get(st, &j->id, &c);
  if (rc) {
    api_fail_rc(j, rc, "Customer", &j->id);
    return;
  }
  if (api_check_tenant_write(j, c)) {
    json_decref(c);
    return;
  }
  json_decref(c);
  rc = td_store_customer_delete(st, &j->id);
  if (rc) {
    api_fail_rc(j, rc, "Customer", &j->id);
    return;
  }
  j->invalidate_all = true; /* cached device identities carry the customer id */
  api_ok_empty(j);
}

static void delete_customer(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_TENANT, &me) || api_uuid_param(r, "customerId", &id)) return;
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
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Customer title should be specified!");
    goto out;
  }
  struct td_uuid id;
  int idrc = api_json_id(in, "id", &id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid customer id");
    goto out;
  }
  if (idrc == 0) {
    json_t *old = NULL;
    int rc = td_store_customer_get(st, &id, &old);
    if (rc) {
      api_fail_rc(j, rc, "Customer", &id);
      goto out;
    }
    int denied = api_check_tenant_write(j, old);
    json_decref(old);
    if (denied) goto out;
  } else {
    json_object_del(in, "id");
  }
  api_json_set_id(in, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);
  int rc = td_store_customer_save(st, in, &out);
  if (rc == TD_EEXIST) api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Customer with such title already exists!");
  else if (rc) api_fail_rc(j, rc, "Customer", idrc == 0 ? &id : NULL);
  else api_ok_json(j, out);
out:
  json_decref(in);
}

static void save_customer(struct td_http_req *r) { api_run(r, API_TENANT, save_work); }

static void page_work(struct api_job *j, struct td_store *st) {
  json_t *pg = NULL;
  int rc = td_store_customers_page(st, &j->me.tenant_id, &j->pl, &pg);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, pg);
}

static void customers(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_page_link pl;
  if (api_begin(r, API_TENANT, &me) || api_page_params(r, &pl)) return;
  struct api_job *j = api_job_new(r, &me, page_work);
  if (!j) return;
  j->pl = pl;
  api_submit(j);
}

static void by_title_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL;
  int rc = td_store_customer_by_title(st, &j->me.tenant_id, j->s[0], &c);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, c);
}

static void by_title(struct td_http_req *r) {
  struct td_auth_principal me;
  if (api_begin(r, API_TENANT, &me)) return;
  const char *title = td_http_query_get(r, "customerTitle");
  if (!title) {
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS,
                      "Required request parameter 'customerTitle' for method parameter type String is not present");
    return;
  }
  struct api_job *j = api_job_new(r, &me, by_title_work);
  if (!j) return;
  j->s[0] = title;
  api_submit(j);
}

int api_customer_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, "/api/customer/{customerId}", get_customer},
      {TD_HTTP_DELETE, "/api/customer/{customerId}", delete_customer},
      {TD_HTTP_POST, "/api/customer", save_customer},
      {TD_HTTP_GET, "/api/customers", customers},
      {TD_HTTP_GET, "/api/tenant/customers", by_title},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
