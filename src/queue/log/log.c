/* log.c — the embedded durable queue ("log" backend of queue.h).
 *
 * Threads:
 *  - producers (any thread) encode their messages into framed records, reserve
 *    room in the in-flight window and queue a request for the writer;
 *  - the writer thread does group commit: it takes every request queued since
 *    its last write (up to max_batch_bytes), writes them with writev, hands
 *    the messages (in memory, in order) to the consumer thread and the
 *    acknowledgements to the syncer thread; it never waits for the disk;
 *  - the syncer thread calls fdatasync once for everything written since its
 *    last one, then each request's done(arg, 0): producers hear "durable" only
 *    after the sync, the rule engine does not wait for it. A segment the
 *    writer has left is synced and closed here too, and the directory entry of
 *    a new one is synced before any acknowledgement of a record in it;
 *  - the keeper thread persists the committed offset every 100 ms when it
 *    changed (never past what is synced) and deletes segments wholly below it;
 *  - the consumer thread first replays, from the segment files, every record
 *    at or after the committed offset that was there at open (at-least-once
 *    after a crash), then delivers live messages.
 *
 * Acks may arrive out of order from any thread: a ring bitmap over
 * [committed, delivered_end) marks acked offsets; committed is the lowest
 * unacked offset. The consumer waits (bounded memory) when that span reaches
 * the ring size; producers get TD_EFULL when max_inflight messages are
 * produced but not acked.
 *
 * The embedded log keeps one total order over all messages, which implies the
 * per-partition order queue.h promises; cfg->partitions is not used here. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/thread.h"
#include "base/time.h"
#include "queue/log/log_int.h"
#include "queue/queue.h"

#define PERSIST_EVERY_MS 100
#define BATCH_IOV 512

struct preq {
  struct preq *next;
  td_queue_done_fn done;
  void *arg;
  uint64_t first;      /* offset of msgs[0], assigned by the writer */
  size_t n;
  int status;
  struct td_buf enc;   /* framed records of all msgs */
  struct td_msg *msgs[];
};

struct qlog {
  struct td_queue base;
  char *dir;
  size_t max_inflight, max_batch_bytes, segment_bytes;
  int fsync;
  int64_t fsync_interval_us;

  pthread_mutex_t mu;
  pthread_cond_t wcond;        /* writer: work or close */
  pthread_cond_t ccond;        /* consumer: live messages, window room, stop */
  int closed;                  /* produce refused */
  int cstop;                   /* consumer must stop */
  struct preq *pend_head, *pend_tail;   /* to the writer */
  struct preq *cons_head, *cons_tail;   /* to the consumer */
  size_t inflight;
  uint64_t produced, acked;

  /* ack window (mu) */
  uint64_t committed;          /* lowest unacked offset */
  uint64_t delivered_end;      /* next offset to deliver */
  uint64_t *bits;
  uint64_t ring;               /* bits in the ring, power of two */
  int cwait_room;

  /* writer thread only */
  int fd;
  uint64_t seg_base, seg_size, next_offset;
  int dir_pending;             /* the current segment's directory entry is not synced yet */
  struct qlog_seg *segs;       /* live segment files, sorted; last = current (kmu) */
  size_t nsegs, segs_cap;
  uint64_t durable_end;        /* offsets below it are fdatasync'ed (smu) */
  int broken;                  /* an fdatasync failed: produce refused from then on (mu) */

  /* keeper thread (kmu): the persisted offset and old segments, off the
   * writer's path (saving the offset costs two syncs) */
  pthread_mutex_t kmu;
  pthread_cond_t kcond;
  int kstop, keeper_started;
  uint64_t persisted;
  pthread_t keeper;

  /* consumer */
  td_queue_consume_fn fn;
  void *fn_arg;
  int consuming;
  struct qlog_seg *replay;     /* segments as found at open */
  size_t nreplay;

  pthread_t writer, consumer;

  /* syncer thread (smu): fdatasync and the producers' acknowledgements, off
   * the writer's path, so the next batch is written while this one syncs */
  pthread_mutex_t smu;
  pthread_cond_t scond;
  struct synced *sync_head, *sync_tail; /* written, waiting for the sync */
  int syncing, sstop;
  int sidle;                   /* the syncer waits for work (not for its interval) */
  pthread_t syncer;
  int syncer_started;
};

/* The acknowledgements of requests written to one file, in produce order. */
struct ack { td_queue_done_fn done; void *arg; int status; };
struct synced {
  struct synced *next;
  uint64_t end;                /* next_offset after the requests */
  int fd;                      /* the segment they were written to */
  uint8_t retire;              /* the writer has left fd: close it after its sync */
  uint8_t dir;                 /* sync the directory too (fd is a new segment) */
  size_t n;
  struct ack acks[];
};

