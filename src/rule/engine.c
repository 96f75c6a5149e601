/* engine.c — the rule engine's entry: queue consumer, in-flight window,
 * processing contexts (acks) and the App actor (reference §5.2).
 *
 * The queue's consumer thread hands every message to td_rule_engine_submit,
 * which waits while the engine already holds `limit` messages (back-pressure
 * on the queue), opens a processing context and tells the App actor. Every
 * message on the path below is therefore counted by this window, which is
 * why the actors forward them with td_actor_tell_force.
 *
 * The engine is reference-counted: the owner, every actor state on the path
 * (app, tenant, device) and every open processing context hold a reference,
 * so actors that stop late (td_actor_system_free) never touch freed memory.
 * After td_rule_engine_free nothing is acked any more: messages still open
 * are redelivered by the queue after a restart (at-least-once). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/err.h"
#include "base/log.h"
#include "core/ctx.h"
#include "queue/queue.h"
#include "rule/rule_int.h"

#define DEFAULT_LIMIT 10000
#define STOP_WAIT_MS 5000

struct td_rule_engine {
  atomic_int refs;
  struct td_ctx *ctx;
  struct td_actor *app;
  size_t limit;
  int64_t idle_ms;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t inflight;          /* under mu */
  atomic_int stopping;
  atomic_int freed;
  pthread_rwlock_t ack_lock;  /* acks hold it shared; td_rule_engine_detach takes it exclusively */
  atomic_ullong nacked, nfailed;
  int started;
  td_rule_chain_loader_fn loader;
  void *loader_arg;
};

void td_rule_engine_ref_(struct td_rule_engine *re) { atomic_fetch_add(&re->refs, 1); }

void td_rule_engine_unref_(struct td_rule_engine *re) {
  if (atomic_fetch_sub(&re->refs, 1) != 1) return;
  pthread_cond_destroy(&re->cv);
  pthread_mutex_destroy(&re->mu);
  pthread_rwlock_destroy(&re->ack_lock);
  free(re);
}

struct td_ctx *td_rule_engine_ctx(struct td_rule_engine *re) { return re->ctx; }
size_t td_rule_engine_mailbox_limit(struct td_rule_engine *re) { return re->limit; }
int64_t td_rule_engine_device_idle_ms(struct td_rule_engine *re) { return re->idle_ms; }
td_rule_chain_loader_fn td_rule_engine_loader_(struct td_rule_engine *re, void **arg) {
  *arg = re->loader_arg;
  return re->loader;
}

/* ---------------------------------------------------------------- processing contexts */

void td_rule_pctx_branch(struct td_rule_pctx *pc) { atomic_fetch_add(&pc->branches, 1); }

void td_rule_pctx_end(struct td_rule_pctx *pc) {
  if (atomic_fetch_sub(&pc->branches, 1) != 1) return;
  struct td_rule_engine *re = pc->re;
  /* Failed or not, the message is acked: the Main queue skips failures
   * (they were logged where they happened). */
  if (atomic_load(&pc->failed)) atomic_fetch_add(&re->nfailed, 1);
  atomic_fetch_add(&re->nacked, 1);
  /* The shared lock makes "not detached" and the ack one step, so that no
   * ack can reach a queue that td_rule_engine_detach has let go of. */
  pthread_rwlock_rdlock(&re->ack_lock);
  if (!atomic_load(&re->freed) && re->ctx && re->ctx->queue) td_queue_ack(re->ctx->queue, pc->token);
  pthread_rwlock_unlock(&re->ack_lock);
  pthread_mutex_lock(&re->mu);
  re->inflight--;
  pthread_cond_broadcast(&re->cv);
  pthread_mutex_unlock(&re->mu);
  free(pc);
  td_rule_engine_unref_(re);
}

/* ---------------------------------------------------------------- App actor */

struct app {
  struct td_rule_engine *re;
  struct td_idmap tenants; /* tenant id -> struct td_actor* (a reference) */
};

struct tenant_ctl {
  struct td_actor_msg hdr; /* TD_RK_CHAIN_CHANGED */
  struct td_uuid tenant_id;
};

/* tenant_of: the tenant's actor, spawned if needed; NULL on failure. */
static struct td_actor *tenant_of(struct app *a, const struct td_uuid *tid) {
  struct td_actor *t = td_idmap_get(&a->tenants, tid);
  if (t) return t;
  int rc = td_rule_tenant_spawn(a->re, tid, &t);
  if (rc == 0 && (rc = td_idmap_put(&a->tenants, tid, t)) != 0) {
    td_actor_stop(t);
    td_actor_unref(t);
  }
  return rc ? NULL : t;
}

