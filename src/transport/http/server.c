/* server.c — the HTTP/1.1 server on the I/O loops (http.h).
 *
 * One listening socket per loop (SO_REUSEPORT set by hand before bind, since
 * libuv 1.44 has no flag), connections owned by their loop from accept to
 * close. One request at a time per connection: reading stops while a request
 * is with its handler (back-pressure), bytes of a pipelined next request stay
 * in a buffer of at most one read (64 KiB) and are parsed after the answer has
 * been written. A request is freed only when it is answered; if its
 * connection closed meanwhile the answer is dropped. Everything here runs on
 * the loop thread, except td_http_server_stop_accepting which posts to it.
 *
 * A WebSocket route hands its connection over (td_http__conn_upgrade, for
 * ws.c): the connection stays in the loop's list, so max_connections counts
 * it and the server frees it, but its reads, timer ticks and end go to ws.c.
 * Any other request that asks for a protocol upgrade is answered and the
 * connection closed: llhttp would only report the upgrade again on the next
 * bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "transport/http/http_int.h"
#include "transport/http/ws_int.h"
#include "transport/transport.h"

#define READ_BUF 65536

struct srv_loop {
  struct td_http_server *srv;
  struct td_loop *loop;
  uv_tcp_t listener;
  bool listening;
  int nconns;
  struct conn *conns;
  struct td_task stop_task;
  char rbuf[READ_BUF];
};

struct td_http_server {
  struct td_http_server_config cfg;
  char bind[64];
  struct td_http_router *rt;
  int port;
  int nloops;
  struct srv_loop *sl;
  atomic_uint next_id;
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct srv_loop *sl;
  struct conn *prev, *next;
  struct td_http_reqparser rp;
  struct http_req *pending;
  char *leftover;
  size_t left_len;
  struct td_ws *ws;             /* upgraded: ws.c owns reading, writing and the timer */
  unsigned id;
  int nclosed;
  bool closing;
  bool close_after_write;
  bool writing;
  bool reading;
};

struct wreq {
  uv_write_t w;
  struct conn *c;
  bool close;
  size_t len;
  char data[];
};

static void process_bytes(struct conn *c, const char *data, size_t n);

/* ---- connection lifecycle ---- */

static void conn_free(struct conn *c) {
  struct srv_loop *sl = c->sl;
  if (c->prev) c->prev->next = c->next;
  else sl->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  sl->nconns--;
  if (c->ws) {
    struct td_ws *ws = c->ws;
    c->ws = NULL;
    td_ws__conn_gone(ws); /* its on_close runs here, from a close callback or td_http_server_free */
  }
  td_http__parser_deinit(&c->rp);
  free(c->leftover);
  free(c);
}

static void on_conn_closed(uv_handle_t *h) {
  struct conn *c = h->data;
  if (++c->nclosed == 2) conn_free(c);
}

