/* actor.h — the actor runtime: bounded mailboxes run by a pool of dispatcher threads.
 *
 * An actor is a behaviour function plus private state. It handles one message
 * at a time, so its state needs no locks; up to `throughput` messages are
 * handled in one turn before the dispatcher moves to another actor. Actors
 * form ThingsBoard's hierarchy (App -> Tenant -> Device; Tenant -> Rule chain ->
 * Rule node); the hierarchy itself lives in the behaviours (src/rule, src/core),
 * this runtime only knows mailboxes, turns and lifetimes.
 *
 * Messages are intrusive (struct td_actor_msg at the start of the sender's
 * struct); the receiver owns a delivered message and frees it via m->free_fn
 * (NULL: free()). */
#ifndef TD_ACTOR_ACTOR_H
#define TD_ACTOR_ACTOR_H
#include <stddef.h>
#include <stdint.h>

struct td_actor_system;
struct td_actor;

struct td_actor_msg {
  struct td_actor_msg *next;
  int kind;                                 /* behaviour-defined */
  void (*free_fn)(struct td_actor_msg *m);  /* NULL: free(m) */
};

/* The behaviour. Runs on a dispatcher thread; owns m (free it with td_actor_msg_free). */
typedef void (*td_actor_fn)(struct td_actor *self, struct td_actor_msg *m);
/* Called once on a dispatcher thread after the actor has stopped; frees state. */
typedef void (*td_actor_stop_fn)(struct td_actor *self);

struct td_actor_system_config {
  int threads;        /* dispatcher threads (default: number of cores) */
  int throughput;     /* messages per turn (default 5, as ThingsBoard) */
};

int td_actor_system_new(const struct td_actor_system_config *cfg, struct td_actor_system **out);
/* td_actor_system_free: stop every actor (their stop functions run), join the
 * dispatchers, free. Call from a non-dispatcher thread. */
void td_actor_system_free(struct td_actor_system *sys);

/* td_actor_spawn: a new actor with its mailbox limit (0 = 10000). The caller
 * gets one reference (td_actor_unref when done). name is for logs (copied). */
int td_actor_spawn(struct td_actor_system *sys, const char *name, td_actor_fn fn, td_actor_stop_fn on_stop,
                   void *state, size_t mailbox_limit, struct td_actor **out);
struct td_actor *td_actor_ref(struct td_actor *a);
void td_actor_unref(struct td_actor *a);
void *td_actor_state(struct td_actor *a);
const char *td_actor_name(struct td_actor *a);
struct td_actor_system *td_actor_system_of(struct td_actor *a);

/* td_actor_tell: enqueue m. Returns 0 (the actor owns m now), TD_EFULL when
 * the mailbox is at its limit, TD_ECLOSED when the actor has stopped (in both
 * error cases the caller still owns m). Any thread. */
int td_actor_tell(struct td_actor *a, struct td_actor_msg *m);
/* td_actor_tell_force: enqueue ignoring the limit. Only for messages whose
 * number is bounded elsewhere (replies to requests the actor made, messages
 * counted by the queue's in-flight window). If the actor has stopped, m is
 * freed and TD_ECLOSED returned. */
int td_actor_tell_force(struct td_actor *a, struct td_actor_msg *m);
/* td_actor_tell_later: deliver m after delay_ms (a timer on the system's
 * timer thread); bounded like tell_force. Returns 0 or TD_ECLOSED/TD_ENOMEM (m freed). */
int td_actor_tell_later(struct td_actor *a, struct td_actor_msg *m, int64_t delay_ms);
/* td_actor_stop: the actor handles no more messages after the current one;
 * queued messages are freed; on_stop runs. Any thread, idempotent. */
void td_actor_stop(struct td_actor *a);
size_t td_actor_mailbox_len(struct td_actor *a);

static inline void td_actor_msg_free(struct td_actor_msg *m);
#include <stdlib.h>
static inline void td_actor_msg_free(struct td_actor_msg *m) {
  if (m->free_fn) m->free_fn(m); else free(m);
}
#endif
