/* test_rule.c — rule engine: chain validation (the ThingsBoard compat chains,
 * unknown node types), message type switch labels, and routing semantics
 * through the real actor hierarchy (App -> Tenant -> Device -> Rule chain ->
 * Rule node actors) with test node types and a fake queue that records acks.
 * The chain is supplied through td_rule_engine_set_loader, so no database is
 * needed here. */
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
#include "base/log.h"
#include "core/ctx.h"
#include "queue/queue.h"
#include "rule/engine.h"
#include "rule/rule_node.h"

/* ---------------------------------------------------------------- fixtures */

static json_t *load_fixture(const char *name) {
  char path[2048];
  const char *root = getenv("TD_SRC_DIR");
  if (root) {
    snprintf(path, sizeof path, "%s/tests/fixtures/compat/%s", root, name);
  } else { /* this file is <root>/tests/unit/rule/test_rule.c */
    snprintf(path, sizeof path, "%s", __FILE__);
    char *p = strstr(path, "tests/unit/rule/test_rule.c");
    assert_non_null(p);
    snprintf(p, sizeof path - (size_t)(p - path), "tests/fixtures/compat/%s", name);
  }
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  if (!j) fprintf(stderr, "cannot load %s: %s\n", path, e.text);
  assert_non_null(j);
  return j;
}

/* ---------------------------------------------------------------- validation */

static void test_validate_compat(void **s) {
  const char *files[] = {"root_rule_chain_3x.json", "root_rule_chain_4x.json"};
  for (size_t i = 0; i < 2; i++) {
    json_t *j = load_fixture(files[i]);
    char err[256] = "";
    int rc = td_rule_chain_validate(json_object_get(j, "metadata"), err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", files[i], err);
    assert_int_equal(rc, 0);
    json_decref(j);
  }
}

static void test_validate_rejects(void **s) {
  json_t *j = load_fixture("root_rule_chain_4x.json");
  json_t *md = json_object_get(j, "metadata");
  char err[256];

  json_t *bad = json_deep_copy(md);
  json_object_set_new(json_array_get(json_object_get(bad, "nodes"), 3), "type",
                      json_string("org.thingsboard.rule.engine.foo.TbNoSuchNode"));
  assert_int_equal(td_rule_chain_validate(bad, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "org.thingsboard.rule.engine.foo.TbNoSuchNode"));
  json_decref(bad);

  bad = json_deep_copy(md);
  json_object_set_new(bad, "firstNodeIndex", json_integer(6));
  assert_int_equal(td_rule_chain_validate(bad, err, sizeof err), TD_EINVAL);
  json_decref(bad);

  bad = json_deep_copy(md);
  json_object_set_new(json_array_get(json_object_get(bad, "connections"), 0), "toIndex", json_integer(17));
  assert_int_equal(td_rule_chain_validate(bad, err, sizeof err), TD_EINVAL);
  json_decref(bad);

  bad = json_deep_copy(md); /* a bad node configuration fails its init */
  json_object_set_new(json_object_get(json_array_get(json_object_get(bad, "nodes"), 1), "configuration"), "scope",
                      json_string("NO_SUCH_SCOPE"));
  assert_int_equal(td_rule_chain_validate(bad, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "Save Client Attributes"));
  json_decref(bad);

  bad = json_deep_copy(md); /* unknown configuration fields are ignored */
  json_object_set_new(json_object_get(json_array_get(json_object_get(bad, "nodes"), 0), "configuration"), "futureField",
                      json_true());
  json_object_set_new(bad, "someNewTopLevelField", json_integer(1));
  assert_int_equal(td_rule_chain_validate(bad, err, sizeof err), 0);
  json_decref(bad);

  json_decref(j);
}

static void test_msg_type_labels(void **s) {
  assert_string_equal(td_rule_msg_type_label("POST_TELEMETRY_REQUEST"), "Post telemetry");
  assert_string_equal(td_rule_msg_type_label("POST_ATTRIBUTES_REQUEST"), "Post attributes");
  assert_string_equal(td_rule_msg_type_label("TO_SERVER_RPC_REQUEST"), "RPC Request from Device");
  assert_string_equal(td_rule_msg_type_label("RPC_CALL_FROM_SERVER_TO_DEVICE"), "RPC Request to Device");
  assert_string_equal(td_rule_msg_type_label("ACTIVITY_EVENT"), "Activity Event");
  assert_string_equal(td_rule_msg_type_label("INACTIVITY_EVENT"), "Inactivity Event");
  assert_string_equal(td_rule_msg_type_label("CONNECT_EVENT"), "Connect Event");
  assert_string_equal(td_rule_msg_type_label("DISCONNECT_EVENT"), "Disconnect Event");
  assert_string_equal(td_rule_msg_type_label("ENTITY_ASSIGNED"), "Entity Assigned");
  assert_string_equal(td_rule_msg_type_label("ATTRIBUTES_DELETED"), "Attributes Deleted");
  assert_string_equal(td_rule_msg_type_label("TIMESERIES_UPDATED"), "Timeseries Updated");
  assert_string_equal(td_rule_msg_type_label("ALARM_ACK"), "Alarm Acknowledged");
  assert_string_equal(td_rule_msg_type_label("RELATIONS_DELETED"), "All Relations Deleted");
  assert_string_equal(td_rule_msg_type_label("ALARM"), "Other");
  assert_string_equal(td_rule_msg_type_label("MY_CUSTOM_TYPE"), "Other");
  assert_string_equal(td_rule_msg_type_label(NULL), "Other");
  assert_non_null(td_rule_node_type_find("org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode"));
  assert_null(td_rule_node_type_find("org.thingsboard.rule.engine.filter.TbNope"));
}

/* ---------------------------------------------------------------- test node types */

/* test.Emit: tell_next with the labels in configuration {"labels":[...]} . */
struct emit {
  size_t n;
  char *l[4];
};
static int emit_init(json_t *c, void **state, char *err, size_t errlen) {
  struct emit *e = calloc(1, sizeof *e);
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(c, "labels"), i, v) if (e->n < 4) e->l[e->n++] = strdup(json_string_value(v));
  *state = e;
  return 0;
}
static void emit_on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct emit *e = ctx->state;
  td_rule_tell_next(ctx, msg, (const char *const *)e->l, e->n);
}
static void emit_destroy(void *st) {
  struct emit *e = st;
  for (size_t i = 0; i < e->n; i++) free(e->l[i]);
  free(e);
}
static const struct td_rule_node_type emit_type = {"test.Emit", emit_init, emit_on_msg, emit_destroy};

