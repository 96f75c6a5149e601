"""Persistent server-side RPC (reference §2.7): "persistent":true on /api/rpc/{oneway|twoway}
stores an Rpc row and answers {"rpcId"} at once; the device's actor delivers it when a
session subscribes (also after a restart) and walks its status QUEUED -> SENT -> DELIVERED
-> SUCCESSFUL (the reply stored as `response`), or EXPIRED / TIMEOUT / FAILED;
GET/DELETE /api/rpc/persistent/{rpcId} and the per-device list, with tenant isolation."""
import json
import re
import time

import pytest

import mqttlib
from mqttlib import Raw, connect
from tdlib import CUSTOMER, TENANT, uniq, wait_until


def persistent_rpc(server, did, kind="twoway", token=TENANT, **body):
    b = {"method": "setState", "params": {"on": True}, "persistent": True, "timeout": 60000}
    b.update(body)
    r = server.api("POST", "/api/rpc/%s/%s" % (kind, did), token, json=b)
    assert r.status_code == 200, r.text
    rid = r.json()["rpcId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", rid), r.text
    return rid


def get_rpc(server, rid, token=TENANT):
    return server.ok("GET", "/api/rpc/persistent/%s" % rid, token)


def wait_status(server, rid, want, timeout=20):
    want = (want,) if isinstance(want, str) else tuple(want)

    def probe():
        rpc = get_rpc(server, rid)
        return rpc if rpc["status"] in want else None
    return wait_until(probe, timeout=timeout, what="rpc %s status in %s" % (rid, want))


def next_rpc(dev, timeout=10):
    topic, payload = dev.next_msg(timeout)
    assert topic.startswith("v1/devices/me/rpc/request/"), topic
    return int(topic.rsplit("/", 1)[1]), json.loads(payload)


@pytest.fixture(scope="module")
def tenant_b(server):
    return server.new_tenant_admin("RPC tenant B")[0]


def test_queued_offline_then_delivered_and_answered_over_mqtt(server):
    did, tok = server.new_device()
    before = int(time.time() * 1000)
    rid = persistent_rpc(server, did, params={"pin": 7}, additionalInfo={"note": "x"})
    rpc = get_rpc(server, rid)
    assert rpc["id"] == {"entityType": "RPC", "id": rid}
    assert rpc["deviceId"] == {"entityType": "DEVICE", "id": did}
    assert rpc["tenantId"]["entityType"] == "TENANT"
    assert rpc["status"] == "QUEUED" and rpc["response"] is None
    assert rpc["createdTime"] >= before and rpc["expirationTime"] >= before + 59000
    assert rpc["request"]["body"]["method"] == "setState"
    assert json.loads(rpc["request"]["body"]["params"]) == {"pin": 7}
    assert rpc["request"]["oneway"] is False and rpc["request"]["persisted"] is True
    assert rpc["additionalInfo"] == {"note": "x"}

    d = connect(server, tok)
    try:
        assert d.sub("v1/devices/me/rpc/request/+") == [1]
        req_id, body = next_rpc(d)
        assert body == {"method": "setState", "params": {"pin": 7}}
        # paho acknowledged the QoS 1 publish: DELIVERED, not yet answered
        assert wait_status(server, rid, "DELIVERED")["response"] is None
        d.pub("v1/devices/me/rpc/response/%d" % req_id, {"done": 1})
        rpc = wait_status(server, rid, "SUCCESSFUL")
        assert rpc["response"] == {"done": 1}
    finally:
        d.close()


def test_oneway_successful_once_acknowledged(server):
    did, tok = server.new_device()
    rid = persistent_rpc(server, did, kind="oneway", method="reboot", params={})
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        _, body = next_rpc(d)
        assert body == {"method": "reboot", "params": {}}
        rpc = wait_status(server, rid, "SUCCESSFUL")
        assert rpc["request"]["oneway"] is True
    finally:
        d.close()


def test_sent_to_connected_device_at_once(server):
    did, tok = server.new_device()
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        # the subscription reaches the actor after SUBACK; a persistent RPC does not care
        rid = persistent_rpc(server, did, method="getTemp", params={"unit": "C"})
        req_id, body = next_rpc(d)
        assert body == {"method": "getTemp", "params": {"unit": "C"}}
        d.pub("v1/devices/me/rpc/response/%d" % req_id, "not json")
        assert wait_status(server, rid, "SUCCESSFUL")["response"] == {"error": "not json"}
    finally:
        d.close()


def test_expired_while_offline(server):
    did, tok = server.new_device()
    rid = persistent_rpc(server, did, expirationTime=int(time.time() * 1000) + 1500)
    assert get_rpc(server, rid)["status"] == "QUEUED"
    wait_status(server, rid, "EXPIRED", timeout=15)
    # the device that connects later gets nothing
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        with pytest.raises(AssertionError):
            d.next_msg(timeout=1.5)
    finally:
        d.close()


