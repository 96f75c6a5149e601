/* log.h — one line per event, key=value fields.
 *
 *   td_log(TD_LOG_INFO, "mqtt", "conn=%u action=\"reading CONNECT\" err=%s", id, td_errname(rc));
 *
 * The level is checked before anything is formatted. Lines go to stderr with a
 * UTC timestamp, level and module. Thread-safe. Never log secrets or payloads.
 * td_log_limited() is for misbehaving clients: at most `per_sec` lines per
 * second per call site, the rest counted and reported with the next line. */
#ifndef TD_BASE_LOG_H
#define TD_BASE_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum td_log_level { TD_LOG_DEBUG = 0, TD_LOG_INFO, TD_LOG_WARN, TD_LOG_ERROR, TD_LOG_OFF };

extern int td_log_level_current;

void td_log_set_level(enum td_log_level level);
/* td_log_level_parse: "debug"/"info"/"warn"/"error"/"off" (case-insensitive); -1 if unknown. */
int td_log_level_parse(const char *s);
void td_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct td_log_limit { int64_t window_ms; uint32_t count; uint32_t dropped; };
void td_log_write_limited(struct td_log_limit *lim, int per_sec, int level, const char *module,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define td_log(level, module, ...)                                           \
  do {                                                                       \
    if ((level) >= td_log_level_current) td_log_write((level), (module), __VA_ARGS__); \
  } while (0)

#define td_log_limited(per_sec, level, module, ...)                         \
  do {                                                                       \
    static struct td_log_limit td__lim_;                                     \
    if ((level) >= td_log_level_current)                                     \
      td_log_write_limited(&td__lim_, (per_sec), (level), (module), __VA_ARGS__); \
  } while (0)

#endif
