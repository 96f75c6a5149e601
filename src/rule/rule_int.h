/* rule_int.h — private to src/rule: the processing context of a queue
 * message, the actor messages exchanged on the message path, the id map used
 * by the App and Tenant actors, and the chain builder. */
#ifndef TD_RULE_RULE_INT_H
#define TD_RULE_RULE_INT_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "actor/actor.h"
#include "base/uuid.h"
#include "msg/msg.h"
#include "rule/engine.h"
#include "rule/rule_node.h"

/* Actor message kinds used across src/rule. */
enum {
  TD_RK_MSG = 1,          /* struct td_rule_rmsg: a TbMsg with one open branch */
  TD_RK_ASYNC_DONE,       /* struct td_rule_async (node actor) */
  TD_RK_CHAIN_LOADED,     /* tenant actor: a load finished */
  TD_RK_CHAIN_CHANGED,    /* app -> tenant: reload the root chain */
  TD_RK_RETRY_LOAD,       /* tenant: the dbpool was full, try again */
  TD_RK_IDLE_CHECK,       /* device actor -> itself */
  TD_RK_DEVICE_IDLE,      /* device actor -> tenant actor */
  TD_RK_DEV_EVT,          /* struct td_rule_dev_evt: app -> tenant -> device (session.c) */
  TD_RK_RPC_TIMEOUT,      /* device actor -> itself: a pending RPC expired */
};

/* The processing context of one queue message: the number of open branches.
 * When the last branch ends the token is acked (failed or not: the Main
 * queue's strategy is SKIP_ALL_FAILURES). Holds a reference to the engine. */
struct td_rule_pctx {
  atomic_int branches;
  atomic_int failed;
  uint64_t token;
  struct td_rule_engine *re;
};
/* td_rule_pctx_branch: open one more branch. */
void td_rule_pctx_branch(struct td_rule_pctx *pc);
/* td_rule_pctx_end: one branch ended; the last one acks and frees. */
void td_rule_pctx_end(struct td_rule_pctx *pc);
static inline void td_rule_pctx_fail(struct td_rule_pctx *pc) { atomic_store(&pc->failed, 1); }

/* A TbMsg travelling between actors with one open branch of pc. Freed
 * without being handled (mailbox of a stopped actor), the branch ends as
 * failed and a line is logged. */
struct td_rule_rmsg {
  struct td_actor_msg hdr;       /* kind TD_RK_MSG */
  struct td_msg *msg;            /* one reference */
  struct td_rule_pctx *pc;       /* the open branch; NULL once taken over */
  struct td_actor *chain;        /* tenant -> device: the chain to forward to (a reference) */
  struct td_rule_rmsg *pend_next;/* tenant's pending list */
};
/* td_rule_rmsg_new: takes a new msg reference; the branch is the caller's
 * (already opened). NULL on ENOMEM (the caller still owns its branch). */
struct td_rule_rmsg *td_rule_rmsg_new(struct td_msg *msg, struct td_rule_pctx *pc);
/* td_rule_rmsg_drop: end the branch as failed (log `why`) and free. */
void td_rule_rmsg_drop(struct td_rule_rmsg *rm, const char *why);

/* Engine internals used by the actors. */
/* td_rule_engine_ref_/unref_: actor states and processing contexts hold one. */
void td_rule_engine_ref_(struct td_rule_engine *re);
void td_rule_engine_unref_(struct td_rule_engine *re);
/* td_rule_engine_loader_: the test loader, or NULL (then a dbjob loads). */
td_rule_chain_loader_fn td_rule_engine_loader_(struct td_rule_engine *re, void **arg);
struct td_ctx *td_rule_engine_ctx(struct td_rule_engine *re);
/* td_rule_engine_mailbox_limit: the engine's in-flight window
 * (rule_engine.max_inflight); every message inside the engine counts against
 * it, so it also bounds the actors' mailboxes and a tenant's pending list. */
size_t td_rule_engine_mailbox_limit(struct td_rule_engine *re);
int64_t td_rule_engine_device_idle_ms(struct td_rule_engine *re);

/* td_rule_chain_spawn: build a Rule chain actor and its Rule node actors from
 * RuleChainMetaData. *out gets one reference; stopping it (td_actor_stop)
 * stops the node actors. On a bad chain returns TD_EINVAL with err set. Call
 * from an actor (the tenant's). */
int td_rule_chain_spawn(struct td_actor_system *sys, struct td_ctx *ctx, json_t *metadata, const char *chain_name,
                        size_t mailbox_limit, struct td_actor **out, char *err, size_t errlen);

/* td_rule_tenant_spawn: a Tenant actor; it starts loading the root chain at
 * once. *out gets one reference. */
int td_rule_tenant_spawn(struct td_rule_engine *re, const struct td_uuid *tenant_id, struct td_actor **out);

/* td_rule_device_spawn: a Device actor for device_id reporting idleness to
 * tenant (a reference is kept). *out gets one reference. */
int td_rule_device_spawn(struct td_rule_engine *re, struct td_actor *tenant, const struct td_uuid *device_id,
                         struct td_actor **out);

/* Device -> tenant: "I have been idle; I handled `received` messages". */
struct td_rule_idle_msg {
  struct td_actor_msg hdr;       /* kind TD_RK_DEVICE_IDLE */
  struct td_uuid device_id;
  struct td_actor *device;       /* identity only (no reference) */
  uint64_t received;
};

