/* device_state.c — the device state service (device_state.h).
 *
 * Data: NSTRIPES stripes, each a mutex, a chained hash table of struct dev
 * keyed by device id, and the list of its devices changed since the last
 * flush. A report locks one stripe. Lock order: stripe -> ds->mu (ds->mu
 * guards the event outbox, the queue of devices to load and the thread's
 * wake-up); nothing takes a stripe while holding ds->mu.
 *
 * A struct dev is created by the first report about a device (not ready),
 * its id queued for loading; the load merges what is stored (the larger of
 * each timestamp, `active` as stored, the stored inactivityTimeout unless
 * one was set meanwhile) and then plays the reports that came in between:
 * CONNECT_EVENT, ACTIVITY_EVENT (if it was inactive), DISCONNECT_EVENT.
 * Only the service thread removes entries' list links for flushing; entries
 * are freed by forget, by a load that finds no such device, and at free.
 *
 * Events are built (one allocation) under the stripe lock, at the moment of
 * the transition, and wait in a ring (the outbox) for the service thread,
 * which produces them to the queue in order, in batches. */
#include "core/device_state.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/task.h"
#include "base/thread.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/subs.h"
#include "msg/msg.h"
#include "queue/queue.h"
#include "store/store.h"
#include "store/writer.h"

#define NSTRIPES 64
#define MAX_LOADS_INFLIGHT 2   /* load batches on the storage threads at once: REST keeps its share */
#define PRODUCE_BATCH 1024
#define FLUSH_MAX 50000        /* devices per flush (bounds its memory and the writer's queue); the rest next round */
#define RETRY_MS 50            /* after back-pressure from the queue or the storage threads */

/* what changed since the last flush */
enum { D_ACTIVE = 1, D_ACTIVITY = 2, D_CONNECT = 4, D_DISCONNECT = 8, D_ALARM = 16 };
/* what was reported while the stored state was being read */
enum { P_CONNECT = 1, P_ACTIVITY = 2, P_DISCONNECT = 4 };

static const char K_ACTIVE[] = "active", K_ACTIVITY[] = "lastActivityTime", K_CONNECT[] = "lastConnectTime",
                  K_DISCONNECT[] = "lastDisconnectTime", K_ALARM[] = "inactivityAlarmTime",
                  K_TIMEOUT[] = "inactivityTimeout";

struct dev {
  struct dev *next;       /* hash chain */
  struct dev *dnext;      /* dirty list, while linked */
  struct td_uuid id, tenant_id, customer_id;
  int64_t last_connect, last_disconnect, last_activity, alarm, timeout;
  char *name, *type;      /* from the load (malloc'd); NULL when not known */
  uint32_t hash;
  uint8_t dirty;          /* D_* */
  uint8_t pend;           /* P_*, before ready */
  bool ready;             /* the stored state is merged */
  bool linked;            /* on the stripe's dirty list */
  bool active;
  bool timeout_pinned;    /* set by timeout_changed before ready: the load keeps it */
};

struct stripe {
  pthread_mutex_t mu;
  struct dev **bucket;
  size_t nbuckets, n;
  struct dev *dirty;
} __attribute__((aligned(64)));

struct td_device_state {
  struct td_ctx *ctx;
  struct td_device_state_config cfg;
  const struct td_device_state_io *io;
  void *io_arg;
  struct stripe st[NSTRIPES];
  atomic_size_t ndev;
  atomic_bool over_limit_logged;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct td_msg **ring;   /* outbox: TD_DSTATE_OUTBOX_MAX slots */
  size_t rhead, rcount;
  struct td_uuid *loadq;  /* devices to load: [lhead, lcount) */
  size_t lhead, lcount, lcap;
  int loads_inflight;
  bool wake, stopping, stopped;
  bool thread_started;
  pthread_t thread;

  /* the service thread's own (the stopping thread's after the join) */
  int64_t next_check, next_flush;
  atomic_bool backlog;    /* the last flush left devices for the next */
  unsigned flush_start;   /* stripe the next flush starts at */
  atomic_int flush_inflight;

  atomic_ullong events, events_dropped, flushes, writes, rows, write_errors, loads, ignored;
};

/* ---- the default io: dbpool, queue, writer, subscriptions ---- */

static int64_t kv_i64(const struct td_kv *kv) {
  switch (kv->type) {
  case TD_KV_LONG: return kv->v.l;
  case TD_KV_DOUBLE: return (int64_t)kv->v.d;
  case TD_KV_BOOLEAN: return kv->v.b;
  case TD_KV_STRING: return strtoll(kv->v.s, NULL, 10);
  default: return 0;
  }
}

static bool kv_bool(const struct td_kv *kv) {
  switch (kv->type) {
  case TD_KV_BOOLEAN: return kv->v.b;
  case TD_KV_LONG: return kv->v.l != 0;
  case TD_KV_STRING: return strcmp(kv->v.s, "true") == 0;
  default: return false;
  }
}

static void stored_set(struct td_dstate_stored *o, const struct td_kv *kv) {
  if (!strcmp(kv->key, K_ACTIVE)) o->active = kv_bool(kv);
  else if (!strcmp(kv->key, K_ACTIVITY)) o->last_activity = kv_i64(kv);
  else if (!strcmp(kv->key, K_CONNECT)) o->last_connect = kv_i64(kv);
  else if (!strcmp(kv->key, K_DISCONNECT)) o->last_disconnect = kv_i64(kv);
  else if (!strcmp(kv->key, K_ALARM)) o->inactivity_alarm = kv_i64(kv);
  else if (!strcmp(kv->key, K_TIMEOUT)) o->inactivity_timeout = kv_i64(kv);
}

