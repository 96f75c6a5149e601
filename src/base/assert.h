/* assert.h — TD_ASSERT for preconditions (debug builds only) and TD_BUG_ON
 * for states that must never happen (always on: logs and aborts). */
#ifndef TD_BASE_ASSERT_H
#define TD_BASE_ASSERT_H
#include <stdlib.h>
#include "base/log.h"

#define TD_BUG_ON(cond, why)                                                         \
  do {                                                                               \
    if (__builtin_expect(!!(cond), 0)) {                                             \
      td_log_write(TD_LOG_ERROR, "bug", "file=%s line=%d cond=\"%s\" why=\"%s\"",    \
                   __FILE__, __LINE__, #cond, (why));                                \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#ifdef TD_DEBUG
#define TD_ASSERT(x) TD_BUG_ON(!(x), "assertion failed")
#else
#define TD_ASSERT(x) ((void)0)
#endif
#endif
