/* mqttc.c — the pool of MQTT device connections of the bench tools (see
 * mqttc.h for the model). Everything below runs on the connection's worker
 * thread, except what is marked "main thread". */
#include "mqttc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/err.h"
#include "outq.h"
#include "run.h"
#include "transport/mqtt/codec.h"

#define RBUF_SIZE 1024               /* read buffer per connection: CONNACK/PUBACK are tiny */
#define QOS0_HIGH_WATER (16u * 1024) /* QoS 0: do not queue more than this per connection */

enum cstate { ST_NEW, ST_TCP, ST_CONNACK, ST_READY, ST_CLOSING, ST_CLOSED };

struct worker;

struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  struct worker *w;
  uint32_t idx; /* connection index in the pool */
  uint8_t state;
  bool dirty, counted; /* counted: connect outcome already tallied */
  uint16_t window, inflight, nfree;
  uint16_t *free_slots; /* stack of free in-flight slots; packet id = slot + 1 */
  uint64_t *sent_ns;    /* send time per slot, 0 = free */
  uint64_t seq, last_send_ms;
  struct bench_outq q;
  uint32_t rlen;
  uint8_t rbuf[RBUF_SIZE];
};

struct worker {
  uv_loop_t loop;
  uv_thread_t thr;
  uv_timer_t tick, ping, stop;
  const struct bench_mqttc_config *cfg;
  struct conn *conns;
  size_t n, next; /* next connection to start */
  int pending, pending_limit;
  int seen_phase;
  double rate, tokens; /* token bucket: this thread's share of the rate */
  uint64_t last_tick_ns;
  size_t rr; /* round-robin cursor for paced sends */
  struct conn **dirty;
  size_t ndirty;
  uint64_t inflight_total;
  /* results (owner thread writes; atomics are read by main for progress) */
  atomic_uint_fast64_t sent, acked, ok, failed;
  atomic_int connect_done, drained;
  uint64_t acked_run, sent_run, ack_err, unexpected, pingresp, lost_on_close, closed_by_peer, no_room;
  uint64_t connack[256], puback_rc[256];
  uint16_t min_window;
  struct bench_errkind errs[BENCH_ERRKINDS];
  struct bench_hist h;
};

struct bench_mqttc {
  struct bench_mqttc_config cfg;
  struct worker *workers;
  struct conn *conns;
  size_t n;
};

static void count_err(struct worker *w, const char *why) {
  char k[sizeof w->errs[0].name];
  snprintf(k, sizeof k, "%s%s", w->cfg->err_prefix, why);
  bench_errkind_count(w->errs, k);
}

static void start_connects(struct worker *w);
static void conn_flush(struct conn *c);
static void qos0_fill(struct conn *c);

/* ---- connection lifetime ----------------------------------------------- */

static void on_close(uv_handle_t *h) {
  struct conn *c = h->data;
  struct worker *w = c->w;
  c->state = ST_CLOSED;
  bench_outq_deinit(&c->q);
  free(c->free_slots);
  free(c->sent_ns);
  c->free_slots = NULL;
  c->sent_ns = NULL;
  if (w->seen_phase == BENCH_CONNECT) start_connects(w);
}

static void check_connected(struct worker *w) {
  if (atomic_load_explicit(&w->ok, memory_order_relaxed) + atomic_load_explicit(&w->failed, memory_order_relaxed) ==
      w->n)
    atomic_store(&w->connect_done, 1);
}

/* The connect attempt of c ended (CONNACK 0, or any failure): tally once and
 * let the next connection start. */
static void connect_outcome(struct conn *c, bool ok) {
  struct worker *w = c->w;
  if (c->counted) return;
  c->counted = true;
  w->pending--;
  atomic_fetch_add_explicit(ok ? &w->ok : &w->failed, 1, memory_order_relaxed);
  check_connected(w);
}

