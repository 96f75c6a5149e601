/* store_test_util.h — shared helpers for the store unit tests: a fresh
 * database path under $TD_TEST_TMP (or /tmp) and its removal. */
#ifndef TD_TEST_STORE_UTIL_H
#define TD_TEST_STORE_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void test_db_path(char *buf, size_t n, const char *name) {
  static int seq;
  const char *dir = getenv("TD_TEST_TMP");
  if (!dir || !*dir) dir = "/tmp";
  mkdir(dir, 0755); /* may exist already */
  snprintf(buf, n, "%s/td-store-%s-%d-%d.db", dir, name, (int)getpid(), seq++);
  unlink(buf);
}

static inline void test_db_remove(const char *path) {
  char p[600];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
}
#endif
