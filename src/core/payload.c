/* payload.c — device telemetry/attribute JSON payloads (payload.h).
 *
 * A small JSON scanner of our own: it keeps every number's literal text so
 * that the typing rules of ThingsBoard's JsonConverter can be applied to the
 * literal exactly as BigDecimal would see it (scale, stripTrailingZeros,
 * "simple double", longValueExact). Object and array values are re-emitted as
 * compact JSON by copying their tokens (literals unchanged). Recursion is
 * bounded by opts->max_depth. Everything returned lives in the caller's arena.
 * Pure function of its input: fuzzed by fuzz/fuzz_payload.c. */
#include "core/payload.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define DEFAULT_DEPTH 32
/* A big integer (or tiny fraction) becomes a plain-text STRING; past this many
 * characters it is refused instead of expanding 1e999999999 into memory. */
#define MAX_PLAIN_NUMBER 4096

struct sc {
  const char *p, *end, *start;
  int max_depth;
  const struct td_payload_opts *o;
  struct td_arena *a;
  char *err;
  size_t errlen;
};

static int fail(struct sc *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct sc *s, const char *fmt, ...) {
  if (s->err && s->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, s->errlen, fmt, ap);
    va_end(ap);
  }
  return TD_EPROTO;
}

static int oom(struct sc *s) {
  fail(s, "payload too large to process");
  return TD_ENOMEM;
}

static int malformed(struct sc *s) {
  return fail(s, "malformed JSON at offset %zu", (size_t)(s->p - s->start));
}

static void skip_ws(struct sc *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int hex4(const char *p, const char *end, unsigned *out) {
  if (end - p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0) return -1;
    v = v << 4 | (unsigned)h;
  }
  *out = v;
  return 0;
}

/* scan_string: s->p at '"'. Validates and leaves s->p after the closing quote;
 * [*b, *e) is the raw content between the quotes. */
