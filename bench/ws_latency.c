/* ws_latency.c — end-to-end latency of thingsd's live data path: from a
 * device's MQTT publish to the matching WebSocket telemetry update.
 *
 * Where it sits: a bench tool (bench/live_run.sh drives it). The publishers
 * are bench/common/mqttc.c's pool of MQTT device connections (as in
 * bench/mqtt_load.c), which speaks thingsd's own MQTT codec from tdcore; the
 * WebSocket client is here, over libuv, jansson and OpenSSL (SHA-1/base64 of
 * the WebSocket handshake). It does not log in: the driver gives it a JWT
 * (--jwt-file) and the devices (--devices-file, one "<device uuid> <access
 * token>" a line).
 *
 * Model. Two kinds of worker threads, each with its own libuv loop:
 *   subscribers  --subscribers S WebSocket connections to
 *                GET /api/ws/plugins/telemetry?token=<JWT> (own minimal RFC 6455
 *                client: handshake with Sec-WebSocket-Accept check, masked text
 *                frames out, unmasked frames in, fragments reassembled, ping ->
 *                pong, close answered). Connection s subscribes to an equal
 *                contiguous share of the D devices with one tsSubCmd each
 *                ({"cmdId":device+1,"entityType":"DEVICE","entityId":..,
 *                "keys":"<key>","scope":"LATEST_TELEMETRY"}), at most 50 per
 *                message. The first reply per cmdId (the initial latest values)
 *                marks the subscription live; errorCode != 0 marks it failed.
 *   publishers   one MQTT 3.1.1 connection per device (a connection can only
 *                publish as the device its token names), split over --threads
 *                loops; QoS --qos (default 1, so a loss can be told apart from a
 *                publish the server refused: the PUBACKs are counted). They
 *                publish {"<key>":V} to v1/devices/me/telemetry, paced by a
 *                token bucket at --rate msg/s in total, round-robin over the
 *                devices, each publish written to the socket at once.
 * V is the CLOCK_MONOTONIC time of the publish in microseconds (uv_hrtime),
 * made strictly increasing per publisher thread, so it is unique per device
 * and message, and values left by an earlier run on the same server are
 * always older than this run's start. Numbers come back as strings ("123"),
 * which the parser accepts, as it does plain numbers.
 *
 * On each update the subscriber takes every [ts, value] of the key, and
 * records now - V into a log-linear histogram (bench/common/hist.h) when V is
 * from this run (>= the run's start, <= now) and newer than the last value seen
 * for that device (else it is counted as ignored / duplicate). Phases, driven
 * by the main thread through one atomic:
 *   CONNECT  MQTT connects (at most --connect-concurrency in flight) and WS
 *            handshakes + subscriptions, bounded by --connect-timeout;
 *   RUN      publish for --duration s;
 *   DRAIN    no new publishes; wait at most --drain s until every publish is
 *            acknowledged (QoS 1) and received over WebSocket;
 *   STOP     DISCONNECT / close frame 1000, close, print the summary.
 * lost = published (sent during RUN) - received at the end of DRAIN. With
 * QoS 1 the publish -> PUBACK time (the message is durable in thingsd's
 * queue) is recorded too, which splits the end-to-end time into ingest and
 * what follows it (rule engine, subscriptions, WebSocket).
 *
 * Memory is bounded: per connection fixed or limited buffers (a WebSocket
 * message is at most --max-message bytes), fixed histograms and a per-second
 * timeline of at most TL_MAX seconds; nothing is kept per message. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "base/buf.h"
#include "common/errkind.h"
#include "common/hist.h"
#include "common/lines.h"
#include "common/mqttc.h"
#include "common/opts.h"
#include "common/outq.h"
#include "common/run.h"

#define MQTT_WBUF_LIMIT (64u * 1024)
#define QOS1_WINDOW 64            /* unacknowledged publishes per device connection */
#define WS_READ_CHUNK (64u * 1024)
#define WS_WBUF_LIMIT (1u * 1024 * 1024)
#define WS_SUBS_PER_MSG 50
#define TL_MAX 3600               /* seconds of per-second timeline */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- options and shared state ------------------------------------------ */

struct opts {
  const char *host, *jwt_file, *devices_file, *key, *ws_path;
  int http_port, mqtt_port, devices, subscribers, threads, ws_threads, qos, keepalive, connect_conc;
  double rate, duration, drain, connect_timeout;
  size_t max_message;
  uint64_t slow_us;
  bool json, quiet;
};

static struct opts O = {
    .host = "127.0.0.1", .key = "lat", .ws_path = "/api/ws/plugins/telemetry", .http_port = 8080,
    .mqtt_port = 1883, .devices = 0, .subscribers = 100, .threads = 1, .ws_threads = 1, .qos = 1,
    .keepalive = 60, .connect_conc = 100, .rate = 1000, .duration = 20, .drain = 5, .connect_timeout = 60,
    .max_message = 1024 * 1024, .slow_us = 10000,
};

static atomic_int g_phase = BENCH_CONNECT;
/* First microsecond of the run; values older than this are not ours. */
static _Atomic uint64_t g_run_start_us = UINT64_MAX;
static char *g_jwt;
static struct device {
  char id[40];
  char *token;
  /* owned by the subscriber thread of the device's WebSocket connection */
  uint64_t last;
  uint8_t sub; /* 0 pending, 1 live, 2 failed */
} *g_dev;
static struct sockaddr_storage g_http_addr;

/* ======================================================================== */
/* ---- MQTT publishers (bench/common/mqttc.c) ----------------------------- */

static const char *dev_token(void *arg, uint32_t idx) { return g_dev[idx].token; }

/* {"<key>":V}, V the publish time in microseconds, strictly increasing per
 * publisher thread, so unique per device and message. */
static int dev_payload(void *arg, uint32_t idx, uint64_t seq, uint64_t now_ns, char *pl, size_t cap) {
  static _Thread_local uint64_t last_value;
  uint64_t v = now_ns / 1000u;
  if (v <= last_value) v = last_value + 1;
  last_value = v;
  return snprintf(pl, cap, "{\"%s\":%" PRIu64 "}", O.key, v);
}

