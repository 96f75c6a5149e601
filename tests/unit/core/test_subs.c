/* test_subs.c — the subscription registry (src/core/subs.h): add, remove,
 * publish; key, scope, kind and tenant filtering; many subs (table growth);
 * and publishers on several threads while the main thread adds and removes
 * (and frees) subs: after td_subs_remove returns no callback may touch the
 * sub (ASan would report the write into freed memory; the counters check
 * the rest). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "core/subs.h"
#include "store/store.h"

/* What one callback saw, for the single-threaded tests. */
struct rec {
  int calls;
  size_t n;                 /* points or kvs in the last call */
  size_t total;             /* over all calls */
  char keys[64][16];        /* keys of the last call (first 64) */
  int scope;
  int64_t ts;
  bool deleted;
};

static void on_ts(struct td_sub *sub, const struct td_ts_point *pts, size_t n) {
  struct rec *r = sub->user;
  r->calls++;
  r->n = n;
  r->total += n;
  for (size_t i = 0; i < n && i < 64; i++) snprintf(r->keys[i], sizeof r->keys[i], "%s", pts[i].kv.key);
}

static void on_attrs(struct td_sub *sub, int scope, const struct td_kv *kvs, size_t n, int64_t ts, bool deleted) {
  struct rec *r = sub->user;
  r->calls++;
  r->n = n;
  r->total += n;
  r->scope = scope;
  r->ts = ts;
  r->deleted = deleted;
  for (size_t i = 0; i < n && i < 64; i++) snprintf(r->keys[i], sizeof r->keys[i], "%s", kvs[i].key);
}

static struct td_uuid uid(uint8_t x) {
  struct td_uuid u;
  memset(&u, 0, sizeof u);
  u.b[0] = x;
  u.b[15] = (uint8_t)(x * 7 + 1);
  return u;
}

static struct td_entity_id dev(uint8_t x) {
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = uid(x)};
  return e;
}

static void sub_init(struct td_sub *s, enum td_sub_kind kind, uint8_t tenant, uint8_t ent, struct rec *r) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->tenant_id = uid(tenant);
  s->entity = dev(ent);
  s->on_ts = on_ts;
  s->on_attrs = on_attrs;
  s->user = r;
}

static struct td_ts_point pt(const char *key, int64_t ts, int64_t v) {
  struct td_ts_point p;
  memset(&p, 0, sizeof p);
  p.ts = ts;
  p.kv.key = key;
  p.kv.type = TD_KV_LONG;
  p.kv.v.l = v;
  return p;
}

static struct td_kv kvl(const char *key, int64_t v) {
  struct td_kv k;
  memset(&k, 0, sizeof k);
  k.key = key;
  k.type = TD_KV_LONG;
  k.v.l = v;
  return k;
}

static void test_add_publish_remove(void **state) {
  struct rec r = {0};
  struct td_sub s;
  sub_init(&s, TD_SUB_TS, 1, 10, &r);
  size_t base = td_subs_count();
  /* nobody subscribed: nothing happens */
  struct td_entity_id e = dev(10), other = dev(11);
  struct td_uuid t1 = uid(1);
  struct td_ts_point p[2] = {pt("a", 1000, 1), pt("b", 1000, 2)};
  td_subs_publish_ts(&t1, &e, p, 2);
  assert_int_equal(r.calls, 0);

  assert_int_equal(td_subs_add(&s), 0);
  assert_int_equal(td_subs_count(), base + 1);
  td_subs_publish_ts(&t1, &e, p, 2);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.n, 2);
  assert_string_equal(r.keys[0], "a");
  assert_string_equal(r.keys[1], "b");
  /* another entity, zero points, attributes: not for this sub */
  td_subs_publish_ts(&t1, &other, p, 2);
  td_subs_publish_ts(&t1, &e, p, 0);
  struct td_kv kv = kvl("a", 1);
  td_subs_publish_attrs(&t1, &e, TD_SCOPE_CLIENT, &kv, 1, 5);
  assert_int_equal(r.calls, 1);
  /* same uuid, other entity type: not the same entity */
  struct td_entity_id asset = e;
  asset.type = TD_ENTITY_ASSET;
  td_subs_publish_ts(&t1, &asset, p, 2);
  assert_int_equal(r.calls, 1);

  td_subs_remove(&s);
  assert_int_equal(td_subs_count(), base);
  td_subs_publish_ts(&t1, &e, p, 2);
  assert_int_equal(r.calls, 1);
  /* removing again, or a sub never added, is a no-op */
  td_subs_remove(&s);
  struct td_sub never;
  sub_init(&never, TD_SUB_TS, 1, 10, &r);
  td_subs_remove(&never);
  assert_int_equal(td_subs_count(), base);
}

