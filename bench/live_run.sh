#!/usr/bin/env bash
# bench/live_run.sh — live-data benchmarks: end-to-end latency from a device's MQTT
# publish to the matching WebSocket telemetry update, and the server-side RPC round
# trip (REST two-way call -> MQTT device -> reply -> REST response).
#
#   1. make build (BUILD=0: use the binaries as they are), unless THINGSD_BIN is set;
#   2. thingsd --demo on free loopback ports with a fresh data dir; the tenant admin's
#      JWT; DEVICES devices created through REST (DW%08d, token = name), their ids and
#      tokens written to a file for the tools;
#   3. for each rate in RATES: build/ws_latency (bench/ws_latency.c) with SUBSCRIBERS
#      WebSocket subscribers over the DEVICES devices, one MQTT connection per device
#      publishing {"lat":<monotonic us>} at QoS QOS, paced at the rate for DURATION s;
#      server CPU, per-thread CPU and peak RSS around each run (PERF=1: perf record -g
#      of the server during the last rate's run, top symbols into the report);
#   4. bench/rpc_rtt.py: RPC_RATE two-way calls/s for RPC_DURATION s to RPC_DEVICES
#      paho devices that answer at once;
#   5. SIGTERM, exit code;
#   6. rewrites the part of docs/performance.md between <!-- BEGIN live --> and
#      <!-- END live --> (appended when missing); the rest of the file is left alone.
# Every wait is bounded; a step that fails is reported as failed with its reason, no
# number is made up.
#
# Env: DEVICES=1000 SUBSCRIBERS=100 RATES="1000 20000" DURATION=20 DRAIN=5 QOS=1
#      THREADS=1 (publisher threads) WS_THREADS=1 RPC_DEVICES=10 RPC_RATE=100
#      RPC_DURATION=20 PERF=0 BUILD=1 WRITE_DOC=1 KEEP=0
#      THINGSD_BIN WS_LATENCY_BIN (default build/thingsd, build/ws_latency)
#      BENCH_TMP=/tmp (parent of the work and data dir; /dev/shm takes the disk out)
# thingsd inherits the environment, so its own variables work for diagnostic runs, e.g.
# TD_QUEUE_FSYNC=false (no fdatasync before the queue hands a message on); the report
# names BENCH_TMP, TD_QUEUE_FSYNC and TD_QUEUE_FSYNC_INTERVAL_US when they are set.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
DEVICES=${DEVICES:-1000}
SUBSCRIBERS=${SUBSCRIBERS:-100}
RATES=${RATES:-1000 20000}
DURATION=${DURATION:-20}
DRAIN=${DRAIN:-5}
QOS=${QOS:-1}
THREADS=${THREADS:-1}
WS_THREADS=${WS_THREADS:-1}
RPC_DEVICES=${RPC_DEVICES:-10}
RPC_RATE=${RPC_RATE:-100}
RPC_DURATION=${RPC_DURATION:-20}
PERF=${PERF:-0}
BUILD=${BUILD:-1}
WRITE_DOC=${WRITE_DOC:-1}
KEEP=${KEEP:-0}
PY=$BENCH_PY

die() { echo "live-bench: $*" >&2; exit 1; }
say() { echo "live-bench: $*" >&2; }

if [ -z "${THINGSD_BIN:-}" ] && [ "$BUILD" = 1 ]; then
  make -C "$REPO" build >&2 || die "make build failed"
fi
BIN=${THINGSD_BIN:-$REPO/build/thingsd}
WSL=${WS_LATENCY_BIN:-$REPO/build/ws_latency}
[ -x "$BIN" ] || die "no thingsd binary at $BIN"
[ -x "$WSL" ] || die "no ws_latency binary at $WSL"
command -v curl >/dev/null || die "curl is not installed"
$PY -c 'import requests, paho.mqtt.client' 2>/dev/null ||
  die "python3-requests / python3-paho-mqtt are not installed (scripts/deps.sh bench)"
