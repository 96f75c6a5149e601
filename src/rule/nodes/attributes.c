/* attributes.c — "save attributes"
 * (org.thingsboard.rule.engine.telemetry.TbMsgAttributesNode).
 *
 * Accepts POST_ATTRIBUTES_REQUEST only. Scope from the configuration
 * (default CLIENT_SCOPE), overridden by metadata "scope"; last update ts =
 * now. The data is a flat key/value JSON object typed with type casting on.
 * The write goes to the batched writer: Success after the commit, Failure on
 * error. notifyDevice (bool or the string "true"/"false", as 3.x exports
 * have it), sendAttributesUpdatedNotification and
 * updateAttributesOnlyOnValueChange are accepted. With scope SHARED_SCOPE on
 * a device and notifyDevice true (configuration, or metadata notifyDevice
 * "true"), the saved attributes are pushed to the device's subscribed
 * sessions after the commit (td_core_attributes_changed). Every committed
 * save is also published to the subscription registry (src/core/subs.h)
 * for WebSocket subscribers. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/ctx.h"
#include "core/device_session.h"
#include "core/device_state.h"
#include "core/payload.h"
#include "core/subs.h"
#include "store/writer.h"
#include "rule/rule_node.h"

struct cfg {
  int scope;
  bool notify_device;
};

struct job {
  struct td_write_req req;
  struct td_rule_async *h;
  struct td_arena arena;
  struct td_ctx *ctx;        /* non-NULL: push the shared attributes to the device */
  struct td_uuid tenant_id;  /* the originator's tenant (push and subscribers) */
};

/* notify: {"k":v,...} to the device's sessions subscribed to attributes. */
static void notify(struct job *j) {
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = td_buf_puts(&b, "{");
  for (size_t i = 0; i < j->req.n && !rc; i++) {
    if (i) rc = td_buf_puts(&b, ",");
    if (!rc) rc = td_buf_json_str(&b, j->req.kvs[i].key);
    if (!rc) rc = td_buf_puts(&b, ":");
    if (!rc) rc = td_kv_append_json_value(&b, &j->req.kvs[i]);
  }
  if (!rc) rc = td_buf_puts(&b, "}");
  if (!rc) rc = td_core_attributes_changed(j->ctx, &j->tenant_id, &j->req.entity.id, b.data, b.len);
  if (rc) td_log_limited(1, TD_LOG_WARN, "rule", "action=\"notifying device of shared attributes\" err=%s", td_errname(rc));
  td_buf_deinit(&b);
}

static int scope_parse(const char *s) {
  if (!s) return 0;
  if (strcmp(s, "CLIENT_SCOPE") == 0) return TD_SCOPE_CLIENT;
  if (strcmp(s, "SERVER_SCOPE") == 0) return TD_SCOPE_SERVER;
  if (strcmp(s, "SHARED_SCOPE") == 0) return TD_SCOPE_SHARED;
  return 0;
}

/* flag: a JSON bool or the strings "true"/"false"; absent/null = dflt. */
static int flag(json_t *v, bool dflt, bool *out) {
  if (!v || json_is_null(v)) *out = dflt;
  else if (json_is_boolean(v)) *out = json_is_true(v);
  else if (json_is_string(v) && strcmp(json_string_value(v), "true") == 0) *out = true;
  else if (json_is_string(v) && strcmp(json_string_value(v), "false") == 0) *out = false;
  else return TD_EINVAL;
  return 0;
}

static int init(json_t *c, void **state, char *err, size_t errlen) {
  struct cfg *cf = calloc(1, sizeof *cf);
  if (!cf) return TD_ENOMEM;
  cf->scope = TD_SCOPE_CLIENT;
  json_t *sc = json_object_get(c, "scope");
  if (sc && !json_is_null(sc) && !(cf->scope = scope_parse(json_string_value(sc)))) {
    free(cf);
    snprintf(err, errlen, "scope must be CLIENT_SCOPE, SERVER_SCOPE or SHARED_SCOPE");
    return TD_EINVAL;
  }
  bool ignored;
  if (flag(json_object_get(c, "notifyDevice"), false, &cf->notify_device) ||
      flag(json_object_get(c, "sendAttributesUpdatedNotification"), false, &ignored) ||
      flag(json_object_get(c, "updateAttributesOnlyOnValueChange"), false, &ignored)) {
    free(cf);
    snprintf(err, errlen, "notifyDevice/sendAttributesUpdatedNotification/updateAttributesOnlyOnValueChange must be true or false");
    return TD_EINVAL;
  }
  *state = cf;
  return 0;
}

/* Writer thread. */
static void done(struct td_write_req *r, int status) {
  struct job *j = td_container_of(r, struct job, req);
  if (status == 0 && j->ctx) notify(j);
  if (status == 0)
    td_subs_publish_attrs(&j->tenant_id, &j->req.entity, j->req.scope, j->req.kvs, j->req.n, j->req.ts);
  if (status == 0) td_rule_async_success(j->h);
  else td_rule_async_failure(j->h, td_strerror(status));
  td_arena_deinit(&j->arena);
  free(j);
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct cfg *cf = ctx->state;
  if (strcmp(msg->type, TD_MSG_POST_ATTRIBUTES) != 0) {
    char reason[128];
    snprintf(reason, sizeof reason, "Unsupported msg type: %.80s", msg->type);
    td_rule_tell_failure(ctx, msg, reason);
    return;
  }
  int scope = cf->scope;
  const char *ms = td_msg_md_get(msg, "scope");
  if (ms && *ms) {
    if (!(scope = scope_parse(ms))) {
      td_rule_tell_failure(ctx, msg, "unknown attribute scope in metadata");
      return;
    }
  }
  struct td_writer *w = ctx->td_ctx ? ctx->td_ctx->writer : NULL;
  if (!w) {
    td_rule_tell_failure(ctx, msg, "no attribute writer");
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
  if (rc || n == 0) {
    if (rc) td_rule_tell_failure(ctx, msg, err[0] ? err : td_strerror(rc));
    else td_rule_tell_success(ctx, msg); /* nothing to save */
    td_arena_deinit(&j->arena);
    free(j);
    return;
  }
  j->req.kind = TD_WRITE_ATTRS;
  j->req.entity = msg->originator;
  j->req.scope = scope;
  j->req.ts = td_now_ms();
  j->req.kvs = kvs;
  j->req.n = n;
  j->req.done = done;
  if (ctx->td_ctx)
    td_device_state_attrs_saved(ctx->td_ctx->device_state, &msg->tenant_id, &msg->originator, scope, kvs, n);
  j->tenant_id = msg->tenant_id;
  const char *nd = td_msg_md_get(msg, "notifyDevice");
  if (scope == TD_SCOPE_SHARED && msg->originator.type == TD_ENTITY_DEVICE &&
      (cf->notify_device || (nd && strcmp(nd, "true") == 0))) {
    j->ctx = ctx->td_ctx;
  }
  j->h = td_rule_async_begin(ctx, msg);
  if (!j->h) {
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    td_arena_deinit(&j->arena);
    free(j);
    return;
  }
  j->req.bounded = true; /* by the engine's window (rule_engine.max_inflight) */
  rc = td_writer_submit(w, &j->req);
  if (rc) { /* done will not run */
    td_rule_async_failure(j->h, td_strerror(rc));
    td_arena_deinit(&j->arena);
    free(j);
  }
}

const struct td_rule_node_type td_rule_node_attributes = {
    .clazz = "org.thingsboard.rule.engine.telemetry.TbMsgAttributesNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
