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
#endif
