/* ws_codec_bench.c — thingsd's WebSocket frame codec (src/transport/http/
 * ws_codec.c, ws_int.h) against wslay 1.1 (Debian's libwslay-dev), the pick
 * of ARCHITECTURE.md §9, measured in one process on one thread. The results
 * and their reading are in docs/ws-codec.md.
 *
 * Where it sits: a bench tool, built only when wslay is installed
 * (CMakeLists.txt), linked with tdcore for the codec and struct td_buf.
 *
 * Receive side. For each workload one input stream is built in memory:
 * client frames as browsers send them (masked, a fresh key per frame) whose
 * payloads are JSON commands of the telemetry API (ASCII plus a few
 * multi-byte characters): 200-byte messages, 4 KiB messages, and 4 KiB
 * messages in 4 frames of 1 KiB. Each is built twice: as text frames (both
 * sides validate UTF-8) and as binary frames (neither does), which gives
 * the cost with and without the validation. Each run copies the stream in
 * --chunk sized pieces into a read buffer (what a socket read into libuv's
 * buffer does) and hands each piece to:
 *   thingsd         td_ws__parse over the piece, payload chunks appended to a
 *                   struct td_buf and the message delivered at `last`, as
 *                   ws.c's feed/on_data do;
 *   wslay buffered  a server context (wslay_event_context_server_init) whose
 *                   recv_callback serves the piece (then WSLAY_ERR_WOULDBLOCK),
 *                   messages delivered by on_msg_recv_callback: wslay's default
 *                   mode, in which it gathers each frame in malloc'd chunks and
 *                   flattens the message into one more malloc'd block;
 *   wslay no-buffer wslay_event_config_set_no_buffering: payload chunks from
 *                   on_frame_recv_chunk_callback appended to a struct td_buf,
 *                   delivered at on_msg_recv_callback (the same reassembly as
 *                   thingsd's).
 * Both sides allow 65536-byte messages. wslay validates UTF-8 itself (a
 * byte-at-a-time DFA over text frames and close reasons, failing with 1007):
 * nothing is added to it, and the conformance section below checks it.
 *
 * Send side: server text frames of 300-byte updates, written into a memory
 * sink (a copy, as a write to a socket is), one message at a time and in
 * bursts of 64 queued before the flush:
 *   thingsd  td_ws__encode_header, then header and payload copied into one
 *            malloc'd write request (with its uv_write_t), as ws.c's send_raw
 *            does; the "write" copies it into the sink and frees it;
 *   wslay    wslay_event_queue_msg, then wslay_event_send with a send_callback
 *            that copies into the sink (it is called for the header and then
 *            for the payload).
 *
 * Every variant runs --runs times (interleaved, so drift hits all alike);
 * rates are from the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, so time the
 * thread spends descheduled on a shared machine does not count) and the
 * median with min-max is printed. An untimed run of each variant first checks
 * that it delivered every message byte for byte (FNV-1a over all payloads)
 * and counts heap calls and the peak of live heap bytes through the counting
 * allocator below (malloc and friends are defined here and forward to the
 * next definition, so LD_PRELOAD=libjemalloc.so.2 measures with jemalloc, as
 * the server is linked).
 *
 * Memory is bounded: two streams of --mib MiB at a time, a --chunk read
 * buffer, a 256 KiB sink, 64 pending writes.
 *
 * usage: ws_codec_bench [--mib N] [--runs N] [--chunk BYTES] [--updates N] [--cpu N] */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "base/buf.h"
#include "transport/http/ws_int.h"

/* ---- counting allocator ----
 * Counts heap calls and live bytes (by usable size) while `on`. Before the
 * next allocator is resolved (dlsym may allocate) a small static arena
 * serves. */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static size_t (*real_usable)(void *);

static struct {
  bool on;
  uint64_t calls;
  int64_t live, peak;
} A;

static _Alignas(16) unsigned char boot[16384];
static size_t boot_used;
static bool resolving;

static void *boot_alloc(size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n > sizeof boot - boot_used) return NULL;
  void *p = boot + boot_used;
  boot_used += n;
  return p;
}

