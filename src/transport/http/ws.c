/* ws.c — WebSocket connections on the HTTP server (ws.h): the handshake,
 * reading frames (ws_codec.c) into messages, pings, the close handshake and
 * the bounded send queue.
 *
 * Where it sits: a route handler calls td_ws_accept(); server.c hands the
 * connection over (td_http__conn_upgrade, ws_int.h) and from then on routes
 * its reads, timer ticks and its end here. Everything runs on the loop
 * thread that owns the connection.
 *
 * Lifetime: struct td_ws lives until server.c reports the connection's
 * handles closed (td_ws__conn_gone); on_close is called there and only there,
 * so it always runs from a libuv close callback (or from
 * td_http_server_free after the loops stopped), never from inside a call the
 * application made. The send queue is libuv's write queue: each frame is one
 * uv_write, counted from uv_write until its callback. The 101 answer is the
 * first write; bytes that arrived with the request, and reading, start only
 * once it is written, so on_text never runs before td_ws_accept returned.
 *
 * Closing: we send a close frame (ours, or the echo of the peer's code) and
 * then close the socket once the peer's close has arrived and ours is
 * written; after a protocol error, a missing pong or the peer's close, once
 * ours is written. The connection's timer, which ticks pings before, then
 * gives the peer CLOSE_GRACE_MS before the socket is closed regardless. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "base/assert.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "transport/http/ws_int.h"

#define CLOSE_GRACE_MS 5000
#define DEFAULT_MAX_MESSAGE 65536
#define DEFAULT_MAX_MSGS 1000
#define DEFAULT_MAX_BYTES (4u << 20)
#define DEFAULT_PING_MS 30000
#define KEEP_MSG_BUF 16384 /* a reassembly buffer larger than this is freed after its message */
#define MAX_PENDING_IN 65536

enum wkind { W_HANDSHAKE, W_TEXT, W_CONTROL, W_CLOSE };

struct td_ws {
  struct conn *conn;          /* NULL once gone */
  uv_stream_t *stream;
  struct td_loop *loop;
  unsigned id;
  struct td_ws_config cfg;
  struct td_ws_ops ops;
  void *user;
  struct td_ws_parser parser;
  struct td_buf msg;          /* text message being reassembled (limit max_message) */
  char *pending_in;           /* bytes read before the 101 was written */
  size_t pending_len;
  /* sending */
  size_t q_msgs, q_bytes;     /* text frames not yet written (the limits) */
  size_t out_bytes;           /* every frame not yet written (reading pauses past max_queued_bytes) */
  /* state */
  bool handshake_done;        /* the 101 is written: frames are read */
  bool read_paused;           /* back-pressure: too much unwritten */
  bool awaiting_pong;
  bool close_sent;            /* our close frame is queued: nothing else goes out */
  bool close_written;
  bool close_received;
  bool failed;                /* protocol error / ping timeout: close once ours is written */
  bool sock_closed;           /* td_http__conn_close called */
  int close_code;             /* first code sent or received; 0 = none yet */
};

struct wout {
  uv_write_t w;
  struct td_ws *ws;
  enum wkind kind;
  size_t len;
  size_t nmsgs; /* W_TEXT: text messages in data */
  char data[];
};

static void feed(struct td_ws *ws, char *data, size_t n);

/* ---- socket ---- */

static void sock_close(struct td_ws *ws) {
  if (ws->sock_closed || !ws->conn) return;
  ws->sock_closed = true;
  td_http__conn_close(ws->conn);
}

static bool want_read(const struct td_ws *ws) {
  return ws->conn && ws->handshake_done && !ws->sock_closed && !ws->failed && !ws->close_received &&
         !ws->read_paused;
}

static void update_reading(struct td_ws *ws) {
  if (!ws->conn || ws->sock_closed) return;
  /* back-pressure: a peer that sends (pings, commands) but does not read
   * what we answer is not read any further until the answers drain */
  ws->read_paused = ws->out_bytes >= ws->cfg.max_queued_bytes || ws->q_msgs >= ws->cfg.max_queued_msgs;
  td_http__conn_reading(ws->conn, want_read(ws));
}

