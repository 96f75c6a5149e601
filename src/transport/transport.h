/* transport.h — what every device protocol gets from the core, and how a
 * protocol plugs in (ARCHITECTURE.md §4).
 *
 * A transport authenticates a device (credentials cache, then the store on a
 * storage thread), turns its uplinks into TbMsgs, and hands them to the
 * durable queue; its acknowledgement to the device waits for the queue's
 * callback. All callbacks arrive as tasks on the I/O loop that asked. A
 * transport never includes a store header for anything but the types. */
#ifndef TD_TRANSPORT_TRANSPORT_H
#define TD_TRANSPORT_TRANSPORT_H
#include <stdatomic.h>
#include "base/loop.h"
#include "core/ctx.h"
#include "msg/msg.h"
#include "store/dbpool.h"

/* A transport (MQTT, HTTP device API, CoAP, ...): started once with the
 * context after the loops exist and before they run; stopped at shutdown. */
struct td_transport_ops {
  const char *name;
  int (*start)(struct td_ctx *ctx, void **state);
  void (*stop)(void *state);
};

/* An authenticated device: an immutable, reference-counted snapshot. */
struct td_device_ref {
  atomic_int refs;
  struct td_device_auth info;
};
struct td_device_ref *td_device_ref_get(struct td_device_ref *d);
void td_device_ref_put(struct td_device_ref *d);

struct td_transport_service;

struct td_transport_service_config {
  size_t cache_limit;        /* credentials cache entries (default 100000) */
};
int td_transport_service_new(struct td_ctx *ctx, const struct td_transport_service_config *cfg,
                             struct td_transport_service **out);
void td_transport_service_free(struct td_transport_service *ts);
/* td_transport_invalidate: forget a cached credentials id (credentials changed
 * or device deleted). Any thread. NULL credentials_id = forget everything. */
void td_transport_invalidate(struct td_transport_service *ts, const char *credentials_id);

/* Asynchronous authentication by credentialsId (access token, MQTT basic id, X.509 hash). */
struct td_auth_req {
  struct td_dbjob job;              /* internal */
  struct td_loop *loop;             /* where done runs */
  char credentials_id[512];
  int status;                       /* 0, TD_EAUTH (unknown), TD_EFULL, TD_EIO */
  struct td_device_ref *device;     /* on success: a reference owned by the request's owner */
  void (*done)(struct td_auth_req *r);
  struct td_transport_service *ts;  /* internal: set by td_transport_auth */
};
/* td_transport_auth: done runs on r->loop (possibly before this returns, on a
 * cache hit, when called on that loop). Always 0. */
int td_transport_auth(struct td_transport_service *ts, struct td_auth_req *r);

/* Asynchronous uplink: messages made durable in the queue. */
struct td_uplink_req {
  struct td_task task;              /* internal */
  struct td_loop *loop;             /* where done runs */
  int status;                       /* 0 = durable; TD_EFULL = back-pressure; other < 0 = failed */
  void (*done)(struct td_uplink_req *r);
};
/* td_transport_uplink: produce msgs (references are taken); done runs on
 * r->loop once they are durable. Returns 0, or an error (then done never runs). */
int td_transport_uplink(struct td_transport_service *ts, struct td_msg *const *msgs, size_t n, struct td_uplink_req *r);

/* td_transport_device_msg: build a device-originated TbMsg with metadata
 * deviceName, deviceType and the extra pairs given (e.g. ts, notifyDevice).
 * Caller owns the result. */
struct td_msg *td_transport_device_msg(const struct td_device_ref *d, const char *type,
                                       const struct td_msg_md *extra_md, size_t n_extra,
                                       const char *data, size_t data_len);

/* The HTTP device API (reference §1.2) as routes on the HTTP server. */
struct td_http_router;
int td_http_device_api_register(struct td_http_router *rt, struct td_ctx *ctx);
#endif
