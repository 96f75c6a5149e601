/* test_ws_cmd.c — the WebSocket telemetry API's wire formats
 * (src/api/ws_cmd.c): legacy and new command wrappers, per-command errors
 * versus whole-payload errors, and the exact update texts of reference §3.3
 * (values as strings, keys sorted, latestValues, errors, ENTITY_DATA
 * updates). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "api/ws_api_int.h"
#include "base/err.h"

#define DEV "3e6a3a70-1a2b-11ef-8000-000000000001"
#define DEV2 "3e6a3a70-1a2b-11ef-8000-000000000002"

static int parse(const char *text, struct td_arena *a, struct ws_msg *m) {
  return ws_parse(text, strlen(text), a, m);
}

static void test_legacy_wrapper(void **state) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  assert_int_equal(parse("{\"tsSubCmds\":[{\"cmdId\":1,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"keys\":\"temperature, humidity\",\"scope\":\"LATEST_TELEMETRY\"}],"
                         "\"historyCmds\":[{\"cmdId\":2,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"keys\":\"t\",\"startTs\":1000,\"endTs\":2000,\"interval\":100,\"limit\":5,\"agg\":\"AVG\"}],"
                         "\"attrSubCmds\":[{\"cmdId\":3,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"keys\":\"\",\"scope\":\"SHARED_SCOPE\"},"
                         "{\"cmdId\":4,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV "\",\"unsubscribe\":true}],"
                         "\"entityDataUnsubscribeCmds\":[{\"cmdId\":9}]}",
                         &a, &m),
                   0);
  assert_false(m.has_auth);
  assert_int_equal(m.ncmds, 5);
  const struct ws_cmd *c = &m.cmds[0];
  assert_int_equal(c->type, WS_CMD_TS);
  assert_int_equal(c->cmd_id, 1);
  assert_null(c->error);
  assert_int_equal(c->e.type, TD_ENTITY_DEVICE);
  assert_int_equal(c->nkeys, 2);
  assert_string_equal(c->keys[0], "temperature");
  assert_string_equal(c->keys[1], "humidity");
  c = &m.cmds[1];
  assert_int_equal(c->type, WS_CMD_HISTORY);
  assert_int_equal(c->start_ts, 1000);
  assert_int_equal(c->end_ts, 2000);
  assert_int_equal(c->interval, 100);
  assert_int_equal(c->limit, 5);
  assert_int_equal(c->agg, TD_AGG_AVG);
  c = &m.cmds[2];
  assert_int_equal(c->type, WS_CMD_ATTRS);
  assert_int_equal(c->scope, TD_SCOPE_SHARED);
  assert_int_equal(c->nkeys, 0); /* "" = every key */
  assert_null(c->keys);
  c = &m.cmds[3];
  assert_true(c->unsubscribe);
  assert_int_equal(c->cmd_id, 4);
  c = &m.cmds[4];
  assert_int_equal(c->type, WS_CMD_UNSUB);
  assert_int_equal(c->cmd_id, 9);
  td_arena_deinit(&a);
}

static void test_new_wrapper_and_auth(void **state) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  assert_int_equal(parse("{\"authCmd\":{\"cmdId\":0,\"token\":\"abc.def.ghi\"},\"cmds\":["
                         "{\"type\":\"TIMESERIES\",\"cmdId\":1,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"keys\":\"t\"},"
                         "{\"type\":\"ATTRIBUTES\",\"cmdId\":2,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"keys\":\"a,b\",\"scope\":\"CLIENT_SCOPE\"},"
                         "{\"type\":\"ENTITY_DATA_UNSUBSCRIBE\",\"cmdId\":4},"
                         "{\"type\":\"ALARM_DATA\",\"cmdId\":5}]}",
                         &a, &m),
                   0);
  assert_true(m.has_auth);
  assert_string_equal(m.token, "abc.def.ghi");
  assert_int_equal(m.ncmds, 4);
  assert_int_equal(m.cmds[0].type, WS_CMD_TS);
  assert_int_equal(m.cmds[1].type, WS_CMD_ATTRS);
  assert_int_equal(m.cmds[1].scope, TD_SCOPE_CLIENT);
  assert_int_equal(m.cmds[2].type, WS_CMD_UNSUB);
  assert_int_equal(m.cmds[3].type, WS_CMD_UNSUPPORTED);
  assert_string_equal(m.cmds[3].name, "ALARM_DATA");
  /* authCmd alone */
  assert_int_equal(parse("{\"authCmd\":{\"cmdId\":0,\"token\":\"x\"}}", &a, &m), 0);
  assert_true(m.has_auth);
  assert_int_equal(m.ncmds, 0);
  td_arena_deinit(&a);
}

