/* chain.c — Rule chain actors, Rule node actors and routing (reference §4.1,
 * §4.3, §5.2).
 *
 * A chain is built from RuleChainMetaData: each node gets its own actor whose
 * state holds the node type, the node's state from init and its outgoing
 * routes [(label, target node actor)]. The chain actor receives messages from
 * the tenant/device actors and hands them to the first node. A node routes
 * directly to its targets' mailboxes (the route table is immutable once the
 * chain is built), so a message hop is one mailbox push.
 *
 * Every message on the path carries one open branch of its queue message's
 * processing context (struct td_rule_pctx); tell_next opens one branch per
 * target, and the input branch ends when on_msg returns. Messages told along
 * the path use td_actor_tell_force: their number is bounded by the engine's
 * in-flight window (engine.c) times the fan-out of a chain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/log.h"
#include "rule/rule_int.h"

/* ---------------------------------------------------------------- branches */

static void rmsg_free(struct td_actor_msg *m);

struct td_rule_rmsg *td_rule_rmsg_new(struct td_msg *msg, struct td_rule_pctx *pc) {
  struct td_rule_rmsg *rm = calloc(1, sizeof *rm);
  if (!rm) return NULL;
  rm->hdr.kind = TD_RK_MSG;
  rm->hdr.free_fn = rmsg_free;
  rm->msg = td_msg_ref(msg);
  rm->pc = pc;
  return rm;
}

void td_rule_rmsg_drop(struct td_rule_rmsg *rm, const char *why) {
  if (rm->pc) {
    char id[TD_UUID_STR_LEN + 1];
    td_log_limited(10, TD_LOG_WARN, "rule", "msg=%s type=%s action=\"dropping message\" reason=\"%s\"",
                   td_uuid_fmt(&rm->msg->id, id), rm->msg->type, why);
    td_rule_pctx_fail(rm->pc);
    td_rule_pctx_end(rm->pc);
    rm->pc = NULL;
  }
  td_msg_unref(rm->msg);
  if (rm->chain) td_actor_unref(rm->chain);
  free(rm);
}

/* Freed by a mailbox without being handled: the actor had stopped. */
static void rmsg_free(struct td_actor_msg *m) {
  td_rule_rmsg_drop((struct td_rule_rmsg *)m, "actor stopped");
}

/* rmsg_tell: hand rm (with its open branch) to actor a; on failure the
 * branch ends as failed. */
static void rmsg_tell(struct td_actor *a, struct td_rule_rmsg *rm) {
  (void)td_actor_tell_force(a, &rm->hdr); /* on TD_ECLOSED rmsg_free ran */
}

/* ---------------------------------------------------------------- node actors */

struct route {
  char *label;
  struct td_actor *target; /* a reference */
};

struct td_rule_node_priv {
  struct td_rule_ctx ctx;
  const struct td_rule_node_type *type;
  struct td_actor *self;     /* no reference: valid while the actor runs */
  char *name;
  const char *chain_name;    /* the chain's shared copy */
  struct route *routes;
  size_t nroutes;
  struct td_rule_pctx *cur;  /* the input branch while on_msg runs */
};

struct td_rule_async {
  struct td_actor_msg hdr;   /* kind TD_RK_ASYNC_DONE */
  struct td_actor *node;     /* a reference until completion */
  struct td_msg *msg;
  struct td_rule_pctx *pc;   /* its own branch */
  bool success_leads_nowhere; /* the node has no Success link (read at begin, in the node's turn) */
  char label[64];
  char reason[128];
};

