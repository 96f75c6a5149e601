/* rulechains.c — rule chains with their metadata (reference §4.1) and entity
 * relations for the SQLite backend. The chain is an entity row; its
 * RuleChainMetaData is kept whole as JSON text in rule_chain.metadata. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "store/sqlite/entity_int.h"

static const struct col chain_cols[] = {
    {"tenant_id", "tenantId", K_ID, TD_ENTITY_TENANT, true, false, false},
    {"name", "name", K_TEXT, 0, true, false, true},
    {"type", "type", K_TEXT, 0, false, false, true},
    {"is_root", "root", K_BOOL, 0, false, false, false},
    {"first_rule_node_id", "firstRuleNodeId", K_ID, TD_ENTITY_RULE_NODE, false, false, false},
};

static void chain_fixup(json_t *o) {
  if (json_is_null(json_object_get(o, "type"))) json_object_set_new(o, "type", json_string("CORE"));
  if (!json_object_get(o, "debugMode")) json_object_set_new(o, "debugMode", json_false());
  if (!json_object_get(o, "configuration")) json_object_set_new(o, "configuration", json_null());
  if (!json_object_get(o, "additionalInfo")) json_object_set_new(o, "additionalInfo", json_null());
}

static const struct edesc chain_desc = {"rule_chain", TD_ENTITY_RULE_CHAIN, "name", NULL, chain_cols, 5, chain_fixup};

int sq_rule_chain_set_root(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  struct arg a = arg_uuid(id);
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_exec(s, "UPDATE rule_chain SET is_root=(id=?1) "
                   "WHERE tenant_id=(SELECT tenant_id FROM rule_chain WHERE id=?1)", &a, 1);
  if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

int sq_rule_chain_save(struct td_store *st, json_t *chain, json_t **out) {
  struct sq *s = sq_of(st);
  struct td_uuid id;
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_save(s, &chain_desc, chain, NULL, &id);
  if (rc == 0 && json_is_true(json_object_get(chain, "root"))) rc = sq_rule_chain_set_root(st, &id);
  int rc2 = sq_sp_end(s, rc == 0);
  if (rc || rc2) return rc ? rc : rc2;
  return ent_get(s, &chain_desc, &id, out);
}

int sq_rule_chain_get(struct td_store *st, const struct td_uuid *id, json_t **out) {
  return ent_get(sq_of(st), &chain_desc, id, out);
}

int sq_rule_chain_root(struct td_store *st, const struct td_uuid *tenant_id, json_t **out) {
  struct arg a = arg_uuid(tenant_id);
  return ent_get_by(sq_of(st), &chain_desc, "tenant_id=?1 AND is_root=1", &a, 1, out);
}

int sq_rule_chain_delete(struct td_store *st, const struct td_uuid *id) {
  struct sq *s = sq_of(st);
  struct arg a = arg_uuid(id);
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  rc = ent_exec(s, "DELETE FROM rule_chain WHERE id=?1", &a, 1);
  if (rc == 0 && sqlite3_changes(s->db) == 0) rc = TD_ENOTFOUND;
  if (rc == 0) rc = sq_delete_entity_data(s, id);
  int rc2 = sq_sp_end(s, rc == 0);
  return rc ? rc : rc2;
}

int sq_rule_chains_page(struct td_store *st, const struct td_uuid *tenant_id, const struct td_page_link *pl,
                        json_t **out) {
  struct filt f = {"tenant_id", arg_uuid(tenant_id)};
  return ent_page(sq_of(st), &chain_desc, &f, 1, pl, out);
}

/* The chain's version and stored metadata text (NULL when none). */
static int chain_meta_row(struct sq *s, const struct td_uuid *chain_id, int64_t *version, json_t **meta) {
  sqlite3_stmt *stmt;
  int rc = sq_prep(s, "SELECT version, metadata FROM rule_chain WHERE id=?1", &stmt);
  if (rc) return rc;
  sq_bind_uuid(stmt, 1, chain_id);
  int step = sqlite3_step(stmt);
  *meta = NULL;
  if (step == SQLITE_ROW) {
    *version = sqlite3_column_int64(stmt, 0);
    const char *text = (const char *)sqlite3_column_text(stmt, 1);
    if (text) *meta = json_loads(text, 0, NULL);
  } else {
    rc = step == SQLITE_DONE ? TD_ENOTFOUND : sq_err(s, step, "rule chain metadata");
  }
  sq_done(s, stmt);
  return rc;
}

