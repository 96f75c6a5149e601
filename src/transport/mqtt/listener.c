/* listener.c — the MQTT transport's sockets (mqtt.h): one plain and one TLS
 * listener per I/O loop (SO_REUSEPORT, transport/listen.c), connections
 * owned by their loop from accept to close, TLS between the socket and the
 * session through memory BIOs (tls.h), writes, and the connection's end.
 *
 * Reading is flow-controlled (mqtt_conn_update_reading): a connection is read
 * only while its session can take more (not authenticating, not over its
 * pending-uplink or in-flight limits, its downlink not backed up). So the
 * bytes held per connection are at most one read plus one packet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "transport/mqtt/mqtt_int.h"

struct wreq {
  uv_write_t w;
  struct mconn *c;
  size_t len;
  char data[];
};

struct td_ctx *mqtt_ctx(const struct mconn *c) { return c->ml->srv->ctx; }

/* ---- lifecycle ---- */

static void conn_free(struct mconn *c) {
  struct mqtt_loop *ml = c->ml;
  if (c->prev) c->prev->next = c->next;
  else ml->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  ml->nconns--;
  td_tls_conn_free(c->tls);
  free(c->in);
  free(c);
}

static void on_closed(uv_handle_t *h) {
  struct mconn *c = h->data;
  if (++c->nclosed == 3) conn_free(c);
}

void mqtt_conn_close(struct mconn *c) {
  if (c->closing) return;
  c->closing = true;
  c->state = MS_CLOSING;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
  mqtt_session_teardown(c);
  uv_timer_stop(&c->timer);
  uv_timer_stop(&c->retry);
  /* at shutdown td_loop_stop may have closed the handles already */
  uv_handle_t *hs[3] = {(uv_handle_t *)&c->tcp, (uv_handle_t *)&c->timer, (uv_handle_t *)&c->retry};
  for (int i = 0; i < 3; i++) {
    if (uv_is_closing(hs[i])) c->nclosed++;
    else uv_close(hs[i], on_closed);
  }
  /* if none is left to call on_closed, mqtt_stop frees c */
}

static void on_grace(uv_timer_t *t) { mqtt_conn_close(t->data); }

/* close_soon: stop taking input, close once the output is written (bounded by a grace timer). */
static void close_soon(struct mconn *c) {
  if (c->closing) return;
  if (c->tls) td_tls_close_notify(c->tls);
  if (c->closing) return;
  if (c->wbytes == 0) {
    mqtt_conn_close(c);
    return;
  }
  c->close_after_write = true;
  c->state = MS_CLOSING;
  mqtt_conn_update_reading(c);
  uv_timer_start(&c->timer, on_grace, MQTT_DISCONNECT_GRACE_MS, 0);
}

void mqtt_conn_end(struct mconn *c, uint8_t v5_reason) {
  if (c->closing || c->close_after_write) return;
  if (c->level == TD_MQTT_V5 && c->state != MS_WAIT_CONNECT && c->state != MS_AUTH) {
    struct td_buf b;
    td_buf_init(&b, 1024);
    struct td_mqtt_packet d;
    memset(&d, 0, sizeof d);
    d.type = TD_MQTT_DISCONNECT;
    d.reason = v5_reason;
    if (td_mqtt_encode(&b, TD_MQTT_V5, &d) == 0) mqtt_conn_send(c, b.data, b.len);
    td_buf_deinit(&b);
  }
  close_soon(c);
}

/* ---- output ---- */

static void on_written(uv_write_t *w, int status) {
  struct wreq *wr = (struct wreq *)w;
  struct mconn *c = wr->c;
  bool was_high = c->wbytes >= MQTT_WRITE_HIGH;
  c->wbytes -= wr->len;
  free(wr);
  if (c->closing) return;
  if (status < 0) {
    mqtt_conn_close(c);
    return;
  }
  if (c->close_after_write) {
    if (c->wbytes == 0) mqtt_conn_close(c);
    return;
  }
  if (was_high && c->wbytes < MQTT_WRITE_HIGH) {
    mqtt_conn_update_reading(c);
    mqtt_session_process(c);
  }
}

