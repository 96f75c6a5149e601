/* device.c — DeviceController (reference §2.4, §1.0.1): devices, their
 * credentials and customer assignment. Tenant admins write; a customer user
 * reads the devices assigned to its customer. Every change that can alter
 * what a transport cached about a device (credentials, name, profile,
 * customer, deletion) invalidates that device's credentials id in the
 * transport cache once the store change is committed. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "core/device_state.h"
#include "transport/tls/tls.h"
#include "base/err.h"
#include "base/log.h"

#define MSG_DUP_NAME "Device with such name already exists!"
#define MSG_DUP_CREDS "Device credentials are already assigned to another device!"

/* load_device: j->id if found and me may read it (write: tenant admin only); NULL after answering. */
static json_t *load_device(struct api_job *j, struct td_store *st, const struct td_uuid *id, bool write) {
  json_t *d = NULL;
  int rc = td_store_device_get(st, id, &d);
  if (rc) {
    api_fail_rc(j, rc, "Device", id);
    return NULL;
  }
  if ((write ? api_check_tenant_write(j, d) : api_check_read(j, d)) == 0) return d;
  json_decref(d);
  return NULL;
}

/* invalidate_device: drop the device's current credentials id from the transport cache. */
static void invalidate_device(struct api_job *j, struct td_store *st, const struct td_uuid *id) {
  json_t *c = NULL;
  if (td_store_device_credentials_by_device(st, id, &c) == 0) api_invalidate(j, api_json_str(c, "credentialsId"));
  json_decref(c);
}

static void start(struct td_http_req *r, unsigned mask, const char *param, api_work_fn work) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, mask, &me) || api_uuid_param(r, param, &id)) return;
  struct api_job *j = api_job_new(r, &me, work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

/* ---- get / delete ---- */

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *d = load_device(j, st, &j->id, false);
  if (d) api_ok_json(j, d);
}
static void get_device(struct td_http_req *r) { start(r, API_TENANT | API_CUSTOMER, "deviceId", get_work); }

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *d = load_device(j, st, &j->id, true);
  if (!d) return;
  json_decref(d);
  invalidate_device(j, st, &j->id);
  int rc = td_store_device_delete(st, &j->id);
  if (rc) {
    api_fail_rc(j, rc, "Device", &j->id);
    return;
  }
  td_device_state_forget(j->ctx->device_state, &j->id); /* no more state writes for it */
  api_ok_empty(j);
}
static void delete_device(struct td_http_req *r) { start(r, API_TENANT, "deviceId", delete_work); }

/* ---- save ---- */

/* resolve_profile: set in.deviceProfileId and in.type from deviceProfileId,
 * or the profile named by "type" (created when missing), or the tenant's
 * default. 0, or -1 after answering. */
static int resolve_profile(struct api_job *j, struct td_store *st, json_t *in) {
  json_t *p = NULL;
  struct td_uuid pid;
  int rc, idrc = api_json_id(in, "deviceProfileId", &pid);
  const char *type = api_json_str(in, "type");
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid device profile id");
    return -1;
  }
  if (idrc == 0) {
    rc = td_store_device_profile_get(st, &pid, &p);
    if (rc == 0 && !api_same_tenant(j, p)) rc = TD_ENOTFOUND;
    if (rc == TD_ENOTFOUND) {
      json_decref(p);
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device is referencing to non-existent device profile!");
      return -1;
    }
  } else if (type && *type) {
    rc = td_store_device_profile_by_name(st, &j->me.tenant_id, type, &p);
    if (rc == TD_ENOTFOUND) {
      json_t *np = json_object();
      json_object_set_new(np, "name", json_string(type));
      api_json_set_id(np, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);
      api_device_profile_defaults(np);
      json_object_set_new(np, "default", json_false());
      rc = td_store_device_profile_save(st, np, &p);
      json_decref(np);
    }
  } else {
    rc = td_store_device_profile_default(st, &j->me.tenant_id, &p);
  }
  if (rc == 0 && api_json_id(p, "id", &pid)) rc = TD_EIO;
  if (rc) {
    json_decref(p);
    api_fail_rc(j, rc, "Device profile", NULL);
    return -1;
  }
  api_json_set_id(in, "deviceProfileId", TD_ENTITY_DEVICE_PROFILE, &pid);
  json_object_set(in, "type", json_object_get(p, "name"));
  json_decref(p);
  return 0;
}

