/* log.c — the logger behind log.h: one write(2) per line, so lines from
 * different threads never interleave. */
#include "base/log.h"
#include "base/time.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int td_log_level_current = TD_LOG_INFO;

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void td_log_set_level(enum td_log_level level) { td_log_level_current = (int)level; }

int td_log_level_parse(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 5; i++)
    if (strcasecmp(s, names[i]) == 0) return i;
  return -1;
}

static void vwrite_line(int level, const char *module, const char *fmt, va_list ap) {
  char line[2048];
  int64_t now = td_now_ms();
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %-5s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (int)(now % 1000), module, level_names[level & 3]);
  if (n < 0) return;
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  if (m < 0) return;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

void td_log_write(int level, const char *module, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwrite_line(level, module, fmt, ap);
  va_end(ap);
}

void td_log_write_limited(struct td_log_limit *lim, int per_sec, int level, const char *module,
                          const char *fmt, ...) {
  /* Racy counters are fine here: the limit is advisory, not an invariant. */
  int64_t now = td_now_ms();
  if (now - lim->window_ms >= 1000) {
    if (lim->dropped)
      td_log_write(level, module, "action=\"rate-limited log\" suppressed=%u", lim->dropped);
    lim->window_ms = now;
    lim->count = 0;
    lim->dropped = 0;
  }
  if (lim->count >= (uint32_t)per_sec) {
    lim->dropped++;
    return;
  }
  lim->count++;
  va_list ap;
  va_start(ap, fmt);
  vwrite_line(level, module, fmt, ap);
  va_end(ap);
}
