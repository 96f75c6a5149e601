/* test_msg.c — TbMsg: construction, derive, metadata, binary round trip,
 * malformed binary input, JSON form. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "msg/msg.h"

static struct td_msg *sample(void) {
  struct td_entity_id orig = {.type = TD_ENTITY_DEVICE};
  struct td_uuid tenant, customer;
  td_uuid_new(&orig.id);
  td_uuid_new(&tenant);
  td_uuid_new(&customer);
  struct td_msg_md md[] = {{"deviceName", "dev-1"}, {"deviceType", "default"}, {"ts", "1700000000000"}};
  const char *data = "{\"temperature\":21.5,\"s\":\"a\\\"b\"}";
  return td_msg_new(TD_MSG_POST_TELEMETRY, &orig, &tenant, &customer, md, 3, TD_MSG_DATA_JSON, data,
                    strlen(data));
}

static void assert_msg_eq(const struct td_msg *a, const struct td_msg *b) {
  assert_memory_equal(&a->id, &b->id, sizeof a->id);
  assert_int_equal(a->ts, b->ts);
  assert_string_equal(a->type, b->type);
  assert_int_equal(a->originator.type, b->originator.type);
  assert_memory_equal(&a->originator.id, &b->originator.id, 16);
  assert_memory_equal(&a->tenant_id, &b->tenant_id, 16);
  assert_memory_equal(&a->customer_id, &b->customer_id, 16);
  assert_memory_equal(&a->rule_chain_id, &b->rule_chain_id, 16);
  assert_int_equal(a->md_count, b->md_count);
  for (size_t i = 0; i < a->md_count; i++) {
    assert_string_equal(a->md[i].key, b->md[i].key);
    assert_string_equal(a->md[i].value, b->md[i].value);
  }
  assert_int_equal(a->data_type, b->data_type);
  assert_int_equal(a->data_len, b->data_len);
  assert_memory_equal(a->data, b->data, a->data_len);
  assert_int_equal(b->data[b->data_len], '\0');
}

static void test_new_and_md(void **st) {
  (void)st;
  struct td_msg *m = sample();
  assert_non_null(m);
  assert_string_equal(m->type, "POST_TELEMETRY_REQUEST");
  assert_int_equal(m->md_count, 3);
  assert_string_equal(td_msg_md_get(m, "deviceName"), "dev-1");
  assert_null(td_msg_md_get(m, "nope"));
  assert_true(m->ts > 0);
  assert_false(td_uuid_is_zero(&m->id));
  /* refcount */
  assert_ptr_equal(td_msg_ref(m), m);
  td_msg_unref(m);
  td_msg_unref(m);
  td_msg_unref(NULL);
}

static void test_duplicate_keys(void **st) {
  (void)st;
  struct td_msg_md md[] = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
  struct td_msg *m = td_msg_new("T", NULL, NULL, NULL, md, 3, TD_MSG_DATA_TEXT, "x", 1);
  assert_non_null(m);
  assert_int_equal(m->md_count, 2);
  assert_string_equal(m->md[0].key, "a");
  assert_string_equal(m->md[0].value, "3");
  assert_string_equal(m->md[1].key, "b");
  td_msg_unref(m);
}

static void test_derive(void **st) {
  (void)st;
  struct td_msg *m = sample();
  struct td_msg *d = td_msg_derive(m, NULL, NULL, 0, "{}", 2);
  assert_non_null(d);
  assert_memory_equal(&d->id, &m->id, 16);
  assert_string_equal(d->type, m->type);
  assert_int_equal(d->md_count, 3);
  assert_string_equal(d->data, "{}");
  struct td_msg_md none[1];
  struct td_msg *e = td_msg_derive(m, "CUSTOM", none, 0, NULL, 0);
  assert_string_equal(e->type, "CUSTOM");
  assert_int_equal(e->md_count, 0);
  assert_string_equal(e->data, m->data);
  td_msg_unref(m);
  td_msg_unref(d);
  td_msg_unref(e);
}

static void test_round_trip(void **st) {
  (void)st;
  struct td_msg *m = sample();
  struct td_buf b;
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_encode(m, &b), 0);
  struct td_msg *d = NULL;
  assert_int_equal(td_msg_decode(b.data, b.len, &d), 0);
  assert_msg_eq(m, d);
  /* canonical: re-encoding gives identical bytes */
  struct td_buf b2;
  td_buf_init(&b2, 0);
  assert_int_equal(td_msg_encode(d, &b2), 0);
  assert_int_equal(b2.len, b.len);
  assert_memory_equal(b2.data, b.data, b.len);
  td_buf_deinit(&b2);
  td_msg_unref(d);
  td_msg_unref(m);
  td_buf_deinit(&b);

  /* binary data with NULs, empty metadata */
  const char bin[] = {1, 0, 2, 0, 3};
  m = td_msg_new("BIN", NULL, NULL, NULL, NULL, 0, TD_MSG_DATA_BINARY, bin, sizeof bin);
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_encode(m, &b), 0);
  assert_int_equal(td_msg_decode(b.data, b.len, &d), 0);
  assert_msg_eq(m, d);
  td_msg_unref(d);
  td_msg_unref(m);
  td_buf_deinit(&b);
}