/* test.Record: counts arrivals in slot configuration {"slot":k}, checks per-originator order, ends with Success. */
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static int rec_count[8];
static int64_t rec_last_seq[8];
static int rec_order_errors;
static int rec_init(json_t *c, void **state, char *err, size_t errlen) {
  *state = (void *)(intptr_t)json_integer_value(json_object_get(c, "slot"));
  return 0;
}
static void rec_on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  int slot = (int)(intptr_t)ctx->state;
  const char *seq = td_msg_md_get(msg, "seq");
  pthread_mutex_lock(&rec_mu);
  rec_count[slot]++;
  if (seq) {
    int64_t v = atoll(seq);
    if (v <= rec_last_seq[slot]) rec_order_errors++;
    rec_last_seq[slot] = v;
  }
  pthread_mutex_unlock(&rec_mu);
  td_rule_tell_success(ctx, msg);
}
static const struct td_rule_node_type rec_type = {"test.Record", rec_init, rec_on_msg, NULL};

/* test.Async: completes from another thread with Success. */
static void *async_thread(void *arg) {
  td_rule_async_success(arg);
  return NULL;
}
static void async_on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct td_rule_async *h = td_rule_async_begin(ctx, msg);
  assert_non_null(h);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, async_thread, h), 0);
  pthread_detach(t);
}
static const struct td_rule_node_type async_type = {"test.Async", NULL, async_on_msg, NULL};

/* ---------------------------------------------------------------- fake queue */

struct fake_queue {
  struct td_queue q;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t acked;
};
static struct fake_queue fq;

