/* mqtt_load.c — MQTT load generator for thingsd (and, for comparison, any
 * broker such as mosquitto).
 *
 * Where it sits: a bench tool (bench/mqtt_run.sh drives it). The connections
 * are bench/common/mqttc.c's pool, which speaks MQTT through thingsd's own
 * codec (src/transport/mqtt/codec.h, from tdcore), so the benchmark also
 * exercises the codec as a client; this file holds the options, the tokens,
 * the payload, the phase driver and the summary.
 *
 * Model: C connections, connection i is device i % N and logs in with that
 * device's access token as MQTT user name (tokens from --tokens-file, else
 * "DW%08d" like ThingsBoard's performance-tests). Each of T threads runs its
 * own libuv loop over a contiguous slice of the connections. Phases, driven
 * by the main thread through one atomic:
 *   CONNECT  connect everything, at most --connect-concurrency TCP/MQTT
 *            handshakes in flight (so the listener's backlog is not stampeded);
 *   RUN      publish {"pulseCounter":N,"leakage":false,"batteryLevel":N} to
 *            v1/devices/me/telemetry for --duration seconds, paced by a token
 *            bucket at --rate msg/s in total, or (rate 0) as fast as the
 *            per-connection in-flight window (--inflight) allows; with --idle
 *            nothing is published, connections are held with PINGREQs;
 *   DRAIN    no new publishes; wait (at most --drain s) for outstanding PUBACKs;
 *   STOP     send DISCONNECT, close everything, print the summary.
 *
 * Memory is bounded: per connection a fixed read buffer, two write buffers
 * with a limit, and --inflight send timestamps; latency (publish -> PUBACK,
 * microseconds) goes into a fixed log-linear histogram (bench/common/hist.h),
 * never into an array per message. */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/errkind.h"
#include "common/hist.h"
#include "common/lines.h"
#include "common/mqttc.h"
#include "common/opts.h"
#include "common/run.h"

#define WBUF_LIMIT (256u * 1024) /* per write buffer */

/* ---- options and inputs ------------------------------------------------- */

struct opts {
  const char *host, *tokens_file;
  int port, devices, connections, threads, qos, protocol, keepalive, connect_conc;
  int inflight;
  double rate, duration, drain, connect_timeout;
  bool idle, json, quiet, ts_payload;
};

static struct opts O = {
    .host = "127.0.0.1", .port = 1883, .devices = 1000, .connections = 0, .threads = 1, .qos = 1,
    .protocol = 4, .keepalive = 60, .connect_conc = 100, .inflight = 16, .rate = 0, .duration = 20,
    .drain = 10, .connect_timeout = 60,
};

static atomic_int g_phase = BENCH_CONNECT;
static char **g_tokens;
static size_t g_ntokens;
static int64_t g_ts_base; /* --ts-payload: first ts (ms) */

/* Connection idx is device idx % --devices and logs in with its token. */
static const char *conn_token(void *arg, uint32_t idx) { return g_tokens[(idx % (uint32_t)O.devices) % g_ntokens]; }

/* The smart-meter payload of message seq; with --ts-payload its ts is unique
 * per device and message. */
static int conn_payload(void *arg, uint32_t idx, uint64_t seq, uint64_t now_ns, char *pl, size_t cap) {
  if (O.ts_payload) {
    int64_t per = (O.connections + O.devices - 1) / O.devices;
    int64_t ts = g_ts_base + (int64_t)seq * per + (int64_t)(idx / (uint32_t)O.devices);
    return snprintf(pl, cap, "{\"ts\":%" PRId64 ",\"values\":{\"pulseCounter\":%" PRIu64
                    ",\"leakage\":false,\"batteryLevel\":%u}}", ts, seq, (unsigned)(20 + seq % 80));
  }
  return snprintf(pl, cap, "{\"pulseCounter\":%" PRIu64 ",\"leakage\":false,\"batteryLevel\":%u}", seq,
                  (unsigned)(20 + seq % 80));
}

/* --tokens-file: one access token a line. */
static int take_token(const char *line, void *elem, void *arg) {
  *(char **)elem = strdup(line);
  return *(char **)elem ? 0 : -1;
}

