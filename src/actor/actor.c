/* actor.c — the actor runtime (actor.h): bounded intrusive MPSC mailboxes,
 * a pool of dispatcher threads sharing one run queue, and one timer thread
 * for td_actor_tell_later.
 *
 * Scheduling: an actor is in the run queue at most once, guarded by its
 * `scheduled` flag (whoever flips it 0 -> 1 enqueues it and gives the run
 * queue one reference). A dispatcher that pops it owns it for one turn: up
 * to `throughput` messages, then it clears the flag and re-checks the mailbox
 * count (and the stop flag), re-enqueuing if needed. Senders do the mirror
 * image (count++, push, flip the flag), so with sequentially consistent
 * atomics no message is left behind without a scheduled turn.
 *
 * Lifetimes: the system's actor list holds one reference until on_stop has
 * run; callers hold theirs. The struct is freed with its last reference,
 * which therefore always comes after the stop. Messages that race with a
 * stop are freed by a later turn or, at the latest, when the struct is freed. */
#include "actor/actor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/log.h"
#include "base/thread.h"
#include "base/time.h"

struct td_actor {
  atomic_int refs;
  struct td_actor_system *sys;
  char *name;
  td_actor_fn fn;
  td_actor_stop_fn on_stop;
  void *state;
  size_t limit;
  atomic_size_t count;          /* messages in the mailbox (reserved before the push) */
  struct td_actor_msg *head;    /* MPSC (Vyukov): producers swap head */
  struct td_actor_msg *tail;    /* the owner of the current turn pops here */
  struct td_actor_msg stub;
  atomic_int scheduled;
  atomic_int stopping;
  int stopped;                  /* on_stop done; only touched inside turns */
  struct td_actor *run_next;
  struct td_actor *all_prev, *all_next;
};

struct timer {
  int64_t due;
  uint64_t seq;                 /* ties keep tell_later order */
  struct td_actor *a;           /* a reference */
  struct td_actor_msg *m;
};

struct td_actor_system {
  int throughput;
  int nthreads;
  pthread_t *threads;

  pthread_mutex_t rq_mu;
  pthread_cond_t rq_cv;
  struct td_actor *rq_head, *rq_tail;
  int rq_stop;

  pthread_mutex_t all_mu;
  pthread_cond_t all_cv;
  struct td_actor *all;
  size_t nall;
  int closing;

  pthread_mutex_t tm_mu;
  pthread_cond_t tm_cv;
  struct timer *heap;
  size_t nheap, capheap;
  uint64_t seq;
  int tm_stop;
  int tm_started;
  pthread_t timer;
};

/* ---- mailbox: intrusive MPSC queue (Vyukov) ---- */

static void mb_push(struct td_actor *a, struct td_actor_msg *m) {
  __atomic_store_n(&m->next, NULL, __ATOMIC_RELAXED);
  struct td_actor_msg *prev = __atomic_exchange_n(&a->head, m, __ATOMIC_ACQ_REL);
  __atomic_store_n(&prev->next, m, __ATOMIC_RELEASE);
}

/* Single consumer. NULL when empty, or (transiently) while a producer is
 * between its swap and its link; the count tells the caller to come back. */
static struct td_actor_msg *mb_pop(struct td_actor *a) {
  struct td_actor_msg *tail = a->tail;
  struct td_actor_msg *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (tail == &a->stub) {
    if (!next) return NULL;
    a->tail = next;
    tail = next;
    next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
  }
  if (next) {
    a->tail = next;
    return tail;
  }
  if (tail != __atomic_load_n(&a->head, __ATOMIC_ACQUIRE)) return NULL;
  mb_push(a, &a->stub);
  next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (next) {
    a->tail = next;
    return tail;
  }
  return NULL;
}

static void mb_drain(struct td_actor *a) {
  struct td_actor_msg *m;
  while ((m = mb_pop(a))) {
    atomic_fetch_sub(&a->count, 1);
    td_actor_msg_free(m);
  }
}

/* ---- references ---- */

/* td_actor_ref: one more reference (returned). Any thread. */
struct td_actor *td_actor_ref(struct td_actor *a) {
  atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
  return a;
}

/* td_actor_unref: drop a reference; the last one frees the struct (and any
 * message still in the mailbox). The state is on_stop's to free. Any thread. */