int sq_rule_chain_metadata_save(struct td_store *st, const struct td_uuid *chain_id, json_t *metadata, json_t **out) {
  struct sq *s = sq_of(st);
  if (!json_is_object(metadata)) return TD_EINVAL;
  json_t *nodes = json_object_get(metadata, "nodes");
  if (nodes && !json_is_array(nodes) && !json_is_null(nodes)) return TD_EINVAL;
  int rc = sq_sp_begin(s);
  if (rc) return rc;
  int64_t version = 0;
  json_t *old = NULL, *doc = NULL;
  char *text = NULL;
  rc = chain_meta_row(s, chain_id, &version, &old);
  json_decref(old);
  if (rc) goto out;
  const json_t *jv = json_object_get(metadata, "version");
  if (json_is_integer(jv) && json_integer_value(jv) != version) {
    rc = TD_ECONFLICT;
    goto out;
  }
  doc = json_deep_copy(metadata);
  if (!doc) {
    rc = TD_ENOMEM;
    goto out;
  }
  json_object_set_new(doc, "ruleChainId", ent_id_json(TD_ENTITY_RULE_CHAIN, chain_id));
  if (!json_is_array(json_object_get(doc, "nodes"))) json_object_set_new(doc, "nodes", json_array());
  if (!json_object_get(doc, "connections")) json_object_set_new(doc, "connections", json_array());
  if (!json_object_get(doc, "ruleChainConnections")) json_object_set_new(doc, "ruleChainConnections", json_null());
  nodes = json_object_get(doc, "nodes");
  size_t i;
  json_t *node;
  json_array_foreach(nodes, i, node) {
    struct td_uuid nid;
    if (!json_is_object(node)) {
      rc = TD_EINVAL;
      goto out;
    }
    if (ent_parse_id(json_object_get(node, "id"), &nid)) {
      td_uuid_new(&nid);
      json_object_set_new(node, "id", ent_id_json(TD_ENTITY_RULE_NODE, &nid));
    }
    json_object_set_new(node, "ruleChainId", ent_id_json(TD_ENTITY_RULE_CHAIN, chain_id));
  }
  /* firstNodeIndex selects the chain's first node (null/-1: none). */
  struct td_uuid first;
  bool has_first = false;
  const json_t *jf = json_object_get(doc, "firstNodeIndex");
  if (json_is_integer(jf) && json_integer_value(jf) >= 0) {
    json_t *fn = json_array_get(nodes, (size_t)json_integer_value(jf));
    if (!fn) {
      rc = TD_EINVAL;
      goto out;
    }
    has_first = ent_parse_id(json_object_get(fn, "id"), &first) == 0;
  }
  json_object_set_new(doc, "version", json_integer(version + 1));
  text = json_dumps(doc, JSON_COMPACT);
  if (!text) {
    rc = TD_ENOMEM;
    goto out;
  }
  struct arg a[] = {arg_uuid(chain_id), arg_text(text), has_first ? arg_uuid(&first) : arg_text(NULL),
                    arg_int(version)};
  rc = ent_exec(s,
                "UPDATE rule_chain SET metadata=?2, first_rule_node_id=?3, version=version+1 "
                "WHERE id=?1 AND version=?4",
                a, 4);
  if (rc == 0 && sqlite3_changes(s->db) != 1) rc = TD_ECONFLICT;
out:;
  int rc2 = sq_sp_end(s, rc == 0);
  free(text);
  if (rc == 0 && rc2 == 0) {
    *out = doc;
    return 0;
  }
  json_decref(doc);
  return rc ? rc : rc2;
}

int sq_rule_chain_metadata_get(struct td_store *st, const struct td_uuid *chain_id, json_t **out) {
  struct sq *s = sq_of(st);
  int64_t version = 0;
  json_t *meta;
  int rc = chain_meta_row(s, chain_id, &version, &meta);
  if (rc) return rc;
  if (!json_is_object(meta)) {
    json_decref(meta);
    meta = json_pack("{s:o,s:n,s:[],s:[],s:n}", "ruleChainId", ent_id_json(TD_ENTITY_RULE_CHAIN, chain_id),
                     "firstNodeIndex", "nodes", "connections", "ruleChainConnections");
    if (!meta) return TD_ENOMEM;
  }
  json_object_set_new(meta, "version", json_integer(version));
  *out = meta;
  return 0;
}

int sq_relation_save(struct td_store *st, const struct td_entity_id *from, const struct td_entity_id *to,
                     const char *type, const char *type_group) {
  if (!from || !to || !type) return TD_EINVAL;
  struct arg a[] = {arg_uuid(&from->id), arg_text(td_entity_type_name(from->type)), arg_uuid(&to->id),
                    arg_text(td_entity_type_name(to->type)), arg_text(type),
                    arg_text(type_group ? type_group : "COMMON")};
  return ent_exec(sq_of(st),
                  "INSERT OR REPLACE INTO relation(from_id,from_type,to_id,to_type,type,type_group) "
                  "VALUES(?1,?2,?3,?4,?5,?6)",
                  a, 6);
}
