/* ws_api_int.h — private to the WebSocket telemetry API (reference §3):
 * ws_cmd.c parses command messages and formats updates (pure functions,
 * unit-tested in tests/unit/api/test_ws_cmd.c); ws_session.c owns the routes,
 * authentication, sessions and live subscriptions; ws_data.c does the store
 * work of a command on a storage thread (ownership check, initial data).
 *
 * Life of a subscription command: the loop parses it (ws_parse), registers
 * nothing yet and submits a CHECK job; the storage thread checks that the
 * user may read the entity (tenant, customer); back on the loop the
 * subscription is added to the registry (src/core/subs.h) in PENDING state:
 * updates from then on are formatted by the publishers and queued on the
 * loop, not sent. A writer barrier follows (an empty write request whose
 * completion means every write queued before it is committed: the rule
 * nodes and the device state service publish when they hand data to the
 * writer, before its commit; REST saves publish after theirs), then a READ
 * job reads the initial data; the loop sends it, then the queued updates,
 * and the subscription goes LIVE. So no update is lost between the read and
 * the registration; one may arrive twice (in the initial data and as an
 * update), which clients of ThingsBoard already tolerate. */
#ifndef TD_API_WS_API_INT_H
#define TD_API_WS_API_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/arena.h"
#include "base/buf.h"
#include "base/entity.h"
#include "base/kv.h"
#include "base/task.h"
#include "core/auth.h"
#include "store/dbpool.h"
#include "store/store.h"
#include "store/writer.h"

/* SubscriptionErrorCode */
#define WS_ERR_INTERNAL 1
#define WS_ERR_BAD_REQUEST 2
#define WS_ERR_UNAUTHORIZED 3

#define WS_MSG_DENIED "You don't have permission to perform this operation!"
#define WS_MSG_PARSE "Failed to parse the payload"

#define WS_MAX_KEYS 1000        /* keys in one command */
#define WS_MAX_CMDS 1000        /* commands in one message */
#define WS_MAX_EDQ_ENTITIES 1000 /* entities named by one entity-data query */
#define WS_DEFAULT_LIMIT 100    /* history limit 0 */
#define WS_MAX_LIMIT 100000
#define WS_MAX_INTERVALS 700

enum ws_cmd_type {
  WS_CMD_TS = 1,      /* tsSubCmds / TIMESERIES */
  WS_CMD_ATTRS,       /* attrSubCmds / ATTRIBUTES */
  WS_CMD_HISTORY,     /* historyCmds / TIMESERIES_HISTORY (one-shot) */
  WS_CMD_EDQ,         /* entityDataCmds / ENTITY_DATA */
  WS_CMD_UNSUB,       /* entityDataUnsubscribeCmds / *_UNSUBSCRIBE */
  WS_CMD_UNSUPPORTED, /* a known command we do not implement: error update */
};

/* EntityKeyType */
enum ws_key_type {
  WS_KEY_TS = 1,        /* TIME_SERIES */
  WS_KEY_ATTR,          /* ATTRIBUTE (any scope) */
  WS_KEY_CLIENT_ATTR,   /* CLIENT_ATTRIBUTE */
  WS_KEY_SHARED_ATTR,   /* SHARED_ATTRIBUTE */
  WS_KEY_SERVER_ATTR,   /* SERVER_ATTRIBUTE */
  WS_KEY_FIELD,         /* ENTITY_FIELD */
};

struct ws_key {
  enum ws_key_type type;
  const char *key;
};

/* ws_key_type_name: "TIME_SERIES", ... (static). */
const char *ws_key_type_name(enum ws_key_type t);
/* ws_key_type_scope: the attribute scope of an attribute key type (0: any). */
int ws_key_type_scope(enum ws_key_type t);

/* A time range read: history (end > 0) or tsCmd window (start + window). */
struct ws_range {
  const char **keys;
  size_t nkeys;
  int64_t start, end, interval;
  int limit;
  int agg;
};

