/* rpc.c — persistent RPC rows of the SQLite backend (store.h "persistent
 * RPC", reference §2.7): table `rpc` (migration 2).
 *
 * A row is ThingsBoard's Rpc entity. Its indexed parts are columns; the
 * request, response and additionalInfo are JSON text. status_seq orders the
 * status changes of one row: the Device actor numbers them, and an update
 * with a sequence not above the stored one is ignored, so two status writes
 * that overtake each other on different storage threads cannot move a status
 * backwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "store/sqlite/sqlite_int.h"

#define COLS "id,created_time,tenant_id,device_id,expiration_time,status,status_seq,request,response,additional_info"

static json_t *id_json(enum td_entity_type t, const struct td_uuid *u) {
  char buf[TD_UUID_STR_LEN + 1];
  return json_pack("{s:s,s:s}", "entityType", td_entity_type_name(t), "id", td_uuid_fmt(u, buf));
}

/* json_col: a JSON text column parsed (JSON null when NULL or unparsable). */
static json_t *json_col(sqlite3_stmt *stmt, int i) {
  const char *t = (const char *)sqlite3_column_text(stmt, i);
  json_t *v = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
  return v ? v : json_null();
}

/* row_json: the Rpc JSON of the current row (COLS order); with_seq adds "statusSeq". */
static int row_json(sqlite3_stmt *stmt, bool with_seq, json_t **out) {
  struct td_uuid id, tenant, device;
  sq_col_uuid(stmt, 0, &id);
  sq_col_uuid(stmt, 2, &tenant);
  sq_col_uuid(stmt, 3, &device);
  const char *status = (const char *)sqlite3_column_text(stmt, 5);
  json_t *o = json_pack("{s:o,s:I,s:o,s:o,s:I,s:o,s:o,s:s,s:o}", "id", id_json(TD_ENTITY_RPC, &id), "createdTime",
                        (json_int_t)sqlite3_column_int64(stmt, 1), "tenantId", id_json(TD_ENTITY_TENANT, &tenant),
                        "deviceId", id_json(TD_ENTITY_DEVICE, &device), "expirationTime",
                        (json_int_t)sqlite3_column_int64(stmt, 4), "request", json_col(stmt, 7), "response",
                        json_col(stmt, 8), "status", status ? status : "QUEUED", "additionalInfo", json_col(stmt, 9));
  if (!o) return TD_ENOMEM;
  if (with_seq) json_object_set_new(o, "statusSeq", json_integer(sqlite3_column_int64(stmt, 6)));
  *out = o;
  return 0;
}

static int parse_id(json_t *o, const char *field, struct td_uuid *u) {
  json_t *v = json_object_get(o, field);
  if (json_is_object(v)) v = json_object_get(v, "id");
  return json_is_string(v) ? td_uuid_parse(json_string_value(v), u) : TD_EINVAL;
}

/* dump: v as compact JSON text (malloc'd), NULL for absent/null. */
static char *dump(json_t *v) { return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL; }

int sq_rpc_insert(struct td_store *st, json_t *rpc) {
  struct sq *s = sq_of(st);
  struct td_uuid id, tenant, device;
  json_t *ct = json_object_get(rpc, "createdTime"), *et = json_object_get(rpc, "expirationTime");
  const char *status = json_string_value(json_object_get(rpc, "status"));
  json_t *req = json_object_get(rpc, "request");
  if (parse_id(rpc, "id", &id) || parse_id(rpc, "tenantId", &tenant) || parse_id(rpc, "deviceId", &device) ||
      !json_is_integer(ct) || !json_is_integer(et) || !status || !json_is_object(req))
    return TD_EINVAL;
  char *rq = dump(req), *rs = dump(json_object_get(rpc, "response")), *ai = dump(json_object_get(rpc, "additionalInfo"));
  sqlite3_stmt *stmt = NULL;
  int rc = rq ? sq_prep(s, "INSERT INTO rpc(" COLS ") VALUES(?1,?2,?3,?4,?5,?6,0,?7,?8,?9)", &stmt) : TD_ENOMEM;
  if (rc == 0) {
    sq_bind_uuid(stmt, 1, &id);
    sqlite3_bind_int64(stmt, 2, json_integer_value(ct));
    sq_bind_uuid(stmt, 3, &tenant);
    sq_bind_uuid(stmt, 4, &device);
    sqlite3_bind_int64(stmt, 5, json_integer_value(et));
    sq_bind_text(stmt, 6, status);
    sq_bind_text(stmt, 7, rq);
    sq_bind_text(stmt, 8, rs);
    sq_bind_text(stmt, 9, ai);
    rc = sq_step_done(s, stmt, "rpc insert");
  }
  free(rq);
  free(rs);
  free(ai);
  return rc;
}

