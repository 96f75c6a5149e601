/* engine.h — the rule engine: the queue consumer and the actor hierarchy on
 * the message path (reference §5.2, ARCHITECTURE §2–3).
 *
 *   queue consumer -> App actor -> Tenant actor (one per tenant, loads the
 *   tenant's root rule chain) -> Device actor (one per originator device,
 *   keeps per-device order, stopped when idle) -> Rule chain actor -> Rule
 *   node actors.
 *
 * Messages whose originator is not a device go from the tenant actor straight
 * to the chain. Each queue message is acknowledged (td_queue_ack) once every
 * branch through the chain has ended; failures are logged and acknowledged
 * too (ThingsBoard's Main queue strategy SKIP_ALL_FAILURES). The number of
 * messages inside the engine is bounded (cfg->rule_engine_max_inflight,
 * default 40000): past it the consumer thread waits, which back-pressures the
 * queue. */
#ifndef TD_RULE_ENGINE_H
#define TD_RULE_ENGINE_H
#include <jansson.h>
#include <stdint.h>
#include "base/uuid.h"
#include "msg/msg.h"

struct td_ctx;
struct td_rule_engine;

/* td_rule_engine_new: uses ctx->actors, ctx->queue, ctx->db, ctx->cfg (all
 * borrowed; they must outlive the engine). Spawns the App actor. */
int td_rule_engine_new(struct td_ctx *ctx, struct td_rule_engine **out);
/* td_rule_engine_start: start consuming ctx->queue (td_queue_consume). Once. */
int td_rule_engine_start(struct td_rule_engine *re);
/* td_rule_engine_stop: take no new messages (the consumer callback acks
 * nothing and drops what it is handed: the queue redelivers it after a
 * restart), then wait up to 5 s for in-flight messages to finish. Call before
 * closing the queue/writer. Idempotent; not from a dispatcher thread. */
void td_rule_engine_stop(struct td_rule_engine *re);
/* td_rule_engine_detach: from now on nothing is acked and the consumer
 * callback drops what it is handed; returns once no ack is in progress, so
 * the queue may be closed afterwards. The engine stays valid (the queue's
 * consumer thread may still call in until td_queue_close returns).
 * Shutdown order: td_rule_engine_stop, td_writer_free (pending writes
 * complete into the node actors), td_rule_engine_detach, td_queue_close,
 * td_rule_engine_free, td_actor_system_free. */
void td_rule_engine_detach(struct td_rule_engine *re);
/* td_rule_engine_free: stops the engine's actors and drops the owner's
 * reference (what is still open is not acked any more). NULL is a no-op. */
void td_rule_engine_free(struct td_rule_engine *re);
/* td_rule_engine_chain_changed: the tenant's rule chains changed (root chain
 * set, metadata saved): its Tenant actor reloads the root chain. Messages
 * inside the old chain at that moment end as failed (logged, acked). Any thread. */
void td_rule_engine_chain_changed(struct td_rule_engine *re, const struct td_uuid *tenant_id);

/* td_rule_engine_submit: hand one message to the engine as the queue consumer
 * does (takes over the msg reference; token is acked through ctx->queue).
 * The engine's consume callback; public for tests and replays. */
void td_rule_engine_submit(struct td_rule_engine *re, struct td_msg *msg, uint64_t token);

/* td_rule_engine_inflight: messages inside the engine (tests, stats). */
size_t td_rule_engine_inflight(struct td_rule_engine *re);

/* td_rule_engine_stats: queue messages completed (acked) so far, and how
 * many of them failed (a Failure label with no link, a dropped branch). */
void td_rule_engine_stats(struct td_rule_engine *re, uint64_t *completed, uint64_t *failed);

/* Test seam: replace how a tenant's root chain metadata is loaded (default: a
 * dbjob on ctx->db). fn runs on a dispatcher thread, must not block for long,
 * returns 0 and a new reference in *metadata, or a TD_E* code. Call before
 * the first message. */
typedef int (*td_rule_chain_loader_fn)(void *arg, const struct td_uuid *tenant_id, json_t **metadata);
void td_rule_engine_set_loader(struct td_rule_engine *re, td_rule_chain_loader_fn fn, void *arg);

/* td_rule_chain_validate: check a RuleChainMetaData object (reference §4.1):
 * nodes is an array of objects with a known "type" whose init accepts its
 * "configuration"; connection indices in range; firstNodeIndex valid (or -1
 * / absent with no nodes). Unknown fields are ignored. 0, or TD_EINVAL with
 * a one-line reason in err (naming an unknown class). Any thread. */
int td_rule_chain_validate(json_t *metadata, char *err, size_t errlen);
#endif
