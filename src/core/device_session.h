/* device_session.h — how a transport session and its Device actor talk
 * (ARCHITECTURE.md §2: "Device actor (sessions, attribute subs, pending RPC)").
 *
 * Uplink data goes through the durable queue (transport.h). Session events —
 * open, subscribe, unsubscribe, close, RPC replies — go straight to the
 * device's actor through the rule engine's actor tree (App -> Tenant ->
 * Device), not through the queue: they are not data and need no durability.
 * Downlink — shared attribute updates, RPC requests, "close this session" —
 * comes back from the Device actor as a task posted to the session's I/O loop.
 *
 * struct td_dsession is the session as the core sees it: reference-counted,
 * created by the transport on its loop thread. Its `owner` pointer belongs to
 * the loop thread: the transport clears it when the connection goes away, and
 * downlink tasks (which run on that same loop) check it, so a late delivery
 * to a closed session is simply dropped. */
#ifndef TD_CORE_DEVICE_SESSION_H
#define TD_CORE_DEVICE_SESSION_H
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/loop.h"
#include "base/uuid.h"

struct td_dsession;

/* Downlink callbacks; all run on the session's loop thread with a non-NULL owner. */
struct td_dsession_ops {
  /* A shared attribute update for a subscribed session: payload is
   * ThingsBoard's {"k":v,...,"deleted":[...]} (reference §8 item 4). */
  void (*on_attributes)(void *owner, struct td_dsession *s, const char *payload, size_t len);
  /* A server-side RPC request for a session subscribed to RPC:
   * params is JSON text. */
  void (*on_rpc_request)(void *owner, struct td_dsession *s, int32_t request_id, const char *method,
                         const char *params, int64_t expiration_ms, bool oneway);
  /* The reply to a client-side RPC this session sent (request_id is the
   * device's own id); payload is JSON text. */
  void (*on_rpc_response)(void *owner, struct td_dsession *s, int32_t request_id, const char *payload, size_t len);
  /* The core closes the session: reason is an MQTT 5 reason code
   * (0x8E session taken over, 0x98 administrative action). */
  void (*on_close)(void *owner, struct td_dsession *s, int reason);
};

struct td_dsession {
  atomic_int refs;
  struct td_uuid session_id;
  struct td_uuid device_id, tenant_id;
  struct td_loop *loop;               /* the session's I/O loop */
  const struct td_dsession_ops *ops;
  void *owner;                        /* loop thread only; NULL once the connection is gone */
  int64_t connected_ms;
  bool sync;                          /* a short-lived session (one HTTP request): td_core_session_open_sync */
};

/* td_dsession_new: a session for an authenticated device, refs 1 (the
 * transport's). Loop thread. NULL on ENOMEM. */
struct td_dsession *td_dsession_new(struct td_loop *loop, const struct td_dsession_ops *ops, void *owner,
                                    const struct td_uuid *device_id, const struct td_uuid *tenant_id);
struct td_dsession *td_dsession_ref(struct td_dsession *s);
void td_dsession_unref(struct td_dsession *s);

/* Downlink delivery (any thread, typically the Device actor): copies the
 * data into a task posted to s->loop; the matching ops callback runs there
 * if the session still has an owner. 0 or TD_ENOMEM. */
int td_dsession_deliver_attributes(struct td_dsession *s, const char *payload, size_t len);
int td_dsession_deliver_rpc(struct td_dsession *s, int32_t request_id, const char *method, const char *params,
                            int64_t expiration_ms, bool oneway);
int td_dsession_deliver_rpc_response(struct td_dsession *s, int32_t request_id, const char *payload, size_t len);
int td_dsession_deliver_close(struct td_dsession *s, int reason);

/* ---- session events: transport -> the device's actor (any thread) ----
 * Each returns 0 or TD_ENOMEM/TD_ECLOSED; the event is handled
 * asynchronously, in order per device. These go through the rule engine's
 * actor tree (ctx->rules), bounded by the number of sessions. */
struct td_ctx;
/* td_core_session_open: register s (a reference is taken) for its device; when
 * the device has more than cfg max sessions, the oldest is closed with 0x8E.
 * Also emits the CONNECT event to the device actor. */
int td_core_session_open(struct td_ctx *ctx, struct td_dsession *s);
/* td_core_session_subscribe: set what the session wants pushed. */
int td_core_session_subscribe(struct td_ctx *ctx, struct td_dsession *s, bool attributes, bool rpc);
/* td_core_session_close: the connection is gone (DISCONNECT event); the actor drops its reference. */
int td_core_session_close(struct td_ctx *ctx, struct td_dsession *s);
/* td_core_rpc_delivered: the device acknowledged (PUBACK) server RPC request_id. */
int td_core_rpc_delivered(struct td_ctx *ctx, struct td_dsession *s, int32_t request_id);
/* td_core_rpc_reply: the device answered server RPC request_id with payload (any text). */
int td_core_rpc_reply(struct td_ctx *ctx, struct td_dsession *s, int32_t request_id, const char *payload, size_t len);
/* td_core_session_open_sync: register a short-lived session (ThingsBoard's
 * SYNC session: one HTTP long poll or client-side RPC call) subscribed to
 * attributes and/or RPC, in one event. Marks s->sync. Unlike
 * td_core_session_open it is not counted against the sessions limit, it gets
 * at most one RPC request (the oldest pending one first) and one attribute
 * update, and then it is no longer subscribed; close it with
 * td_core_session_close. An RPC handed to it that it never acknowledged
 * (td_core_rpc_delivered) before that close is sent again to the next
 * subscriber. Any thread; 0 or TD_ENOMEM/TD_ECLOSED. */
