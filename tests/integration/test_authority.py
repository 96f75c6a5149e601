"""Authorities and tenant isolation (reference §2.1 authorities, §2.3, architecture invariant 3)."""

import pytest

from tdlib import CUSTOMER, CUSTOMER_A, SYSADMIN, TENANT, assert_error_json, uniq


def test_customer_user_cannot_create_devices(server):
    r = server.api("POST", "/api/device", CUSTOMER_A, json={"name": uniq("cust"), "type": "default"})
    assert_error_json(r, 403, 20)


def test_tenant_admin_cannot_list_tenants(server):
    assert_error_json(server.api("GET", "/api/tenants", TENANT, params={"pageSize": 10, "page": 0}), 403, 20)


def test_sysadmin_lists_tenants(server):
    page = server.ok("GET", "/api/tenants", SYSADMIN, params={"pageSize": 100, "page": 0})
    assert set(page) >= {"data", "totalPages", "totalElements", "hasNext"}
    assert page["totalElements"] >= 1


@pytest.fixture(scope="module")
def tenant_b(server):
    """Tenant B created by the sysadmin, its admin activated, one customer, one device."""
    tok, t, user = server.new_tenant_admin("Tenant B", password="tenantB-pass", firstName="B", lastName="Admin")
    tid, uid, email = t["id"]["id"], user["id"]["id"], user["email"]
    assert t["id"]["entityType"] == "TENANT"
    dev = server.create_device(tok, name=uniq("b-dev"))
    cust = server.ok("POST", "/api/customer", tok, json={"title": uniq("B customer")})
    cuser = server.ok("POST", "/api/user", tok, params={"sendActivationMail": "false"},
                      json={"email": uniq("cb") + "@example.com", "authority": "CUSTOMER_USER",
                            "tenantId": {"entityType": "TENANT", "id": tid}, "customerId": cust["id"]})
    creds = server.ok("GET", "/api/device/%s/credentials" % dev["id"]["id"], tok)
    return {"tenant": t, "admin_id": uid, "token": tok, "device": dev, "customer": cust, "cuser": cuser,
            "creds": creds, "email": email}


def _denied(r, what):
    assert r.status_code in (403, 404), "%s: want 403/404, got %d %s" % (what, r.status_code, r.text[:300])


def test_tenant_b_admin_can_work(server, tenant_b):
    me = server.ok("GET", "/api/auth/user", tenant_b["token"])
    assert me["authority"] == "TENANT_ADMIN"
    assert me["tenantId"]["id"] == tenant_b["tenant"]["id"]["id"]
    page = server.ok("GET", "/api/tenant/devices", tenant_b["token"], params={"pageSize": 100, "page": 0})
    names = [d["name"] for d in page["data"]]
    assert names == [tenant_b["device"]["name"]]  # none of tenant A's demo devices