static void fq_ack(struct td_queue *q, uint64_t token) {
  (void)token;
  pthread_mutex_lock(&fq.mu);
  fq.acked++;
  pthread_cond_broadcast(&fq.cv);
  pthread_mutex_unlock(&fq.mu);
}
static const struct td_queue_ops fq_ops = {.version = 1, .ack = fq_ack};

/* wait_acked: until n acks or 5 s (a bound, not a sleep: returns as soon as reached). */
static uint64_t wait_acked(uint64_t n) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 5;
  pthread_mutex_lock(&fq.mu);
  while (fq.acked < n)
    if (pthread_cond_timedwait(&fq.cv, &fq.mu, &dl)) break;
  uint64_t a = fq.acked;
  pthread_mutex_unlock(&fq.mu);
  return a;
}

/* ---------------------------------------------------------------- engine harness */

struct harness {
  struct td_config cfg;
  struct td_ctx ctx;
  struct td_rule_engine *re;
  json_t *md; /* what the loader returns */
};

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t load_cv = PTHREAD_COND_INITIALIZER;
static int loads;

static int64_t harness_idle_ms;

static int loader(void *arg, const struct td_uuid *tenant_id, json_t **md) {
  struct harness *h = arg;
  pthread_mutex_lock(&load_mu);
  int rc = h->md ? 0 : TD_ENOTFOUND;
  if (h->md) *md = json_incref(h->md);
  loads++;
  pthread_cond_broadcast(&load_cv);
  pthread_mutex_unlock(&load_mu);
  return rc;
}

static void harness_start(struct harness *h, json_t *md) {
  memset(h, 0, sizeof *h);
  memset(&fq, 0, sizeof fq);
  pthread_mutex_init(&fq.mu, NULL);
  pthread_cond_init(&fq.cv, NULL);
  fq.q.ops = &fq_ops;
  td_config_defaults(&h->cfg);
  h->cfg.device_actor_idle_ms = harness_idle_ms;
  h->ctx.cfg = &h->cfg;
  h->ctx.queue = &fq.q;
  struct td_actor_system_config ac = {.threads = 2, .throughput = 5};
  assert_int_equal(td_actor_system_new(&ac, &h->ctx.actors), 0);
  assert_int_equal(td_rule_engine_new(&h->ctx, &h->re), 0);
  h->md = md;
  td_rule_engine_set_loader(h->re, loader, h);
}

static void harness_stop(struct harness *h) {
  td_rule_engine_stop(h->re);
  assert_int_equal(td_rule_engine_inflight(h->re), 0);
  td_rule_engine_free(h->re);
  td_actor_system_free(h->ctx.actors);
  if (h->md) json_decref(h->md);
  pthread_mutex_destroy(&fq.mu);
  pthread_cond_destroy(&fq.cv);
}

static struct td_uuid tenant_a;

static void submit(struct harness *h, const char *type, enum td_entity_type otype, const struct td_uuid *oid,
                   int64_t seq, const char *data) {
  struct td_entity_id o = {.type = otype, .id = *oid};
  char sq[32];
  snprintf(sq, sizeof sq, "%lld", (long long)seq);
  struct td_msg_md md[] = {{"seq", sq}, {"deviceName", "d1"}};
  struct td_msg *m = td_msg_new(type, &o, &tenant_a, td_uuid_null(), md, 2, TD_MSG_DATA_JSON, data, strlen(data));
  assert_non_null(m);
  td_rule_engine_submit(h->re, m, (uint64_t)seq);
}

/* emit_chain: node0 = Emit(labels) first; node1 Record slot1 on "A"; node2
 * Record slot2 on "B"; node3 Async on "C" -> node4 Record slot4 on Success. */
