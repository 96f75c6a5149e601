# bench/lib.sh — shell functions shared by the bench drivers (sourced, not run).
#
# Used by bench/mqtt_run.sh and bench/live_run.sh; bench/run.sh (HTTP) has its own copies of the same
# steps (free port, start thingsd --demo, wait for the tenant login, create
# devices DW%08d with token = name, count ts_kv data points) and can switch to
# these. Every wait is bounded. Functions report errors on stderr and return
# non-zero; they never exit the caller's shell.
#
# Needs: curl, sqlite3, python3 with requests.

BENCH_PY=${BENCH_PY:-/usr/bin/python3}

# bench_free_port [PORT...]: print a free TCP port on 127.0.0.1 that is none of the
# PORTs given (the kernel may hand out the same free port twice in a row, and thingsd
# refuses to start when two of its listeners would share a port).
bench_free_port() {
  $BENCH_PY -c 'import socket, sys
avoid = set(sys.argv[1:])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = str(s.getsockname()[1]); s.close()
    if p not in avoid:
        print(p); break' "$@"
}

# bench_now: wall-clock seconds with fractions.
bench_now() { $BENCH_PY -c 'import time; print(time.time())'; }

# bench_rss_kb PID: VmRSS of PID in KB (0 if gone).
bench_rss_kb() { awk '/^VmRSS/{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }

# bench_hwm_kb PID: VmHWM (peak RSS) of PID in KB (0 if gone).
bench_hwm_kb() { awk '/^VmHWM/{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }

# bench_cpu_s PID: user+system CPU seconds PID has used so far.
bench_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' /proc/"$1"/stat 2>/dev/null ||
    echo 0
}

# bench_thread_cpu PID: "name/tid cpu_seconds" for every thread of PID (thingsd
# names its threads: td-io-0, td-actor, td-qwrite, ...; spaces become _).
bench_thread_cpu() {
  local hz t name
  hz=$(getconf CLK_TCK)
  for t in /proc/"$1"/task/*; do
    name=$(tr ' ' _ <"$t/comm" 2>/dev/null) || continue
    awk -v hz="$hz" -v tid="$name/${t##*/}" '{ sub(/^.*\) /, ""); printf "%s %.2f\n", tid, ($12 + $13) / hz }' \
      "$t/stat" 2>/dev/null
  done
}

# bench_machine: one line for a report, "N cores (nproc), <CPU model>, X GB RAM".
bench_machine() {
  $BENCH_PY -c 'import os
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
print("%d cores (nproc), %s, %.1f GB RAM" % (os.cpu_count(), cpu_model, int(mem) / 1024 / 1024))'
}

# bench_start_thingsd BIN DATA_DIR LOG HTTP_PORT MQTT_PORT [extra args...]: start
# thingsd in the background with only HTTP and MQTT listening on loopback; sets
# THINGSD_PID.
bench_start_thingsd() {
  local bin=$1 data=$2 log=$3 hport=$4 mport=$5
  shift 5
  mkdir -p "$data"
  HTTP_BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$hport MQTT_BIND_ADDRESS=127.0.0.1 MQTT_BIND_PORT=$mport \
    MQTT_SSL_BIND_PORT=0 COAP_BIND_PORT=0 COAP_DTLS_BIND_PORT=0 LWM2M_BIND_PORT=0 \
    "$bin" --data-dir "$data" "$@" 2>>"$log" >/dev/null &
  THINGSD_PID=$!
}

# bench_wait_login BASE PID: wait (60 s at most) until the tenant admin can log
# in; prints the JWT. Fails if PID exits or time runs out.
bench_wait_login() {
  local base=$1 pid=$2 tok
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { echo "bench: thingsd exited during start-up" >&2; return 1; }
    tok=$(curl -s -m 2 -H 'Content-Type: application/json' \
            -d '{"username":"tenant@thingsboard.org","password":"tenant"}' "$base/api/auth/login" |
          $BENCH_PY -c 'import sys,json; print(json.load(sys.stdin)["token"])' 2>/dev/null) && [ -n "$tok" ] &&
      { echo "$tok"; return 0; }
    sleep 0.1
  done
  echo "bench: thingsd not ready within 60 s" >&2
  return 1
}

