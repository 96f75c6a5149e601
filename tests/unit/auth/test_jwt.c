/* test_jwt.c — unit tests of src/core/auth.c: JWT HS512 sign/verify, expiry,
 * forgery, alg none, malformed tokens, revocation, bcrypt hashes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/time.h"
#include "core/auth.h"

static struct td_config cfg;
static const unsigned char key[64] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static struct td_auth *mk(void) {
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.jwt_issuer, sizeof cfg.jwt_issuer, "thingsboard.io");
  cfg.jwt_token_expiration_s = 9000;
  cfg.jwt_refresh_token_expiration_s = 604800;
  struct td_auth *a = NULL;
  assert_int_equal(td_auth_new(&cfg, key, sizeof key, &a), 0);
  return a;
}

static void tenant_user(struct td_auth_user *u) {
  memset(u, 0, sizeof *u);
  u->email = "tenant@thingsboard.org";
  u->first_name = "Ten";
  u->last_name = "Ant";
  u->authority = TD_AUTHORITY_TENANT_ADMIN;
  td_uuid_new(&u->user_id);
  td_uuid_new(&u->tenant_id);
  u->customer_id = *td_uuid_null();
  u->enabled = true;
}

/* b64 helpers for building hostile tokens */
static char *b64u(const void *p, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *s = p;
  char *o = malloc(n * 2 + 4);
  size_t k = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    o[k++] = t[v >> 18 & 63]; o[k++] = t[v >> 12 & 63]; o[k++] = t[v >> 6 & 63]; o[k++] = t[v & 63];
  }
  if (n - i == 1) { uint32_t v = (uint32_t)s[i] << 16; o[k++] = t[v >> 18 & 63]; o[k++] = t[v >> 12 & 63]; }
  if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    o[k++] = t[v >> 18 & 63]; o[k++] = t[v >> 12 & 63]; o[k++] = t[v >> 6 & 63];
  }
  o[k] = 0;
  return o;
}

/* sign_raw: header and claims given as JSON text, signed with `k`. */
static char *sign_raw(const char *hdr, const char *claims, const unsigned char *k, size_t klen) {
  char *h = b64u(hdr, strlen(hdr)), *c = b64u(claims, strlen(claims));
  size_t n = strlen(h) + strlen(c) + 2;
  char *si = malloc(n);
  snprintf(si, n, "%s.%s", h, c);
  unsigned char mac[64];
  unsigned int ml = 0;
  HMAC(EVP_sha512(), k, (int)klen, (unsigned char *)si, strlen(si), mac, &ml);
  char *s = b64u(mac, ml);
  char *out = malloc(strlen(si) + strlen(s) + 2);
  sprintf(out, "%s.%s", si, s);
  free(h); free(c); free(si); free(s);
  return out;
}

static void test_round_trip(void **st) {
  struct td_auth *a = mk();
  struct td_auth_user u;
  tenant_user(&u);
  char *t = NULL, *r = NULL;
  assert_int_equal(td_auth_issue_pair(a, &u, NULL, &t, &r), 0);
  assert_int_equal(strncmp(t, "eyJhbGciOiJIUzUxMiJ9.", 21), 0); /* {"alg":"HS512"} */
  struct td_auth_principal p, pr;
  int64_t now = td_now_ms() / 1000;
  assert_int_equal(td_auth_verify(a, t, now, &p), 0);
  assert_int_equal(p.authority, TD_AUTHORITY_TENANT_ADMIN);
  assert_true(td_uuid_eq(&p.user_id, &u.user_id));
  assert_true(td_uuid_eq(&p.tenant_id, &u.tenant_id));
  assert_true(td_uuid_is_null(&p.customer_id));
  assert_string_equal(p.email, "tenant@thingsboard.org");
  assert_int_equal(p.exp - p.iat, 9000);
  assert_true(p.enabled);
  assert_int_equal(td_auth_verify(a, r, now, &pr), 0);
  assert_int_equal(pr.authority, TD_AUTHORITY_REFRESH_TOKEN);
  assert_int_equal(pr.exp - pr.iat, 604800);
  assert_true(td_uuid_eq(&p.session_id, &pr.session_id));

  /* sysadmin: no customerId claim */
  struct td_auth_user s = u;
  s.authority = TD_AUTHORITY_SYS_ADMIN;
  s.tenant_id = *td_uuid_null();
  struct td_uuid sid;
  td_uuid_random(&sid);
  char *ts = NULL;
  assert_int_equal(td_auth_sign(a, &s, &sid, false, now, &ts), 0);
  const char *d1 = strchr(ts, '.'), *d2 = strchr(d1 + 1, '.');
  assert_non_null(d2);
  assert_int_equal(td_auth_verify(a, ts, now, &p), 0);
  assert_int_equal(p.authority, TD_AUTHORITY_SYS_ADMIN);
  free(ts);
  free(t);
  free(r);
  td_auth_free(a);
}

