/* test_ws.c — WebSocket (transport/http/ws.h, ws_int.h): the frame codec
 * rule by rule (each malformed case with its close code), the handshake
 * key, and the server end to end over real sockets: handshake, echo,
 * fragments, ping/pong, both close handshakes, 1002/1007/1009, the send
 * queue limit, server pings, bad handshakes, a plain route asked to
 * upgrade, a dropped client, and shutdown with sessions open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/loop.h"
#include "transport/http/http.h"
#include "transport/http/ws.h"
#include "http_test_server.h"
#include "transport/http/ws_int.h"

/* =========================== codec =========================== */

static const uint8_t KEY[4] = {0xa1, 0x02, 0x7f, 0xe3};

/* frame: a client (masked) or server (mask NULL) frame into out; returns its length. */
static size_t frame(uint8_t *out, int op, bool fin, const void *payload, size_t len, const uint8_t *mask) {
  size_t hl = td_ws__encode_header(out, op, fin, len, mask);
  if (len) memcpy(out + hl, payload, len);
  if (mask) td_ws__mask(out + hl, len, mask, 0);
  return hl + len;
}

#define MAXEV 4096

struct got {
  int types[MAXEV];
  int codes[MAXEV];
  bool last[MAXEV];
  int n;
  char text[70000]; /* concatenated DATA, or the last control payload */
  size_t text_len;
  size_t ctrl_len;
  char ctrl[128];
};

/* feed: run the parser over buf in pieces of `piece` bytes; 0 or TD_EPROTO. */
static int feed(struct td_ws_parser *p, uint8_t *buf, size_t n, size_t piece, struct got *g) {
  memset(g, 0, sizeof *g);
  size_t pos = 0;
  while (pos < n) {
    size_t len = n - pos < piece ? n - pos : piece;
    uint8_t *d = buf + pos;
    size_t left = len;
    while (left) {
      struct td_ws_event ev;
      int rc = td_ws__parse(p, d, left, &ev);
      if (rc < 0) return rc;
      assert_true((size_t)rc <= left);
      assert_true(rc > 0 || ev.type != TD_WS_EV_NONE);
      d += rc;
      left -= (size_t)rc;
      if (ev.type == TD_WS_EV_NONE) continue;
      assert_true(g->n < MAXEV);
      g->types[g->n] = ev.type;
      g->codes[g->n] = ev.close_code;
      g->last[g->n] = ev.last;
      g->n++;
      if (ev.type == TD_WS_EV_DATA) {
        memcpy(g->text + g->text_len, ev.data, ev.len);
        g->text_len += ev.len;
      } else {
        memcpy(g->ctrl, ev.data, ev.len);
        g->ctrl_len = ev.len;
      }
    }
    pos += len;
  }
  return 0;
}

/* expect_error: the client bytes fail with close code `code`, whatever the read size. */
static void expect_error(uint8_t *buf, size_t n, uint64_t max, bool client, int code) {
  size_t pieces[] = {1, 3, 100000};
  for (size_t i = 0; i < 3; i++) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, buf, n);
    struct td_ws_parser p;
    td_ws__parser_init(&p, max, client);
    struct got *g = malloc(sizeof *g);
    int rc = feed(&p, copy, n, pieces[i], g);
    assert_int_equal(rc, TD_EPROTO);
    assert_int_equal(p.error_code, code);
    assert_non_null(p.error);
    struct td_ws_event ev;
    assert_int_equal(td_ws__parse(&p, copy, n, &ev), TD_EPROTO); /* stays failed */
    free(g);
    free(copy);
  }
}

static void test_accept_key(void **st) {
  char out[TD_WS_ACCEPT_LEN + 1];
  const char *k = "dGhlIHNhbXBsZSBub25jZQ==";
  assert_int_equal(td_ws__accept_key(k, strlen(k), out), 0);
  /* RFC 6455 §1.3 (and §4.2.2) */
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_int_equal(td_ws__accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, out), TD_EINVAL);
  assert_int_equal(td_ws__accept_key("dGhlIHNhbXBsZSBub25jZQQQ", 24, out), TD_EINVAL);
  assert_int_equal(td_ws__accept_key("dGhlIHNhbXBsZSBub25j*Q==", 24, out), TD_EINVAL);
  assert_int_equal(td_ws__accept_key("", 0, out), TD_EINVAL);
}

static void test_masked_text_any_split(void **st) {
  uint8_t buf[64];
  size_t pieces[] = {1, 2, 7, 64};
  for (size_t i = 0; i < 4; i++) {
    size_t n = frame(buf, TD_WS_OP_TEXT, true, "Hello", 5, KEY);
    struct td_ws_parser p;
    td_ws__parser_init(&p, 0, true);
    struct got g;
    assert_int_equal(feed(&p, buf, n, pieces[i], &g), 0);
    assert_int_equal(g.text_len, 5);
    assert_memory_equal(g.text, "Hello", 5);
    assert_int_equal(g.types[g.n - 1], TD_WS_EV_DATA);
    assert_true(g.last[g.n - 1]);
  }
  /* an empty text message is one event */
  size_t n = frame(buf, TD_WS_OP_TEXT, true, "", 0, KEY);
  struct td_ws_parser p;
  td_ws__parser_init(&p, 0, true);
  struct got g;
  assert_int_equal(feed(&p, buf, n, 100, &g), 0);
  assert_int_equal(g.n, 1);
  assert_true(g.last[0]);
}