/* ======================================================================== */
/* ---- WebSocket subscribers ---------------------------------------------- */

enum wstate { W_NEW, W_TCP, W_HANDSHAKE, W_OPEN, W_CLOSING, W_CLOSED };

struct wworker;

struct wconn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  struct wworker *w;
  uint32_t idx, first_dev, ndev, nsettled; /* settled: subscriptions live or failed */
  uint8_t state, msg_op;
  bool in_msg, sent_close;
  char accept[32]; /* expected Sec-WebSocket-Accept */
  uint64_t rng;
  struct bench_outq q;
  struct td_buf in, msg;
};

struct wworker {
  uv_loop_t loop;
  uv_thread_t thr;
  uv_timer_t tick, stop;
  struct wconn *conns;
  size_t n;
  int seen_phase;
  atomic_uint_fast64_t received, subs_live, subs_failed, conns_open, conns_failed;
  atomic_int setup_done;
  uint64_t ignored, dup, bad_value, bad_json, unknown_sub, pings, msgs, closed_by_peer, updates_in_drain;
  uint64_t close_codes[8][2]; /* (code, count) pairs of close frames received */
  struct bench_errkind errs[BENCH_ERRKINDS];
  struct bench_hist h;
  uint64_t tl_n[TL_MAX], tl_max[TL_MAX], tl_slow[TL_MAX];
};

static struct wworker *g_ww;

static void w_flush(struct wconn *c);

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* A connection has reached its final setup state (all subscriptions settled,
 * or it failed); tell main when every connection of the worker has. */
static void w_check_setup(struct wworker *w) {
  for (size_t i = 0; i < w->n; i++) {
    struct wconn *c = &w->conns[i];
    if (c->state == W_OPEN && c->nsettled < c->ndev) return;
    if (c->state == W_TCP || c->state == W_HANDSHAKE) return;
  }
  atomic_store(&w->setup_done, 1);
}

static void w_on_close(uv_handle_t *h) {
  struct wconn *c = h->data;
  c->state = W_CLOSED;
  bench_outq_deinit(&c->q);
  td_buf_deinit(&c->in);
  td_buf_deinit(&c->msg);
}

static void w_close(struct wconn *c, const char *why) {
  struct wworker *w = c->w;
  if (c->state == W_CLOSING || c->state == W_CLOSED || c->state == W_NEW) return;
  if (w->seen_phase == BENCH_STOP) why = NULL;
  if (why) bench_errkind_count(w->errs, why);
  if (c->state == W_TCP || c->state == W_HANDSHAKE) atomic_fetch_add(&w->conns_failed, 1);
  if (c->state == W_OPEN && why) w->closed_by_peer++;
  /* subscriptions of a dead connection will never settle */
  if (c->nsettled < c->ndev) {
    atomic_fetch_add(&w->subs_failed, c->ndev - c->nsettled);
    for (uint32_t i = 0; i < c->ndev; i++)
      if (g_dev[c->first_dev + i].sub == 0) g_dev[c->first_dev + i].sub = 2;
    c->nsettled = c->ndev;
  }
  c->state = W_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, w_on_close);
  if (w->seen_phase == BENCH_CONNECT) w_check_setup(w);
}

static void w_on_write(uv_write_t *req, int status) {
  struct wconn *c = req->data;
  bench_outq_done(&c->q);
  if (status < 0) {
    if (status != UV_ECANCELED) w_close(c, uv_err_name(status));
    return;
  }
  w_flush(c);
}

static void w_flush(struct wconn *c) {
  if (c->state != W_OPEN && c->state != W_HANDSHAKE) return;
  int rc = bench_outq_flush(&c->q, (uv_stream_t *)&c->tcp, c, w_on_write);
  if (rc < 0) w_close(c, uv_err_name(rc));
}

