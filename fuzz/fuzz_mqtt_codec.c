/* fuzz_mqtt_codec.c — libFuzzer target for the MQTT packet codec
 * (src/transport/mqtt/codec.h). The input is decoded as a stream of packets
 * at each protocol level (3.1, 3.1.1, 5.0). Every result must be bytes
 * consumed (1..n), TD_EAGAIN or TD_EPROTO with a detail; every decoded packet
 * must re-encode, decode back equal from the re-encoded bytes, re-encode to
 * the same bytes, and (when small) have every proper prefix give TD_EAGAIN.
 * A max_packet limit taken from the input must refuse exactly the packets
 * above it with TD_MQTT_E_TOO_LARGE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "transport/mqtt/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_packet(int level, const struct td_mqtt_packet *pkt) {
  struct td_buf b, b2;
  td_buf_init(&b, 0);
  td_buf_init(&b2, 0);
  if (td_mqtt_encode(&b, level, pkt) != 0) abort();
  const uint8_t *w = (const uint8_t *)b.data;
  struct td_mqtt_packet again;
  struct td_mqtt_error err;
  int rc = td_mqtt_decode(w, b.len, level, 0, &again, &err);
  if (rc != (int)b.len) abort();
  if (!td_mqtt_packet_equal(pkt, &again)) abort();
  if (td_mqtt_encode(&b2, level, &again) != 0) abort();
  if (b2.len != b.len || memcmp(b.data, b2.data, b.len) != 0) abort();
  if (b.len <= 96)
    for (size_t k = 0; k < b.len; k++)
      if (td_mqtt_decode(w, k, level, 0, &again, &err) != TD_EAGAIN) abort();
  td_buf_deinit(&b);
  td_buf_deinit(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int levels[] = {3, 4, 5};
  for (size_t li = 0; li < 3; li++) {
    int level = levels[li];
    size_t off = 0;
    while (off < size) {
      struct td_mqtt_packet pkt;
      struct td_mqtt_error err;
      const uint8_t *p = data + off;
      size_t n = size - off;
      int rc = td_mqtt_decode(p, n, level, 0, &pkt, &err);
      if (rc == TD_EAGAIN) break;
      if (rc == TD_EPROTO) {
        if (err.code == TD_MQTT_E_NONE || err.code == TD_MQTT_E_TOO_LARGE) abort();
        break;
      }
      if (rc <= 0 || (size_t)rc > n) abort();
      if (pkt.type == TD_MQTT_CONNECT) {
        if (pkt.level != pkt.u.connect.protocol_level) abort();
        level = pkt.level; /* as a session would continue */
      }
      check_packet(pkt.level, &pkt);
      /* A limit just below the packet refuses it by size, at it accepts. */
      struct td_mqtt_packet lim;
      if (td_mqtt_decode(p, n, level, (size_t)rc, &lim, &err) != rc) abort();
      if (td_mqtt_decode(p, n, level, (size_t)rc - 1, &lim, &err) != TD_EPROTO || err.code != TD_MQTT_E_TOO_LARGE)
        abort();
      off += (size_t)rc;
    }
  }
  return 0;
}
