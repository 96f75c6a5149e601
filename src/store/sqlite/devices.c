/* devices.c — device profiles, devices, device credentials and the transport
 * credential lookups of the SQLite backend. */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "store/sqlite/entity_int.h"

/* ---- device profiles ---- */

static const struct col profile_cols[] = {
    {"tenant_id", "tenantId", K_ID, TD_ENTITY_TENANT, true, false, false},
    {"name", "name", K_TEXT, 0, true, false, true},
    {"type", "type", K_TEXT, 0, false, false, true},
    {"is_default", "default", K_BOOL, 0, false, false, false},
};

static void profile_fixup(json_t *o) {
  static const char *const fields[] = {"description", "transportType", "provisionType", "provisionDeviceKey",
                                       "defaultRuleChainId", "defaultQueueName", "defaultDashboardId", "image",
                                       "firmwareId", "softwareId", "defaultEdgeRuleChainId", "profileData"};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    if (!json_object_get(o, fields[i])) json_object_set_new(o, fields[i], json_null());
  if (json_is_null(json_object_get(o, "type"))) json_object_set_new(o, "type", json_string("DEFAULT"));
}

static const struct edesc profile_desc = {"device_profile", TD_ENTITY_DEVICE_PROFILE, "name", NULL, profile_cols, 4,
                                          profile_fixup};

int sq_device_profile_set_default(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  struct arg a = arg_uuid(id);
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_exec(s, "UPDATE device_profile SET is_default=(id=?1) "
                   "WHERE tenant_id=(SELECT tenant_id FROM device_profile WHERE id=?1)", &a, 1);
  if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

int sq_device_profile_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_save(s, &profile_desc, in, NULL, &id);
  struct arg a = arg_uuid(&id);
  /* Devices carry their profile's name as "type"; keep it current on rename. */
  if (rc == 0)
    rc = ent_exec(s, "UPDATE device SET type=(SELECT name FROM device_profile WHERE id=?1) "
                     "WHERE device_profile_id=?1", &a, 1);
  if (rc == 0 && json_is_true(json_object_get(in, "default"))) rc = sq_device_profile_set_default(st, &id);
  int rc2 = sq_sp_end(s, rc == 0);
  if (rc || rc2) return rc ? rc : rc2;
  return ent_get(s, &profile_desc, &id, out);
}

int sq_device_profile_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &profile_desc, id, out);
}

int sq_device_profile_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out) {
  struct arg a[] = {arg_uuid(tenant_id), arg_text(name)};
  return ent_get_by(sq_of(st), &profile_desc, "tenant_id=?1 AND name=?2", a, 2, out);
}

int sq_device_profile_by_provision_key(struct td_store *st, const char *key, json_t **out) {
  struct arg a = arg_text(key);
  /* kept in the JSON `data`: profiles are few, a scan is cheap */
  return ent_get_by(sq_of(st), &profile_desc, "json_extract(data,'$.provisionDeviceKey')=?1", &a, 1, out);
}

int sq_device_profile_default(struct td_store *st, const struct td_uuid *tenant_id, json_t **out) {
  struct arg a = arg_uuid(tenant_id);
  return ent_get_by(sq_of(st), &profile_desc, "tenant_id=?1 AND is_default=1", &a, 1, out);
}

int sq_device_profile_delete(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s,
                   "SELECT is_default OR EXISTS(SELECT 1 FROM device WHERE device_profile_id=?1) "
                   "FROM device_profile WHERE id=?1",
                   &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, id);
  int step = sqlite3_step(stmt);
  if (step == SQLITE_ROW)
    rc = sqlite3_column_int(stmt, 0) ? TD_EBUSY : 0;
  else
    rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "profile delete");
  sq_done(s, stmt);
  if (rc) return rc;
  struct arg a = arg_uuid(id);
  return ent_exec(s, "DELETE FROM device_profile WHERE id=?1", &a, 1);
}

int sq_device_profiles_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl,
                            json_t **out) {
  struct filt f = {"tenant_id", arg_uuid(tenant_id)};
  return ent_page(sq_of(st), &profile_desc, &f, 1, pl, out);
}

/* ---- devices ---- */

static const struct col device_cols[] = {
    {"tenant_id", "tenantId", K_ID, TD_ENTITY_TENANT, true, false, false},
    {"customer_id", "customerId", K_ID, TD_ENTITY_CUSTOMER, false, true, false},
    {"name", "name", K_TEXT, 0, true, false, true},
    {"type", "type", K_TEXT, 0, false, false, true},
    {"label", "label", K_TEXT, 0, false, false, true},
    {"device_profile_id", "deviceProfileId", K_ID, TD_ENTITY_DEVICE_PROFILE, true, false, false},
};

