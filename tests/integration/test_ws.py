"""WebSocket telemetry API (reference §3): the legacy endpoint
/api/ws/plugins/telemetry?token= and /api/ws with authCmd; timeseries and
attribute subscriptions fed by HTTP, MQTT and REST writes; initial latest
values; history; unsubscribe; entity-data queries; tenant and customer
isolation; authentication failures; malformed commands; the per-session
subscription limit; a client that does not read is dropped while the
server's memory stays bounded and other clients go on.

Every "does not arrive" check is made by ordering, not by waiting: a later
update on another subscription (or of another key) must be the next message."""
import json
import os
import socket
import struct
import threading
import time

import pytest
import websocket

import mqttlib
from tdlib import CUSTOMER_A, TENANT, uniq

RECV_TIMEOUT = 15


class Ws:
    """A websocket-client connection speaking the telemetry API."""

    def __init__(self, server, token=None, path="/api/ws/plugins/telemetry", sockopt=(), timeout=RECV_TIMEOUT):
        url = "ws://127.0.0.1:%d%s" % (server.port, path)
        if token is not None:
            url += "?token=" + token
        self.c = websocket.create_connection(url, timeout=timeout, sockopt=sockopt)

    def send(self, obj):
        self.c.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv(self):
        """The next text message, parsed. Fails on a close or a timeout."""
        op, frame = self.c.recv_data_frame(control_frame=True)
        while op in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            op, frame = self.c.recv_data_frame(control_frame=True)
        assert op == websocket.ABNF.OPCODE_TEXT, "want a text message, got opcode %d %r" % (op, frame.data[:200])
        return json.loads(frame.data.decode())

    def close_status(self):
        """Reads until the server closes: (code, reason), or (None, None) for a
        dropped connection; text messages before it are counted in .skipped."""
        self.skipped = 0
        while True:
            try:
                op, frame = self.c.recv_data_frame(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
                return None, None
            if op == websocket.ABNF.OPCODE_TEXT:
                self.skipped += 1
            if op == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
                return code, frame.data[2:].decode()

    def close(self):
        try:
            self.c.close()
        except Exception:  # noqa: BLE001 - already closed by the server
            pass


def jwt(server, who=TENANT):
    return server.token(who)


def ts_cmd(cmd_id, did, keys="", **kw):
    c = {"cmdId": cmd_id, "entityType": "DEVICE", "entityId": did, "keys": keys, "scope": "LATEST_TELEMETRY"}
    c.update(kw)
    return c


def attr_cmd(cmd_id, did, keys="", scope=None, **kw):
    c = {"cmdId": cmd_id, "entityType": "DEVICE", "entityId": did, "keys": keys}
    if scope:
        c["scope"] = scope
    c.update(kw)
    return c


def assert_update_shape(m, sub_id):
    assert set(m) == {"subscriptionId", "errorCode", "errorMsg", "data", "latestValues"}, m
    assert m["subscriptionId"] == sub_id and m["errorCode"] == 0 and m["errorMsg"] is None, m
    assert list(m["data"]) == sorted(m["data"]), "keys sorted: %r" % m
    for k, pts in m["data"].items():
        for ts, v in pts:
            assert isinstance(ts, int) and (v is None or isinstance(v, str)), m
        assert m["latestValues"][k] == pts[-1][0], m


def assert_error(m, sub_id, code, msg=None):
    assert m["subscriptionId"] == sub_id and m["errorCode"] == code and m["data"] is None, m
    assert isinstance(m["errorMsg"], str) and m["errorMsg"], m
    if msg is not None:
        assert m["errorMsg"] == msg, m


def attr_url(did, rest):
    return "/api/plugins/telemetry/DEVICE/%s%s" % (did, rest)


# ---- subscriptions fed by the devices and REST ----

def test_legacy_endpoint_http_and_mqtt_updates(server):
    did, tok = server.new_device()
    assert server.post_telemetry(tok, {"ts": 1700000000000, "values": {"temperature": 21.5, "humidity": 40}}).status_code == 200
    server.wait_latest(did, "humidity")
    ws = Ws(server, jwt(server))
    try:
        ws.send({"tsSubCmds": [ts_cmd(1, did, "temperature,humidity")]})
        m = ws.recv()
        assert_update_shape(m, 1)
        assert m["data"] == {"humidity": [[1700000000000, "40"]], "temperature": [[1700000000000, "21.5"]]}
        # over HTTP (the device API, through the queue and the rule engine)
        assert server.post_telemetry(tok, {"temperature": 22.25, "ignored": 1}).status_code == 200
        m = ws.recv()
        assert_update_shape(m, 1)
        assert list(m["data"]) == ["temperature"] and m["data"]["temperature"][0][1] == "22.25"
        # over MQTT
        d = mqttlib.connect(server, tok)
        try:
            d.pub("v1/devices/me/telemetry", {"ts": 1700000005000, "values": {"humidity": 41, "flag": True}})
        finally:
            d.close()
        m = ws.recv()
        assert_update_shape(m, 1)
        assert m["data"] == {"humidity": [[1700000005000, "41"]]}
        assert m["latestValues"] == {"humidity": 1700000005000}
    finally:
        ws.close()


def test_api_ws_with_auth_cmd_and_all_keys(server):
    did, tok = server.new_device()
    ws = Ws(server, path="/api/ws")
    try:
        ws.send({"authCmd": {"cmdId": 0, "token": jwt(server)},
                 "cmds": [{"type": "TIMESERIES", "cmdId": 7, "entityType": "DEVICE", "entityId": did, "keys": ""}]})
        m = ws.recv()
        assert_update_shape(m, 7)
        assert m["data"] == {}  # no telemetry yet, all keys
        d = mqttlib.connect(server, tok)
        try:
            d.pub("v1/devices/me/telemetry", {"a": 1, "b": "x", "c": 2.5, "d": False})
        finally:
            d.close()
        m = ws.recv()
        assert_update_shape(m, 7)
        assert {k: v[0][1] for k, v in m["data"].items()} == {"a": "1", "b": "x", "c": "2.5", "d": "false"}
        # REST save (bypasses the rule engine) is published too
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"ts": 1700000009000, "values": {"rest": 5}})
        m = ws.recv()
        assert m["data"] == {"rest": [[1700000009000, "5"]]}
    finally:
        ws.close()