static bool in_boot(const void *p) {
  return (const unsigned char *)p >= boot && (const unsigned char *)p < boot + sizeof boot;
}

static void resolve(void) {
  if (real_malloc || resolving) return;
  resolving = true;
  real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  real_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
  resolving = false;
  if (!real_malloc || !real_calloc || !real_realloc || !real_free || !real_usable) abort();
}

static inline void track(int64_t d) {
  A.calls++;
  A.live += d;
  if (A.live > A.peak) A.peak = A.live;
}

void *malloc(size_t n) {
  if (!real_malloc) {
    resolve();
    if (!real_malloc) return boot_alloc(n);
  }
  void *p = real_malloc(n);
  if (p && A.on) track((int64_t)real_usable(p));
  return p;
}

void *calloc(size_t k, size_t n) {
  if (!real_calloc) {
    resolve();
    if (!real_calloc) return (n && k > SIZE_MAX / n) ? NULL : boot_alloc(k * n); /* boot is zeroed, never reused */
  }
  void *p = real_calloc(k, n);
  if (p && A.on) track((int64_t)real_usable(p));
  return p;
}

void *realloc(void *p, size_t n) {
  if (p && in_boot(p)) {
    void *q = malloc(n);
    if (q) memcpy(q, p, n < (size_t)(boot + sizeof boot - (unsigned char *)p) ? n : (size_t)(boot + sizeof boot - (unsigned char *)p));
    return q;
  }
  if (!real_realloc) resolve();
  int64_t old = (p && A.on) ? (int64_t)real_usable(p) : 0;
  void *q = real_realloc(p, n);
  if (q && A.on) track((int64_t)real_usable(q) - old);
  return q;
}

void free(void *p) {
  if (!p || in_boot(p)) return;
  if (A.on) track(-(int64_t)real_usable(p));
  real_free(p);
}

/* The compiler may assume that malloc and free leave our globals alone (they
 * are builtins to it): the barriers make it store A before the window and
 * load it after. */
#define BARRIER() __asm__ __volatile__("" ::: "memory")

static void heap_start(void) {
  A.calls = 0;
  A.live = A.peak = 0;
  A.on = true;
  BARRIER();
}

static void heap_stop(void) {
  BARRIER();
  A.on = false;
}

/* ---- helpers ---- */

static void die(const char *what) {
  fprintf(stderr, "ws_codec_bench: %s\n", what);
  exit(1);
}

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
#define FNV0 0xcbf29ce484222325ull

static uint32_t rng = 0x9e3779b9u;
static uint32_t xs32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* what a delivered message is used for: counted, touched, hashed when verifying */
static struct {
  uint64_t msgs, bytes, sum, hash;
  bool verify;
} C;

static inline void consume(const uint8_t *m, size_t n) {
  C.msgs++;
  C.bytes += n;
  if (n) C.sum += m[0] + 7u * m[n - 1] + n;
  if (C.verify) C.hash = fnv(C.hash, m, n);
}

/* json_payload: a JSON command of exactly size bytes (the key list pads it). */
static void json_payload(char *out, size_t size, unsigned id) {
  static const char keys[] = "temperature,humidity,pressure,batteryLevel,rssi,co2,voltage,current,";
  char pre[512];
  int n = snprintf(pre, sizeof pre,
                   "{\"tsSubCmds\":[{\"cmdId\":%u,\"entityType\":\"DEVICE\",\"entityId\":\"%08x-1c2d-11ef-9a3b-%012x\","
                   "\"scope\":\"LATEST_TELEMETRY\",\"label\":\"K\xc3\xbchlhaus %u \xe2\x80\x93 \xc2\xb0" "C\",\"keys\":\"",
                   id, id * 2654435761u, id, id % 97);
  if (n < 0 || (size_t)n + 4 > size) die("payload size too small for the JSON template");
  memcpy(out, pre, (size_t)n);
  size_t pos = (size_t)n, k = 0;
  while (pos < size - 4) {
    out[pos++] = keys[k++];
    if (k == sizeof keys - 1) k = 0;
  }
  memcpy(out + pos, "\"}]}", 4);
}