/* Close c; `why` (NULL = our own close) is counted as a failure kind. */
static void conn_close(struct conn *c, const char *why) {
  struct worker *w = c->w;
  if (c->state == ST_CLOSING || c->state == ST_CLOSED || c->state == ST_NEW) return;
  if (w->seen_phase == BENCH_STOP) why = NULL; /* the server closing after our DISCONNECT */
  if (why) count_err(w, why);
  if (c->state == ST_TCP || c->state == ST_CONNACK) connect_outcome(c, false);
  if (c->state == ST_READY && why) w->closed_by_peer++;
  w->lost_on_close += c->inflight;
  w->inflight_total -= c->inflight;
  c->inflight = 0;
  c->state = ST_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Rate 0 and QoS 0 only: keep the socket busy. */
static bool unpaced_qos0(const struct worker *w) {
  return w->cfg->qos == 0 && w->cfg->rate == 0 && !w->cfg->idle && w->seen_phase == BENCH_RUN;
}

static void on_write(uv_write_t *req, int status) {
  struct conn *c = req->data;
  bench_outq_done(&c->q);
  if (status < 0) {
    if (status != UV_ECANCELED) conn_close(c, uv_err_name(status));
    return;
  }
  if (c->state != ST_READY) return;
  /* QoS 0 without pacing: the socket took the last batch, queue the next */
  if (unpaced_qos0(c->w)) qos0_fill(c);
  conn_flush(c);
}

/* Hand what was queued in c->q to the socket (one write in flight). */
static void conn_flush(struct conn *c) {
  if (c->state != ST_READY && c->state != ST_CONNACK) return;
  int rc = bench_outq_flush(&c->q, (uv_stream_t *)&c->tcp, c, on_write);
  if (rc < 0)
    conn_close(c, uv_err_name(rc));
  else if (rc > 0)
    c->last_send_ms = bench_now_ms();
}

/* Queue one control packet of type `type` (PINGREQ, DISCONNECT) and flush. */
static void send_control(struct conn *c, int type) {
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = (uint8_t)type;
  if (td_mqtt_encode(&c->q.out, c->w->cfg->protocol, &p) == 0) conn_flush(c);
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
  const struct bench_mqttc_config *cfg = w->cfg;
  char pl[256];
  int n = cfg->payload(cfg->arg, c->idx, c->seq + 1, now_ns, pl, sizeof pl);
  if (n < 0 || (size_t)n >= sizeof pl) {
    count_err(w, "payload_failed");
    return TD_EINVAL;
  }
  uint16_t pid = 0;
  if (cfg->qos > 0) pid = (uint16_t)(c->free_slots[c->nfree - 1] + 1); /* the caller saw a free slot */
  int rc = td_mqtt_encode_publish(&c->q.out, cfg->protocol, TD_MQTT_STR(BENCH_MQTTC_TOPIC),
                                  (struct td_mqtt_str){pl, (size_t)n}, cfg->qos, false, false, pid, NULL);
  if (rc) {
    count_err(w, rc == TD_ETOOBIG ? "write_buffer_full" : "encode_failed");
    return rc;
  }
  c->seq++;
  if (cfg->qos > 0) {
    c->nfree--;
    c->sent_ns[pid - 1] = now_ns ? now_ns : 1;
    c->inflight++;
    w->inflight_total++;
  }
  atomic_fetch_add_explicit(&w->sent, 1, memory_order_relaxed);
  if (w->seen_phase == BENCH_RUN) w->sent_run++;
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
  for (int i = 0; i < c->w->cfg->window && c->q.out.len < QOS0_HIGH_WATER; i++)
    if (send_publish(c, now)) break;
}

static bool can_send(const struct conn *c) {
  if (c->state != ST_READY) return false;
  if (c->w->cfg->qos > 0) return c->inflight < c->window;
  return c->q.out.len < QOS0_HIGH_WATER;
}

/* Paced mode: spend the token bucket round-robin over connections with room. */
static void paced_send(struct worker *w, uint64_t now_ns) {
  bool precise = w->cfg->precise;
  double dt = (double)(now_ns - w->last_tick_ns) / 1e9;
  w->last_tick_ns = now_ns;
  w->tokens += w->rate * dt;
  double cap = w->rate * w->cfg->burst_s + 1; /* a stall does not turn into a burst: the rate is a ceiling */
  if (w->tokens > cap) w->tokens = cap;
  size_t misses = 0;
  while (w->tokens >= 1 && misses < w->n) {
    struct conn *c = &w->conns[w->rr];
    w->rr = (w->rr + 1) % w->n;
    if (!can_send(c) || send_publish(c, precise ? uv_hrtime() : now_ns)) {
      misses++;
      continue;
    }
    misses = 0;
    w->tokens -= 1;
    if (precise)
      conn_flush(c);
    else
      mark_dirty(c);
  }
  if (w->tokens >= 1) w->no_room++; /* every connection was full or closed this tick */
}

/* ---- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct conn *c = h->data;
  buf->base = (char *)c->rbuf + c->rlen;
  buf->len = RBUF_SIZE - c->rlen;
}

/* CONNACK 0: size the in-flight window and let the next connection start. */
static void on_ready(struct conn *c, const struct td_mqtt_packet *p) {
  struct worker *w = c->w;
  const struct bench_mqttc_config *cfg = w->cfg;
  c->state = ST_READY;
  c->window = (uint16_t)cfg->window;
  if (cfg->protocol == TD_MQTT_V5 && (p->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_RECEIVE_MAXIMUM)) &&
      p->props.receive_maximum < c->window)
    c->window = p->props.receive_maximum;
  if (c->window < w->min_window) w->min_window = c->window;
  if (cfg->qos > 0 && !cfg->idle) {
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
}

static void on_puback(struct conn *c, const struct td_mqtt_packet *p, uint64_t now_ns) {
  struct worker *w = c->w;
  uint16_t slot = (uint16_t)(p->packet_id - 1);
  if (w->cfg->qos == 0 || !c->sent_ns || p->packet_id == 0 || slot >= c->window || c->sent_ns[slot] == 0) {
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
  bench_hist_add(&w->h, now_ns > sent ? (now_ns - sent) / 1000 : 0);
  atomic_fetch_add_explicit(&w->acked, 1, memory_order_relaxed);
  if (w->seen_phase == BENCH_RUN) w->acked_run++;
}

static void on_packet(struct conn *c, const struct td_mqtt_packet *p, uint64_t now_ns) {
  struct worker *w = c->w;
  char k[32];
  switch (p->type) {
  case TD_MQTT_CONNACK:
    if (c->state != ST_CONNACK) {
      w->unexpected++;
      return;
    }
    w->connack[p->reason]++;
    if (p->reason != 0) {
      snprintf(k, sizeof k, "connack_0x%02x", p->reason);
      conn_close(c, k);
      return;
    }
    on_ready(c, p);
    return;
  case TD_MQTT_PUBACK: on_puback(c, p, now_ns); return;
  case TD_MQTT_PINGRESP: w->pingresp++; return;
  case TD_MQTT_DISCONNECT:
    snprintf(k, sizeof k, "server_disconnect_0x%02x", p->reason);
    conn_close(c, k);
    return;
  default: w->unexpected++; return;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = s->data;
  const struct bench_mqttc_config *cfg = c->w->cfg;
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
    int rc = td_mqtt_decode(c->rbuf + off, c->rlen - off, cfg->protocol, RBUF_SIZE, &p, &e);
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
  if (c->state == ST_READY && cfg->qos > 0 && cfg->rate == 0 && !cfg->idle && c->w->seen_phase == BENCH_RUN)
    fill_window(c, now);
  conn_flush(c);
}

/* ---- connecting -------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status) {
  struct conn *c = req->data;
  const struct bench_mqttc_config *cfg = c->w->cfg;
  if (c->state != ST_TCP) return;
  if (status < 0) {
    conn_close(c, uv_err_name(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  const char *tok = cfg->token(cfg->arg, c->idx);
  char cid[48];
  snprintf(cid, sizeof cid, "%s%ld-%u", cfg->client_prefix, (long)getpid(), c->idx);
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_CONNECT;
  p.u.connect.protocol_level = (uint8_t)cfg->protocol;
  p.u.connect.clean_start = true;
  p.u.connect.keep_alive = (uint16_t)cfg->keepalive;
  p.u.connect.client_id = (struct td_mqtt_str){cid, strlen(cid)};
  p.u.connect.has_username = true;
  p.u.connect.username = (struct td_mqtt_str){tok, strlen(tok)};
  if (td_mqtt_encode(&c->q.out, cfg->protocol, &p)) {
    conn_close(c, "encode_connect");
    return;
  }
  c->state = ST_CONNACK;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc < 0) {
    conn_close(c, uv_err_name(rc));
    return;
  }
  conn_flush(c);
}

static void start_one(struct worker *w, struct conn *c) {
  c->w = w;
  c->tcp.data = c;
  c->creq.data = c;
  bench_outq_init(&c->q, w->cfg->wbuf_limit);
  int rc = uv_tcp_init(&w->loop, &c->tcp);
  if (rc < 0) { /* no handle to close */
    count_err(w, uv_err_name(rc));
    c->state = ST_CLOSED;
    c->counted = true;
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
    return;
  }
  w->pending++;
  c->state = ST_TCP;
  rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&w->cfg->addr, on_connect);
  if (rc < 0) conn_close(c, uv_err_name(rc)); /* EMFILE, EADDRNOTAVAIL...: counted, not fatal */
}