def test_latest_values_initial_reply(server):
    did, tok = server.new_device()
    server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT,
              json=[{"ts": 1700000000000, "values": {"k1": 1, "k2": "v"}}, {"ts": 1700000001000, "values": {"k1": 2}}])
    ws = Ws(server, jwt(server))
    try:
        ws.send({"tsSubCmds": [ts_cmd(1, did, ""), ts_cmd(2, did, "k1,nothing")]})
        got = {}
        for _ in range(2):
            m = ws.recv()
            got[m["subscriptionId"]] = m
        assert_update_shape(got[1], 1)
        assert got[1]["data"] == {"k1": [[1700000001000, "2"]], "k2": [[1700000000000, "v"]]}
        # a requested key without a value comes as [now, null], as ThingsBoard's findLatest
        assert_update_shape(got[2], 2)
        assert got[2]["data"]["k1"] == [[1700000001000, "2"]]
        assert got[2]["data"]["nothing"][0][1] is None
        # timeWindow: the window's history instead of the latest values
        ws.send({"tsSubCmds": [ts_cmd(3, did, "k1", startTs=1700000000000, timeWindow=5000, limit=10)]})
        m = ws.recv()
        assert_update_shape(m, 3)
        assert m["data"] == {"k1": [[1700000001000, "2"], [1700000000000, "1"]]}
    finally:
        ws.close()