static void route(struct td_rule_node_priv *p, struct td_msg *msg, const char *const *labels, size_t nlabels,
                  const char *reason) {
  struct td_rule_pctx *pc = p->cur;
  if (!pc) {
    td_log(TD_LOG_ERROR, "rule", "node=\"%s\" action=\"tell_next outside on_msg\"", p->name);
    return;
  }
  size_t matched = 0;
  for (size_t i = 0; i < p->nroutes; i++) {
    bool hit = false;
    for (size_t j = 0; j < nlabels && !hit; j++) hit = labels[j] && strcmp(labels[j], p->routes[i].label) == 0;
    if (!hit) continue;
    matched++;
    td_rule_pctx_branch(pc);
    struct td_rule_rmsg *rm = td_rule_rmsg_new(msg, pc);
    if (!rm) {
      td_rule_pctx_fail(pc);
      td_rule_pctx_end(pc);
      td_log_limited(1, TD_LOG_ERROR, "rule", "node=\"%s\" action=\"routing\" err=TD_ENOMEM", p->name);
      continue;
    }
    rmsg_tell(p->routes[i].target, rm);
  }
  if (matched) return;
  bool failure = false;
  for (size_t j = 0; j < nlabels && !failure; j++) failure = labels[j] && strcmp(labels[j], TD_RULE_FAILURE) == 0;
  if (!failure) return; /* no matching link: this branch is done (success) */
  td_rule_pctx_fail(pc);
  char id[TD_UUID_STR_LEN + 1];
  td_log_limited(10, TD_LOG_WARN, "rule", "chain=\"%s\" node=\"%s\" msg=%s type=%s action=\"processing failed\" reason=\"%s\"",
                 p->chain_name, p->name, td_uuid_fmt(&msg->id, id), msg->type, reason ? reason : "-");
}

void td_rule_tell_next(struct td_rule_ctx *ctx, struct td_msg *msg, const char *const *labels, size_t nlabels) {
  route(ctx->priv, msg, labels, nlabels, NULL);
}

void td_rule_tell_success(struct td_rule_ctx *ctx, struct td_msg *msg) {
  static const char *const l[] = {TD_RULE_SUCCESS};
  route(ctx->priv, msg, l, 1, NULL);
}

bool td_rule_require_device(struct td_rule_ctx *ctx, struct td_msg *msg) {
  if (msg->originator.type == TD_ENTITY_DEVICE) return true;
  td_rule_tell_failure(ctx, msg, "Message originator is not a device entity!");
  return false;
}

void td_rule_tell_failure(struct td_rule_ctx *ctx, struct td_msg *msg, const char *reason) {
  static const char *const l[] = {TD_RULE_FAILURE};
  route(ctx->priv, msg, l, 1, reason);
}

static void async_free(struct td_actor_msg *m) {
  struct td_rule_async *h = (struct td_rule_async *)m;
  if (h->pc) {
    td_rule_pctx_fail(h->pc);
    td_rule_pctx_end(h->pc);
    td_log_limited(10, TD_LOG_WARN, "rule", "action=\"async completion after chain stopped\" label=\"%s\"", h->label);
  }
  td_msg_unref(h->msg);
  free(h);
}

struct td_rule_async *td_rule_async_begin(struct td_rule_ctx *ctx, struct td_msg *msg) {
  struct td_rule_node_priv *p = ctx->priv;
  if (!p->cur) return NULL;
  struct td_rule_async *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->hdr.kind = TD_RK_ASYNC_DONE;
  h->hdr.free_fn = async_free;
  h->node = td_actor_ref(p->self);
  h->msg = td_msg_ref(msg);
  /* Its own branch rather than the input's: the completion may run on
   * another thread before on_msg has returned. */
  td_rule_pctx_branch(p->cur);
  h->pc = p->cur;
  h->success_leads_nowhere = true;
  for (size_t i = 0; i < p->nroutes; i++)
    if (strcmp(p->routes[i].label, TD_RULE_SUCCESS) == 0) h->success_leads_nowhere = false;
  return h;
}

