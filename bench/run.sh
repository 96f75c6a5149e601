#!/usr/bin/env bash
# bench/run.sh — HTTP device API telemetry benchmark, and the raw-SQLite ceiling.
#
# Builds nothing: uses build/thingsd (or $THINGSD_BIN) and build/sqlite_ceiling.
# Starts thingsd --demo on a temp data dir and a free port, creates DEVICES devices
# through REST as the tenant admin (named DW00000000.., token = name, like
# ThingsBoard's performance-tests), runs wrk with bench/http_telemetry.lua (the
# smart-meter payload, rotating over the tokens, keep-alive) for DURATION seconds
# with CONNS connections and 1 thread, stops the server with SIGTERM (exit 0
# required), counts the stored data points with sqlite3 on the data dir's database,
# runs sqlite_ceiling with the same number of rows, and rewrites docs/performance.md
# (set WRITE_DOC=0 to leave it alone).
#
# Env: DEVICES=1000 DURATION=20 CONNS=64 THREADS=1 PERF=0 (1: perf record -g during the run)
#      THINGSD_BIN, KEEP=0 (1: keep the temp dir), WRITE_DOC=1
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${THINGSD_BIN:-$REPO/build/thingsd}
CEIL=${SQLITE_CEILING_BIN:-$REPO/build/sqlite_ceiling}
DEVICES=${DEVICES:-1000}
DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
PERF=${PERF:-0}
KEEP=${KEEP:-0}
WRITE_DOC=${WRITE_DOC:-1}
PY=/usr/bin/python3

die() { echo "bench: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no thingsd binary at $BIN (run make first)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v sqlite3 >/dev/null || die "sqlite3 CLI is not installed (apt-get install sqlite3)"
command -v curl >/dev/null || die "curl is not installed"

TMP=$(mktemp -d /tmp/td-bench.XXXXXX)
DATA=$TMP/data
LOG=$TMP/thingsd.log
mkdir -p "$DATA"
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then echo "bench: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
echo "bench: thingsd on $BASE, data dir $DATA"
HTTP_BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$PORT MQTT_BIND_PORT=0 MQTT_SSL_BIND_PORT=0 COAP_BIND_PORT=0 \
  COAP_DTLS_BIND_PORT=0 LWM2M_BIND_PORT=0 "$BIN" --data-dir "$DATA" --demo 2>"$LOG" >/dev/null &
PID=$!

# ready = the tenant admin can log in (bounded wait)
TOKEN=
for _ in $(seq 1 600); do
  kill -0 "$PID" 2>/dev/null || { tail -50 "$LOG" >&2; die "thingsd exited during start-up"; }
  TOKEN=$(curl -s -m 2 -H 'Content-Type: application/json' \
            -d '{"username":"tenant@thingsboard.org","password":"tenant"}' "$BASE/api/auth/login" |
          $PY -c 'import sys,json; print(json.load(sys.stdin)["token"])' 2>/dev/null) && [ -n "$TOKEN" ] && break
  sleep 0.1
done
[ -n "$TOKEN" ] || { tail -50 "$LOG" >&2; die "thingsd not ready within 60 s"; }

echo "bench: creating $DEVICES devices"
TOKENS=$TMP/tokens.txt
BASE=$BASE TOKEN=$TOKEN DEVICES=$DEVICES TOKENS=$TOKENS $PY - <<'EOF'
import os, requests
base, tok, n, out = os.environ["BASE"], os.environ["TOKEN"], int(os.environ["DEVICES"]), os.environ["TOKENS"]
s = requests.Session()
s.headers["X-Authorization"] = "Bearer " + tok
with open(out, "w") as f:
    for i in range(n):
        name = "DW%08d" % i
        r = s.post(base + "/api/device", params={"accessToken": name}, json={"name": name, "type": "default"})
        if r.status_code != 200:
            raise SystemExit("device %s: %d %s" % (name, r.status_code, r.text[:300]))
        f.write(name + "\n")
EOF

PERF_PID=
if [ "$PERF" = 1 ]; then
  command -v perf >/dev/null || die "perf not installed"
  perf record -g -o "$TMP/perf.data" -p "$PID" >/dev/null 2>&1 &
  PERF_PID=$!
fi

echo "bench: wrk -t$THREADS -c$CONNS -d${DURATION}s"
T_START=$($PY -c 'import time; print(time.time())')
TOKENS_FILE=$TOKENS wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$REPO/bench/http_telemetry.lua" "$BASE" \
  | tee "$TMP/wrk.txt"
T_WRK_END=$($PY -c 'import time; print(time.time())')

if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
fi
RSS_KB=$(awk '/VmHWM/{print $2}' /proc/"$PID"/status 2>/dev/null || echo 0)

kill -TERM "$PID"
RC=0
wait "$PID" || RC=$?
PID=
T_STOP=$($PY -c 'import time; print(time.time())')
[ "$RC" = 0 ] || { tail -50 "$LOG" >&2; echo "bench: WARNING thingsd exited with $RC after SIGTERM" >&2; }

line=$(grep '^bench_result' "$TMP/wrk.txt") || die "no bench_result line from wrk"
OK2XX=$(sed -E 's/.*ok2xx=([0-9]+).*/\1/' <<<"$line")
NON2XX=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
DUR_US=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")
P50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
P99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
SOCKERR=$(grep -o 'Socket errors:.*' "$TMP/wrk.txt" || true)

DB=$DATA/thingsd.db
[ -f "$DB" ] || DB=$(find "$DATA" -name '*.db' | head -1)
[ -n "$DB" ] && [ -f "$DB" ] || die "no database file in $DATA"
STORED=$(sqlite3 "$DB" "SELECT count(*) FROM ts_kv WHERE key IN (SELECT key_id FROM key_dictionary WHERE key IN ('pulseCounter','leakage','batteryLevel'));")
echo "bench: acked(2xx)=$OK2XX non2xx=$NON2XX stored datapoints=$STORED (expected >= $((OK2XX * 3)))"

# Acknowledged messages that were still in the durable queue at SIGTERM are processed on the
# next start: restart on the same data dir and wait (bounded) until the count reaches the
# acknowledged total or stops growing.
count_points() {
  sqlite3 "$DB" "SELECT count(*) FROM ts_kv WHERE key IN (SELECT key_id FROM key_dictionary WHERE key IN ('pulseCounter','leakage','batteryLevel'));"
}
STORED_RESTART=$STORED
RC2=0
T_REPLAY=0
if [ "$STORED" -lt $((OK2XX * 3)) ]; then
  echo "bench: $((OK2XX * 3 - STORED)) acknowledged data points not stored at exit; restarting to replay the queue"
  T_R0=$($PY -c 'import time; print(time.time())')
  HTTP_BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$PORT MQTT_BIND_PORT=0 MQTT_SSL_BIND_PORT=0 COAP_BIND_PORT=0 \
    COAP_DTLS_BIND_PORT=0 LWM2M_BIND_PORT=0 "$BIN" --data-dir "$DATA" 2>>"$LOG" >/dev/null &
  PID=$!
  last=-1; same=0
  for _ in $(seq 1 600); do
    sleep 0.1
    n=$(count_points 2>/dev/null || echo "$last")
    if [ "$n" -ge $((OK2XX * 3)) ]; then break; fi
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 50 ] && break   # unchanged for 5 s
    last=$n
  done
  kill -TERM "$PID"; wait "$PID" || RC2=$?; PID=
  T_REPLAY=$($PY -c "import time; print(round(time.time() - $T_R0, 1))")
  STORED_RESTART=$(count_points)
  echo "bench: after restart: $STORED_RESTART data points stored (exit code $RC2, ${T_REPLAY}s)"
