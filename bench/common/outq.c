/* outq.c — double-buffered connection output (see outq.h). */
#include "outq.h"

void bench_outq_init(struct bench_outq *q, size_t limit) {
  td_buf_init(&q->out, limit);
  td_buf_init(&q->wr, limit);
  q->writing = false;
}

void bench_outq_deinit(struct bench_outq *q) {
  td_buf_deinit(&q->out);
  td_buf_deinit(&q->wr);
}

int bench_outq_flush(struct bench_outq *q, uv_stream_t *s, void *data, uv_write_cb cb) {
  if (q->writing || q->out.len == 0) return 0;
  struct td_buf t = q->wr;
  q->wr = q->out;
  q->out = t;
  uv_buf_t b = uv_buf_init(q->wr.data, (unsigned)q->wr.len);
  q->req.data = data;
  int rc = uv_write(&q->req, s, &b, 1, cb);
  if (rc < 0) {
    td_buf_reset(&q->wr);
    return rc;
  }
  q->writing = true;
  return 1;
}

void bench_outq_done(struct bench_outq *q) {
  q->writing = false;
  td_buf_reset(&q->wr);
}
