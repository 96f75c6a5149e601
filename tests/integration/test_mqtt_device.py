"""MQTT device API (reference §1.1.1–1.1.3): connect and authentication codes,
telemetry and attributes stored, attribute requests, shared attribute push,
RPC both ways, subscriptions, unknown topics, QoS 2, mosquitto clients."""
import json
import struct
import subprocess
import time

import mqttlib
from mqttlib import V311, V5, Raw, connect, connack_code
from tdlib import TENANT, uniq, wait_until


def attr_url(did, rest):
    return "/api/plugins/telemetry/DEVICE/%s%s" % (did, rest)


def client_attrs(server, did):
    return {a["key"]: a["value"] for a in server.ok("GET", attr_url(did, "/values/attributes/CLIENT_SCOPE"), TENANT)}


def test_telemetry_v311_and_v5(server):
    did, tok = server.new_device()
    for i, ver in enumerate((V311, V5)):
        d = connect(server, tok, version=ver)
        try:
            d.pub("v1/devices/me/telemetry", {"temperature": 20 + i, "ok": True})
            d.pub("v1/devices/me/telemetry", [{"ts": 1700000000000 + i, "values": {"hist": i}}, {"other": "x"}])
        finally:
            d.close()
        # acknowledged means durable: the value shows up
        server.wait_latest(did, "temperature", pred=lambda e, i=i: e["value"] == 20 + i)
    r = server.timeseries(did, "hist", startTs=1699999999999, endTs=1700000000002)
    assert sorted(p["ts"] for p in r["hist"]) == [1700000000000, 1700000000001]
    assert server.wait_latest(did, "other")["value"] == "x"


def test_v2_short_topic_and_mosquitto_pub(server):
    did, tok = server.new_device()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(server.mqtt_port), "-u", tok, "-q", "1",
                    "-t", "v1/devices/me/telemetry", "-m", '{"mp":7}'], check=True, timeout=20)
    assert server.wait_latest(did, "mp")["value"] == 7
    d = connect(server, tok)
    try:
        d.pub("v2/t", {"short": 1.5})
    finally:
        d.close()
    assert server.wait_latest(did, "short")["value"] == 1.5


