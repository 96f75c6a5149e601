/* service.c — what every device transport gets from the core (transport.h):
 * device authentication through a credentials cache backed by the store (on
 * a storage thread), TbMsgs built for a device, and uplinks made durable in
 * the queue before the transport acknowledges.
 *
 * The credentials cache is the one piece of shared state: a hash table of
 * credentialsId -> device snapshot (refcounted, immutable), bounded by
 * cache_limit entries with clock (second chance) eviction, behind one mutex.
 * It is thread-safe: any loop may authenticate, any thread may invalidate.
 * Unknown credentials are remembered for NEG_TTL_MS so that a device retrying
 * with a wrong token does not reach the store on every attempt. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/time.h"
#include "queue/queue.h"
#include "transport/transport.h"

#define NEG_TTL_MS 5000

struct centry {
  char *key;                   /* NULL: free slot */
  struct td_device_ref *dev;   /* NULL: negative entry */
  int64_t neg_until;           /* negative entries: monotonic ms */
  int32_t next;                /* bucket chain, -1 = end */
  uint32_t hash;
  bool ref;                    /* clock bit */
};

struct td_transport_service {
  struct td_ctx *ctx;
  pthread_mutex_t mu;
  size_t limit;
  struct centry *ent;          /* limit entries */
  int32_t *bucket;             /* nbuckets heads */
  size_t nbuckets;
  size_t used;                 /* slots handed out so far (< limit until full) */
  int32_t free_head;           /* freed slots, chained through next */
  size_t hand;
};

struct td_device_ref *td_device_ref_get(struct td_device_ref *d) {
  if (d) atomic_fetch_add(&d->refs, 1);
  return d;
}

void td_device_ref_put(struct td_device_ref *d) {
  if (d && atomic_fetch_sub(&d->refs, 1) == 1) free(d);
}

static uint32_t hash_key(const char *k) {
  uint32_t h = 2166136261u;
  for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
  return h;
}

int td_transport_service_new(struct td_ctx *ctx, const struct td_transport_service_config *cfg,
                             struct td_transport_service **out) {
  *out = NULL;
  struct td_transport_service *ts = calloc(1, sizeof *ts);
  if (!ts) return TD_ENOMEM;
  ts->ctx = ctx;
  ts->limit = cfg && cfg->cache_limit ? cfg->cache_limit : 100000;
  ts->nbuckets = 16;
  while (ts->nbuckets < ts->limit) ts->nbuckets *= 2;
  ts->ent = calloc(ts->limit, sizeof *ts->ent);
  ts->bucket = malloc(ts->nbuckets * sizeof *ts->bucket);
  if (!ts->ent || !ts->bucket) {
    free(ts->ent);
    free(ts->bucket);
    free(ts);
    return TD_ENOMEM;
  }
  memset(ts->bucket, -1, ts->nbuckets * sizeof *ts->bucket);
  ts->free_head = -1;
  pthread_mutex_init(&ts->mu, NULL);
  *out = ts;
  return 0;
}

static void entry_clear(struct centry *e) {
  free(e->key);
  e->key = NULL;
  td_device_ref_put(e->dev);
  e->dev = NULL;
}

void td_transport_service_free(struct td_transport_service *ts) {
  if (!ts) return;
  for (size_t i = 0; i < ts->used; i++)
    if (ts->ent[i].key) entry_clear(&ts->ent[i]);
  free(ts->ent);
  free(ts->bucket);
  pthread_mutex_destroy(&ts->mu);
  free(ts);
}

/* ---- cache internals (mu held) ---- */

static int32_t find(struct td_transport_service *ts, const char *key, uint32_t h) {
  for (int32_t i = ts->bucket[h & (ts->nbuckets - 1)]; i >= 0; i = ts->ent[i].next)
    if (ts->ent[i].hash == h && !strcmp(ts->ent[i].key, key)) return i;
  return -1;
}