static void app_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct app *a = td_actor_state(self);
  if (m->kind == TD_RK_MSG) {
    struct td_rule_rmsg *rm = (struct td_rule_rmsg *)m;
    struct td_actor *t = tenant_of(a, &rm->msg->tenant_id);
    if (!t) {
      td_rule_rmsg_drop(rm, "cannot start the tenant actor");
      return;
    }
    (void)td_actor_tell_force(t, m); /* counted by the in-flight window */
    return;
  }
  if (m->kind == TD_RK_DEV_EVT) {
    struct td_actor *t = tenant_of(a, &((struct td_rule_dev_evt *)m)->tenant_id);
    if (t) {
      (void)td_actor_tell_force(t, m); /* bounded by sessions and REST calls (session.c) */
      return;
    }
    td_log_limited(1, TD_LOG_ERROR, "rule", "action=\"device event\" err=\"cannot start the tenant actor\"");
  }
  if (m->kind == TD_RK_CHAIN_CHANGED) {
    struct tenant_ctl *c = (struct tenant_ctl *)m;
    struct td_actor *t = td_idmap_get(&a->tenants, &c->tenant_id);
    if (t) {
      (void)td_actor_tell_force(t, m); /* rare admin events, one per REST change */
      return;
    }
    /* Not started yet: it will load the current root chain on its first message. */
  }
  td_actor_msg_free(m);
}

static void stop_tenant(void *v, void *arg) {
  (void)arg;
  td_actor_stop(v);
  td_actor_unref(v);
}

static void app_stop(struct td_actor *self) {
  struct app *a = td_actor_state(self);
  td_idmap_each(&a->tenants, stop_tenant, NULL);
  td_idmap_deinit(&a->tenants);
  td_rule_engine_unref_(a->re);
  free(a);
}

/* ---------------------------------------------------------------- engine API */

int td_rule_engine_new(struct td_ctx *ctx, struct td_rule_engine **out) {
  struct td_rule_engine *re = calloc(1, sizeof *re);
  if (!re) return TD_ENOMEM;
  atomic_init(&re->refs, 1);
  re->ctx = ctx;
  const struct td_config *cfg = ctx ? ctx->cfg : NULL;
  /* The window has its own key (rule_engine.max_inflight), no longer the
   * actors' mailbox limit: it also bounds how many rows the telemetry writer
   * can gather into one commit, and SQLite's cost per row falls steeply with
   * the commit size (1000 interleaved devices: 42k rows/s in commits of 5000
   * rows, 133k rows/s in commits of 50000, bench/sqlite_ceiling). */
  re->limit = cfg && cfg->rule_engine_max_inflight > 0 ? (size_t)cfg->rule_engine_max_inflight : DEFAULT_LIMIT;
  re->idle_ms = cfg ? cfg->device_actor_idle_ms : 0;
  pthread_mutex_init(&re->mu, NULL);
  pthread_cond_init(&re->cv, NULL);
  pthread_rwlock_init(&re->ack_lock, NULL);
  struct app *a = calloc(1, sizeof *a);
  if (!a) {
    td_rule_engine_unref_(re);
    return TD_ENOMEM;
  }
  td_idmap_init(&a->tenants);
  a->re = re;
  td_rule_engine_ref_(re);
  int rc = ctx && ctx->actors ? td_actor_spawn(ctx->actors, "app", app_fn, app_stop, a, 0, &re->app) : TD_EINVAL;
  if (rc) {
    free(a);
    atomic_fetch_sub(&re->refs, 1);
    td_rule_engine_unref_(re);
    return rc;
  }
  *out = re;
  return 0;
}

static void consume_cb(void *arg, struct td_msg *msg, uint64_t token) { td_rule_engine_submit(arg, msg, token); }

int td_rule_engine_start(struct td_rule_engine *re) {
  if (re->started) return TD_EINVAL;
  if (!re->ctx->queue) return TD_EINVAL;
  int rc = td_queue_consume(re->ctx->queue, consume_cb, re);
  if (rc == 0) re->started = 1;
  return rc;
}

