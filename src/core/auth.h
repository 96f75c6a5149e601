/* auth.h — user authentication for the REST and WebSocket APIs: JWT (HS512)
 * access/refresh tokens, bcrypt password hashes, logout and token outdating.
 *
 * Tokens follow ThingsBoard (reference §2.2): header {"alg":"HS512"}, claims
 * sub (email), userId, scopes (["TENANT_ADMIN"] or ["REFRESH_TOKEN"]),
 * sessionId, firstName, lastName, enabled, isPublic, tenantId, customerId
 * (absent for SYS_ADMIN), iss, iat, exp (seconds). The signing key is the
 * installation's random key, loaded by the server at start-up.
 *
 * Revocation is kept in memory only (a restart forgets it), in two bounded
 * tables: sessions ended by logout (until their refresh token would expire),
 * and per-user "not before" marks set when a password changes, a user is
 * disabled or deleted (tokens issued in an earlier second are refused, as
 * ThingsBoard's TokenOutdatingService does). When a table is full the entry
 * closest to its expiry is dropped first. A struct td_auth is thread-safe. */
#ifndef TD_CORE_AUTH_H
#define TD_CORE_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/config.h"
#include "base/uuid.h"

enum td_authority {
  TD_AUTHORITY_NONE = 0,
  TD_AUTHORITY_SYS_ADMIN,
  TD_AUTHORITY_TENANT_ADMIN,
  TD_AUTHORITY_CUSTOMER_USER,
  TD_AUTHORITY_REFRESH_TOKEN, /* scope of refresh tokens: never accepted as an access token */
};

/* td_authority_name: "SYS_ADMIN" etc. (static); "" for NONE. */
const char *td_authority_name(enum td_authority a);
/* td_authority_parse: exact name -> value; TD_AUTHORITY_NONE if unknown. */
enum td_authority td_authority_parse(const char *s);

/* What a token is issued for (strings borrowed for the call). */
struct td_auth_user {
  const char *email;
  const char *first_name;   /* NULL -> claim omitted */
  const char *last_name;
  enum td_authority authority; /* SYS_ADMIN, TENANT_ADMIN or CUSTOMER_USER */
  struct td_uuid user_id, tenant_id, customer_id;
  bool enabled;
  bool is_public;
};

/* The verified content of a token. */
struct td_auth_principal {
  enum td_authority authority;
  struct td_uuid user_id, tenant_id, customer_id, session_id; /* null id when absent */
  char email[256];
  bool enabled, is_public;
  int64_t iat, exp;          /* seconds */
};

struct td_auth;

/* td_auth_new: keeps a copy of the key (>= 32 bytes expected) and reads the
 * issuer and TTLs from cfg (cfg must outlive the td_auth). Free with td_auth_free. */
int td_auth_new(const struct td_config *cfg, const unsigned char *key, size_t keylen, struct td_auth **out);
void td_auth_free(struct td_auth *a);

/* td_auth_sign: one token for u with the given session id, issued at now_s.
 * refresh selects the refresh token (scopes ["REFRESH_TOKEN"], refresh TTL).
 * *out is malloc'd (caller frees). */
int td_auth_sign(struct td_auth *a, const struct td_auth_user *u, const struct td_uuid *session_id, bool refresh,
                 int64_t now_s, char **out);
/* td_auth_issue_pair: access + refresh token for u at the current time.
 * session_id NULL starts a new session (a login); a refresh passes the old one.
 * Both strings malloc'd (caller frees); on error neither is set. */
int td_auth_issue_pair(struct td_auth *a, const struct td_auth_user *u, const struct td_uuid *session_id,
                       char **token, char **refresh);
/* td_auth_verify: check signature (HS512 only), structure, issuer and expiry
 * against now_s. Returns 0 and fills *out; TD_ETIMEDOUT when expired, logged
 * out or outdated (ThingsBoard answers all three with "Token has expired");
 * TD_EAUTH for anything else. Callers check out->authority (a refresh token
 * verifies with TD_AUTHORITY_REFRESH_TOKEN). */
int td_auth_verify(struct td_auth *a, const char *token, int64_t now_s, struct td_auth_principal *out);

/* td_auth_revoke_session: refuse every token of this session (logout) until
 * the latest time such a token can still be valid. */
void td_auth_revoke_session(struct td_auth *a, const struct td_uuid *session_id, int64_t now_s);
/* td_auth_outdate_user: refuse the user's tokens issued before now_s
 * (password change, disable, delete). */
void td_auth_outdate_user(struct td_auth *a, const struct td_uuid *user_id, int64_t now_s);

/* td_auth_access_ttl / td_auth_refresh_ttl: the configured lifetimes, seconds. */
int64_t td_auth_access_ttl(const struct td_auth *a);
int64_t td_auth_refresh_ttl(const struct td_auth *a);

/* td_auth_password_hash: bcrypt ("$2a$", cost 10 as ThingsBoard's
 * BCryptPasswordEncoder default: ~60-100 ms, so call it on a storage thread,
 * never on an I/O loop). out gets the NUL-terminated hash. */
#define TD_AUTH_BCRYPT_COST 10
int td_auth_password_hash(const char *pw, char out[128]);
/* td_auth_password_check: true if pw matches the bcrypt hash ($2a/$2b/$2y);
 * false for an empty or malformed hash. Constant-time comparison. */
bool td_auth_password_check(const char *pw, const char *hash);

/* td_auth_random_token: n-1 random characters [A-Za-z0-9] + NUL into out
 * (activation tokens, access tokens). 0 or TD_EIO. */
int td_auth_random_token(char *out, size_t n);
#endif
