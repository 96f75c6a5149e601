/* ws_int.h — private to src/transport/http: the WebSocket frame codec
 * (ws_codec.c, pure: no socket, no allocation, fuzzed by fuzz/fuzz_ws.c) and
 * the hand-over of a connection from server.c to ws.c.
 *
 * The parser is a streaming one: it never needs a whole frame in memory.
 * Each call consumes bytes and yields at most one event: a chunk of a data
 * message's payload (unmasked in place in the caller's buffer), or a complete
 * control frame (at most 125 bytes, kept inside the parser). A declared
 * length is only a counter: nothing is allocated or awaited from it, and a
 * data frame that would take its message past max_message is refused as
 * soon as its header is read. */
#ifndef TD_TRANSPORT_HTTP_WS_INT_H
#define TD_TRANSPORT_HTTP_WS_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/http/http_int.h"
#include "transport/http/ws.h"

/* Opcodes (RFC 6455 §5.2). */
enum td_ws_opcode {
  TD_WS_OP_CONT = 0x0,
  TD_WS_OP_TEXT = 0x1,
  TD_WS_OP_BINARY = 0x2,
  TD_WS_OP_CLOSE = 0x8,
  TD_WS_OP_PING = 0x9,
  TD_WS_OP_PONG = 0xA,
};

/* Close codes we send or report (RFC 6455 §7.4.1). */
enum td_ws_close_code {
  TD_WS_CLOSE_NORMAL = 1000,
  TD_WS_CLOSE_GOING_AWAY = 1001,
  TD_WS_CLOSE_PROTOCOL = 1002,
  TD_WS_CLOSE_UNSUPPORTED = 1003,
  TD_WS_CLOSE_NO_STATUS = 1005,  /* never on the wire: a close frame without a code */
  TD_WS_CLOSE_ABNORMAL = 1006,   /* never on the wire: the socket dropped without a close frame */
  TD_WS_CLOSE_BAD_DATA = 1007,
  TD_WS_CLOSE_POLICY = 1008,
  TD_WS_CLOSE_TOO_BIG = 1009,
  TD_WS_CLOSE_INTERNAL = 1011,
};

#define TD_WS_MAX_HEADER 14   /* 2 + 8 (64-bit length) + 4 (mask) */
#define TD_WS_MAX_CONTROL 125 /* control frame payload limit */
#define TD_WS_MAX_REASON 123  /* close reason: 125 minus the 2-byte code */
#define TD_WS_ACCEPT_LEN 28   /* base64 of a SHA-1 */

enum td_ws_event_type {
  TD_WS_EV_NONE = 0, /* everything given was consumed; more bytes needed */
  TD_WS_EV_DATA,     /* a chunk of a text/binary message (possibly empty) */
  TD_WS_EV_PING,
  TD_WS_EV_PONG,
  TD_WS_EV_CLOSE,
};

struct td_ws_event {
  enum td_ws_event_type type;
  int opcode;          /* DATA: the message's opcode (TEXT or BINARY) */
  bool last;           /* DATA: this chunk ends the message (text: UTF-8 already checked whole) */
  const uint8_t *data; /* DATA: into the caller's buffer; PING/PONG/CLOSE: into the parser (reason for CLOSE) */
  size_t len;
  int close_code;      /* CLOSE: the code, TD_WS_CLOSE_NO_STATUS if the frame had none */
};

struct td_ws_parser {
  /* settings */
  uint64_t max_message;  /* largest message (sum of its frames' payloads) */
  bool require_mask;     /* true on the server: client frames must be masked */
  /* frame being read */
  bool in_payload;       /* header done, payload bytes outstanding */
  uint8_t hdr[TD_WS_MAX_HEADER];
  uint8_t hdr_len;       /* header bytes gathered */
  uint8_t opcode;
  bool fin;
  bool masked;
  uint8_t mask[4];
  uint64_t remaining;    /* payload bytes of this frame not yet read */
  uint64_t offset;       /* payload bytes of this frame already read (mask phase) */
  /* message in progress (a data frame without FIN, then continuations) */
  uint8_t msg_opcode;    /* 0: none */
  uint64_t msg_len;
  uint32_t utf8;         /* incremental UTF-8 state of a text message */
  /* control frame payload */
  uint8_t ctrl[TD_WS_MAX_CONTROL];
  uint8_t ctrl_len;
  /* after TD_EPROTO: the close code to send (1002, 1007, 1009) and a static reason for the log */
  int error_code;
  const char *error;
};