/* ---- input streams ---- */

struct stream {
  uint8_t *data;
  size_t len;        /* wire bytes */
  uint64_t msgs, payload, hash;
};

/* build_stream: client frames of messages of msg_size bytes, each in frags
 * frames, as opcode (TEXT or BINARY), up to about cap bytes. */
static void build_stream(struct stream *s, size_t cap, size_t msg_size, int frags, int opcode) {
  s->data = malloc(cap);
  if (!s->data) die("out of memory");
  s->len = 0;
  s->msgs = s->payload = 0;
  s->hash = FNV0;
  char msg[65536];
  if (msg_size > sizeof msg) die("message too large");
  size_t wire = msg_size + (size_t)frags * TD_WS_MAX_HEADER;
  for (unsigned id = 1; s->len + wire <= cap; id++) {
    json_payload(msg, msg_size, id);
    s->hash = fnv(s->hash, (const uint8_t *)msg, msg_size);
    size_t off = 0;
    for (int f = 0; f < frags; f++) {
      size_t part = msg_size / (size_t)frags + (f == frags - 1 ? msg_size % (size_t)frags : 0);
      uint32_t k = xs32();
      uint8_t key[4] = {(uint8_t)k, (uint8_t)(k >> 8), (uint8_t)(k >> 16), (uint8_t)(k >> 24)};
      s->len += td_ws__encode_header(s->data + s->len, f == 0 ? opcode : TD_WS_OP_CONT, f == frags - 1, part, key);
      memcpy(s->data + s->len, msg + off, part);
      td_ws__mask(s->data + s->len, part, key, 0);
      s->len += part;
      off += part;
    }
    s->msgs++;
    s->payload += msg_size;
  }
}

/* ---- receivers ---- */

enum rx_impl { RX_THINGSD, RX_WSLAY, RX_WSLAY_NOBUF, RX_N };
static const char *rx_name[RX_N] = {"thingsd", "wslay buffered", "wslay no-buffer"};

#define MAX_MESSAGE 65536

struct rx {
  enum rx_impl impl;
  struct td_ws_parser parser;
  struct td_buf msg;
  wslay_event_context_ptr ctx;
  const uint8_t *in;      /* wslay: the piece being served */
  size_t in_len;
  bool failed;
};

static ssize_t wl_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  struct rx *r = ud;
  if (r->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < r->in_len ? len : r->in_len;
  memcpy(buf, r->in, n);
  r->in += n;
  r->in_len -= n;
  return (ssize_t)n;
}

static void wl_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  struct rx *r = ud;
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
  if (r->impl == RX_WSLAY) {
    consume(arg->msg, arg->msg_length);
  } else {
    consume((const uint8_t *)r->msg.data, r->msg.len);
    if (r->msg.cap > 16384) td_buf_deinit(&r->msg);
    else td_buf_reset(&r->msg);
  }
}

static void wl_on_chunk(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud) {
  /* the streams carry no control frames; a server would skip them here */
  struct rx *r = ud;
  if (arg->data_length && td_buf_append(&r->msg, arg->data, arg->data_length)) r->failed = true;
}

static ssize_t sink_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud);

static void rx_init(struct rx *r, enum rx_impl impl) {
  memset(r, 0, sizeof *r);
  r->impl = impl;
  td_buf_init(&r->msg, MAX_MESSAGE + 1);
  if (impl == RX_THINGSD) {
    td_ws__parser_init(&r->parser, MAX_MESSAGE, true);
    return;
  }
  struct wslay_event_callbacks cb = {
      .recv_callback = wl_recv,
      .send_callback = sink_send,
      .on_msg_recv_callback = wl_on_msg,
      .on_frame_recv_chunk_callback = impl == RX_WSLAY_NOBUF ? wl_on_chunk : NULL,
  };
  if (wslay_event_context_server_init(&r->ctx, &cb, r)) die("wslay_event_context_server_init");
  wslay_event_config_set_max_recv_msg_length(r->ctx, MAX_MESSAGE);
  if (impl == RX_WSLAY_NOBUF) wslay_event_config_set_no_buffering(r->ctx, 1);
}

