/* tenants.c — system kv, tenants, customers, users and user credentials of the
 * SQLite backend, with the delete cascades of tenants and customers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "store/sqlite/entity_int.h"

/* ---- system kv ---- */

int sq_kv_get(struct td_store *st, const char *key, char **value) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, "SELECT value FROM system_kv WHERE key=?1", &stmt);
  if (rc) return rc;
  sq_bind_text(stmt, 1, key);
  int step = sqlite3_step(stmt);
  if (step == SQLITE_ROW) {
    *value = strdup((const char *)sqlite3_column_text(stmt, 0));
    rc = *value ? 0 : TD_ENOMEM;
  } else {
    rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "kv get");
  }
  sq_done(s, stmt);
  return rc;
}

int sq_kv_put(struct td_store *st, const char *key, const char *value) {
  if (!key || !value) return TD_EINVAL;
  struct arg a[] = {arg_text(key), arg_text(value)};
  return ent_exec(sq_of(st), "INSERT OR REPLACE INTO system_kv(key,value) VALUES(?1,?2)", a, 2);
}

/* ---- tenants ---- */

static const struct col tenant_cols[] = {
    {"title", "title", K_TEXT, 0, true, false, true},
    {"tenant_profile_id", "tenantProfileId", K_ID, TD_ENTITY_TENANT_PROFILE, false, false, false},
};
static const struct edesc tenant_desc = {"tenant", TD_ENTITY_TENANT, "title", "title", tenant_cols, 2, NULL};

int sq_tenant_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = ent_save(s, &tenant_desc, in, NULL, &id);
  return rc ? rc : ent_get(s, &tenant_desc, &id, out);
}

int sq_tenant_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &tenant_desc, id, out);
}

int sq_tenants_page(struct td_store *st, const struct td_page_link *pl, json_t **out) {
  return ent_page(sq_of(st), &tenant_desc, NULL, 0, pl, out);
}

int sq_tenant_ids(struct td_store *st, struct td_uuid **ids, size_t *n) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt = NULL;
  size_t cap = 16, len = 0;
  struct td_uuid *v = malloc(cap * sizeof *v);
  if (!v) return TD_ENOMEM;
  int rc = sq_prep(s, "SELECT id FROM tenant ORDER BY created_time", &stmt);
  while (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) {
      rc = sq_err(s, step, "tenant ids");
      break;
    }
    if (len == cap) {
      struct td_uuid *nv = realloc(v, cap * 2 * sizeof *v);
      if (!nv) {
        rc = TD_ENOMEM;
        break;
      }
      v = nv;
      cap *= 2;
    }
    sq_col_uuid(stmt, 0, &v[len++]);
  }
  if (stmt) sq_done(s, stmt);
  if (rc) {
    free(v);
    return rc;
  }
  *ids = v;
  *n = len;
  return 0;
}

/* Everything the tenant owns, children before parents. ?1 = tenant id. */
static const char *const tenant_cascade[] = {
    "DELETE FROM ts_kv WHERE entity_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM ts_kv_latest WHERE entity_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM attribute_kv WHERE entity_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM relation WHERE from_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM relation WHERE to_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM device_credentials WHERE device_id IN (SELECT id FROM device WHERE tenant_id=?1)",
    "DELETE FROM device WHERE tenant_id=?1",
    "DELETE FROM rpc WHERE tenant_id=?1",
    "DELETE FROM device_profile WHERE tenant_id=?1",
    "DELETE FROM ts_kv WHERE entity_id IN (SELECT id FROM customer WHERE tenant_id=?1)",
    "DELETE FROM ts_kv_latest WHERE entity_id IN (SELECT id FROM customer WHERE tenant_id=?1)",
    "DELETE FROM attribute_kv WHERE entity_id IN (SELECT id FROM customer WHERE tenant_id=?1)",
    "DELETE FROM customer WHERE tenant_id=?1",
    "DELETE FROM attribute_kv WHERE entity_id IN (SELECT id FROM tb_user WHERE tenant_id=?1)",
    "DELETE FROM user_credentials WHERE user_id IN (SELECT id FROM tb_user WHERE tenant_id=?1)",
    "DELETE FROM tb_user WHERE tenant_id=?1",
    "DELETE FROM rule_chain WHERE tenant_id=?1",
    "DELETE FROM ts_kv WHERE entity_id=?1",
    "DELETE FROM ts_kv_latest WHERE entity_id=?1",
    "DELETE FROM attribute_kv WHERE entity_id=?1",
    "DELETE FROM relation WHERE from_id=?1 OR to_id=?1",
};

