/* install.c — schema, signing key, system administrator and demo data (install.h). */
#include "server/install.h"
#include "base/err.h"
#include "base/log.h"
#include "core/auth.h"
#include "core/tenant_defaults.h"

#include <stdlib.h>
#include <string.h>

#define KEY_JWT "security.jwt.signing_key"
#define KEY_INSTALLED "install.system"
#define KEY_DEMO "install.demo"

static json_t *eid(const char *type, const struct td_uuid *id) {
  char s[TD_UUID_STR_LEN + 1];
  return json_pack("{s:s,s:s}", "entityType", type, "id", td_uuid_fmt(id, s));
}

static int id_of(json_t *entity, struct td_uuid *out) {
  return td_uuid_parse(json_string_value(json_object_get(json_object_get(entity, "id"), "id")), out);
}

/* The key is kept as hex text in the system key/value table. */
static int load_or_create_key(struct td_store *st, unsigned char **key, size_t *len) {
  static const char hex[] = "0123456789abcdef";
  enum { KEYLEN = 64 };
  char *text = NULL;
  int rc = td_store_kv_get(st, KEY_JWT, &text);
  *key = malloc(KEYLEN);
  if (!*key) { free(text); return TD_ENOMEM; }
  if (rc == TD_ENOTFOUND) {
    char enc[2 * KEYLEN + 1];
    if ((rc = td_random_bytes(*key, KEYLEN))) return rc;
    for (int i = 0; i < KEYLEN; i++) {
      enc[2 * i] = hex[(*key)[i] >> 4];
      enc[2 * i + 1] = hex[(*key)[i] & 15];
    }
    enc[2 * KEYLEN] = '\0';
    if ((rc = td_store_kv_put(st, KEY_JWT, enc))) return rc;
    td_log(TD_LOG_INFO, "install", "action=\"generated JWT signing key\"");
    *len = KEYLEN;
    return 0;
  }
  if (rc) return rc;
  if (strlen(text) != 2 * KEYLEN) { free(text); return TD_ECORRUPT; }
  for (int i = 0; i < KEYLEN; i++) {
    const char *p = strchr(hex, text[2 * i]), *q = strchr(hex, text[2 * i + 1]);
    if (!p || !q || !*p || !*q) { free(text); return TD_ECORRUPT; }
    (*key)[i] = (unsigned char)((p - hex) << 4 | (q - hex));
  }
  free(text);
  *len = KEYLEN;
  return 0;
}

/* create_user: a user with an active password (install and demo only). */
static int create_user(struct td_store *st, const char *email, const char *authority, const struct td_uuid *tenant,
                       const struct td_uuid *customer, const char *first, const char *last, const char *password) {
  json_t *u = json_pack("{s:s,s:s,s:s?,s:s?,s:{}}", "email", email, "authority", authority, "firstName", first,
                        "lastName", last, "additionalInfo");
  json_object_set_new(u, "tenantId", eid("TENANT", tenant ? tenant : td_uuid_null()));
  json_object_set_new(u, "customerId", eid("CUSTOMER", customer ? customer : td_uuid_null()));
  json_t *saved = NULL;
  int rc = td_store_user_save(st, u, &saved);
  json_decref(u);
  if (rc) return rc;
  struct td_user_credentials c;
  memset(&c, 0, sizeof c);
  rc = id_of(saved, &c.user_id);
  json_decref(saved);
  if (rc) return rc;
  c.enabled = true;
  if ((rc = td_auth_password_hash(password, c.password_hash))) return rc;
  return td_store_user_credentials_put(st, &c);
}

static int create_customer(struct td_store *st, const struct td_uuid *tenant, const char *title, struct td_uuid *out) {
  json_t *c = json_pack("{s:s,s:{}}", "title", title, "additionalInfo");
  json_object_set_new(c, "tenantId", eid("TENANT", tenant));
  json_t *saved = NULL;
  int rc = td_store_customer_save(st, c, &saved);
  json_decref(c);
  if (!rc) rc = id_of(saved, out);
  json_decref(saved);
  return rc;
}

