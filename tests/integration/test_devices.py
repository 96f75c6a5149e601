"""Devices, paging, customers, credentials, device profiles (reference §2.1, §2.4)."""
from tdlib import NULL_ID, TENANT, assert_error_json, uniq, wait_until


def test_device_crud(server):
    name = uniq("crud")
    d = server.ok("POST", "/api/device", TENANT, json={"name": name, "type": "default", "label": "first"})
    assert d["id"]["entityType"] == "DEVICE"
    assert d["name"] == name and d["label"] == "first" and d["type"] == "default"
    assert isinstance(d["createdTime"], int) and d["createdTime"] > 1600000000000
    assert d["tenantId"]["entityType"] == "TENANT"
    assert d["customerId"]["id"] == NULL_ID
    assert d["deviceProfileId"]["entityType"] == "DEVICE_PROFILE"
    did = d["id"]["id"]
    got = server.ok("GET", "/api/device/" + did, TENANT)
    assert got["name"] == name and got["id"] == d["id"] and got["createdTime"] == d["createdTime"]

    got["label"] = "second"
    upd = server.ok("POST", "/api/device", TENANT, json=got)
    assert upd["id"] == d["id"] and upd["label"] == "second"
    assert server.ok("GET", "/api/device/" + did, TENANT)["label"] == "second"

    assert server.api("DELETE", "/api/device/" + did, TENANT).status_code == 200
    assert_error_json(server.api("GET", "/api/device/" + did, TENANT), 404, 32)
    assert server.api("DELETE", "/api/device/" + did, TENANT).status_code == 404


def test_device_by_name(server):
    d = server.device_by_name("Test Device A1")
    assert d["name"] == "Test Device A1"
    assert server.api("GET", "/api/tenant/devices", TENANT, params={"deviceName": uniq("nope")}).status_code == 404


def test_bad_ids(server):
    assert server.api("GET", "/api/device/not-a-uuid", TENANT).status_code == 400
    assert_error_json(server.api("GET", "/api/device/" + "0" * 8 + "-0000-1000-8000-000000000000", TENANT), 404)


def test_paging(server):
    prefix = uniq("pg")
    names = ["%s-%02d" % (prefix, i) for i in range(7)]
    for n in reversed(names):
        server.create_device(name=n)

    def page(**kw):
        p = {"pageSize": 3, "page": 0, "textSearch": prefix, "sortProperty": "name", "sortOrder": "ASC"}
        p.update(kw)
        return server.ok("GET", "/api/tenant/devices", TENANT, params=p)
    p0 = page()
    assert set(p0) >= {"data", "totalPages", "totalElements", "hasNext"}
    assert p0["totalElements"] == 7 and p0["totalPages"] == 3 and p0["hasNext"] is True
    assert [d["name"] for d in p0["data"]] == names[0:3]
    assert [d["name"] for d in page(page=1)["data"]] == names[3:6]
    p2 = page(page=2)
    assert [d["name"] for d in p2["data"]] == names[6:] and p2["hasNext"] is False
    assert page(page=3)["data"] == []
    desc = page(pageSize=10, sortOrder="DESC")
    assert [d["name"] for d in desc["data"]] == list(reversed(names))
    # textSearch is a case-insensitive substring
    up = page(pageSize=10, textSearch=prefix.upper()[3:])
    assert up["totalElements"] == 7
    # createdTime order: created in reverse name order
    ct = page(pageSize=10, sortProperty="createdTime", sortOrder="ASC")
    assert [d["name"] for d in ct["data"]] == list(reversed(names))
    # pageSize is required / must be positive
    assert server.api("GET", "/api/tenant/devices", TENANT, params={"page": 0}).status_code == 400
    assert server.api("GET", "/api/tenant/devices", TENANT, params={"pageSize": 0, "page": 0}).status_code == 400


def test_duplicate_name(server):
    name = uniq("dup")
    server.create_device(name=name)
    r = server.api("POST", "/api/device", TENANT, json={"name": name, "type": "default"})
    body = assert_error_json(r, 400)
    assert "already exists" in body["message"]


