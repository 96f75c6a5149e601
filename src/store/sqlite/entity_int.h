/* entity_int.h — the generic entity table engine of the SQLite backend.
 *
 * Each entity kind is described by a struct edesc: its table, the JSON fields
 * kept as real columns (what queries filter, sort or enforce uniqueness on)
 * and how to finish its JSON on read. ent_save/ent_get/ent_page then do the
 * work for all kinds: the columns are filled from the JSON, everything else
 * is kept as compact JSON text in `data`. SQL is built only from the
 * descriptor's constant names; values are always bound. */
#ifndef TD_STORE_SQLITE_ENTITY_INT_H
#define TD_STORE_SQLITE_ENTITY_INT_H
#include <jansson.h>

#include "store/sqlite/sqlite_int.h"

enum col_kind { K_ID, K_TEXT, K_INT, K_BOOL };

struct col {
  const char *col;              /* column name */
  const char *field;            /* JSON field */
  enum col_kind kind;
  enum td_entity_type idtype;   /* K_ID: entityType written on read */
  bool required;                /* must be present and non-null on save */
  bool null_id_default;         /* K_ID: absent/null is stored as ThingsBoard's null id */
  bool sortable;                /* may be named by sort_property */
};

struct edesc {
  const char *table;
  enum td_entity_type type;
  const char *search_col;       /* text_search column; also sorts "name"/"title"/"email" */
  const char *name_from;        /* JSON "name" is a copy of this field (tenant: title), or NULL */
  const struct col *cols;
  int ncols;
  void (*read_fixup)(json_t *o);/* add ThingsBoard's default fields; may be NULL */
};

/* Bound values for ad-hoc filters. */
enum arg_kind { A_UUID, A_TEXT, A_INT };
struct arg {
  enum arg_kind kind;
  const struct td_uuid *u;
  const char *t;
  int64_t i;
};
struct filt {
  const char *col;  /* constant column name; compared with = */
  struct arg a;
};

/* ent_save: create or update from `in` (store.h save contract); *id = its id.
 * `pre` (may be NULL) may change the working copy `doc` before it is stored. */
typedef int (*ent_pre_fn)(struct sq *s, json_t *doc, bool is_new);
int ent_save(struct sq *s, const struct edesc *d, json_t *in, ent_pre_fn pre, struct td_uuid *id);
/* ent_get_by: the first row matching `where` (with ?1.. bound from args). */
int ent_get_by(struct sq *s, const struct edesc *d, const char *where, const struct arg *args, int nargs,
               json_t **out);
int ent_get(struct sq *s, const struct edesc *d, const struct td_uuid *id, json_t **out);
/* ent_page: PageData of rows matching all filters plus the page link. */
int ent_page(struct sq *s, const struct edesc *d, const struct filt *f, int nf, const struct td_page_link *pl,
             json_t **out);
/* ent_exec: run one statement with args (no rows). */
int ent_exec(struct sq *s, const char *sql, const struct arg *args, int nargs);
/* ent_bind: bind args to ?1..?n. */
int ent_bind(sqlite3_stmt *stmt, const struct arg *args, int nargs);
/* ent_id_json: {"entityType":..,"id":..} (new reference); TD_ENTITY_NONE gives {"id":..}. */
json_t *ent_id_json(enum td_entity_type t, const struct td_uuid *u);
/* ent_parse_id: the uuid of an id object {"id":".."} or of a uuid string. */
int ent_parse_id(const json_t *j, struct td_uuid *u);

static inline struct arg arg_uuid(const struct td_uuid *u) { return (struct arg){.kind = A_UUID, .u = u}; }
static inline struct arg arg_text(const char *t) { return (struct arg){.kind = A_TEXT, .t = t}; }
static inline struct arg arg_int(int64_t i) { return (struct arg){.kind = A_INT, .i = i}; }
#endif