static void test_expired(void **st) {
  struct td_auth *a = mk();
  struct td_auth_user u;
  tenant_user(&u);
  struct td_uuid sid;
  td_uuid_random(&sid);
  char *t = NULL;
  int64_t now = 1700000000;
  assert_int_equal(td_auth_sign(a, &u, &sid, false, now, &t), 0);
  struct td_auth_principal p;
  assert_int_equal(td_auth_verify(a, t, now + 8999, &p), 0);
  assert_int_equal(td_auth_verify(a, t, now + 9000, &p), TD_ETIMEDOUT);
  assert_int_equal(td_auth_verify(a, t, now + 100000, &p), TD_ETIMEDOUT);
  free(t);
  td_auth_free(a);
}

static void test_forged(void **st) {
  struct td_auth *a = mk();
  struct td_auth_user u;
  tenant_user(&u);
  char *t = NULL, *r = NULL;
  assert_int_equal(td_auth_issue_pair(a, &u, NULL, &t, &r), 0);
  int64_t now = td_now_ms() / 1000;
  struct td_auth_principal p;
  /* flip one signature character */
  char *f = strdup(t);
  size_t n = strlen(f);
  f[n - 3] = f[n - 3] == 'A' ? 'B' : 'A';
  assert_int_equal(td_auth_verify(a, f, now, &p), TD_EAUTH);
  free(f);
  /* same claims signed with another key */
  char claims[512];
  snprintf(claims, sizeof claims,
           "{\"sub\":\"x@y\",\"userId\":\"%s\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"thingsboard.io\",\"iat\":%lld,"
           "\"exp\":%lld}",
           "13814000-1dd2-11b2-8080-808080808080", (long long)now, (long long)now + 100);
  char *other = sign_raw("{\"alg\":\"HS512\"}", claims, (const unsigned char *)"another key", 11);
  assert_int_equal(td_auth_verify(a, other, now, &p), TD_EAUTH);
  free(other);
  /* the right key works for the same hand-made token (the test builder is sound) */
  char *good = sign_raw("{\"alg\":\"HS512\"}", claims, key, sizeof key);
  assert_int_equal(td_auth_verify(a, good, now, &p), 0);
  assert_int_equal(p.authority, TD_AUTHORITY_SYS_ADMIN);
  free(good);
  /* HS256 with the right key is refused (only HS512) */
  char *hs256 = sign_raw("{\"alg\":\"HS256\"}", claims, key, sizeof key);
  assert_int_equal(td_auth_verify(a, hs256, now, &p), TD_EAUTH);
  free(hs256);
  /* wrong issuer */
  char claims2[512];
  snprintf(claims2, sizeof claims2,
           "{\"sub\":\"x@y\",\"userId\":\"%s\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"evil\",\"iat\":%lld,\"exp\":%lld}",
           "13814000-1dd2-11b2-8080-808080808080", (long long)now, (long long)now + 100);
  char *iss = sign_raw("{\"alg\":\"HS512\"}", claims2, key, sizeof key);
  assert_int_equal(td_auth_verify(a, iss, now, &p), TD_EAUTH);
  free(iss);
  /* payload swapped under the original signature */
  const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
  char *pl = b64u(claims, strlen(claims));
  char *sw = malloc(strlen(t) + strlen(pl) + 4);
  sprintf(sw, "%.*s.%s%s", (int)(d1 - t), t, pl, d2);
  assert_int_equal(td_auth_verify(a, sw, now, &p), TD_EAUTH);
  free(sw);
  free(pl);
  free(t);
  free(r);
  td_auth_free(a);
}