static void device_fixup(json_t *o) {
  if (!json_object_get(o, "deviceData"))
    json_object_set_new(o, "deviceData",
                        json_pack("{s:{s:s},s:{s:s}}", "configuration", "type", "DEFAULT", "transportConfiguration",
                                  "type", "DEFAULT"));
  static const char *const fields[] = {"firmwareId", "softwareId", "additionalInfo"};
  for (size_t i = 0; i < 3; i++)
    if (!json_object_get(o, fields[i])) json_object_set_new(o, fields[i], json_null());
}

static const struct edesc device_desc = {"device", TD_ENTITY_DEVICE, "name", NULL, device_cols, 6, device_fixup};

/* "type" is the profile's name, which must exist in the device's tenant. */
static int device_pre(struct sq *s, json_t *doc, bool is_new) {
  struct td_uuid pid, tid;
  if (ent_parse_id(json_object_get(doc, "deviceProfileId"), &pid) ||
      ent_parse_id(json_object_get(doc, "tenantId"), &tid))
    return TD_EINVAL;
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, "SELECT name FROM device_profile WHERE id=?1 AND tenant_id=?2", &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, &pid);
  sq_bind_uuid(stmt, 2, &tid);
  int step = sqlite3_step(stmt);
  if (step == SQLITE_ROW)
    json_object_set_new(doc, "type", json_string((const char *)sqlite3_column_text(stmt, 0)));
  else
    rc = step == SQLITE_DONE ? TD_EINVAL : sq_err(s, step, "device profile name");
  sq_done(s, stmt);
  return rc;
}

int sq_device_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = ent_save(s, &device_desc, in, device_pre, &id);
  return rc ? rc : ent_get(s, &device_desc, &id, out);
}

int sq_device_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &device_desc, id, out);
}

int sq_device_by_name(struct td_store *st, const struct td_uuid *tenant_id, const char *name, json_t **out) {
  struct arg a[] = {arg_uuid(tenant_id), arg_text(name)};
  return ent_get_by(sq_of(st), &device_desc, "tenant_id=?1 AND name=?2", a, 2, out);
}

int sq_delete_entity_data(struct sq *s, const struct td_uuid *id) {
  static const char *const sqls[] = {
      "DELETE FROM ts_kv WHERE entity_id=?1",
      "DELETE FROM ts_kv_latest WHERE entity_id=?1",
      "DELETE FROM attribute_kv WHERE entity_id=?1",
      "DELETE FROM relation WHERE from_id=?1",
      "DELETE FROM relation WHERE to_id=?1",
  };
  struct arg a = arg_uuid(id);
  int rc = 0;
  for (size_t i = 0; i < sizeof sqls / sizeof *sqls && rc == 0; i++) rc = ent_exec(s, sqls[i], &a, 1);
  return rc;
}

int sq_device_delete(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  struct arg a = arg_uuid(id);
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_exec(s, "DELETE FROM device WHERE id=?1", &a, 1);
  if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  if (rc == 0) rc = ent_exec(s, "DELETE FROM device_credentials WHERE device_id=?1", &a, 1);
  if (rc == 0) rc = ent_exec(s, "DELETE FROM rpc WHERE device_id=?1", &a, 1); /* its persistent RPCs */
  if (rc == 0) rc = sq_delete_entity_data(s, id);
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

int sq_devices_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                    const char *type, const struct td_page_link *pl, json_t **out) {
  struct filt f[3];
  int n = 0;
  f[n++] = (struct filt){"tenant_id", arg_uuid(tenant_id)};
  if (customer_id) f[n++] = (struct filt){"customer_id", arg_uuid(customer_id)};
  if (type) f[n++] = (struct filt){"type", arg_text(type)};
  return ent_page(sq_of(st), &device_desc, f, n, pl, out);
}

/* ---- device credentials ---- */

static const struct col cred_cols[] = {
    {"device_id", "deviceId", K_ID, TD_ENTITY_DEVICE, true, false, false},
    {"credentials_type", "credentialsType", K_TEXT, 0, true, false, false},
    {"credentials_id", "credentialsId", K_TEXT, 0, true, false, false},
    {"credentials_value", "credentialsValue", K_TEXT, 0, false, false, false},
};
/* ThingsBoard's DeviceCredentialsId has no entityType: TD_ENTITY_NONE gives a bare {"id":..}. */
static const struct edesc cred_desc = {"device_credentials", TD_ENTITY_NONE, NULL, NULL, cred_cols, 4, NULL};

