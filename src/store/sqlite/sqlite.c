/* sqlite.c — the SQLite backend's connection: open, pragmas, the prepared
 * statement cache, transactions and savepoints, and its ops table.
 *
 * Durability: WAL with synchronous=NORMAL. A commit is then durable against
 * process crashes but the last commits may be lost on power failure; that is
 * right here because telemetry reaches the store through the durable queue,
 * which replays unacknowledged messages, so the queue (not the store) gives
 * the durability guarantee and commits stay cheap. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "store/sqlite/sqlite_int.h"

int sq_err(struct sq *s, int rc, const char *what) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
      return 0;
    case SQLITE_CONSTRAINT:
      return TD_EEXIST;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      td_log(TD_LOG_WARN, "store", "action=\"%s\" err=TD_EBUSY detail=\"%s\"", what, sqlite3_errmsg(s->db));
      return TD_EBUSY;
    case SQLITE_NOMEM:
      return TD_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      td_log(TD_LOG_ERROR, "store", "action=\"%s\" err=TD_ECORRUPT detail=\"%s\"", what, sqlite3_errmsg(s->db));
      return TD_ECORRUPT;
    default:
      td_log(TD_LOG_ERROR, "store", "action=\"%s\" rc=%d err=TD_EIO detail=\"%s\"", what, rc, sqlite3_errmsg(s->db));
      return TD_EIO;
  }
}

static size_t stmt_slot(struct sq *s, const char *sql) {
  size_t i = td_hash32(sql, strlen(sql)) % SQ_STMT_CACHE;
  while (s->stmts[i].sql && strcmp(s->stmts[i].sql, sql) != 0) i = (i + 1) % SQ_STMT_CACHE;
  return i;
}

int sq_prep(struct sq *s, const char *sql, sqlite3_stmt **out) {
  size_t i = stmt_slot(s, sql);
  if (s->stmts[i].sql) {
    *out = s->stmts[i].stmt;
    return 0;
  }
  bool cache = s->nstmts < SQ_STMT_CACHE * 3 / 4;
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v3(s->db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, NULL);
  if (rc != SQLITE_OK) {
    td_log(TD_LOG_ERROR, "store", "action=prepare err=\"%s\"", sqlite3_errmsg(s->db));
    return sq_err(s, rc, "prepare");
  }
  if (cache) {
    char *copy = strdup(sql);
    if (copy) {
      s->stmts[i].sql = copy;
      s->stmts[i].stmt = stmt;
      s->nstmts++;
    }
  }
  *out = stmt;
  return 0;
}

bool sq_is_cached(struct sq *s, sqlite3_stmt *stmt) {
  return s->stmts[stmt_slot(s, sqlite3_sql(stmt))].stmt == stmt;
}

int sq_hot(struct sq *s, enum sq_hot h, const char *sql, sqlite3_stmt **out) {
  if (s->hot[h]) {
    *out = s->hot[h];
    return 0;
  }
  int rc = sq_prep(s, sql, out);
  /* Only a cached statement may be remembered (the cache finalizes it). */
  if (rc == 0 && sq_is_cached(s, *out)) s->hot[h] = *out;
  return rc;
}

void sq_done(struct sq *s, sqlite3_stmt *stmt) {
  if (!stmt) return;
  const char *sql = sqlite3_sql(stmt);
  size_t i = stmt_slot(s, sql);
  if (s->stmts[i].stmt == stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  } else {
    sqlite3_finalize(stmt);
  }
}

int sq_exec(struct sq *s, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    td_log(TD_LOG_ERROR, "store", "action=exec err=\"%s\"", msg ? msg : "?");
    sqlite3_free(msg);
    return sq_err(s, rc, "exec");
  }
  return 0;
}

int sq_step_done(struct sq *s, sqlite3_stmt *stmt, const char *what) {
  int rc = sqlite3_step(stmt);
  int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sq_err(s, rc, what);
  sq_done(s, stmt);
  return err;
}

