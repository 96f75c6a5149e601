/* test_store.c — the store contract (store.h) against the SQLite backend:
 * migrations, entity CRUD with uniqueness, versions, paging and cascades,
 * credentials lookups, rule chains, attributes and timeseries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "store/store.h"
#include "store_test_util.h"

struct fx {
  char path[512];
  struct td_store *st;
  struct td_arena arena;
};

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  test_db_path(f->path, sizeof f->path, "store");
  struct td_store_config cfg = {.type = "sqlite", .path = f->path};
  assert_int_equal(td_store_open(&cfg, true, &f->st), 0);
  td_arena_init(&f->arena, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  td_store_close(f->st);
  td_arena_deinit(&f->arena);
  test_db_remove(f->path);
  free(f);
  return 0;
}

/* ---- helpers ---- */

static void id_of(json_t *o, struct td_uuid *u) {
  json_t *id = json_object_get(json_object_get(o, "id"), "id");
  assert_non_null(id);
  assert_int_equal(td_uuid_parse(json_string_value(id), u), 0);
}

static json_t *id_json(const char *type, const struct td_uuid *u) {
  char buf[TD_UUID_STR_LEN + 1];
  return json_pack("{s:s,s:s}", "entityType", type, "id", td_uuid_fmt(u, buf));
}

static void make_tenant(struct td_store *st, const char *title, struct td_uuid *id) {
  json_t *in = json_pack("{s:s}", "title", title), *out = NULL;
  assert_int_equal(td_store_tenant_save(st, in, &out), 0);
  id_of(out, id);
  json_decref(in);
  json_decref(out);
}

static void make_profile(struct td_store *st, const struct td_uuid *tenant, const char *name, bool def,
                         struct td_uuid *id) {
  json_t *in = json_pack("{s:o,s:s,s:b,s:s}", "tenantId", id_json("TENANT", tenant), "name", name, "default", def,
                         "transportType", "DEFAULT");
  json_t *out = NULL;
  assert_int_equal(td_store_device_profile_save(st, in, &out), 0);
  id_of(out, id);
  json_decref(in);
  json_decref(out);
}

static int make_device(struct td_store *st, const struct td_uuid *tenant, const struct td_uuid *profile,
                       const char *name, const char *label, struct td_uuid *id) {
  json_t *in = json_pack("{s:o,s:s,s:s?,s:o,s:{s:b}}", "tenantId", id_json("TENANT", tenant), "name", name, "label",
                         label, "deviceProfileId", id_json("DEVICE_PROFILE", profile), "additionalInfo", "gateway",
                         0);
  json_t *out = NULL;
  int rc = td_store_device_save(st, in, &out);
  if (rc == 0) id_of(out, id);
  json_decref(in);
  json_decref(out);
  return rc;
}

static struct td_page_link page(int size, int n, const char *search, const char *sort, bool desc) {
  return (struct td_page_link){.page_size = size, .page = n, .text_search = search, .sort_property = sort,
                               .sort_desc = desc};
}

/* ---- tests ---- */

static void test_migrations_idempotent(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "migrate");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_store *a, *b, *c;
  assert_int_equal(td_store_open(&cfg, true, &a), 0);
  int latest = td_store_schema_version(a); /* every migration applied (appended ones too) */
  assert_true(latest >= 1);
  assert_int_equal(td_store_kv_put(a, "mark", "1"), 0);
  td_store_close(a);
  assert_int_equal(td_store_open(&cfg, true, &b), 0); /* again: nothing to do, data kept */
  assert_int_equal(td_store_schema_version(b), latest);
  assert_int_equal(td_store_open(&cfg, false, &c), 0);
  assert_int_equal(td_store_schema_version(c), latest);
  char *v = NULL;
  assert_int_equal(td_store_kv_get(c, "mark", &v), 0);
  assert_string_equal(v, "1");
  free(v);
  td_store_close(b);
  td_store_close(c);
  struct td_store_config bad = {.type = "nosuch", .path = path};
  assert_int_equal(td_store_open(&bad, true, &a), TD_EINVAL);
  test_db_remove(path);
}

static void test_kv(void **state) {
  struct fx *f = *state;
  char *v = NULL;
  assert_int_equal(td_store_kv_get(f->st, "jwt", &v), TD_ENOTFOUND);
  assert_int_equal(td_store_kv_put(f->st, "jwt", "a"), 0);
  assert_int_equal(td_store_kv_put(f->st, "jwt", "b"), 0);
  assert_int_equal(td_store_kv_get(f->st, "jwt", &v), 0);
  assert_string_equal(v, "b");
  free(v);
}

