/* http_int.h — private to src/transport/http: the request parser layer (no
 * socket, so it can be fuzzed), the router's match function and the internal
 * request wrapper shared by parse.c, router.c and server.c. */
#ifndef TD_TRANSPORT_HTTP_HTTP_INT_H
#define TD_TRANSPORT_HTTP_HTTP_INT_H
#include <stdbool.h>
#include <llhttp.h>

#include "base/buf.h"
#include "transport/http/http.h"

struct conn;
struct route;

/* A request as the server holds it: the public part first. */
struct http_req {
  struct td_http_req r;
  struct conn *conn;            /* NULL once the connection has closed */
  const struct route *route;    /* NULL: answer `status` (404/405) */
  int status;                   /* 0, or the error status decided while parsing/routing */
  bool keep_alive;
  bool head;
  char *body_owned;             /* malloc'd body, freed with the request */
  size_t hcap;                  /* capacity of r.headers */
};

/* td_http__req_free: free a request and everything it owns. */
void td_http__req_free(struct http_req *q);

/* ---- router (router.c) ---- */
/* td_http__route_match: match a percent-encoded path (no query) for method m.
 * Fills q->r.path (decoded), params, route_data and q->route; on no match sets
 * q->status to 404 (no such path) or 405 (path known, method not). Returns 0,
 * or TD_EPROTO (bad percent-encoding: status 400) / TD_ENOMEM. */
int td_http__route_match(const struct td_http_router *rt, struct http_req *q, const char *raw_path, size_t len);
/* td_http__route_max_body: the route's body limit, or 0 for the server default. */
size_t td_http__route_max_body(const struct route *rt);
td_http_handler td_http__route_handler(const struct route *rt);
/* td_http__pct_decode: percent-decode n bytes into the arena ('+' -> ' ' when
 * plus_space). NULL for a malformed escape or a %00. */
char *td_http__pct_decode(struct td_arena *a, const char *s, size_t n, bool plus_space);

/* ---- request parser (parse.c) ---- */
struct td_http_reqparser {
  llhttp_t llp;
  llhttp_settings_t set;
  const struct td_http_router *rt;
  size_t default_max_body;
  size_t max_header_bytes;
  struct http_req *req;      /* being built */
  size_t hdr_bytes;
  struct td_buf url, hname, hval;
  bool in_value;
  size_t body_limit;
  struct td_buf body;
  int error_status;          /* 400, 413, 431 or 0 */
  const char *error_reason;  /* static text for the log */
  bool paused;
};

void td_http__parser_init(struct td_http_reqparser *p, const struct td_http_router *rt, size_t default_max_body,
                          size_t max_header_bytes);
void td_http__parser_deinit(struct td_http_reqparser *p);
/* td_http__parser_feed: parse up to n bytes. Returns 0 (all consumed, need more),
 * 1 (a request is complete: *consumed bytes were used, take it with
 * td_http__parser_take), or TD_EPROTO (p->error_status says how to answer;
 * the connection must close afterwards). */
int td_http__parser_feed(struct td_http_reqparser *p, const char *data, size_t n, size_t *consumed);
/* td_http__parser_take: the completed request (caller frees with td_http__req_free). */
struct http_req *td_http__parser_take(struct td_http_reqparser *p);
#endif