static void test_alg_none(void **st) {
  struct td_auth *a = mk();
  int64_t now = td_now_ms() / 1000;
  char claims[512];
  snprintf(claims, sizeof claims,
           "{\"sub\":\"x@y\",\"userId\":\"13814000-1dd2-11b2-8080-808080808080\",\"scopes\":[\"SYS_ADMIN\"],"
           "\"iss\":\"thingsboard.io\",\"iat\":%lld,\"exp\":%lld}",
           (long long)now, (long long)now + 100);
  char *h = b64u("{\"alg\":\"none\",\"typ\":\"JWT\"}", 27), *c = b64u(claims, strlen(claims));
  char tok[2048];
  struct td_auth_principal p;
  snprintf(tok, sizeof tok, "%s.%s.", h, c);
  assert_int_equal(td_auth_verify(a, tok, now, &p), TD_EAUTH);
  snprintf(tok, sizeof tok, "%s.%s", h, c);
  assert_int_equal(td_auth_verify(a, tok, now, &p), TD_EAUTH);
  /* none header with a valid HS512 signature of the same bytes is still refused */
  char *signed_none = sign_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, key, sizeof key);
  assert_int_equal(td_auth_verify(a, signed_none, now, &p), TD_EAUTH);
  assert_int_equal(p.authority, TD_AUTHORITY_NONE);
  free(signed_none);
  free(h);
  free(c);
  td_auth_free(a);
}

static void test_malformed(void **st) {
  struct td_auth *a = mk();
  struct td_auth_principal p;
  int64_t now = td_now_ms() / 1000;
  const char *bad[] = {"", ".", "..", "...", "a.b.c", "eyJhbGciOiJIUzUxMiJ9..", "eyJhbGciOiJIUzUxMiJ9.e30.",
                       "eyJhbGciOiJIUzUxMiJ9.e30.AAAA", "a.b.c.d", "eyJhbGciOiJIUzUxMiJ9.e30=.AAAA",
                       "garbage", "Bearer x.y.z", "eyJhbGciOiJIUzUxMiJ9.!!!.AAAA"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_int_equal(td_auth_verify(a, bad[i], now, &p), TD_EAUTH);
  assert_int_equal(td_auth_verify(a, NULL, now, &p), TD_EAUTH);
  /* over-long token */
  char *big = malloc(20000);
  memset(big, 'A', 19999);
  big[19999] = 0;
  big[100] = '.';
  big[200] = '.';
  assert_int_equal(td_auth_verify(a, big, now, &p), TD_EAUTH);
  free(big);
  /* validly signed but structurally wrong claims */
  const char *claims[] = {
      "[]", "{\"sub\":\"a\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"thingsboard.io\",\"exp\":99999999999}", /* no userId */
      "{\"sub\":\"a\",\"userId\":\"13814000-1dd2-11b2-8080-808080808080\",\"scopes\":[\"ROOT\"],\"iss\":\"thingsboard.io\",\"exp\":99999999999}",
      "{\"sub\":\"a\",\"userId\":\"13814000-1dd2-11b2-8080-808080808080\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"thingsboard.io\"}",
      "{\"sub\":\"a\",\"userId\":\"13814000-1dd2-11b2-8080-808080808080\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"thingsboard.io\",\"exp\":\"9\"}",
      "{\"sub\":\"a\",\"userId\":\"not-a-uuid\",\"scopes\":[\"SYS_ADMIN\"],\"iss\":\"thingsboard.io\",\"exp\":99999999999}",
      /* tenant admin without tenantId */
      "{\"sub\":\"a\",\"userId\":\"13814000-1dd2-11b2-8080-808080808080\",\"scopes\":[\"TENANT_ADMIN\"],\"iss\":\"thingsboard.io\",\"exp\":99999999999}",
  };
  for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
    char *t = sign_raw("{\"alg\":\"HS512\"}", claims[i], key, sizeof key);
    assert_int_equal(td_auth_verify(a, t, now, &p), TD_EAUTH);
    free(t);
  }
  td_auth_free(a);
}

