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
#endif