def test_unacknowledged_is_sent_again_then_fails_when_retries_are_exhausted(server):
    did, tok = server.new_device()
    rid = persistent_rpc(server, did, retries=1)

    def lose_once():
        """A raw client takes the QoS 1 publish and disconnects without PUBACK."""
        raw = Raw(server)
        try:
            raw.connect(tok, client_id=uniq("raw"))
            raw.send(mqttlib.p_subscribe(1, [("v1/devices/me/rpc/request/+", 1)]))
            while True:
                t, flags, body = raw.read(timeout=10)
                if t == 3:  # PUBLISH
                    assert b"setState" in body
                    assert (flags >> 1) & 3 == 1  # QoS 1: the server waits for our PUBACK
                    return
        finally:
            raw.close()

    lose_once()
    assert wait_status(server, rid, "TIMEOUT")["response"] is None  # one loss allowed: will be sent again
    lose_once()
    rpc = wait_status(server, rid, "FAILED")
    assert "retry attempts have been exhausted" in rpc["response"]["error"]


def test_unacknowledged_then_delivered_to_next_session(server):
    did, tok = server.new_device()
    rid = persistent_rpc(server, did, retries=3)
    raw = Raw(server)
    raw.connect(tok, client_id=uniq("raw"))
    raw.send(mqttlib.p_subscribe(1, [("v1/devices/me/rpc/request/+", 1)]))
    while raw.read(timeout=10)[0] != 3:
        pass
    raw.close()
    wait_status(server, rid, "TIMEOUT")
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        req_id, _ = next_rpc(d)
        d.pub("v1/devices/me/rpc/response/%d" % req_id, {"ok": True})
        assert wait_status(server, rid, "SUCCESSFUL")["response"] == {"ok": True}
    finally:
        d.close()


def test_list_get_delete_and_isolation(server, tenant_b):
    did, tok = server.new_device()
    ids = [persistent_rpc(server, did, method="m%d" % i) for i in range(3)]
    page = server.ok("GET", "/api/rpc/persistent/device/%s" % did, TENANT,
                     params={"pageSize": 2, "page": 0, "sortProperty": "createdTime", "sortOrder": "ASC"})
    assert page["totalElements"] == 3 and page["totalPages"] == 2 and page["hasNext"] is True
    assert [x["id"]["id"] for x in page["data"]] == ids[:2]
    page = server.ok("GET", "/api/rpc/persistent/device/%s" % did, TENANT,
                     params={"pageSize": 10, "page": 0, "rpcStatus": "QUEUED", "textSearch": "m2"})
    assert [x["id"]["id"] for x in page["data"]] == [ids[2]]
    page = server.ok("GET", "/api/rpc/persistent/device/%s" % did, TENANT,
                     params={"pageSize": 10, "page": 0, "rpcStatus": "SUCCESSFUL"})
    assert page["data"] == [] and page["totalElements"] == 0
    r = server.api("GET", "/api/rpc/persistent/device/%s" % did, TENANT,
                   params={"pageSize": 10, "page": 0, "rpcStatus": "NOPE"})
    assert r.status_code == 400, r.text
    assert server.api("GET", "/api/rpc/persistent/device/%s" % did, TENANT).status_code == 400  # no pageSize

    # another tenant: 403 on everything; an unknown id: 404
    for method, path in (("GET", "/api/rpc/persistent/%s" % ids[0]), ("DELETE", "/api/rpc/persistent/%s" % ids[0])):
        r = server.api(method, path, tenant_b)
        assert r.status_code == 403 and r.json()["errorCode"] == 20, r.text
    r = server.api("GET", "/api/rpc/persistent/device/%s" % did, tenant_b, params={"pageSize": 10, "page": 0})
    assert r.status_code == 403, r.text
    r = server.api("POST", "/api/rpc/twoway/%s" % did, tenant_b, json={"method": "m", "params": {}, "persistent": True})
    assert r.status_code == 403, r.text
    # a customer user who does not own the device
    assert server.api("GET", "/api/rpc/persistent/%s" % ids[0], CUSTOMER).status_code == 403
    r = server.api("GET", "/api/rpc/persistent/7a1b5c4e-0000-11ee-8000-000000000009", TENANT)
    assert r.status_code == 404 and r.json()["errorCode"] == 32, r.text
    assert server.api("GET", "/api/rpc/persistent/not-a-uuid", TENANT).status_code == 400

    # delete one: gone from the store and never delivered
    assert server.api("DELETE", "/api/rpc/persistent/%s" % ids[0], TENANT).status_code == 200
    assert server.api("GET", "/api/rpc/persistent/%s" % ids[0], TENANT).status_code == 404
    assert server.api("DELETE", "/api/rpc/persistent/%s" % ids[0], TENANT).status_code == 404
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        got = [next_rpc(d)[1]["method"] for _ in range(2)]
        assert got == ["m1", "m2"]  # oldest first, the deleted one left out
        with pytest.raises(AssertionError):
            d.next_msg(timeout=1)
    finally:
        d.close()


