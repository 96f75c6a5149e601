/* session.c — device sessions in the actor tree (device_session.h,
 * reference §1.0.5, §2.7, §5.2).
 *
 * Transports and the REST layer send events (struct td_rule_dev_evt) through
 * App -> Tenant -> Device actor (each spawns the next if needed); the Device
 * actor keeps, as ThingsBoard's DeviceActorMessageProcessor does:
 *   - its sessions in connection order with their subscriptions (attributes,
 *     RPC); past actors.session.max_concurrent_sessions_per_device the oldest
 *     is closed with 0x8E (session taken over);
 *   - pending server-side RPCs by the per-device int id (rpcSeq, from 0): a
 *     request goes to every session subscribed to RPC; without one it waits
 *     until a session subscribes or it expires. A oneway request is complete
 *     once sent; a twoway one when the device answers. On expiry the result is
 *     TIMEOUT if it was sent, NO_ACTIVE_CONNECTION if not.
 * A result goes to the REST waiter (td_core_rpc_complete by requestUUID) and
 * to the rule node that asked (Success with the reply as data, or Failure
 * "TIMEOUT"/"NO_ACTIVE_CONNECTION").
 *
 * Bounds: sessions by the transports' connection limits (and the config key),
 * pending RPCs per device by MAX_PENDING, events by the callers (one per
 * session event, one per REST call). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/device_session.h"
#include "rule/rule_int.h"

#define MAX_PENDING 1000

struct td_rule_dev_sess {
  struct td_dsession *s; /* a reference */
  bool attr, rpc;
};

struct td_rule_dev_pend {
  struct td_rule_dev_pend *next;
  int32_t id;
  struct td_uuid uuid;
  char *method, *params;
  int64_t exp;
  bool oneway, sent, delivered;
  struct td_rule_async *h;
  struct td_msg *msg;
};

/* ---------------------------------------------------------------- events */

static void evt_free(struct td_actor_msg *m) {
  struct td_rule_dev_evt *ev = (struct td_rule_dev_evt *)m;
  if (ev->op == TD_DEV_RPC_REQUEST) { /* never reached the device actor */
    if (!td_uuid_is_zero(&ev->request_uuid)) td_core_rpc_complete(&ev->request_uuid, TD_ECLOSED, NULL, 0);
    if (ev->h) td_rule_async_failure(ev->h, "device actor stopped");
  }
  if (ev->s) td_dsession_unref(ev->s);
  if (ev->msg) td_msg_unref(ev->msg);
  free(ev->method);
  free(ev->params);
  free(ev->payload);
  free(ev);
}

struct td_rule_dev_evt *td_rule_dev_evt_new(int op, const struct td_uuid *tenant_id, const struct td_uuid *device_id) {
  struct td_rule_dev_evt *ev = calloc(1, sizeof *ev);
  if (!ev) return NULL;
  ev->hdr.kind = TD_RK_DEV_EVT;
  ev->hdr.free_fn = evt_free;
  ev->op = op;
  ev->tenant_id = *tenant_id;
  ev->device_id = *device_id;
  return ev;
}

static int send_evt(struct td_ctx *ctx, struct td_rule_dev_evt *ev) {
  if (!ctx || !ctx->rules) {
    td_actor_msg_free(&ev->hdr);
    return TD_ECLOSED;
  }
  return td_rule_engine_device_event(ctx->rules, ev);
}

static struct td_rule_dev_evt *sess_evt(int op, struct td_dsession *s) {
  struct td_rule_dev_evt *ev = td_rule_dev_evt_new(op, &s->tenant_id, &s->device_id);
  if (ev) ev->s = td_dsession_ref(s);
  return ev;
}

static char *dup_n(const char *p, size_t n) {
  char *c = malloc(n + 1);
  if (!c) return NULL;
  if (n) memcpy(c, p, n);
  c[n] = '\0';
  return c;
}