static void rx_free(struct rx *r) {
  td_buf_deinit(&r->msg);
  if (r->ctx) wslay_event_context_free(r->ctx);
  r->ctx = NULL;
}

/* rx_feed: one read's bytes. False once the connection is failed. */
static bool rx_feed(struct rx *r, uint8_t *d, size_t n) {
  if (r->impl == RX_THINGSD) {
    while (n > 0) {
      struct td_ws_event ev;
      int rc = td_ws__parse(&r->parser, d, n, &ev);
      if (rc < 0) return false;
      d += rc;
      n -= (size_t)rc;
      if (ev.type != TD_WS_EV_DATA) continue; /* no control frames in the streams */
      if (ev.len && td_buf_append(&r->msg, ev.data, ev.len)) return false;
      if (!ev.last) continue;
      consume((const uint8_t *)r->msg.data, r->msg.len);
      if (r->msg.cap > 16384) td_buf_deinit(&r->msg);
      else td_buf_reset(&r->msg);
    }
    return true;
  }
  r->in = d;
  r->in_len = n;
  if (wslay_event_recv(r->ctx) != 0) return false;
  return !r->failed && wslay_event_get_read_enabled(r->ctx);
}

struct rx_result {
  double mbs[16], msgs[16];
  uint64_t heap_calls;
  int64_t heap_peak;
};

/* rx_run: one pass over the stream; seconds of CPU, or dies if the
 * messages delivered are not the stream's. */
static double rx_run(enum rx_impl impl, const struct stream *s, uint8_t *rbuf, size_t chunk, bool verify,
                     struct rx_result *res) {
  memset(&C, 0, sizeof C);
  C.verify = verify;
  C.hash = FNV0;
  if (verify) heap_start();
  struct rx r;
  rx_init(&r, impl);
  double t0 = cpu_now();
  for (size_t off = 0; off < s->len; off += chunk) {
    size_t n = s->len - off < chunk ? s->len - off : chunk;
    memcpy(rbuf, s->data + off, n);
    if (!rx_feed(&r, rbuf, n)) die("a receiver failed the connection on a valid stream");
  }
  double t = cpu_now() - t0;
  rx_free(&r);
  if (verify) {
    heap_stop();
    res->heap_calls = A.calls;
    res->heap_peak = A.peak;
    if (C.hash != s->hash) die("delivered messages differ from the stream's");
  }
  if (C.msgs != s->msgs || C.bytes != s->payload) die("message count or size mismatch");
  return t;
}

/* ---- sender ---- */

static uint8_t sink[256 * 1024];
static size_t sink_pos;
static uint64_t sink_total, sink_hash;
static bool sink_verify;

static inline void sink_write(const uint8_t *p, size_t n) {
  if (sink_verify) sink_hash = fnv(sink_hash, p, n);
  sink_total += n;
  while (n) {
    size_t k = sizeof sink - sink_pos < n ? sizeof sink - sink_pos : n;
    memcpy(sink + sink_pos, p, k);
    sink_pos = (sink_pos + k) % sizeof sink;
    p += k;
    n -= k;
  }
}

static ssize_t sink_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
  sink_write(data, len);
  return (ssize_t)len;
}

/* what ws.c's send_raw allocates per frame */
struct wout {
  uv_write_t w;
  void *ws;
  int kind;
  size_t len;
  uint8_t data[];
};

enum tx_impl { TX_THINGSD, TX_WSLAY, TX_N };
static const char *tx_name[TX_N] = {"thingsd", "wslay"};

#define UPDATE_SIZE 300
#define UPDATE_VARIANTS 64
#define MAX_BURST 64
static char updates[UPDATE_VARIANTS][UPDATE_SIZE];

