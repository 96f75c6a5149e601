#!/usr/bin/python3
"""rpc_rtt.py — round trip of a server-side two-way RPC through thingsd:
REST POST /api/rpc/twoway/{deviceId} -> MQTT device -> reply -> REST response.

Where it sits: a bench tool driven by bench/live_run.sh (system python:
requests + paho-mqtt 1.6). It does not log in or create devices: the driver
gives it a JWT (--jwt-file) and devices (--devices-file, lines
"<device uuid> <access token>").

Devices: --devices N paho clients (MQTT 3.1.1, one per device, username =
token), each subscribed to v1/devices/me/rpc/request/+ at QoS 1; a request
{"method":"echo","params":{"seq":K}} on .../request/{id} is answered at once
on v1/devices/me/rpc/response/{id} with {"seq":K} (QoS 1).

Callers: an open-loop schedule of --rate calls/s for --duration s, round-robin
over the devices; call k is due at start + k/rate and is handed to a pool of
--workers threads (one requests.Session each, keep-alive). The round trip is
measured from the moment the HTTP request starts to the end of the response;
a call that started more than 50 ms after it was due is counted as
"started_late" (the pool, not the server, was the bottleneck then). A call
counts as ok only with status 200 and a body equal to the device's answer;
everything else is an error, counted by kind (status code, wrong body,
transport exception). A warm-up call per device (not counted) runs first.
The device records when each request reached it (same process, same
monotonic clock), which splits a round trip into REST request -> device and
device -> REST response.

Output: a summary on stderr and, with --json, one JSON line on stdout.
Bounded: the schedule holds at most rate*duration calls, the latencies are
kept in one list of that size (at 100 calls/s for 20 s: 2000 floats).
"""
import argparse
import json
import math
import queue
import sys
import threading
import time

import paho.mqtt.client as mqtt
import requests


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = max(0, min(len(sorted_vals) - 1, math.ceil(len(sorted_vals) * p / 100.0) - 1))  # nearest rank
    return sorted_vals[k]


