/* tenant_defaults.h — what every new tenant gets: the "default" device
 * profile and ThingsBoard's default root rule chain (reference §4.4), as
 * ThingsBoard's install does. Runs on a storage thread (it writes the store). */
#ifndef TD_CORE_TENANT_DEFAULTS_H
#define TD_CORE_TENANT_DEFAULTS_H
#include "store/store.h"

/* td_tenant_defaults_create: create the default device profile and the root
 * rule chain for tenant_id inside one transaction. 0 or a TD_E* code. */
int td_tenant_defaults_create(struct td_store *st, const struct td_uuid *tenant_id);
/* td_rule_chain_import: store a rule chain export {"ruleChain":{..},"metadata":{..}}
 * for a tenant after validating every node type; root makes it the tenant's root
 * chain. *chain_out (may be NULL) gets the stored chain. On a validation error
 * returns TD_EINVAL with the reason (naming the unknown node type) in err. */
int td_rule_chain_import(struct td_store *st, const struct td_uuid *tenant_id, json_t *export_json, bool root,
                         json_t **chain_out, char *err, size_t errlen);
#endif
