/* test_base.c — unit tests for src/base: buffers, arenas, ids, typed values,
 * hashes, the task inbox of an I/O loop, and the configuration table. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/config.h"
#include "base/entity.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/kv.h"
#include "base/loop.h"
#include "base/uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_err_table(void **state) {
  assert_string_equal(td_errname(TD_EPROTO), "TD_EPROTO");
  assert_string_equal(td_strerror(TD_ENOTFOUND), "not found");
  assert_string_equal(td_errname(0), "TD_OK");
  assert_string_equal(td_errname(12345), "TD_EUNKNOWN");
}

static void test_buf_limit_and_json(void **state) {
  struct td_buf b;
  td_buf_init(&b, 8);
  assert_int_equal(td_buf_puts(&b, "12345678"), 0);
  assert_int_equal(td_buf_puts(&b, "9"), TD_ETOOBIG);
  assert_int_equal(b.len, 8);
  assert_string_equal(b.data, "12345678");
  td_buf_reset(&b);
  assert_int_equal(td_buf_json_str(&b, "a\"\n"), 0);
  assert_string_equal(b.data, "\"a\\\"\\n\"");
  td_buf_consume(&b, 1);
  assert_string_equal(b.data, "a\\\"\\n\"");
  char *taken = td_buf_take(&b);
  assert_string_equal(taken, "a\\\"\\n\"");
  free(taken);
  assert_null(b.data);
  td_buf_init(&b, 0);
  assert_int_equal(td_buf_json_str(&b, "\x01\t\\"), 0);
  assert_string_equal(b.data, "\"\\u0001\\t\\\\\"");
  td_buf_deinit(&b);
}

static void test_arena(void **state) {
  struct td_arena a;
  td_arena_init(&a, 100000);
  char *s = td_arena_strdup(&a, "hello");
  assert_string_equal(s, "hello");
  void *big = td_arena_alloc(&a, 50000);
  assert_non_null(big);
  assert_int_equal(((uintptr_t)big) % 16, 0);
  assert_null(td_arena_alloc(&a, 60000)); /* over the limit */
  td_arena_deinit(&a);
}

static void test_uuid(void **state) {
  struct td_uuid a, b, p;
  char s[TD_UUID_STR_LEN + 1];
  td_uuid_new(&a);
  td_uuid_new(&b);
  assert_false(td_uuid_eq(&a, &b));
  assert_int_equal(td_uuid_parse(td_uuid_fmt(&a, s), &p), 0);
  assert_true(td_uuid_eq(&a, &p));
  assert_int_equal(s[14], '1'); /* version 1, time-based like ThingsBoard */
  assert_int_equal(td_uuid_parse("not-a-uuid", &p), TD_EINVAL);
  assert_int_equal(td_uuid_parse("13814000-1dd2-11b2-8080-80808080808", &p), TD_EINVAL);
  assert_int_equal(td_uuid_parse("13814000-1dd2-11b2-8080-8080808080800", &p), TD_EINVAL);
  assert_int_equal(td_uuid_parse(TD_UUID_NULL_STR, &p), 0);
  assert_true(td_uuid_is_null(&p));
  assert_true(td_uuid_eq(&p, td_uuid_null()));
}

static void test_entity_names(void **state) {
  assert_string_equal(td_entity_type_name(TD_ENTITY_DEVICE), "DEVICE");
  assert_int_equal(td_entity_type_parse("DEVICE_PROFILE"), TD_ENTITY_DEVICE_PROFILE);
  assert_int_equal(td_entity_type_parse("device"), TD_ENTITY_NONE);
}