static void save_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *out = NULL, *old = NULL, *cred = NULL;
  if (!in) return;
  bool tx = false;
  const char *name = api_json_str(in, "name");
  if (!name || !*name) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device name should be specified!");
    goto out;
  }
  struct td_uuid id, cid;
  int idrc = api_json_id(in, "id", &id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid device id");
    goto out;
  }
  if (idrc == 0) {
    if (!(old = load_device(j, st, &id, true))) goto out;
    if (!json_object_get(in, "customerId")) json_object_set(in, "customerId", json_object_get(old, "customerId"));
  } else {
    json_object_del(in, "id");
  }
  int crc = api_json_id(in, "customerId", &cid);
  if (crc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid customer id");
    goto out;
  }
  if (crc == 0 && !td_uuid_is_null(&cid)) {
    json_t *c = NULL;
    int rc = td_store_customer_get(st, &cid, &c);
    bool mine = rc == 0 && api_same_tenant(j, c);
    json_decref(c);
    if (!mine) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Can't assign device to customer from different tenant!");
      goto out;
    }
  } else {
    api_json_set_id(in, "customerId", TD_ENTITY_CUSTOMER, td_uuid_null());
  }
  api_json_set_id(in, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);

  if (api_tx_begin(j, st)) goto out;
  tx = true;
  int rc;
  if (resolve_profile(j, st, in)) goto out;
  if (old) invalidate_device(j, st, &id);
  rc = td_store_device_save(st, in, &out);
  if (rc == TD_EEXIST) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_DUP_NAME);
    goto out;
  }
  if (rc) {
    api_fail_rc(j, rc, "Device", idrc == 0 ? &id : NULL);
    goto out;
  }
  if (!old) {
    char token[21];
    const char *tok = j->s[0];
    if (!tok || !*tok) {
      if (td_auth_random_token(token, sizeof token)) {
        api_fail(j, 500, TD_TB_GENERAL, "Unable to generate access token");
        goto out;
      }
      tok = token;
    }
    json_t *c = json_object();
    json_object_set(c, "deviceId", json_object_get(out, "id"));
    json_object_set_new(c, "credentialsType", json_string("ACCESS_TOKEN"));
    json_object_set_new(c, "credentialsId", json_string(tok));
    json_object_set_new(c, "credentialsValue", json_null());
    rc = td_store_device_credentials_save(st, c, &cred);
    json_decref(c);
    if (rc == TD_EEXIST) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_DUP_CREDS);
      goto out;
    }
    if (rc) {
      api_fail_rc(j, rc, NULL, NULL);
      goto out;
    }
    api_invalidate(j, tok); /* a negative cache entry for this token may exist */
  }
  if ((rc = td_store_commit(st))) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  tx = false;
  api_ok_json(j, out);
  out = NULL;
out:
  if (tx) td_store_rollback(st); /* queued invalidations stay: dropping a cache entry is harmless */
  json_decref(cred);
  json_decref(out);
  json_decref(old);
  json_decref(in);
}

static void save_device(struct td_http_req *r) {
  struct td_auth_principal me;
  if (api_begin(r, API_TENANT, &me)) return;
  const char *tok = td_http_query_get(r, "accessToken");
  if (tok && (strlen(tok) > 255 || strchr(tok, ' '))) {
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Incorrect access token");
    return;
  }
  struct api_job *j = api_job_new(r, &me, save_work);
  if (!j) return;
  j->s[0] = tok;
  api_submit(j);
}

/* ---- lists ---- */