static void test_tenant_check(void **state) {
  struct rec r = {0};
  struct td_sub s;
  sub_init(&s, TD_SUB_TS, 1, 20, &r);
  assert_int_equal(td_subs_add(&s), 0);
  struct td_entity_id e = dev(20);
  struct td_uuid t2 = uid(2), t1 = uid(1);
  struct td_ts_point p = pt("a", 1, 1);
  td_subs_publish_ts(&t2, &e, &p, 1);
  assert_int_equal(r.calls, 0);
  struct td_kv kv = kvl("a", 1);
  struct rec ra = {0};
  struct td_sub sa;
  sub_init(&sa, TD_SUB_ATTRS, 1, 20, &ra);
  assert_int_equal(td_subs_add(&sa), 0);
  td_subs_publish_attrs(&t2, &e, TD_SCOPE_SHARED, &kv, 1, 7);
  const char *dk[1] = {"a"};
  td_subs_publish_attrs_deleted(&t2, &e, TD_SCOPE_SHARED, dk, 1);
  assert_int_equal(ra.calls, 0);
  td_subs_publish_ts(&t1, &e, &p, 1);
  assert_int_equal(r.calls, 1);
  td_subs_remove(&s);
  td_subs_remove(&sa);
}

static void test_key_filter(void **state) {
  static const char *const keys[] = {"a", "c"};
  struct rec r = {0};
  struct td_sub s;
  sub_init(&s, TD_SUB_TS, 1, 30, &r);
  s.keys = keys;
  s.nkeys = 2;
  assert_int_equal(td_subs_add(&s), 0);
  struct td_entity_id e = dev(30);
  struct td_uuid t = uid(1);
  struct td_ts_point p[3] = {pt("a", 1, 1), pt("b", 1, 2), pt("c", 1, 3)};
  td_subs_publish_ts(&t, &e, p, 3);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.n, 2);
  assert_string_equal(r.keys[0], "a");
  assert_string_equal(r.keys[1], "c");
  /* none of the keys: no call at all */
  td_subs_publish_ts(&t, &e, &p[1], 1);
  assert_int_equal(r.calls, 1);
  /* more matching points than the stack buffer: still one call */
  struct td_ts_point many[200];
  for (int i = 0; i < 200; i++) many[i] = pt(i % 2 ? "a" : "zz", i, i);
  td_subs_publish_ts(&t, &e, many, 200);
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.n, 100);
  td_subs_remove(&s);

  /* attributes with keys */
  struct rec ra = {0};
  struct td_sub sa;
  sub_init(&sa, TD_SUB_ATTRS, 1, 30, &ra);
  sa.keys = keys;
  sa.nkeys = 2;
  assert_int_equal(td_subs_add(&sa), 0);
  struct td_kv kv[3] = {kvl("c", 1), kvl("x", 2), kvl("a", 3)};
  td_subs_publish_attrs(&t, &e, TD_SCOPE_SERVER, kv, 3, 99);
  assert_int_equal(ra.calls, 1);
  assert_int_equal(ra.n, 2);
  assert_string_equal(ra.keys[0], "c");
  assert_string_equal(ra.keys[1], "a");
  assert_int_equal(ra.ts, 99);
  assert_false(ra.deleted);
  const char *dk[2] = {"x", "a"};
  td_subs_publish_attrs_deleted(&t, &e, TD_SCOPE_SERVER, dk, 2);
  assert_int_equal(ra.calls, 2);
  assert_int_equal(ra.n, 1);
  assert_string_equal(ra.keys[0], "a");
  assert_true(ra.deleted);
  td_subs_remove(&sa);
}

