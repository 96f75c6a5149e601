"""Telemetry over the HTTP device API, read back over REST (reference §1.0.2, §1.0.3, §1.2, §2.6).
Device messages go through the queue and the rule engine asynchronously: reads poll with a deadline."""
import json
import time

from tdlib import TENANT, wait_until

T0 = 1700000000000  # aligned to the minute


def ts_url(did):
    return "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % did


def history(server, did, keys, start, end, **kw):
    p = {"keys": ",".join(keys), "startTs": start, "endTs": end}
    p.update(kw)
    return server.ok("GET", ts_url(did), TENANT, params=p)


def wait_history(server, did, keys, start, end, count, **kw):
    def probe():
        h = history(server, did, keys, start, end, **kw)
        return h if all(len(h.get(k, [])) >= count for k in keys) else None
    return wait_until(probe, 20, what="%d points of %s" % (count, keys))


def test_shape_object_without_ts(server):
    did, tok = server.new_device()
    before = int(time.time() * 1000)
    r = server.post_telemetry(tok, {"temperature": 21, "hum": 40.5})
    assert r.status_code == 200, r.text
    e = server.wait_latest(did, "temperature")
    assert e["value"] == 21
    after = int(time.time() * 1000)
    assert before - 1000 <= e["ts"] <= after + 1000  # server time
    latest = server.ok("GET", ts_url(did), TENANT, params={"keys": "temperature,hum"})
    assert latest["temperature"][0]["value"] == "21"
    assert latest["hum"][0]["value"] == "40.5"
    assert latest["temperature"][0]["ts"] == e["ts"]
    keys = server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % did, TENANT)
    assert sorted(keys) == ["hum", "temperature"]


def test_shape_object_with_ts(server):
    did, tok = server.new_device()
    assert server.post_telemetry(tok, {"ts": T0 + 5, "values": {"k": 7}}).status_code == 200
    h = wait_history(server, did, ["k"], T0, T0 + 10, 1)
    assert h["k"] == [{"ts": T0 + 5, "value": "7"}]
    # ts without values: ordinary keys
    assert server.post_telemetry(tok, {"ts": 5, "other": 1}).status_code == 200
    e = server.wait_latest(did, "other")
    assert e["value"] == 1
    assert server.wait_latest(did, "ts")["value"] == 5


def test_shape_array(server):
    did, tok = server.new_device()
    body = [{"ts": T0 + 1, "values": {"a": 1}}, {"ts": T0 + 2, "values": {"a": 2, "b": "x"}}, {"c": True}]
    assert server.post_telemetry(tok, body).status_code == 200
    h = wait_history(server, did, ["a"], T0, T0 + 3, 2, orderBy="ASC")
    assert h["a"] == [{"ts": T0 + 1, "value": "1"}, {"ts": T0 + 2, "value": "2"}]
    assert server.wait_latest(did, "c")["value"] is True
    assert server.wait_latest(did, "b")["value"] == "x"


def test_typing_rules(server):
    did, tok = server.new_device()
    long_str = "x" * 5000
    raw = ('{"ts":%d,"values":{"l":42,"d":42.0,"e":4.2e1,"s":"42","sd":"3.14","b":true,"f":false,'
           '"j":{"a":1},"arr":[1,2],"txt":"hello","big":"%s","neg":-7,"n":null}}') % (T0 + 100, long_str)
    assert server.post_telemetry(tok, raw).status_code == 200
    keys = ["l", "d", "e", "s", "sd", "b", "f", "j", "arr", "txt", "big", "neg"]
    strict = wait_history(server, did, keys, T0, T0 + 1000, 1, useStrictDataTypes="true")
    v = {k: strict[k][0]["value"] for k in keys}
    assert v["l"] == 42 and isinstance(v["l"], int)
    assert v["d"] == 42.0 and isinstance(v["d"], float)
    assert v["e"] == 42 and isinstance(v["e"], int)
    assert v["s"] == 42 and isinstance(v["s"], int)
    assert v["sd"] == 3.14 and isinstance(v["sd"], float)
    assert v["b"] is True and v["f"] is False
    assert v["txt"] == "hello" and v["big"] == long_str
    assert v["neg"] == -7
    for k in ("j", "arr"):  # JSON values: the JSON itself or its text
        val = v[k] if not isinstance(v[k], str) else json.loads(v[k])
        assert val == ({"a": 1} if k == "j" else [1, 2])
    assert "n" not in strict  # null is skipped
    loose = history(server, did, keys, T0, T0 + 1000)
    s = {k: loose[k][0]["value"] for k in keys}
    assert s == {"l": "42", "d": "42.0", "e": "42", "s": "42", "sd": "3.14", "b": "true", "f": "false",
                 "j": '{"a":1}', "arr": "[1,2]", "txt": "hello", "big": long_str, "neg": "-7"}
    ks = server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % did, TENANT)
    assert sorted(ks) == sorted(keys)