static void test_payload_errors(void **state) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  const char *bad[] = {
      "",
      "not json",
      "[1,2]",
      "{\"tsSubCmds\":{}}",
      "{\"tsSubCmds\":[1]}",
      "{\"tsSubCmds\":[{\"cmdId\":\"x\"}]}",
      "{\"tsSubCmds\":[{\"cmdId\":1,\"keys\":5}]}",
      "{\"cmds\":[{\"type\":\"NO_SUCH_TYPE\",\"cmdId\":1}]}",
      "{\"cmds\":[{\"cmdId\":1}]}",
      "{\"cmds\":5}",
      "{\"tsSubCmds\":[{\"cmdId\":99999999999}]}",
      "{\"authCmd\":\"tok\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(parse(bad[i], &a, &m), TD_EPROTO);
    assert_int_equal(m.ncmds, 0);
  }
  /* an empty object is a valid wrapper with nothing to do */
  assert_int_equal(parse("{}", &a, &m), 0);
  assert_int_equal(m.ncmds, 0);
  td_arena_deinit(&a);
}

static void test_command_errors(void **state) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  assert_int_equal(parse("{\"tsSubCmds\":[{\"cmdId\":1,\"entityType\":\"DEVICE\"},"
                         "{\"cmdId\":2,\"entityType\":\"DEVICE\",\"entityId\":\"nope\"},"
                         "{\"cmdId\":3,\"entityId\":\"" DEV "\"},"
                         "{\"cmdId\":4,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV "\",\"agg\":\"MEDIAN\"},"
                         "{\"cmdId\":-5,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV "\"}],"
                         "\"historyCmds\":[{\"cmdId\":6,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV "\"}],"
                         "\"attrSubCmds\":[{\"cmdId\":7,\"entityType\":\"DEVICE\",\"entityId\":\"" DEV
                         "\",\"scope\":\"WEIRD\"}]}",
                         &a, &m),
                   0);
  assert_int_equal(m.ncmds, 7);
  assert_string_equal(m.cmds[0].error, "Device id is empty!");
  assert_non_null(m.cmds[1].error);
  assert_non_null(m.cmds[2].error);
  assert_non_null(m.cmds[3].error);
  assert_null(m.cmds[4].error);
  assert_int_equal(m.cmds[4].cmd_id, -5); /* the session answers "Cmd id is negative value!" */
  assert_string_equal(m.cmds[5].error, "Keys are empty!");
  assert_non_null(m.cmds[6].error);
  td_arena_deinit(&a);
}