int sq_device_credentials_save(struct td_store *st, json_t *in, json_t **out) {
  struct sq *s = sq_of(st);
  if (!json_is_object(in)) return TD_EINVAL;
  struct td_uuid id, dev;
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  json_t *doc = json_incref(in);
  const json_t *jid = json_object_get(in, "id");
  /* One row per device: saving without an id replaces the device's credentials. */
  if ((!jid || json_is_null(jid)) && ent_parse_id(json_object_get(in, "deviceId"), &dev) == 0) {
    sqlite3_stmt *stmt;
    rc = sq_prep(s, "SELECT id FROM device_credentials WHERE device_id=?1", &stmt);
    if (rc == 0) {
      sq_bind_uuid(stmt, 1, &dev);
      if (sqlite3_step(stmt) == SQLITE_ROW) {
        struct td_uuid old;
        sq_col_uuid(stmt, 0, &old);
        json_decref(doc);
        doc = json_copy(in);
        if (doc) json_object_set_new(doc, "id", ent_id_json(TD_ENTITY_NONE, &old));
        if (doc) json_object_del(doc, "version");
      }
      sq_done(s, stmt);
    }
  }
  if (!doc) rc = TD_ENOMEM;
  if (rc == 0) rc = ent_save(s, &cred_desc, doc, NULL, &id);
  json_decref(doc);
  int rc2 = sq_sp_end(s, rc == 0);
  if (rc || rc2) return rc ? rc : rc2;
  return ent_get(s, &cred_desc, &id, out);
}

int sq_device_credentials_by_device(struct td_store *st, const struct td_uuid *device_id, json_t **out) {
  struct arg a = arg_uuid(device_id);
  return ent_get_by(sq_of(st), &cred_desc, "device_id=?1", &a, 1, out);
}

/* One indexed join: credentials -> device -> profile. */
#define AUTH_COLS                                                                                        \
  "SELECT d.id, d.tenant_id, d.customer_id, d.device_profile_id, d.name, p.name, "                      \
  "COALESCE(json_extract(d.data,'$.additionalInfo.gateway'),0), c.credentials_type, c.credentials_value "

static int auth_query(struct sq *s, const char *sql, const struct arg *a, struct td_device_auth *out) {
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  rc = ent_bind(stmt, a, 1);
  if (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
      memset(out, 0, sizeof *out);
      sq_col_uuid(stmt, 0, &out->device_id);
      sq_col_uuid(stmt, 1, &out->tenant_id);
      sq_col_uuid(stmt, 2, &out->customer_id);
      sq_col_uuid(stmt, 3, &out->profile_id);
      const char *v = (const char *)sqlite3_column_text(stmt, 4);
      snprintf(out->name, sizeof out->name, "%s", v ? v : "");
      v = (const char *)sqlite3_column_text(stmt, 5);
      snprintf(out->type, sizeof out->type, "%s", v ? v : "");
      /* json_extract gives 1/0 for true/false; a string "true" also counts. */
      out->gateway = sqlite3_column_type(stmt, 6) == SQLITE_INTEGER ? sqlite3_column_int(stmt, 6) != 0
                     : sqlite3_column_text(stmt, 6) && strcmp((const char *)sqlite3_column_text(stmt, 6), "true") == 0;
      v = (const char *)sqlite3_column_text(stmt, 7);
      snprintf(out->credentials_type, sizeof out->credentials_type, "%s", v ? v : "");
      v = (const char *)sqlite3_column_text(stmt, 8);
      snprintf(out->credentials_value, sizeof out->credentials_value, "%s", v ? v : "");
    } else {
      rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "device auth");
    }
  }
  sq_done(s, stmt);
  return rc;
}

int sq_device_auth_by_credentials(struct td_store *st, const char *credentials_id, struct td_device_auth *out) {
  if (!credentials_id) return TD_EINVAL;
  struct arg a = arg_text(credentials_id);
  return auth_query(sq_of(st), AUTH_COLS "FROM device_credentials c JOIN device d ON d.id=c.device_id "
                    "LEFT JOIN device_profile p ON p.id=d.device_profile_id WHERE c.credentials_id=?1", &a, out);
}

int sq_device_auth_by_id(struct td_store *st, const struct td_uuid *device_id, struct td_device_auth *out) {
  struct arg a = arg_uuid(device_id);
  return auth_query(sq_of(st), AUTH_COLS "FROM device d LEFT JOIN device_credentials c ON c.device_id=d.id "
                    "LEFT JOIN device_profile p ON p.id=d.device_profile_id WHERE d.id=?1", &a, out);
}