int td_core_session_open(struct td_ctx *ctx, struct td_dsession *s) {
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_OPEN, s);
  return ev ? send_evt(ctx, ev) : TD_ENOMEM;
}

int td_core_session_subscribe(struct td_ctx *ctx, struct td_dsession *s, bool attributes, bool rpc) {
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_SUBSCRIBE, s);
  if (!ev) return TD_ENOMEM;
  ev->attributes = attributes;
  ev->rpc = rpc;
  return send_evt(ctx, ev);
}

int td_core_session_close(struct td_ctx *ctx, struct td_dsession *s) {
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_CLOSE, s);
  return ev ? send_evt(ctx, ev) : TD_ENOMEM;
}

int td_core_rpc_delivered(struct td_ctx *ctx, struct td_dsession *s, int32_t request_id) {
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_RPC_DELIVERED, s);
  if (!ev) return TD_ENOMEM;
  ev->request_id = request_id;
  return send_evt(ctx, ev);
}

int td_core_rpc_reply(struct td_ctx *ctx, struct td_dsession *s, int32_t request_id, const char *payload, size_t len) {
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_RPC_REPLY, s);
  if (!ev) return TD_ENOMEM;
  ev->request_id = request_id;
  if (!(ev->payload = dup_n(payload, len))) {
    td_actor_msg_free(&ev->hdr);
    return TD_ENOMEM;
  }
  ev->len = len;
  return send_evt(ctx, ev);
}

int td_core_attributes_changed(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                               const char *payload, size_t len) {
  struct td_rule_dev_evt *ev = td_rule_dev_evt_new(TD_DEV_ATTRS, tenant_id, device_id);
  if (!ev) return TD_ENOMEM;
  if (!(ev->payload = dup_n(payload, len))) {
    td_actor_msg_free(&ev->hdr);
    return TD_ENOMEM;
  }
  ev->len = len;
  return send_evt(ctx, ev);
}

int td_core_rpc_request(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                        const struct td_uuid *request_uuid, const char *method, const char *params,
                        int64_t expiration_ms, bool oneway) {
  struct td_rule_dev_evt *ev = td_rule_dev_evt_new(TD_DEV_RPC_REQUEST, tenant_id, device_id);
  if (!ev) return TD_ENOMEM;
  if (request_uuid) ev->request_uuid = *request_uuid;
  ev->method = strdup(method ? method : "");
  ev->params = strdup(params ? params : "{}");
  ev->expiration_ms = expiration_ms;
  ev->oneway = oneway;
  if (!ev->method || !ev->params) {
    td_actor_msg_free(&ev->hdr); /* completes the waiter with TD_ECLOSED */
    return TD_ENOMEM;
  }
  return send_evt(ctx, ev);
}

/* ---------------------------------------------------------------- device actor side */

bool td_rule_dev_busy(const struct td_rule_dev_state *ds) { return ds->n > 0 || ds->npend > 0; }

static struct td_rule_dev_sess *find_sess(struct td_rule_dev_state *ds, const struct td_dsession *s) {
  for (size_t i = 0; i < ds->n; i++)
    if (ds->v[i].s == s) return &ds->v[i];
  return NULL;
}

static void remove_sess(struct td_rule_dev_state *ds, size_t i) {
  td_dsession_unref(ds->v[i].s);
  memmove(&ds->v[i], &ds->v[i + 1], (ds->n - i - 1) * sizeof *ds->v);
  ds->n--;
}

static void pend_free(struct td_rule_dev_pend *p) {
  if (p->msg) td_msg_unref(p->msg);
  free(p->method);
  free(p->params);
  free(p);
}

