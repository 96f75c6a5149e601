/* tenant.c — the Tenant actor (reference §5.2): one per tenant, spawned by
 * the App actor on the tenant's first message.
 *
 * It loads the tenant's root rule chain (a dbjob on ctx->db: root chain +
 * metadata; the reply comes back with td_actor_tell_force, one outstanding
 * load at a time), holds messages until the chain is built (bounded by the
 * engine's in-flight window, and checked against the mailbox limit), then
 * routes: messages from a device go through that device's actor (created on
 * its first message, stopped when idle), others straight to the chain.
 * On td_rule_engine_chain_changed it reloads; the old chain keeps serving
 * until the new one is built, then it is stopped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "base/log.h"
#include "core/ctx.h"
#include "store/dbpool.h"
#include "rule/rule_int.h"

#define LOAD_RETRY_MS 1000

enum { T_LOADING, T_READY, T_NOCHAIN };

struct dev {
  struct td_actor *a; /* a reference */
  uint64_t sent;      /* messages forwarded to it */
};

struct tenant {
  struct td_rule_engine *re;
  struct td_uuid id;
  char ids[TD_UUID_STR_LEN + 1];
  struct td_actor *self;
  struct td_actor *chain;   /* a reference, or NULL */
  int st;
  bool loading, reload_again;
  struct td_rule_rmsg *pend_head, *pend_tail;
  size_t npend;
  struct td_idmap devices;  /* device id -> struct dev* */
};

struct load_job {
  struct td_actor_msg hdr;  /* TD_RK_CHAIN_LOADED */
  struct td_dbjob job;
  struct td_actor *tenant;  /* a reference until done */
  struct td_uuid tenant_id;
  json_t *md;
  char name[256];
};

static void load_free(struct td_actor_msg *m) {
  struct load_job *lj = (struct load_job *)m;
  if (lj->md) json_decref(lj->md);
  free(lj);
}

/* Storage thread. */
static void load_run(struct td_dbjob *j, struct td_store *st) {
  struct load_job *lj = td_container_of(j, struct load_job, job);
  json_t *chain = NULL;
  j->status = td_store_rule_chain_root(st, &lj->tenant_id, &chain);
  if (j->status) return;
  struct td_uuid cid;
  const char *ids = json_string_value(json_object_get(json_object_get(chain, "id"), "id"));
  const char *name = json_string_value(json_object_get(chain, "name"));
  snprintf(lj->name, sizeof lj->name, "%s", name ? name : "Root Rule Chain");
  j->status = ids ? td_uuid_parse(ids, &cid) : TD_ECORRUPT;
  if (j->status == 0) j->status = td_store_rule_chain_metadata_get(st, &cid, &lj->md);
  json_decref(chain);
}

/* Storage thread: the reply to the actor that asked (bounded: one load per tenant). */
static void load_done(struct td_dbjob *j) {
  struct load_job *lj = td_container_of(j, struct load_job, job);
  struct td_actor *t = lj->tenant;
  lj->tenant = NULL;
  (void)td_actor_tell_force(t, &lj->hdr); /* on TD_ECLOSED load_free ran */
  td_actor_unref(t);
}

static void on_loaded(struct tenant *t, int status, json_t *md, const char *name);

static void start_load(struct tenant *t) {
  if (t->loading) {
    t->reload_again = true;
    return;
  }
  void *larg;
  td_rule_chain_loader_fn lf = td_rule_engine_loader_(t->re, &larg);
  if (lf) { /* test seam: synchronous */
    json_t *md = NULL;
    int rc = lf(larg, &t->id, &md);
    on_loaded(t, rc, md, "Root Rule Chain");
    if (md) json_decref(md);
    return;
  }
  struct td_ctx *ctx = td_rule_engine_ctx(t->re);
  struct load_job *lj = calloc(1, sizeof *lj);
  int rc = lj ? 0 : TD_ENOMEM;
  if (lj) {
    lj->hdr.kind = TD_RK_CHAIN_LOADED;
    lj->hdr.free_fn = load_free;
    lj->tenant = td_actor_ref(t->self);
    lj->tenant_id = t->id;
    lj->job.run = load_run;
    lj->job.done = load_done;
    rc = ctx && ctx->db ? td_dbpool_submit(ctx->db, &lj->job) : TD_EINVAL;
    if (rc) {
      td_actor_unref(lj->tenant);
      free(lj);
    }
  }
  if (rc == 0) {
    t->loading = true;
    return;
  }
  td_log(TD_LOG_WARN, "rule", "tenant=%s action=\"loading root rule chain\" err=%s retry_ms=%d", t->ids, td_errname(rc),
         LOAD_RETRY_MS);
  struct td_actor_msg *m = calloc(1, sizeof *m);
  if (m) {
    m->kind = TD_RK_RETRY_LOAD;
    t->loading = true; /* the retry timer is the outstanding load */
    if (td_actor_tell_later(t->self, m, LOAD_RETRY_MS) != 0) t->loading = false;
  }
}