def test_deleting_the_device_deletes_its_rpcs(server):
    did, _ = server.new_device()
    rid = persistent_rpc(server, did, method="gone")
    assert get_rpc(server, rid)["status"] == "QUEUED"
    assert server.api("DELETE", "/api/device/%s" % did, TENANT).status_code == 200
    r = server.api("GET", "/api/rpc/persistent/%s" % rid, TENANT)
    assert r.status_code == 404, r.text


def test_request_uuid_is_the_rpc_id_and_unique(server):
    did, _ = server.new_device()
    u = "5b1f00aa-1234-11ee-8000-00000000abcd"
    assert persistent_rpc(server, did, requestUUID=u) == u
    r = server.api("POST", "/api/rpc/twoway/%s" % did, TENANT,
                   json={"method": "m", "params": {}, "persistent": True, "requestUUID": u})
    assert r.status_code == 400, r.text
    r = server.api("POST", "/api/rpc/twoway/%s" % did, TENANT,
                   json={"method": "m", "params": {}, "persistent": True, "retries": "x"})
    assert r.status_code == 400, r.text


def test_survives_restart(make_server):
    s = make_server()
    did, tok = s.new_device()
    rid = persistent_rpc(s, did, method="afterRestart", params={"n": 1})
    assert get_rpc(s, rid)["status"] == "QUEUED"
    s.restart()
    assert get_rpc(s, rid)["status"] == "QUEUED"
    d = connect(s, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        req_id, body = next_rpc(d)
        assert body == {"method": "afterRestart", "params": {"n": 1}}
        d.pub("v1/devices/me/rpc/response/%d" % req_id, {"n": 2})
        assert wait_status(s, rid, "SUCCESSFUL")["response"] == {"n": 2}
    finally:
        d.close()


def test_status_changes_reach_the_rule_chain(server):
    """RPC_QUEUED ... RPC_SUCCESSFUL messages (data: the Rpc JSON) go through the root chain:
    its message type switch routes them by their labels; a log node on them shows their data."""
    tb = "org.thingsboard.rule.engine."
    root = [c for c in server.ok("GET", "/api/ruleChains", TENANT, params={"pageSize": 100, "page": 0})["data"]
            if c["root"]][0]
    md = server.ok("GET", "/api/ruleChain/%s/metadata" % root["id"]["id"], TENANT)
    switch = next(i for i, n in enumerate(md["nodes"]) if n["type"] == tb + "filter.TbMsgTypeSwitchNode")
    log = next(i for i, n in enumerate(md["nodes"]) if n["name"] == "Log Other")
    for label in ("RPC Queued", "RPC Sent", "RPC Delivered", "RPC Successful"):
        md["connections"].append({"fromIndex": switch, "toIndex": log, "type": label})
    server.ok("POST", "/api/ruleChain/metadata", TENANT, json=md)

    def logged(rid, status):
        """The log node's line for the RPC_<status> message of rid (its data: the Rpc JSON with that status)."""
        for line in server.log_tail(5000).splitlines():
            if '"id":{"entityType":"RPC","id":"%s"}' % rid in line and '"status":"%s"' % status in line:
                return line
        return None

    # the engine switches to the saved chain asynchronously: new RPCs until one's RPC_QUEUED is logged
    def queued_logged():
        did, tok = server.new_device()
        rid = persistent_rpc(server, did, method="chained")
        try:
            wait_until(lambda: logged(rid, "QUEUED"), timeout=2, what="RPC_QUEUED")
        except AssertionError:
            return None
        return did, tok, rid
    did, tok, rid = wait_until(queued_logged, timeout=30, interval=0, what="RPC_QUEUED through the new chain")
    d = connect(server, tok)
    try:
        d.sub("v1/devices/me/rpc/request/+")
        req_id, _ = next_rpc(d)
        d.pub("v1/devices/me/rpc/response/%d" % req_id, {"r": 5})
        line = wait_until(lambda: logged(rid, "SUCCESSFUL"), what="RPC_SUCCESSFUL in the chain")
        assert wait_until(lambda: logged(rid, "SENT"), what="RPC_SENT in the chain")
        assert wait_until(lambda: logged(rid, "DELIVERED"), what="RPC_DELIVERED in the chain")
        assert "SUCCESSFUL" in line and did in line
    finally:
        d.close()