static void start_connects(struct worker *w) {
  while (w->seen_phase == BENCH_CONNECT && w->pending < w->pending_limit && w->next < w->n)
    start_one(w, &w->conns[w->next++]);
  if (w->next == w->n) check_connected(w);
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
  const struct bench_mqttc_config *cfg = w->cfg;
  int old = w->seen_phase;
  w->seen_phase = ph;
  uint64_t now = uv_hrtime();
  if (old == BENCH_CONNECT) {
    /* connects still pending at the deadline count as timed out */
    for (size_t i = 0; i < w->n; i++)
      if (w->conns[i].state == ST_TCP || w->conns[i].state == ST_CONNACK) conn_close(&w->conns[i], "connect_timeout");
    for (; w->next < w->n; w->next++) {
      w->conns[w->next].counted = true;
      atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
      count_err(w, "not_started");
    }
  }
  if (ph == BENCH_RUN && !cfg->idle) {
    w->last_tick_ns = now;
    if (cfg->rate == 0)
      for (size_t i = 0; i < w->n; i++) {
        struct conn *c = &w->conns[i];
        if (c->state != ST_READY) continue;
        if (cfg->qos > 0)
          fill_window(c, now);
        else
          qos0_fill(c);
        conn_flush(c);
      }
  }
  if (ph == BENCH_STOP) {
    for (size_t i = 0; i < w->n; i++)
      if (w->conns[i].state == ST_READY) send_control(&w->conns[i], TD_MQTT_DISCONNECT);
    uv_timer_stop(&w->tick);
    uv_timer_stop(&w->ping);
    uv_timer_start(&w->stop, on_stop_timer, 300, 0); /* let DISCONNECTs go out */
  }
}

