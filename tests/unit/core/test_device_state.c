/* test_device_state.c — the device state service (src/core/device_state.h)
 * in manual mode with injected time and a fake io that records what would
 * go to the queue and the writer and plays a fake store for loads: the
 * transitions and their events, the merge of stored state with reports made
 * while it loads, inactivityTimeout changes, coalesced persistence (one
 * write per changed device per interval, only the changed keys),
 * back-pressure from the queue and the writer, the device limit; and one
 * test with the real thread and the real clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/time.h"
#include "core/device_state.h"
#include "msg/msg.h"
#include "store/store.h"
#include "store/writer.h"

#define T0 1700000000000LL
#define MAXEV 4096
#define MAXW 8192
#define MAXSTORED 16

struct wrec {
  struct td_uuid id;
  int kind, scope;
  size_t n;
  char keys[5][24];
  int64_t vals[5];
};

/* the fake io's world */
static struct {
  pthread_mutex_t mu;
  struct td_msg *ev[MAXEV];
  int nev;
  struct wrec w[MAXW];
  int nw;
  int publishes;
  bool produce_full, write_full;
  int write_fail; /* this many next writes complete with TD_EIO */
  /* fake store */
  struct td_uuid sid[MAXSTORED];
  struct td_dstate_stored sst[MAXSTORED];
  int nstored;
  bool defer_loads;
  struct td_dstate_load *deferred[8];
  int ndeferred;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void world_reset(void) {
  pthread_mutex_lock(&W.mu);
  for (int i = 0; i < W.nev; i++) td_msg_unref(W.ev[i]);
  W.nev = 0;
  W.nw = 0;
  W.publishes = 0;
  W.produce_full = W.write_full = false;
  W.write_fail = 0;
  W.nstored = 0;
  W.defer_loads = false;
  W.ndeferred = 0;
  pthread_mutex_unlock(&W.mu);
}

static void fill_load(struct td_dstate_load *l) {
  for (size_t i = 0; i < l->n; i++) {
    l->out[i].status = 0;
    snprintf(l->out[i].name, sizeof l->out[i].name, "dev-%u", (unsigned)l->ids[i].b[15]);
    snprintf(l->out[i].type, sizeof l->out[i].type, "thermo");
    for (int k = 0; k < W.nstored; k++)
      if (td_uuid_eq(&W.sid[k], &l->ids[i])) l->out[i] = W.sst[k];
  }
}

static int f_load(void *arg, struct td_dstate_load *l) {
  (void)arg;
  pthread_mutex_lock(&W.mu);
  fill_load(l);
  bool defer = W.defer_loads && W.ndeferred < 8;
  if (defer) W.deferred[W.ndeferred++] = l;
  pthread_mutex_unlock(&W.mu);
  if (!defer) td_device_state_loaded(l);
  return 0;
}

static void complete_deferred(void) {
  pthread_mutex_lock(&W.mu);
  int n = W.ndeferred;
  struct td_dstate_load *d[8];
  memcpy(d, W.deferred, sizeof d);
  W.ndeferred = 0;
  W.defer_loads = false;
  pthread_mutex_unlock(&W.mu);
  for (int i = 0; i < n; i++) td_device_state_loaded(d[i]);
}

static int f_produce(void *arg, struct td_msg *const *msgs, size_t n) {
  (void)arg;
  pthread_mutex_lock(&W.mu);
  if (W.produce_full) {
    pthread_mutex_unlock(&W.mu);
    return TD_EFULL;
  }
  for (size_t i = 0; i < n && W.nev < MAXEV; i++) W.ev[W.nev++] = td_msg_ref(msgs[i]);
  pthread_mutex_unlock(&W.mu);
  return 0;
}

static int f_write(void *arg, struct td_write_req *r) {
  (void)arg;
  pthread_mutex_lock(&W.mu);
  if (W.write_full) {
    pthread_mutex_unlock(&W.mu);
    return TD_EFULL;
  }
  int status = 0;
  if (W.write_fail > 0) {
    W.write_fail--;
    status = TD_EIO;
  } else if (W.nw < MAXW) {
    struct wrec *w = &W.w[W.nw++];
    memset(w, 0, sizeof *w);
    w->id = r->entity.id;
    w->kind = r->kind;
    w->scope = r->scope;
    w->n = r->n;
    for (size_t i = 0; i < r->n && i < 5; i++) {
      const struct td_kv *kv = r->kind == TD_WRITE_TS ? &r->points[i].kv : &r->kvs[i];
      snprintf(w->keys[i], sizeof w->keys[i], "%s", kv->key);
      w->vals[i] = kv->type == TD_KV_BOOLEAN ? kv->v.b : kv->v.l;
    }
  }
  pthread_mutex_unlock(&W.mu);
  r->done(r, status); /* the writer would call it later, on its thread */
  return 0;
}

static void f_publish(void *arg, const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                      const struct td_kv *kvs, size_t n, int64_t ts) {
  (void)arg, (void)tenant_id, (void)e, (void)scope, (void)kvs, (void)n, (void)ts;
  pthread_mutex_lock(&W.mu);
  W.publishes++;
  pthread_mutex_unlock(&W.mu);
}

static const struct td_device_state_io IO = {1, f_load, f_produce, f_write, f_publish};

static struct td_uuid TENANT;

static struct td_uuid dev_id(int i) {
  struct td_uuid u;
  memset(&u, 0, sizeof u);
  u.b[0] = 0x42;
  u.b[14] = (uint8_t)(i >> 8);
  u.b[15] = (uint8_t)i;
  return u;
}

static struct td_device_state *make(int64_t timeout_ms, size_t max_devices, bool ts) {
  world_reset();
  memset(&TENANT, 0x11, sizeof TENANT);
  struct td_device_state_config c = {.default_timeout_ms = timeout_ms, .check_interval_ms = 1,
                                     .persist_interval_ms = 1000, .persist_to_telemetry = ts,
                                     .max_devices = max_devices, .manual = true, .io = &IO};
  struct td_device_state *ds;
  assert_int_equal(td_device_state_new(NULL, &c, &ds), 0);
  return ds;
}

static void destroy(struct td_device_state *ds) {
  td_device_state_free(ds);
  world_reset();
}

/* ev_at: event i's type; its data parsed into *data (caller decrefs). */
static const char *ev_at(int i, json_t **data) {
  assert_true(i < W.nev);
  struct td_msg *m = W.ev[i];
  if (data) {
    *data = json_loadb(m->data, m->data_len, 0, NULL);
    assert_non_null(*data);
  }
  return m->type;
}

static int64_t jint(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  assert_true(json_is_integer(v));
  return json_integer_value(v);
}

static const struct wrec *last_write_of(const struct td_uuid *id) {
  for (int i = W.nw - 1; i >= 0; i--)
    if (td_uuid_eq(&W.w[i].id, id)) return &W.w[i];
  return NULL;
}

static bool wrote_key(const struct wrec *w, const char *key, int64_t *val) {
  for (size_t i = 0; w && i < w->n; i++)
    if (!strcmp(w->keys[i], key)) {
      if (val) *val = w->vals[i];
      return true;
    }
  return false;
}

/* ---- transitions ---- */

static void test_first_activity_activates(void **state) {
  (void)state;
  struct td_device_state *ds = make(2000, 100, false);
  struct td_uuid d = dev_id(1);
  td_device_state_activity(ds, &TENANT, &d, T0);
  struct td_dstate_view v;
  assert_true(td_device_state_get(ds, &d, &v));
  assert_false(v.ready); /* loads on the service's round, not on the reporter's thread */
  assert_int_equal(W.nev, 0);
  td_device_state_run(ds, T0, false);
  assert_true(td_device_state_get(ds, &d, &v));
  assert_true(v.ready && v.active);
  assert_int_equal(v.last_activity, T0);
  assert_int_equal(W.nev, 1);
  json_t *j;
  assert_string_equal(ev_at(0, &j), "ACTIVITY_EVENT");
  assert_true(json_is_true(json_object_get(j, "active")));
  assert_int_equal(jint(j, "lastActivityTime"), T0);
  assert_int_equal(jint(j, "inactivityTimeout"), 2000);
  assert_int_equal(jint(j, "lastInactivityAlarmTime"), 0);
  json_decref(j);
  struct td_msg *m = W.ev[0];
  assert_int_equal(m->originator.type, TD_ENTITY_DEVICE);
  assert_true(td_uuid_eq(&m->originator.id, &d));
  assert_true(td_uuid_eq(&m->tenant_id, &TENANT));
  assert_string_equal(td_msg_md_get(m, "deviceName"), "dev-1");
  assert_string_equal(td_msg_md_get(m, "deviceType"), "thermo");
  assert_string_equal(td_msg_md_get(m, "scope"), "SERVER_SCOPE");
  /* persisted in the same round: active and lastActivityTime as SERVER_SCOPE attributes */
  const struct wrec *w = last_write_of(&d);
  assert_non_null(w);
  assert_int_equal(w->kind, TD_WRITE_ATTRS);
  assert_int_equal(w->scope, TD_SCOPE_SERVER);
  int64_t val;
  assert_true(wrote_key(w, "active", &val) && val == 1);
  assert_true(wrote_key(w, "lastActivityTime", &val) && val == T0);
  assert_false(wrote_key(w, "lastConnectTime", NULL));
  assert_int_equal(W.publishes, 1);
  /* more activity while active: no event */
  td_device_state_activity(ds, &TENANT, &d, T0 + 10);
  td_device_state_run(ds, T0 + 10, false);
  assert_int_equal(W.nev, 1);
  destroy(ds);
}

static void test_connect_disconnect_events(void **state) {
  (void)state;
  struct td_device_state *ds = make(60000, 100, false);
  struct td_uuid d = dev_id(2);
  td_device_state_connect(ds, &TENANT, &d, T0);
  td_device_state_run(ds, T0, false);
  assert_int_equal(W.nev, 2);
  json_t *j;
  assert_string_equal(ev_at(0, &j), "CONNECT_EVENT");
  assert_null(json_object_get(j, "active")); /* ThingsBoard's CONNECT_EVENT has no "active" */
  assert_int_equal(jint(j, "lastConnectTime"), T0);
  json_decref(j);
  assert_string_equal(ev_at(1, &j), "ACTIVITY_EVENT"); /* the session's open counts as activity */
  assert_int_equal(jint(j, "lastActivityTime"), T0);
  json_decref(j);
  int64_t val;
  assert_true(wrote_key(last_write_of(&d), "lastConnectTime", &val) && val == T0);

  td_device_state_disconnect(ds, &TENANT, &d, T0 + 500);
  td_device_state_run(ds, T0 + 500, false);
  assert_int_equal(W.nev, 3);
  assert_string_equal(ev_at(2, &j), "DISCONNECT_EVENT");
  assert_true(json_is_true(json_object_get(j, "active"))); /* a disconnect does not change activity */
  assert_int_equal(jint(j, "lastDisconnectTime"), T0 + 500);
  assert_int_equal(jint(j, "lastConnectTime"), T0);
  json_decref(j);
  struct td_dstate_view v;
  td_device_state_get(ds, &d, &v);
  assert_true(v.active);
  assert_int_equal(v.last_disconnect, T0 + 500);
  /* not yet written: the interval since the last flush has not passed */
  assert_false(wrote_key(last_write_of(&d), "lastDisconnectTime", NULL));
  td_device_state_run(ds, T0 + 1000, false);
  const struct wrec *w = last_write_of(&d);
  assert_true(wrote_key(w, "lastDisconnectTime", &val) && val == T0 + 500);
  assert_int_equal(w->n, 1); /* only what changed */
  destroy(ds);
}

static void test_inactivity_on_time_and_back(void **state) {
  (void)state;
  struct td_device_state *ds = make(2000, 100, false);
  struct td_uuid d = dev_id(3);
  td_device_state_activity(ds, &TENANT, &d, T0);
  td_device_state_run(ds, T0, false);
  assert_int_equal(W.nev, 1);
  /* exactly the timeout is not "more than" the timeout */
  td_device_state_run(ds, T0 + 2000, false);
  struct td_dstate_view v;
  td_device_state_get(ds, &d, &v);
  assert_true(v.active);
  assert_int_equal(W.nev, 1);
  td_device_state_run(ds, T0 + 2001, false);
  td_device_state_get(ds, &d, &v);
  assert_false(v.active);
  assert_int_equal(v.inactivity_alarm, T0 + 2001);
  assert_int_equal(W.nev, 2);
  json_t *j;
  assert_string_equal(ev_at(1, &j), "INACTIVITY_EVENT");
  assert_true(json_is_false(json_object_get(j, "active")));
  assert_int_equal(jint(j, "lastInactivityAlarmTime"), T0 + 2001);
  assert_int_equal(jint(j, "lastActivityTime"), T0);
  json_decref(j);
  /* written at the next flush: active=false and inactivityAlarmTime */
  td_device_state_run(ds, T0 + 3000, false);
  int64_t val;
  const struct wrec *w = last_write_of(&d);
  assert_true(wrote_key(w, "active", &val) && val == 0);
  assert_true(wrote_key(w, "inactivityAlarmTime", &val) && val == T0 + 2001);
  /* no second inactivity event while inactive */
  td_device_state_run(ds, T0 + 9000, false);
  assert_int_equal(W.nev, 2);
  /* the next message: active again */
  td_device_state_activity(ds, &TENANT, &d, T0 + 9500);
  assert_int_equal(W.nev, 2); /* the event waits in the outbox for the service round */
  td_device_state_run(ds, T0 + 9500, false);
  assert_int_equal(W.nev, 3);
  assert_string_equal(ev_at(2, &j), "ACTIVITY_EVENT");
  assert_true(json_is_true(json_object_get(j, "active")));
  assert_int_equal(jint(j, "lastInactivityAlarmTime"), T0 + 2001);
  json_decref(j);
  destroy(ds);
}

static void test_timeout_changes(void **state) {
  (void)state;
  struct td_device_state *ds = make(600000, 100, false);
  struct td_uuid d = dev_id(4);
  td_device_state_activity(ds, &TENANT, &d, T0);
  td_device_state_run(ds, T0, false);
  td_device_state_run(ds, T0 + 5000, false);
  struct td_dstate_view v;
  td_device_state_get(ds, &d, &v);
  assert_true(v.active);
  /* REST saves inactivityTimeout = 1000 (SERVER_SCOPE): the next check uses it */
  struct td_kv kv = {.key = "inactivityTimeout", .type = TD_KV_LONG, .v.l = 1000};
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = d};
  td_device_state_attrs_saved(ds, &TENANT, &e, TD_SCOPE_CLIENT, &kv, 1); /* other scopes do not count */
  td_device_state_get(ds, &d, &v);
  assert_int_equal(v.inactivity_timeout, 600000);
  td_device_state_attrs_saved(ds, &TENANT, &e, TD_SCOPE_SERVER, &kv, 1);
  td_device_state_get(ds, &d, &v);
  assert_int_equal(v.inactivity_timeout, 1000);
  td_device_state_run(ds, T0 + 5001, false);
  td_device_state_get(ds, &d, &v);
  assert_false(v.active);
  json_t *j;
  assert_string_equal(ev_at(W.nev - 1, &j), "INACTIVITY_EVENT");
  assert_int_equal(jint(j, "inactivityTimeout"), 1000);
  json_decref(j);
  /* deleted: the default again */
  const char *key = "inactivityTimeout";
  td_device_state_attrs_deleted(ds, &TENANT, &e, TD_SCOPE_SERVER, &key, 1);
  td_device_state_get(ds, &d, &v);
  assert_int_equal(v.inactivity_timeout, 600000);
  /* a string value counts too (JSON type cast off) */
  struct td_kv ks = {.key = "inactivityTimeout", .type = TD_KV_STRING, .v.s = "2500"};
  td_device_state_attrs_saved(ds, &TENANT, &e, TD_SCOPE_SERVER, &ks, 1);
  td_device_state_get(ds, &d, &v);
  assert_int_equal(v.inactivity_timeout, 2500);
  destroy(ds);
}

