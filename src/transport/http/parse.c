/* parse.c — HTTP/1.1 request parsing on llhttp, without a socket (http_int.h).
 *
 * Bytes in, complete requests out: the URL and headers are gathered under the
 * header size limit (431), the route is resolved as soon as the headers are
 * complete so that the route's body limit applies before the body is read
 * (413 from Content-Length, or while reading a chunked body), and the parser
 * pauses after each message so the server handles one request at a time.
 * fuzz/fuzz_http_request.c drives this file directly. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "transport/http/http_int.h"

#define PER_HEADER_OVERHEAD 32
#define REQ_ARENA_LIMIT (8u << 20)

static struct td_http_reqparser *P(llhttp_t *l) { return l->data; }

static int perr(struct td_http_reqparser *p, int status, const char *why) {
  p->error_status = status;
  p->error_reason = why;
  return -1;
}

static int count_hdr(struct td_http_reqparser *p, size_t n) {
  p->hdr_bytes += n;
  return p->hdr_bytes > p->max_header_bytes ? perr(p, 431, "header too large") : 0;
}

static int on_message_begin(llhttp_t *l) {
  struct td_http_reqparser *p = P(l);
  if (p->req) td_http__req_free(p->req);
  p->req = calloc(1, sizeof *p->req);
  if (!p->req) return perr(p, 503, "out of memory");
  td_arena_init(&p->req->r.arena, REQ_ARENA_LIMIT);
  p->hdr_bytes = 0;
  p->in_value = false;
  td_buf_reset(&p->url);
  td_buf_reset(&p->hname);
  td_buf_reset(&p->hval);
  td_buf_reset(&p->body);
  return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t n) {
  struct td_http_reqparser *p = P(l);
  if (count_hdr(p, n)) return -1;
  return td_buf_append(&p->url, at, n) ? perr(p, 431, "url too long") : 0;
}

static int finish_header(struct td_http_reqparser *p) {
  struct http_req *q = p->req;
  if (!p->in_value && p->hname.len == 0) return 0;
  if (q->r.nheaders == q->hcap) {
    size_t nc = q->hcap ? q->hcap * 2 : 16;
    struct td_http_header *nh = td_arena_alloc(&q->r.arena, nc * sizeof *nh);
    if (!nh) return perr(p, 431, "too many headers");
    if (q->r.nheaders) memcpy(nh, q->r.headers, q->r.nheaders * sizeof *nh);
    q->r.headers = nh;
    q->hcap = nc;
  }
  char *name = td_arena_strndup(&q->r.arena, p->hname.len ? p->hname.data : "", p->hname.len);
  char *value = td_arena_strndup(&q->r.arena, p->hval.len ? p->hval.data : "", p->hval.len);
  if (!name || !value) return perr(p, 431, "too many headers");
  for (char *c = name; *c; c++) *c = (char)tolower((unsigned char)*c);
  q->r.headers[q->r.nheaders].name = name;
  q->r.headers[q->r.nheaders].value = value;
  q->r.nheaders++;
  td_buf_reset(&p->hname);
  td_buf_reset(&p->hval);
  p->in_value = false;
  return 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t n) {
  struct td_http_reqparser *p = P(l);
  if (p->in_value && finish_header(p)) return -1;
  if (count_hdr(p, n + (p->hname.len ? 0 : PER_HEADER_OVERHEAD))) return -1;
  return td_buf_append(&p->hname, at, n) ? perr(p, 431, "header too large") : 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t n) {
  struct td_http_reqparser *p = P(l);
  p->in_value = true;
  if (count_hdr(p, n)) return -1;
  return td_buf_append(&p->hval, at, n) ? perr(p, 431, "header too large") : 0;
}

static enum td_http_method map_method(uint8_t m) {
  switch (m) {
  case HTTP_GET: return TD_HTTP_GET;
  case HTTP_POST: return TD_HTTP_POST;
  case HTTP_PUT: return TD_HTTP_PUT;
  case HTTP_DELETE: return TD_HTTP_DELETE;
  case HTTP_PATCH: return TD_HTTP_PATCH;
  case HTTP_OPTIONS: return TD_HTTP_OPTIONS;
  case HTTP_HEAD: return TD_HTTP_HEAD;
  default: return 0;
  }
}

static int on_headers_complete(llhttp_t *l) {
  struct td_http_reqparser *p = P(l);
  struct http_req *q = p->req;
  if (p->in_value && finish_header(p)) return -1;
  q->r.method = map_method(l->method);
  q->head = q->r.method == TD_HTTP_HEAD;
  const char *u = p->url.len ? p->url.data : "";
  size_t ulen = p->url.len;
  if (ulen == 0 || u[0] != '/') return perr(p, 400, "bad request target");
  const char *qm = memchr(u, '?', ulen);
  size_t plen = qm ? (size_t)(qm - u) : ulen;
  const char *hash = memchr(u, '#', ulen);
  size_t qend = hash ? (size_t)(hash - u) : ulen;
  if (hash && !qm) plen = qend;
  q->r.query = qm ? td_arena_strndup(&q->r.arena, qm + 1, qend > plen ? qend - plen - 1 : 0) : "";
  if (!q->r.query) return perr(p, 431, "url too long");
  if (!q->r.method) {
    q->status = 405;
    q->r.path = td_http__pct_decode(&q->r.arena, u, plen, false);
    if (!q->r.path) return perr(p, 400, "bad percent-encoding");
  } else {
    int rc = td_http__route_match(p->rt, q, u, plen);
    if (rc == TD_EPROTO) return perr(p, 400, "bad percent-encoding");
    if (rc) return perr(p, 503, "out of memory");
  }
  size_t lim = q->route ? td_http__route_max_body(q->route) : 0;
  p->body_limit = lim ? lim : p->default_max_body;
  if ((l->flags & F_CONTENT_LENGTH) && l->content_length > p->body_limit) return perr(p, 413, "body too large");
  return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t n) {
  struct td_http_reqparser *p = P(l);
  if (p->body.len + n > p->body_limit) return perr(p, 413, "body too large");
  return td_buf_append(&p->body, at, n) ? perr(p, 413, "body too large") : 0;
}

static int on_message_complete(llhttp_t *l) {
  struct td_http_reqparser *p = P(l);
  struct http_req *q = p->req;
  q->keep_alive = llhttp_should_keep_alive(l) != 0;
  if (p->body.len) {
    size_t len = p->body.len;
    q->body_owned = td_buf_take(&p->body);
    if (!q->body_owned) return perr(p, 503, "out of memory");
    q->r.body = q->body_owned;
    q->r.body_len = len;
  }
  return HPE_PAUSED;
}

void td_http__parser_init(struct td_http_reqparser *p, const struct td_http_router *rt, size_t default_max_body,
                          size_t max_header_bytes) {
  memset(p, 0, sizeof *p);
  llhttp_settings_init(&p->set);
  p->set.on_message_begin = on_message_begin;
  p->set.on_url = on_url;
  p->set.on_header_field = on_header_field;
  p->set.on_header_value = on_header_value;
  p->set.on_headers_complete = on_headers_complete;
  p->set.on_body = on_body;
  p->set.on_message_complete = on_message_complete;
  llhttp_init(&p->llp, HTTP_REQUEST, &p->set);
  p->llp.data = p;
  p->rt = rt;
  p->default_max_body = default_max_body ? default_max_body : (16u << 20);
  p->max_header_bytes = max_header_bytes ? max_header_bytes : (64u << 10);
  td_buf_init(&p->url, p->max_header_bytes + 1);
  td_buf_init(&p->hname, p->max_header_bytes + 1);
  td_buf_init(&p->hval, p->max_header_bytes + 1);
  td_buf_init(&p->body, 0); /* bounded by body_limit in on_body */
}

