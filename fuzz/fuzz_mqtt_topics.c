/* fuzz_mqtt_topics.c — libFuzzer target for the MQTT transport's topic and
 * filter matching (src/transport/mqtt/topics.c): any bytes are a topic name
 * or a filter; the parser must not read past them, a topic with a bad
 * {requestId} is never an operation, and an operation with an id formats
 * back to the same digits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/mqtt/mqtt_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a private copy of exactly size bytes, so ASan sees any over-read */
  char *p = malloc(size ? size : 1);
  if (!p) return 0;
  if (size) memcpy(p, data, size);
  struct td_mqtt_str t = {p, size};
  enum mfam fam;
  int32_t id;
  bool bad;
  enum mtopic k = mqtt_topic_parse(t, &fam, &id, &bad);
  if (bad && k != T_UNKNOWN) abort();
  if (k == T_ATTR_REQUEST || k == T_RPC_REQUEST || k == T_RPC_RESPONSE) {
    char digits[16];
    int n = snprintf(digits, sizeof digits, "%" PRId32, id);
    /* the suffix parses to id: its last digits match (a leading '+' or zeros may differ) */
    if (n <= 0 || size == 0 || p[size - 1] != digits[n - 1]) abort();
  }
  int s = mqtt_filter_parse(t, &fam);
  if (s < -1 || s >= SUB_N) abort();
  free(p);
  return 0;
}