static void unlink_entry(struct td_transport_service *ts, int32_t idx) {
  int32_t *pp = &ts->bucket[ts->ent[idx].hash & (ts->nbuckets - 1)];
  while (*pp != idx) pp = &ts->ent[*pp].next;
  *pp = ts->ent[idx].next;
  entry_clear(&ts->ent[idx]);
}

static void remove_entry(struct td_transport_service *ts, int32_t idx) {
  unlink_entry(ts, idx);
  ts->ent[idx].next = ts->free_head;
  ts->free_head = idx;
}

static int32_t take_slot(struct td_transport_service *ts) {
  if (ts->free_head >= 0) {
    int32_t i = ts->free_head;
    ts->free_head = ts->ent[i].next;
    return i;
  }
  if (ts->used < ts->limit) return (int32_t)ts->used++;
  /* clock: give recently used entries a second chance */
  for (;;) {
    struct centry *e = &ts->ent[ts->hand];
    int32_t i = (int32_t)ts->hand;
    ts->hand = (ts->hand + 1) % ts->limit;
    if (e->ref) {
      e->ref = false;
      continue;
    }
    unlink_entry(ts, i);
    return i;
  }
}

/* cache_put: store dev (a new reference is taken) or a negative entry (dev NULL). */
static void cache_put(struct td_transport_service *ts, const char *key, struct td_device_ref *dev) {
  char *k = strdup(key);
  if (!k) return;
  uint32_t h = hash_key(key);
  pthread_mutex_lock(&ts->mu);
  int32_t i = find(ts, key, h);
  if (i >= 0) {
    free(k);
    td_device_ref_put(ts->ent[i].dev);
  } else {
    i = take_slot(ts);
    struct centry *e = &ts->ent[i];
    e->key = k;
    e->hash = h;
    e->next = ts->bucket[h & (ts->nbuckets - 1)];
    ts->bucket[h & (ts->nbuckets - 1)] = i;
  }
  ts->ent[i].dev = td_device_ref_get(dev);
  ts->ent[i].neg_until = dev ? 0 : td_mono_ms() + NEG_TTL_MS;
  ts->ent[i].ref = true;
  pthread_mutex_unlock(&ts->mu);
}

/* cache_get: 1 = hit (*dev referenced, or NULL for a known-unknown id), 0 = miss. */
static int cache_get(struct td_transport_service *ts, const char *key, struct td_device_ref **dev) {
  uint32_t h = hash_key(key);
  int hit = 0;
  pthread_mutex_lock(&ts->mu);
  int32_t i = find(ts, key, h);
  if (i >= 0) {
    struct centry *e = &ts->ent[i];
    if (!e->dev && e->neg_until < td_mono_ms()) {
      remove_entry(ts, i);
    } else {
      e->ref = true;
      *dev = td_device_ref_get(e->dev);
      hit = 1;
    }
  }
  pthread_mutex_unlock(&ts->mu);
  return hit;
}

void td_transport_invalidate(struct td_transport_service *ts, const char *credentials_id) {
  if (!ts) return;
  pthread_mutex_lock(&ts->mu);
  if (!credentials_id) {
    for (size_t i = 0; i < ts->used; i++)
      if (ts->ent[i].key) entry_clear(&ts->ent[i]);
    memset(ts->bucket, -1, ts->nbuckets * sizeof *ts->bucket);
    ts->used = 0;
    ts->free_head = -1;
    ts->hand = 0;
  } else {
    int32_t i = find(ts, credentials_id, hash_key(credentials_id));
    if (i >= 0) remove_entry(ts, i);
  }
  pthread_mutex_unlock(&ts->mu);
}

/* ---- authentication ---- */

static void auth_finish_task(struct td_task *t) {
  struct td_auth_req *r = td_container_of(t, struct td_auth_req, job.task);
  r->done(r);
}

static bool on_loop(struct td_loop *l) {
  uv_thread_t self = uv_thread_self();
  return l->running && uv_thread_equal(&self, &l->thread);
}

/* finish: run done on r->loop, right now if we are on it. */
static void finish(struct td_auth_req *r) {
  if (on_loop(r->loop)) {
    r->done(r);
  } else {
    r->job.task.fn = auth_finish_task;
    td_loop_post(r->loop, &r->job.task);
  }
}