def test_attribute_subscriptions(server):
    did, tok = server.new_device()
    server.ok("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"mode": "eco"})
    ws = Ws(server, jwt(server))
    try:
        ws.send({"attrSubCmds": [attr_cmd(1, did, scope="SHARED_SCOPE"), attr_cmd(2, did, scope="CLIENT_SCOPE"),
                                 attr_cmd(3, did, keys="fw")]})
        got = {}
        for _ in range(3):
            m = ws.recv()
            got[m["subscriptionId"]] = m
        assert got[1]["data"]["mode"][0][1] == "eco"
        assert got[2]["data"] == {} and got[3]["data"] == {}
        # shared scope via REST: only the SHARED (and not the keyed "fw") subscription hears it
        server.ok("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"target": 22})
        m = ws.recv()
        assert_update_shape(m, 1)
        assert m["data"]["target"][0][1] == "22"
        # client scope via the device (MQTT): the CLIENT subscription and the keyed "fw" one
        d = mqttlib.connect(server, tok)
        try:
            d.pub("v1/devices/me/attributes", {"fw": "1.2.3", "n": 5})
        finally:
            d.close()
        got = {}
        for _ in range(2):
            m = ws.recv()
            got[m["subscriptionId"]] = m
        assert sorted(got) == [2, 3], got
        assert {k: v[0][1] for k, v in got[2]["data"].items()} == {"fw": "1.2.3", "n": "5"}
        assert list(got[3]["data"]) == ["fw"]
        # via HTTP too; then a delete of a shared attribute: [0, ""]
        assert server.post_attributes(tok, {"fw": "2.0"}).status_code == 200
        got = {}
        for _ in range(2):
            m = ws.recv()
            got[m["subscriptionId"]] = m
        assert got[3]["data"]["fw"][0][1] == "2.0"
        r = server.api("DELETE", attr_url(did, "/SHARED_SCOPE"), TENANT, params={"keys": "mode"})
        assert r.status_code == 200, r.text
        m = ws.recv()
        assert m["subscriptionId"] == 1 and m["data"] == {"mode": [[0, ""]]}, m
    finally:
        ws.close()


def test_server_attributes_written_by_transports(server):
    """provisionState (set by provisioning) and lastConnectedGateway (set when a
    gateway connects a child) are written by the transports, not by a rule
    chain: a SERVER_SCOPE subscription hears both."""
    from test_mqtt_gateway import new_gateway
    from test_provision import http_provision, make_profile
    p, key, secret = make_profile(server, "CHECK_PRE_PROVISIONED_DEVICES")
    name = uniq("pre")
    pre = server.create_device(name=name, deviceProfileId=p["id"])["id"]["id"]
    gid, gtok = new_gateway(server)
    child = uniq("child")
    cid = server.create_device(name=child)["id"]["id"]
    ws = Ws(server, jwt(server))
    try:
        ws.send({"attrSubCmds": [attr_cmd(1, pre, keys="provisionState", scope="SERVER_SCOPE"),
                                 attr_cmd(2, cid, keys="lastConnectedGateway", scope="SERVER_SCOPE")]})
        assert sorted(ws.recv()["subscriptionId"] for _ in range(2)) == [1, 2]  # initial (empty) replies
        req = {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}
        assert http_provision(server, req)["status"] == "SUCCESS"
        m = ws.recv()
        assert_update_shape(m, 1)
        assert list(m["data"]) == ["provisionState"] and m["data"]["provisionState"][0][1] == "provisioned", m
        g = mqttlib.connect(server, gtok)
        try:
            g.pub("v1/gateway/connect", {"device": child})
            m = ws.recv()
        finally:
            g.close()
        assert_update_shape(m, 2)
        assert m["data"]["lastConnectedGateway"][0][1] == gid, m
    finally:
        ws.close()


def test_history_cmd(server):
    did, _ = server.new_device()
    server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT,
              json=[{"ts": 1700000000000 + i * 1000, "values": {"t": i, "u": i * 10}} for i in range(10)])
    ws = Ws(server, jwt(server))
    try:
        ws.send({"historyCmds": [{"cmdId": 5, "entityType": "DEVICE", "entityId": did, "keys": "t,u",
                                  "startTs": 1700000002000, "endTs": 1700000006000, "limit": 3}]})
        m = ws.recv()
        assert_update_shape(m, 5)
        # [startTs, endTs), newest first, limit per key
        assert m["data"]["t"] == [[1700000005000, "5"], [1700000004000, "4"], [1700000003000, "3"]]
        assert m["data"]["u"][0] == [1700000005000, "50"]
        # aggregated, and over the new wrapper
        ws.send({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 6, "entityType": "DEVICE", "entityId": did,
                           "keys": "t", "startTs": 1700000000000, "endTs": 1700000010000, "interval": 10000,
                           "agg": "SUM"}]})
        m = ws.recv()
        assert_update_shape(m, 6)
        assert [p[1] for p in m["data"]["t"]] == ["45"]
        # no keys -> errorCode 2; a history command does not subscribe
        ws.send({"historyCmds": [{"cmdId": 8, "entityType": "DEVICE", "entityId": did, "startTs": 0, "endTs": 1}]})
        assert_error(ws.recv(), 8, 2, "Keys are empty!")
    finally:
        ws.close()