static void test_tenant_crud_version(void **state) {
  struct fx *f = *state;
  json_t *in = json_pack("{s:s,s:s,s:n}", "title", "Acme", "email", "a@b.c", "tenantProfileId"), *out = NULL;
  assert_int_equal(td_store_tenant_save(f->st, in, &out), 0);
  json_decref(in);
  assert_string_equal(json_string_value(json_object_get(out, "title")), "Acme");
  assert_string_equal(json_string_value(json_object_get(out, "name")), "Acme");
  assert_string_equal(json_string_value(json_object_get(out, "email")), "a@b.c");
  assert_true(json_is_null(json_object_get(out, "tenantProfileId")));
  assert_string_equal(json_string_value(json_object_get(json_object_get(out, "id"), "entityType")), "TENANT");
  assert_int_equal(json_integer_value(json_object_get(out, "version")), 1);
  assert_true(json_integer_value(json_object_get(out, "createdTime")) > 1600000000000LL);
  int64_t created = json_integer_value(json_object_get(out, "createdTime"));
  struct td_uuid id;
  id_of(out, &id);

  /* update with the current version */
  json_object_set_new(out, "title", json_string("Acme 2"));
  json_t *out2 = NULL;
  assert_int_equal(td_store_tenant_save(f->st, out, &out2), 0);
  assert_int_equal(json_integer_value(json_object_get(out2, "version")), 2);
  assert_int_equal(json_integer_value(json_object_get(out2, "createdTime")), created);
  assert_string_equal(json_string_value(json_object_get(out2, "name")), "Acme 2");
  /* stale version */
  json_t *out3 = NULL;
  assert_int_equal(td_store_tenant_save(f->st, out, &out3), TD_ECONFLICT);
  /* without version: last writer wins */
  json_object_del(out, "version");
  assert_int_equal(td_store_tenant_save(f->st, out, &out3), 0);
  assert_int_equal(json_integer_value(json_object_get(out3, "version")), 3);
  json_decref(out3);
  /* unknown id */
  struct td_uuid other;
  td_uuid_new(&other);
  json_object_set_new(out, "id", id_json("TENANT", &other));
  assert_int_equal(td_store_tenant_save(f->st, out, &out3), TD_ENOTFOUND);
  assert_int_equal(td_store_tenant_get(f->st, &other, &out3), TD_ENOTFOUND);
  /* missing title */
  json_t *bad = json_object();
  assert_int_equal(td_store_tenant_save(f->st, bad, &out3), TD_EINVAL);
  json_decref(bad);
  json_decref(out);
  json_decref(out2);

  struct td_uuid *ids;
  size_t n;
  assert_int_equal(td_store_tenant_ids(f->st, &ids, &n), 0);
  assert_int_equal(n, 1);
  assert_true(td_uuid_eq(&ids[0], &id));
  free(ids);
  json_t *pg;
  struct td_page_link pl = page(10, 0, "acme", NULL, false);
  assert_int_equal(td_store_tenants_page(f->st, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 1);
  json_decref(pg);
}

static void test_customers_users(void **state) {
  struct fx *f = *state;
  struct td_uuid t1, t2, c1, u1;
  make_tenant(f->st, "T1", &t1);
  make_tenant(f->st, "T2", &t2);
  json_t *in = json_pack("{s:o,s:s}", "tenantId", id_json("TENANT", &t1), "title", "Cust"), *out = NULL;
  assert_int_equal(td_store_customer_save(f->st, in, &out), 0);
  id_of(out, &c1);
  assert_string_equal(json_string_value(json_object_get(out, "name")), "Cust");
  json_decref(out);
  assert_int_equal(td_store_customer_save(f->st, in, &out), TD_EEXIST); /* same title, same tenant */
  json_object_set_new(in, "tenantId", id_json("TENANT", &t2));
  assert_int_equal(td_store_customer_save(f->st, in, &out), 0); /* other tenant: fine */
  json_decref(out);
  json_decref(in);
  assert_int_equal(td_store_customer_by_title(f->st, &t1, "Cust", &out), 0);
  json_decref(out);
  assert_int_equal(td_store_customer_by_title(f->st, &t1, "Nope", &out), TD_ENOTFOUND);

  in = json_pack("{s:o,s:s,s:s,s:s}", "tenantId", id_json("TENANT", &t1), "email", "Admin@Acme.io", "authority",
                 "TENANT_ADMIN", "firstName", "Ann");
  assert_int_equal(td_store_user_save(f->st, in, &out), 0);
  id_of(out, &u1);
  assert_string_equal(json_string_value(json_object_get(out, "name")), "Admin@Acme.io");
  /* no customer: ThingsBoard's null id */
  assert_string_equal(json_string_value(json_object_get(json_object_get(out, "customerId"), "id")), TD_UUID_NULL_STR);
  assert_string_equal(json_string_value(json_object_get(json_object_get(out, "customerId"), "entityType")),
                      "CUSTOMER");
  assert_true(json_is_null(json_object_get(out, "phone")));
  json_decref(out);
  /* email unique system-wide, case-insensitively */
  json_object_set_new(in, "tenantId", id_json("TENANT", &t2));
  json_object_set_new(in, "email", json_string("admin@acme.io"));
  assert_int_equal(td_store_user_save(f->st, in, &out), TD_EEXIST);
  json_decref(in);
  assert_int_equal(td_store_user_by_email(f->st, "ADMIN@acme.io", &out), 0);
  json_decref(out);

  in = json_pack("{s:o,s:o,s:s,s:s}", "tenantId", id_json("TENANT", &t1), "customerId", id_json("CUSTOMER", &c1),
                 "email", "cu@acme.io", "authority", "CUSTOMER_USER");
  assert_int_equal(td_store_user_save(f->st, in, &out), 0);
  json_decref(out);
  json_decref(in);
  json_t *pg;
  struct td_page_link pl = page(10, 0, NULL, "email", false);
  assert_int_equal(td_store_users_page(f->st, &t1, NULL, NULL, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(pg, "data"), 0), "email")),
                      "Admin@Acme.io");
  json_decref(pg);
  assert_int_equal(td_store_users_page(f->st, &t1, NULL, "CUSTOMER_USER", &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 1);
  json_decref(pg);
  assert_int_equal(td_store_users_page(f->st, NULL, &c1, NULL, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 1);
  json_decref(pg);

  struct td_user_credentials uc = {.user_id = u1, .enabled = false};
  strcpy(uc.activate_token, "tok123");
  assert_int_equal(td_store_user_credentials_put(f->st, &uc), 0);
  struct td_user_credentials got;
  assert_int_equal(td_store_user_credentials_by_activate_token(f->st, "tok123", &got), 0);
  assert_true(td_uuid_eq(&got.user_id, &u1));
  assert_false(got.enabled);
  assert_string_equal(got.password_hash, "");
  uc.enabled = true;
  uc.activate_token[0] = '\0';
  strcpy(uc.password_hash, "$2a$10$abc");
  assert_int_equal(td_store_user_credentials_put(f->st, &uc), 0);
  assert_int_equal(td_store_user_credentials_by_activate_token(f->st, "tok123", &got), TD_ENOTFOUND);
  assert_int_equal(td_store_user_credentials_by_activate_token(f->st, "", &got), TD_ENOTFOUND);
  assert_int_equal(td_store_user_credentials_get(f->st, &u1, &got), 0);
  assert_true(got.enabled);
  assert_string_equal(got.password_hash, "$2a$10$abc");
  assert_int_equal(td_store_user_delete(f->st, &u1), 0);
  assert_int_equal(td_store_user_credentials_get(f->st, &u1, &got), TD_ENOTFOUND);
  assert_int_equal(td_store_user_delete(f->st, &u1), TD_ENOTFOUND);
}

static void test_devices_paging(void **state) {
  struct fx *f = *state;
  struct td_uuid t, p, p2, d, other;
  make_tenant(f->st, "T", &t);
  make_profile(f->st, &t, "default", true, &p);
  make_profile(f->st, &t, "thermo", false, &p2);
  json_t *out;
  assert_int_equal(td_store_device_profile_default(f->st, &t, &out), 0);
  assert_true(json_is_true(json_object_get(out, "default")));
  json_decref(out);
  /* profile name unique per tenant */
  json_t *in = json_pack("{s:o,s:s}", "tenantId", id_json("TENANT", &t), "name", "thermo");
  assert_int_equal(td_store_device_profile_save(f->st, in, &out), TD_EEXIST);
  json_decref(in);

  char name[32];
  for (int i = 0; i < 25; i++) {
    snprintf(name, sizeof name, "Dev-%02d", i);
    assert_int_equal(make_device(f->st, &t, i % 5 == 0 ? &p2 : &p, name, i % 2 ? "odd" : NULL, &d), 0);
  }
  assert_int_equal(make_device(f->st, &t, &p, "Dev-03", NULL, &other), TD_EEXIST);
  /* device needs an existing profile of its tenant */
  td_uuid_new(&other);
  assert_int_equal(make_device(f->st, &t, &other, "X", NULL, &other), TD_EINVAL);

  assert_int_equal(td_store_device_by_name(f->st, &t, "Dev-05", &out), 0);
  assert_string_equal(json_string_value(json_object_get(out, "type")), "thermo");
  assert_string_equal(json_string_value(json_object_get(json_object_get(out, "id"), "entityType")), "DEVICE");
  assert_non_null(json_object_get(json_object_get(out, "deviceData"), "configuration"));
  assert_true(json_is_null(json_object_get(out, "firmwareId")));
  assert_string_equal(json_string_value(json_object_get(out, "label")), "odd");
  assert_false(json_is_true(json_object_get(json_object_get(out, "additionalInfo"), "gateway")));
  assert_int_equal(json_integer_value(json_object_get(out, "version")), 1);
  json_decref(out);

  json_t *pg;
  struct td_page_link pl = page(10, 0, NULL, NULL, false);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, NULL, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 25);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalPages")), 3);
  assert_true(json_is_true(json_object_get(pg, "hasNext")));
  assert_int_equal(json_array_size(json_object_get(pg, "data")), 10);
  json_decref(pg);
  pl = page(10, 2, NULL, NULL, false);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, NULL, &pl, &pg), 0);
  assert_int_equal(json_array_size(json_object_get(pg, "data")), 5);
  assert_false(json_is_true(json_object_get(pg, "hasNext")));
  json_decref(pg);
  /* case-insensitive substring, sorted by name descending */
  pl = page(100, 0, "dev-1", "name", true);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, NULL, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 10);
  json_t *data = json_object_get(pg, "data");
  assert_string_equal(json_string_value(json_object_get(json_array_get(data, 0), "name")), "Dev-19");
  assert_string_equal(json_string_value(json_object_get(json_array_get(data, 9), "name")), "Dev-10");
  json_decref(pg);
  /* filter by type (profile name) */
  pl = page(100, 0, NULL, "label", false);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, "thermo", &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 5);
  json_decref(pg);
  /* unknown sort property: createdTime order; never SQL */
  pl = page(100, 0, NULL, "name; DROP TABLE device", false);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, NULL, &pl, &pg), 0);
  assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(pg, "data"), 0), "name")),
                      "Dev-00");
  json_decref(pg);
  pl = page(0, 0, NULL, NULL, false);
  assert_int_equal(td_store_devices_page(f->st, &t, NULL, NULL, &pl, &pg), TD_EINVAL);

  /* renaming the profile renames the devices' type */
  assert_int_equal(td_store_device_profile_get(f->st, &p2, &out), 0);
  json_object_set_new(out, "name", json_string("thermo-2"));
  json_t *out2;
  assert_int_equal(td_store_device_profile_save(f->st, out, &out2), 0);
  json_decref(out);
  json_decref(out2);
  assert_int_equal(td_store_device_by_name(f->st, &t, "Dev-05", &out), 0);
  assert_string_equal(json_string_value(json_object_get(out, "type")), "thermo-2");
  json_decref(out);
  /* profile in use or default: busy */
  assert_int_equal(td_store_device_profile_delete(f->st, &p2), TD_EBUSY);
  assert_int_equal(td_store_device_profile_set_default(f->st, &p2), 0);
  assert_int_equal(td_store_device_profile_get(f->st, &p, &out), 0);
  assert_false(json_is_true(json_object_get(out, "default")));
  json_decref(out);
  struct td_uuid p3;
  make_profile(f->st, &t, "spare", false, &p3);
  assert_int_equal(td_store_device_profile_delete(f->st, &p3), 0);
  assert_int_equal(td_store_device_profile_get(f->st, &p3, &out), TD_ENOTFOUND);
}