static void test_malformed(void **st) {
  (void)st;
  struct td_msg *m = sample();
  struct td_buf b;
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_encode(m, &b), 0);
  struct td_msg *d = (struct td_msg *)0x1;
  /* truncated at every byte */
  for (size_t n = 0; n < b.len; n++) {
    assert_int_equal(td_msg_decode(b.data, n, &d), TD_EPROTO);
    assert_ptr_equal(d, (struct td_msg *)0x1);
  }
  /* trailing garbage */
  char *big = malloc(b.len + 1);
  memcpy(big, b.data, b.len);
  big[b.len] = 0;
  assert_int_equal(td_msg_decode(big, b.len + 1, &d), TD_EPROTO);
  /* bad version */
  big[0] = 2;
  assert_int_equal(td_msg_decode(big, b.len, &d), TD_EPROTO);
  /* huge length field on the type string (offset 25) */
  memcpy(big, b.data, b.len);
  big[25] = big[26] = big[27] = big[28] = (char)0xff;
  assert_int_equal(td_msg_decode(big, b.len, &d), TD_EPROTO);
  /* every single u32 position set to 0xffffffff, and every byte flipped: never crashes */
  for (size_t i = 0; i + 4 <= b.len; i++) {
    memcpy(big, b.data, b.len);
    memset(big + i, 0xff, 4);
    int rc = td_msg_decode(big, b.len, &d);
    assert_true(rc == TD_EPROTO || rc == 0);
    if (rc == 0) td_msg_unref(d);
  }
  for (size_t i = 0; i < b.len; i++) {
    memcpy(big, b.data, b.len);
    big[i] ^= 0x80;
    int rc = td_msg_decode(big, b.len, &d);
    assert_true(rc == TD_EPROTO || rc == 0);
    if (rc == 0) td_msg_unref(d);
  }
  /* bad entity type (offset 29 + type length) */
  memcpy(big, b.data, b.len);
  big[29 + strlen(m->type)] = (char)TD_ENTITY__COUNT;
  assert_int_equal(td_msg_decode(big, b.len, &d), TD_EPROTO);
  /* metadata count too large (offset after ids) */
  memcpy(big, b.data, b.len);
  size_t mdc = 29 + strlen(m->type) + 1 + 64;
  big[mdc] = 0x01; big[mdc + 1] = 0x04; big[mdc + 2] = 0; big[mdc + 3] = 0; /* 1025 */
  assert_int_equal(td_msg_decode(big, b.len, &d), TD_EPROTO);
  free(big);
  td_buf_deinit(&b);
  td_msg_unref(m);

  /* duplicate metadata keys in the binary form are rejected */
  struct td_msg_md md[] = {{"a", "1"}, {"b", "2"}};
  m = td_msg_new("T", NULL, NULL, NULL, md, 2, TD_MSG_DATA_TEXT, "", 0);
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_encode(m, &b), 0);
  char *p = memmem(b.data, b.len, "b\x01\0\0\0" "2", 6);
  assert_non_null(p);
  p[0] = 'a';
  assert_int_equal(td_msg_decode(b.data, b.len, &d), TD_EPROTO);
  td_buf_deinit(&b);
  td_msg_unref(m);
}

static void test_json(void **st) {
  (void)st;
  struct td_msg *m = sample();
  struct td_buf b;
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_to_json(m, &b), 0);
  assert_non_null(strstr(b.data, "\"type\":\"POST_TELEMETRY_REQUEST\""));
  assert_non_null(strstr(b.data, "\"originator\":{\"entityType\":\"DEVICE\",\"id\":\""));
  assert_non_null(strstr(b.data, "\"metaData\":{\"deviceName\":\"dev-1\",\"deviceType\":\"default\""));
  assert_non_null(strstr(b.data, "\"dataType\":\"JSON\""));
  assert_non_null(strstr(b.data, "\"data\":\"{\\\"temperature\\\":21.5,"));
  assert_non_null(strstr(b.data, "\"tenantId\":\""));
  assert_int_equal(b.data[0], '{');
  assert_int_equal(b.data[b.len - 1], '}');
  td_buf_deinit(&b);
  td_msg_unref(m);
  m = td_msg_new("X", NULL, NULL, NULL, NULL, 0, TD_MSG_DATA_TEXT, "hi", 2);
  td_buf_init(&b, 0);
  assert_int_equal(td_msg_to_json(m, &b), 0);
  assert_non_null(strstr(b.data, "\"customerId\":null"));
  assert_non_null(strstr(b.data, "\"metaData\":{}"));
  assert_non_null(strstr(b.data, "\"dataType\":\"TEXT\",\"data\":\"hi\"}"));
  td_buf_deinit(&b);
  td_msg_unref(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_new_and_md),   cmocka_unit_test(test_duplicate_keys),
    cmocka_unit_test(test_derive),       cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_malformed),    cmocka_unit_test(test_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
