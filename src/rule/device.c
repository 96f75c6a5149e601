/* device.c — the Device actor (reference §5.2): one per originator device,
 * created by its Tenant actor on the device's first message.
 *
 * It keeps per-device order and forwards each message to the chain the
 * tenant attached to it (the tenant's root chain at the time), and holds the
 * device's sessions, their subscriptions and pending server-side RPCs
 * (session.c). After cfg->device_actor_idle_ms without messages or events,
 * and with no session and no pending RPC, it reports itself idle to the
 * tenant, which stops it if nothing was sent to it meanwhile. */
#include <stdlib.h>
#include "base/err.h"
#include "base/time.h"
#include "core/ctx.h"
#include "rule/rule_int.h"

struct device {
  struct td_rule_engine *re;
  struct td_actor *tenant;   /* a reference */
  struct td_uuid id;
  uint64_t received;
  int64_t last_ms;           /* monotonic */
  int64_t idle_ms;           /* <= 0: never idle */
  bool check_pending;
  struct td_rule_dev_state ds;
};

static void schedule_check(struct device *d, struct td_actor *self, int64_t delay) {
  struct td_actor_msg *m = calloc(1, sizeof *m);
  if (!m) return; /* retried on the next message */
  m->kind = TD_RK_IDLE_CHECK;
  /* Bounded: at most one check per device is outstanding. */
  d->check_pending = td_actor_tell_later(self, m, delay) == 0;
}

static void device_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct device *d = td_actor_state(self);
  if (m->kind == TD_RK_MSG) {
    struct td_rule_rmsg *rm = (struct td_rule_rmsg *)m;
    d->received++;
    d->last_ms = td_mono_ms();
    struct td_actor *chain = rm->chain;
    rm->chain = NULL;
    if (!chain) {
      td_rule_rmsg_drop(rm, "no rule chain");
    } else {
      (void)td_actor_tell_force(chain, m); /* counted by the in-flight window */
      td_actor_unref(chain);
    }
    if (d->idle_ms > 0 && !d->check_pending) schedule_check(d, self, d->idle_ms);
    return;
  }
  if (m->kind == TD_RK_DEV_EVT || m->kind == TD_RK_RPC_TIMEOUT) {
    if (m->kind == TD_RK_DEV_EVT) {
      d->received++; /* the tenant counts events as sent */
      td_rule_dev_handle(&d->ds, self, (struct td_rule_dev_evt *)m);
    } else {
      td_rule_dev_rpc_timeout(&d->ds, ((struct td_rule_rpc_timeout_msg *)m)->request_id);
      td_actor_msg_free(m);
    }
    d->last_ms = td_mono_ms();
    if (d->idle_ms > 0 && !d->check_pending) schedule_check(d, self, d->idle_ms);
    return;
  }
  if (m->kind == TD_RK_IDLE_CHECK) {
    d->check_pending = false;
    int64_t idle = td_mono_ms() - d->last_ms;
    if (td_rule_dev_busy(&d->ds)) {
      /* Never stopped with sessions or pending RPCs; their end (an event or
       * a timeout) schedules the next check. */
    } else if (idle < d->idle_ms) {
      schedule_check(d, self, d->idle_ms - idle);
    } else {
      struct td_rule_idle_msg *im = calloc(1, sizeof *im);
      if (im) {
        im->hdr.kind = TD_RK_DEVICE_IDLE;
        im->device_id = d->id;
        im->device = self;
        im->received = d->received;
        /* Bounded: one report per idle period of this device. */
        (void)td_actor_tell_force(d->tenant, &im->hdr);
      }
    }
  }
  td_actor_msg_free(m);
}

static void device_stop(struct td_actor *self) {
  struct device *d = td_actor_state(self);
  td_rule_dev_deinit(&d->ds);
  td_actor_unref(d->tenant);
  td_rule_engine_unref_(d->re);
  free(d);
}

int td_rule_device_spawn(struct td_rule_engine *re, struct td_actor *tenant, const struct td_uuid *device_id,
                         struct td_actor **out) {
  struct device *d = calloc(1, sizeof *d);
  if (!d) return TD_ENOMEM;
  d->re = re;
  d->id = *device_id;
  d->idle_ms = td_rule_engine_device_idle_ms(re);
  d->last_ms = td_mono_ms();
  d->tenant = td_actor_ref(tenant);
  struct td_ctx *ctx = td_rule_engine_ctx(re);
  d->ds.max_sessions = ctx && ctx->cfg ? ctx->cfg->max_sessions_per_device : 0;
  td_rule_engine_ref_(re);
  char name[64] = "device:";
  td_uuid_fmt(device_id, name + 7);
  int rc = td_actor_spawn(td_actor_system_of(tenant), name, device_fn, device_stop, d,
                          td_rule_engine_mailbox_limit(re), out);
  if (rc) {
    td_actor_unref(d->tenant);
    td_rule_engine_unref_(re);
    free(d);
  }
  return rc;
}