void td_rule_engine_submit(struct td_rule_engine *re, struct td_msg *msg, uint64_t token) {
  pthread_mutex_lock(&re->mu);
  while (re->inflight >= re->limit && !atomic_load(&re->stopping)) pthread_cond_wait(&re->cv, &re->mu);
  if (atomic_load(&re->stopping)) {
    pthread_mutex_unlock(&re->mu);
    td_msg_unref(msg); /* not acked: redelivered after the restart */
    return;
  }
  re->inflight++;
  pthread_mutex_unlock(&re->mu);
  struct td_rule_pctx *pc = malloc(sizeof *pc);
  if (!pc) {
    td_log_limited(1, TD_LOG_ERROR, "rule", "action=\"accepting message\" err=TD_ENOMEM");
    pthread_mutex_lock(&re->mu);
    re->inflight--;
    pthread_mutex_unlock(&re->mu);
    td_msg_unref(msg); /* not acked: redelivered after a restart */
    return;
  }
  atomic_init(&pc->branches, 1);
  atomic_init(&pc->failed, 0);
  pc->token = token;
  pc->re = re;
  td_rule_engine_ref_(re);
  struct td_rule_rmsg *rm = td_rule_rmsg_new(msg, pc);
  td_msg_unref(msg);
  if (!rm) {
    td_rule_pctx_fail(pc);
    td_rule_pctx_end(pc);
    return;
  }
  (void)td_actor_tell_force(re->app, &rm->hdr); /* counted by the in-flight window */
}

size_t td_rule_engine_inflight(struct td_rule_engine *re) {
  pthread_mutex_lock(&re->mu);
  size_t n = re->inflight;
  pthread_mutex_unlock(&re->mu);
  return n;
}

void td_rule_engine_stats(struct td_rule_engine *re, uint64_t *completed, uint64_t *failed) {
  if (completed) *completed = atomic_load(&re->nacked);
  if (failed) *failed = atomic_load(&re->nfailed);
}

void td_rule_engine_set_loader(struct td_rule_engine *re, td_rule_chain_loader_fn fn, void *arg) {
  re->loader = fn;
  re->loader_arg = arg;
}

void td_rule_engine_stop(struct td_rule_engine *re) {
  if (!re) return;
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += STOP_WAIT_MS / 1000;
  pthread_mutex_lock(&re->mu);
  atomic_store(&re->stopping, 1);
  pthread_cond_broadcast(&re->cv);
  while (re->inflight > 0)
    if (pthread_cond_timedwait(&re->cv, &re->mu, &dl) == ETIMEDOUT) break;
  size_t left = re->inflight;
  pthread_mutex_unlock(&re->mu);
  if (left)
    td_log(TD_LOG_WARN, "rule", "action=\"stopping rule engine\" unfinished=%zu note=\"redelivered after restart\"", left);
}

void td_rule_engine_detach(struct td_rule_engine *re) {
  if (!re) return;
  pthread_rwlock_wrlock(&re->ack_lock);
  atomic_store(&re->stopping, 1);
  atomic_store(&re->freed, 1);
  pthread_rwlock_unlock(&re->ack_lock);
  pthread_mutex_lock(&re->mu);
  pthread_cond_broadcast(&re->cv);
  pthread_mutex_unlock(&re->mu);
}

void td_rule_engine_free(struct td_rule_engine *re) {
  if (!re) return;
  atomic_store(&re->stopping, 1);
  atomic_store(&re->freed, 1);
  pthread_mutex_lock(&re->mu);
  pthread_cond_broadcast(&re->cv);
  pthread_mutex_unlock(&re->mu);
  td_actor_stop(re->app);
  td_actor_unref(re->app);
  re->app = NULL;
  td_rule_engine_unref_(re);
}

int td_rule_engine_device_event(struct td_rule_engine *re, struct td_rule_dev_evt *ev) {
  if (!re || !re->app || atomic_load(&re->freed)) {
    td_actor_msg_free(&ev->hdr);
    return TD_ECLOSED;
  }
  /* Session events are bounded by the sessions; REST ones by the HTTP connections. */
  return td_actor_tell_force(re->app, &ev->hdr); /* on TD_ECLOSED it was freed */
}

void td_rule_engine_chain_changed(struct td_rule_engine *re, const struct td_uuid *tenant_id) {
  struct tenant_ctl *c = calloc(1, sizeof *c);
  if (!c) {
    td_log(TD_LOG_ERROR, "rule", "action=\"reloading rule chain\" err=TD_ENOMEM");
    return;
  }
  c->hdr.kind = TD_RK_CHAIN_CHANGED;
  c->tenant_id = *tenant_id;
  /* Rare admin events (one per REST change): not counted elsewhere, but
   * dropping one would leave a tenant on a stale chain. */
  (void)td_actor_tell_force(re->app, &c->hdr);
}
