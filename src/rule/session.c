/* session.c — device sessions in the actor tree (device_session.h,
 * reference §1.0.5, §2.7, §5.2).
 *
 * Transports and the REST layer send events (struct td_rule_dev_evt) through
 * App -> Tenant -> Device actor (each spawns the next if needed); the Device
 * actor keeps, as ThingsBoard's DeviceActorMessageProcessor does:
 *   - its sessions in connection order with their subscriptions (attributes,
 *     RPC); past actors.session.max_concurrent_sessions_per_device the oldest
 *     is closed with 0x8E (session taken over). Short-lived (sync) sessions —
 *     one HTTP long poll or client-side RPC call — do not count; each takes
 *     one RPC request and one attribute update, then is unsubscribed;
 *   - pending server-side RPCs by the per-device int id (rpcSeq, from 0),
 *     oldest first: a request goes to every session subscribed to RPC;
 *     without one it waits until a session subscribes or it expires. It is
 *     "sent" while some session that got it has neither acknowledged it nor
 *     closed; when the last such session closes unacknowledged it is sent
 *     again to the next subscriber. A oneway request is complete once sent
 *     (persistent: once acknowledged); a twoway one when the device answers.
 *     On expiry the result is TIMEOUT if it was sent, NO_ACTIVE_CONNECTION if
 *     not.
 * A result goes to the REST waiter (td_core_rpc_complete by requestUUID) and
 * to the rule node that asked (Success with the reply as data, or Failure
 * "TIMEOUT"/"NO_ACTIVE_CONNECTION").
 *
 * Persistent RPCs (device_session.h) are rows in the store: the rule node is
 * answered at once with {"rpcId":..}; each status change is written to the
 * row by a storage job (fire and forget, ordered by the row's status
 * sequence) that also emits the RPC_<status> TbMsg; on the first RPC
 * subscription of the actor's life the rows still to send are read back
 * (a storage job whose answer comes back as a TD_DEV_RPC_LOADED event), so
 * they survive restarts. A ring of recently finished ids keeps a late copy
 * (the chain's and the store's paths race) from being sent twice.
 *
 * Bounds: sessions by the transports' connection limits (and the config key),
 * pending RPCs per device by MAX_PENDING (and so the rows loaded), events by
 * the callers (one per session event, one per REST call), storage jobs by
 * the pool's queue limit (a status write refused there is logged and lost:
 * the row keeps its previous status). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/device_session.h"
#include "rule/rule_int.h"
#include "store/dbpool.h"
#include "store/store.h"

#define MAX_PENDING 1000
#define PEND_TO_MAX 8          /* sessions tracked per RPC for loss detection */
#define DEFAULT_MAX_RETRIES 5  /* actors.rpc.max_retries */

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
  /* sessions that got it and neither acknowledged it nor closed (identity only;
   * a session leaves every list before its reference is dropped) */
  struct td_dsession *to[PEND_TO_MAX];
  int nto;
  /* persistent */
  bool persistent;
  int retries;           /* losses allowed before FAILED */
  int losses;
  int64_t seq;           /* status sequence of the row */
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
  if (ev->rows) json_decref(ev->rows);
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
  ev->retries = -1;
  return ev;
}

