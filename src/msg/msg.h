/* msg.h — TbMsg: the message that travels from a transport through the queue
 * to actors and rule nodes (reference §4.2).
 *
 * A td_msg is immutable once built and reference-counted: many readers (rule
 * node branches, the queue, subscribers) share one copy. A node that changes
 * a message makes a new one with td_msg_derive(). Each td_msg is one heap
 * block: strings and metadata are packed after the struct. */
#ifndef TD_MSG_MSG_H
#define TD_MSG_MSG_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "base/buf.h"
#include "base/entity.h"

/* Types used by the spine; any other string is allowed as a custom type. */
#define TD_MSG_POST_TELEMETRY "POST_TELEMETRY_REQUEST"
#define TD_MSG_POST_ATTRIBUTES "POST_ATTRIBUTES_REQUEST"
#define TD_MSG_TO_SERVER_RPC "TO_SERVER_RPC_REQUEST"
#define TD_MSG_RPC_TO_DEVICE "RPC_CALL_FROM_SERVER_TO_DEVICE"
#define TD_MSG_CONNECT_EVENT "CONNECT_EVENT"
#define TD_MSG_DISCONNECT_EVENT "DISCONNECT_EVENT"
#define TD_MSG_ACTIVITY_EVENT "ACTIVITY_EVENT"
#define TD_MSG_INACTIVITY_EVENT "INACTIVITY_EVENT"
#define TD_MSG_ATTRIBUTES_UPDATED "ATTRIBUTES_UPDATED"
#define TD_MSG_ATTRIBUTES_DELETED "ATTRIBUTES_DELETED"
#define TD_MSG_TIMESERIES_UPDATED "TIMESERIES_UPDATED"
#define TD_MSG_TIMESERIES_DELETED "TIMESERIES_DELETED"
#define TD_MSG_ENTITY_CREATED "ENTITY_CREATED"
#define TD_MSG_ENTITY_UPDATED "ENTITY_UPDATED"
#define TD_MSG_ENTITY_DELETED "ENTITY_DELETED"

enum td_msg_data_type { TD_MSG_DATA_JSON = 0, TD_MSG_DATA_TEXT = 1, TD_MSG_DATA_BINARY = 2 };

struct td_msg_md {
  const char *key;
  const char *value;
};

struct td_msg {
  atomic_int refs;
  struct td_uuid id;
  int64_t ts;                     /* creation time, ms */
  const char *type;               /* e.g. TD_MSG_POST_TELEMETRY */
  struct td_entity_id originator;
  struct td_uuid tenant_id;
  struct td_uuid customer_id;     /* zero when none */
  size_t md_count;
  const struct td_msg_md *md;     /* metadata, in insertion order, unique keys */
  enum td_msg_data_type data_type;
  const char *data;               /* NUL-terminated; JSON text for JSON */
  size_t data_len;
  /* Processing position (serialized, so a replayed message resumes correctly). */
  struct td_uuid rule_chain_id;   /* zero: the tenant's root chain */
};

/* td_msg_new: build a message with a fresh id; ts = now. md may be NULL when
 * md_count is 0. Copies everything it is given. Returns NULL on ENOMEM.
 * The caller owns the one reference. */
struct td_msg *td_msg_new(const char *type, const struct td_entity_id *originator,
                          const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                          const struct td_msg_md *md, size_t md_count,
                          enum td_msg_data_type data_type, const char *data, size_t data_len);

/* td_msg_derive: a new message (same id, ts, originator, tenant) with some
 * parts replaced; NULL arguments keep the original's part (md==NULL keeps the
 * metadata; pass md_count 0 and a non-NULL md to clear it). Caller owns it. */
struct td_msg *td_msg_derive(const struct td_msg *m, const char *type,
                             const struct td_msg_md *md, size_t md_count,
                             const char *data, size_t data_len);

struct td_msg *td_msg_ref(struct td_msg *m);
void td_msg_unref(struct td_msg *m);

/* td_msg_md_get: the metadata value for key, or NULL. Borrowed. */
const char *td_msg_md_get(const struct td_msg *m, const char *key);

/* td_msg_encode: append the binary form (for the durable queue) to out. */
int td_msg_encode(const struct td_msg *m, struct td_buf *out);
/* td_msg_decode: parse a binary form of exactly n bytes. Never trusts a
 * length field; returns 0 and a new message (refs 1), or TD_EPROTO/TD_ENOMEM. */
int td_msg_decode(const void *p, size_t n, struct td_msg **out);

/* td_msg_to_json: {"id":..,"ts":..,"type":..,"originator":{..},"metaData":{..},"dataType":"JSON","data":".."}
 * for logs and debug events. */
int td_msg_to_json(const struct td_msg *m, struct td_buf *out);
#endif
