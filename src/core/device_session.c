/* device_session.c — the session object the transports and the Device actor
 * share (device_session.h): reference counting and downlink delivery, the
 * registry of server-side RPC waiters, and the claim table.
 *
 * Downlink: every deliver_* copies its data into one heap task posted to the
 * session's loop; the task calls the ops callback only if the session still
 * has an owner there, then frees itself and drops the session reference it
 * held. The number of such tasks is bounded by what the device actor sends:
 * one per event per subscribed session.
 *
 * RPC waiters and claims are process-wide tables under a mutex, both bounded
 * (TD_RPC_WAITERS_MAX, TD_CLAIMS_MAX). td_core_rpc_emit turns a persistent
 * RPC's status change into a TbMsg for the queue. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/device_session.h"
#include "msg/msg.h"
#include "queue/queue.h"

/* ---------------------------------------------------------------- sessions */

struct td_dsession *td_dsession_new(struct td_loop *loop, const struct td_dsession_ops *ops, void *owner,
                                    const struct td_uuid *device_id, const struct td_uuid *tenant_id) {
  struct td_dsession *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  atomic_init(&s->refs, 1);
  td_uuid_new(&s->session_id);
  s->device_id = *device_id;
  s->tenant_id = *tenant_id;
  s->loop = loop;
  s->ops = ops;
  s->owner = owner;
  s->connected_ms = td_now_ms();
  return s;
}

struct td_dsession *td_dsession_ref(struct td_dsession *s) {
  atomic_fetch_add(&s->refs, 1);
  return s;
}

void td_dsession_unref(struct td_dsession *s) {
  if (s && atomic_fetch_sub(&s->refs, 1) == 1) free(s);
}

enum dkind { D_ATTRS = 1, D_RPC, D_RPC_RESP, D_CLOSE };

struct dtask {
  struct td_task task;
  struct td_dsession *s; /* a reference */
  enum dkind kind;
  int32_t request_id;
  int reason;
  int64_t expiration_ms;
  bool oneway;
  size_t len;            /* payload / params length */
  char *method;          /* into data */
  char *payload;         /* into data (payload or params), NUL-terminated */
  char data[];
};

/* Loop thread. */
static void dtask_run(struct td_task *t) {
  struct dtask *d = td_container_of(t, struct dtask, task);
  struct td_dsession *s = d->s;
  if (s->owner && s->ops) {
    switch (d->kind) {
    case D_ATTRS:
      if (s->ops->on_attributes) s->ops->on_attributes(s->owner, s, d->payload, d->len);
      break;
    case D_RPC:
      if (s->ops->on_rpc_request)
        s->ops->on_rpc_request(s->owner, s, d->request_id, d->method, d->payload, d->expiration_ms, d->oneway);
      break;
    case D_RPC_RESP:
      if (s->ops->on_rpc_response) s->ops->on_rpc_response(s->owner, s, d->request_id, d->payload, d->len);
      break;
    case D_CLOSE:
      if (s->ops->on_close) s->ops->on_close(s->owner, s, d->reason);
      break;
    }
  }
  free(d);
  td_dsession_unref(s);
}

/* dtask_new: one block holding the method (may be NULL) and the payload. */
static struct dtask *dtask_new(struct td_dsession *s, enum dkind kind, const char *method, const char *payload,
                               size_t len) {
  size_t ml = method ? strlen(method) + 1 : 0;
  struct dtask *d = malloc(sizeof *d + ml + len + 1);
  if (!d) return NULL;
  memset(d, 0, sizeof *d);
  d->kind = kind;
  d->task.fn = dtask_run;
  d->method = NULL;
  if (method) {
    d->method = d->data;
    memcpy(d->method, method, ml);
  }
  d->payload = d->data + ml;
  if (len) memcpy(d->payload, payload, len);
  d->payload[len] = '\0';
  d->len = len;
  d->s = td_dsession_ref(s);
  return d;
}

int td_dsession_deliver_attributes(struct td_dsession *s, const char *payload, size_t len) {
  struct dtask *d = dtask_new(s, D_ATTRS, NULL, payload, len);
  if (!d) return TD_ENOMEM;
  td_loop_post(s->loop, &d->task);
  return 0;
}

int td_dsession_deliver_rpc(struct td_dsession *s, int32_t request_id, const char *method, const char *params,
                            int64_t expiration_ms, bool oneway) {
  if (!params) params = "";
  struct dtask *d = dtask_new(s, D_RPC, method ? method : "", params, strlen(params));
  if (!d) return TD_ENOMEM;
  d->request_id = request_id;
  d->expiration_ms = expiration_ms;
  d->oneway = oneway;
  td_loop_post(s->loop, &d->task);
  return 0;
}

