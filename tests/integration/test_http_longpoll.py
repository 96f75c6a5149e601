"""HTTP device API long polls and RPC (reference §1.2, §8 items 3-4): GET /api/v1/{token}/rpc
returns a server-side RPC with its id (408 on timeout), POST /api/v1/{token}/rpc/{id} answers
it, GET /api/v1/{token}/attributes/updates returns the next shared attribute change (or
{"deleted":[..]}), POST /api/v1/{token}/rpc is a client-side RPC answered through the rule
chain's "rpc call reply" node ({"error":"timeout"} without an answer)."""
import json
import socket
import threading
import time

import requests

from tdlib import TENANT, uniq, wait_until

TB = "org.thingsboard.rule.engine."


class Bg:
    """Runs fn in a thread; .result() waits (bounded) and returns its value or raises its exception."""

    def __init__(self, fn):
        self.res = {}
        self.t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.t.start()

    def _run(self, fn):
        try:
            self.res["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in result()
            self.res["e"] = e

    def result(self, timeout=40):
        self.t.join(timeout)
        assert not self.t.is_alive(), "background call still running after %ss" % timeout
        if "e" in self.res:
            raise self.res["e"]
        return self.res["v"]

    def done(self):
        return not self.t.is_alive()


def poll(server, tok, what="rpc", timeout_ms=20000):
    return requests.get(server.base + "/api/v1/%s/%s" % (tok, what), params={"timeout": timeout_ms},
                        timeout=timeout_ms / 1000 + 15)


def rest_rpc(server, did, kind, body):
    return server.api("POST", "/api/rpc/%s/%s" % (kind, did), TENANT, json=body, timeout=60)


def attr_url(did, rest):
    return "/api/plugins/telemetry/DEVICE/%s%s" % (did, rest)


def test_twoway_rpc_over_long_poll(server):
    did, tok = server.new_device()
    p = Bg(lambda: poll(server, tok))
    call = Bg(lambda: rest_rpc(server, did, "twoway", {"method": "getTemp", "params": {"unit": "C"}, "timeout": 20000}))
    r = p.result()
    assert r.status_code == 200, r.text
    req = r.json()
    assert set(req) == {"id", "method", "params"} and isinstance(req["id"], int)
    assert req["method"] == "getTemp" and req["params"] == {"unit": "C"}
    a = requests.post(server.base + "/api/v1/%s/rpc/%d" % (tok, req["id"]), json={"temp": 36.6}, timeout=10)
    assert a.status_code == 200, a.text
    r = call.result()
    assert r.status_code == 200, r.text
    assert r.json() == {"temp": 36.6}


def test_oneway_rpc_waits_for_the_next_poll(server):
    did, tok = server.new_device()
    call = Bg(lambda: rest_rpc(server, did, "oneway", {"method": "reboot", "params": {"delay": 1}, "timeout": 20000}))
    r = poll(server, tok)  # pending ones first: whether the RPC or the poll came first
    assert r.status_code == 200, r.text
    assert r.json()["method"] == "reboot" and r.json()["params"] == {"delay": 1}
    assert call.result().status_code == 200


def test_pending_rpcs_come_one_per_poll_oldest_first(server):
    did, tok = server.new_device()
    # persistent RPCs answer once queued, so their order is known
    rids = []
    for i in range(3):
        r = rest_rpc(server, did, "twoway", {"method": "m%d" % i, "params": {}, "persistent": True, "timeout": 30000})
        assert r.status_code == 200, r.text
        rids.append(r.json()["rpcId"])
    got = []
    for _ in range(3):
        r = poll(server, tok)
        assert r.status_code == 200, r.text
        got.append(r.json())
        a = requests.post(server.base + "/api/v1/%s/rpc/%d" % (tok, got[-1]["id"]),
                          json={"echo": got[-1]["method"]}, timeout=10)
        assert a.status_code == 200
    assert [g["method"] for g in got] == ["m0", "m1", "m2"]
    for i, rid in enumerate(rids):
        rpc = wait_until(lambda: (lambda x: x if x["status"] == "SUCCESSFUL" else None)(
            server.ok("GET", "/api/rpc/persistent/" + rid, TENANT)), what="SUCCESSFUL")
        assert rpc["response"] == {"echo": "m%d" % i}


def test_poll_timeouts_408(server):
    _, tok = server.new_device()
    for what in ("rpc", "attributes/updates"):
        t0 = time.monotonic()
        r = poll(server, tok, what, timeout_ms=400)
        assert r.status_code == 408, (what, r.status_code, r.text)
        assert r.content == b""
        assert time.monotonic() - t0 >= 0.35


def test_poll_bad_requests(server):
    _, tok = server.new_device()
    r = requests.get(server.base + "/api/v1/%s/rpc" % tok, params={"timeout": "abc"}, timeout=10)
    assert r.status_code == 400, r.text
    r = requests.get(server.base + "/api/v1/%s/rpc" % uniq("NOPE"), params={"timeout": 100}, timeout=10)
    assert r.status_code == 401
    r = requests.post(server.base + "/api/v1/%s/rpc/notanumber" % tok, json={}, timeout=10)
    assert r.status_code == 400, r.text
    big = json.dumps({"method": "m", "params": {"x": "a" * 70000}})
    r = requests.post(server.base + "/api/v1/%s/rpc" % tok, data=big, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 413, r.status_code
    r = requests.post(server.base + "/api/v1/%s/rpc/1" % tok, data=big, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 413, r.status_code
    r = requests.post(server.base + "/api/v1/%s/rpc" % tok, data='{"params":{}}',
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400, r.text


def test_twoway_rest_timeout_504_when_device_never_answers(server):
    did, tok = server.new_device()
    p = Bg(lambda: poll(server, tok))
    t0 = time.monotonic()
    r = rest_rpc(server, did, "twoway", {"method": "silent", "params": {}, "timeout": 5000})
    assert r.status_code == 504, r.text
    assert 4.5 <= time.monotonic() - t0 < 12
    got = p.result()
    assert got.status_code == 200 and got.json()["method"] == "silent"  # delivered, never answered


def test_persistent_rpc_over_long_poll(server):
    did, tok = server.new_device()
    r = rest_rpc(server, did, "twoway", {"method": "store", "params": {"k": 1}, "persistent": True, "timeout": 30000})
    assert r.status_code == 200, r.text
    rid = r.json()["rpcId"]
    r = poll(server, tok)
    assert r.status_code == 200 and r.json()["method"] == "store", r.text
    wait_until(lambda: server.ok("GET", "/api/rpc/persistent/" + rid, TENANT)["status"] == "DELIVERED",
               what="DELIVERED once returned by the poll")
    a = requests.post(server.base + "/api/v1/%s/rpc/%d" % (tok, r.json()["id"]), json={"stored": True}, timeout=10)
    assert a.status_code == 200
    rpc = wait_until(lambda: (lambda x: x if x["status"] == "SUCCESSFUL" else None)(
        server.ok("GET", "/api/rpc/persistent/" + rid, TENANT)), what="SUCCESSFUL")
    assert rpc["response"] == {"stored": True}


def until_poll_returns(p, act, what):
    """The poll's subscription reaches the device's actor asynchronously: repeat act() until p is answered."""
    def probe():
        act()
        p.t.join(0.3)
        return p.done()
    wait_until(probe, timeout=25, interval=0, what=what)
    return p.result()


def test_shared_attribute_update_and_delete_reach_long_poll(server):
    did, tok = server.new_device()
    p = Bg(lambda: poll(server, tok, "attributes/updates"))

    def write():
        r = server.api("POST", attr_url(did, "/attributes/SHARED_SCOPE"), TENANT, json={"fw": "v1.2", "n": 3})
        assert r.status_code == 200, r.text
    r = until_poll_returns(p, write, "shared attribute update")
    assert r.status_code == 200, r.text
    assert r.json() == {"fw": "v1.2", "n": 3}

    p = Bg(lambda: poll(server, tok, "attributes/updates"))

    def delete():
        r = server.api("DELETE", attr_url(did, "/SHARED_SCOPE"), TENANT, params={"keys": "fw"})
        assert r.status_code == 200, r.text
    r = until_poll_returns(p, delete, "shared attribute delete")
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": ["fw"]}

    # client and server scope changes are not pushed
    p = Bg(lambda: poll(server, tok, "attributes/updates", timeout_ms=1500))
    assert server.api("POST", attr_url(did, "/attributes/SERVER_SCOPE"), TENANT, json={"s": 1}).status_code == 200
    assert p.result().status_code == 408


def add_reply_node_to_root(server):
    """The tenant's root chain gets an "rpc call reply" node on "RPC Request from Device"
    (no script: the reply is the request's data)."""
    roots = [c for c in server.ok("GET", "/api/ruleChains", TENANT, params={"pageSize": 100, "page": 0})["data"]
             if c["root"]]
    assert len(roots) == 1
    cid = roots[0]["id"]["id"]
    md = server.ok("GET", "/api/ruleChain/%s/metadata" % cid, TENANT)
    if any(n["type"] == TB + "rpc.TbSendRPCReplyNode" for n in md["nodes"]):
        return
    switch = next(i for i, n in enumerate(md["nodes"]) if n["type"] == TB + "filter.TbMsgTypeSwitchNode")
    md["nodes"].append({"type": TB + "rpc.TbSendRPCReplyNode", "name": "Reply", "debugMode": False,
                        "configuration": {"requestIdMetaDataAttribute": "requestId"}})
    md["connections"].append({"fromIndex": switch, "toIndex": len(md["nodes"]) - 1, "type": "RPC Request from Device"})
    server.ok("POST", "/api/ruleChain/metadata", TENANT, json=md)


def client_rpc(srv, tok, body):
    r = requests.post(srv.base + "/api/v1/%s/rpc" % tok, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_client_side_rpc_timeout_then_answered_through_rule_chain(make_server):
    s = make_server(env={"CLIENT_SIDE_RPC_TIMEOUT": "1500"})
    _, tok = s.new_device()
    # the default root chain only logs "RPC Request from Device": nobody answers
    t0 = time.monotonic()
    assert client_rpc(s, tok, {"method": "nobodyAnswers", "params": {}}) == {"error": "timeout"}
    assert 1.4 <= time.monotonic() - t0 < 10
    add_reply_node_to_root(s)
    # the engine switches to the saved chain asynchronously: ask until the reply node answers
    # (the reply is the request's data, since the chain has no script)
    body = {"method": "getTime", "params": {"tz": "UTC"}}
    got = wait_until(lambda: (lambda x: x if x != {"error": "timeout"} else None)(client_rpc(s, tok, body)),
                     timeout=30, interval=0, what="client-side RPC answered by the chain")
    assert got == body
    # the MQTT and HTTP paths share the reply node: an MQTT device gets its answer too
    from mqttlib import connect
    d = connect(s, tok)
    try:
        d.sub("v1/devices/me/rpc/response/+")
        d.pub("v1/devices/me/rpc/request/9", {"method": "viaMqtt", "params": 1})
        topic, payload = d.next_msg()
        assert topic == "v1/devices/me/rpc/response/9"
        assert json.loads(payload) == {"method": "viaMqtt", "params": 1}
    finally:
        d.close()


def test_disconnected_poll_does_not_break_the_next(server):
    did, tok = server.new_device()
    # clients that ask and go away at once: their requests live on until their timeout
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        c.sendall(("GET /api/v1/%s/rpc?timeout=1000 HTTP/1.1\r\nHost: x\r\n\r\n" % tok).encode())
        c.close()

    def attempt():
        # an RPC dispatched while only abandoned polls are registered is answered into the
        # void (ThingsBoard does the same) and the REST call times out: then try again
        p = Bg(lambda: poll(server, tok, timeout_ms=8000))
        call = Bg(lambda: rest_rpc(server, did, "twoway", {"method": "after", "params": {}, "timeout": 5000}))
        r = p.result()
        if r.status_code == 200:
            req = r.json()
            assert req["method"] == "after"
            a = requests.post(server.base + "/api/v1/%s/rpc/%d" % (tok, req["id"]), json={"ok": 1}, timeout=10)
            assert a.status_code == 200
        res = call.result()
        return res if res.status_code == 200 else None
    res = wait_until(attempt, timeout=60, interval=0, what="RPC answered through a live poll")
    assert res.json() == {"ok": 1}
    # the server keeps serving polls after the abandoned ones ended
    assert poll(server, tok, timeout_ms=1500).status_code == 408
    assert poll(server, tok, "attributes/updates", timeout_ms=300).status_code == 408
