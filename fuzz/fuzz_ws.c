/* fuzz_ws.c — libFuzzer target for the WebSocket frame parser
 * (src/transport/http/ws_codec.c) without a socket.
 *
 * Input: byte 0 picks the mode (client frames that must be masked, or
 * server frames that must not be), the message limit and how the rest is
 * cut into reads; the rest is the byte stream. Checked: every call consumes
 * within bounds and makes progress, data chunks point into the input, a
 * message never exceeds the limit, a completed text message is valid UTF-8
 * as a whole (cross-checks the incremental validator), a close event
 * carries a sendable code (or 1005) and a UTF-8 reason, an error carries
 * 1002, 1007 or 1009 and the parser stays failed. Each completed message is
 * re-encoded and parsed again to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "transport/http/ws_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXMSG 4096

static uint8_t msg[MAXMSG];

static void roundtrip(int opcode, const uint8_t *m, size_t len, bool masked) {
  static uint8_t frame[TD_WS_MAX_HEADER + MAXMSG];
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t hl = td_ws__encode_header(frame, opcode, true, len, masked ? key : NULL);
  memcpy(frame + hl, m, len);
  if (masked) td_ws__mask(frame + hl, len, key, 0);
  struct td_ws_parser p;
  td_ws__parser_init(&p, MAXMSG, masked);
  struct td_ws_event ev;
  size_t off = 0, got = 0;
  bool done = false;
  while (!done) {
    int rc = td_ws__parse(&p, frame + off, hl + len - off, &ev);
    if (rc < 0) abort();
    off += (size_t)rc;
    if (ev.type == TD_WS_EV_DATA) {
      if (got + ev.len > len || memcmp(m + got, ev.data, ev.len)) abort();
      got += ev.len;
      done = ev.last;
    } else if (ev.type == TD_WS_EV_NONE) {
      abort(); /* a whole frame was given */
    }
  }
  if (got != len || off != hl + len) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  bool client = !(mode & 1);
  uint64_t max = (mode & 2) ? 125 : MAXMSG;
  size_t piece = (size_t)(mode >> 2) + 1; /* read sizes of 1..64 bytes */
  size_t n = size - 1;
  uint8_t *buf = malloc(n ? n : 1);
  memcpy(buf, data + 1, n);
  if (n >= 24) {
    char out[TD_WS_ACCEPT_LEN + 1];
    if (!td_ws__accept_key((const char *)buf, 24, out) && strlen(out) != TD_WS_ACCEPT_LEN) abort();
  }

  struct td_ws_parser p;
  td_ws__parser_init(&p, max, client);
  size_t mlen = 0;
  int mop = 0;
  size_t pos = 0;
  int guard = 0;
  while (pos < n) {
    size_t len = n - pos < piece ? n - pos : piece;
    uint8_t *d = buf + pos;
    size_t left = len;
    while (left > 0) {
      struct td_ws_event ev;
      int rc = td_ws__parse(&p, d, left, &ev);
      if (rc < 0) {
        if (p.error_code != TD_WS_CLOSE_PROTOCOL && p.error_code != TD_WS_CLOSE_BAD_DATA &&
            p.error_code != TD_WS_CLOSE_TOO_BIG)
          abort();
        if (!p.error) abort();
        if (td_ws__parse(&p, d, left, &ev) != TD_EPROTO) abort(); /* stays failed */
        goto out;
      }
      if ((size_t)rc > left) abort();
      if (rc == 0 && ev.type == TD_WS_EV_NONE) abort(); /* no progress */
      if (ev.type == TD_WS_EV_NONE && (size_t)rc != left) abort();
      switch (ev.type) {
      case TD_WS_EV_NONE: break;
      case TD_WS_EV_DATA:
        if (ev.len && (ev.data < d || ev.data + ev.len > d + rc)) abort();
        if (ev.opcode != TD_WS_OP_TEXT && ev.opcode != TD_WS_OP_BINARY) abort();
        if (mop && mop != ev.opcode) abort();
        mop = ev.opcode;
        if (mlen + ev.len > max) abort();
        if (ev.len) memcpy(msg + mlen, ev.data, ev.len);
        mlen += ev.len;
        if (ev.last) {
          if (mop == TD_WS_OP_TEXT && !td_ws__utf8_valid(msg, mlen)) abort();
          roundtrip(mop, msg, mlen, (mode & 4) != 0);
          mlen = 0;
          mop = 0;
        }
        break;
      case TD_WS_EV_PING:
      case TD_WS_EV_PONG:
        if (ev.len > TD_WS_MAX_CONTROL) abort();
        break;
      case TD_WS_EV_CLOSE:
        if (ev.close_code != TD_WS_CLOSE_NO_STATUS && !td_ws__close_code_valid(ev.close_code)) abort();
        if (ev.len > TD_WS_MAX_REASON || !td_ws__utf8_valid(ev.data, ev.len)) abort();
        {
          uint8_t cp[TD_WS_MAX_CONTROL];
          char reason[TD_WS_MAX_REASON + 1];
          memcpy(reason, ev.data, ev.len);
          reason[ev.len] = 0;
          size_t cl = td_ws__close_payload(cp, ev.close_code, reason);
          if (cl > TD_WS_MAX_CONTROL) abort();
        }
        break;
      }
      d += rc;
      left -= (size_t)rc;
      if (++guard > 1000000) abort();
    }
    pos += len;
  }
out:
  free(buf);
  return 0;
}