static void stop_dev(void *v, void *arg) {
  (void)arg;
  struct dev *d = v;
  td_actor_stop(d->a);
  td_actor_unref(d->a);
  free(d);
}

/* device_of: the device's actor, spawned if needed; NULL on failure. */
static struct dev *device_of(struct tenant *t, const struct td_uuid *id) {
  struct dev *d = td_idmap_get(&t->devices, id);
  if (d) return d;
  d = calloc(1, sizeof *d);
  int rc = d ? td_rule_device_spawn(t->re, t->self, id, &d->a) : TD_ENOMEM;
  if (rc == 0 && (rc = td_idmap_put(&t->devices, id, d)) != 0) {
    td_actor_stop(d->a);
    td_actor_unref(d->a);
  }
  if (rc) {
    free(d);
    return NULL;
  }
  return d;
}

/* route_msg: the tenant is READY. */
static void route_msg(struct tenant *t, struct td_rule_rmsg *rm) {
  const struct td_entity_id *o = &rm->msg->originator;
  if (o->type == TD_ENTITY_DEVICE) {
    struct dev *d = device_of(t, &o->id);
    if (!d) {
      td_rule_rmsg_drop(rm, "cannot start the device actor");
      return;
    }
    rm->chain = td_actor_ref(t->chain);
    d->sent++;
    (void)td_actor_tell_force(d->a, &rm->hdr); /* counted by the in-flight window */
    return;
  }
  (void)td_actor_tell_force(t->chain, &rm->hdr); /* counted by the in-flight window */
}

static void handle_msg(struct tenant *t, struct td_rule_rmsg *rm) {
  if (t->st == T_READY) {
    route_msg(t, rm);
  } else if (t->st == T_NOCHAIN) {
    td_rule_rmsg_drop(rm, "tenant has no usable root rule chain");
  } else if (t->npend >= td_rule_engine_mailbox_limit(t->re)) {
    td_rule_rmsg_drop(rm, "too many messages waiting for the rule chain to load");
  } else {
    rm->pend_next = NULL;
    if (t->pend_tail) t->pend_tail->pend_next = rm;
    else t->pend_head = rm;
    t->pend_tail = rm;
    t->npend++;
  }
}

static void on_loaded(struct tenant *t, int status, json_t *md, const char *name) {
  t->loading = false;
  if (status == 0) {
    char err[256] = "";
    struct td_ctx *ctx = td_rule_engine_ctx(t->re);
    struct td_actor *c = NULL;
    int rc = td_rule_chain_spawn(td_actor_system_of(t->self), ctx, md, name, td_rule_engine_mailbox_limit(t->re), &c,
                                 err, sizeof err);
    if (rc == 0) {
      if (t->chain) {
        td_actor_stop(t->chain);
        td_actor_unref(t->chain);
      }
      t->chain = c;
      t->st = T_READY;
      td_log(TD_LOG_INFO, "rule", "tenant=%s chain=\"%s\" action=\"root rule chain started\"", t->ids, name);
    } else {
      td_log(TD_LOG_WARN, "rule", "tenant=%s chain=\"%s\" action=\"building root rule chain\" err=%s reason=\"%s\"",
             t->ids, name, td_errname(rc), err);
      if (!t->chain) t->st = T_NOCHAIN;
    }
  } else if (status == TD_ENOTFOUND) {
    td_log(TD_LOG_WARN, "rule", "tenant=%s action=\"loading root rule chain\" err=%s note=\"tenant has no root chain\"",
           t->ids, td_errname(status));
    if (!t->chain) t->st = T_NOCHAIN;
  } else {
    td_log(TD_LOG_WARN, "rule", "tenant=%s action=\"loading root rule chain\" err=%s retry_ms=%d", t->ids,
           td_errname(status), LOAD_RETRY_MS);
    struct td_actor_msg *m = calloc(1, sizeof *m);
    if (m) {
      m->kind = TD_RK_RETRY_LOAD;
      t->loading = true;
      if (td_actor_tell_later(t->self, m, LOAD_RETRY_MS) == 0) return;
      t->loading = false;
    }
    if (!t->chain) t->st = T_NOCHAIN;
  }
  while (t->st != T_LOADING && t->pend_head) {
    struct td_rule_rmsg *rm = t->pend_head;
    t->pend_head = rm->pend_next;
    if (!t->pend_head) t->pend_tail = NULL;
    t->npend--;
    handle_msg(t, rm);
  }
  if (t->reload_again) {
    t->reload_again = false;
    start_load(t);
  }
}