/* Queue one client frame (FIN set, masked as RFC 6455 §5.3 requires). */
static int w_send_frame(struct wconn *c, int opcode, const void *data, size_t len) {
  uint8_t hdr[14];
  size_t h = 0;
  hdr[h++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    hdr[h++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (uint8_t)(len >> 8);
    hdr[h++] = (uint8_t)len;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  uint32_t mk = (uint32_t)xorshift(&c->rng);
  uint8_t mask[4] = {(uint8_t)mk, (uint8_t)(mk >> 8), (uint8_t)(mk >> 16), (uint8_t)(mk >> 24)};
  memcpy(hdr + h, mask, 4);
  h += 4;
  int rc = td_buf_reserve(&c->q.out, h + len);
  if (rc) return rc;
  memcpy(c->q.out.data + c->q.out.len, hdr, h);
  uint8_t *dst = (uint8_t *)c->q.out.data + c->q.out.len + h;
  const uint8_t *src = data;
  for (size_t i = 0; i < len; i++) dst[i] = src[i] ^ mask[i & 3];
  c->q.out.len += h + len;
  c->q.out.data[c->q.out.len] = '\0';
  return 0;
}

static void w_send_close(struct wconn *c, int code) {
  if (c->sent_close || c->state != W_OPEN) return;
  uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  c->sent_close = true;
  if (w_send_frame(c, 0x8, b, 2) == 0) w_flush(c);
}

/* Send the tsSubCmds for c's devices, WS_SUBS_PER_MSG per message. */
static int w_subscribe(struct wconn *c) {
  struct td_buf b;
  td_buf_init(&b, O.max_message);
  int rc = 0;
  for (uint32_t i = 0; i < c->ndev && rc == 0; i += WS_SUBS_PER_MSG) {
    td_buf_reset(&b);
    rc = td_buf_puts(&b, "{\"tsSubCmds\":[");
    for (uint32_t j = i; j < c->ndev && j < i + WS_SUBS_PER_MSG && rc == 0; j++) {
      uint32_t d = c->first_dev + j;
      rc = td_buf_printf(&b,
                         "%s{\"cmdId\":%u,\"entityType\":\"DEVICE\",\"entityId\":\"%s\",\"keys\":\"%s\","
                         "\"scope\":\"LATEST_TELEMETRY\"}",
                         j == i ? "" : ",", d + 1, g_dev[d].id, O.key);
    }
    if (rc == 0) rc = td_buf_puts(&b, "]}");
    if (rc == 0) rc = w_send_frame(c, 0x1, b.data, b.len);
  }
  td_buf_deinit(&b);
  if (rc == 0) w_flush(c);
  return rc;
}

/* Parse a value we sent: a decimal string (how the server sends values) or a
 * JSON integer. 0 = not a value of ours. */
static uint64_t parse_value(const json_t *v) {
  if (json_is_integer(v)) return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
  if (!json_is_string(v)) return 0;
  const char *s = json_string_value(v);
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || end == s || *end != '\0') return 0;
  return (uint64_t)x;
}

static void w_on_update(struct wconn *c, const char *data, size_t len, uint64_t t_us) {
  struct wworker *w = c->w;
  w->msgs++;
  json_error_t jerr;
  json_t *j = json_loadb(data, len, 0, &jerr);
  if (!j || !json_is_object(j)) {
    w->bad_json++;
    json_decref(j);
    return;
  }
  json_t *sid = json_object_get(j, "subscriptionId");
  json_int_t id = json_is_integer(sid) ? json_integer_value(sid) : -1;
  json_t *ec = json_object_get(j, "errorCode");
  json_int_t code = json_is_integer(ec) ? json_integer_value(ec) : 0;
  if (id < (json_int_t)c->first_dev + 1 || id > (json_int_t)(c->first_dev + c->ndev)) {
    w->unknown_sub++;
    if (code != 0) {
      char k[40];
      snprintf(k, sizeof k, "ws_error_code_%d", (int)code);
      bench_errkind_count(w->errs, k);
    }
    json_decref(j);
    return;
  }
  struct device *d = &g_dev[id - 1];
  if (code != 0) {
    char k[40];
    snprintf(k, sizeof k, "ws_sub_error_code_%d", (int)code);
    bench_errkind_count(w->errs, k);
    if (d->sub == 0) {
      d->sub = 2;
      c->nsettled++;
      atomic_fetch_add(&w->subs_failed, 1);
      if (w->seen_phase == BENCH_CONNECT) w_check_setup(w);
    }
    json_decref(j);
    return;
  }
  if (d->sub == 0) { /* the initial latest values: the subscription is live */
    d->sub = 1;
    c->nsettled++;
    atomic_fetch_add(&w->subs_live, 1);
    if (w->seen_phase == BENCH_CONNECT) w_check_setup(w);
  }
  json_t *arr = json_object_get(json_object_get(j, "data"), O.key);
  uint64_t start = atomic_load_explicit(&g_run_start_us, memory_order_acquire);
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    const json_t *jv = json_array_get(e, 1);
    if (json_is_null(jv) || (json_is_string(jv) && json_string_value(jv)[0] == '\0')) {
      w->ignored++; /* [now, null]: the key had no value yet (initial reply) */
      continue;
    }
    uint64_t v = parse_value(jv);
    if (v == 0) {
      w->bad_value++;
    } else if (v < start || v > t_us) {
      w->ignored++; /* an earlier run's value, or the initial value */
    } else if (v <= d->last) {
      w->dup++;
    } else {
      d->last = v;
      uint64_t lat = t_us - v;
      bench_hist_add(&w->h, lat);
      atomic_fetch_add_explicit(&w->received, 1, memory_order_relaxed);
      uint64_t sec = (t_us - start) / 1000000u;
      if (sec < TL_MAX) {
        w->tl_n[sec]++;
        if (lat > w->tl_max[sec]) w->tl_max[sec] = lat;
        if (lat > O.slow_us) w->tl_slow[sec]++;
      }
      if (w->seen_phase >= BENCH_DRAIN) w->updates_in_drain++;
    }
  }
  json_decref(j);
}

static void w_note_close_code(struct wworker *w, int code) {
  for (int i = 0; i < 8; i++) {
    if (w->close_codes[i][1] == 0) w->close_codes[i][0] = (uint64_t)code;
    if (w->close_codes[i][0] == (uint64_t)code) {
      w->close_codes[i][1]++;
      return;
    }
  }
}

