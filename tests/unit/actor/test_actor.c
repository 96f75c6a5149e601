/* test_actor.c — the actor runtime (actor.h): per-actor order, turn
 * fairness, mailbox limit, stop semantics, timers, many actors on many
 * threads. Behaviours never call cmocka asserts (they run on dispatcher
 * threads); they count errors that the test thread then asserts on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor/actor.h"
#include "base/err.h"
#include "base/time.h"

struct tmsg {
  struct td_actor_msg base;
  int val;
  int src;
};

static atomic_int frees, errors;

static void tmsg_free(struct td_actor_msg *m) {
  atomic_fetch_add(&frees, 1);
  free(m);
}

static struct td_actor_msg *mk(int kind, int val, int src) {
  struct tmsg *m = calloc(1, sizeof *m);
  m->base.kind = kind;
  m->base.free_fn = tmsg_free;
  m->val = val;
  m->src = src;
  return &m->base;
}

/* A counter that the test thread can wait on (bounded wait: a failure, not pacing). */
struct latch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
};
static void latch_init(struct latch *l) {
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  l->n = 0;
}
static void latch_add(struct latch *l) {
  pthread_mutex_lock(&l->mu);
  l->n++;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}
static int latch_wait(struct latch *l, int target) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 30;
  pthread_mutex_lock(&l->mu);
  while (l->n < target)
    if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) == ETIMEDOUT) break;
  int n = l->n;
  pthread_mutex_unlock(&l->mu);
  return n;
}

/* A gate a behaviour can block on, to hold a dispatcher thread. */
static struct latch gate_entered, gate_open;
static void gate_reset(void) {
  latch_init(&gate_entered);
  latch_init(&gate_open);
}
static void gate_fn(struct td_actor *self, struct td_actor_msg *m) {
  (void)self;
  latch_add(&gate_entered);
  latch_wait(&gate_open, 1);
  td_actor_msg_free(m);
}

static int reset(void **st) {
  (void)st;
  atomic_store(&frees, 0);
  atomic_store(&errors, 0);
  gate_reset();
  return 0;
}

/* ---- order ---- */
struct order_state {
  int next;
  struct latch done;
};
static void order_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct order_state *s = td_actor_state(self);
  struct tmsg *t = (struct tmsg *)m;
  if (t->val != s->next) atomic_fetch_add(&errors, 1);
  s->next++;
  td_actor_msg_free(m);
  latch_add(&s->done);
}

static void test_order(void **st) {
  (void)st;
  struct td_actor_system *sys;
  struct td_actor_system_config cfg = {.threads = 3, .throughput = 5};
  assert_int_equal(td_actor_system_new(&cfg, &sys), 0);
  struct order_state s = {0};
  latch_init(&s.done);
  struct td_actor *a;
  assert_int_equal(td_actor_spawn(sys, "order", order_fn, NULL, &s, 5000, &a), 0);
  assert_string_equal(td_actor_name(a), "order");
  assert_ptr_equal(td_actor_system_of(a), sys);
  for (int i = 0; i < 3000; i++) assert_int_equal(td_actor_tell(a, mk(0, i, 0)), 0);
  assert_int_equal(latch_wait(&s.done, 3000), 3000);
  assert_int_equal(atomic_load(&errors), 0);
  assert_int_equal(atomic_load(&frees), 3000);
  td_actor_unref(a);
  td_actor_system_free(sys);
}

/* ---- fairness ---- */
static pthread_mutex_t seq_mu = PTHREAD_MUTEX_INITIALIZER;
static char seq[64];
static int seq_len;
static struct latch seq_done;
static void seq_fn(struct td_actor *self, struct td_actor_msg *m) {
  pthread_mutex_lock(&seq_mu);
  if (seq_len < 63) seq[seq_len++] = td_actor_name(self)[0];
  pthread_mutex_unlock(&seq_mu);
  td_actor_msg_free(m);
  latch_add(&seq_done);
}