def test_raw_limit_and_order(server):
    did, tok = server.new_device()
    body = [{"ts": T0 + i, "values": {"v": i}} for i in range(10)]
    assert server.post_telemetry(tok, body).status_code == 200
    wait_history(server, did, ["v"], T0, T0 + 100, 10, limit=100)
    desc = history(server, did, ["v"], T0, T0 + 100, limit=3)
    assert [p["ts"] for p in desc["v"]] == [T0 + 9, T0 + 8, T0 + 7]
    asc = history(server, did, ["v"], T0, T0 + 100, limit=3, orderBy="ASC")
    assert [p["ts"] for p in asc["v"]] == [T0, T0 + 1, T0 + 2]
    # endTs is exclusive? ThingsBoard's range is [startTs, endTs): check the half-open interval
    part = history(server, did, ["v"], T0 + 2, T0 + 5, orderBy="ASC")
    assert [p["ts"] for p in part["v"]] in ([T0 + 2, T0 + 3, T0 + 4], [T0 + 2, T0 + 3, T0 + 4, T0 + 5])
    # latest is the highest ts
    assert server.wait_latest(did, "v")["ts"] == T0 + 9


def test_aggregates(server):
    did, tok = server.new_device()
    body = [{"ts": T0 + 1000, "values": {"m": 10}}, {"ts": T0 + 2000, "values": {"m": 20}},
            {"ts": T0 + 3000, "values": {"m": 30}}, {"ts": T0 + 61000, "values": {"m": 5}}]
    assert server.post_telemetry(tok, body).status_code == 200
    wait_history(server, did, ["m"], T0, T0 + 120000, 4)
    want = {"MIN": (10, 5), "MAX": (30, 5), "AVG": (20, 5), "SUM": (60, 5), "COUNT": (3, 1)}
    for agg, (first, second) in want.items():
        h = history(server, did, ["m"], T0, T0 + 120000, interval=60000, agg=agg, useStrictDataTypes="true")
        pts = sorted(h["m"], key=lambda p: p["ts"])
        assert [p["ts"] for p in pts] == [T0 + 30000, T0 + 90000], (agg, pts)
        assert [float(p["value"]) for p in pts] == [first, second], (agg, pts)
        loose = history(server, did, ["m"], T0, T0 + 120000, interval=60000, agg=agg)
        assert all(isinstance(p["value"], str) for p in loose["m"]), (agg, loose)
    # a range that is not a multiple of the interval: the last bucket is shorter, its midpoint too
    h = history(server, did, ["m"], T0, T0 + 90000, interval=60000, agg="COUNT", useStrictDataTypes="true")
    pts = sorted(h["m"], key=lambda p: p["ts"])
    assert [p["ts"] for p in pts] == [T0 + 30000, T0 + 75000], pts
    # NONE with interval = raw
    raw = history(server, did, ["m"], T0, T0 + 120000, agg="NONE")
    assert len(raw["m"]) == 4


def test_delete(server):
    did, tok = server.new_device()
    body = [{"ts": T0 + i, "values": {"gone": i, "kept": i}} for i in range(5)]
    assert server.post_telemetry(tok, body).status_code == 200
    wait_history(server, did, ["gone", "kept"], T0, T0 + 10, 5)
    r = server.api("DELETE", "/api/plugins/telemetry/DEVICE/%s/timeseries/delete" % did, TENANT,
                   params={"keys": "gone", "deleteAllDataForKeys": "true"})
    assert r.status_code == 200, r.text
    h = history(server, did, ["gone", "kept"], T0, T0 + 10)
    assert not h.get("gone") and len(h["kept"]) == 5
    keys = server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % did, TENANT)
    assert "gone" not in keys and "kept" in keys
    # range delete
    r = server.api("DELETE", "/api/plugins/telemetry/DEVICE/%s/timeseries/delete" % did, TENANT,
                   params={"keys": "kept", "startTs": T0, "endTs": T0 + 2})
    assert r.status_code == 200, r.text
    h = history(server, did, ["kept"], T0, T0 + 10, orderBy="ASC")
    assert [p["ts"] for p in h["kept"]] in ([T0 + 3, T0 + 4], [T0 + 2, T0 + 3, T0 + 4])


def test_rest_save_timeseries(server):
    did, _ = server.new_device()
    r = server.api("POST", "/api/plugins/telemetry/DEVICE/%s/timeseries/ANY" % did, TENANT,
                   json={"ts": T0 + 7, "values": {"rest": 3.5}})
    assert r.status_code == 200, r.text
    h = wait_history(server, did, ["rest"], T0, T0 + 10, 1, useStrictDataTypes="true")
    assert h["rest"] == [{"ts": T0 + 7, "value": 3.5}]
    r = server.api("POST", "/api/plugins/telemetry/DEVICE/%s/timeseries/ANY" % did, TENANT, data="{bad",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_many_messages_in_order(server):
    did, tok = server.new_device()
    s = server.http
    for i in range(200):
        r = server.post_telemetry(tok, {"ts": T0 + i, "values": {"seq": i}}, session=s)
        assert r.status_code == 200
    h = wait_history(server, did, ["seq"], T0, T0 + 1000, 200, limit=1000)
    assert len(h["seq"]) == 200
    assert server.wait_latest(did, "seq")["value"] == 199