int td_dsession_deliver_rpc_response(struct td_dsession *s, int32_t request_id, const char *payload, size_t len) {
  struct dtask *d = dtask_new(s, D_RPC_RESP, NULL, payload, len);
  if (!d) return TD_ENOMEM;
  d->request_id = request_id;
  td_loop_post(s->loop, &d->task);
  return 0;
}

int td_dsession_deliver_close(struct td_dsession *s, int reason) {
  struct dtask *d = dtask_new(s, D_CLOSE, NULL, NULL, 0);
  if (!d) return TD_ENOMEM;
  d->reason = reason;
  td_loop_post(s->loop, &d->task);
  return 0;
}

/* ---------------------------------------------------------------- persistent RPC events */

static void emit_done(void *arg, int status) {
  (void)arg;
  if (status) td_log_limited(10, TD_LOG_WARN, "core", "action=\"queueing RPC status event\" err=%s", td_errname(status));
}

static int rpc_entity_id(json_t *rpc, const char *field, struct td_uuid *u) {
  const char *s = json_string_value(json_object_get(json_object_get(rpc, field), "id"));
  return s ? td_uuid_parse(s, u) : TD_EINVAL;
}

void td_core_rpc_emit(struct td_ctx *ctx, json_t *rpc, const char *status) {
  struct td_queue *q = ctx ? ctx->queue : NULL;
  struct td_uuid dev, ten;
  if (!q || !rpc || rpc_entity_id(rpc, "deviceId", &dev) || rpc_entity_id(rpc, "tenantId", &ten)) return;
  json_t *copy = json_copy(rpc);
  if (copy) {
    json_object_set_new(copy, "status", json_string(status));
    json_object_del(copy, "statusSeq");
  }
  char *data = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
  json_decref(copy);
  char type[32];
  snprintf(type, sizeof type, "RPC_%s", status);
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE, .id = dev};
  struct td_msg *m = data ? td_msg_new(type, &orig, &ten, NULL, NULL, 0, TD_MSG_DATA_JSON, data, strlen(data)) : NULL;
  free(data);
  int rc = m ? td_queue_produce(q, &m, 1, emit_done, NULL) : TD_ENOMEM;
  if (rc) td_log_limited(10, TD_LOG_WARN, "core", "action=\"queueing RPC status event\" err=%s", td_errname(rc));
  if (m) td_msg_unref(m);
}

/* ---------------------------------------------------------------- RPC waiters */

#define WBUCKETS 1024

static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static struct td_rpc_waiter *wtab[WBUCKETS];
static size_t wcount;

static size_t wbucket(const struct td_uuid *u) { return td_hash32(u->b, sizeof u->b) % WBUCKETS; }

int td_rpc_waiter_add(struct td_rpc_waiter *w) {
  int rc = 0;
  size_t b = wbucket(&w->request_uuid);
  pthread_mutex_lock(&wmu);
  if (wcount >= TD_RPC_WAITERS_MAX) rc = TD_EFULL;
  for (struct td_rpc_waiter *x = wtab[b]; x && !rc; x = x->next)
    if (td_uuid_eq(&x->request_uuid, &w->request_uuid)) rc = TD_EEXIST;
  if (!rc) {
    w->next = wtab[b];
    wtab[b] = w;
    wcount++;
  }
  pthread_mutex_unlock(&wmu);
  return rc;
}

/* unlink: under wmu. */
static bool unlink_waiter(struct td_rpc_waiter *w) {
  for (struct td_rpc_waiter **p = &wtab[wbucket(&w->request_uuid)]; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      wcount--;
      return true;
    }
  return false;
}

bool td_rpc_waiter_cancel(struct td_rpc_waiter *w) {
  pthread_mutex_lock(&wmu);
  bool r = unlink_waiter(w);
  pthread_mutex_unlock(&wmu);
  return r;
}

static void waiter_run(struct td_task *t) {
  struct td_rpc_waiter *w = td_container_of(t, struct td_rpc_waiter, task);
  w->on_done(w);
}

void td_core_rpc_complete(const struct td_uuid *request_uuid, int error, const char *payload, size_t len) {
  char *copy = NULL;
  if (payload) {
    copy = malloc(len + 1);
    if (copy) {
      memcpy(copy, payload, len);
      copy[len] = '\0';
    } else {
      error = TD_ENOMEM;
    }
  }
  struct td_rpc_waiter *w = NULL;
  pthread_mutex_lock(&wmu);
  for (struct td_rpc_waiter *x = wtab[wbucket(request_uuid)]; x && !w; x = x->next)
    if (td_uuid_eq(&x->request_uuid, request_uuid)) w = x;
  if (w) unlink_waiter(w);
  pthread_mutex_unlock(&wmu);
  if (!w) {
    free(copy);
    return;
  }
  w->error = error;
  w->payload = copy;
  w->len = copy ? len : 0;
  w->task.fn = waiter_run;
  td_loop_post(w->loop, &w->task);
}