/* ---- loading ---- */

static void test_stored_state_merges_with_reports_made_while_loading(void **state) {
  (void)state;
  struct td_device_state *ds = make(600000, 100, false);
  struct td_uuid a = dev_id(5), b = dev_id(6);
  /* a: stored active with a 5 s timeout; b: stored inactive */
  W.sid[0] = a;
  W.sst[0] = (struct td_dstate_stored){.status = 0, .active = true, .last_connect = T0 - 100000,
                                       .last_activity = T0 - 1000, .inactivity_alarm = T0 - 50000,
                                       .inactivity_timeout = 5000};
  snprintf(W.sst[0].name, sizeof W.sst[0].name, "stored-a");
  W.sid[1] = b;
  W.sst[1] = (struct td_dstate_stored){.status = 0, .active = false, .last_activity = T0 - 90000,
                                       .last_disconnect = T0 - 80000};
  W.nstored = 2;
  W.defer_loads = true;
  td_device_state_connect(ds, &TENANT, &a, T0);
  td_device_state_activity(ds, &TENANT, &b, T0 + 1);
  td_device_state_disconnect(ds, &TENANT, &b, T0 + 2);
  td_device_state_run(ds, T0 + 2, false);
  assert_int_equal(W.ndeferred, 1); /* both in one load batch */
  assert_int_equal(W.nev, 0);       /* no events before the stored state is known */
  assert_int_equal(W.nw, 0);        /* nor writes */
  complete_deferred();
  td_device_state_run(ds, T0 + 3, false);
  struct td_dstate_view v;
  td_device_state_get(ds, &a, &v);
  assert_true(v.ready && v.active);
  assert_int_equal(v.inactivity_timeout, 5000);
  assert_int_equal(v.last_connect, T0);
  assert_int_equal(v.inactivity_alarm, T0 - 50000);
  td_device_state_get(ds, &b, &v);
  assert_true(v.active);
  assert_int_equal(v.last_activity, T0 + 1);
  assert_int_equal(v.last_disconnect, T0 + 2);
  /* a: CONNECT_EVENT only (it was active); b: ACTIVITY_EVENT then DISCONNECT_EVENT */
  int na = 0, nb = 0;
  const char *ta[4], *tb[4];
  for (int i = 0; i < W.nev; i++) {
    if (td_uuid_eq(&W.ev[i]->originator.id, &a)) ta[na++] = W.ev[i]->type;
    else tb[nb++] = W.ev[i]->type;
  }
  assert_int_equal(na, 1);
  assert_string_equal(ta[0], "CONNECT_EVENT");
  assert_int_equal(nb, 2);
  assert_string_equal(tb[0], "ACTIVITY_EVENT");
  assert_string_equal(tb[1], "DISCONNECT_EVENT");
  for (int i = 0; i < W.nev; i++)
    if (td_uuid_eq(&W.ev[i]->originator.id, &a)) assert_string_equal(td_msg_md_get(W.ev[i], "deviceName"), "stored-a");
  /* a goes inactive by its stored 5 s timeout */
  td_device_state_run(ds, T0 + 5001, false);
  td_device_state_get(ds, &a, &v);
  assert_false(v.active);
  destroy(ds);
}

