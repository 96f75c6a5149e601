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
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <stdio.h>
#include <jansson.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/time.h"
#include "core/auth.h"
#include "core/subs.h"
#include "transport/tls/tls.h"
#include "queue/queue.h"
#include "store/store.h"
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

/* check_type: a device found under another credentials type does not count. */
static void check_type(struct td_auth_req *r) {
  if (r->status == 0 && r->require_type && strcmp(r->device->info.credentials_type, r->require_type) != 0) {
    td_device_ref_put(r->device);
    r->device = NULL;
    r->status = TD_EAUTH;
  }
}

/* finish: run done on r->loop, right now if we are on it. */
static void finish(struct td_auth_req *r) {
  check_type(r);
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
  /* Trim the unused tail of credentials_value (1 KiB, empty for access
   * tokens): one ref per device stays in the cache, so this is ~1 KB per
   * connected device (bench/mqtt_run.sh idle test). credentials_value is the
   * last member and the ref is never copied by value, only read through. */
  size_t keep = offsetof(struct td_device_ref, info.credentials_value) + strlen(d->info.credentials_value) + 1;
  struct td_device_ref *small = realloc(d, keep < sizeof *d ? keep : sizeof *d);
  if (small) d = small;
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
  check_type(r);
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

/* ---- payloads -> TbMsgs (shared by the device transports) ---- */

struct td_payload_opts td_transport_payload_opts(const struct td_ctx *ctx) {
  struct td_payload_opts o = {.type_cast = true, .max_string_len = 0, .max_depth = 32};
  if (ctx && ctx->cfg) {
    o.type_cast = ctx->cfg->json_type_cast_enabled;
    o.max_string_len = ctx->cfg->json_max_string_value_length;
  }
  return o;
}

int td_transport_telemetry_msgs(const struct td_device_ref *d, const struct td_payload_opts *o, const char *p,
                                size_t len, int64_t now_ms, struct td_arena *a, struct td_msg ***msgs, size_t *nout,
                                char *err, size_t errlen) {
  struct td_ts_group *g;
  size_t ng;
  *msgs = NULL;
  *nout = 0;
  int rc = td_payload_telemetry(p, len, o, a, &g, &ng, err, errlen);
  if (rc) return rc == TD_ENOMEM ? TD_ENOMEM : TD_EPROTO;
  struct td_msg **m = ng ? td_arena_alloc(a, ng * sizeof *m) : NULL;
  if (ng && !m) return TD_ENOMEM;
  size_t n = 0;
  struct td_buf b;
  td_buf_init(&b, 0);
  for (size_t i = 0; i < ng; i++) {
    if (g[i].n == 0) continue;
    char tsb[32];
    snprintf(tsb, sizeof tsb, "%" PRId64, g[i].has_ts ? g[i].ts : now_ms);
    struct td_msg_md md = {"ts", tsb};
    td_buf_reset(&b);
    if (td_payload_kvs_json(g[i].kvs, g[i].n, &b) ||
        !(m[n] = td_transport_device_msg(d, TD_MSG_POST_TELEMETRY, &md, 1, b.data, b.len))) {
      for (size_t k = 0; k < n; k++) td_msg_unref(m[k]);
      td_buf_deinit(&b);
      return TD_ENOMEM;
    }
    n++;
  }
  td_buf_deinit(&b);
  *msgs = m;
  *nout = n;
  return 0;
}

int td_transport_attributes_msg(const struct td_device_ref *d, const struct td_payload_opts *o, const char *p,
                                size_t len, struct td_arena *a, struct td_msg **out, char *err, size_t errlen) {
  struct td_kv *kvs;
  size_t n;
  *out = NULL;
  int rc = td_payload_attributes(p, len, o, a, &kvs, &n, err, errlen);
  if (rc) return rc == TD_ENOMEM ? TD_ENOMEM : TD_EPROTO;
  struct td_buf b;
  td_buf_init(&b, 0);
  struct td_msg_md md = {"notifyDevice", "false"};
  if (!td_payload_kvs_json(kvs, n, &b))
    *out = td_transport_device_msg(d, TD_MSG_POST_ATTRIBUTES, &md, 1, b.data, b.len);
  td_buf_deinit(&b);
  return *out ? 0 : TD_ENOMEM;
}

/* ---- attribute requests ---- */

int td_transport_split_keys(struct td_arena *a, const char *s, const char ***out, size_t *n) {
  size_t cap = 1;
  for (const char *q = s; *q; q++) cap += *q == ',';
  const char **k = td_arena_alloc(a, cap * sizeof *k);
  if (!k) return TD_ENOMEM;
  *n = 0;
  while (*s) {
    const char *e = strchr(s, ',');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    const char *b = s;
    size_t l = len;
    while (l && (*b == ' ' || *b == '\t')) {
      b++;
      l--;
    }
    while (l && (b[l - 1] == ' ' || b[l - 1] == '\t')) l--;
    if (l) {
      if (!(k[*n] = td_arena_strndup(a, b, l))) return TD_ENOMEM;
      (*n)++;
    }
    s += len;
    if (*s == ',') s++;
  }
  *out = k;
  return 0;
}

static int scope_json(struct td_buf *b, const char *name, const struct td_attr *a, size_t n, bool *first) {
  if (n == 0) return 0; /* ThingsBoard omits an empty scope */
  int rc = td_buf_printf(b, "%s\"%s\":{", *first ? "" : ",", name);
  *first = false;
  for (size_t i = 0; i < n && !rc; i++) {
    if (i) rc = td_buf_puts(b, ",");
    if (!rc) rc = td_buf_json_str(b, a[i].kv.key);
    if (!rc) rc = td_buf_puts(b, ":");
    if (!rc) rc = td_kv_append_json_value(b, &a[i].kv);
  }
  if (!rc) rc = td_buf_puts(b, "}");
  return rc;
}

int td_transport_attr_response_json(struct td_buf *b, const struct td_attr *client, size_t nclient,
                                    const struct td_attr *shared, size_t nshared) {
  bool first = true;
  int rc = td_buf_puts(b, "{");
  if (!rc) rc = scope_json(b, "client", client, nclient, &first);
  if (!rc) rc = scope_json(b, "shared", shared, nshared, &first);
  if (!rc) rc = td_buf_puts(b, "}");
  return rc;
}

/* ---- MQTT basic credentials and X.509 ---- */

int td_transport_auth_x509(struct td_transport_service *ts, struct td_auth_req *r) {
  r->require_type = "X509_CERTIFICATE";
  return td_transport_auth(ts, r);
}

enum { BASIC_PAIR = 1, BASIC_USERNAME, BASIC_CLIENT };

/* str_eq: a JSON string field of v equals s ("" when absent or null). */
static bool field_eq(json_t *v, const char *key, const char *s) {
  const char *f = json_string_value(json_object_get(v, key));
  return strcmp(f ? f : "", s) == 0;
}

/* password_ok: the stored password is empty/absent, or equal to what was sent. */
static bool password_ok(json_t *v, const struct td_basic_auth_req *r) {
  const char *f = json_string_value(json_object_get(v, "password"));
  if (!f || !*f) return true;
  if (!r->has_password) return false;
  size_t a = strlen(f), b = strlen(r->password);
  unsigned char diff = a != b;
  for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(f[i] ^ r->password[i]);
  return diff == 0;
}

static void basic_lookup(struct td_basic_auth_req *r, int step);

static void basic_finish(struct td_basic_auth_req *r, int status, struct td_device_ref *d) {
  r->status = status;
  r->device = status == 0 ? d : NULL;
  if (status != 0) td_device_ref_put(d);
  r->done(r);
}

static void basic_step_done(struct td_auth_req *a) {
  struct td_basic_auth_req *r = td_container_of(a, struct td_basic_auth_req, a);
  struct td_device_ref *d = a->device;
  a->device = NULL;
  if (a->status == TD_EAUTH) {
    if (r->step == BASIC_PAIR) basic_lookup(r, BASIC_USERNAME);
    else basic_finish(r, TD_EAUTH, NULL);
    return;
  }
  if (a->status) {
    basic_finish(r, a->status, NULL);
    return;
  }
  const char *type = d->info.credentials_type;
  if (r->step == BASIC_USERNAME && !strcmp(type, "ACCESS_TOKEN")) {
    basic_finish(r, 0, d); /* access token as user name: the password is ignored */
    return;
  }
  if (strcmp(type, "MQTT_BASIC") != 0) {
    basic_finish(r, TD_EAUTH, d);
    return;
  }
  json_t *v = json_loads(d->info.credentials_value, 0, NULL);
  int st = TD_EAUTH;
  bool ids = json_is_object(v) && field_eq(v, "clientId", r->step == BASIC_USERNAME ? "" : r->client_id) &&
             field_eq(v, "userName", r->step == BASIC_CLIENT ? "" : r->username);
  if (ids && (r->step == BASIC_CLIENT || password_ok(v, r))) st = 0;
  json_decref(v);
  /* found by clientId|userName but the ids differ (a hash collision or stale
   * data): fall back to the user name, as ThingsBoard does */
  if (st && !ids && r->step == BASIC_PAIR) {
    td_device_ref_put(d);
    basic_lookup(r, BASIC_USERNAME);
    return;
  }
  basic_finish(r, st, d);
}

static void basic_lookup(struct td_basic_auth_req *r, int step) {
  r->step = step;
  memset(&r->a, 0, sizeof r->a);
  r->a.loop = r->loop;
  r->a.done = basic_step_done;
  int rc = 0;
  if (step == BASIC_PAIR) {
    char joined[sizeof r->client_id + sizeof r->username + 1];
    int n = snprintf(joined, sizeof joined, "%s|%s", r->client_id, r->username);
    rc = td_sha3_256_hex(joined, (size_t)n, r->a.credentials_id);
  } else if (step == BASIC_CLIENT) {
    rc = td_sha3_256_hex(r->client_id, strlen(r->client_id), r->a.credentials_id);
  } else {
    snprintf(r->a.credentials_id, sizeof r->a.credentials_id, "%s", r->username);
  }
  if (rc) {
    basic_finish(r, TD_EIO, NULL);
    return;
  }
  td_transport_auth(r->ts_, &r->a);
}

int td_transport_auth_basic(struct td_transport_service *ts, struct td_basic_auth_req *r) {
  r->ts_ = ts;
  r->status = 0;
  r->device = NULL;
  r->client_id[sizeof r->client_id - 1] = r->username[sizeof r->username - 1] = '\0';
  r->password[sizeof r->password - 1] = '\0';
  if (r->has_username && r->username[0]) basic_lookup(r, r->client_id[0] ? BASIC_PAIR : BASIC_USERNAME);
  else if (r->client_id[0] && !r->has_password) basic_lookup(r, BASIC_CLIENT);
  else basic_finish(r, TD_EAUTH, NULL);
  return 0;
}

/* ---- device provisioning (reference §1.1.9) ----
 * On a storage thread: find the profile by provisionDeviceKey, check the
 * secret and the profile's provisionType, create the device with the asked
 * credentials (ALLOW_CREATE_NEW_DEVICES) or hand out an existing device's
 * (CHECK_PRE_PROVISIONED_DEVICES), and mark it with the server attribute
 * provisionState="provisioned" (a second attempt on it then fails). Not done:
 * the PROVISION_SUCCESS/FAILURE and ENTITY_CREATED TbMsgs. */

#define PROV_NOT_FOUND "{\"errorMsg\":\"Provision data was not found!\",\"status\":\"NOT_FOUND\"}"
#define PROV_FAILURE "{\"errorMsg\":\"Failed to provision device!\",\"status\":\"FAILURE\"}"

/* json_id_field: o[key] = {"entityType","id"} -> *u. 0 or TD_EINVAL. */
static int json_id_field(json_t *o, const char *key, struct td_uuid *u) {
  const char *s = json_string_value(json_object_get(json_object_get(o, key), "id"));
  return s ? td_uuid_parse(s, u) : TD_EINVAL;
}
static int ent_id(json_t *o, struct td_uuid *u) { return json_id_field(o, "id", u); }

/* prov_str: a JSON string field, NULL when absent, not a string, or empty. */
static const char *prov_str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s && *s ? s : NULL;
}