/* Frames from the server in c->in; returns false when c was closed. */
static bool w_frames(struct wconn *c, uint64_t t_us) {
  struct wworker *w = c->w;
  size_t off = 0;
  const uint8_t *p = (const uint8_t *)c->in.data;
  while (c->state == W_OPEN) {
    size_t n = c->in.len - off;
    if (n < 2) break;
    const uint8_t *f = p + off;
    int fin = f[0] & 0x80, op = f[0] & 0x0f;
    if (f[0] & 0x70) return w_close(c, "ws_rsv_bits"), false;
    if (f[1] & 0x80) return w_close(c, "ws_masked_server_frame"), false;
    uint64_t len = f[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
      if (n < 4) break;
      len = ((uint64_t)f[2] << 8) | f[3];
      h = 4;
    } else if (len == 127) {
      if (n < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
      h = 10;
    }
    if (len > O.max_message) return w_close(c, "ws_frame_too_big"), false;
    if (n < h + len) break;
    const uint8_t *pl = f + h;
    off += h + (size_t)len;
    if (op >= 0x8) { /* control */
      if (!fin || len > 125) return w_close(c, "ws_bad_control_frame"), false;
      if (op == 0x9) {
        w->pings++;
        if (w_send_frame(c, 0xA, pl, (size_t)len) == 0) w_flush(c);
      } else if (op == 0x8) {
        int code = len >= 2 ? (pl[0] << 8) | pl[1] : 1005;
        if (w->seen_phase < BENCH_STOP) w_note_close_code(w, code); /* not the answer to our own close */
        if (!c->sent_close) w_send_close(c, code == 1005 ? 1000 : code);
        char k[40];
        snprintf(k, sizeof k, "ws_closed_by_server_%d", code);
        w_close(c, w->seen_phase >= BENCH_STOP ? NULL : k);
        return false;
      } else if (op != 0xA) {
        return w_close(c, "ws_bad_opcode"), false;
      }
      continue;
    }
    if (op == 0x0) {
      if (!c->in_msg) return w_close(c, "ws_unexpected_continuation"), false;
    } else if (op == 0x1 || op == 0x2) {
      if (c->in_msg) return w_close(c, "ws_interleaved_message"), false;
      c->in_msg = true;
      c->msg_op = (uint8_t)op;
      td_buf_reset(&c->msg);
    } else {
      return w_close(c, "ws_bad_opcode"), false;
    }
    if (td_buf_append(&c->msg, pl, (size_t)len)) return w_close(c, "ws_message_too_big"), false;
    if (fin) {
      c->in_msg = false;
      if (c->msg_op == 0x1)
        w_on_update(c, c->msg.data, c->msg.len, t_us);
      else
        bench_errkind_count(w->errs, "ws_binary_message");
      td_buf_reset(&c->msg);
    }
  }
  if (c->state != W_OPEN) return false;
  td_buf_consume(&c->in, off);
  return true;
}

/* The HTTP answer to the upgrade: 101 and the right Sec-WebSocket-Accept. */
static bool w_handshake(struct wconn *c) {
  struct wworker *w = c->w;
  char *end = strstr(c->in.data, "\r\n\r\n");
  if (!end) {
    if (c->in.len > 16384) w_close(c, "ws_handshake_too_long");
    return false;
  }
  size_t hlen = (size_t)(end - c->in.data) + 4;
  int status = 0;
  if (sscanf(c->in.data, "HTTP/1.1 %d", &status) != 1 || status != 101) {
    char k[40];
    snprintf(k, sizeof k, "ws_handshake_http_%d", status);
    w_close(c, k);
    return false;
  }
  bool ok = false;
  for (char *line = strstr(c->in.data, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
    const char *l = line + 2;
    if (strncasecmp(l, "Sec-WebSocket-Accept:", 21) == 0) {
      l += 21;
      while (*l == ' ' || *l == '\t') l++;
      size_t al = strlen(c->accept);
      ok = strncmp(l, c->accept, al) == 0 && (l[al] == '\r' || l[al] == ' ' || l[al] == '\t');
    }
  }
  if (!ok) {
    w_close(c, "ws_bad_accept_header");
    return false;
  }
  td_buf_consume(&c->in, hlen);
  c->state = W_OPEN;
  atomic_fetch_add(&w->conns_open, 1);
  if (c->ndev == 0) {
    w_check_setup(w);
  } else if (w_subscribe(c)) {
    w_close(c, "ws_subscribe_encode");
    return false;
  }
  return true;
}

static void w_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct wconn *c = h->data;
  if (td_buf_reserve(&c->in, WS_READ_CHUNK) != 0) { /* a frame over the limit: on_read gets UV_ENOBUFS */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  buf->base = c->in.data + c->in.len;
  buf->len = c->in.cap - c->in.len - 1; /* keep the NUL */
}

static void w_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct wconn *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    w_close(c, nread == UV_ENOBUFS ? "ws_read_buffer_full"
               : c->state == W_HANDSHAKE ? "ws_closed_during_handshake" : "ws_connection_closed");
    return;
  }
  uint64_t t = bench_now_us();
  c->in.len += (size_t)nread;
  c->in.data[c->in.len] = '\0';
  if (c->state == W_HANDSHAKE && !w_handshake(c)) return;
  if (c->state == W_OPEN) w_frames(c, t);
}

static void w_on_connect(uv_connect_t *req, int status) {
  struct wconn *c = req->data;
  if (c->state != W_TCP) return;
  if (status < 0) {
    w_close(c, uv_err_name(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  /* Sec-WebSocket-Key: 16 random bytes, base64; the answer must carry
   * base64(SHA-1(key + GUID)) (RFC 6455 §4.1). */
  uint8_t raw[16];
  for (int i = 0; i < 16; i++) raw[i] = (uint8_t)xorshift(&c->rng);
  char key[32], cat[80];
  EVP_EncodeBlock((unsigned char *)key, raw, 16);
  snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL)) {
    w_close(c, "sha1_failed");
    return;
  }
  EVP_EncodeBlock((unsigned char *)c->accept, md, (int)mdlen);
  c->state = W_HANDSHAKE;
  /* the JWT goes only onto the wire, never into a message */
  if (td_buf_printf(&c->q.out,
                    "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    O.ws_path, g_jwt, O.host, O.http_port, key)) {
    w_close(c, "ws_request_too_long");
    return;
  }
  int rc = uv_read_start((uv_stream_t *)&c->tcp, w_on_alloc, w_on_read);
  if (rc < 0) {
    w_close(c, uv_err_name(rc));
    return;
  }
  w_flush(c);
}

static void w_start_one(struct wworker *w, struct wconn *c) {
  c->w = w;
  c->tcp.data = c;
  c->creq.data = c;
  c->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)c->idx << 32) ^ uv_hrtime();
  if (!c->rng) c->rng = 1;
  bench_outq_init(&c->q, WS_WBUF_LIMIT);
  td_buf_init(&c->in, O.max_message + WS_READ_CHUNK + 16);
  td_buf_init(&c->msg, O.max_message);
  int rc = uv_tcp_init(&w->loop, &c->tcp);
  if (rc < 0) {
    bench_errkind_count(w->errs, uv_err_name(rc));
    c->state = W_CLOSED;
    atomic_fetch_add(&w->conns_failed, 1);
    atomic_fetch_add(&w->subs_failed, c->ndev);
    c->nsettled = c->ndev;
    return;
  }
  c->state = W_TCP;
  rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&g_http_addr, w_on_connect);
  if (rc < 0) w_close(c, uv_err_name(rc));
}