def test_unsubscribe_stops_updates(server):
    did, tok = server.new_device()
    ws = Ws(server, jwt(server))
    try:
        ws.send({"tsSubCmds": [ts_cmd(1, did, "a"), ts_cmd(2, did, "b")]})
        assert sorted(ws.recv()["subscriptionId"] for _ in range(2)) == [1, 2]
        ws.send({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": did, "unsubscribe": True}]})
        # a for cmdId 1 (gone), then b for cmdId 2: the next message must be b's
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"a": 1})
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"b": 2})
        m = ws.recv()
        assert m["subscriptionId"] == 2 and list(m["data"]) == ["b"], m
        # re-using a cmdId replaces the subscription: cmdId 2 now watches c only
        ws.send({"tsSubCmds": [ts_cmd(2, did, "c")]})
        m = ws.recv()
        assert m["subscriptionId"] == 2 and list(m["data"]) == ["c"], m  # initial [now, null]
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"b": 3})
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"c": 4})
        m = ws.recv()
        assert m["subscriptionId"] == 2 and m["data"]["c"][0][1] == "4", m
        # the new wrapper's unsubscribe, then a fresh subscription proves the session still works
        ws.send({"cmds": [{"type": "TIMESERIES", "cmdId": 2, "entityType": "DEVICE", "entityId": did,
                           "unsubscribe": True}, {"type": "TIMESERIES", "cmdId": 3, "entityType": "DEVICE",
                                                  "entityId": did, "keys": "d"}]})
        assert ws.recv()["subscriptionId"] == 3
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"c": 5})
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"d": 6})
        m = ws.recv()
        assert m["subscriptionId"] == 3 and m["data"]["d"][0][1] == "6", m
    finally:
        ws.close()