/* prov_success: the SUCCESS answer for stored credentials c. */
static json_t *prov_success(json_t *c) {
  const char *type = json_string_value(json_object_get(c, "credentialsType"));
  json_t *val;
  if (type && !strcmp(type, "ACCESS_TOKEN")) {
    val = json_incref(json_object_get(c, "credentialsId"));
  } else {
    const char *s = json_string_value(json_object_get(c, "credentialsValue"));
    val = type && !strcmp(type, "MQTT_BASIC") && s ? json_loads(s, 0, NULL) : NULL;
    if (!val) val = s ? json_string(s) : json_null();
  }
  return json_pack("{s:o, s:s, s:s}", "credentialsValue", val ? val : json_null(), "credentialsType",
                   type ? type : "ACCESS_TOKEN", "status", "SUCCESS");
}

/* prov_credentials: the credentials JSON (without deviceId) the request asks
 * for: ACCESS_TOKEN (given or random token), MQTT_BASIC (credentialsId by
 * reference §1.0.1) or X509_CERTIFICATE ("hash" = the certificate). NULL when
 * the request is unusable. */
static json_t *prov_credentials(json_t *req) {
  const char *type = prov_str(req, "credentialsType");
  if (!type) type = "ACCESS_TOKEN";
  char hex[65];
  if (!strcmp(type, "ACCESS_TOKEN")) {
    char tok[21];
    const char *t = prov_str(req, "token");
    if (!t) {
      if (td_auth_random_token(tok, sizeof tok)) return NULL;
      t = tok;
    }
    if (strlen(t) > 255 || strchr(t, ' ')) return NULL;
    return json_pack("{s:s, s:s, s:n}", "credentialsType", type, "credentialsId", t, "credentialsValue");
  }
  if (!strcmp(type, "MQTT_BASIC")) {
    const char *cl = prov_str(req, "clientId"), *un = prov_str(req, "username"), *pw = prov_str(req, "password");
    if (!un) un = prov_str(req, "userName");
    if ((!cl && !un) || (cl && !un && pw)) return NULL;
    if ((cl && strlen(cl) > 255) || (un && strlen(un) > 255)) return NULL;
    const char *id;
    if (!cl) {
      id = un;
    } else {
      char joined[520];
      int n = snprintf(joined, sizeof joined, "%s%s%s", cl, un ? "|" : "", un ? un : "");
      if (td_sha3_256_hex(joined, (size_t)n, hex)) return NULL;
      id = hex;
    }
    json_t *v = json_pack("{s:s?, s:s?, s:s?}", "clientId", cl, "userName", un, "password", pw);
    char *vs = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    json_t *c = vs ? json_pack("{s:s, s:s, s:s}", "credentialsType", type, "credentialsId", id, "credentialsValue", vs)
                   : NULL;
    free(vs);
    return c;
  }
  if (!strcmp(type, "X509_CERTIFICATE")) {
    const char *h = prov_str(req, "hash");
    if (!h || td_sha3_256_hex(h, strlen(h), hex)) return NULL;
    return json_pack("{s:s, s:s, s:s}", "credentialsType", type, "credentialsId", hex, "credentialsValue", h);
  }
  return NULL;
}