static void on_tick(uv_timer_t *t) {
  struct worker *w = t->data;
  const struct bench_mqttc_config *cfg = w->cfg;
  int ph = atomic_load(cfg->phase);
  if (ph != w->seen_phase) enter_phase(w, ph);
  if (w->seen_phase == BENCH_STOP) return;
  if (w->seen_phase == BENCH_RUN && !cfg->idle && cfg->rate > 0) paced_send(w, uv_hrtime());
  if (w->seen_phase == BENCH_DRAIN || (w->seen_phase == BENCH_RUN && cfg->idle)) {
    bool idle = true;
    if (cfg->qos > 0)
      idle = w->inflight_total == 0;
    else
      for (size_t i = 0; i < w->n && idle; i++) idle = !w->conns[i].q.writing && w->conns[i].q.out.len == 0;
    if (idle) atomic_store(&w->drained, 1);
  }
  flush_dirty(w);
}

/* Keep-alive: a PINGREQ on every ready connection quiet for half the period. */
static void on_ping(uv_timer_t *t) {
  struct worker *w = t->data;
  uint64_t now = bench_now_ms(), half = (uint64_t)w->cfg->keepalive * 500u;
  for (size_t i = 0; i < w->n; i++) {
    struct conn *c = &w->conns[i];
    if (c->state == ST_READY && now - c->last_send_ms >= half) send_control(c, TD_MQTT_PINGREQ);
  }
}