static void test_credentials_auth(void **state) {
  struct fx *f = *state;
  struct td_uuid t, p, d1, d2;
  make_tenant(f->st, "T", &t);
  make_profile(f->st, &t, "default", true, &p);
  assert_int_equal(make_device(f->st, &t, &p, "d1", NULL, &d1), 0);
  assert_int_equal(make_device(f->st, &t, &p, "gw", NULL, &d2), 0);
  json_t *gw;
  assert_int_equal(td_store_device_get(f->st, &d2, &gw), 0);
  json_object_set_new(gw, "additionalInfo", json_pack("{s:b}", "gateway", 1));
  json_t *gw2;
  assert_int_equal(td_store_device_save(f->st, gw, &gw2), 0);
  json_decref(gw);
  json_decref(gw2);

  json_t *in = json_pack("{s:o,s:s,s:s}", "deviceId", id_json("DEVICE", &d1), "credentialsType", "ACCESS_TOKEN",
                         "credentialsId", "TOKEN1"),
         *out;
  assert_int_equal(td_store_device_credentials_save(f->st, in, &out), 0);
  assert_string_equal(json_string_value(json_object_get(out, "credentialsId")), "TOKEN1");
  assert_true(json_is_null(json_object_get(out, "credentialsValue")));
  json_decref(out);
  json_decref(in);
  in = json_pack("{s:o,s:s,s:s}", "deviceId", id_json("DEVICE", &d2), "credentialsType", "ACCESS_TOKEN",
                 "credentialsId", "TOKEN1");
  assert_int_equal(td_store_device_credentials_save(f->st, in, &out), TD_EEXIST);
  json_object_set_new(in, "credentialsId", json_string("GW"));
  assert_int_equal(td_store_device_credentials_save(f->st, in, &out), 0);
  json_decref(out);
  json_decref(in);

  struct td_device_auth a;
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "TOKEN1", &a), 0);
  assert_true(td_uuid_eq(&a.device_id, &d1));
  assert_true(td_uuid_eq(&a.tenant_id, &t));
  assert_true(td_uuid_eq(&a.profile_id, &p));
  assert_true(td_uuid_is_null(&a.customer_id));
  assert_string_equal(a.name, "d1");
  assert_string_equal(a.type, "default");
  assert_string_equal(a.credentials_type, "ACCESS_TOKEN");
  assert_false(a.gateway);
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "GW", &a), 0);
  assert_true(a.gateway);
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "nope", &a), TD_ENOTFOUND);
  assert_int_equal(td_store_device_auth_by_id(f->st, &d1, &a), 0);
  assert_string_equal(a.name, "d1");

  /* saving without an id replaces the device's one credentials row */
  in = json_pack("{s:o,s:s,s:s,s:s}", "deviceId", id_json("DEVICE", &d1), "credentialsType", "MQTT_BASIC",
                 "credentialsId", "basic1", "credentialsValue", "{\"clientId\":\"c\"}");
  assert_int_equal(td_store_device_credentials_save(f->st, in, &out), 0);
  json_decref(out);
  json_decref(in);
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "TOKEN1", &a), TD_ENOTFOUND);
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "basic1", &a), 0);
  assert_string_equal(a.credentials_type, "MQTT_BASIC");
  assert_string_equal(a.credentials_value, "{\"clientId\":\"c\"}");
  assert_int_equal(td_store_device_credentials_by_device(f->st, &d1, &out), 0);
  assert_int_equal(json_integer_value(json_object_get(out, "version")), 2);
  assert_null(json_object_get(json_object_get(out, "id"), "entityType"));
  json_decref(out);
}