/* ---- device sessions (session.c) ---- */
struct td_dsession;
enum td_dev_evt_op {
  TD_DEV_OPEN = 1, TD_DEV_SUBSCRIBE, TD_DEV_CLOSE, TD_DEV_RPC_DELIVERED, TD_DEV_RPC_REPLY, TD_DEV_ATTRS,
  TD_DEV_RPC_REQUEST, TD_DEV_CLIENT_RPC_REPLY,
  TD_DEV_SYNC_OPEN,     /* a short-lived session: open + subscribe in one (attributes, rpc) */
  TD_DEV_RPC_DELETE,    /* the persistent RPC request_uuid was deleted */
  TD_DEV_RPC_LOADED     /* the device's pending persistent RPCs read from the store (rows) */
};
/* An event for one device's actor. Freed unhandled (a stopped actor), an
 * RPC request's completion fails and its waiter gets TD_ECLOSED. */
struct td_rule_dev_evt {
  struct td_actor_msg hdr;       /* kind TD_RK_DEV_EVT */
  int op;
  struct td_uuid tenant_id, device_id;
  struct td_dsession *s;         /* a reference, or NULL */
  struct td_uuid session_id;     /* CLIENT_RPC_REPLY */
  bool attributes, rpc;          /* SUBSCRIBE */
  int32_t request_id;
  struct td_uuid request_uuid;   /* RPC_REQUEST (zero: no waiter) */
  int64_t expiration_ms;
  bool oneway;
  char *method, *params;         /* malloc'd */
  char *payload;                 /* malloc'd, NUL-terminated */
  size_t len;
  struct td_rule_async *h;       /* RPC_REQUEST from the rule node, or NULL */
  struct td_msg *msg;            /* with h: the node's message (a reference) */
  bool persistent;               /* RPC_REQUEST: a stored (persistent) RPC */
  int retries;                   /* RPC_REQUEST, persistent: < 0 = the configured maximum */
  struct td_ctx *ctx;            /* the sender's context (the actor learns it from its first event) */
  json_t *rows;                  /* RPC_LOADED: array of Rpc JSON (a reference), or NULL on error */
};
/* td_rule_dev_evt_new: zeroed event (free with td_actor_msg_free). */
struct td_rule_dev_evt *td_rule_dev_evt_new(int op, const struct td_uuid *tenant_id, const struct td_uuid *device_id);
/* td_rule_engine_device_event: hand ev to the App actor (it owns ev afterwards, also on error). */
int td_rule_engine_device_event(struct td_rule_engine *re, struct td_rule_dev_evt *ev);

/* The device actor's session state (embedded in its state). */
struct td_rule_dev_sess;
struct td_rule_dev_pend;
#define TD_RULE_DEV_DONE_RING 64
struct td_rule_dev_state {
  struct td_rule_dev_sess *v;    /* sessions in connection order */
  size_t n, cap;
  struct td_rule_dev_pend *pend; /* pending server-side RPCs, oldest first */
  size_t npend;
  int32_t rpc_seq;
  int max_sessions;              /* 0 = unlimited */
  /* persistent RPC (session.c) */
  struct td_ctx *ctx;            /* from the first event */
  struct td_uuid tenant_id, device_id;
  bool loading, loaded;          /* stored pending RPCs: being read / read once */
  /* persistent RPCs finished or deleted lately: a copy of one that arrives
   * after its end (the rule chain's, racing the store's) is ignored */
  struct td_uuid done_ring[TD_RULE_DEV_DONE_RING];
  unsigned done_next;
};
/* td_rule_dev_handle: handle ev (owned; freed here). */
void td_rule_dev_handle(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_evt *ev);
/* td_rule_dev_rpc_timeout: the pending RPC request_id expired. */
void td_rule_dev_rpc_timeout(struct td_rule_dev_state *ds, int32_t request_id);
/* td_rule_dev_busy: sessions or pending RPCs: the actor must not be stopped. */
bool td_rule_dev_busy(const struct td_rule_dev_state *ds);
/* td_rule_dev_deinit: drop sessions, fail pending RPCs (TD_ECLOSED). */
void td_rule_dev_deinit(struct td_rule_dev_state *ds);
struct td_rule_rpc_timeout_msg {
  struct td_actor_msg hdr;       /* kind TD_RK_RPC_TIMEOUT */
  int32_t request_id;
};

/* A uuid -> pointer hash map (one actor's state: no lock). */
struct td_idmap_entry;
struct td_idmap {
  struct td_idmap_entry **b;
  size_t nb, n;
};
void td_idmap_init(struct td_idmap *m);
/* td_idmap_deinit: frees the table (not the values). */
void td_idmap_deinit(struct td_idmap *m);
void *td_idmap_get(struct td_idmap *m, const struct td_uuid *k);
/* td_idmap_put: insert or replace; 0 or TD_ENOMEM. */
int td_idmap_put(struct td_idmap *m, const struct td_uuid *k, void *v);
/* td_idmap_del: remove; returns the value or NULL. */
void *td_idmap_del(struct td_idmap *m, const struct td_uuid *k);
/* td_idmap_each: call fn for every value (do not modify the map inside). */
void td_idmap_each(struct td_idmap *m, void (*fn)(void *v, void *arg), void *arg);
#endif