/* Run a cascade list and finally "DELETE FROM <table> WHERE id=?1" atomically;
 * TD_ENOTFOUND when the row did not exist. */
static int cascade_delete(struct sq *s, const char *table, const char *const *sqls, size_t n,
                          const struct td_uuid *id) {
  struct arg a = arg_uuid(id);
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  for (size_t i = 0; i < n && rc == 0; i++) rc = ent_exec(s, sqls[i], &a, 1);
  if (rc == 0) {
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id=?1", table);
    rc = ent_exec(s, sql, &a, 1);
    if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  }
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

int sq_tenant_delete(struct td_store *st, const struct td_uuid *id) {
  return cascade_delete(sq_of(st), "tenant", tenant_cascade, sizeof tenant_cascade / sizeof *tenant_cascade, id);
}

/* ---- customers ---- */

static const struct col customer_cols[] = {
    {"tenant_id", "tenantId", K_ID, TD_ENTITY_TENANT, true, false, false},
    {"title", "title", K_TEXT, 0, true, false, true},
};
static const struct edesc customer_desc = {"customer", TD_ENTITY_CUSTOMER, "title", "title", customer_cols, 2, NULL};

int sq_customer_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = ent_save(s, &customer_desc, in, NULL, &id);
  return rc ? rc : ent_get(s, &customer_desc, &id, out);
}

int sq_customer_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &customer_desc, id, out);
}

int sq_customers_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl,
                      json_t **out) {
  struct filt f = {"tenant_id", arg_uuid(tenant_id)};
  return ent_page(sq_of(st), &customer_desc, &f, 1, pl, out);
}

int sq_customer_by_title(struct td_store *st, const struct td_uuid *tenant_id, const char *title, json_t **out) {
  struct arg a[] = {arg_uuid(tenant_id), arg_text(title)};
  return ent_get_by(sq_of(st), &customer_desc, "tenant_id=?1 AND title=?2", a, 2, out);
}

/* ?1 = customer id; ?2 = ThingsBoard's null id (what "unassigned" is stored as). */
static const char *const customer_cascade[] = {
    "UPDATE device SET customer_id=?2 WHERE customer_id=?1",
    "DELETE FROM attribute_kv WHERE entity_id IN (SELECT id FROM tb_user WHERE customer_id=?1)",
    "DELETE FROM user_credentials WHERE user_id IN (SELECT id FROM tb_user WHERE customer_id=?1)",
    "DELETE FROM tb_user WHERE customer_id=?1",
    "DELETE FROM ts_kv WHERE entity_id=?1",
    "DELETE FROM ts_kv_latest WHERE entity_id=?1",
    "DELETE FROM attribute_kv WHERE entity_id=?1",
    "DELETE FROM relation WHERE from_id=?1 OR to_id=?1",
    "DELETE FROM customer WHERE id=?1",
};

int sq_customer_delete(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  struct arg a[] = {arg_uuid(id), arg_uuid(td_uuid_null())};
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  size_t n = sizeof customer_cascade / sizeof *customer_cascade;
  for (size_t i = 0; i < n && rc == 0; i++) {
    /* Statements that do not use ?2 must not be given it. */
    rc = ent_exec(s, customer_cascade[i], a, i == 0 ? 2 : 1);
    if (rc == 0 && i == n - 1 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  }
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

/* ---- users ---- */

static const struct col user_cols[] = {
    {"tenant_id", "tenantId", K_ID, TD_ENTITY_TENANT, false, true, false},
    {"customer_id", "customerId", K_ID, TD_ENTITY_CUSTOMER, false, true, false},
    {"email", "email", K_TEXT, 0, true, false, true},
    {"authority", "authority", K_TEXT, 0, false, false, true},
    {"first_name", "firstName", K_TEXT, 0, false, false, true},
    {"last_name", "lastName", K_TEXT, 0, false, false, true},
};

static void user_fixup(json_t *o) {
  static const char *const fields[] = {"phone", "additionalInfo"};
  for (size_t i = 0; i < 2; i++)
    if (!json_object_get(o, fields[i])) json_object_set_new(o, fields[i], json_null());
}

static const struct edesc user_desc = {"tb_user", TD_ENTITY_USER, "email", "email", user_cols, 6, user_fixup};

int sq_user_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = ent_save(s, &user_desc, in, NULL, &id);
  return rc ? rc : ent_get(s, &user_desc, &id, out);
}

int sq_user_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &user_desc, id, out);
}