static void test_entity_data_cmd(void **state) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  assert_int_equal(parse("{\"cmds\":[{\"type\":\"ENTITY_DATA\",\"cmdId\":4,\"query\":{"
                         "\"entityFilter\":{\"type\":\"entityList\",\"entityType\":\"DEVICE\",\"entityList\":[\"" DEV
                         "\",\"" DEV2 "\"]},"
                         "\"pageLink\":{\"pageSize\":10,\"page\":0},"
                         "\"entityFields\":[{\"type\":\"ENTITY_FIELD\",\"key\":\"name\"}],"
                         "\"latestValues\":[{\"type\":\"TIME_SERIES\",\"key\":\"temperature\"}]},"
                         "\"latestCmd\":{\"keys\":[{\"type\":\"TIME_SERIES\",\"key\":\"temperature\"},"
                         "{\"type\":\"SHARED_ATTRIBUTE\",\"key\":\"target\"}]},"
                         "\"tsCmd\":{\"keys\":[\"humidity\"],\"startTs\":100,\"timeWindow\":50,\"limit\":7}}]}",
                         &a, &m),
                   0);
  assert_int_equal(m.ncmds, 1);
  const struct ws_cmd *c = &m.cmds[0];
  assert_int_equal(c->type, WS_CMD_EDQ);
  assert_null(c->error);
  const struct ws_edq *q = c->edq;
  assert_non_null(q);
  assert_int_equal(q->etype, TD_ENTITY_DEVICE);
  assert_int_equal(q->nids, 2);
  assert_int_equal(q->page_size, 10);
  assert_int_equal(q->nfields, 2);
  assert_int_equal(q->fields[0].type, WS_KEY_FIELD);
  assert_int_equal(q->fields[1].type, WS_KEY_TS);
  assert_true(q->has_latest);
  assert_int_equal(q->nlatest, 2);
  assert_int_equal(q->latest[1].type, WS_KEY_SHARED_ATTR);
  assert_string_equal(q->latest[1].key, "target");
  assert_true(q->has_ts);
  assert_int_equal(q->ts.nkeys, 1);
  assert_int_equal(q->ts.start, 100);
  assert_int_equal(q->ts.end, 150);
  assert_int_equal(q->ts.limit, 7);
  /* deep copy survives the message's arena */
  struct td_arena b;
  td_arena_init(&b, 0);
  struct ws_cmd copy;
  assert_int_equal(ws_cmd_copy(&b, c, &copy), 0);
  td_arena_deinit(&a);
  assert_string_equal(copy.edq->latest[1].key, "target");
  assert_string_equal(copy.edq->ts.keys[0], "humidity");
  assert_int_equal(copy.edq->nids, 2);
  td_arena_deinit(&b);

  /* single entity; unsupported filter; missing query */
  td_arena_init(&a, 0);
  assert_int_equal(parse("{\"entityDataCmds\":[{\"cmdId\":1,\"query\":{\"entityFilter\":{\"type\":\"singleEntity\","
                         "\"singleEntity\":{\"entityType\":\"DEVICE\",\"id\":\"" DEV "\"}}}},"
                         "{\"cmdId\":2,\"query\":{\"entityFilter\":{\"type\":\"deviceType\",\"deviceTypes\":[\"x\"]}}},"
                         "{\"cmdId\":3}]}",
                         &a, &m),
                   0);
  assert_int_equal(m.ncmds, 3);
  assert_null(m.cmds[0].error);
  assert_int_equal(m.cmds[0].edq->nids, 1);
  assert_non_null(m.cmds[1].error);
  assert_non_null(strstr(m.cmds[1].error, "singleEntity, entityList"));
  assert_string_equal(m.cmds[2].error, "Query is empty!");
  td_arena_deinit(&a);
}

static struct td_ts_point pt(const char *key, int64_t ts, enum td_kv_type t, int64_t l, const char *s) {
  struct td_ts_point p;
  memset(&p, 0, sizeof p);
  p.ts = ts;
  p.kv.key = key;
  p.kv.type = t;
  if (t == TD_KV_STRING) p.kv.v.s = s;
  else if (t == TD_KV_BOOLEAN) p.kv.v.b = l != 0;
  else if (t == TD_KV_DOUBLE) p.kv.v.d = (double)l / 10;
  else p.kv.v.l = l;
  return p;
}

