/* queue.h — the durable message queue between transports and the rule engine.
 *
 * Producers (transport I/O loops, core services) hand messages to the queue;
 * the queue makes them durable (the embedded log: write + fdatasync, group
 * commit across producers) and only then calls the producer back: that is
 * when a device gets its PUBACK / HTTP 200. The consumer side delivers every
 * durable message exactly in partition order to one consumer function, which
 * must eventually td_queue_ack() each message; unacknowledged messages are
 * delivered again after a restart (at-least-once).
 *
 * Backends: "log" (embedded, src/queue/log/), later "rabbitmq". A backend is a
 * const struct td_queue_ops; callers only include this header. */
#ifndef TD_QUEUE_QUEUE_H
#define TD_QUEUE_QUEUE_H
#include <stddef.h>
#include <stdint.h>
#include "msg/msg.h"

struct td_queue;

struct td_queue_config {
  const char *type;          /* "log" */
  const char *dir;           /* log: directory for segments and the consumer offset */
  int partitions;            /* default 12; partition = hash(originator id) % partitions */
  size_t max_inflight;       /* produced but not yet acked; past it produce fails TD_EFULL (default 100000) */
  size_t max_batch_bytes;    /* group commit: largest write per fdatasync (default 4 MiB) */
  size_t segment_bytes;      /* log: roll to a new segment file past this (default 64 MiB) */
  int fsync;                 /* 1 (default): fdatasync before acknowledging; 0 only for benchmarks of the ceiling */
  int64_t fsync_interval_us; /* log: at most one fdatasync per this many µs; what is written meanwhile shares
                                the next one (0: sync again as soon as the last sync ends) */
};

/* Called once, on the queue's syncer thread, when all messages of one
 * td_queue_produce call are durable (status 0) or have failed (status < 0).
 * Must not block: typically it posts a task to an I/O loop. */
typedef void (*td_queue_done_fn)(void *arg, int status);

/* Called on the queue's consumer thread for every durable message, in order
 * per partition. The callee takes over the message reference and must call
 * td_queue_ack(q, token) exactly once when processing is complete (from any
 * thread). May block briefly for back-pressure (it is the consumer thread). */
typedef void (*td_queue_consume_fn)(void *arg, struct td_msg *msg, uint64_t token);

struct td_queue_ops {
  int version; /* 1 */
  int (*produce)(struct td_queue *q, struct td_msg *const *msgs, size_t n, td_queue_done_fn done, void *arg);
  int (*consume)(struct td_queue *q, td_queue_consume_fn fn, void *arg);
  void (*ack)(struct td_queue *q, uint64_t token);
  void (*close)(struct td_queue *q);
  void (*stats)(struct td_queue *q, uint64_t *produced, uint64_t *acked, size_t *inflight);
};

struct td_queue {
  const struct td_queue_ops *ops;
};

/* td_queue_open: open (creating if needed) the queue of the configured type.
 * The caller owns the queue and closes it with td_queue_close(). */
int td_queue_open(const struct td_queue_config *cfg, struct td_queue **out);

/* td_queue_produce: take a reference to each message and make them durable.
 * Returns 0 (done will be called exactly once), TD_EFULL when the in-flight
 * window is full (back-pressure: done is not called), TD_ECLOSED after close.
 * Any thread. */
static inline int td_queue_produce(struct td_queue *q, struct td_msg *const *msgs, size_t n,
                                   td_queue_done_fn done, void *arg) {
  return q->ops->produce(q, msgs, n, done, arg);
}
/* td_queue_consume: start delivering (first the messages left unacked by a
 * previous run, then new ones) to fn on the queue's consumer thread. Once. */
static inline int td_queue_consume(struct td_queue *q, td_queue_consume_fn fn, void *arg) {
  return q->ops->consume(q, fn, arg);
}
static inline void td_queue_ack(struct td_queue *q, uint64_t token) { q->ops->ack(q, token); }
/* td_queue_close: stop accepting, finish pending writes (their done callbacks
 * run), stop the consumer, persist the consumer offset, free. */
static inline void td_queue_close(struct td_queue *q) { q->ops->close(q); }
static inline void td_queue_stats(struct td_queue *q, uint64_t *produced, uint64_t *acked, size_t *inflight) {
  q->ops->stats(q, produced, acked, inflight);
}

/* Backend constructors (registered in queue.c by type name). */
int td_queue_log_open(const struct td_queue_config *cfg, struct td_queue **out);
#endif