/* td_ws__parser_init: a parser for client frames (require_mask) or server
 * frames (a client, e.g. the tests). max_message 0 = 65536. */
void td_ws__parser_init(struct td_ws_parser *p, uint64_t max_message, bool require_mask);
/* td_ws__parse: read from data[0..n) (payload bytes are unmasked in place).
 * Returns the bytes consumed with *ev filled: TD_WS_EV_NONE means what was
 * consumed was all the parser could use and more bytes are needed (all n,
 * unless n > INT_MAX); otherwise one event, valid until the next call.
 * Every call with n > 0 consumes a byte or yields an event, so a loop over
 * it always progresses. Returns TD_EPROTO on a violation, with
 * p->error_code / p->error set; the parser stays failed. */
int td_ws__parse(struct td_ws_parser *p, uint8_t *data, size_t n, struct td_ws_event *ev);

/* td_ws__encode_header: a frame header into out (TD_WS_MAX_HEADER bytes of
 * room). mask NULL: unmasked (server frames); else the client's masking key
 * (the caller masks the payload with td_ws__mask). Returns its length. */
size_t td_ws__encode_header(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *mask);
/* td_ws__mask: XOR n bytes with the key, starting at payload position offset. */
void td_ws__mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);
/* td_ws__close_payload: the payload of a close frame into out (TD_WS_MAX_CONTROL
 * bytes of room): the code and reason cut to TD_WS_MAX_REASON bytes on a
 * UTF-8 character boundary. code TD_WS_CLOSE_NO_STATUS gives an empty
 * payload. Returns its length. */
size_t td_ws__close_payload(uint8_t *out, int code, const char *reason);
/* td_ws__close_code_valid: code may be sent in a close frame (1000-1003,
 * 1007-1014, 3000-4999). */
bool td_ws__close_code_valid(int code);
/* td_ws__utf8_valid: s[0..n) is complete, valid UTF-8 (no surrogates, no
 * overlongs, nothing past U+10FFFF). */
bool td_ws__utf8_valid(const uint8_t *s, size_t n);
/* td_ws__accept_key: Sec-WebSocket-Accept for a Sec-WebSocket-Key (base64 of
 * SHA-1 of key + the RFC's GUID) into out (TD_WS_ACCEPT_LEN + 1 bytes).
 * 0, or TD_EINVAL if key is not the base64 of 16 bytes. */
int td_ws__accept_key(const char *key, size_t key_len, char *out);

/* ---- the hand-over (server.c <-> ws.c) ----
 *
 * After td_http__conn_upgrade the server no longer parses HTTP on the
 * connection: bytes read go to td_ws__on_read, the connection's timer ticks
 * td_ws__on_timer, and ws.c writes on the stream itself. The server keeps the
 * connection in its list (max_connections counts it), asks ws.c to close it
 * when it stops accepting (td_ws__server_stopping) and frees it after its
 * handles are closed, calling td_ws__conn_gone exactly once first. */
struct conn;

struct td_http_conn_io {
  struct conn *conn;
  uv_stream_t *stream;     /* for uv_write only; the server owns the handle */
  struct td_loop *loop;
  unsigned id;
  char *leftover;          /* bytes read after the request (malloc'd, the caller frees), or NULL */
  size_t left_len;
};

/* td_http__conn_upgrade: take q's connection for ws (q is freed). Reading is
 * stopped and the idle timer too. Returns 0 with *io filled, or TD_ECLOSED
 * (the connection is gone; q is freed all the same). */
int td_http__conn_upgrade(struct http_req *q, struct td_ws *ws, struct td_http_conn_io *io);
/* td_http__conn_reading: start (on) or stop reading an upgraded connection. */
void td_http__conn_reading(struct conn *c, bool on);
/* td_http__conn_timer: tick td_ws__on_timer every ms (0 = stop). */
void td_http__conn_timer(struct conn *c, uint64_t ms);
/* td_http__conn_close: close the socket (idempotent); td_ws__conn_gone follows from a close callback. */
void td_http__conn_close(struct conn *c);

/* ws.c: called by server.c on the loop thread (td_ws__conn_gone also from
 * td_http_server_free after the loops have stopped). n < 0: EOF or error. */
void td_ws__on_read(struct td_ws *ws, char *data, ssize_t n);
void td_ws__on_timer(struct td_ws *ws);
void td_ws__server_stopping(struct td_ws *ws);
void td_ws__conn_gone(struct td_ws *ws);
#endif
