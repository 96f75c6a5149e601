/* test_topics.c — the MQTT transport's device topics and subscription
 * whitelist (src/transport/mqtt/topics.c, reference §1.1.2 and §1.1.4). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "transport/mqtt/mqtt_int.h"

static struct td_mqtt_str S(const char *s) { return (struct td_mqtt_str){s, strlen(s)}; }

static enum mtopic parse(const char *s, enum mfam *fam, int32_t *id, bool *bad) {
  return mqtt_topic_parse(S(s), fam, id, bad);
}

static void test_publish_topics(void **st) {
  (void)st;
  enum mfam fam;
  int32_t id;
  bool bad;
  assert_int_equal(parse("v1/devices/me/telemetry", &fam, &id, &bad), T_TELEMETRY);
  assert_int_equal(fam, FAM_V1);
  assert_int_equal(parse("v2/t", &fam, &id, &bad), T_TELEMETRY);
  assert_int_equal(fam, FAM_V2);
  assert_int_equal(parse("v2/t/j", &fam, &id, &bad), T_TELEMETRY);
  assert_int_equal(parse("v1/devices/me/attributes", &fam, &id, &bad), T_ATTRIBUTES);
  assert_int_equal(parse("v2/a", &fam, &id, &bad), T_ATTRIBUTES);
  assert_int_equal(parse("v1/devices/me/claim", &fam, &id, &bad), T_CLAIM);
  assert_int_equal(parse("/provision/request", &fam, &id, &bad), T_PROVISION);
  assert_int_equal(parse("v1/devices/me/attributes/request/17", &fam, &id, &bad), T_ATTR_REQUEST);
  assert_int_equal(id, 17);
  assert_false(bad);
  assert_int_equal(parse("v1/devices/me/rpc/request/-3", &fam, &id, &bad), T_RPC_REQUEST);
  assert_int_equal(id, -3);
  assert_int_equal(parse("v1/devices/me/rpc/response/2147483647", &fam, &id, &bad), T_RPC_RESPONSE);
  assert_int_equal(id, 2147483647);
  assert_int_equal(parse("v2/r/req/j/8", &fam, &id, &bad), T_RPC_REQUEST);
  assert_int_equal(id, 8);
  assert_int_equal(fam, FAM_V2);
  assert_int_equal(parse("v2/a/req/9", &fam, &id, &bad), T_ATTR_REQUEST);
  assert_int_equal(id, 9);
  assert_int_equal(parse("v1/gateway/connect", &fam, &id, &bad), T_GW_CONNECT);
  assert_int_equal(parse("v1/gateway/disconnect", &fam, &id, &bad), T_GW_DISCONNECT);
  assert_int_equal(parse("v1/gateway/telemetry", &fam, &id, &bad), T_GW_TELEMETRY);
  assert_int_equal(parse("v1/gateway/attributes", &fam, &id, &bad), T_GW_ATTRIBUTES);
  assert_int_equal(parse("v1/gateway/attributes/request", &fam, &id, &bad), T_GW_ATTR_REQUEST);
  assert_int_equal(parse("v1/gateway/rpc", &fam, &id, &bad), T_GW_RPC);
  assert_int_equal(parse("v1/gateway/claim", &fam, &id, &bad), T_GW_CLAIM);
  assert_int_equal(parse("v1/gateway/other", &fam, &id, &bad), T_UNKNOWN);
}

static void test_bad_ids_and_unknown(void **st) {
  (void)st;
  enum mfam fam;
  int32_t id;
  bool bad;
  const char *bads[] = {"v1/devices/me/rpc/request/2147483648", "v1/devices/me/rpc/request/", "v1/devices/me/rpc/request/1a",
                        "v1/devices/me/rpc/request/ 1", "v2/r/req/j/x", "v1/devices/me/attributes/request/+"};
  for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
    assert_int_equal(parse(bads[i], &fam, &id, &bad), T_UNKNOWN);
    assert_true(bad);
  }
  const char *unknown[] = {"", "v1/devices/me", "v1/devices/me/telemetry/", "V1/devices/me/telemetry", "v2/t/p",
                           "v1/devices/me/telemetryx", "/provision"};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    assert_int_equal(parse(unknown[i], &fam, &id, &bad), T_UNKNOWN);
    assert_false(bad);
  }
}

static void test_filters(void **st) {
  (void)st;
  enum mfam fam;
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/attributes"), &fam), SUB_ATTR);
  assert_int_equal(fam, FAM_V1);
  assert_int_equal(mqtt_filter_parse(S("v2/a"), &fam), SUB_ATTR);
  assert_int_equal(fam, FAM_V2);
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/rpc/request/+"), &fam), SUB_RPC);
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/rpc/response/+"), &fam), SUB_RPC_RESP);
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/attributes/response/+"), &fam), SUB_ATTR_RESP);
  assert_int_equal(mqtt_filter_parse(S("v2/fw/response/+/chunk/+"), &fam), SUB_OTA);
  assert_int_equal(mqtt_filter_parse(S("/provision/response"), &fam), SUB_PROVISION);
  assert_int_equal(mqtt_filter_parse(S("v1/gateway/attributes"), &fam), SUB_GW_ATTR);
  assert_int_equal(mqtt_filter_parse(S("v1/gateway/rpc"), &fam), SUB_GW_RPC);
  assert_int_equal(mqtt_filter_parse(S("v1/gateway/attributes/response"), &fam), SUB_GW_ATTR_RESP);
  /* exact strings only: no wildcard matching */
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/#"), &fam), -1);
  assert_int_equal(mqtt_filter_parse(S("v1/devices/me/rpc/request/1"), &fam), -1);
  assert_int_equal(mqtt_filter_parse(S("#"), &fam), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_publish_topics),
    cmocka_unit_test(test_bad_ids_and_unknown),
    cmocka_unit_test(test_filters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
