/* sqlite_int.h — private to the SQLite backend (the files in src/store/sqlite/).
 *
 * struct sq is one connection: the sqlite3 handle, a cache of prepared
 * statements keyed by SQL text (every SQL string the backend uses is built
 * from constants and whitelisted column names, so the set is small and
 * finite), and a per-connection cache of the timeseries/attribute key
 * dictionary. Used by one thread at a time (store.h). */
#ifndef TD_STORE_SQLITE_INT_H
#define TD_STORE_SQLITE_INT_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store_impl.h"

#define SQ_STMT_CACHE 256   /* slots; past 3/4 full, statements are prepared per use */
#define SQ_KEY_CACHE 8192   /* key dictionary entries cached per connection */

struct sq_stmt_slot {
  char *sql;          /* malloc'd; NULL = empty slot */
  sqlite3_stmt *stmt;
};

struct sq_key_slot {
  char *key;          /* malloc'd; NULL = empty slot */
  int64_t id;
};

/* Statements of the telemetry hot path, kept by index so that a write does
 * not hash SQL text. They also live in the main cache, which owns them. */
enum sq_hot { HOT_KEY_SELECT, HOT_KEY_INSERT, HOT_TS_LATEST, HOT_ATTR_SAVE, HOT__COUNT };
#define SQ_TS_ROWS_PER_STMT 16
#define SQ_ROWS_MAX 131072   /* ts_kv rows deferred per transaction; past it, written early */
#define SQ_LATEST_MAX 65536  /* ts_kv_latest values deferred per transaction; past it, written through */

/* A telemetry point deferred to the commit (telemetry.c): a ts_kv row, or the
 * newest ts_kv_latest value of (entity, key). String values are owned copies. */
struct sq_tsrow {
  uint8_t id[16];
  int64_t kid;
  int64_t ts;
  struct td_kv kv;   /* kv.key unused */
  uint32_t seq;      /* ts_kv rows: arrival order */
  bool used;         /* latest map: the slot is taken */
};

struct sq {
  struct td_store base;        /* must be first */
  sqlite3 *db;
  int schema_version;
  int tx_depth;                /* 1 inside td_store_begin */
  unsigned savepoint_seq;
  struct sq_stmt_slot stmts[SQ_STMT_CACHE];
  size_t nstmts;
  sqlite3_stmt *hot[HOT__COUNT];
  sqlite3_stmt *ts_insert[SQ_TS_ROWS_PER_STMT + 1]; /* [rows]: multi-row INSERT into ts_kv */
  struct sq_key_slot keys[SQ_KEY_CACHE];
  size_t nkeys;
  struct sq_tsrow *rows;       /* deferred ts_kv rows */
  size_t nrows, rows_cap;
  struct sq_tsrow *latest;     /* deferred ts_kv_latest: open-addressing map, latest_cap slots (power of two) */
  size_t latest_cap, nlatest;
};

static inline struct sq *sq_of(struct td_store *st) { return (struct sq *)st; }

/* ---- sqlite.c ---- */
/* sq_prep: a statement for `sql`, reset and with no bindings, from the cache
 * (prepared once with SQLITE_PREPARE_PERSISTENT). Give it back with sq_done. */
int sq_prep(struct sq *s, const char *sql, sqlite3_stmt **out);
/* sq_done: reset a statement from sq_prep (finalize it if it was not cached). */
void sq_done(struct sq *s, sqlite3_stmt *stmt);
/* sq_is_cached: the statement belongs to the cache (sq_close finalizes it). */
bool sq_is_cached(struct sq *s, sqlite3_stmt *stmt);
/* sq_hot: like sq_prep for a hot-path statement (remembered by index);
 * give it back with sq_hot_done. */