static void test_revocation(void **st) {
  struct td_auth *a = mk();
  struct td_auth_user u;
  tenant_user(&u);
  char *t = NULL, *r = NULL, *t2 = NULL, *r2 = NULL;
  assert_int_equal(td_auth_issue_pair(a, &u, NULL, &t, &r), 0);
  assert_int_equal(td_auth_issue_pair(a, &u, NULL, &t2, &r2), 0);
  int64_t now = td_now_ms() / 1000;
  struct td_auth_principal p;
  assert_int_equal(td_auth_verify(a, t, now, &p), 0);
  td_auth_revoke_session(a, &p.session_id, now);
  assert_int_equal(td_auth_verify(a, t, now, &p), TD_ETIMEDOUT);
  assert_int_equal(td_auth_verify(a, r, now, &p), TD_ETIMEDOUT);
  assert_int_equal(td_auth_verify(a, t2, now, &p), 0); /* other session unaffected */
  /* outdating the user refuses tokens issued in earlier seconds only */
  td_auth_outdate_user(a, &u.user_id, now + 1);
  assert_int_equal(td_auth_verify(a, t2, now + 1, &p), TD_ETIMEDOUT);
  struct td_uuid sid;
  td_uuid_random(&sid);
  char *t3 = NULL;
  assert_int_equal(td_auth_sign(a, &u, &sid, false, now + 1, &t3), 0);
  assert_int_equal(td_auth_verify(a, t3, now + 1, &p), 0);
  /* many logouts: bounded table keeps working */
  for (int i = 0; i < 9000; i++) {
    struct td_uuid s;
    td_uuid_random(&s);
    td_auth_revoke_session(a, &s, now);
  }
  assert_int_equal(td_auth_verify(a, t3, now + 1, &p), 0);
  free(t); free(r); free(t2); free(r2); free(t3);
  td_auth_free(a);
}

static void test_bcrypt(void **st) {
  char h[128];
  assert_int_equal(td_auth_password_hash("s3cret", h), 0);
  assert_int_equal(strncmp(h, "$2a$10$", 7), 0);
  assert_int_equal(strlen(h), 60);
  assert_true(td_auth_password_check("s3cret", h));
  assert_false(td_auth_password_check("s3cret ", h));
  assert_false(td_auth_password_check("", h));
  char h2[128];
  assert_int_equal(td_auth_password_hash("s3cret", h2), 0);
  assert_string_not_equal(h, h2); /* salted */
  /* ThingsBoard's sysadmin hash */
  const char *tb = "$2a$10$5JTB8/hxWc9WAy62nCGSxeefl3KWmipA9nFpVdDa0/xfIseeBB4Bu";
  assert_true(td_auth_password_check("sysadmin", tb));
  assert_false(td_auth_password_check("sysadmin1", tb));
  assert_false(td_auth_password_check("sysadmin", ""));
  assert_false(td_auth_password_check("sysadmin", "plain"));
  assert_false(td_auth_password_check("sysadmin", "$2a$10$short"));
  assert_false(td_auth_password_check("x", NULL));
}

static void test_random_token(void **st) {
  char a[21], b[21];
  assert_int_equal(td_auth_random_token(a, sizeof a), 0);
  assert_int_equal(td_auth_random_token(b, sizeof b), 0);
  assert_int_equal(strlen(a), 20);
  assert_string_not_equal(a, b);
  for (int i = 0; i < 20; i++) assert_true((a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9'));
  assert_int_equal(td_authority_parse("CUSTOMER_USER"), TD_AUTHORITY_CUSTOMER_USER);
  assert_int_equal(td_authority_parse("customer_user"), TD_AUTHORITY_NONE);
  assert_string_equal(td_authority_name(TD_AUTHORITY_SYS_ADMIN), "SYS_ADMIN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip), cmocka_unit_test(test_expired),    cmocka_unit_test(test_forged),
      cmocka_unit_test(test_alg_none),   cmocka_unit_test(test_malformed),  cmocka_unit_test(test_revocation),
      cmocka_unit_test(test_bcrypt),     cmocka_unit_test(test_random_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
