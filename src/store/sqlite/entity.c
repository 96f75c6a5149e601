/* entity.c — the generic entity engine (entity_int.h): save with optimistic
 * versions, get, and paged lists for every entity table of the SQLite backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "store/sqlite/entity_int.h"

/* sq_page_data: see sqlite_int.h. */
int sq_page_data(json_t *data, int64_t total, const struct td_page_link *pl, int rc, json_t **out) {
  if (rc) {
    json_decref(data);
    return rc;
  }
  int64_t pages = (total + pl->page_size - 1) / pl->page_size;
  bool has_next = total > ((int64_t)pl->page + 1) * pl->page_size;
  *out = json_pack("{s:o,s:I,s:I,s:b}", "data", data, "totalPages", (json_int_t)pages, "totalElements",
                   (json_int_t)total, "hasNext", has_next);
  return *out ? 0 : TD_ENOMEM;
}

#define SQL_MAX 2048

json_t *ent_id_json(enum td_entity_type t, const struct td_uuid *u) {
  char buf[TD_UUID_STR_LEN + 1];
  if (t == TD_ENTITY_NONE) return json_pack("{s:s}", "id", td_uuid_fmt(u, buf));
  return json_pack("{s:s,s:s}", "entityType", td_entity_type_name(t), "id", td_uuid_fmt(u, buf));
}

int ent_parse_id(const json_t *j, struct td_uuid *u) {
  if (json_is_object(j)) j = json_object_get(j, "id");
  if (!json_is_string(j)) return TD_EINVAL;
  return td_uuid_parse(json_string_value(j), u);
}

int ent_bind(sqlite3_stmt *stmt, const struct arg *args, int nargs) {
  for (int i = 0; i < nargs; i++) {
    int rc;
    switch (args[i].kind) {
      case A_UUID: rc = sq_bind_uuid(stmt, i + 1, args[i].u); break;
      case A_TEXT: rc = sq_bind_text(stmt, i + 1, args[i].t); break;
      default: rc = sqlite3_bind_int64(stmt, i + 1, args[i].i) == SQLITE_OK ? 0 : TD_ENOMEM; break;
    }
    if (rc) return rc;
  }
  return 0;
}

int ent_exec(struct sq *s, const char *sql, const struct arg *args, int nargs) {
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  rc = ent_bind(stmt, args, nargs);
  if (rc) {
    sq_done(s, stmt);
    return rc;
  }
  return sq_step_done(s, stmt, sql);
}

/* "id,created_time,version,data,<cols>" */
static void select_list(const struct edesc *d, char *buf, size_t n) {
  size_t len = (size_t)snprintf(buf, n, "id,created_time,version,data");
  for (int i = 0; i < d->ncols && len < n; i++) len += (size_t)snprintf(buf + len, n - len, ",%s", d->cols[i].col);
}

/* Build the ThingsBoard JSON of the current row. */
static int row_json(const struct edesc *d, sqlite3_stmt *stmt, json_t **out) {
  struct td_uuid u;
  json_t *o = json_object();
  if (!o) return TD_ENOMEM;
  sq_col_uuid(stmt, 0, &u);
  json_object_set_new(o, "id", ent_id_json(d->type, &u));
  json_object_set_new(o, "createdTime", json_integer(sqlite3_column_int64(stmt, 1)));
  for (int i = 0; i < d->ncols; i++) {
    const struct col *c = &d->cols[i];
    int ci = 4 + i;
    json_t *v;
    if (sqlite3_column_type(stmt, ci) == SQLITE_NULL) {
      v = c->kind == K_BOOL ? json_false() : json_null();
    } else {
      switch (c->kind) {
        case K_ID: sq_col_uuid(stmt, ci, &u); v = ent_id_json(c->idtype, &u); break;
        case K_TEXT: v = json_string((const char *)sqlite3_column_text(stmt, ci)); break;
        case K_INT: v = json_integer(sqlite3_column_int64(stmt, ci)); break;
        default: v = json_boolean(sqlite3_column_int(stmt, ci)); break;
      }
    }
    json_object_set_new(o, c->field, v ? v : json_null());
  }
  if (d->name_from) {
    json_t *n = json_object_get(o, d->name_from);
    json_object_set(o, "name", n ? n : json_null());
  }
  const char *data = (const char *)sqlite3_column_text(stmt, 3);
  if (data) {
    json_t *extra = json_loads(data, 0, NULL);
    if (json_is_object(extra)) json_object_update_missing(o, extra);
    json_decref(extra);
  }
  if (d->read_fixup) d->read_fixup(o);
  json_object_set_new(o, "version", json_integer(sqlite3_column_int64(stmt, 2)));
  *out = o;
  return 0;
}

