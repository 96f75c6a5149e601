"""Device activity state (reference §4.8, §1.0.5): the SERVER_SCOPE attributes active,
lastConnectTime, lastActivityTime, lastDisconnectTime and inactivityAlarmTime kept by the
device state service, the per-device inactivityTimeout attribute, the CONNECT / ACTIVITY /
INACTIVITY / DISCONNECT events in the rule engine, and coalesced persistence.

The events are observed script-free through the rule engine: an imported root chain whose
message type switch sends "Connect Event", "Activity Event", "Inactivity Event" and
"Disconnect Event" to log nodes with ThingsBoard's default log script, which thingsd runs
natively; the test reads the message data and metadata those nodes write to the server log.
Coalescing is read from the service's DEBUG flush lines (devices written per flush, running
total of writes)."""
import calendar
import json
import re
import time

from mqttlib import Raw, connect, p_publish
from tdlib import TENANT, uniq, wait_until

PFX = "org.thingsboard.rule.engine."
DEFAULT_LOG = ("return '\\nIncoming message:\\n' + JSON.stringify(msg) + "
               "'\\nIncoming metadata:\\n' + JSON.stringify(metadata);")
EVENTS = ["Connect Event", "Activity Event", "Inactivity Event", "Disconnect Event"]
STATE_KEYS = ["active", "lastConnectTime", "lastActivityTime", "lastDisconnectTime", "inactivityAlarmTime"]


def now_ms():
    return int(time.time() * 1000)


def attr_url(did, tail=""):
    return "/api/plugins/telemetry/DEVICE/%s%s" % (did, tail)


def server_attrs(server, did):
    return {e["key"]: e["value"] for e in server.ok("GET", attr_url(did, "/values/attributes/SERVER_SCOPE"), TENANT)}


def event_chain_as_root(server):
    """Root chain: Message Type Switch -> one log node per state event (and telemetry saved)."""
    nodes = [{"type": PFX + "filter.TbMsgTypeSwitchNode", "name": "Message Type Switch",
              "configuration": {"version": 0}},
             {"type": PFX + "telemetry.TbMsgTimeseriesNode", "name": "Save Timeseries",
              "configuration": {"defaultTTL": 0}}]
    conns = [{"fromIndex": 0, "toIndex": 1, "type": "Post telemetry"}]
    for ev in EVENTS:
        nodes.append({"type": PFX + "action.TbLogNode", "name": "Log " + ev,
                      "configuration": {"scriptLang": "TBEL", "tbelScript": DEFAULT_LOG, "jsScript": DEFAULT_LOG}})
        conns.append({"fromIndex": 0, "toIndex": len(nodes) - 1, "type": ev})
    chain = server.ok("POST", "/api/ruleChain", TENANT, json={"name": uniq("state events"), "type": "CORE"})
    md = {"ruleChainId": chain["id"], "firstNodeIndex": 0, "nodes": nodes, "connections": conns}
    server.ok("POST", "/api/ruleChain/metadata", TENANT, json=md)
    server.ok("POST", "/api/ruleChain/%s/root" % chain["id"]["id"], TENANT)


LOG_EVENT = re.compile(r'node="Log (Connect|Activity|Inactivity|Disconnect) Event" \n'
                       r'Incoming message:\n([^\n]*)\nIncoming metadata:\n([^\n]*)')