static void w_on_stop_timer(uv_timer_t *t) {
  struct wworker *w = t->data;
  for (size_t i = 0; i < w->n; i++) w_close(&w->conns[i], NULL);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_close((uv_handle_t *)&w->stop, NULL);
}

static void w_on_tick(uv_timer_t *t) {
  struct wworker *w = t->data;
  int ph = atomic_load(&g_phase);
  if (ph == w->seen_phase) return;
  int old = w->seen_phase;
  w->seen_phase = ph;
  if (old == BENCH_CONNECT)
    for (size_t i = 0; i < w->n; i++) {
      struct wconn *c = &w->conns[i];
      if (c->state == W_TCP || c->state == W_HANDSHAKE) w_close(c, "ws_connect_timeout");
    }
  if (ph == BENCH_STOP) {
    for (size_t i = 0; i < w->n; i++) w_send_close(&w->conns[i], 1000);
    uv_timer_stop(&w->tick);
    uv_timer_start(&w->stop, w_on_stop_timer, 300, 0);
  }
}

static void w_main(void *arg) {
  struct wworker *w = arg;
  w->tick.data = w->stop.data = w;
  uv_timer_init(&w->loop, &w->tick);
  uv_timer_init(&w->loop, &w->stop);
  uv_timer_start(&w->tick, w_on_tick, 5, 5);
  for (size_t i = 0; i < w->n; i++) w_start_one(w, &w->conns[i]);
  w_check_setup(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ======================================================================== */
/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: ws_latency --jwt-file F --devices-file F [options]\n"
          "  --host H               server address, numeric (127.0.0.1)\n"
          "  --http-port P          HTTP/WebSocket port (8080)\n"
          "  --mqtt-port P          MQTT port (1883)\n"
          "  --jwt-file F           a user's JWT (first line) for ?token=\n"
          "  --devices-file F       lines \"<device uuid> <access token>\"\n"
          "  --devices N            use the first N devices of the file (all)\n"
          "  --subscribers S        WebSocket connections, each subscribed to D/S devices (100)\n"
          "  --rate R               publishes/s in total (1000)\n"
          "  --duration S           seconds of publishing (20)\n"
          "  --drain S              max seconds to wait for the last updates (5)\n"
          "  --qos 0|1              MQTT QoS of the publishes (1)\n"
          "  --key K                telemetry key (lat)\n"
          "  -t, --threads T        publisher threads (1)\n"
          "  --ws-threads T         subscriber threads (1)\n"
          "  --connect-concurrency K  MQTT handshakes in flight at once (100)\n"
          "  --connect-timeout S    limit for connecting and subscribing (60)\n"
          "  --max-message B        largest WebSocket message accepted (1048576)\n"
          "  --slow-us U            per-second timeline counts updates slower than U us (10000)\n"
          "  --ws-path P            (/api/ws/plugins/telemetry)\n"
          "  --json                 one JSON summary line on stdout\n"
          "  -q, --quiet            no progress lines on stderr\n");
}

static int parse_args(int argc, char **argv) {
  static const struct bench_opt opts[] = {
      {"host", 0, BENCH_OPT_STR, &O.host},
      {"http-port", 0, BENCH_OPT_INT, &O.http_port},
      {"mqtt-port", 0, BENCH_OPT_INT, &O.mqtt_port},
      {"jwt-file", 0, BENCH_OPT_STR, &O.jwt_file},
      {"devices-file", 0, BENCH_OPT_STR, &O.devices_file},
      {"devices", 0, BENCH_OPT_INT, &O.devices},
      {"subscribers", 0, BENCH_OPT_INT, &O.subscribers},
      {"rate", 0, BENCH_OPT_DOUBLE, &O.rate},
      {"duration", 0, BENCH_OPT_DOUBLE, &O.duration},
      {"drain", 0, BENCH_OPT_DOUBLE, &O.drain},
      {"qos", 0, BENCH_OPT_INT, &O.qos},
      {"key", 0, BENCH_OPT_STR, &O.key},
      {"threads", 't', BENCH_OPT_INT, &O.threads},
      {"ws-threads", 0, BENCH_OPT_INT, &O.ws_threads},
      {"connect-concurrency", 0, BENCH_OPT_INT, &O.connect_conc},
      {"connect-timeout", 0, BENCH_OPT_DOUBLE, &O.connect_timeout},
      {"max-message", 0, BENCH_OPT_SIZE, &O.max_message},
      {"slow-us", 0, BENCH_OPT_U64, &O.slow_us},
      {"ws-path", 0, BENCH_OPT_STR, &O.ws_path},
      {"json", 0, BENCH_OPT_FLAG, &O.json},
      {"quiet", 'q', BENCH_OPT_FLAG, &O.quiet},
      {NULL, 0, 0, NULL}};
  if (bench_opts_parse(argc, argv, opts, usage)) return -1;
  if (!O.jwt_file || !O.devices_file || O.devices < 0 || O.http_port <= 0 || O.http_port > 65535 ||
      O.mqtt_port <= 0 || O.mqtt_port > 65535 || (O.qos != 0 && O.qos != 1) || O.subscribers < 1 ||
      O.subscribers > 10000 || O.threads < 1 || O.threads > 64 || O.ws_threads < 1 || O.ws_threads > 64 ||
      O.connect_conc < 1 || O.rate <= 0 || O.duration <= 0 || O.drain < 0 || O.max_message < 1024 ||
      strlen(O.key) == 0 || strlen(O.key) > 32 || strpbrk(O.key, "\"\\,")) {
    usage(stderr);
    return -1;
  }
  return 0;
}

/* One "<device uuid> <access token>" line; other lines are skipped. */
static int take_device(const char *line, void *elem, void *arg) {
  struct device *d = elem;
  char id[64], tok[512];
  if (sscanf(line, "%63s %511s", id, tok) != 2) return 1;
  if (strlen(id) != 36) {
    fprintf(stderr, "ws_latency: %s: not a device uuid: %s\n", O.devices_file, id);
    return -1;
  }
  memset(d, 0, sizeof *d);
  memcpy(d->id, id, 37);
  d->token = strdup(tok);
  return d->token ? 0 : -1;
}