static void make_updates(void) {
  for (unsigned i = 0; i < UPDATE_VARIANTS; i++) {
    char pre[256];
    int n = snprintf(pre, sizeof pre,
                     "{\"subscriptionId\":%u,\"errorCode\":0,\"errorMsg\":null,\"data\":{\"temperature\":[[17171717%05u,"
                     "\"21.%u\"]],\"humidity\":[[17171717%05u,\"4%u.5\"]]},\"latestValues\":{\"temperature\":17171717%05u,"
                     "\"humidity\":17171717%05u},\"pad\":\"",
                     i + 1, i, i % 10, i, i % 10, i, i);
    if (n < 0 || n + 3 > UPDATE_SIZE) die("update template too long");
    memcpy(updates[i], pre, (size_t)n);
    memset(updates[i] + n, 'x', UPDATE_SIZE - 3 - (size_t)n);
    memcpy(updates[i] + UPDATE_SIZE - 3, "\"}}", 3);
  }
}

/* tx_run: count updates, burst at a time then flushed. */
static double tx_run(enum tx_impl impl, uint64_t count, int burst, bool verify, uint64_t *heap_calls,
                     int64_t *heap_peak, uint64_t *hash) {
  sink_pos = 0;
  sink_total = 0;
  sink_hash = FNV0;
  sink_verify = verify;
  if (verify) heap_start();
  wslay_event_context_ptr ctx = NULL;
  if (impl == TX_WSLAY) {
    struct wslay_event_callbacks cb = {.recv_callback = wl_recv, .send_callback = sink_send};
    if (wslay_event_context_server_init(&ctx, &cb, NULL)) die("wslay_event_context_server_init");
  }
  struct wout *pending[MAX_BURST];
  double t0 = cpu_now();
  for (uint64_t i = 0; i < count;) {
    int k = 0;
    for (; k < burst && i < count; k++, i++) {
      const char *u = updates[i % UPDATE_VARIANTS];
      if (impl == TX_THINGSD) {
        uint8_t hdr[TD_WS_MAX_HEADER];
        size_t hl = td_ws__encode_header(hdr, TD_WS_OP_TEXT, true, UPDATE_SIZE, NULL);
        struct wout *o = malloc(sizeof *o + hl + UPDATE_SIZE);
        if (!o) die("out of memory");
        memcpy(o->data, hdr, hl);
        memcpy(o->data + hl, u, UPDATE_SIZE);
        o->len = hl + UPDATE_SIZE;
        pending[k] = o;
      } else {
        struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)u, .msg_length = UPDATE_SIZE};
        if (wslay_event_queue_msg(ctx, &m)) die("wslay_event_queue_msg");
      }
    }
    if (impl == TX_THINGSD) {
      for (int j = 0; j < k; j++) {
        sink_write(pending[j]->data, pending[j]->len);
        free(pending[j]);
      }
    } else if (wslay_event_send(ctx)) {
      die("wslay_event_send");
    }
  }
  double t = cpu_now() - t0;
  if (ctx) wslay_event_context_free(ctx);
  if (verify) {
    heap_stop();
    *heap_calls = A.calls;
    *heap_peak = A.peak;
    *hash = sink_hash;
  }
  if (sink_total != count * (UPDATE_SIZE + 4)) die("sink got the wrong byte count");
  return t;
}

/* ---- memory and conformance notes ---- */