static void handshake_written(struct td_ws *ws) {
  ws->handshake_done = true;
  if (ws->cfg.ping_interval_ms > 0 && !ws->close_sent)
    td_http__conn_timer(ws->conn, (uint64_t)ws->cfg.ping_interval_ms);
  if (ws->pending_in) {
    char *d = ws->pending_in;
    size_t n = ws->pending_len;
    ws->pending_in = NULL;
    ws->pending_len = 0;
    feed(ws, d, n);
    free(d);
  }
}

static void on_written(uv_write_t *w, int status) {
  struct wout *o = (struct wout *)w;
  struct td_ws *ws = o->ws;
  enum wkind kind = o->kind;
  ws->out_bytes -= o->len;
  if (kind == W_TEXT) {
    ws->q_msgs -= o->nmsgs;
    ws->q_bytes -= o->len;
  }
  free(o);
  if (!ws->conn || ws->sock_closed) return;
  if (status < 0) {
    sock_close(ws);
    return;
  }
  if (kind == W_HANDSHAKE) handshake_written(ws);
  else if (kind == W_CLOSE) ws->close_written = true;
  if (ws->close_written && (ws->close_received || ws->failed)) {
    sock_close(ws);
    return;
  }
  update_reading(ws);
}

/* submit: one write of o (filled by the caller; it is freed here or by
 * on_written). 0 or TD_ECLOSED (the socket is being closed then). */
static int submit(struct td_ws *ws, struct wout *o) {
  o->ws = ws;
  uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
  if (uv_write(&o->w, ws->stream, &b, 1, on_written)) {
    free(o);
    sock_close(ws);
    return TD_ECLOSED;
  }
  ws->out_bytes += o->len;
  if (o->kind == W_TEXT) {
    ws->q_msgs += o->nmsgs;
    ws->q_bytes += o->len;
  }
  return 0;
}

/* send_raw: one write of hdr + payload. 0, TD_ENOMEM or TD_ECLOSED. */
static int send_raw(struct td_ws *ws, enum wkind kind, const void *hdr, size_t hl, const void *payload, size_t len) {
  if (!ws->conn || ws->sock_closed) return TD_ECLOSED;
  struct wout *o = malloc(sizeof *o + hl + len);
  if (!o) return TD_ENOMEM;
  memcpy(o->data, hdr, hl);
  if (len) memcpy(o->data + hl, payload, len);
  o->kind = kind;
  o->len = hl + len;
  o->nmsgs = 0;
  return submit(ws, o);
}

static int send_frame(struct td_ws *ws, enum wkind kind, int opcode, const void *payload, size_t len) {
  uint8_t hdr[TD_WS_MAX_HEADER];
  size_t hl = td_ws__encode_header(hdr, opcode, true, len, NULL);
  return send_raw(ws, kind, hdr, hl, payload, len);
}

/* send_close: queue our close frame (once) and give the peer CLOSE_GRACE_MS. */
static void send_close(struct td_ws *ws, int code, const char *reason) {
  if (ws->close_sent || ws->sock_closed || !ws->conn) return;
  ws->close_sent = true;
  if (!ws->close_code) ws->close_code = code;
  uint8_t payload[TD_WS_MAX_CONTROL];
  size_t len = td_ws__close_payload(payload, code, reason);
  if (send_frame(ws, W_CLOSE, TD_WS_OP_CLOSE, payload, len)) {
    sock_close(ws);
    return;
  }
  td_http__conn_timer(ws->conn, CLOSE_GRACE_MS);
}

/* fail: the peer broke the protocol (or stopped answering pings): one log
 * line, our close frame with the code, the socket closed once it is written. */
static void fail(struct td_ws *ws, int code, const char *why, const char *doing) {
  td_log_limited(5, TD_LOG_INFO, "ws", "conn=%u action=\"%s\" close=%d reason=\"%s\"", ws->id, doing, code, why);
  ws->failed = true;
  if (!ws->close_sent) send_close(ws, code, why);
  else if (ws->close_written) sock_close(ws);
  update_reading(ws);
}