def test_no_update_lost_while_subscribing(server):
    """Subscriptions made while a device streams: from the initial value on,
    every later value arrives (the initial read waits for the writer's
    commit of what was published before the registration)."""
    did, tok = server.new_device()
    n = 2000
    d = mqttlib.connect(server, tok)
    errors = []
    acked = [0]
    cv = threading.Condition()

    def stream():
        try:
            for i in range(n):
                d.pub("v1/devices/me/telemetry", {"seq": i})
                with cv:
                    acked[0] = i + 1
                    cv.notify_all()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            with cv:
                acked[0] = n
                cv.notify_all()
    def collect(ws, out):
        try:
            first = ws.recv()
            out["s0"] = int(first["data"]["seq"][0][1])
            seen = {out["s0"]}
            while max(seen) < n - 1:
                seen.update(int(v) for _, v in ws.recv()["data"]["seq"])
            out["seen"] = seen
        except Exception as e:  # noqa: BLE001 - reported below
            out["error"] = e
    th = threading.Thread(target=stream)
    th.start()
    subs = []
    try:
        for k in range(1, 5):
            # subscribe at 20%, 40%, 60% and 80% of the stream; each reads as it goes
            with cv:
                assert cv.wait_for(lambda: acked[0] >= n * k // 5, 60)
                assert acked[0] < n, "the stream ended before the subscriptions"
            ws = Ws(server, jwt(server))
            ws.send({"tsSubCmds": [ts_cmd(1, did, "seq")]})
            out = {}
            rt = threading.Thread(target=collect, args=(ws, out))
            rt.start()
            subs.append((ws, rt, out))
        th.join(120)
        assert not th.is_alive() and not errors, errors
        for ws, rt, out in subs:
            rt.join(60)
            assert not rt.is_alive() and "error" not in out, out.get("error")
            missing = sorted(set(range(out["s0"], n)) - out["seen"])
            assert not missing, "lost after the initial value %d: %s" % (out["s0"], missing[:20])
    finally:
        d.close()
        for ws, _, _ in subs:
            ws.close()


def edq_cmd(cmd_id, ids, latest=("temperature",), etype="DEVICE", **kw):
    c = {"cmdId": cmd_id,
         "query": {"entityFilter": {"type": "entityList", "entityType": etype, "entityList": ids},
                   "pageLink": {"pageSize": 10, "page": 0},
                   "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}, {"type": "ENTITY_FIELD", "key": "type"}],
                   "latestValues": [{"type": "TIME_SERIES", "key": k} for k in latest]},
         "latestCmd": {"keys": [{"type": "TIME_SERIES", "key": k} for k in latest]}}
    c.update(kw)
    return c


def test_entity_data_over_three_devices(server):
    devs = [server.new_device(name=uniq("edq")) for _ in range(3)]
    names = {d: server.ok("GET", "/api/device/" + d, TENANT)["name"] for d, _ in devs}
    server.ok("POST", attr_url(devs[0][0], "/timeseries/ANY"), TENANT, json={"ts": 1700000000000, "values": {"temperature": 20}})
    ws = Ws(server, path="/api/ws")
    try:
        ws.send({"authCmd": {"cmdId": 0, "token": jwt(server)},
                 "cmds": [dict(edq_cmd(4, [d for d, _ in devs]), type="ENTITY_DATA")]})
        m = ws.recv()
        assert m["cmdId"] == 4 and m["cmdUpdateType"] == "ENTITY_DATA" and m["errorCode"] == 0, m
        assert m["update"] is None
        page = m["data"]
        assert page["totalElements"] == 3 and page["totalPages"] == 1 and page["hasNext"] is False, page
        by_id = {e["entityId"]["id"]: e for e in page["data"]}
        assert set(by_id) == set(names)
        for d, name in names.items():
            assert by_id[d]["entityId"]["entityType"] == "DEVICE"
            assert by_id[d]["latest"]["ENTITY_FIELD"]["name"]["value"] == name
            assert by_id[d]["latest"]["ENTITY_FIELD"]["type"]["value"] == "default"
        assert by_id[devs[0][0]]["latest"]["TIME_SERIES"]["temperature"] == {"ts": 1700000000000, "value": "20"}
        assert by_id[devs[1][0]]["latest"]["TIME_SERIES"]["temperature"]["ts"] == 0
        # live: a device posts over MQTT, another over HTTP
        d = mqttlib.connect(server, devs[1][1])
        try:
            d.pub("v1/devices/me/telemetry", {"temperature": 25.5, "other": 1})
        finally:
            d.close()
        m = ws.recv()
        assert m["cmdId"] == 4 and m["data"] is None and len(m["update"]) == 1, m
        u = m["update"][0]
        assert u["entityId"] == {"entityType": "DEVICE", "id": devs[1][0]}
        assert list(u["latest"]) == ["TIME_SERIES"] and list(u["latest"]["TIME_SERIES"]) == ["temperature"]
        assert u["latest"]["TIME_SERIES"]["temperature"]["value"] == "25.5"
        assert server.post_telemetry(devs[2][1], {"temperature": 30}).status_code == 200
        m = ws.recv()
        assert m["update"][0]["entityId"]["id"] == devs[2][0]
        assert m["update"][0]["latest"]["TIME_SERIES"]["temperature"]["value"] == "30"
        # unsubscribe, then prove it with another subscription's update
        ws.send({"cmds": [{"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 4},
                          {"type": "TIMESERIES", "cmdId": 5, "entityType": "DEVICE", "entityId": devs[0][0],
                           "keys": "z"}]})
        assert ws.recv()["subscriptionId"] == 5
        assert server.post_telemetry(devs[2][1], {"temperature": 31}).status_code == 200
        assert server.post_telemetry(devs[0][1], {"z": 1}).status_code == 200
        m = ws.recv()
        assert m.get("subscriptionId") == 5, m
    finally:
        ws.close()


def test_entity_data_single_entity_attributes_and_errors(server):
    did, tok = server.new_device()
    server.ok("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"target": 21})
    ws = Ws(server, jwt(server))
    try:
        ws.send({"entityDataCmds": [{
            "cmdId": 1,
            "query": {"entityFilter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": did}},
                      "pageLink": {"pageSize": 1, "page": 0}},
            "latestCmd": {"keys": [{"type": "SHARED_ATTRIBUTE", "key": "target"},
                                   {"type": "CLIENT_ATTRIBUTE", "key": "fw"}]}}]})
        m = ws.recv()
        e = m["data"]["data"][0]
        assert e["latest"]["SHARED_ATTRIBUTE"]["target"]["value"] == "21"
        assert e["latest"]["CLIENT_ATTRIBUTE"]["fw"] == {"ts": 0, "value": ""}
        server.ok("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"target": 23})
        m = ws.recv()
        assert m["update"][0]["latest"] == {"SHARED_ATTRIBUTE": {"target": {"ts": m["update"][0]["latest"]["SHARED_ATTRIBUTE"]["target"]["ts"], "value": "23"}}}
        assert server.post_attributes(tok, {"fw": "9"}).status_code == 200
        m = ws.recv()
        assert m["update"][0]["latest"]["CLIENT_ATTRIBUTE"]["fw"]["value"] == "9"
        # tsCmd: the window's points in "timeseries", then new points there
        now = int(time.time() * 1000)
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"ts": now - 1000, "values": {"temp": 1}})
        ws.send({"entityDataCmds": [{
            "cmdId": 3,
            "query": {"entityFilter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": did}},
                      "pageLink": {"pageSize": 1, "page": 0}},
            "tsCmd": {"keys": ["temp"], "startTs": now - 60000, "timeWindow": 120000, "limit": 10}}]})
        m = ws.recv()
        assert m["cmdId"] == 3 and m["data"]["data"][0]["timeseries"] == {"temp": [{"ts": now - 1000, "value": "1"}]}, m
        server.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"ts": now, "values": {"temp": 2, "x": 0}})
        m = ws.recv()
        assert m["cmdId"] == 3 and m["update"][0]["timeseries"] == {"temp": [{"ts": now, "value": "2"}]}, m
        # an unsupported filter
        ws.send({"entityDataCmds": [{"cmdId": 2, "query": {"entityFilter": {"type": "deviceType", "deviceTypes": ["default"]},
                                                           "pageLink": {"pageSize": 10, "page": 0}}}]})
        m = ws.recv()
        assert m["cmdId"] == 2 and m["errorCode"] == 2 and "entityList" in m["errorMsg"] and m["data"] is None, m
    finally:
        ws.close()