static void worker_main(void *arg) {
  struct worker *w = arg;
  const struct bench_mqttc_config *cfg = w->cfg;
  w->tick.data = w->ping.data = w->stop.data = w;
  uv_timer_init(&w->loop, &w->tick);
  uv_timer_init(&w->loop, &w->ping);
  uv_timer_init(&w->loop, &w->stop);
  uv_timer_start(&w->tick, on_tick, 1, (cfg->rate > 0 && !cfg->idle) ? 1 : 5);
  if (cfg->keepalive > 0) {
    uint64_t every = (uint64_t)cfg->keepalive * 250u; /* check 4x per period */
    uv_timer_start(&w->ping, on_ping, every, every);
  }
  start_connects(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---- the pool (main thread) -------------------------------------------- */

struct bench_mqttc *bench_mqttc_new(const struct bench_mqttc_config *cfg, size_t n) {
  struct bench_mqttc *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->cfg = *cfg;
  m->n = n;
  int threads = cfg->threads;
  m->workers = calloc((size_t)threads, sizeof *m->workers);
  m->conns = calloc(n, sizeof *m->conns);
  if (!m->workers || !m->conns) {
    bench_mqttc_free(m);
    return NULL;
  }
  size_t per = n / (size_t)threads, extra = n % (size_t)threads, first = 0;
  for (int i = 0; i < threads; i++) {
    struct worker *w = &m->workers[i];
    w->cfg = &m->cfg;
    w->n = per + ((size_t)i < extra ? 1 : 0);
    w->conns = m->conns + first;
    for (size_t j = 0; j < w->n; j++) w->conns[j].idx = (uint32_t)(first + j);
    first += w->n;
    w->pending_limit = (cfg->connect_conc + threads - 1) / threads;
    w->rate = cfg->rate / threads;
    w->min_window = UINT16_MAX;
    w->dirty = calloc(w->n, sizeof *w->dirty);
    if (!w->dirty || uv_loop_init(&w->loop)) {
      free(w->dirty);
      w->dirty = NULL;
      m->cfg.threads = i; /* the loops set up so far */
      bench_mqttc_free(m);
      return NULL;
    }
  }
  return m;
}

int bench_mqttc_start(struct bench_mqttc *m) {
  for (int i = 0; i < m->cfg.threads; i++)
    if (uv_thread_create(&m->workers[i].thr, worker_main, &m->workers[i])) return -1;
  return 0;
}

void bench_mqttc_progress(const struct bench_mqttc *m, struct bench_mqttc_progress *p) {
  memset(p, 0, sizeof *p);
  p->connected = p->drained = true;
  for (int i = 0; i < m->cfg.threads; i++) {
    struct worker *w = &m->workers[i];
    p->ok += atomic_load_explicit(&w->ok, memory_order_relaxed);
    p->failed += atomic_load_explicit(&w->failed, memory_order_relaxed);
    p->sent += atomic_load_explicit(&w->sent, memory_order_relaxed);
    p->acked += atomic_load_explicit(&w->acked, memory_order_relaxed);
    p->connected &= atomic_load(&w->connect_done) != 0;
    p->drained &= atomic_load(&w->drained) != 0;
  }
}

void bench_mqttc_join(struct bench_mqttc *m) {
  for (int i = 0; i < m->cfg.threads; i++) uv_thread_join(&m->workers[i].thr);
}

void bench_mqttc_result(const struct bench_mqttc *m, struct bench_mqttc_result *r) {
  memset(r, 0, sizeof *r);
  r->min_window = m->cfg.window;
  for (int i = 0; i < m->cfg.threads; i++) {
    const struct worker *w = &m->workers[i];
    r->sent += atomic_load(&w->sent);
    r->acked += atomic_load(&w->acked);
    r->ok += atomic_load(&w->ok);
    r->failed += atomic_load(&w->failed);
    r->acked_run += w->acked_run;
    r->sent_run += w->sent_run;
    r->ack_err += w->ack_err;
    r->unexpected += w->unexpected;
    r->pingresp += w->pingresp;
    r->lost_on_close += w->lost_on_close;
    r->closed_by_peer += w->closed_by_peer;
    r->no_room += w->no_room;
    if (w->min_window < r->min_window) r->min_window = w->min_window;
    for (int k = 0; k < 256; k++) {
      r->connack[k] += w->connack[k];
      r->puback_rc[k] += w->puback_rc[k];
    }
    bench_hist_merge(&r->ack, &w->h);
    bench_errkind_merge(r->errs, &r->nerrs, sizeof r->errs / sizeof r->errs[0], w->errs, BENCH_ERRKINDS);
  }
}

void bench_mqttc_free(struct bench_mqttc *m) {
  if (!m) return;
  if (m->workers)
    for (int i = 0; i < m->cfg.threads; i++) {
      uv_loop_close(&m->workers[i].loop);
      free(m->workers[i].dirty);
    }
  free(m->workers);
  free(m->conns);
  free(m);
}