static void put_ts(struct td_store *st, const struct td_uuid *id, const char *key, int64_t ts, int64_t v) {
  struct td_entity_id e = {TD_ENTITY_DEVICE, *id};
  struct td_ts_point pt = {.ts = ts, .kv = {.key = key, .type = TD_KV_LONG, .v.l = v}};
  assert_int_equal(td_store_ts_save(st, &e, &pt, 1, 0), 0);
}

static void put_attr(struct td_store *st, enum td_entity_type type, const struct td_uuid *id, const char *key) {
  struct td_entity_id e = {type, *id};
  struct td_kv kv = {.key = key, .type = TD_KV_STRING, .v.s = "x"};
  assert_int_equal(td_store_attributes_save(st, &e, TD_SCOPE_SERVER, &kv, 1, 1), 0);
}

static void test_cascades(void **state) {
  struct fx *f = *state;
  struct td_uuid t, t2, p, p2, d1, d2, d3, c, u;
  make_tenant(f->st, "T", &t);
  make_tenant(f->st, "Other", &t2);
  make_profile(f->st, &t, "default", true, &p);
  make_profile(f->st, &t2, "default", true, &p2);
  assert_int_equal(make_device(f->st, &t, &p, "d1", NULL, &d1), 0);
  assert_int_equal(make_device(f->st, &t, &p, "d2", NULL, &d2), 0);
  assert_int_equal(make_device(f->st, &t2, &p2, "d3", NULL, &d3), 0);
  json_t *in = json_pack("{s:o,s:s,s:s}", "deviceId", id_json("DEVICE", &d1), "credentialsType", "ACCESS_TOKEN",
                         "credentialsId", "tok-d1"),
         *out;
  assert_int_equal(td_store_device_credentials_save(f->st, in, &out), 0);
  json_decref(in);
  json_decref(out);
  put_ts(f->st, &d1, "temp", 1000, 1);
  put_attr(f->st, TD_ENTITY_DEVICE, &d1, "a");
  put_ts(f->st, &d3, "temp", 1000, 1);

  /* device delete: credentials, attributes, timeseries */
  assert_int_equal(td_store_device_delete(f->st, &d1), 0);
  struct td_device_auth a;
  assert_int_equal(td_store_device_auth_by_credentials(f->st, "tok-d1", &a), TD_ENOTFOUND);
  struct td_entity_id e1 = {TD_ENTITY_DEVICE, d1};
  int64_t cnt = -1;
  assert_int_equal(td_store_ts_count(f->st, &e1, &cnt), 0);
  assert_int_equal(cnt, 0);
  struct td_attr *attrs;
  size_t na;
  assert_int_equal(td_store_attributes_get(f->st, &e1, 0, NULL, 0, &f->arena, &attrs, &na), 0);
  assert_int_equal(na, 0);
  struct td_ts_point *pts;
  size_t np;
  assert_int_equal(td_store_ts_latest(f->st, &e1, NULL, 0, &f->arena, &pts, &np), 0);
  assert_int_equal(np, 0);
  assert_int_equal(td_store_device_delete(f->st, &d1), TD_ENOTFOUND);

  /* customer delete: devices unassigned, users deleted */
  in = json_pack("{s:o,s:s}", "tenantId", id_json("TENANT", &t), "title", "C");
  assert_int_equal(td_store_customer_save(f->st, in, &out), 0);
  id_of(out, &c);
  json_decref(in);
  json_decref(out);
  assert_int_equal(td_store_device_get(f->st, &d2, &out), 0);
  json_object_set_new(out, "customerId", id_json("CUSTOMER", &c));
  json_t *out2;
  assert_int_equal(td_store_device_save(f->st, out, &out2), 0);
  json_decref(out);
  json_decref(out2);
  json_t *pg;
  struct td_page_link pl = page(10, 0, NULL, NULL, false);
  assert_int_equal(td_store_devices_page(f->st, &t, &c, NULL, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 1);
  json_decref(pg);
  in = json_pack("{s:o,s:o,s:s,s:s}", "tenantId", id_json("TENANT", &t), "customerId", id_json("CUSTOMER", &c),
                 "email", "u@c.io", "authority", "CUSTOMER_USER");
  assert_int_equal(td_store_user_save(f->st, in, &out), 0);
  id_of(out, &u);
  json_decref(in);
  json_decref(out);
  assert_int_equal(td_store_customer_delete(f->st, &c), 0);
  assert_int_equal(td_store_user_get(f->st, &u, &out), TD_ENOTFOUND);
  assert_int_equal(td_store_device_get(f->st, &d2, &out), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(out, "customerId"), "id")), TD_UUID_NULL_STR);
  json_decref(out);
  assert_int_equal(td_store_customer_delete(f->st, &c), TD_ENOTFOUND);

  /* tenant delete: everything it owns, nothing of other tenants */
  put_ts(f->st, &d2, "temp", 1000, 1);
  put_attr(f->st, TD_ENTITY_TENANT, &t, "tenantAttr");
  in = json_pack("{s:o,s:s}", "tenantId", id_json("TENANT", &t), "email", "admin@t.io");
  assert_int_equal(td_store_user_save(f->st, in, &out), 0);
  id_of(out, &u);
  json_decref(in);
  json_decref(out);
  assert_int_equal(td_store_tenant_delete(f->st, &t), 0);
  assert_int_equal(td_store_tenant_get(f->st, &t, &out), TD_ENOTFOUND);
  assert_int_equal(td_store_device_get(f->st, &d2, &out), TD_ENOTFOUND);
  assert_int_equal(td_store_device_profile_get(f->st, &p, &out), TD_ENOTFOUND);
  assert_int_equal(td_store_user_get(f->st, &u, &out), TD_ENOTFOUND);
  struct td_entity_id e2 = {TD_ENTITY_DEVICE, d2}, et = {TD_ENTITY_TENANT, t}, e3 = {TD_ENTITY_DEVICE, d3};
  assert_int_equal(td_store_ts_count(f->st, &e2, &cnt), 0);
  assert_int_equal(cnt, 0);
  assert_int_equal(td_store_attributes_get(f->st, &et, 0, NULL, 0, &f->arena, &attrs, &na), 0);
  assert_int_equal(na, 0);
  assert_int_equal(td_store_ts_count(f->st, &e3, &cnt), 0);
  assert_int_equal(cnt, 1);
  assert_int_equal(td_store_device_get(f->st, &d3, &out), 0);
  json_decref(out);
}