void td_actor_unref(struct td_actor *a) {
  if (!a) return;
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
  /* Nobody else can push now: every sender holds a reference. */
  mb_drain(a);
  free(a->name);
  free(a);
}

void *td_actor_state(struct td_actor *a) { return a->state; }
const char *td_actor_name(struct td_actor *a) { return a->name; }
struct td_actor_system *td_actor_system_of(struct td_actor *a) { return a->sys; }
size_t td_actor_mailbox_len(struct td_actor *a) { return atomic_load(&a->count); }

/* ---- run queue ---- */

static void schedule(struct td_actor *a) {
  if (atomic_exchange(&a->scheduled, 1)) return;
  td_actor_ref(a);   /* the run queue's reference */
  struct td_actor_system *s = a->sys;
  pthread_mutex_lock(&s->rq_mu);
  a->run_next = NULL;
  if (s->rq_tail) s->rq_tail->run_next = a; else s->rq_head = a;
  s->rq_tail = a;
  pthread_cond_signal(&s->rq_cv);
  pthread_mutex_unlock(&s->rq_mu);
}

/* Inside a turn: free pending mail, run on_stop once, leave the system's list. */
static void do_stop(struct td_actor *a) {
  mb_drain(a);
  if (a->stopped) return;
  a->stopped = 1;
  if (a->on_stop) a->on_stop(a);
  struct td_actor_system *s = a->sys;
  pthread_mutex_lock(&s->all_mu);
  if (a->all_prev) a->all_prev->all_next = a->all_next; else s->all = a->all_next;
  if (a->all_next) a->all_next->all_prev = a->all_prev;
  a->all_prev = a->all_next = NULL;
  s->nall--;
  pthread_cond_broadcast(&s->all_cv);
  pthread_mutex_unlock(&s->all_mu);
  td_actor_unref(a);   /* the list's reference; the turn still holds one */
}

static void run_turn(struct td_actor_system *s, struct td_actor *a) {
  for (int n = 0; n < s->throughput; n++) {
    if (atomic_load(&a->stopping)) break;
    struct td_actor_msg *m = mb_pop(a);
    if (!m) break;
    atomic_fetch_sub(&a->count, 1);
    a->fn(a, m);
  }
  if (atomic_load(&a->stopping)) do_stop(a);
  atomic_store(&a->scheduled, 0);
  int again = atomic_load(&a->count) > 0 || (atomic_load(&a->stopping) && !a->stopped);
  if (again && !atomic_exchange(&a->scheduled, 1)) {
    /* Keep the turn's reference for the run queue. */
    pthread_mutex_lock(&s->rq_mu);
    a->run_next = NULL;
    if (s->rq_tail) s->rq_tail->run_next = a; else s->rq_head = a;
    s->rq_tail = a;
    pthread_cond_signal(&s->rq_cv);
    pthread_mutex_unlock(&s->rq_mu);
    return;
  }
  td_actor_unref(a);
}

static void *dispatcher_main(void *arg) {
  struct td_actor_system *s = arg;
  td_thread_name("td-actor", -1);
  pthread_mutex_lock(&s->rq_mu);
  for (;;) {
    while (!s->rq_head && !s->rq_stop) pthread_cond_wait(&s->rq_cv, &s->rq_mu);
    if (!s->rq_head) break;
    struct td_actor *a = s->rq_head;
    s->rq_head = a->run_next;
    if (!s->rq_head) s->rq_tail = NULL;
    pthread_mutex_unlock(&s->rq_mu);
    run_turn(s, a);
    pthread_mutex_lock(&s->rq_mu);
  }
  pthread_mutex_unlock(&s->rq_mu);
  return NULL;
}

/* ---- timers ---- */

static int timer_less(const struct timer *x, const struct timer *y) {
  return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void heap_push(struct td_actor_system *s, struct timer t) {
  size_t i = s->nheap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!timer_less(&t, &s->heap[p])) break;
    s->heap[i] = s->heap[p];
    i = p;
  }
  s->heap[i] = t;
}

static struct timer heap_pop(struct td_actor_system *s) {
  struct timer top = s->heap[0];
  struct timer last = s->heap[--s->nheap];
  size_t i = 0, n = s->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && timer_less(&s->heap[c + 1], &s->heap[c])) c++;
    if (!timer_less(&s->heap[c], &last)) break;
    s->heap[i] = s->heap[c];
    i = c;
  }
  if (n) s->heap[i] = last;
  return top;
}