# ---- isolation ----

@pytest.fixture(scope="module")
def tenant_b(server):
    """Tenant B (created by the sysadmin) with an activated admin."""
    return server.new_tenant_admin("WS Tenant B", firstName="B")[0]


def test_cross_tenant_subscription_refused(server, tenant_b):
    victim, victim_tok = server.new_device()  # tenant A's
    own, own_tok = server.new_device(tenant_b)
    ws = Ws(server, tenant_b)
    try:
        ws.send({"tsSubCmds": [ts_cmd(1, victim, "")], "attrSubCmds": [attr_cmd(2, victim)]})
        got = {}
        for _ in range(2):
            m = ws.recv()
            got[m["subscriptionId"]] = m
        for sid in (1, 2):
            assert_error(got[sid], sid, 3, "You don't have permission to perform this operation!")
        ws.send({"tsSubCmds": [ts_cmd(3, own, "")]})
        assert ws.recv()["subscriptionId"] == 3
        # the victim's data never shows up; the own device's update is the next message
        assert server.post_telemetry(victim_tok, {"secret": 1}).status_code == 200
        server.wait_latest(victim, "secret")
        assert server.post_telemetry(own_tok, {"mine": 2}).status_code == 200
        m = ws.recv()
        assert m["subscriptionId"] == 3 and list(m["data"]) == ["mine"], m
        # entity data: another tenant's entities are not in the page
        ws.send({"entityDataCmds": [edq_cmd(4, [victim, own])]})
        m = ws.recv()
        assert m["data"]["totalElements"] == 1 and m["data"]["data"][0]["entityId"]["id"] == own, m
    finally:
        ws.close()