def test_cross_tenant_device_access_denied(server, tenant_b):
    a = server.token(TENANT)
    dev = tenant_b["device"]
    did = dev["id"]["id"]
    base = "/api/plugins/telemetry/DEVICE/" + did
    my_customer = server.ok("GET", "/api/auth/user", CUSTOMER)["customerId"]["id"]
    hijack = dict(dev, name=uniq("hijacked"))
    forged_creds = dict(tenant_b["creds"], credentialsId=uniq("STOLEN"))
    checks = [
        ("GET", "/api/device/" + did, {}),
        ("POST", "/api/device", {"json": hijack}),
        ("GET", "/api/device/%s/credentials" % did, {}),
        ("POST", "/api/device/credentials", {"json": forged_creds}),
        ("POST", "/api/customer/%s/device/%s" % (my_customer, did), {}),
        ("DELETE", "/api/customer/device/" + did, {}),
        ("GET", "/api/devices", {"params": {"deviceIds": did}}),
        ("GET", base + "/keys/timeseries", {}),
        ("GET", base + "/keys/attributes", {}),
        ("GET", base + "/keys/attributes/SERVER_SCOPE", {}),
        ("GET", base + "/values/timeseries", {"params": {"keys": "t"}}),
        ("GET", base + "/values/timeseries", {"params": {"keys": "t", "startTs": 0, "endTs": 2 ** 42}}),
        ("GET", base + "/values/attributes", {}),
        ("GET", base + "/values/attributes/CLIENT_SCOPE", {}),
        ("POST", base + "/timeseries/ANY", {"json": {"t": 1}}),
        ("POST", base + "/attributes/SERVER_SCOPE", {"json": {"a": 1}}),
        ("POST", base + "/attributes/SHARED_SCOPE", {"json": {"a": 1}}),
        ("POST", base + "/SERVER_SCOPE", {"json": {"a": 1}}),
        ("DELETE", base + "/SERVER_SCOPE", {"params": {"keys": "a"}}),
        ("DELETE", base + "/timeseries/delete", {"params": {"keys": "t", "deleteAllDataForKeys": "true"}}),
        ("DELETE", "/api/device/" + did, {}),
    ]
    for method, path, kw in checks:
        if "/api/devices" == path:
            r = server.api(method, path, a, **kw)
            assert r.status_code in (403, 404) or r.json() == [], "%s %s leaked: %s" % (method, path, r.text[:300])
            continue
        _denied(server.api(method, path, a, **kw), "%s %s" % (method, path))
    # nothing was changed for tenant B
    tb = tenant_b["token"]
    d = server.ok("GET", "/api/device/" + did, tb)
    assert d["name"] == dev["name"]
    assert d["customerId"]["id"] == dev["customerId"]["id"]
    c = server.ok("GET", "/api/device/%s/credentials" % did, tb)
    assert c["credentialsId"] == tenant_b["creds"]["credentialsId"]
    attrs = server.ok("GET", base + "/values/attributes", tb)
    assert attrs == []
    # and tenant B cannot reach tenant A's devices either
    a1 = server.device_by_name("Test Device A1")["id"]["id"]
    _denied(server.api("GET", "/api/device/" + a1, tb), "B reads A1")
    _denied(server.api("GET", "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % a1, tb, params={"keys": "x"}),
            "B reads A1 telemetry")


def test_cross_tenant_customers_and_users_denied(server, tenant_b):
    cid = tenant_b["customer"]["id"]["id"]
    for method, path, kw in [
        ("GET", "/api/customer/" + cid, {}),
        ("DELETE", "/api/customer/" + cid, {}),
        ("GET", "/api/customer/%s/users" % cid, {"params": {"pageSize": 10, "page": 0}}),
        ("GET", "/api/customer/%s/devices" % cid, {"params": {"pageSize": 10, "page": 0}}),
        ("GET", "/api/user/" + tenant_b["admin_id"], {}),
        ("GET", "/api/user/" + tenant_b["cuser"]["id"]["id"], {}),
        ("DELETE", "/api/user/" + tenant_b["cuser"]["id"]["id"], {}),
        ("GET", "/api/tenant/" + tenant_b["tenant"]["id"]["id"], {}),
        ("GET", "/api/tenant/%s/users" % tenant_b["tenant"]["id"]["id"], {"params": {"pageSize": 10, "page": 0}}),
    ]:
        _denied(server.api(method, path, TENANT, **kw), "%s %s" % (method, path))
    # tenant A's own customer list does not include B's customer
    page = server.ok("GET", "/api/customers", TENANT, params={"pageSize": 100, "page": 0})
    assert cid not in [c["id"]["id"] for c in page["data"]]
    users = server.ok("GET", "/api/users", TENANT, params={"pageSize": 100, "page": 0})
    assert tenant_b["email"] not in [u["email"] for u in users["data"]]
    # still there for B
    assert server.ok("GET", "/api/customer/" + cid, tenant_b["token"])["title"] == tenant_b["customer"]["title"]


def test_customer_user_sees_only_own_devices(server):
    me = server.ok("GET", "/api/auth/user", CUSTOMER_A)
    assert me["authority"] == "CUSTOMER_USER"
    cid = me["customerId"]["id"]
    page = server.ok("GET", "/api/customer/%s/devices" % cid, CUSTOMER_A, params={"pageSize": 100, "page": 0})
    names = {d["name"] for d in page["data"]}
    assert {"Test Device A1", "Test Device A2", "Test Device A3"} <= names
    assert "Test Device B1" not in names and "Test Device C1" not in names
    for d in page["data"]:
        assert d["customerId"]["id"] == cid
    b1 = server.device_by_name("Test Device B1")
    _denied(server.api("GET", "/api/device/" + b1["id"]["id"], CUSTOMER_A), "customer A reads B1")
    _denied(server.api("GET", "/api/customer/%s/devices" % b1["customerId"]["id"], CUSTOMER_A,
                       params={"pageSize": 10, "page": 0}), "customer A lists customer B's devices")
    _denied(server.api("GET", "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % b1["id"]["id"], CUSTOMER_A,
                       params={"keys": "x"}), "customer A reads B1 telemetry")
    assert_error_json(server.api("GET", "/api/tenant/devices", CUSTOMER_A, params={"pageSize": 10, "page": 0}), 403)
    a1 = server.device_by_name("Test Device A1")["id"]["id"]
    assert server.ok("GET", "/api/device/" + a1, CUSTOMER_A)["name"] == "Test Device A1"
    # customer@thingsboard.org belongs to customer A as well
    assert server.ok("GET", "/api/auth/user", CUSTOMER)["customerId"]["id"] == cid