static void tenant_devices_work(struct api_job *j, struct td_store *st) {
  json_t *out = NULL;
  int rc;
  if (j->s[0]) {
    rc = td_store_device_by_name(st, &j->me.tenant_id, j->s[0], &out);
    if (rc) api_fail_rc(j, rc, NULL, NULL);
    else api_ok_json(j, out);
    return;
  }
  rc = td_store_devices_page(st, &j->me.tenant_id, NULL, j->s[1], &j->pl, &out);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, out);
}

static void tenant_devices(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_page_link pl = {0};
  if (api_begin(r, API_TENANT, &me)) return;
  const char *name = td_http_query_get(r, "deviceName");
  if (!name && api_page_params(r, &pl)) return;
  struct api_job *j = api_job_new(r, &me, tenant_devices_work);
  if (!j) return;
  const char *type = td_http_query_get(r, "type");
  j->s[0] = name;
  j->s[1] = type && *type ? type : NULL;
  j->pl = pl;
  api_submit(j);
}

static void customer_devices_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL, *out = NULL;
  int rc = td_store_customer_get(st, &j->id, &c);
  if (rc) {
    api_fail_rc(j, rc, "Customer", &j->id);
    return;
  }
  bool ok = api_same_tenant(j, c) &&
            (j->me.authority == TD_AUTHORITY_TENANT_ADMIN || td_uuid_eq(&j->id, &j->me.customer_id));
  json_decref(c);
  if (!ok) {
    api_fail_denied(j);
    return;
  }
  rc = td_store_devices_page(st, &j->me.tenant_id, &j->id, j->s[1], &j->pl, &out);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, out);
}

static void customer_devices(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_page_link pl;
  struct td_uuid id;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me) || api_uuid_param(r, "customerId", &id) ||
      api_page_params(r, &pl))
    return;
  struct api_job *j = api_job_new(r, &me, customer_devices_work);
  if (!j) return;
  const char *type = td_http_query_get(r, "type");
  j->id = id;
  j->s[1] = type && *type ? type : NULL;
  j->pl = pl;
  api_submit(j);
}

/* ---- customer assignment ---- */

static void assign_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL, *d = NULL, *out = NULL;
  int rc = td_store_customer_get(st, &j->id, &c);
  if (rc) {
    api_fail_rc(j, rc, "Customer", &j->id);
    return;
  }
  if (api_check_tenant_write(j, c) || !(d = load_device(j, st, &j->id2, true))) goto out;
  json_object_set(d, "customerId", json_object_get(c, "id"));
  rc = td_store_device_save(st, d, &out);
  if (rc) {
    api_fail_rc(j, rc, "Device", &j->id2);
    goto out;
  }
  invalidate_device(j, st, &j->id2);
  api_ok_json(j, out);
out:
  json_decref(c);
  json_decref(d);
}

static void assign(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_uuid cid, did;
  if (api_begin(r, API_TENANT, &me) || api_uuid_param(r, "customerId", &cid) || api_uuid_param(r, "deviceId", &did))
    return;
  struct api_job *j = api_job_new(r, &me, assign_work);
  if (!j) return;
  j->id = cid;
  j->id2 = did;
  api_submit(j);
}

static void unassign_work(struct api_job *j, struct td_store *st) {
  json_t *d = load_device(j, st, &j->id, true), *out = NULL;
  if (!d) return;
  struct td_uuid cid;
  if (api_json_id(d, "customerId", &cid) || td_uuid_is_null(&cid)) {
    json_decref(d);
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device isn't assigned to any customer!");
    return;
  }
  api_json_set_id(d, "customerId", TD_ENTITY_CUSTOMER, td_uuid_null());
  int rc = td_store_device_save(st, d, &out);
  json_decref(d);
  if (rc) {
    api_fail_rc(j, rc, "Device", &j->id);
    return;
  }
  invalidate_device(j, st, &j->id);
  api_ok_json(j, out);
}
static void unassign(struct td_http_req *r) { start(r, API_TENANT, "deviceId", unassign_work); }

/* ---- credentials ---- */

