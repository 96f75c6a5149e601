/* rule_chain.c — RuleChainController (reference §2.9, §4.1): a tenant's rule
 * chains and their metadata, as ThingsBoard's UI uses them to import an
 * exported chain (POST /api/ruleChain with the export's "ruleChain", then
 * POST /api/ruleChain/metadata with its "metadata" and the new ruleChainId)
 * and to pick the root chain. TENANT_ADMIN only; another tenant's chain is
 * answered 403. Node types are checked with td_rule_chain_validate before
 * metadata is stored (an unknown class is a 400 naming it). Whenever the
 * tenant's root chain or the root chain's metadata changes, the running rule
 * engine is told (td_rule_engine_chain_changed) after the commit, so its
 * tenant actor reloads the root chain.
 *
 * Only CORE chains exist here: creating an EDGE chain is refused (400), so
 * listing with type=EDGE answers an empty page. */
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "rule/engine.h"

#define MSG_NO_NAME "Rule chain name should be specified!"
#define MSG_ANOTHER_ROOT "Another root rule chain is present in scope of current tenant!"
#define MSG_DELETE_ROOT "Deletion of Root Tenant Rule Chain is prohibited!"
#define MSG_PROFILE_REF "The rule chain referenced by the device profiles cannot be deleted!"
#define OUTPUT_NODE "org.thingsboard.rule.engine.flow.TbRuleChainOutputNode"

/* load_chain: chain id of me's tenant; NULL after answering 404/403. */
static json_t *load_chain(struct api_job *j, struct td_store *st, const struct td_uuid *id) {
  json_t *c = NULL;
  int rc = td_store_rule_chain_get(st, id, &c);
  if (rc) {
    api_fail_rc(j, rc, "Rule chain", id);
    return NULL;
  }
  if (api_check_tenant_write(j, c) == 0) return c;
  json_decref(c);
  return NULL;
}

/* notify: the tenant's root chain (or what it runs) changed. */
static void notify(struct api_job *j) {
  if (j->ctx->rules) td_rule_engine_chain_changed(j->ctx->rules, &j->me.tenant_id);
}

static bool is_root(json_t *c) { return json_is_true(json_object_get(c, "root")); }

static void start(struct td_http_req *r, api_work_fn work) {
  struct td_auth_principal me;
  struct td_uuid id;
  if (api_begin(r, API_TENANT, &me) || api_uuid_param(r, "ruleChainId", &id)) return;
  struct api_job *j = api_job_new(r, &me, work);
  if (!j) return;
  j->id = id;
  api_submit(j);
}

/* ---- list ---- */

static void list_work(struct api_job *j, struct td_store *st) {
  json_t *out = NULL;
  if (j->f[0]) { /* EDGE: none can exist */
    api_ok_json(j, json_pack("{s:[],s:i,s:i,s:b}", "data", "totalPages", 0, "totalElements", 0, "hasNext", 0));
    return;
  }
  int rc = td_store_rule_chains_page(st, &j->me.tenant_id, &j->pl, &out);
  if (rc) api_fail_rc(j, rc, NULL, NULL);
  else api_ok_json(j, out);
}

static void list_chains(struct td_http_req *r) {
  struct td_auth_principal me;
  struct td_page_link pl;
  if (api_begin(r, API_TENANT, &me) || api_page_params(r, &pl)) return;
  const char *type = td_http_query_get(r, "type");
  bool edge = false;
  if (type && *type) {
    if (strcmp(type, "EDGE") == 0) {
      edge = true;
    } else if (strcmp(type, "CORE") != 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "No enum constant org.thingsboard.server.common.data.rule.RuleChainType.%.60s", type);
      api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, msg);
      return;
    }
  }
  struct api_job *j = api_job_new(r, &me, list_work);
  if (!j) return;
  j->pl = pl;
  j->f[0] = edge;
  api_submit(j);
}

/* ---- get / metadata / output labels ---- */

static void get_work(struct api_job *j, struct td_store *st) {
  json_t *c = load_chain(j, st, &j->id);
  if (c) api_ok_json(j, c);
}
static void get_chain(struct td_http_req *r) { start(r, get_work); }