static void test_rule_chains(void **state) {
  struct fx *f = *state;
  struct td_uuid t, r1, r2;
  make_tenant(f->st, "T", &t);
  json_t *in = json_pack("{s:o,s:s,s:b}", "tenantId", id_json("TENANT", &t), "name", "Root", "root", 1), *out;
  assert_int_equal(td_store_rule_chain_save(f->st, in, &out), 0);
  id_of(out, &r1);
  assert_string_equal(json_string_value(json_object_get(out, "type")), "CORE");
  json_decref(out);
  json_object_set_new(in, "name", json_string("Second"));
  assert_int_equal(td_store_rule_chain_save(f->st, in, &out), 0); /* root too: becomes the only root */
  id_of(out, &r2);
  json_decref(out);
  json_decref(in);
  assert_int_equal(td_store_rule_chain_root(f->st, &t, &out), 0);
  struct td_uuid got;
  id_of(out, &got);
  assert_true(td_uuid_eq(&got, &r2));
  json_decref(out);
  assert_int_equal(td_store_rule_chain_set_root(f->st, &r1), 0);
  assert_int_equal(td_store_rule_chain_root(f->st, &t, &out), 0);
  id_of(out, &got);
  assert_true(td_uuid_eq(&got, &r1));
  json_decref(out);

  assert_int_equal(td_store_rule_chain_metadata_get(f->st, &r1, &out), 0);
  assert_int_equal(json_array_size(json_object_get(out, "nodes")), 0);
  json_decref(out);
  json_t *meta = json_pack("{s:i,s:[{s:s,s:s},{s:s,s:s}],s:[{s:i,s:i,s:s}]}", "firstNodeIndex", 1, "nodes", "type",
                           "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode", "name", "switch", "type",
                           "org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode", "name", "save",
                           "connections", "fromIndex", 0, "toIndex", 1, "type", "Post telemetry");
  assert_int_equal(td_store_rule_chain_metadata_save(f->st, &r1, meta, &out), 0);
  json_decref(meta);
  json_t *n1 = json_array_get(json_object_get(out, "nodes"), 1);
  assert_string_equal(json_string_value(json_object_get(json_object_get(n1, "id"), "entityType")), "RULE_NODE");
  const char *nid = json_string_value(json_object_get(json_object_get(n1, "id"), "id"));
  json_t *chain;
  assert_int_equal(td_store_rule_chain_get(f->st, &r1, &chain), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(chain, "firstRuleNodeId"), "id")), nid);
  int64_t v = json_integer_value(json_object_get(chain, "version"));
  json_decref(chain);
  json_t *got_meta;
  assert_int_equal(td_store_rule_chain_metadata_get(f->st, &r1, &got_meta), 0);
  assert_int_equal(json_integer_value(json_object_get(got_meta, "version")), v);
  assert_int_equal(json_array_size(json_object_get(got_meta, "connections")), 1);
  /* saving again keeps node ids; a stale version conflicts */
  json_object_set_new(got_meta, "version", json_integer(v - 1));
  json_t *tmp;
  assert_int_equal(td_store_rule_chain_metadata_save(f->st, &r1, got_meta, &tmp), TD_ECONFLICT);
  json_decref(got_meta);
  json_decref(out);
  json_t *pg;
  struct td_page_link pl = page(10, 0, "sec", NULL, false);
  assert_int_equal(td_store_rule_chains_page(f->st, &t, &pl, &pg), 0);
  assert_int_equal(json_integer_value(json_object_get(pg, "totalElements")), 1);
  json_decref(pg);
  assert_int_equal(td_store_rule_chain_delete(f->st, &r2), 0);
  assert_int_equal(td_store_rule_chain_get(f->st, &r2, &out), TD_ENOTFOUND);

  struct td_entity_id from = {TD_ENTITY_TENANT, t}, to = {TD_ENTITY_RULE_CHAIN, r1};
  assert_int_equal(td_store_relation_save(f->st, &from, &to, "Contains", "RULE_CHAIN"), 0);
  assert_int_equal(td_store_relation_save(f->st, &from, &to, "Contains", "RULE_CHAIN"), 0);
}