[ "$PERF" = 1 ] && { command -v perf >/dev/null || die "PERF=1 but perf is not installed"; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_TMP=${BENCH_TMP:-/tmp}
TMP=$(mktemp -d "$BENCH_TMP/td-live-bench.XXXXXX") || die "cannot make a work dir in $BENCH_TMP"
THINGSD_PID=
PERF_PID=
# the pids are read when the trap runs (PERF_PID holds two, or none)
trap 'bench_cleanup live-bench "$TMP" "$KEEP" $PERF_PID $THINGSD_PID' EXIT
say "work dir $TMP"

# fsync_probe DIR: fdatasync latency of DIR's file system (200 appends of 4 KiB, each
# followed by fdatasync), "p50 p99 max" in ms: what the queue's group commit waits for.
fsync_probe() {
  $PY - "$1" <<'EOF' 2>/dev/null || echo "n/a"
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
ts = []
for _ in range(200):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter()
    os.fdatasync(fd)
    ts.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
ts.sort()
print("%.2f %.2f %.2f" % (ts[99], ts[197], ts[-1]))
EOF
}

# ws_probe BASE JWT: the HTTP status of a WebSocket upgrade on the telemetry path
# (101 when the endpoint works).
ws_probe() {
  curl -s -o /dev/null -m 5 -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
    -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
    "$1/api/ws/plugins/telemetry?token=$2" 2>/dev/null || true
}

FAIL=
FSYNC0=
FSYNC1=
RPC_FAIL=
WS_PROBE=
RC=
HPORT=$(bench_free_port)
MPORT=$(bench_free_port "$HPORT")
BASE=http://127.0.0.1:$HPORT
bench_start_thingsd "$BIN" "$TMP/data" "$TMP/thingsd.log" "$HPORT" "$MPORT" --demo
if ! JWT=$(bench_wait_login "$BASE" "$THINGSD_PID" 2>"$TMP/why"); then
  FAIL="thingsd did not come up: $(cat "$TMP/why"); log: $(tail -3 "$TMP/thingsd.log" | tr '\n' ' ')"
else
  say "thingsd pid $THINGSD_PID http $BASE mqtt 127.0.0.1:$MPORT"
  printf '%s\n' "$JWT" >"$TMP/jwt"
  chmod 600 "$TMP/jwt"
  NDEV=$DEVICES
  [ "$RPC_DEVICES" -gt "$NDEV" ] && NDEV=$RPC_DEVICES
  say "creating $NDEV devices"
  if ! bench_create_devices "$BASE" "$JWT" "$NDEV" "$TMP/devices.txt" 8 1 2>"$TMP/why"; then
    FAIL="device creation failed: $(cat "$TMP/why")"
  fi
  WS_PROBE=$(ws_probe "$BASE" "$JWT")
  say "WebSocket upgrade probe: HTTP $WS_PROBE"
fi

if [ -z "$FAIL" ]; then
  FSYNC0=$(fsync_probe "$TMP")
  say "fdatasync p50 / p99 / max before the runs: $FSYNC0 ms"
  last_rate=${RATES##* }
  for rate in $RATES; do
    say "ws_latency: $DEVICES devices, $SUBSCRIBERS subscribers, $rate msg/s, QoS $QOS, ${DURATION}s"
    c0=$(bench_cpu_s "$THINGSD_PID")
    bench_thread_cpu "$THINGSD_PID" >"$TMP/ws_$rate.threads0"
    if [ "$PERF" = 1 ] && [ "$rate" = "$last_rate" ]; then
      # starts now, covers the connect phase too (a few % of the samples); the second
      # recorder times the server's fdatasync/fsync calls (tracepoints, no ptrace)
      perf record -g -o "$TMP/perf.data" -p "$THINGSD_PID" >/dev/null 2>"$TMP/perf.log" &
      PERF_PID=$!
      perf record -o "$TMP/perf-sync.data" -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
        -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync -p "$THINGSD_PID" >/dev/null 2>>"$TMP/perf.log" &
      PERF_PID="$PERF_PID $!"
    fi
    "$WSL" --host 127.0.0.1 --http-port "$HPORT" --mqtt-port "$MPORT" --jwt-file "$TMP/jwt" \
      --devices-file "$TMP/devices.txt" --devices "$DEVICES" --subscribers "$SUBSCRIBERS" --rate "$rate" \
      --duration "$DURATION" --drain "$DRAIN" --qos "$QOS" -t "$THREADS" --ws-threads "$WS_THREADS" --json \
      >"$TMP/ws_$rate.json" 2>"$TMP/ws_$rate.log"
    echo "$?" >"$TMP/ws_$rate.rc"
    if [ -n "$PERF_PID" ]; then
      for p in $PERF_PID; do kill -INT "$p" 2>/dev/null; done
      for p in $PERF_PID; do wait "$p" 2>/dev/null; done
      PERF_PID=
    fi
    c1=$(bench_cpu_s "$THINGSD_PID")
    bench_thread_cpu "$THINGSD_PID" >"$TMP/ws_$rate.threads1"
    echo "$c0 $c1" >"$TMP/ws_$rate.cpu"
    bench_hwm_kb "$THINGSD_PID" >"$TMP/ws_$rate.hwm"
    grep -v '^  second ' "$TMP/ws_$rate.log" | tail -9 >&2
  done
  FSYNC1=$(fsync_probe "$TMP")
  say "fdatasync p50 / p99 / max after the runs: $FSYNC1 ms"
  if [ "$PERF" = 1 ] && [ -f "$TMP/perf.data" ]; then
    perf report -i "$TMP/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null |
      grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+$//' | head -30 >"$TMP/perf.top"
    # per thread: count, p50 / p99 / max duration and total time in fdatasync+fsync
    perf script -i "$TMP/perf-sync.data" -F tid,time,event 2>/dev/null | $PY -c '
import sys
start, d = {}, {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 3: continue
    tid, t, ev = f[0], float(f[1].rstrip(":")), f[2]
    if "sys_enter" in ev: start[tid] = t
    elif tid in start: d.setdefault(tid, []).append((t - start.pop(tid)) * 1000)
for tid, v in sorted(d.items(), key=lambda kv: -sum(kv[1])):
    v.sort()
    print("thread %s: %d calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms, %.2f s in total" % (
        tid, len(v), v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.99))], v[-1], sum(v) / 1000))