/* Storage thread: the device (name, type, customer) and its stored state. */
static void load_run(struct td_dbjob *j, struct td_store *st) {
  struct td_dstate_load *l = td_container_of(j, struct td_dstate_load, job);
  static const char *const keys[] = {K_ACTIVE, K_ACTIVITY, K_CONNECT, K_DISCONNECT, K_ALARM, K_TIMEOUT};
  bool ts = l->ds->cfg.persist_to_telemetry;
  struct td_device_auth *a = malloc(sizeof *a);
  for (size_t i = 0; i < l->n; i++) {
    struct td_dstate_stored *o = &l->out[i];
    if (!a) {
      o->status = TD_ENOMEM;
      continue;
    }
    int rc = td_store_device_auth_by_id(st, &l->ids[i], a);
    if (rc) {
      o->status = rc;
      continue;
    }
    if (!td_uuid_is_null(&a->customer_id)) o->customer_id = a->customer_id;
    snprintf(o->name, sizeof o->name, "%s", a->name);
    snprintf(o->type, sizeof o->type, "%s", a->type);
    struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = l->ids[i]};
    struct td_arena ar;
    td_arena_init(&ar, 0);
    struct td_attr *at;
    size_t n;
    /* the timeout is a SERVER_SCOPE attribute either way; the state keys where they are persisted */
    rc = ts ? td_store_attributes_get(st, &e, TD_SCOPE_SERVER, &keys[5], 1, &ar, &at, &n)
            : td_store_attributes_get(st, &e, TD_SCOPE_SERVER, keys, 6, &ar, &at, &n);
    for (size_t k = 0; !rc && k < n; k++) stored_set(o, &at[k].kv);
    if (!rc && ts) {
      struct td_ts_point *p;
      rc = td_store_ts_latest(st, &e, keys, 5, &ar, &p, &n);
      for (size_t k = 0; !rc && k < n; k++) stored_set(o, &p[k].kv);
    }
    td_arena_deinit(&ar);
    o->status = rc == TD_ENOTFOUND ? TD_EIO : rc; /* the device exists: a failed read is "nothing stored" */
  }
  free(a);
}

/* Storage thread (reply_loop NULL). */
static void load_done(struct td_dbjob *j) { td_device_state_loaded(td_container_of(j, struct td_dstate_load, job)); }

static int io_load(void *arg, struct td_dstate_load *l) {
  struct td_device_state *ds = arg;
  memset(&l->job, 0, sizeof l->job);
  l->job.run = load_run;
  l->job.done = load_done;
  l->job.reply_loop = NULL;
  return ds->ctx && ds->ctx->db ? td_dbpool_submit(ds->ctx->db, &l->job) : TD_ECLOSED;
}

/* Queue writer thread. */
static void produced(void *arg, int status) {
  struct td_device_state *ds = arg;
  if (status < 0) {
    atomic_fetch_add(&ds->events_dropped, 1);
    td_log_limited(1, TD_LOG_WARN, "state", "action=\"sending device state events\" err=%s", td_errname(status));
  }
}

static int io_produce(void *arg, struct td_msg *const *msgs, size_t n) {
  struct td_device_state *ds = arg;
  struct td_queue *q = ds->ctx ? ds->ctx->queue : NULL;
  return q ? td_queue_produce(q, msgs, n, produced, ds) : TD_ECLOSED;
}

static int io_write(void *arg, struct td_write_req *r) {
  struct td_device_state *ds = arg;
  return ds->ctx && ds->ctx->writer ? td_writer_submit(ds->ctx->writer, r) : TD_ECLOSED;
}

static void io_publish(void *arg, const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                       const struct td_kv *kvs, size_t n, int64_t ts) {
  (void)arg;
  if (scope > 0) {
    td_subs_publish_attrs(tenant_id, e, scope, kvs, n, ts);
    return;
  }
  struct td_ts_point pts[8];
  if (n > 8) n = 8;
  for (size_t i = 0; i < n; i++) pts[i] = (struct td_ts_point){.ts = ts, .kv = kvs[i]};
  td_subs_publish_ts(tenant_id, e, pts, n);
}

static const struct td_device_state_io default_io = {1, io_load, io_produce, io_write, io_publish};

/* ---- configuration ---- */

void td_device_state_config_from(const struct td_config *cfg, struct td_device_state_config *out) {
  memset(out, 0, sizeof *out);
  out->default_timeout_ms = cfg->state_default_inactivity_timeout_s * 1000;
  out->check_interval_ms = cfg->state_check_interval_ms;
  out->persist_interval_ms = cfg->state_persist_interval_ms;
  out->persist_to_telemetry = cfg->state_persist_to_telemetry;
  out->max_devices = cfg->state_max_devices > 0 ? (size_t)cfg->state_max_devices : 0;
}

/* ---- the table (stripe lock held) ---- */

static struct stripe *stripe_of(struct td_device_state *ds, uint32_t h) { return &ds->st[h % NSTRIPES]; }

static size_t bucket_of(const struct stripe *s, uint32_t h) { return (h / NSTRIPES) & (s->nbuckets - 1); }

static struct dev *find(struct stripe *s, const struct td_uuid *id, uint32_t h) {
  for (struct dev *e = s->bucket[bucket_of(s, h)]; e; e = e->next)
    if (e->hash == h && !memcmp(e->id.b, id->b, sizeof id->b)) return e;
  return NULL;
}

static void grow(struct stripe *s) {
  size_t nb = s->nbuckets * 2;
  struct dev **b = calloc(nb, sizeof *b);
  if (!b) return; /* longer chains, still correct */
  for (size_t i = 0; i < s->nbuckets; i++) {
    for (struct dev *e = s->bucket[i], *next; e; e = next) {
      next = e->next;
      size_t k = (e->hash / NSTRIPES) & (nb - 1);
      e->next = b[k];
      b[k] = e;
    }
  }
  free(s->bucket);
  s->bucket = b;
  s->nbuckets = nb;
}

