/* test_sessions.c — device sessions in the Device actor (src/rule/session.c)
 * with the real actor system, rule engine and a real I/O loop, and fake
 * transport sessions that record what the core delivers to them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "actor/actor.h"
#include "base/err.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/device_session.h"
#include "rule/engine.h"

#define MAXEV 64

struct ev {
  int kind; /* 'A' attributes, 'R' rpc request, 'P' rpc response, 'C' close */
  int sess;
  int32_t id;
  int reason;
  char text[128];
};

struct rec {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct ev ev[MAXEV];
  int n;
  /* RPC waiter results */
  int done, error;
  char payload[128];
};

static struct rec R = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
static int sess_index[8];

static void add(int kind, void *owner, int32_t id, int reason, const char *text, size_t len) {
  pthread_mutex_lock(&R.mu);
  if (R.n < MAXEV) {
    struct ev *e = &R.ev[R.n++];
    e->kind = kind;
    e->sess = *(int *)owner;
    e->id = id;
    e->reason = reason;
    snprintf(e->text, sizeof e->text, "%.*s", (int)(len < 127 ? len : 127), text ? text : "");
  }
  pthread_cond_broadcast(&R.cv);
  pthread_mutex_unlock(&R.mu);
}

static void on_attributes(void *owner, struct td_dsession *s, const char *p, size_t len) {
  add('A', owner, 0, 0, p, len);
}
static void on_rpc_request(void *owner, struct td_dsession *s, int32_t id, const char *method, const char *params,
                           int64_t exp, bool oneway) {
  add('R', owner, id, oneway, method, strlen(method));
}
static void on_rpc_response(void *owner, struct td_dsession *s, int32_t id, const char *p, size_t len) {
  add('P', owner, id, 0, p, len);
}
static void on_close(void *owner, struct td_dsession *s, int reason) { add('C', owner, 0, reason, NULL, 0); }

static const struct td_dsession_ops OPS = {on_attributes, on_rpc_request, on_rpc_response, on_close};

/* wait_for: until `pred` holds (under R.mu), at most 5 s. */
static bool wait_for(bool (*pred)(void *), void *arg) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 5;
  pthread_mutex_lock(&R.mu);
  bool ok;
  while (!(ok = pred(arg)))
    if (pthread_cond_timedwait(&R.cv, &R.mu, &dl)) break;
  pthread_mutex_unlock(&R.mu);
  return ok;
}
static bool n_at_least(void *arg) { return R.n >= *(int *)arg; }
static bool waiter_done(void *arg) { return R.done >= *(int *)arg; }

static void wait_events(int n) { assert_true(wait_for(n_at_least, &n)); }

static void waiter_cb(struct td_rpc_waiter *w) {
  pthread_mutex_lock(&R.mu);
  R.done++;
  R.error = w->error;
  snprintf(R.payload, sizeof R.payload, "%s", w->payload ? w->payload : "");
  free(w->payload);
  pthread_cond_broadcast(&R.cv);
  pthread_mutex_unlock(&R.mu);
}

static struct td_loop loop;
static struct td_config cfg;
static struct td_ctx ctx;
static struct td_uuid tenant, device;

static int no_chain(void *arg, const struct td_uuid *t, json_t **md) { return TD_ENOTFOUND; }

static int count_kind(int kind, int sess) {
  int c = 0;
  pthread_mutex_lock(&R.mu);
  for (int i = 0; i < R.n; i++)
    if (R.ev[i].kind == kind && (sess < 0 || R.ev[i].sess == sess)) c++;
  pthread_mutex_unlock(&R.mu);
  return c;
}

static void rpc(struct td_rpc_waiter *w, int64_t ttl_ms, bool oneway) {
  memset(w, 0, sizeof *w);
  td_uuid_new(&w->request_uuid);
  w->loop = &loop;
  w->on_done = waiter_cb;
  assert_int_equal(td_rpc_waiter_add(w), 0);
  assert_int_equal(td_core_rpc_request(&ctx, &tenant, &device, &w->request_uuid, "setGpio", "{\"pin\":7}",
                                       td_now_ms() + ttl_ms, oneway),
                   0);
}

