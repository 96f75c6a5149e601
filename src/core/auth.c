/* auth.c — JWT HS512 (OpenSSL HMAC + jansson), bcrypt via libcrypt, and the
 * in-memory revocation tables (auth.h). Used by src/api on the I/O loops
 * (verify) and on storage threads (hash, sign). */
#include "core/auth.h"
#include <crypt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/time.h"

#define MAX_TOKEN_LEN 8192
#define REVOKE_CAP 8192

/* A bounded set of ids with a value and an expiry (seconds). */
struct idset {
  struct idset_entry { struct td_uuid id; int64_t value; int64_t expires; } e[REVOKE_CAP];
  size_t n;
};

struct td_auth {
  unsigned char key[256];
  size_t keylen;
  char issuer[128];
  int64_t access_ttl, refresh_ttl;
  pthread_mutex_t mu;
  struct idset sessions; /* value unused */
  struct idset users;    /* value = not-before (s) */
};

static const char *const authority_names[] = {"", "SYS_ADMIN", "TENANT_ADMIN", "CUSTOMER_USER", "REFRESH_TOKEN"};

const char *td_authority_name(enum td_authority a) {
  return (unsigned)a <= TD_AUTHORITY_REFRESH_TOKEN ? authority_names[a] : "";
}

enum td_authority td_authority_parse(const char *s) {
  if (!s) return TD_AUTHORITY_NONE;
  for (int i = 1; i <= TD_AUTHORITY_REFRESH_TOKEN; i++)
    if (strcmp(s, authority_names[i]) == 0) return (enum td_authority)i;
  return TD_AUTHORITY_NONE;
}

int td_auth_new(const struct td_config *cfg, const unsigned char *key, size_t keylen, struct td_auth **out) {
  if (!cfg || !key || keylen == 0 || keylen > sizeof((struct td_auth *)0)->key || !out) return TD_EINVAL;
  struct td_auth *a = calloc(1, sizeof *a);
  if (!a) return TD_ENOMEM;
  memcpy(a->key, key, keylen);
  a->keylen = keylen;
  snprintf(a->issuer, sizeof a->issuer, "%s", cfg->jwt_issuer[0] ? cfg->jwt_issuer : "thingsboard.io");
  a->access_ttl = cfg->jwt_token_expiration_s > 0 ? cfg->jwt_token_expiration_s : 9000;
  a->refresh_ttl = cfg->jwt_refresh_token_expiration_s > 0 ? cfg->jwt_refresh_token_expiration_s : 604800;
  pthread_mutex_init(&a->mu, NULL);
  *out = a;
  return 0;
}