static void mark(struct stripe *s, struct dev *e, uint8_t bits) {
  e->dirty |= bits;
  if (e->ready && !e->linked) {
    e->dnext = s->dirty;
    s->dirty = e;
    e->linked = true;
  }
}

static void unlink_dev(struct td_device_state *ds, struct stripe *s, struct dev *e) {
  struct dev **pp = &s->bucket[bucket_of(s, e->hash)];
  while (*pp != e) pp = &(*pp)->next;
  *pp = e->next;
  if (e->linked)
    for (pp = &s->dirty; *pp; pp = &(*pp)->dnext)
      if (*pp == e) {
        *pp = e->dnext;
        break;
      }
  s->n--;
  atomic_fetch_sub(&ds->ndev, 1);
  free(e->name);
  free(e->type);
  free(e);
}

static void wake_locked(struct td_device_state *ds) {
  if (!ds->wake) {
    ds->wake = true;
    pthread_cond_signal(&ds->cv);
  }
}

/* queue_load: remember the device for the service thread's next load batch. */
static int queue_load(struct td_device_state *ds, const struct td_uuid *id) {
  int rc = 0;
  pthread_mutex_lock(&ds->mu);
  if (ds->lcount == ds->lcap) {
    if (ds->lhead > 0) {
      memmove(ds->loadq, ds->loadq + ds->lhead, (ds->lcount - ds->lhead) * sizeof *ds->loadq);
      ds->lcount -= ds->lhead;
      ds->lhead = 0;
    }
    if (ds->lcount == ds->lcap) {
      size_t nc = ds->lcap ? ds->lcap * 2 : 1024;
      struct td_uuid *q = realloc(ds->loadq, nc * sizeof *q);
      if (!q) rc = TD_ENOMEM;
      else {
        ds->loadq = q;
        ds->lcap = nc;
      }
    }
  }
  if (!rc) {
    ds->loadq[ds->lcount++] = *id;
    wake_locked(ds);
  }
  pthread_mutex_unlock(&ds->mu);
  return rc;
}

/* get: the device's entry, created (and queued for loading) on first sight;
 * NULL past max_devices or on ENOMEM. */
static struct dev *get(struct td_device_state *ds, struct stripe *s, const struct td_uuid *tenant_id,
                       const struct td_uuid *id, uint32_t h) {
  struct dev *e = find(s, id, h);
  if (e) return e;
  if (atomic_fetch_add(&ds->ndev, 1) >= ds->cfg.max_devices) {
    atomic_fetch_sub(&ds->ndev, 1);
    atomic_fetch_add(&ds->ignored, 1);
    if (!atomic_exchange(&ds->over_limit_logged, true))
      td_log(TD_LOG_WARN, "state",
             "action=\"tracking a new device\" max_devices=%zu err=TD_EFULL note=\"devices past the limit get no "
             "activity state (logged once)\"",
             ds->cfg.max_devices);
    return NULL;
  }
  e = calloc(1, sizeof *e);
  if (!e) {
    atomic_fetch_sub(&ds->ndev, 1);
    return NULL;
  }
  e->id = *id;
  if (tenant_id) e->tenant_id = *tenant_id;
  e->hash = h;
  e->timeout = ds->cfg.default_timeout_ms;
  if (s->n >= s->nbuckets) grow(s);
  size_t b = bucket_of(s, h);
  e->next = s->bucket[b];
  s->bucket[b] = e;
  s->n++;
  if (queue_load(ds, id)) e->ready = true; /* cannot load: start from nothing stored */
  return e;
}

/* ---- events (stripe lock held) ---- */

static void emit(struct td_device_state *ds, struct dev *e, const char *type) {
  char data[400];
  int len = snprintf(data, sizeof data,
                     "{%s\"lastConnectTime\":%" PRId64 ",\"lastActivityTime\":%" PRId64 ",\"lastDisconnectTime\":%" PRId64
                     ",\"lastInactivityAlarmTime\":%" PRId64 ",\"inactivityTimeout\":%" PRId64 "}",
                     !strcmp(type, TD_MSG_CONNECT_EVENT) ? "" : e->active ? "\"active\":true," : "\"active\":false,",
                     e->last_connect, e->last_activity, e->last_disconnect, e->alarm, e->timeout);
  struct td_msg_md md[3];
  size_t nmd = 0;
  if (e->name) md[nmd++] = (struct td_msg_md){"deviceName", e->name};
  if (e->type) md[nmd++] = (struct td_msg_md){"deviceType", e->type};
  if (!ds->cfg.persist_to_telemetry) md[nmd++] = (struct td_msg_md){"scope", "SERVER_SCOPE"};
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE, .id = e->id};
  struct td_msg *m = td_msg_new(type, &orig, &e->tenant_id, &e->customer_id, md, nmd, TD_MSG_DATA_JSON, data,
                                (size_t)len);
  bool pushed = false;
  if (m) {
    pthread_mutex_lock(&ds->mu);
    if (!ds->stopped && ds->rcount < TD_DSTATE_OUTBOX_MAX) {
      ds->ring[(ds->rhead + ds->rcount++) % TD_DSTATE_OUTBOX_MAX] = m;
      pushed = true;
      wake_locked(ds);
    }
    pthread_mutex_unlock(&ds->mu);
  }
  if (!pushed) {
    if (m) td_msg_unref(m);
    atomic_fetch_add(&ds->events_dropped, 1);
    td_log_limited(1, TD_LOG_WARN, "state", "action=\"queueing device state event\" type=%s err=%s", type,
                   m ? "TD_EFULL" : "TD_ENOMEM");
    return;
  }
  if (td_log_level_current <= TD_LOG_DEBUG) {
    char id[TD_UUID_STR_LEN + 1];
    td_log(TD_LOG_DEBUG, "state", "action=event type=%s device=%s", type, td_uuid_fmt(&e->id, id));
  }
}