static void test_timeout_set_while_loading_wins(void **state) {
  (void)state;
  struct td_device_state *ds = make(600000, 100, false);
  struct td_uuid a = dev_id(7);
  W.sid[0] = a;
  W.sst[0] = (struct td_dstate_stored){.status = 0, .inactivity_timeout = 9000};
  W.nstored = 1;
  W.defer_loads = true;
  td_device_state_activity(ds, &TENANT, &a, T0);
  td_device_state_run(ds, T0, false);
  td_device_state_timeout_changed(ds, &TENANT, &a, 3000); /* saved after the load read the store */
  complete_deferred();
  struct td_dstate_view v;
  td_device_state_get(ds, &a, &v);
  assert_int_equal(v.inactivity_timeout, 3000);
  destroy(ds);
}

static void test_unknown_device_is_forgotten(void **state) {
  (void)state;
  struct td_device_state *ds = make(1000, 100, false);
  struct td_uuid a = dev_id(8);
  W.sid[0] = a;
  W.sst[0] = (struct td_dstate_stored){.status = TD_ENOTFOUND};
  W.nstored = 1;
  td_device_state_activity(ds, &TENANT, &a, T0);
  td_device_state_run(ds, T0, false);
  struct td_dstate_view v;
  assert_false(td_device_state_get(ds, &a, &v));
  td_device_state_run(ds, T0 + 5000, true);
  assert_int_equal(W.nev, 0);
  assert_int_equal(W.nw, 0);
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.devices, 0);
  /* forget drops a tracked device, dirty or not */
  struct td_uuid b = dev_id(9);
  td_device_state_activity(ds, &TENANT, &b, T0);
  td_device_state_run(ds, T0, false);
  td_device_state_activity(ds, &TENANT, &b, T0 + 1);
  td_device_state_forget(ds, &b);
  assert_false(td_device_state_get(ds, &b, &v));
  int nw = W.nw;
  td_device_state_run(ds, T0 + 9000, true);
  assert_int_equal(W.nw, nw);
  destroy(ds);
}

