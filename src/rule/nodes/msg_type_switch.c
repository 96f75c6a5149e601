/* msg_type_switch.c — "message type switch"
 * (org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode): routes each
 * message along the label of its type (ThingsBoard's TbMsgType table,
 * reference §4.2); types without a label and custom types go to "Other". */
#include <string.h>
#include "rule/rule_node.h"

static const struct {
  const char *type, *label;
} labels[] = {
    {"POST_ATTRIBUTES_REQUEST", "Post attributes"},
    {"POST_TELEMETRY_REQUEST", "Post telemetry"},
    {"TO_SERVER_RPC_REQUEST", "RPC Request from Device"},
    {"ACTIVITY_EVENT", "Activity Event"},
    {"INACTIVITY_EVENT", "Inactivity Event"},
    {"CONNECT_EVENT", "Connect Event"},
    {"DISCONNECT_EVENT", "Disconnect Event"},
    {"ENTITY_CREATED", "Entity Created"},
    {"ENTITY_UPDATED", "Entity Updated"},
    {"ENTITY_DELETED", "Entity Deleted"},
    {"ENTITY_ASSIGNED", "Entity Assigned"},
    {"ENTITY_UNASSIGNED", "Entity Unassigned"},
    {"ATTRIBUTES_UPDATED", "Attributes Updated"},
    {"ATTRIBUTES_DELETED", "Attributes Deleted"},
    {"ALARM_ACK", "Alarm Acknowledged"},
    {"ALARM_CLEAR", "Alarm Cleared"},
    {"ALARM_ASSIGNED", "Alarm Assigned"},
    {"ALARM_UNASSIGNED", "Alarm Unassigned"},
    {"COMMENT_CREATED", "Comment Created"},
    {"COMMENT_UPDATED", "Comment Updated"},
    {"RPC_CALL_FROM_SERVER_TO_DEVICE", "RPC Request to Device"},
    {"ENTITY_ASSIGNED_FROM_TENANT", "Entity Assigned From Tenant"},
    {"ENTITY_ASSIGNED_TO_TENANT", "Entity Assigned To Tenant"},
    {"TIMESERIES_UPDATED", "Timeseries Updated"},
    {"TIMESERIES_DELETED", "Timeseries Deleted"},
    {"RPC_QUEUED", "RPC Queued"},
    {"RPC_SENT", "RPC Sent"},
    {"RPC_DELIVERED", "RPC Delivered"},
    {"RPC_SUCCESSFUL", "RPC Successful"},
    {"RPC_TIMEOUT", "RPC Timeout"},
    {"RPC_EXPIRED", "RPC Expired"},
    {"RPC_FAILED", "RPC Failed"},
    {"RPC_DELETED", "RPC Deleted"},
    {"RELATION_ADD_OR_UPDATE", "Relation Added or Updated"},
    {"RELATION_DELETED", "Relation Deleted"},
    {"RELATIONS_DELETED", "All Relations Deleted"},
    {"REST_API_REQUEST", "REST API request"},
    /* ALARM, ALARM_DELETE, ENTITY_ASSIGNED_TO_EDGE, ENTITY_UNASSIGNED_FROM_EDGE,
     * PROVISION_*, SEND_EMAIL and custom types have no label: "Other". */
};

const char *td_rule_msg_type_label(const char *type) {
  if (type)
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
      if (strcmp(labels[i].type, type) == 0) return labels[i].label;
  return TD_RULE_OTHER;
}

static int init(json_t *configuration, void **state, char *err, size_t errlen) {
  *state = NULL; /* {"version":0} and anything else: nothing to configure */
  return 0;
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  const char *l[] = {td_rule_msg_type_label(msg->type)};
  td_rule_tell_next(ctx, msg, l, 1);
}

const struct td_rule_node_type td_rule_node_msg_type_switch = {
    .clazz = "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = NULL,
};