static void test_format_updates(void **state) {
  struct td_buf b;
  td_buf_init(&b, 0);
  struct td_ts_point p[5] = {
      pt("temperature", 1700000000000, TD_KV_DOUBLE, 253, NULL),
      pt("humidity", 1700000000000, TD_KV_LONG, 40, NULL),
      pt("temperature", 1700000001000, TD_KV_DOUBLE, 254, NULL),
      pt("on", 5, TD_KV_BOOLEAN, 1, NULL),
      pt("missing", 7, TD_KV_STRING, 0, NULL),
  };
  assert_int_equal(ws_fmt_ts(&b, 1, p, 5), 0);
  assert_string_equal(b.data, "{\"subscriptionId\":1,\"errorCode\":0,\"errorMsg\":null,\"data\":{"
                              "\"humidity\":[[1700000000000,\"40\"]],"
                              "\"missing\":[[7,null]],"
                              "\"on\":[[5,\"true\"]],"
                              "\"temperature\":[[1700000000000,\"25.3\"],[1700000001000,\"25.4\"]]},"
                              "\"latestValues\":{\"humidity\":1700000000000,\"missing\":7,\"on\":5,"
                              "\"temperature\":1700000001000}}");
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_ts(&b, 3, NULL, 0), 0);
  assert_string_equal(b.data, "{\"subscriptionId\":3,\"errorCode\":0,\"errorMsg\":null,\"data\":{},\"latestValues\":{}}");
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_error(&b, 7, WS_ERR_UNAUTHORIZED, WS_MSG_DENIED), 0);
  assert_string_equal(b.data, "{\"subscriptionId\":7,\"errorCode\":3,\"errorMsg\":"
                              "\"You don't have permission to perform this operation!\",\"data\":null,\"latestValues\":{}}");
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_edq_error(&b, 4, 2, "bad \"filter\"", 1000), 0);
  assert_string_equal(b.data, "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":2,\"errorMsg\":"
                              "\"bad \\\"filter\\\"\",\"data\":null,\"update\":null,\"allowedEntities\":1000}");
  /* many points: more than the formatter's stack buffer */
  struct td_ts_point many[100];
  for (int i = 0; i < 100; i++) many[i] = pt(i % 2 ? "b" : "a", i, TD_KV_LONG, i, NULL);
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_ts(&b, 1, many, 100), 0);
  assert_non_null(strstr(b.data, "\"a\":[[0,\"0\"],[2,\"2\"]"));
  assert_non_null(strstr(b.data, "\"latestValues\":{\"a\":98,\"b\":99}"));
  td_buf_deinit(&b);
}

static void test_format_entity_data(void **state) {
  struct td_buf b;
  td_buf_init(&b, 0);
  struct td_entity_id e = {.type = TD_ENTITY_DEVICE};
  assert_int_equal(td_uuid_parse(DEV, &e.id), 0);
  static const char *latest[] = {"temperature"};
  static const char *series[] = {"humidity"};
  static const struct ws_key attrs[] = {{WS_KEY_SHARED_ATTR, "target"}, {WS_KEY_ATTR, "fw"}};
  struct ws_edq_live k = {.ts_latest = latest, .n_ts_latest = 1, .ts_series = series, .n_ts_series = 1,
                          .attrs = attrs, .nattrs = 2};
  struct td_ts_point p[4] = {
      pt("temperature", 10, TD_KV_LONG, 1, NULL),
      pt("temperature", 20, TD_KV_LONG, 2, NULL),
      pt("humidity", 10, TD_KV_LONG, 3, NULL),
      pt("other", 10, TD_KV_LONG, 4, NULL),
  };
  bool any;
  assert_int_equal(ws_fmt_edq_ts(&b, 4, &e, &k, p, 4, 1000, &any), 0);
  assert_true(any);
  assert_string_equal(b.data, "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,"
                              "\"data\":null,\"update\":[{\"entityId\":{\"entityType\":\"DEVICE\",\"id\":\"" DEV "\"},"
                              "\"latest\":{\"TIME_SERIES\":{\"temperature\":{\"ts\":20,\"value\":\"2\"}}},"
                              "\"timeseries\":{\"humidity\":[{\"ts\":10,\"value\":\"3\"}]}}],\"allowedEntities\":1000}");
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_edq_ts(&b, 4, &e, &k, &p[3], 1, 1000, &any), 0);
  assert_false(any);
  td_buf_reset(&b);
  struct td_kv kv[2] = {{.key = "target", .type = TD_KV_LONG, .v.l = 22}, {.key = "fw", .type = TD_KV_STRING, .v.s = "1.0"}};
  assert_int_equal(ws_fmt_edq_attrs(&b, 4, &e, &k, TD_SCOPE_SHARED, kv, 2, 99, false, 1000, &any), 0);
  assert_true(any);
  assert_string_equal(b.data, "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,"
                              "\"data\":null,\"update\":[{\"entityId\":{\"entityType\":\"DEVICE\",\"id\":\"" DEV "\"},"
                              "\"latest\":{\"ATTRIBUTE\":{\"fw\":{\"ts\":99,\"value\":\"1.0\"}},"
                              "\"SHARED_ATTRIBUTE\":{\"target\":{\"ts\":99,\"value\":\"22\"}}},"
                              "\"timeseries\":{}}],\"allowedEntities\":1000}");
  /* client scope does not feed SHARED_ATTRIBUTE; deleted keys are {"ts":0,"value":""} */
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_edq_attrs(&b, 4, &e, &k, TD_SCOPE_CLIENT, kv, 1, 99, true, 1000, &any), 0);
  assert_false(any);
  td_buf_reset(&b);
  assert_int_equal(ws_fmt_edq_attrs(&b, 4, &e, &k, TD_SCOPE_CLIENT, &kv[1], 1, 99, true, 1000, &any), 0);
  assert_true(any);
  assert_non_null(strstr(b.data, "\"latest\":{\"ATTRIBUTE\":{\"fw\":{\"ts\":0,\"value\":\"\"}}}"));
  td_buf_deinit(&b);
}