/* ---- persistence ---- */

static void test_coalescing_one_write_per_device_per_interval(void **state) {
  (void)state;
  enum { N = 200, PER = 20 };
  struct td_device_state *ds = make(600000, 100000, false);
  struct td_uuid ids[N];
  for (int i = 0; i < N; i++) ids[i] = dev_id(1000 + i);
  /* first seen: loads, activation, one flush */
  for (int i = 0; i < N; i++) td_device_state_connect(ds, &TENANT, &ids[i], T0);
  td_device_state_run(ds, T0, false);
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.devices, N);
  assert_int_equal(st.writes, N);
  assert_int_equal(W.nw, N);
  for (int i = 0; i < W.nw; i++) assert_int_equal(W.w[i].n, 3); /* active, lastActivityTime, lastConnectTime */
  assert_int_equal(W.nev, 2 * N);
  /* N devices x PER messages within one interval: rounds before the interval passes write nothing */
  for (int k = 0; k < PER; k++) {
    for (int i = 0; i < N; i++) td_device_state_activity(ds, &TENANT, &ids[i], T0 + 10 + k * 10);
    td_device_state_run(ds, T0 + 10 + k * 10, false);
  }
  td_device_state_stats(ds, &st);
  assert_int_equal(st.writes, N);
  /* the interval passes: exactly one write per device, lastActivityTime only, the last value */
  td_device_state_run(ds, T0 + 1000, false);
  td_device_state_stats(ds, &st);
  assert_int_equal(st.writes, 2 * N);
  assert_int_equal(st.rows, 3 * N + N);
  for (int i = 0; i < N; i++) {
    const struct wrec *w = last_write_of(&ids[i]);
    assert_int_equal(w->n, 1);
    int64_t val;
    assert_true(wrote_key(w, "lastActivityTime", &val));
    assert_int_equal(val, T0 + 10 + (PER - 1) * 10);
  }
  assert_int_equal(W.nev, 2 * N); /* activity of active devices makes no events */
  /* nothing changed: nothing written */
  td_device_state_run(ds, T0 + 2000, false);
  td_device_state_run(ds, T0 + 3000, false);
  td_device_state_stats(ds, &st);
  assert_int_equal(st.writes, 2 * N);
  assert_int_equal(st.flushes, 2);
  destroy(ds);
}