static int scan_string(struct sc *s, const char **b, const char **e) {
  s->p++;
  *b = s->p;
  while (s->p < s->end) {
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      *e = s->p++;
      return 0;
    }
    if (c < 0x20) return malformed(s);
    if (c == '\\') {
      if (s->end - s->p < 2) return malformed(s);
      char x = s->p[1];
      if (x == 'u') {
        unsigned v;
        if (hex4(s->p + 2, s->end, &v)) return malformed(s);
        s->p += 6;
        continue;
      }
      if (!strchr("\"\\/bfnrt", x) || x == 0) return malformed(s);
      s->p += 2;
      continue;
    }
    s->p++;
  }
  return malformed(s);
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* decode_string: the unescaped text of an already validated raw string, in
 * the arena. *nchars gets the number of code points (a UTF-16 unit count
 * would be Java's; close enough for a length limit). */
static int decode_string(struct sc *s, const char *b, const char *e, const char **out, size_t *nchars) {
  char *o = td_arena_alloc(s->a, (size_t)(e - b) + 1);
  if (!o) return oom(s);
  size_t n = 0, cps = 0;
  for (const char *p = b; p < e;) {
    if ((((unsigned char)*p) & 0xC0) != 0x80) cps++;
    if (*p != '\\') { o[n++] = *p++; continue; }
    char x = p[1];
    p += 2;
    switch (x) {
    case 'b': o[n++] = '\b'; break;
    case 'f': o[n++] = '\f'; break;
    case 'n': o[n++] = '\n'; break;
    case 'r': o[n++] = '\r'; break;
    case 't': o[n++] = '\t'; break;
    case 'u': {
      unsigned cp = 0; /* hex4 was checked by the scanner; 0 keeps -O3 from seeing a path without it */
      hex4(p, e, &cp);
      p += 4;
      if (cp >= 0xD800 && cp < 0xDC00) {
        unsigned lo;
        if (e - p >= 6 && p[0] == '\\' && p[1] == 'u' && !hex4(p + 2, e, &lo) && lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        } else {
          cp = 0xFFFD; /* lone surrogate */
        }
      } else if (cp >= 0xDC00 && cp < 0xE000) {
        cp = 0xFFFD;
      }
      if (cp == 0) return fail(s, "NUL character in a string is not supported");
      n += put_utf8(o + n, cp); /* at most 4 bytes for >= 6 input bytes */
      break;
    }
    default: o[n++] = x; break; /* '"', '\\', '/' */
    }
  }
  o[n] = '\0';
  *out = o;
  if (nchars) *nchars = cps;
  return 0;
}

/* scan_number: JSON number grammar; [*b, s->p) is the literal. */
static int scan_number(struct sc *s) {
  const char *p = s->p;
  if (p < s->end && *p == '-') p++;
  if (p >= s->end) return malformed(s);
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (p < s->end && *p >= '0' && *p <= '9') p++;
  else return malformed(s);
  if (p < s->end && *p == '.') {
    p++;
    if (p >= s->end || *p < '0' || *p > '9') { s->p = p; return malformed(s); }
    while (p < s->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < s->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < s->end && (*p == '+' || *p == '-')) p++;
    if (p >= s->end || *p < '0' || *p > '9') { s->p = p; return malformed(s); }
    while (p < s->end && *p >= '0' && *p <= '9') p++;
  }
  s->p = p;
  return 0;
}

static int lit(struct sc *s, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return malformed(s);
  s->p += n;
  return 0;
}

/* skip_value: validate one value at s->p (no leading ws), depth = current nesting. */
static int skip_value(struct sc *s, int depth) {
  if (s->p >= s->end) return malformed(s);
  const char *b, *e;
  int rc;
  switch (*s->p) {
  case '"': return scan_string(s, &b, &e);
  case 't': return lit(s, "true");
  case 'f': return lit(s, "false");
  case 'n': return lit(s, "null");
  case '{':
  case '[': {
    char close = *s->p == '{' ? '}' : ']';
    bool obj = close == '}';
    if (depth + 1 > s->max_depth) return fail(s, "JSON nesting deeper than %d", s->max_depth);
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) { s->p++; return 0; }
    for (;;) {
      skip_ws(s);
      if (obj) {
        if (s->p >= s->end || *s->p != '"') return malformed(s);
        if ((rc = scan_string(s, &b, &e))) return rc;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return malformed(s);
        s->p++;
        skip_ws(s);
      }
      if ((rc = skip_value(s, depth + 1))) return rc;
      skip_ws(s);
      if (s->p >= s->end) return malformed(s);
      if (*s->p == ',') { s->p++; continue; }
      if (*s->p == close) { s->p++; return 0; }
      return malformed(s);
    }
  }
  default: return scan_number(s);
  }
}

/* compact: copy a validated value without the whitespace between tokens. */
static const char *compact(struct sc *s, const char *b, const char *e) {
  char *o = td_arena_alloc(s->a, (size_t)(e - b) + 1);
  if (!o) return NULL;
  size_t n = 0;
  bool in_str = false;
  for (const char *p = b; p < e; p++) {
    char c = *p;
    if (in_str) {
      o[n++] = c;
      if (c == '\\') o[n++] = *++p;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
      o[n++] = c;
    } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      o[n++] = c;
    }
  }
  o[n] = '\0';
  return o;
}

/* ---- numbers: BigDecimal rules on the literal ---- */


/* parse_decimal: a JSON number literal or an isParsable string
 * ([-]digits[.digits], ".5" allowed) into sign, digit string and scale.
 * Digits are gathered into the arena (numbers may be long). */
static int parse_decimal(struct sc *s, const char *b, const char *e, bool *neg, char **digits, size_t *nd,
                         long long *scale) {
  const char *p = b;
  *neg = false;
  if (p < e && *p == '-') { *neg = true; p++; }
  char *d = td_arena_alloc(s->a, (size_t)(e - p) + 1);
  if (!d) return oom(s);
  size_t n = 0;
  long long frac = 0, exp10 = 0;
  bool in_frac = false;
  for (; p < e; p++) {
    if (*p >= '0' && *p <= '9') {
      d[n++] = *p;
      if (in_frac) frac++;
    } else if (*p == '.') {
      in_frac = true;
    } else if (*p == 'e' || *p == 'E') {
      p++;
      bool eneg = false;
      if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
      for (; p < e; p++) {
        if (exp10 < 1000000000LL) exp10 = exp10 * 10 + (*p - '0');
      }
      if (eneg) exp10 = -exp10;
      break;
    }
  }
  d[n] = '\0';
  *digits = d;
  *nd = n;
  *scale = frac - exp10;
  return 0;
}