/* ---- transitions (stripe lock held) ---- */

static void on_activity(struct td_device_state *ds, struct stripe *s, struct dev *e, int64_t now) {
  if (now > e->last_activity) {
    e->last_activity = now;
    mark(s, e, D_ACTIVITY);
  }
  if (!e->ready) {
    e->pend |= P_ACTIVITY;
    return;
  }
  if (!e->active) {
    e->active = true;
    mark(s, e, D_ACTIVE);
    emit(ds, e, TD_MSG_ACTIVITY_EVENT);
  }
}

static void on_connect(struct td_device_state *ds, struct stripe *s, struct dev *e, int64_t now) {
  if (now > e->last_connect) {
    e->last_connect = now;
    mark(s, e, D_CONNECT);
  }
  if (!e->ready) e->pend |= P_CONNECT;
  else emit(ds, e, TD_MSG_CONNECT_EVENT);
  on_activity(ds, s, e, now);
}

static void on_disconnect(struct td_device_state *ds, struct stripe *s, struct dev *e, int64_t now) {
  if (now > e->last_disconnect) {
    e->last_disconnect = now;
    mark(s, e, D_DISCONNECT);
  }
  if (!e->ready) e->pend |= P_DISCONNECT;
  else emit(ds, e, TD_MSG_DISCONNECT_EVENT);
}

enum report { R_CONNECT, R_DISCONNECT, R_ACTIVITY, R_TRACK };

static void report(struct td_device_state *ds, const struct td_uuid *tenant_id, const struct td_uuid *device_id,
                   int64_t now, enum report what) {
  if (!ds || !device_id) return;
  uint32_t h = td_uuid_hash(device_id);
  struct stripe *s = stripe_of(ds, h);
  pthread_mutex_lock(&s->mu);
  struct dev *e = get(ds, s, tenant_id, device_id, h);
  if (e) {
    switch (what) {
    case R_CONNECT: on_connect(ds, s, e, now); break;
    case R_DISCONNECT: on_disconnect(ds, s, e, now); break;
    case R_ACTIVITY: on_activity(ds, s, e, now); break;
    case R_TRACK: break; /* the entry (and its load) is all */
    }
  }
  pthread_mutex_unlock(&s->mu);
}

void td_device_state_connect(struct td_device_state *ds, const struct td_uuid *tenant_id,
                             const struct td_uuid *device_id, int64_t now_ms) {
  report(ds, tenant_id, device_id, now_ms, R_CONNECT);
}

void td_device_state_disconnect(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                const struct td_uuid *device_id, int64_t now_ms) {
  report(ds, tenant_id, device_id, now_ms, R_DISCONNECT);
}

void td_device_state_activity(struct td_device_state *ds, const struct td_uuid *tenant_id,
                              const struct td_uuid *device_id, int64_t now_ms) {
  report(ds, tenant_id, device_id, now_ms, R_ACTIVITY);
}

void td_device_state_track(struct td_device_state *ds, const struct td_uuid *tenant_id,
                           const struct td_uuid *device_id) {
  report(ds, tenant_id, device_id, 0, R_TRACK);
}

/* ---- after a restart: devices stored as active ---- */

struct restore_job {
  struct td_dbjob job;
  struct td_device_state *ds;
};

/* Storage thread: every device stored as active is tracked again, so that its
 * inactivity is detected although it may never report again. */
static void restore_run(struct td_dbjob *j, struct td_store *st) {
  struct restore_job *r = td_container_of(j, struct restore_job, job);
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_uuid *ids, *tenants;
  size_t n = 0;
  int rc = td_store_devices_active(st, r->ds->cfg.persist_to_telemetry, r->ds->cfg.max_devices, &a, &ids, &tenants, &n);
  if (rc) td_log(TD_LOG_WARN, "state", "action=\"reading active devices\" err=%s", td_errname(rc));
  for (size_t i = 0; !rc && i < n; i++) td_device_state_track(r->ds, &tenants[i], &ids[i]);
  if (!rc) td_log(TD_LOG_INFO, "state", "action=restore active_devices=%zu", n);
  td_arena_deinit(&a);
}

static void restore_done(struct td_dbjob *j) { free(td_container_of(j, struct restore_job, job)); }

int td_device_state_restore(struct td_device_state *ds) {
  if (!ds || !ds->ctx || !ds->ctx->db) return TD_EINVAL;
  struct restore_job *r = calloc(1, sizeof *r);
  if (!r) return TD_ENOMEM;
  r->ds = ds;
  r->job.run = restore_run;
  r->job.done = restore_done;
  int rc = td_dbpool_submit(ds->ctx->db, &r->job);
  if (rc) free(r);
  return rc;
}

void td_device_state_timeout_changed(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                     const struct td_uuid *device_id, int64_t timeout_ms) {
  if (!ds || !device_id) return;
  uint32_t h = td_uuid_hash(device_id);
  struct stripe *s = stripe_of(ds, h);
  pthread_mutex_lock(&s->mu);
  struct dev *e = find(s, device_id, h);
  if (e && (!tenant_id || td_uuid_eq(tenant_id, &e->tenant_id))) {
    e->timeout = timeout_ms > 0 ? timeout_ms : ds->cfg.default_timeout_ms;
    if (!e->ready) e->timeout_pinned = true;
  }
  pthread_mutex_unlock(&s->mu);
}