/* ---- reading ---- */

static void on_data(struct td_ws *ws, const struct td_ws_event *ev) {
  if (ws->close_sent) return; /* closing: messages still in flight are dropped */
  if (ev->opcode == TD_WS_OP_BINARY) {
    fail(ws, TD_WS_CLOSE_UNSUPPORTED, "binary messages are not supported", "reading message");
    return;
  }
  if (ev->len && td_buf_append(&ws->msg, ev->data, ev->len)) {
    /* the parser keeps messages within max_message, so only memory can fail */
    fail(ws, TD_WS_CLOSE_INTERNAL, "out of memory", "reading message");
    return;
  }
  if (!ev->last) return;
  size_t len = ws->msg.len;
  const char *text = len ? ws->msg.data : "";
  ws->ops.on_text(ws, ws->user, text, len);
  if (ws->msg.cap > KEEP_MSG_BUF) td_buf_deinit(&ws->msg);
  else td_buf_reset(&ws->msg);
}

static void on_peer_close(struct td_ws *ws, int code) {
  ws->close_received = true;
  if (!ws->close_code) ws->close_code = code;
  /* echo the code (an empty close frame for none), then close once written */
  if (!ws->close_sent) send_close(ws, code, NULL);
  else if (ws->close_written) sock_close(ws);
}

static void feed(struct td_ws *ws, char *data, size_t n) {
  while (n > 0 && ws->conn && !ws->sock_closed && !ws->failed && !ws->close_received) {
    struct td_ws_event ev;
    int rc = td_ws__parse(&ws->parser, (uint8_t *)data, n, &ev);
    if (rc < 0) {
      fail(ws, ws->parser.error_code, ws->parser.error, "reading frame");
      return;
    }
    data += rc;
    n -= (size_t)rc;
    switch (ev.type) {
    case TD_WS_EV_NONE: break;
    case TD_WS_EV_DATA: on_data(ws, &ev); break;
    case TD_WS_EV_PING:
      if (!ws->close_sent && send_frame(ws, W_CONTROL, TD_WS_OP_PONG, ev.data, ev.len) == TD_ENOMEM) sock_close(ws);
      break;
    case TD_WS_EV_PONG: ws->awaiting_pong = false; break;
    case TD_WS_EV_CLOSE: on_peer_close(ws, ev.close_code); break;
    }
  }
  update_reading(ws);
}

void td_ws__on_read(struct td_ws *ws, char *data, ssize_t n) {
  if (n < 0) {
    /* EOF or error: a peer that closed without a close frame gets 1006
     * (unless a close was already sent or received) */
    sock_close(ws);
    return;
  }
  if (!ws->handshake_done) {
    /* reading is off until the 101 is written; keep anything that came anyway */
    if (ws->pending_len + (size_t)n > MAX_PENDING_IN) {
      sock_close(ws);
      return;
    }
    char *nb = realloc(ws->pending_in, ws->pending_len + (size_t)n);
    if (!nb) {
      sock_close(ws);
      return;
    }
    memcpy(nb + ws->pending_len, data, (size_t)n);
    ws->pending_in = nb;
    ws->pending_len += (size_t)n;
    return;
  }
  feed(ws, data, (size_t)n);
}

void td_ws__on_timer(struct td_ws *ws) {
  if (!ws->conn || ws->sock_closed) return;
  if (ws->close_sent) {
    td_log(TD_LOG_DEBUG, "ws", "conn=%u action=closing close grace expired", ws->id);
    sock_close(ws);
    return;
  }
  if (ws->awaiting_pong) {
    fail(ws, TD_WS_CLOSE_GOING_AWAY, "no pong", "waiting for pong");
    return;
  }
  if (!ws->handshake_done) return;
  ws->awaiting_pong = true;
  if (send_frame(ws, W_CONTROL, TD_WS_OP_PING, NULL, 0) == TD_ENOMEM) sock_close(ws);
}

