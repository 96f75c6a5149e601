/* store_impl.h — the backend interface behind store.h (private to src/store).
 *
 * Like SQLite's VFS: a backend fills one const struct td_store_ops and every
 * connection it opens begins with a pointer to it. store.c's public
 * td_store_* functions are one-line calls through this table. The table only
 * grows at the end; `version` says how far a backend filled it. */
#ifndef TD_STORE_STORE_IMPL_H
#define TD_STORE_STORE_IMPL_H
#include "store/store.h"

#define TD_STORE_OPS_VERSION 1

struct td_store_ops {
  int version;
  const char *name; /* "sqlite" */
  int (*open)(const struct td_store_config *cfg, bool migrate, struct td_store **out);
  void (*close)(struct td_store *st);
  int (*begin)(struct td_store *st);
  int (*commit)(struct td_store *st);
  int (*rollback)(struct td_store *st);
  int (*schema_version)(struct td_store *st);

  int (*kv_get)(struct td_store *st, const char *key, char **value);
  int (*kv_put)(struct td_store *st, const char *key, const char *value);

  int (*tenant_save)(struct td_store *st, json_t *in, json_t **out);
  int (*tenant_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*tenant_delete)(struct td_store *st, const struct td_uuid *id);
  int (*tenants_page)(struct td_store *st, const struct td_page_link *pl, json_t **out);
  int (*tenant_ids)(struct td_store *st, struct td_uuid **ids, size_t *n);

  int (*customer_save)(struct td_store *st, json_t *in, json_t **out);
  int (*customer_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*customer_delete)(struct td_store *st, const struct td_uuid *id);
  int (*customers_page)(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
  int (*customer_by_title)(struct td_store *st, const struct td_uuid *tenant_id, const char *title, json_t **out);

  int (*user_save)(struct td_store *st, json_t *in, json_t **out);
  int (*user_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*user_by_email)(struct td_store *st, const char *email, json_t **out);
  int (*user_delete)(struct td_store *st, const struct td_uuid *id);
  int (*users_page)(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                    const char *authority, const struct td_page_link *pl, json_t **out);
  int (*user_credentials_get)(struct td_store *st, const struct td_uuid *user_id, struct td_user_credentials *out);
  int (*user_credentials_put)(struct td_store *st, const struct td_user_credentials *c);
  int (*user_credentials_by_activate_token)(struct td_store *st, const char *token, struct td_user_credentials *out);

  int (*device_profile_save)(struct td_store *st, json_t *in, json_t **out);
  int (*device_profile_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*device_profile_by_name)(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
  int (*device_profile_by_provision_key)(struct td_store *st, const char *key, json_t **out);
  int (*device_profile_default)(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
  int (*device_profile_set_default)(struct td_store *st, const struct td_uuid *id);
  int (*device_profile_delete)(struct td_store *st, const struct td_uuid *id);
  int (*device_profiles_page)(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);

  int (*device_save)(struct td_store *st, json_t *in, json_t **out);
  int (*device_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*device_by_name)(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
  int (*device_delete)(struct td_store *st, const struct td_uuid *id);
  int (*devices_page)(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                      const char *type, const struct td_page_link *pl, json_t **out);
  int (*device_credentials_save)(struct td_store *st, json_t *in, json_t **out);
  int (*device_credentials_by_device)(struct td_store *st, const struct td_uuid *device_id, json_t **out);
  int (*device_auth_by_credentials)(struct td_store *st, const char *credentials_id, struct td_device_auth *out);
  int (*device_auth_by_id)(struct td_store *st, const struct td_uuid *device_id, struct td_device_auth *out);

  int (*rule_chain_save)(struct td_store *st, json_t *chain, json_t **out);
  int (*rule_chain_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*rule_chain_root)(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
  int (*rule_chain_set_root)(struct td_store *st, const struct td_uuid *id);
  int (*rule_chain_delete)(struct td_store *st, const struct td_uuid *id);
  int (*rule_chains_page)(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
  int (*rule_chain_metadata_save)(struct td_store *st, const struct td_uuid *chain_id, json_t *metadata, json_t **out);
  int (*rule_chain_metadata_get)(struct td_store *st, const struct td_uuid *chain_id, json_t **out);

  int (*relation_save)(struct td_store *st, const struct td_entity_id *from, const struct td_entity_id *to,
                       const char *type, const char *type_group);

  int (*attributes_save)(struct td_store *st, const struct td_entity_id *e, int scope,
                         const struct td_kv *kvs, size_t n, int64_t ts);
  int (*attributes_get)(struct td_store *st, const struct td_entity_id *e, int scope,
                        const char *const *keys, size_t nkeys, struct td_arena *a,
                        struct td_attr **out, size_t *nout);
  int (*attributes_delete)(struct td_store *st, const struct td_entity_id *e, int scope,
                           const char *const *keys, size_t nkeys, size_t *ndeleted);

  int (*ts_save)(struct td_store *st, const struct td_entity_id *e, const struct td_ts_point *pts, size_t n, int64_t ttl_s);
  int (*ts_latest)(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                   struct td_arena *a, struct td_ts_point **out, size_t *nout);
  int (*ts_keys)(struct td_store *st, const struct td_entity_id *e, struct td_arena *a, const char ***out, size_t *nout);
  int (*ts_query)(struct td_store *st, const struct td_entity_id *e, const struct td_ts_query *q,
                  struct td_arena *a, struct td_ts_point **out, size_t *nout);
  int (*ts_delete)(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                   bool delete_all, int64_t start_ts, int64_t end_ts, bool delete_latest, bool rewrite_latest);
  int (*ts_count)(struct td_store *st, const struct td_entity_id *e, int64_t *count);

  /* persistent RPC */
  int (*rpc_insert)(struct td_store *st, json_t *rpc);
  int (*rpc_get)(struct td_store *st, const struct td_uuid *id, json_t **out);
  int (*rpc_set_status)(struct td_store *st, const struct td_uuid *id, const char *status, const char *response,
                        int64_t seq, bool *changed);
  int (*rpc_delete)(struct td_store *st, const struct td_uuid *id);
  int (*rpcs_page)(struct td_store *st, const struct td_uuid *device_id, const char *status,
                   const struct td_page_link *pl, json_t **out);
  int (*rpcs_pending)(struct td_store *st, const struct td_uuid *device_id, size_t max, json_t **out);
  int (*devices_active)(struct td_store *st, bool telemetry, size_t max, struct td_arena *a,
                        struct td_uuid **device_ids, struct td_uuid **tenant_ids, size_t *n);
};

/* Every backend connection starts with this. */
struct td_store {
  const struct td_store_ops *ops;
};

/* The SQLite backend (src/store/sqlite/). */
extern const struct td_store_ops td_sqlite_ops;

/* td_store_max_buckets: ThingsBoard's database.ts_max_intervals. */
#define TD_STORE_MAX_BUCKETS 700
#endif
