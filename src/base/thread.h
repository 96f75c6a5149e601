/* thread.h — name the calling thread, so that top -H, ps -L, perf and gdb
 * tell thingsd's threads apart ("td-io-0", "td-actor-1", "td-qsync", ...).
 * Linux keeps at most 15 characters; longer names are cut. */
#ifndef TD_BASE_THREAD_H
#define TD_BASE_THREAD_H

#include <pthread.h>
#include <stdio.h>

/* td_thread_name: name the calling thread `name`, or "name-index" when
 * index >= 0. */
static inline void td_thread_name(const char *name, int index) {
  char buf[16];
  if (index >= 0) snprintf(buf, sizeof buf, "%.10s-%d", name, index % 1000);
  else snprintf(buf, sizeof buf, "%.15s", name);
  pthread_setname_np(pthread_self(), buf);
}

#endif
