/* store.c — the public store API (store.h): picks a backend by config type and
 * forwards every call through the backend's ops table (store_impl.h). Also the
 * small name<->enum helpers for attribute scopes and aggregations. */
#include "store/store.h"

#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "store/store_impl.h"

static const struct td_store_ops *const backends[] = {&td_sqlite_ops};

/* td_store_open: see store.h. cfg->type NULL means "sqlite". */
int td_store_open(const struct td_store_config *cfg, bool migrate, struct td_store **out) {
  if (!cfg || !out) return TD_EINVAL;
  const char *type = cfg->type ? cfg->type : "sqlite";
  for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
    if (strcmp(backends[i]->name, type) == 0) return backends[i]->open(cfg, migrate, out);
  td_log(TD_LOG_ERROR, "store", "action=open type=\"%s\" err=unknown_backend", type);
  return TD_EINVAL;
}

void td_store_close(struct td_store *st) {
  if (st) st->ops->close(st);
}

/* One-line forwarders; each is documented in store.h. */
#define FWD(name, params, args) \
  int td_store_##name params { return st->ops->name args; }

FWD(begin, (struct td_store *st), (st))
FWD(commit, (struct td_store *st), (st))
FWD(rollback, (struct td_store *st), (st))
FWD(schema_version, (struct td_store *st), (st))
FWD(kv_get, (struct td_store *st, const char *key, char **value), (st, key, value))
FWD(kv_put, (struct td_store *st, const char *key, const char *value), (st, key, value))