/* complete: hand the result of p to its waiter and its rule node; frees p. */
static void complete(struct td_rule_dev_pend *p, int err, const char *payload, size_t len) {
  if (!td_uuid_is_zero(&p->uuid)) td_core_rpc_complete(&p->uuid, err, payload, len);
  if (p->h) {
    if (err == 0) {
      const char *data = payload && len ? payload : "{}";
      size_t dl = payload && len ? len : 2;
      struct td_msg *m = td_msg_derive(p->msg, NULL, NULL, 0, data, dl);
      if (m) {
        td_rule_async_tell_next_msg(p->h, m, TD_RULE_SUCCESS);
        td_msg_unref(m);
      } else {
        td_rule_async_failure(p->h, td_strerror(TD_ENOMEM));
      }
    } else {
      td_rule_async_failure(p->h, err == TD_ETIMEDOUT ? "TIMEOUT" : err == TD_ECLOSED ? "NO_ACTIVE_CONNECTION"
                                                                                      : td_strerror(err));
    }
    p->h = NULL;
  }
  pend_free(p);
}

static struct td_rule_dev_pend *unlink_pend(struct td_rule_dev_state *ds, int32_t id) {
  for (struct td_rule_dev_pend **pp = &ds->pend; *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      struct td_rule_dev_pend *p = *pp;
      *pp = p->next;
      ds->npend--;
      return p;
    }
  return NULL;
}

static void send_to(struct td_rule_dev_sess *x, struct td_rule_dev_pend *p) {
  if (td_dsession_deliver_rpc(x->s, p->id, p->method, p->params, p->exp, p->oneway) == 0) p->sent = true;
}

static void on_open(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  if (find_sess(ds, ev->s)) return;
  if (ds->n == ds->cap) {
    size_t nc = ds->cap ? ds->cap * 2 : 2;
    struct td_rule_dev_sess *v = realloc(ds->v, nc * sizeof *v);
    if (!v) {
      td_log_limited(1, TD_LOG_ERROR, "rule", "action=\"registering session\" err=TD_ENOMEM");
      (void)td_dsession_deliver_close(ev->s, 0x80);
      return;
    }
    ds->v = v;
    ds->cap = nc;
  }
  ds->v[ds->n++] = (struct td_rule_dev_sess){.s = ev->s};
  ev->s = NULL; /* the event's reference is the actor's now */
  while (ds->max_sessions > 0 && ds->n > (size_t)ds->max_sessions) {
    (void)td_dsession_deliver_close(ds->v[0].s, 0x8E); /* session taken over: the eldest goes */
    remove_sess(ds, 0);
  }
}

static void on_subscribe(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  struct td_rule_dev_sess *x = find_sess(ds, ev->s);
  if (!x) return;
  bool new_rpc = ev->rpc && !x->rpc;
  x->attr = ev->attributes;
  x->rpc = ev->rpc;
  if (!new_rpc) return;
  /* RPCs that found no subscriber are sent to the first one (ThingsBoard's sendPendingRequests). */
  int64_t now = td_now_ms();
  for (struct td_rule_dev_pend **pp = &ds->pend; *pp;) {
    struct td_rule_dev_pend *p = *pp;
    if (p->sent || p->exp <= now) {
      pp = &p->next;
      continue;
    }
    send_to(x, p);
    if (p->oneway && p->sent) {
      *pp = p->next;
      ds->npend--;
      complete(p, 0, NULL, 0);
    } else {
      pp = &p->next;
    }
  }
}