int td_core_session_open_sync(struct td_ctx *ctx, struct td_dsession *s, bool attributes, bool rpc);
/* td_core_claim: the device asks to be claimable with secret_key (may be "")
 * for duration_ms (<= 0: the configured default, ThingsBoard's 86400000). */
int td_core_claim(struct td_ctx *ctx, struct td_dsession *s, const char *secret_key, int64_t duration_ms);
/* ---- additions by the core-sessions work (additive) ---- */

/* td_core_attributes_changed: shared attributes of a device changed or were
 * deleted (REST save/delete, the save-attributes rule node with notifyDevice):
 * payload is ThingsBoard's {"k":v,...} or {"deleted":["k",...]}; the device's
 * actor pushes it to every session subscribed to attributes. Any thread. */
int td_core_attributes_changed(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                               const char *payload, size_t len);
/* td_core_rpc_request: a server-side RPC straight to the device's actor (the
 * rule node "rpc call request" uses the same path with its own completion).
 * The actor assigns the per-device request id, sends it to every session
 * subscribed to RPC (or keeps it until one subscribes or it expires) and
 * completes the waiter registered under request_uuid (td_rpc_waiter). */
int td_core_rpc_request(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                        const struct td_uuid *request_uuid, const char *method, const char *params,
                        int64_t expiration_ms, bool oneway);

/* ---- persistent RPC (reference §2.7) ----
 * A persistent RPC is a row in the store (td_store_rpc_*), created by the
 * REST controller with status QUEUED and then carried like any RPC through
 * the rule chain (metadata persistent=true, requestUUID = the row id) to the
 * device's actor. The actor sends it when a session subscribes to RPC (after
 * a restart it reloads QUEUED/SENT/TIMEOUT rows from the store on the first
 * RPC subscription), and records every status change in the row on a
 * storage thread: SENT, DELIVERED (acknowledged), SUCCESSFUL (a oneway RPC
 * once delivered; a twoway one with the reply as `response`), TIMEOUT (the
 * session that had it closed without acknowledging; it is sent again),
 * FAILED (more such losses than its retries), EXPIRED (expirationTime passed
 * first). Each change also produces an RPC_<status> TbMsg (data: the Rpc
 * JSON) into the queue. */
/* td_core_rpc_deleted: the row rpc_id of device_id was deleted (REST): the
 * actor forgets the pending RPC. Any thread. */
int td_core_rpc_deleted(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                        const struct td_uuid *rpc_id);
/* td_core_rpc_emit: produce an RPC_<status> TbMsg (originator the Rpc's
 * device, data the Rpc JSON with that status) into ctx->queue; never blocks,
 * dropped (one rate-limited line) when the queue is full. Any thread. */
void td_core_rpc_emit(struct td_ctx *ctx, json_t *rpc, const char *status);

/* Waiters for server-side RPC results (the REST RPC controller). A waiter is
 * registered under the TbMsg's requestUUID; whoever finishes the RPC (the
 * device actor) calls td_core_rpc_complete, which takes it out of the
 * registry and posts it to its loop, where on_done runs once. At most
 * TD_RPC_WAITERS_MAX are registered at a time. */
#define TD_RPC_WAITERS_MAX 10000
struct td_rpc_waiter {
  struct td_task task;                       /* internal */
  struct td_rpc_waiter *next;                /* internal (registry) */
  struct td_uuid request_uuid;
  struct td_loop *loop;
  void (*on_done)(struct td_rpc_waiter *w);  /* on loop; owns payload */
  int error;          /* 0; TD_ETIMEDOUT: sent, no answer; TD_ECLOSED: no active connection */
  char *payload;      /* the device's reply (malloc'd, NUL-terminated) or NULL */
  size_t len;
};
/* td_rpc_waiter_add: register (any thread). 0, TD_EEXIST (uuid in use) or TD_EFULL. */
int td_rpc_waiter_add(struct td_rpc_waiter *w);
/* td_rpc_waiter_cancel: take w out of the registry. true: done; no
 * completion will come. false: a completion is already on its way to w->loop. */
bool td_rpc_waiter_cancel(struct td_rpc_waiter *w);
/* td_core_rpc_complete: finish the waiter of request_uuid, if any (any thread). */
void td_core_rpc_complete(const struct td_uuid *request_uuid, int error, const char *payload, size_t len);
size_t td_rpc_waiter_count(void);

/* Claiming (reference §2.4). ThingsBoard keeps claim data in a cache
 * (CLAIM_DEVICES_CACHE), not in the device actor; so does thingsd: a
 * process-wide table keyed by device id, bounded (TD_CLAIMS_MAX). */
#define TD_CLAIM_DEFAULT_DURATION_MS 86400000LL  /* security.claim.duration */
#define TD_CLAIMS_MAX 100000
/* td_core_claim_device: as td_core_claim, for transports without a session
 * (HTTP). Keeps an unexpired earlier claim (ThingsBoard's putIfAbsent).
 * 0, TD_EFULL or TD_ENOMEM. */
int td_core_claim_device(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                         const char *secret_key, int64_t duration_ms);
enum td_claim_result { TD_CLAIM_NONE = 0, TD_CLAIM_OK, TD_CLAIM_BAD };
/* td_core_claim_take: a user claims device_id with secret_key: OK (the claim
 * is consumed), BAD (expired or wrong secret: the claim is dropped), NONE. */
enum td_claim_result td_core_claim_take(const struct td_uuid *device_id, const char *secret_key, int64_t now_ms);
/* td_core_claim_drop: forget the device's claim (reclaim). */
void td_core_claim_drop(const struct td_uuid *device_id);
#endif
