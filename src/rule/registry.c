/* registry.c — rule node types by ThingsBoard class name: the built-in table
 * plus a small, lock-protected list of types registered at run time (tests,
 * later plug-ins). */
#include <pthread.h>
#include <string.h>
#include "base/err.h"
#include "rule/rule_node.h"

static const struct td_rule_node_type *const builtin[] = {
    &td_rule_node_msg_type_switch, &td_rule_node_timeseries,   &td_rule_node_attributes,
    &td_rule_node_log,             &td_rule_node_device_profile, &td_rule_node_send_rpc_request,
    &td_rule_node_send_rpc_reply,
};

#define EXTRA_MAX 32
static pthread_mutex_t extra_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct td_rule_node_type *extra[EXTRA_MAX];
static size_t nextra;

const struct td_rule_node_type *td_rule_node_type_find(const char *clazz) {
  if (!clazz) return NULL;
  for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
    if (strcmp(builtin[i]->clazz, clazz) == 0) return builtin[i];
  const struct td_rule_node_type *t = NULL;
  pthread_mutex_lock(&extra_mu);
  for (size_t i = 0; i < nextra && !t; i++)
    if (strcmp(extra[i]->clazz, clazz) == 0) t = extra[i];
  pthread_mutex_unlock(&extra_mu);
  return t;
}

int td_rule_node_type_register(const struct td_rule_node_type *t) {
  if (!t || !t->clazz || !t->on_msg) return TD_EINVAL;
  if (td_rule_node_type_find(t->clazz)) return TD_EEXIST;
  int rc = 0;
  pthread_mutex_lock(&extra_mu);
  if (nextra == EXTRA_MAX) rc = TD_EFULL;
  else extra[nextra++] = t;
  pthread_mutex_unlock(&extra_mu);
  return rc;
}