/* prov_mark: server attribute provisionState="provisioned". With tenant
 * (not inside a transaction), subscribers hear about it too. */
static int prov_mark(struct td_store *st, const struct td_uuid *tenant, const struct td_uuid *device_id) {
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = *device_id};
  struct td_kv kv = {.key = "provisionState", .type = TD_KV_STRING, .v.s = "provisioned"};
  int64_t ts = td_now_ms();
  int rc = td_store_attributes_save(st, &e, TD_SCOPE_SERVER, &kv, 1, ts);
  if (!rc && tenant) td_subs_publish_attrs(tenant, &e, TD_SCOPE_SERVER, &kv, 1, ts);
  return rc;
}

/* prov_create: ALLOW_CREATE_NEW_DEVICES. *resp set, or an I/O error. */
static int prov_create(struct td_store *st, struct td_transport_service *ts, json_t *req, json_t *prof,
                       const struct td_uuid *tenant, const char *name, json_t **resp) {
  json_t *d = NULL, *cred = NULL, *c = NULL;
  int rc = td_store_device_by_name(st, tenant, name, &d);
  json_decref(d);
  d = NULL;
  if (rc != TD_ENOTFOUND) {
    if (rc == 0) *resp = json_loads(PROV_FAILURE, 0, NULL);
    return rc == 0 ? 0 : rc;
  }
  if (!(c = prov_credentials(req))) {
    *resp = json_loads(PROV_FAILURE, 0, NULL);
    return 0;
  }
  char cid[TD_UUID_STR_LEN + 1];
  td_uuid_fmt(td_uuid_null(), cid);
  json_t *in = json_pack("{s:s, s:O, s:O, s:O, s:{s:s,s:s}, s:{s:b}}", "name", name, "type",
                         json_object_get(prof, "name"), "deviceProfileId", json_object_get(prof, "id"), "tenantId",
                         json_object_get(prof, "tenantId"), "customerId", "entityType", "CUSTOMER", "id", cid,
                         "additionalInfo", "gateway", json_is_true(json_object_get(req, "gateway")));
  if (!in) {
    json_decref(c);
    return TD_ENOMEM;
  }
  rc = td_store_begin(st);
  if (rc) goto out;
  rc = td_store_device_save(st, in, &d);
  if (rc == 0) {
    json_object_set(c, "deviceId", json_object_get(d, "id"));
    rc = td_store_device_credentials_save(st, c, &cred);
  }
  struct td_uuid did;
  if (rc == 0 && ent_id(d, &did)) rc = TD_EIO;
  if (rc == 0) rc = prov_mark(st, NULL, &did); /* a new device: nobody is subscribed yet */
  if (rc == 0) rc = td_store_commit(st);
  if (rc) {
    td_store_rollback(st);
    if (rc == TD_EEXIST) { /* the name or the credentials are taken */
      *resp = json_loads(PROV_FAILURE, 0, NULL);
      rc = 0;
    }
    goto out;
  }
  /* a negative cache entry for these credentials may exist */
  td_transport_invalidate(ts, json_string_value(json_object_get(c, "credentialsId")));
  *resp = prov_success(cred);
out:
  json_decref(in);
  json_decref(c);
  json_decref(d);
  json_decref(cred);
  return rc;
}