def logged_events(server, device_name):
    """[(event, data, metadata)] the log nodes wrote for the device, in log order."""
    with open(server.log_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    out = []
    for m in LOG_EVENT.finditer(text):
        md = json.loads(m.group(3))
        if md.get("deviceName") == device_name:
            out.append((m.group(1).upper() + "_EVENT", json.loads(m.group(2)), md))
    return out


def wait_event(server, name, ev, count=1):
    return wait_until(lambda: [e for e in logged_events(server, name) if e[0] == ev][count - 1:] or None,
                      what="%s #%d of %s in the rule engine" % (ev, count, name))[0]


def test_mqtt_device_activity_lifecycle(make_server):
    server = make_server()
    event_chain_as_root(server)
    name = uniq("act")
    did, tok = server.new_device(name=name)
    # a per-device timeout (ms), set before the device is first seen
    r = server.api("POST", attr_url(did, "/attributes/SERVER_SCOPE"), TENANT, json={"inactivityTimeout": 2000})
    assert r.status_code == 200, r.text

    t_conn = now_ms()
    dev = connect(server, tok)
    try:
        a = wait_until(lambda: (lambda s: s if s.get("active") is True and "lastConnectTime" in s else None)(
            server_attrs(server, did)), what="active=true after CONNECT")
        assert a["lastConnectTime"] >= t_conn and a["lastActivityTime"] >= a["lastConnectTime"]
        assert a["inactivityTimeout"] == 2000
        _, data, md = wait_event(server, name, "CONNECT_EVENT")
        assert "active" not in data and data["lastConnectTime"] == a["lastConnectTime"]
        assert data["inactivityTimeout"] == 2000
        assert md["deviceType"] == "default" and md["scope"] == "SERVER_SCOPE"
        _, data, _ = wait_event(server, name, "ACTIVITY_EVENT")
        assert data["active"] is True

        # the last message; then silence: inactive, never before the timeout has passed
        t_last = now_ms()
        dev.pub("v1/devices/me/telemetry", {"temp": 21})
        seen = []

        def inactive():
            s = server_attrs(server, did)
            seen.append((now_ms(), s.get("active")))
            return s if s.get("active") is False else None
        a = wait_until(inactive, timeout=30, interval=0.1, what="active=false after the timeout")
        early = [(t, act) for t, act in seen if t < t_last + 2000 and act is not True]
        assert not early, "inactive before the timeout: %r (last message at %d)" % (early, t_last)
        assert seen[-1][0] >= t_last + 2000
        assert a["lastActivityTime"] >= t_last
        assert a["inactivityAlarmTime"] - a["lastActivityTime"] > 2000
        _, data, _ = wait_event(server, name, "INACTIVITY_EVENT")
        assert data["active"] is False and data["lastInactivityAlarmTime"] == a["inactivityAlarmTime"]
        assert data["lastActivityTime"] == a["lastActivityTime"]

        # the next message: active again, with a second ACTIVITY_EVENT
        t_back = now_ms()
        dev.pub("v1/devices/me/telemetry", {"temp": 22})
        a = wait_until(lambda: (lambda s: s if s.get("active") is True else None)(server_attrs(server, did)),
                       what="active=true again")
        assert a["lastActivityTime"] >= t_back
        _, data, _ = wait_event(server, name, "ACTIVITY_EVENT", count=2)
        assert data["active"] is True and data["lastInactivityAlarmTime"] == a["inactivityAlarmTime"]
    finally:
        t_disc = now_ms()
        dev.close()
    a = wait_until(lambda: (lambda s: s if s.get("lastDisconnectTime", 0) >= t_disc else None)(
        server_attrs(server, did)), what="lastDisconnectTime")
    _, data, _ = wait_event(server, name, "DISCONNECT_EVENT")
    assert data["lastDisconnectTime"] == a["lastDisconnectTime"]
    # in order; after the disconnect the device also goes inactive again once its timeout passes
    kinds = [e[0] for e in logged_events(server, name)]
    # CONNECT_EVENT and the first ACTIVITY_EVENT leave together and go to two
    # different log nodes (two actors), so their log lines may come in either
    # order (as in ThingsBoard, branches are not ordered against each other);
    # the later events are each waited for above, so their order is fixed.
    assert sorted(kinds[:2]) == ["ACTIVITY_EVENT", "CONNECT_EVENT"], kinds
    assert kinds[2:5] == ["INACTIVITY_EVENT", "ACTIVITY_EVENT", "DISCONNECT_EVENT"], kinds
    assert kinds[5:] in ([], ["INACTIVITY_EVENT"]), kinds


def test_timeout_changed_while_tracked_and_http_activity(make_server):
    server = make_server()
    did, tok = server.new_device()
    t0 = now_ms()
    assert server.post_telemetry(tok, {"x": 1}).status_code == 200  # HTTP device API: activity
    a = wait_until(lambda: (lambda s: s if s.get("active") is True else None)(server_attrs(server, did)),
                   what="active=true after an HTTP upload")
    assert a["lastActivityTime"] >= t0 and "lastConnectTime" not in a
    # the default timeout is 600 s: still active; a smaller one saved over REST takes effect at once
    r = server.api("POST", attr_url(did, "/SERVER_SCOPE"), TENANT, json={"inactivityTimeout": 500})
    assert r.status_code == 200, r.text
    a = wait_until(lambda: (lambda s: s if s.get("active") is False else None)(server_attrs(server, did)),
                   what="inactive with the new timeout")
    assert a["inactivityAlarmTime"] - a["lastActivityTime"] > 500


def test_active_device_goes_inactive_after_a_restart(make_server):
    """A device stored as active when the server stops, and that never reports
    again, must still go inactive on time after the next start (ThingsBoard reads
    every device's state at start for this)."""
    server = make_server()
    did, tok = server.new_device()
    r = server.api("POST", attr_url(did, "/SERVER_SCOPE"), TENANT, json={"inactivityTimeout": 3000})
    assert r.status_code == 200, r.text
    assert server.post_telemetry(tok, {"x": 1}).status_code == 200
    wait_until(lambda: server_attrs(server, did).get("active") is True, what="active=true")
    server.restart()  # SIGTERM: the state is written; the device says nothing more
    a = wait_until(lambda: (lambda s: s if s.get("active") is False else None)(server_attrs(server, did)),
                   timeout=30, what="inactive after the restart, with no report")
    assert a["inactivityAlarmTime"] - a["lastActivityTime"] > 3000
    assert "action=restore active_devices=1" in server.log_tail(400)


def test_gateway_children_state(make_server):
    server = make_server()
    gtok = uniq("GW").replace("-", "_")
    server.create_device(TENANT, name=uniq("gw"), access_token=gtok, additionalInfo={"gateway": True})
    child = uniq("child")
    g = connect(server, gtok)
    try:
        t0 = now_ms()
        g.pub("v1/gateway/connect", {"device": child})
        cid = wait_until(lambda: server.api("GET", "/api/tenant/devices", TENANT,
                                            params={"deviceName": child}).status_code == 200
                         and server.device_by_name(child)["id"]["id"], what="child device")
        a = wait_until(lambda: (lambda s: s if s.get("active") is True and "lastConnectTime" in s else None)(
            server_attrs(server, cid)), what="child active after gateway connect")
        assert a["lastConnectTime"] >= t0
        t1 = now_ms()
        g.pub("v1/gateway/telemetry", {child: [{"v": 1}]})
        wait_until(lambda: server_attrs(server, cid).get("lastActivityTime", 0) >= t1, what="child activity")
        t2 = now_ms()
        g.pub("v1/gateway/disconnect", {"device": child})
        wait_until(lambda: server_attrs(server, cid).get("lastDisconnectTime", 0) >= t2, what="child disconnect")
    finally:
        g.close()


FLUSH = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:(\d\d\.\d+))Z state DEBUG\s+action=flush devices=(\d+) rows=(\d+) "
                   r"unsent=(\d+) writes_total=(\d+)", re.M)


