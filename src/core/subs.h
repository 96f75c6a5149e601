/* subs.h — telemetry and attribute subscriptions (ThingsBoard's
 * SubscriptionManagerService, single node): who wants to hear about changes
 * to which entity's timeseries and attributes.
 *
 * Publishers are the places where data is accepted for storage: the save
 * timeseries and save attributes rule nodes, the REST telemetry controller,
 * the device state service. They call td_subs_publish_* on whatever thread
 * they run on. Timeseries are published when the save is handed to the
 * writer (the data is already durable in the queue), not after the database
 * commit, so a WebSocket update does not wait for the writer's group commit
 * (database.writer.max_delay_ms); see docs/compatibility.md.
 *
 * Subscribers (the WebSocket telemetry API) register a struct td_sub with
 * callbacks. A callback runs on the publisher's thread with the registry's
 * lock for that entity held: it must not block or call back into the
 * registry; it formats what it needs and posts a task to its own loop. Once
 * td_subs_remove returns, no callback of that sub is running or will run, so
 * the owner may free it.
 *
 * The registry is process-wide, a hash of entity id -> subs with striped
 * locks; publishing to an entity nobody watches costs one atomic load when
 * there are no subscriptions at all and one striped lookup otherwise. It is
 * bounded by the subscribers' own limits (per WebSocket session). */
#ifndef TD_CORE_SUBS_H
#define TD_CORE_SUBS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/entity.h"
#include "base/kv.h"
#include "base/uuid.h"

struct td_ts_point;

enum td_sub_kind { TD_SUB_TS = 1, TD_SUB_ATTRS = 2 };

struct td_sub {
  /* set by the owner before td_subs_add, unchanged while registered */
  enum td_sub_kind kind;
  struct td_uuid tenant_id;            /* the subscriber's tenant: only this tenant's data */
  struct td_entity_id entity;
  int scope;                           /* TD_SUB_ATTRS: TD_SCOPE_* or 0 = any scope */
  const char *const *keys;             /* NULL = every key */
  size_t nkeys;
  /* TD_SUB_TS: points saved for the entity (only the subscribed keys are
   * passed; n > 0). */
  void (*on_ts)(struct td_sub *sub, const struct td_ts_point *pts, size_t n);
  /* TD_SUB_ATTRS: attributes of `scope` saved at ts (subscribed keys only,
   * n > 0); or deleted (kvs carry only keys, deleted true). */
  void (*on_attrs)(struct td_sub *sub, int scope, const struct td_kv *kvs, size_t n, int64_t ts, bool deleted);
  void *user;
  /* internal */
  struct td_sub *next_;
  void *bucket_;
};

/* td_subs_add / td_subs_remove: any thread. add: 0 or TD_ENOMEM. remove is
 * a no-op for a sub not registered. */
int td_subs_add(struct td_sub *sub);
void td_subs_remove(struct td_sub *sub);
/* td_subs_count: subscriptions registered (for tests and stats). */
size_t td_subs_count(void);

/* Publishing (any thread). Nothing is kept after return. */
void td_subs_publish_ts(const struct td_uuid *tenant_id, const struct td_entity_id *e, const struct td_ts_point *pts,
                        size_t n);
void td_subs_publish_attrs(const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                           const struct td_kv *kvs, size_t n, int64_t ts);
void td_subs_publish_attrs_deleted(const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                                   const char *const *keys, size_t n);
#endif