/* A flush larger than its first allocation (1024 devices): the batch grows
 * while it is filled, and every write must still carry its own values
 * (regression: the requests pointed into the batch before it moved). */
static void test_large_flush(void **state) {
  (void)state;
  enum { N = 3000 };
  struct td_device_state *ds = make(600000, 100000, false);
  for (int i = 0; i < N; i++) {
    struct td_uuid id = dev_id(2000 + i);
    td_device_state_activity(ds, &TENANT, &id, T0 + i);
  }
  td_device_state_run(ds, T0 + N, false);
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.writes, N);
  assert_int_equal(W.nw, N);
  for (int i = 0; i < N; i++) {
    const struct wrec *w = &W.w[i];
    assert_int_equal(w->n, 2); /* active, lastActivityTime */
    int64_t when = 0, active = 0;
    assert_true(wrote_key(w, "active", &active));
    assert_int_equal(active, 1);
    assert_true(wrote_key(w, "lastActivityTime", &when));
    assert_int_equal(when, T0 + (w->id.b[14] << 8 | w->id.b[15]) - 2000);
  }
  destroy(ds);
}

static void test_persist_to_telemetry(void **state) {
  (void)state;
  struct td_device_state *ds = make(600000, 100, true);
  struct td_uuid d = dev_id(10);
  td_device_state_activity(ds, &TENANT, &d, T0);
  td_device_state_run(ds, T0 + 7, false);
  const struct wrec *w = last_write_of(&d);
  assert_non_null(w);
  assert_int_equal(w->kind, TD_WRITE_TS);
  int64_t val;
  assert_true(wrote_key(w, "lastActivityTime", &val) && val == T0);
  assert_true(wrote_key(w, "active", &val) && val == 1);
  assert_null(td_msg_md_get(W.ev[0], "scope")); /* not kept in attributes */
  destroy(ds);
}

