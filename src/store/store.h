/* store.h — the whole interface of the store: entities, attributes, timeseries.
 *
 * A struct td_store is one connection. It is used by one thread at a time:
 * the storage threads (dbpool.h for request work, writer.h for batched
 * telemetry writes) each own one. I/O loops and actors never call it; they
 * submit jobs to those threads.
 *
 * Entities travel as jansson objects in ThingsBoard's JSON shape (reference
 * §2.3-2.4: {"id":{"entityType","id"},"createdTime",...}), so the REST layer
 * passes them through; the backend maps the fields it indexes to columns and
 * keeps the rest as JSON. Functions returning json_t* give the caller a new
 * reference (json_decref it). Typed values (attributes, timeseries) are
 * struct td_kv whose strings live in the caller's arena.
 *
 * Backends: "sqlite" (embedded, WAL, src/store/sqlite/), later "postgres".
 * A backend registers a const struct td_store_ops (store_impl.h). */
#ifndef TD_STORE_STORE_H
#define TD_STORE_STORE_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/arena.h"
#include "base/entity.h"
#include "base/kv.h"

struct td_store;

struct td_store_config {
  const char *type;      /* "sqlite" */
  const char *path;      /* sqlite: database file */
  const char *url;       /* postgres: connection string */
  int cache_kb;          /* sqlite page cache (default 65536 KiB) */
  int busy_timeout_ms;   /* sqlite: wait for the write lock (default 10000) */
};

/* td_store_open: a new connection; runs schema migrations when `migrate`. */
int td_store_open(const struct td_store_config *cfg, bool migrate, struct td_store **out);
void td_store_close(struct td_store *st);
/* Explicit transactions (nesting not supported). */
int td_store_begin(struct td_store *st);
int td_store_commit(struct td_store *st);
int td_store_rollback(struct td_store *st);
/* td_store_schema_version: the migrated version (for tests/logs). */
int td_store_schema_version(struct td_store *st);

/* ---- system key/value (JWT signing key, install marks) ---- */
/* td_store_kv_get: *value is malloc'd (free it); TD_ENOTFOUND if absent. */
int td_store_kv_get(struct td_store *st, const char *key, char **value);
int td_store_kv_put(struct td_store *st, const char *key, const char *value);

/* ---- paging (reference §2.1 PageLink / PageData) ---- */
struct td_page_link {
  int page_size;              /* > 0 */
  int page;                   /* >= 0 */
  const char *text_search;    /* NULL or case-insensitive substring of name/title/email */
  const char *sort_property;  /* NULL = createdTime; else an entity field name (name, title, type, email, label, createdTime, ...) */
  bool sort_desc;
};
/* Lists return a new PageData object {"data":[...],"totalPages","totalElements","hasNext"}. */

/* ---- entity saves: common contract ----
 * save(st, in, &out): `in` is an entity JSON. Without "id" (or id null) a new
 * entity is created (id, createdTime assigned, version 1); with an id it is
 * updated if it exists (version incremented; if `in` has a "version" that
 * differs from the stored one -> TD_ECONFLICT) or TD_ENOTFOUND. Name
 * uniqueness violations -> TD_EEXIST. *out = the stored entity. */

/* tenants */
int td_store_tenant_save(struct td_store *st, json_t *in, json_t **out);
int td_store_tenant_get(struct td_store *st, const struct td_uuid *id, json_t **out);
/* td_store_tenant_delete: deletes the tenant and everything it owns. */
int td_store_tenant_delete(struct td_store *st, const struct td_uuid *id);
int td_store_tenants_page(struct td_store *st, const struct td_page_link *pl, json_t **out);
/* td_store_tenant_ids: every tenant id (for actor start-up); *ids malloc'd. */
int td_store_tenant_ids(struct td_store *st, struct td_uuid **ids, size_t *n);

