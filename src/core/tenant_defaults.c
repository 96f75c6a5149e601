/* tenant_defaults.c — a new tenant's default device profile and root rule
 * chain (tenant_defaults.h), and rule chain import.
 *
 * The root chain is ThingsBoard's default tenant root chain of 3.x–4.2
 * (reference §4.4): Device Profile -> Message Type Switch -> Save Timeseries,
 * Save Client Attributes, Log RPC from Device, Log Other, RPC Call Request.
 * Import validates node types through the rule node catalogue, so this file
 * reaches up into src/rule for that one check. */
#include "core/tenant_defaults.h"
#include "base/err.h"
#include "base/log.h"
#include "rule/engine.h"

#include <stdio.h>
#include <string.h>

#define TB "org.thingsboard.rule.engine."
#define LOG_SCRIPT "return '\\\\nIncoming message:\\\\n' + JSON.stringify(msg) + '\\\\nIncoming metadata:\\\\n' + JSON.stringify(metadata);"

static const char root_chain_json[] =
  "{\"ruleChain\":{\"name\":\"Root Rule Chain\",\"type\":\"CORE\",\"firstRuleNodeId\":null,\"root\":true,"
  "\"debugMode\":false,\"configuration\":null,\"additionalInfo\":{\"description\":\"\"}},"
  "\"metadata\":{\"firstNodeIndex\":6,\"nodes\":["
  "{\"additionalInfo\":{\"layoutX\":824,\"layoutY\":156},\"type\":\"" TB "telemetry.TbMsgTimeseriesNode\","
  "\"name\":\"Save Timeseries\",\"debugMode\":false,\"configuration\":{\"defaultTTL\":0}},"
  "{\"additionalInfo\":{\"layoutX\":825,\"layoutY\":52},\"type\":\"" TB "telemetry.TbMsgAttributesNode\","
  "\"name\":\"Save Client Attributes\",\"debugMode\":false,\"configuration\":{\"scope\":\"CLIENT_SCOPE\",\"notifyDevice\":\"false\"}},"
  "{\"additionalInfo\":{\"layoutX\":347,\"layoutY\":149},\"type\":\"" TB "filter.TbMsgTypeSwitchNode\","
  "\"name\":\"Message Type Switch\",\"debugMode\":false,\"configuration\":{\"version\":0}},"
  "{\"additionalInfo\":{\"layoutX\":825,\"layoutY\":266},\"type\":\"" TB "action.TbLogNode\","
  "\"name\":\"Log RPC from Device\",\"debugMode\":false,\"configuration\":{\"scriptLang\":\"TBEL\","
  "\"jsScript\":\"" LOG_SCRIPT "\",\"tbelScript\":\"" LOG_SCRIPT "\"}},"
  "{\"additionalInfo\":{\"layoutX\":825,\"layoutY\":379},\"type\":\"" TB "action.TbLogNode\","
  "\"name\":\"Log Other\",\"debugMode\":false,\"configuration\":{\"scriptLang\":\"TBEL\","
  "\"jsScript\":\"" LOG_SCRIPT "\",\"tbelScript\":\"" LOG_SCRIPT "\"}},"
  "{\"additionalInfo\":{\"layoutX\":825,\"layoutY\":468},\"type\":\"" TB "rpc.TbSendRPCRequestNode\","
  "\"name\":\"RPC Call Request\",\"debugMode\":false,\"configuration\":{\"timeoutInSeconds\":60}},"
  "{\"additionalInfo\":{\"description\":\"Process incoming messages from devices with the alarm rules defined in "
  "the device profile. Dispatch all incoming messages with \\\"Success\\\" relation type.\",\"layoutX\":204,\"layoutY\":240},"
  "\"type\":\"" TB "profile.TbDeviceProfileNode\",\"name\":\"Device Profile Node\",\"debugMode\":false,"
  "\"configuration\":{\"persistAlarmRulesState\":false,\"fetchAlarmRulesStateOnStart\":false}}],"
  "\"connections\":[{\"fromIndex\":6,\"toIndex\":2,\"type\":\"Success\"},"
  "{\"fromIndex\":2,\"toIndex\":4,\"type\":\"Other\"},{\"fromIndex\":2,\"toIndex\":1,\"type\":\"Post attributes\"},"
  "{\"fromIndex\":2,\"toIndex\":0,\"type\":\"Post telemetry\"},{\"fromIndex\":2,\"toIndex\":3,\"type\":\"RPC Request from Device\"},"
  "{\"fromIndex\":2,\"toIndex\":5,\"type\":\"RPC Request to Device\"}],\"ruleChainConnections\":null}}";

