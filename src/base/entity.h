/* entity.h — ThingsBoard's entity types and typed entity ids ({"entityType","id"}). */
#ifndef TD_BASE_ENTITY_H
#define TD_BASE_ENTITY_H
#include "base/uuid.h"

#define TD_ENTITY_TYPES(X) \
  X(TENANT) X(CUSTOMER) X(USER) X(DASHBOARD) X(ASSET) X(DEVICE) X(ALARM) X(RULE_CHAIN) \
  X(RULE_NODE) X(ENTITY_VIEW) X(WIDGETS_BUNDLE) X(WIDGET_TYPE) X(TENANT_PROFILE)      \
  X(DEVICE_PROFILE) X(ASSET_PROFILE) X(API_USAGE_STATE) X(RPC) X(QUEUE) X(EDGE)

enum td_entity_type {
  TD_ENTITY_NONE = 0,
#define TD_ET_ENUM(n) TD_ENTITY_##n,
  TD_ENTITY_TYPES(TD_ET_ENUM)
#undef TD_ET_ENUM
  TD_ENTITY__COUNT
};

struct td_entity_id {
  enum td_entity_type type;
  struct td_uuid id;
};

/* td_entity_type_name: "DEVICE" etc.; "" for TD_ENTITY_NONE. Static string. */
const char *td_entity_type_name(enum td_entity_type t);
/* td_entity_type_parse: TD_ENTITY_NONE if the name is unknown (exact, upper case). */
enum td_entity_type td_entity_type_parse(const char *name);
#endif