void td_device_state_attrs_saved(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                 const struct td_entity_id *e, int scope, const struct td_kv *kvs, size_t n) {
  if (!ds || !e || e->type != TD_ENTITY_DEVICE || scope != TD_SCOPE_SERVER) return;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(kvs[i].key, K_TIMEOUT)) td_device_state_timeout_changed(ds, tenant_id, &e->id, kv_i64(&kvs[i]));
}

void td_device_state_attrs_deleted(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                   const struct td_entity_id *e, int scope, const char *const *keys, size_t n) {
  if (!ds || !e || e->type != TD_ENTITY_DEVICE || scope != TD_SCOPE_SERVER) return;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(keys[i], K_TIMEOUT)) td_device_state_timeout_changed(ds, tenant_id, &e->id, 0);
}

void td_device_state_forget(struct td_device_state *ds, const struct td_uuid *device_id) {
  if (!ds || !device_id) return;
  uint32_t h = td_uuid_hash(device_id);
  struct stripe *s = stripe_of(ds, h);
  pthread_mutex_lock(&s->mu);
  struct dev *e = find(s, device_id, h);
  if (e) unlink_dev(ds, s, e);
  pthread_mutex_unlock(&s->mu);
}

/* ---- loading ---- */

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static void merge(struct td_device_state *ds, struct stripe *s, struct dev *e, const struct td_dstate_stored *o) {
  if (o->status == 0) {
    e->customer_id = o->customer_id;
    if (o->name[0]) e->name = strdup(o->name);
    if (o->type[0]) e->type = strdup(o->type);
    e->last_connect = max64(e->last_connect, o->last_connect);
    e->last_disconnect = max64(e->last_disconnect, o->last_disconnect);
    e->last_activity = max64(e->last_activity, o->last_activity);
    e->alarm = max64(e->alarm, o->inactivity_alarm);
    e->active = o->active;
    if (!e->timeout_pinned && o->inactivity_timeout > 0) e->timeout = o->inactivity_timeout;
  }
  e->ready = true;
  uint8_t pend = e->pend;
  e->pend = 0;
  if (e->dirty) mark(s, e, 0);
  /* the reports that came while loading, in their usual order */
  if (pend & P_CONNECT) emit(ds, e, TD_MSG_CONNECT_EVENT);
  if ((pend & P_ACTIVITY) && !e->active) {
    e->active = true;
    mark(s, e, D_ACTIVE);
    emit(ds, e, TD_MSG_ACTIVITY_EVENT);
  }
  if (pend & P_DISCONNECT) emit(ds, e, TD_MSG_DISCONNECT_EVENT);
}

void td_device_state_loaded(struct td_dstate_load *l) {
  struct td_device_state *ds = l->ds;
  for (size_t i = 0; i < l->n; i++) {
    uint32_t h = td_uuid_hash(&l->ids[i]);
    struct stripe *s = stripe_of(ds, h);
    pthread_mutex_lock(&s->mu);
    struct dev *e = find(s, &l->ids[i], h);
    if (e && !e->ready) {
      if (l->out[i].status == TD_ENOTFOUND) unlink_dev(ds, s, e); /* deleted meanwhile */
      else merge(ds, s, e, &l->out[i]);
    }
    pthread_mutex_unlock(&s->mu);
  }
  free(l);
  pthread_mutex_lock(&ds->mu);
  ds->loads_inflight--;
  if (ds->lcount > ds->lhead) wake_locked(ds);
  pthread_mutex_unlock(&ds->mu);
}

/* start_loads: batches of queued devices to the io (service thread). */
static void start_loads(struct td_device_state *ds) {
  for (;;) {
    pthread_mutex_lock(&ds->mu);
    size_t k = ds->lcount - ds->lhead;
    if (k == 0 || ds->loads_inflight >= MAX_LOADS_INFLIGHT || ds->stopped) {
      if (k == 0) ds->lhead = ds->lcount = 0;
      pthread_mutex_unlock(&ds->mu);
      return;
    }
    pthread_mutex_unlock(&ds->mu);
    struct td_dstate_load *l = calloc(1, sizeof *l);
    if (!l) return;
    pthread_mutex_lock(&ds->mu);
    /* only this thread takes from the queue: [lhead, lcount) still holds k or more */
    if (k > TD_DSTATE_LOAD_BATCH) k = TD_DSTATE_LOAD_BATCH;
    memcpy(l->ids, ds->loadq + ds->lhead, k * sizeof *l->ids);
    ds->lhead += k;
    ds->loads_inflight++;
    pthread_mutex_unlock(&ds->mu);
    l->ds = ds;
    l->n = k;
    atomic_fetch_add(&ds->loads, 1);
    int rc = ds->io->load ? ds->io->load(ds->io_arg, l) : TD_ECLOSED;
    if (rc == TD_EFULL) { /* the storage threads are busy: the same devices, later */
      pthread_mutex_lock(&ds->mu);
      ds->lhead -= k;
      ds->loads_inflight--;
      pthread_mutex_unlock(&ds->mu);
      free(l);
      return;
    }
    if (rc) {
      if (ds->io->load) td_log_limited(1, TD_LOG_WARN, "state", "action=\"loading device states\" err=%s", td_errname(rc));
      for (size_t i = 0; i < k; i++) l->out[i].status = TD_EIO; /* nothing stored, as far as we can tell */
      td_device_state_loaded(l);
    }
  }
}

/* ---- inactivity check (service thread) ---- */