static void test_lengths(void **st) {
  static uint8_t buf[70100], payload[70000];
  static struct got g;
  memset(payload, 'a', sizeof payload);
  size_t lens[] = {125, 126, 65535, 65536, 69999};
  size_t hls[] = {2, 4, 4, 10, 10};
  for (size_t i = 0; i < 5; i++) {
    size_t n = frame(buf, TD_WS_OP_TEXT, true, payload, lens[i], KEY);
    assert_int_equal(n, hls[i] + 4 + lens[i]);
    struct td_ws_parser p;
    td_ws__parser_init(&p, 70000, true);
    assert_int_equal(feed(&p, buf, n, 4096, &g), 0);
    assert_int_equal(g.text_len, lens[i]);
    assert_true(g.last[g.n - 1]);
  }
  /* non-minimal encodings are accepted (see ws_codec.c): 5 bytes in 16 and 64 bits */
  uint8_t nm[] = {0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
  struct td_ws_parser p;
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, nm, sizeof nm, 100, &g), 0);
  assert_memory_equal(g.text, "hello", 5);
  uint8_t nm64[] = {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 'h', 'i'};
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, nm64, sizeof nm64, 100, &g), 0);
  assert_memory_equal(g.text, "hi", 2);
  /* a 64-bit length with the high bit set: 1002 */
  uint8_t hb[] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  expect_error(hb, sizeof hb, 0, true, TD_WS_CLOSE_PROTOCOL);
}