/* An entity-data query (EntityDataCmd), only what we serve. */
struct ws_edq {
  enum td_entity_type etype;       /* entityList's type; singleEntity's */
  struct td_uuid *ids;             /* entityList / singleEntity, in order */
  size_t nids;
  int page_size, page;
  struct ws_key *fields;           /* query.entityFields + query.latestValues */
  size_t nfields;
  bool has_latest;                 /* latestCmd present: subscribe to its keys */
  struct ws_key *latest;           /* latestCmd.keys */
  size_t nlatest;
  bool has_ts;                     /* tsCmd: history window, then live points */
  struct ws_range ts;
  bool has_history;                /* historyCmd: one-shot history */
  struct ws_range history;
};

struct ws_cmd {
  enum ws_cmd_type type;
  int cmd_id;
  bool unsubscribe;
  const char *error;               /* non-NULL: answer errorCode 2 with this text */
  const char *name;                /* WS_CMD_UNSUPPORTED: the command's name */
  /* TS, ATTRS, HISTORY */
  struct td_entity_id e;
  const char **keys;               /* NULL/0 = every key */
  size_t nkeys;
  int scope;                       /* ATTRS: TD_SCOPE_*, 0 = any */
  int64_t start_ts, end_ts, time_window, interval;
  int limit, agg;
  /* EDQ */
  struct ws_edq *edq;
};

struct ws_msg {
  bool has_auth;                   /* authCmd present */
  const char *token;               /* its token (NULL if none given) */
  struct ws_cmd *cmds;
  size_t ncmds;
};

/* ws_parse: one text message (legacy TelemetryCmdsWrapper and/or the new
 * {"authCmd","cmds":[{"type":..}]} wrapper) into *out, allocated in a.
 * TD_EPROTO when the message as a whole is not a command wrapper (not JSON,
 * not an object, a field of the wrong JSON type, an unknown command type):
 * ThingsBoard answers that with "Failed to parse the payload". Problems of
 * one command (missing entity id, unsupported filter...) are returned in
 * that command's `error`. */
int ws_parse(const char *text, size_t len, struct td_arena *a, struct ws_msg *out);

/* ---- updates (reference §3.3) ----
 * Each appends one complete JSON text to b: 0 or TD_ENOMEM/TD_ETOOBIG. */

/* ws_fmt_error: {"subscriptionId":N,"errorCode":C,"errorMsg":"..","data":null,"latestValues":{}} */
int ws_fmt_error(struct td_buf *b, int sub_id, int code, const char *msg);
/* ws_fmt_ts: {"subscriptionId":N,"errorCode":0,"errorMsg":null,"data":{"k":[[ts,"v"],..]},"latestValues":{"k":ts}}
 * keys sorted, points of a key in the given order, values as strings
 * (a STRING kv with a NULL text is null: a requested key without value);
 * latestValues = the ts of each key's last point. */
int ws_fmt_ts(struct td_buf *b, int sub_id, const struct td_ts_point *pts, size_t n);
/* ws_fmt_edq_error: an ENTITY_DATA update with errorCode/errorMsg. */
int ws_fmt_edq_error(struct td_buf *b, int cmd_id, int code, const char *msg, int allowed);

/* What a live ENTITY_DATA subscription sends for one entity. */
struct ws_edq_live {
  const char **ts_latest;          /* TIME_SERIES keys of latestCmd */
  size_t n_ts_latest;
  const char **ts_series;          /* tsCmd keys */
  size_t n_ts_series;
  const struct ws_key *attrs;      /* attribute keys of latestCmd */
  size_t nattrs;
};
/* ws_fmt_edq_ts / ws_fmt_edq_attrs: {"cmdId":N,"cmdUpdateType":"ENTITY_DATA",
 * "errorCode":0,"errorMsg":null,"data":null,"update":[EntityData],"allowedEntities":A}
 * where EntityData carries only the keys of k that the points/attributes
 * touch (latest: the newest point per key). *any = false (and b untouched
 * in substance) when none of them is subscribed. deleted: kvs carry only
 * keys and become {"ts":0,"value":""} as ThingsBoard sends deletions. */