static void check(struct td_device_state *ds, int64_t now) {
  for (int i = 0; i < NSTRIPES; i++) {
    struct stripe *s = &ds->st[i];
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < s->nbuckets; b++) {
      for (struct dev *e = s->bucket[b]; e; e = e->next) {
        if (!e->ready || !e->active || now - e->last_activity <= e->timeout) continue;
        e->active = false;
        e->alarm = now;
        mark(s, e, D_ACTIVE | D_ALARM);
        emit(ds, e, TD_MSG_INACTIVITY_EVENT);
      }
    }
    pthread_mutex_unlock(&s->mu);
  }
}

/* ---- events to the queue (service thread) ---- */

static void send_events(struct td_device_state *ds) {
  struct td_msg *batch[PRODUCE_BATCH];
  for (;;) {
    pthread_mutex_lock(&ds->mu);
    size_t k = ds->rcount < PRODUCE_BATCH ? ds->rcount : PRODUCE_BATCH;
    for (size_t i = 0; i < k; i++) batch[i] = ds->ring[(ds->rhead + i) % TD_DSTATE_OUTBOX_MAX];
    pthread_mutex_unlock(&ds->mu);
    if (k == 0) return;
    int rc = ds->io->produce ? ds->io->produce(ds->io_arg, batch, k) : TD_ECLOSED;
    if (rc == TD_EFULL) return; /* the queue's window is full: they wait in the ring */
    if (rc) {
      atomic_fetch_add(&ds->events_dropped, k);
      td_log_limited(1, TD_LOG_WARN, "state", "action=\"sending device state events\" n=%zu err=%s", k, td_errname(rc));
    } else {
      atomic_fetch_add(&ds->events, k);
    }
    pthread_mutex_lock(&ds->mu);
    ds->rhead = (ds->rhead + k) % TD_DSTATE_OUTBOX_MAX;
    ds->rcount -= k;
    pthread_mutex_unlock(&ds->mu);
    for (size_t i = 0; i < k; i++) td_msg_unref(batch[i]);
  }
}

/* ---- persistence (service thread; write completions on the writer's) ---- */

struct fitem {
  struct td_write_req req;
  struct fbatch *b;
  struct td_uuid tenant_id;
  uint8_t mask;
  struct td_kv kvs[5];
  struct td_ts_point pts[5];
};

struct fbatch {
  struct td_device_state *ds;
  atomic_size_t pending;
  size_t n;
  struct fitem items[];
};

/* redirty: a write that did not happen: the device goes out with the next flush. */
static void redirty(struct td_device_state *ds, const struct fitem *it) {
  const struct td_uuid *id = &it->req.entity.id;
  uint32_t h = td_uuid_hash(id);
  struct stripe *s = stripe_of(ds, h);
  pthread_mutex_lock(&s->mu);
  struct dev *e = find(s, id, h);
  if (e) mark(s, e, it->mask); /* its values now are the same or newer */
  pthread_mutex_unlock(&s->mu);
}

static void batch_release(struct fbatch *b, size_t k) {
  if (atomic_fetch_sub(&b->pending, k) != k) return;
  struct td_device_state *ds = b->ds;
  free(b);
  atomic_fetch_sub(&ds->flush_inflight, 1);
  pthread_mutex_lock(&ds->mu);
  if (atomic_load(&ds->backlog)) wake_locked(ds); /* more to write: go on now rather than at the next interval */
  pthread_mutex_unlock(&ds->mu);
}

static void write_done(struct td_write_req *r, int status) {
  struct fitem *it = td_container_of(r, struct fitem, req);
  struct td_device_state *ds = it->b->ds;
  if (status) {
    atomic_fetch_add(&ds->write_errors, 1);
    td_log_limited(1, TD_LOG_WARN, "state", "action=\"writing device state\" err=%s", td_errname(status));
    redirty(ds, it);
  }
  batch_release(it->b, 1);
}

static void fill(struct fitem *it, const struct dev *e, int64_t now, bool ts) {
  memset(&it->req, 0, sizeof it->req); /* the batch is malloc'd: no stale flags */
  size_t n = 0;
  struct td_kv *kv = it->kvs;
  if (e->dirty & D_ACTIVE) kv[n++] = (struct td_kv){.key = K_ACTIVE, .type = TD_KV_BOOLEAN, .v.b = e->active};
  if (e->dirty & D_ACTIVITY) kv[n++] = (struct td_kv){.key = K_ACTIVITY, .type = TD_KV_LONG, .v.l = e->last_activity};
  if (e->dirty & D_CONNECT) kv[n++] = (struct td_kv){.key = K_CONNECT, .type = TD_KV_LONG, .v.l = e->last_connect};
  if (e->dirty & D_DISCONNECT)
    kv[n++] = (struct td_kv){.key = K_DISCONNECT, .type = TD_KV_LONG, .v.l = e->last_disconnect};
  if (e->dirty & D_ALARM) kv[n++] = (struct td_kv){.key = K_ALARM, .type = TD_KV_LONG, .v.l = e->alarm};
  for (size_t i = 0; i < n; i++) it->pts[i] = (struct td_ts_point){.ts = now, .kv = kv[i]};
  it->mask = e->dirty;
  it->tenant_id = e->tenant_id;
  it->req.kind = ts ? TD_WRITE_TS : TD_WRITE_ATTRS;
  it->req.entity = (struct td_entity_id){.type = TD_ENTITY_DEVICE, .id = e->id};
  it->req.scope = ts ? 0 : TD_SCOPE_SERVER;
  it->req.ts = now;
  it->req.ttl_s = 0;
  it->req.n = n; /* req.kvs / req.points are set at submit time: the batch may still move (realloc) */
  it->req.done = write_done;
}

/* flush: one write per changed device (at most FLUSH_MAX); true if some
 * changed devices were left for the next round. */
