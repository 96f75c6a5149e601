"""Authentication: login, JWT pair, refresh, expiry, forgery, logout, password change
(reference §2.1 error body, §2.2)."""
import json
import time

from tdlib import (CUSTOMER_B, CUSTOMER_C, SYSADMIN, TENANT, assert_error_json, b64url, jwt_parts,
                   wait_until)


def login_raw(server, user, pw):
    return server.api("POST", "/api/auth/login", json={"username": user, "password": pw})


def test_login_ok_and_claims(server):
    r = login_raw(server, *TENANT)
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(("token", "refreshToken")) <= set(pair)
    hdr, claims, _ = jwt_parts(pair["token"])
    assert hdr["alg"] == "HS512"
    assert claims["sub"] == TENANT[0]
    assert claims["scopes"] == ["TENANT_ADMIN"]
    assert claims["iss"] == "thingsboard.io"
    assert claims["exp"] - claims["iat"] == 9000
    assert "tenantId" in claims and "userId" in claims
    _, rclaims, _ = jwt_parts(pair["refreshToken"])
    assert rclaims["scopes"] == ["REFRESH_TOKEN"]
    assert rclaims["exp"] - rclaims["iat"] == 604800

    _, sclaims, _ = jwt_parts(server.login(SYSADMIN))
    assert sclaims["scopes"] == ["SYS_ADMIN"]


def test_login_wrong_password(server):
    body = assert_error_json(login_raw(server, TENANT[0], "wrong"), 401, 10)
    assert body["message"]
    assert_error_json(login_raw(server, "nobody@thingsboard.org", "x"), 401, 10)


def test_no_token_is_401(server):
    assert_error_json(server.api("GET", "/api/auth/user"), 401)
    assert_error_json(server.api("GET", "/api/auth/user", headers={"X-Authorization": "Bearer garbage"}), 401)


def test_auth_user(server):
    u = server.ok("GET", "/api/auth/user", TENANT)
    assert u["email"] == TENANT[0]
    assert u["authority"] == "TENANT_ADMIN"
    assert u["tenantId"]["entityType"] == "TENANT"
    assert u["id"]["entityType"] == "USER"
    # the plain Authorization header is accepted too (reference §2.1)
    tok = server.token(TENANT)
    r = server.api("GET", "/api/auth/user", headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 200 and r.json()["email"] == TENANT[0]


def test_refresh(server):
    pair = login_raw(server, *TENANT).json()
    r = server.api("POST", "/api/auth/token", json={"refreshToken": pair["refreshToken"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["token"] and new["refreshToken"]
    u = server.ok("GET", "/api/auth/user", new["token"])
    assert u["email"] == TENANT[0]


def test_refresh_token_is_not_an_access_token(server):
    pair = login_raw(server, *TENANT).json()
    assert_error_json(server.api("GET", "/api/auth/user", pair["refreshToken"]), 401)
    # and an access token is not a refresh token
    r = server.api("POST", "/api/auth/token", json={"refreshToken": pair["token"]})
    assert r.status_code == 401, r.text


def test_forged_tokens(server):
    tok = server.token(TENANT)
    h, p, s = tok.split(".")
    # flipped signature bytes
    flipped = s[:-6] + ("AAAAAA" if s[-6:] != "AAAAAA" else "BBBBBB")
    assert_error_json(server.api("GET", "/api/auth/user", h + "." + p + "." + flipped), 401)
    # a payload promoted to SYS_ADMIN under the original signature
    _, claims, _ = jwt_parts(tok)
    claims["scopes"] = ["SYS_ADMIN"]
    p2 = b64url(json.dumps(claims).encode())
    assert_error_json(server.api("GET", "/api/auth/user", h + "." + p2 + "." + s), 401)
    # alg none, with and without the original signature
    hn = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    assert_error_json(server.api("GET", "/api/auth/user", hn + "." + p + "."), 401)
    assert_error_json(server.api("GET", "/api/auth/user", hn + "." + p + "." + s), 401)
    # truncated
    assert_error_json(server.api("GET", "/api/auth/user", h + "." + p), 401)


def test_logout_refuses_token(server):
    tok = server.login(CUSTOMER_C)
    assert server.api("GET", "/api/auth/user", tok).status_code == 200
    r = server.api("POST", "/api/auth/logout", tok)
    assert r.status_code == 200, r.text
    assert_error_json(server.api("GET", "/api/auth/user", tok), 401)


def test_change_password(server):
    user, pw = CUSTOMER_B
    tok = server.login(CUSTOMER_B)
    r = server.api("POST", "/api/auth/changePassword", tok,
                   json={"currentPassword": "not-it", "newPassword": "n3w-Passw0rd"})
    assert r.status_code == 400, r.text
    r = server.api("POST", "/api/auth/changePassword", tok,
                   json={"currentPassword": pw, "newPassword": "n3w-Passw0rd"})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert server.ok("GET", "/api/auth/user", pair["token"])["email"] == user
    assert_error_json(login_raw(server, user, pw), 401, 10)
    assert server.login(user, "n3w-Passw0rd")


def test_expired_token(make_server):
    s = make_server(env={"SECURITY_JWT_TOKEN_EXPIRATION_TIME": "2"})
    pair = s.api("POST", "/api/auth/login", json={"username": TENANT[0], "password": TENANT[1]}).json()
    _, claims, _ = jwt_parts(pair["token"])
    assert claims["exp"] - claims["iat"] == 2

    def expired():
        r = s.api("GET", "/api/auth/user", pair["token"])
        return (r,) if r.status_code == 401 else None  # a Response with status 401 is falsy
    t0 = time.monotonic()
    r, = wait_until(expired, timeout=15, interval=0.2, what="token expiry")
    assert time.monotonic() - t0 < 5
    assert_error_json(r, 401, 11)
    # the refresh token still works
    r = s.api("POST", "/api/auth/token", json={"refreshToken": pair["refreshToken"]})
    assert r.status_code == 200, r.text
    assert s.api("GET", "/api/auth/user", r.json()["token"]).status_code == 200