class Device:
    """One MQTT device that answers every RPC request with its params."""

    def __init__(self, host, port, token, idx, arrivals):
        self.arrivals = arrivals  # seq -> monotonic time the request reached the device
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.connack = None
        self.answered = 0
        self.bad_requests = 0
        self.c = mqtt.Client(client_id="rpc-rtt-%d-%d" % (id(self) & 0xffff, idx), protocol=mqtt.MQTTv311)
        self.c.username_pw_set(token)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect_async(host, port, keepalive=60)
        self.c.loop_start()

    def _on_connect(self, c, u, flags, rc):
        self.connack = rc
        if rc == 0:
            c.subscribe("v1/devices/me/rpc/request/+", 1)
        self.connected.set()

    def _on_message(self, c, u, msg):
        t = time.monotonic()
        rid = msg.topic.rsplit("/", 1)[-1]
        try:
            req = json.loads(msg.payload)
            answer = json.dumps(req["params"])
            self.arrivals[req["params"]["seq"]] = t
        except Exception:  # noqa: BLE001 - count whatever the payload is
            self.bad_requests += 1
            answer = json.dumps({"error": "bad request"})
        c.publish("v1/devices/me/rpc/response/" + rid, answer, 1)
        self.answered += 1

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--mqtt-host", default="127.0.0.1")
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--jwt-file", required=True)
    ap.add_argument("--devices-file", required=True)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--timeout-ms", type=int, default=5000, help="the RPC's own timeout (server side)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.rate <= 0 or a.duration <= 0 or a.devices < 1 or a.workers < 1:
        sys.exit("rpc_rtt: bad arguments")

    jwt = open(a.jwt_file).readline().strip()
    devs = []
    for line in open(a.devices_file):
        parts = line.split()
        if len(parts) >= 2:
            devs.append((parts[0], parts[1]))
        if len(devs) >= a.devices:
            break
    if not devs:
        sys.exit("rpc_rtt: no devices in %s" % a.devices_file)

    arrivals = {}  # at most one entry per call
    clients = [Device(a.mqtt_host, a.mqtt_port, tok, i, arrivals) for i, (_, tok) in enumerate(devs)]
    result = {"devices": len(devs), "rate": a.rate, "duration": a.duration, "workers": a.workers}
    try:
        deadline = time.monotonic() + 30
        for c in clients:
            c.connected.wait(max(0.0, deadline - time.monotonic()))
            c.subscribed.wait(max(0.0, deadline - time.monotonic()))
        ready = sum(1 for c in clients if c.connack == 0 and c.subscribed.is_set())
        result["devices_ready"] = ready
        if ready < len(clients):
            result["connack_codes"] = sorted({str(c.connack) for c in clients})
            print("rpc_rtt: only %d of %d devices connected and subscribed (CONNACK codes %s)"
                  % (ready, len(clients), result["connack_codes"]), file=sys.stderr)
            if ready == 0:
                raise SystemExit(1)

        tls = threading.local()

        def session():
            s = getattr(tls, "s", None)
            if s is None:
                s = tls.s = requests.Session()
                s.headers["X-Authorization"] = "Bearer " + jwt
            return s

        def call(did, seq):
            """(ok, rtt_s or None, error kind or None); on success the split
            (REST request -> device, device -> REST response) goes into halves."""
            body = {"method": "echo", "params": {"seq": seq}, "timeout": a.timeout_ms}
            t = time.monotonic()
            try:
                r = session().post(a.base + "/api/rpc/twoway/" + did, json=body, timeout=a.timeout_ms / 1000 + 10)
            except requests.RequestException as e:
                return False, None, "exception_" + type(e).__name__
            t_end = time.monotonic()
            rtt = t_end - t
            if r.status_code != 200:
                return False, rtt, "http_%d" % r.status_code
            try:
                if r.json() != {"seq": seq}:
                    return False, rtt, "wrong_body"
            except ValueError:
                return False, rtt, "body_not_json"
            ta = arrivals.pop(seq, None)
            if ta is not None and seq >= 0:
                with lock:
                    down.append(ta - t)
                    up.append(t_end - ta)
            return True, rtt, None

        lock = threading.Lock()
        down, up = [], []
        # warm-up: one call per ready device, not counted
        warm_err = {}
        for i, (did, _) in enumerate(devs):
            ok, _, err = call(did, -1 - i)
            if not ok:
                warm_err[err] = warm_err.get(err, 0) + 1
        result["warmup_errors"] = warm_err

        total = int(a.rate * a.duration)
        work = queue.Queue()
        rtts, errors = [], {}
        late = [0]

        def worker():
            while True:
                item = work.get()
                if item is None:
                    return
                k, due = item
                if time.monotonic() - due > 0.05:
                    with lock:
                        late[0] += 1
                ok, rtt, err = call(devs[k % len(devs)][0], k)
                with lock:
                    if ok:
                        rtts.append(rtt)
                    else:
                        errors[err] = errors.get(err, 0) + 1

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.workers)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        for k in range(total):
            due = t0 + k / a.rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            work.put((k, due))
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join(a.timeout_ms / 1000 + 15)
        elapsed = time.monotonic() - t0
        rs = sorted(rtts)
        nerr = sum(errors.values())
        result.update({
            "calls": total, "ok": len(rs), "errors": nerr, "error_kinds": errors, "started_late": late[0],
            "elapsed_s": round(elapsed, 3), "calls_per_s": round((len(rs) + nerr) / elapsed, 1) if elapsed else 0,
            "rtt_p50_ms": round(pct(rs, 50) * 1000, 2), "rtt_p90_ms": round(pct(rs, 90) * 1000, 2),
            "rtt_p99_ms": round(pct(rs, 99) * 1000, 2), "rtt_max_ms": round((rs[-1] if rs else 0) * 1000, 2),
            "rtt_mean_ms": round(sum(rs) / len(rs) * 1000, 2) if rs else 0,
            "down_p50_ms": round(pct(sorted(down), 50) * 1000, 2), "down_p99_ms": round(pct(sorted(down), 99) * 1000, 2),
            "up_p50_ms": round(pct(sorted(up), 50) * 1000, 2), "up_p99_ms": round(pct(sorted(up), 99) * 1000, 2),
            "device_answers": sum(c.answered for c in clients),
            "device_bad_requests": sum(c.bad_requests for c in clients),
        })
    finally:
        for c in clients:
            c.close()
    print("rpc_rtt: %d devices, %.0f calls/s for %.0f s: ok=%d errors=%d %s started_late=%d; "
          "RTT ms p50=%.2f p90=%.2f p99=%.2f max=%.2f mean=%.2f; REST->device p50=%.2f p99=%.2f, "
          "device->REST response p50=%.2f p99=%.2f"
          % (len(devs), a.rate, a.duration, result["ok"], result["errors"], json.dumps(result["error_kinds"]),
             result["started_late"], result["rtt_p50_ms"], result["rtt_p90_ms"], result["rtt_p99_ms"],
             result["rtt_max_ms"], result["rtt_mean_ms"], result["down_p50_ms"], result["down_p99_ms"],
             result["up_p50_ms"], result["up_p99_ms"]), file=sys.stderr)
    if a.json:
        print(json.dumps(result), flush=True)
    return 0 if result["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
