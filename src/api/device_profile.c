/* device_profile.c — DeviceProfileController (reference §2.4): a tenant's
 * device profiles, its default profile, and the short "info" forms that
 * customer users may read too. */
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"

void api_device_profile_defaults(json_t *p) {
  static const char *const nulls[] = {"description", "provisionDeviceKey", "defaultRuleChainId", "defaultQueueName",
                                      "defaultDashboardId", "image", "firmwareId", "softwareId",
                                      "defaultEdgeRuleChainId"};
  if (!json_is_string(json_object_get(p, "type"))) json_object_set_new(p, "type", json_string("DEFAULT"));
  if (!json_is_string(json_object_get(p, "transportType")))
    json_object_set_new(p, "transportType", json_string("DEFAULT"));
  if (!json_is_string(json_object_get(p, "provisionType")))
    json_object_set_new(p, "provisionType", json_string("DISABLED"));
  for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
    if (!json_object_get(p, nulls[i])) json_object_set_new(p, nulls[i], json_null());
  json_t *pd = json_object_get(p, "profileData");
  if (!json_is_object(pd)) {
    pd = json_object();
    json_object_set_new(p, "profileData", pd);
  }
  if (!json_is_object(json_object_get(pd, "configuration")))
    json_object_set_new(pd, "configuration", json_pack("{s:s}", "type", "DEFAULT"));
  if (!json_is_object(json_object_get(pd, "transportConfiguration")))
    json_object_set_new(pd, "transportConfiguration", json_pack("{s:s}", "type", "DEFAULT"));
  if (!json_is_object(json_object_get(pd, "provisionConfiguration")))
    json_object_set_new(pd, "provisionConfiguration",
                        json_pack("{s:s,s:n}", "type", "DISABLED", "provisionDeviceSecret"));
  if (!json_object_get(pd, "alarms")) json_object_set_new(pd, "alarms", json_null());
}

/* info: DeviceProfileInfo {id, tenantId, name, image, defaultDashboardId, type, transportType}. */
static json_t *info(json_t *p) {
  static const char *const keys[] = {"id", "tenantId", "name", "image", "defaultDashboardId", "type", "transportType"};
  json_t *o = json_object();
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    json_t *v = json_object_get(p, keys[i]);
    json_object_set_new(o, keys[i], v ? json_incref(v) : json_null());
  }
  return o;
}

/* load: profile j->id of me's tenant; NULL after answering. */
static json_t *load(struct api_job *j, struct td_store *st) {
  json_t *p = NULL;
  int rc = td_store_device_profile_get(st, &j->id, &p);
  if (rc) {
    api_fail_rc(j, rc, "Device profile", &j->id);
    return NULL;
  }
  if (api_same_tenant(j, p)) return p;
  json_decref(p);
  api_fail_denied(j);
  return NULL;
}

static void start(struct td_http_req *r, unsigned mask, api_work_fn work) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, mask, &me) || api_uuid_param(r, "deviceProfileId", &id)) return;
  struct api_job *j = api_job_new(r, &me, work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *p = load(j, st);
  if (p) api_ok_json(j, j->f[0] ? info(p) : json_incref(p));
  json_decref(p);
}
static void get_profile(struct td_http_req *r) { start(r, API_TENANT, get_work); }

static void get_info_work(struct api_job *j, struct td_store *st) {
  j->f[0] = true;
  get_work(j, st);
}
static void get_profile_info(struct td_http_req *r) { start(r, API_TENANT | API_CUSTOMER, get_info_work); }

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *p = load(j, st);
  if (!p) return;
  bool dflt = json_is_true(json_object_get(p, "default"));
  json_decref(p);
  if (dflt) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Deletion of Default Device Profile is prohibited!");
    return;
  }
  int rc = td_store_device_profile_delete(st, &j->id);
  if (rc == TD_EBUSY)
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "The device profile referenced by the devices cannot be deleted!");
  else if (rc) api_fail_rc(j, rc, "Device profile", &j->id);
  else api_ok_empty(j);
}
static void delete_profile(struct td_http_req *r) { start(r, API_TENANT, delete_work); }

/* check_provision: provisioning fields (reference §1.1.9): an empty key is
 * none; provisionType defaults to profileData.provisionConfiguration.type; the
 * key is unique system-wide. 0, or -1 after answering 400. */
static int check_provision(struct api_job *j, struct td_store *st, json_t *in, bool update) {
  const char *key = api_json_str(in, "provisionDeviceKey");
  if (key && !*key) {
    json_object_set_new(in, "provisionDeviceKey", json_null());
    key = NULL;
  }
  const char *ptype = api_json_str(in, "provisionType");
  json_t *pc = json_object_get(json_object_get(in, "profileData"), "provisionConfiguration");
  const char *ctype = api_json_str(pc, "type");
  if (!ptype && ctype) json_object_set_new(in, "provisionType", json_string(ctype));
  if (!key) return 0;
  json_t *other = NULL;
  int rc = td_store_device_profile_by_provision_key(st, key, &other);
  struct td_uuid oid;
  bool clash = rc == 0 && (!update || api_json_id(other, "id", &oid) || !td_uuid_eq(&oid, &j->id));
  json_decref(other);
  if (rc && rc != TD_ENOTFOUND) {
    api_fail_rc(j, rc, NULL, NULL);
    return -1;
  }
  if (clash) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device profile with such provision device key already exists!");
    return -1;
  }
  return 0;
}