static void on_rpc_request(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_evt *ev) {
  struct td_rule_dev_pend *p = calloc(1, sizeof *p);
  if (!p) return; /* evt_free completes with TD_ECLOSED */
  p->uuid = ev->request_uuid;
  p->method = ev->method;
  p->params = ev->params;
  p->exp = ev->expiration_ms;
  p->oneway = ev->oneway;
  p->h = ev->h;
  p->msg = ev->msg;
  ev->method = ev->params = NULL;
  ev->h = NULL;
  ev->msg = NULL;
  ev->op = 0; /* taken over: evt_free must not complete it */
  int64_t now = td_now_ms();
  if (p->exp <= now) {
    complete(p, TD_ETIMEDOUT, NULL, 0);
    return;
  }
  if (ds->npend >= MAX_PENDING) {
    td_log_limited(10, TD_LOG_WARN, "rule", "action=\"queueing RPC\" err=TD_EFULL limit=%d", MAX_PENDING);
    complete(p, TD_EFULL, NULL, 0);
    return;
  }
  p->id = ds->rpc_seq++;
  if (ds->rpc_seq < 0) ds->rpc_seq = 0;
  for (size_t i = 0; i < ds->n; i++)
    if (ds->v[i].rpc) send_to(&ds->v[i], p);
  if (p->oneway && p->sent) { /* ThingsBoard answers a oneway RPC once it is sent */
    complete(p, 0, NULL, 0);
    return;
  }
  struct td_rule_rpc_timeout_msg *tm = calloc(1, sizeof *tm);
  if (!tm) {
    complete(p, TD_ENOMEM, NULL, 0);
    return;
  }
  tm->hdr.kind = TD_RK_RPC_TIMEOUT;
  tm->request_id = p->id;
  /* Bounded: one timer per pending RPC (MAX_PENDING per device). */
  if (td_actor_tell_later(self, &tm->hdr, p->exp - now) != 0) {
    complete(p, TD_ECLOSED, NULL, 0);
    return;
  }
  p->next = ds->pend;
  ds->pend = p;
  ds->npend++;
}

void td_rule_dev_rpc_timeout(struct td_rule_dev_state *ds, int32_t request_id) {
  struct td_rule_dev_pend *p = unlink_pend(ds, request_id);
  if (p) complete(p, p->sent ? TD_ETIMEDOUT : TD_ECLOSED, NULL, 0);
}

static void on_client_rpc_reply(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  for (size_t i = 0; i < ds->n; i++)
    if (td_uuid_eq(&ds->v[i].s->session_id, &ev->session_id)) {
      (void)td_dsession_deliver_rpc_response(ds->v[i].s, ev->request_id, ev->payload ? ev->payload : "",
                                             ev->len);
      return;
    }
}

void td_rule_dev_handle(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_evt *ev) {
  switch (ev->op) {
  case TD_DEV_OPEN: on_open(ds, ev); break;
  case TD_DEV_SUBSCRIBE: on_subscribe(ds, ev); break;
  case TD_DEV_CLOSE:
    for (size_t i = 0; i < ds->n; i++)
      if (ds->v[i].s == ev->s) {
        remove_sess(ds, i);
        break;
      }
    break;
  case TD_DEV_RPC_DELIVERED:
    for (struct td_rule_dev_pend *p = ds->pend; p; p = p->next)
      if (p->id == ev->request_id) p->delivered = true;
    break;
  case TD_DEV_RPC_REPLY: {
    struct td_rule_dev_pend *p = unlink_pend(ds, ev->request_id);
    if (p) complete(p, 0, ev->payload, ev->len);
    break;
  }
  case TD_DEV_ATTRS:
    for (size_t i = 0; i < ds->n; i++)
      if (ds->v[i].attr) (void)td_dsession_deliver_attributes(ds->v[i].s, ev->payload, ev->len);
    break;
  case TD_DEV_RPC_REQUEST: on_rpc_request(ds, self, ev); break;
  case TD_DEV_CLIENT_RPC_REPLY: on_client_rpc_reply(ds, ev); break;
  default: break;
  }
  td_actor_msg_free(&ev->hdr);
}

void td_rule_dev_deinit(struct td_rule_dev_state *ds) {
  while (ds->n) remove_sess(ds, ds->n - 1);
  free(ds->v);
  ds->v = NULL;
  ds->cap = 0;
  while (ds->pend) {
    struct td_rule_dev_pend *p = ds->pend;
    ds->pend = p->next;
    ds->npend--;
    complete(p, TD_ECLOSED, NULL, 0);
  }
}