static int send_evt(struct td_ctx *ctx, struct td_rule_dev_evt *ev) {
  if (!ctx || !ctx->rules) {
    td_actor_msg_free(&ev->hdr);
    return TD_ECLOSED;
  }
  ev->ctx = ctx;
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

int td_core_session_open_sync(struct td_ctx *ctx, struct td_dsession *s, bool attributes, bool rpc) {
  s->sync = true; /* before the event takes it to another thread */
  struct td_rule_dev_evt *ev = sess_evt(TD_DEV_SYNC_OPEN, s);
  if (!ev) return TD_ENOMEM;
  ev->attributes = attributes;
  ev->rpc = rpc;
  return send_evt(ctx, ev);
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

int td_core_rpc_deleted(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                        const struct td_uuid *rpc_id) {
  struct td_rule_dev_evt *ev = td_rule_dev_evt_new(TD_DEV_RPC_DELETE, tenant_id, device_id);
  if (!ev) return TD_ENOMEM;
  ev->request_uuid = *rpc_id;
  return send_evt(ctx, ev);
}

/* ---------------------------------------------------------------- device actor side */

bool td_rule_dev_busy(const struct td_rule_dev_state *ds) { return ds->n > 0 || ds->npend > 0 || ds->loading; }

static struct td_rule_dev_sess *find_sess(struct td_rule_dev_state *ds, const struct td_dsession *s) {
  for (size_t i = 0; i < ds->n; i++)
    if (ds->v[i].s == s) return &ds->v[i];
  return NULL;
}

static void pend_free(struct td_rule_dev_pend *p) {
  if (p->msg) td_msg_unref(p->msg);
  free(p->method);
  free(p->params);
  free(p);
}

static void ring_add(struct td_rule_dev_state *ds, const struct td_uuid *u) {
  ds->done_ring[ds->done_next++ % TD_RULE_DEV_DONE_RING] = *u;
}

static bool ring_has(const struct td_rule_dev_state *ds, const struct td_uuid *u) {
  for (unsigned i = 0; i < TD_RULE_DEV_DONE_RING; i++)
    if (td_uuid_eq(&ds->done_ring[i], u)) return true;
  return false;
}

static struct td_rule_dev_pend *find_uuid(struct td_rule_dev_state *ds, const struct td_uuid *u) {
  for (struct td_rule_dev_pend *p = ds->pend; p; p = p->next)
    if (td_uuid_eq(&p->uuid, u)) return p;
  return NULL;
}

/* ---- persistent RPC: status writes (storage thread) ---- */

struct status_job {
  struct td_dbjob job;
  struct td_ctx *ctx;
  struct td_uuid id;
  int64_t seq;
  const char *status;    /* static */
  char *response;        /* JSON text or NULL */
};

static void status_run(struct td_dbjob *j, struct td_store *st) {
  struct status_job *sj = td_container_of(j, struct status_job, job);
  bool changed = false;
  int rc = td_store_rpc_set_status(st, &sj->id, sj->status, sj->response, sj->seq, &changed);
  json_t *rpc = NULL;
  if (rc == 0 && changed && td_store_rpc_get(st, &sj->id, &rpc) == 0) td_core_rpc_emit(sj->ctx, rpc, sj->status);
  json_decref(rpc);
  if (rc) td_log_limited(10, TD_LOG_WARN, "rule", "action=\"saving RPC status\" status=%s err=%s", sj->status,
                         td_errname(rc));
}

static void status_done(struct td_dbjob *j) {
  struct status_job *sj = td_container_of(j, struct status_job, job);
  free(sj->response);
  free(sj);
}

/* write_status: record status (and response, copied) in the row id with the
 * next sequence after *seq. Without a store (unit tests) nothing happens. */
static void write_status(struct td_rule_dev_state *ds, const struct td_uuid *id, int64_t *seq, const char *status,
                         const char *response) {
  /* Wall-clock based so that a row changed before a restart is still
   * overtaken; +1 keeps it increasing if the clock steps back. */
  int64_t next = td_now_ms() << 10;
  *seq = next > *seq ? next : *seq + 1;
  if (!ds->ctx || !ds->ctx->db) return;
  struct status_job *sj = calloc(1, sizeof *sj);
  if (sj && response && !(sj->response = strdup(response))) {
    free(sj);
    sj = NULL;
  }
  int rc = sj ? 0 : TD_ENOMEM;
  if (sj) {
    sj->ctx = ds->ctx;
    sj->id = *id;
    sj->seq = *seq;
    sj->status = status;
    sj->job.run = status_run;
    sj->job.done = status_done;
    rc = td_dbpool_submit(ds->ctx->db, &sj->job);
    if (rc) status_done(&sj->job);
  }
  if (rc) td_log_limited(10, TD_LOG_WARN, "rule", "action=\"saving RPC status\" status=%s err=%s", status,
                         td_errname(rc));
}

static void set_status(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p, const char *status,
                       const char *response) {
  if (p->persistent) write_status(ds, &p->uuid, &p->seq, status, response);
}

/* ---- completion ---- */

/* complete: hand the result of p to its waiter and its rule node; frees p. */
static void complete(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p, int err, const char *payload,
                     size_t len) {
  if (p->persistent) ring_add(ds, &p->uuid);
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

static void unlink_p(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p) {
  for (struct td_rule_dev_pend **pp = &ds->pend; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      ds->npend--;
      return;
    }
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

static void append_pend(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p) {
  struct td_rule_dev_pend **pp = &ds->pend;
  while (*pp) pp = &(*pp)->next; /* at most MAX_PENDING */
  p->next = NULL;
  *pp = p;
  ds->npend++;
}

/* ---- sending ---- */

static bool to_remove(struct td_rule_dev_pend *p, const struct td_dsession *s) {
  for (int i = 0; i < p->nto; i++)
    if (p->to[i] == s) {
      p->to[i] = p->to[--p->nto];
      return true;
    }
  return false;
}

/* send_to: hand p to session x; false if it could not be queued. */
static bool send_to(struct td_rule_dev_state *ds, struct td_rule_dev_sess *x, struct td_rule_dev_pend *p) {
  if (td_dsession_deliver_rpc(x->s, p->id, p->method, p->params, p->exp, p->oneway) != 0) return false;
  bool first = !p->sent;
  p->sent = true;
  if (p->nto < PEND_TO_MAX) p->to[p->nto++] = x->s; /* more are not tracked: such an RPC is never re-sent */
  if (x->s->sync) x->rpc = false;                    /* a sync session takes one RPC (ThingsBoard's SYNC) */
  if (first) set_status(ds, p, "SENT", NULL);
  return true;
}

/* done_on_send: a non-persistent oneway RPC is complete once sent. */
static bool done_on_send(const struct td_rule_dev_pend *p) { return p->sent && p->oneway && !p->persistent; }

/* dispatch: send p (pending, not sent) to every session subscribed to RPC;
 * completes and frees it if that finishes it. */
static void dispatch(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p) {
  for (size_t i = 0; i < ds->n; i++)
    if (ds->v[i].rpc) send_to(ds, &ds->v[i], p);
  if (done_on_send(p)) { /* ThingsBoard answers a oneway RPC once it is sent */
    unlink_p(ds, p);
    complete(ds, p, 0, NULL, 0);
  }
}

/* send_pending: x subscribed to RPC: the RPCs no session holds go to it,
 * oldest first (a sync session takes only the first). */
static void send_pending(struct td_rule_dev_state *ds, struct td_rule_dev_sess *x) {
  int64_t now = td_now_ms();
  for (struct td_rule_dev_pend *p = ds->pend, *next; p && x->rpc; p = next) {
    next = p->next;
    if (p->sent || p->exp <= now) continue;
    send_to(ds, x, p);
    if (done_on_send(p)) {
      unlink_p(ds, p);
      complete(ds, p, 0, NULL, 0);
    }
  }
}

/* finish: take p out and complete it with a final status. */
static void finish(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p, const char *status, const char *response,
                   int err, const char *payload, size_t len) {
  unlink_p(ds, p);
  set_status(ds, p, status, response);
  complete(ds, p, err, payload, len);
}

/* lost: the last session that had p closed without acknowledging it. */
static void lost(struct td_rule_dev_state *ds, struct td_rule_dev_pend *p) {
  p->sent = false;
  if (p->persistent) {
    if (++p->losses > p->retries) {
      char resp[160];
      snprintf(resp, sizeof resp,
               "{\"error\":\"There was a Timeout and all retry attempts have been exhausted. Retry attempts set: %d\"}",
               p->retries);
      finish(ds, p, "FAILED", resp, TD_ETIMEDOUT, NULL, 0);
      return;
    }
    set_status(ds, p, "TIMEOUT", NULL);
  }
  dispatch(ds, p);
}

/* drop_sess: session i is gone; RPCs only it held unacknowledged go to the
 * other subscribers (or wait for the next one). */
static void drop_sess(struct td_rule_dev_state *ds, size_t i, bool redispatch) {
  struct td_dsession *s = ds->v[i].s;
  memmove(&ds->v[i], &ds->v[i + 1], (ds->n - i - 1) * sizeof *ds->v);
  ds->n--;
  for (struct td_rule_dev_pend *p = ds->pend, *next; p; p = next) {
    next = p->next;
    if (to_remove(p, s) && redispatch && p->nto == 0 && !p->delivered) lost(ds, p);
  }
  td_dsession_unref(s);
}

static bool add_sess(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  if (ds->n == ds->cap) {
    size_t nc = ds->cap ? ds->cap * 2 : 2;
    struct td_rule_dev_sess *v = realloc(ds->v, nc * sizeof *v);
    if (!v) {
      td_log_limited(1, TD_LOG_ERROR, "rule", "action=\"registering session\" err=TD_ENOMEM");
      (void)td_dsession_deliver_close(ev->s, 0x80);
      return false;
    }
    ds->v = v;
    ds->cap = nc;
  }
  ds->v[ds->n++] = (struct td_rule_dev_sess){.s = ev->s};
  ev->s = NULL; /* the event's reference is the actor's now */
  return true;
}

static void on_open(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  if (find_sess(ds, ev->s) || !add_sess(ds, ev)) return;
  if (ds->max_sessions <= 0) return;
  size_t async = 0;
  for (size_t i = 0; i < ds->n; i++) async += !ds->v[i].s->sync;
  for (size_t i = 0; i < ds->n && async > (size_t)ds->max_sessions;) {
    if (ds->v[i].s->sync) {
      i++;
      continue;
    }
    (void)td_dsession_deliver_close(ds->v[i].s, 0x8E); /* session taken over: the eldest goes */
    drop_sess(ds, i, true);
    async--;
  }
}

/* ---- loading stored RPCs ---- */

struct load_job {
  struct td_dbjob job;
  struct td_actor *self;        /* a reference */
  struct td_rule_dev_evt *ev;   /* the answer (TD_DEV_RPC_LOADED) */
};

static void load_run(struct td_dbjob *j, struct td_store *st) {
  struct load_job *lj = td_container_of(j, struct load_job, job);
  json_t *rows = NULL;
  int rc = td_store_rpcs_pending(st, &lj->ev->device_id, MAX_PENDING, &rows);
  if (rc) td_log_limited(10, TD_LOG_WARN, "rule", "action=\"loading persistent RPCs\" err=%s", td_errname(rc));
  lj->ev->rows = rc ? NULL : rows;
}

/* Storage thread: the answer to the actor (bounded: one load per device at a time). */
static void load_done(struct td_dbjob *j) {
  struct load_job *lj = td_container_of(j, struct load_job, job);
  (void)td_actor_tell_force(lj->self, &lj->ev->hdr); /* on TD_ECLOSED the event was freed */
  td_actor_unref(lj->self);
  free(lj);
}

static void start_load(struct td_rule_dev_state *ds, struct td_actor *self) {
  if (ds->loaded || ds->loading || !ds->ctx || !ds->ctx->db) return;
  struct load_job *lj = calloc(1, sizeof *lj);
  struct td_rule_dev_evt *ev = lj ? td_rule_dev_evt_new(TD_DEV_RPC_LOADED, &ds->tenant_id, &ds->device_id) : NULL;
  int rc = ev ? 0 : TD_ENOMEM;
  if (ev) {
    ev->ctx = ds->ctx;
    lj->ev = ev;
    lj->self = td_actor_ref(self);
    lj->job.run = load_run;
    lj->job.done = load_done;
    rc = td_dbpool_submit(ds->ctx->db, &lj->job);
    if (rc) {
      td_actor_unref(lj->self);
      td_actor_msg_free(&ev->hdr);
    }
  }
  if (rc) {
    free(lj);
    td_log_limited(10, TD_LOG_WARN, "rule", "action=\"loading persistent RPCs\" err=%s", td_errname(rc));
    return; /* tried again at the next RPC subscription */
  }
  ds->loading = true;
}

/* arm: the expiry timer of p (pending, in the list); false if it failed (p completed). */
static bool arm(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_pend *p, int64_t now) {
  struct td_rule_rpc_timeout_msg *tm = calloc(1, sizeof *tm);
  if (tm) {
    tm->hdr.kind = TD_RK_RPC_TIMEOUT;
    tm->request_id = p->id;
  }
  /* Bounded: one timer per pending RPC (MAX_PENDING per device). */
  if (tm && td_actor_tell_later(self, &tm->hdr, p->exp - now) == 0) return true;
  if (!tm) td_log_limited(1, TD_LOG_ERROR, "rule", "action=\"arming RPC timeout\" err=TD_ENOMEM");
  unlink_p(ds, p);
  complete(ds, p, TD_ECLOSED, NULL, 0);
  return false;
}

static int32_t next_id(struct td_rule_dev_state *ds) {
  int32_t id = ds->rpc_seq++;
  if (ds->rpc_seq < 0) ds->rpc_seq = 0;
  return id;
}

static int max_retries(const struct td_rule_dev_state *ds) {
  return ds->ctx && ds->ctx->cfg ? ds->ctx->cfg->rpc_max_retries : DEFAULT_MAX_RETRIES;
}

/* Stored rows to send: ThingsBoard's ToDeviceRpcRequest in "request". */
static void on_loaded(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_evt *ev) {
  ds->loading = false;
  if (!ev->rows) return; /* read again at the next RPC subscription */
  ds->loaded = true;
  int64_t now = td_now_ms();
  size_t i;
  json_t *row;
  json_array_foreach(ev->rows, i, row) {
    struct td_uuid id;
    const char *ids = json_string_value(json_object_get(json_object_get(row, "id"), "id"));
    if (!ids || td_uuid_parse(ids, &id)) continue;
    int64_t seq = json_integer_value(json_object_get(row, "statusSeq"));
    struct td_rule_dev_pend *known = find_uuid(ds, &id);
    if (known) {
      if (seq > known->seq) known->seq = seq;
      continue;
    }
    if (ring_has(ds, &id)) continue;
    json_t *req = json_object_get(row, "request"), *body = json_object_get(req, "body");
    const char *method = json_string_value(json_object_get(body, "method"));
    json_t *params = json_object_get(body, "params"), *retries = json_object_get(req, "retries");
    int64_t exp = json_integer_value(json_object_get(row, "expirationTime"));
    if (exp <= now) {
      write_status(ds, &id, &seq, "EXPIRED", NULL);
      continue;
    }
    if (!method || ds->npend >= MAX_PENDING) continue;
    struct td_rule_dev_pend *p = calloc(1, sizeof *p);
    if (!p) break;
    p->uuid = id;
    p->method = strdup(method);
    p->params = json_is_string(params) ? strdup(json_string_value(params))
                                       : json_dumps(params ? params : json_object(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!p->method || !p->params) {
      pend_free(p);
      break;
    }
    p->exp = exp;
    p->oneway = json_is_true(json_object_get(req, "oneway"));
    p->persistent = true;
    int max = max_retries(ds);
    p->retries = json_is_integer(retries) && json_integer_value(retries) < max ? (int)json_integer_value(retries) : max;
    if (p->retries < 0) p->retries = 0;
    p->seq = seq;
    p->id = next_id(ds);
    append_pend(ds, p);
    if (arm(ds, self, p, now)) dispatch(ds, p);
  }
}

/* ---- events ---- */

static void on_subscribe(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_sess *x,
                         bool attributes, bool rpc) {
  bool new_rpc = rpc && !x->rpc;
  x->attr = attributes;
  x->rpc = rpc;
  if (!new_rpc) return;
  /* RPCs that found no subscriber go to the new one (ThingsBoard's sendPendingRequests). */
  send_pending(ds, x);
  start_load(ds, self);
}

static void on_rpc_request(struct td_rule_dev_state *ds, struct td_actor *self, struct td_rule_dev_evt *ev) {
  if (ev->persistent && ev->h) {
    /* ThingsBoard answers the node of a persistent RPC at once with its id. */
    char body[64], u[TD_UUID_STR_LEN + 1];
    int n = snprintf(body, sizeof body, "{\"rpcId\":\"%s\"}", td_uuid_fmt(&ev->request_uuid, u));
    struct td_msg *m = td_msg_derive(ev->msg, NULL, NULL, 0, body, (size_t)n);
    if (m) {
      td_rule_async_tell_next_msg(ev->h, m, TD_RULE_SUCCESS);
      td_msg_unref(m);
    } else {
      td_rule_async_failure(ev->h, td_strerror(TD_ENOMEM));
    }
    ev->h = NULL;
  }
  if (ev->persistent && (find_uuid(ds, &ev->request_uuid) || ring_has(ds, &ev->request_uuid))) {
    ev->op = 0; /* already known (the store's copy came first) or over: nothing to answer */
    return;
  }
  struct td_rule_dev_pend *p = calloc(1, sizeof *p);
  if (!p) return; /* evt_free completes with TD_ECLOSED */
  p->uuid = ev->request_uuid;
  p->method = ev->method;
  p->params = ev->params;
  p->exp = ev->expiration_ms;
  p->oneway = ev->oneway;
  p->h = ev->h;
  p->msg = ev->msg;
  p->persistent = ev->persistent;
  int max = max_retries(ds);
  p->retries = ev->retries >= 0 && ev->retries < max ? ev->retries : max;
  ev->method = ev->params = NULL;
  ev->h = NULL;
  ev->msg = NULL;
  ev->op = 0; /* taken over: evt_free must not complete it */
  int64_t now = td_now_ms();
  if (p->exp <= now) {
    set_status(ds, p, "EXPIRED", NULL);
    complete(ds, p, TD_ETIMEDOUT, NULL, 0);
    return;
  }
  if (ds->npend >= MAX_PENDING) {
    td_log_limited(10, TD_LOG_WARN, "rule", "action=\"queueing RPC\" err=TD_EFULL limit=%d", MAX_PENDING);
    set_status(ds, p, "FAILED", "{\"error\":\"Too many pending RPC requests for the device\"}");
    complete(ds, p, TD_EFULL, NULL, 0);
    return;
  }
  p->id = next_id(ds);
  append_pend(ds, p);
  if (arm(ds, self, p, now)) dispatch(ds, p);
}

void td_rule_dev_rpc_timeout(struct td_rule_dev_state *ds, int32_t request_id) {
  struct td_rule_dev_pend *p = unlink_pend(ds, request_id);
  if (!p) return;
  set_status(ds, p, "EXPIRED", NULL);
  complete(ds, p, p->sent || p->delivered ? TD_ETIMEDOUT : TD_ECLOSED, NULL, 0);
}

static void on_delivered(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  struct td_rule_dev_pend *p = NULL;
  for (struct td_rule_dev_pend *q = ds->pend; q && !p; q = q->next)
    if (q->id == ev->request_id) p = q;
  if (!p || p->delivered) return;
  p->delivered = true;
  p->nto = 0; /* acknowledged: losing a session no longer matters */
  set_status(ds, p, "DELIVERED", NULL);
  if (p->persistent && p->oneway) finish(ds, p, "SUCCESSFUL", NULL, 0, NULL, 0);
}

static void on_reply(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  struct td_rule_dev_pend *p = unlink_pend(ds, ev->request_id);
  if (!p) return;
  if (p->persistent) {
    /* the reply as the stored response; not JSON: {"error": text}, as ThingsBoard */
    json_t *v = json_loadb(ev->payload ? ev->payload : "", ev->len, JSON_DECODE_ANY, NULL);
    if (!v) v = json_pack("{s:s%}", "error", ev->payload ? ev->payload : "", ev->len);
    char *resp = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    set_status(ds, p, "SUCCESSFUL", resp);
    free(resp);
  }
  complete(ds, p, 0, ev->payload, ev->len);
}

static void on_deleted(struct td_rule_dev_state *ds, struct td_rule_dev_evt *ev) {
  ring_add(ds, &ev->request_uuid);
  struct td_rule_dev_pend *p = find_uuid(ds, &ev->request_uuid);
  if (!p) return;
  unlink_p(ds, p);
  complete(ds, p, TD_ECLOSED, NULL, 0);
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
  if (!ds->ctx && ev->ctx) {
    ds->ctx = ev->ctx;
    ds->tenant_id = ev->tenant_id;
    ds->device_id = ev->device_id;
  }
  switch (ev->op) {
  case TD_DEV_OPEN: on_open(ds, ev); break;
  case TD_DEV_SYNC_OPEN: {
    if (find_sess(ds, ev->s)) break;
    struct td_dsession *s = ev->s;
    if (!add_sess(ds, ev)) break;
    on_subscribe(ds, self, find_sess(ds, s), ev->attributes, ev->rpc);
    break;
  }
  case TD_DEV_SUBSCRIBE: {
    struct td_rule_dev_sess *x = find_sess(ds, ev->s);
    if (x) on_subscribe(ds, self, x, ev->attributes, ev->rpc);
    break;
  }
  case TD_DEV_CLOSE:
    for (size_t i = 0; i < ds->n; i++)
      if (ds->v[i].s == ev->s) {
        drop_sess(ds, i, true);
        break;
      }
    break;
  case TD_DEV_RPC_DELIVERED: on_delivered(ds, ev); break;
  case TD_DEV_RPC_REPLY: on_reply(ds, ev); break;
  case TD_DEV_ATTRS:
    for (size_t i = 0; i < ds->n; i++)
      if (ds->v[i].attr) {
        (void)td_dsession_deliver_attributes(ds->v[i].s, ev->payload, ev->len);
        if (ds->v[i].s->sync) ds->v[i].attr = false; /* a sync session takes one update */
      }
    break;
  case TD_DEV_RPC_REQUEST: on_rpc_request(ds, self, ev); break;
  case TD_DEV_CLIENT_RPC_REPLY: on_client_rpc_reply(ds, ev); break;
  case TD_DEV_RPC_DELETE: on_deleted(ds, ev); break;
  case TD_DEV_RPC_LOADED: on_loaded(ds, self, ev); break;
  default: break;
  }
  td_actor_msg_free(&ev->hdr);
}

void td_rule_dev_deinit(struct td_rule_dev_state *ds) {
  /* Stopping (idle, or the server shuts down): persistent RPCs keep their
   * stored status and are read again by the next actor of the device. */
  while (ds->n) drop_sess(ds, ds->n - 1, false);
  free(ds->v);
  ds->v = NULL;
  ds->cap = 0;
  while (ds->pend) {
    struct td_rule_dev_pend *p = ds->pend;
    ds->pend = p->next;
    ds->npend--;
    p->persistent = false; /* not finished: keep it out of the ring, nothing written */
    complete(ds, p, TD_ECLOSED, NULL, 0);
  }
}