FWD(tenant_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(tenant_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(tenant_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(tenants_page, (struct td_store *st, const struct td_page_link *pl, json_t **out), (st, pl, out))
FWD(tenant_ids, (struct td_store *st, struct td_uuid **ids, size_t *n), (st, ids, n))

FWD(customer_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(customer_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(customer_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(customers_page, (struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out),
    (st, tenant_id, pl, out))
FWD(customer_by_title, (struct td_store *st, const struct td_uuid *tenant_id, const char *title, json_t **out),
    (st, tenant_id, title, out))

FWD(user_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(user_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(user_by_email, (struct td_store *st, const char *email, json_t **out), (st, email, out))
FWD(user_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(users_page,
    (struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id, const char *authority,
     const struct td_page_link *pl, json_t **out),
    (st, tenant_id, customer_id, authority, pl, out))
FWD(user_credentials_get, (struct td_store *st, const struct td_uuid *user_id, struct td_user_credentials *out),
    (st, user_id, out))
FWD(user_credentials_put, (struct td_store *st, const struct td_user_credentials *c), (st, c))
FWD(user_credentials_by_activate_token, (struct td_store *st, const char *token, struct td_user_credentials *out),
    (st, token, out))

FWD(device_profile_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(device_profile_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(device_profile_by_name, (struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out),
    (st, tenant_id, name, out))
FWD(device_profile_by_provision_key, (struct td_store *st, const char *key, json_t **out), (st, key, out))
FWD(device_profile_default, (struct td_store *st, const struct td_uuid *tenant_id, json_t **out), (st, tenant_id, out))
FWD(device_profile_set_default, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(device_profile_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(device_profiles_page,
    (struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out),
    (st, tenant_id, pl, out))

FWD(device_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(device_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(device_by_name, (struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out),
    (st, tenant_id, name, out))
FWD(device_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(devices_page,
    (struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id, const char *type,
     const struct td_page_link *pl, json_t **out),
    (st, tenant_id, customer_id, type, pl, out))
FWD(device_credentials_save, (struct td_store *st, json_t *in, json_t **out), (st, in, out))
FWD(device_credentials_by_device, (struct td_store *st, const struct td_uuid *device_id, json_t **out),
    (st, device_id, out))
FWD(device_auth_by_credentials, (struct td_store *st, const char *credentials_id, struct td_device_auth *out),
    (st, credentials_id, out))
FWD(device_auth_by_id, (struct td_store *st, const struct td_uuid *device_id, struct td_device_auth *out),
    (st, device_id, out))

FWD(rule_chain_save, (struct td_store *st, json_t *chain, json_t **out), (st, chain, out))
FWD(rule_chain_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(rule_chain_root, (struct td_store *st, const struct td_uuid *tenant_id, json_t **out), (st, tenant_id, out))
FWD(rule_chain_set_root, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(rule_chain_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(rule_chains_page, (struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out),
    (st, tenant_id, pl, out))
FWD(rule_chain_metadata_save,
    (struct td_store *st, const struct td_uuid *chain_id, json_t *metadata, json_t **out), (st, chain_id, metadata, out))
FWD(rule_chain_metadata_get, (struct td_store *st, const struct td_uuid *chain_id, json_t **out), (st, chain_id, out))

FWD(relation_save,
    (struct td_store *st, const struct td_entity_id *from, const struct td_entity_id *to, const char *type,
     const char *type_group),
    (st, from, to, type, type_group))

FWD(attributes_save,
    (struct td_store *st, const struct td_entity_id *e, int scope, const struct td_kv *kvs, size_t n, int64_t ts),
    (st, e, scope, kvs, n, ts))
FWD(attributes_get,
    (struct td_store *st, const struct td_entity_id *e, int scope, const char *const *keys, size_t nkeys,
     struct td_arena *a, struct td_attr **out, size_t *nout),
    (st, e, scope, keys, nkeys, a, out, nout))
FWD(attributes_delete,
    (struct td_store *st, const struct td_entity_id *e, int scope, const char *const *keys, size_t nkeys,
     size_t *ndeleted),
    (st, e, scope, keys, nkeys, ndeleted))

FWD(ts_save, (struct td_store *st, const struct td_entity_id *e, const struct td_ts_point *pts, size_t n, int64_t ttl_s),
    (st, e, pts, n, ttl_s))
FWD(ts_latest,
    (struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys, struct td_arena *a,
     struct td_ts_point **out, size_t *nout),
    (st, e, keys, nkeys, a, out, nout))
FWD(ts_keys, (struct td_store *st, const struct td_entity_id *e, struct td_arena *a, const char ***out, size_t *nout),
    (st, e, a, out, nout))
FWD(ts_query,
    (struct td_store *st, const struct td_entity_id *e, const struct td_ts_query *q, struct td_arena *a,
     struct td_ts_point **out, size_t *nout),
    (st, e, q, a, out, nout))
FWD(ts_delete,
    (struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys, bool delete_all,
     int64_t start_ts, int64_t end_ts, bool delete_latest, bool rewrite_latest),
    (st, e, keys, nkeys, delete_all, start_ts, end_ts, delete_latest, rewrite_latest))
FWD(ts_count, (struct td_store *st, const struct td_entity_id *e, int64_t *count), (st, e, count))
FWD(devices_active, (struct td_store *st, bool telemetry, size_t max, struct td_arena *a, struct td_uuid **device_ids,
                     struct td_uuid **tenant_ids, size_t *n), (st, telemetry, max, a, device_ids, tenant_ids, n))

FWD(rpc_insert, (struct td_store *st, json_t *rpc), (st, rpc))
FWD(rpc_get, (struct td_store *st, const struct td_uuid *id, json_t **out), (st, id, out))
FWD(rpc_set_status,
    (struct td_store *st, const struct td_uuid *id, const char *status, const char *response, int64_t seq,
     bool *changed),
    (st, id, status, response, seq, changed))
FWD(rpc_delete, (struct td_store *st, const struct td_uuid *id), (st, id))
FWD(rpcs_page,
    (struct td_store *st, const struct td_uuid *device_id, const char *status, const struct td_page_link *pl,
     json_t **out),
    (st, device_id, status, pl, out))
FWD(rpcs_pending, (struct td_store *st, const struct td_uuid *device_id, size_t max, json_t **out),
    (st, device_id, max, out))
#undef FWD

static const char *const scope_names[] = {NULL, "CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"};

/* td_attr_scope_parse: see store.h. */
int td_attr_scope_parse(const char *s) {
  if (!s) return 0;
  for (int i = TD_SCOPE_CLIENT; i <= TD_SCOPE_SHARED; i++)
    if (strcmp(s, scope_names[i]) == 0) return i;
  return 0;
}

/* td_attr_scope_name: static name, "" if unknown. */
const char *td_attr_scope_name(int scope) {
  return scope >= TD_SCOPE_CLIENT && scope <= TD_SCOPE_SHARED ? scope_names[scope] : "";
}

/* td_agg_parse: see store.h. */
int td_agg_parse(const char *s) {
  static const char *const names[] = {"NONE", "MIN", "MAX", "AVG", "SUM", "COUNT"};
  if (!s) return -1;
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}