/* Read the JWT and the devices. 0 or -1 (reason on stderr). */
static int load_inputs(size_t *ndev) {
  FILE *f = fopen(O.jwt_file, "r");
  if (!f) {
    fprintf(stderr, "ws_latency: %s: %s\n", O.jwt_file, strerror(errno));
    return -1;
  }
  char line[8192];
  if (!fgets(line, sizeof line, f)) line[0] = '\0';
  fclose(f);
  line[strcspn(line, "\r\n")] = '\0';
  if (!line[0] || strpbrk(line, " ?&#")) {
    fprintf(stderr, "ws_latency: %s holds no JWT\n", O.jwt_file);
    return -1;
  }
  g_jwt = strdup(line);
  void *arr;
  size_t n;
  int rc =
      bench_lines_load("ws_latency", O.devices_file, (size_t)O.devices, sizeof *g_dev, take_device, NULL, &arr, &n);
  g_dev = arr;
  if (rc) return -1;
  if (n == 0) {
    fprintf(stderr, "ws_latency: no devices in %s\n", O.devices_file);
    return -1;
  }
  if (O.devices && n < (size_t)O.devices) fprintf(stderr, "ws_latency: only %zu devices in the file\n", n);
  *ndev = n;
  return 0;
}

struct totals {
  uint64_t w_open, w_failed, live, sfailed, received;
  bool w_setup;
  struct bench_mqttc_progress p; /* the publishers */
};