void td_rule_async_tell_next(struct td_rule_async *h, const char *label) {
  snprintf(h->label, sizeof h->label, "%s", label);
  struct td_actor *node = h->node;
  h->node = NULL;
  if (h->success_leads_nowhere && strcmp(label, TD_RULE_SUCCESS) == 0) {
    /* Nothing follows (the save nodes at the end of the default root chain):
     * the branch ends here, on the completing thread. Going through the node's
     * mailbox would put a whole writer commit's completions (tens of
     * thousands at once) in front of the node's new messages. */
    td_rule_pctx_end(h->pc);
    h->pc = NULL;
    async_free(&h->hdr);
    td_actor_unref(node);
    return;
  }
  /* Bounded: one completion per async_begin, itself bounded by the in-flight window. */
  (void)td_actor_tell_force(node, &h->hdr); /* on TD_ECLOSED async_free ran */
  td_actor_unref(node);
}

void td_rule_async_tell_next_msg(struct td_rule_async *h, struct td_msg *msg, const char *label) {
  struct td_msg *old = h->msg;
  h->msg = td_msg_ref(msg);
  td_msg_unref(old);
  td_rule_async_tell_next(h, label);
}

void td_rule_async_success(struct td_rule_async *h) { td_rule_async_tell_next(h, TD_RULE_SUCCESS); }

void td_rule_async_failure(struct td_rule_async *h, const char *reason) {
  snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "-");
  td_rule_async_tell_next(h, TD_RULE_FAILURE);
}

static void node_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct td_rule_node_priv *p = td_actor_state(self);
  if (m->kind == TD_RK_MSG) {
    struct td_rule_rmsg *rm = (struct td_rule_rmsg *)m;
    p->cur = rm->pc;
    rm->pc = NULL;
    p->type->on_msg(&p->ctx, rm->msg);
    td_rule_pctx_end(p->cur);
    p->cur = NULL;
  } else if (m->kind == TD_RK_ASYNC_DONE) {
    struct td_rule_async *h = (struct td_rule_async *)m;
    p->cur = h->pc;
    h->pc = NULL;
    const char *l[] = {h->label};
    route(p, h->msg, l, 1, h->reason[0] ? h->reason : NULL);
    td_rule_pctx_end(p->cur);
    p->cur = NULL;
  }
  td_actor_msg_free(m);
}

static void node_free(struct td_rule_node_priv *p) {
  if (p->type && p->type->destroy) p->type->destroy(p->ctx.state);
  for (size_t i = 0; i < p->nroutes; i++) {
    free(p->routes[i].label);
    if (p->routes[i].target) td_actor_unref(p->routes[i].target);
  }
  free(p->routes);
  free(p->name);
  free(p);
}

static void node_stop(struct td_actor *self) { node_free(td_actor_state(self)); }

/* ---------------------------------------------------------------- chain actor */

struct chain {
  char *name;
  struct td_actor **nodes; /* references */
  size_t n;
  int first;               /* -1: empty chain */
};

static void chain_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct chain *c = td_actor_state(self);
  if (m->kind == TD_RK_MSG && c->first >= 0) {
    rmsg_tell(c->nodes[c->first], (struct td_rule_rmsg *)m);
    return;
  }
  if (m->kind == TD_RK_MSG) { /* an empty chain: the branch ends as success */
    struct td_rule_rmsg *rm = (struct td_rule_rmsg *)m;
    td_rule_pctx_end(rm->pc);
    rm->pc = NULL;
  }
  td_actor_msg_free(m);
}

static void chain_free(struct chain *c) {
  for (size_t i = 0; i < c->n; i++) {
    if (!c->nodes[i]) continue;
    td_actor_stop(c->nodes[i]);
    td_actor_unref(c->nodes[i]);
  }
  free(c->nodes);
  free(c->name);
  free(c);
}

static void chain_stop(struct td_actor *self) { chain_free(td_actor_state(self)); }

/* ---------------------------------------------------------------- parsing */

