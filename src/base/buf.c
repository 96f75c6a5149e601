/* buf.c — growable, limited byte buffer (buf.h). */
#include "base/buf.h"
#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void td_buf_init(struct td_buf *b, size_t limit) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->limit = limit ? limit : TD_BUF_DEFAULT_LIMIT;
}

void td_buf_deinit(struct td_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int td_buf_reserve(struct td_buf *b, size_t extra) {
  if (extra > b->limit || b->len + extra > b->limit) return TD_ETOOBIG;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  if (cap > b->limit + 1) cap = b->limit + 1;
  char *p = realloc(b->data, cap);
  if (!p) return TD_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int td_buf_append(struct td_buf *b, const void *p, size_t n) {
  int rc = td_buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int td_buf_puts(struct td_buf *b, const char *s) { return td_buf_append(b, s, strlen(s)); }

int td_buf_vprintf(struct td_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return TD_EINVAL;
  int rc = td_buf_reserve(b, (size_t)n);
  if (rc) return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int td_buf_printf(struct td_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = td_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

int td_buf_json_str(struct td_buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  int rc = td_buf_append(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
    const unsigned char *run = p;
    while (*p >= 0x20 && *p != '"' && *p != '\\') p++;
    if (p > run) rc = td_buf_append(b, run, (size_t)(p - run));
    if (rc || !*p) break;
    char esc[6] = {'\\', 0};
    size_t n = 2;
    switch (*p) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
      esc[4] = hex[*p >> 4]; esc[5] = hex[*p & 15];
      n = 6;
    }
    rc = td_buf_append(b, esc, n);
  }
  if (!rc) rc = td_buf_append(b, "\"", 1);
  return rc;
}

void td_buf_reset(struct td_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void td_buf_consume(struct td_buf *b, size_t n) {
  if (n >= b->len) {
    td_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *td_buf_take(struct td_buf *b) {
  char *p = b->data;
  if (!p) p = calloc(1, 1);
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}