static void totals(const struct bench_mqttc *pub, struct totals *t) {
  memset(t, 0, sizeof *t);
  bench_mqttc_progress(pub, &t->p);
  t->w_setup = true;
  for (int i = 0; i < O.ws_threads; i++) {
    struct wworker *w = &g_ww[i];
    t->w_open += atomic_load(&w->conns_open);
    t->w_failed += atomic_load(&w->conns_failed);
    t->live += atomic_load(&w->subs_live);
    t->sfailed += atomic_load(&w->subs_failed);
    t->received += atomic_load(&w->received);
    t->w_setup &= atomic_load(&w->setup_done) != 0;
  }
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv)) return 2;
  signal(SIGPIPE, SIG_IGN);
  bench_raise_nofile();
  size_t ndev;
  if (load_inputs(&ndev)) return 2;
  struct bench_mqttc_config cfg = {
      .protocol = 4, /* MQTT 3.1.1 */
      .qos = O.qos, .keepalive = O.keepalive, .window = QOS1_WINDOW, .connect_conc = O.connect_conc,
      .wbuf_limit = MQTT_WBUF_LIMIT, .rate = O.rate,
      .burst_s = 0.1, /* at most 100 ms of backlog (a generator stall) */
      .precise = true, .client_prefix = "wsl", .err_prefix = "mqtt_", .phase = &g_phase, .token = dev_token,
      .payload = dev_payload};
  if (uv_ip4_addr(O.host, O.mqtt_port, (struct sockaddr_in *)&cfg.addr) != 0 ||
      uv_ip4_addr(O.host, O.http_port, (struct sockaddr_in *)&g_http_addr) != 0) {
    fprintf(stderr, "ws_latency: --host must be a numeric IPv4 address: %s\n", O.host);
    return 2;
  }
  if ((size_t)O.subscribers > ndev) O.subscribers = (int)ndev;
  if (O.threads > (int)ndev) O.threads = (int)ndev;
  if (O.ws_threads > O.subscribers) O.ws_threads = O.subscribers;
  cfg.threads = O.threads;

  /* publishers: connection i is device i */
  struct bench_mqttc *pub = bench_mqttc_new(&cfg, ndev);
  g_ww = calloc((size_t)O.ws_threads, sizeof *g_ww);
  struct wconn *wconns = calloc((size_t)O.subscribers, sizeof *wconns);
  if (!pub || !g_ww || !wconns) {
    fprintf(stderr, "ws_latency: out of memory\n");
    return 1;
  }
  /* subscribers: connection s watches devices [s*D/S, (s+1)*D/S) */
  for (int s = 0; s < O.subscribers; s++) {
    wconns[s].idx = (uint32_t)s;
    wconns[s].first_dev = (uint32_t)((uint64_t)s * ndev / (uint64_t)O.subscribers);
    wconns[s].ndev = (uint32_t)((uint64_t)(s + 1) * ndev / (uint64_t)O.subscribers) - wconns[s].first_dev;
  }
  size_t per = (size_t)O.subscribers / (size_t)O.ws_threads, extra = (size_t)O.subscribers % (size_t)O.ws_threads,
         first = 0;
  for (int i = 0; i < O.ws_threads; i++) {
    struct wworker *w = &g_ww[i];
    w->n = per + ((size_t)i < extra ? 1 : 0);
    w->conns = wconns + first;
    first += w->n;
    if (uv_loop_init(&w->loop)) return 1;
  }

  double t0 = bench_mono_s();
  for (int i = 0; i < O.ws_threads; i++)
    if (uv_thread_create(&g_ww[i].thr, w_main, &g_ww[i])) return 1;
  if (bench_mqttc_start(pub)) return 1;

  /* CONNECT */
  struct totals T;
  double last = t0;
  for (;;) {
    totals(pub, &T);
    if (T.p.connected && T.w_setup) break;
    if (bench_mono_s() - t0 >= O.connect_timeout) break;
    bench_sleep_ms(10);
    if (!O.quiet && bench_mono_s() - last >= 1) {
      last = bench_mono_s();
      fprintf(stderr, "ws_latency: connecting t=%.0fs mqtt ok=%" PRIu64 " failed=%" PRIu64 " ws open=%" PRIu64
              " failed=%" PRIu64 " subs live=%" PRIu64 " failed=%" PRIu64 "\n", last - t0, T.p.ok, T.p.failed,
              T.w_open, T.w_failed, T.live, T.sfailed);
    }
  }
  double t_conn = bench_mono_s() - t0;
  totals(pub, &T);
  fprintf(stderr, "ws_latency: connected mqtt ok=%" PRIu64 " failed=%" PRIu64 " ws open=%" PRIu64 " failed=%" PRIu64
          " subscriptions live=%" PRIu64 " failed=%" PRIu64 " in %.2fs\n", T.p.ok, T.p.failed, T.w_open, T.w_failed,
          T.live, T.sfailed, t_conn);
  bool can_run = T.p.ok > 0 && T.live > 0;

  /* RUN */
  double run0 = bench_mono_s(), run_s = 0, drain_s = 0;
  if (can_run) {
    atomic_store_explicit(&g_run_start_us, bench_now_us(), memory_order_release);
    atomic_store(&g_phase, BENCH_RUN);
    last = run0;
    while (bench_mono_s() - run0 < O.duration) {
      bench_sleep_ms(10);
      if (!O.quiet && bench_mono_s() - last >= 1) {
        last = bench_mono_s();
        totals(pub, &T);
        fprintf(stderr, "ws_latency: running t=%.0fs sent=%" PRIu64 " acked=%" PRIu64 " received=%" PRIu64 "\n",
                last - run0, T.p.sent, T.p.acked, T.received);
      }
    }
    run_s = bench_mono_s() - run0;
    /* DRAIN */
    atomic_store(&g_phase, BENCH_DRAIN);
    double d0 = bench_mono_s();
    for (;;) {
      totals(pub, &T);
      if (T.p.drained && T.received >= T.p.sent) break;
      if (bench_mono_s() - d0 >= O.drain) break;
      bench_sleep_ms(5);
    }
    drain_s = bench_mono_s() - d0;
  } else {
    fprintf(stderr, "ws_latency: nothing to measure (no MQTT connection or no live subscription)\n");
  }
  atomic_store(&g_phase, BENCH_STOP);
  bench_mqttc_join(pub);
  for (int i = 0; i < O.ws_threads; i++) uv_thread_join(&g_ww[i].thr);
  totals(pub, &T);

  /* merge */
  static struct bench_mqttc_result pr;
  bench_mqttc_result(pub, &pr);
  static struct bench_hist h;
  const struct bench_hist *ack = &pr.ack;
  static uint64_t tl_n[TL_MAX], tl_max[TL_MAX], tl_slow[TL_MAX];
  uint64_t ignored = 0, dup = 0, bad_value = 0, bad_json = 0, unknown_sub = 0, pings = 0, msgs = 0, w_closed = 0,
           in_drain = 0;
  uint64_t codes[8][2] = {{0}};
  struct bench_errkind errs[BENCH_ERRKINDS * 4];
  size_t nerrs = 0;
  memset(errs, 0, sizeof errs);
  bench_errkind_merge(errs, &nerrs, sizeof errs / sizeof errs[0], pr.errs, pr.nerrs);
  for (int i = 0; i < O.ws_threads; i++) {
    struct wworker *w = &g_ww[i];
    bench_hist_merge(&h, &w->h);
    ignored += w->ignored;
    dup += w->dup;
    bad_value += w->bad_value;
    bad_json += w->bad_json;
    unknown_sub += w->unknown_sub;
    pings += w->pings;
    msgs += w->msgs;
    w_closed += w->closed_by_peer;
    in_drain += w->updates_in_drain;
    for (int k = 0; k < TL_MAX; k++) {
      tl_n[k] += w->tl_n[k];
      tl_slow[k] += w->tl_slow[k];
      if (w->tl_max[k] > tl_max[k]) tl_max[k] = w->tl_max[k];
    }
    for (int k = 0; k < 8 && w->close_codes[k][1]; k++) {
      int j = 0;
      while (j < 8 && codes[j][1] && codes[j][0] != w->close_codes[k][0]) j++;
      if (j == 8) continue;
      codes[j][0] = w->close_codes[k][0];
      codes[j][1] += w->close_codes[k][1];
    }
    bench_errkind_merge(errs, &nerrs, sizeof errs / sizeof errs[0], w->errs, BENCH_ERRKINDS);
    uv_loop_close(&w->loop);
  }
  struct bench_usage u;
  bench_usage_get(&u);
  double cpu = u.user_s + u.sys_s;
  uint64_t lost = T.p.sent > T.received ? T.p.sent - T.received : 0;
  double mean = bench_hist_mean(&h);
  char ebuf[2048] = "", cbuf[256] = "";
  size_t cl = 0;
  bench_errkind_json(ebuf, sizeof ebuf, errs, nerrs);
  for (int k = 0; k < 8 && codes[k][1]; k++)
    cl += (size_t)snprintf(cbuf + cl, sizeof cbuf - cl, "%s\"%" PRIu64 "\":%" PRIu64, cl ? "," : "", codes[k][0],
                           codes[k][1]);
  size_t nsec = run_s + drain_s > 0 ? (size_t)(run_s + drain_s) + 1 : 0;
  if (nsec > TL_MAX) nsec = TL_MAX;
  /* the three slowest seconds, for the report */
  int worst[3] = {-1, -1, -1};
  for (size_t k = 0; k < nsec; k++)
    for (int r = 0; r < 3; r++)
      if (worst[r] < 0 || tl_max[k] > tl_max[worst[r]]) {
        for (int s = 2; s > r; s--) worst[s] = worst[s - 1];
        worst[r] = (int)k;
        break;
      }

  fprintf(stderr,
          "ws_latency: %s http=%d mqtt=%d devices=%zu subscribers=%d qos=%d rate=%.0f threads=%d ws_threads=%d\n"
          "  connect: mqtt ok=%" PRIu64 " failed=%" PRIu64 "; ws open=%" PRIu64 " failed=%" PRIu64
          "; subscriptions live=%" PRIu64 " failed=%" PRIu64 " (%.2fs)\n"
          "  run %.2fs: sent=%" PRIu64 " (%.0f/s) acked=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64
          " (drain %.2fs, %" PRIu64 " arrived in it)\n"
          "  ignored=%" PRIu64 " dup_or_reordered=%" PRIu64 " bad_value=%" PRIu64 " bad_json=%" PRIu64
          " unknown_sub=%" PRIu64 " ws_msgs=%" PRIu64 " pings=%" PRIu64 " ws_closed=%" PRIu64 " mqtt_closed=%" PRIu64
          " no_room_ticks=%" PRIu64 "\n"
          "  errors: {%s} close_codes={%s}\n"
          "  latency publish->WS update us: p50=%" PRIu64 " p90=%" PRIu64 " p99=%" PRIu64 " p99.9=%" PRIu64
          " max=%" PRIu64 " mean=%.0f n=%" PRIu64 "\n"
          "  latency publish->PUBACK us: p50=%" PRIu64 " p90=%" PRIu64 " p99=%" PRIu64 " max=%" PRIu64 " n=%" PRIu64 "\n"
          "  generator: maxrss=%ld KB cpu=%.2fs\n",
          O.host, O.http_port, O.mqtt_port, ndev, O.subscribers, O.qos, O.rate, O.threads, O.ws_threads, T.p.ok,
          T.p.failed, T.w_open, T.w_failed, T.live, T.sfailed, t_conn, run_s, T.p.sent,
          run_s > 0 ? T.p.sent / run_s : 0, T.p.acked, T.received, lost, drain_s, in_drain, ignored, dup, bad_value,
          bad_json, unknown_sub, msgs, pings, w_closed, pr.closed_by_peer, pr.no_room, ebuf, cbuf,
          bench_hist_pct(&h, 50), bench_hist_pct(&h, 90), bench_hist_pct(&h, 99), bench_hist_pct(&h, 99.9), h.max,
          mean, h.n, bench_hist_pct(ack, 50), bench_hist_pct(ack, 90), bench_hist_pct(ack, 99), ack->max, ack->n,
          u.maxrss_kb, cpu);
  if (!O.quiet)
    for (size_t k = 0; k < nsec; k++)
      fprintf(stderr, "  second %zu: received=%" PRIu64 " max=%" PRIu64 "us over_%" PRIu64 "us=%" PRIu64 "\n", k,
              tl_n[k], tl_max[k], O.slow_us, tl_slow[k]);
  if (O.json) {
    printf("{\"devices\":%zu,\"subscribers\":%d,\"qos\":%d,\"rate\":%.0f,\"threads\":%d,\"ws_threads\":%d,"
           "\"mqtt_connected\":%" PRIu64 ",\"mqtt_failed\":%" PRIu64 ",\"ws_open\":%" PRIu64 ",\"ws_failed\":%" PRIu64
           ",\"subs_live\":%" PRIu64 ",\"subs_failed\":%" PRIu64 ",\"connect_s\":%.3f,\"run_s\":%.3f,\"drain_s\":%.3f,"
           "\"sent\":%" PRIu64 ",\"sent_per_s\":%.1f,\"acked\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"received_in_drain\":%" PRIu64 ",\"ignored\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"bad_value\":%" PRIu64
           ",\"bad_json\":%" PRIu64 ",\"unknown_sub\":%" PRIu64 ",\"ws_msgs\":%" PRIu64 ",\"ws_closed_by_peer\":%" PRIu64
           ",\"mqtt_closed_by_peer\":%" PRIu64 ",\"mqtt_unacked_lost\":%" PRIu64 ",\"unexpected\":%" PRIu64
           ",\"errors\":{%s},\"close_codes\":{%s},\"lat_n\":%" PRIu64 ",\"lat_p50_us\":%" PRIu64
           ",\"lat_p90_us\":%" PRIu64 ",\"lat_p99_us\":%" PRIu64 ",\"lat_p999_us\":%" PRIu64 ",\"lat_max_us\":%" PRIu64
           ",\"lat_mean_us\":%.1f,\"ack_n\":%" PRIu64 ",\"ack_p50_us\":%" PRIu64 ",\"ack_p90_us\":%" PRIu64
           ",\"ack_p99_us\":%" PRIu64 ",\"ack_max_us\":%" PRIu64 ",\"slow_us\":%" PRIu64
           ",\"gen_maxrss_kb\":%ld,\"gen_cpu_s\":%.2f,\"worst_seconds\":[",
           ndev, O.subscribers, O.qos, O.rate, O.threads, O.ws_threads, T.p.ok, T.p.failed, T.w_open, T.w_failed,
           T.live, T.sfailed, t_conn, run_s, drain_s, T.p.sent, run_s > 0 ? T.p.sent / run_s : 0, T.p.acked, T.received,
           lost, in_drain, ignored, dup, bad_value, bad_json, unknown_sub, msgs, w_closed, pr.closed_by_peer,
           pr.lost_on_close, pr.unexpected, ebuf, cbuf, h.n, bench_hist_pct(&h, 50), bench_hist_pct(&h, 90),
           bench_hist_pct(&h, 99), bench_hist_pct(&h, 99.9), h.max, mean, ack->n, bench_hist_pct(ack, 50),
           bench_hist_pct(ack, 90), bench_hist_pct(ack, 99), ack->max, O.slow_us, u.maxrss_kb, cpu);
    for (int r = 0, first_out = 1; r < 3; r++)
      if (worst[r] >= 0) {
        printf("%s[%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", first_out ? "" : ",", worst[r], tl_n[worst[r]],
               tl_max[worst[r]], tl_slow[worst[r]]);
        first_out = 0;
      }
    printf("],\"timeline\":[");
    for (size_t k = 0; k < nsec; k++)
      printf("%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", k ? "," : "", tl_n[k], tl_max[k], tl_slow[k]);
    printf("]}\n");
    fflush(stdout);
  }
  for (size_t i = 0; i < ndev; i++) free(g_dev[i].token);
  free(g_dev);
  free(g_jwt);
  bench_mqttc_free(pub);
  free(wconns);
  free(g_ww);
  return can_run && T.received > 0 ? 0 : 1;
}