static void test_throughput_fairness(void **st) {
  (void)st;
  struct td_actor_system *sys;
  struct td_actor_system_config cfg = {.threads = 1, .throughput = 5};
  assert_int_equal(td_actor_system_new(&cfg, &sys), 0);
  struct td_actor *g, *a, *b;
  assert_int_equal(td_actor_spawn(sys, "gate", gate_fn, NULL, NULL, 0, &g), 0);
  assert_int_equal(td_actor_spawn(sys, "A", seq_fn, NULL, NULL, 0, &a), 0);
  assert_int_equal(td_actor_spawn(sys, "B", seq_fn, NULL, NULL, 0, &b), 0);
  seq_len = 0;
  latch_init(&seq_done);
  assert_int_equal(td_actor_tell(g, mk(0, 0, 0)), 0);
  assert_int_equal(latch_wait(&gate_entered, 1), 1);   /* the only dispatcher is busy */
  for (int i = 0; i < 12; i++) assert_int_equal(td_actor_tell(a, mk(0, i, 0)), 0);
  for (int i = 0; i < 12; i++) assert_int_equal(td_actor_tell(b, mk(0, i, 0)), 0);
  assert_int_equal(td_actor_mailbox_len(a), 12);
  latch_add(&gate_open);
  assert_int_equal(latch_wait(&seq_done, 24), 24);
  seq[seq_len] = '\0';
  assert_string_equal(seq, "AAAAABBBBBAAAAABBBBBAABB");
  assert_int_equal(td_actor_mailbox_len(a), 0);
  td_actor_unref(g);
  td_actor_unref(a);
  td_actor_unref(b);
  td_actor_system_free(sys);
}

/* ---- mailbox limit ---- */
static void test_mailbox_limit(void **st) {
  (void)st;
  struct td_actor_system *sys;
  struct td_actor_system_config cfg = {.threads = 1, .throughput = 5};
  assert_int_equal(td_actor_system_new(&cfg, &sys), 0);
  struct td_actor *g, *a;
  assert_int_equal(td_actor_spawn(sys, "gate", gate_fn, NULL, NULL, 0, &g), 0);
  assert_int_equal(td_actor_spawn(sys, "small", seq_fn, NULL, NULL, 3, &a), 0);
  latch_init(&seq_done);
  seq_len = 0;
  assert_int_equal(td_actor_tell(g, mk(0, 0, 0)), 0);
  assert_int_equal(latch_wait(&gate_entered, 1), 1);
  for (int i = 0; i < 3; i++) assert_int_equal(td_actor_tell(a, mk(0, i, 0)), 0);
  struct td_actor_msg *m = mk(0, 3, 0);
  assert_int_equal(td_actor_tell(a, m), TD_EFULL);
  assert_int_equal(td_actor_mailbox_len(a), 3);
  assert_int_equal(td_actor_tell_force(a, m), 0);   /* the caller still owned m */
  assert_int_equal(td_actor_mailbox_len(a), 4);
  latch_add(&gate_open);
  assert_int_equal(latch_wait(&seq_done, 4), 4);
  assert_int_equal(td_actor_tell(a, mk(0, 4, 0)), 0);   /* room again */
  assert_int_equal(latch_wait(&seq_done, 5), 5);
  td_actor_unref(g);
  td_actor_unref(a);
  td_actor_system_free(sys);
  assert_int_equal(atomic_load(&frees), 6);
}

/* ---- stop ---- */
struct stop_state {
  atomic_int in_behaviour;
  atomic_int handled;
  atomic_int stops;
  struct latch stopped;
};
static void stop_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct stop_state *s = td_actor_state(self);
  if (atomic_exchange(&s->in_behaviour, 1)) atomic_fetch_add(&errors, 1);
  if (m->kind == 1) {           /* block until the gate opens */
    latch_add(&gate_entered);
    latch_wait(&gate_open, 1);
  } else if (m->kind == 3) {    /* stop myself */
    td_actor_stop(self);
  }
  atomic_fetch_add(&s->handled, 1);
  atomic_store(&s->in_behaviour, 0);
  td_actor_msg_free(m);
}
static void stop_on_stop(struct td_actor *self) {
  struct stop_state *s = td_actor_state(self);
  if (atomic_load(&s->in_behaviour)) atomic_fetch_add(&errors, 1);
  atomic_fetch_add(&s->stops, 1);
  latch_add(&s->stopped);
}