static void stop_reading(struct conn *c) {
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static void conn_close(struct conn *c) {
  if (c->closing) return;
  c->closing = true;
  /* td_loop_stop closed every handle already: the server frees c later */
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  if (c->pending) {
    td_log(TD_LOG_DEBUG, "http", "conn=%u action=close unanswered request detached", c->id);
    c->pending->conn = NULL; /* its answer will be dropped */
    c->pending = NULL;
  }
  stop_reading(c);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_idle(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->ws) {
    td_ws__on_timer(c->ws);
    return;
  }
  if (!c->pending && !c->writing) {
    td_log(TD_LOG_DEBUG, "http", "conn=%u action=\"waiting for request\" idle timeout", c->id);
    conn_close(c);
  }
}

static void arm_idle(struct conn *c) {
  int ms = c->sl->srv->cfg.idle_timeout_ms;
  uv_timer_start(&c->timer, on_idle, (uint64_t)(ms > 0 ? ms : 60000), 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  struct conn *c = h->data;
  /* one buffer per loop: read_cb consumes or copies the bytes before returning */
  buf->base = c->sl->rbuf;
  buf->len = READ_BUF;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = s->data;
  if (c->ws) {
    if (nread != 0) td_ws__on_read(c->ws, buf->base, nread);
    return;
  }
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (c->pending || c->writing) {
    /* A request is being handled: keep what arrives (a pipelined request)
     * but stop reading once one read's worth is buffered. Reading on lets us
     * see the client go away during a long answer. */
    char *nb = realloc(c->leftover, c->left_len + (size_t)nread);
    if (!nb) {
      conn_close(c);
      return;
    }
    memcpy(nb + c->left_len, buf->base, (size_t)nread);
    c->leftover = nb;
    c->left_len += (size_t)nread;
    if (c->left_len >= READ_BUF) stop_reading(c);
    return;
  }
  process_bytes(c, buf->base, (size_t)nread);
}

static void start_reading(struct conn *c) {
  if (c->closing || c->reading) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) conn_close(c);
  else c->reading = true;
}

/* resume: after an answer is written, parse what was already received, then read more. */
static void resume(struct conn *c) {
  if (c->closing) return;
  arm_idle(c);
  if (c->leftover) {
    char *data = c->leftover;
    size_t n = c->left_len;
    c->leftover = NULL;
    c->left_len = 0;
    process_bytes(c, data, n);
    free(data);
    if (c->closing || c->pending || c->writing) return;
  }
  start_reading(c);
}

/* ---- answers ---- */

static const char *status_text(int s) {
  switch (s) {
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

static void on_written(uv_write_t *w, int status) {
  struct wreq *wr = (struct wreq *)w;
  struct conn *c = wr->c;
  bool close = wr->close || status < 0;
  free(wr);
  c->writing = false;
  if (c->closing) return;
  if (close) conn_close(c);
  else resume(c);
}

/* send_response: write one full response on c (no request needed). */
static void send_response(struct conn *c, int status, const char *ctype, const char *extra, const char *body,
                          size_t len, bool head, bool keep) {
  char hdr[512];
  int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\nConnection: %s\r\n", status,
                    status_text(status), ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", len,
                    keep ? "keep-alive" : "close");
  if (hl < 0 || (size_t)hl >= sizeof hdr) hl = 0;
  size_t el = extra ? strlen(extra) : 0;
  size_t bl = head ? 0 : len;
  struct wreq *wr = malloc(sizeof *wr + (size_t)hl + el + 4 + bl);
  if (!wr) {
    conn_close(c);
    return;
  }
  size_t n = 0;
  memcpy(wr->data, hdr, (size_t)hl);
  n += (size_t)hl;
  if (el) {
    memcpy(wr->data + n, extra, el);
    n += el;
    memcpy(wr->data + n, "\r\n", 2);
    n += 2;
  }
  memcpy(wr->data + n, "\r\n", 2);
  n += 2;
  if (bl) memcpy(wr->data + n, body, bl);
  n += bl;
  wr->c = c;
  wr->close = !keep;
  wr->len = n;
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
  c->writing = true;
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
    c->writing = false;
    free(wr);
    conn_close(c);
  }
}

static void respond_common(struct td_http_req *r, int status, const char *ctype, const char *extra, const char *body,
                           size_t len) {
  struct http_req *q = (struct http_req *)r;
  struct conn *c = q->conn;
  if (c) {
    c->pending = NULL;
    bool keep = q->keep_alive && !c->close_after_write;
    send_response(c, status, ctype, extra, body, len, q->head, keep);
  }
  td_http__req_free(q);
}

void td_http_respond(struct td_http_req *r, int status, const char *content_type, const char *body, size_t len) {
  respond_common(r, status, content_type, NULL, body, body ? len : 0);
}

void td_http_respond_with_header(struct td_http_req *r, int status, const char *content_type, const char *extra_header,
                                 const char *body, size_t len) {
  respond_common(r, status, content_type, extra_header, body, body ? len : 0);
}

void td_http_respond_json_take(struct td_http_req *r, int status, char *body, size_t len) {
  respond_common(r, status, "application/json", NULL, body, body ? len : 0);
  free(body);
}

static int error_json(struct td_buf *b, int status, int code, const char *message) {
  int rc = td_buf_printf(b, "{\"status\":%d,\"message\":", status);
  if (!rc) rc = td_buf_json_str(b, message ? message : "");
  if (!rc) rc = td_buf_printf(b, ",\"errorCode\":%d,\"timestamp\":%lld}", code, (long long)td_now_ms());
  return rc;
}

void td_http_respond_error(struct td_http_req *r, int status, int error_code, const char *message) {
  struct td_buf b;
  td_buf_init(&b, 1 << 16);
  if (error_json(&b, status, error_code, message)) {
    td_buf_reset(&b);
    td_buf_printf(&b, "{\"status\":%d,\"errorCode\":%d}", status, error_code);
  }
  respond_common(r, status, "application/json", NULL, b.data, b.len);
  td_buf_deinit(&b);
}

int td_http_status_of(int err, int *tb_code) {
  int st, code;
  switch (err) {
  case TD_ENOTFOUND: st = 404; code = TD_TB_ITEM_NOT_FOUND; break;
  case TD_EPERM: st = 403; code = TD_TB_PERMISSION_DENIED; break;
  case TD_EAUTH: st = 401; code = TD_TB_AUTHENTICATION; break;
  case TD_EINVAL:
  case TD_EPROTO: st = 400; code = TD_TB_BAD_REQUEST_PARAMS; break;
  case TD_EEXIST: st = 400; code = TD_TB_INVALID_ARGUMENTS; break;
  case TD_ECONFLICT: st = 409; code = TD_TB_VERSION_CONFLICT; break;
  case TD_ETOOBIG: st = 413; code = TD_TB_BAD_REQUEST_PARAMS; break;
  case TD_EFULL:
  case TD_EAGAIN:
  case TD_EBUSY: st = 503; code = TD_TB_GENERAL; break;
  default: st = 500; code = TD_TB_GENERAL; break;
  }
  if (tb_code) *tb_code = code;
  return st;
}

/* ---- requests ---- */

static void dispatch(struct conn *c, struct http_req *q) {
  c->pending = q;
  q->conn = c;
  q->r.loop = c->sl->loop;
  uv_timer_stop(&c->timer);
  if (c->rp.llp.upgrade) c->close_after_write = true; /* see the top of this file */
  if (q->status == 404) {
    td_http_respond_error(&q->r, 404, TD_TB_ITEM_NOT_FOUND, "Not Found");
  } else if (q->status) {
    td_http_respond_error(&q->r, 405, TD_TB_GENERAL, "Request method is not supported");
  } else {
    td_http__route_handler(q->route)(&q->r);
  }
}

static void parse_failed(struct conn *c) {
  int st = c->rp.error_status ? c->rp.error_status : 400;
  td_log_limited(5, TD_LOG_INFO, "http", "conn=%u action=\"reading request\" status=%d reason=\"%s\"", c->id, st,
                 c->rp.error_reason ? c->rp.error_reason : "malformed");
  c->close_after_write = true;
  stop_reading(c);
  if (st == 413) {
    struct td_buf b;
    td_buf_init(&b, 1 << 12);
    error_json(&b, 413, TD_TB_BAD_REQUEST_PARAMS, "Payload Too Large");
    send_response(c, 413, "application/json", NULL, b.data, b.len, false, false);
    td_buf_deinit(&b);
  } else {
    send_response(c, st, NULL, NULL, NULL, 0, false, false);
  }
}

static void process_bytes(struct conn *c, const char *data, size_t n) {
  while (n > 0 && !c->closing && !c->close_after_write) {
    size_t used = 0;
    int rc = td_http__parser_feed(&c->rp, data, n, &used);
    if (rc == 0) return;
    if (rc < 0) {
      parse_failed(c);
      return;
    }
    struct http_req *q = td_http__parser_take(&c->rp);
    data += used;
    n -= used;
    if (n > 0) {
      /* pipelined bytes: kept (at most one read's worth) until the answer is written */
      c->leftover = malloc(n);
      if (!c->leftover) {
        td_http__req_free(q);
        conn_close(c);
        return;
      }
      memcpy(c->leftover, data, n);
      c->left_len = n;
      if (n >= READ_BUF) stop_reading(c);
    }
    dispatch(c, q);
    return;
  }
}

static void on_connection(uv_stream_t *ls, int status) {
  struct srv_loop *sl = ls->data;
  if (status < 0) return;
  struct conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->sl = sl;
  c->id = atomic_fetch_add(&sl->srv->next_id, 1) + 1;
  uv_tcp_init(&sl->loop->uv, &c->tcp);
  uv_timer_init(&sl->loop->uv, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  td_http__parser_init(&c->rp, sl->srv->rt, sl->srv->cfg.max_body, sl->srv->cfg.max_header_bytes);
  c->next = sl->conns;
  if (sl->conns) sl->conns->prev = c;
  sl->conns = c;
  sl->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  int maxc = sl->srv->cfg.max_connections > 0 ? sl->srv->cfg.max_connections : 10000;
  if (sl->nconns > maxc) {
    td_log_limited(1, TD_LOG_WARN, "http", "loop=%d action=accept connections=%d limit reached", sl->loop->index,
                   sl->nconns - 1);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  arm_idle(c);
  start_reading(c);
}

/* ---- listeners ---- */

static int listen_on(struct srv_loop *sl, const char *addr, int port, bool first, int *bound) {
  int fd = td_transport_listen_fd(addr, port, "http", first, bound);
  if (fd < 0) return fd;
  uv_tcp_init(&sl->loop->uv, &sl->listener);
  sl->listener.data = sl;
  if (uv_tcp_open(&sl->listener, fd) || uv_listen((uv_stream_t *)&sl->listener, 1024, on_connection)) {
    uv_close((uv_handle_t *)&sl->listener, NULL);
    return TD_EIO;
  }
  sl->listening = true;
  return 0;
}

int td_http_server_start(const struct td_http_server_config *cfg, struct td_http_router *rt, struct td_loop *loops,
                         int nloops, struct td_http_server **out) {
  *out = NULL;
  if (!cfg || nloops <= 0) return TD_EINVAL;
  struct td_http_server *s = calloc(1, sizeof *s);
  if (!s) return TD_ENOMEM;
  s->cfg = *cfg;
  snprintf(s->bind, sizeof s->bind, "%s", cfg->bind_address && *cfg->bind_address ? cfg->bind_address : "0.0.0.0");
  s->cfg.bind_address = s->bind;
  if (!s->cfg.max_header_bytes) s->cfg.max_header_bytes = 64u << 10;
  if (!s->cfg.max_body) s->cfg.max_body = 16u << 20;
  s->rt = rt;
  s->nloops = nloops;
  s->sl = calloc((size_t)nloops, sizeof *s->sl);
  if (!s->sl) {
    free(s);
    return TD_ENOMEM;
  }
  int port = cfg->port;
  for (int i = 0; i < nloops; i++) {
    s->sl[i].srv = s;
    s->sl[i].loop = &loops[i];
    int bound = 0;
    int rc = listen_on(&s->sl[i], s->bind, port, i == 0, &bound);
    if (rc) {
      /* the listeners already opened are closed when their loops stop */
      for (int j = 0; j < i; j++) s->sl[j].listening = false;
      return rc; /* s is leaked on purpose: its listeners still point at it until the loops close them */
    }
    port = bound; /* port 0: every loop joins the port the first one got */
  }
  s->port = port;
  td_log(TD_LOG_INFO, "http", "action=listen address=%s port=%d loops=%d", s->bind, port, nloops);
  *out = s;
  return 0;
}

int td_http_server_port(struct td_http_server *s) { return s ? s->port : 0; }

static void stop_task(struct td_task *t) {
  struct srv_loop *sl = td_container_of(t, struct srv_loop, stop_task);
  if (sl->listening && !uv_is_closing((uv_handle_t *)&sl->listener)) uv_close((uv_handle_t *)&sl->listener, NULL);
  sl->listening = false;
  /* WebSockets are long-lived: tell them now (1001) rather than drop them
   * when the loop stops. td_ws_close frees nothing, so the walk is safe. */
  for (struct conn *c = sl->conns; c; c = c->next)
    if (c->ws && !c->closing) td_ws__server_stopping(c->ws);
}

/* ---- the WebSocket hand-over (ws_int.h) ---- */

int td_http__conn_upgrade(struct http_req *q, struct td_ws *ws, struct td_http_conn_io *io) {
  struct conn *c = q->conn;
  td_http__req_free(q);
  if (!c || c->closing) return TD_ECLOSED;
  TD_BUG_ON(c->writing || c->ws, "upgrade of a connection that is writing or upgraded");
  c->pending = NULL;
  c->ws = ws;
  c->close_after_write = false;
  stop_reading(c);
  uv_timer_stop(&c->timer);
  td_http__parser_deinit(&c->rp); /* no more HTTP here: free its buffers now (deinit is idempotent) */
  io->conn = c;
  io->stream = (uv_stream_t *)&c->tcp;
  io->loop = c->sl->loop;
  io->id = c->id;
  io->leftover = c->leftover;
  io->left_len = c->left_len;
  c->leftover = NULL;
  c->left_len = 0;
  return 0;
}

void td_http__conn_reading(struct conn *c, bool on) {
  if (on) start_reading(c);
  else stop_reading(c);
}

void td_http__conn_timer(struct conn *c, uint64_t ms) {
  if (c->closing) return;
  if (ms) uv_timer_start(&c->timer, on_idle, ms, ms);
  else uv_timer_stop(&c->timer);
}

void td_http__conn_close(struct conn *c) { conn_close(c); }

void td_http_server_stop_accepting(struct td_http_server *s) {
  if (!s) return;
  for (int i = 0; i < s->nloops; i++) {
    s->sl[i].stop_task.fn = stop_task;
    td_loop_post(s->sl[i].loop, &s->sl[i].stop_task);
  }
}

/* td_http_server_free: call after the loops have stopped (their handles are
 * closed by td_loop_stop). Frees the connections that remain and their
 * unanswered requests. */
void td_http_server_free(struct td_http_server *s) {
  if (!s) return;
  for (int i = 0; i < s->nloops; i++) {
    struct srv_loop *sl = &s->sl[i];
    while (sl->conns) {
      struct conn *c = sl->conns;
      if (c->pending) {
        td_http__req_free(c->pending);
        c->pending = NULL;
      }
      conn_free(c);
    }
  }
  free(s->sl);
  free(s);
}