/* prov_existing: CHECK_PRE_PROVISIONED_DEVICES. */
static int prov_existing(struct td_store *st, json_t *req, json_t *prof, const struct td_uuid *tenant,
                         const char *name, json_t **resp) {
  json_t *d = NULL, *cred = NULL;
  struct td_uuid did, dpid, pid;
  struct td_arena a;
  td_arena_init(&a, 1 << 16);
  int rc = td_store_device_by_name(st, tenant, name, &d);
  if (rc == TD_ENOTFOUND || (rc == 0 && (ent_id(d, &did) || json_id_field(d, "deviceProfileId", &dpid) ||
                                         ent_id(prof, &pid) || !td_uuid_eq(&dpid, &pid)))) {
    *resp = json_loads(PROV_NOT_FOUND, 0, NULL);
    rc = 0;
    goto out;
  }
  if (rc == 0) rc = td_store_device_credentials_by_device(st, &did, &cred);
  if (rc) goto out;
  const char *want = prov_str(req, "credentialsType");
  const char *have = json_string_value(json_object_get(cred, "credentialsType"));
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = did};
  const char *key = "provisionState";
  struct td_attr *attrs = NULL;
  size_t n = 0;
  rc = td_store_attributes_get(st, &e, TD_SCOPE_SERVER, &key, 1, &a, &attrs, &n);
  if (rc) goto out;
  bool done = n == 1 && attrs[0].kv.type == TD_KV_STRING && !strcmp(attrs[0].kv.v.s, "provisioned");
  if (done || !have || strcmp(have, want ? want : "ACCESS_TOKEN") != 0) {
    *resp = json_loads(PROV_FAILURE, 0, NULL);
    goto out;
  }
  rc = prov_mark(st, tenant, &did);
  if (rc == 0) *resp = prov_success(cred);