int sq_hot(struct sq *s, enum sq_hot h, const char *sql, sqlite3_stmt **out);
static inline void sq_hot_done(sqlite3_stmt *stmt) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}
/* sq_exec: run SQL without results (schema, pragmas, transactions). */
int sq_exec(struct sq *s, const char *sql);
/* sq_err: map a sqlite result code to TD_E* and log unexpected ones. */
int sq_err(struct sq *s, int rc, const char *what);
/* sq_step_done: step a statement that returns no rows; then sq_done. */
int sq_step_done(struct sq *s, sqlite3_stmt *stmt, const char *what);
/* sq_page_data: a PageData object (store.h) of the rows in data (taken) for
 * page link pl, total rows total; with rc != 0 frees data and returns rc. */
int sq_page_data(json_t *data, int64_t total, const struct td_page_link *pl, int rc, json_t **out);
/* Savepoints make a multi-statement change atomic whether or not the caller
 * has an explicit transaction open. sq_sp_end(ok=false) rolls back. */
int sq_sp_begin(struct sq *s);
int sq_sp_end(struct sq *s, bool ok);
/* sq_key_forget: drop the key cache (after a rollback may have undone inserts). */
void sq_key_forget(struct sq *s);
/* sq_bind_uuid / sq_col_uuid: ids are 16-byte BLOBs. */
int sq_bind_uuid(sqlite3_stmt *stmt, int i, const struct td_uuid *u);
void sq_col_uuid(sqlite3_stmt *stmt, int i, struct td_uuid *u);
int sq_bind_text(sqlite3_stmt *stmt, int i, const char *s); /* NULL binds NULL */

/* ---- telemetry.c ---- */
/* sq_ts_flush: write the telemetry deferred by sq_ts_save inside the open
 * transaction (ts_kv rows, then one ts_kv_latest upsert per (entity, key));
 * sq_commit calls it before COMMIT, sq_sp_begin and the telemetry reads
 * before they run. On error nothing stays pending. sq_ts_clear: drop them
 * (rollback, close). */
int sq_ts_flush(struct sq *s);
void sq_ts_clear(struct sq *s);

/* ---- migrations.c ---- */
/* sq_migrate: bring the schema to the latest version (idempotent). */
int sq_migrate(struct sq *s);
/* sq_read_schema_version: the stored version (0 when no schema yet). */
int sq_read_schema_version(struct sq *s, int *v);

/* ---- entities.c / entities_more.c ---- */
int sq_kv_get(struct td_store *st, const char *key, char **value);
int sq_kv_put(struct td_store *st, const char *key, const char *value);
int sq_tenant_save(struct td_store *st, json_t *in, json_t **out);
int sq_tenant_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_tenant_delete(struct td_store *st, const struct td_uuid *id);
int sq_tenants_page(struct td_store *st, const struct td_page_link *pl, json_t **out);
int sq_tenant_ids(struct td_store *st, struct td_uuid **ids, size_t *n);
int sq_customer_save(struct td_store *st, json_t *in, json_t **out);
int sq_customer_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_customer_delete(struct td_store *st, const struct td_uuid *id);
int sq_customers_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
int sq_customer_by_title(struct td_store *st, const struct td_uuid *tenant_id, const char *title, json_t **out);
int sq_user_save(struct td_store *st, json_t *in, json_t **out);
int sq_user_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_user_by_email(struct td_store *st, const char *email, json_t **out);
int sq_user_delete(struct td_store *st, const struct td_uuid *id);
int sq_users_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                  const char *authority, const struct td_page_link *pl, json_t **out);
int sq_user_credentials_get(struct td_store *st, const struct td_uuid *user_id, struct td_user_credentials *out);
int sq_user_credentials_put(struct td_store *st, const struct td_user_credentials *c);
int sq_user_credentials_by_activate_token(struct td_store *st, const char *token, struct td_user_credentials *out);
int sq_device_profile_save(struct td_store *st, json_t *in, json_t **out);
int sq_device_profile_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_device_profile_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
int sq_device_profile_by_provision_key(struct td_store *st, const char *key, json_t **out);
int sq_device_profile_default(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
int sq_device_profile_set_default(struct td_store *st, const struct td_uuid *id);
int sq_device_profile_delete(struct td_store *st, const struct td_uuid *id);
int sq_device_profiles_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl,
                            json_t **out);