static void test_writer_back_pressure_and_failure_retry(void **state) {
  (void)state;
  struct td_device_state *ds = make(600000, 100, false);
  struct td_uuid a = dev_id(11), b = dev_id(12);
  td_device_state_activity(ds, &TENANT, &a, T0);
  td_device_state_activity(ds, &TENANT, &b, T0);
  W.write_full = true;
  td_device_state_run(ds, T0, false);
  assert_int_equal(W.nw, 0);
  W.write_full = false;
  /* left over: written at the next round, without waiting for the interval */
  td_device_state_run(ds, T0 + 1, false);
  assert_int_equal(W.nw, 2);
  assert_true(wrote_key(last_write_of(&a), "active", NULL));
  /* a failed write (status from the writer) is written again next time */
  td_device_state_activity(ds, &TENANT, &a, T0 + 50);
  W.write_fail = 1;
  td_device_state_run(ds, T0 + 1001, false);
  assert_int_equal(W.nw, 2);
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.write_errors, 1);
  td_device_state_run(ds, T0 + 2001, false);
  assert_int_equal(W.nw, 3);
  int64_t val;
  assert_true(wrote_key(last_write_of(&a), "lastActivityTime", &val) && val == T0 + 50);
  destroy(ds);
}

/* ---- queue back-pressure, limits ---- */