fi

CEIL_ROWS=$STORED
[ "$CEIL_ROWS" -gt 0 ] || CEIL_ROWS=$((OK2XX * 3))
[ "$CEIL_ROWS" -gt 0 ] || CEIL_ROWS=60000
if [ ! -x "$CEIL" ]; then
  echo "bench: $CEIL missing; compiling bench/sqlite_ceiling.c into $TMP" >&2
  gcc -O2 -o "$TMP/sqlite_ceiling" "$REPO/bench/sqlite_ceiling.c" -lsqlite3
  CEIL=$TMP/sqlite_ceiling
fi
CEIL_OUT=$("$CEIL" "$CEIL_ROWS" "$DEVICES" "$TMP/ceiling.db" 1000)
echo "bench: $CEIL_OUT"
CEIL_RATE=$(sed -E 's/.*rows_per_s=([0-9]+).*/\1/' <<<"$CEIL_OUT")
CEIL_OUT5=$("$CEIL" "$CEIL_ROWS" "$DEVICES" "$TMP/ceiling.db" 5000)
echo "bench: $CEIL_OUT5"
CEIL_RATE5=$(sed -E 's/.*rows_per_s=([0-9]+).*/\1/' <<<"$CEIL_OUT5")
rm -f "$TMP"/ceiling.db*

PERF_TOP=
if [ "$PERF" = 1 ] && [ -f "$TMP/perf.data" ]; then
  PERF_TOP=$(perf report -i "$TMP/perf.data" --stdio --no-children --sort symbol 2>/dev/null | grep -E "^ +[0-9]" | sed -E "s/[[:space:]-]+$//" | head -25 || true)
  echo "$PERF_TOP"
fi

export OK2XX NON2XX DUR_US P50 P99 STORED STORED_RESTART RC2 T_REPLAY CEIL_RATE5 CEIL_RATE CEIL_ROWS DEVICES DURATION CONNS THREADS RC RSS_KB \
  T_START T_WRK_END T_STOP SOCKERR PERF_TOP REPO WRITE_DOC