size_t td_rpc_waiter_count(void) {
  pthread_mutex_lock(&wmu);
  size_t n = wcount;
  pthread_mutex_unlock(&wmu);
  return n;
}

/* ---------------------------------------------------------------- claims */

#define CBUCKETS 4096

struct claim {
  struct claim *next;
  struct td_uuid device_id;
  int64_t expires_ms;
  char *secret;
};

static pthread_mutex_t cmu = PTHREAD_MUTEX_INITIALIZER;
static struct claim *ctab[CBUCKETS];
static size_t ccount;

static size_t cbucket(const struct td_uuid *u) { return td_hash32(u->b, sizeof u->b) % CBUCKETS; }

static void claim_free(struct claim *c) {
  free(c->secret);
  free(c);
}

/* purge_expired: under cmu. */
static void purge_expired(int64_t now) {
  for (size_t b = 0; b < CBUCKETS; b++)
    for (struct claim **p = &ctab[b]; *p;) {
      struct claim *c = *p;
      if (c->expires_ms < now) {
        *p = c->next;
        claim_free(c);
        ccount--;
      } else {
        p = &c->next;
      }
    }
}

int td_core_claim_device(struct td_ctx *ctx, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                         const char *secret_key, int64_t duration_ms) {
  (void)ctx;
  (void)tenant_id;
  int64_t now = td_now_ms();
  struct claim *n = calloc(1, sizeof *n);
  if (!n || !(n->secret = strdup(secret_key ? secret_key : ""))) {
    free(n);
    return TD_ENOMEM;
  }
  n->device_id = *device_id;
  n->expires_ms = now + (duration_ms > 0 ? duration_ms : TD_CLAIM_DEFAULT_DURATION_MS);
  int rc = 0;
  pthread_mutex_lock(&cmu);
  struct claim **p = &ctab[cbucket(device_id)];
  for (; *p; p = &(*p)->next)
    if (td_uuid_eq(&(*p)->device_id, device_id)) break;
  if (*p && (*p)->expires_ms >= now) {
    claim_free(n); /* ThingsBoard: putIfAbsent */
  } else if (*p) {
    n->next = (*p)->next;
    claim_free(*p);
    *p = n;
  } else {
    if (ccount >= TD_CLAIMS_MAX) purge_expired(now);
    if (ccount >= TD_CLAIMS_MAX) {
      rc = TD_EFULL;
      claim_free(n);
    } else {
      n->next = ctab[cbucket(device_id)];
      ctab[cbucket(device_id)] = n;
      ccount++;
    }
  }
  pthread_mutex_unlock(&cmu);
  return rc;
}

int td_core_claim(struct td_ctx *ctx, struct td_dsession *s, const char *secret_key, int64_t duration_ms) {
  return td_core_claim_device(ctx, &s->tenant_id, &s->device_id, secret_key, duration_ms);
}

/* take: unlink the device's claim (under cmu). */
static struct claim *take(const struct td_uuid *device_id) {
  for (struct claim **p = &ctab[cbucket(device_id)]; *p; p = &(*p)->next)
    if (td_uuid_eq(&(*p)->device_id, device_id)) {
      struct claim *c = *p;
      *p = c->next;
      ccount--;
      return c;
    }
  return NULL;
}

enum td_claim_result td_core_claim_take(const struct td_uuid *device_id, const char *secret_key, int64_t now_ms) {
  pthread_mutex_lock(&cmu);
  struct claim *c = take(device_id);
  pthread_mutex_unlock(&cmu);
  if (!c) return TD_CLAIM_NONE;
  /* ThingsBoard's secretKeyIsEmptyOrEqual: both empty, or equal. */
  const char *k = secret_key ? secret_key : "";
  bool ok = now_ms <= c->expires_ms && strcmp(k, c->secret) == 0;
  claim_free(c);
  return ok ? TD_CLAIM_OK : TD_CLAIM_BAD;
}

void td_core_claim_drop(const struct td_uuid *device_id) {
  pthread_mutex_lock(&cmu);
  struct claim *c = take(device_id);
  pthread_mutex_unlock(&cmu);
  if (c) claim_free(c);
}