static void test_queue_back_pressure_keeps_order(void **state) {
  (void)state;
  struct td_device_state *ds = make(1000, 100, false);
  struct td_uuid d = dev_id(13);
  W.produce_full = true;
  td_device_state_connect(ds, &TENANT, &d, T0);
  td_device_state_run(ds, T0, false);
  td_device_state_run(ds, T0 + 1001, false); /* inactive */
  td_device_state_disconnect(ds, &TENANT, &d, T0 + 1002);
  td_device_state_run(ds, T0 + 1002, false);
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.outbox, 4);
  assert_int_equal(W.nev, 0);
  W.produce_full = false;
  td_device_state_run(ds, T0 + 1003, false);
  assert_int_equal(W.nev, 4);
  assert_string_equal(ev_at(0, NULL), "CONNECT_EVENT");
  assert_string_equal(ev_at(1, NULL), "ACTIVITY_EVENT");
  assert_string_equal(ev_at(2, NULL), "INACTIVITY_EVENT");
  assert_string_equal(ev_at(3, NULL), "DISCONNECT_EVENT");
  td_device_state_stats(ds, &st);
  assert_int_equal(st.events, 4);
  assert_int_equal(st.outbox, 0);
  destroy(ds);
}

static void test_max_devices(void **state) {
  (void)state;
  struct td_device_state *ds = make(1000, 2, false);
  for (int i = 0; i < 3; i++) {
    struct td_uuid d = dev_id(20 + i);
    td_device_state_activity(ds, &TENANT, &d, T0);
  }
  struct td_uuid third = dev_id(22), first = dev_id(20);
  struct td_dstate_view v;
  assert_false(td_device_state_get(ds, &third, &v));
  td_device_state_activity(ds, &TENANT, &first, T0 + 1); /* known devices still count */
  struct td_device_state_stats st;
  td_device_state_stats(ds, &st);
  assert_int_equal(st.devices, 2);
  assert_int_equal(st.ignored, 1);
  td_device_state_run(ds, T0 + 1, false);
  assert_int_equal(W.nev, 2);
  td_device_state_forget(ds, &first); /* room again */
  td_device_state_activity(ds, &TENANT, &third, T0 + 2);
  assert_true(td_device_state_get(ds, &third, &v));
  destroy(ds);
}

