/* run.c — clocks and process limits of the bench tools (see run.h). */
#include "run.h"

#include <sys/resource.h>
#include <time.h>
#include <uv.h>

uint64_t bench_now_us(void) { return uv_hrtime() / 1000u; }

uint64_t bench_now_ms(void) { return uv_hrtime() / 1000000u; }

double bench_mono_s(void) { return (double)uv_hrtime() / 1e9; }

void bench_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

uint64_t bench_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return (uint64_t)rl.rlim_cur;
}

void bench_usage_get(struct bench_usage *u) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  u->user_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  u->sys_s = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  u->maxrss_kb = ru.ru_maxrss;
}