/* check_metadata: validate the shape; *nnodes, *first set on success. */
static int check_metadata(json_t *md, size_t *nnodes, int *first, char *err, size_t errlen) {
  if (!json_is_object(md)) {
    snprintf(err, errlen, "rule chain metadata must be a JSON object");
    return TD_EINVAL;
  }
  json_t *nodes = json_object_get(md, "nodes");
  if (nodes && !json_is_null(nodes) && !json_is_array(nodes)) {
    snprintf(err, errlen, "\"nodes\" must be an array");
    return TD_EINVAL;
  }
  size_t n = json_is_array(nodes) ? json_array_size(nodes) : 0;
  for (size_t i = 0; i < n; i++) {
    json_t *nd = json_array_get(nodes, i);
    const char *type = json_string_value(json_object_get(nd, "type"));
    if (!json_is_object(nd) || !type) {
      snprintf(err, errlen, "node %zu has no \"type\"", i);
      return TD_EINVAL;
    }
    if (!td_rule_node_type_find(type)) {
      snprintf(err, errlen, "unknown rule node type: %s", type);
      return TD_EINVAL;
    }
  }
  json_t *fi = json_object_get(md, "firstNodeIndex");
  long long f = json_is_integer(fi) ? json_integer_value(fi) : -1;
  if (fi && !json_is_null(fi) && !json_is_integer(fi)) {
    snprintf(err, errlen, "\"firstNodeIndex\" must be an integer");
    return TD_EINVAL;
  }
  if (n > 0 && (f < 0 || (size_t)f >= n)) {
    snprintf(err, errlen, "firstNodeIndex %lld out of range (0..%zu)", f, n - 1);
    return TD_EINVAL;
  }
  if (n == 0) f = -1;
  json_t *conns = json_object_get(md, "connections");
  if (conns && !json_is_null(conns) && !json_is_array(conns)) {
    snprintf(err, errlen, "\"connections\" must be an array");
    return TD_EINVAL;
  }
  size_t i;
  json_t *c;
  json_array_foreach(conns, i, c) {
    json_t *from = json_object_get(c, "fromIndex"), *to = json_object_get(c, "toIndex");
    if (!json_is_integer(from) || !json_is_integer(to) || !json_is_string(json_object_get(c, "type"))) {
      snprintf(err, errlen, "connection %zu needs integer fromIndex/toIndex and a string type", i);
      return TD_EINVAL;
    }
    long long a = json_integer_value(from), b = json_integer_value(to);
    if (a < 0 || (size_t)a >= n || b < 0 || (size_t)b >= n) {
      snprintf(err, errlen, "connection %zu index out of range (%lld -> %lld, %zu nodes)", i, a, b, n);
      return TD_EINVAL;
    }
  }
  *nnodes = n;
  *first = (int)f;
  return 0;
}

static const char *node_name_of(json_t *nd) {
  const char *s = json_string_value(json_object_get(nd, "name"));
  return s ? s : "";
}

int td_rule_chain_validate(json_t *metadata, char *err, size_t errlen) {
  size_t n;
  int first;
  int rc = check_metadata(metadata, &n, &first, err, errlen);
  if (rc) return rc;
  json_t *nodes = json_object_get(metadata, "nodes");
  for (size_t i = 0; i < n; i++) {
    json_t *nd = json_array_get(nodes, i);
    const struct td_rule_node_type *t = td_rule_node_type_find(json_string_value(json_object_get(nd, "type")));
    void *state = NULL;
    char e2[200] = "";
    rc = t->init ? t->init(json_object_get(nd, "configuration"), &state, e2, sizeof e2) : 0;
    if (rc) {
      snprintf(err, errlen, "node %zu \"%s\" (%s): %s", i, node_name_of(nd), t->clazz, e2[0] ? e2 : "bad configuration");
      return TD_EINVAL;
    }
    if (t->destroy) t->destroy(state);
  }
  return 0;
}

