/* mqtt_load.c — MQTT load generator for thingsd (and, for comparison, any
 * broker such as mosquitto).
 *
 * Where it sits: a bench tool (bench/mqtt_run.sh drives it), linked with
 * tdcore only for thingsd's own MQTT codec (src/transport/mqtt/codec.h), which
 * encodes CONNECT / PUBLISH / PINGREQ / DISCONNECT and decodes CONNACK /
 * PUBACK / PINGRESP, so the benchmark also exercises the codec as a client.
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
 * microseconds) goes into a fixed log-linear histogram (128 sub-buckets per
 * power of two, < 1% error), never into an array per message. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include "base/buf.h"
#include "base/err.h"
#include "transport/mqtt/codec.h"

#define RBUF_SIZE 1024            /* read buffer per connection: CONNACK/PUBACK are tiny */
#define WBUF_LIMIT (256u * 1024)  /* per write buffer */
#define QOS0_HIGH_WATER (16u * 1024) /* QoS 0: do not queue more than this per connection */
#define MAX_ERR_KINDS 16
#define TOPIC "v1/devices/me/telemetry"

/* ---- latency histogram -------------------------------------------------- */

#define H_SUB_BITS 7
#define H_SUB (1u << H_SUB_BITS)
#define H_MAX_EXP 34 /* values up to 2^(34+7) us, far beyond any run */
#define H_BUCKETS (H_SUB + (H_MAX_EXP + 1) * H_SUB)

struct hist {
  uint64_t count[H_BUCKETS];
  uint64_t n, sum, max, min;
};

static size_t hist_index(uint64_t v) {
  if (v < H_SUB) return (size_t)v;
  int msb = 63 - __builtin_clzll(v);
  int e = msb - H_SUB_BITS; /* >= 0 */
  if (e > H_MAX_EXP) return H_BUCKETS - 1;
  uint64_t m = v >> e; /* in [H_SUB, 2*H_SUB) */
  return H_SUB + (size_t)e * H_SUB + (size_t)(m - H_SUB);
}

/* Largest value that falls into bucket idx. */
static uint64_t hist_upper(size_t idx) {
  if (idx < H_SUB) return idx;
  size_t e = (idx - H_SUB) / H_SUB, m = H_SUB + (idx - H_SUB) % H_SUB;
  return (((uint64_t)m + 1) << e) - 1;
}

static void hist_add(struct hist *h, uint64_t v) {
  h->count[hist_index(v)]++;
  h->n++;
  h->sum += v;
  if (v > h->max) h->max = v;
  if (h->n == 1 || v < h->min) h->min = v;
}

static void hist_merge(struct hist *into, const struct hist *h) {
  for (size_t i = 0; i < H_BUCKETS; i++) into->count[i] += h->count[i];
  if (h->n && (into->n == 0 || h->min < into->min)) into->min = h->min;
  into->n += h->n;
  into->sum += h->sum;
  if (h->max > into->max) into->max = h->max;
}

static uint64_t hist_pct(const struct hist *h, double pct) {
  if (!h->n) return 0;
  uint64_t want = (uint64_t)((double)h->n * pct / 100.0 + 0.5), acc = 0;
  if (want < 1) want = 1;
  for (size_t i = 0; i < H_BUCKETS; i++) {
    acc += h->count[i];
    if (acc >= want) {
      uint64_t u = hist_upper(i);
      return u > h->max ? h->max : u;
    }
  }
  return h->max;
}

/* ---- options and shared state ------------------------------------------ */

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

enum phase { PH_CONNECT, PH_RUN, PH_DRAIN, PH_STOP };
static atomic_int g_phase = PH_CONNECT;
static char **g_tokens;
static size_t g_ntokens;
static int64_t g_ts_base; /* --ts-payload: first ts (ms) */

enum cstate { ST_NEW, ST_TCP, ST_CONNACK, ST_READY, ST_CLOSING, ST_CLOSED };

struct worker;

struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  struct worker *w;
  uint32_t idx; /* global connection index */
  uint8_t state;
  bool writing, dirty, counted; /* counted: connect outcome already tallied */
  uint16_t window, inflight, nfree;
  uint16_t *free_slots; /* stack of free in-flight slots; packet id = slot + 1 */
  uint64_t *sent_ns;    /* send time per slot, 0 = free */
  uint64_t seq, last_send_ms;
  struct td_buf out, wr; /* out: being filled; wr: handed to uv_write */
  uint32_t rlen;
  uint8_t rbuf[RBUF_SIZE];
};

struct errkind {
  char name[32];
  uint64_t n;
};

