/* migrations.c — versioned schema migrations for the SQLite backend.
 *
 * schema_version holds one row per applied migration. sq_migrate applies, in
 * one immediate transaction, every migration above the stored version, so
 * opening twice (or from several processes) is harmless. Migrations are only
 * ever appended. Entity ids are 16-byte BLOBs; the columns a query filters or
 * sorts on are real columns, the rest of an entity's JSON is in `data`. */
#include <stdio.h>

#include "base/err.h"
#include "base/log.h"
#include "store/sqlite/sqlite_int.h"

static const char *const migrations[] = {
    /* 1: everything */
    "CREATE TABLE system_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"

    "CREATE TABLE tenant (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " title TEXT NOT NULL, tenant_profile_id BLOB, data TEXT);"
    "CREATE INDEX tenant_title ON tenant(title);"

    "CREATE TABLE customer (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " tenant_id BLOB NOT NULL, title TEXT NOT NULL, data TEXT);"
    "CREATE UNIQUE INDEX customer_title ON customer(tenant_id, title);"

    "CREATE TABLE tb_user (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " tenant_id BLOB, customer_id BLOB, email TEXT NOT NULL COLLATE NOCASE, authority TEXT,"
    " first_name TEXT, last_name TEXT, data TEXT);"
    "CREATE UNIQUE INDEX tb_user_email ON tb_user(email);"
    "CREATE INDEX tb_user_tenant ON tb_user(tenant_id, customer_id);"
    "CREATE INDEX tb_user_customer ON tb_user(customer_id);"

    "CREATE TABLE user_credentials (user_id BLOB PRIMARY KEY, enabled INTEGER NOT NULL, password_hash TEXT,"
    " activate_token TEXT, reset_token TEXT);"
    "CREATE INDEX user_credentials_activate ON user_credentials(activate_token);"

    "CREATE TABLE device_profile (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " tenant_id BLOB NOT NULL, name TEXT NOT NULL, type TEXT, is_default INTEGER NOT NULL DEFAULT 0, data TEXT);"
    "CREATE UNIQUE INDEX device_profile_name ON device_profile(tenant_id, name);"

    "CREATE TABLE device (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " tenant_id BLOB NOT NULL, customer_id BLOB, name TEXT NOT NULL, type TEXT, label TEXT,"
    " device_profile_id BLOB, data TEXT);"
    "CREATE UNIQUE INDEX device_name ON device(tenant_id, name);"
    "CREATE INDEX device_customer ON device(customer_id);"
    "CREATE INDEX device_profile_ref ON device(device_profile_id);"

    "CREATE TABLE device_credentials (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL,"
    " version INTEGER NOT NULL, device_id BLOB NOT NULL, credentials_type TEXT, credentials_id TEXT NOT NULL,"
    " credentials_value TEXT, data TEXT);"
    "CREATE UNIQUE INDEX device_credentials_device ON device_credentials(device_id);"
    "CREATE UNIQUE INDEX device_credentials_cid ON device_credentials(credentials_id);"

    "CREATE TABLE rule_chain (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, version INTEGER NOT NULL,"
    " tenant_id BLOB NOT NULL, name TEXT NOT NULL, type TEXT, is_root INTEGER NOT NULL DEFAULT 0,"
    " first_rule_node_id BLOB, data TEXT, metadata TEXT);"
    "CREATE INDEX rule_chain_tenant ON rule_chain(tenant_id);"

    "CREATE TABLE relation (from_id BLOB NOT NULL, from_type TEXT NOT NULL, to_id BLOB NOT NULL,"
    " to_type TEXT NOT NULL, type TEXT NOT NULL, type_group TEXT NOT NULL, additional_info TEXT,"
    " PRIMARY KEY (from_id, type_group, type, to_id)) WITHOUT ROWID;"
    "CREATE INDEX relation_to ON relation(to_id);"

    "CREATE TABLE key_dictionary (key_id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);"

    "CREATE TABLE attribute_kv (entity_id BLOB NOT NULL, scope INTEGER NOT NULL, key INTEGER NOT NULL,"
    " bool_v INTEGER, long_v INTEGER, dbl_v REAL, str_v TEXT, json_v TEXT, last_update_ts INTEGER NOT NULL,"
    " PRIMARY KEY (entity_id, scope, key)) WITHOUT ROWID;"

    "CREATE TABLE ts_kv (entity_id BLOB NOT NULL, key INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " bool_v INTEGER, long_v INTEGER, dbl_v REAL, str_v TEXT, json_v TEXT,"
    " PRIMARY KEY (entity_id, key, ts)) WITHOUT ROWID;"

    "CREATE TABLE ts_kv_latest (entity_id BLOB NOT NULL, key INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " bool_v INTEGER, long_v INTEGER, dbl_v REAL, str_v TEXT, json_v TEXT,"
    " PRIMARY KEY (entity_id, key)) WITHOUT ROWID;",
    /* persistent RPC (reference §2.7; src/store/sqlite/rpc.c) */
    "CREATE TABLE rpc (id BLOB PRIMARY KEY, created_time INTEGER NOT NULL, tenant_id BLOB NOT NULL,"
    " device_id BLOB NOT NULL, expiration_time INTEGER NOT NULL, status TEXT NOT NULL,"
    " status_seq INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, response TEXT, additional_info TEXT);"
    "CREATE INDEX rpc_device ON rpc(device_id, created_time);",
};

#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int sq_read_schema_version(struct sq *s, int *v) {
  sqlite3_stmt *stmt;
  *v = 0;
  /* Not cached: the table may not exist yet (then the prepare fails). */
  int rc = sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(version),0) FROM schema_version", -1, &stmt, NULL);
  if (rc != SQLITE_OK) return 0;
  if (sqlite3_step(stmt) == SQLITE_ROW) *v = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  return 0;
}

int sq_migrate(struct sq *s) {
  int rc = sq_exec(s, "BEGIN IMMEDIATE");
  if (rc) return rc;
  rc = sq_exec(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ts INTEGER)");
  int v = 0;
  if (rc == 0) rc = sq_read_schema_version(s, &v);
  for (int i = v; rc == 0 && i < NMIGRATIONS; i++) {
    rc = sq_exec(s, migrations[i]);
    if (rc == 0) {
      char sql[128];
      snprintf(sql, sizeof sql,
               "INSERT INTO schema_version(version, applied_ts) VALUES(%d, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
               i + 1);
      rc = sq_exec(s, sql);
    }
    if (rc == 0) td_log(TD_LOG_INFO, "store", "action=migrate version=%d", i + 1);
  }
  if (rc == 0) return sq_exec(s, "COMMIT");
  sq_exec(s, "ROLLBACK");
  return rc;
}
