"""Device provisioning (reference §1.1.9, §1.2): device profiles with a
provision key/secret set over REST; provisioning over MQTT (user name
"provision", /provision/request -> /provision/response, then the server ends
the session) and over HTTP POST /api/v1/provision (200 whatever the status);
ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES, DISABLED, bad secret."""
import json
import queue

import mqttlib
from mqttlib import V311, V5, connect
from tdlib import TENANT, uniq


def make_profile(server, ptype, key=None, secret="sec"):
    key = key or uniq("pkey")
    body = {"name": uniq("prov"), "type": "DEFAULT", "transportType": "DEFAULT", "provisionType": ptype,
            "provisionDeviceKey": key,
            "profileData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"},
                            "provisionConfiguration": {"type": ptype, "provisionDeviceSecret": secret}}}
    p = server.ok("POST", "/api/deviceProfile", TENANT, json=body)
    return p, key, secret


def mqtt_provision(server, req, version=V311):
    """Publishes req on /provision/request; returns the parsed answer (and checks the session ends)."""
    d = connect(server, "provision", None, client_id=uniq("pc"), version=version)
    try:
        assert d.sub("/provision/response") == [1]
        d.c.publish("/provision/request", json.dumps(req), 1)
        topic, payload = d.next_msg()
        assert topic == "/provision/response"
        # the server closes the session once it has answered
        try:
            d.disconnects.get(timeout=10)
        except queue.Empty:
            raise AssertionError("provisioning session not closed by the server")
        return json.loads(payload)
    finally:
        d.c.loop_stop()


def http_provision(server, req):
    r = server.http.post(server.base + "/api/v1/provision", data=json.dumps(req),
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


NOT_FOUND = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
FAILURE = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}


def test_profile_round_trip_and_unique_key(server):
    p, key, secret = make_profile(server, "ALLOW_CREATE_NEW_DEVICES")
    got = server.ok("GET", "/api/deviceProfile/" + p["id"]["id"], TENANT)
    assert got["provisionType"] == "ALLOW_CREATE_NEW_DEVICES"
    assert got["provisionDeviceKey"] == key
    assert got["profileData"]["provisionConfiguration"] == {"type": "ALLOW_CREATE_NEW_DEVICES",
                                                            "provisionDeviceSecret": secret}
    # saving the same profile again keeps its key
    server.ok("POST", "/api/deviceProfile", TENANT, json=got)
    body = dict(got)
    del body["id"]
    body["name"] = uniq("prov")
    r = server.api("POST", "/api/deviceProfile", TENANT, json=body)
    assert r.status_code == 400
    assert "provision device key" in r.json()["message"]


def test_mqtt_allow_create(server):
    p, key, secret = make_profile(server, "ALLOW_CREATE_NEW_DEVICES")
    name = uniq("pdev")
    req = {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}
    res = mqtt_provision(server, req)
    assert res["status"] == "SUCCESS" and res["credentialsType"] == "ACCESS_TOKEN"
    assert list(res) == ["credentialsValue", "credentialsType", "status"]
    tok = res["credentialsValue"]
    assert isinstance(tok, str) and len(tok) == 20
    dev = server.device_by_name(name)
    assert dev["deviceProfileId"]["id"] == p["id"]["id"] and dev["type"] == p["name"]
    attrs = server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/SERVER_SCOPE" % dev["id"]["id"],
                      TENANT)
    assert {a["key"]: a["value"] for a in attrs}.get("provisionState") == "provisioned"
    # the token works
    d = connect(server, tok)
    try:
        d.pub("v1/devices/me/telemetry", {"provisioned": 1})
    finally:
        d.close()
    assert server.wait_latest(dev["id"]["id"], "provisioned")["value"] == 1
    # the same name again: FAILURE
    assert mqtt_provision(server, req, version=V5) == FAILURE


def test_mqtt_given_token_and_basic_credentials(server):
    p, key, secret = make_profile(server, "ALLOW_CREATE_NEW_DEVICES")
    tok = uniq("PTOK").replace("-", "_")
    res = mqtt_provision(server, {"deviceName": uniq("pdev"), "provisionDeviceKey": key,
                                  "provisionDeviceSecret": secret, "credentialsType": "ACCESS_TOKEN", "token": tok})
    assert res == {"credentialsValue": tok, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}
    cid, user = uniq("cl"), uniq("us")
    res = mqtt_provision(server, {"deviceName": uniq("pdev"), "provisionDeviceKey": key,
                                  "provisionDeviceSecret": secret, "credentialsType": "MQTT_BASIC",
                                  "clientId": cid, "username": user, "password": "pw"})
    assert res == {"credentialsValue": {"clientId": cid, "userName": user, "password": "pw"},
                   "credentialsType": "MQTT_BASIC", "status": "SUCCESS"}
    d = connect(server, user, "pw", client_id=cid)
    d.close()
    assert mqttlib.connack_code(server, user, "bad", client_id=cid) == 5


def test_wrong_secret_and_disabled(server):
    p, key, secret = make_profile(server, "ALLOW_CREATE_NEW_DEVICES")
    assert mqtt_provision(server, {"deviceName": uniq("pdev"), "provisionDeviceKey": key,
                                   "provisionDeviceSecret": "wrong"}) == NOT_FOUND
    assert http_provision(server, {"deviceName": uniq("pdev"), "provisionDeviceKey": uniq("nokey"),
                                   "provisionDeviceSecret": secret}) == NOT_FOUND
    p, key, secret = make_profile(server, "DISABLED")
    assert mqtt_provision(server, {"deviceName": uniq("pdev"), "provisionDeviceKey": key,
                                   "provisionDeviceSecret": secret}) == NOT_FOUND


def test_http_allow_create(server):
    p, key, secret = make_profile(server, "ALLOW_CREATE_NEW_DEVICES")
    res = http_provision(server, {"provisionDeviceKey": key, "provisionDeviceSecret": secret})
    assert res["status"] == "SUCCESS"
    # no deviceName: a random one, in the profile
    devs = server.ok("GET", "/api/tenant/devices", TENANT, params={"pageSize": 10, "page": 0, "type": p["name"]})
    assert devs["totalElements"] == 1
    assert len(devs["data"][0]["name"]) == 20
    assert server.post_telemetry(res["credentialsValue"], {"h": 2}).status_code == 200
    # not JSON: 400
    r = server.http.post(server.base + "/api/v1/provision", data="nope", timeout=30)
    assert r.status_code == 400


def test_check_pre_provisioned(server):
    p, key, secret = make_profile(server, "CHECK_PRE_PROVISIONED_DEVICES")
    name = uniq("pre")
    tok = uniq("PRE").replace("-", "_")
    server.create_device(name=name, access_token=tok, deviceProfileId=p["id"])
    req = {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}
    assert mqtt_provision(server, req) == {"credentialsValue": tok, "credentialsType": "ACCESS_TOKEN",
                                           "status": "SUCCESS"}
    assert mqtt_provision(server, req) == FAILURE
    assert http_provision(server, req) == FAILURE
    # a device that does not exist, or is in another profile: NOT_FOUND
    assert http_provision(server, dict(req, deviceName=uniq("none"))) == NOT_FOUND
    other = uniq("other")
    server.create_device(name=other)
    assert http_provision(server, dict(req, deviceName=other)) == NOT_FOUND
