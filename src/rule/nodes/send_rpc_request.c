/* send_rpc_request.c — "rpc call request"
 * (org.thingsboard.rule.engine.rpc.TbSendRPCRequestNode, reference §2.7, §4.6).
 *
 * The originator must be a device; the data {"method":..,"params":..} (params
 * a JSON value, or a string holding one as ThingsBoard's REST controller
 * sends it); metadata oneway, requestUUID, expirationTime (default now +
 * timeoutInSeconds, 60), persistent and retries. The request goes to the
 * device's actor (session.c), which sends it to the device's sessions; the
 * node completes with Success and the device's reply as data ("{}" for a
 * oneway call once sent), or Failure "TIMEOUT" / "NO_ACTIVE_CONNECTION". A
 * persistent RPC (a row the REST API stored, requestUUID = its id) completes
 * at once with {"rpcId":..}, as ThingsBoard's node does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/time.h"
#include "core/ctx.h"
#include "rule/rule_int.h"

struct cfg {
  int timeout_s;
};

static int init(json_t *configuration, void **state, char *err, size_t errlen) {
  struct cfg *c = calloc(1, sizeof *c);
  if (!c) return TD_ENOMEM;
  c->timeout_s = 60;
  json_t *t = json_object_get(configuration, "timeoutInSeconds");
  if (json_is_integer(t)) c->timeout_s = (int)json_integer_value(t);
  else if (t && !json_is_null(t)) {
    free(c);
    snprintf(err, errlen, "timeoutInSeconds must be an integer");
    return TD_EINVAL;
  }
  *state = c;
  return 0;
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct cfg *c = ctx->state;
  if (!td_rule_require_device(ctx, msg)) return;
  struct td_rule_engine *re = ctx->td_ctx ? ctx->td_ctx->rules : NULL;
  if (!re) {
    td_rule_tell_failure(ctx, msg, "no rule engine");
    return;
  }
  json_t *data = json_loadb(msg->data, msg->data_len, 0, NULL);
  json_t *method = json_object_get(data, "method"), *params = json_object_get(data, "params");
  if (!json_is_string(method) || !params) {
    json_decref(data);
    td_rule_tell_failure(ctx, msg, !json_is_string(method) ? "Method is not present in the message!"
                                                           : "Params are not present in the message!");
    return;
  }
  struct td_rule_dev_evt *ev = td_rule_dev_evt_new(TD_DEV_RPC_REQUEST, &msg->tenant_id, &msg->originator.id);
  if (ev) {
    ev->method = strdup(json_string_value(method));
    ev->params = json_is_string(params) ? strdup(json_string_value(params))
                                        : json_dumps(params, JSON_COMPACT | JSON_ENCODE_ANY);
  }
  json_decref(data);
  if (!ev || !ev->method || !ev->params) {
    if (ev) td_actor_msg_free(&ev->hdr);
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    return;
  }
  const char *v = td_msg_md_get(msg, "oneway");
  ev->oneway = v && strcmp(v, "true") == 0;
  v = td_msg_md_get(msg, "requestUUID");
  if (!v || td_uuid_parse(v, &ev->request_uuid)) memset(&ev->request_uuid, 0, sizeof ev->request_uuid);
  v = td_msg_md_get(msg, "expirationTime");
  char *end = NULL;
  long long exp = v && *v ? strtoll(v, &end, 10) : 0;
  ev->expiration_ms = end && *end == '\0' && exp > 0 ? exp : td_now_ms() + (int64_t)c->timeout_s * 1000;
  v = td_msg_md_get(msg, "persistent");
  ev->persistent = v && strcmp(v, "true") == 0 && !td_uuid_is_zero(&ev->request_uuid);
  v = td_msg_md_get(msg, "retries");
  end = NULL;
  long long retries = v && *v ? strtoll(v, &end, 10) : -1;
  ev->retries = end && *end == '\0' && retries >= 0 && retries < 1000000 ? (int)retries : -1;
  ev->ctx = ctx->td_ctx;
  ev->h = td_rule_async_begin(ctx, msg);
  if (!ev->h) {
    td_actor_msg_free(&ev->hdr);
    td_rule_tell_failure(ctx, msg, td_strerror(TD_ENOMEM));
    return;
  }
  ev->msg = td_msg_ref(msg);
  (void)td_rule_engine_device_event(re, ev); /* on failure the event's free completes h */
}

const struct td_rule_node_type td_rule_node_send_rpc_request = {
    .clazz = "org.thingsboard.rule.engine.rpc.TbSendRPCRequestNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