static bool has_char(const char *b, const char *e, char c) { return memchr(b, c, (size_t)(e - b)) != NULL; }

/* plain_string: BigDecimal.toPlainString of sign, unscaled digits u (no
 * leading zeros, non-empty) and scale. NULL (with err set) if too long. */
static const char *plain_string(struct sc *s, bool neg, const char *u, size_t nu, long long scale) {
  long long len = (long long)nu + 3 + (scale < 0 ? -scale : scale);
  if (len > MAX_PLAIN_NUMBER) {
    fail(s, "number too large");
    return NULL;
  }
  char *o = td_arena_alloc(s->a, (size_t)len + 1);
  if (!o) { oom(s); return NULL; }
  size_t n = 0;
  if (neg) o[n++] = '-';
  if (scale <= 0) {
    memcpy(o + n, u, nu); n += nu;
    for (long long i = 0; i < -scale; i++) o[n++] = '0';
  } else if ((long long)nu > scale) {
    size_t ip = nu - (size_t)scale;
    memcpy(o + n, u, ip); n += ip;
    o[n++] = '.';
    memcpy(o + n, u + ip, (size_t)scale); n += (size_t)scale;
  } else {
    o[n++] = '0'; o[n++] = '.';
    for (long long i = 0; i < scale - (long long)nu; i++) o[n++] = '0';
    memcpy(o + n, u, nu); n += nu;
  }
  o[n] = '\0';
  return o;
}

/* number_kv: the typing of JsonConverter for a numeric literal [b, e).
 * Returns 0, TD_EPROTO (big number without type cast, or too long), TD_ENOMEM. */
static int number_kv(struct sc *s, const char *b, const char *e, struct td_kv *kv) {
  bool neg;
  char *d;
  size_t nd;
  long long scale;
  int rc = parse_decimal(s, b, e, &neg, &d, &nd, &scale);
  if (rc) return rc;
  /* unscaled value without leading zeros */
  const char *u = d;
  size_t nu = nd;
  while (nu > 0 && *u == '0') { u++; nu--; }
  bool zero = nu == 0;
  long long stripped = 0; /* BigDecimal.ZERO.stripTrailingZeros() has scale 0 */
  size_t tz = 0;
  if (!zero) {
    while (tz < nu && u[nu - 1 - tz] == '0') tz++;
    stripped = scale - (long long)tz;
  }
  bool simple_double = has_char(b, e, '.') && !has_char(b, e, 'e') && !has_char(b, e, 'E');
  if (stripped <= 0 && !simple_double) {
    /* an integer value: LONG if it fits (longValueExact) */
    if (zero) { kv->type = TD_KV_LONG; kv->v.l = 0; return 0; }
    size_t sig = nu - tz;
    long long zeros = -stripped;
    if ((long long)sig + zeros <= 19) {
      unsigned long long v = 0;
      bool ovf = false;
      for (size_t i = 0; i < sig; i++) v = v * 10 + (unsigned long long)(u[i] - '0');
      for (long long i = 0; i < zeros && !ovf; i++) {
        if (v > ULLONG_MAX / 10) ovf = true;
        else v *= 10;
      }
      if (!ovf && (neg ? v <= (unsigned long long)INT64_MAX + 1 : v <= (unsigned long long)INT64_MAX)) {
        kv->type = TD_KV_LONG;
        kv->v.l = neg ? (int64_t)(0 - v) : (int64_t)v;
        return 0;
      }
    }
    if (!s->o->type_cast) return fail(s, "Big integer values are not supported!");
    const char *txt = plain_string(s, neg, u, sig, stripped);
    if (!txt) return TD_EPROTO;
    kv->type = TD_KV_STRING;
    kv->v.s = txt;
    return 0;
  }
  if (scale <= 16) {
    /* strtod accepts both JSON literals and ".5"; copy: the input is not NUL-terminated */
    char buf[128];
    char *tmp = (size_t)(e - b) < sizeof buf ? buf : td_arena_alloc(s->a, (size_t)(e - b) + 1);
    if (!tmp) return oom(s);
    memcpy(tmp, b, (size_t)(e - b));
    tmp[e - b] = '\0';
    kv->type = TD_KV_DOUBLE;
    kv->v.d = strtod(tmp, NULL);
    return 0;
  }
  if (!s->o->type_cast) return fail(s, "Big integer values are not supported!");
  const char *txt = zero ? plain_string(s, false, "0", 1, scale)
                         : plain_string(s, neg, u, nu, scale);
  if (!txt) return TD_EPROTO;
  kv->type = TD_KV_STRING;
  kv->v.s = txt;
  return 0;
}