void td_ws__server_stopping(struct td_ws *ws) {
  if (!ws->conn || ws->sock_closed) return;
  td_ws_close(ws, TD_WS_CLOSE_GOING_AWAY, "server is shutting down");
  /* the loop stops soon: close once our close frame is written instead of
   * waiting for the peer's, so that on_close runs on the loop */
  ws->failed = true;
  if (ws->close_written) sock_close(ws);
  update_reading(ws);
}

void td_ws__conn_gone(struct td_ws *ws) {
  ws->conn = NULL;
  ws->sock_closed = true;
  int code = ws->close_code ? ws->close_code : TD_WS_CLOSE_ABNORMAL;
  td_log(TD_LOG_DEBUG, "ws", "conn=%u action=closed code=%d", ws->id, code);
  if (ws->ops.on_close) ws->ops.on_close(ws, ws->user, code);
  td_buf_deinit(&ws->msg);
  free(ws->pending_in);
  free(ws);
}

/* ---- handshake ---- */

/* has_token: a comma-separated header value contains tok (case-insensitive). */
static bool has_token(const char *v, const char *tok) {
  size_t tl = strlen(tok);
  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',') v++;
    const char *e = v;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > v && (t[-1] == ' ' || t[-1] == '\t')) t--;
    if ((size_t)(t - v) == tl && !strncasecmp(v, tok, tl)) return true;
    v = e;
  }
  return false;
}

/* trimmed: header value without surrounding blanks, as (*s, *n). */
static void trimmed(const char *v, const char **s, size_t *n) {
  while (*v == ' ' || *v == '\t') v++;
  size_t l = strlen(v);
  while (l && (v[l - 1] == ' ' || v[l - 1] == '\t')) l--;
  *s = v;
  *n = l;
}

static bool version_13(const struct td_http_req *r) {
  const char *v = td_http_header_get(r, "sec-websocket-version");
  if (!v) return false;
  const char *s;
  size_t n;
  trimmed(v, &s, &n);
  return n == 2 && !memcmp(s, "13", 2);
}

bool td_ws_is_upgrade(const struct td_http_req *r) {
  if (!r || r->method != TD_HTTP_GET) return false;
  const char *up = td_http_header_get(r, "upgrade");
  const char *conn = td_http_header_get(r, "connection");
  return up && conn && has_token(up, "websocket") && has_token(conn, "upgrade") &&
         td_http_header_get(r, "sec-websocket-key") && version_13(r);
}

struct td_ws *td_ws_accept(struct td_http_req *r, const struct td_ws_config *cfg, const struct td_ws_ops *ops,
                           void *user) {
  TD_ASSERT(r && ops && ops->on_text && ops->on_close);
  struct http_req *q = (struct http_req *)r;
  if (!q->conn) {
    td_http_respond(r, 400, NULL, NULL, 0); /* dropped: only frees r */
    return NULL;
  }
  if (!td_ws_is_upgrade(r) || r->body_len) {
    const char *v = td_http_header_get(r, "sec-websocket-version");
    if (r->method == TD_HTTP_GET && v && !version_13(r)) {
      /* RFC 6455 §4.4: say which version we speak */
      td_http_respond_with_header(r, 426, NULL, "Sec-WebSocket-Version: 13", NULL, 0);
    } else {
      td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Bad WebSocket handshake");
    }
    return NULL;
  }
  const char *key;
  size_t key_len;
  trimmed(td_http_header_get(r, "sec-websocket-key"), &key, &key_len);
  char accept[TD_WS_ACCEPT_LEN + 1];
  if (td_ws__accept_key(key, key_len, accept)) {
    td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Bad Sec-WebSocket-Key");
    return NULL;
  }
  struct td_ws *ws = calloc(1, sizeof *ws);
  if (!ws) {
    td_http_respond_error(r, 503, TD_TB_GENERAL, "Out of memory");
    return NULL;
  }
  if (cfg) ws->cfg = *cfg;
  else ws->cfg.ping_interval_ms = DEFAULT_PING_MS;
  if (!ws->cfg.max_message) ws->cfg.max_message = DEFAULT_MAX_MESSAGE;
  if (!ws->cfg.max_queued_msgs) ws->cfg.max_queued_msgs = DEFAULT_MAX_MSGS;
  if (!ws->cfg.max_queued_bytes) ws->cfg.max_queued_bytes = DEFAULT_MAX_BYTES;
  if (ws->cfg.ping_interval_ms < 0) ws->cfg.ping_interval_ms = 0;
  ws->ops = *ops;
  ws->user = user;
  td_ws__parser_init(&ws->parser, ws->cfg.max_message, true);
  td_buf_init(&ws->msg, ws->cfg.max_message);

  struct td_http_conn_io io;
  if (td_http__conn_upgrade(q, ws, &io)) { /* frees q */
    td_buf_deinit(&ws->msg);
    free(ws);
    return NULL;
  }
  ws->conn = io.conn;
  ws->stream = io.stream;
  ws->loop = io.loop;
  ws->id = io.id;
  ws->pending_in = io.leftover;
  ws->pending_len = io.left_len;

  /* no Sec-WebSocket-Protocol: we select no subprotocol, whatever was offered */
  char resp[256];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  td_log(TD_LOG_DEBUG, "ws", "conn=%u action=upgrade max_message=%zu", ws->id, ws->cfg.max_message);
  if (send_raw(ws, W_HANDSHAKE, resp, (size_t)n, NULL, 0) == TD_ENOMEM) sock_close(ws);
  return ws; /* on_close follows even if the socket is already closing */
}

