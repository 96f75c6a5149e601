/* log_int.h — private to the embedded durable log (src/queue/log/): segment
 * files, record framing and the consumer-offset file. Nothing outside
 * src/queue/log/ includes this.
 *
 * On disk, in cfg->dir:
 *   <20-digit base offset>.log   segments; record i of a segment has offset base + i
 *   consumer.offset              committed offset: u64 LE + u32 LE crc32c of those 8 bytes
 * A record is [u32 LE payload length][u32 LE crc32c(payload)][payload]. */
#ifndef TD_QUEUE_LOG_LOG_INT_H
#define TD_QUEUE_LOG_LOG_INT_H
#include <stddef.h>
#include <stdint.h>

#define QLOG_HDR 8u
/* Largest payload accepted on write and on recovery (a length field above it is corruption). */
#define QLOG_MAX_RECORD (16u * 1024 * 1024)
#define QLOG_MAX_SEGMENTS 1000000u

struct qlog_seg {
  uint64_t base;   /* offset of its first record (from the file name) */
  uint64_t count;  /* valid records (at open time) */
  uint64_t bytes;  /* valid bytes (at open time) */
};

/* qlog_seg_path: "<dir>/<base>.log" into out (size >= n). */
void qlog_seg_path(char *out, size_t n, const char *dir, uint64_t base);

/* qlog_list: the segments of dir, sorted by base (*out heap, caller frees).
 * Only counts are filled in by qlog_scan. Returns 0 or TD_EIO/TD_ENOMEM. */
int qlog_list(const char *dir, struct qlog_seg **out, size_t *n);

/* qlog_scan: validate a segment's records; fills count and bytes (the end of
 * the last valid record). With truncate != 0, cuts off anything after it (a
 * torn tail) and reports it in *torn. Returns 0 or TD_EIO. */
int qlog_scan(const char *dir, struct qlog_seg *seg, int truncate, int *torn);

/* qlog_walk: call fn for each valid record in p[0..size). Stops at the first
 * invalid one or when fn returns non-zero. Returns the number of bytes
 * covered by the records visited. */
typedef int (*qlog_record_fn)(void *arg, uint64_t index, const uint8_t *payload, uint32_t len);
size_t qlog_walk(const uint8_t *p, size_t size, qlog_record_fn fn, void *arg);

/* qlog_offset_load: the committed offset (0 when the file is missing or
 * damaged — everything is redelivered: at-least-once). */
uint64_t qlog_offset_load(const char *dir);
/* qlog_offset_save: write temp + (fdatasync) + rename (+ dir fsync). 0 or TD_EIO. */
int qlog_offset_save(const char *dir, uint64_t off, int do_fsync);

/* qlog_fsync_dir: make directory entries (new segment, rename) durable. */
int qlog_fsync_dir(const char *dir);

static inline void qlog_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t qlog_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
#endif