def test_customer_user_only_own_devices(server):
    a1 = server.device_by_name("Test Device A1")["id"]["id"]
    b1 = server.device_by_name("Test Device B1")["id"]["id"]
    ws = Ws(server, jwt(server, CUSTOMER_A))
    try:
        ws.send({"tsSubCmds": [ts_cmd(1, b1, "x")]})
        assert_error(ws.recv(), 1, 3)
        ws.send({"tsSubCmds": [ts_cmd(2, a1, "x")]})
        m = ws.recv()
        assert_update_shape(m, 2)
    finally:
        ws.close()


# ---- authentication and bad input ----

def test_bad_token_closed(server):
    ws = Ws(server, "not-a-jwt")
    try:
        assert ws.close_status()[0] == 1007
    finally:
        ws.close()
    ws = Ws(server, path="/api/ws")
    try:
        ws.send({"authCmd": {"cmdId": 0, "token": jwt(server)[:-4] + "AAAA"}, "cmds": []})
        assert ws.close_status()[0] == 1007
    finally:
        ws.close()
    # a refresh token is no access token
    refresh = server.ok("POST", "/api/auth/login", json={"username": TENANT[0], "password": TENANT[1]})["refreshToken"]
    ws = Ws(server, refresh)
    try:
        assert ws.close_status()[0] == 1007
    finally:
        ws.close()


def test_missing_auth_closed(server):
    ws = Ws(server, path="/api/ws")
    try:
        did, _ = server.new_device()
        ws.send({"cmds": [{"type": "TIMESERIES", "cmdId": 1, "entityType": "DEVICE", "entityId": did, "keys": "t"}]})
        assert ws.close_status() == (1008, "Auth cmd is missing")
    finally:
        ws.close()


def test_malformed_json_gets_error_and_session_goes_on(server):
    did, tok = server.new_device()
    ws = Ws(server, jwt(server))
    try:
        for bad in ("not json", "[1,2]", '{"tsSubCmds": {"cmdId": 1}}', '{"cmds":[{"type":"NOPE","cmdId":3}]}'):
            ws.send(bad)
            assert_error(ws.recv(), 1, 2, "Failed to parse the payload")
        ws.send({"tsSubCmds": [{"cmdId": 2, "entityType": "DEVICE", "keys": "t"}]})
        assert_error(ws.recv(), 2, 2, "Device id is empty!")
        ws.send({"tsSubCmds": [ts_cmd(-1, did, "t")]})
        assert_error(ws.recv(), -1, 2, "Cmd id is negative value!")
        ws.send({"tsSubCmds": [ts_cmd(4, did, "t")]})
        assert ws.recv()["subscriptionId"] == 4
        assert server.post_telemetry(tok, {"t": 1}).status_code == 200
        assert ws.recv()["data"]["t"][0][1] == "1"
    finally:
        ws.close()


def test_plain_get_is_refused(server):
    r = server.api("GET", "/api/ws/plugins/telemetry", params={"token": jwt(server)})
    assert r.status_code == 400


# ---- limits (their own server with small limits) ----

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def limited(make_server):
    asan = os.environ.get("ASAN_OPTIONS", "")
    return make_server(env={
        "TD_SERVER_WS_MAX_SUBSCRIPTIONS_PER_SESSION": "3",
        "TB_SERVER_WS_AUTH_TIMEOUT_MS": "700",
        "TB_SERVER_WS_MAX_QUEUE_MESSAGES_PER_SESSION": "50",
        "TD_SERVER_WS_MAX_QUEUE_BYTES_PER_SESSION": "1048576",
        # keep other memory small and steady so the RSS check sees the queues
        "SQLITE_CACHE_KB": "2048",
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=8",
    })