static void test_fragments(void **st) {
  uint8_t buf[256];
  size_t n = 0;
  n += frame(buf + n, TD_WS_OP_TEXT, false, "Hel", 3, KEY);
  n += frame(buf + n, TD_WS_OP_PING, true, "p", 1, KEY); /* control frames may come between fragments */
  n += frame(buf + n, TD_WS_OP_CONT, false, "", 0, KEY);
  n += frame(buf + n, TD_WS_OP_CONT, true, "lo", 2, KEY);
  n += frame(buf + n, TD_WS_OP_TEXT, true, "x", 1, KEY); /* a new message after it is fine */
  struct td_ws_parser p;
  td_ws__parser_init(&p, 0, true);
  struct got g;
  assert_int_equal(feed(&p, buf, n, 5, &g), 0);
  assert_int_equal(g.text_len, 6);
  assert_memory_equal(g.text, "Hellox", 6);
  int pings = 0, lasts = 0;
  for (int i = 0; i < g.n; i++) {
    pings += g.types[i] == TD_WS_EV_PING;
    lasts += g.last[i];
  }
  assert_int_equal(pings, 1);
  assert_int_equal(lasts, 2);
  /* continuation without a message */
  n = frame(buf, TD_WS_OP_CONT, true, "abc", 3, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  /* a new text message inside a fragmented one */
  n = frame(buf, TD_WS_OP_TEXT, false, "a", 1, KEY);
  n += frame(buf + n, TD_WS_OP_TEXT, true, "b", 1, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  /* binary inside text */
  n = frame(buf, TD_WS_OP_TEXT, false, "a", 1, KEY);
  n += frame(buf + n, TD_WS_OP_BINARY, true, "b", 1, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  /* a fragmented control frame */
  n = frame(buf, TD_WS_OP_PING, false, "a", 1, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
}

static void test_control_frames(void **st) {
  uint8_t buf[300], pl[130];
  memset(pl, 'c', sizeof pl);
  struct td_ws_parser p;
  struct got g;
  /* ping of 125 bytes: fine; pong; 126: 1002 (refused from the header alone) */
  size_t n = frame(buf, TD_WS_OP_PING, true, pl, 125, KEY);
  n += frame(buf + n, TD_WS_OP_PONG, true, "q", 1, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 7, &g), 0);
  assert_int_equal(g.n, 2);
  assert_int_equal(g.types[0], TD_WS_EV_PING);
  assert_int_equal(g.types[1], TD_WS_EV_PONG);
  n = frame(buf, TD_WS_OP_PING, true, pl, 126, KEY);
  expect_error(buf, 2, 0, true, TD_WS_CLOSE_PROTOCOL);
  n = frame(buf, TD_WS_OP_CLOSE, true, pl, 126, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  /* close without a code: 1005 */
  n = frame(buf, TD_WS_OP_CLOSE, true, "", 0, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 100, &g), 0);
  assert_int_equal(g.types[0], TD_WS_EV_CLOSE);
  assert_int_equal(g.codes[0], TD_WS_CLOSE_NO_STATUS);
  /* close with code and reason */
  uint8_t cp[TD_WS_MAX_CONTROL];
  size_t cl = td_ws__close_payload(cp, 4000, "bye \xc3\xa9");
  n = frame(buf, TD_WS_OP_CLOSE, true, cp, cl, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 1, &g), 0);
  assert_int_equal(g.codes[0], 4000);
  assert_int_equal(g.ctrl_len, 6);
  assert_memory_equal(g.ctrl, "bye \xc3\xa9", 6);
  /* one byte: 1002 */
  n = frame(buf, TD_WS_OP_CLOSE, true, "\x03", 1, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  /* codes: sendable ones pass, the others are 1002 */
  int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    uint8_t c[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
    n = frame(buf, TD_WS_OP_CLOSE, true, c, 2, KEY);
    td_ws__parser_init(&p, 0, true);
    assert_int_equal(feed(&p, buf, n, 100, &g), 0);
    assert_int_equal(g.codes[0], good[i]);
  }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint8_t c[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
    n = frame(buf, TD_WS_OP_CLOSE, true, c, 2, KEY);
    expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  }
  /* a reason that is not UTF-8: 1007 */
  n = frame(buf, TD_WS_OP_CLOSE, true, "\x03\xe8\xff", 3, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_BAD_DATA);
}

static void test_mask_rsv_opcodes(void **st) {
  uint8_t buf[64];
  /* a client frame must be masked; a server frame must not be */
  size_t n = frame(buf, TD_WS_OP_TEXT, true, "abc", 3, NULL);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  n = frame(buf, TD_WS_OP_TEXT, true, "abc", 3, KEY);
  expect_error(buf, n, 0, false, TD_WS_CLOSE_PROTOCOL);
  /* the client side parses unmasked server frames */
  n = frame(buf, TD_WS_OP_TEXT, true, "abc", 3, NULL);
  struct td_ws_parser p;
  td_ws__parser_init(&p, 0, false);
  struct got g;
  assert_int_equal(feed(&p, buf, n, 100, &g), 0);
  assert_memory_equal(g.text, "abc", 3);
  /* reserved bits (no extension is negotiated) */
  for (int rsv = 1; rsv < 8; rsv++) {
    n = frame(buf, TD_WS_OP_TEXT, true, "abc", 3, KEY);
    buf[0] |= (uint8_t)(rsv << 4);
    expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  }
  /* reserved opcodes */
  int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    n = frame(buf, ops[i], true, "abc", 3, KEY);
    expect_error(buf, n, 0, true, TD_WS_CLOSE_PROTOCOL);
  }
}

static void test_max_message(void **st) {
  static uint8_t buf[3000], pl[3000];
  memset(pl, 'm', sizeof pl);
  struct td_ws_parser p;
  static struct got g;
  /* exactly the limit */
  size_t n = frame(buf, TD_WS_OP_TEXT, true, pl, 1000, KEY);
  td_ws__parser_init(&p, 1000, true);
  assert_int_equal(feed(&p, buf, n, 100, &g), 0);
  assert_int_equal(g.text_len, 1000);
  /* one byte more: 1009 from the header alone, before any payload */
  n = frame(buf, TD_WS_OP_TEXT, true, pl, 1001, KEY);
  expect_error(buf, 8, 1000, true, TD_WS_CLOSE_TOO_BIG);
  /* a huge declared length: refused at once, nothing awaited */
  uint8_t huge[] = {0x81, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  expect_error(huge, sizeof huge, 1000, true, TD_WS_CLOSE_TOO_BIG);
  /* fragments adding up past the limit */
  n = frame(buf, TD_WS_OP_TEXT, false, pl, 600, KEY);
  n += frame(buf + n, TD_WS_OP_CONT, true, pl, 401, KEY);
  expect_error(buf, n, 1000, true, TD_WS_CLOSE_TOO_BIG);
  /* control frames do not count towards a message */
  n = frame(buf, TD_WS_OP_TEXT, false, pl, 999, KEY);
  n += frame(buf + n, TD_WS_OP_PING, true, pl, 100, KEY);
  n += frame(buf + n, TD_WS_OP_CONT, true, pl, 1, KEY);
  td_ws__parser_init(&p, 1000, true);
  assert_int_equal(feed(&p, buf, n, 64, &g), 0);
  assert_int_equal(g.text_len, 1000);
}

static void test_utf8(void **st) {
  uint8_t buf[256];
  struct td_ws_parser p;
  struct got g;
  /* a 4-byte character split across fragments is fine */
  const char *s = "a\xc3\xb1\xe2\x82\xac\xf0\x9d\x84\x9e"; /* a ñ € 𝄞 */
  size_t n = frame(buf, TD_WS_OP_TEXT, false, s, 8, KEY);
  n += frame(buf + n, TD_WS_OP_CONT, true, s + 8, 2, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 1, &g), 0);
  assert_int_equal(g.text_len, 10);
  /* invalid: overlongs, surrogates, past U+10FFFF, stray continuation, bad lead bytes */
  const char *badv[] = {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                        "\x80", "a\xbf", "\xff", "\xe2\x28\xa1", "\xf0\x9d\x84"};
  for (size_t i = 0; i < sizeof badv / sizeof *badv; i++) {
    assert_false(td_ws__utf8_valid((const uint8_t *)badv[i], strlen(badv[i])));
    n = frame(buf, TD_WS_OP_TEXT, true, badv[i], strlen(badv[i]), KEY);
    expect_error(buf, n, 0, true, TD_WS_CLOSE_BAD_DATA);
  }
  assert_true(td_ws__utf8_valid((const uint8_t *)s, 10));
  assert_true(td_ws__utf8_valid((const uint8_t *)"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf", 10));
  /* fail fast: a bad byte in the first fragment fails before the message ends */
  n = frame(buf, TD_WS_OP_TEXT, false, "ok\xff", 3, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_BAD_DATA);
  /* a message ending inside a character */
  n = frame(buf, TD_WS_OP_TEXT, false, "\xe2\x82", 2, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 100, &g), 0); /* fine so far */
  n += frame(buf + n, TD_WS_OP_CONT, true, "", 0, KEY);
  expect_error(buf, n, 0, true, TD_WS_CLOSE_BAD_DATA);
  /* binary messages are not checked */
  n = frame(buf, TD_WS_OP_BINARY, true, "\xff\xfe", 2, KEY);
  td_ws__parser_init(&p, 0, true);
  assert_int_equal(feed(&p, buf, n, 100, &g), 0);
  assert_int_equal(g.text_len, 2);
}

static void test_encode(void **st) {
  uint8_t h[TD_WS_MAX_HEADER];
  assert_int_equal(td_ws__encode_header(h, TD_WS_OP_TEXT, true, 5, NULL), 2);
  assert_int_equal(h[0], 0x81);
  assert_int_equal(h[1], 5);
  assert_int_equal(td_ws__encode_header(h, TD_WS_OP_PING, true, 126, NULL), 4);
  assert_int_equal(h[1], 126);
  assert_int_equal(h[2] << 8 | h[3], 126);
  assert_int_equal(td_ws__encode_header(h, TD_WS_OP_BINARY, false, 65536, KEY), 14);
  assert_int_equal(h[0], 0x02);
  assert_int_equal(h[1], 0x80 | 127);
  assert_int_equal(h[7], 1);
  assert_memory_equal(h + 10, KEY, 4);
  /* close payloads: code only, none, and a long reason cut on a character boundary */
  uint8_t cp[TD_WS_MAX_CONTROL];
  assert_int_equal(td_ws__close_payload(cp, TD_WS_CLOSE_NO_STATUS, "x"), 0);
  assert_int_equal(td_ws__close_payload(cp, 1000, NULL), 2);
  assert_int_equal(cp[0] << 8 | cp[1], 1000);
  char reason[300] = "";
  for (int i = 0; i < 100; i++) strcat(reason, "\xc3\xa9"); /* 200 bytes of é */
  size_t n = td_ws__close_payload(cp, 1008, reason);
  assert_true(n <= TD_WS_MAX_CONTROL);
  assert_int_equal(n, 2 + 122);
  assert_true(td_ws__utf8_valid(cp + 2, n - 2));
  /* a reason that is not UTF-8 is left out */
  assert_int_equal(td_ws__close_payload(cp, 1000, "\xff"), 2);
  /* mask: applying it twice from any offset gives the input back */
  uint8_t data[37], orig[37];
  for (int i = 0; i < 37; i++) orig[i] = data[i] = (uint8_t)(i * 7);
  td_ws__mask(data, 37, KEY, 3);
  assert_int_equal(data[0], orig[0] ^ KEY[3]);
  assert_int_equal(data[1], orig[1] ^ KEY[0]);
  assert_int_equal(data[36], orig[36] ^ KEY[(3 + 36) & 3]);
  td_ws__mask(data, 20, KEY, 3);
  td_ws__mask(data + 20, 17, KEY, 23);
  assert_memory_equal(data, orig, 37);
}

/* =========================== end to end =========================== */

static struct td_loop loop;
static struct td_http_router *rt;
static struct td_http_server *srv;
static int port;

/* CHECK: an assertion on the loop thread (cmocka's longjmp must stay on the test thread). */
#define CHECK(x)                                                                 \
  do {                                                                           \
    if (!(x)) {                                                                  \
      fprintf(stderr, "%s:%d: loop-thread check failed: %s\n", __FILE__, __LINE__, #x); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int accepted, closed;
static int last_close_code;
static int flood_ok, flood_full, flood_done;

static const struct td_ws_config cfg_small = {.max_message = 1000, .max_queued_msgs = 5, .max_queued_bytes = 1 << 20,
                                              .ping_interval_ms = 0};
static const struct td_ws_config cfg_ping = {.max_message = 1000, .ping_interval_ms = 400};

static void on_text(struct td_ws *ws, void *user, const char *data, size_t len) {
  CHECK(data[len] == '\0');
  if (len > 6 && !memcmp(data, "flood:", 6)) {
    int n = atoi(data + 6), ok = 0, full = 0;
    for (int i = 0; i < n; i++) {
      char m[32];
      int ml = snprintf(m, sizeof m, "m%d", i);
      int rc = td_ws_send_text(ws, m, (size_t)ml);
      if (rc == 0) ok++;
      else if (rc == TD_EFULL) full++;
    }
    CHECK((int)td_ws_queued(ws) == ok);
    if (full) td_ws_close(ws, 1008, "Max pending updates limit reached!");
    pthread_mutex_lock(&mu);
    flood_ok = ok;
    flood_full = full;
    flood_done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return;
  }
  if (len == 5 && !memcmp(data, "batch", 5)) {
    /* several messages in one write: the one that is not UTF-8 is left out */
    struct iovec v[4] = {{"b1", 2}, {"\xff", 1}, {"b2", 2}, {"b3", 2}};
    size_t q0 = td_ws_queued(ws);
    CHECK(td_ws_send_texts(ws, v, 4) == TD_EINVAL);
    CHECK(td_ws_queued(ws) == q0 + 3);
    /* past max_queued_msgs (5) as a whole: nothing of it is queued */
    struct iovec w[3] = {{"x", 1}, {"y", 1}, {"z", 1}};
    CHECK(td_ws_send_texts(ws, w, 3) == TD_EFULL);
    CHECK(td_ws_queued(ws) == q0 + 3);
    CHECK(td_ws_send_texts(ws, w, 0) == 0);
    return;
  }
  if (len == 5 && !memcmp(data, "close", 5)) {
    td_ws_close(ws, 1000, "bye");
    td_ws_close(ws, 1011, "again"); /* idempotent */
    CHECK(td_ws_send_text(ws, "late", 4) == TD_ECLOSED);
    return;
  }
  CHECK(td_ws_loop(ws) != NULL);
  CHECK(td_ws_send_text(ws, data, len) == 0);
}

static void on_close(struct td_ws *ws, void *user, int code) {
  /* must never come from inside td_ws_send_text/td_ws_close: those return TD_ECLOSED here */
  CHECK(td_ws_send_text(ws, "x", 1) == TD_ECLOSED);
  td_ws_close(ws, 1000, NULL);
  pthread_mutex_lock(&mu);
  closed++;
  last_close_code = code;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static const struct td_ws_ops ops = {.on_text = on_text, .on_close = on_close};

static void h_ws(struct td_http_req *r) {
  if (!td_ws_is_upgrade(r)) {
    if (td_http_header_get(r, "x-force-accept")) {
      CHECK(td_ws_accept(r, NULL, &ops, NULL) == NULL); /* answers 400/426 itself */
      return;
    }
    td_http_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "not a WebSocket request");
    return;
  }
  struct td_ws *ws = td_ws_accept(r, r->route_data, &ops, NULL);
  if (ws) {
    pthread_mutex_lock(&mu);
    accepted++;
    pthread_mutex_unlock(&mu);
  }
}

static void h_plain(struct td_http_req *r) { td_http_respond(r, 200, "text/plain", "plain", 5); }

static void wait_closed(int n) {
  pthread_mutex_lock(&mu);
  while (closed < n) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static int closed_count(void) {
  pthread_mutex_lock(&mu);
  int c = closed;
  pthread_mutex_unlock(&mu);
  return c;
}

static int connect_srv(int p) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_all(int fd, const void *s, size_t n) {
  const char *c = s;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    c += w;
    n -= (size_t)w;
  }
}

static int recv_n(int fd, void *out, size_t n) {
  char *o = out;
  while (n) {
    ssize_t k = recv(fd, o, n, 0);
    if (k <= 0) return -1;
    o += k;
    n -= (size_t)k;
  }
  return 0;
}

/* read_head: an HTTP response head, byte by byte (never past it). */
static int read_head(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    if (recv(fd, buf + n, 1, 0) != 1) return -1;
    buf[++n] = 0;
    if (n >= 4 && !memcmp(buf + n - 4, "\r\n\r\n", 4)) return 0;
  }
  return -1;
}

#define TEST_KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* ws_open: handshake on `path` (plus extra header lines and bytes sent in
 * the same write); checks the 101. Returns the socket. */
static int ws_open_at(int p, const char *path, const char *extra, const void *more, size_t more_len) {
  int fd = connect_srv(p);
  char req[1024];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                   "Sec-WebSocket-Key: " TEST_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                   path, extra ? extra : "");
  char all[4096];
  memcpy(all, req, (size_t)n);
  if (more_len) memcpy(all + n, more, more_len);
  send_all(fd, all, (size_t)n + more_len);
  char head[2048];
  assert_int_equal(read_head(fd, head, sizeof head), 0);
  assert_non_null(strstr(head, "HTTP/1.1 101 Switching Protocols\r\n"));
  assert_non_null(strstr(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  assert_non_null(strstr(head, "Upgrade: websocket\r\n"));
  assert_null(strstr(head, "Sec-WebSocket-Protocol"));
  return fd;
}

static int ws_open(const char *path) { return ws_open_at(port, path, NULL, NULL, 0); }

static void ws_send(int fd, int op, bool fin, const void *payload, size_t len) {
  static uint8_t buf[70000];
  size_t n = frame(buf, op, fin, payload, len, KEY);
  send_all(fd, buf, n);
}

struct rframe {
  int op;
  bool fin;
  size_t len;
  char data[70000];
};

/* ws_recv: one server frame (must be unmasked). 0, or -1 at EOF. */
static int ws_recv(int fd, struct rframe *f) {
  uint8_t h[10];
  if (recv_n(fd, h, 2)) return -1;
  assert_int_equal(h[1] & 0x80, 0);
  f->op = h[0] & 0x0f;
  f->fin = (h[0] & 0x80) != 0;
  uint64_t len = h[1] & 0x7f;
  if (len == 126) {
    if (recv_n(fd, h + 2, 2)) return -1;
    len = (uint64_t)h[2] << 8 | h[3];
  } else if (len == 127) {
    if (recv_n(fd, h + 2, 8)) return -1;
    len = 0;
    for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
  }
  assert_true(len < sizeof f->data);
  f->len = (size_t)len;
  if (len && recv_n(fd, f->data, (size_t)len)) return -1;
  f->data[len] = 0;
  return 0;
}

static int close_code_of(const struct rframe *f) {
  assert_int_equal(f->op, TD_WS_OP_CLOSE);
  return f->len >= 2 ? (uint8_t)f->data[0] << 8 | (uint8_t)f->data[1] : TD_WS_CLOSE_NO_STATUS;
}

static int setup(void **st) {
  assert_int_equal(td_loop_init(&loop, 0), 0);
  rt = td_http_router_new();
  td_http_route(rt, TD_HTTP_GET, "/ws", h_ws, (void *)&cfg_small, 0);
  td_http_route(rt, TD_HTTP_GET, "/wsping", h_ws, (void *)&cfg_ping, 0);
  td_http_route(rt, TD_HTTP_GET, "/plain", h_plain, NULL, 0);
  http_test_start(&loop, rt, 4096, &srv, &port);
  return 0;
}

static int teardown(void **st) {
  http_test_stop(&loop, rt, srv);
  return 0;
}

static void test_e2e_echo(void **st) {
  static struct rframe f;
  int c0 = closed_count();
  int fd = ws_open_at(port, "/ws", "Sec-WebSocket-Protocol: chat, superchat\r\n", NULL, 0);
  ws_send(fd, TD_WS_OP_TEXT, true, "hello", 5);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(f.op, TD_WS_OP_TEXT);
  assert_true(f.fin);
  assert_string_equal(f.data, "hello");
  /* a fragmented message comes back whole; a ping between fragments is answered first */
  ws_send(fd, TD_WS_OP_TEXT, false, "frag", 4);
  ws_send(fd, TD_WS_OP_PING, true, "xyz", 3);
  ws_send(fd, TD_WS_OP_CONT, true, "ment \xc3\xa9", 7);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(f.op, TD_WS_OP_PONG);
  assert_string_equal(f.data, "xyz");
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_string_equal(f.data, "fragment \xc3\xa9");
  /* a message of exactly the limit */
  char big[1000];
  memset(big, 'b', sizeof big);
  ws_send(fd, TD_WS_OP_TEXT, true, big, sizeof big);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(f.len, 1000);
  /* the client closes: same code back, then the socket closes */
  uint8_t cp[TD_WS_MAX_CONTROL];
  size_t cl = td_ws__close_payload(cp, 4001, "done");
  ws_send(fd, TD_WS_OP_CLOSE, true, cp, cl);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), 4001);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, 4001);
}

