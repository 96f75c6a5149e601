/* writer.c — the batched telemetry/attribute writer (writer.h): one thread,
 * one connection, group commit.
 *
 * The thread takes everything queued (up to max_batch_rows rows, at least one
 * request) and writes it in one BEGIN IMMEDIATE..COMMIT; the prepared
 * statements are cached by the connection, so a batch is bind/step only. If
 * any request of a batch fails (or the commit does), the batch is rolled back
 * and each request is retried in a transaction of its own, so one bad request
 * only fails itself. Then every request's done runs with its status. */
#include "store/writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "base/thread.h"
#include "base/time.h"

struct td_writer {
  pthread_mutex_t mu;
  pthread_cond_t cv;               /* CLOCK_MONOTONIC (the linger wait is timed) */
  struct td_task *head, *tail;
  size_t len, limit, max_rows;
  size_t qrows;                    /* rows in the queued requests */
  size_t nurgent;                  /* queued requests marked urgent */
  int delay_ms;                    /* max_delay_ms */
  int64_t last_start_ms;           /* td_mono_ms() when the last batch was taken */
  bool closing;
  pthread_t thread;
  bool started;
  struct td_store *store;
  uint64_t rows, commits; /* __atomic: read by td_writer_stats from any thread */
};

static int apply(struct td_store *st, struct td_write_req *r) {
  switch (r->kind) {
    case TD_WRITE_TS: return td_store_ts_save(st, &r->entity, r->points, r->n, r->ttl_s);
    case TD_WRITE_ATTRS: return td_store_attributes_save(st, &r->entity, r->scope, r->kvs, r->n, r->ts);
  }
  return TD_EINVAL;
}

static inline struct td_write_req *req_of(struct td_task *t) { return td_container_of(t, struct td_write_req, task); }

/* Write one batch (a detached list), then call every request's done. */
static void write_batch(struct td_writer *w, struct td_task *list) {
  struct td_store *st = w->store;
  uint64_t rows = 0;
  int rc = td_store_begin(st);
  for (struct td_task *t = list; t && rc == 0; t = t->next) {
    rc = apply(st, req_of(t));
    rows += req_of(t)->n;
  }
  if (rc == 0)
    rc = td_store_commit(st); /* a failed commit rolls back by itself */
  else
    td_store_rollback(st);    /* TD_EINVAL if begin itself failed: harmless */
  if (rc == 0) {
    __atomic_add_fetch(&w->rows, rows, __ATOMIC_RELAXED);
    __atomic_add_fetch(&w->commits, 1, __ATOMIC_RELAXED);
    for (struct td_task *t = list, *next; t; t = next) {
      next = t->next;
      struct td_write_req *r = req_of(t);
      if (r->done) r->done(r, 0);
    }
    return;
  }
  /* Isolate the failure: each request alone. */
  for (struct td_task *t = list, *next; t; t = next) {
    next = t->next;
    struct td_write_req *r = req_of(t);
    int one = td_store_begin(st);
    if (one == 0) {
      one = apply(st, r);
      if (one == 0)
        one = td_store_commit(st);
      else
        td_store_rollback(st);
    }
    if (one == 0) {
      __atomic_add_fetch(&w->rows, r->n, __ATOMIC_RELAXED);
      __atomic_add_fetch(&w->commits, 1, __ATOMIC_RELAXED);
    } else {
      td_log_limited(1, TD_LOG_WARN, "store", "action=\"batched write\" kind=%d rows=%zu err=%s", (int)r->kind, r->n,
                     td_errname(one));
    }
    if (r->done) r->done(r, one);
  }
}

/* Under load, wait (at most until delay_ms after the previous batch was
 * taken) for more rows, so that a commit carries many. A commit's cost is
 * mostly per commit, not per row: with 1000 devices interleaved each commit
 * dirties about one page per (entity, key), and SQLite writes each dirty page
 * to the WAL once per commit (bench/sqlite_ceiling: 42k rows/s in commits of
 * 5000 rows, 133k rows/s in commits of 50000). Without the wait the writer
 * settled at ~280 rows per commit under bench/run.sh and spent a whole core
 * on it (2387 commits in 20 s, 10.5 s of them in COMMIT); with 1000 ms it
 * makes ~1 commit/s of 50-90k rows. The first write after an idle period is
 * not delayed, and nothing acknowledged waits for this: devices are answered
 * once the queue has the message. Call with mu held. */
