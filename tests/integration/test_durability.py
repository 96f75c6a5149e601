"""Durability (architecture invariant 1): an acknowledged message survives kill -9.

N telemetry messages are posted over several keep-alive connections; the moment the
last 200 arrives the server gets SIGKILL, is restarted on the same data dir, and every
acknowledged data point must be found in the store."""
import threading

import requests

from tdlib import TENANT, wait_until

N = 2000
CONNS = 4
T0 = 1700000000000


def count_points(server, did, start, n):
    h = server.timeseries(did, "seq", TENANT, startTs=start, endTs=start + n, limit=n + 10)
    return len(h.get("seq", []))


def post_seq(s, devs, per):
    """Each device posts seq 0..per-1 (ts T0+seq) on its own keep-alive connection,
    all at once; returns (acknowledged count, failures)."""
    failures = []
    acked = [0] * len(devs)

    def worker(i):
        did, tok = devs[i]
        sess = requests.Session()
        try:
            for j in range(per):
                r = s.post_telemetry(tok, '{"ts":%d,"values":{"seq":%d}}' % (T0 + j, j), session=sess)
                if r.status_code != 200:
                    failures.append((i, j, r.status_code, r.text[:200]))
                    return
                acked[i] += 1
        except Exception as e:  # noqa: BLE001
            failures.append((i, repr(e)))
        finally:
            sess.close()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(devs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(acked), failures


def test_kill9_after_ack_loses_nothing(make_server):
    s = make_server()
    devs = [s.new_device() for _ in range(CONNS)]
    per = N // CONNS
    acked, failures = post_seq(s, devs, per)
    s.kill9()  # right after the last acknowledgement
    assert not failures, failures[:5]
    assert acked == N
    s.start()
    for did, _ in devs:
        wait_until(lambda: count_points(s, did, T0, per) == per, timeout=60, interval=0.2,
                   what="%d points of device %s after kill -9" % (per, did))
        assert s.wait_latest(did, "seq")["value"] == per - 1
    # and a clean stop/start keeps them too
    s.restart()
    for did, _ in devs:
        assert count_points(s, did, T0, per) == per


def test_full_writer_queue_loses_nothing(make_server):
    """The batched writer's queue limit must not fail the rule engine's saves: a
    failed message is acked by the engine (ThingsBoard's SKIP_ALL_FAILURES), so its
    data would be gone although the device got its 200. With a tiny limit and a
    lingering writer, every point must still be stored."""
    s = make_server(env={"TD_WRITER_QUEUE_LIMIT": "4", "TD_WRITER_MAX_DELAY_MS": "300"})
    devs = [s.new_device() for _ in range(CONNS)]
    per = 250
    acked, failures = post_seq(s, devs, per)
    assert not failures, failures[:5]
    assert acked == CONNS * per
    for did, _ in devs:
        wait_until(lambda: count_points(s, did, T0, per) == per, timeout=60, interval=0.2,
                   what="%d points of device %s" % (per, did))
    assert "queue full" not in s.log_tail(2000)


def test_kill9_right_after_single_ack(make_server):
    s = make_server()
    did, tok = s.new_device()
    r = s.post_telemetry(tok, {"ts": T0, "values": {"seq": 1}})
    assert r.status_code == 200
    r = s.post_attributes(tok, {"fw": "v9.9"})
    assert r.status_code == 200
    s.kill9()
    s.start()
    wait_until(lambda: count_points(s, did, T0, 1) == 1, timeout=30, what="the one point after kill -9")
    wait_until(lambda: any(e["key"] == "fw" and e["value"] == "v9.9" for e in
                           s.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did,
                                TENANT)), timeout=30, what="client attribute after kill -9")
