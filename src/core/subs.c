/* subs.c — the telemetry/attribute subscription registry (subs.h).
 *
 * Layout: NSTRIPES stripes, each a mutex plus its own chained hash table of
 * registered struct td_sub (chained through sub->next_), growing by doubling
 * under that stripe's lock. An entity hashes to one stripe and, inside it, to
 * one bucket, so every sub of an entity sits in one chain and a publish takes
 * exactly one lock. Stripes are cache-line aligned so publishers to
 * different stripes do not share lines.
 *
 * Hot path (every saved telemetry message, ~50k/s): one relaxed-acquire load
 * of the total count returns when nobody is subscribed at all; otherwise the
 * stripe's own count is read without the lock (an empty stripe costs no lock)
 * and only then the stripe is locked and its chain walked. Nothing is
 * allocated unless a subscriber filters keys and more than FILTER_STACK of
 * the published points match it (then one temporary array; if that
 * allocation fails the points go in FILTER_STACK-sized pieces instead).
 *
 * Callbacks run with the stripe lock held (subs.h): td_subs_remove takes the
 * same lock, so once it returns no callback of that sub runs any more. */
#include "core/subs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "base/err.h"
#include "store/store.h"

#define NSTRIPES 64          /* power of two */
#define INITIAL_BUCKETS 16   /* per stripe, power of two */
#define FILTER_STACK 32

struct stripe {
  pthread_mutex_t mu;
  struct td_sub **tab;       /* cap buckets; NULL until the first add */
  size_t cap;
  size_t n;                  /* __atomic: read without mu on the hot path */
} __attribute__((aligned(64)));

static struct stripe stripes[NSTRIPES];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static size_t total; /* __atomic */

static void init_stripes(void) {
  for (int i = 0; i < NSTRIPES; i++) pthread_mutex_init(&stripes[i].mu, NULL);
}

static inline uint32_t entity_hash(const struct td_entity_id *e) {
  return td_uuid_hash(&e->id) * 0x9E3779B1u ^ (uint32_t)e->type;
}

static inline struct stripe *stripe_of(uint32_t h) { return &stripes[h & (NSTRIPES - 1)]; }
static inline size_t bucket_of(uint32_t h, size_t cap) { return (h / NSTRIPES) & (cap - 1); }

static inline bool entity_eq(const struct td_entity_id *a, const struct td_entity_id *b) {
  return a->type == b->type && td_uuid_eq(&a->id, &b->id);
}

/* grow: double the stripe's table (mu held). On allocation failure the table
 * stays as it is: chains only get longer. */
static void grow(struct stripe *s) {
  size_t ncap = s->cap ? s->cap * 2 : INITIAL_BUCKETS;
  struct td_sub **nt = calloc(ncap, sizeof *nt);
  if (!nt) return;
  for (size_t i = 0; i < s->cap; i++) {
    for (struct td_sub *p = s->tab[i], *next; p; p = next) {
      next = p->next_;
      size_t b = bucket_of(entity_hash(&p->entity), ncap);
      p->next_ = nt[b];
      nt[b] = p;
    }
  }
  free(s->tab);
  s->tab = nt;
  s->cap = ncap;
}