void td_auth_free(struct td_auth *a) {
  if (!a) return;
  OPENSSL_cleanse(a->key, sizeof a->key);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

int64_t td_auth_access_ttl(const struct td_auth *a) { return a->access_ttl; }
int64_t td_auth_refresh_ttl(const struct td_auth *a) { return a->refresh_ttl; }

/* ---- base64url (no padding) ---- */

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* b64url_encode: out must hold 4*ceil(n/3)+1 bytes; returns the length. */
static size_t b64url_encode(const unsigned char *p, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    out[o++] = b64u[v >> 18 & 63]; out[o++] = b64u[v >> 12 & 63];
    out[o++] = b64u[v >> 6 & 63]; out[o++] = b64u[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    out[o++] = b64u[v >> 18 & 63]; out[o++] = b64u[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    out[o++] = b64u[v >> 18 & 63]; out[o++] = b64u[v >> 12 & 63]; out[o++] = b64u[v >> 6 & 63];
  }
  out[o] = '\0';
  return o;
}

static int b64u_val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

/* b64url_decode: strict (no padding, no other characters, a lone trailing
 * char is invalid). out must hold n*3/4+1 bytes. Returns length or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out) {
  if (n % 4 == 1) return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64u_val(s[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return (long)o;
}

/* ---- signing ---- */

static void set_uuid(json_t *o, const char *k, const struct td_uuid *u) {
  char s[TD_UUID_STR_LEN + 1];
  json_object_set_new(o, k, json_string(td_uuid_fmt(u, s)));
}

int td_auth_sign(struct td_auth *a, const struct td_auth_user *u, const struct td_uuid *session_id, bool refresh,
                 int64_t now_s, char **out) {
  if (!a || !u || !u->email || !session_id || !out) return TD_EINVAL;
  json_t *c = json_object();
  if (!c) return TD_ENOMEM;
  json_object_set_new(c, "sub", json_string(u->email));
  set_uuid(c, "userId", &u->user_id);
  json_t *sc = json_array();
  json_array_append_new(sc, json_string(refresh ? "REFRESH_TOKEN" : td_authority_name(u->authority)));
  json_object_set_new(c, "scopes", sc);
  set_uuid(c, "sessionId", session_id);
  if (!refresh) {
    if (u->first_name) json_object_set_new(c, "firstName", json_string(u->first_name));
    if (u->last_name) json_object_set_new(c, "lastName", json_string(u->last_name));
    json_object_set_new(c, "enabled", json_boolean(u->enabled));
    json_object_set_new(c, "isPublic", json_boolean(u->is_public));
    set_uuid(c, "tenantId", td_uuid_is_zero(&u->tenant_id) ? td_uuid_null() : &u->tenant_id);
    if (u->authority != TD_AUTHORITY_SYS_ADMIN)
      set_uuid(c, "customerId", td_uuid_is_zero(&u->customer_id) ? td_uuid_null() : &u->customer_id);
  } else {
    json_object_set_new(c, "isPublic", json_boolean(u->is_public));
  }
  json_object_set_new(c, "iss", json_string(a->issuer));
  json_object_set_new(c, "iat", json_integer(now_s));
  json_object_set_new(c, "exp", json_integer(now_s + (refresh ? a->refresh_ttl : a->access_ttl)));
  char *payload = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  if (!payload) return TD_ENOMEM;

  static const char hdr[] = "{\"alg\":\"HS512\"}";
  size_t plen = strlen(payload);
  size_t cap = (sizeof hdr / 3 + 2) * 4 + (plen / 3 + 2) * 4 + (64 / 3 + 2) * 4 + 4;
  char *t = malloc(cap);
  if (!t) { free(payload); return TD_ENOMEM; }
  size_t n = b64url_encode((const unsigned char *)hdr, sizeof hdr - 1, t);
  t[n++] = '.';
  n += b64url_encode((const unsigned char *)payload, plen, t + n);
  free(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha512(), a->key, (int)a->keylen, (const unsigned char *)t, n, mac, &maclen)) {
    free(t);
    return TD_EIO;
  }
  t[n++] = '.';
  b64url_encode(mac, maclen, t + n);
  *out = t;
  return 0;
}

int td_auth_issue_pair(struct td_auth *a, const struct td_auth_user *u, const struct td_uuid *session_id,
                       char **token, char **refresh) {
  struct td_uuid sid;
  if (session_id) sid = *session_id;
  else td_uuid_random(&sid);
  int64_t now = td_now_ms() / 1000;
  char *t = NULL, *r = NULL;
  int rc = td_auth_sign(a, u, &sid, false, now, &t);
  if (rc == 0) rc = td_auth_sign(a, u, &sid, true, now, &r);
  if (rc) { free(t); free(r); return rc; }
  *token = t;
  *refresh = r;
  return 0;
}

/* ---- revocation tables ---- */

/* idset_put: insert or update; purges expired entries; when full, replaces
 * the entry that expires first. Caller holds a->mu. */
static void idset_put(struct idset *s, const struct td_uuid *id, int64_t value, int64_t expires, int64_t now) {
  size_t w = 0;
  for (size_t i = 0; i < s->n; i++)
    if (s->e[i].expires > now) s->e[w++] = s->e[i];
  s->n = w;
  for (size_t i = 0; i < s->n; i++)
    if (td_uuid_eq(&s->e[i].id, id)) {
      if (value > s->e[i].value) s->e[i].value = value;
      if (expires > s->e[i].expires) s->e[i].expires = expires;
      return;
    }
  size_t slot = s->n;
  if (s->n == REVOKE_CAP) {
    slot = 0;
    for (size_t i = 1; i < s->n; i++)
      if (s->e[i].expires < s->e[slot].expires) slot = i;
  } else {
    s->n++;
  }
  s->e[slot].id = *id;
  s->e[slot].value = value;
  s->e[slot].expires = expires;
}

static const struct idset_entry *idset_find(const struct idset *s, const struct td_uuid *id, int64_t now) {
  for (size_t i = 0; i < s->n; i++)
    if (s->e[i].expires > now && td_uuid_eq(&s->e[i].id, id)) return &s->e[i];
  return NULL;
}

void td_auth_revoke_session(struct td_auth *a, const struct td_uuid *session_id, int64_t now_s) {
  int64_t ttl = a->refresh_ttl > a->access_ttl ? a->refresh_ttl : a->access_ttl;
  pthread_mutex_lock(&a->mu);
  idset_put(&a->sessions, session_id, 0, now_s + ttl + 1, now_s);
  pthread_mutex_unlock(&a->mu);
}

void td_auth_outdate_user(struct td_auth *a, const struct td_uuid *user_id, int64_t now_s) {
  int64_t ttl = a->refresh_ttl > a->access_ttl ? a->refresh_ttl : a->access_ttl;
  pthread_mutex_lock(&a->mu);
  idset_put(&a->users, user_id, now_s, now_s + ttl + 1, now_s);
  pthread_mutex_unlock(&a->mu);
}

/* revoked: the session was logged out or the token predates the user's mark. */
static bool revoked(struct td_auth *a, const struct td_auth_principal *p, int64_t now_s) {
  bool r = false;
  pthread_mutex_lock(&a->mu);
  if (a->sessions.n && idset_find(&a->sessions, &p->session_id, now_s)) r = true;
  if (!r && a->users.n) {
    const struct idset_entry *e = idset_find(&a->users, &p->user_id, now_s);
    if (e && p->iat < e->value) r = true;
  }
  pthread_mutex_unlock(&a->mu);
  return r;
}

/* ---- verification ---- */

static int claim_uuid(json_t *c, const char *k, struct td_uuid *out, bool required) {
  json_t *v = json_object_get(c, k);
  if (!v || json_is_null(v)) {
    *out = *td_uuid_null();
    return required ? TD_EAUTH : 0;
  }
  if (!json_is_string(v) || td_uuid_parse(json_string_value(v), out)) return TD_EAUTH;
  return 0;
}

int td_auth_verify(struct td_auth *a, const char *token, int64_t now_s, struct td_auth_principal *out) {
  if (!a || !token || !out) return TD_EAUTH;
  memset(out, 0, sizeof *out);
  size_t len = strnlen(token, MAX_TOKEN_LEN + 1);
  if (len == 0 || len > MAX_TOKEN_LEN) return TD_EAUTH;
  const char *d1 = memchr(token, '.', len);
  if (!d1) return TD_EAUTH;
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return TD_EAUTH;
  size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1), slen = len - (size_t)(d2 + 1 - token);
  if (hlen == 0 || plen == 0 || slen == 0) return TD_EAUTH;

  int rc = TD_EAUTH;
  unsigned char *buf = malloc(len + 1);
  if (!buf) return TD_EAUTH;
  json_t *h = NULL, *c = NULL;

  /* header: alg must be exactly HS512 (refuses "none" and algorithm confusion) */
  long n = b64url_decode(token, hlen, buf);
  if (n <= 0) goto out;
  h = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(h)) goto out;
  json_t *alg = json_object_get(h, "alg");
  if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS512") != 0) goto out;
  if (json_object_get(h, "crit")) goto out;

  /* signature over "header.payload" */
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha512(), a->key, (int)a->keylen, (const unsigned char *)token, hlen + 1 + plen, mac, &maclen))
    goto out;
  n = b64url_decode(d2 + 1, slen, buf);
  if (n != (long)maclen || CRYPTO_memcmp(buf, mac, maclen) != 0) goto out;

  /* claims */
  n = b64url_decode(d1 + 1, plen, buf);
  if (n <= 0) goto out;
  c = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(c)) goto out;
  json_t *iss = json_object_get(c, "iss");
  if (!json_is_string(iss) || strcmp(json_string_value(iss), a->issuer) != 0) goto out;
  json_t *exp = json_object_get(c, "exp"), *iat = json_object_get(c, "iat");
  if (!json_is_integer(exp)) goto out;
  out->exp = json_integer_value(exp);
  out->iat = json_is_integer(iat) ? json_integer_value(iat) : 0;
  json_t *sub = json_object_get(c, "sub");
  if (!json_is_string(sub) || json_string_length(sub) >= sizeof out->email) goto out;
  memcpy(out->email, json_string_value(sub), json_string_length(sub) + 1);
  json_t *scopes = json_object_get(c, "scopes");
  if (!json_is_array(scopes) || json_array_size(scopes) != 1) goto out;
  out->authority = td_authority_parse(json_string_value(json_array_get(scopes, 0)));
  if (out->authority == TD_AUTHORITY_NONE) goto out;
  if (claim_uuid(c, "userId", &out->user_id, true)) goto out;
  if (claim_uuid(c, "sessionId", &out->session_id, false)) goto out;
  if (claim_uuid(c, "tenantId", &out->tenant_id, false)) goto out;
  if (claim_uuid(c, "customerId", &out->customer_id, false)) goto out;
  out->enabled = json_is_true(json_object_get(c, "enabled"));
  out->is_public = json_is_true(json_object_get(c, "isPublic"));
  if (out->authority != TD_AUTHORITY_SYS_ADMIN && out->authority != TD_AUTHORITY_REFRESH_TOKEN &&
      td_uuid_is_null(&out->tenant_id))
    goto out; /* tenant users always carry their tenant */
  if (now_s >= out->exp || revoked(a, out, now_s)) {
    rc = TD_ETIMEDOUT;
    goto out;
  }
  rc = 0;
