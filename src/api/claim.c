/* claim.c — claiming devices (reference §2.4; ThingsBoard's DeviceController
 * claimDevice/reClaimDevice and ClaimDevicesServiceImpl).
 *
 *   POST   /api/customer/device/{deviceName}/claim  body {"secretKey":".."} (optional)
 *   DELETE /api/customer/device/{deviceName}/claim  (reclaim)
 *
 * A device first announces it may be claimed (MQTT v1/devices/me/claim, HTTP
 * /api/v1/{token}/claim -> td_core_claim*, kept in the claim table with its
 * secret and expiry). A CUSTOMER_USER of the device's tenant then claims it
 * by name: with a live claim and the same secret ("" matches "") and the
 * device not assigned to a customer, it is assigned to the user's customer ->
 * 200 {"device":{..},"response":"SUCCESS"}; a wrong secret or an expired claim
 * -> 400 "FAILURE" (the claim is dropped); a device already assigned -> 400
 * "CLAIMED"; no claim -> "CLAIMED" if assigned, else "FAILURE". The 400
 * bodies are the JSON strings ThingsBoard's Jackson writes for the enum.
 * Reclaim (TENANT_ADMIN, or the CUSTOMER_USER owning it) unassigns the device
 * and forgets its claim -> 200. Claiming is allowed by default
 * (security.claim.allowClaimingByDefault); the claimingAllowed attribute is
 * not consulted. */
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/time.h"
#include "core/device_session.h"

static void invalidate(struct api_job *j, struct td_store *st, const struct td_uuid *id) {
  json_t *c = NULL;
  if (td_store_device_credentials_by_device(st, id, &c) == 0) api_invalidate(j, api_json_str(c, "credentialsId"));
  json_decref(c);
}

/* load: the tenant's device named j->s[0]; NULL after answering. */
static json_t *load(struct api_job *j, struct td_store *st, struct td_uuid *id, bool *assigned) {
  json_t *d = NULL;
  int rc = td_store_device_by_name(st, &j->me.tenant_id, j->s[0], &d);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return NULL;
  }
  struct td_uuid cid;
  *assigned = api_json_id(d, "customerId", &cid) == 0 && !td_uuid_is_null(&cid);
  if (api_json_id(d, "id", id)) {
    json_decref(d);
    api_fail(j, 500, TD_TB_GENERAL, "Device without id");
    return NULL;
  }
  return d;
}

static void claim_work(struct api_job *j, struct td_store *st) {
  struct td_uuid id;
  bool assigned;
  json_t *d = load(j, st, &id, &assigned);
  if (!d) return;
  enum td_claim_result res = td_core_claim_take(&id, j->s[1], td_now_ms());
  const char *fail = NULL;
  if (res == TD_CLAIM_BAD) fail = "FAILURE";
  else if (assigned) fail = "CLAIMED";
  else if (res == TD_CLAIM_NONE) fail = "FAILURE";
  if (fail) {
    json_decref(d);
    api_ok_status_json(j, 400, json_string(fail));
    return;
  }
  api_json_set_id(d, "customerId", TD_ENTITY_CUSTOMER, &j->me.customer_id);
  json_t *out = NULL;
  int rc = td_store_device_save(st, d, &out);
  json_decref(d);
  if (rc) {
    api_fail_rc(j, rc, "Device", &id);
    return;
  }
  invalidate(j, st, &id);
  api_ok_json(j, json_pack("{s:o,s:s}", "device", out, "response", "SUCCESS"));
}

static void reclaim_work(struct api_job *j, struct td_store *st) {
  struct td_uuid id, cid;
  bool assigned;
  json_t *d = load(j, st, &id, &assigned);
  if (!d) return;
  if (j->me.authority == TD_AUTHORITY_CUSTOMER_USER &&
      !(assigned && api_json_id(d, "customerId", &cid) == 0 && td_uuid_eq(&cid, &j->me.customer_id))) {
    json_decref(d);
    api_fail_denied(j);
    return;
  }
  td_core_claim_drop(&id);
  int rc = 0;
  if (assigned) {
    json_t *out = NULL;
    api_json_set_id(d, "customerId", TD_ENTITY_CUSTOMER, td_uuid_null());
    rc = td_store_device_save(st, d, &out);
    json_decref(out);
    if (rc == 0) invalidate(j, st, &id);
  }
  json_decref(d);
  if (rc) api_fail_rc(j, rc, "Device", &id);
  else api_ok_empty(j);
}

static void start(struct td_http_req *r, unsigned mask, api_work_fn work, bool body) {
  struct td_auth_principal me;
  if (api_begin(r, mask, &me)) return;
  const char *name = td_http_param(r, "deviceName");
  const char *secret = "";
  if (body && r->body_len) {
    json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *k = json_object_get(b, "secretKey");
    if (!json_is_object(b) || (k && !json_is_null(k) && !json_is_string(k))) {
      json_decref(b);
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid request body");
      return;
    }
    if (json_is_string(k)) secret = td_arena_strdup(&r->arena, json_string_value(k));
    json_decref(b);
    if (!secret) {
      api_respond_error(r, 500, TD_TB_GENERAL, "Out of memory");
      return;
    }
  }
  struct api_job *j = api_job_new(r, &me, work);
  if (!j) return;
  j->s[0] = name ? name : "";
  j->s[1] = secret;
  api_submit(j);
}

static void h_claim(struct td_http_req *r) { start(r, API_CUSTOMER, claim_work, true); }
static void h_reclaim(struct td_http_req *r) { start(r, API_TENANT | API_CUSTOMER, reclaim_work, false); }

int api_claim_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/customer/device/{deviceName}/claim", h_claim},
      {TD_HTTP_DELETE, "/api/customer/device/{deviceName}/claim", h_reclaim},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