static void test_kv_text(void **state) {
  char d[TD_KV_NUM_LEN];
  struct { double v; const char *s; } cases[] = {
    {1.0, "1.0"}, {21.5, "21.5"}, {0.1, "0.1"}, {-3.25, "-3.25"}, {1e7, "1.0E7"},
    {1.5e-5, "1.5E-5"}, {123456.789, "123456.789"}, {0.0, "0.0"}, {1e-3, "0.001"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    td_kv_double_str(cases[i].v, d);
    assert_string_equal(d, cases[i].s);
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  struct td_kv kv = {.key = "k", .type = TD_KV_LONG, .v.l = 42};
  td_kv_append_json_value(&b, &kv);
  td_buf_puts(&b, " ");
  td_kv_append_string_value(&b, &kv);
  kv.type = TD_KV_BOOLEAN;
  kv.v.b = true;
  td_buf_puts(&b, " ");
  td_kv_append_string_value(&b, &kv);
  kv.type = TD_KV_JSON;
  kv.v.s = "{\"a\":1}";
  td_buf_puts(&b, " ");
  td_kv_append_json_value(&b, &kv);
  td_buf_puts(&b, " ");
  td_kv_append_string_value(&b, &kv);
  assert_string_equal(b.data, "42 \"42\" \"true\" {\"a\":1} \"{\\\"a\\\":1}\"");
  td_buf_deinit(&b);
}

static void test_crc32c(void **state) {
  /* Known answer: CRC-32C("123456789") = 0xE3069283. */
  assert_int_equal(td_crc32c(0, "123456789", 9), 0xE3069283u);
  uint32_t part = td_crc32c(0, "1234", 4);
  assert_int_equal(td_crc32c(part, "56789", 5), 0xE3069283u);
}

struct counter_task {
  struct td_task task;
  int *counter;
  int order;
  int *last;
};

static void count_fn(struct td_task *t) {
  struct counter_task *c = td_container_of(t, struct counter_task, task);
  /* tasks run in post order */
  assert_int_equal(*c->last + 1, c->order);
  *c->last = c->order;
  (*c->counter)++;
}

static void test_loop_tasks(void **state) {
  struct td_loop l;
  assert_int_equal(td_loop_init(&l, 0), 0);
  assert_int_equal(td_loop_start(&l), 0);
  int counter = 0, last = -1;
  enum { N = 1000 };
  struct counter_task *tasks = calloc(N, sizeof *tasks);
  for (int i = 0; i < N; i++) {
    tasks[i] = (struct counter_task){.task.fn = count_fn, .counter = &counter, .order = i, .last = &last};
    td_loop_post(&l, &tasks[i].task);
  }
  td_loop_stop(&l); /* the stop task runs after every task posted before it */
  assert_int_equal(counter, N);
  td_loop_deinit(&l);
  free(tasks);
}

static void test_config(void **state) {
  struct td_config c;
  char err[256];
  td_config_defaults(&c);
  assert_int_equal(c.http_bind_port, 8080);
  assert_true(c.json_type_cast_enabled);
  assert_string_equal(c.data_dir, "./data");
  assert_int_equal(td_config_set(&c, "http.bind_port", "0", err, sizeof err), 0);
  assert_int_equal(c.http_bind_port, 0);
  assert_int_equal(td_config_set(&c, "http.bind_port", "x", err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "http.bind_port"));
  assert_int_equal(td_config_set(&c, "no.such.key", "1", err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "no.such.key"));

  setenv("HTTP_BIND_PORT", "9090", 1);
  setenv("JSON_TYPE_CAST_ENABLED", "false", 1);
  assert_int_equal(td_config_load_env(&c, err, sizeof err), 0);
  assert_int_equal(c.http_bind_port, 9090);
  assert_false(c.json_type_cast_enabled);
  unsetenv("HTTP_BIND_PORT");
  unsetenv("JSON_TYPE_CAST_ENABLED");

  char path[256];
  const char *tmp = getenv("TD_TEST_TMP") ? getenv("TD_TEST_TMP") : "/tmp";
  snprintf(path, sizeof path, "%s/td_cfg_%d.yml", tmp, (int)getpid());
  FILE *f = fopen(path, "w");
  if (!f) { mkdir(tmp, 0700); f = fopen(path, "w"); }
  assert_non_null(f);
  fprintf(f, "http:\n  bind_port: 7070\n  bind_address: 127.0.0.1\nsecurity:\n  jwt:\n    token_issuer: me\n"
             "queue.partitions: 3\n");
  fclose(f);
  assert_int_equal(td_config_load_yaml(&c, path, err, sizeof err), 0);
  assert_int_equal(c.http_bind_port, 7070);
  assert_string_equal(c.http_bind_address, "127.0.0.1");
  assert_string_equal(c.jwt_issuer, "me");
  assert_int_equal(c.queue_partitions, 3);
  f = fopen(path, "w");
  fprintf(f, "http:\n  bogus: 1\n");
  fclose(f);
  assert_int_equal(td_config_load_yaml(&c, path, err, sizeof err), TD_EINVAL);
  assert_non_null(strstr(err, "http.bogus"));
  /* what --help-config prints loads back unchanged */
  td_config_defaults(&c);
  f = fopen(path, "w");
  td_config_print(f, &c);
  fclose(f);
  struct td_config c2;
  td_config_defaults(&c2);
  c2.http_bind_port = 1;
  assert_int_equal(td_config_load_yaml(&c2, path, err, sizeof err), 0);
  assert_memory_equal(&c, &c2, sizeof c);
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_err_table), cmocka_unit_test(test_buf_limit_and_json), cmocka_unit_test(test_arena),
    cmocka_unit_test(test_uuid), cmocka_unit_test(test_entity_names), cmocka_unit_test(test_kv_text),
    cmocka_unit_test(test_crc32c), cmocka_unit_test(test_loop_tasks), cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