# bench_create_devices BASE JWT N OUT [WORKERS] [IDS]: create devices
# DW00000000.. (token = name, ThingsBoard performance-tests naming) through
# POST /api/device?accessToken=, WORKERS requests at once (default 8), and write
# OUT in index order: the tokens, one a line, or with IDS=1 "<device uuid> <token>"
# lines.
bench_create_devices() {
  BASE=$1 JWT=$2 N=$3 OUT=$4 WORKERS=${5:-8} IDS=${6:-0} $BENCH_PY - <<'EOF'
import os, sys, threading, requests
base, jwt, n, out, nw = (os.environ["BASE"], os.environ["JWT"], int(os.environ["N"]), os.environ["OUT"],
                         int(os.environ["WORKERS"]))
want_ids = os.environ["IDS"] == "1"
ids, errors = [None] * n, []
def work(k):
    s = requests.Session()
    s.headers["X-Authorization"] = "Bearer " + jwt
    for i in range(k, n, nw):
        if errors:
            return
        name = "DW%08d" % i
        try:
            r = s.post(base + "/api/device", params={"accessToken": name}, json={"name": name, "type": "default"},
                       timeout=30)
            if r.status_code != 200:
                errors.append("device %s: %d %s" % (name, r.status_code, r.text[:300]))
                return
            if want_ids:
                ids[i] = r.json()["id"]["id"]
        except Exception as e:  # noqa: BLE001 - report any transport or reply error
            errors.append("device %s: %s" % (name, e))
            return
ts = [threading.Thread(target=work, args=(k,)) for k in range(nw)]
for t in ts: t.start()
for t in ts: t.join()
if errors:
    sys.exit("bench: " + errors[0])
with open(out, "w") as f:
    for i in range(n):
        f.write(("%s DW%08d\n" % (ids[i], i)) if want_ids else ("DW%08d\n" % i))
EOF
}

# bench_count_points DB: data points of the smart-meter keys in ts_kv.
bench_count_points() {
  sqlite3 "$1" "SELECT count(*) FROM ts_kv WHERE key IN (SELECT key_id FROM key_dictionary WHERE key IN ('pulseCounter','leakage','batteryLevel'));"
}

# bench_cleanup NAME DIR KEEP [PID...]: for a driver's EXIT trap: SIGKILL whatever of
# PID... still runs, then remove the work dir DIR, or with KEEP=1 keep it and say so
# ("NAME: kept DIR" on stderr).
bench_cleanup() {
  local name=$1 dir=$2 keep=$3 p
  shift 3
  for p in "$@"; do
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  if [ "$keep" = 1 ]; then echo "$name: kept $dir" >&2; else rm -rf "$dir"; fi
}

# bench_stop PID [TIMEOUT_S]: SIGTERM, wait at most TIMEOUT_S (default 60) for
# exit, then SIGKILL. Sets BENCH_RC to the exit code (137 after a kill). Call it
# directly, not in $(...): only the shell that started PID can wait for it.
bench_stop() {
  local pid=$1 t=${2:-60} rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((t * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "bench: pid $pid did not exit within ${t}s of SIGTERM; killed" >&2
  fi
  wait "$pid" 2>/dev/null || rc=$?
  BENCH_RC=$rc
}

# bench_doc_section NAME FILE DOC: put FILE's text (trailing newlines dropped) in DOC
# between <!-- BEGIN NAME --> and <!-- END NAME -->, replacing what was there, or
# appended after a blank line when the markers are missing; the rest of DOC is left
# alone (a missing DOC starts as "# Performance").
bench_doc_section() {
  $BENCH_PY - "$1" "$2" "$3" <<'EOF'
import os, re, sys
name, src, doc = sys.argv[1:4]
section = "<!-- BEGIN %s -->\n%s\n<!-- END %s -->" % (name, open(src).read().rstrip("\n"), name)
t = open(doc).read() if os.path.exists(doc) else "# Performance\n"
m = re.search(r"<!-- BEGIN %s -->.*?<!-- END %s -->" % (name, name), t, re.S)
if m:
    t = t[:m.start()] + section + t[m.end():]
else:
    t = t.rstrip("\n") + "\n\n" + section + "\n"
open(doc, "w").write(t)
EOF
}
