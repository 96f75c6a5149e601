"""MQTT gateway API (reference §1.1.6): children created on first use,
telemetry and attributes per child, attribute requests, shared attribute
updates and RPC routed through the gateway, non-gateways refused."""
import json
import mqttlib
from mqttlib import V5, Raw, connect
from tdlib import TENANT, uniq, wait_until


def new_gateway(server):
    tok = uniq("GW").replace("-", "_")
    d = server.create_device(TENANT, name=uniq("gw"), access_token=tok, additionalInfo={"gateway": True})
    return d["id"]["id"], tok


def child_id(server, name):
    return wait_until(lambda: server.api("GET", "/api/tenant/devices", TENANT, params={"deviceName": name}).status_code == 200
                      and server.device_by_name(name)["id"]["id"], what="child device %s" % name)


def test_gateway_children_data(server):
    gid, tok = new_gateway(server)
    a, b = uniq("childA"), uniq("childB")
    g = connect(server, tok)
    try:
        g.pub("v1/gateway/connect", {"device": a, "type": "default"})
        aid = child_id(server, a)
        g.pub("v1/gateway/telemetry", {a: [{"ts": 1700000000000, "values": {"t": 1}}, {"now": "x"}], b: [{"t": 2}]})
        g.pub("v1/gateway/attributes", {a: {"ca": 7}})
        bid = child_id(server, b)
        assert server.wait_latest(aid, "now")["value"] == "x"
        assert server.timeseries(aid, "t", startTs=1699999999999, endTs=1700000000001, useStrictDataTypes="true")["t"][0]["value"] == 1
        assert server.wait_latest(bid, "t")["value"] == 2
        wait_until(lambda: {x["key"]: x["value"] for x in server.ok(
            "GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % aid, TENANT)}.get("ca") == 7,
            what="child client attribute")
        srv = {x["key"]: x["value"] for x in server.ok(
            "GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/SERVER_SCOPE" % bid, TENANT)}
        assert srv.get("lastConnectedGateway") == gid
        # attribute request, single key and several keys
        assert g.sub("v1/gateway/attributes/response") == [1]
        g.pub("v1/gateway/attributes/request", {"id": 3, "device": a, "client": True, "key": "ca"})
        topic, payload = g.next_msg()
        assert topic == "v1/gateway/attributes/response"
        assert json.loads(payload) == {"id": 3, "device": a, "value": 7}
        g.pub("v1/gateway/attributes/request", {"id": 4, "device": a, "client": True, "keys": ["ca", "nope"]})
        assert json.loads(g.next_msg()[1]) == {"id": 4, "device": a, "values": {"ca": 7}}
        g.pub("v1/gateway/disconnect", {"device": a})
    finally:
        g.close()


def test_gateway_downlink(server):
    _, tok = new_gateway(server)
    a = uniq("childD")
    g = connect(server, tok)
    try:
        assert g.sub("v1/gateway/attributes") == [1]
        assert g.sub("v1/gateway/rpc") == [1]
        g.pub("v1/gateway/connect", {"device": a})
        aid = child_id(server, a)
        # the child's session and subscriptions reach its actor asynchronously: write until pushed
        n = [0]

        def write_and_receive():
            n[0] += 1
            r = server.api("POST", "/api/plugins/telemetry/DEVICE/%s/attributes/SHARED_SCOPE" % aid, TENANT,
                           json={"s": n[0]})
            assert r.status_code == 200
            try:
                return g.msgs.get(timeout=1)
            except Exception:  # noqa: BLE001 - not yet
                return None
        topic, payload = wait_until(write_and_receive, timeout=20, what="child attribute push")
        assert topic == "v1/gateway/attributes"
        assert json.loads(payload) == {"device": a, "data": {"s": n[0]}}

        def answer():
            try:
                topic, payload = g.msgs.get(timeout=4)
            except Exception:  # noqa: BLE001 - not delivered this time
                return
            assert topic == "v1/gateway/rpc"
            req = json.loads(payload)
            assert req["device"] == a and req["data"]["method"] == "m1" and req["data"]["params"] == {"p": 1}
            g.pub("v1/gateway/rpc", {"device": a, "id": req["data"]["id"], "data": {"done": True}})
        from test_mqtt_device import rpc_twoway
        r = rpc_twoway(server, aid, {"method": "m1", "params": {"p": 1}}, answer)
        assert r.json() == {"done": True}
    finally:
        g.close()


def test_gateway_topics_need_a_gateway(server):
    _, tok = server.new_device()
    raw = Raw(server)
    raw.connect(tok, level=5, client_id="ng")
    raw.send(mqttlib.p_publish("v1/gateway/telemetry", '{"x":[{"a":1}]}', qos=1, pid=2, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[2] == 0x90
    raw.close()


def test_gateway_bad_payload(server):
    _, tok = new_gateway(server)
    raw = Raw(server)
    raw.connect(tok, level=5, client_id="gb")
    raw.send(mqttlib.p_publish("v1/gateway/telemetry", '{"dev":{"not":"an array"}}', qos=1, pid=2, level=5))
    t, _, body = raw.read()
    assert t == 4 and body[2] == 0x99
    raw.close()