static void test_sessions(void **state) {
  td_config_defaults(&cfg);
  cfg.max_sessions_per_device = 2;
  cfg.device_actor_idle_ms = 50;
  struct td_actor_system_config acfg = {.threads = 2, .throughput = 5};
  assert_int_equal(td_actor_system_new(&acfg, &ctx.actors), 0);
  ctx.cfg = &cfg;
  assert_int_equal(td_rule_engine_new(&ctx, &ctx.rules), 0);
  td_rule_engine_set_loader(ctx.rules, no_chain, NULL);
  assert_int_equal(td_loop_init(&loop, 0), 0);
  assert_int_equal(td_loop_start(&loop), 0);
  td_uuid_new(&tenant);
  td_uuid_new(&device);

  struct td_dsession *s[3];
  for (int i = 0; i < 3; i++) {
    sess_index[i] = i;
    s[i] = td_dsession_new(&loop, &OPS, &sess_index[i], &device, &tenant);
    assert_non_null(s[i]);
    assert_int_equal(td_core_session_open(&ctx, s[i]), 0);
  }
  /* max 2: the eldest is taken over */
  wait_events(1);
  assert_int_equal(R.ev[0].kind, 'C');
  assert_int_equal(R.ev[0].sess, 0);
  assert_int_equal(R.ev[0].reason, 0x8E);

  /* attribute push only to subscribed sessions (events are in order per device) */
  assert_int_equal(td_core_session_subscribe(&ctx, s[1], true, false), 0);
  assert_int_equal(td_core_attributes_changed(&ctx, &tenant, &device, "{\"a\":1}", 7), 0);
  assert_int_equal(td_core_session_subscribe(&ctx, s[2], true, false), 0);
  assert_int_equal(td_core_attributes_changed(&ctx, &tenant, &device, "{\"deleted\":[\"a\"]}", 17), 0);
  wait_events(4);
  assert_int_equal(count_kind('A', 1), 2);
  assert_int_equal(count_kind('A', 2), 1);
  assert_string_equal(R.ev[1].text, "{\"a\":1}");
  assert_int_equal(count_kind('A', 0), 0);

  /* twoway RPC to the session subscribed to RPC; its reply completes the waiter */
  assert_int_equal(td_core_session_subscribe(&ctx, s[2], true, true), 0);
  struct td_rpc_waiter w1;
  rpc(&w1, 5000, false);
  wait_events(5);
  assert_int_equal(R.ev[4].kind, 'R');
  assert_int_equal(R.ev[4].sess, 2);
  assert_int_equal(R.ev[4].id, 0);
  assert_string_equal(R.ev[4].text, "setGpio");
  assert_int_equal(td_core_rpc_reply(&ctx, s[2], 0, "{\"ok\":true}", 11), 0);
  int one = 1;
  assert_true(wait_for(waiter_done, &one));
  assert_int_equal(R.error, 0);
  assert_string_equal(R.payload, "{\"ok\":true}");
  assert_int_equal(td_rpc_waiter_count(), 0);

  /* the actor with sessions outlives its idle timeout (50 ms): the same actor
   * (rpcSeq continues at 1) still knows the session */
  struct timespec ts = {0, 300 * 1000000L};
  nanosleep(&ts, NULL);
  struct td_rpc_waiter w2;
  rpc(&w2, 5000, true); /* oneway: done once sent */
  int two = 2;
  assert_true(wait_for(waiter_done, &two));
  assert_int_equal(R.error, 0);
  wait_events(6);
  assert_int_equal(R.ev[5].kind, 'R');
  assert_int_equal(R.ev[5].id, 1);
  assert_int_equal(R.ev[5].reason, 1); /* oneway */

  /* session closed: no subscriber -> NO_ACTIVE_CONNECTION at expiry */
  assert_int_equal(td_core_session_close(&ctx, s[2]), 0);
  struct td_rpc_waiter w3;
  rpc(&w3, 100, false);
  int three = 3;
  assert_true(wait_for(waiter_done, &three));
  assert_int_equal(R.error, TD_ECLOSED);
  assert_int_equal(count_kind('R', -1), 2);

  /* a pending RPC goes to the next session that subscribes; sent but
   * unanswered -> TIMEOUT */
  struct td_rpc_waiter w4;
  rpc(&w4, 400, false);
  assert_int_equal(td_core_session_subscribe(&ctx, s[1], true, true), 0);
  wait_events(7);
  assert_int_equal(R.ev[6].kind, 'R');
  assert_int_equal(R.ev[6].sess, 1);
  int four = 4;
  assert_true(wait_for(waiter_done, &four));
  assert_int_equal(R.error, TD_ETIMEDOUT);

  td_rule_engine_free(ctx.rules);
  td_actor_system_free(ctx.actors);
  td_loop_stop(&loop);
  td_loop_deinit(&loop);
  for (int i = 0; i < 3; i++) td_dsession_unref(s[i]);
}

static void test_claims(void **state) {
  struct td_uuid d;
  td_uuid_new(&d);
  int64_t now = td_now_ms();
  assert_int_equal(td_core_claim_take(&d, "", now), TD_CLAIM_NONE);
  assert_int_equal(td_core_claim_device(NULL, &d, &d, "s3cret", 60000), 0);
  assert_int_equal(td_core_claim_device(NULL, &d, &d, "other", 60000), 0); /* kept: putIfAbsent */
  assert_int_equal(td_core_claim_take(&d, "s3cret", now), TD_CLAIM_OK);
  assert_int_equal(td_core_claim_take(&d, "s3cret", now), TD_CLAIM_NONE); /* consumed */
  assert_int_equal(td_core_claim_device(NULL, &d, &d, "k", 1000), 0);
  assert_int_equal(td_core_claim_take(&d, "k", now + 5000), TD_CLAIM_BAD); /* expired */
  assert_int_equal(td_core_claim_device(NULL, &d, &d, "k", 0), 0);        /* default duration */
  assert_int_equal(td_core_claim_take(&d, "wrong", now), TD_CLAIM_BAD);
  assert_int_equal(td_core_claim_take(&d, "k", now), TD_CLAIM_NONE);      /* dropped by the failure */
  assert_int_equal(td_core_claim_device(NULL, &d, &d, "", 0), 0);
  td_core_claim_drop(&d);
  assert_int_equal(td_core_claim_take(&d, "", now), TD_CLAIM_NONE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sessions),
      cmocka_unit_test(test_claims),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
