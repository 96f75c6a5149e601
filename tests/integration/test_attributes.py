"""Attributes: client (device API), shared and server (REST), device reads, scopes, delete
(reference §1.0.4, §1.2, §2.6)."""
from tdlib import TENANT, assert_error_json, wait_until


def attr_url(did, suffix=""):
    return "/api/plugins/telemetry/DEVICE/%s%s" % (did, suffix)


def values(server, did, scope=None, keys=None):
    path = attr_url(did, "/values/attributes" + ("/" + scope if scope else ""))
    return server.ok("GET", path, TENANT, params={"keys": keys} if keys else None)


def as_dict(lst):
    return {e["key"]: e["value"] for e in lst}


def setup_device(server):
    did, tok = server.new_device()
    r = server.post_attributes(tok, {"fw": "v1.0", "n": 5, "ok": True, "cfg": {"x": 1}, "dbl": 2.5})
    assert r.status_code == 200, r.text
    wait_until(lambda: len(values(server, did, "CLIENT_SCOPE")) == 5, what="client attributes")
    r = server.api("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"target": 22, "mode": "eco"})
    assert r.status_code == 200, r.text
    r = server.api("POST", attr_url(did, "/SERVER_SCOPE"), TENANT, json={"srv": True, "note": "secret"})
    assert r.status_code == 200, r.text
    return did, tok


# SERVER_SCOPE keys the device state service writes once a device has been
# active (reference §4.8); the tests below compare only their own keys.
STATE_KEYS = {"active", "lastConnectTime", "lastActivityTime", "lastDisconnectTime", "inactivityAlarmTime"}


def own(d):
    return {k: v for k, v in d.items() if k not in STATE_KEYS}


def test_scopes_and_values(server):
    did, tok = setup_device(server)
    client = values(server, did, "CLIENT_SCOPE")
    assert as_dict(client) == {"fw": "v1.0", "n": 5, "ok": True, "cfg": {"x": 1}, "dbl": 2.5}
    for e in client:
        assert isinstance(e["lastUpdateTs"], int) and e["lastUpdateTs"] > 1600000000000
    assert as_dict(values(server, did, "SHARED_SCOPE")) == {"target": 22, "mode": "eco"}
    assert own(as_dict(values(server, did, "SERVER_SCOPE"))) == {"srv": True, "note": "secret"}
    everything = own(as_dict(values(server, did)))
    assert set(everything) == {"fw", "n", "ok", "cfg", "dbl", "target", "mode", "srv", "note"}
    assert as_dict(values(server, did, keys="n,target")) == {"n": 5, "target": 22}
    keys = server.ok("GET", attr_url(did, "/keys/attributes"), TENANT)
    assert sorted(set(keys) - STATE_KEYS) == sorted(everything)
    assert sorted(set(server.ok("GET", attr_url(did, "/keys/attributes/SERVER_SCOPE"), TENANT)) - STATE_KEYS) == \
        ["note", "srv"]
    assert sorted(server.ok("GET", attr_url(did, "/keys/attributes/SHARED_SCOPE"), TENANT)) == ["mode", "target"]
    assert sorted(server.ok("GET", attr_url(did, "/keys/attributes/CLIENT_SCOPE"), TENANT)) == \
        ["cfg", "dbl", "fw", "n", "ok"]


def test_device_reads(server):
    did, tok = setup_device(server)
    dev = server.base + "/api/v1/%s/attributes" % tok
    r = server.http.get(dev, params={"clientKeys": "fw,n", "sharedKeys": "target"})
    assert r.status_code == 200, r.text
    assert r.json() == {"client": {"fw": "v1.0", "n": 5}, "shared": {"target": 22}}
    r = server.http.get(dev)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client"] == {"fw": "v1.0", "n": 5, "ok": True, "cfg": {"x": 1}, "dbl": 2.5}
    assert body["shared"] == {"target": 22, "mode": "eco"}
    assert "srv" not in str(body) and "secret" not in str(body)  # server scope is never visible to the device
    r = server.http.get(dev, params={"sharedKeys": "mode"})
    assert r.status_code == 200 and r.json().get("shared") == {"mode": "eco"}
    assert server.http.get(server.base + "/api/v1/NO_SUCH_TOKEN/attributes").status_code == 401


def test_update_and_delete(server):
    did, tok = setup_device(server)
    assert server.post_attributes(tok, {"n": 6}).status_code == 200
    wait_until(lambda: as_dict(values(server, did, "CLIENT_SCOPE")).get("n") == 6, what="n updated")
    assert as_dict(values(server, did, "CLIENT_SCOPE"))["fw"] == "v1.0"
    r = server.api("DELETE", attr_url(did, "/SERVER_SCOPE"), TENANT, params={"keys": "srv"})
    assert r.status_code == 200, r.text
    assert own(as_dict(values(server, did, "SERVER_SCOPE"))) == {"note": "secret"}
    r = server.api("DELETE", attr_url(did, "/SHARED_SCOPE"), TENANT, params={"keys": "target,mode"})
    assert r.status_code == 200, r.text
    assert values(server, did, "SHARED_SCOPE") == []
    r = server.api("DELETE", attr_url(did, "/CLIENT_SCOPE"), TENANT, params={"keys": "fw"})
    assert r.status_code == 200, r.text
    assert "fw" not in as_dict(values(server, did, "CLIENT_SCOPE"))
    r = server.http.get(server.base + "/api/v1/%s/attributes" % tok)
    assert r.status_code == 200 and "fw" not in r.json().get("client", {}) and not r.json().get("shared")


def test_invalid_scope(server):
    did, _ = server.new_device()
    for path in ("/attributes/CLIENT_SCOPE", "/attributes/NOT_A_SCOPE", "/NOT_A_SCOPE"):
        r = server.api("POST", attr_url(did, path), TENANT, json={"a": 1})
        assert_error_json(r, 400)
    assert server.ok("GET", attr_url(did, "/values/attributes"), TENANT) == []
    r = server.api("GET", attr_url(did, "/values/attributes/NOT_A_SCOPE"), TENANT)
    assert r.status_code == 400


def test_bad_attribute_payloads(server):
    did, tok = server.new_device()
    assert server.post_attributes(tok, "[1,2]").status_code == 400
    r = server.api("POST", attr_url(did, "/attributes/SERVER_SCOPE"), TENANT, data="[1]",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert server.post_attributes(tok, {"fine": 1}).status_code == 200