static bool flush(struct td_device_state *ds, int64_t now) {
  size_t cap = 1024, n = 0;
  struct fbatch *b = malloc(sizeof *b + cap * sizeof b->items[0]);
  if (!b) return true;
  bool ts = ds->cfg.persist_to_telemetry, left = false;
  unsigned first = ds->flush_start;
  for (unsigned k = 0; k < NSTRIPES && !left; k++) {
    struct stripe *s = &ds->st[(first + k) % NSTRIPES];
    pthread_mutex_lock(&s->mu);
    while (s->dirty) {
      if (n == cap) {
        size_t nc = cap * 2 > FLUSH_MAX ? FLUSH_MAX : cap * 2;
        struct fbatch *nb = nc > cap ? realloc(b, sizeof *b + nc * sizeof b->items[0]) : NULL;
        if (!nb) {
          left = true;
          ds->flush_start = (first + k) % NSTRIPES; /* start here next time */
          break;
        }
        b = nb;
        cap = nc;
      }
      struct dev *e = s->dirty;
      s->dirty = e->dnext;
      e->linked = false;
      fill(&b->items[n++], e, now, ts);
      e->dirty = 0;
    }
    pthread_mutex_unlock(&s->mu);
  }
  if (!left) ds->flush_start = (first + 1) % NSTRIPES;
  if (n == 0) {
    free(b);
    return left;
  }
  b->ds = ds;
  b->n = n;
  atomic_init(&b->pending, n + 1); /* + 1: ours, until every item is submitted */
  atomic_fetch_add(&ds->flush_inflight, 1);
  size_t rows = 0, submitted = 0, unsent = 0;
  bool full = false;
  for (size_t i = 0; i < n; i++) {
    struct fitem *it = &b->items[i];
    it->b = b;
    it->req.kvs = ts ? NULL : it->kvs;
    it->req.points = ts ? it->pts : NULL;
    rows += it->req.n;
    int rc = full ? TD_EFULL : ds->io->write ? ds->io->write(ds->io_arg, &it->req) : TD_ECLOSED;
    if (rc) {
      if (rc == TD_EFULL) full = true;
      else td_log_limited(1, TD_LOG_WARN, "state", "action=\"writing device state\" err=%s", td_errname(rc));
      redirty(ds, it);
      unsent++;
      continue;
    }
    submitted++;
    if (ds->io->publish)
      ds->io->publish(ds->io_arg, &it->tenant_id, &it->req.entity, ts ? 0 : TD_SCOPE_SERVER, it->kvs, it->req.n, now);
  }
  atomic_fetch_add(&ds->flushes, 1);
  atomic_fetch_add(&ds->writes, submitted);
  atomic_fetch_add(&ds->rows, rows);
  td_log(TD_LOG_DEBUG, "state", "action=flush devices=%zu rows=%zu unsent=%zu writes_total=%llu", submitted, rows,
         unsent, (unsigned long long)atomic_load(&ds->writes));
  batch_release(b, unsent + 1);
  return left || full;
}

/* ---- the service thread ---- */

void td_device_state_run(struct td_device_state *ds, int64_t now, bool force_flush) {
  start_loads(ds);
  if (now >= ds->next_check) {
    check(ds, now);
    ds->next_check = now + ds->cfg.check_interval_ms;
  }
  send_events(ds);
  if ((force_flush || atomic_load(&ds->backlog) || now >= ds->next_flush) && atomic_load(&ds->flush_inflight) == 0) {
    atomic_store(&ds->backlog, flush(ds, now));
    ds->next_flush = now + ds->cfg.persist_interval_ms;
  }
}

static void *thread_main(void *arg) {
  struct td_device_state *ds = arg;
  td_thread_name("td-state", -1);
  pthread_mutex_lock(&ds->mu);
  while (!ds->stopping) {
    ds->wake = false;
    pthread_mutex_unlock(&ds->mu);
    int64_t now = td_now_ms();
    td_device_state_run(ds, now, false);
    int64_t next = ds->next_check < ds->next_flush ? ds->next_check : ds->next_flush;
    int64_t sleep = next - now;
    pthread_mutex_lock(&ds->mu);
    /* back-pressure leftovers are retried soon; a wall clock that jumps never stalls us for long */
    if ((ds->rcount || (ds->lcount > ds->lhead && ds->loads_inflight < MAX_LOADS_INFLIGHT)) && sleep > RETRY_MS)
      sleep = RETRY_MS;
    int64_t maxs = ds->cfg.check_interval_ms < ds->cfg.persist_interval_ms ? ds->cfg.check_interval_ms
                                                                           : ds->cfg.persist_interval_ms;
    if (sleep > maxs) sleep = maxs;
    if (sleep < 1) sleep = 1;
    if (!ds->wake && !ds->stopping) {
      struct timespec ts = td_mono_deadline_us((int64_t)sleep * 1000);
      pthread_cond_timedwait(&ds->cv, &ds->mu, &ts);
    }
  }
  pthread_mutex_unlock(&ds->mu);
  return NULL;
}

/* ---- life cycle ---- */