/* customers (tenantId required in `in`) */
int td_store_customer_save(struct td_store *st, json_t *in, json_t **out);
int td_store_customer_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int td_store_customer_delete(struct td_store *st, const struct td_uuid *id); /* unassigns its devices, deletes its users */
int td_store_customers_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
int td_store_customer_by_title(struct td_store *st, const struct td_uuid *tenant_id, const char *title, json_t **out);

/* users. User JSON: {"id","createdTime","tenantId","customerId","email","authority","firstName","lastName","phone","additionalInfo","name"(=email)}.
 * Email is unique system-wide (TD_EEXIST). */
int td_store_user_save(struct td_store *st, json_t *in, json_t **out);
int td_store_user_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int td_store_user_by_email(struct td_store *st, const char *email, json_t **out);
int td_store_user_delete(struct td_store *st, const struct td_uuid *id);
/* td_store_users_page: filter by tenant (NULL: any), customer (NULL: any), authority (NULL: any). */
int td_store_users_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                        const char *authority, const struct td_page_link *pl, json_t **out);

struct td_user_credentials {
  struct td_uuid user_id;
  bool enabled;
  char password_hash[128];   /* bcrypt "$2a$..." or "" when not activated */
  char activate_token[64];   /* "" when none */
  char reset_token[64];
};
int td_store_user_credentials_get(struct td_store *st, const struct td_uuid *user_id, struct td_user_credentials *out);
/* td_store_user_credentials_put: insert or replace. */
int td_store_user_credentials_put(struct td_store *st, const struct td_user_credentials *c);
int td_store_user_credentials_by_activate_token(struct td_store *st, const char *token, struct td_user_credentials *out);

/* device profiles. JSON as reference §2.4 ("default": bool). */
int td_store_device_profile_save(struct td_store *st, json_t *in, json_t **out);
int td_store_device_profile_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int td_store_device_profile_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
/* td_store_device_profile_by_provision_key: the profile (any tenant) whose
 * provisionDeviceKey is key; TD_ENOTFOUND. */
int td_store_device_profile_by_provision_key(struct td_store *st, const char *key, json_t **out);
int td_store_device_profile_default(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
/* td_store_device_profile_set_default: makes it the tenant's only default. */
int td_store_device_profile_set_default(struct td_store *st, const struct td_uuid *id);
/* delete: TD_EBUSY if devices use it or it is the default. */
int td_store_device_profile_delete(struct td_store *st, const struct td_uuid *id);
int td_store_device_profiles_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);

/* devices. JSON as reference §2.4; "type" = profile name, "deviceProfileId" required on save. */
int td_store_device_save(struct td_store *st, json_t *in, json_t **out);
int td_store_device_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int td_store_device_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
int td_store_device_delete(struct td_store *st, const struct td_uuid *id); /* with credentials, attributes, timeseries */
/* td_store_devices_page: tenant's devices; customer_id non-NULL filters to that customer, type non-NULL to that profile name. */
int td_store_devices_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                          const char *type, const struct td_page_link *pl, json_t **out);

/* device credentials. JSON: {"id","createdTime","deviceId":{..},"credentialsType","credentialsId","credentialsValue","version"}.
 * credentialsId is unique system-wide (TD_EEXIST). One credentials row per device. */
int td_store_device_credentials_save(struct td_store *st, json_t *in, json_t **out);
int td_store_device_credentials_by_device(struct td_store *st, const struct td_uuid *device_id, json_t **out);

/* What a transport needs to know about an authenticated device. */
struct td_device_auth {
  struct td_uuid device_id, tenant_id, customer_id, profile_id;
  char name[256];
  char type[256];            /* profile name */
  bool gateway;              /* additionalInfo.gateway */
  char credentials_type[32]; /* ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE */
  char credentials_value[1024]; /* MQTT_BASIC JSON etc.; "" for tokens */
};
/* td_store_device_auth_by_credentials: lookup by credentialsId; TD_ENOTFOUND. */
int td_store_device_auth_by_credentials(struct td_store *st, const char *credentials_id, struct td_device_auth *out);
int td_store_device_auth_by_id(struct td_store *st, const struct td_uuid *device_id, struct td_device_auth *out);