def test_assign_unassign_customer(server):
    cust = server.ok("POST", "/api/customer", TENANT, json={"title": uniq("cust")})
    cid = cust["id"]["id"]
    did = server.create_device(name=uniq("asg"))["id"]["id"]
    d = server.ok("POST", "/api/customer/%s/device/%s" % (cid, did), TENANT)
    assert d["customerId"]["id"] == cid
    lst = server.ok("GET", "/api/customer/%s/devices" % cid, TENANT, params={"pageSize": 10, "page": 0})
    assert [x["id"]["id"] for x in lst["data"]] == [did]
    d = server.ok("DELETE", "/api/customer/device/" + did, TENANT)
    assert d["customerId"]["id"] == NULL_ID
    assert server.ok("GET", "/api/device/" + did, TENANT)["customerId"]["id"] == NULL_ID
    lst = server.ok("GET", "/api/customer/%s/devices" % cid, TENANT, params={"pageSize": 10, "page": 0})
    assert lst["data"] == [] and lst["totalElements"] == 0


def test_credentials(server):
    d = server.create_device(name=uniq("cred"))
    did = d["id"]["id"]
    c = server.ok("GET", "/api/device/%s/credentials" % did, TENANT)
    assert c["credentialsType"] == "ACCESS_TOKEN"
    assert c["deviceId"]["id"] == did
    assert isinstance(c["credentialsId"], str) and len(c["credentialsId"]) == 20
    assert c["credentialsValue"] is None
    old = c["credentialsId"]
    assert server.post_telemetry(old, {"x": 1}).status_code == 200

    new = uniq("NEWTOKEN")
    c["credentialsId"] = new
    c2 = server.ok("POST", "/api/device/credentials", TENANT, json=c)
    assert c2["credentialsId"] == new
    assert server.ok("GET", "/api/device/%s/credentials" % did, TENANT)["credentialsId"] == new
    assert server.post_telemetry(new, {"x": 2}).status_code == 200
    assert server.post_telemetry(old, {"x": 3}).status_code == 401

    # a token already used by another device is refused
    other = server.create_device(name=uniq("cred2"))
    oc = server.ok("GET", "/api/device/%s/credentials" % other["id"]["id"], TENANT)
    oc["credentialsId"] = new
    assert server.api("POST", "/api/device/credentials", TENANT, json=oc).status_code == 400
    assert server.post_telemetry(new, {"x": 4}).status_code == 200


def test_create_with_access_token(server):
    tok = uniq("MYTOKEN")
    d = server.create_device(name=uniq("tok"), access_token=tok)
    c = server.ok("GET", "/api/device/%s/credentials" % d["id"]["id"], TENANT)
    assert c["credentialsId"] == tok
    r = server.api("POST", "/api/device", TENANT, json={"name": uniq("tok2"), "type": "default"},
                   params={"accessToken": tok})
    assert r.status_code == 400, r.text


def test_device_profiles(server):
    page = server.ok("GET", "/api/deviceProfiles", TENANT, params={"pageSize": 10, "page": 0})
    assert set(page) >= {"data", "totalPages", "totalElements", "hasNext"}
    defaults = [p for p in page["data"] if p.get("default")]
    assert len(defaults) == 1 and defaults[0]["name"] == "default"
    assert defaults[0]["id"]["entityType"] == "DEVICE_PROFILE"
    info = server.ok("GET", "/api/deviceProfileInfo/default", TENANT)
    assert info["name"] == "default" and info["id"]["id"] == defaults[0]["id"]["id"]
    prof = server.ok("GET", "/api/deviceProfile/" + defaults[0]["id"]["id"], TENANT)
    assert prof["name"] == "default" and prof["default"] is True
    d = server.create_device(name=uniq("prof"))
    assert d["deviceProfileId"]["id"] == defaults[0]["id"]["id"]


def test_demo_devices(server):
    page = server.ok("GET", "/api/tenant/devices", TENANT, params={"pageSize": 100, "page": 0, "textSearch": "Demo"})
    names = {d["name"] for d in page["data"]}
    assert {"DHT11 Demo Device", "Raspberry Pi Demo Device"} <= names
    for tok in ("A1_TEST_TOKEN", "B1_TEST_TOKEN", "C1_TEST_TOKEN", "DHT11_DEMO_TOKEN", "RASPBERRY_PI_DEMO_TOKEN"):
        assert server.post_telemetry(tok, {"probe": 1}).status_code == 200, tok
    a1 = server.device_by_name("Test Device A1")["id"]["id"]
    wait_until(lambda: "probe" in server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % a1, TENANT),
               what="probe key on A1")