static json_t *emit_chain(const char *labels_json) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "{\"firstNodeIndex\":0,\"nodes\":["
           "{\"type\":\"test.Emit\",\"name\":\"emit\",\"configuration\":{\"labels\":%s}},"
           "{\"type\":\"test.Record\",\"name\":\"r1\",\"configuration\":{\"slot\":1}},"
           "{\"type\":\"test.Record\",\"name\":\"r2\",\"configuration\":{\"slot\":2}},"
           "{\"type\":\"test.Async\",\"name\":\"async\",\"configuration\":{}},"
           "{\"type\":\"test.Record\",\"name\":\"r4\",\"configuration\":{\"slot\":4}}],"
           "\"connections\":[{\"fromIndex\":0,\"toIndex\":1,\"type\":\"A\"},"
           "{\"fromIndex\":0,\"toIndex\":2,\"type\":\"B\"},"
           "{\"fromIndex\":0,\"toIndex\":3,\"type\":\"C\"},"
           "{\"fromIndex\":3,\"toIndex\":4,\"type\":\"Success\"}]}",
           labels_json);
  json_error_t e;
  json_t *j = json_loads(buf, 0, &e);
  assert_non_null(j);
  return j;
}

static void reset_records(void) {
  memset(rec_count, 0, sizeof rec_count);
  memset(rec_last_seq, 0, sizeof rec_last_seq);
  rec_order_errors = 0;
}