static void get_metadata_work(struct api_job *j, struct td_store *st) {
  json_t *c = load_chain(j, st, &j->id), *md = NULL;
  if (!c) return;
  json_decref(c);
  int rc = td_store_rule_chain_metadata_get(st, &j->id, &md);
  if (rc) api_fail_rc(j, rc, "Rule chain", &j->id);
  else api_ok_json(j, md);
}
static void get_metadata(struct td_http_req *r) { start(r, get_metadata_work); }

/* The names of the chain's "output" nodes (a set: each once). */
static void output_labels_work(struct api_job *j, struct td_store *st) {
  json_t *c = load_chain(j, st, &j->id), *md = NULL;
  if (!c) return;
  json_decref(c);
  int rc = td_store_rule_chain_metadata_get(st, &j->id, &md);
  if (rc) {
    api_fail_rc(j, rc, "Rule chain", &j->id);
    return;
  }
  json_t *labels = json_array(), *seen = json_object(), *n;
  size_t i;
  json_array_foreach(json_object_get(md, "nodes"), i, n) {
    const char *type = api_json_str(n, "type"), *name = api_json_str(n, "name");
    if (!type || !name || strcmp(type, OUTPUT_NODE) != 0 || json_object_get(seen, name)) continue;
    json_object_set_new(seen, name, json_true());
    json_array_append_new(labels, json_string(name));
  }
  json_decref(seen);
  json_decref(md);
  api_ok_json(j, labels);
}
static void output_labels(struct td_http_req *r) { start(r, output_labels_work); }

/* ---- save the chain entity ---- */

/* check_type: "type" absent/null -> CORE; CORE accepted, EDGE refused. 0 or -1 after answering. */
static int check_type(struct api_job *j, json_t *in) {
  json_t *t = json_object_get(in, "type");
  if (!t || json_is_null(t)) {
    json_object_set_new(in, "type", json_string("CORE"));
    return 0;
  }
  const char *s = json_string_value(t);
  if (s && strcmp(s, "CORE") == 0) return 0;
  if (s && strcmp(s, "EDGE") == 0) api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Edge rule chains are not supported");
  else api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid rule chain type");
  return -1;
}

static void save_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *old = NULL, *cur = NULL, *out = NULL;
  if (!in) return;
  bool tx = false;
  const char *name = api_json_str(in, "name");
  if (!name || !*name) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_NO_NAME);
    goto out;
  }
  if (check_type(j, in)) goto out;
  struct td_uuid id;
  int idrc = api_json_id(in, "id", &id);
  if (idrc == TD_EINVAL) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Invalid rule chain id");
    goto out;
  }
  if (idrc == 0) {
    if (!(old = load_chain(j, st, &id))) goto out;
  } else {
    json_object_del(in, "id");
  }
  api_json_set_id(in, "tenantId", TD_ENTITY_TENANT, &j->me.tenant_id);
  if (api_tx_begin(j, st)) goto out;
  tx = true;
  int rc;
  rc = td_store_rule_chain_root(st, &j->me.tenant_id, &cur);
  if (rc && rc != TD_ENOTFOUND) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  struct td_uuid cur_id;
  bool has_root = rc == 0 && api_json_id(cur, "id", &cur_id) == 0;
  bool was_root = old && is_root(old);
  bool want_root = is_root(in);
  if (want_root && has_root && !(old && td_uuid_eq(&cur_id, &id))) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_ANOTHER_ROOT);
    goto out;
  }
  /* The root flag changes only through POST /api/ruleChain/{id}/root (or a
   * chain made root while the tenant has none); the first node belongs to
   * the metadata. */
  json_object_set_new(in, "root", json_boolean(want_root || was_root));
  json_t *first = old ? json_object_get(old, "firstRuleNodeId") : NULL;
  json_object_set_new(in, "firstRuleNodeId", first ? json_incref(first) : json_null());
  rc = td_store_rule_chain_save(st, in, &out);
  if (rc) {
    api_fail_rc(j, rc, "Rule chain", idrc == 0 ? &id : NULL);
    goto out;
  }
  if ((rc = td_store_commit(st))) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  tx = false;
  if (is_root(out) && !was_root) notify(j);
  api_ok_json(j, out);
  out = NULL;
out:
  if (tx) td_store_rollback(st);
  json_decref(out);
  json_decref(cur);
  json_decref(old);
  json_decref(in);
}

static void save_chain(struct td_http_req *r) { api_run(r, API_TENANT, save_work); }

/* ---- save the metadata ---- */

