/* fuzz_msg_decode.c — libFuzzer target for the queue's binary message form
 * (td_msg_decode in src/msg/msg.c). Any input must either be rejected
 * (TD_EPROTO) or decode to a message whose encoding is byte-identical to the
 * input (the format is canonical), and JSON rendering must not crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "msg/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct td_msg *m = NULL;
  int rc = td_msg_decode(data, size, &m);
  if (rc == TD_ENOMEM) return 0;
  if (rc != 0) {
    if (rc != TD_EPROTO) abort();
    return 0;
  }
  struct td_buf b;
  td_buf_init(&b, 0);
  if (td_msg_encode(m, &b) != 0) abort();
  if (b.len != size || memcmp(b.data, data, size) != 0) abort();
  td_buf_reset(&b);
  if (td_msg_to_json(m, &b) != 0) abort();
  td_buf_deinit(&b);
  td_msg_unref(m);
  return 0;
}