/* td_subs_add: see subs.h. The sub's internal fields are overwritten. */
int td_subs_add(struct td_sub *sub) {
  TD_ASSERT(sub && (sub->kind == TD_SUB_TS || sub->kind == TD_SUB_ATTRS));
  TD_ASSERT(sub->kind == TD_SUB_TS ? sub->on_ts != NULL : sub->on_attrs != NULL);
  TD_ASSERT(sub->keys || sub->nkeys == 0);
  pthread_once(&once, init_stripes);
  uint32_t h = entity_hash(&sub->entity);
  struct stripe *s = stripe_of(h);
  pthread_mutex_lock(&s->mu);
  if (s->n >= s->cap) grow(s);
  if (!s->tab) {
    pthread_mutex_unlock(&s->mu);
    return TD_ENOMEM;
  }
  size_t b = bucket_of(h, s->cap);
  sub->next_ = s->tab[b];
  sub->bucket_ = s;
  s->tab[b] = sub;
  __atomic_store_n(&s->n, s->n + 1, __ATOMIC_RELEASE);
  __atomic_add_fetch(&total, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* td_subs_remove: see subs.h. Finds the sub by its entity's chain, so a sub
 * that was never added (or already removed) is simply not found. */
void td_subs_remove(struct td_sub *sub) {
  if (!sub || __atomic_load_n(&total, __ATOMIC_ACQUIRE) == 0) return;
  uint32_t h = entity_hash(&sub->entity);
  struct stripe *s = stripe_of(h);
  pthread_mutex_lock(&s->mu);
  if (s->tab) {
    for (struct td_sub **pp = &s->tab[bucket_of(h, s->cap)]; *pp; pp = &(*pp)->next_) {
      if (*pp != sub) continue;
      *pp = sub->next_;
      sub->next_ = NULL;
      sub->bucket_ = NULL;
      __atomic_store_n(&s->n, s->n - 1, __ATOMIC_RELEASE);
      __atomic_sub_fetch(&total, 1, __ATOMIC_RELEASE);
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
}

size_t td_subs_count(void) { return __atomic_load_n(&total, __ATOMIC_ACQUIRE); }

/* ---- publishing ---- */

static bool key_wanted(const struct td_sub *sub, const char *key) {
  for (size_t i = 0; i < sub->nkeys; i++)
    if (strcmp(sub->keys[i], key) == 0) return true;
  return false;
}

/* lock_entity: the locked stripe of e if it may hold subs, else NULL. */
static struct stripe *lock_entity(const struct td_entity_id *e, uint32_t *h) {
  if (__atomic_load_n(&total, __ATOMIC_ACQUIRE) == 0) return NULL;
  *h = entity_hash(e);
  struct stripe *s = stripe_of(*h);
  if (__atomic_load_n(&s->n, __ATOMIC_ACQUIRE) == 0) return NULL;
  pthread_mutex_lock(&s->mu);
  if (!s->tab) {
    pthread_mutex_unlock(&s->mu);
    return NULL;
  }
  return s;
}

static bool matches(const struct td_sub *sub, enum td_sub_kind kind, const struct td_uuid *tenant_id,
                    const struct td_entity_id *e) {
  /* the tenant check is the registry's own guard: a subscriber only ever
   * hears about its tenant's data, whatever the owner checked before */
  return sub->kind == kind && entity_eq(&sub->entity, e) && td_uuid_eq(&sub->tenant_id, tenant_id);
}

static void deliver_ts(struct td_sub *sub, const struct td_ts_point *pts, size_t n) {
  if (!sub->keys) {
    sub->on_ts(sub, pts, n);
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) m += key_wanted(sub, pts[i].kv.key);
  if (m == 0) return;
  if (m == n) {
    sub->on_ts(sub, pts, n);
    return;
  }
  struct td_ts_point stack[FILTER_STACK];
  struct td_ts_point *buf = m <= FILTER_STACK ? stack : malloc(m * sizeof *buf);
  size_t cap = buf ? m : FILTER_STACK;
  if (!buf) buf = stack;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!key_wanted(sub, pts[i].kv.key)) continue;
    buf[k++] = pts[i];
    if (k == cap) {
      sub->on_ts(sub, buf, k);
      k = 0;
    }
  }
  if (k) sub->on_ts(sub, buf, k);
  if (buf != stack) free(buf);
}

void td_subs_publish_ts(const struct td_uuid *tenant_id, const struct td_entity_id *e, const struct td_ts_point *pts,
                        size_t n) {
  uint32_t h;
  struct stripe *s;
  if (n == 0 || !(s = lock_entity(e, &h))) return;
  for (struct td_sub *p = s->tab[bucket_of(h, s->cap)]; p; p = p->next_)
    if (matches(p, TD_SUB_TS, tenant_id, e)) deliver_ts(p, pts, n);
  pthread_mutex_unlock(&s->mu);
}

/* deliver_attrs: kvs filtered by the sub's keys; deleted: kvs carry keys only. */
static void deliver_attrs(struct td_sub *sub, int scope, const struct td_kv *kvs, size_t n, int64_t ts, bool deleted) {
  if (!sub->keys) {
    sub->on_attrs(sub, scope, kvs, n, ts, deleted);
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++) m += key_wanted(sub, kvs[i].key);
  if (m == 0) return;
  if (m == n) {
    sub->on_attrs(sub, scope, kvs, n, ts, deleted);
    return;
  }
  struct td_kv stack[FILTER_STACK];
  struct td_kv *buf = m <= FILTER_STACK ? stack : malloc(m * sizeof *buf);
  size_t cap = buf ? m : FILTER_STACK;
  if (!buf) buf = stack;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!key_wanted(sub, kvs[i].key)) continue;
    buf[k++] = kvs[i];
    if (k == cap) {
      sub->on_attrs(sub, scope, buf, k, ts, deleted);
      k = 0;
    }
  }
  if (k) sub->on_attrs(sub, scope, buf, k, ts, deleted);
  if (buf != stack) free(buf);
}

static void publish_attrs(const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                          const struct td_kv *kvs, size_t n, int64_t ts, bool deleted) {
  uint32_t h;
  struct stripe *s;
  if (n == 0 || !(s = lock_entity(e, &h))) return;
  for (struct td_sub *p = s->tab[bucket_of(h, s->cap)]; p; p = p->next_)
    if (matches(p, TD_SUB_ATTRS, tenant_id, e) && (p->scope == 0 || p->scope == scope))
      deliver_attrs(p, scope, kvs, n, ts, deleted);
  pthread_mutex_unlock(&s->mu);
}

void td_subs_publish_attrs(const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                           const struct td_kv *kvs, size_t n, int64_t ts) {
  publish_attrs(tenant_id, e, scope, kvs, n, ts, false);
}

void td_subs_publish_attrs_deleted(const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                                   const char *const *keys, size_t n) {
  if (n == 0 || __atomic_load_n(&total, __ATOMIC_ACQUIRE) == 0) return;
  /* the callback wants td_kv: wrap the keys (on the stack for the usual few) */
  struct td_kv stack[FILTER_STACK];
  struct td_kv *kvs = n <= FILTER_STACK ? stack : calloc(n, sizeof *kvs);
  size_t off = 0, step = kvs ? n : FILTER_STACK;
  if (!kvs) kvs = stack;
  while (off < n) {
    size_t m = n - off < step ? n - off : step;
    for (size_t i = 0; i < m; i++) {
      memset(&kvs[i], 0, sizeof kvs[i]);
      kvs[i].key = keys[off + i];
      kvs[i].type = TD_KV_STRING;
      kvs[i].v.s = NULL;
    }
    publish_attrs(tenant_id, e, scope, kvs, m, 0, true);
    off += m;
  }
  if (kvs != stack) free(kvs);
}
