/* test_payload.c — typing table and shapes of device JSON payloads (core/payload.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "core/payload.h"

static struct td_payload_opts opts_cast = {.type_cast = true, .max_string_len = 0, .max_depth = 8};
static struct td_payload_opts opts_nocast = {.type_cast = false, .max_string_len = 0, .max_depth = 8};

/* one_value: parse {"k": <value>} as attributes and return the single kv (or rc). */
static int one_value(const char *value, const struct td_payload_opts *o, struct td_arena *a, struct td_kv *out,
                     size_t *n) {
  char buf[2048], err[128];
  snprintf(buf, sizeof buf, "{\"k\": %s}", value);
  struct td_kv *kvs;
  int rc = td_payload_attributes(buf, strlen(buf), o, a, &kvs, n, err, sizeof err);
  if (rc == 0 && *n == 1) *out = kvs[0];
  return rc;
}

static void expect_long(const char *lit, const struct td_payload_opts *o, int64_t v) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  assert_int_equal(one_value(lit, o, &a, &kv, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(kv.type, TD_KV_LONG);
  assert_true(kv.v.l == v);
  td_arena_deinit(&a);
}

static void expect_double(const char *lit, const struct td_payload_opts *o, double v) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  assert_int_equal(one_value(lit, o, &a, &kv, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(kv.type, TD_KV_DOUBLE);
  assert_true(kv.v.d == v);
  td_arena_deinit(&a);
}

static void expect_str(const char *lit, const struct td_payload_opts *o, enum td_kv_type t, const char *v) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  assert_int_equal(one_value(lit, o, &a, &kv, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(kv.type, t);
  assert_string_equal(kv.v.s, v);
  td_arena_deinit(&a);
}

static void expect_err(const char *lit, const struct td_payload_opts *o) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  assert_int_equal(one_value(lit, o, &a, &kv, &n), TD_EPROTO);
  td_arena_deinit(&a);
}

static void test_typing_table(void **st) {
  expect_long("42", &opts_cast, 42);
  expect_long("-42", &opts_cast, -42);
  expect_double("42.0", &opts_cast, 42.0);
  expect_long("4.2e1", &opts_cast, 42);
  expect_long("1.5E1", &opts_cast, 15);
  expect_long("0", &opts_cast, 0);
  expect_double("0.0", &opts_cast, 0.0);
  expect_double("21.5", &opts_cast, 21.5);
  expect_double("1.5e-3", &opts_cast, 0.0015);
  expect_long("9223372036854775807", &opts_cast, INT64_MAX);
  expect_long("-9223372036854775808", &opts_cast, INT64_MIN);
  expect_str("9223372036854775808", &opts_cast, TD_KV_STRING, "9223372036854775808");
  expect_err("9223372036854775808", &opts_nocast);
  {
    char big[402] = "1";
    memset(big + 1, '0', 400);
    big[401] = '\0';
    expect_str("1e400", &opts_cast, TD_KV_STRING, big);
  }
  expect_err("1e999999999", &opts_cast);
  expect_str("0.12345678901234567", &opts_cast, TD_KV_STRING, "0.12345678901234567");
  expect_str("1.5e-20", &opts_cast, TD_KV_STRING, "0.000000000000000000015");
  expect_double("0.1234567890123456", &opts_cast, 0.1234567890123456);
  expect_long("\"42\"", &opts_cast, 42);
  expect_str("\"42\"", &opts_nocast, TD_KV_STRING, "42");
  expect_double("\"3.14\"", &opts_cast, 3.14);
  expect_double("\"-.5\"", &opts_cast, -0.5);
  expect_str("\"1e5\"", &opts_cast, TD_KV_STRING, "1e5"); /* isParsable has no exponent */
  expect_str("\"5.\"", &opts_cast, TD_KV_STRING, "5.");
  expect_str("\"abc\"", &opts_cast, TD_KV_STRING, "abc");
  expect_str("\"a\\u00e9\\n\"", &opts_cast, TD_KV_STRING, "a\xc3\xa9\n");
  expect_str("{\"a\" : 1}", &opts_cast, TD_KV_JSON, "{\"a\":1}");
  expect_str("[1, 2.0, \"x y\"]", &opts_cast, TD_KV_JSON, "[1,2.0,\"x y\"]");
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  assert_int_equal(one_value("true", &opts_cast, &a, &kv, &n), 0);
  assert_int_equal(kv.type, TD_KV_BOOLEAN);
  assert_true(kv.v.b);
  assert_int_equal(one_value("null", &opts_cast, &a, &kv, &n), 0);
  assert_int_equal(n, 0);
  td_arena_deinit(&a);
}

static void test_max_string(void **st) {
  struct td_payload_opts o = opts_cast;
  o.max_string_len = 3;
  expect_str("\"abc\"", &o, TD_KV_STRING, "abc");
  expect_err("\"abcd\"", &o);
}

static void test_shapes(void **st) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_ts_group *g;
  size_t ng;
  char err[128];
  const char *p1 = "{\"k1\":\"v1\",\"k2\":2}";
  assert_int_equal(td_payload_telemetry(p1, strlen(p1), &opts_cast, &a, &g, &ng, err, sizeof err), 0);
  assert_int_equal(ng, 1);
  assert_false(g[0].has_ts);
  assert_int_equal(g[0].n, 2);
  assert_string_equal(g[0].kvs[0].key, "k1");
  assert_int_equal(g[0].kvs[1].type, TD_KV_LONG);

  const char *p2 = " {\"ts\":1451649600512, \"values\":{\"k1\":\"v1\",\"n\":null}} ";
  assert_int_equal(td_payload_telemetry(p2, strlen(p2), &opts_cast, &a, &g, &ng, err, sizeof err), 0);
  assert_int_equal(ng, 1);
  assert_true(g[0].has_ts);
  assert_true(g[0].ts == 1451649600512LL);
  assert_int_equal(g[0].n, 1);

  /* only ts, no values: ordinary keys */
  const char *p3 = "{\"ts\":5,\"x\":1}";
  assert_int_equal(td_payload_telemetry(p3, strlen(p3), &opts_cast, &a, &g, &ng, err, sizeof err), 0);
  assert_false(g[0].has_ts);
  assert_int_equal(g[0].n, 2);
  assert_string_equal(g[0].kvs[0].key, "ts");

  const char *p4 = "[{\"a\":1},{\"ts\":10,\"values\":{\"b\":2.5}},{}]";
  assert_int_equal(td_payload_telemetry(p4, strlen(p4), &opts_cast, &a, &g, &ng, err, sizeof err), 0);
  assert_int_equal(ng, 3);
  assert_false(g[0].has_ts);
  assert_true(g[1].has_ts);
  assert_true(g[1].ts == 10);
  assert_int_equal(g[1].kvs[0].type, TD_KV_DOUBLE);
  assert_int_equal(g[2].n, 0);

  const char *bad[] = {"[{\"a\":1}, 5]", "{\"a\":1", "{\"a\":}", "{\"a\":1} x", "", "42", "{\"a\":01}",
                       "{\"a\":\"\\x\"}", "{\"ts\":\"abc\",\"values\":{}}", "{\"ts\":1,\"values\":5}",
                       "{\"a\":[1,]}", "{\"a\":\"\\u0000\"}"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    assert_int_equal(td_payload_telemetry(bad[i], strlen(bad[i]), &opts_cast, &a, &g, &ng, err, sizeof err),
                     TD_EPROTO);
    assert_true(strlen(err) > 0);
  }
  /* attributes refuse arrays */
  struct td_kv *kvs;
  size_t nk;
  assert_int_equal(td_payload_attributes("[]", 2, &opts_cast, &a, &kvs, &nk, err, sizeof err), TD_EPROTO);
  /* duplicate key: first position, last value */
  const char *p5 = "{\"a\":1,\"b\":2,\"a\":3}";
  assert_int_equal(td_payload_attributes(p5, strlen(p5), &opts_cast, &a, &kvs, &nk, err, sizeof err), 0);
  assert_int_equal(nk, 2);
  assert_string_equal(kvs[0].key, "a");
  assert_true(kvs[0].v.l == 3);
  td_arena_deinit(&a);
}

static void test_depth(void **st) {
  struct td_arena a;
  td_arena_init(&a, 0);
  struct td_kv kv;
  size_t n;
  char deep[64] = "";
  for (int i = 0; i < 7; i++) strcat(deep, "[");
  for (int i = 0; i < 7; i++) strcat(deep, "]");
  assert_int_equal(one_value(deep, &opts_cast, &a, &kv, &n), 0);
  char deeper[64] = "";
  for (int i = 0; i < 9; i++) strcat(deeper, "[");
  for (int i = 0; i < 9; i++) strcat(deeper, "]");
  assert_int_equal(one_value(deeper, &opts_cast, &a, &kv, &n), TD_EPROTO);
  /* a huge nesting must fail without recursing deeply */
  static char huge[200001];
  memset(huge, '[', 200000);
  struct td_ts_group *g;
  size_t ng;
  char err[64];
  assert_int_equal(td_payload_telemetry(huge, 200000, &opts_cast, &a, &g, &ng, err, sizeof err), TD_EPROTO);
  td_arena_deinit(&a);
}

static void test_kvs_json_roundtrip(void **st) {
  struct td_arena a;
  td_arena_init(&a, 0);
  const char *p = "{\"t\":21.5,\"d\":1.0,\"e\":1.25E-10,\"l\":7,\"s\":\"x\\\"y\",\"b\":false,\"j\":{\"q\":[1, 2]}}";
  struct td_kv *kvs;
  size_t n;
  char err[64];
  assert_int_equal(td_payload_attributes(p, strlen(p), &opts_nocast, &a, &kvs, &n, err, sizeof err), 0);
  struct td_buf b;
  td_buf_init(&b, 0);
  assert_int_equal(td_payload_kvs_json(kvs, n, &b), 0);
  assert_string_equal(b.data,
                      "{\"t\":21.5,\"d\":1.0,\"e\":1.25E-10,\"l\":7,\"s\":\"x\\\"y\",\"b\":false,\"j\":{\"q\":[1,2]}}");
  struct td_kv *k2;
  size_t n2;
  assert_int_equal(td_payload_attributes(b.data, b.len, &opts_nocast, &a, &k2, &n2, err, sizeof err), 0);
  assert_int_equal(n2, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(k2[i].type, kvs[i].type);
  /* an integral double keeps its type: plain notation, not "1.0E10" */
  struct td_kv big = {.key = "x", .type = TD_KV_DOUBLE, .v.d = 1e10};
  td_buf_reset(&b);
  assert_int_equal(td_payload_kvs_json(&big, 1, &b), 0);
  assert_string_equal(b.data, "{\"x\":10000000000.0}");
  assert_int_equal(td_payload_attributes(b.data, b.len, &opts_nocast, &a, &k2, &n2, err, sizeof err), 0);
  assert_int_equal(k2[0].type, TD_KV_DOUBLE);
  td_buf_deinit(&b);
  td_arena_deinit(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_typing_table), cmocka_unit_test(test_max_string), cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_depth), cmocka_unit_test(test_kvs_json_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
