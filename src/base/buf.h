/* buf.h — a growable byte buffer with a hard limit.
 *
 * The buffer owns `data` (always NUL-terminated when cap > 0, so text built
 * in it can be used as a C string). Appends past `limit` fail with
 * TD_ETOOBIG and leave the buffer unchanged; limit 0 means the default of
 * TD_BUF_DEFAULT_LIMIT. Not thread-safe: one owner at a time. */
#ifndef TD_BASE_BUF_H
#define TD_BASE_BUF_H
#include <stddef.h>
#include <stdarg.h>

#define TD_BUF_DEFAULT_LIMIT (64u * 1024 * 1024)

struct td_buf {
  char *data;
  size_t len;
  size_t cap;
  size_t limit;
};

void td_buf_init(struct td_buf *b, size_t limit);
void td_buf_deinit(struct td_buf *b);
/* td_buf_reserve: make room for `extra` more bytes (plus the NUL). */
int td_buf_reserve(struct td_buf *b, size_t extra);
int td_buf_append(struct td_buf *b, const void *p, size_t n);
int td_buf_puts(struct td_buf *b, const char *s);
int td_buf_printf(struct td_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int td_buf_vprintf(struct td_buf *b, const char *fmt, va_list ap);
/* td_buf_json_str: append s as a JSON string literal (quotes and escapes). */
int td_buf_json_str(struct td_buf *b, const char *s);
void td_buf_reset(struct td_buf *b);
/* td_buf_consume: drop the first n bytes. */
void td_buf_consume(struct td_buf *b, size_t n);
/* td_buf_take: hand the data to the caller (who frees it with free()); the
 * buffer is left empty and reusable. Returns "" (heap) for an empty buffer. */
char *td_buf_take(struct td_buf *b);
#endif