/* NULL service (no ctx->device_state): every call is a no-op */
static void test_null_service(void **state) {
  (void)state;
  struct td_uuid d = dev_id(30);
  td_device_state_activity(NULL, &TENANT, &d, T0);
  td_device_state_connect(NULL, &TENANT, &d, T0);
  td_device_state_disconnect(NULL, &TENANT, &d, T0);
  td_device_state_timeout_changed(NULL, &TENANT, &d, 5);
  td_device_state_stop(NULL);
  td_device_state_free(NULL);
}

/* ---- the real thread and clock ---- */

static int count_events(const char *type) {
  int n = 0;
  pthread_mutex_lock(&W.mu);
  for (int i = 0; i < W.nev; i++) n += !strcmp(W.ev[i]->type, type);
  pthread_mutex_unlock(&W.mu);
  return n;
}

static void test_thread_detects_inactivity(void **state) {
  (void)state;
  world_reset();
  memset(&TENANT, 0x11, sizeof TENANT);
  struct td_device_state_config c = {.default_timeout_ms = 200, .check_interval_ms = 20, .persist_interval_ms = 50,
                                     .max_devices = 100, .io = &IO};
  struct td_device_state *ds;
  assert_int_equal(td_device_state_new(NULL, &c, &ds), 0);
  struct td_uuid d = dev_id(40);
  int64_t t = td_now_ms();
  td_device_state_connect(ds, &TENANT, &d, t);
  /* reporters on other threads meanwhile would only touch their stripes; here: wait for the events */
  int64_t deadline = td_mono_ms() + 5000;
  while (count_events("INACTIVITY_EVENT") == 0 && td_mono_ms() < deadline) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  int64_t seen = td_now_ms();
  assert_int_equal(count_events("CONNECT_EVENT"), 1);
  assert_int_equal(count_events("ACTIVITY_EVENT"), 1);
  assert_int_equal(count_events("INACTIVITY_EVENT"), 1);
  assert_true(seen - t > 200); /* never before the timeout */
  struct td_dstate_view v;
  td_device_state_get(ds, &d, &v);
  assert_false(v.active);
  assert_true(v.inactivity_alarm - v.last_activity > 200);
  td_device_state_stop(ds);
  /* stop wrote what changed: the last write has active=false */
  pthread_mutex_lock(&W.mu);
  const struct wrec *w = last_write_of(&d);
  int64_t val = -1;
  bool has = wrote_key(w, "active", &val);
  pthread_mutex_unlock(&W.mu);
  assert_true(has && val == 0);
  destroy(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_activity_activates),
      cmocka_unit_test(test_large_flush),
      cmocka_unit_test(test_connect_disconnect_events),
      cmocka_unit_test(test_inactivity_on_time_and_back),
      cmocka_unit_test(test_timeout_changes),
      cmocka_unit_test(test_stored_state_merges_with_reports_made_while_loading),
      cmocka_unit_test(test_timeout_set_while_loading_wins),
      cmocka_unit_test(test_unknown_device_is_forgotten),
      cmocka_unit_test(test_coalescing_one_write_per_device_per_interval),
      cmocka_unit_test(test_persist_to_telemetry),
      cmocka_unit_test(test_writer_back_pressure_and_failure_retry),
      cmocka_unit_test(test_queue_back_pressure_keeps_order),
      cmocka_unit_test(test_max_devices),
      cmocka_unit_test(test_null_service),
      cmocka_unit_test(test_thread_detects_inactivity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