/* is_parsable: Apache commons-lang3 NumberUtils.isParsable. */
static bool is_parsable(const char *t) {
  size_t n = strlen(t);
  if (n == 0 || t[n - 1] == '.') return false;
  size_t i = 0;
  if (t[0] == '-') {
    if (n == 1) return false;
    i = 1;
  }
  int dots = 0;
  for (; i < n; i++) {
    if (t[i] == '.') {
      if (++dots > 1) return false;
    } else if (t[i] < '0' || t[i] > '9') {
      return false;
    }
  }
  return true;
}

/* value_kv: convert the value at [b, e) (validated) for key; *skip for null. */
static int value_kv(struct sc *s, const char *key, const char *b, const char *e, struct td_kv *kv, bool *skip) {
  *skip = false;
  kv->key = key;
  switch (*b) {
  case 'n': *skip = true; return 0;
  case 't': kv->type = TD_KV_BOOLEAN; kv->v.b = true; return 0;
  case 'f': kv->type = TD_KV_BOOLEAN; kv->v.b = false; return 0;
  case '{':
  case '[':
    kv->type = TD_KV_JSON;
    kv->v.s = compact(s, b, e);
    return kv->v.s ? 0 : oom(s);
  case '"': {
    const char *txt;
    size_t nchars;
    int rc = decode_string(s, b + 1, e - 1, &txt, &nchars);
    if (rc) return rc;
    if (s->o->max_string_len > 0 && nchars > (size_t)s->o->max_string_len)
      return fail(s, "String value length [%zu] is greater than maximum allowed [%d]", nchars, s->o->max_string_len);
    if (s->o->type_cast && is_parsable(txt)) {
      char *saved_err = s->err;
      size_t saved_len = s->errlen;
      s->err = NULL; /* a failed cast is not an error: the value stays a string */
      s->errlen = 0;
      rc = number_kv(s, txt, txt + strlen(txt), kv);
      s->err = saved_err;
      s->errlen = saved_len;
      if (rc == 0) return 0;
      if (rc == TD_ENOMEM) return oom(s);
    }
    kv->type = TD_KV_STRING;
    kv->v.s = txt;
    return 0;
  }
  default: return number_kv(s, b, e, kv);
  }
}

/* ---- objects ---- */

struct member {
  const char *key; /* decoded */
  const char *vb, *ve;
};

/* scan_object: s->p at '{'; collects members (keys decoded) in the arena. */
static int scan_object(struct sc *s, struct member **out, size_t *nout) {
  size_t cap = 16, n = 0;
  struct member *m = td_arena_alloc(s->a, cap * sizeof *m);
  if (!m) return oom(s);
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    *out = m;
    *nout = 0;
    return 0;
  }
  for (;;) {
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') return malformed(s);
    const char *kb, *ke;
    int rc = scan_string(s, &kb, &ke);
    if (rc) return rc;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':') return malformed(s);
    s->p++;
    skip_ws(s);
    const char *vb = s->p;
    if ((rc = skip_value(s, 1))) return rc;
    if (n == cap) {
      struct member *nm = td_arena_alloc(s->a, 2 * cap * sizeof *m);
      if (!nm) return oom(s);
      memcpy(nm, m, n * sizeof *m);
      m = nm;
      cap *= 2;
    }
    if ((rc = decode_string(s, kb, ke, &m[n].key, NULL))) return rc;
    m[n].vb = vb;
    m[n].ve = s->p;
    n++;
    skip_ws(s);
    if (s->p >= s->end) return malformed(s);
    if (*s->p == ',') { s->p++; continue; }
    if (*s->p == '}') { s->p++; break; }
    return malformed(s);
  }
  *out = m;
  *nout = n;
  return 0;
}

static uint32_t key_hash(const char *k) {
  uint32_t h = 2166136261u;
  for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
  return h;
}

