/* timeseries.c — "save time series"
 * (org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode).
 *
 * Accepts POST_TELEMETRY_REQUEST only. The data is a flat key/value JSON
 * object (one timestamp per message, as the transports produce it), typed
 * by the shared payload rules with type casting on. ts = metadata "ts", else
 * the message's ts; useServerTs: now. TTL = metadata "TTL", else defaultTTL
 * (seconds, 0 = keep forever). The write goes to the batched writer; the
 * message goes on with Success after the batch commits, Failure on error.
 * processingSettings (ThingsBoard 3.9+) are accepted; every message is saved
 * (ON_EVERY_MESSAGE). Once the writer has accepted the points they are
 * published to the subscription registry (src/core/subs.h) for WebSocket
 * subscribers, from the parse arena (the job belongs to the writer then). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/payload.h"
#include "core/subs.h"
#include "store/writer.h"
#include "rule/rule_node.h"

struct cfg {
  int64_t default_ttl;
  bool use_server_ts;
};

/* One allocation per message: the job, its points, then their key and
 * string bytes. The points wait for the writer's commit (up to
 * database.writer.max_delay_ms under load, with up to rule_engine.max_inflight
 * messages in flight), so they are packed to size instead of staying in the
 * parse arena, whose first chunk alone is 8 KiB (peak RSS of bench/run.sh:
 * 352 MB with the arena kept, see docs/performance.md). */
struct job {
  struct td_write_req req;
  struct td_rule_async *h;
  struct td_ts_point pts[];
};

static size_t kv_str_bytes(const struct td_kv *kv) {
  return (kv->type == TD_KV_STRING || kv->type == TD_KV_JSON) && kv->v.s ? strlen(kv->v.s) + 1 : 0;
}

static char *put_str(char **p, const char *s) {
  size_t l = strlen(s) + 1;
  char *d = memcpy(*p, s, l);
  *p += l;
  return d;
}

/* job_new: the packed job for kvs[0..n), every point at ts; NULL if out of memory. */
static struct job *job_new(const struct td_kv *kvs, size_t n, int64_t ts) {
  size_t bytes = sizeof(struct job) + n * sizeof(struct td_ts_point);
  for (size_t i = 0; i < n; i++) bytes += strlen(kvs[i].key) + 1 + kv_str_bytes(&kvs[i]);
  struct job *j = calloc(1, bytes);
  if (!j) return NULL;
  char *p = (char *)&j->pts[n];
  for (size_t i = 0; i < n; i++) {
    j->pts[i].ts = ts;
    j->pts[i].kv = kvs[i];
    j->pts[i].kv.key = put_str(&p, kvs[i].key);
    if (kv_str_bytes(&kvs[i])) j->pts[i].kv.v.s = put_str(&p, kvs[i].v.s);
  }
  return j;
}

static int init(json_t *c, void **state, char *err, size_t errlen) {
  struct cfg *cf = calloc(1, sizeof *cf);
  if (!cf) return TD_ENOMEM;
  json_t *ttl = json_object_get(c, "defaultTTL");
  if (json_is_integer(ttl)) cf->default_ttl = json_integer_value(ttl);
  else if (json_is_string(ttl)) cf->default_ttl = strtoll(json_string_value(ttl), NULL, 10);
  else if (ttl && !json_is_null(ttl)) {
    free(cf);
    snprintf(err, errlen, "defaultTTL must be a number of seconds");
    return TD_EINVAL;
  }
  json_t *us = json_object_get(c, "useServerTs");
  cf->use_server_ts = json_is_true(us) || (json_is_string(us) && strcmp(json_string_value(us), "true") == 0);
  *state = cf;
  return 0;
}

static bool parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

/* publish: hand the points just accepted by the writer to WebSocket
 * subscribers. kvs live in the caller's parse arena a (the job may already
 * be freed by the writer thread); nothing is allocated when nobody is
 * subscribed. A subscriber registered a moment after this check still gets
 * the points: it reads its initial data only after the writer committed
 * what was queued before it registered (src/api/ws_session.c). */
static void publish(const struct td_msg *msg, const struct td_kv *kvs, size_t n, int64_t ts, struct td_arena *a) {
  if (td_subs_count() == 0) return;
  struct td_ts_point *p = td_arena_alloc(a, n * sizeof *p);
  if (!p) {
    td_log_limited(1, TD_LOG_WARN, "rule", "action=\"publishing telemetry to subscribers\" err=%s",
                   td_errname(TD_ENOMEM));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    p[i].ts = ts;
    p[i].kv = kvs[i];
  }
  td_subs_publish_ts(&msg->tenant_id, &msg->originator, p, n);
}

/* Writer thread. */
static void done(struct td_write_req *r, int status) {
  struct job *j = td_container_of(r, struct job, req);
  if (status == 0) td_rule_async_success(j->h);
  else td_rule_async_failure(j->h, td_strerror(status));
  free(j);
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct cfg *cf = ctx->state;
  if (strcmp(msg->type, TD_MSG_POST_TELEMETRY) != 0) {
    char reason[128];
    snprintf(reason, sizeof reason, "Unsupported msg type: %.80s", msg->type);
    td_rule_tell_failure(ctx, msg, reason);
    return;
  }
  struct td_writer *w = ctx->td_ctx ? ctx->td_ctx->writer : NULL;
  if (!w) {
    td_rule_tell_failure(ctx, msg, "no telemetry writer");
    return;
  }
  struct td_arena arena;
  td_arena_init(&arena, 0);
  struct td_payload_opts o = {.type_cast = true, .max_string_len = 0, .max_depth = 32};
  struct td_kv *kvs = NULL;
  size_t n = 0;
  char err[128] = "";
  int rc = td_payload_attributes(msg->data, msg->data_len, &o, &arena, &kvs, &n, err, sizeof err);
  const char *why = rc ? (err[0] ? err : td_strerror(rc)) : n == 0 ? "Msg body is empty" : NULL;
  if (why) {
    td_rule_tell_failure(ctx, msg, why);
    td_arena_deinit(&arena);
    return;
  }
  int64_t ts = msg->ts, ttl = cf->default_ttl;
  if (cf->use_server_ts) ts = td_now_ms();
  else (void)parse_i64(td_msg_md_get(msg, "ts"), &ts);
  (void)parse_i64(td_msg_md_get(msg, "TTL"), &ttl);
  struct job *j = job_new(kvs, n, ts);
  if (!j) {
    td_arena_deinit(&arena);
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    return;
  }
  j->req.kind = TD_WRITE_TS;
  j->req.entity = msg->originator;
  j->req.ttl_s = ttl > 0 ? ttl : 0;
  j->req.points = j->pts;
  j->req.n = n;
  j->req.done = done;
  j->h = td_rule_async_begin(ctx, msg);
  if (!j->h) {
    td_arena_deinit(&arena);
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    free(j);
    return;
  }
  j->req.bounded = true; /* by the engine's window (rule_engine.max_inflight) */
  rc = td_writer_submit(w, &j->req);
  if (rc) { /* done will not run */
    td_rule_async_failure(j->h, td_strerror(rc));
    free(j);
  } else {
    publish(msg, kvs, n, ts, &arena); /* j is the writer's now: not touched */
  }
  td_arena_deinit(&arena);
}

const struct td_rule_node_type td_rule_node_timeseries = {
    .clazz = "org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