/* rule chains. Chain JSON as reference §4.1; metadata JSON as RuleChainMetaData
 * (nodes carry ids after save). */
int td_store_rule_chain_save(struct td_store *st, json_t *chain, json_t **out);
int td_store_rule_chain_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int td_store_rule_chain_root(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
/* td_store_rule_chain_set_root: makes it the tenant's only root chain. */
int td_store_rule_chain_set_root(struct td_store *st, const struct td_uuid *id);
int td_store_rule_chain_delete(struct td_store *st, const struct td_uuid *id);
int td_store_rule_chains_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
/* td_store_rule_chain_metadata_save: replace the metadata; assigns node ids
 * to nodes without one and sets the chain's firstRuleNodeId. *out = stored metadata. */
int td_store_rule_chain_metadata_save(struct td_store *st, const struct td_uuid *chain_id, json_t *metadata, json_t **out);
int td_store_rule_chain_metadata_get(struct td_store *st, const struct td_uuid *chain_id, json_t **out);

/* relations (reference §2.5); used by gateways later. */
int td_store_relation_save(struct td_store *st, const struct td_entity_id *from, const struct td_entity_id *to,
                           const char *type, const char *type_group);

/* ---- attributes ---- */
enum td_attr_scope { TD_SCOPE_CLIENT = 1, TD_SCOPE_SERVER = 2, TD_SCOPE_SHARED = 3 };
/* td_attr_scope_parse: "CLIENT_SCOPE" etc.; 0 if unknown. */
int td_attr_scope_parse(const char *s);
const char *td_attr_scope_name(int scope);

struct td_attr {
  int scope;
  int64_t last_update_ts;
  struct td_kv kv;
};
/* td_store_attributes_save: upsert n values in one scope with last_update_ts = ts. */
int td_store_attributes_save(struct td_store *st, const struct td_entity_id *e, int scope,
                             const struct td_kv *kvs, size_t n, int64_t ts);
/* td_store_attributes_get: scope 0 = all scopes; keys NULL/nkeys 0 = all keys.
 * Results (sorted by scope, key) allocated in arena a. */
int td_store_attributes_get(struct td_store *st, const struct td_entity_id *e, int scope,
                            const char *const *keys, size_t nkeys, struct td_arena *a,
                            struct td_attr **out, size_t *nout);
/* td_store_attributes_delete: returns the number deleted in *ndeleted (may be NULL). */
int td_store_attributes_delete(struct td_store *st, const struct td_entity_id *e, int scope,
                               const char *const *keys, size_t nkeys, size_t *ndeleted);

/* ---- timeseries ---- */
struct td_ts_point {
  int64_t ts;
  struct td_kv kv;
};
enum td_agg { TD_AGG_NONE = 0, TD_AGG_MIN, TD_AGG_MAX, TD_AGG_AVG, TD_AGG_SUM, TD_AGG_COUNT };
/* td_agg_parse: "NONE", "MIN", ...; -1 if unknown. */
int td_agg_parse(const char *s);

/* td_store_ts_save: insert (replace on the same entity,key,ts) n points and
 * move the latest values forward (a latest value is only replaced by a point
 * with ts >= its ts). ttl_s 0 = keep forever. */
int td_store_ts_save(struct td_store *st, const struct td_entity_id *e, const struct td_ts_point *pts, size_t n, int64_t ttl_s);
/* td_store_ts_latest: latest values for keys (NULL/0 = all keys). Arena-allocated. */
int td_store_ts_latest(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                       struct td_arena *a, struct td_ts_point **out, size_t *nout);
/* td_store_ts_keys: the entity's timeseries keys (sorted). Arena-allocated. */
int td_store_ts_keys(struct td_store *st, const struct td_entity_id *e, struct td_arena *a, const char ***out, size_t *nout);

struct td_ts_query {
  const char *key;
  int64_t start_ts, end_ts;  /* [start, end) as ThingsBoard: start inclusive, end exclusive for buckets; raw: start <= ts <= end... see store docs */
  int64_t interval;          /* bucket width for agg != NONE (ms); <= 0 means one bucket over the range */
  int limit;                 /* raw: max points (default 100); agg: max buckets */
  int agg;                   /* enum td_agg */
  bool order_desc;           /* raw: ts order */
};
/* td_store_ts_query: raw points or aggregated buckets, computed by the database.
 * Aggregated points have ts = bucket midpoint; AVG/SUM of longs stay LONG for
 * SUM/MIN/MAX of only-long data and become DOUBLE for AVG, as ThingsBoard;
 * COUNT is LONG. Arena-allocated. */
int td_store_ts_query(struct td_store *st, const struct td_entity_id *e, const struct td_ts_query *q,
                      struct td_arena *a, struct td_ts_point **out, size_t *nout);
/* td_store_ts_delete: delete points of keys in [start_ts, end_ts] (all data if
 * delete_all); when delete_latest, drop or (rewrite_latest) recompute the latest value. */
int td_store_ts_delete(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                       bool delete_all, int64_t start_ts, int64_t end_ts, bool delete_latest, bool rewrite_latest);
/* td_store_devices_active: up to max devices whose stored activity state says
 * active (the SERVER_SCOPE attribute `active`, or with telemetry its latest
 * timeseries value), with their tenants; arrays in arena a. For the device
 * state service after a restart. */
int td_store_devices_active(struct td_store *st, bool telemetry, size_t max, struct td_arena *a,
                            struct td_uuid **device_ids, struct td_uuid **tenant_ids, size_t *n);
/* td_store_ts_count: number of stored points of an entity (all keys) — for tests and benchmarks. */
int td_store_ts_count(struct td_store *st, const struct td_entity_id *e, int64_t *count);

/* ---- persistent RPC (reference §2.7) ----
 * Rpc JSON: {"id":{"entityType":"RPC","id"},"createdTime","tenantId":{..},
 * "deviceId":{..},"expirationTime","request":{ThingsBoard's ToDeviceRpcRequest},
 * "response":<JSON or null>,"status","additionalInfo":<JSON or null>};
 * status is QUEUED, SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED or FAILED.
 * Every row has a status sequence number (0 when inserted): a status change
 * carries the next one and is ignored unless it is higher than the stored
 * one, so changes that overtake each other on different storage threads
 * cannot move a status backwards. */
/* td_store_rpc_insert: a new row from Rpc JSON (id, createdTime, tenantId,
 * deviceId, expirationTime, request, status required). TD_EEXIST, TD_EINVAL. */
int td_store_rpc_insert(struct td_store *st, json_t *rpc);
/* td_store_rpc_get: the Rpc JSON; TD_ENOTFOUND. */
int td_store_rpc_get(struct td_store *st, const struct td_uuid *id, json_t **out);
/* td_store_rpc_set_status: status (and response, JSON text, when non-NULL)
 * if seq is above the stored sequence; *changed (may be NULL) says whether
 * it applied. A missing row is not an error (*changed false). */
int td_store_rpc_set_status(struct td_store *st, const struct td_uuid *id, const char *status, const char *response,
                            int64_t seq, bool *changed);
/* td_store_rpc_delete: TD_ENOTFOUND if absent. */
int td_store_rpc_delete(struct td_store *st, const struct td_uuid *id);
/* td_store_rpcs_page: a device's rows as PageData; status NULL = any;
 * text_search matches inside the request JSON; sort by createdTime (default),
 * expirationTime or status. */
int td_store_rpcs_page(struct td_store *st, const struct td_uuid *device_id, const char *status,
                       const struct td_page_link *pl, json_t **out);
/* td_store_rpcs_pending: a JSON array of the device's rows still to be sent
 * (QUEUED, SENT, TIMEOUT), oldest first, at most max; each Rpc JSON also has
 * "statusSeq" (its sequence number). */
int td_store_rpcs_pending(struct td_store *st, const struct td_uuid *device_id, size_t max, json_t **out);
#endif
