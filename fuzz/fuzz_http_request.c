/* fuzz_http_request.c — libFuzzer target for the HTTP request parser layer
 * (src/transport/http/parse.c + router.c) without a socket. The input is fed
 * in two pieces (split point from the first byte) like reads from a socket;
 * every complete request is routed and checked, and the parser must either
 * need more bytes, produce requests, or fail with a status of 400/413/431. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "transport/http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void h(struct td_http_req *r) { (void)r; }

static struct td_http_router *router(void) {
  static struct td_http_router *rt;
  if (!rt) {
    rt = td_http_router_new();
    td_http_route(rt, TD_HTTP_POST, "/api/v1/{token}/telemetry", h, NULL, 256);
    td_http_route(rt, TD_HTTP_GET, "/api/v1/{token}/attributes", h, NULL, 0);
    td_http_route(rt, TD_HTTP_GET, "/api/v1/provision/attributes", h, NULL, 0);
    td_http_route(rt, TD_HTTP_GET, "/api/{a}/{b}/{c}/{d}", h, NULL, 0);
  }
  return rt;
}

static void check(struct http_req *q) {
  if (!q->r.path || !q->r.query || !q->r.body) abort();
  if (q->r.body[q->r.body_len] != '\0') abort();
  if (q->route == NULL && q->status != 404 && q->status != 405) abort();
  for (size_t i = 0; i < q->r.nheaders; i++)
    if (!q->r.headers[i].name || !q->r.headers[i].value) abort();
  td_http_query_get(&q->r, "clientKeys");
  td_http_header_get(&q->r, "content-length");
  td_http_param(&q->r, "token");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t split = data[0] % (size);
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  if (split > n) split = n;
  struct td_http_reqparser ps;
  td_http__parser_init(&ps, router(), 1024, 2048);
  const char *pieces[2] = {p, p + split};
  size_t lens[2] = {split, n - split};
  for (int k = 0; k < 2; k++) {
    const char *d = pieces[k];
    size_t left = lens[k];
    int guard = 0;
    while (left > 0) {
      size_t used = 0;
      int rc = td_http__parser_feed(&ps, d, left, &used);
      if (rc == 0) break;
      if (rc < 0) {
        if (ps.error_status != 400 && ps.error_status != 413 && ps.error_status != 431 && ps.error_status != 503)
          abort();
        goto out;
      }
      if (used > left) abort();
      struct http_req *q = td_http__parser_take(&ps);
      if (!q) abort();
      check(q);
      td_http__req_free(q);
      d += used;
      left -= used;
      if (++guard > 100000) abort();
    }
  }
out:
  td_http__parser_deinit(&ps);
  return 0;
}