static void *timer_main(void *arg) {
  struct td_actor_system *s = arg;
  td_thread_name("td-timer", -1);
  pthread_mutex_lock(&s->tm_mu);
  while (!s->tm_stop) {
    if (!s->nheap) {
      pthread_cond_wait(&s->tm_cv, &s->tm_mu);
      continue;
    }
    int64_t now = td_mono_ms();
    if (s->heap[0].due > now) {
      struct timespec ts = td_mono_deadline_us((s->heap[0].due - now) * 1000);
      pthread_cond_timedwait(&s->tm_cv, &s->tm_mu, &ts);
      continue;
    }
    struct timer t = heap_pop(s);
    pthread_mutex_unlock(&s->tm_mu);
    td_actor_tell_force(t.a, t.m);
    td_actor_unref(t.a);
    pthread_mutex_lock(&s->tm_mu);
  }
  pthread_mutex_unlock(&s->tm_mu);
  return NULL;
}

/* ---- system ---- */

static void sys_free_mem(struct td_actor_system *s) {
  free(s->threads);
  free(s->heap);
  pthread_mutex_destroy(&s->rq_mu);
  pthread_cond_destroy(&s->rq_cv);
  pthread_mutex_destroy(&s->all_mu);
  pthread_cond_destroy(&s->all_cv);
  pthread_mutex_destroy(&s->tm_mu);
  pthread_cond_destroy(&s->tm_cv);
  free(s);
}

static void join_dispatchers(struct td_actor_system *s, int n) {
  pthread_mutex_lock(&s->rq_mu);
  s->rq_stop = 1;
  pthread_cond_broadcast(&s->rq_cv);
  pthread_mutex_unlock(&s->rq_mu);
  for (int i = 0; i < n; i++) pthread_join(s->threads[i], NULL);
}

/* td_actor_system_new: start cfg->threads dispatchers (<= 0: the number of
 * cores) and the timer thread. cfg may be NULL for defaults. Returns 0 or
 * TD_ENOMEM. The caller frees with td_actor_system_free. */
int td_actor_system_new(const struct td_actor_system_config *cfg, struct td_actor_system **out) {
  struct td_actor_system *s = calloc(1, sizeof *s);
  if (!s) return TD_ENOMEM;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  s->nthreads = cfg && cfg->threads > 0 ? cfg->threads : (cores > 0 ? (int)cores : 1);
  s->throughput = cfg && cfg->throughput > 0 ? cfg->throughput : 5;
  pthread_mutex_init(&s->rq_mu, NULL);
  pthread_cond_init(&s->rq_cv, NULL);
  pthread_mutex_init(&s->all_mu, NULL);
  pthread_cond_init(&s->all_cv, NULL);
  pthread_mutex_init(&s->tm_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->tm_cv, &ca);
  pthread_condattr_destroy(&ca);
  s->threads = calloc((size_t)s->nthreads, sizeof *s->threads);
  if (!s->threads) { sys_free_mem(s); return TD_ENOMEM; }
  for (int i = 0; i < s->nthreads; i++) {
    if (pthread_create(&s->threads[i], NULL, dispatcher_main, s)) {
      join_dispatchers(s, i);
      sys_free_mem(s);
      return TD_ENOMEM;
    }
  }
  if (pthread_create(&s->timer, NULL, timer_main, s)) {
    join_dispatchers(s, s->nthreads);
    sys_free_mem(s);
    return TD_ENOMEM;
  }
  s->tm_started = 1;
  *out = s;
  return 0;
}

/* td_actor_system_free: see actor.h. Order: timers (their messages are
 * freed), then every actor is stopped and its on_stop awaited, then the
 * dispatchers are joined. Actors still referenced by callers stay allocated
 * until their last td_actor_unref (which does not touch the system). */