def test_subscription_limit_and_auth_timeout(limited):
    s = limited
    did, _ = s.new_device()
    ws = Ws(s, jwt(s))
    try:
        ws.send({"tsSubCmds": [ts_cmd(i, did, "k%d" % i) for i in (1, 2, 3)]})
        assert sorted(ws.recv()["subscriptionId"] for _ in range(3)) == [1, 2, 3]
        ws.send({"tsSubCmds": [ts_cmd(4, did, "k4")]})
        m = ws.recv()
        assert_error(m, 4, 2)
        assert "limit" in m["errorMsg"] and "3" in m["errorMsg"], m
        # replacing an existing cmdId is no new subscription; after an unsubscribe there is room again
        ws.send({"tsSubCmds": [ts_cmd(3, did, "k33")]})
        assert ws.recv()["subscriptionId"] == 3
        ws.send({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": did, "unsubscribe": True},
                               ts_cmd(5, did, "k5")]})
        assert_update_shape(ws.recv(), 5)
        # an entity-data query counts one per entity
        ws.send({"entityDataCmds": [edq_cmd(6, [did, s.new_device()[0]])]})
        m = ws.recv()
        assert m["cmdId"] == 6 and m["errorCode"] == 2 and "limit" in m["errorMsg"], m
    finally:
        ws.close()
    # no authCmd within server.ws.auth_timeout_ms (700 ms here)
    ws = Ws(s, path="/api/ws")
    try:
        assert ws.close_status()[0] == 1008
    finally:
        ws.close()


def test_slow_client_dropped_memory_bounded(limited):
    s = limited
    did, _ = s.new_device()
    token = jwt(s)
    # the slow client: tiny receive buffer, subscribes, then never reads
    slow = Ws(s, token, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    fast = Ws(s, token)
    try:
        slow.send({"tsSubCmds": [ts_cmd(1, did, "")]})
        assert slow.recv()["subscriptionId"] == 1
        fast.send({"tsSubCmds": [ts_cmd(1, did, "")]})
        assert fast.recv()["subscriptionId"] == 1
        n, size = 600, 100000
        received = []
        cv = threading.Condition()

        def reader():
            try:
                while len(received) < n:
                    m = fast.recv()
                    with cv:
                        received.append(len(m["data"]["big"][0][1]))
                        cv.notify()
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                with cv:
                    received.append(e)
                    cv.notify()
        th = threading.Thread(target=reader)
        th.start()
        before = rss_kb(s.proc.pid)
        for i in range(n):
            # the fast client keeps up (a few updates behind at most, well
            # inside the 1 MB send queue); the slow one does not read at all
            with cv:
                assert cv.wait_for(lambda: len(received) >= i - 4, RECV_TIMEOUT), received[-1:]
            s.ok("POST", attr_url(did, "/timeseries/ANY"), TENANT, json={"big": ("%06d" % i) + "x" * (size - 6)})
        th.join(120)
        assert not th.is_alive(), "fast client stalled after %d updates" % len(received)
        # the other client got every update
        assert received == [size] * n, received[-3:]
        after = rss_kb(s.proc.pid)
        # 60 MB went to each subscriber; the slow one's share was not kept
        assert after - before < 30000, "RSS grew by %d kB" % (after - before)
        # the slow client was dropped: it finds a close (1008) or a reset after what got through
        code, reason = slow.close_status()
        assert code in (None, 1008), (code, reason)
        assert slow.skipped < n, "the slow client got all %d updates" % n
        if code == 1008:
            assert reason == "Max pending updates limit reached!"
        # and the server goes on serving new sessions
        ws = Ws(s, token)
        try:
            ws.send({"tsSubCmds": [ts_cmd(2, did, "big")]})
            assert ws.recv()["data"]["big"][0][1].startswith("%06d" % (n - 1))
        finally:
            ws.close()
    finally:
        slow.close()
        fast.close()