void td_http__parser_deinit(struct td_http_reqparser *p) {
  if (p->req) td_http__req_free(p->req);
  p->req = NULL;
  td_buf_deinit(&p->url);
  td_buf_deinit(&p->hname);
  td_buf_deinit(&p->hval);
  td_buf_deinit(&p->body);
}

int td_http__parser_feed(struct td_http_reqparser *p, const char *data, size_t n, size_t *consumed) {
  if (p->paused) {
    llhttp_resume(&p->llp);
    p->paused = false;
  }
  *consumed = 0;
  if (n == 0) return 0;
  llhttp_errno_t e = llhttp_execute(&p->llp, data, n);
  if (e == HPE_OK) {
    *consumed = n;
    return 0;
  }
  if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
    const char *pos = llhttp_get_error_pos(&p->llp);
    *consumed = pos && pos >= data && pos <= data + n ? (size_t)(pos - data) : n;
    if (e == HPE_PAUSED_UPGRADE) {
      if (!p->req) { /* bytes after an upgrade request that was not taken over */
        p->error_status = 400;
        p->error_reason = "data after an upgrade request";
        return TD_EPROTO;
      }
      /* no protocol upgrade on this layer: answer, then close */
      p->req->keep_alive = false;
      *consumed = n;
    }
    p->paused = e == HPE_PAUSED;
    return 1;
  }
  if (!p->error_status) {
    p->error_status = 400;
    p->error_reason = llhttp_errno_name(e);
  }
  return TD_EPROTO;
}

struct http_req *td_http__parser_take(struct td_http_reqparser *p) {
  struct http_req *q = p->req;
  p->req = NULL;
  if (q && !q->r.body) {
    q->r.body = "";
    q->r.body_len = 0;
  }
  return q;
}

void td_http__req_free(struct http_req *q) {
  if (!q) return;
  td_arena_deinit(&q->r.arena);
  free(q->body_owned);
  free(q);
}