' >"$TMP/perf.sync" 2>/dev/null
  fi
  say "rpc_rtt: $RPC_DEVICES devices, $RPC_RATE calls/s, ${RPC_DURATION}s"
  if ! $PY "$REPO/bench/rpc_rtt.py" --base "$BASE" --mqtt-port "$MPORT" --jwt-file "$TMP/jwt" \
       --devices-file "$TMP/devices.txt" --devices "$RPC_DEVICES" --rate "$RPC_RATE" --duration "$RPC_DURATION" \
       --json >"$TMP/rpc.json" 2>"$TMP/rpc.log"; then
    RPC_FAIL="rpc_rtt failed: $(tail -3 "$TMP/rpc.log" | tr '\n' ' ')"
  fi
  tail -2 "$TMP/rpc.log" >&2
fi
HWM=$(bench_hwm_kb "$THINGSD_PID")
if [ -n "$THINGSD_PID" ]; then
  bench_stop "$THINGSD_PID" 120
  RC=$BENCH_RC
  THINGSD_PID=
fi
[ -n "$FAIL" ] && say "FAILED: $FAIL"
grep -E ' (WARN|ERROR) ' "$TMP/thingsd.log" | head -5 >"$TMP/server_warn.txt" || true

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE=$(bench_machine)
export MACHINE BENCH_TMP TMP REPO WRITE_DOC DEVICES SUBSCRIBERS RATES DURATION DRAIN QOS THREADS WS_THREADS RPC_DEVICES RPC_RATE \
  RPC_DURATION PERF FAIL RPC_FAIL WS_PROBE RC HWM LOAD0 LOAD1 FSYNC0 FSYNC1
$PY - <<'EOF' | tee "$TMP/section.md"
import datetime, json, os, re
e = os.environ
tmp = e["TMP"]
rates = e["RATES"].split()