/* ---- application side ---- */

int td_ws_send_texts(struct td_ws *ws, const struct iovec *msgs, size_t n) {
  TD_ASSERT(ws && (msgs || !n));
  if (!ws->conn || ws->sock_closed || ws->close_sent) return TD_ECLOSED;
  /* a text frame that is not UTF-8 would make the peer fail the connection:
   * such a message is left out */
  uint8_t hdr[TD_WS_MAX_HEADER];
  size_t total = 0, sent = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    TD_ASSERT(msgs[i].iov_base || !msgs[i].iov_len);
    if (msgs[i].iov_len && !td_ws__utf8_valid(msgs[i].iov_base, msgs[i].iov_len)) {
      bad = 1;
      continue;
    }
    total += td_ws__encode_header(hdr, TD_WS_OP_TEXT, true, msgs[i].iov_len, NULL) + msgs[i].iov_len;
    sent++;
  }
  if (!sent) return bad ? TD_EINVAL : 0;
  if (ws->q_msgs + sent > ws->cfg.max_queued_msgs || ws->q_bytes + total > ws->cfg.max_queued_bytes) return TD_EFULL;
  struct wout *o = malloc(sizeof *o + total);
  if (!o) return TD_ENOMEM;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = msgs[i].iov_len;
    if (bad && len && !td_ws__utf8_valid(msgs[i].iov_base, len)) continue; /* checked again only then */
    at += td_ws__encode_header((uint8_t *)o->data + at, TD_WS_OP_TEXT, true, len, NULL);
    if (len) memcpy(o->data + at, msgs[i].iov_base, len);
    at += len;
  }
  TD_ASSERT(at == total);
  o->kind = W_TEXT;
  o->len = total;
  o->nmsgs = sent;
  int rc = submit(ws, o);
  if (!rc) update_reading(ws);
  return rc ? rc : bad ? TD_EINVAL : 0;
}

int td_ws_send_text(struct td_ws *ws, const char *data, size_t len) {
  struct iovec v = {.iov_base = (void *)data, .iov_len = len};
  return td_ws_send_texts(ws, &v, 1);
}

void td_ws_close(struct td_ws *ws, int code, const char *reason) {
  if (!ws || !ws->conn || ws->close_sent || ws->sock_closed) return;
  if (!td_ws__close_code_valid(code)) code = TD_WS_CLOSE_NORMAL;
  td_log(TD_LOG_DEBUG, "ws", "conn=%u action=close code=%d", ws->id, code);
  send_close(ws, code, reason);
  update_reading(ws);
}

struct td_loop *td_ws_loop(const struct td_ws *ws) { return ws->loop; }

size_t td_ws_queued(const struct td_ws *ws) { return ws->q_msgs; }
