/* ws.h — WebSocket (RFC 6455) on the HTTP server: the upgrade, the frame
 * codec and a bounded send queue, for the WebSocket telemetry API (src/api).
 *
 * A route handler that wants a WebSocket calls td_ws_accept() on a GET
 * request carrying "Upgrade: websocket" instead of answering it: the server
 * answers 101 Switching Protocols and the connection changes hands for good.
 * From then on every callback runs on the connection's loop thread:
 * on_text for each complete text message (fragments reassembled, UTF-8
 * checked), on_close once when the connection is gone (either side). The
 * server answers pings, sends its own pings every ping_interval_ms and closes
 * a connection whose pong does not come within that interval again.
 *
 * Sending is bounded: a connection holds at most max_queued_msgs messages or
 * max_queued_bytes bytes not yet written to the socket. td_ws_send_text past
 * either limit returns TD_EFULL and sends nothing; the caller decides (the
 * telemetry API closes with 1008 "Max pending updates limit reached!").
 *
 * Frame parsing (ws_codec.c) is a pure function over bytes (fuzzed in
 * fuzz/fuzz_ws.c): client frames must be masked, control frames at most 125
 * bytes and not fragmented, reserved bits zero, opcodes known, a message at
 * most max_message bytes; a violation closes with 1002 (protocol error),
 * 1007 (bad UTF-8) or 1009 (too big), one log line. */
#ifndef TD_TRANSPORT_HTTP_WS_H
#define TD_TRANSPORT_HTTP_WS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "base/loop.h"
#include "transport/http/http.h"

struct td_ws;

struct td_ws_ops {
  /* A complete text message (data NUL-terminated, valid until return). */
  void (*on_text)(struct td_ws *ws, void *user, const char *data, size_t len);
  /* The connection is gone; ws is invalid after this returns. code: the
   * close code received or sent (1006 when the socket just dropped). */
  void (*on_close)(struct td_ws *ws, void *user, int code);
};

struct td_ws_config {
  size_t max_message;       /* largest incoming message, bytes (default 65536) */
  size_t max_queued_msgs;   /* outgoing messages not yet written (default 1000) */
  size_t max_queued_bytes;  /* outgoing bytes not yet written (default 4 MiB) */
  int ping_interval_ms;     /* default 30000; 0 = no pings */
};

/* td_ws_is_upgrade: the request asks for a WebSocket (GET, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Key present, version 13). */
bool td_ws_is_upgrade(const struct td_http_req *r);

/* td_ws_accept: answer r with 101 and turn its connection into a WebSocket.
 * r is consumed (as if answered). cfg NULL = defaults. Returns the
 * WebSocket, or NULL (r was answered with 400, e.g. a bad handshake, or the
 * connection is already gone; on_close is never called then). */
struct td_ws *td_ws_accept(struct td_http_req *r, const struct td_ws_config *cfg, const struct td_ws_ops *ops,
                           void *user);

/* td_ws_send_text: queue one text message (copied). 0, TD_EFULL (limits
 * above, nothing queued), TD_EINVAL (not UTF-8, nothing queued), TD_ECLOSED
 * (closing) or TD_ENOMEM. Loop thread. */
int td_ws_send_text(struct td_ws *ws, const char *data, size_t len);
/* td_ws_send_texts: queue n text messages (copied), in order, as one write:
 * under load a session's updates leave in one system call instead of one
 * each. Returns as td_ws_send_text; the limits apply to all n at once (past
 * them nothing is queued); a message that is not UTF-8 is left out and the
 * others are queued (TD_EINVAL then). */
int td_ws_send_texts(struct td_ws *ws, const struct iovec *msgs, size_t n);
/* td_ws_close: send a close frame with code and reason (<= 123 bytes) after
 * what is queued, then close the socket; on_close follows. Idempotent. */
void td_ws_close(struct td_ws *ws, int code, const char *reason);
/* td_ws_loop: the loop that owns ws. */
struct td_loop *td_ws_loop(const struct td_ws *ws);
/* td_ws_queued: messages queued and not yet written. */
size_t td_ws_queued(const struct td_ws *ws);

/* Details of the implementation (ws.c) callers may rely on:
 * - on_text never runs before td_ws_accept has returned (frames that came
 *   with the handshake are read once the 101 is written), and on_close never
 *   runs inside td_ws_send_text / td_ws_close (it comes from a libuv close
 *   callback). Inside on_close, td_ws_send_text returns TD_ECLOSED and
 *   td_ws_close does nothing.
 * - When the server stops accepting (td_http_server_stop_accepting), every
 *   WebSocket gets td_ws_close(1001, "server is shutting down"). A session
 *   whose close has not finished when its loop stops gets on_close from
 *   td_http_server_free, on the thread calling it, after the loops stopped:
 *   on_close must then only release the session's own state.
 * - td_ws_send_text also returns TD_EINVAL for text that is not UTF-8
 *   (nothing sent: the peer would fail the connection with 1007).
 * - A binary message from the peer closes with 1003; a missing pong with
 *   1001 (on_close gets the code sent); a peer's close is answered with
 *   its code (an empty close for none, on_close gets 1005). */
#endif