static int raw_write(struct mconn *c, const void *data, size_t len) {
  if (c->closing) return TD_ECLOSED;
  struct wreq *wr = malloc(sizeof *wr + len);
  if (!wr) {
    mqtt_conn_close(c);
    return TD_ENOMEM;
  }
  memcpy(wr->data, data, len);
  wr->c = c;
  wr->len = len;
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
    free(wr);
    mqtt_conn_close(c);
    return TD_EIO;
  }
  c->wbytes += len;
  if (c->wbytes >= MQTT_WRITE_HIGH) mqtt_conn_update_reading(c);
  return 0;
}

int mqtt_conn_send(struct mconn *c, const void *data, size_t len) {
  if (c->closing) return TD_ECLOSED;
  if (!c->tls) return raw_write(c, data, len);
  int rc = td_tls_write(c->tls, data, len);
  if (rc && !c->closing) mqtt_conn_close(c);
  return rc;
}

int mqtt_conn_send_buf(struct mconn *c, struct td_buf *b) {
  int rc = mqtt_conn_send(c, b->data, b->len);
  td_buf_reset(b);
  return rc;
}

/* ---- input ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct mconn *c = h->data;
  /* one buffer per loop: on_read consumes or copies the bytes before returning */
  buf->base = c->ml->rbuf;
  buf->len = MQTT_READ_BUF;
}

/* take_input: append plaintext to the connection's input buffer. */
static int take_input(struct mconn *c, const char *data, size_t n) {
  if (c->in_len + n > c->in_cap) {
    size_t cap = c->in_cap ? c->in_cap : 4096;
    while (cap < c->in_len + n) cap *= 2;
    uint8_t *nb = realloc(c->in, cap);
    if (!nb) return TD_ENOMEM;
    c->in = nb;
    c->in_cap = cap;
  }
  memcpy(c->in + c->in_len, data, n);
  c->in_len += n;
  return 0;
}

/* process_borrowed: nothing was pending, so decode straight from the loop's
 * read buffer (no copy) and keep only what is left (a partial packet, or the
 * rest when back-pressure stopped the decoding) in an owned buffer. Together
 * with mqtt_session_process freeing a drained buffer, an idle connection
 * holds no input buffer at all (4 KiB each before: 40 MB at 10,000 idle
 * connections). */
static void process_borrowed(struct mconn *c, uint8_t *data, size_t n) {
  c->in = data;
  c->in_len = n;
  c->in_cap = 0; /* borrowed: never freed or grown */
  mqtt_session_process(c);
  size_t left = c->closing ? 0 : c->in_len;
  c->in = NULL;
  c->in_len = 0;
  if (left && take_input(c, (const char *)data, left)) mqtt_conn_close(c);
}

static int tls_on_plain(void *ud, const char *data, size_t len) { return take_input(ud, data, len); }
static int tls_on_cipher(void *ud, const char *data, size_t len) { return raw_write(ud, data, len); }

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct mconn *c = s->data;
  if (c->closing) return;
  if (nread < 0) {
    mqtt_conn_close(c);
    return;
  }
  if (nread == 0) return;
  int rc;
  if (c->tls) {
    rc = td_tls_feed(c->tls, buf->base, (size_t)nread);
    if (rc == TD_ECLOSED) {
      mqtt_session_process(c);
      mqtt_conn_close(c);
      return;
    }
    if (rc) {
      td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"TLS handshake or read\" err=%s reason=\"%s\"", c->id,
                     td_errname(rc), td_tls_conn_reason(c->tls));
      mqtt_conn_close(c);
      return;
    }
  } else if (c->in_len == 0) {
    process_borrowed(c, (uint8_t *)buf->base, (size_t)nread);
    return;
  } else {
    rc = take_input(c, buf->base, (size_t)nread);
    if (rc) {
      mqtt_conn_close(c);
      return;
    }
  }
  if (c->closing) return;
  mqtt_session_process(c);
}

void mqtt_conn_update_reading(struct mconn *c) {
  if (c->closing) return;
  bool want = !c->close_after_write && c->state != MS_AUTH && !c->blocked && !c->gw_wait &&
              c->npend < c->ml->srv->max_pending &&
              c->wbytes < MQTT_WRITE_HIGH;
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
      mqtt_conn_close(c);
      return;
    }
    c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
}