def load(name):
    try:
        with open(os.path.join(tmp, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None

def text(name):
    try:
        return open(os.path.join(tmp, name)).read().strip()
    except OSError:
        return ""

W = {r: load("ws_%s.json" % r) for r in rates}
rpc = load("rpc.json")
fail = e.get("FAIL", "")

def ran(j):
    return j is not None and j.get("subs_live", 0) > 0 and j.get("mqtt_connected", 0) > 0

def why_not(r):
    if fail:
        return "**failed**"
    j = W[r]
    if j is None:
        return "**failed** (no summary)"
    return "**failed**"

def cell(r, f):
    j = W[r]
    if not ran(j):
        return why_not(r)
    try:
        return f(j, r)
    except Exception as ex:  # a missing field: say so, never invent
        return "n/a (%s)" % ex

ms = lambda us: "%.2f" % (us / 1000.0)

def cpu(r):
    try:
        a, b = text("ws_%s.cpu" % r).split()
        j = W[r]
        span = j["connect_s"] + j["run_s"] + j["drain_s"] + 0.6
        return "%.0f%% of one core (%.1f s in %.1f s incl. connect and drain)" % (100 * (float(b) - float(a)) / span, float(b) - float(a), span)
    except Exception:
        return "n/a"

def threads(r):
    """the busiest server threads during the run: 'name s' (the tid is dropped)"""
    try:
        t0 = dict(l.split() for l in text("ws_%s.threads0" % r).splitlines())
        t1 = dict(l.split() for l in text("ws_%s.threads1" % r).splitlines())
        d = sorted(((float(v) - float(t0.get(k, 0)), k) for k, v in t1.items()), reverse=True)
        return ", ".join("%s %.1f" % (k.rsplit("/", 1)[0], s) for s, k in d[:6] if s >= 0.05) or "n/a"
    except Exception:
        return "n/a"

def worst(j, r=None):
    return ", ".join("s%d: %s ms (%d of %d > %.0f ms)" % (w[0], ms(w[2]), w[3], w[1], j["slow_us"] / 1000)
                     for w in j.get("worst_seconds", [])) or "n/a"

def errs(j, r=None):
    x = dict(j.get("errors") or {})
    out = []
    if x:
        out.append("errors %s" % json.dumps(x))
    if j.get("close_codes"):
        out.append("close codes %s" % json.dumps(j["close_codes"]))
    if j.get("ignored", 0) > j.get("subs_live", 0):  # one [now, null] initial value per subscription is normal
        out.append("values not from this run %d" % (j["ignored"] - j["subs_live"]))
    for k in ("dup", "bad_value", "bad_json", "unknown_sub", "ws_closed_by_peer", "mqtt_closed_by_peer"):
        if j.get(k):
            out.append("%s %d" % (k, j[k]))
    return "; ".join(out) or "none"

hi = rates[-1] if rates else "0"
jhi = W.get(hi)
target_met = ran(jhi) and float(hi) >= 20000 and jhi["lat_p99_us"] <= 10000 and jhi["lost"] == 0 and \
    jhi["sent_per_s"] >= 0.95 * float(hi)
cmd = ("DEVICES=%s SUBSCRIBERS=%s RATES=\"%s\" DURATION=%s DRAIN=%s QOS=%s THREADS=%s WS_THREADS=%s RPC_DEVICES=%s "
       "RPC_RATE=%s RPC_DURATION=%s PERF=%s %sbench/live_run.sh" % (
           e["DEVICES"], e["SUBSCRIBERS"], e["RATES"], e["DURATION"], e["DRAIN"], e["QOS"], e["THREADS"],
           e["WS_THREADS"], e["RPC_DEVICES"], e["RPC_RATE"], e["RPC_DURATION"], e["PERF"],
           "".join("%s=%s " % (k, e[k]) for k in ("BENCH_TMP", "TD_QUEUE_FSYNC", "TD_QUEUE_FSYNC_INTERVAL_US") if e.get(k) and
                   not (k == "BENCH_TMP" and e[k] == "/tmp"))))
hdr = " | ".join("%s msg/s" % "{:,}".format(int(float(r))) for r in rates)
L = []
L.append("## Live data: WebSocket end-to-end latency, RPC round trip\n")
L.append("Written by `bench/live_run.sh` (only this section, between the `live` markers). One thingsd (`--demo`, "
         "fresh data dir) with %s devices created through REST. `build/ws_latency` (`bench/ws_latency.c`, libuv, "
         "thingsd's MQTT codec, its own RFC 6455 client) opens %s WebSocket connections to "
         "`/api/ws/plugins/telemetry?token=<JWT>` (tenant admin); each subscribes (`tsSubCmds`, `LATEST_TELEMETRY`, "
         "key `lat`) to an equal share of the devices. One MQTT 3.1.1 connection per device publishes "
         "`{\"lat\":V}` to `v1/devices/me/telemetry` at QoS %s, paced by a token bucket at the total rate below, "
         "round-robin over the devices; V is the generator's monotonic clock in microseconds at the publish. "
         "Latency = the moment the update carrying V is read from the WebSocket - V, per update, into a log-linear "
         "histogram (< 1%% error). Lost = published - received within %s s after the last publish. The generator "
         "runs on the same 2 cores as the server, so its own CPU time is part of what is measured.\n"
         % ("{:,}".format(int(e["DEVICES"])), e["SUBSCRIBERS"], e["QOS"], e["DRAIN"]))
L.append("* date: %s" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"))
L.append("* machine: %s; load average at start / end: %s / %s (anything else running shares the cores)"
         % (e["MACHINE"], e.get("LOAD0", "?"), e.get("LOAD1", "?")))
L.append("* command: `%s` (`make bench` runs it after the MQTT benchmark)" % cmd)
def fs(v):
    p = (v or "").split()
    return "%s / %s / %s ms" % tuple(p) if len(p) == 3 else "n/a"
L.append("* fdatasync of a 4 KiB append on the data dir's file system (what each queue group commit waits for), "
         "p50 / p99 / max, before / after the WebSocket runs: %s / %s" % (fs(e.get("FSYNC0")), fs(e.get("FSYNC1"))))
L.append("")
L.append("| WebSocket latency | %s |" % hdr)
L.append("|---|%s" % ("---|" * len(rates)))
row = lambda name, f: L.append("| %s | %s |" % (name, " | ".join(cell(r, f) for r in rates)))
row("MQTT connections ok / failed", lambda j, r: "%d / %d" % (j["mqtt_connected"], j["mqtt_failed"]))
row("WebSocket connections open / failed; subscriptions live / failed",
    lambda j, r: "%d / %d; %d / %d" % (j["ws_open"], j["ws_failed"], j["subs_live"], j["subs_failed"]))
row("published in %s s (achieved msg/s)" % e["DURATION"], lambda j, r: "%d (%.0f)" % (j["sent"], j["sent_per_s"]))
row("acknowledged (PUBACK) / received over WebSocket / **lost**",
    lambda j, r: "%d / %d / **%d**" % (j["acked"], j["received"], j["lost"]))
row("**latency p50 / p90 / p99 / p99.9 / max, ms**", lambda j, r: "**%s** / %s / **%s** / %s / %s" % (
    ms(j["lat_p50_us"]), ms(j["lat_p90_us"]), ms(j["lat_p99_us"]), ms(j["lat_p999_us"]), ms(j["lat_max_us"])))
row("of which publish -> PUBACK (durable in the queue) p50 / p90 / p99 / max, ms", lambda j, r: "%s / %s / %s / %s" % (
    ms(j["ack_p50_us"]), ms(j["ack_p90_us"]), ms(j["ack_p99_us"]), ms(j["ack_max_us"])) if j.get("ack_n") else "n/a (QoS 0)")
row("slowest seconds of the run (max latency)", worst)
row("server CPU", lambda j, r: cpu(r))
row("busiest server threads, CPU s each", lambda j, r: threads(r))
row("generator CPU (whole tool run)", lambda j, r: "%.1f s" % j["gen_cpu_s"])
row("generator-side anomalies", errs)
L.append("| server peak RSS (VmHWM) at the end | %s |" % " | ".join(
    ("%.1f MB" % (int(text("ws_%s.hwm" % r) or 0) / 1024)) if text("ws_%s.hwm" % r) else "n/a" for r in rates))
L.append("")
L.append("| RPC round trip (REST two-way -> MQTT device -> reply -> REST) | value |")
L.append("|---|---|")
if rpc and "rtt_p50_ms" in rpc:
    L.append("| devices answering / calls per second / duration | %d / %s / %s s |" % (
        rpc["devices_ready"], e["RPC_RATE"], e["RPC_DURATION"]))
    L.append("| calls ok / errors | %d / %d%s |" % (rpc["ok"], rpc["errors"], (" %s" % json.dumps(rpc["error_kinds"])) if rpc["errors"] else ""))
    L.append("| **round trip p50 / p90 / p99 / max, ms** | **%.2f** / %.2f / **%.2f** / %.2f |" % (
        rpc["rtt_p50_ms"], rpc["rtt_p90_ms"], rpc["rtt_p99_ms"], rpc["rtt_max_ms"]))
    L.append("| split: REST request -> device p50 / p99; device reply -> REST response p50 / p99, ms | %.2f / %.2f; %.2f / %.2f |" % (
        rpc["down_p50_ms"], rpc["down_p99_ms"], rpc["up_p50_ms"], rpc["up_p99_ms"]))
    L.append("| calls that started > 50 ms late (client pool busy) | %d |" % rpc["started_late"])
else:
    L.append("| result | **failed**: %s |" % (e.get("RPC_FAIL") or fail or "no summary"))
L.append("")
L.append("| target | measured | |")
L.append("|---|---|---|")
L.append("| p99 <= 10 ms at 20,000 msg/s with 100 WebSocket subscribers, nothing lost | %s | %s |" % (
    ("p99 %s ms, %d lost, %.0f msg/s published" % (ms(jhi["lat_p99_us"]), jhi["lost"], jhi["sent_per_s"])) if ran(jhi) else "failed",
    "met" if target_met else "**not met**"))
L.append("")
notes = []
if fail:
    notes.append("**run failed**: %s" % fail)
if e.get("WS_PROBE") and e["WS_PROBE"] != "101":
    notes.append("WebSocket upgrade probe (curl) answered HTTP %s instead of 101" % e["WS_PROBE"])
for r in rates:
    j = W[r]
    if j is not None and not ran(j):
        notes.append("%s msg/s: nothing measured: MQTT %d ok / %d failed, WebSocket %d open / %d failed, "
                     "subscriptions %d live / %d failed; %s" % (r, j["mqtt_connected"], j["mqtt_failed"], j["ws_open"],
                                                                j["ws_failed"], j["subs_live"], j["subs_failed"], errs(j)))
    elif j is None and not fail:
        notes.append("%s msg/s: the tool produced no summary: %s" % (r, text("ws_%s.log" % r)[-300:].replace("\n", " ")))
if e.get("RPC_FAIL"):
    notes.append("RPC: %s" % e["RPC_FAIL"])
if e.get("RC") not in ("", "0", None):
    notes.append("thingsd exit code after SIGTERM: %s" % e["RC"])
warn = text("server_warn.txt")
if warn:
    notes.append("server log WARN/ERROR lines (first 5): `%s`" % " / ".join(re.sub(r"token=[^ ]+", "token=...", l)[:200] for l in warn.splitlines()))
if notes:
    L.extend("* " + n for n in notes)
    L.append("")
reading = []
for r in rates:
    j = W[r]
    if ran(j) and j.get("ack_n"):
        reading.append("at %s msg/s, publish -> PUBACK p50 %s / p99 %s ms against publish -> WebSocket p50 %s / p99 %s ms"
                       % (r, ms(j["ack_p50_us"]), ms(j["ack_p99_us"]), ms(j["lat_p50_us"]), ms(j["lat_p99_us"])))
L.append("How to read it: the queue hands a message to the rule engine as soon as its group commit is written "
         "(`writev`); a separate thread does the `fdatasync` (at most one per `queue.fsync_interval_us`, 1 ms by "
         "default; whatever is written meanwhile shares it) and only then sends the PUBACKs (architecture invariant "
         "1: a device hears \"stored\" only once it is). Leaving a full segment and saving the consumer offset are "
         "off the writer thread too, so the writer never waits for the disk. The subscription update is formatted "
         "when the save-timeseries node hands the points to the writer, not after the SQLite commit, and a "
         "WebSocket session's updates that arrive while its flush task waits in the loop leave in one write. So "
         "the WebSocket path does not wait for the disk, while the PUBACK does: %s. On a shared machine both parts "
         "also wait for CPU (load average above) and the `fdatasync` waits for whatever else the disk is flushing "
         "(the probe line above). "
         "Diagnostic reruns: `PERF=1` (CPU profile and the server's `fdatasync` times per thread), "
         "`TD_QUEUE_FSYNC=false` (no queue `fdatasync`: shows the cost of durability, never for production), "
         "`TD_QUEUE_FSYNC_INTERVAL_US=0` (a sync as soon as the last one ends), "
         "`BENCH_TMP=/dev/shm` (data dir on tmpfs: no disk at all).\n" % ("; ".join(reading) or "no split measured"))
sync = text("perf.sync")
if sync:
    L.append("fdatasync/fsync calls of the server during the %s msg/s run, per thread (`PERF=1`, syscall tracepoints):\n" % hi)
    L.append("```\n%s\n```\n" % sync)
perf = text("perf.top")
if perf:
    L.append("Server profile during the %s msg/s run (`PERF=1`; `perf report --no-children --sort dso,symbol`, top 30):\n" % hi)
    L.append("```\n%s\n```\n" % perf)
print("\n".join(L))
EOF
if [ "$WRITE_DOC" = 1 ] && [ -s "$TMP/section.md" ]; then
  bench_doc_section live "$TMP/section.md" "$REPO/docs/performance.md" &&
    echo "live-bench: wrote the live section of $REPO/docs/performance.md"
fi
[ -z "$FAIL" ]
