/* dbpool.h — storage threads for request work (REST, device attribute reads,
 * entity writes, credential lookups).
 *
 * A job runs on one of the pool's threads with that thread's own store
 * connection, then its `done` runs: on the I/O loop `reply_loop` (posted as a
 * task), or directly on the storage thread when reply_loop is NULL (then done
 * must not block; it typically tells an actor). The job struct belongs to the
 * submitter and must stay alive until done has run. The submit queue is
 * bounded: past `queue_limit` jobs, submit fails with TD_EFULL (HTTP 503). */
#ifndef TD_STORE_DBPOOL_H
#define TD_STORE_DBPOOL_H
#include <stddef.h>
#include "base/loop.h"
#include "store/store.h"

struct td_dbpool;
struct td_dbjob;

typedef void (*td_dbjob_run_fn)(struct td_dbjob *j, struct td_store *st);
typedef void (*td_dbjob_done_fn)(struct td_dbjob *j);

struct td_dbjob {
  struct td_task task;        /* internal */
  td_dbjob_run_fn run;        /* on a storage thread */
  td_dbjob_done_fn done;      /* on reply_loop, or the storage thread if reply_loop is NULL */
  struct td_loop *reply_loop;
  int status;                 /* free for run() to set; 0 initially */
};

struct td_dbpool_config {
  int threads;                /* default 2 */
  size_t queue_limit;         /* default 10000 */
};

/* td_dbpool_new: opens one store connection per thread (the first migrates). */
int td_dbpool_new(const struct td_store_config *scfg, const struct td_dbpool_config *cfg, struct td_dbpool **out);
/* td_dbpool_submit: 0, TD_EFULL (queue at limit) or TD_ECLOSED. Any thread. */
int td_dbpool_submit(struct td_dbpool *p, struct td_dbjob *j);
/* td_dbpool_close: runs the jobs already queued, joins the threads, closes
 * the connections; later submits fail with TD_ECLOSED. Idempotent. */
void td_dbpool_close(struct td_dbpool *p);
/* td_dbpool_free: closes (if not yet) and frees. Nothing may submit afterwards. */
void td_dbpool_free(struct td_dbpool *p);
#endif