struct worker {
  uv_loop_t loop;
  uv_thread_t thr;
  uv_timer_t tick, ping, stop;
  struct conn *conns;
  size_t n, next; /* next connection to start */
  int pending, pending_limit;
  int seen_phase;
  double rate, tokens;
  uint64_t last_tick_ns;
  size_t rr; /* round-robin cursor for paced sends */
  struct conn **dirty;
  size_t ndirty;
  uint64_t inflight_total;
  /* results (owner thread writes; atomics are read by main for progress) */
  atomic_uint_fast64_t sent, acked, ok, failed, closed;
  atomic_int connect_done, drained;
  uint64_t acked_run, sent_run, ack_err, unexpected, pingresp, lost_on_close, closed_by_peer;
  uint64_t connack[256], puback_rc[256];
  uint16_t min_window;
  struct errkind errs[MAX_ERR_KINDS];
  struct hist h;
};

static struct worker *g_workers;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void count_err(struct worker *w, const char *name) {
  for (int i = 0; i < MAX_ERR_KINDS; i++) {
    if (w->errs[i].name[0] == '\0') snprintf(w->errs[i].name, sizeof w->errs[i].name, "%s", name);
    if (strcmp(w->errs[i].name, name) == 0) {
      w->errs[i].n++;
      return;
    }
  }
  w->errs[MAX_ERR_KINDS - 1].n++; /* table full: lump into the last kind */
}

static void start_connects(struct worker *w);
static void conn_flush(struct conn *c);
static void qos0_fill(struct conn *c);

/* ---- connection lifetime ----------------------------------------------- */

static void on_close(uv_handle_t *h) {
  struct conn *c = h->data;
  struct worker *w = c->w;
  c->state = ST_CLOSED;
  td_buf_deinit(&c->out);
  td_buf_deinit(&c->wr);
  free(c->free_slots);
  free(c->sent_ns);
  c->free_slots = NULL;
  c->sent_ns = NULL;
  atomic_fetch_add_explicit(&w->closed, 1, memory_order_relaxed);
  if (w->seen_phase == PH_CONNECT) start_connects(w);
}

/* The connect attempt of c ended (CONNACK 0, or any failure): tally once and
 * let the next connection start. */
static void connect_outcome(struct conn *c, bool ok) {
  struct worker *w = c->w;
  if (c->counted) return;
  c->counted = true;
  w->pending--;
  if (ok)
    atomic_fetch_add_explicit(&w->ok, 1, memory_order_relaxed);
  else
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
  if (atomic_load_explicit(&w->ok, memory_order_relaxed) + atomic_load_explicit(&w->failed, memory_order_relaxed) ==
      w->n)
    atomic_store(&w->connect_done, 1);
}

