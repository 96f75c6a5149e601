/* entity.c — entity type names (entity.h). */
#include "base/entity.h"
#include <string.h>

static const char *const names[] = {
  "",
#define TD_ET_NAME(n) #n,
  TD_ENTITY_TYPES(TD_ET_NAME)
#undef TD_ET_NAME
};

const char *td_entity_type_name(enum td_entity_type t) {
  return (unsigned)t < TD_ENTITY__COUNT ? names[t] : "";
}

enum td_entity_type td_entity_type_parse(const char *name) {
  if (!name) return TD_ENTITY_NONE;
  for (int i = 1; i < TD_ENTITY__COUNT; i++)
    if (strcmp(names[i], name) == 0) return (enum td_entity_type)i;
  return TD_ENTITY_NONE;
}