static void test_scope_filter(void **state) {
  struct rec shared = {0}, any = {0};
  struct td_sub ss, sany;
  sub_init(&ss, TD_SUB_ATTRS, 1, 40, &shared);
  ss.scope = TD_SCOPE_SHARED;
  sub_init(&sany, TD_SUB_ATTRS, 1, 40, &any);
  sany.scope = 0;
  assert_int_equal(td_subs_add(&ss), 0);
  assert_int_equal(td_subs_add(&sany), 0);
  struct td_entity_id e = dev(40);
  struct td_uuid t = uid(1);
  struct td_kv kv = kvl("k", 1);
  td_subs_publish_attrs(&t, &e, TD_SCOPE_CLIENT, &kv, 1, 1);
  assert_int_equal(shared.calls, 0);
  assert_int_equal(any.calls, 1);
  assert_int_equal(any.scope, TD_SCOPE_CLIENT);
  td_subs_publish_attrs(&t, &e, TD_SCOPE_SHARED, &kv, 1, 2);
  assert_int_equal(shared.calls, 1);
  assert_int_equal(shared.scope, TD_SCOPE_SHARED);
  assert_int_equal(any.calls, 2);
  /* many deleted keys (past the stack buffer) reach the sub whole */
  const char *dk[100];
  for (int i = 0; i < 100; i++) dk[i] = "k";
  td_subs_publish_attrs_deleted(&t, &e, TD_SCOPE_SHARED, dk, 100);
  assert_int_equal(shared.calls, 2);
  assert_int_equal(shared.n, 100);
  assert_true(shared.deleted);
  /* timeseries never reach attribute subs */
  struct td_ts_point p = pt("k", 1, 1);
  td_subs_publish_ts(&t, &e, &p, 1);
  assert_int_equal(any.calls, 3);
  td_subs_remove(&ss);
  td_subs_remove(&sany);
}

static void test_many_subs(void **state) {
  enum { N = 5000 };
  struct td_sub *subs = calloc(N, sizeof *subs);
  struct rec *recs = calloc(N, sizeof *recs);
  assert_non_null(subs);
  assert_non_null(recs);
  size_t base = td_subs_count();
  for (int i = 0; i < N; i++) {
    sub_init(&subs[i], TD_SUB_TS, 1, 0, &recs[i]);
    subs[i].entity.id.b[4] = (uint8_t)(i >> 8);
    subs[i].entity.id.b[5] = (uint8_t)i;
    subs[i].entity.id.b[6] = 0x5a;
    assert_int_equal(td_subs_add(&subs[i]), 0);
  }
  assert_int_equal(td_subs_count(), base + N);
  struct td_uuid t = uid(1);
  struct td_ts_point p = pt("v", 1, 1);
  for (int i = 0; i < N; i++) td_subs_publish_ts(&t, &subs[i].entity, &p, 1);
  for (int i = 0; i < N; i++) assert_int_equal(recs[i].calls, 1);
  /* remove every other one */
  for (int i = 0; i < N; i += 2) td_subs_remove(&subs[i]);
  for (int i = 0; i < N; i++) td_subs_publish_ts(&t, &subs[i].entity, &p, 1);
  for (int i = 0; i < N; i++) assert_int_equal(recs[i].calls, i % 2 ? 2 : 1);
  for (int i = 1; i < N; i += 2) td_subs_remove(&subs[i]);
  assert_int_equal(td_subs_count(), base);
  free(subs);
  free(recs);
}

/* ---- concurrency ---- */

#define CENTS 16
#define PUBLISHERS 4

struct csub {
  struct td_sub s;
  long calls;               /* __atomic: callbacks run on publisher threads */
  int magic;
};

