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
 * (ON_EVERY_MESSAGE). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/arena.h"
#include "base/err.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/payload.h"
#include "store/writer.h"
#include "rule/rule_node.h"

struct cfg {
  int64_t default_ttl;
  bool use_server_ts;
};

struct job {
  struct td_write_req req;
  struct td_rule_async *h;
  struct td_arena arena;
};

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

/* Writer thread. */
static void done(struct td_write_req *r, int status) {
  struct job *j = td_container_of(r, struct job, req);
  if (status == 0) td_rule_async_success(j->h);
  else td_rule_async_failure(j->h, td_strerror(status));
  td_arena_deinit(&j->arena);
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
  struct job *j = calloc(1, sizeof *j);
  if (!j) {
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    return;
  }
  td_arena_init(&j->arena, 0);
  struct td_payload_opts o = {.type_cast = true, .max_string_len = 0, .max_depth = 32};
  struct td_kv *kvs = NULL;
  size_t n = 0;
  char err[128] = "";
  int rc = td_payload_attributes(msg->data, msg->data_len, &o, &j->arena, &kvs, &n, err, sizeof err);
  const char *why = rc ? (err[0] ? err : td_strerror(rc)) : n == 0 ? "Msg body is empty" : NULL;
  struct td_ts_point *pts = n ? td_arena_alloc(&j->arena, n * sizeof *pts) : NULL;
  if (!why && !pts) why = td_strerror(TD_ENOMEM);
  if (why) {
    td_rule_tell_failure(ctx, msg, why);
    td_arena_deinit(&j->arena);
    free(j);
    return;
  }
  int64_t ts = msg->ts, ttl = cf->default_ttl;
  if (cf->use_server_ts) ts = td_now_ms();
  else (void)parse_i64(td_msg_md_get(msg, "ts"), &ts);
  (void)parse_i64(td_msg_md_get(msg, "TTL"), &ttl);
  for (size_t i = 0; i < n; i++) {
    pts[i].ts = ts;
    pts[i].kv = kvs[i];
  }
  j->req.kind = TD_WRITE_TS;
  j->req.entity = msg->originator;
  j->req.ttl_s = ttl > 0 ? ttl : 0;
  j->req.points = pts;
  j->req.n = n;
  j->req.done = done;
  j->h = td_rule_async_begin(ctx, msg);
  if (!j->h) {
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    td_arena_deinit(&j->arena);
    free(j);
    return;
  }
  rc = td_writer_submit(w, &j->req);
  if (rc) { /* done will not run */
    td_rule_async_failure(j->h, td_strerror(rc));
    td_arena_deinit(&j->arena);
    free(j);
  }
}

const struct td_rule_node_type td_rule_node_timeseries = {
    .clazz = "org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
