/* auth.c — AuthController (reference §2.2): login, token refresh, current
 * user, logout, password change. Login and refresh are public; the rest need
 * an access token. bcrypt work runs on the storage thread, never on a loop. */
#include <stdlib.h>
#include <string.h>
#include "api/api_int.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"

#define MSG_BAD_CREDS "Invalid username or password"
#define MSG_NOT_ACTIVE "User account is not active"

/* A valid bcrypt hash of a random string: unknown users still cost one
 * bcrypt check, so response time does not reveal which emails exist. */
static const char dummy_hash[] = "$2a$10$5JTB8/hxWc9WAy62nCGSxeefl3KWmipA9nFpVdDa0/xfIseeBB4Bu";

static void login_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j);
  if (!in) return;
  const char *user = api_json_str(in, "username"), *pw = api_json_str(in, "password");
  json_t *u = NULL;
  struct td_user_credentials c;
  memset(&c, 0, sizeof c);
  if (!user || !pw) {
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_BAD_CREDS);
    goto out;
  }
  struct td_uuid uid;
  int rc = td_store_user_by_email(st, user, &u);
  if (rc == 0 && api_json_id(u, "id", &uid) == 0) rc = td_store_user_credentials_get(st, &uid, &c);
  else if (rc == 0) rc = TD_ENOTFOUND;
  if (rc == TD_ENOTFOUND) {
    (void)td_auth_password_check(pw, dummy_hash);
    td_log_limited(5, TD_LOG_INFO, "api", "action=login result=unknown-user");
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_BAD_CREDS);
    goto out;
  }
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  /* ThingsBoard checks the password first, then the enabled flag (a user
   * that was never activated has no password and gets "Invalid username or password"). */
  if (!td_auth_password_check(pw, c.password_hash)) {
    td_log_limited(5, TD_LOG_INFO, "api", "action=login result=bad-password");
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_BAD_CREDS);
    goto out;
  }
  if (!c.enabled) {
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_NOT_ACTIVE);
    goto out;
  }
  api_ok_pair(j, u, true, NULL);
out:
  memset(&c, 0, sizeof c);
  json_decref(u);
  json_decref(in);
}

static void login(struct td_http_req *r) {
  struct api_job *j = api_job_new(r, NULL, login_work);
  if (j) api_submit(j);
}

static void refresh_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j);
  if (!in) return;
  json_t *u = NULL;
  const char *tok = api_json_str(in, "refreshToken");
  struct td_auth_principal p;
  int rc = tok ? td_auth_verify(j->ctx->auth, tok, td_now_ms() / 1000, &p) : TD_EAUTH;
  if (rc == TD_ETIMEDOUT) {
    api_fail(j, 401, TD_TB_JWT_TOKEN_EXPIRED, "Token has expired");
    goto out;
  }
  if (rc || p.authority != TD_AUTHORITY_REFRESH_TOKEN) {
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_BAD_CREDS);
    goto out;
  }
  struct td_user_credentials c;
  rc = td_store_user_get(st, &p.user_id, &u);
  if (rc == 0) rc = td_store_user_credentials_get(st, &p.user_id, &c);
  if (rc == TD_ENOTFOUND) {
    api_fail(j, 401, TD_TB_AUTHENTICATION, "User not found by refresh token");
    goto out;
  }
  if (rc) {
    api_fail_rc(j, rc, NULL, NULL);
    goto out;
  }
  if (!c.enabled) {
    api_fail(j, 401, TD_TB_AUTHENTICATION, MSG_NOT_ACTIVE);
    goto out;
  }
  api_ok_pair(j, u, true, &p.session_id);
out:
  json_decref(u);
  json_decref(in);
}

static void refresh(struct td_http_req *r) {
  struct api_job *j = api_job_new(r, NULL, refresh_work);
  if (j) api_submit(j);
}

static void user_work(struct api_job *j, struct td_store *st) {
  json_t *u = NULL;
  int rc = td_store_user_get(st, &j->me.user_id, &u);
  if (rc) api_fail_rc(j, rc, "User", &j->me.user_id);
  else api_ok_json(j, u);
}

static void auth_user(struct td_http_req *r) { api_run(r, API_ANY_USER, user_work); }

/* logout: no store work; the session is refused from now on (auth.h). */
static void logout(struct td_http_req *r) {
  struct td_auth_principal me;
  if (api_begin(r, API_ANY_USER, &me)) return;
  td_auth_revoke_session(api_ctx(r)->auth, &me.session_id, td_now_ms() / 1000);
  td_http_respond(r, 200, NULL, NULL, 0);
}

static void change_password_work(struct api_job *j, struct td_store *st) {
  json_t *in = api_body_object(j);
  if (!in) return;
  json_t *u = NULL;
  struct td_user_credentials c;
  memset(&c, 0, sizeof c);
  const char *cur = api_json_str(in, "currentPassword"), *np = api_json_str(in, "newPassword");
  int rc = td_store_user_credentials_get(st, &j->me.user_id, &c);
  if (rc) {
    api_fail_rc(j, rc, "User", &j->me.user_id);
    goto out;
  }
  if (!cur || !td_auth_password_check(cur, c.password_hash)) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "Current password doesn't match!");
    goto out;
  }
  const char *why = api_password_policy(np);
  if (why) {
    api_fail(j, 400, TD_TB_BAD_REQUEST_PARAMS, "%s", why);
    goto out;
  }
  if (td_auth_password_hash(np, c.password_hash)) {
    api_fail(j, 500, TD_TB_GENERAL, "Unable to hash password");
    goto out;
  }
  c.reset_token[0] = '\0';
  if ((rc = td_store_user_credentials_put(st, &c)) || (rc = td_store_user_get(st, &j->me.user_id, &u))) {
    api_fail_rc(j, rc, "User", &j->me.user_id);
    goto out;
  }
  /* tokens issued before this second (other sessions) stop working */
  td_auth_outdate_user(j->ctx->auth, &j->me.user_id, td_now_ms() / 1000);
  td_log(TD_LOG_INFO, "api", "action=changePassword result=ok");
  api_ok_pair(j, u, c.enabled, NULL);
out:
  memset(&c, 0, sizeof c);
  json_decref(u);
  json_decref(in);
}

static void change_password(struct td_http_req *r) { api_run(r, API_ANY_USER, change_password_work); }

int api_auth_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_POST, "/api/auth/login", login},
      {TD_HTTP_POST, "/api/auth/token", refresh},
      {TD_HTTP_GET, "/api/auth/user", auth_user},
      {TD_HTTP_POST, "/api/auth/logout", logout},
      {TD_HTTP_POST, "/api/auth/changePassword", change_password},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