$PY - <<'EOF'
import datetime, os, subprocess
e = os.environ
ok, bad, dur = int(e["OK2XX"]), int(e["NON2XX"]), int(e["DUR_US"]) / 1e6
stored, ceil, ceil5 = int(e["STORED"]), int(e["CEIL_RATE"]), int(e["CEIL_RATE5"])
stored2 = int(e["STORED_RESTART"])
rps = ok / dur if dur else 0
drain = float(e["T_STOP"]) - float(e["T_WRK_END"])
dps_stored = stored / (dur + drain) if dur else 0
dps_acked = 3 * rps
ratio = dps_stored / ceil if ceil else 0
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
nproc = os.cpu_count()
target_ok = rps >= 20000 and dps_stored >= 3 * 20000 and stored >= 3 * ok
cmd = "DEVICES=%s DURATION=%s CONNS=%s THREADS=%s bench/run.sh" % (e["DEVICES"], e["DURATION"], e["CONNS"], e["THREADS"])
summary = ("thingsd: %.0f req/s acked (2xx), %d non-2xx, %d datapoints stored at SIGTERM exit of %d acked, "
           "%d after restart (%s), %.0f datapoints/s stored incl. %.1f s drain; sqlite ceiling %d rows/s "
           "(batch 1000), %d rows/s (batch 5000); ratio %.2f"
           % (rps, bad, stored, 3 * ok, stored2, "all acked stored" if stored2 >= 3 * ok else "LOST %d" % (3 * ok - stored2),
              dps_stored, drain, ceil, ceil5, ratio))
print("bench: " + summary)
if e.get("WRITE_DOC", "1") != "1":
    raise SystemExit(0)
doc = os.path.join(e["REPO"], "docs", "performance.md")
tmpl_path = os.path.join(e["REPO"], "bench", "performance.md.in")
tmpl = open(tmpl_path).read()
table = "\n".join([
    "| metric | value |",
    "|---|---|",
    "| thingsd HTTP telemetry requests/s acknowledged (2xx) | **%.0f** |" % rps,
    "| non-2xx responses / socket errors | %d / %s |" % (bad, e.get("SOCKERR") or "none"),
    "| latency p50 / p99 (wrk) | %.2f ms / %.2f ms |" % (int(e["P50"]) / 1000, int(e["P99"]) / 1000),
    "| data points acknowledged (3 per request) | %d (%.0f/s) |" % (3 * ok, dps_acked),
    "| data points stored (sqlite3 count after SIGTERM) | %d |" % stored,
    "| stored == acked at SIGTERM exit? | %s |" % ("yes" if stored == 3 * ok else ("stored > acked (%d requests were in flight when wrk stopped)" % ((stored - 3 * ok) // 3) if stored > 3 * ok else "**no: %d acknowledged data points not yet stored when the process exited** (exit took %.1f s)" % (3 * ok - stored, drain))),
    "| stored after a restart on the same data dir (queue replay) | %s |" % ("not needed" if stored >= 3 * ok else "%d (%s, exit code %s, %s s)" % (stored2, "all acknowledged data points stored" if stored2 >= 3 * ok else "**%d lost**" % (3 * ok - stored2), e["RC2"], e["T_REPLAY"])),
    "| data points/s stored (stored / (run + %.1f s drain until exit)) | %.0f |" % (drain, dps_stored),
    "| exit code after SIGTERM | %s |" % e["RC"],
    "| peak RSS of thingsd | %.0f MB |" % (int(e["RSS_KB"] or 0) / 1024),
    "| raw SQLite ceiling (%d rows, batches of 1000, WAL) | %d rows/s |" % (int(e["CEIL_ROWS"]), ceil),
    "| raw SQLite, same rows, batches of 5000 (thingsd writer default) | %d rows/s |" % ceil5,
    "| ratio thingsd stored / SQLite ceiling (batch 1000) | %.2f |" % ratio,
    "| target (>= 20,000 req/s acked and stored) | %s |" % ("met" if target_ok else "**not met**"),
])
machine = "%d cores (nproc), %s, %.1f GB RAM" % (nproc, cpu, int(mem) / 1024 / 1024)
perf = e.get("PERF_TOP", "").strip()
perf_block = ("Top symbols of the last `PERF=1` run (`perf report --stdio --no-children --sort symbol`):\n\n```\n%s\n```\n" % perf) if perf else \
    "(no profile in this run; rerun with `PERF=1 bench/run.sh`)\n"
out = tmpl.replace("@DATE@", datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")) \
          .replace("@MACHINE@", machine).replace("@COMMAND@", cmd).replace("@TABLE@", table) \
          .replace("@SUMMARY@", summary).replace("@PERF@", perf_block) \
          .replace("@TARGET@", "met" if target_ok else "not met")
# The MQTT benchmark (bench/mqtt_run.sh) and the live-data benchmark
# (bench/live_run.sh) own the blocks between their markers: keep them as the
# last runs left them.
import re
try:
    old = open(doc).read()
except OSError:
    old = ""
for name in ("mqtt", "live"):
    m = re.search(r"<!-- BEGIN %s -->.*?<!-- END %s -->" % (name, name), old, re.S)
    if m:
        out = out.rstrip("\n") + "\n\n" + m.group(0) + "\n"
open(doc, "w").write(out)
print("bench: wrote " + doc)
EOF
[ "$RC" = 0 ] || exit 1
