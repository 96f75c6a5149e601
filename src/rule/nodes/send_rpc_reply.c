/* send_rpc_reply.c — "rpc call reply"
 * (org.thingsboard.rule.engine.rpc.TbSendRPCReplyNode, reference §4.6).
 *
 * Answers a client-side RPC (TO_SERVER_RPC_REQUEST): the metadata keys named
 * by serviceIdMetaDataAttribute ("serviceId"), sessionIdMetaDataAttribute
 * ("sessionId") and requestIdMetaDataAttribute ("requestId") say which
 * session and which device request id; the message data is the reply body.
 * The reply goes to the device's actor, which hands it to that session (if it
 * is still connected). Success once handed over; Failure when the originator
 * is not a device or the metadata/data is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "core/ctx.h"
#include "rule/rule_int.h"

struct cfg {
  char service_key[64], session_key[64], request_key[64];
};

static int key(json_t *c, const char *field, const char *dflt, char *out, size_t n, char *err, size_t errlen) {
  json_t *v = json_object_get(c, field);
  if (v && !json_is_null(v) && !json_is_string(v)) {
    snprintf(err, errlen, "%s must be a string", field);
    return TD_EINVAL;
  }
  const char *s = json_is_string(v) && *json_string_value(v) ? json_string_value(v) : dflt;
  if (strlen(s) >= n) {
    snprintf(err, errlen, "%s is too long", field);
    return TD_EINVAL;
  }
  strcpy(out, s);
  return 0;
}

static int init(json_t *configuration, void **state, char *err, size_t errlen) {
  struct cfg *c = calloc(1, sizeof *c);
  if (!c) return TD_ENOMEM;
  int rc = key(configuration, "serviceIdMetaDataAttribute", "serviceId", c->service_key, sizeof c->service_key, err,
               errlen);
  if (!rc) rc = key(configuration, "sessionIdMetaDataAttribute", "sessionId", c->session_key, sizeof c->session_key,
                    err, errlen);
  if (!rc) rc = key(configuration, "requestIdMetaDataAttribute", "requestId", c->request_key, sizeof c->request_key,
                    err, errlen);
  if (rc) {
    free(c);
    return rc;
  }
  *state = c;
  return 0;
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct cfg *c = ctx->state;
  if (!td_rule_require_device(ctx, msg)) return;
  const char *rid = td_msg_md_get(msg, c->request_key);
  const char *sid = td_msg_md_get(msg, c->session_key);
  char *end = NULL;
  long long id = rid && *rid ? strtoll(rid, &end, 10) : -1;
  struct td_uuid su;
  if (!end || *end || id < INT32_MIN || id > INT32_MAX) {
    td_rule_tell_failure(ctx, msg, "Request id is not present in the metadata!");
    return;
  }
  if (!sid || td_uuid_parse(sid, &su)) {
    td_rule_tell_failure(ctx, msg, "Session id is not present in the metadata!");
    return;
  }
  if (msg->data_len == 0) {
    td_rule_tell_failure(ctx, msg, "Request body is empty!");
    return;
  }
  struct td_rule_engine *re = ctx->td_ctx ? ctx->td_ctx->rules : NULL;
  struct td_rule_dev_evt *ev = re ? td_rule_dev_evt_new(TD_DEV_CLIENT_RPC_REPLY, &msg->tenant_id, &msg->originator.id)
                                  : NULL;
  if (ev && !(ev->payload = malloc(msg->data_len + 1))) {
    td_actor_msg_free(&ev->hdr);
    ev = NULL;
  }
  if (!ev) {
    td_rule_tell_failure(ctx, msg, re ? td_strerror(TD_ENOMEM) : "no rule engine");
    return;
  }
  memcpy(ev->payload, msg->data, msg->data_len);
  ev->payload[msg->data_len] = '\0';
  ev->len = msg->data_len;
  ev->session_id = su;
  ev->request_id = (int32_t)id;
  ev->ctx = ctx->td_ctx;
  if (td_rule_engine_device_event(re, ev)) td_rule_tell_failure(ctx, msg, "rule engine stopped");
  else td_rule_tell_success(ctx, msg);
}

const struct td_rule_node_type td_rule_node_send_rpc_reply = {
    .clazz = "org.thingsboard.rule.engine.rpc.TbSendRPCReplyNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