int sq_bind_uuid(sqlite3_stmt *stmt, int i, const struct td_uuid *u) {
  return sqlite3_bind_blob(stmt, i, u->b, 16, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : TD_ENOMEM;
}

void sq_col_uuid(sqlite3_stmt *stmt, int i, struct td_uuid *u) {
  const void *p = sqlite3_column_blob(stmt, i);
  if (p && sqlite3_column_bytes(stmt, i) == 16)
    memcpy(u->b, p, 16);
  else
    memset(u->b, 0, 16);
}

int sq_bind_text(sqlite3_stmt *stmt, int i, const char *str) {
  int rc = str ? sqlite3_bind_text(stmt, i, str, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(stmt, i);
  return rc == SQLITE_OK ? 0 : TD_ENOMEM;
}

void sq_key_forget(struct sq *s) {
  for (size_t i = 0; i < SQ_KEY_CACHE; i++) {
    free(s->keys[i].key);
    s->keys[i].key = NULL;
  }
  s->nkeys = 0;
}

/* Outside an explicit transaction a savepoint would start a DEFERRED one,
 * which fails with SQLITE_BUSY (no retry) if it reads and then must upgrade
 * to write after another connection committed. So the outermost level is a
 * BEGIN IMMEDIATE, which waits for the write lock under busy_timeout. */
int sq_sp_begin(struct sq *s) {
  /* Telemetry deferred to the commit goes in first, so that a change made
   * here (e.g. deleting an entity's data) applies after it, as it did when
   * every point was written at once. */
  int rc = sq_ts_flush(s);
  if (rc) return rc;
  if (s->tx_depth == 0 && s->savepoint_seq == 0)
    rc = sq_exec(s, "BEGIN IMMEDIATE");
  else
    rc = sq_exec(s, "SAVEPOINT td_sp");
  if (rc == 0) s->savepoint_seq++;
  return rc;
}

int sq_sp_end(struct sq *s, bool ok) {
  int rc;
  s->savepoint_seq--;
  bool outer = s->tx_depth == 0 && s->savepoint_seq == 0;
  if (ok) {
    rc = sq_exec(s, outer ? "COMMIT" : "RELEASE td_sp");
    if (rc != 0) {
      sq_exec(s, outer ? "ROLLBACK" : "ROLLBACK TO td_sp; RELEASE td_sp");
      sq_key_forget(s);
    }
    return rc;
  }
  rc = sq_exec(s, outer ? "ROLLBACK" : "ROLLBACK TO td_sp; RELEASE td_sp");
  sq_key_forget(s);
  return rc;
}

static int sq_begin(struct td_store *st) {
  struct sq *s = sq_of(st);
  if (s->tx_depth) return TD_EINVAL; /* nesting not supported (store.h) */
  int rc = sq_exec(s, "BEGIN IMMEDIATE");
  if (rc == 0) s->tx_depth = 1;
  return rc;
}

static int sq_commit(struct td_store *st) {
  struct sq *s = sq_of(st);
  if (!s->tx_depth) return TD_EINVAL;
  int rc = sq_ts_flush(s);
  if (rc == 0) rc = sq_exec(s, "COMMIT");
  if (rc != 0) {
    sq_exec(s, "ROLLBACK");
    sq_key_forget(s);
  }
  sq_ts_clear(s);
  s->tx_depth = 0;
  return rc;
}

static int sq_rollback(struct td_store *st) {
  struct sq *s = sq_of(st);
  if (!s->tx_depth) return TD_EINVAL;
  s->tx_depth = 0;
  /* Keys inserted into the dictionary in this transaction are gone again,
   * and so is its deferred telemetry. */
  sq_key_forget(s);
  sq_ts_clear(s);
  return sq_exec(s, "ROLLBACK");
}

static int sq_schema_version(struct td_store *st) { return sq_of(st)->schema_version; }

static void sq_close(struct td_store *st) {
  struct sq *s = sq_of(st);
  if (s->tx_depth) sq_exec(s, "ROLLBACK");
  for (size_t i = 0; i < SQ_STMT_CACHE; i++) {
    if (s->stmts[i].sql) {
      sqlite3_finalize(s->stmts[i].stmt);
      free(s->stmts[i].sql);
    }
  }
  sq_key_forget(s);
  sq_ts_clear(s);
  free(s->rows);
  free(s->latest);
  sqlite3_close_v2(s->db);
  free(s);
}

static void sq_global_init(void) {
  /* Memory statistics take a global mutex on every allocation; we never read
   * them. Must precede sqlite3_initialize (fails harmlessly afterwards). */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int sq_open(const struct td_store_config *cfg, bool migrate, struct td_store **out) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  if (!cfg->path || !*cfg->path) return TD_EINVAL;
  pthread_once(&once, sq_global_init);
  struct sq *s = calloc(1, sizeof *s);
  if (!s) return TD_ENOMEM;
  s->base.ops = &td_sqlite_ops;
  /* NOMUTEX: a connection is used by one thread at a time (store.h). */
  int rc = sqlite3_open_v2(cfg->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    td_log(TD_LOG_ERROR, "store", "action=open path=\"%s\" err=\"%s\"", cfg->path,
           s->db ? sqlite3_errmsg(s->db) : "nomem");
    sqlite3_close_v2(s->db);
    free(s);
    return rc == SQLITE_NOMEM ? TD_ENOMEM : TD_EIO;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, cfg->busy_timeout_ms > 0 ? cfg->busy_timeout_ms : 10000);
  char pragmas[512];
  snprintf(pragmas, sizeof pragmas,
           /* 1 KiB pages (new databases only; must precede journal_mode=WAL):
            * with 1000 devices interleaved a telemetry commit dirties about
            * one ts_kv leaf page per (device, key), and every dirty page goes
            * to the WAL and again to the database at the checkpoint, so bytes
            * written scale with the page size: 4 KiB -> 1 KiB halved them
            * (708 -> 343 MB for 1.2M rows in batches of 60000) at the same
            * CPU, and the queue's fdatasync stalls behind those writes got
            * rarer (>= 50 ms: 11 -> 2 per bench run). */
           "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
           "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d;"
           /* Checkpoint every ~40 MB of WAL instead of 4 MB: each checkpoint
            * costs two fsyncs and rewrites hot pages once per checkpoint. */
           "PRAGMA wal_autocheckpoint=10000; PRAGMA journal_size_limit=67108864;",
           cfg->cache_kb > 0 ? cfg->cache_kb : 65536);
  int err = sq_exec(s, pragmas);
  if (err == 0 && migrate) err = sq_migrate(s);
  if (err == 0) err = sq_read_schema_version(s, &s->schema_version);
  if (err != 0) {
    sq_close(&s->base);
    return err;
  }
  *out = &s->base;
  return 0;
}

const struct td_store_ops td_sqlite_ops = {
    .version = TD_STORE_OPS_VERSION,
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .schema_version = sq_schema_version,
    .kv_get = sq_kv_get,
    .kv_put = sq_kv_put,
    .tenant_save = sq_tenant_save,
    .tenant_get = sq_tenant_get,
    .tenant_delete = sq_tenant_delete,
    .tenants_page = sq_tenants_page,
    .tenant_ids = sq_tenant_ids,
    .customer_save = sq_customer_save,
    .customer_get = sq_customer_get,
    .customer_delete = sq_customer_delete,
    .customers_page = sq_customers_page,
    .customer_by_title = sq_customer_by_title,
    .user_save = sq_user_save,
    .user_get = sq_user_get,
    .user_by_email = sq_user_by_email,
    .user_delete = sq_user_delete,
    .users_page = sq_users_page,
    .user_credentials_get = sq_user_credentials_get,
    .user_credentials_put = sq_user_credentials_put,
    .user_credentials_by_activate_token = sq_user_credentials_by_activate_token,
    .device_profile_save = sq_device_profile_save,
    .device_profile_get = sq_device_profile_get,
    .device_profile_by_name = sq_device_profile_by_name,
    .device_profile_default = sq_device_profile_default,
    .device_profile_by_provision_key = sq_device_profile_by_provision_key,
    .device_profile_set_default = sq_device_profile_set_default,
    .device_profile_delete = sq_device_profile_delete,
    .device_profiles_page = sq_device_profiles_page,
    .device_save = sq_device_save,
    .device_get = sq_device_get,
    .device_by_name = sq_device_by_name,
    .device_delete = sq_device_delete,
    .devices_page = sq_devices_page,
    .device_credentials_save = sq_device_credentials_save,
    .device_credentials_by_device = sq_device_credentials_by_device,
    .device_auth_by_credentials = sq_device_auth_by_credentials,
    .device_auth_by_id = sq_device_auth_by_id,
    .rule_chain_save = sq_rule_chain_save,
    .rule_chain_get = sq_rule_chain_get,
    .rule_chain_root = sq_rule_chain_root,
    .rule_chain_set_root = sq_rule_chain_set_root,
    .rule_chain_delete = sq_rule_chain_delete,
    .rule_chains_page = sq_rule_chains_page,
    .rule_chain_metadata_save = sq_rule_chain_metadata_save,
    .rule_chain_metadata_get = sq_rule_chain_metadata_get,
    .relation_save = sq_relation_save,
    .attributes_save = sq_attributes_save,
    .attributes_get = sq_attributes_get,
    .attributes_delete = sq_attributes_delete,
    .ts_save = sq_ts_save,
    .ts_latest = sq_ts_latest,
    .ts_keys = sq_ts_keys,
    .ts_query = sq_ts_query,
    .ts_delete = sq_ts_delete,
    .ts_count = sq_ts_count,
    .devices_active = sq_devices_active,
    .rpc_insert = sq_rpc_insert,
    .rpc_get = sq_rpc_get,
    .rpc_set_status = sq_rpc_set_status,
    .rpc_delete = sq_rpc_delete,
    .rpcs_page = sq_rpcs_page,
    .rpcs_pending = sq_rpcs_pending,
};