int ent_get_by(struct sq *s, const struct edesc *d, const char *where, const struct arg *args, int nargs,
               json_t **out) {
  char cols[512], sql[SQL_MAX];
  select_list(d, cols, sizeof cols);
  snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s LIMIT 1", cols, d->table, where);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  rc = ent_bind(stmt, args, nargs);
  if (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
      rc = row_json(d, stmt, out);
    else
      rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "entity get");
  }
  sq_done(s, stmt);
  return rc;
}

int ent_get(struct sq *s, const struct edesc *d, const struct td_uuid *id, json_t **out) {
  struct arg a = arg_uuid(id);
  return ent_get_by(s, d, "id=?1", &a, 1, out);
}

static const char *sort_column(const struct edesc *d, const char *prop) {
  if (!prop || !*prop || strcmp(prop, "createdTime") == 0) return "created_time";
  if (d->search_col &&
      (strcmp(prop, "name") == 0 || strcmp(prop, "title") == 0 || strcmp(prop, "email") == 0))
    return d->search_col;
  for (int i = 0; i < d->ncols; i++)
    if (d->cols[i].sortable && strcmp(prop, d->cols[i].field) == 0) return d->cols[i].col;
  return "created_time"; /* unknown (e.g. customerTitle): ThingsBoard's default order */
}

int ent_page(struct sq *s, const struct edesc *d, const struct filt *f, int nf, const struct td_page_link *pl,
             json_t **out) {
  if (!pl || pl->page_size <= 0 || pl->page < 0 || nf > 8) return TD_EINVAL;
  char where[512], cols[512], sql[SQL_MAX];
  struct arg args[10];
  int na = 0;
  size_t wl = (size_t)snprintf(where, sizeof where, "1");
  for (int i = 0; i < nf; i++) {
    args[na++] = f[i].a;
    wl += (size_t)snprintf(where + wl, sizeof where - wl, " AND %s=?%d", f[i].col, na);
  }
  if (pl->text_search && *pl->text_search && d->search_col) {
    args[na++] = arg_text(pl->text_search);
    wl += (size_t)snprintf(where + wl, sizeof where - wl, " AND instr(lower(%s),lower(?%d))>0", d->search_col, na);
  }
  if (wl >= sizeof where) return TD_EINVAL;

  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE %s", d->table, where);
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  int64_t total = 0;
  rc = ent_bind(stmt, args, na);
  if (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
      total = sqlite3_column_int64(stmt, 0);
    else
      rc = sq_err(s, step, "entity count");
  }
  sq_done(s, stmt);
  if (rc) return rc;

  select_list(d, cols, sizeof cols);
  const char *dir = pl->sort_desc ? "DESC" : "ASC";
  snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s ORDER BY %s %s, id %s LIMIT ?%d OFFSET ?%d", cols, d->table,
           where, sort_column(d, pl->sort_property), dir, dir, na + 1, na + 2);
  args[na++] = arg_int(pl->page_size);
  args[na++] = arg_int((int64_t)pl->page * pl->page_size);
  rc = sq_prep(s, sql, &stmt);
  if (rc) return rc;
  json_t *data = json_array();
  rc = data ? ent_bind(stmt, args, na) : TD_ENOMEM;
  while (rc == 0) {
    int step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) {
      rc = sq_err(s, step, "entity page");
      break;
    }
    json_t *o;
    rc = row_json(d, stmt, &o);
    if (rc == 0) json_array_append_new(data, o);
  }
  sq_done(s, stmt);
  return sq_page_data(data, total, pl, rc, out);
}

/* Bind column i of the descriptor from doc at parameter p. */
static int bind_col(sqlite3_stmt *stmt, int p, const struct col *c, const json_t *v) {
  if (!v || json_is_null(v)) {
    if (c->required) return TD_EINVAL;
    if (c->kind == K_ID && c->null_id_default) return sq_bind_uuid(stmt, p, td_uuid_null());
    if (c->kind == K_BOOL) return sqlite3_bind_int(stmt, p, 0) == SQLITE_OK ? 0 : TD_ENOMEM;
    return sqlite3_bind_null(stmt, p) == SQLITE_OK ? 0 : TD_ENOMEM;
  }
  switch (c->kind) {
    case K_ID: {
      struct td_uuid u;
      if (ent_parse_id(v, &u)) return TD_EINVAL;
      return sq_bind_uuid(stmt, p, &u);
    }
    case K_TEXT:
      if (!json_is_string(v)) return TD_EINVAL;
      if (c->required && json_string_length(v) == 0) return TD_EINVAL;
      return sq_bind_text(stmt, p, json_string_value(v));
    case K_INT:
      if (!json_is_integer(v)) return TD_EINVAL;
      return sqlite3_bind_int64(stmt, p, json_integer_value(v)) == SQLITE_OK ? 0 : TD_ENOMEM;
    default:
      return sqlite3_bind_int(stmt, p, json_is_true(v)) == SQLITE_OK ? 0 : TD_ENOMEM;
  }
}

