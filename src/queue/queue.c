/* queue.c — td_queue_open: picks the queue backend by cfg->type (queue.h).
 * Backends live in subdirectories (log/ = the embedded durable log). */
#include "queue/queue.h"

#include <string.h>

#include "base/err.h"
#include "base/log.h"

/* td_queue_open: see queue.h. NULL or empty type means "log". Returns
 * TD_EINVAL for an unknown type, else the backend's result. */
int td_queue_open(const struct td_queue_config *cfg, struct td_queue **out) {
  if (!cfg || !out) return TD_EINVAL;
  const char *type = cfg->type && *cfg->type ? cfg->type : "log";
  if (strcmp(type, "log") == 0) return td_queue_log_open(cfg, out);
  td_log(TD_LOG_ERROR, "queue", "action=open type=\"%s\" err=unknown_type", type);
  return TD_EINVAL;
}