static void test_stop(void **st) {
  (void)st;
  struct td_actor_system *sys;
  struct td_actor_system_config cfg = {.threads = 2, .throughput = 5};
  assert_int_equal(td_actor_system_new(&cfg, &sys), 0);
  struct stop_state s = {0};
  latch_init(&s.stopped);
  struct td_actor *a;
  assert_int_equal(td_actor_spawn(sys, "stopper", stop_fn, stop_on_stop, &s, 0, &a), 0);
  assert_int_equal(td_actor_tell(a, mk(1, 0, 0)), 0);
  assert_int_equal(latch_wait(&gate_entered, 1), 1);
  for (int i = 0; i < 5; i++) assert_int_equal(td_actor_tell(a, mk(2, i, 0)), 0);
  td_actor_stop(a);
  td_actor_stop(a);   /* idempotent */
  struct td_actor_msg *m = mk(2, 9, 0);
  assert_int_equal(td_actor_tell(a, m), TD_ECLOSED);
  td_actor_msg_free(m);   /* still ours */
  assert_int_equal(td_actor_tell_force(a, mk(2, 9, 0)), TD_ECLOSED);   /* freed for us */
  assert_int_equal(td_actor_tell_later(a, mk(2, 9, 0), 1), TD_ECLOSED);
  latch_add(&gate_open);
  assert_int_equal(latch_wait(&s.stopped, 1), 1);
  assert_int_equal(atomic_load(&s.handled), 1);   /* only the message being handled */
  assert_int_equal(atomic_load(&s.stops), 1);
  assert_int_equal(atomic_load(&frees), 9);       /* 1 handled + 5 pending + 3 refused */
  assert_int_equal(td_actor_mailbox_len(a), 0);
  td_actor_unref(a);

  /* self-stop: messages after the stopping one are dropped */
  struct stop_state s2 = {0};
  latch_init(&s2.stopped);
  gate_reset();
  assert_int_equal(td_actor_spawn(sys, "self", stop_fn, stop_on_stop, &s2, 0, &a), 0);
  assert_int_equal(td_actor_tell(a, mk(1, 0, 0)), 0);
  assert_int_equal(latch_wait(&gate_entered, 1), 1);
  assert_int_equal(td_actor_tell(a, mk(2, 0, 0)), 0);
  assert_int_equal(td_actor_tell(a, mk(3, 0, 0)), 0);
  assert_int_equal(td_actor_tell(a, mk(2, 0, 0)), 0);
  assert_int_equal(td_actor_tell(a, mk(2, 0, 0)), 0);
  latch_add(&gate_open);
  assert_int_equal(latch_wait(&s2.stopped, 1), 1);
  assert_int_equal(atomic_load(&s2.handled), 3);
  assert_int_equal(atomic_load(&s2.stops), 1);
  td_actor_unref(a);

  /* system_free stops an actor nobody stopped (on_stop runs once) */
  struct stop_state s3 = {0};
  latch_init(&s3.stopped);
  assert_int_equal(td_actor_spawn(sys, "left", stop_fn, stop_on_stop, &s3, 0, &a), 0);
  assert_int_equal(td_actor_tell(a, mk(2, 0, 0)), 0);
  td_actor_system_free(sys);
  assert_int_equal(atomic_load(&s3.stops), 1);
  m = mk(2, 0, 0);
  assert_int_equal(td_actor_tell(a, m), TD_ECLOSED);
  td_actor_msg_free(m);
  td_actor_unref(a);   /* after the system: allowed */
  assert_int_equal(atomic_load(&errors), 0);
  assert_int_equal(atomic_load(&frees), 9 + 5 + 2);
}

/* ---- timers ---- */
struct later_state {
  int order[8];
  int64_t at[8];
  int n;
  struct latch got;
};
static void later_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct later_state *s = td_actor_state(self);
  if (s->n < 8) {
    s->order[s->n] = ((struct tmsg *)m)->val;
    s->at[s->n] = td_mono_ms();
    s->n++;
  }
  td_actor_msg_free(m);
  latch_add(&s->got);
}