out:
  td_arena_deinit(&a);
  json_decref(d);
  json_decref(cred);
  return rc;
}

int td_transport_provision_run(struct td_store *st, struct td_transport_service *ts, const char *request,
                               size_t len, char **response) {
  *response = NULL;
  json_t *req = json_loadb(request, len, 0, NULL), *prof = NULL, *resp = NULL;
  if (!json_is_object(req)) {
    json_decref(req);
    return TD_EPROTO;
  }
  int rc = 0;
  const char *key = prov_str(req, "provisionDeviceKey"), *secret = prov_str(req, "provisionDeviceSecret");
  if (key && secret) rc = td_store_device_profile_by_provision_key(st, key, &prof);
  if (rc == TD_ENOTFOUND) rc = 0;
  if (rc) goto out;
  json_t *pc = json_object_get(json_object_get(prof, "profileData"), "provisionConfiguration");
  const char *psecret = prov_str(pc, "provisionDeviceSecret");
  const char *ptype = prov_str(prof, "provisionType");
  if (!ptype) ptype = prov_str(pc, "type");
  struct td_uuid tenant;
  if (!prof || !psecret || strcmp(psecret, secret) != 0 || !ptype || json_id_field(prof, "tenantId", &tenant)) {
    resp = json_loads(PROV_NOT_FOUND, 0, NULL);
    goto out;
  }
  char rnd[21];
  const char *name = prov_str(req, "deviceName");
  if (!name) {
    if (td_auth_random_token(rnd, sizeof rnd)) {
      rc = TD_EIO;
      goto out;
    }
    name = rnd;
  }
  if (strlen(name) > 255) resp = json_loads(PROV_FAILURE, 0, NULL);
  else if (!strcmp(ptype, "ALLOW_CREATE_NEW_DEVICES")) rc = prov_create(st, ts, req, prof, &tenant, name, &resp);
  else if (!strcmp(ptype, "CHECK_PRE_PROVISIONED_DEVICES")) rc = prov_existing(st, req, prof, &tenant, name, &resp);
  else resp = json_loads(PROV_NOT_FOUND, 0, NULL); /* DISABLED; X509_CERTIFICATE_CHAIN only through TLS */
out:
  if (rc == 0 && !resp) rc = TD_ENOMEM;
  if (rc == 0 && !(*response = json_dumps(resp, JSON_COMPACT))) rc = TD_ENOMEM;
  json_decref(resp);
  json_decref(prof);
  json_decref(req);
  return rc;
}