static json_t *entity_id(const char *type, const struct td_uuid *id) {
  char s[TD_UUID_STR_LEN + 1];
  return json_pack("{s:s,s:s}", "entityType", type, "id", td_uuid_fmt(id, s));
}

int td_rule_chain_import(struct td_store *st, const struct td_uuid *tenant_id, json_t *export_json, bool root,
                         json_t **chain_out, char *err, size_t errlen) {
  json_t *chain_in = json_object_get(export_json, "ruleChain");
  json_t *metadata = json_object_get(export_json, "metadata");
  if (!json_is_object(chain_in) || !json_is_object(metadata)) {
    snprintf(err, errlen, "rule chain export needs \"ruleChain\" and \"metadata\" objects");
    return TD_EINVAL;
  }
  int rc = td_rule_chain_validate(metadata, err, errlen);
  if (rc) return rc;
  json_t *chain = json_deep_copy(chain_in);
  json_object_del(chain, "id");
  json_object_set_new(chain, "tenantId", entity_id("TENANT", tenant_id));
  json_object_set_new(chain, "root", json_false());
  json_t *saved = NULL, *meta_saved = NULL;
  rc = td_store_rule_chain_save(st, chain, &saved);
  json_decref(chain);
  if (rc) {
    snprintf(err, errlen, "cannot save rule chain: %s", td_strerror(rc));
    return rc;
  }
  struct td_uuid chain_id;
  rc = td_uuid_parse(json_string_value(json_object_get(json_object_get(saved, "id"), "id")), &chain_id);
  if (!rc) rc = td_store_rule_chain_metadata_save(st, &chain_id, metadata, &meta_saved);
  if (!rc && root) rc = td_store_rule_chain_set_root(st, &chain_id);
  json_decref(meta_saved);
  if (rc) {
    snprintf(err, errlen, "cannot save rule chain metadata: %s", td_strerror(rc));
    json_decref(saved);
    return rc;
  }
  if (chain_out) {
    json_decref(saved);
    rc = td_store_rule_chain_get(st, &chain_id, chain_out);
  } else {
    json_decref(saved);
  }
  return rc;
}

int td_tenant_defaults_create(struct td_store *st, const struct td_uuid *tenant_id) {
  json_t *profile = json_pack(
      "{s:s,s:s,s:s,s:s,s:b,s:s,s:{s:{s:s},s:{s:s},s:{s:s,s:n}},s:n,s:n,s:n,s:n}",
      "name", "default", "type", "DEFAULT", "transportType", "DEFAULT", "provisionType", "DISABLED",
      "default", 1, "description", "Default device profile",
      "profileData", "configuration", "type", "DEFAULT", "transportConfiguration", "type", "DEFAULT",
      "provisionConfiguration", "type", "DISABLED", "provisionDeviceSecret",
      "provisionDeviceKey", "defaultRuleChainId", "defaultQueueName", "defaultDashboardId");
  if (!profile) return TD_ENOMEM;
  json_object_set_new(profile, "tenantId", entity_id("TENANT", tenant_id));
  json_t *saved = NULL;
  int rc = td_store_device_profile_save(st, profile, &saved);
  json_decref(profile);
  if (rc) {
    td_log(TD_LOG_ERROR, "install", "action=\"creating default device profile\" err=%s", td_errname(rc));
    return rc;
  }
  json_decref(saved);

  json_error_t jerr;
  json_t *export_json = json_loads(root_chain_json, 0, &jerr);
  if (!export_json) {
    td_log(TD_LOG_ERROR, "install", "action=\"parsing default root chain\" err=\"%s\"", jerr.text);
    return TD_EINVAL;
  }
  char err[256];
  rc = td_rule_chain_import(st, tenant_id, export_json, true, NULL, err, sizeof err);
  json_decref(export_json);
  if (rc) td_log(TD_LOG_ERROR, "install", "action=\"creating root rule chain\" err=%s detail=\"%s\"", td_errname(rc), err);
  return rc;
}