static void test_e2e_pipelined_frames(void **st) {
  /* frames sent in the same write as the handshake are processed after the 101 */
  static struct rframe f;
  int c0 = closed_count();
  uint8_t more[64];
  size_t n = frame(more, TD_WS_OP_TEXT, true, "early", 5, KEY);
  n += frame(more + n, TD_WS_OP_CLOSE, true, "", 0, KEY);
  int fd = ws_open_at(port, "/ws", NULL, more, n);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_string_equal(f.data, "early");
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), TD_WS_CLOSE_NO_STATUS); /* an empty close is echoed empty */
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, TD_WS_CLOSE_NO_STATUS);
}

static void test_e2e_server_close(void **st) {
  static struct rframe f;
  int c0 = closed_count();
  int fd = ws_open("/ws");
  ws_send(fd, TD_WS_OP_TEXT, true, "close", 5);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), 1000);
  assert_string_equal(f.data + 2, "bye");
  /* the server waits for our close (messages still arriving are dropped) */
  ws_send(fd, TD_WS_OP_TEXT, true, "ignored", 7);
  ws_send(fd, TD_WS_OP_CLOSE, true, "\x03\xe8", 2);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, 1000);
}

/* expect_close: send the bytes on a fresh session, expect a close with code and EOF. */
static void expect_close(const void *bytes, size_t n, int code) {
  static struct rframe f;
  int c0 = closed_count();
  int fd = ws_open("/ws");
  send_all(fd, bytes, n);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), code);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, code);
}