out:
  json_decref(h);
  json_decref(c);
  free(buf);
  if (rc) {
    enum td_authority keep = rc == TD_ETIMEDOUT ? out->authority : TD_AUTHORITY_NONE;
    memset(out, 0, sizeof *out);
    out->authority = keep;
  }
  return rc;
}

/* ---- passwords ---- */

int td_auth_password_hash(const char *pw, char out[128]) {
  if (!pw || !out) return TD_EINVAL;
  unsigned char rnd[16];
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (td_random_bytes(rnd, sizeof rnd)) return TD_EIO;
  if (!crypt_gensalt_rn("$2a$", TD_AUTH_BCRYPT_COST, (const char *)rnd, (int)sizeof rnd, setting, sizeof setting))
    return TD_EIO;
  struct crypt_data *cd = calloc(1, sizeof *cd);
  if (!cd) return TD_ENOMEM;
  int rc = TD_EIO;
  const char *h = crypt_r(pw, setting, cd);
  if (h && h[0] == '$' && strlen(h) < 128) {
    strcpy(out, h);
    rc = 0;
  }
  OPENSSL_cleanse(cd, sizeof *cd);
  free(cd);
  return rc;
}

bool td_auth_password_check(const char *pw, const char *hash) {
  if (!pw || !hash || strncmp(hash, "$2", 2) != 0) return false;
  size_t hl = strlen(hash);
  if (hl < 59 || hl >= 128) return false;
  struct crypt_data *cd = calloc(1, sizeof *cd);
  if (!cd) return false;
  bool ok = false;
  const char *h = crypt_r(pw, hash, cd);
  if (h && h[0] == '$' && strlen(h) == hl) ok = CRYPTO_memcmp(h, hash, hl) == 0;
  OPENSSL_cleanse(cd, sizeof *cd);
  free(cd);
  return ok;
}

int td_auth_random_token(char *out, size_t n) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  if (!out || n == 0) return TD_EINVAL;
  size_t i = 0;
  while (i + 1 < n) {
    unsigned char r[64];
    if (td_random_bytes(r, sizeof r)) return TD_EIO;
    for (size_t k = 0; k < sizeof r && i + 1 < n; k++)
      if (r[k] < 248) out[i++] = al[r[k] % 62]; /* 248 = 4*62: no modulo bias */
  }
  out[i] = '\0';
  return 0;
}