static void save_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *out = NULL, *old = NULL;
  if (!in) return;
  const char *name = api_json_str(in, "name");
  if (!name || !*name) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device profile name should be specified!");
    goto out;
  }
  int idrc = api_json_id(in, "id", &j->id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid device profile id");
    goto out;
  }
  if (idrc == 0) {
    if (!(old = load(j, st))) goto out;
    /* the default flag only changes through POST /api/deviceProfile/{id}/default */
    json_object_set(in, "default", json_object_get(old, "default"));
    j->invalidate_all = true; /* cached devices carry the profile name */
  } else {
    json_object_del(in, "id");
    json_object_set_new(in, "default", json_false());
  }
  api_json_set_id(in, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);
  if (check_provision(j, st, in, idrc == 0)) goto out;
  api_device_profile_defaults(in);
  int rc = td_store_device_profile_save(st, in, &out);
  if (rc == TD_EEXIST) api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device profile with such name already exists!");
  else if (rc) api_fail_rc(j, rc, "Device profile", idrc == 0 ? &j->id : NULL);
  else api_ok_json(j, out);
out:
  json_decref(old);
  json_decref(in);
}

static void save_profile(struct td_http_req *r) { api_run(r, API_TENANT, save_work); }

static void page_work(struct api_job *j, struct td_store *st) {
  json_t *pg = NULL;
  int rc = td_store_device_profiles_page(st, &j->me.tenant_id, &j->pl, &pg);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  if (j->f[0]) {
    json_t *data = json_object_get(pg, "data"), *infos = json_array(), *p;
    size_t i;
    json_array_foreach(data, i, p) json_array_append_new(infos, info(p));
    json_object_set_new(pg, "data", infos);
  }
  api_ok_json(j, pg);
}

static void page_common(struct td_http_req *r, unsigned mask, bool infos) {
  struct td_auth_principal me;
  struct td_page_link pl;
  if (api_begin(r, mask, &me) || api_page_params(r, &pl)) return;
  struct api_job *j = api_job_new(r, &me, page_work);
  if (!j) return;
  j->pl = pl;
  j->f[0] = infos;
  api_submit(j);
}
static void profiles(struct td_http_req *r) { page_common(r, API_TENANT, false); }
static void profile_infos(struct td_http_req *r) { page_common(r, API_TENANT | API_CUSTOMER, true); }

static void set_default_work(struct api_job *j, struct td_store *st) {
  json_t *p = load(j, st), *out = NULL;
  if (!p) return;
  json_decref(p);
  int rc = td_store_device_profile_set_default(st, &j->id);
  if (rc == 0) rc = td_store_device_profile_get(st, &j->id, &out);
  if (rc) api_fail_rc(j, rc, "Device profile", &j->id);
  else api_ok_json(j, out);
}
static void set_default(struct td_http_req *r) { start(r, API_TENANT, set_default_work); }

static void default_info_work(struct api_job *j, struct td_store *st) {
  json_t *p = NULL;
  int rc = td_store_device_profile_default(st, &j->me.tenant_id, &p);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  api_ok_json(j, info(p));
  json_decref(p);
}

static void default_info(struct td_http_req *r) { api_run(r, API_TENANT | API_CUSTOMER, default_info_work); }

static int profiles_page(struct td_store *st, void *arg, const struct td_page_link *pl, json_t **out) {
  return td_store_device_profiles_page(st, arg, pl, out);
}

/* names: [{"id":{..},"name":".."}] (EntityInfo), sorted by name. activeOnly
 * (profiles used by devices) is not distinguished: every profile is listed. */
static void names_work(struct api_job *j, struct td_store *st) {
  json_t *all = NULL;
  int rc = api_page_all(st, profiles_page, &j->me.tenant_id, 10000, &all);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  json_t *res = json_array(), *p;
  size_t i;
  json_array_foreach(all, i, p) {
    json_t *e = json_object();
    json_object_set(e, "id", json_object_get(p, "id"));
    json_object_set(e, "name", json_object_get(p, "name"));
    json_array_append_new(res, e);
  }
  json_decref(all);
  api_ok_json(j, res);
}

static void names(struct td_http_req *r) { api_run(r, API_TENANT | API_CUSTOMER, names_work); }

int api_device_profile_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, "/api/deviceProfile/{deviceProfileId}", get_profile},
      {TD_HTTP_DELETE, "/api/deviceProfile/{deviceProfileId}", delete_profile},
      {TD_HTTP_POST, "/api/deviceProfile", save_profile},
      {TD_HTTP_GET, "/api/deviceProfiles", profiles},
      {TD_HTTP_GET, "/api/deviceProfileInfos", profile_infos},
      {TD_HTTP_GET, "/api/deviceProfileInfo/{deviceProfileId}", get_profile_info},
      {TD_HTTP_POST, "/api/deviceProfile/{deviceProfileId}/default", set_default},
      {TD_HTTP_GET, "/api/deviceProfileInfo/default", default_info},
      {TD_HTTP_GET, "/api/deviceProfile/names", names},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