static void test_tell_later(void **st) {
  (void)st;
  struct td_actor_system *sys;
  assert_int_equal(td_actor_system_new(NULL, &sys), 0);
  struct later_state s = {0};
  latch_init(&s.got);
  struct td_actor *a;
  assert_int_equal(td_actor_spawn(sys, "later", later_fn, NULL, &s, 0, &a), 0);
  int64_t t0 = td_mono_ms();
  assert_int_equal(td_actor_tell_later(a, mk(0, 3, 0), 60), 0);
  assert_int_equal(td_actor_tell_later(a, mk(0, 2, 0), 20), 0);
  assert_int_equal(td_actor_tell_later(a, mk(0, 1, 0), 0), 0);
  assert_int_equal(td_actor_tell_later(a, mk(0, 9, 0), 600000), 0);   /* never fires: freed at system_free */
  assert_int_equal(latch_wait(&s.got, 3), 3);
  assert_int_equal(s.order[0], 1);
  assert_int_equal(s.order[1], 2);
  assert_int_equal(s.order[2], 3);
  assert_true(s.at[1] - t0 >= 20);
  assert_true(s.at[2] - t0 >= 60);
  td_actor_system_free(sys);
  assert_int_equal(atomic_load(&frees), 4);
  td_actor_unref(a);
}

/* ---- many actors, many senders ---- */
enum { ACTORS = 64, SENDERS = 4, PER_SENDER = 4000 };
struct many_state {
  int last[SENDERS];
};
static struct latch many_done;
static atomic_int many_stops;
static void many_fn(struct td_actor *self, struct td_actor_msg *m) {
  struct many_state *s = td_actor_state(self);
  struct tmsg *t = (struct tmsg *)m;
  if (t->val <= s->last[t->src]) atomic_fetch_add(&errors, 1);
  s->last[t->src] = t->val;
  td_actor_msg_free(m);
  latch_add(&many_done);
}
static void many_stop(struct td_actor *self) {
  free(td_actor_state(self));
  atomic_fetch_add(&many_stops, 1);
}
static struct td_actor *many[ACTORS];
static atomic_int efull_seen;
static void *sender_main(void *arg) {
  int src = (int)(intptr_t)arg;
  for (int i = 0; i < PER_SENDER; i++) {
    struct td_actor *a = many[(i * 7 + src) % ACTORS];
    struct td_actor_msg *m = mk(0, i, src);
    int rc;
    while ((rc = td_actor_tell(a, m)) == TD_EFULL) {
      atomic_fetch_add(&efull_seen, 1);
      sched_yield();
    }
    if (rc) atomic_fetch_add(&errors, 1);
  }
  return NULL;
}

static void test_many_actors(void **st) {
  (void)st;
  struct td_actor_system *sys;
  struct td_actor_system_config cfg = {.threads = 4, .throughput = 5};
  assert_int_equal(td_actor_system_new(&cfg, &sys), 0);
  latch_init(&many_done);
  atomic_store(&many_stops, 0);
  for (int i = 0; i < ACTORS; i++) {
    struct many_state *s = calloc(1, sizeof *s);
    for (int k = 0; k < SENDERS; k++) s->last[k] = -1;
    assert_int_equal(td_actor_spawn(sys, "many", many_fn, many_stop, s, 8, &many[i]), 0);
  }
  pthread_t t[SENDERS];
  for (int i = 0; i < SENDERS; i++) pthread_create(&t[i], NULL, sender_main, (void *)(intptr_t)i);
  for (int i = 0; i < SENDERS; i++) pthread_join(t[i], NULL);
  assert_int_equal(latch_wait(&many_done, SENDERS * PER_SENDER), SENDERS * PER_SENDER);
  td_actor_system_free(sys);
  for (int i = 0; i < ACTORS; i++) td_actor_unref(many[i]);
  assert_int_equal(atomic_load(&many_stops), ACTORS);
  assert_int_equal(atomic_load(&errors), 0);
  assert_int_equal(atomic_load(&frees), SENDERS * PER_SENDER);
  print_message("actor: %d mailbox-full retries under load\n", atomic_load(&efull_seen));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_order, reset),
    cmocka_unit_test_setup(test_throughput_fairness, reset),
    cmocka_unit_test_setup(test_mailbox_limit, reset),
    cmocka_unit_test_setup(test_stop, reset),
    cmocka_unit_test_setup(test_tell_later, reset),
    cmocka_unit_test_setup(test_many_actors, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