static void test_attributes(void **state) {
  struct fx *f = *state;
  struct td_entity_id e = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  struct td_kv c[] = {{.key = "fw", .type = TD_KV_STRING, .v.s = "1.0"}, {.key = "on", .type = TD_KV_BOOLEAN, .v.b = true}};
  struct td_kv s[] = {{.key = "limit", .type = TD_KV_LONG, .v.l = 42}, {.key = "cfg", .type = TD_KV_JSON, .v.s = "{\"a\":1}"}};
  struct td_kv sh[] = {{.key = "limit", .type = TD_KV_DOUBLE, .v.d = 1.5}};
  assert_int_equal(td_store_attributes_save(f->st, &e, TD_SCOPE_CLIENT, c, 2, 100), 0);
  assert_int_equal(td_store_attributes_save(f->st, &e, TD_SCOPE_SERVER, s, 2, 200), 0);
  assert_int_equal(td_store_attributes_save(f->st, &e, TD_SCOPE_SHARED, sh, 1, 300), 0);
  assert_int_equal(td_store_attributes_save(f->st, &e, 7, sh, 1, 300), TD_EINVAL);

  struct td_attr *a;
  size_t n;
  assert_int_equal(td_store_attributes_get(f->st, &e, 0, NULL, 0, &f->arena, &a, &n), 0);
  assert_int_equal(n, 5);
  assert_int_equal(a[0].scope, TD_SCOPE_CLIENT);
  assert_string_equal(a[0].kv.key, "fw");
  assert_string_equal(a[0].kv.v.s, "1.0");
  assert_int_equal(a[0].last_update_ts, 100);
  assert_string_equal(a[1].kv.key, "on");
  assert_int_equal(a[1].kv.type, TD_KV_BOOLEAN);
  assert_true(a[1].kv.v.b);
  assert_string_equal(a[2].kv.key, "cfg");
  assert_int_equal(a[2].kv.type, TD_KV_JSON);
  assert_string_equal(a[2].kv.v.s, "{\"a\":1}");
  assert_int_equal(a[3].kv.type, TD_KV_LONG);
  assert_int_equal(a[3].kv.v.l, 42);
  assert_int_equal(a[4].scope, TD_SCOPE_SHARED);
  assert_true(a[4].kv.v.d == 1.5);

  const char *keys[] = {"limit", "nosuch", "fw"};
  assert_int_equal(td_store_attributes_get(f->st, &e, 0, keys, 3, &f->arena, &a, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(a[0].scope, TD_SCOPE_CLIENT);
  assert_int_equal(a[1].scope, TD_SCOPE_SERVER);
  assert_int_equal(a[2].scope, TD_SCOPE_SHARED);
  assert_int_equal(td_store_attributes_get(f->st, &e, TD_SCOPE_SHARED, keys, 3, &f->arena, &a, &n), 0);
  assert_int_equal(n, 1);

  /* overwrite with another type */
  struct td_kv s2 = {.key = "limit", .type = TD_KV_STRING, .v.s = "none"};
  assert_int_equal(td_store_attributes_save(f->st, &e, TD_SCOPE_SERVER, &s2, 1, 250), 0);
  assert_int_equal(td_store_attributes_get(f->st, &e, TD_SCOPE_SERVER, keys, 1, &f->arena, &a, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(a[0].kv.type, TD_KV_STRING);
  assert_string_equal(a[0].kv.v.s, "none");
  assert_int_equal(a[0].last_update_ts, 250);

  size_t del = 0;
  assert_int_equal(td_store_attributes_delete(f->st, &e, 0, keys, 3, &del), 0);
  assert_int_equal(del, 3);
  assert_int_equal(td_store_attributes_delete(f->st, &e, TD_SCOPE_CLIENT, NULL, 0, &del), 0);
  assert_int_equal(del, 1);
  assert_int_equal(td_store_attributes_get(f->st, &e, 0, NULL, 0, &f->arena, &a, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(a[0].kv.key, "cfg");

  assert_int_equal(td_attr_scope_parse("SHARED_SCOPE"), TD_SCOPE_SHARED);
  assert_int_equal(td_attr_scope_parse("nope"), 0);
  assert_string_equal(td_attr_scope_name(TD_SCOPE_CLIENT), "CLIENT_SCOPE");
}

static void test_timeseries(void **state) {
  struct fx *f = *state;
  struct td_entity_id e = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  /* temp: longs 0..9 at ts 1000..1900 (every 100 ms) */
  struct td_ts_point pts[12];
  for (int i = 0; i < 10; i++)
    pts[i] = (struct td_ts_point){.ts = 1000 + i * 100, .kv = {.key = "temp", .type = TD_KV_LONG, .v.l = i}};
  pts[10] = (struct td_ts_point){.ts = 1000, .kv = {.key = "hum", .type = TD_KV_DOUBLE, .v.d = 0.5}};
  pts[11] = (struct td_ts_point){.ts = 1500, .kv = {.key = "hum", .type = TD_KV_LONG, .v.l = 2}};
  assert_int_equal(td_store_ts_save(f->st, &e, pts, 12, 0), 0);
  int64_t cnt;
  assert_int_equal(td_store_ts_count(f->st, &e, &cnt), 0);
  assert_int_equal(cnt, 12);

  /* latest only moves forward */
  struct td_ts_point old = {.ts = 500, .kv = {.key = "temp", .type = TD_KV_LONG, .v.l = 99}};
  assert_int_equal(td_store_ts_save(f->st, &e, &old, 1, 0), 0);
  struct td_ts_point *out;
  size_t n;
  const char *k_temp[] = {"temp"};
  assert_int_equal(td_store_ts_latest(f->st, &e, k_temp, 1, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].ts, 1900);
  assert_int_equal(out[0].kv.v.l, 9);
  assert_int_equal(td_store_ts_latest(f->st, &e, NULL, 0, &f->arena, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].kv.key, "hum");
  assert_int_equal(out[0].ts, 1500);
  const char **keys;
  assert_int_equal(td_store_ts_keys(f->st, &e, &f->arena, &keys, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(keys[0], "hum");
  assert_string_equal(keys[1], "temp");

  /* raw: start inclusive, end exclusive, order and limit */
  struct td_ts_query q = {.key = "temp", .start_ts = 1000, .end_ts = 1900, .agg = TD_AGG_NONE};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 9);
  assert_int_equal(out[0].ts, 1000);
  assert_int_equal(out[8].ts, 1800);
  q.order_desc = true;
  q.limit = 3;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(out[0].ts, 1800);
  assert_int_equal(out[2].ts, 1600);
  q.key = "nosuch";
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 0);

  /* aggregation: [1000, 2000) in 400 ms buckets: [1000,1400) [1400,1800) [1800,2000) */
  q = (struct td_ts_query){.key = "temp", .start_ts = 1000, .end_ts = 2000, .interval = 400};
  q.agg = TD_AGG_SUM;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(out[0].ts, 1200);
  assert_int_equal(out[1].ts, 1600);
  assert_int_equal(out[2].ts, 1900); /* last bucket clipped to endTs: 1800 + 200/2 */
  assert_int_equal(out[0].kv.type, TD_KV_LONG);
  assert_int_equal(out[0].kv.v.l, 0 + 1 + 2 + 3);
  assert_int_equal(out[1].kv.v.l, 4 + 5 + 6 + 7);
  assert_int_equal(out[2].kv.v.l, 8 + 9);
  assert_string_equal(out[0].kv.key, "temp");
  q.agg = TD_AGG_MIN;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[1].kv.type, TD_KV_LONG);
  assert_int_equal(out[1].kv.v.l, 4);
  q.agg = TD_AGG_MAX;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[2].kv.v.l, 9);
  q.agg = TD_AGG_AVG;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[0].kv.type, TD_KV_DOUBLE);
  assert_true(out[0].kv.v.d == 1.5);
  assert_true(out[2].kv.v.d == 8.5);
  q.agg = TD_AGG_COUNT;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[0].kv.type, TD_KV_LONG);
  assert_int_equal(out[0].kv.v.l, 4);
  assert_int_equal(out[2].kv.v.l, 2);
  /* one bucket over the range */
  q.interval = 0;
  q.agg = TD_AGG_COUNT;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].ts, 1500);
  assert_int_equal(out[0].kv.v.l, 10);
  /* mixed long/double: DOUBLE */
  q = (struct td_ts_query){.key = "hum", .start_ts = 0, .end_ts = 2000, .interval = 2000, .agg = TD_AGG_SUM};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].kv.type, TD_KV_DOUBLE);
  assert_true(out[0].kv.v.d == 2.5);
  q.agg = TD_AGG_MAX;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[0].kv.type, TD_KV_DOUBLE);
  assert_true(out[0].kv.v.d == 2.0);
  q.agg = TD_AGG_MIN;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_true(out[0].kv.v.d == 0.5);
  /* too many buckets */
  q = (struct td_ts_query){.key = "temp", .start_ts = 0, .end_ts = 701, .interval = 1, .agg = TD_AGG_AVG};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), TD_EINVAL);
  q.end_ts = 700;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(td_agg_parse("AVG"), TD_AGG_AVG);
  assert_int_equal(td_agg_parse("avg"), -1);

  /* strings and booleans are stored in their own columns; COUNT counts them */
  struct td_ts_point sp[] = {{.ts = 10, .kv = {.key = "state", .type = TD_KV_STRING, .v.s = "on"}},
                             {.ts = 20, .kv = {.key = "state", .type = TD_KV_BOOLEAN, .v.b = false}}};
  assert_int_equal(td_store_ts_save(f->st, &e, sp, 2, 0), 0);
  q = (struct td_ts_query){.key = "state", .start_ts = 0, .end_ts = 100, .limit = 10};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(out[0].kv.type, TD_KV_STRING);
  assert_string_equal(out[0].kv.v.s, "on");
  assert_int_equal(out[1].kv.type, TD_KV_BOOLEAN);
  q.agg = TD_AGG_COUNT;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(out[0].kv.v.l, 2);
  q.agg = TD_AGG_SUM;
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 0);

  /* replace on the same (entity, key, ts) */
  struct td_ts_point rep = {.ts = 1000, .kv = {.key = "temp", .type = TD_KV_DOUBLE, .v.d = 7.25}};
  assert_int_equal(td_store_ts_save(f->st, &e, &rep, 1, 0), 0);
  q = (struct td_ts_query){.key = "temp", .start_ts = 1000, .end_ts = 1001};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_true(out[0].kv.v.d == 7.25);

  /* delete [1800, 2000) with latest rewrite: latest falls back to 1700 */
  assert_int_equal(td_store_ts_delete(f->st, &e, k_temp, 1, false, 1800, 2000, true, true), 0);
  assert_int_equal(td_store_ts_latest(f->st, &e, k_temp, 1, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].ts, 1700);
  assert_int_equal(out[0].kv.v.l, 7);
  /* delete all of temp with latest, no rewrite */
  assert_int_equal(td_store_ts_delete(f->st, &e, k_temp, 1, true, 0, 0, true, false), 0);
  assert_int_equal(td_store_ts_latest(f->st, &e, k_temp, 1, &f->arena, &out, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(td_store_ts_count(f->st, &e, &cnt), 0);
  assert_int_equal(cnt, 4); /* hum x2, state x2 */
  /* all keys */
  assert_int_equal(td_store_ts_delete(f->st, &e, NULL, 0, true, 0, 0, true, false), 0);
  assert_int_equal(td_store_ts_count(f->st, &e, &cnt), 0);
  assert_int_equal(cnt, 0);
  assert_int_equal(td_store_ts_keys(f->st, &e, &f->arena, &keys, &n), 0);
  assert_int_equal(n, 0);
}

static void test_transactions(void **state) {
  struct fx *f = *state;
  struct td_entity_id e = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  assert_int_equal(td_store_begin(f->st), 0);
  assert_int_equal(td_store_begin(f->st), TD_EINVAL);
  struct td_ts_point p = {.ts = 1, .kv = {.key = "fresh-key", .type = TD_KV_LONG, .v.l = 1}};
  assert_int_equal(td_store_ts_save(f->st, &e, &p, 1, 0), 0);
  assert_int_equal(td_store_rollback(f->st), 0);
  int64_t cnt;
  assert_int_equal(td_store_ts_count(f->st, &e, &cnt), 0);
  assert_int_equal(cnt, 0);
  /* the rolled-back dictionary entry must not be served from the cache */
  struct td_ts_point q = {.ts = 2, .kv = {.key = "other-key", .type = TD_KV_LONG, .v.l = 2}};
  assert_int_equal(td_store_ts_save(f->st, &e, &q, 1, 0), 0);
  assert_int_equal(td_store_ts_save(f->st, &e, &p, 1, 0), 0);
  struct td_ts_point *out;
  size_t n;
  assert_int_equal(td_store_ts_latest(f->st, &e, NULL, 0, &f->arena, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].kv.key, "fresh-key");
  assert_int_equal(out[0].kv.v.l, 1);
  assert_string_equal(out[1].kv.key, "other-key");
  assert_int_equal(out[1].kv.v.l, 2);
  assert_int_equal(td_store_commit(f->st), TD_EINVAL);
}

/* Inside a transaction the SQLite backend defers telemetry to the commit
 * (sorted ts_kv inserts, one ts_kv_latest upsert per key): the outcome must be
 * the same as writing every point at once. */
static void test_transaction_deferred_ts(void **state) {
  struct fx *f = *state;
  struct td_entity_id e = {TD_ENTITY_DEVICE}, e2 = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  td_uuid_new(&e2.id);
  /* a stored latest value newer than anything saved below must survive */
  struct td_ts_point newer = {.ts = 5000, .kv = {.key = "kept", .type = TD_KV_LONG, .v.l = 50}};
  assert_int_equal(td_store_ts_save(f->st, &e, &newer, 1, 0), 0);

  assert_int_equal(td_store_begin(f->st), 0);
  char text[16];
  for (int i = 0; i < 5; i++) {
    /* the caller's string is reused after each save: the store must copy */
    snprintf(text, sizeof text, "v%d", i);
    struct td_ts_point p[3] = {
        {.ts = 100 + i * 10, .kv = {.key = "s", .type = TD_KV_STRING, .v.s = text}},
        {.ts = 300 - i * 10, .kv = {.key = "down", .type = TD_KV_LONG, .v.l = i}},
        {.ts = 4000, .kv = {.key = "kept", .type = TD_KV_LONG, .v.l = i}},
    };
    assert_int_equal(td_store_ts_save(f->st, i % 2 ? &e2 : &e, p, 3, 0), 0);
    strcpy(text, "XXXX");
  }
  /* the same (entity, key, ts) twice: the later point wins, in ts_kv and latest */
  struct td_ts_point tie1 = {.ts = 900, .kv = {.key = "tie", .type = TD_KV_LONG, .v.l = 1}};
  struct td_ts_point tie2 = {.ts = 900, .kv = {.key = "tie", .type = TD_KV_DOUBLE, .v.d = 2.5}};
  assert_int_equal(td_store_ts_save(f->st, &e, &tie1, 1, 0), 0);
  assert_int_equal(td_store_ts_save(f->st, &e, &tie2, 1, 0), 0);
  /* reads inside the transaction see the deferred points */
  int64_t cnt;
  assert_int_equal(td_store_ts_count(f->st, &e, &cnt), 0);
  assert_int_equal(cnt, 3 + 3 + 2 + 1); /* i = 0, 2, 4: s, down, kept (one row at 4000, one at 5000), tie */
  assert_int_equal(td_store_commit(f->st), 0);

  struct td_ts_point *out;
  size_t n;
  const char *ks[] = {"s", "down", "kept", "tie"};
  assert_int_equal(td_store_ts_latest(f->st, &e, ks, 4, &f->arena, &out, &n), 0);
  assert_int_equal(n, 4);
  assert_int_equal(out[0].ts, 140); /* i = 4 */
  assert_int_equal(out[0].kv.type, TD_KV_STRING);
  assert_string_equal(out[0].kv.v.s, "v4");
  assert_int_equal(out[1].ts, 300); /* i = 0: the newest, though saved first */
  assert_int_equal(out[1].kv.v.l, 0);
  assert_int_equal(out[2].ts, 5000); /* only forward */
  assert_int_equal(out[2].kv.v.l, 50);
  assert_int_equal(out[3].kv.type, TD_KV_DOUBLE);
  assert_true(out[3].kv.v.d == 2.5);
  assert_int_equal(td_store_ts_latest(f->st, &e2, ks, 2, &f->arena, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].kv.v.s, "v3");
  assert_int_equal(out[1].ts, 290);
  struct td_ts_query q = {.key = "tie", .start_ts = 0, .end_ts = 10000, .agg = TD_AGG_NONE};
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(out[0].kv.type, TD_KV_DOUBLE);
  q.key = "s";
  assert_int_equal(td_store_ts_query(f->st, &e, &q, &f->arena, &out, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(out[0].kv.v.s, "v0");
  assert_string_equal(out[2].kv.v.s, "v4");

  /* deleting inside the transaction applies after the deferred points */
  assert_int_equal(td_store_begin(f->st), 0);
  struct td_ts_point later = {.ts = 6000, .kv = {.key = "down", .type = TD_KV_LONG, .v.l = 7}};
  assert_int_equal(td_store_ts_save(f->st, &e2, &later, 1, 0), 0);
  const char *kd[] = {"down"};
  assert_int_equal(td_store_ts_delete(f->st, &e2, kd, 1, true, 0, 0, true, false), 0);
  assert_int_equal(td_store_commit(f->st), 0);
  assert_int_equal(td_store_ts_latest(f->st, &e2, kd, 1, &f->arena, &out, &n), 0);
  assert_int_equal(n, 0);

  /* a rollback drops them */
  assert_int_equal(td_store_begin(f->st), 0);
  assert_int_equal(td_store_ts_save(f->st, &e2, &later, 1, 0), 0);
  assert_int_equal(td_store_rollback(f->st), 0);
  assert_int_equal(td_store_ts_latest(f->st, &e2, kd, 1, &f->arena, &out, &n), 0);
  assert_int_equal(n, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migrations_idempotent),
      cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tenant_crud_version, setup, teardown),
      cmocka_unit_test_setup_teardown(test_customers_users, setup, teardown),
      cmocka_unit_test_setup_teardown(test_devices_paging, setup, teardown),
      cmocka_unit_test_setup_teardown(test_credentials_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cascades, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rule_chains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_attributes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeseries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transaction_deferred_ts, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