int sq_rpc_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, "SELECT " COLS " FROM rpc WHERE id=?1", &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, id);
  int step = sqlite3_step(stmt);
  if (step == SQLITE_ROW) rc = row_json(stmt, false, out);
  else rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "rpc get");
  sq_done(s, stmt);
  return rc;
}

int sq_rpc_set_status(struct td_store *st, const struct td_uuid *id, const char *status, const char *response,
                      int64_t seq, bool *changed) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  if (changed) *changed = false;
  int rc = sq_prep(s,
                   "UPDATE rpc SET status=?2, status_seq=?3, response=COALESCE(?4,response)"
                   " WHERE id=?1 AND status_seq<?3",
                   &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, id);
  sq_bind_text(stmt, 2, status);
  sqlite3_bind_int64(stmt, 3, seq);
  sq_bind_text(stmt, 4, response);
  rc = sq_step_done(s, stmt, "rpc status");
  if (rc == 0 && changed) *changed = sqlite3_changes(s->db) > 0;
  return rc;
}

int sq_rpc_delete(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, "DELETE FROM rpc WHERE id=?1", &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, id);
  rc = sq_step_done(s, stmt, "rpc delete");
  if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  return rc;
}

static const char *sort_col(const char *prop) {
  if (prop && strcmp(prop, "expirationTime") == 0) return "expiration_time";
  if (prop && strcmp(prop, "status") == 0) return "status";
  return "created_time"; /* createdTime, and ThingsBoard's default for anything else */
}

int sq_rpcs_page(struct td_store *st, const struct td_uuid *device_id, const char *status,
                 const struct td_page_link *pl, json_t **out) {
  struct sq *s = sq_of(st);
  if (!pl || pl->page_size <= 0 || pl->page < 0) return TD_EINVAL;
  bool search = pl->text_search && *pl->text_search;
  /* ?1 device, ?2 status or NULL, ?3 search text or NULL: one SQL text per
   * sort order, so the statement cache holds a handful. */
  const char *where = "device_id=?1 AND (?2 IS NULL OR status=?2) AND (?3 IS NULL OR instr(lower(request),lower(?3))>0)";
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM rpc WHERE %s", where);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, device_id);
  sq_bind_text(stmt, 2, status);
  sq_bind_text(stmt, 3, search ? pl->text_search : NULL);
  int64_t total = 0;
  int step = sqlite3_step(stmt);
  if (step == SQLITE_ROW) total = sqlite3_column_int64(stmt, 0);
  else rc = sq_err(s, step, "rpc count");
  sq_done(s, stmt);
  if (rc) return rc;
  const char *dir = pl->sort_desc ? "DESC" : "ASC";
  snprintf(sql, sizeof sql, "SELECT " COLS " FROM rpc WHERE %s ORDER BY %s %s, id %s LIMIT ?4 OFFSET ?5", where,
           sort_col(pl->sort_property), dir, dir);
  if ((rc = sq_prep(s, sql, &stmt))) return rc;
  sq_bind_uuid(stmt, 1, device_id);
  sq_bind_text(stmt, 2, status);
  sq_bind_text(stmt, 3, search ? pl->text_search : NULL);
  sqlite3_bind_int64(stmt, 4, pl->page_size);
  sqlite3_bind_int64(stmt, 5, (int64_t)pl->page * pl->page_size);
  json_t *data = json_array();
  if (!data) rc = TD_ENOMEM;
  while (rc == 0) {
    step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) {
      rc = sq_err(s, step, "rpc page");
      break;
    }
    json_t *o;
    if ((rc = row_json(stmt, false, &o)) == 0) json_array_append_new(data, o);
  }
  sq_done(s, stmt);
  return sq_page_data(data, total, pl, rc, out);
}

int sq_rpcs_pending(struct td_store *st, const struct td_uuid *device_id, size_t max, json_t **out) {
  struct sq *s = sq_of(st);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s,
                   "SELECT " COLS " FROM rpc WHERE device_id=?1 AND status IN ('QUEUED','SENT','TIMEOUT')"
                   " ORDER BY created_time, id LIMIT ?2",
                   &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, device_id);
  sqlite3_bind_int64(stmt, 2, (int64_t)max);
  json_t *arr = json_array();
  if (!arr) rc = TD_ENOMEM;
  while (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) {
      rc = sq_err(s, step, "rpc pending");
      break;
    }
    json_t *o;
    if ((rc = row_json(stmt, true, &o)) == 0) json_array_append_new(arr, o);
  }
  sq_done(s, stmt);
  if (rc) {
    json_decref(arr);
    return rc;
  }
  *out = arr;
  return 0;
}
