/* send_rpc_request.c — "rpc call request"
 * (org.thingsboard.rule.engine.rpc.TbSendRPCRequestNode). RPC to devices
 * needs device sessions in the Device actor, which do not exist yet: until
 * then every message goes to "Failure" with the reason "RPC to devices is not
 * available yet" (logged once by the routing when no Failure link takes it). The
 * configuration (timeoutInSeconds, default 60) is validated already. */
#include <stdio.h>
#include <stdlib.h>
#include "base/err.h"
#include "rule/rule_node.h"

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
  /* Without a Failure link the routing logs this reason (one line). */
  td_rule_tell_failure(ctx, msg, "RPC to devices is not available yet");
}

const struct td_rule_node_type td_rule_node_send_rpc_request = {
    .clazz = "org.thingsboard.rule.engine.rpc.TbSendRPCRequestNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
