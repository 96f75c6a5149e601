/* test_rule_e2e.c — the message path end to end with the real parts: a log
 * queue, the actor system, the dbpool (root chain loading), the batched
 * writer and the sqlite store, in a temporary directory. Two tenants get
 * ThingsBoard's 3.x and 4.3+ root chains (tests/fixtures/compat, imported
 * unchanged); telemetry and attributes produced to the queue must end up
 * stored, and every message acknowledged. */
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
#include "base/time.h"
#include "core/ctx.h"
#include "core/tenant_defaults.h"
#include "queue/queue.h"
#include "rule/engine.h"
#include "store/dbpool.h"
#include "store/writer.h"

#define N 40 /* telemetry messages per device */

static json_t *load_fixture(const char *name) {
  char path[2048];
  const char *root = getenv("TD_SRC_DIR");
  if (root) {
    snprintf(path, sizeof path, "%s/tests/fixtures/compat/%s", root, name);
  } else { /* this file is <root>/tests/unit/rule/test_rule_e2e.c */
    snprintf(path, sizeof path, "%s", __FILE__);
    char *p = strstr(path, "tests/unit/rule/test_rule_e2e.c");
    assert_non_null(p);
    snprintf(p, sizeof path - (size_t)(p - path), "tests/fixtures/compat/%s", name);
  }
  json_t *j = json_load_file(path, 0, NULL);
  assert_non_null(j);
  return j;
}

static struct td_uuid make_tenant(struct td_store *st, const char *title, const char *chain_file) {
  json_t *in = json_pack("{s:s}", "title", title), *out = NULL;
  assert_int_equal(td_store_tenant_save(st, in, &out), 0);
  json_decref(in);
  struct td_uuid id;
  assert_int_equal(td_uuid_parse(json_string_value(json_object_get(json_object_get(out, "id"), "id")), &id), 0);
  json_decref(out);
  json_t *exp = load_fixture(chain_file);
  char err[256] = "";
  int rc = td_rule_chain_import(st, &id, exp, true, NULL, err, sizeof err);
  if (rc) fprintf(stderr, "import %s: %s\n", chain_file, err);
  assert_int_equal(rc, 0);
  json_decref(exp);
  return id;
}

struct produced {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls, failed;
};