int ent_save(struct sq *s, const struct edesc *d, json_t *in, ent_pre_fn pre, struct td_uuid *id) {
  if (!json_is_object(in)) return TD_EINVAL;
  json_t *doc = json_deep_copy(in);
  if (!doc) return TD_ENOMEM;
  int rc = 0;
  bool is_new = true;
  int64_t created = td_now_ms(), version = 0;
  const json_t *jid = json_object_get(doc, "id");
  if (jid && !json_is_null(jid)) {
    if (ent_parse_id(jid, id)) {
      rc = TD_EINVAL;
      goto out;
    }
    is_new = false;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT version, created_time FROM %s WHERE id=?1", d->table);
    sqlite3_stmt *stmt;
    if ((rc = sq_prep(s, sql, &stmt))) goto out;
    sq_bind_uuid(stmt, 1, id);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
      version = sqlite3_column_int64(stmt, 0);
      created = sqlite3_column_int64(stmt, 1);
    } else {
      rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "entity version");
    }
    sq_done(s, stmt);
    if (rc) goto out;
    const json_t *jv = json_object_get(doc, "version");
    if (json_is_integer(jv) && json_integer_value(jv) != version) {
      rc = TD_ECONFLICT;
      goto out;
    }
  } else {
    td_uuid_new(id);
  }
  if (pre && (rc = pre(s, doc, is_new))) goto out;

  /* Columns get their values bound; what remains of doc becomes `data`. */
  char sql[SQL_MAX];
  size_t l;
  if (is_new) {
    l = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s(id,created_time,version,data", d->table);
    for (int i = 0; i < d->ncols; i++) l += (size_t)snprintf(sql + l, sizeof sql - l, ",%s", d->cols[i].col);
    l += (size_t)snprintf(sql + l, sizeof sql - l, ") VALUES(?1,?2,?3,?4");
    for (int i = 0; i < d->ncols; i++) l += (size_t)snprintf(sql + l, sizeof sql - l, ",?%d", 5 + i);
    l += (size_t)snprintf(sql + l, sizeof sql - l, ")");
  } else {
    l = (size_t)snprintf(sql, sizeof sql, "UPDATE %s SET version=?3,data=?4", d->table);
    for (int i = 0; i < d->ncols; i++)
      l += (size_t)snprintf(sql + l, sizeof sql - l, ",%s=?%d", d->cols[i].col, 5 + i);
    l += (size_t)snprintf(sql + l, sizeof sql - l, " WHERE id=?1 AND version=?2");
  }
  if (l >= sizeof sql) {
    rc = TD_EINVAL;
    goto out;
  }
  sqlite3_stmt *stmt;
  if ((rc = sq_prep(s, sql, &stmt))) goto out;
  sq_bind_uuid(stmt, 1, id);
  sqlite3_bind_int64(stmt, 2, is_new ? created : version);
  sqlite3_bind_int64(stmt, 3, version + 1);
  for (int i = 0; i < d->ncols && rc == 0; i++) {
    rc = bind_col(stmt, 5 + i, &d->cols[i], json_object_get(doc, d->cols[i].field));
    json_object_del(doc, d->cols[i].field);
  }
  if (rc) {
    sq_done(s, stmt);
    goto out;
  }
  json_object_del(doc, "id");
  json_object_del(doc, "createdTime");
  json_object_del(doc, "version");
  if (d->name_from) json_object_del(doc, "name");
  char *data = json_dumps(doc, JSON_COMPACT);
  if (!data) {
    sq_done(s, stmt);
    rc = TD_ENOMEM;
    goto out;
  }
  sqlite3_bind_text(stmt, 4, data, -1, SQLITE_TRANSIENT);
  free(data);
  rc = sq_step_done(s, stmt, "entity save");
  if (rc == 0 && !is_new && sqlite3_changes(s->db) != 1) rc = TD_ECONFLICT;
out:
  json_decref(doc);
  return rc;
}