static void test_e2e_errors(void **st) {
  static uint8_t buf[3000];
  static char big[1001];
  memset(big, 'x', sizeof big);
  /* oversize message: 1009 */
  size_t n = frame(buf, TD_WS_OP_TEXT, true, big, sizeof big, KEY);
  expect_close(buf, n, TD_WS_CLOSE_TOO_BIG);
  /* oversize in fragments */
  n = frame(buf, TD_WS_OP_TEXT, false, big, 500, KEY);
  n += frame(buf + n, TD_WS_OP_CONT, true, big, 501, KEY);
  expect_close(buf, n, TD_WS_CLOSE_TOO_BIG);
  /* unmasked: 1002 */
  n = frame(buf, TD_WS_OP_TEXT, true, "abc", 3, NULL);
  expect_close(buf, n, TD_WS_CLOSE_PROTOCOL);
  /* bad UTF-8: 1007 */
  n = frame(buf, TD_WS_OP_TEXT, true, "a\xc0\x80", 3, KEY);
  expect_close(buf, n, TD_WS_CLOSE_BAD_DATA);
  /* binary: 1003 */
  n = frame(buf, TD_WS_OP_BINARY, true, "\x01", 1, KEY);
  expect_close(buf, n, TD_WS_CLOSE_UNSUPPORTED);
  /* invalid close code: 1002 */
  n = frame(buf, TD_WS_OP_CLOSE, true, "\x03\xed", 2, KEY);
  expect_close(buf, n, TD_WS_CLOSE_PROTOCOL);
}