/* Close c; `why` (NULL = our own close) is counted as a failure kind. */
static void conn_close(struct conn *c, const char *why) {
  struct worker *w = c->w;
  if (c->state == ST_CLOSING || c->state == ST_CLOSED || c->state == ST_NEW) return;
  if (w->seen_phase == PH_STOP) why = NULL; /* the server closing after our DISCONNECT */
  if (why) count_err(w, why);
  if (c->state == ST_TCP || c->state == ST_CONNACK) connect_outcome(c, false);
  if (c->state == ST_READY && why) w->closed_by_peer++;
  w->lost_on_close += c->inflight;
  w->inflight_total -= c->inflight;
  c->inflight = 0;
  c->state = ST_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_write(uv_write_t *req, int status) {
  struct conn *c = req->data;
  c->writing = false;
  td_buf_reset(&c->wr);
  if (status < 0) {
    if (status != UV_ECANCELED) conn_close(c, uv_err_name(status));
    return;
  }
  if (c->state != ST_READY) return;
  /* QoS 0 without pacing: the socket took the last batch, queue the next */
  if (O.qos == 0 && O.rate == 0 && !O.idle && c->w->seen_phase == PH_RUN) qos0_fill(c);
  conn_flush(c);
}

/* Hand what was queued in c->out to the socket (one write in flight). */
static void conn_flush(struct conn *c) {
  if (c->writing || c->out.len == 0 || (c->state != ST_READY && c->state != ST_CONNACK)) return;
  struct td_buf t = c->wr;
  c->wr = c->out;
  c->out = t;
  uv_buf_t b = uv_buf_init(c->wr.data, (unsigned)c->wr.len);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (rc < 0) {
    td_buf_reset(&c->wr);
    conn_close(c, uv_err_name(rc));
    return;
  }
  c->writing = true;
  c->last_send_ms = now_ms();
}

static void mark_dirty(struct conn *c) {
  if (c->dirty) return;
  c->dirty = true;
  c->w->dirty[c->w->ndirty++] = c;
}

static void flush_dirty(struct worker *w) {
  for (size_t i = 0; i < w->ndirty; i++) {
    w->dirty[i]->dirty = false;
    conn_flush(w->dirty[i]);
  }
  w->ndirty = 0;
}

/* ---- publishing -------------------------------------------------------- */

/* Queue one PUBLISH on c (caller checked the window). Returns 0 or TD_E*. */
static int send_publish(struct conn *c, uint64_t now_ns) {
  struct worker *w = c->w;
  char pl[160];
  uint64_t seq = ++c->seq;
  int n;
  if (O.ts_payload) {
    int64_t per = (O.connections + O.devices - 1) / O.devices;
    int64_t ts = g_ts_base + (int64_t)seq * per + (int64_t)(c->idx / (uint32_t)O.devices);
    n = snprintf(pl, sizeof pl, "{\"ts\":%" PRId64 ",\"values\":{\"pulseCounter\":%" PRIu64
                 ",\"leakage\":false,\"batteryLevel\":%u}}", ts, seq, (unsigned)(20 + seq % 80));
  } else {
    n = snprintf(pl, sizeof pl, "{\"pulseCounter\":%" PRIu64 ",\"leakage\":false,\"batteryLevel\":%u}", seq,
                 (unsigned)(20 + seq % 80));
  }
  uint16_t pid = 0;
  if (O.qos > 0) {
    uint16_t slot = c->free_slots[--c->nfree];
    pid = (uint16_t)(slot + 1);
    c->sent_ns[slot] = now_ns ? now_ns : 1;
    c->inflight++;
    w->inflight_total++;
  }
  int rc = td_mqtt_encode_publish(&c->out, O.protocol, TD_MQTT_STR(TOPIC),
                                  (struct td_mqtt_str){pl, (size_t)n}, O.qos, false, false, pid, NULL);
  if (rc) {
    if (O.qos > 0) { /* undo */
      c->sent_ns[pid - 1] = 0;
      c->free_slots[c->nfree++] = (uint16_t)(pid - 1);
      c->inflight--;
      w->inflight_total--;
    }
    c->seq--;
    count_err(w, rc == TD_ETOOBIG ? "write_buffer_full" : "encode_failed");
    return rc;
  }
  atomic_fetch_add_explicit(&w->sent, 1, memory_order_relaxed);
  if (w->seen_phase == PH_RUN) w->sent_run++;
  return 0;
}

/* Rate 0, QoS 1: keep c's window full. */
static void fill_window(struct conn *c, uint64_t now_ns) {
  while (c->state == ST_READY && c->inflight < c->window)
    if (send_publish(c, now_ns)) break;
}

/* Rate 0, QoS 0: queue a batch when the socket has taken the last one. */
static void qos0_fill(struct conn *c) {
  uint64_t now = uv_hrtime();
  for (int i = 0; i < O.inflight && c->out.len < QOS0_HIGH_WATER; i++)
    if (send_publish(c, now)) break;
}

static bool can_send(const struct conn *c) {
  if (c->state != ST_READY) return false;
  if (O.qos > 0) return c->inflight < c->window;
  return c->out.len < QOS0_HIGH_WATER;
}

/* Paced mode: spend the token bucket round-robin over connections with room. */
static void paced_send(struct worker *w, uint64_t now_ns) {
  double dt = (double)(now_ns - w->last_tick_ns) / 1e9;
  w->last_tick_ns = now_ns;
  w->tokens += w->rate * dt;
  double cap = w->rate * 0.05 + 1; /* at most 50 ms of backlog: the rate is a ceiling */
  if (w->tokens > cap) w->tokens = cap;
  size_t misses = 0;
  while (w->tokens >= 1 && misses < w->n) {
    struct conn *c = &w->conns[w->rr];
    w->rr = (w->rr + 1) % w->n;
    if (!can_send(c)) {
      misses++;
      continue;
    }
    if (send_publish(c, now_ns)) {
      misses++;
      continue;
    }
    misses = 0;
    w->tokens -= 1;
    mark_dirty(c);
  }
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct conn *c = h->data;
  buf->base = (char *)c->rbuf + c->rlen;
  buf->len = RBUF_SIZE - c->rlen;
}

static void on_packet(struct conn *c, const struct td_mqtt_packet *p, uint64_t now_ns) {
  struct worker *w = c->w;
  switch (p->type) {
  case TD_MQTT_CONNACK:
    if (c->state != ST_CONNACK) {
      w->unexpected++;
      return;
    }
    w->connack[p->reason]++;
    if (p->reason != 0) {
      char k[32];
      snprintf(k, sizeof k, "connack_0x%02x", p->reason);
      conn_close(c, k);
      return;
    }
    c->state = ST_READY;
    c->window = (uint16_t)O.inflight;
    if (O.protocol == TD_MQTT_V5 && (p->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_RECEIVE_MAXIMUM)) &&
        p->props.receive_maximum < c->window)
      c->window = p->props.receive_maximum;
    if (c->window < w->min_window) w->min_window = c->window;
    if (O.qos > 0 && !O.idle) {
      c->free_slots = malloc(sizeof *c->free_slots * c->window);
      c->sent_ns = calloc(c->window, sizeof *c->sent_ns);
      if (!c->free_slots || !c->sent_ns) {
        conn_close(c, "out_of_memory");
        return;
      }
      for (uint16_t i = 0; i < c->window; i++) c->free_slots[i] = (uint16_t)(c->window - 1 - i);
      c->nfree = c->window;
    }
    connect_outcome(c, true);
    start_connects(w);
    return;
  case TD_MQTT_PUBACK: {
    uint16_t slot = (uint16_t)(p->packet_id - 1);
    if (O.qos == 0 || !c->sent_ns || p->packet_id == 0 || slot >= c->window || c->sent_ns[slot] == 0) {
      w->unexpected++;
      return;
    }
    uint64_t sent = c->sent_ns[slot];
    c->sent_ns[slot] = 0;
    c->free_slots[c->nfree++] = slot;
    c->inflight--;
    w->inflight_total--;
    w->puback_rc[p->reason]++;
    if (p->reason >= 0x80) { /* v5 failure reason: not acknowledged */
      w->ack_err++;
      return;
    }
    hist_add(&w->h, now_ns > sent ? (now_ns - sent) / 1000 : 0);
    atomic_fetch_add_explicit(&w->acked, 1, memory_order_relaxed);
    if (w->seen_phase == PH_RUN) w->acked_run++;
    return;
  }
  case TD_MQTT_PINGRESP: w->pingresp++; return;
  case TD_MQTT_DISCONNECT: {
    char k[32];
    snprintf(k, sizeof k, "server_disconnect_0x%02x", p->reason);
    conn_close(c, k);
    return;
  }
  default: w->unexpected++; return;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    conn_close(c, c->state == ST_CONNACK ? "closed_before_connack" : uv_err_name((int)nread));
    return;
  }
  uint64_t now = uv_hrtime();
  c->rlen += (uint32_t)nread;
  size_t off = 0;
  while (off < c->rlen && c->state != ST_CLOSING) {
    struct td_mqtt_packet p;
    struct td_mqtt_error e;
    int rc = td_mqtt_decode(c->rbuf + off, c->rlen - off, O.protocol, RBUF_SIZE, &p, &e);
    if (rc == TD_EAGAIN) break;
    if (rc < 0) {
      char k[32];
      const char *en = td_mqtt_err_name(e.code);
      snprintf(k, sizeof k, "decode_%s", strncmp(en, "TD_MQTT_E_", 10) == 0 ? en + 10 : en);
      conn_close(c, k);
      return;
    }
    on_packet(c, &p, now);
    off += (size_t)rc;
  }
  if (c->state == ST_CLOSING || c->state == ST_CLOSED) return;
  if (off) {
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= (uint32_t)off;
  }
  if (c->rlen == RBUF_SIZE) { /* a packet larger than we ever expect */
    conn_close(c, "packet_too_large");
    return;
  }
  if (c->state == ST_READY && O.qos > 0 && O.rate == 0 && !O.idle && c->w->seen_phase == PH_RUN)
    fill_window(c, now);
  conn_flush(c);
}

