/* time.h — wall-clock and monotonic milliseconds. */
#ifndef TD_BASE_TIME_H
#define TD_BASE_TIME_H
#include <stdint.h>
#include <time.h>

/* td_now_ms: milliseconds since the Unix epoch (what ThingsBoard calls ts). */
static inline int64_t td_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* td_mono_ms / td_mono_us: monotonic clock, for timeouts and measurements. */
static inline int64_t td_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static inline int64_t td_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* td_mono_deadline_us: the CLOCK_MONOTONIC time us microseconds from now, for
 * pthread_cond_timedwait on a condition variable set to that clock. */
static inline struct timespec td_mono_deadline_us(int64_t us) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t ns = ts.tv_nsec + us * 1000;
  ts.tv_sec += (time_t)(ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  return ts;
}
#endif