static int create_device(struct td_store *st, const struct td_uuid *tenant, const struct td_uuid *customer,
                         const struct td_uuid *profile, const char *name, const char *token) {
  json_t *d = json_pack("{s:s,s:s,s:{s:b,s:s}}", "name", name, "type", "default", "additionalInfo", "gateway", 0,
                        "description", "");
  json_object_set_new(d, "tenantId", eid("TENANT", tenant));
  json_object_set_new(d, "customerId", eid("CUSTOMER", customer ? customer : td_uuid_null()));
  json_object_set_new(d, "deviceProfileId", eid("DEVICE_PROFILE", profile));
  json_t *saved = NULL;
  int rc = td_store_device_save(st, d, &saved);
  json_decref(d);
  if (rc) return rc;
  json_t *cred = json_pack("{s:O,s:s,s:s,s:n}", "deviceId", json_object_get(saved, "id"), "credentialsType",
                           "ACCESS_TOKEN", "credentialsId", token, "credentialsValue");
  json_decref(saved);
  json_t *cs = NULL;
  rc = td_store_device_credentials_save(st, cred, &cs);
  json_decref(cred);
  json_decref(cs);
  return rc;
}

static int load_demo(struct td_store *st) {
  json_t *t = json_pack("{s:s,s:s,s:{}}", "title", "Tenant", "region", "Global", "additionalInfo");
  json_t *saved = NULL;
  int rc = td_store_tenant_save(st, t, &saved);
  json_decref(t);
  struct td_uuid tenant;
  if (!rc) rc = id_of(saved, &tenant);
  json_decref(saved);
  if (rc) return rc;
  if ((rc = td_tenant_defaults_create(st, &tenant))) return rc;
  if ((rc = create_user(st, "tenant@thingsboard.org", "TENANT_ADMIN", &tenant, NULL, NULL, NULL, "tenant"))) return rc;

  struct td_uuid cust[3];
  static const char *const titles[] = {"Customer A", "Customer B", "Customer C"};
  static const char *const emails[] = {"customerA@thingsboard.org", "customerB@thingsboard.org", "customerC@thingsboard.org"};
  for (int i = 0; i < 3; i++) {
    if ((rc = create_customer(st, &tenant, titles[i], &cust[i]))) return rc;
    if ((rc = create_user(st, emails[i], "CUSTOMER_USER", &tenant, &cust[i], NULL, NULL, "customer"))) return rc;
  }
  if ((rc = create_user(st, "customer@thingsboard.org", "CUSTOMER_USER", &tenant, &cust[0], NULL, NULL, "customer")))
    return rc;

  json_t *profile = NULL;
  struct td_uuid profile_id;
  if ((rc = td_store_device_profile_default(st, &tenant, &profile))) return rc;
  rc = id_of(profile, &profile_id);
  json_decref(profile);
  if (rc) return rc;

  static const struct { const char *name, *token; int customer; } devices[] = {
    {"Test Device A1", "A1_TEST_TOKEN", 0}, {"Test Device A2", "A2_TEST_TOKEN", 0},
    {"Test Device A3", "A3_TEST_TOKEN", 0}, {"Test Device B1", "B1_TEST_TOKEN", 1},
    {"Test Device C1", "C1_TEST_TOKEN", 2}, {"DHT11 Demo Device", "DHT11_DEMO_TOKEN", -1},
    {"Raspberry Pi Demo Device", "RASPBERRY_PI_DEMO_TOKEN", -1},
  };
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
    rc = create_device(st, &tenant, devices[i].customer >= 0 ? &cust[devices[i].customer] : NULL, &profile_id,
                       devices[i].name, devices[i].token);
    if (rc) return rc;
  }
  return 0;
}

int td_install_run(struct td_store *st, bool demo, unsigned char **jwt_key, size_t *jwt_key_len) {
  int rc = td_store_begin(st);
  if (rc) return rc;
  rc = load_or_create_key(st, jwt_key, jwt_key_len);
  char *mark = NULL;
  if (!rc && td_store_kv_get(st, KEY_INSTALLED, &mark) == TD_ENOTFOUND) {
    rc = create_user(st, "sysadmin@thingsboard.org", "SYS_ADMIN", NULL, NULL, NULL, NULL, "sysadmin");
    if (!rc) rc = td_store_kv_put(st, KEY_INSTALLED, "1");
    if (!rc) td_log(TD_LOG_INFO, "install", "action=\"created system administrator\" email=sysadmin@thingsboard.org");
  }
  free(mark);
  mark = NULL;
  if (!rc && demo && td_store_kv_get(st, KEY_DEMO, &mark) == TD_ENOTFOUND) {
    rc = load_demo(st);
    if (!rc) rc = td_store_kv_put(st, KEY_DEMO, "1");
    if (!rc) td_log(TD_LOG_INFO, "install", "action=\"loaded demo data\" tenant=tenant@thingsboard.org");
  }
  free(mark);
  if (rc) {
    td_store_rollback(st);
    td_log(TD_LOG_ERROR, "install", "action=\"installing\" err=%s", td_errname(rc));
    return rc;
  }
  return td_store_commit(st);
}