static void linger(struct td_writer *w) {
  if (w->delay_ms <= 0) return;
  int64_t deadline = w->last_start_ms + w->delay_ms;
  while (!w->closing && w->qrows < w->max_rows && !w->nurgent) {
    int64_t now = td_mono_ms();
    if (now >= deadline) break;
    struct timespec ts = td_mono_deadline_us((deadline - now) * 1000);
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
}

static void *writer_main(void *arg) {
  struct td_writer *w = arg;
  td_thread_name("td-dbwrite", -1);
  for (;;) {
    pthread_mutex_lock(&w->mu);
    while (!w->head && !w->closing) pthread_cond_wait(&w->cv, &w->mu);
    if (!w->head) {
      pthread_mutex_unlock(&w->mu);
      return NULL;
    }
    linger(w);
    w->last_start_ms = td_mono_ms();
    /* Detach up to max_rows rows (always at least one request). */
    struct td_task *first = w->head, *last = w->head;
    size_t rows = req_of(first)->n, nreq = 1, urgent = req_of(first)->urgent;
    while (last->next && rows + req_of(last->next)->n <= w->max_rows) {
      last = last->next;
      rows += req_of(last)->n;
      urgent += req_of(last)->urgent;
      nreq++;
    }
    w->nurgent -= urgent;
    w->head = last->next;
    if (!w->head) w->tail = NULL;
    w->len -= nreq;
    w->qrows -= rows;
    pthread_mutex_unlock(&w->mu);
    last->next = NULL;
    write_batch(w, first);
  }
}

/* td_writer_new: see writer.h. Opens its own connection; migrating is
 * idempotent, so the writer also works against a fresh database. */
int td_writer_new(const struct td_store_config *scfg, const struct td_writer_config *cfg, struct td_writer **out) {
  struct td_writer *w = calloc(1, sizeof *w);
  if (!w) return TD_ENOMEM;
  w->max_rows = cfg && cfg->max_batch_rows > 0 ? cfg->max_batch_rows : 5000;
  w->limit = cfg && cfg->queue_limit > 0 ? cfg->queue_limit : 100000;
  w->delay_ms = cfg && cfg->max_delay_ms > 0 ? cfg->max_delay_ms : 0;
  int rc = td_store_open(scfg, true, &w->store);
  if (rc) {
    free(w);
    return rc;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
    td_writer_free(w);
    return TD_ENOMEM;
  }
  w->started = true;
  *out = w;
  return 0;
}

/* td_writer_submit: see writer.h. */
int td_writer_submit(struct td_writer *w, struct td_write_req *r) {
  if (!r || (r->n && !(r->kind == TD_WRITE_TS ? (const void *)r->points : (const void *)r->kvs))) return TD_EINVAL;
  r->task.next = NULL;
  r->task.fn = NULL;
  int rc = 0;
  pthread_mutex_lock(&w->mu);
  if (w->closing)
    rc = TD_ECLOSED;
  else if (w->len >= w->limit && !r->bounded)
    rc = TD_EFULL;
  if (rc == 0) {
    if (w->tail)
      w->tail->next = &r->task;
    else
      w->head = &r->task;
    w->tail = &r->task;
    /* Wake the writer only when it may be waiting: for work (the queue was
     * empty) or, lingering, for a full batch (the rows just reached it). */
    bool full = w->qrows < w->max_rows && w->qrows + r->n >= w->max_rows;
    w->qrows += r->n;
    if (r->urgent) w->nurgent++;
    if (w->len++ == 0 || full || r->urgent) pthread_cond_signal(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

/* td_writer_free: see writer.h. Not from the writer thread (e.g. a done callback). */
void td_writer_close(struct td_writer *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  bool was_closing = w->closing;
  w->closing = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  if (was_closing) return;
  if (w->started) pthread_join(w->thread, NULL);
  w->started = false;
  td_store_close(w->store);
  w->store = NULL;
}

void td_writer_free(struct td_writer *w) {
  if (!w) return;
  td_writer_close(w);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

/* td_writer_stats: see writer.h. Any thread. */
void td_writer_stats(struct td_writer *w, uint64_t *rows, uint64_t *commits) {
  if (rows) *rows = __atomic_load_n(&w->rows, __ATOMIC_RELAXED);
  if (commits) *commits = __atomic_load_n(&w->commits, __ATOMIC_RELAXED);
}
