/* http.h — the HTTP/1.1 server on the I/O loops (libuv + llhttp).
 *
 * One listening socket per loop (SO_REUSEPORT), keep-alive, one request at a
 * time per connection (the socket is not read while a request is pending:
 * back-pressure). Both the REST API (src/api) and the HTTP device API
 * (src/transport/http) are routes on this server.
 *
 * A handler runs on the connection's loop thread and must answer exactly once
 * with td_http_respond*() — right away, or later from a task on the same loop
 * (after a storage job or queue write completes). A request stays valid until
 * it is answered, even if the client has gone away meanwhile (then the answer
 * is dropped). */
#ifndef TD_TRANSPORT_HTTP_HTTP_H
#define TD_TRANSPORT_HTTP_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include "base/arena.h"
#include "base/loop.h"

enum td_http_method { TD_HTTP_GET = 1, TD_HTTP_POST, TD_HTTP_PUT, TD_HTTP_DELETE, TD_HTTP_PATCH, TD_HTTP_OPTIONS, TD_HTTP_HEAD };

struct td_http_header { const char *name; const char *value; }; /* name lower-cased */

#define TD_HTTP_MAX_PARAMS 8

struct td_http_req {
  struct td_loop *loop;          /* the loop thread that owns this request */
  enum td_http_method method;
  const char *path;              /* percent-decoded path, no query */
  const char *query;             /* raw query string without '?', "" if none */
  struct td_http_header *headers;
  size_t nheaders;
  const char *body;              /* NUL-terminated */
  size_t body_len;
  struct td_arena arena;         /* freed when the request ends */
  /* path parameters filled by the router from "{name}" segments */
  const char *param_names[TD_HTTP_MAX_PARAMS];
  const char *param_values[TD_HTTP_MAX_PARAMS];
  int nparams;
  void *route_data;              /* the route's data pointer */
  void *user;                    /* free for the handler */
};

typedef void (*td_http_handler)(struct td_http_req *r);

struct td_http_router;

/* td_http_router_new: an empty router. Routes are added before the server starts
 * and never change afterwards, so all loops share one router without locks. */
struct td_http_router *td_http_router_new(void);
void td_http_router_free(struct td_http_router *rt);
/* td_http_route: pattern segments are literal or "{name}" (one segment).
 * max_body: largest accepted body for this route (413 past it); 0 = server default.
 * Literal segments win over parameters when both match. */
int td_http_route(struct td_http_router *rt, enum td_http_method m, const char *pattern, td_http_handler h,
                  void *data, size_t max_body);

struct td_http_server_config {
  const char *bind_address;   /* default "0.0.0.0" */
  int port;                   /* 0 = disabled */
  size_t max_body;            /* default body limit, bytes */
  size_t max_header_bytes;    /* default 64 KiB */
  int max_connections;        /* per loop; past it new connections are closed (default 10000) */
  int idle_timeout_ms;        /* keep-alive idle close (default 60000) */
};

struct td_http_server;

/* td_http_server_start: listen on every loop (call before the loops start
 * running, or from each loop's thread). */
int td_http_server_start(const struct td_http_server_config *cfg, struct td_http_router *rt,
                         struct td_loop *loops, int nloops, struct td_http_server **out);
/* td_http_server_stop_accepting: close the listeners (from any thread; it posts
 * to the loops). In-flight requests still get their answers. */
void td_http_server_stop_accepting(struct td_http_server *s);
/* td_http_server_port: the bound port (useful when port was 0 in tests). */
int td_http_server_port(struct td_http_server *s);
void td_http_server_free(struct td_http_server *s);

/* ---- request helpers (loop thread) ---- */
/* td_http_header_get: value of a header (case-insensitive name), or NULL. */
const char *td_http_header_get(const struct td_http_req *r, const char *name);
/* td_http_query_get: percent-decoded value of a query parameter (arena), or NULL if absent. */
const char *td_http_query_get(struct td_http_req *r, const char *name);
/* td_http_param: a path parameter by name, or NULL. */
const char *td_http_param(const struct td_http_req *r, const char *name);

/* ---- answers (loop thread, exactly once) ---- */
/* td_http_respond: body copied; content_type NULL for an empty body. */
void td_http_respond(struct td_http_req *r, int status, const char *content_type, const char *body, size_t len);
/* td_http_respond_json: body is JSON text; takes ownership of `body` (malloc'd). */
void td_http_respond_json_take(struct td_http_req *r, int status, char *body, size_t len);
/* td_http_respond_error: ThingsBoard's error JSON
 * {"status":S,"message":"...","errorCode":E,"timestamp":ms}. */
void td_http_respond_error(struct td_http_req *r, int status, int error_code, const char *message);
/* td_http_respond_with_header: like td_http_respond plus one extra header line ("Name: value"). */
void td_http_respond_with_header(struct td_http_req *r, int status, const char *content_type, const char *extra_header,
                                 const char *body, size_t len);

/* ThingsBoard error codes (reference §2.1). */
enum td_tb_error {
  TD_TB_GENERAL = 2, TD_TB_AUTHENTICATION = 10, TD_TB_JWT_TOKEN_EXPIRED = 11, TD_TB_CREDENTIALS_EXPIRED = 15,
  TD_TB_PERMISSION_DENIED = 20, TD_TB_INVALID_ARGUMENTS = 30, TD_TB_BAD_REQUEST_PARAMS = 31,
  TD_TB_ITEM_NOT_FOUND = 32, TD_TB_TOO_MANY_REQUESTS = 33, TD_TB_VERSION_CONFLICT = 35, TD_TB_DATABASE = 46
};
/* td_http_status_of: the HTTP status for a TD_E* error (ENOTFOUND 404, EPERM 403, EAUTH 401,
 * EINVAL/EPROTO 400, EEXIST 400, ECONFLICT 409, ETOOBIG 413, EFULL/EAGAIN/EBUSY 503, else 500);
 * *tb_code gets the matching ThingsBoard errorCode. */
int td_http_status_of(int err, int *tb_code);
#endif