static int load_tokens(void) {
  if (!O.tokens_file) {
    g_ntokens = (size_t)O.devices;
    g_tokens = calloc(g_ntokens, sizeof *g_tokens);
    if (!g_tokens) return -1;
    for (size_t i = 0; i < g_ntokens; i++) {
      g_tokens[i] = malloc(24);
      if (!g_tokens[i]) return -1;
      snprintf(g_tokens[i], 24, "DW%08zu", i);
    }
    return 0;
  }
  void *arr;
  int rc = bench_lines_load("mqtt_load", O.tokens_file, (size_t)O.devices, sizeof *g_tokens, take_token, NULL, &arr,
                            &g_ntokens);
  g_tokens = arr;
  if (rc) return -1;
  if (g_ntokens == 0) {
    fprintf(stderr, "mqtt_load: no tokens in %s\n", O.tokens_file);
    return -1;
  }
  if (g_ntokens < (size_t)O.devices) {
    fprintf(stderr, "mqtt_load: %s has %zu tokens, using --devices %zu\n", O.tokens_file, g_ntokens, g_ntokens);
    O.devices = (int)g_ntokens;
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: mqtt_load [options]\n"
          "  --host H               server address (127.0.0.1)\n"
          "  --port P               MQTT port (1883)\n"
          "  --devices N            devices (1000); connection i is device i %% N\n"
          "  --tokens-file F        access tokens, one per line (default DW00000000.. = device names)\n"
          "  --connections C        connections (default = devices)\n"
          "  --rate R               total publishes/s (0 = as fast as the in-flight window allows)\n"
          "  --inflight W           unacknowledged QoS 1 publishes per connection (16; capped by a v5\n"
          "                         server's Receive Maximum); QoS 0: publishes queued per write\n"
          "  --qos 0|1              (1)\n"
          "  --duration S           seconds of publishing, or of holding with --idle (20)\n"
          "  --drain S              max seconds to wait for outstanding PUBACKs after the run (10)\n"
          "  --idle                 connect all and hold them with keep-alive pings, no publishing\n"
          "  --keepalive S          MQTT keep-alive (60; 0 = none)\n"
          "  --protocol 3|4|5       MQTT 3.1 / 3.1.1 / 5.0 (4)\n"
          "  --connect-concurrency K  handshakes in flight at once, all threads (100)\n"
          "  --connect-timeout S    give up on connects still pending after S seconds (60)\n"
          "  --ts-payload           send {\"ts\":T,\"values\":{...}} with T unique per device and message,\n"
          "                         so every message is a distinct stored row\n"
          "  -t, --threads T        threads, each with its own loop (1)\n"
          "  --json                 print one JSON summary line on stdout\n"
          "  -q, --quiet            no progress lines on stderr\n");
}

static int parse_args(int argc, char **argv) {
  static const struct bench_opt opts[] = {
      {"host", 0, BENCH_OPT_STR, &O.host},
      {"port", 0, BENCH_OPT_INT, &O.port},
      {"devices", 0, BENCH_OPT_INT, &O.devices},
      {"tokens-file", 0, BENCH_OPT_STR, &O.tokens_file},
      {"connections", 0, BENCH_OPT_INT, &O.connections},
      {"rate", 0, BENCH_OPT_DOUBLE, &O.rate},
      {"inflight", 0, BENCH_OPT_INT, &O.inflight},
      {"qos", 0, BENCH_OPT_INT, &O.qos},
      {"duration", 0, BENCH_OPT_DOUBLE, &O.duration},
      {"drain", 0, BENCH_OPT_DOUBLE, &O.drain},
      {"idle", 0, BENCH_OPT_FLAG, &O.idle},
      {"keepalive", 0, BENCH_OPT_INT, &O.keepalive},
      {"protocol", 0, BENCH_OPT_INT, &O.protocol},
      {"connect-concurrency", 0, BENCH_OPT_INT, &O.connect_conc},
      {"connect-timeout", 0, BENCH_OPT_DOUBLE, &O.connect_timeout},
      {"ts-payload", 0, BENCH_OPT_FLAG, &O.ts_payload},
      {"threads", 't', BENCH_OPT_INT, &O.threads},
      {"json", 0, BENCH_OPT_FLAG, &O.json},
      {"quiet", 'q', BENCH_OPT_FLAG, &O.quiet},
      {NULL, 0, 0, NULL}};
  if (bench_opts_parse(argc, argv, opts, usage)) return -1;
  if (O.connections <= 0) O.connections = O.devices;
  if (O.devices <= 0 || O.port <= 0 || O.port > 65535 || (O.qos != 0 && O.qos != 1) || O.protocol < 3 ||
      O.protocol > 5 || O.inflight < 1 || O.inflight > 65535 || O.threads < 1 || O.threads > 64 ||
      O.connect_conc < 1 || O.rate < 0 || O.duration < 0 || O.keepalive < 0 || O.keepalive > 65535) {
    usage(stderr);
    return -1;
  }
  if (O.threads > O.connections) O.threads = O.connections;
  return 0;
}