/* ---- accept ---- */

static void on_connection(uv_stream_t *ls, int status, bool tls) {
  struct mqtt_loop *ml = ls->data;
  struct mqtt_srv *srv = ml->srv;
  if (status < 0) return;
  struct mconn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->ml = ml;
  c->id = atomic_fetch_add(&srv->next_id, 1) + 1;
  c->level = TD_MQTT_V311;
  c->is_tls = tls;
  c->last_rx_ms = td_mono_ms();
  for (int i = 0; i < SUB_N; i++) c->sub_qos[i] = -1;
  uv_tcp_init(&ml->loop->uv, &c->tcp);
  uv_timer_init(&ml->loop->uv, &c->timer);
  uv_timer_init(&ml->loop->uv, &c->retry);
  c->tcp.data = c->timer.data = c->retry.data = c;
  c->next = ml->conns;
  if (ml->conns) ml->conns->prev = c;
  ml->conns = c;
  ml->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
    mqtt_conn_close(c);
    return;
  }
  if (ml->nconns > srv->max_conns) {
    td_log_limited(1, TD_LOG_WARN, "mqtt", "loop=%d action=accept connections=%d limit reached", ml->loop->index,
                   ml->nconns - 1);
    mqtt_conn_close(c);
    return;
  }
  if (tls) {
    struct td_tls_conn_cbs cbs = {.on_cipher = tls_on_cipher, .on_plain = tls_on_plain};
    if (td_tls_conn_new(srv->tls, &cbs, c, &c->tls)) {
      mqtt_conn_close(c);
      return;
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  mqtt_session_arm_timer(c);
  mqtt_conn_update_reading(c);
}

static void on_plain_conn(uv_stream_t *ls, int status) { on_connection(ls, status, false); }
static void on_tls_conn(uv_stream_t *ls, int status) { on_connection(ls, status, true); }

static int listen_one(struct mqtt_loop *ml, uv_tcp_t *h, const char *addr, int port, bool first, int *bound,
                      uv_connection_cb cb) {
  int fd = td_transport_listen_fd(addr, port, "mqtt", first, bound);
  if (fd < 0) return fd;
  uv_tcp_init(&ml->loop->uv, h);
  h->data = ml;
  if (uv_tcp_open(h, fd) || uv_listen((uv_stream_t *)h, 1024, cb)) {
    uv_close((uv_handle_t *)h, NULL);
    return TD_EIO;
  }
  return 0;
}

static enum td_tls_client_auth client_auth_of(const char *s) {
  if (!strcmp(s, "none")) return TD_TLS_CLIENT_AUTH_NONE;
  if (!strcmp(s, "required")) return TD_TLS_CLIENT_AUTH_REQUIRED;
  return TD_TLS_CLIENT_AUTH_OPTIONAL;
}

static int mqtt_start(struct td_ctx *ctx, void **state) {
  *state = NULL;
  const struct td_config *cfg = ctx->cfg;
  bool plain = cfg->mqtt_bind_port > 0;
  bool tls = cfg->mqtt_ssl_bind_port > 0 && cfg->mqtt_ssl_cert_file[0];
  if (!plain && !tls) return 0;
  if (strcmp(cfg->mqtt_ssl_client_auth, "none") && strcmp(cfg->mqtt_ssl_client_auth, "optional") &&
      strcmp(cfg->mqtt_ssl_client_auth, "required")) {
    td_log(TD_LOG_ERROR, "mqtt", "action=configure key=transport.mqtt.ssl.client_auth value=\"%s\" err=\"want none, optional or required\"",
           cfg->mqtt_ssl_client_auth);
    return TD_EINVAL;
  }
  struct mqtt_srv *srv = calloc(1, sizeof *srv);
  if (!srv) return TD_ENOMEM;
  srv->ctx = ctx;
  srv->nloops = ctx->nloops;
  srv->max_packet = cfg->mqtt_max_payload_size > 0 ? (size_t)cfg->mqtt_max_payload_size : 65536;
  srv->receive_max = cfg->mqtt_max_inflight > 0 ? (cfg->mqtt_max_inflight > 65535 ? 65535 : cfg->mqtt_max_inflight) : 100;
  srv->max_pending = cfg->mqtt_max_pending_uplinks > 0 ? cfg->mqtt_max_pending_uplinks : 100;
  srv->max_conns = cfg->mqtt_max_connections > 0 ? cfg->mqtt_max_connections : 50000;
  srv->connect_timeout_ms = cfg->mqtt_connect_timeout_ms > 0 ? cfg->mqtt_connect_timeout_ms : 10000;
  srv->ml = calloc((size_t)srv->nloops, sizeof *srv->ml);
  if (!srv->ml) {
    free(srv);
    return TD_ENOMEM;
  }
  *state = srv;
  if (tls) {
    struct td_tls_config tc = {.cert_file = cfg->mqtt_ssl_cert_file,
                               .key_file = cfg->mqtt_ssl_key_file[0] ? cfg->mqtt_ssl_key_file : cfg->mqtt_ssl_cert_file,
                               .key_password = cfg->mqtt_ssl_key_password,
                               .ca_file = cfg->mqtt_ssl_ca_file[0] ? cfg->mqtt_ssl_ca_file : NULL,
                               .client_auth = client_auth_of(cfg->mqtt_ssl_client_auth)};
    char err[512] = "";
    int rc = td_tls_ctx_new(&tc, &srv->tls, err, sizeof err);
    if (rc) {
      td_log(TD_LOG_ERROR, "mqtt", "action=\"loading TLS configuration\" err=%s reason=\"%s\"", td_errname(rc), err);
      return rc;
    }
  }
  const char *addr = cfg->mqtt_bind_address[0] ? cfg->mqtt_bind_address : "0.0.0.0";
  int port = cfg->mqtt_bind_port, sport = cfg->mqtt_ssl_bind_port;
  for (int i = 0; i < srv->nloops; i++) {
    struct mqtt_loop *ml = &srv->ml[i];
    ml->srv = srv;
    ml->loop = &ctx->loops[i];
    int bound = 0, rc;
    if (plain) {
      if ((rc = listen_one(ml, &ml->plain, addr, port, i == 0, &bound, on_plain_conn))) return rc;
      ml->plain_on = true;
      port = bound;
    }
    if (tls) {
      if ((rc = listen_one(ml, &ml->tls, addr, sport, i == 0, &bound, on_tls_conn))) return rc;
      ml->tls_on = true;
      sport = bound;
    }
  }
  srv->port = plain ? port : 0;
  srv->ssl_port = tls ? sport : 0;
  td_log(TD_LOG_INFO, "mqtt", "action=listen address=%s port=%d ssl_port=%d loops=%d max_packet=%zu", addr, srv->port,
         srv->ssl_port, srv->nloops, srv->max_packet);
  return 0;
}

/* mqtt_stop: after the loops stopped (their handles were closed by
 * td_loop_stop, without callbacks): free the connections that remain. Work
 * still out (a pend waiting for the queue) finished before the loops
 * stopped, since the queue and the storage pool close first. */
static void mqtt_stop(void *state) {
  struct mqtt_srv *srv = state;
  if (!srv) return;
  srv->stopping = true;
  for (int i = 0; i < srv->nloops; i++) {
    struct mqtt_loop *ml = &srv->ml[i];
    while (ml->conns) {
      struct mconn *c = ml->conns;
      if (!c->closing) {
        c->closing = true;
        mqtt_session_teardown(c);
      }
      c->nclosed = 3;
      conn_free(c);
    }
  }
  td_tls_ctx_free(srv->tls);
  free(srv->ml);
  free(srv);
}

void td_mqtt_ports(void *state, int *plain, int *tls) {
  struct mqtt_srv *srv = state;
  *plain = srv ? srv->port : 0;
  *tls = srv ? srv->ssl_port : 0;
}

const struct td_transport_ops td_mqtt_transport = {.name = "mqtt", .start = mqtt_start, .stop = mqtt_stop};