static void auth_run(struct td_dbjob *j, struct td_store *st) {
  struct td_auth_req *r = td_container_of(j, struct td_auth_req, job);
  struct td_device_ref *d = calloc(1, sizeof *d);
  if (!d) {
    j->status = TD_ENOMEM;
    return;
  }
  atomic_init(&d->refs, 1);
  int rc = td_store_device_auth_by_credentials(st, r->credentials_id, &d->info);
  if (rc) {
    free(d);
    j->status = rc;
    return;
  }
  j->status = 0;
  r->device = d;
}

static void auth_job_done(struct td_dbjob *j) {
  struct td_auth_req *r = td_container_of(j, struct td_auth_req, job);
  if (j->status == 0) {
    cache_put(r->ts, r->credentials_id, r->device);
    r->status = 0;
  } else if (j->status == TD_ENOTFOUND) {
    cache_put(r->ts, r->credentials_id, NULL);
    r->status = TD_EAUTH;
  } else {
    td_log(TD_LOG_WARN, "transport", "action=\"device auth\" err=%s", td_errname(j->status));
    r->status = j->status == TD_EFULL ? TD_EFULL : TD_EIO;
  }
  r->done(r);
}

int td_transport_auth(struct td_transport_service *ts, struct td_auth_req *r) {
  r->ts = ts;
  r->device = NULL;
  r->status = 0;
  r->credentials_id[sizeof r->credentials_id - 1] = '\0';
  struct td_device_ref *d = NULL;
  if (cache_get(ts, r->credentials_id, &d)) {
    r->device = d;
    r->status = d ? 0 : TD_EAUTH;
    finish(r);
    return 0;
  }
  memset(&r->job, 0, sizeof r->job);
  r->job.run = auth_run;
  r->job.done = auth_job_done;
  r->job.reply_loop = r->loop;
  int rc = ts->ctx && ts->ctx->db ? td_dbpool_submit(ts->ctx->db, &r->job) : TD_ECLOSED;
  if (rc) {
    r->status = rc == TD_EFULL ? TD_EFULL : TD_EIO;
    finish(r);
  }
  return 0;
}

/* ---- uplink ---- */

static void uplink_task(struct td_task *t) {
  struct td_uplink_req *r = td_container_of(t, struct td_uplink_req, task);
  r->done(r);
}

/* queue_done: on the queue writer thread; hand the result to the loop. */
static void queue_done(void *arg, int status) {
  struct td_uplink_req *r = arg;
  r->status = status;
  r->task.fn = uplink_task;
  td_loop_post(r->loop, &r->task);
}

int td_transport_uplink(struct td_transport_service *ts, struct td_msg *const *msgs, size_t n,
                        struct td_uplink_req *r) {
  if (!ts->ctx || !ts->ctx->queue) return TD_ECLOSED;
  r->status = 0;
  return td_queue_produce(ts->ctx->queue, msgs, n, queue_done, r);
}

struct td_msg *td_transport_device_msg(const struct td_device_ref *d, const char *type,
                                       const struct td_msg_md *extra_md, size_t n_extra, const char *data,
                                       size_t data_len) {
  struct td_msg_md md[2 + 16];
  size_t n = 0;
  md[n++] = (struct td_msg_md){"deviceName", d->info.name};
  md[n++] = (struct td_msg_md){"deviceType", d->info.type};
  for (size_t i = 0; i < n_extra && n < sizeof md / sizeof *md; i++) {
    if (!strcmp(extra_md[i].key, "deviceName") || !strcmp(extra_md[i].key, "deviceType")) continue;
    md[n++] = extra_md[i];
  }
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE, .id = d->info.device_id};
  struct td_uuid zero;
  memset(&zero, 0, sizeof zero);
  const struct td_uuid *cust = td_uuid_is_null(&d->info.customer_id) ? &zero : &d->info.customer_id;
  return td_msg_new(type, &orig, &d->info.tenant_id, cust, md, n, TD_MSG_DATA_JSON, data, data_len);
}
