/* writer.h — the batched writer for telemetry and attributes (group commit).
 *
 * Rule nodes (save timeseries, save attributes) submit write requests; one
 * storage thread with its own connection drains the request queue into one
 * transaction (up to max_batch_rows rows, or whatever is queued), commits, and
 * then calls every request's `done` on the writer thread with the status.
 * That is where ThingsBoard's per-message writes become one commit per batch.
 * The queue is bounded (TD_EFULL past queue_limit pending requests). */
#ifndef TD_STORE_WRITER_H
#define TD_STORE_WRITER_H
#include <stddef.h>
#include "base/task.h"
#include "store/store.h"

struct td_writer;
struct td_write_req;

enum td_write_kind { TD_WRITE_TS = 1, TD_WRITE_ATTRS = 2 };

struct td_write_req {
  struct td_task task;              /* internal */
  enum td_write_kind kind;
  struct td_entity_id entity;
  int scope;                        /* TD_WRITE_ATTRS */
  int64_t ts;                       /* TD_WRITE_ATTRS: last_update_ts */
  int64_t ttl_s;                    /* TD_WRITE_TS */
  const struct td_ts_point *points; /* TD_WRITE_TS, owned by the submitter until done */
  const struct td_kv *kvs;          /* TD_WRITE_ATTRS */
  size_t n;
  void (*done)(struct td_write_req *r, int status); /* on the writer thread; must not block */
  bool urgent;                      /* someone waits for this one (e.g. a WebSocket's first
                                     * read): end the max_delay_ms wait and commit now */
  bool bounded;                     /* the submitter bounds its own requests (the rule engine:
                                     * its in-flight window), so queue_limit does not refuse it.
                                     * A refusal there would fail the message, and the engine
                                     * acks failed messages: acknowledged data would be lost. */
};

struct td_writer_config {
  size_t max_batch_rows;   /* default 5000 */
  size_t queue_limit;      /* pending requests, default 100000 */
  int max_delay_ms;        /* under load, commit at most once per this many ms unless max_batch_rows
                            * are queued (the first write after an idle period goes at once);
                            * 0 (default) = commit whatever is queued as soon as possible */
};

int td_writer_new(const struct td_store_config *scfg, const struct td_writer_config *cfg, struct td_writer **out);
/* td_writer_submit: 0, TD_EFULL (queue_limit reached, not for r->bounded) or TD_ECLOSED. Any thread. */
int td_writer_submit(struct td_writer *w, struct td_write_req *r);
/* td_writer_close: writes what is queued (done callbacks run), joins, closes
 * the connection; later submits fail with TD_ECLOSED. Idempotent. */
void td_writer_close(struct td_writer *w);
/* td_writer_free: closes (if not yet) and frees. Nothing may submit afterwards. */
void td_writer_free(struct td_writer *w);
/* td_writer_stats: rows written and commits so far. */
void td_writer_stats(struct td_writer *w, uint64_t *rows, uint64_t *commits);
#endif