static void get_credentials_work(struct api_job *j, struct td_store *st) {
  json_t *d = load_device(j, st, &j->id, false), *c = NULL;
  if (!d) return;
  json_decref(d);
  int rc = td_store_device_credentials_by_device(st, &j->id, &c);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, c);
}
static void get_credentials(struct td_http_req *r) {
  start(r, API_TENANT | API_CUSTOMER, "deviceId", get_credentials_work);
}

/* credentials_id: compute/validate credentialsId (and normalise the value) per
 * reference §1.0.1. 0, or -1 after answering 400. */
static int credentials_id(struct api_job *j, json_t *in) {
  const char *type = api_json_str(in, "credentialsType");
  if (!type) type = "ACCESS_TOKEN";
  if (strcmp(type, "ACCESS_TOKEN") == 0) {
    const char *id = api_json_str(in, "credentialsId");
    if (!id || !*id) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device credentials id should be specified!");
      return -1;
    }
    if (strchr(id, ' ') || strlen(id) > 255) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Incorrect access token");
      return -1;
    }
    json_object_set_new(in, "credentialsValue", json_null());
    return 0;
  }
  const char *val = api_json_str(in, "credentialsValue");
  if (!val || !*val) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device credentials value should be specified!");
    return -1;
  }
  char hex[65];
  if (strcmp(type, "MQTT_BASIC") == 0) {
    json_t *v = json_loads(val, 0, NULL);
    const char *cl = api_json_str(v, "clientId"), *un = api_json_str(v, "userName"), *pw = api_json_str(v, "password");
    bool hc = cl && *cl, hu = un && *un;
    int rc = 0;
    if (!json_is_object(v) || (!hc && !hu)) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Both mqtt client id and user name are empty!");
      rc = -1;
    } else if (hc && !hu && pw && *pw) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Password cannot be specified along with client id");
      rc = -1;
    } else if (!hc) {
      json_object_set_new(in, "credentialsId", json_string(un));
    } else {
      struct td_buf b;
      td_buf_init(&b, 8192);
      td_buf_puts(&b, cl);
      if (hu) td_buf_printf(&b, "|%s", un);
      td_sha3_256_hex(b.data ? b.data : "", b.len, hex);
      td_buf_deinit(&b);
      json_object_set_new(in, "credentialsId", json_string(hex));
    }
    json_decref(v);
    return rc;
  }
  if (strcmp(type, "X509_CERTIFICATE") == 0) {
    /* The same trimming and hash as the TLS side computes from the
     * certificate a device presents at CONNECT, so the two always match. */
    char *b64 = NULL;
    if (td_tls_pem_to_b64(val, &b64) || td_tls_x509_credentials_id(b64, hex)) {
      free(b64);
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid X509 certificate");
      return -1;
    }
    json_object_set_new(in, "credentialsValue", json_string(b64));
    json_object_set_new(in, "credentialsId", json_string(hex));
    free(b64);
    return 0;
  }
  api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Unsupported credentials type: %.40s", type);
  return -1;
}

static void save_credentials_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *d = NULL, *old = NULL, *out = NULL;
  if (!in) return;
  struct td_uuid did;
  if (api_json_id(in, "deviceId", &did)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Device credentials should be assigned to device!");
    goto out;
  }
  if (!(d = load_device(j, st, &did, true)) || credentials_id(j, in)) goto out;
  int rc = td_store_device_credentials_by_device(st, &did, &old);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  json_object_set(in, "id", json_object_get(old, "id"));
  if (!json_object_get(in, "credentialsType")) json_object_set_new(in, "credentialsType", json_string("ACCESS_TOKEN"));
  rc = td_store_device_credentials_save(st, in, &out);
  if (rc == TD_EEXIST) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_DUP_CREDS);
    goto out;
  }
  if (rc) {
    api_fail_rc(j, rc, "Device credentials", NULL);
    goto out;
  }
  api_invalidate(j, api_json_str(old, "credentialsId"));
  api_invalidate(j, api_json_str(out, "credentialsId"));
  char s[TD_UUID_STR_LEN + 1];
  td_log(TD_LOG_INFO, "api", "action=updateDeviceCredentials device=%s type=%s", td_uuid_fmt(&did, s),
         api_json_str(out, "credentialsType") ? api_json_str(out, "credentialsType") : "?");
  api_ok_json(j, out);
  out = NULL;
