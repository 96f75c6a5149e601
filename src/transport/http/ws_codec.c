/* ws_codec.c — the WebSocket (RFC 6455) frame codec and handshake key
 * (ws_int.h): a pure, streaming parser over bytes, the encoder of the
 * server's frames, the close payload, UTF-8 validation and the
 * Sec-WebSocket-Accept computation. No socket and no allocation, so
 * fuzz/fuzz_ws.c drives it directly; ws.c runs it on each connection.
 *
 * What the parser refuses (close code in parentheses):
 * reserved bits set (no extension is ever negotiated), unknown opcodes, an
 * unmasked client frame, a fragmented or longer-than-125 control frame, a
 * continuation without a message or a new message inside a fragmented one,
 * a 64-bit length with its high bit set (1002); a message growing past
 * max_message, refused at the frame header before any payload is read
 * (1009); text that is not UTF-8, checked chunk by chunk so that a bad byte
 * fails at once even in an unfinished message, and a close reason that is
 * not UTF-8 (1007); a close frame of 1 byte or with a code that may not be
 * sent (1002).
 *
 * Length encodings that are not minimal (a 16-bit length below 126, a
 * 64-bit one below 65536) are accepted. RFC 6455 §5.2 says a sender MUST
 * use the minimal form but gives the receiver nothing to do about it; the
 * length is only ever a counter here, bounded by max_message, so accepting
 * it costs nothing and spares odd embedded clients. */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/err.h"
#include "transport/http/ws_int.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- UTF-8 ----
 * Incremental state in one word: bits 0-7 continuation bytes still expected,
 * bits 8-15 and 16-23 the allowed range of the next one (narrower than
 * 80..BF right after E0, ED, F0, F4: no overlongs, surrogates or code points
 * past U+10FFFF). 0 = at a character boundary. */

static bool utf8_feed(uint32_t *state, const uint8_t *s, size_t n) {
  uint32_t need = *state & 0xff, lo = (*state >> 8) & 0xff, hi = (*state >> 16) & 0xff;
  for (size_t i = 0; i < n; i++) {
    uint8_t b = s[i];
    if (need == 0) {
      if (b < 0x80) continue;
      lo = 0x80;
      hi = 0xBF;
      if (b >= 0xC2 && b <= 0xDF) need = 1;
      else if (b == 0xE0) need = 2, lo = 0xA0;
      else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
      else if (b == 0xED) need = 2, hi = 0x9F;
      else if (b == 0xF0) need = 3, lo = 0x90;
      else if (b >= 0xF1 && b <= 0xF3) need = 3;
      else if (b == 0xF4) need = 3, hi = 0x8F;
      else return false;
    } else {
      if (b < lo || b > hi) return false;
      need--;
      lo = 0x80;
      hi = 0xBF;
    }
  }
  *state = need ? need | lo << 8 | hi << 16 : 0;
  return true;
}

bool td_ws__utf8_valid(const uint8_t *s, size_t n) {
  uint32_t st = 0;
  return utf8_feed(&st, s, n) && st == 0;
}

/* ---- parser ---- */

void td_ws__parser_init(struct td_ws_parser *p, uint64_t max_message, bool require_mask) {
  memset(p, 0, sizeof *p);
  p->max_message = max_message ? max_message : 65536;
  p->require_mask = require_mask;
}

static int fail(struct td_ws_parser *p, int code, const char *why) {
  p->error_code = code;
  p->error = why;
  return TD_EPROTO;
}

static size_t header_need(const struct td_ws_parser *p) {
  if (p->hdr_len < 2) return 2;
  size_t n = 2;
  uint8_t l = p->hdr[1] & 0x7f;
  if (l == 126) n += 2;
  else if (l == 127) n += 8;
  if (p->hdr[1] & 0x80) n += 4;
  return n;
}

/* check_start: everything the first two bytes decide, before the length and
 * mask arrive. */