static void notes_memory(void) {
  printf("\n## Per-connection state and queued messages (heap by usable size)\n\n");
  heap_start();
  wslay_event_context_ptr ctx;
  struct wslay_event_callbacks cb = {.recv_callback = wl_recv, .send_callback = sink_send};
  if (wslay_event_context_server_init(&ctx, &cb, NULL)) die("wslay_event_context_server_init");
  heap_stop();
  printf("- wslay server context: %" PRId64 " bytes in %" PRIu64 " heap blocks; thingsd's parser: %zu bytes inside "
         "struct td_ws, no heap\n",
         A.peak, A.calls, sizeof(struct td_ws_parser));
  /* a peer that does not read: 1000 updates queued, nothing written */
  enum { Q = 1000 };
  heap_start();
  for (int i = 0; i < Q; i++) {
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)updates[i % UPDATE_VARIANTS],
                                .msg_length = UPDATE_SIZE};
    if (wslay_event_queue_msg(ctx, &m)) die("wslay_event_queue_msg");
  }
  heap_stop();
  int64_t wl = A.live;
  uint64_t wl_calls = A.calls;
  printf("- %d queued %d-byte updates: wslay %" PRId64 " bytes (%.0f per update, %.1f heap calls each; "
         "wslay_event_get_queued_msg_count/length report %zu / %zu);",
         Q, UPDATE_SIZE, wl, (double)wl / Q, (double)wl_calls / Q, wslay_event_get_queued_msg_count(ctx),
         wslay_event_get_queued_msg_length(ctx));
  wslay_event_context_free(ctx);
  struct wout **outs = malloc(Q * sizeof *outs);
  if (!outs) die("out of memory");
  heap_start();
  for (int i = 0; i < Q; i++) {
    outs[i] = malloc(sizeof(struct wout) + 4 + UPDATE_SIZE);
    if (!outs[i]) die("out of memory");
  }
  heap_stop();
  printf(" thingsd %" PRId64 " bytes (%.0f per update, one write request each, uv_write_t included)\n", A.live,
         (double)A.live / Q);
  for (int i = 0; i < Q; i++) free(outs[i]);
  free(outs);
}

struct case_ {
  const char *name;
  int frags;            /* 1, or 2: the payload split at split */
  const char *payload;
  size_t len, split;
  int opcode;
  bool nonminimal;      /* a 16-bit length for a short payload */
};

/* conf_stream: the case's frames (masked) into out. */
static size_t conf_stream(const struct case_ *c, uint8_t *out) {
  const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t n = 0;
  for (int f = 0; f < c->frags; f++) {
    size_t off = f == 0 ? 0 : c->split, len = c->frags == 1 ? c->len : (f == 0 ? c->split : c->len - c->split);
    if (c->nonminimal) {
      out[n++] = 0x80 | (uint8_t)c->opcode;
      out[n++] = 0x80 | 126;
      out[n++] = 0;
      out[n++] = (uint8_t)len;
      memcpy(out + n, key, 4);
      n += 4;
    } else {
      n += td_ws__encode_header(out + n, f == 0 ? c->opcode : TD_WS_OP_CONT, f == c->frags - 1, len, key);
    }
    memcpy(out + n, c->payload + off, len);
    td_ws__mask(out + n, len, key, 0);
    n += len;
  }
  return n;
}