/* members_to_kvs: typed kvs of an object's members. A repeated key keeps its
 * first position and its last value (Gson's JsonObject); nulls are skipped. */
static int members_to_kvs(struct sc *s, const struct member *m, size_t n, struct td_kv **kvs, size_t *nkvs) {
  struct td_kv *out = td_arena_alloc(s->a, (n ? n : 1) * sizeof *out);
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  int32_t *slot = td_arena_alloc(s->a, cap * sizeof *slot);
  bool *dead = td_arena_alloc(s->a, (n ? n : 1) * sizeof *dead);
  if (!out || !slot || !dead) return oom(s);
  memset(slot, -1, cap * sizeof *slot);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    struct td_kv kv;
    bool skip;
    int rc = value_kv(s, m[i].key, m[i].vb, m[i].ve, &kv, &skip);
    if (rc) return rc;
    size_t h = key_hash(m[i].key) & (cap - 1);
    while (slot[h] >= 0 && strcmp(out[slot[h]].key, m[i].key)) h = (h + 1) & (cap - 1);
    if (slot[h] >= 0) {
      /* repeated key: replace (or remove, for a later null) in place */
      out[slot[h]] = kv;
      dead[slot[h]] = skip;
      continue;
    }
    out[k] = kv;
    dead[k] = skip;
    slot[h] = (int32_t)k;
    k++;
  }
  size_t w = 0;
  for (size_t i = 0; i < k; i++)
    if (!dead[i]) out[w++] = out[i];
  *kvs = out;
  *nkvs = w;
  return 0;
}

static const struct member *find_member(const struct member *m, size_t n, const char *key) {
  const struct member *f = NULL;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(m[i].key, key)) f = &m[i]; /* last one wins */
  return f;
}

/* ts_value: Gson getAsLong of the "ts" member: an integer number or numeric string. */
static int ts_value(struct sc *s, const struct member *t, int64_t *ts) {
  struct td_kv kv;
  bool skip;
  struct td_payload_opts o = *s->o;
  o.type_cast = true;
  const struct td_payload_opts *saved = s->o;
  s->o = &o;
  int rc = (*t->vb == '"' || (*t->vb >= '0' && *t->vb <= '9') || *t->vb == '-')
               ? value_kv(s, "ts", t->vb, t->ve, &kv, &skip) : TD_EPROTO;
  s->o = saved;
  if (rc == TD_ENOMEM) return rc;
  if (rc || kv.type != TD_KV_LONG) {
    if (rc == 0 && kv.type == TD_KV_DOUBLE && kv.v.d > -9.2e18 && kv.v.d < 9.2e18) {
      *ts = (int64_t)kv.v.d; /* LazilyParsedNumber.longValue() truncates */
      return 0;
    }
    return fail(s, "ts is not a valid timestamp");
  }
  *ts = kv.v.l;
  return 0;
}

/* parse_group: one telemetry object (s->p at '{') into a ts group. */
static int parse_group(struct sc *s, struct td_ts_group *g) {
  struct member *m;
  size_t n;
  int rc = scan_object(s, &m, &n);
  if (rc) return rc;
  const struct member *t = find_member(m, n, "ts"), *v = find_member(m, n, "values");
  memset(g, 0, sizeof *g);
  if (t && v) {
    if (*v->vb != '{') return fail(s, "values is not a JSON object");
    if ((rc = ts_value(s, t, &g->ts))) return rc;
    g->has_ts = true;
    struct sc sub = *s;
    sub.p = v->vb;
    sub.end = v->ve;
    struct member *vm;
    size_t vn;
    if ((rc = scan_object(&sub, &vm, &vn))) return rc;
    return members_to_kvs(s, vm, vn, &g->kvs, &g->n);
  }
  return members_to_kvs(s, m, n, &g->kvs, &g->n);
}

static void sc_init(struct sc *s, const char *p, size_t n, const struct td_payload_opts *o, struct td_arena *a,
                    char *err, size_t errlen) {
  s->p = s->start = p;
  s->end = p + n;
  s->o = o;
  s->a = a;
  s->err = err;
  s->errlen = errlen;
  s->max_depth = o->max_depth > 0 ? o->max_depth : DEFAULT_DEPTH;
  if (err && errlen) err[0] = '\0';
}