static void run_emit(const char *labels, int n, uint64_t *failed) {
  struct harness h;
  reset_records();
  harness_start(&h, emit_chain(labels));
  struct td_uuid dev;
  td_uuid_new(&dev);
  for (int i = 1; i <= n; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{\"t\":1}");
  assert_int_equal(wait_acked((uint64_t)n), n);
  uint64_t done;
  td_rule_engine_stats(h.re, &done, failed);
  assert_int_equal(done, n);
  harness_stop(&h);
}

static void test_route_single_match(void **s) {
  uint64_t failed;
  run_emit("[\"A\"]", 50, &failed);
  assert_int_equal(failed, 0);
  assert_int_equal(rec_count[1], 50);
  assert_int_equal(rec_count[2], 0);
  assert_int_equal(rec_order_errors, 0); /* per-device order kept */
}

static void test_route_several_matches(void **s) {
  uint64_t failed;
  run_emit("[\"A\",\"B\"]", 20, &failed);
  assert_int_equal(failed, 0);
  assert_int_equal(rec_count[1], 20);
  assert_int_equal(rec_count[2], 20);
}

static void test_route_no_match_is_success(void **s) {
  uint64_t failed;
  run_emit("[\"Z\"]", 10, &failed);
  assert_int_equal(failed, 0);
  assert_int_equal(rec_count[1] + rec_count[2], 0);
}

static void test_route_failure_without_link_fails(void **s) {
  uint64_t failed;
  run_emit("[\"Failure\"]", 10, &failed);
  assert_int_equal(failed, 10);
}

static void test_route_async(void **s) {
  uint64_t failed;
  run_emit("[\"C\"]", 30, &failed);
  assert_int_equal(failed, 0);
  assert_int_equal(rec_count[4], 30);
}

/* td_rule_engine_chain_changed: the tenant reloads its root chain; messages
 * after the reload take the new chain. */
static void test_chain_changed(void **s) {
  struct harness h;
  reset_records();
  harness_start(&h, emit_chain("[\"A\"]"));
  struct td_uuid dev;
  td_uuid_new(&dev);
  for (int i = 1; i <= 5; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{}");
  assert_int_equal(wait_acked(5), 5);
  pthread_mutex_lock(&load_mu);
  json_decref(h.md);
  h.md = emit_chain("[\"B\"]");
  int before = loads;
  pthread_mutex_unlock(&load_mu);
  td_rule_engine_chain_changed(h.re, &tenant_a);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 5;
  pthread_mutex_lock(&load_mu);
  while (loads == before)
    if (pthread_cond_timedwait(&load_cv, &load_mu, &dl)) break;
  assert_int_equal(loads, before + 1);
  pthread_mutex_unlock(&load_mu);
  /* The tenant swaps chains in the same turn as the load: later messages see the new one. */
  for (int i = 6; i <= 10; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{}");
  assert_int_equal(wait_acked(10), 10);
  assert_int_equal(rec_count[1], 5);
  assert_int_equal(rec_count[2], 5);
  harness_stop(&h);
}

/* Device actors stop after the idle time and come back on the next message;
 * the pause lets the idle timer fire (the assertions do not depend on it). */
static void test_device_idle(void **s) {
  struct harness h;
  reset_records();
  harness_idle_ms = 10;
  harness_start(&h, emit_chain("[\"A\"]"));
  struct td_uuid dev;
  td_uuid_new(&dev);
  for (int i = 1; i <= 5; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{}");
  assert_int_equal(wait_acked(5), 5);
  struct timespec ts = {0, 60 * 1000 * 1000};
  nanosleep(&ts, NULL);
  for (int i = 6; i <= 10; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{}");
  assert_int_equal(wait_acked(10), 10);
  assert_int_equal(rec_count[1], 10);
  assert_int_equal(rec_order_errors, 0);
  harness_stop(&h);
  harness_idle_ms = 0;
}

/* No root chain: messages end as failed but are still acked. */
static void test_no_chain(void **s) {
  struct harness h;
  harness_start(&h, NULL);
  struct td_uuid dev;
  td_uuid_new(&dev);
  for (int i = 1; i <= 5; i++) submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, i, "{}");
  assert_int_equal(wait_acked(5), 5);
  uint64_t done, failed;
  td_rule_engine_stats(h.re, &done, &failed);
  assert_int_equal(failed, 5);
  harness_stop(&h);
}

/* The compat chains run: without a writer the save nodes fail (no Failure
 * link -> failed, acked); RPC from device goes to the log node (success);
 * RPC to device fails (not available yet); custom types go to "Log Other". */
static void run_compat(const char *file) {
  struct harness h;
  json_t *j = load_fixture(file);
  harness_start(&h, json_incref(json_object_get(j, "metadata")));
  json_decref(j);
  struct td_uuid dev, asset;
  td_uuid_new(&dev);
  td_uuid_new(&asset);
  submit(&h, "TO_SERVER_RPC_REQUEST", TD_ENTITY_DEVICE, &dev, 1, "{\"method\":\"m\",\"params\":{}}");
  submit(&h, "MY_CUSTOM_TYPE", TD_ENTITY_ASSET, &asset, 2, "{\"x\":1}");
  assert_int_equal(wait_acked(2), 2);
  uint64_t done, failed;
  td_rule_engine_stats(h.re, &done, &failed);
  assert_int_equal(failed, 0);
  submit(&h, "RPC_CALL_FROM_SERVER_TO_DEVICE", TD_ENTITY_DEVICE, &dev, 3, "{\"method\":\"m\",\"params\":{}}");
  submit(&h, "POST_TELEMETRY_REQUEST", TD_ENTITY_DEVICE, &dev, 4, "{\"t\":1}");
  submit(&h, "POST_ATTRIBUTES_REQUEST", TD_ENTITY_DEVICE, &dev, 5, "{\"a\":1}");
  assert_int_equal(wait_acked(5), 5);
  td_rule_engine_stats(h.re, &done, &failed);
  assert_int_equal(failed, 3);
  harness_stop(&h);
}

static void test_compat_chains_run(void **s) {
  run_compat("root_rule_chain_3x.json");
  run_compat("root_rule_chain_4x.json");
}

static int setup(void **s) {
  static int once;
  if (!once) {
    once = 1;
    td_log_set_level(getenv("TD_TEST_LOG") ? TD_LOG_INFO : TD_LOG_ERROR);
    assert_int_equal(td_rule_node_type_register(&emit_type), 0);
    assert_int_equal(td_rule_node_type_register(&rec_type), 0);
    assert_int_equal(td_rule_node_type_register(&async_type), 0);
    assert_int_equal(td_rule_node_type_register(&rec_type), TD_EEXIST);
    td_uuid_new(&tenant_a);
  }
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validate_compat),
      cmocka_unit_test(test_validate_rejects),
      cmocka_unit_test(test_msg_type_labels),
      cmocka_unit_test(test_route_single_match),
      cmocka_unit_test(test_route_several_matches),
      cmocka_unit_test(test_route_no_match_is_success),
      cmocka_unit_test(test_route_failure_without_link_fails),
      cmocka_unit_test(test_route_async),
      cmocka_unit_test(test_chain_changed),
      cmocka_unit_test(test_device_idle),
      cmocka_unit_test(test_no_chain),
      cmocka_unit_test(test_compat_chains_run),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