int sq_user_by_email(struct td_store *st, const char *email, json_t **out) {
  struct arg a = arg_text(email);
  return ent_get_by(sq_of(st), &user_desc, "email=?1", &a, 1, out);
}

int sq_user_delete(struct td_store *st, const struct td_uuid *id) {
  static const char *const cascade[] = {
      "DELETE FROM user_credentials WHERE user_id=?1",
      "DELETE FROM attribute_kv WHERE entity_id=?1",
      "DELETE FROM relation WHERE from_id=?1 OR to_id=?1",
  };
  return cascade_delete(sq_of(st), "tb_user", cascade, 3, id);
}

int sq_users_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                  const char *authority, const struct td_page_link *pl, json_t **out) {
  struct filt f[3];
  int n = 0;
  if (tenant_id) f[n++] = (struct filt){"tenant_id", arg_uuid(tenant_id)};
  if (customer_id) f[n++] = (struct filt){"customer_id", arg_uuid(customer_id)};
  if (authority) f[n++] = (struct filt){"authority", arg_text(authority)};
  return ent_page(sq_of(st), &user_desc, f, n, pl, out);
}

/* ---- user credentials ---- */

static void copy_col(sqlite3_stmt *stmt, int i, char *dst, size_t cap) {
  const char *v = (const char *)sqlite3_column_text(stmt, i);
  snprintf(dst, cap, "%s", v ? v : "");
}

static int creds_query(struct sq *s, const char *sql, const struct arg *a, struct td_user_credentials *out) {
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  rc = ent_bind(stmt, a, 1);
  if (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
      memset(out, 0, sizeof *out);
      sq_col_uuid(stmt, 0, &out->user_id);
      out->enabled = sqlite3_column_int(stmt, 1) != 0;
      copy_col(stmt, 2, out->password_hash, sizeof out->password_hash);
      copy_col(stmt, 3, out->activate_token, sizeof out->activate_token);
      copy_col(stmt, 4, out->reset_token, sizeof out->reset_token);
    } else {
      rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "user credentials");
    }
  }
  sq_done(s, stmt);
  return rc;
}

int sq_user_credentials_get(struct td_store *st, const struct td_uuid *user_id, struct td_user_credentials *out) {
  struct arg a = arg_uuid(user_id);
  return creds_query(sq_of(st),
                     "SELECT user_id,enabled,password_hash,activate_token,reset_token FROM user_credentials "
                     "WHERE user_id=?1",
                     &a, out);
}

int sq_user_credentials_by_activate_token(struct td_store *st, const char *token, struct td_user_credentials *out) {
  if (!token || !*token) return TD_ENOTFOUND;
  struct arg a = arg_text(token);
  return creds_query(sq_of(st),
                     "SELECT user_id,enabled,password_hash,activate_token,reset_token FROM user_credentials "
                     "WHERE activate_token=?1",
                     &a, out);
}

int sq_user_credentials_put(struct td_store *st, const struct td_user_credentials *c) {
  /* Empty strings are stored as NULL so that token lookups never match "". */
  struct arg a[] = {arg_uuid(&c->user_id), arg_int(c->enabled),
                    arg_text(c->password_hash[0] ? c->password_hash : NULL),
                    arg_text(c->activate_token[0] ? c->activate_token : NULL),
                    arg_text(c->reset_token[0] ? c->reset_token : NULL)};
  return ent_exec(sq_of(st),
                  "INSERT OR REPLACE INTO user_credentials(user_id,enabled,password_hash,activate_token,reset_token) "
                  "VALUES(?1,?2,?3,?4,?5)",
                  a, 5);
}