/* ---- connecting -------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status) {
  struct conn *c = req->data;
  if (c->state != ST_TCP) return;
  if (status < 0) {
    conn_close(c, uv_err_name(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  const char *tok = g_tokens[(c->idx % (uint32_t)O.devices) % g_ntokens];
  char cid[48];
  snprintf(cid, sizeof cid, "ml%ld-%u", (long)getpid(), c->idx);
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_CONNECT;
  p.u.connect.protocol_level = (uint8_t)O.protocol;
  p.u.connect.clean_start = true;
  p.u.connect.keep_alive = (uint16_t)O.keepalive;
  p.u.connect.client_id = (struct td_mqtt_str){cid, strlen(cid)};
  p.u.connect.has_username = true;
  p.u.connect.username = (struct td_mqtt_str){tok, strlen(tok)};
  int rc = td_mqtt_encode(&c->out, O.protocol, &p);
  if (rc) {
    conn_close(c, "encode_connect");
    return;
  }
  c->state = ST_CONNACK;
  rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc < 0) {
    conn_close(c, uv_err_name(rc));
    return;
  }
  conn_flush(c);
}

static void start_one(struct worker *w, struct conn *c, const struct sockaddr *addr) {
  c->w = w;
  c->tcp.data = c;
  c->creq.data = c;
  td_buf_init(&c->out, WBUF_LIMIT);
  td_buf_init(&c->wr, WBUF_LIMIT);
  int rc = uv_tcp_init(&w->loop, &c->tcp);
  if (rc < 0) { /* no handle to close */
    count_err(w, uv_err_name(rc));
    c->state = ST_CLOSED;
    c->counted = true;
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->closed, 1, memory_order_relaxed);
    return;
  }
  w->pending++;
  c->state = ST_TCP;
  rc = uv_tcp_connect(&c->creq, &c->tcp, addr, on_connect);
  if (rc < 0) conn_close(c, uv_err_name(rc)); /* EMFILE, EADDRNOTAVAIL...: counted, not fatal */
}

