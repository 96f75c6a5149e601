/* device_profile.c — "device profile"
 * (org.thingsboard.rule.engine.profile.TbDeviceProfileNode), the entry node
 * of ThingsBoard 3.x–4.2 root chains. It evaluates the alarm rules of the
 * device profile and passes every message on with "Success". Alarm rules are
 * not implemented yet, so for now every message simply goes on with
 * "Success"; persistAlarmRulesState / fetchAlarmRulesStateOnStart are
 * accepted and ignored until then. */
#include "rule/rule_node.h"

static int init(json_t *configuration, void **state, char *err, size_t errlen) {
  *state = NULL;
  return 0;
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) { td_rule_tell_success(ctx, msg); }

const struct td_rule_node_type td_rule_node_device_profile = {
    .clazz = "org.thingsboard.rule.engine.profile.TbDeviceProfileNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = NULL,
};