static void test_e2e_queue_limit(void **st) {
  static struct rframe f;
  int c0 = closed_count();
  pthread_mutex_lock(&mu);
  flood_done = 0;
  pthread_mutex_unlock(&mu);
  int fd = ws_open("/ws");
  ws_send(fd, TD_WS_OP_TEXT, true, "flood:20", 8);
  pthread_mutex_lock(&mu);
  while (!flood_done) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  /* written only after the handler returned, so 5 fit (max_queued_msgs) and 15 got TD_EFULL */
  assert_int_equal(flood_ok, 5);
  assert_int_equal(flood_full, 15);
  for (int i = 0; i < 5; i++) {
    char m[16];
    snprintf(m, sizeof m, "m%d", i);
    assert_int_equal(ws_recv(fd, &f), 0);
    assert_string_equal(f.data, m);
  }
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), 1008);
  assert_string_equal(f.data + 2, "Max pending updates limit reached!");
  ws_send(fd, TD_WS_OP_CLOSE, true, "\x03\xf0", 2);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, 1008);
}

static void test_e2e_batch(void **st) {
  static struct rframe f;
  int c0 = closed_count();
  int fd = ws_open("/ws");
  ws_send(fd, TD_WS_OP_TEXT, true, "batch", 5);
  const char *want[] = {"b1", "b2", "b3"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ws_recv(fd, &f), 0);
    assert_int_equal(f.op, TD_WS_OP_TEXT);
    assert_true(f.fin);
    assert_string_equal(f.data, want[i]);
  }
  /* nothing else was sent: the next frame is the echo of this one */
  ws_send(fd, TD_WS_OP_TEXT, true, "after", 5);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_string_equal(f.data, "after");
  ws_send(fd, TD_WS_OP_CLOSE, true, "\x03\xe8", 2);
  assert_int_equal(ws_recv(fd, &f), 0);
  assert_int_equal(close_code_of(&f), 1000);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
}

