/* log.c — "log" (org.thingsboard.rule.engine.action.TbLogNode).
 *
 * ThingsBoard's log node runs a script (TBEL, MVEL or JS) that turns the
 * message into a string and logs it at INFO. There is no script engine yet,
 * so when the configured script is ThingsBoard's default log script
 * (compared after removing whitespace and treating ' and " alike) this node
 * produces exactly its output natively:
 *   "\nIncoming message:\n" + JSON.stringify(msg) + "\nIncoming metadata:\n" + JSON.stringify(metadata)
 * For any other script it logs the same text plus a note that custom scripts
 * run once the script engine lands. The message always goes on with Success. */
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "rule/rule_node.h"

#define LOG_LIMIT (1024 * 1024)

static const char default_script[] =
    "return '\\nIncoming message:\\n' + JSON.stringify(msg) + '\\nIncoming metadata:\\n' + JSON.stringify(metadata);";

struct cfg {
  bool is_default;
};

/* same_script: equal after dropping whitespace, ' == ", a trailing ';' optional. */
static bool same_script(const char *a, const char *b) {
  for (;;) {
    while (*a && isspace((unsigned char)*a)) a++;
    while (*b && isspace((unsigned char)*b)) b++;
    if (!*a || !*b) break;
    char ca = *a == '"' ? '\'' : *a, cb = *b == '"' ? '\'' : *b;
    if (ca != cb) return false;
    a++;
    b++;
  }
  if (*a == ';') a++;
  if (*b == ';') b++;
  while (*a && isspace((unsigned char)*a)) a++;
  while (*b && isspace((unsigned char)*b)) b++;
  return !*a && !*b;
}

static int init(json_t *c, void **state, char *err, size_t errlen) {
  struct cfg *cf = calloc(1, sizeof *cf);
  if (!cf) return TD_ENOMEM;
  const char *lang = json_string_value(json_object_get(c, "scriptLang"));
  const char *tbel = json_string_value(json_object_get(c, "tbelScript"));
  const char *js = json_string_value(json_object_get(c, "jsScript"));
  const char *mvel = json_string_value(json_object_get(c, "mvelScript"));
  const char *script;
  if (lang && strcmp(lang, "TBEL") == 0) script = tbel;
  else if (lang && strcmp(lang, "MVEL") == 0) script = mvel ? mvel : tbel;
  else if (lang && strcmp(lang, "JS") == 0) script = js;
  else script = js ? js : tbel ? tbel : mvel; /* configs older than scriptLang are JS */
  if (!script) script = tbel ? tbel : js ? js : mvel;
  cf->is_default = !script || same_script(script, default_script);
  *state = cf;
  return 0;
}

/* append_msg_json: JSON.stringify(msg), msg being the parsed data (or the text). */
static int append_msg_json(struct td_buf *b, const struct td_msg *msg) {
  if (msg->data_type == TD_MSG_DATA_JSON) {
    json_t *j = json_loadb(msg->data, msg->data_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (j) {
      char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
      json_decref(j);
      if (!s) return TD_ENOMEM;
      int rc = td_buf_puts(b, s);
      free(s);
      return rc;
    }
  }
  return td_buf_json_str(b, msg->data ? msg->data : "");
}

static void on_msg(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct cfg *cf = ctx->state;
  if (td_log_level_current <= TD_LOG_INFO) {
    struct td_buf b;
    td_buf_init(&b, LOG_LIMIT);
    int rc = td_buf_puts(&b, "\nIncoming message:\n");
    if (!rc) rc = append_msg_json(&b, msg);
    if (!rc) rc = td_buf_puts(&b, "\nIncoming metadata:\n{");
    for (size_t i = 0; i < msg->md_count && !rc; i++) {
      if (i) rc = td_buf_puts(&b, ",");
      if (!rc) rc = td_buf_json_str(&b, msg->md[i].key);
      if (!rc) rc = td_buf_puts(&b, ":");
      if (!rc) rc = td_buf_json_str(&b, msg->md[i].value);
    }
    if (!rc) rc = td_buf_puts(&b, "}");
    if (rc)
      td_log(TD_LOG_INFO, "rule", "node=\"%s\" err=%s note=\"message too large to log\"", ctx->node_name, td_errname(rc));
    else if (cf->is_default)
      td_log(TD_LOG_INFO, "rule", "node=\"%s\" %s", ctx->node_name, b.data);
    else
      td_log(TD_LOG_INFO, "rule",
             "node=\"%s\" note=\"custom log scripts run once the script engine lands; default output follows\" %s",
             ctx->node_name, b.data);
    td_buf_deinit(&b);
  }
  td_rule_tell_success(ctx, msg);
}

const struct td_rule_node_type td_rule_node_log = {
    .clazz = "org.thingsboard.rule.engine.action.TbLogNode",
    .init = init,
    .on_msg = on_msg,
    .destroy = free,
};