static void save_metadata_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j), *c = NULL, *out = NULL;
  if (!in) return;
  struct td_uuid cid;
  int rc = api_json_id(in, "ruleChainId", &cid);
  if (rc) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS,
             rc == TD_ENOTFOUND ? "Rule chain id should be specified!" : "Invalid rule chain id");
    goto out;
  }
  if (!(c = load_chain(j, st, &cid))) goto out;
  char err[256] = "";
  if (td_rule_chain_validate(in, err, sizeof err)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "%s", err[0] ? err : "Invalid rule chain metadata");
    goto out;
  }
  rc = td_store_rule_chain_metadata_save(st, &cid, in, &out);
  if (rc) {
    api_fail_rc(j, rc, "Rule chain", &cid);
    goto out;
  }
  if (is_root(c)) notify(j);
  char s[TD_UUID_STR_LEN + 1];
  td_log(TD_LOG_INFO, "api", "action=saveRuleChainMetaData chain=%s nodes=%zu root=%d", td_uuid_fmt(&cid, s),
         json_array_size(json_object_get(out, "nodes")), is_root(c));
  api_ok_json(j, out);
  out = NULL;
out:
  json_decref(out);
  json_decref(c);
  json_decref(in);
}

static void save_metadata(struct td_http_req *r) { api_run(r, API_TENANT, save_metadata_work); }

/* ---- root ---- */

static void set_root_work(struct api_job *j, struct td_store *st) {
  json_t *c = load_chain(j, st, &j->id), *out = NULL;
  if (!c) return;
  if (is_root(c)) {
    api_ok_json(j, c);
    return;
  }
  json_decref(c);
  int rc = td_store_rule_chain_set_root(st, &j->id);
  if (rc == 0) rc = td_store_rule_chain_get(st, &j->id, &out);
  if (rc) {
    api_fail_rc(j, rc, "Rule chain", &j->id);
    return;
  }
  notify(j);
  char s[TD_UUID_STR_LEN + 1];
  td_log(TD_LOG_INFO, "api", "action=setRootRuleChain chain=%s", td_uuid_fmt(&j->id, s));
  api_ok_json(j, out);
}
static void set_root(struct td_http_req *r) { start(r, set_root_work); }

/* ---- delete ---- */

static int profiles_page(struct td_store *st, void *arg, const struct td_page_link *pl, json_t **out) {
  return td_store_device_profiles_page(st, arg, pl, out);
}

static void delete_work(struct api_job *j, struct td_store *st) {
  json_t *c = NULL, *profiles = NULL;
  int rc = td_store_begin(st);
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    return;
  }
  if (!(c = load_chain(j, st, &j->id))) goto fail;
  if (is_root(c)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_DELETE_ROOT);
    goto fail;
  }
  if ((rc = api_page_all(st, profiles_page, &j->me.tenant_id, 100000, &profiles))) {
    api_fail_rc(j, rc, NULL, NULL);
    goto fail;
  }
  size_t i;
  json_t *p;
  json_array_foreach(profiles, i, p) {
    struct td_uuid rid;
    if (api_json_id(p, "defaultRuleChainId", &rid) == 0 && td_uuid_eq(&rid, &j->id)) {
      api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, MSG_PROFILE_REF);
      goto fail;
    }
  }
  if ((rc = td_store_rule_chain_delete(st, &j->id)) || (rc = td_store_commit(st))) {
    api_fail_rc(j, rc, "Rule chain", &j->id);
    goto fail;
  }
  json_decref(profiles);
  json_decref(c);
  api_ok_empty(j);
  return;
fail:
  td_store_rollback(st);
  json_decref(profiles);
  json_decref(c);
}
static void delete_chain(struct td_http_req *r) { start(r, delete_work); }

int api_rule_chain_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, "/api/ruleChains", list_chains},
      {TD_HTTP_POST, "/api/ruleChain", save_chain},
      {TD_HTTP_POST, "/api/ruleChain/metadata", save_metadata},
      {TD_HTTP_GET, "/api/ruleChain/{ruleChainId}", get_chain},
      {TD_HTTP_DELETE, "/api/ruleChain/{ruleChainId}", delete_chain},
      {TD_HTTP_GET, "/api/ruleChain/{ruleChainId}/metadata", get_metadata},
      {TD_HTTP_POST, "/api/ruleChain/{ruleChainId}/root", set_root},
      {TD_HTTP_GET, "/api/ruleChain/{ruleChainId}/output/labels", output_labels},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