out:
  json_decref(out);
  json_decref(old);
  json_decref(d);
  json_decref(in);
}

static void save_credentials(struct td_http_req *r) { api_run(r, API_TENANT, save_credentials_work); }

/* ---- types and lookups by ids ---- */

static int profiles_page(struct td_store *st, void *arg, const struct td_page_link *pl, json_t **out) {
  return td_store_device_profiles_page(st, arg, pl, out);
}

static void types_work(struct api_job *j, struct td_store *st) {
  json_t *all = NULL;
  int rc = api_page_all(st, profiles_page, &j->me.tenant_id, 10000, &all);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  json_t *res = json_array();
  size_t i;
  json_t *p;
  json_array_foreach(all, i, p) {
    json_t *e = json_object();
    api_json_set_id(e, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);
    json_object_set_new(e, "entityType", json_string("DEVICE"));
    json_object_set(e, "type", json_object_get(p, "name"));
    json_array_append_new(res, e);
  }
  json_decref(all);
  api_ok_json(j, res);
}

static void device_types(struct td_http_req *r) { api_run(r, API_TENANT | API_CUSTOMER, types_work); }

static void by_ids_work(struct api_job *j, struct td_store *st) {
  struct td_uuid *ids = j->x;
  json_t *res = json_array();
  for (int64_t i = 0; i < j->n[0]; i++) {
    json_t *d = NULL;
    int rc = td_store_device_get(st, &ids[i], &d);
    if (rc == TD_ENOTFOUND) continue;
    if (rc) {
      json_decref(res);
      api_fail_rc(j, rc, NULL, NULL);
      return;
    }
    bool ok = api_same_tenant(j, d);
    struct td_uuid cid;
    if (ok && j->me.authority == TD_AUTHORITY_CUSTOMER_USER)
      ok = api_json_id(d, "customerId", &cid) == 0 && td_uuid_eq(&cid, &j->me.customer_id);
    if (ok) json_array_append_new(res, d);
    else json_decref(d);
  }
  api_ok_json(j, res);
}

static void devices_by_ids(struct td_http_req *r) {
  struct td_auth_principal me;
  if (api_begin(r, API_TENANT | API_CUSTOMER, &me)) return;
  const char **v;
  size_t n;
  const char *csv = td_http_query_get(r, "deviceIds");
  if (!csv || api_split_csv(r, csv, &v, &n) || n == 0 || n > 1000) {
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Required request parameter 'deviceIds' is not valid");
    return;
  }
  struct td_uuid *ids = td_arena_alloc(&r->arena, n * sizeof *ids);
  if (!ids) {
    api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (td_uuid_parse(v[i], &ids[i])) {
      char msg[128];
      snprintf(msg, sizeof msg, "Invalid UUID string: %.60s", v[i]);
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
      return;
    }
  struct api_job *j = api_job_new(r, &me, by_ids_work);
  if (!j) return;
  j->x = ids;
  j->n[0] = (int64_t)n;
  api_submit(j);
}

int api_device_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/device", save_device},
      {TD_HTTP_GET, "/api/device/{deviceId}", get_device},
      {TD_HTTP_DELETE, "/api/device/{deviceId}", delete_device},
      {TD_HTTP_GET, "/api/tenant/devices", tenant_devices},
      {TD_HTTP_GET, "/api/customer/{customerId}/devices", customer_devices},
      {TD_HTTP_POST, "/api/customer/{customerId}/device/{deviceId}", assign},
      {TD_HTTP_DELETE, "/api/customer/device/{deviceId}", unassign},
      {TD_HTTP_GET, "/api/device/{deviceId}/credentials", get_credentials},
      {TD_HTTP_POST, "/api/device/credentials", save_credentials},
      {TD_HTTP_GET, "/api/device/types", device_types},
      {TD_HTTP_GET, "/api/devices", devices_by_ids},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
