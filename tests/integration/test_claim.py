"""Device claiming (reference §1.2 POST /api/v1/{token}/claim, §2.4 /api/customer/device/{name}/claim;
ThingsBoard's ClaimDevicesService): the device announces a claim, a customer user claims it with
the secret, the owner reclaims it."""
import time

from tdlib import CUSTOMER, CUSTOMER_B, TENANT, NULL_ID


def device_claim(server, tok, body=None):
    return server.http.post(server.base + "/api/v1/%s/claim" % tok, json=body, timeout=10)


def user_claim(server, name, who=CUSTOMER, secret=None):
    body = {"secretKey": secret} if secret is not None else None
    return server.api("POST", "/api/customer/device/%s/claim" % name, who, json=body)


def customer_of(server, did):
    return server.ok("GET", "/api/device/" + did, TENANT)["customerId"]["id"]


def test_claim_flow(server):
    did, tok = server.new_device()
    name = server.ok("GET", "/api/device/" + did, TENANT)["name"]
    # no claim announced yet: FAILURE
    r = user_claim(server, name, secret="abc")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text
    assert device_claim(server, tok, {"secretKey": "abc", "durationMs": 60000}).status_code == 200
    # wrong secret: FAILURE, and the claim is gone
    r = user_claim(server, name, secret="nope")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text
    r = user_claim(server, name, secret="abc")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text
    # announce again, claim with the right secret
    assert device_claim(server, tok, {"secretKey": "abc"}).status_code == 200
    me = server.ok("GET", "/api/auth/user", CUSTOMER)["customerId"]["id"]
    r = user_claim(server, name, secret="abc")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == "SUCCESS"
    assert body["device"]["id"]["id"] == did
    assert body["device"]["customerId"]["id"] == me
    assert customer_of(server, did) == me
    # already claimed
    assert device_claim(server, tok, {"secretKey": "abc"}).status_code == 200
    r = user_claim(server, name, who=CUSTOMER_B, secret="abc")
    assert r.status_code == 400 and r.json() == "CLAIMED", r.text
    # reclaim by another customer's user: denied; by the owner: unassigned
    r = server.api("DELETE", "/api/customer/device/%s/claim" % name, CUSTOMER_B)
    assert r.status_code == 403, r.text
    r = server.api("DELETE", "/api/customer/device/%s/claim" % name, CUSTOMER)
    assert r.status_code == 200, r.text
    assert customer_of(server, did) == NULL_ID


def test_claim_empty_secret_and_expiry(server):
    did, tok = server.new_device()
    name = server.ok("GET", "/api/device/" + did, TENANT)["name"]
    r = server.http.post(server.base + "/api/v1/%s/claim" % tok, timeout=10)  # no body: secret "", 1 day
    assert r.status_code == 200, r.text
    r = user_claim(server, name)
    assert r.status_code == 200 and r.json()["response"] == "SUCCESS", r.text
    server.ok("DELETE", "/api/customer/device/%s/claim" % name, TENANT)  # tenant admin may reclaim
    assert device_claim(server, tok, {"secretKey": "k", "durationMs": 1}).status_code == 200
    time.sleep(0.05)  # let the 1 ms claim expire
    r = user_claim(server, name, secret="k")
    assert r.status_code == 400 and r.json() == "FAILURE", r.text


def test_claim_errors(server):
    assert device_claim(server, "no-such-token", {}).status_code == 401
    _, tok = server.new_device()
    r = server.http.post(server.base + "/api/v1/%s/claim" % tok, data="[1]", timeout=10)
    assert r.status_code == 400, r.text
    assert user_claim(server, "no-such-device-name", secret="x").status_code == 404
    did, _ = server.new_device()
    name = server.ok("GET", "/api/device/" + did, TENANT)["name"]
    assert user_claim(server, name, who=TENANT, secret="x").status_code == 403  # customer users only