int td_device_state_new(struct td_ctx *ctx, const struct td_device_state_config *cfg, struct td_device_state **out) {
  *out = NULL;
  if (!cfg) return TD_EINVAL;
  struct td_device_state *ds = calloc(1, sizeof *ds);
  if (!ds) return TD_ENOMEM;
  ds->ctx = ctx;
  ds->cfg = *cfg;
  if (ds->cfg.default_timeout_ms <= 0) ds->cfg.default_timeout_ms = 600000;
  if (ds->cfg.check_interval_ms <= 0) ds->cfg.check_interval_ms = 1000;
  if (ds->cfg.persist_interval_ms <= 0) ds->cfg.persist_interval_ms = 1000;
  if (ds->cfg.max_devices == 0) ds->cfg.max_devices = 1000000;
  ds->io = cfg->io ? cfg->io : &default_io;
  ds->io_arg = cfg->io ? cfg->io_arg : ds;
  ds->ring = calloc(TD_DSTATE_OUTBOX_MAX, sizeof *ds->ring);
  if (!ds->ring) {
    free(ds);
    return TD_ENOMEM;
  }
  for (int i = 0; i < NSTRIPES; i++) {
    struct stripe *s = &ds->st[i];
    s->nbuckets = 64;
    s->bucket = calloc(s->nbuckets, sizeof *s->bucket);
    pthread_mutex_init(&s->mu, NULL);
    if (!s->bucket) {
      for (int k = 0; k <= i; k++) {
        free(ds->st[k].bucket);
        pthread_mutex_destroy(&ds->st[k].mu);
      }
      free(ds->ring);
      free(ds);
      return TD_ENOMEM;
    }
  }
  pthread_mutex_init(&ds->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ds->cv, &ca);
  pthread_condattr_destroy(&ca);
  ds->next_check = ds->next_flush = 0; /* the first round checks and flushes */
  if (!cfg->manual) {
    if (pthread_create(&ds->thread, NULL, thread_main, ds)) {
      td_device_state_free(ds);
      return TD_ENOMEM;
    }
    ds->thread_started = true;
  }
  td_log(TD_LOG_DEBUG, "state",
         "action=started default_timeout_ms=%" PRId64 " check_interval_ms=%" PRId64 " persist_interval_ms=%" PRId64
         " persist_to_telemetry=%d max_devices=%zu",
         ds->cfg.default_timeout_ms, ds->cfg.check_interval_ms, ds->cfg.persist_interval_ms,
         ds->cfg.persist_to_telemetry, ds->cfg.max_devices);
  *out = ds;
  return 0;
}

void td_device_state_stop(struct td_device_state *ds) {
  if (!ds) return;
  pthread_mutex_lock(&ds->mu);
  if (ds->stopped || ds->stopping) {
    pthread_mutex_unlock(&ds->mu);
    return;
  }
  ds->stopping = true;
  pthread_cond_signal(&ds->cv);
  pthread_mutex_unlock(&ds->mu);
  if (ds->thread_started) pthread_join(ds->thread, NULL);
  ds->thread_started = false;
  /* what is known goes out once more: events, then every changed device
   * (a few rounds at most, in case the writer pushes back) */
  send_events(ds);
  for (int round = 0; round < 8 && flush(ds, td_now_ms()); round++) {
  }
  pthread_mutex_lock(&ds->mu);
  ds->stopped = true;
  pthread_mutex_unlock(&ds->mu);
  td_log(TD_LOG_INFO, "state",
         "action=stopped devices=%zu events=%llu events_dropped=%llu flushes=%llu writes=%llu rows=%llu",
         atomic_load(&ds->ndev), (unsigned long long)atomic_load(&ds->events),
         (unsigned long long)atomic_load(&ds->events_dropped), (unsigned long long)atomic_load(&ds->flushes),
         (unsigned long long)atomic_load(&ds->writes), (unsigned long long)atomic_load(&ds->rows));
}

void td_device_state_free(struct td_device_state *ds) {
  if (!ds) return;
  td_device_state_stop(ds);
  for (int i = 0; i < NSTRIPES; i++) {
    struct stripe *s = &ds->st[i];
    for (size_t b = 0; b < s->nbuckets; b++) {
      for (struct dev *e = s->bucket[b], *next; e; e = next) {
        next = e->next;
        free(e->name);
        free(e->type);
        free(e);
      }
    }
    free(s->bucket);
    pthread_mutex_destroy(&s->mu);
  }
  for (size_t i = 0; i < ds->rcount; i++) td_msg_unref(ds->ring[(ds->rhead + i) % TD_DSTATE_OUTBOX_MAX]);
  free(ds->ring);
  free(ds->loadq);
  pthread_cond_destroy(&ds->cv);
  pthread_mutex_destroy(&ds->mu);
  free(ds);
}

/* ---- inspection ---- */

bool td_device_state_get(struct td_device_state *ds, const struct td_uuid *device_id, struct td_dstate_view *out) {
  memset(out, 0, sizeof *out);
  if (!ds) return false;
  uint32_t h = td_uuid_hash(device_id);
  struct stripe *s = stripe_of(ds, h);
  pthread_mutex_lock(&s->mu);
  struct dev *e = find(s, device_id, h);
  if (e) {
    *out = (struct td_dstate_view){.known = true, .ready = e->ready, .active = e->active,
                                   .last_connect = e->last_connect, .last_disconnect = e->last_disconnect,
                                   .last_activity = e->last_activity, .inactivity_alarm = e->alarm,
                                   .inactivity_timeout = e->timeout};
  }
  pthread_mutex_unlock(&s->mu);
  return e != NULL;
}

void td_device_state_stats(struct td_device_state *ds, struct td_device_state_stats *out) {
  memset(out, 0, sizeof *out);
  if (!ds) return;
  out->devices = atomic_load(&ds->ndev);
  pthread_mutex_lock(&ds->mu);
  out->outbox = ds->rcount;
  pthread_mutex_unlock(&ds->mu);
  out->events = atomic_load(&ds->events);
  out->events_dropped = atomic_load(&ds->events_dropped);
  out->flushes = atomic_load(&ds->flushes);
  out->writes = atomic_load(&ds->writes);
  out->rows = atomic_load(&ds->rows);
  out->write_errors = atomic_load(&ds->write_errors);
  out->loads = atomic_load(&ds->loads);
  out->ignored = atomic_load(&ds->ignored);
}