static void produce_done(void *arg, int status) {
  struct produced *p = arg;
  pthread_mutex_lock(&p->mu);
  p->calls++;
  if (status) p->failed++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static void produce(struct td_queue *q, struct td_msg *m, struct produced *p) {
  assert_int_equal(td_queue_produce(q, &m, 1, produce_done, p), 0);
  td_msg_unref(m);
}

static struct td_msg *telemetry(const struct td_uuid *tenant, const struct td_uuid *dev, int i) {
  struct td_entity_id o = {.type = TD_ENTITY_DEVICE, .id = *dev};
  char ts[32], data[128];
  snprintf(ts, sizeof ts, "%lld", 1700000000000LL + i);
  snprintf(data, sizeof data, "{\"temperature\":%d.5,\"n\":%d,\"on\":true}", 20 + i, i);
  struct td_msg_md md[] = {{"deviceName", "d"}, {"deviceType", "default"}, {"ts", ts}};
  return td_msg_new(TD_MSG_POST_TELEMETRY, &o, tenant, td_uuid_null(), md, 3, TD_MSG_DATA_JSON, data, strlen(data));
}

static struct td_msg *attributes(const struct td_uuid *tenant, const struct td_uuid *dev) {
  struct td_entity_id o = {.type = TD_ENTITY_DEVICE, .id = *dev};
  const char *data = "{\"fw\":\"1.0.3\",\"slots\":4}";
  struct td_msg_md md[] = {{"deviceName", "d"}, {"notifyDevice", "false"}};
  return td_msg_new(TD_MSG_POST_ATTRIBUTES, &o, tenant, td_uuid_null(), md, 2, TD_MSG_DATA_JSON, data, strlen(data));
}

static void check_device(struct td_store *st, const struct td_uuid *dev) {
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE, .id = *dev};
  int64_t count = 0;
  assert_int_equal(td_store_ts_count(st, &e, &count), 0);
  assert_int_equal(count, 3 * N);
  struct td_arena a;
  td_arena_init(&a, 0);
  const char *keys[] = {"temperature"};
  struct td_ts_point *pts;
  size_t n;
  assert_int_equal(td_store_ts_latest(st, &e, keys, 1, &a, &pts, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(pts[0].ts, 1700000000000LL + N - 1); /* ts from metadata */
  assert_int_equal(pts[0].kv.type, TD_KV_DOUBLE);
  assert_true(pts[0].kv.v.d == 20 + N - 1 + 0.5);
  struct td_attr *at;
  assert_int_equal(td_store_attributes_get(st, &e, TD_SCOPE_CLIENT, NULL, 0, &a, &at, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(at[0].kv.key, "fw");
  assert_int_equal(at[0].kv.type, TD_KV_STRING);
  assert_string_equal(at[0].kv.v.s, "1.0.3");
  assert_string_equal(at[1].kv.key, "slots");
  assert_int_equal(at[1].kv.type, TD_KV_LONG);
  td_arena_deinit(&a);
}

static void test_e2e_root_chains(void **s) {
  char dir[1024], path[1100], qdir[1100];
  const char *tmp = getenv("TD_TEST_TMP");
  snprintf(dir, sizeof dir, "%s/rule-e2e-XXXXXX", tmp ? tmp : "/tmp");
  if (tmp) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
    assert_int_equal(system(cmd), 0);
  }
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/thingsd.db", dir);
  snprintf(qdir, sizeof qdir, "%s/queue", dir);

  struct td_store_config scfg = {.type = "sqlite", .path = path};
  struct td_store *st;
  assert_int_equal(td_store_open(&scfg, true, &st), 0);
  struct td_uuid t3 = make_tenant(st, "T3", "root_rule_chain_3x.json");
  struct td_uuid t4 = make_tenant(st, "T4", "root_rule_chain_4x.json");

  struct td_config cfg;
  td_config_defaults(&cfg);
  struct td_ctx ctx = {.cfg = &cfg};
  struct td_dbpool_config pc = {.threads = 1};
  assert_int_equal(td_dbpool_new(&scfg, &pc, &ctx.db), 0);
  struct td_writer_config wc = {0};
  assert_int_equal(td_writer_new(&scfg, &wc, &ctx.writer), 0);
  struct td_queue_config qc = {.type = "log", .dir = qdir, .partitions = 4, .fsync = 0};
  assert_int_equal(td_queue_open(&qc, &ctx.queue), 0);
  struct td_actor_system_config ac = {.threads = 2, .throughput = 5};
  assert_int_equal(td_actor_system_new(&ac, &ctx.actors), 0);
  assert_int_equal(td_rule_engine_new(&ctx, &ctx.rules), 0);
  assert_int_equal(td_rule_engine_start(ctx.rules), 0);

  struct produced p = {.calls = 0};
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  struct td_uuid d3, d4;
  td_uuid_new(&d3);
  td_uuid_new(&d4);
  int total = 0;
  for (int i = 0; i < N; i++) {
    produce(ctx.queue, telemetry(&t3, &d3, i), &p);
    produce(ctx.queue, telemetry(&t4, &d4, i), &p);
    total += 2;
  }
  produce(ctx.queue, attributes(&t3, &d3), &p);
  produce(ctx.queue, attributes(&t4, &d4), &p);
  total += 2;

  /* Wait (bounded, 20 s) until every message is acknowledged by the engine. */
  int64_t deadline = td_mono_ms() + 20000;
  uint64_t produced = 0, acked = 0;
  size_t inflight = 0;
  while (td_mono_ms() < deadline) {
    td_queue_stats(ctx.queue, &produced, &acked, &inflight);
    if (acked >= (uint64_t)total) break;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(acked, total);
  uint64_t done, failed;
  td_rule_engine_stats(ctx.rules, &done, &failed);
  assert_int_equal(done, total);
  assert_int_equal(failed, 0);
  pthread_mutex_lock(&p.mu);
  assert_int_equal(p.calls, total);
  assert_int_equal(p.failed, 0);
  pthread_mutex_unlock(&p.mu);

  /* Shutdown in the documented order. */
  td_rule_engine_stop(ctx.rules);
  td_writer_free(ctx.writer);
  td_rule_engine_free(ctx.rules);
  td_actor_system_free(ctx.actors);
  td_queue_close(ctx.queue);
  td_dbpool_free(ctx.db);

  check_device(st, &d3);
  check_device(st, &d4);
  td_store_close(st);
  pthread_mutex_destroy(&p.mu);
  pthread_cond_destroy(&p.cv);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  td_log_set_level(getenv("TD_TEST_LOG") ? TD_LOG_INFO : TD_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_e2e_root_chains),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