int ws_fmt_edq_ts(struct td_buf *b, int cmd_id, const struct td_entity_id *e, const struct ws_edq_live *k,
                  const struct td_ts_point *pts, size_t n, int allowed, bool *any);
int ws_fmt_edq_attrs(struct td_buf *b, int cmd_id, const struct td_entity_id *e, const struct ws_edq_live *k, int scope,
                     const struct td_kv *kvs, size_t n, int64_t ts, bool deleted, int allowed, bool *any);
/* ws_merge_updates: n update texts of one subscription (all
 * TelemetrySubscriptionUpdate, or all ENTITY_DATA updates when edq), in
 * order, as few updates as keep each near max_len bytes: v1 updates join
 * their per-key lists (latestValues recomputed), ENTITY_DATA updates their
 * "update" lists. emit(arg, text, len) gets each result (valid during the
 * call); a text of another shape is passed on unchanged, in its place. 0 or
 * TD_ENOMEM/TD_ETOOBIG. For the updates held while a subscription waited for
 * its initial data: sent one by one they could overrun the send queue. */
typedef void (*ws_emit_fn)(void *arg, const char *text, size_t len);
int ws_merge_updates(const char *const *texts, const size_t *lens, size_t n, bool edq, size_t max_len,
                     ws_emit_fn emit, void *arg);
/* ws_fmt_entity_id: {"entityType":"DEVICE","id":"<uuid>"} */
int ws_fmt_entity_id(struct td_buf *b, const struct td_entity_id *e);

/* ---- store work of a command (ws_data.c, storage threads) ---- */

struct ws_sess;

/* An entity of a command that the user may read. */
struct ws_ent {
  struct td_entity_id e;
  struct td_uuid tenant_id;       /* its owner: the registry's tenant check */
  json_t *json;                   /* EDQ: the entity (ENTITY_FIELD values), a reference */
};

enum ws_stage { WS_STAGE_CHECK = 1, WS_STAGE_READ };

struct ws_job {
  struct td_dbjob db;             /* the storage job (ws_session.c submits it) */
  struct td_write_req barrier;    /* commit of what was queued before the registration */
  struct td_task task;            /* back to the loop when the barrier cannot submit */
  struct ws_sess *sess;           /* referenced while the job lives */
  uint64_t uid;                   /* the subscription; 0: a one-shot command */
  enum ws_stage stage;
  struct ws_cmd cmd;              /* a copy, in arena */
  struct td_auth_principal me;
  int allowed;                    /* EDQ allowedEntities */
  struct td_arena arena;
  /* CHECK: 0 or WS_ERR_* with msg */
  int err;
  char msg[200];
  struct ws_ent *ents;            /* v1: the entity; EDQ: the page's readable entities */
  size_t nents;
  size_t total;                   /* EDQ: readable entities of the whole query */
  /* READ: the reply text (malloc'd) */
  char *text;
  size_t len;
};

/* ws_cmd_copy: a deep copy of in (its strings and arrays) into a. */
int ws_cmd_copy(struct td_arena *a, const struct ws_cmd *in, struct ws_cmd *out);
/* ws_data_check: (storage thread) the command's entities exist and j->me may
 * read them: fills ents (tenant ids, EDQ entity JSON) or err/msg (v1: 3 with
 * WS_MSG_DENIED for another tenant's or customer's entity). */
void ws_data_check(struct ws_job *j, struct td_store *st);
/* ws_data_read: (storage thread) the initial data of the command as its
 * first update text (j->text), or err/msg. now: ts of ENTITY_FIELD values and
 * of requested keys without value. */
void ws_data_read(struct ws_job *j, struct td_store *st);
/* ws_data_free: release what check/read left in j (entity references, text). */
void ws_data_free(struct ws_job *j);
#endif