static const struct td_queue_ops log_ops;

/* ---- ack window (callers hold mu) ---- */

static int bit_get(struct qlog *q, uint64_t o) {
  uint64_t i = o & (q->ring - 1);
  return (int)((q->bits[i >> 6] >> (i & 63)) & 1);
}
static void bit_set(struct qlog *q, uint64_t o) {
  uint64_t i = o & (q->ring - 1);
  q->bits[i >> 6] |= (uint64_t)1 << (i & 63);
}
static void bit_clear(struct qlog *q, uint64_t o) {
  uint64_t i = o & (q->ring - 1);
  q->bits[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

static void advance_committed(struct qlog *q) {
  uint64_t before = q->committed;
  while (q->committed < q->delivered_end && bit_get(q, q->committed)) {
    bit_clear(q, q->committed);
    q->committed++;
  }
  if (q->committed != before && q->cwait_room) pthread_cond_broadcast(&q->ccond);
}

/* Wait until one more offset fits in the window; 0, or -1 when stopping. */
static int wait_room(struct qlog *q) {
  while (q->delivered_end - q->committed >= q->ring && !q->cstop) {
    q->cwait_room = 1;
    pthread_cond_wait(&q->ccond, &q->mu);
    q->cwait_room = 0;
  }
  return q->cstop ? -1 : 0;
}

/* Mark offsets [delivered_end, target) as done without delivering them
 * (holes left by a damaged segment, or skipped undecodable records). */
static int skip_to(struct qlog *q, uint64_t target) {
  while (q->delivered_end < target) {
    if (q->committed == q->delivered_end) {
      q->committed = q->delivered_end = target;
      break;
    }
    if (wait_room(q)) return -1;
    bit_set(q, q->delivered_end++);
    advance_committed(q);
  }
  return 0;
}

/* ---- producer side ---- */

static void preq_free(struct preq *r, int unref) {
  if (unref)
    for (size_t i = 0; i < r->n; i++) td_msg_unref(r->msgs[i]);
  td_buf_deinit(&r->enc);
  free(r);
}

static int encode_all(struct preq *r) {
  for (size_t i = 0; i < r->n; i++) {
    size_t at = r->enc.len;
    uint8_t hdr[QLOG_HDR] = {0};
    int rc = td_buf_append(&r->enc, hdr, sizeof hdr);
    if (!rc) rc = td_msg_encode(r->msgs[i], &r->enc);
    if (rc) return rc;
    size_t len = r->enc.len - at - QLOG_HDR;
    if (len > QLOG_MAX_RECORD) return TD_ETOOBIG;
    uint8_t *h = (uint8_t *)r->enc.data + at;
    qlog_put_u32(h, (uint32_t)len);
    qlog_put_u32(h + 4, td_crc32c(0, h + QLOG_HDR, len));
  }
  return 0;
}

static int log_produce(struct td_queue *tq, struct td_msg *const *msgs, size_t n, td_queue_done_fn done,
                       void *arg) {
  struct qlog *q = (struct qlog *)tq;
  if (n == 0 || !done) return TD_EINVAL;
  pthread_mutex_lock(&q->mu);
  int rc = q->closed ? TD_ECLOSED : q->broken ? TD_EIO : (q->inflight + n > q->max_inflight ? TD_EFULL : 0);
  if (!rc) q->inflight += n;   /* reserve before the (unlocked) encoding */
  pthread_mutex_unlock(&q->mu);
  if (rc) return rc;

  struct preq *r = calloc(1, sizeof *r + n * sizeof r->msgs[0]);
  if (!r) { rc = TD_ENOMEM; goto unreserve; }
  td_buf_init(&r->enc, 0);   /* one produce call is at most TD_BUF_DEFAULT_LIMIT bytes */
  r->done = done;
  r->arg = arg;
  r->n = n;
  for (size_t i = 0; i < n; i++) r->msgs[i] = msgs[i];
  rc = encode_all(r);
  if (rc) { preq_free(r, 0); goto unreserve; }
  for (size_t i = 0; i < n; i++) td_msg_ref(msgs[i]);

  pthread_mutex_lock(&q->mu);
  if (q->closed) {   /* closed while encoding: the writer may be gone */
    q->inflight -= n;
    pthread_mutex_unlock(&q->mu);
    preq_free(r, 1);
    return TD_ECLOSED;
  }
  if (q->pend_tail) q->pend_tail->next = r; else q->pend_head = r;
  q->pend_tail = r;
  pthread_cond_signal(&q->wcond);
  pthread_mutex_unlock(&q->mu);
  return 0;

unreserve:
  pthread_mutex_lock(&q->mu);
  q->inflight -= n;
  pthread_mutex_unlock(&q->mu);
  return rc;
}

/* ---- writer thread ---- */

static int seg_push(struct qlog *q, uint64_t base) {
  if (q->nsegs == q->segs_cap) {
    size_t cap = q->segs_cap ? q->segs_cap * 2 : 16;
    struct qlog_seg *v = realloc(q->segs, cap * sizeof *v);
    if (!v) return TD_ENOMEM;
    q->segs = v;
    q->segs_cap = cap;
  }
  q->segs[q->nsegs++] = (struct qlog_seg){.base = base};
  return 0;
}

/* Start a new segment file at next_offset. The old fd stays open (the caller
 * hands it to the syncer); the new directory entry is synced by the syncer
 * before the first acknowledgement of a record in it (dir_pending). On error
 * nothing changes. */
static int roll(struct qlog *q) {
  char path[4096];
  qlog_seg_path(path, sizeof path, q->dir, q->next_offset);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    td_log(TD_LOG_ERROR, "queue", "action=roll segment=%s errno=%d", path, errno);
    return TD_EIO;
  }
  pthread_mutex_lock(&q->kmu);
  int rc = seg_push(q, q->next_offset);
  pthread_mutex_unlock(&q->kmu);
  if (rc) { close(fd); return rc; }
  q->dir_pending = q->fsync;
  q->fd = fd;
  q->seg_base = q->next_offset;
  q->seg_size = 0;
  return 0;
}

static int write_all(int fd, struct iovec *iov, int cnt) {
  while (cnt > 0) {
    ssize_t w = writev(fd, iov, cnt);
    if (w < 0) {
      if (errno == EINTR) continue;
      return TD_EIO;
    }
    while (cnt > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* Write requests [from, to) into the current segment with one writev per
 * BATCH_IOV requests (no sync: that is the syncer's). On error the segment is
 * cut back. */
static int flush_group(struct qlog *q, struct preq *from, struct preq *to, uint64_t bytes) {
  struct iovec iov[BATCH_IOV];
  int rc = 0, cnt = 0;
  for (struct preq *r = from; r != to && !rc; r = r->next) {
    iov[cnt].iov_base = r->enc.data;
    iov[cnt].iov_len = r->enc.len;
    if (++cnt == BATCH_IOV || r->next == to) {
      rc = write_all(q->fd, iov, cnt);
      cnt = 0;
    }
  }
  if (rc) {
    td_log(TD_LOG_ERROR, "queue", "action=write dir=%s errno=%d", q->dir, errno);
    /* Cut the partial write off so the next batch follows the last good record
     * (if this fails too, recovery drops the torn tail at the next start). */
    if (ftruncate(q->fd, (off_t)q->seg_size) < 0 || lseek(q->fd, (off_t)q->seg_size, SEEK_SET) < 0)
      td_log(TD_LOG_ERROR, "queue", "action=truncate_after_error dir=%s errno=%d", q->dir, errno);
    return rc;
  }
  q->seg_size += bytes;
  return 0;
}

/* sync_drain: wait until the syncer has nothing pending (writer thread, before
 * it acknowledges anything itself). */
static void sync_drain(struct qlog *q) {
  pthread_mutex_lock(&q->smu);
  while (q->sync_head || q->syncing) pthread_cond_wait(&q->scond, &q->smu);
  pthread_mutex_unlock(&q->smu);
}

/* mark_broken: an fdatasync failed. After that the file's state is unknown
 * (Linux may drop the dirty pages), so the log takes nothing more; an
 * operator must act. */
static void mark_broken(struct qlog *q) {
  td_log(TD_LOG_ERROR, "queue", "action=fdatasync dir=%s errno=%d result=\"refusing new messages\"", q->dir, errno);
  pthread_mutex_lock(&q->mu);
  q->broken = 1;
  pthread_mutex_unlock(&q->mu);
}

/* sync_file: make what was written to fd durable (and, with dir, its
 * directory entry); with retire, close fd afterwards. 0 or TD_EIO. */
static int sync_file(struct qlog *q, int fd, int dir, int retire) {
  int rc = 0;
  if (q->fsync && (fdatasync(fd) < 0 || (dir && qlog_fsync_dir(q->dir)))) rc = TD_EIO;
  if (rc) mark_broken(q);
  if (retire) close(fd);
  return rc;
}

static void ack_all(const struct synced *e, int rc) {
  for (size_t i = 0; i < e->n; i++) e->acks[i].done(e->acks[i].arg, e->acks[i].status ? e->acks[i].status : rc);
}

/* interval_wait: hold the next sync until fsync_interval_us after the start
 * of the last one (smu held), so that everything written meanwhile shares it.
 * Each fdatasync is a few block requests and a cache flush: at 20k msg/s an
 * unpaced syncer ran about 650 of them a second, one per ~30 messages, at 12%
 * of a core, and their cost showed in the latency of everything else
 * (bench/live_run.sh; docs/performance.md). Close does not wait. */
static void interval_wait(struct qlog *q, int64_t last_us) {
  if (!q->fsync || q->fsync_interval_us <= 0) return;
  int64_t due = last_us + q->fsync_interval_us;
  while (!q->sstop) {
    int64_t now = td_mono_us();
    if (now >= due) return;
    struct timespec ts = td_mono_deadline_us(due - now);
    pthread_cond_timedwait(&q->scond, &q->smu, &ts);
  }
}

/* syncer_main: one fdatasync per file for everything written since the last
 * round (at most one round per fsync_interval_us), then their
 * acknowledgements, in order. */
static void *syncer_main(void *arg) {
  struct qlog *q = arg;
  td_thread_name("td-qsync", -1);
  int64_t last_us = 0;
  pthread_mutex_lock(&q->smu);
  for (;;) {
    q->sidle = 1;
    while (!q->sync_head && !q->sstop) pthread_cond_wait(&q->scond, &q->smu);
    q->sidle = 0;
    interval_wait(q, last_us);
    last_us = td_mono_us();
    struct synced *e = q->sync_head;
    if (!e) break; /* stop, nothing left */
    q->sync_head = q->sync_tail = NULL;
    q->syncing = 1;
    pthread_mutex_unlock(&q->smu);
    uint64_t end = 0;
    int failed = 0;
    while (e) {
      /* the run of entries written to the same file (a retired file ends it) */
      struct synced *last = e;
      int dir = e->dir;
      while (!last->retire && last->next && last->next->fd == e->fd) {
        last = last->next;
        dir |= last->dir;
      }
      int rc = sync_file(q, e->fd, dir, last->retire);
      failed |= rc != 0;
      struct synced *stop = last->next;
      while (e != stop) {
        struct synced *next = e->next;
        ack_all(e, rc);
        if (!failed) end = e->end;
        free(e);
        e = next;
      }
    }
    pthread_mutex_lock(&q->smu);
    if (end) q->durable_end = end;
    q->syncing = 0;
    pthread_cond_broadcast(&q->scond);
  }
  pthread_mutex_unlock(&q->smu);
  return NULL;
}

/* queue_sync: hand the acknowledgements of requests [from, to), written to fd
 * and ending at offset end, to the syncer (retire: the writer has left fd;
 * dir: fd is a new segment). The callbacks are copied: the consumer may free
 * a request as soon as it has it. */
static void queue_sync(struct qlog *q, struct preq *from, struct preq *to, int fd, int retire, int dir,
                       uint64_t end) {
  size_t n = 0;
  for (struct preq *r = from; r != to; r = r->next) n++;
  struct synced *sy = malloc(sizeof *sy + n * sizeof sy->acks[0]);
  if (!sy) { /* no memory: sync and acknowledge here, in order after the syncer's */
    sync_drain(q);
    int rc = sync_file(q, fd, dir, retire);
    for (struct preq *r = from; r != to; r = r->next) r->done(r->arg, r->status ? r->status : rc);
    pthread_mutex_lock(&q->smu);
    if (!rc) q->durable_end = end;
    pthread_mutex_unlock(&q->smu);
    return;
  }
  *sy = (struct synced){.end = end, .fd = fd, .retire = (uint8_t)retire, .dir = (uint8_t)dir};
  for (struct preq *r = from; r != to; r = r->next) sy->acks[sy->n++] = (struct ack){r->done, r->arg, r->status};
  pthread_mutex_lock(&q->smu);
  if (q->sync_tail) q->sync_tail->next = sy; else q->sync_head = sy;
  q->sync_tail = sy;
  if (q->sidle) pthread_cond_signal(&q->scond); /* in its interval it comes by itself */
  pthread_mutex_unlock(&q->smu);
}

/* write_batch: write the requests (rolling to a new segment at the size
 * limit), hand their acknowledgements to the syncer and the messages to the
 * consumer. The records are written (page cache), not yet synced, when the
 * consumer gets them: a device hears "stored" only once they are (architecture
 * invariant 1), while the rule engine (and a WebSocket subscriber) never waits
 * for the disk, and the next batch is written while this one syncs. After a
 * crash before the sync the device has no ack and sends again; the persisted
 * consumer offset never passes durable_end (housekeeping), so no offset is
 * skipped. */
static void write_batch(struct qlog *q, struct preq *batch) {
  struct preq *group = batch;
  uint64_t group_bytes = 0, group_first = q->next_offset;
  int rc = 0;
  struct preq *r = batch;
  for (; r && !rc; r = r->next) {
    if (q->seg_size + group_bytes >= q->segment_bytes && q->seg_size + group_bytes > 0) {
      /* the segment is left for good: the syncer syncs and closes it */
      if (group != r && (rc = flush_group(q, group, r, group_bytes))) break;
      int old = q->fd;
      rc = roll(q);
      queue_sync(q, group, r, old, !rc, 0, q->next_offset);
      group = r;
      group_bytes = 0;
      group_first = q->next_offset;
      if (rc) break;
    }
    r->first = q->next_offset;
    q->next_offset += r->n;
    group_bytes += r->enc.len;
  }
  if (!rc && group) rc = flush_group(q, group, NULL, group_bytes);
  if (rc) {
    /* The failed group and everything after it did not become durable. */
    q->next_offset = group_first;
    for (struct preq *f = group; f; f = f->next) f->status = TD_EIO;
  }
  if (group) {
    queue_sync(q, group, NULL, q->fd, 0, q->dir_pending, q->next_offset);
    q->dir_pending = 0;
  }
  for (r = batch; r; r = r->next) td_buf_deinit(&r->enc);
  pthread_mutex_lock(&q->mu);
  for (r = batch; r;) {
    struct preq *next = r->next;
    r->next = NULL;
    if (r->status) {
      q->inflight -= r->n;
      pthread_mutex_unlock(&q->mu);
      preq_free(r, 1);
      pthread_mutex_lock(&q->mu);
    } else {
      q->produced += r->n;
      if (q->cons_tail) q->cons_tail->next = r; else q->cons_head = r;
      q->cons_tail = r;
    }
    r = next;
  }
  pthread_cond_broadcast(&q->ccond);
  pthread_mutex_unlock(&q->mu);
}

/* housekeeping: persist the committed offset (if changed) and delete the
 * segments wholly below it. Keeper thread (or close, after it stopped). */
static void housekeeping(struct qlog *q) {
  pthread_mutex_lock(&q->mu);
  uint64_t c = q->committed;
  pthread_mutex_unlock(&q->mu);
  pthread_mutex_lock(&q->smu);
  if (c > q->durable_end) c = q->durable_end; /* processed before its own sync (write_batch) */
  pthread_mutex_unlock(&q->smu);
  if (c == q->persisted) return;
  if (qlog_offset_save(q->dir, c, q->fsync)) return;
  q->persisted = c;
  /* The writer only appends to segs (roll, which may move the array), so the
   * first entries keep their bases: copied under the lock, a chunk at a time,
   * and their files unlinked outside it. */
  enum { CHUNK = 64 };
  for (;;) {
    uint64_t base[CHUNK];
    size_t n = 0;
    pthread_mutex_lock(&q->kmu);
    while (n < CHUNK && n + 1 < q->nsegs && q->segs[n + 1].base <= c) {
      base[n] = q->segs[n].base;
      n++;
    }
    pthread_mutex_unlock(&q->kmu);
    size_t drop = 0;
    for (; drop < n; drop++) {
      char path[4096];
      qlog_seg_path(path, sizeof path, q->dir, base[drop]);
      if (unlink(path) < 0 && errno != ENOENT) break;
    }
    if (!drop) return;
    pthread_mutex_lock(&q->kmu);
    memmove(q->segs, q->segs + drop, (q->nsegs - drop) * sizeof *q->segs);
    q->nsegs -= drop;
    pthread_mutex_unlock(&q->kmu);
    if (drop < CHUNK) return; /* all done, or an unlink failed (next time) */
  }
}

static void *keeper_main(void *arg) {
  struct qlog *q = arg;
  td_thread_name("td-qkeep", -1);
  pthread_mutex_lock(&q->kmu);
  while (!q->kstop) {
    struct timespec ts = td_mono_deadline_us(PERSIST_EVERY_MS * 1000);
    pthread_cond_timedwait(&q->kcond, &q->kmu, &ts);
    if (q->kstop) break;
    pthread_mutex_unlock(&q->kmu);
    housekeeping(q);
    pthread_mutex_lock(&q->kmu);
  }
  pthread_mutex_unlock(&q->kmu);
  return NULL;
}

static void keeper_stop(struct qlog *q) {
  if (!q->keeper_started) return;
  pthread_mutex_lock(&q->kmu);
  q->kstop = 1;
  pthread_cond_signal(&q->kcond);
  pthread_mutex_unlock(&q->kmu);
  pthread_join(q->keeper, NULL);
  q->keeper_started = 0;
}

static void *writer_main(void *arg) {
  struct qlog *q = arg;
  td_thread_name("td-qwrite", -1);
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->pend_head && !q->closed) pthread_cond_wait(&q->wcond, &q->mu);
    /* Group commit: everything queued since the last write, up to max_batch_bytes. */
    struct preq *batch = q->pend_head, *last = NULL;
    size_t bytes = 0;
    for (struct preq *r = batch; r; r = r->next) {
      if (last && bytes + r->enc.len > q->max_batch_bytes) break;
      bytes += r->enc.len;
      last = r;
    }
    if (last) {
      q->pend_head = last->next;
      if (!q->pend_head) q->pend_tail = NULL;
      last->next = NULL;
    } else {
      batch = NULL;
    }
    int done = q->closed && !q->pend_head;
    pthread_mutex_unlock(&q->mu);
    if (batch) write_batch(q, batch);
    if (done) break;
    pthread_mutex_lock(&q->mu);
  }
  return NULL;
}

/* ---- consumer thread ---- */

struct replay_ctx {
  struct qlog *q;
  uint64_t base;
  int stop;
};

static int replay_record(void *arg, uint64_t index, const uint8_t *payload, uint32_t len) {
  struct replay_ctx *c = arg;
  struct qlog *q = c->q;
  uint64_t off = c->base + index;
  pthread_mutex_lock(&q->mu);
  if (off < q->delivered_end) { pthread_mutex_unlock(&q->mu); return 0; }
  if (skip_to(q, off) || wait_room(q)) {
    pthread_mutex_unlock(&q->mu);
    c->stop = 1;
    return 1;
  }
  q->delivered_end = off + 1;
  struct td_msg *m = NULL;
  int rc = td_msg_decode(payload, len, &m);
  if (rc) {
    /* A record with a valid CRC that does not decode (a newer format?): skip it. */
    td_log(TD_LOG_ERROR, "queue", "action=replay offset=%" PRIu64 " err=%s", off, td_errname(rc));
    bit_set(q, off);
    advance_committed(q);
    pthread_mutex_unlock(&q->mu);
    return 0;
  }
  q->inflight++;
  pthread_mutex_unlock(&q->mu);
  q->fn(q->fn_arg, m, off);
  return 0;
}

/* Redeliver what was on disk at open, from the committed offset on. Reads
 * each segment through a read-only mapping of the bytes validated at open. */
static void replay(struct qlog *q) {
  for (size_t i = 0; i < q->nreplay; i++) {
    struct qlog_seg *s = &q->replay[i];
    pthread_mutex_lock(&q->mu);
    int skip = s->base + s->count <= q->delivered_end || s->bytes == 0;
    int stop = q->cstop;
    pthread_mutex_unlock(&q->mu);
    if (stop) return;
    if (skip) continue;
    char path[4096];
    qlog_seg_path(path, sizeof path, q->dir, s->base);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *p = fd < 0 ? MAP_FAILED : mmap(NULL, s->bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (fd >= 0) close(fd);
    if (p == MAP_FAILED) {
      td_log(TD_LOG_ERROR, "queue", "action=replay segment=%s errno=%d (skipped)", path, errno);
      continue;
    }
    struct replay_ctx c = {q, s->base, 0};
    qlog_walk(p, s->bytes, replay_record, &c);
    munmap(p, s->bytes);
    if (c.stop) return;
  }
}

static void *consumer_main(void *arg) {
  struct qlog *q = arg;
  td_thread_name("td-qconsume", -1);
  replay(q);
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (!q->cons_head && !q->cstop) pthread_cond_wait(&q->ccond, &q->mu);
    if (q->cstop) break;
    struct preq *r = q->cons_head;
    q->cons_head = r->next;
    if (!q->cons_head) q->cons_tail = NULL;
    size_t i = 0;
    for (; i < r->n; i++) {
      uint64_t off = r->first + i;
      if (skip_to(q, off) || wait_room(q)) break;
      q->delivered_end = off + 1;
      pthread_mutex_unlock(&q->mu);
      q->fn(q->fn_arg, r->msgs[i], off);   /* the callee takes our reference */
      pthread_mutex_lock(&q->mu);
    }
    /* Stopped mid-request: drop the undelivered rest (durable, redelivered next run). */
    for (; i < r->n; i++) td_msg_unref(r->msgs[i]);
    free(r);   /* enc was released by the writer */
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

static int log_consume(struct td_queue *tq, td_queue_consume_fn fn, void *arg) {
  struct qlog *q = (struct qlog *)tq;
  if (!fn) return TD_EINVAL;
  pthread_mutex_lock(&q->mu);
  int rc = q->closed ? TD_ECLOSED : q->consuming ? TD_EBUSY : 0;
  if (!rc) {
    q->fn = fn;
    q->fn_arg = arg;
    if (pthread_create(&q->consumer, NULL, consumer_main, q)) rc = TD_ENOMEM;
    else q->consuming = 1;
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

static void log_ack(struct td_queue *tq, uint64_t token) {
  struct qlog *q = (struct qlog *)tq;
  pthread_mutex_lock(&q->mu);
  if (token < q->committed || token >= q->delivered_end || bit_get(q, token)) {
    pthread_mutex_unlock(&q->mu);
    td_log_limited(1, TD_LOG_WARN, "queue", "action=ack token=%" PRIu64 " err=unknown_or_double_ack",
                   token);
    return;
  }
  bit_set(q, token);
  q->inflight--;
  q->acked++;
  advance_committed(q);
  pthread_mutex_unlock(&q->mu);
}

static void log_stats(struct td_queue *tq, uint64_t *produced, uint64_t *acked, size_t *inflight) {
  struct qlog *q = (struct qlog *)tq;
  pthread_mutex_lock(&q->mu);
  if (produced) *produced = q->produced;
  if (acked) *acked = q->acked;
  if (inflight) *inflight = q->inflight;
  pthread_mutex_unlock(&q->mu);
}

static void qlog_free(struct qlog *q) {
  keeper_stop(q);
  if (q->syncer_started) { /* open failed after the syncer started */
    pthread_mutex_lock(&q->smu);
    q->sstop = 1;
    pthread_cond_signal(&q->scond);
    pthread_mutex_unlock(&q->smu);
    pthread_join(q->syncer, NULL);
  }
  pthread_mutex_destroy(&q->smu);
  pthread_cond_destroy(&q->scond);
  pthread_mutex_destroy(&q->kmu);
  pthread_cond_destroy(&q->kcond);
  if (q->fd >= 0) close(q->fd);
  free(q->bits);
  free(q->segs);
  free(q->replay);
  free(q->dir);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->wcond);
  pthread_cond_destroy(&q->ccond);
  free(q);
}

static void log_close(struct td_queue *tq) {
  struct qlog *q = (struct qlog *)tq;
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  pthread_cond_signal(&q->wcond);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->writer, NULL);   /* drains pending writes */
  pthread_mutex_lock(&q->smu);
  q->sstop = 1;
  pthread_cond_signal(&q->scond);
  pthread_mutex_unlock(&q->smu);
  if (q->syncer_started) pthread_join(q->syncer, NULL); /* syncs the rest, runs their done callbacks */
  q->syncer_started = 0;

  pthread_mutex_lock(&q->mu);
  q->cstop = 1;
  pthread_cond_broadcast(&q->ccond);
  int consuming = q->consuming;
  pthread_mutex_unlock(&q->mu);
  if (consuming) pthread_join(q->consumer, NULL);

  for (struct preq *r = q->cons_head; r;) {
    struct preq *next = r->next;
    preq_free(r, 1);
    r = next;
  }
  keeper_stop(q);
  housekeeping(q);
  qlog_free(q);
}

/* ---- open and recovery ---- */

static int recover(struct qlog *q) {
  int rc = qlog_list(q->dir, &q->replay, &q->nreplay);
  if (rc) return rc;
  for (size_t i = 0; i < q->nreplay; i++) {
    int torn = 0;
    struct qlog_seg *s = &q->replay[i];
    /* Every segment is cut at its first bad record: later bytes are
     * unreachable (they would collide with the offsets that follow). */
    rc = qlog_scan(q->dir, s, 1, &torn);
    if (rc) return rc;
    if (torn && i + 1 < q->nreplay)
      td_log(TD_LOG_ERROR, "queue", "action=recover segment_base=%" PRIu64 " err=damaged_middle_segment",
             s->base);
    /* A segment cannot hold more records than the gap to the next one. */
    if (i + 1 < q->nreplay && s->base + s->count > q->replay[i + 1].base) {
      td_log(TD_LOG_ERROR, "queue", "action=recover segment_base=%" PRIu64 " err=overlap", s->base);
      s->count = q->replay[i + 1].base - s->base;
    }
  }
  for (size_t i = 0; i < q->nreplay; i++) {
    rc = seg_push(q, q->replay[i].base);
    if (rc) return rc;
  }
  uint64_t committed = qlog_offset_load(q->dir);
  uint64_t end = 0;
  if (q->nreplay) {
    struct qlog_seg *last = &q->replay[q->nreplay - 1];
    end = last->base + last->count;
    if (committed < q->replay[0].base) committed = q->replay[0].base;
  }
  if (committed > end && q->nreplay)
    td_log(TD_LOG_WARN, "queue", "action=recover committed=%" PRIu64 " log_end=%" PRIu64 " err=offset_past_end",
           committed, end);
  q->committed = q->delivered_end = q->persisted = committed;
  if (q->nreplay && end >= committed) {
    /* Append to the last segment after its last valid record. */
    struct qlog_seg *last = &q->replay[q->nreplay - 1];
    char path[4096];
    qlog_seg_path(path, sizeof path, q->dir, last->base);
    q->fd = open(path, O_WRONLY | O_CLOEXEC);
    if (q->fd < 0 || lseek(q->fd, (off_t)last->bytes, SEEK_SET) < 0) return TD_EIO;
    q->seg_base = last->base;
    q->seg_size = last->bytes;
    q->next_offset = end;
  } else {
    q->next_offset = committed;
    rc = roll(q);
    if (rc) return rc;
    if (q->fsync && qlog_fsync_dir(q->dir)) return TD_EIO;
    q->dir_pending = 0;
  }
  uint64_t backlog = end > committed ? end - committed : 0;
  td_log(TD_LOG_INFO, "queue", "action=open dir=%s segments=%zu committed=%" PRIu64 " end=%" PRIu64
         " redeliver=%" PRIu64, q->dir, q->nsegs, committed, end, backlog);
  return 0;
}

/* td_queue_log_open: open (creating the directory if needed) the embedded
 * log in cfg->dir, recover it and start its writer thread. The consumer
 * starts with td_queue_consume(). Returns 0, TD_EINVAL, TD_EIO or TD_ENOMEM. */
int td_queue_log_open(const struct td_queue_config *cfg, struct td_queue **out) {
  if (!cfg || !cfg->dir || !*cfg->dir || !out) return TD_EINVAL;
  if (mkdir(cfg->dir, 0755) < 0 && errno != EEXIST) return TD_EIO;
  struct qlog *q = calloc(1, sizeof *q);
  if (!q) return TD_ENOMEM;
  q->base.ops = &log_ops;
  q->fd = -1;
  q->max_inflight = cfg->max_inflight ? cfg->max_inflight : 100000;
  q->max_batch_bytes = cfg->max_batch_bytes ? cfg->max_batch_bytes : 4u * 1024 * 1024;
  q->segment_bytes = cfg->segment_bytes ? cfg->segment_bytes : 64u * 1024 * 1024;
  q->fsync = cfg->fsync != 0;
  q->fsync_interval_us = cfg->fsync_interval_us;
  q->ring = 1024;
  while (q->ring < 2 * (uint64_t)q->max_inflight) q->ring *= 2;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&q->mu, NULL);
  pthread_mutex_init(&q->smu, NULL);
  pthread_cond_init(&q->scond, &ca);
  pthread_mutex_init(&q->kmu, NULL);
  pthread_cond_init(&q->kcond, &ca);
  pthread_cond_init(&q->wcond, NULL);
  pthread_cond_init(&q->ccond, NULL);
  pthread_condattr_destroy(&ca);
  q->dir = strdup(cfg->dir);
  q->bits = calloc(q->ring / 64, sizeof *q->bits);
  int rc = (!q->dir || !q->bits) ? TD_ENOMEM : recover(q);
  if (!rc) q->durable_end = q->next_offset; /* what recovery found is on disk */
  if (!rc) {
    if (pthread_create(&q->syncer, NULL, syncer_main, q)) rc = TD_ENOMEM;
    else q->syncer_started = 1;
  }
  if (!rc) {
    if (pthread_create(&q->keeper, NULL, keeper_main, q)) rc = TD_ENOMEM;
    else q->keeper_started = 1;
  }
  if (!rc && pthread_create(&q->writer, NULL, writer_main, q)) rc = TD_ENOMEM;
  if (rc) {
    td_log(TD_LOG_ERROR, "queue", "action=open dir=%s err=%s", cfg->dir, td_errname(rc));
    qlog_free(q);
    return rc;
  }
  *out = &q->base;
  return 0;
}

static const struct td_queue_ops log_ops = {
  .version = 1,
  .produce = log_produce,
  .consume = log_consume,
  .ack = log_ack,
  .close = log_close,
  .stats = log_stats,
};