static void tenant_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct tenant *t = td_actor_state(self);
  t->self = self;
  switch (m->kind) {
  case TD_RK_MSG:
    handle_msg(t, (struct td_rule_rmsg *)m);
    return;
  case TD_RK_DEV_EVT: {
    /* Session events need no rule chain: straight to the device actor. */
    struct dev *d = device_of(t, &((struct td_rule_dev_evt *)m)->device_id);
    if (!d) {
      td_log_limited(1, TD_LOG_ERROR, "rule", "tenant=%s action=\"device event\" err=\"cannot start the device actor\"",
                     t->ids);
      break;
    }
    d->sent++; /* counted like messages, so an idle report never races an event */
    (void)td_actor_tell_force(d->a, m); /* bounded by sessions and REST calls (session.c) */
    return;
  }
  case TD_RK_CHAIN_LOADED: {
    struct load_job *lj = (struct load_job *)m;
    on_loaded(t, lj->job.status, lj->md, lj->name);
    break;
  }
  case TD_RK_RETRY_LOAD:
    t->loading = false;
    start_load(t);
    break;
  case TD_RK_CHAIN_CHANGED:
    start_load(t);
    break;
  case TD_RK_DEVICE_IDLE: {
    struct td_rule_idle_msg *im = (struct td_rule_idle_msg *)m;
    struct dev *d = td_idmap_get(&t->devices, &im->device_id);
    /* Only when it has handled everything we sent: otherwise messages in its
     * mailbox would be lost; a newer idle report will come. */
    if (d && d->a == im->device && d->sent == im->received) {
      td_idmap_del(&t->devices, &im->device_id);
      stop_dev(d, NULL);
    }
    break;
  }
  default:
    break;
  }
  td_actor_msg_free(m);
}

static void tenant_stop(struct td_actor *self) {
  struct tenant *t = td_actor_state(self);
  td_idmap_each(&t->devices, stop_dev, NULL);
  td_idmap_deinit(&t->devices);
  if (t->chain) {
    td_actor_stop(t->chain);
    td_actor_unref(t->chain);
  }
  while (t->pend_head) {
    struct td_rule_rmsg *rm = t->pend_head;
    t->pend_head = rm->pend_next;
    td_rule_rmsg_drop(rm, "tenant actor stopped");
  }
  td_rule_engine_unref_(t->re);
  free(t);
}

int td_rule_tenant_spawn(struct td_rule_engine *re, const struct td_uuid *tenant_id, struct td_actor **out) {
  struct tenant *t = calloc(1, sizeof *t);
  struct td_actor_msg *load = calloc(1, sizeof *load);
  if (!t || !load) {
    free(t);
    free(load);
    return TD_ENOMEM;
  }
  t->re = re;
  t->id = *tenant_id;
  td_uuid_fmt(tenant_id, t->ids);
  t->st = T_LOADING;
  td_idmap_init(&t->devices);
  char name[64];
  snprintf(name, sizeof name, "tenant:%s", t->ids);
  struct td_ctx *ctx = td_rule_engine_ctx(re);
  td_rule_engine_ref_(re);
  int rc = td_actor_spawn(ctx->actors, name, tenant_fn, tenant_stop, t, td_rule_engine_mailbox_limit(re), out);
  if (rc) {
    td_rule_engine_unref_(re);
    free(t);
    free(load);
    return rc;
  }
  t->self = *out;
  /* First thing in its mailbox: load the chain (a control message, one per tenant). */
  load->kind = TD_RK_RETRY_LOAD;
  (void)td_actor_tell_force(*out, load);
  return 0;
}