static void progress(const struct bench_mqttc *m, double t0, const char *what) {
  if (O.quiet) return;
  struct bench_mqttc_progress p;
  bench_mqttc_progress(m, &p);
  fprintf(stderr, "mqtt_load: %s t=%.0fs ok=%" PRIu64 " failed=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64 "\n", what,
          bench_mono_s() - t0, p.ok, p.failed, p.sent, p.acked);
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (parse_args(argc, argv)) return 2;
  signal(SIGPIPE, SIG_IGN);
  uint64_t nofile = bench_raise_nofile();
  if ((uint64_t)O.connections + 64 > nofile)
    fprintf(stderr, "mqtt_load: warning: %d connections but RLIMIT_NOFILE is %llu; some will fail with EMFILE\n",
            O.connections, (unsigned long long)nofile);
  if (load_tokens()) return 2;
  struct bench_mqttc_config cfg = {
      .protocol = O.protocol, .qos = O.qos, .keepalive = O.keepalive, .window = O.inflight, .threads = O.threads,
      .connect_conc = O.connect_conc, .wbuf_limit = WBUF_LIMIT, .rate = O.rate,
      .burst_s = 0.05, /* at most 50 ms of backlog */
      .idle = O.idle, .precise = false, .client_prefix = "ml", .err_prefix = "", .phase = &g_phase,
      .token = conn_token, .payload = conn_payload};
  if (uv_ip4_addr(O.host, O.port, (struct sockaddr_in *)&cfg.addr) != 0 &&
      uv_ip6_addr(O.host, O.port, (struct sockaddr_in6 *)&cfg.addr) != 0) {
    fprintf(stderr, "mqtt_load: --host must be a numeric address: %s\n", O.host);
    return 2;
  }
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  g_ts_base = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;

  struct bench_mqttc *m = bench_mqttc_new(&cfg, (size_t)O.connections);
  if (!m) {
    fprintf(stderr, "mqtt_load: cannot set up the connections (out of memory?)\n");
    return 1;
  }
  double t0 = bench_mono_s();
  if (bench_mqttc_start(m)) {
    fprintf(stderr, "mqtt_load: cannot start thread\n");
    return 1;
  }

  /* CONNECT phase */
  struct bench_mqttc_progress p;
  double last = t0;
  for (;;) {
    bench_mqttc_progress(m, &p);
    if (p.connected || bench_mono_s() - t0 >= O.connect_timeout) break;
    bench_sleep_ms(10);
    if (bench_mono_s() - last >= 1) {
      last = bench_mono_s();
      progress(m, t0, "connecting");
    }
  }
  double t_conn = bench_mono_s() - t0;
  /* one fixed-format line the driver script waits for */
  bench_mqttc_progress(m, &p);
  fprintf(stderr, "mqtt_load: connected ok=%" PRIu64 " failed=%" PRIu64 " in %.2fs\n", p.ok, p.failed, t_conn);
  fflush(stderr);

  /* RUN phase */
  double run0 = bench_mono_s();
  atomic_store(&g_phase, BENCH_RUN);
  last = run0;
  while (p.ok > 0 && bench_mono_s() - run0 < O.duration) {
    bench_sleep_ms(10);
    if (bench_mono_s() - last >= 1) {
      last = bench_mono_s();
      progress(m, run0, O.idle ? "holding" : "running");
    }
  }
  double run_s = bench_mono_s() - run0;

  /* DRAIN phase */
  atomic_store(&g_phase, BENCH_DRAIN);
  double d0 = bench_mono_s();
  for (;;) {
    bench_mqttc_progress(m, &p);
    if (p.drained || bench_mono_s() - d0 >= O.drain) break;
    bench_sleep_ms(10);
  }
  double drain_s = bench_mono_s() - d0;
  atomic_store(&g_phase, BENCH_STOP);
  bench_mqttc_join(m);

  /* summary */
  static struct bench_mqttc_result r;
  bench_mqttc_result(m, &r);
  const struct bench_hist *h = &r.ack;
  struct bench_usage u;
  bench_usage_get(&u);
  double rate_acked = run_s > 0 ? (double)r.acked_run / run_s : 0;
  double rate_sent = run_s > 0 ? (double)r.sent_run / run_s : 0;
  double mean = bench_hist_mean(h);
  uint64_t unacked = O.qos ? r.sent - r.acked - r.ack_err : 0;
  char cbuf[512] = "", ebuf[1024] = "", pbuf[512] = "";
  size_t cl = 0, pl = 0;
  for (int k = 0; k < 256; k++)
    if (r.puback_rc[k] && pl < sizeof pbuf - 32)
      pl += (size_t)snprintf(pbuf + pl, sizeof pbuf - pl, "%s\"%d\":%" PRIu64, pl ? "," : "", k, r.puback_rc[k]);
  for (int k = 0; k < 256; k++)
    if (r.connack[k] && cl < sizeof cbuf - 32)
      cl += (size_t)snprintf(cbuf + cl, sizeof cbuf - cl, "%s\"%d\":%" PRIu64, cl ? "," : "", k, r.connack[k]);
  bench_errkind_json(ebuf, sizeof ebuf, r.errs, r.nerrs);

  fprintf(stderr,
          "mqtt_load: %s:%d protocol=%d qos=%d connections=%d devices=%d threads=%d inflight=%d rate=%.0f%s\n"
          "  connections: ok=%" PRIu64 " failed=%" PRIu64 " (connect phase %.2fs) closed_by_peer=%" PRIu64
          " connack={%s}\n"
          "  errors: {%s} puback_reasons={%s}\n"
          "  run %.2fs: sent=%" PRIu64 " (%.0f/s) acked=%" PRIu64 " (%.0f/s)\n"
          "  total: sent=%" PRIu64 " acked=%" PRIu64 " ack_errors=%" PRIu64 " unacked=%" PRIu64
          " unexpected=%" PRIu64 " pingresp=%" PRIu64 " drain=%.2fs\n"
          "  latency publish->PUBACK us: p50=%" PRIu64 " p90=%" PRIu64 " p99=%" PRIu64 " p99.9=%" PRIu64
          " max=%" PRIu64 " mean=%.0f\n"
          "  generator: maxrss=%ld KB cpu user=%.2fs sys=%.2fs\n",
          O.host, O.port, O.protocol, O.qos, O.connections, O.devices, O.threads, r.min_window, O.rate,
          O.idle ? " idle" : "", r.ok, r.failed, t_conn, r.closed_by_peer, cbuf, ebuf, pbuf, run_s, r.sent_run,
          rate_sent, r.acked_run, rate_acked, r.sent, r.acked, r.ack_err, unacked, r.unexpected, r.pingresp, drain_s,
          bench_hist_pct(h, 50), bench_hist_pct(h, 90), bench_hist_pct(h, 99), bench_hist_pct(h, 99.9), h->max, mean,
          u.maxrss_kb, u.user_s, u.sys_s);
  if (O.json) {
    printf("{\"host\":\"%s\",\"port\":%d,\"protocol\":%d,\"qos\":%d,\"connections\":%d,\"devices\":%d,\"threads\":%d,"
           "\"inflight\":%d,\"rate\":%.0f,\"idle\":%s,\"connected\":%" PRIu64 ",\"connect_failed\":%" PRIu64
           ",\"connect_s\":%.3f,\"closed_by_peer\":%" PRIu64 ",\"connack\":{%s},\"errors\":{%s},\"puback_reasons\":{%s},\"run_s\":%.3f,"
           "\"sent_run\":%" PRIu64 ",\"acked_run\":%" PRIu64 ",\"sent_per_s\":%.1f,\"acked_per_s\":%.1f,\"sent\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"ack_errors\":%" PRIu64 ",\"unacked\":%" PRIu64 ",\"unexpected\":%" PRIu64
           ",\"pingresp\":%" PRIu64 ",\"drain_s\":%.3f,\"lat_n\":%" PRIu64 ",\"lat_p50_us\":%" PRIu64
           ",\"lat_p90_us\":%" PRIu64 ",\"lat_p99_us\":%" PRIu64 ",\"lat_p999_us\":%" PRIu64 ",\"lat_max_us\":%" PRIu64
           ",\"lat_mean_us\":%.1f,\"gen_maxrss_kb\":%ld,\"gen_cpu_s\":%.2f}\n",
           O.host, O.port, O.protocol, O.qos, O.connections, O.devices, O.threads, r.min_window, O.rate,
           O.idle ? "true" : "false", r.ok, r.failed, t_conn, r.closed_by_peer, cbuf, ebuf, pbuf, run_s, r.sent_run,
           r.acked_run, rate_sent, rate_acked, r.sent, r.acked, r.ack_err, unacked, r.unexpected, r.pingresp, drain_s,
           h->n, bench_hist_pct(h, 50), bench_hist_pct(h, 90), bench_hist_pct(h, 99), bench_hist_pct(h, 99.9), h->max,
           mean, u.maxrss_kb, u.user_s + u.sys_s);
    fflush(stdout);
  }
  bench_mqttc_free(m);
  for (size_t i = 0; i < g_ntokens; i++) free(g_tokens[i]);
  free(g_tokens);
  return r.ok > 0 ? 0 : 1;
}