static volatile int stop_flag;
static long published; /* __atomic */

static void c_on_ts(struct td_sub *sub, const struct td_ts_point *pts, size_t n) {
  struct csub *c = (struct csub *)sub;
  /* a callback after remove returned would read freed memory here (ASan)
   * or see the poisoned magic */
  assert_int_equal(c->magic, 0x5ab5);
  __atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED);
}

static void c_on_attrs(struct td_sub *sub, int scope, const struct td_kv *kvs, size_t n, int64_t ts, bool deleted) {
  struct csub *c = (struct csub *)sub;
  assert_int_equal(c->magic, 0x5ab5);
  __atomic_add_fetch(&c->calls, 1, __ATOMIC_RELAXED);
}

static void *publisher(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  struct td_uuid t = uid(1);
  struct td_ts_point p[2] = {pt("a", 1, 1), pt("b", 1, 2)};
  struct td_kv kv = kvl("a", 1);
  unsigned i = (unsigned)id;
  while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
    struct td_entity_id e = dev((uint8_t)(100 + i % CENTS));
    if (i % 3) td_subs_publish_ts(&t, &e, p, 2);
    else td_subs_publish_attrs(&t, &e, TD_SCOPE_CLIENT, &kv, 1, 1);
    __atomic_add_fetch(&published, 1, __ATOMIC_RELAXED);
    i++;
  }
  return NULL;
}

static void test_concurrent_publish_add_remove(void **state) {
  pthread_t th[PUBLISHERS];
  stop_flag = 0;
  published = 0;
  size_t base = td_subs_count();
  for (uintptr_t i = 0; i < PUBLISHERS; i++) assert_int_equal(pthread_create(&th[i], NULL, publisher, (void *)i), 0);
  /* a few long-lived subs that must keep receiving throughout */
  struct csub *keep[CENTS];
  for (int i = 0; i < CENTS; i++) {
    keep[i] = calloc(1, sizeof **keep);
    keep[i]->magic = 0x5ab5;
    keep[i]->s.kind = TD_SUB_TS;
    keep[i]->s.tenant_id = uid(1);
    keep[i]->s.entity = dev((uint8_t)(100 + i));
    keep[i]->s.on_ts = c_on_ts;
    assert_int_equal(td_subs_add(&keep[i]->s), 0);
  }
  long total_calls = 0;
  for (int round = 0; round < 3000; round++) {
    struct csub *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->magic = 0x5ab5;
    c->s.kind = round % 2 ? TD_SUB_TS : TD_SUB_ATTRS;
    c->s.tenant_id = uid(1);
    c->s.entity = dev((uint8_t)(100 + round % CENTS));
    c->s.on_ts = c_on_ts;
    c->s.on_attrs = c_on_attrs;
    assert_int_equal(td_subs_add(&c->s), 0);
    /* let publishers reach it now and then */
    if (round % 64 == 0) {
      long seen = __atomic_load_n(&published, __ATOMIC_RELAXED);
      while (__atomic_load_n(&published, __ATOMIC_RELAXED) < seen + 50) sched_yield();
    }
    td_subs_remove(&c->s);
    total_calls += __atomic_load_n(&c->calls, __ATOMIC_RELAXED);
    c->magic = 0;
    free(c);
  }
  __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < PUBLISHERS; i++) pthread_join(th[i], NULL);
  long keep_calls = 0;
  for (int i = 0; i < CENTS; i++) {
    keep_calls += keep[i]->calls;
    td_subs_remove(&keep[i]->s);
    free(keep[i]);
  }
  assert_int_equal(td_subs_count(), base);
  assert_true(keep_calls > 0);
  print_message("published=%ld keep_calls=%ld transient_calls=%ld\n", published, keep_calls, total_calls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_publish_remove), cmocka_unit_test(test_tenant_check),
      cmocka_unit_test(test_key_filter),         cmocka_unit_test(test_scope_filter),
      cmocka_unit_test(test_many_subs),          cmocka_unit_test(test_concurrent_publish_add_remove),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
