/* segment.c — the embedded log's files (log_int.h): segment naming and
 * listing, record validation and torn-tail truncation at start-up, and the
 * consumer-offset file. Used by log.c's open, writer and consumer threads. */
#include "queue/log/log_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"

#define OFFSET_FILE "consumer.offset"

void qlog_seg_path(char *out, size_t n, const char *dir, uint64_t base) {
  snprintf(out, n, "%s/%020" PRIu64 ".log", dir, base);
}

static int parse_name(const char *name, uint64_t *base) {
  size_t len = strlen(name);
  if (len != 24 || strcmp(name + 20, ".log") != 0) return -1;
  uint64_t v = 0;
  for (int i = 0; i < 20; i++) {
    if (name[i] < '0' || name[i] > '9') return -1;
    uint64_t d = (uint64_t)(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *base = v;
  return 0;
}

static int cmp_seg(const void *a, const void *b) {
  uint64_t x = ((const struct qlog_seg *)a)->base, y = ((const struct qlog_seg *)b)->base;
  return x < y ? -1 : x > y;
}

int qlog_list(const char *dir, struct qlog_seg **out, size_t *n) {
  DIR *d = opendir(dir);
  if (!d) return TD_EIO;
  struct qlog_seg *v = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    uint64_t base;
    if (parse_name(e->d_name, &base)) continue;
    if (len == cap) {
      if (cap >= QLOG_MAX_SEGMENTS) { rc = TD_ETOOBIG; break; }
      cap = cap ? cap * 2 : 16;
      struct qlog_seg *nv = realloc(v, cap * sizeof *v);
      if (!nv) { rc = TD_ENOMEM; break; }
      v = nv;
    }
    v[len++] = (struct qlog_seg){.base = base};
  }
  closedir(d);
  if (rc) { free(v); return rc; }
  if (len) qsort(v, len, sizeof *v, cmp_seg);
  *out = v;
  *n = len;
  return 0;
}

size_t qlog_walk(const uint8_t *p, size_t size, qlog_record_fn fn, void *arg) {
  size_t pos = 0;
  uint64_t index = 0;
  while (size - pos >= QLOG_HDR) {
    uint32_t len = qlog_get_u32(p + pos);
    uint32_t crc = qlog_get_u32(p + pos + 4);
    /* Never trust the length: it must fit in what is left and under the cap. */
    if (len == 0 || len > QLOG_MAX_RECORD || len > size - pos - QLOG_HDR) break;
    if (td_crc32c(0, p + pos + QLOG_HDR, len) != crc) break;
    if (fn && fn(arg, index, p + pos + QLOG_HDR, len)) break;
    pos += QLOG_HDR + len;
    index++;
  }
  return pos;
}

static int count_fn(void *arg, uint64_t index, const uint8_t *payload, uint32_t len) {
  (void)payload; (void)len;
  *(uint64_t *)arg = index + 1;
  return 0;
}

int qlog_scan(const char *dir, struct qlog_seg *seg, int truncate, int *torn) {
  char path[4096];
  qlog_seg_path(path, sizeof path, dir, seg->base);
  int fd = open(path, truncate ? O_RDWR : O_RDONLY);
  if (fd < 0) return TD_EIO;
  struct stat st;
  if (fstat(fd, &st) < 0) { close(fd); return TD_EIO; }
  size_t size = (size_t)st.st_size;
  seg->count = 0;
  seg->bytes = 0;
  if (torn) *torn = 0;
  if (size == 0) { close(fd); return 0; }
  void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) { close(fd); return TD_EIO; }
  uint64_t count = 0;
  size_t valid = qlog_walk(p, size, count_fn, &count);
  munmap(p, size);
  seg->count = count;
  seg->bytes = valid;
  int rc = 0;
  if (valid != size) {
    if (torn) *torn = 1;
    if (truncate) {
      td_log(TD_LOG_WARN, "queue", "action=recover segment=%s valid_bytes=%zu dropped_bytes=%zu",
             path, valid, size - valid);
      if (ftruncate(fd, (off_t)valid) < 0 || fdatasync(fd) < 0) rc = TD_EIO;
    }
  }
  close(fd);
  return rc;
}

uint64_t qlog_offset_load(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, OFFSET_FILE);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  uint8_t b[13];
  ssize_t n = read(fd, b, sizeof b);
  close(fd);
  if (n != 12 || td_crc32c(0, b, 8) != qlog_get_u32(b + 8)) {
    td_log(TD_LOG_WARN, "queue", "action=load_offset file=%s err=damaged (redelivering all)", path);
    return 0;
  }
  return (uint64_t)qlog_get_u32(b) | (uint64_t)qlog_get_u32(b + 4) << 32;
}

int qlog_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return TD_EIO;
  int rc = fsync(fd) < 0 ? TD_EIO : 0;
  close(fd);
  return rc;
}

int qlog_offset_save(const char *dir, uint64_t off, int do_fsync) {
  char tmp[4096], path[4096];
  snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, OFFSET_FILE);
  snprintf(path, sizeof path, "%s/%s", dir, OFFSET_FILE);
  uint8_t b[12];
  qlog_put_u32(b, (uint32_t)off);
  qlog_put_u32(b + 4, (uint32_t)(off >> 32));
  qlog_put_u32(b + 8, td_crc32c(0, b, 8));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return TD_EIO;
  int rc = 0;
  if (write(fd, b, sizeof b) != (ssize_t)sizeof b) rc = TD_EIO;
  if (!rc && do_fsync && fdatasync(fd) < 0) rc = TD_EIO;
  close(fd);
  if (!rc && rename(tmp, path) < 0) rc = TD_EIO;
  if (!rc && do_fsync) rc = qlog_fsync_dir(dir);
  if (rc) td_log(TD_LOG_ERROR, "queue", "action=save_offset dir=%s errno=%d", dir, errno);
  return rc;
}