static void notes_conformance(void) {
  static char big[MAX_MESSAGE + 1];
  memset(big, 'a', sizeof big);
  const struct case_ cases[] = {
      {"valid: 4-byte character split over two fragments", 2, "ab\xf0\x9f\x98\x80" "cd", 8, 4, TD_WS_OP_TEXT, false},
      {"overlong C0 AF", 1, "ab\xc0\xaf" "cd", 6, 0, TD_WS_OP_TEXT, false},
      {"surrogate ED A0 80", 1, "ab\xed\xa0\x80" "cd", 7, 0, TD_WS_OP_TEXT, false},
      {"past U+10FFFF: F4 90 80 80", 1, "ab\xf4\x90\x80\x80", 6, 0, TD_WS_OP_TEXT, false},
      {"message ends inside a character", 1, "ab\xe2\x82", 4, 0, TD_WS_OP_TEXT, false},
      {"bad byte in the 1st fragment of 2", 2, "ab\xff" "cdef", 7, 4, TD_WS_OP_TEXT, false},
      {"close reason not UTF-8", 1, "\x03\xe8\xff", 3, 0, TD_WS_OP_CLOSE, false},
      {"message of 65537 bytes (limit 65536)", 1, big, sizeof big, 0, TD_WS_OP_TEXT, false},
      {"16-bit length for a 5-byte payload (not minimal)", 1, "hello", 5, 0, TD_WS_OP_TEXT, true},
  };
  printf("\n## Conformance (what each does with the input)\n\n| input | thingsd | wslay |\n|---|---|---|\n");
  static uint8_t buf[MAX_MESSAGE + 64];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct case_ *c = &cases[i];
    char td_out[64], wl_out[64];
    /* thingsd */
    size_t n = conf_stream(c, buf);
    struct rx r;
    memset(&C, 0, sizeof C);
    rx_init(&r, RX_THINGSD);
    int code = 0;
    bool ok = rx_feed(&r, buf, n);
    if (!ok) code = r.parser.error_code;
    if (!ok) snprintf(td_out, sizeof td_out, "fails, close %d", code);
    else snprintf(td_out, sizeof td_out, "accepted (%" PRIu64 " message)", C.msgs);
    rx_free(&r);
    /* wslay */
    n = conf_stream(c, buf);
    memset(&C, 0, sizeof C);
    rx_init(&r, RX_WSLAY);
    int rc = 0;
    r.in = buf;
    r.in_len = n;
    rc = wslay_event_recv(r.ctx);
    bool reading = wslay_event_get_read_enabled(r.ctx);
    wslay_event_send(r.ctx); /* the close frame wslay queued, if any */
    int sent = wslay_event_get_close_sent(r.ctx) ? wslay_event_get_status_code_sent(r.ctx) : 0;
    if (rc == 0 && reading && c->opcode != TD_WS_OP_CLOSE)
      snprintf(wl_out, sizeof wl_out, "accepted (%" PRIu64 " message)", C.msgs);
    else if (sent == WSLAY_CODE_NO_STATUS_RCVD)
      snprintf(wl_out, sizeof wl_out, "fails, close frame without a code%s", rc ? " (recv error)" : "");
    else
      snprintf(wl_out, sizeof wl_out, "fails, close %d", sent);
    rx_free(&r);
    printf("| %s | %s | %s |\n", c->name, td_out, wl_out);
  }
}

/* ---- main ---- */

static struct opts {
  size_t mib, chunk;
  int runs;
  uint64_t updates;
  int cpu;
} O = {32, 65536, 5, 1000000, -1};