def flushes(server, offset=0):
    with open(server.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [dict(ts=m.group(1), devices=int(m.group(3)), rows=int(m.group(4)), unsent=int(m.group(5)),
                 total=int(m.group(6))) for m in FLUSH.finditer(text)]


def log_size(server):
    with open(server.log_path, "rb") as f:
        f.seek(0, 2)
        return f.tell()


def ts_ms(ts):
    """The log's UTC timestamp (without the Z) in ms."""
    whole, frac = ts.split(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(frac[:3])


def test_coalesced_writes(make_server):
    """N=200 devices each publishing 20 messages: each flush writes every changed device at most
    once, flushes are an interval apart, so the writes are far fewer than the messages."""
    n, per = 200, 20
    server = make_server(env={"TD_LOG_LEVEL": "debug"})
    devs = [server.new_device() for _ in range(n)]
    raws = []
    try:
        for _, tok in devs:
            r = Raw(server)
            r.connect(tok, client_id=uniq("c"))
            raws.append(r)
        # every device's connect written once (lastConnectTime, active, lastActivityTime)
        wait_until(lambda: sum(f["devices"] for f in flushes(server)) >= n, what="connect state written")
        start = log_size(server)
        t_burst = now_ms()
        burst = b"".join(p_publish("v1/devices/me/telemetry", json.dumps({"i": i}).encode()) for i in range(per))
        for r in raws:
            r.send(burst + b"\xc0\x00")  # 20 QoS 0 PUBLISH, then PINGREQ
        for r in raws:
            while True:  # packets of one connection are handled in order: PINGRESP = all read
                p = r.read()
                assert p is not None, "connection closed"
                if p[0] == 13:
                    break
        # every device's new lastActivityTime reaches the store
        for did, _ in devs[:10] + devs[-10:]:
            wait_until(lambda: server_attrs(server, did).get("lastActivityTime", 0) >= t_burst,
                       what="lastActivityTime after the burst")
        wait_until(lambda: sum(f["devices"] for f in flushes(server, start)) >= n, what="burst state written")
        fl = [f for f in flushes(server, start) if f["devices"]]
    finally:
        for r in raws:
            try:
                r.close()
            except OSError:
                pass
    written = sum(f["devices"] for f in fl)
    assert all(f["devices"] <= n and f["unsent"] == 0 for f in fl), fl
    assert all(f["rows"] <= f["devices"] * 5 for f in fl), fl
    assert fl[-1]["total"] - fl[0]["total"] + fl[0]["devices"] == written, fl
    stamps = [ts_ms(f["ts"]) for f in fl]
    assert all(b - a >= 900 for a, b in zip(stamps, stamps[1:])), stamps  # persist_interval_ms 1000 apart
    assert written < n * per / 4, "%d state writes for %d messages" % (written, n * per)