static int trailing(struct sc *s) {
  skip_ws(s);
  return s->p == s->end ? 0 : malformed(s);
}

int td_payload_telemetry(const char *p, size_t n, const struct td_payload_opts *o, struct td_arena *a,
                         struct td_ts_group **groups, size_t *ngroups, char *err, size_t errlen) {
  struct sc s;
  sc_init(&s, p, n, o, a, err, errlen);
  skip_ws(&s);
  if (s.p >= s.end) return fail(&s, "empty payload");
  int rc;
  if (*s.p == '{') {
    struct td_ts_group *g = td_arena_alloc(a, sizeof *g);
    if (!g) return oom(&s);
    if ((rc = parse_group(&s, g)) || (rc = trailing(&s))) return rc;
    *groups = g;
    *ngroups = 1;
    return 0;
  }
  if (*s.p != '[') return fail(&s, "telemetry must be a JSON object or an array of objects");
  /* validate the whole array first (depth-bounded), then convert each element */
  const char *ab = s.p;
  if ((rc = skip_value(&s, 0)) || (rc = trailing(&s))) return rc;
  struct sc e = s;
  e.p = ab + 1;
  size_t cap = 4, ng = 0;
  struct td_ts_group *g = td_arena_alloc(a, cap * sizeof *g);
  if (!g) return oom(&s);
  skip_ws(&e);
  if (*e.p == ']') { *groups = g; *ngroups = 0; return 0; }
  for (;;) {
    skip_ws(&e);
    if (*e.p != '{') return fail(&s, "telemetry array element %zu is not a JSON object", ng);
    if (ng == cap) {
      struct td_ts_group *ngp = td_arena_alloc(a, 2 * cap * sizeof *g);
      if (!ngp) return oom(&s);
      memcpy(ngp, g, ng * sizeof *g);
      g = ngp;
      cap *= 2;
    }
    if ((rc = parse_group(&e, &g[ng]))) return rc;
    ng++;
    skip_ws(&e);
    if (*e.p == ',') { e.p++; continue; }
    break; /* ']' — validated above */
  }
  *groups = g;
  *ngroups = ng;
  return 0;
}

int td_payload_attributes(const char *p, size_t n, const struct td_payload_opts *o, struct td_arena *a,
                          struct td_kv **kvs, size_t *nkvs, char *err, size_t errlen) {
  struct sc s;
  sc_init(&s, p, n, o, a, err, errlen);
  skip_ws(&s);
  if (s.p >= s.end) return fail(&s, "empty payload");
  if (*s.p != '{') return fail(&s, "attributes must be a JSON object");
  struct member *m;
  size_t nm;
  int rc = scan_object(&s, &m, &nm);
  if (!rc) rc = trailing(&s);
  if (!rc) rc = members_to_kvs(&s, m, nm, kvs, nkvs);
  return rc;
}

/* append_value: like td_kv_append_json_value, except that an integral double
 * whose Java text has an exponent ("1.0E10") is written in plain notation
 * ("10000000000.0"): by the typing rules "1.0E10" would parse back as a LONG.
 * (A double whose every literal has more than 16 fractional digits, e.g.
 * 1.2345678901234567E-10, still comes back as a STRING: ThingsBoard's rule.) */
static int append_value(struct td_buf *out, const struct td_kv *kv) {
  if (kv->type == TD_KV_DOUBLE && isfinite(kv->v.d) && floor(kv->v.d) == kv->v.d) {
    char num[TD_KV_NUM_LEN];
    td_kv_double_str(kv->v.d, num);
    if (strchr(num, 'E')) return td_buf_printf(out, "%.1f", kv->v.d);
  }
  return td_kv_append_json_value(out, kv);
}

int td_payload_kvs_json(const struct td_kv *kvs, size_t n, struct td_buf *out) {
  int rc = td_buf_puts(out, "{");
  for (size_t i = 0; i < n && !rc; i++) {
    if (i) rc = td_buf_puts(out, ",");
    if (!rc) rc = td_buf_json_str(out, kvs[i].key);
    if (!rc) rc = td_buf_puts(out, ":");
    if (!rc) rc = append_value(out, &kvs[i]);
  }
  if (!rc) rc = td_buf_puts(out, "}");
  return rc;
}