static void median_range(const double *v, int n, double *med, double *lo, double *hi) {
  double s[16];
  memcpy(s, v, (size_t)n * sizeof *v);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  *med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  *lo = s[0];
  *hi = s[n - 1];
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"mib", 1, 0, 'm'},     {"runs", 1, 0, 'r'}, {"chunk", 1, 0, 'c'},
                                     {"updates", 1, 0, 'u'}, {"cpu", 1, 0, 'p'},  {0, 0, 0, 0}};
  for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
    switch (ch) {
    case 'm': O.mib = strtoul(optarg, NULL, 10); break;
    case 'r': O.runs = atoi(optarg); break;
    case 'c': O.chunk = strtoul(optarg, NULL, 10); break;
    case 'u': O.updates = strtoull(optarg, NULL, 10); break;
    case 'p': O.cpu = atoi(optarg); break;
    default:
      fprintf(stderr, "usage: ws_codec_bench [--mib N] [--runs N] [--chunk BYTES] [--updates N] [--cpu N]\n");
      return 2;
    }
  }
  if (O.mib < 1 || O.mib > 1024 || O.runs < 1 || O.runs > 15 || O.chunk < 16 || O.chunk > (64u << 20) ||
      O.updates < MAX_BURST)
    die("option out of range (mib 1-1024, runs 1-15, chunk 16 B-64 MiB, updates >= 64)");
  if (O.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(O.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) die(strerror(errno));
  }
  const char *pre = getenv("LD_PRELOAD");
  printf("# ws_codec_bench: wslay.h version %s, stream %zu MiB, read chunk %zu B, %d runs, allocator %s\n\n",
         WSLAY_VERSION, O.mib, O.chunk, O.runs, pre && strstr(pre, "jemalloc") ? "jemalloc (LD_PRELOAD)" : "glibc");
  make_updates();
  uint8_t *rbuf = malloc(O.chunk);
  if (!rbuf) die("out of memory");

  printf("## Receive: client frames (masked) to delivered messages\n\n"
         "| workload | frames | implementation | MB/s wire (median, min-max) | messages/s (median) | heap calls/msg (malloc+free) | "
         "peak heap |\n|---|---|---|---|---|---|---|\n");
  const struct {
    const char *name;
    size_t size;
    int frags;
  } wl[] = {{"200 B commands", 200, 1}, {"4 KiB commands", 4096, 1}, {"4 KiB in 4 fragments", 4096, 4}};
  for (size_t w = 0; w < sizeof wl / sizeof wl[0]; w++) {
    struct stream st[2];
    build_stream(&st[0], O.mib << 20, wl[w].size, wl[w].frags, TD_WS_OP_TEXT);
    build_stream(&st[1], O.mib << 20, wl[w].size, wl[w].frags, TD_WS_OP_BINARY);
    struct rx_result res[2][RX_N];
    memset(res, 0, sizeof res);
    for (int t = 0; t < 2; t++)
      for (int i = 0; i < RX_N; i++) rx_run((enum rx_impl)i, &st[t], rbuf, O.chunk, true, &res[t][i]);
    for (int run = 0; run < O.runs; run++)
      for (int t = 0; t < 2; t++)
        for (int i = 0; i < RX_N; i++) {
          double s = rx_run((enum rx_impl)i, &st[t], rbuf, O.chunk, false, NULL);
          res[t][i].mbs[run] = (double)st[t].len / s / 1e6;
          res[t][i].msgs[run] = (double)st[t].msgs / s;
        }
    for (int t = 0; t < 2; t++)
      for (int i = 0; i < RX_N; i++) {
        double m, a, b, mm, x, y;
        median_range(res[t][i].mbs, O.runs, &m, &a, &b);
        median_range(res[t][i].msgs, O.runs, &mm, &x, &y);
        printf("| %s | %s | %s | %.0f (%.0f-%.0f) | %.0f | %.2f | %.1f KiB |\n", wl[w].name,
               t == 0 ? "text (UTF-8 checked)" : "binary (no UTF-8 check)", rx_name[i], m, a, b, mm,
               (double)res[t][i].heap_calls / (double)st[t].msgs, (double)res[t][i].heap_peak / 1024);
      }
    free(st[0].data);
    free(st[1].data);
  }
  free(rbuf);

  printf("\n## Send: %d-byte server text updates into a memory sink\n\n"
         "| pattern | implementation | MB/s wire (median, min-max) | messages/s (median) | heap calls/msg (malloc+free) | peak heap |\n"
         "|---|---|---|---|---|---|\n",
         UPDATE_SIZE);
  const int bursts[2] = {1, MAX_BURST};
  for (int b = 0; b < 2; b++) {
    double mbs[TX_N][16], msgs[TX_N][16];
    uint64_t calls[TX_N], hash[TX_N];
    int64_t peak[TX_N];
    for (int i = 0; i < TX_N; i++)
      tx_run((enum tx_impl)i, O.updates, bursts[b], true, &calls[i], &peak[i], &hash[i]);
    if (hash[TX_THINGSD] != hash[TX_WSLAY]) die("the two encoders wrote different bytes");
    for (int run = 0; run < O.runs; run++)
      for (int i = 0; i < TX_N; i++) {
        double s = tx_run((enum tx_impl)i, O.updates, bursts[b], false, NULL, NULL, NULL);
        mbs[i][run] = (double)O.updates * (UPDATE_SIZE + 4) / s / 1e6;
        msgs[i][run] = (double)O.updates / s;
      }
    for (int i = 0; i < TX_N; i++) {
      double m, a, c, mm, x, y;
      median_range(mbs[i], O.runs, &m, &a, &c);
      median_range(msgs[i], O.runs, &mm, &x, &y);
      printf("| %s | %s | %.0f (%.0f-%.0f) | %.0f | %.2f | %.1f KiB |\n",
             bursts[b] == 1 ? "one at a time" : "bursts of 64", tx_name[i], m, a, c, mm,
             (double)calls[i] / (double)O.updates, (double)peak[i] / 1024);
    }
  }
  notes_memory();
  notes_conformance();
  return 0;
}