static int check_start(struct td_ws_parser *p) {
  uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
  if (b0 & 0x70) return fail(p, TD_WS_CLOSE_PROTOCOL, "reserved bits set");
  int op = b0 & 0x0f;
  switch (op) {
  case TD_WS_OP_CONT:
  case TD_WS_OP_TEXT:
  case TD_WS_OP_BINARY:
  case TD_WS_OP_CLOSE:
  case TD_WS_OP_PING:
  case TD_WS_OP_PONG: break;
  default: return fail(p, TD_WS_CLOSE_PROTOCOL, "unknown opcode");
  }
  bool masked = (b1 & 0x80) != 0;
  if (p->require_mask && !masked) return fail(p, TD_WS_CLOSE_PROTOCOL, "unmasked client frame");
  if (!p->require_mask && masked) return fail(p, TD_WS_CLOSE_PROTOCOL, "masked server frame");
  if (op & 0x8) {
    if (!(b0 & 0x80)) return fail(p, TD_WS_CLOSE_PROTOCOL, "fragmented control frame");
    if ((b1 & 0x7f) > TD_WS_MAX_CONTROL) return fail(p, TD_WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
  } else if (op == TD_WS_OP_CONT) {
    if (!p->msg_opcode) return fail(p, TD_WS_CLOSE_PROTOCOL, "continuation without a message");
  } else if (p->msg_opcode) {
    return fail(p, TD_WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
  }
  return 0;
}

/* start_frame: the header is complete; set up the payload. */
static int start_frame(struct td_ws_parser *p) {
  const uint8_t *h = p->hdr;
  size_t pos = 2;
  uint64_t len = h[1] & 0x7f;
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    pos = 4;
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
    pos = 10;
    if (len >> 63) return fail(p, TD_WS_CLOSE_PROTOCOL, "64-bit length with the high bit set");
  }
  p->masked = (h[1] & 0x80) != 0;
  if (p->masked) memcpy(p->mask, h + pos, 4);
  p->opcode = h[0] & 0x0f;
  p->fin = (h[0] & 0x80) != 0;
  if (!(p->opcode & 0x8)) {
    if (p->opcode != TD_WS_OP_CONT) {
      p->msg_opcode = p->opcode;
      p->msg_len = 0;
      p->utf8 = 0;
    }
    /* msg_len <= max_message always holds, so this cannot wrap */
    if (len > p->max_message - p->msg_len) return fail(p, TD_WS_CLOSE_TOO_BIG, "message too big");
  }
  p->ctrl_len = 0;
  p->remaining = len;
  p->offset = 0;
  p->hdr_len = 0;
  p->in_payload = true;
  return 0;
}

static int finish_control(struct td_ws_parser *p, struct td_ws_event *ev) {
  ev->data = p->ctrl;
  ev->len = p->ctrl_len;
  switch (p->opcode) {
  case TD_WS_OP_PING: ev->type = TD_WS_EV_PING; return 0;
  case TD_WS_OP_PONG: ev->type = TD_WS_EV_PONG; return 0;
  default: break;
  }
  ev->type = TD_WS_EV_CLOSE;
  if (p->ctrl_len == 0) {
    ev->close_code = TD_WS_CLOSE_NO_STATUS;
    return 0;
  }
  if (p->ctrl_len == 1) return fail(p, TD_WS_CLOSE_PROTOCOL, "close frame of one byte");
  ev->close_code = p->ctrl[0] << 8 | p->ctrl[1];
  if (!td_ws__close_code_valid(ev->close_code)) return fail(p, TD_WS_CLOSE_PROTOCOL, "invalid close code");
  ev->data = p->ctrl + 2;
  ev->len = p->ctrl_len - 2u;
  if (!td_ws__utf8_valid(ev->data, ev->len)) return fail(p, TD_WS_CLOSE_BAD_DATA, "close reason not UTF-8");
  return 0;
}

int td_ws__parse(struct td_ws_parser *p, uint8_t *data, size_t n, struct td_ws_event *ev) {
  memset(ev, 0, sizeof *ev);
  if (p->error_code) return TD_EPROTO;
  if (n > INT_MAX) n = INT_MAX; /* the count is returned as an int; the caller loops */
  size_t used = 0;
  if (!p->in_payload) {
    size_t need = header_need(p);
    while (p->hdr_len < need && used < n) {
      p->hdr[p->hdr_len++] = data[used++];
      if (p->hdr_len == 2) {
        if (check_start(p)) return TD_EPROTO;
        need = header_need(p);
      }
    }
    if (p->hdr_len < need) return (int)used;
    if (start_frame(p)) return TD_EPROTO;
  }
  size_t k = n - used;
  if (k > p->remaining) k = (size_t)p->remaining;
  if (k == 0 && p->remaining > 0) return (int)used; /* payload pending, input exhausted */
  uint8_t *chunk = data + used;
  if (p->masked) td_ws__mask(chunk, k, p->mask, p->offset);
  p->remaining -= k;
  p->offset += k;
  used += k;
  if (p->opcode & 0x8) {
    memcpy(p->ctrl + p->ctrl_len, chunk, k); /* remaining started <= 125, so this fits */
    p->ctrl_len = (uint8_t)(p->ctrl_len + k);
    if (p->remaining) return (int)used;
    p->in_payload = false;
    return finish_control(p, ev) ? TD_EPROTO : (int)used;
  }
  if (p->msg_opcode == TD_WS_OP_TEXT && !utf8_feed(&p->utf8, chunk, k))
    return fail(p, TD_WS_CLOSE_BAD_DATA, "text message not UTF-8");
  p->msg_len += k;
  ev->type = TD_WS_EV_DATA;
  ev->opcode = p->msg_opcode;
  ev->data = chunk;
  ev->len = k;
  if (p->remaining == 0) {
    p->in_payload = false;
    if (p->fin) {
      if (p->msg_opcode == TD_WS_OP_TEXT && p->utf8 != 0)
        return fail(p, TD_WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 character");
      ev->last = true;
      p->msg_opcode = 0;
      p->msg_len = 0;
    }
  }
  return (int)used;
}

/* ---- encoder ---- */

size_t td_ws__encode_header(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *mask) {
  size_t n = 0;
  uint8_t m = mask ? 0x80 : 0;
  out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[n++] = (uint8_t)(m | len);
  } else if (len <= 0xffff) {
    out[n++] = m | 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[n++] = m | 127;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(len >> (8 * i));
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void td_ws__mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset) {
  size_t i = 0;
  unsigned o = (unsigned)(offset & 3);
  /* word at a time once aligned to the key: payloads of a few KiB are common */
  while (i < n && ((o + i) & 3)) {
    p[i] ^= mask[(o + i) & 3];
    i++;
  }
  if (n - i >= 8) {
    uint8_t k8[8];
    for (int j = 0; j < 8; j++) k8[j] = mask[j & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    for (; n - i >= 8; i += 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      w ^= k;
      memcpy(p + i, &w, 8);
    }
  }
  for (; i < n; i++) p[i] ^= mask[(o + i) & 3];
}

bool td_ws__close_code_valid(int code) {
  /* 1004-1006 and 1015 are reserved, never sent; 1012-1014 are registered
   * with IANA (service restart, try again later, bad gateway) and accepted;
   * 1016-2999 are unassigned; 3000-4999 belong to libraries and applications. */
  if (code >= 1000 && code <= 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

size_t td_ws__close_payload(uint8_t *out, int code, const char *reason) {
  if (code == TD_WS_CLOSE_NO_STATUS || code == 0) return 0;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  size_t r = reason ? strnlen(reason, TD_WS_MAX_REASON + 1) : 0;
  if (r > TD_WS_MAX_REASON) {
    r = TD_WS_MAX_REASON;
    while (r > 0 && ((uint8_t)reason[r] & 0xC0) == 0x80) r--; /* do not cut a character */
  }
  if (r && !td_ws__utf8_valid((const uint8_t *)reason, r)) r = 0;
  if (r) memcpy(out + 2, reason, r);
  return 2 + r;
}

/* ---- handshake ---- */

static bool b64char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int td_ws__accept_key(const char *key, size_t key_len, char *out) {
  /* 16 bytes in base64: 22 characters and "==" */
  if (key_len != 24 || key[22] != '=' || key[23] != '=') return TD_EINVAL;
  for (size_t i = 0; i < 22; i++)
    if (!b64char(key[i])) return TD_EINVAL;
  char buf[24 + sizeof WS_GUID];
  memcpy(buf, key, 24);
  memcpy(buf + 24, WS_GUID, sizeof WS_GUID - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(buf, 24 + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) return TD_EINVAL;
  EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
  return 0;
}