static struct sockaddr_storage g_addr;

static void start_connects(struct worker *w) {
  while (w->seen_phase == PH_CONNECT && w->pending < w->pending_limit && w->next < w->n)
    start_one(w, &w->conns[w->next++], (const struct sockaddr *)&g_addr);
  if (w->next == w->n && atomic_load_explicit(&w->ok, memory_order_relaxed) +
                                 atomic_load_explicit(&w->failed, memory_order_relaxed) ==
                             w->n)
    atomic_store(&w->connect_done, 1);
}

/* ---- timers and phases ------------------------------------------------- */

static void on_stop_timer(uv_timer_t *t) {
  struct worker *w = t->data;
  for (size_t i = 0; i < w->n; i++) conn_close(&w->conns[i], NULL);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_close((uv_handle_t *)&w->ping, NULL);
  uv_close((uv_handle_t *)&w->stop, NULL);
}

static void enter_phase(struct worker *w, int ph) {
  int old = w->seen_phase;
  w->seen_phase = ph;
  uint64_t now = uv_hrtime();
  if (old == PH_CONNECT) {
    /* connects still pending at the deadline count as timed out */
    for (size_t i = 0; i < w->n; i++)
      if (w->conns[i].state == ST_TCP || w->conns[i].state == ST_CONNACK) conn_close(&w->conns[i], "connect_timeout");
    for (; w->next < w->n; w->next++) {
      w->conns[w->next].counted = true;
      atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
      count_err(w, "not_started");
    }
  }
  if (ph == PH_RUN && !O.idle) {
    w->last_tick_ns = now;
    if (O.rate == 0)
      for (size_t i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != ST_READY) continue;
        if (O.qos > 0)
          fill_window(c, now);
        else
          qos0_fill(c);
        conn_flush(c);
      }
  }
  if (ph == PH_STOP) {
    struct td_mqtt_packet d;
    memset(&d, 0, sizeof d);
    d.type = TD_MQTT_DISCONNECT;
    for (size_t i = 0; i < w->n; i++) {
      struct conn *c = &w->conns[i];
      if (c->state != ST_READY) continue;
      if (td_mqtt_encode(&c->out, O.protocol, &d) == 0) conn_flush(c);
    }
    uv_timer_stop(&w->tick);
    uv_timer_stop(&w->ping);
    uv_timer_start(&w->stop, on_stop_timer, 300, 0); /* let DISCONNECTs go out */
  }
}

static void on_tick(uv_timer_t *t) {
  struct worker *w = t->data;
  int ph = atomic_load(&g_phase);
  if (ph != w->seen_phase) enter_phase(w, ph);
  if (w->seen_phase == PH_STOP) return;
  if (w->seen_phase == PH_RUN && !O.idle && O.rate > 0) paced_send(w, uv_hrtime());
  if (w->seen_phase == PH_DRAIN || (w->seen_phase == PH_RUN && O.idle)) {
    bool idle = true;
    if (O.qos > 0)
      idle = w->inflight_total == 0;
    else
      for (size_t i = 0; i < w->n && idle; i++) idle = !w->conns[i].writing && w->conns[i].out.len == 0;
    if (idle) atomic_store(&w->drained, 1);
  }
  flush_dirty(w);
}

/* Keep-alive: a PINGREQ on every ready connection quiet for half the period. */
static void on_ping(uv_timer_t *t) {
  struct worker *w = t->data;
  uint64_t now = now_ms(), half = (uint64_t)O.keepalive * 500u;
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_PINGREQ;
  for (size_t i = 0; i < w->n; i++) {
    struct conn *c = &w->conns[i];
    if (c->state != ST_READY || now - c->last_send_ms < half) continue;
    if (td_mqtt_encode(&c->out, O.protocol, &p) == 0) conn_flush(c);
  }
}