int td_rule_chain_spawn(struct td_actor_system *sys, struct td_ctx *ctx, json_t *md, const char *chain_name,
                        size_t mailbox_limit, struct td_actor **out, char *err, size_t errlen) {
  size_t n;
  int first;
  int rc = check_metadata(md, &n, &first, err, errlen);
  if (rc) return rc;
  struct chain *c = calloc(1, sizeof *c);
  if (!c) return TD_ENOMEM;
  c->first = first;
  c->name = strdup(chain_name ? chain_name : "");
  c->nodes = calloc(n ? n : 1, sizeof *c->nodes);
  struct td_rule_node_priv **privs = calloc(n ? n : 1, sizeof *privs);
  if (!c->name || !c->nodes || !privs) {
    rc = TD_ENOMEM;
    goto fail;
  }
  c->n = n;
  json_t *nodes = json_object_get(md, "nodes");
  /* Phase 1: init every node (so a bad configuration spawns nothing). */
  for (size_t i = 0; i < n; i++) {
    json_t *nd = json_array_get(nodes, i);
    struct td_rule_node_priv *p = calloc(1, sizeof *p);
    if (!p) {
      rc = TD_ENOMEM;
      goto fail;
    }
    privs[i] = p;
    p->type = td_rule_node_type_find(json_string_value(json_object_get(nd, "type")));
    p->name = strdup(node_name_of(nd));
    p->chain_name = c->name;
    p->ctx.td_ctx = ctx;
    p->ctx.priv = p;
    if (!p->name) {
      rc = TD_ENOMEM;
      goto fail;
    }
    p->ctx.node_name = p->name;
    char e2[200] = "";
    rc = p->type->init ? p->type->init(json_object_get(nd, "configuration"), &p->ctx.state, e2, sizeof e2) : 0;
    if (rc) {
      p->type = NULL; /* nothing to destroy */
      snprintf(err, errlen, "node %zu \"%s\": %s", i, node_name_of(nd), e2[0] ? e2 : "bad configuration");
      rc = TD_EINVAL;
      goto fail;
    }
  }
  /* Phase 2: spawn the node actors (their state is not touched by anyone
   * else until the first message, told after the routes are in place). */
  for (size_t i = 0; i < n; i++) {
    char an[160];
    snprintf(an, sizeof an, "rule-node:%s", privs[i]->name);
    rc = td_actor_spawn(sys, an, node_fn, node_stop, privs[i], mailbox_limit, &c->nodes[i]);
    if (rc) goto fail;
    privs[i]->self = c->nodes[i];
    privs[i] = NULL; /* owned by the actor now */
  }
  /* Phase 3: routes. */
  json_t *conns = json_object_get(md, "connections");
  size_t ci;
  json_t *cj;
  json_array_foreach(conns, ci, cj) {
    size_t a = (size_t)json_integer_value(json_object_get(cj, "fromIndex"));
    size_t b = (size_t)json_integer_value(json_object_get(cj, "toIndex"));
    struct td_rule_node_priv *p = td_actor_state(c->nodes[a]);
    struct route *r = realloc(p->routes, (p->nroutes + 1) * sizeof *r);
    if (!r) {
      rc = TD_ENOMEM;
      goto fail;
    }
    p->routes = r;
    r[p->nroutes].label = strdup(json_string_value(json_object_get(cj, "type")));
    if (!r[p->nroutes].label) {
      rc = TD_ENOMEM;
      goto fail;
    }
    r[p->nroutes].target = td_actor_ref(c->nodes[b]);
    p->nroutes++;
  }
  char an[160];
  snprintf(an, sizeof an, "rule-chain:%s", c->name);
  rc = td_actor_spawn(sys, an, chain_fn, chain_stop, c, mailbox_limit, out);
  if (rc) goto fail;
  free(privs);
  return 0;
fail:
  if (privs)
    for (size_t i = 0; i < n; i++)
      if (privs[i]) node_free(privs[i]);
  free(privs);
  chain_free(c); /* stops spawned node actors; their on_stop frees their state */
  if (rc == TD_ENOMEM) snprintf(err, errlen, "out of memory building the rule chain");
  return rc;
}