static void test_e2e_server_ping(void **st) {
  static struct rframe f;
  int c0 = closed_count();
  int fd = ws_open("/wsping");
  /* answered pings keep the session */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ws_recv(fd, &f), 0);
    assert_int_equal(f.op, TD_WS_OP_PING);
    ws_send(fd, TD_WS_OP_PONG, true, f.data, f.len);
  }
  ws_send(fd, TD_WS_OP_TEXT, true, "alive", 5);
  do assert_int_equal(ws_recv(fd, &f), 0);
  while (f.op == TD_WS_OP_PING && (ws_send(fd, TD_WS_OP_PONG, true, f.data, f.len), 1));
  assert_string_equal(f.data, "alive");
  assert_int_equal(closed_count(), c0);
  /* now stop answering: the next tick closes with 1001 */
  do assert_int_equal(ws_recv(fd, &f), 0);
  while (f.op == TD_WS_OP_PING);
  assert_int_equal(close_code_of(&f), TD_WS_CLOSE_GOING_AWAY);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, TD_WS_CLOSE_GOING_AWAY);
}

static void test_e2e_client_drops(void **st) {
  int c0 = closed_count();
  int fd = ws_open("/ws");
  close(fd);
  wait_closed(c0 + 1);
  assert_int_equal(last_close_code, TD_WS_CLOSE_ABNORMAL);
}

static void expect_status(const char *req, int status, const char *header) {
  int fd = connect_srv(port);
  send_all(fd, req, strlen(req));
  char head[2048];
  assert_int_equal(read_head(fd, head, sizeof head), 0);
  char want[32];
  snprintf(want, sizeof want, "HTTP/1.1 %d ", status);
  assert_non_null(strstr(head, want));
  if (header) assert_non_null(strstr(head, header));
  close(fd);
}

static int accepted_count(void) {
  pthread_mutex_lock(&mu);
  int a = accepted;
  pthread_mutex_unlock(&mu);
  return a;
}