struct emitted {
  char texts[8][512];
  int n;
};

static void collect(void *arg, const char *text, size_t len) {
  struct emitted *e = arg;
  assert_true(e->n < 8 && len < sizeof e->texts[0]);
  memcpy(e->texts[e->n], text, len);
  e->texts[e->n++][len] = 0;
}

static void test_merge_updates(void **state) {
  const char *v1[] = {
      "{\"subscriptionId\":3,\"errorCode\":0,\"errorMsg\":null,\"data\":{\"b\":[[1,\"x\"]]},\"latestValues\":{\"b\":1}}",
      "{\"subscriptionId\":3,\"errorCode\":0,\"errorMsg\":null,\"data\":{\"a\":[[2,\"1\"]],\"b\":[[2,\"y\"]]},"
      "\"latestValues\":{\"a\":2,\"b\":2}}",
      "{\"subscriptionId\":3,\"errorCode\":0,\"errorMsg\":null,\"data\":{\"a\":[[3,null]]},\"latestValues\":{\"a\":3}}",
  };
  size_t lens[3];
  for (int i = 0; i < 3; i++) lens[i] = strlen(v1[i]);
  struct emitted e = {0};
  assert_int_equal(ws_merge_updates(v1, lens, 3, false, 65536, collect, &e), 0);
  assert_int_equal(e.n, 1);
  assert_string_equal(e.texts[0], "{\"subscriptionId\":3,\"errorCode\":0,\"errorMsg\":null,"
                                  "\"data\":{\"a\":[[2,\"1\"],[3,null]],\"b\":[[1,\"x\"],[2,\"y\"]]},"
                                  "\"latestValues\":{\"a\":3,\"b\":2}}");
  /* a small size limit: one update per text, never split */
  memset(&e, 0, sizeof e);
  assert_int_equal(ws_merge_updates(v1, lens, 3, false, 10, collect, &e), 0);
  assert_int_equal(e.n, 3);
  assert_non_null(strstr(e.texts[2], "\"data\":{\"a\":[[3,null]]},\"latestValues\":{\"a\":3}"));
  /* entity data: the update lists are joined; a text of another shape passes in its place */
  const char *edq[] = {
      "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,\"data\":null,"
      "\"update\":[{\"n\":1}],\"allowedEntities\":9}",
      "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,\"data\":null,"
      "\"update\":[{\"n\":2}],\"allowedEntities\":9}",
      "odd",
      "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,\"data\":null,"
      "\"update\":[{\"n\":3}],\"allowedEntities\":9}",
  };
  size_t el[4];
  for (int i = 0; i < 4; i++) el[i] = strlen(edq[i]);
  memset(&e, 0, sizeof e);
  assert_int_equal(ws_merge_updates(edq, el, 4, true, 65536, collect, &e), 0);
  assert_int_equal(e.n, 3);
  assert_string_equal(e.texts[0], "{\"cmdId\":4,\"cmdUpdateType\":\"ENTITY_DATA\",\"errorCode\":0,\"errorMsg\":null,"
                                  "\"data\":null,\"update\":[{\"n\":1},{\"n\":2}],\"allowedEntities\":9}");
  assert_string_equal(e.texts[1], "odd");
  assert_non_null(strstr(e.texts[2], "\"update\":[{\"n\":3}]"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_legacy_wrapper),   cmocka_unit_test(test_new_wrapper_and_auth),
      cmocka_unit_test(test_payload_errors),   cmocka_unit_test(test_command_errors),
      cmocka_unit_test(test_entity_data_cmd),  cmocka_unit_test(test_format_updates),
      cmocka_unit_test(test_format_entity_data), cmocka_unit_test(test_merge_updates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