static void worker_main(void *arg) {
  struct worker *w = arg;
  w->tick.data = w->ping.data = w->stop.data = w;
  uv_timer_init(&w->loop, &w->tick);
  uv_timer_init(&w->loop, &w->ping);
  uv_timer_init(&w->loop, &w->stop);
  uv_timer_start(&w->tick, on_tick, 1, (O.rate > 0 && !O.idle) ? 1 : 5);
  if (O.keepalive > 0) {
    uint64_t every = (uint64_t)O.keepalive * 250u; /* check 4x per period */
    uv_timer_start(&w->ping, on_ping, every, every);
  }
  start_connects(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- main -------------------------------------------------------------- */

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
  FILE *f = fopen(O.tokens_file, "r");
  if (!f) {
    fprintf(stderr, "mqtt_load: %s: %s\n", O.tokens_file, strerror(errno));
    return -1;
  }
  size_t cap = 0;
  char line[512];
  while (g_ntokens < (size_t)O.devices && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) continue;
    if (g_ntokens == cap) {
      cap = cap ? cap * 2 : 1024;
      char **t = realloc(g_tokens, cap * sizeof *t);
      if (!t) break;
      g_tokens = t;
    }
    g_tokens[g_ntokens] = strdup(line);
    if (!g_tokens[g_ntokens]) break;
    g_ntokens++;
  }
  fclose(f);
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

static double mono_s(void) { return (double)uv_hrtime() / 1e9; }

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static uint64_t sum_atomic(size_t off) {
  uint64_t s = 0;
  for (int i = 0; i < O.threads; i++)
    s += atomic_load_explicit((atomic_uint_fast64_t *)((char *)&g_workers[i] + off), memory_order_relaxed);
  return s;
}

static bool all_flag(size_t off) {
  for (int i = 0; i < O.threads; i++)
    if (!atomic_load((atomic_int *)((char *)&g_workers[i] + off))) return false;
  return true;
}

#define SUM(field) sum_atomic(offsetof(struct worker, field))

static void progress(double t0, const char *what) {
  if (O.quiet) return;
  fprintf(stderr, "mqtt_load: %s t=%.0fs ok=%" PRIu64 " failed=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64 "\n", what,
          mono_s() - t0, SUM(ok), SUM(failed), SUM(sent), SUM(acked));
}

static int parse_args(int argc, char **argv) {
  enum { OPT_HOST = 256, OPT_PORT, OPT_DEV, OPT_TOK, OPT_CONN, OPT_RATE, OPT_INF, OPT_QOS, OPT_DUR, OPT_DRAIN,
         OPT_IDLE, OPT_KA, OPT_PROTO, OPT_CC, OPT_CT, OPT_TS, OPT_JSON };
  static const struct option lo[] = {
      {"host", 1, 0, OPT_HOST},         {"port", 1, 0, OPT_PORT},
      {"devices", 1, 0, OPT_DEV},       {"tokens-file", 1, 0, OPT_TOK},
      {"connections", 1, 0, OPT_CONN},  {"rate", 1, 0, OPT_RATE},
      {"inflight", 1, 0, OPT_INF},      {"qos", 1, 0, OPT_QOS},
      {"duration", 1, 0, OPT_DUR},      {"drain", 1, 0, OPT_DRAIN},
      {"idle", 0, 0, OPT_IDLE},         {"keepalive", 1, 0, OPT_KA},
      {"protocol", 1, 0, OPT_PROTO},    {"connect-concurrency", 1, 0, OPT_CC},
      {"connect-timeout", 1, 0, OPT_CT}, {"ts-payload", 0, 0, OPT_TS},
      {"threads", 1, 0, 't'},           {"json", 0, 0, OPT_JSON},
      {"quiet", 0, 0, 'q'},             {"help", 0, 0, 'h'},
      {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "t:qh", lo, NULL)) != -1) {
    switch (ch) {
    case OPT_HOST: O.host = optarg; break;
    case OPT_PORT: O.port = atoi(optarg); break;
    case OPT_DEV: O.devices = atoi(optarg); break;
    case OPT_TOK: O.tokens_file = optarg; break;
    case OPT_CONN: O.connections = atoi(optarg); break;
    case OPT_RATE: O.rate = atof(optarg); break;
    case OPT_INF: O.inflight = atoi(optarg); break;
    case OPT_QOS: O.qos = atoi(optarg); break;
    case OPT_DUR: O.duration = atof(optarg); break;
    case OPT_DRAIN: O.drain = atof(optarg); break;
    case OPT_IDLE: O.idle = true; break;
    case OPT_KA: O.keepalive = atoi(optarg); break;
    case OPT_PROTO: O.protocol = atoi(optarg); break;
    case OPT_CC: O.connect_conc = atoi(optarg); break;
    case OPT_CT: O.connect_timeout = atof(optarg); break;
    case OPT_TS: O.ts_payload = true; break;
    case 't': O.threads = atoi(optarg); break;
    case OPT_JSON: O.json = true; break;
    case 'q': O.quiet = true; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (O.connections <= 0) O.connections = O.devices;
  if (O.devices <= 0 || O.port <= 0 || O.port > 65535 || (O.qos != 0 && O.qos != 1) || O.protocol < 3 ||
      O.protocol > 5 || O.inflight < 1 || O.inflight > 65535 || O.threads < 1 || O.threads > 64 ||
      O.connect_conc < 1 || O.rate < 0 || O.duration < 0 || O.keepalive < 0 || O.keepalive > 65535 ||
      optind != argc) {
    usage(stderr);
    return -1;
  }
  if (O.threads > O.connections) O.threads = O.connections;
  return 0;
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv)) return 2;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)O.connections + 64 > rl.rlim_cur)
    fprintf(stderr, "mqtt_load: warning: %d connections but RLIMIT_NOFILE is %llu; some will fail with EMFILE\n",
            O.connections, (unsigned long long)rl.rlim_cur);
  if (load_tokens()) return 2;
  if (uv_ip4_addr(O.host, O.port, (struct sockaddr_in *)&g_addr) != 0 &&
      uv_ip6_addr(O.host, O.port, (struct sockaddr_in6 *)&g_addr) != 0) {
    fprintf(stderr, "mqtt_load: --host must be a numeric address: %s\n", O.host);
    return 2;
  }
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  g_ts_base = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;

  g_workers = calloc((size_t)O.threads, sizeof *g_workers);
  struct conn *conns = calloc((size_t)O.connections, sizeof *conns);
  if (!g_workers || !conns) {
    fprintf(stderr, "mqtt_load: out of memory\n");
    return 1;
  }
  size_t per = (size_t)O.connections / (size_t)O.threads, extra = (size_t)O.connections % (size_t)O.threads, first = 0;
  for (int i = 0; i < O.threads; i++) {
    struct worker *w = &g_workers[i];
    w->n = per + ((size_t)i < extra ? 1 : 0);
    w->conns = conns + first;
    for (size_t j = 0; j < w->n; j++) w->conns[j].idx = (uint32_t)(first + j);
    first += w->n;
    w->pending_limit = (O.connect_conc + O.threads - 1) / O.threads;
    w->rate = O.rate / O.threads;
    w->min_window = UINT16_MAX;
    w->dirty = calloc(w->n, sizeof *w->dirty);
    if (!w->dirty || uv_loop_init(&w->loop)) {
      fprintf(stderr, "mqtt_load: cannot set up worker %d\n", i);
      return 1;
    }
  }
  double t0 = mono_s();
  for (int i = 0; i < O.threads; i++)
    if (uv_thread_create(&g_workers[i].thr, worker_main, &g_workers[i])) {
      fprintf(stderr, "mqtt_load: cannot start thread\n");
      return 1;
    }

  /* CONNECT phase */
  double last = t0;
  while (!all_flag(offsetof(struct worker, connect_done)) && mono_s() - t0 < O.connect_timeout) {
    sleep_ms(10);
    if (mono_s() - last >= 1) {
      last = mono_s();
      progress(t0, "connecting");
    }
  }
  double t_conn = mono_s() - t0;
  /* one fixed-format line the driver script waits for */
  fprintf(stderr, "mqtt_load: connected ok=%" PRIu64 " failed=%" PRIu64 " in %.2fs\n", SUM(ok), SUM(failed), t_conn);
  fflush(stderr);

  /* RUN phase */
  double run0 = mono_s();
  atomic_store(&g_phase, PH_RUN);
  last = run0;
  uint64_t nok = SUM(ok);
  while (nok > 0 && mono_s() - run0 < O.duration) {
    sleep_ms(10);
    if (mono_s() - last >= 1) {
      last = mono_s();
      progress(run0, O.idle ? "holding" : "running");
    }
  }
  double run_s = mono_s() - run0;

  /* DRAIN phase */
  atomic_store(&g_phase, PH_DRAIN);
  double d0 = mono_s();
  while (!all_flag(offsetof(struct worker, drained)) && mono_s() - d0 < O.drain) sleep_ms(10);
  double drain_s = mono_s() - d0;
  atomic_store(&g_phase, PH_STOP);
  for (int i = 0; i < O.threads; i++) uv_thread_join(&g_workers[i].thr);

  /* merge */
  static struct hist h;
  uint64_t sent = 0, acked = 0, ok = 0, failed = 0, acked_run = 0, sent_run = 0, ack_err = 0, unexpected = 0,
           pingresp = 0, lost = 0, by_peer = 0;
  uint64_t connack[256] = {0}, puback_rc[256] = {0};
  struct errkind errs[MAX_ERR_KINDS * 4];
  size_t nerrs = 0;
  int min_window = O.inflight;
  for (int i = 0; i < O.threads; i++) {
    struct worker *w = &g_workers[i];
    sent += atomic_load(&w->sent);
    acked += atomic_load(&w->acked);
    ok += atomic_load(&w->ok);
    failed += atomic_load(&w->failed);
    acked_run += w->acked_run;
    sent_run += w->sent_run;
    ack_err += w->ack_err;
    unexpected += w->unexpected;
    pingresp += w->pingresp;
    lost += w->lost_on_close;
    by_peer += w->closed_by_peer;
    if (w->min_window < min_window) min_window = w->min_window;
    for (int k = 0; k < 256; k++) {
      connack[k] += w->connack[k];
      puback_rc[k] += w->puback_rc[k];
    }
    hist_merge(&h, &w->h);
    for (int k = 0; k < MAX_ERR_KINDS && w->errs[k].name[0]; k++) {
      size_t j = 0;
      while (j < nerrs && strcmp(errs[j].name, w->errs[k].name) != 0) j++;
      if (j == nerrs) {
        if (nerrs == sizeof errs / sizeof errs[0]) continue;
        errs[nerrs] = w->errs[k];
        nerrs++;
      } else {
        errs[j].n += w->errs[k].n;
      }
    }
    uv_loop_close(&w->loop);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double rate_acked = run_s > 0 ? (double)acked_run / run_s : 0;
  double rate_sent = run_s > 0 ? (double)sent_run / run_s : 0;
  double mean = h.n ? (double)h.sum / (double)h.n : 0;
  char cbuf[512] = "", ebuf[1024] = "", pbuf[512] = "";
  size_t cl = 0, el = 0, pl = 0;
  for (int k = 0; k < 256; k++)
    if (puback_rc[k] && pl < sizeof pbuf - 32)
      pl += (size_t)snprintf(pbuf + pl, sizeof pbuf - pl, "%s\"%d\":%" PRIu64, pl ? "," : "", k, puback_rc[k]);
  for (int k = 0; k < 256; k++)
    if (connack[k] && cl < sizeof cbuf - 32)
      cl += (size_t)snprintf(cbuf + cl, sizeof cbuf - cl, "%s\"%d\":%" PRIu64, cl ? "," : "", k, connack[k]);
  for (size_t k = 0; k < nerrs; k++)
    if (el < sizeof ebuf - 64)
      el += (size_t)snprintf(ebuf + el, sizeof ebuf - el, "%s\"%s\":%" PRIu64, el ? "," : "", errs[k].name, errs[k].n);

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
          O.host, O.port, O.protocol, O.qos, O.connections, O.devices, O.threads, min_window, O.rate,
          O.idle ? " idle" : "", ok, failed, t_conn, by_peer, cbuf, ebuf, pbuf, run_s, sent_run, rate_sent, acked_run,
          rate_acked, sent, acked, ack_err, O.qos ? sent - acked - ack_err : 0, unexpected, pingresp, drain_s,
          hist_pct(&h, 50), hist_pct(&h, 90), hist_pct(&h, 99), hist_pct(&h, 99.9), h.max, mean, ru.ru_maxrss,
          (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  if (O.json) {
    printf("{\"host\":\"%s\",\"port\":%d,\"protocol\":%d,\"qos\":%d,\"connections\":%d,\"devices\":%d,\"threads\":%d,"
           "\"inflight\":%d,\"rate\":%.0f,\"idle\":%s,\"connected\":%" PRIu64 ",\"connect_failed\":%" PRIu64
           ",\"connect_s\":%.3f,\"closed_by_peer\":%" PRIu64 ",\"connack\":{%s},\"errors\":{%s},\"puback_reasons\":{%s},\"run_s\":%.3f,"
           "\"sent_run\":%" PRIu64 ",\"acked_run\":%" PRIu64 ",\"sent_per_s\":%.1f,\"acked_per_s\":%.1f,\"sent\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"ack_errors\":%" PRIu64 ",\"unacked\":%" PRIu64 ",\"unexpected\":%" PRIu64
           ",\"pingresp\":%" PRIu64 ",\"drain_s\":%.3f,\"lat_n\":%" PRIu64 ",\"lat_p50_us\":%" PRIu64
           ",\"lat_p90_us\":%" PRIu64 ",\"lat_p99_us\":%" PRIu64 ",\"lat_p999_us\":%" PRIu64 ",\"lat_max_us\":%" PRIu64
           ",\"lat_mean_us\":%.1f,\"gen_maxrss_kb\":%ld,\"gen_cpu_s\":%.2f}\n",
           O.host, O.port, O.protocol, O.qos, O.connections, O.devices, O.threads, min_window, O.rate,
           O.idle ? "true" : "false", ok, failed, t_conn, by_peer, cbuf, ebuf, pbuf, run_s, sent_run, acked_run, rate_sent,
           rate_acked, sent, acked, ack_err, O.qos ? sent - acked - ack_err : 0, unexpected, pingresp, drain_s, h.n,
           hist_pct(&h, 50), hist_pct(&h, 90), hist_pct(&h, 99), hist_pct(&h, 99.9), h.max, mean, ru.ru_maxrss,
           (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
  }
  for (int i = 0; i < O.threads; i++) free(g_workers[i].dirty);
  free(g_workers);
  free(conns);
  for (size_t i = 0; i < g_ntokens; i++) free(g_tokens[i]);
  free(g_tokens);
  return ok > 0 ? 0 : 1;
}