void td_actor_system_free(struct td_actor_system *s) {
  if (!s) return;
  pthread_mutex_lock(&s->tm_mu);
  s->tm_stop = 1;
  pthread_cond_signal(&s->tm_cv);
  pthread_mutex_unlock(&s->tm_mu);
  if (s->tm_started) pthread_join(s->timer, NULL);
  while (s->nheap) {
    struct timer t = heap_pop(s);
    td_actor_msg_free(t.m);
    td_actor_unref(t.a);
  }

  pthread_mutex_lock(&s->all_mu);
  s->closing = 1;
  for (struct td_actor *a = s->all; a; a = a->all_next) td_actor_stop(a);
  while (s->nall) pthread_cond_wait(&s->all_cv, &s->all_mu);
  pthread_mutex_unlock(&s->all_mu);

  join_dispatchers(s, s->nthreads);
  /* Turns queued by senders racing with the shutdown: only references left. */
  while (s->rq_head) {
    struct td_actor *a = s->rq_head;
    s->rq_head = a->run_next;
    td_actor_unref(a);
  }
  sys_free_mem(s);
}

/* td_actor_spawn: see actor.h. TD_ECLOSED while the system is being freed. */
int td_actor_spawn(struct td_actor_system *s, const char *name, td_actor_fn fn, td_actor_stop_fn on_stop,
                   void *state, size_t mailbox_limit, struct td_actor **out) {
  if (!s || !fn || !out) return TD_EINVAL;
  struct td_actor *a = calloc(1, sizeof *a);
  if (!a) return TD_ENOMEM;
  a->name = strdup(name ? name : "");
  if (!a->name) { free(a); return TD_ENOMEM; }
  atomic_init(&a->refs, 2);   /* the caller's and the system list's */
  a->sys = s;
  a->fn = fn;
  a->on_stop = on_stop;
  a->state = state;
  a->limit = mailbox_limit ? mailbox_limit : 10000;
  a->head = a->tail = &a->stub;
  pthread_mutex_lock(&s->all_mu);
  if (s->closing) {
    pthread_mutex_unlock(&s->all_mu);
    free(a->name);
    free(a);
    return TD_ECLOSED;
  }
  a->all_next = s->all;
  if (s->all) s->all->all_prev = a;
  s->all = a;
  s->nall++;
  pthread_mutex_unlock(&s->all_mu);
  *out = a;
  return 0;
}

static int tell(struct td_actor *a, struct td_actor_msg *m, int force) {
  if (atomic_load(&a->stopping)) return TD_ECLOSED;
  size_t before = atomic_fetch_add(&a->count, 1);
  if (!force && before >= a->limit) {
    atomic_fetch_sub(&a->count, 1);
    return TD_EFULL;
  }
  mb_push(a, m);
  schedule(a);
  return 0;
}

/* td_actor_tell: see actor.h. Any thread holding a reference to a. */
int td_actor_tell(struct td_actor *a, struct td_actor_msg *m) { return tell(a, m, 0); }

/* td_actor_tell_force: see actor.h. On TD_ECLOSED m has been freed. */
int td_actor_tell_force(struct td_actor *a, struct td_actor_msg *m) {
  int rc = tell(a, m, 1);
  if (rc) td_actor_msg_free(m);
  return rc;
}

/* td_actor_tell_later: see actor.h. The timer holds a reference to a until
 * it fires (or the system is freed). On error m has been freed. */
int td_actor_tell_later(struct td_actor *a, struct td_actor_msg *m, int64_t delay_ms) {
  struct td_actor_system *s = a->sys;
  if (atomic_load(&a->stopping)) { td_actor_msg_free(m); return TD_ECLOSED; }
  if (delay_ms < 0) delay_ms = 0;
  pthread_mutex_lock(&s->tm_mu);
  int rc = s->tm_stop ? TD_ECLOSED : 0;
  if (!rc && s->nheap == s->capheap) {
    size_t cap = s->capheap ? s->capheap * 2 : 64;
    struct timer *h = realloc(s->heap, cap * sizeof *h);
    if (!h) rc = TD_ENOMEM;
    else { s->heap = h; s->capheap = cap; }
  }
  if (rc) {
    pthread_mutex_unlock(&s->tm_mu);
    td_actor_msg_free(m);
    return rc;
  }
  struct timer t = {td_mono_ms() + delay_ms, s->seq++, td_actor_ref(a), m};
  heap_push(s, t);
  if (s->heap[0].m == m) pthread_cond_signal(&s->tm_cv);   /* new earliest: re-arm */
  pthread_mutex_unlock(&s->tm_mu);
  return 0;
}

/* td_actor_stop: see actor.h. */
void td_actor_stop(struct td_actor *a) {
  if (atomic_exchange(&a->stopping, 1)) return;
  schedule(a);
}
