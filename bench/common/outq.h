/* outq.h — the output side of a bench tool's libuv TCP connection: a buffer
 * being filled and one being written, with one uv_write in flight at most, so
 * what is queued while a write runs goes out in one piece when it ends.
 *
 * Where it sits: bench/common (benchcommon); used by the MQTT connections
 * (mqttc.c) and ws_latency's WebSocket client. A queue belongs to its
 * connection's loop thread. */
#ifndef BENCH_COMMON_OUTQ_H
#define BENCH_COMMON_OUTQ_H
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/buf.h"

struct bench_outq {
  struct td_buf out; /* being filled: encoders append here */
  struct td_buf wr;  /* handed to uv_write */
  uv_write_t req;
  bool writing;
};

/* Empty buffers of at most limit bytes each; caller's storage. */
void bench_outq_init(struct bench_outq *q, size_t limit);
/* Free the buffers; after the connection's handle is closed. */
void bench_outq_deinit(struct bench_outq *q);
/* Start writing what q->out holds to s, unless a write is in flight or
 * nothing is queued. cb runs when the write ends, with req->data = data, and
 * must call bench_outq_done first. Returns 1 when a write started, 0 when
 * none did, or a negative libuv error (then nothing is in flight). */
int bench_outq_flush(struct bench_outq *q, uv_stream_t *s, void *data, uv_write_cb cb);
/* From the write callback: the write ended, its buffer is free again. */
void bench_outq_done(struct bench_outq *q);
#endif
