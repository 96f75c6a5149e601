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
#include "core/payload.h"
#include "msg/msg.h"
#include "store/dbpool.h"

/* A transport (MQTT, HTTP device API, CoAP, ...): started once with the
 * context after the loops exist and before they run; stopped at shutdown. */
struct td_transport_ops {
  const char *name;
  int (*start)(struct td_ctx *ctx, void **state);
  void (*stop)(void *state);
};

/* An authenticated device: an immutable, reference-counted snapshot. The
 * allocation ends with info.credentials_value's string (the rest of that
 * array is trimmed), so read it through the pointer; never copy it by value. */
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
  const char *require_type;         /* NULL: any; else a device with other credentials is TD_EAUTH */
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
/* ---- shared by the transports (listen.c, service.c) ---- */

/* td_transport_listen_fd: a non-blocking TCP socket bound to addr:port with
 * SO_REUSEADDR and SO_REUSEPORT (one per I/O loop, the kernel spreads
 * connections), for uv_tcp_open + uv_listen. first: the listener's first
 * socket; the port must not be listened on already (another process, or
 * another of thingsd's listeners: SO_REUSEPORT would share it silently).
 * *bound = the port actually bound (port 0: an ephemeral one; pass it to the
 * next loops). Returns the fd (caller owns it) or TD_EINVAL (bad address) /
 * TD_EIO (logged under module). */
int td_transport_listen_fd(const char *addr, int port, const char *module, bool first, int *bound);

/* td_transport_payload_opts: the JSON typing options of ctx's configuration. */
struct td_payload_opts td_transport_payload_opts(const struct td_ctx *ctx);

/* td_transport_telemetry_msgs: parse a telemetry payload (reference §1.0.3)
 * into one POST_TELEMETRY_REQUEST TbMsg per ts group (metadata ts; groups
 * without ts get now_ms). *msgs is an array in arena a of *n messages the
 * caller owns (td_msg_unref each). Returns 0, TD_EPROTO with a reason in err
 * (payload never echoed), or TD_ENOMEM. */
int td_transport_telemetry_msgs(const struct td_device_ref *d, const struct td_payload_opts *o, const char *p,
                                size_t len, int64_t now_ms, struct td_arena *a, struct td_msg ***msgs, size_t *n,
                                char *err, size_t errlen);
/* td_transport_attributes_msg: parse a client attributes payload into one
 * POST_ATTRIBUTES_REQUEST TbMsg (metadata notifyDevice=false); *out is the
 * caller's. Returns 0, TD_EPROTO (reason in err) or TD_ENOMEM. */
int td_transport_attributes_msg(const struct td_device_ref *d, const struct td_payload_opts *o, const char *p,
                                size_t len, struct td_arena *a, struct td_msg **out, char *err, size_t errlen);

/* td_transport_split_keys: "a, b,c" -> trimmed non-empty keys in arena a
 * (the clientKeys/sharedKeys lists of attribute requests). 0 or TD_ENOMEM. */
int td_transport_split_keys(struct td_arena *a, const char *s, const char ***out, size_t *n);
/* td_transport_attr_response_json: append {"client":{..},"shared":{..}}
 * (an empty scope omitted, reference §1.1.2) for the attributes read. */
struct td_attr;
int td_transport_attr_response_json(struct td_buf *b, const struct td_attr *client, size_t nclient,
                                    const struct td_attr *shared, size_t nshared);

/* MQTT basic credentials (reference §1.0.1, §1.1.1 step 3): looks up
 * sha3(clientId|userName) as MQTT_BASIC (password checked), then falls back
 * to userName as an ACCESS_TOKEN (password ignored) or as MQTT_BASIC without
 * clientId; without userName, sha3(clientId) as MQTT_BASIC. Fill the inputs,
 * loop and done; done runs on loop with status 0 (device set, a reference the
 * owner puts), TD_EAUTH (no such credentials, or a wrong password), TD_EFULL
 * or TD_EIO. */
struct td_basic_auth_req {
  struct td_loop *loop;
  char client_id[256], username[256], password[256];
  bool has_username, has_password;
  int status;
  struct td_device_ref *device;
  void (*done)(struct td_basic_auth_req *r);
  /* internal */
  struct td_auth_req a;
  struct td_transport_service *ts_;
  int step;
};
/* td_transport_auth_basic: start it; always 0 (done always runs). */
int td_transport_auth_basic(struct td_transport_service *ts, struct td_basic_auth_req *r);
/* td_transport_auth_x509: look up the X.509 credentialsId (hash from
 * td_tls_peer_credentials_id) in r->credentials_id; td_transport_auth with
 * require_type "X509_CERTIFICATE" (a token equal to the hash is TD_EAUTH). */
int td_transport_auth_x509(struct td_transport_service *ts, struct td_auth_req *r);

/* Device provisioning (reference §1.1.9; MQTT /provision/request, HTTP
 * POST /api/v1/provision). Fill loop, request/request_len (borrowed until
 * done) and done; done runs on loop with status 0 and response = the
 * provisioning answer JSON ({"credentialsValue",..,"status":"SUCCESS"} or
 * NOT_FOUND / FAILURE with errorMsg; malloc'd, the owner frees it), or status
 * TD_EPROTO (the request is not a JSON object), TD_EFULL or TD_EIO with no
 * response. */
struct td_provision_req {
  struct td_dbjob job;              /* internal */
  struct td_loop *loop;
  const char *request;
  size_t request_len;
  int status;
  char *response;
  size_t response_len;
  bool success;                     /* the answer is SUCCESS */
  void *request_owner;              /* free for the caller */
  void (*done)(struct td_provision_req *r);
  struct td_transport_service *ts;  /* internal */
};
/* td_transport_provision: start it. 0 (done will run), or TD_EFULL / TD_EIO
 * (done never runs). */
int td_transport_provision(struct td_transport_service *ts, struct td_provision_req *r);
/* td_transport_provision_run: the work itself, on a storage thread with its
 * store (ts: credentials cache to invalidate, may be NULL). *response as
 * above. 0, TD_EPROTO, or a store error. */
int td_transport_provision_run(struct td_store *st, struct td_transport_service *ts, const char *request,
                               size_t len, char **response);
#endif