static void test_e2e_bad_handshakes(void **st) {
  int a0 = accepted_count();
  /* not an upgrade at all: the handler's own answer */
  expect_status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
  /* missing key, wrong version, bad key: td_ws_accept answers */
  expect_status("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Force-Accept: 1\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n",
                400, NULL);
  expect_status("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Force-Accept: 1\r\n"
                "Sec-WebSocket-Key: " TEST_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                426, "Sec-WebSocket-Version: 13\r\n");
  expect_status("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
                400, "Connection: close\r\n");
  assert_int_equal(accepted_count(), a0);
}

static void test_e2e_upgrade_on_plain_route(void **st) {
  /* a route that does not speak WebSocket answers and closes; the next bytes
   * on that connection must not reach the HTTP parser again */
  int fd = connect_srv(port);
  const char *req = "GET /plain HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /plain HTTP/1.1\r\n\r\n";
  send_all(fd, req, strlen(req));
  char head[2048];
  assert_int_equal(read_head(fd, head, sizeof head), 0);
  assert_non_null(strstr(head, "HTTP/1.1 200 "));
  assert_non_null(strstr(head, "Connection: close\r\n"));
  char body[8];
  assert_int_equal(recv_n(fd, body, 5), 0);
  assert_true(http_test_peer_closed(fd));
  close(fd);
  /* the server still serves */
  fd = connect_srv(port);
  send_all(fd, "GET /plain HTTP/1.1\r\n\r\n", 23);
  assert_int_equal(read_head(fd, head, sizeof head), 0);
  assert_non_null(strstr(head, "HTTP/1.1 200 "));
  close(fd);
}

static struct td_http_server *start_on(struct td_loop *l, int maxc) {
  struct td_http_server *s;
  assert_int_equal(td_loop_init(l, 0), 0);
  struct td_http_server_config cfg = {.bind_address = "127.0.0.1", .port = 0, .max_connections = maxc,
                                      .idle_timeout_ms = 30000};
  assert_int_equal(td_http_server_start(&cfg, rt, l, 1, &s), 0);
  assert_int_equal(td_loop_start(l), 0);
  return s;
}

static void stop_on(struct td_loop *l, struct td_http_server *s) {
  td_loop_stop(l);
  td_http_server_free(s);
  td_loop_deinit(l);
}

static void test_e2e_shutdown(void **st) {
  /* servers of their own. Stopping to accept closes the sessions with 1001
   * (on_close on the loop); a loop stopped with a session still open ends
   * it from td_http_server_free. on_close exactly once each. */
  static struct rframe f;
  struct td_loop l2;
  struct td_http_server *s2 = start_on(&l2, 2);
  int p2 = td_http_server_port(s2);
  int c0 = closed_count();
  int a = ws_open_at(p2, "/ws", NULL, NULL, 0);
  int b = ws_open_at(p2, "/ws", NULL, NULL, 0);
  /* max_connections counts WebSockets: a third connection is closed */
  int d = connect_srv(p2);
  assert_true(http_test_peer_closed(d));
  close(d);
  td_http_server_stop_accepting(s2);
  int fds[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(ws_recv(fds[i], &f), 0);
    assert_int_equal(close_code_of(&f), TD_WS_CLOSE_GOING_AWAY);
    assert_string_equal(f.data + 2, "server is shutting down");
    assert_true(http_test_peer_closed(fds[i]));
    close(fds[i]);
  }
  wait_closed(c0 + 2);
  assert_int_equal(last_close_code, TD_WS_CLOSE_GOING_AWAY);
  stop_on(&l2, s2);
  assert_int_equal(closed_count(), c0 + 2);

  struct td_loop l3;
  struct td_http_server *s3 = start_on(&l3, 10);
  int c = ws_open_at(td_http_server_port(s3), "/ws", NULL, NULL, 0);
  stop_on(&l3, s3);
  assert_int_equal(closed_count(), c0 + 3);
  assert_int_equal(last_close_code, TD_WS_CLOSE_ABNORMAL);
  close(c);
}

int main(void) {
  const struct CMUnitTest codec[] = {
      cmocka_unit_test(test_accept_key),     cmocka_unit_test(test_masked_text_any_split),
      cmocka_unit_test(test_lengths),        cmocka_unit_test(test_fragments),
      cmocka_unit_test(test_control_frames), cmocka_unit_test(test_mask_rsv_opcodes),
      cmocka_unit_test(test_max_message),    cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_encode),
  };
  const struct CMUnitTest e2e[] = {
      cmocka_unit_test(test_e2e_echo),         cmocka_unit_test(test_e2e_pipelined_frames),
      cmocka_unit_test(test_e2e_server_close), cmocka_unit_test(test_e2e_errors),
      cmocka_unit_test(test_e2e_queue_limit),  cmocka_unit_test(test_e2e_batch),
      cmocka_unit_test(test_e2e_server_ping),
      cmocka_unit_test(test_e2e_client_drops), cmocka_unit_test(test_e2e_bad_handshakes),
      cmocka_unit_test(test_e2e_upgrade_on_plain_route), cmocka_unit_test(test_e2e_shutdown),
  };
  int rc = cmocka_run_group_tests_name("ws codec", codec, NULL, NULL);
  rc += cmocka_run_group_tests_name("ws server", e2e, setup, teardown);
  return rc;
}