int sq_device_save(struct td_store *st, json_t *in, json_t **out);
int sq_device_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_device_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out);
int sq_device_delete(struct td_store *st, const struct td_uuid *id);
int sq_devices_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                    const char *type, const struct td_page_link *pl, json_t **out);
int sq_device_credentials_save(struct td_store *st, json_t *in, json_t **out);
int sq_device_credentials_by_device(struct td_store *st, const struct td_uuid *device_id, json_t **out);
int sq_device_auth_by_credentials(struct td_store *st, const char *credentials_id, struct td_device_auth *out);
int sq_device_auth_by_id(struct td_store *st, const struct td_uuid *device_id, struct td_device_auth *out);
int sq_rule_chain_save(struct td_store *st, json_t *chain, json_t **out);
int sq_rule_chain_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_rule_chain_root(struct td_store *st, const struct td_uuid *tenant_id, json_t **out);
int sq_rule_chain_set_root(struct td_store *st, const struct td_uuid *id);
int sq_rule_chain_delete(struct td_store *st, const struct td_uuid *id);
int sq_rule_chains_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl, json_t **out);
int sq_rule_chain_metadata_save(struct td_store *st, const struct td_uuid *chain_id, json_t *metadata, json_t **out);
int sq_rule_chain_metadata_get(struct td_store *st, const struct td_uuid *chain_id, json_t **out);
int sq_relation_save(struct td_store *st, const struct td_entity_id *from, const struct td_entity_id *to,
                     const char *type, const char *type_group);
/* sq_delete_entity_data: attributes, timeseries and relations of one entity
 * (used by the cascades). */
int sq_delete_entity_data(struct sq *s, const struct td_uuid *id);

/* ---- telemetry.c ---- */
int sq_attributes_save(struct td_store *st, const struct td_entity_id *e, int scope, const struct td_kv *kvs, size_t n,
                       int64_t ts);
int sq_attributes_get(struct td_store *st, const struct td_entity_id *e, int scope, const char *const *keys,
                      size_t nkeys, struct td_arena *a, struct td_attr **out, size_t *nout);
int sq_attributes_delete(struct td_store *st, const struct td_entity_id *e, int scope, const char *const *keys,
                         size_t nkeys, size_t *ndeleted);
int sq_ts_save(struct td_store *st, const struct td_entity_id *e, const struct td_ts_point *pts, size_t n,
               int64_t ttl_s);
int sq_ts_latest(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                 struct td_arena *a, struct td_ts_point **out, size_t *nout);
int sq_ts_keys(struct td_store *st, const struct td_entity_id *e, struct td_arena *a, const char ***out,
               size_t *nout);
int sq_ts_query(struct td_store *st, const struct td_entity_id *e, const struct td_ts_query *q, struct td_arena *a,
                struct td_ts_point **out, size_t *nout);
int sq_ts_delete(struct td_store *st, const struct td_entity_id *e, const char *const *keys, size_t nkeys,
                 bool delete_all, int64_t start_ts, int64_t end_ts, bool delete_latest, bool rewrite_latest);
int sq_ts_count(struct td_store *st, const struct td_entity_id *e, int64_t *count);
int sq_devices_active(struct td_store *st, bool telemetry, size_t max, struct td_arena *a,
                      struct td_uuid **device_ids, struct td_uuid **tenant_ids, size_t *n);

/* ---- rpc.c (persistent RPC) ---- */
int sq_rpc_insert(struct td_store *st, json_t *rpc);
int sq_rpc_get(struct td_store *st, const struct td_uuid *id, json_t **out);
int sq_rpc_set_status(struct td_store *st, const struct td_uuid *id, const char *status, const char *response,
                      int64_t seq, bool *changed);
int sq_rpc_delete(struct td_store *st, const struct td_uuid *id);
int sq_rpcs_page(struct td_store *st, const struct td_uuid *device_id, const char *status,
                 const struct td_page_link *pl, json_t **out);
int sq_rpcs_pending(struct td_store *st, const struct td_uuid *device_id, size_t max, json_t **out);
#endif
