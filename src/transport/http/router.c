/* router.c — routes of the HTTP server (http.h): literal and "{name}"
 * segments, literal wins, 404 for unknown paths and 405 for a known path with
 * another method. Routes are added before the server starts and are read-only
 * afterwards, so every loop shares one router without locks. Matching is a
 * linear scan over routes with the same number of segments: fine for the few
 * hundred routes of the REST API. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "transport/http/http_int.h"

#define MAX_SEGS 16

struct seg {
  char *lit;   /* literal text, or NULL for a parameter */
  char *param; /* parameter name */
};

struct route {
  enum td_http_method m;
  int nseg;
  struct seg segs[MAX_SEGS];
  td_http_handler h;
  void *data;
  size_t max_body;
};

struct td_http_router {
  struct route **routes;
  size_t n, cap;
};

struct td_http_router *td_http_router_new(void) { return calloc(1, sizeof(struct td_http_router)); }

void td_http_router_free(struct td_http_router *rt) {
  if (!rt) return;
  for (size_t i = 0; i < rt->n; i++) {
    for (int j = 0; j < rt->routes[i]->nseg; j++) {
      free(rt->routes[i]->segs[j].lit);
      free(rt->routes[i]->segs[j].param);
    }
    free(rt->routes[i]);
  }
  free(rt->routes);
  free(rt);
}

int td_http_route(struct td_http_router *rt, enum td_http_method m, const char *pattern, td_http_handler h,
                  void *data, size_t max_body) {
  if (!rt || !pattern || pattern[0] != '/' || !h) return TD_EINVAL;
  struct route *r = calloc(1, sizeof *r);
  if (!r) return TD_ENOMEM;
  r->m = m;
  r->h = h;
  r->data = data;
  r->max_body = max_body;
  const char *p = pattern + 1;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len > 0) {
      if (r->nseg == MAX_SEGS) goto bad;
      struct seg *s = &r->segs[r->nseg++];
      if (len >= 2 && p[0] == '{' && p[len - 1] == '}') s->param = strndup(p + 1, len - 2);
      else s->lit = strndup(p, len);
      if (!s->lit && !s->param) goto bad;
    }
    p += len;
    if (*p == '/') p++;
  }
  if (rt->n == rt->cap) {
    size_t nc = rt->cap ? rt->cap * 2 : 32;
    struct route **nr = realloc(rt->routes, nc * sizeof *nr);
    if (!nr) goto bad;
    rt->routes = nr;
    rt->cap = nc;
  }
  rt->routes[rt->n++] = r;
  return 0;
bad:
  for (int j = 0; j < r->nseg; j++) {
    free(r->segs[j].lit);
    free(r->segs[j].param);
  }
  free(r);
  return TD_EINVAL;
}

size_t td_http__route_max_body(const struct route *r) { return r ? r->max_body : 0; }
td_http_handler td_http__route_handler(const struct route *r) { return r ? r->h : NULL; }

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *td_http__pct_decode(struct td_arena *a, const char *s, size_t n, bool plus_space) {
  char *o = td_arena_alloc(a, n + 1);
  if (!o) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) return NULL;
      int h = hexv(s[i + 1]), l = hexv(s[i + 2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0)) return NULL;
      o[k++] = (char)(h << 4 | l);
      i += 2;
    } else if (plus_space && s[i] == '+') {
      o[k++] = ' ';
    } else {
      o[k++] = s[i];
    }
  }
  o[k] = '\0';
  return o;
}

/* better: is route a more specific than b? (first differing segment literal) */
static bool more_specific(const struct route *a, const struct route *b) {
  for (int i = 0; i < a->nseg; i++) {
    bool la = a->segs[i].lit != NULL, lb = b->segs[i].lit != NULL;
    if (la != lb) return la;
  }
  return false;
}

int td_http__route_match(const struct td_http_router *rt, struct http_req *q, const char *raw, size_t len) {
  struct td_arena *a = &q->r.arena;
  q->route = NULL;
  q->r.path = td_http__pct_decode(a, raw, len, false);
  if (!q->r.path) {
    q->status = 400;
    return TD_EPROTO;
  }
  /* split the raw path, decode each segment (so an encoded '/' stays inside its segment) */
  const char *segs[MAX_SEGS];
  int nseg = 0;
  size_t i = 0;
  while (i < len) {
    while (i < len && raw[i] == '/') i++;
    if (i >= len) break;
    size_t b = i;
    while (i < len && raw[i] != '/') i++;
    if (nseg == MAX_SEGS) {
      q->status = 404;
      return 0;
    }
    segs[nseg] = td_http__pct_decode(a, raw + b, i - b, false);
    if (!segs[nseg]) {
      q->status = 400;
      return TD_EPROTO;
    }
    nseg++;
  }
  const struct route *best = NULL;
  bool path_known = false;
  if (rt) {
    for (size_t k = 0; k < rt->n; k++) {
      const struct route *r = rt->routes[k];
      if (r->nseg != nseg) continue;
      int j = 0;
      for (; j < nseg; j++)
        if (r->segs[j].lit && strcmp(r->segs[j].lit, segs[j])) break;
      if (j < nseg) continue;
      path_known = true;
      if (r->m != q->r.method && !(q->r.method == TD_HTTP_HEAD && r->m == TD_HTTP_GET)) continue;
      if (!best || more_specific(r, best)) best = r;
    }
  }
  if (!best) {
    q->status = path_known ? 405 : 404;
    return 0;
  }
  q->route = best;
  q->r.route_data = best->data;
  q->r.nparams = 0;
  for (int j = 0; j < nseg && q->r.nparams < TD_HTTP_MAX_PARAMS; j++) {
    if (best->segs[j].lit) continue;
    q->r.param_names[q->r.nparams] = best->segs[j].param;
    q->r.param_values[q->r.nparams] = segs[j];
    q->r.nparams++;
  }
  return 0;
}

const char *td_http_param(const struct td_http_req *r, const char *name) {
  for (int i = 0; i < r->nparams; i++)
    if (!strcmp(r->param_names[i], name)) return r->param_values[i];
  return NULL;
}

const char *td_http_header_get(const struct td_http_req *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++)
    if (!strcasecmp(r->headers[i].name, name)) return r->headers[i].value;
  return NULL;
}

const char *td_http_query_get(struct td_http_req *r, const char *name) {
  const char *p = r->query ? r->query : "";
  size_t nlen = strlen(name);
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', len);
    size_t klen = eq ? (size_t)(eq - p) : len;
    char *k = td_http__pct_decode(&r->arena, p, klen, true);
    if (k && strlen(k) == nlen && !memcmp(k, name, nlen)) {
      if (!eq) return "";
      return td_http__pct_decode(&r->arena, eq + 1, len - klen - 1, true);
    }
    p += len;
    if (*p == '&') p++;
  }
  return NULL;
}