static void prov_job_run(struct td_dbjob *j, struct td_store *st) {
  struct td_provision_req *r = td_container_of(j, struct td_provision_req, job);
  j->status = td_transport_provision_run(st, r->ts, r->request, r->request_len, &r->response);
}

static void prov_job_done(struct td_dbjob *j) {
  struct td_provision_req *r = td_container_of(j, struct td_provision_req, job);
  r->status = j->status;
  if (r->status && r->status != TD_EPROTO) {
    td_log(TD_LOG_WARN, "transport", "action=provision err=%s", td_errname(r->status));
    r->status = r->status == TD_EFULL ? TD_EFULL : TD_EIO;
  }
  r->response_len = r->response ? strlen(r->response) : 0;
  r->success = r->response && strstr(r->response, "\"status\":\"SUCCESS\"") != NULL;
  r->done(r);
}

int td_transport_provision(struct td_transport_service *ts, struct td_provision_req *r) {
  r->ts = ts;
  r->status = 0;
  r->response = NULL;
  r->response_len = 0;
  r->success = false;
  memset(&r->job, 0, sizeof r->job);
  r->job.run = prov_job_run;
  r->job.done = prov_job_done;
  r->job.reply_loop = r->loop;
  int rc = ts->ctx && ts->ctx->db ? td_dbpool_submit(ts->ctx->db, &r->job) : TD_ECLOSED;
  return rc == 0 ? 0 : rc == TD_EFULL ? TD_EFULL : TD_EIO;
}