def test_client_attributes_stored_and_requested(server):
    did, tok = server.new_device()
    r = server.api("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"target": 22, "mode": "eco"})
    assert r.status_code == 200
    d = connect(server, tok, version=V5)
    try:
        d.pub("v1/devices/me/attributes", {"fw": "1.2.3", "n": 5})
        wait_until(lambda: client_attrs(server, did).get("fw") == "1.2.3", what="client attribute fw")
        assert d.sub("v1/devices/me/attributes/response/+") == [1]
        d.pub("v1/devices/me/attributes/request/17", {"clientKeys": "fw,n", "sharedKeys": "mode"})
        topic, payload = d.next_msg()
        assert topic == "v1/devices/me/attributes/response/17"
        assert json.loads(payload) == {"client": {"fw": "1.2.3", "n": 5}, "shared": {"mode": "eco"}}
        d.pub("v1/devices/me/attributes/request/18", "{}")
        topic, payload = d.next_msg()
        assert topic == "v1/devices/me/attributes/response/18"
        assert json.loads(payload) == {"client": {"fw": "1.2.3", "n": 5}, "shared": {"mode": "eco", "target": 22}}
        d.pub("v1/devices/me/attributes/request/19", {"sharedKeys": "nope"})
        assert d.next_msg() == ("v1/devices/me/attributes/response/19", b"{}")
    finally:
        d.close()


def test_shared_attribute_update_pushed(server):
    did, tok = server.new_device()
    d = connect(server, tok)
    try:
        assert d.sub("v1/devices/me/attributes") == [1]
        # the subscription reaches the device actor asynchronously after SUBACK:
        # write until a push arrives (each write is a new value)
        n = [0]

        def write_and_receive():
            n[0] += 1
            r = server.api("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"setpoint": n[0] + 0.5})
            assert r.status_code == 200
            try:
                return d.msgs.get(timeout=1)
            except Exception:  # noqa: BLE001 - not yet
                return None
        topic, payload = wait_until(write_and_receive, timeout=20, what="shared attribute push")
        assert topic == "v1/devices/me/attributes"
        assert json.loads(payload) == {"setpoint": n[0] + 0.5}
    finally:
        d.close()


def rpc_twoway(server, did, body, answer):
    """REST two-way RPC answered by answer(); retried while the device's
    subscription may not have reached its actor yet (504/409)."""
    import threading

    def attempt():
        res = {}
        t = threading.Thread(target=lambda: res.update(r=server.api("POST", "/api/rpc/twoway/%s" % did, TENANT,
                                                                     json=dict(body, timeout=3000))))
        t.start()
        answer()
        t.join(30)
        return res["r"] if res["r"].status_code == 200 else None
    return wait_until(attempt, timeout=30, interval=0.1, what="two-way RPC")


def test_server_rpc_twoway(server):
    did, tok = server.new_device()
    d = connect(server, tok)
    try:
        assert d.sub("v1/devices/me/rpc/request/+") == [1]

        def answer():
            try:
                topic, payload = d.msgs.get(timeout=4)
            except Exception:  # noqa: BLE001 - not delivered this time
                return
            assert topic.startswith("v1/devices/me/rpc/request/")
            rid = int(topic.rsplit("/", 1)[1])
            assert json.loads(payload) == {"method": "getTemp", "params": {"unit": "C"}}
            d.pub("v1/devices/me/rpc/response/%d" % rid, {"temp": 36.6})
        r = rpc_twoway(server, did, {"method": "getTemp", "params": {"unit": "C"}}, answer)
        assert r.json() == {"temp": 36.6}
    finally:
        d.close()


def test_client_rpc_session_limits(server):
    _, tok = server.new_device()
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/response/+")
        d.pub("v1/devices/me/rpc/request/5", {"method": "getSessionLimits", "params": {}})
        topic, payload = d.next_msg()
        assert topic == "v1/devices/me/rpc/response/5"
        body = json.loads(payload)
        assert body["maxPayloadSize"] == 65536 and body["maxInflightMessages"] == 100
        assert set(body["rateLimits"]) == {"messages", "telemetryMessages", "telemetryDataPoints"}
        # any other method becomes a TO_SERVER_RPC_REQUEST message: acknowledged once durable
        d.pub("v1/devices/me/rpc/request/6", {"method": "hello", "params": {"a": 1}})
        d.pub("v1/devices/me/claim", {"secretKey": "s", "durationMs": 60000})
    finally:
        d.close()


def test_bad_credentials_codes(server):
    assert connack_code(server, "no-such-token", version=V311) == 5
    assert connack_code(server, "no-such-token", version=V5) == 0x86
    assert connack_code(server, None, client_id="unknown-client", version=V311) == 2
    assert connack_code(server, None, client_id="unknown-client", version=V5) == 0x85
    # the connection is closed after a refused CONNECT
    raw = Raw(server)
    raw.send(mqttlib.p_connect("c", "no-such-token"))
    t, _, body = raw.read()
    assert t == 2 and body[1] == 5
    assert raw.closed()


def test_mqtt_basic_credentials(server):
    did, _ = server.new_device()
    c = server.ok("GET", "/api/device/%s/credentials" % did, TENANT)
    c["credentialsType"] = "MQTT_BASIC"
    cid, user = uniq("cid"), uniq("user")
    c["credentialsValue"] = json.dumps({"clientId": cid, "userName": user, "password": "pw1"})
    server.ok("POST", "/api/device/credentials", TENANT, json=c)
    d = connect(server, user, "pw1", client_id=cid)
    try:
        d.pub("v1/devices/me/telemetry", {"basic": 1})
    finally:
        d.close()
    assert server.wait_latest(did, "basic")["value"] == 1
    assert connack_code(server, user, "wrong", client_id=cid) == 5
    assert connack_code(server, user, "wrong", client_id=cid, version=V5) == 0x86
    # clientId only
    did2, _ = server.new_device()
    c2 = server.ok("GET", "/api/device/%s/credentials" % did2, TENANT)
    c2["credentialsType"] = "MQTT_BASIC"
    cid2 = uniq("cidonly")
    c2["credentialsValue"] = json.dumps({"clientId": cid2})
    server.ok("POST", "/api/device/credentials", TENANT, json=c2)
    d = connect(server, None, client_id=cid2)
    d.pub("v1/devices/me/telemetry", {"cidonly": 2})
    d.close()
    assert server.wait_latest(did2, "cidonly")["value"] == 2


def test_subscription_whitelist(server):
    _, tok = server.new_device()
    d = connect(server, tok)
    try:
        assert d.sub("v1/devices/me/rpc/request/+", qos=2) == [1]
        assert d.sub("v1/devices/me/attributes", qos=0) == [0]
        assert d.sub("some/other/#") == [0x80]
    finally:
        d.close()
    raw = Raw(server)
    raw.connect(tok, level=5, client_id="c5")
    raw.send(mqttlib.p_subscribe(3, [("v1/devices/+/telemetry", 1), ("v2/a", 1)], level=5))
    t, _, body = raw.read()
    assert t == 9 and body[:2] == b"\x00\x03"
    assert body[-2:] == b"\x8f\x01"
    raw.close()


def test_unknown_topic(server):
    did, tok = server.new_device()
    raw = Raw(server)
    raw.connect(tok, level=5, client_id="c5")
    raw.send(mqttlib.p_publish("not/a/topic", "{}", qos=1, pid=9, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[:2] == b"\x00\x09" and body[2] == 0x90
    # the session stays open
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", '{"after":1}', qos=1, pid=10, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[:2] == b"\x00\x0a" and (len(body) == 2 or body[2] == 0)
    raw.close()
    raw = Raw(server)
    raw.connect(tok)
    raw.send(mqttlib.p_publish("not/a/topic", "{}", qos=1, pid=9))
    assert raw.read() == (4, 0, b"\x00\x09")
    raw.close()
    assert server.wait_latest(did, "after")["value"] == 1


def test_bad_payload(server):
    _, tok = server.new_device()
    raw = Raw(server)
    raw.connect(tok, level=5, client_id="c5")
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", "{not json", qos=1, pid=4, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[2] == 0x99
    raw.close()
    raw = Raw(server)
    raw.connect(tok)
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", "{not json", qos=1, pid=4))
    assert raw.closed()


def test_qos2(server):
    did, tok = server.new_device()
    # 3.1.1: the full flow, PUBREC once durable
    raw = Raw(server)
    raw.connect(tok)
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", '{"q2":1}', qos=2, pid=77))
    assert raw.read() == (5, 0, b"\x00\x4d")
    raw.send(mqttlib.p_pubrel(77))
    assert raw.read() == (7, 0, b"\x00\x4d")
    raw.close()
    assert server.wait_latest(did, "q2")["value"] == 1
    # 5: Maximum QoS 1 announced, QoS 2 is DISCONNECT 0x9B
    raw = Raw(server)
    raw.send(mqttlib.p_connect("c5", tok, level=5))
    t, _, body = raw.read()
    assert t == 2 and body[1] == 0
    assert b"\x24\x01" in body  # Maximum QoS property = 1
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", '{"q2":2}', qos=2, pid=1, level=5))
    assert mqttlib.disconnect_reason(raw) == 0x9B
    assert raw.closed()


def test_ping_and_disconnect(server):
    _, tok = server.new_device()
    raw = Raw(server)
    raw.connect(tok)
    raw.send(mqttlib.PINGREQ)
    assert raw.read() == (13, 0, b"")
    raw.send(mqttlib.DISCONNECT)
    assert raw.closed()


def test_mosquitto_sub_gets_rpc(server):
    did, tok = server.new_device()
    p = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(server.mqtt_port), "-u", tok, "-q", "1",
                          "-t", "v1/devices/me/rpc/request/+", "-C", "1", "-v"], stdout=subprocess.PIPE)
    try:
        # One call is enough: a request made before mosquitto_sub's
        # subscription reaches the device actor waits there and goes to the
        # first session that subscribes (no retry loop racing the
        # subscriber's exit).
        r = server.api("POST", "/api/rpc/oneway/%s" % did, TENANT,
                       json={"method": "blink", "params": {"n": 2}, "timeout": 20000})
        assert r.status_code == 200, r.text
        out, _ = p.communicate(timeout=20)
        topic, payload = out.decode().strip().split(" ", 1)
        assert topic.startswith("v1/devices/me/rpc/request/")
        assert json.loads(payload) == {"method": "blink", "params": {"n": 2}}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_session_taken_over(make_server):
    s = make_server(env={"ACTORS_MAX_CONCURRENT_SESSIONS_PER_DEVICE": "1"})
    _, tok = s.new_device()
    first = Raw(s)
    first.send(mqttlib.p_connect("one", tok, level=5))
    assert first.read()[0] == 2
    second = Raw(s)
    second.send(mqttlib.p_connect("two", tok, level=5))
    assert second.read()[0] == 2
    # the eldest session is closed with DISCONNECT 0x8E (reference §1.0.5)
    assert mqttlib.disconnect_reason(first) == 0x8E
    assert first.closed()
    second.send(mqttlib.PINGREQ)
    assert second.read() == (13, 0, b"")
    second.close()


def test_provision_session(server):
    """user name "provision": CONNACK 0, only /provision/request; an unknown
    provision key is answered NOT_FOUND, then the session ends (test_provision.py
    covers provisioning itself)."""
    raw = Raw(server)
    raw.send(mqttlib.p_connect("provision", "provision", level=5))
    t, _, body = raw.read()
    assert t == 2 and body[1] == 0
    raw.send(mqttlib.p_subscribe(1, [("/provision/response", 1), ("v1/devices/me/attributes", 1)], level=5))
    t, _, body = raw.read()
    assert t == 9 and body[-2:] == b"\x01\x8f"
    raw.send(mqttlib.p_publish("/provision/request", '{"deviceName":"x","provisionDeviceKey":"k",'
                               '"provisionDeviceSecret":"s"}', qos=1, pid=2, level=5))
    got = {}
    for _ in range(2):
        t, flags, body = raw.read()
        got[t] = body
    assert got[4][:2] == b"\x00\x02"
    pub = got[3]
    tl = struct.unpack(">H", pub[:2])[0]
    assert pub[2:2 + tl] == b"/provision/response"
    payload = pub[2 + tl + 2:]
    payload = payload[1 + payload[0]:]  # v5 property length (0) then the payload
    assert json.loads(payload) == {"status": "NOT_FOUND", "errorMsg": "Provision data was not found!"}
    # answered: the server ends the session (ThingsBoard after 60 s, thingsd right away)
    assert mqttlib.disconnect_reason(raw) == 0x00
    assert raw.closed()
    # anything else: PUBACK 0x90, then DISCONNECT 0x90
    raw = Raw(server)
    raw.send(mqttlib.p_connect("provision", "provision", level=5))
    t, _, body = raw.read()
    assert t == 2 and body[1] == 0
    raw.send(mqttlib.p_publish("v1/devices/me/telemetry", '{"a":1}', qos=1, pid=3, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[2] == 0x90
    assert mqttlib.disconnect_reason(raw) == 0x90
    assert raw.closed()
