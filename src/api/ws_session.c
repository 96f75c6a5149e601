/* ws_session.c — the WebSocket telemetry API (reference §3): the routes
 * GET /api/ws/plugins/telemetry and GET /api/ws, authentication, sessions,
 * their subscriptions in the registry (src/core/subs.h) and the live
 * updates. Wire formats are in ws_cmd.c, store work in ws_data.c; the life
 * of a subscription command is described in ws_api_int.h.
 *
 * Threads: a session belongs to the I/O loop of its connection; everything
 * here runs there except the registry callbacks (reg_on_ts, reg_on_attrs),
 * which run on the publisher's thread (rule engine, writer, storage thread).
 * They only read what is fixed while the subscription is registered, format
 * the update and append it to the session's outbox; the first one after a
 * flush posts the flush task to the session's loop, which sends everything
 * that has come by then in one write. Memory is bounded
 * per session: at most max_queue_messages_per_session such updates are in
 * flight (counted atomically), at most max_queue_bytes_per_session of
 * updates are held for subscriptions still waiting for their initial data,
 * and the connection's own send queue (ws.h) has the same limits; past any
 * of them the session is closed with 1008 "Max pending updates limit
 * reached!" instead of queueing more. Subscriptions per session
 * (max_subscriptions_per_session) and storage jobs in flight are capped too.
 * The session is reference-counted: the connection, the auth timer, each
 * task and storage job in flight hold a reference, so it outlives them all. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "api/api_int.h"
#include "api/ws_api_int.h"
#include "base/assert.h"
#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/subs.h"
#include "transport/http/ws.h"

#define CLOSE_BAD_DATA 1007
#define CLOSE_POLICY 1008
#define CLOSE_INTERNAL 1011
#define MSG_OVERFLOW "Max pending updates limit reached!"
#define MSG_BUSY "Server is busy, try again later"
/* storage jobs one session may have in flight: its share of the pool's
 * queue (database.pool_queue_limit) */
#define MAX_JOBS_PER_SESSION 1000
/* updates per write when the flush task finds many */
#define FLUSH_BATCH 64

enum sub_state { SUB_CHECKING, SUB_PENDING, SUB_LIVE };

struct ws_sess;
struct ws_sub;

/* One registry entry of a subscription (one entity, one kind). */
struct ws_reg {
  struct td_sub s; /* s.user = the struct ws_sub */
  bool added;
};

/* A formatted update on its way to the client. */
struct ws_task {
  struct ws_sess *sess;
  uint64_t uid;
  struct ws_task *next; /* in the session's outbox, then maybe a PENDING subscription's queue */
  size_t len;
  char text[];
};

struct ws_sub {
  struct ws_sub *next;
  struct ws_sess *sess;
  uint64_t uid; /* unique in the session; tasks and jobs find the sub by it */
  int cmd_id;
  enum ws_cmd_type type; /* TS, ATTRS or EDQ */
  enum sub_state state;
  size_t weight; /* counted against max_subscriptions_per_session */
  struct td_arena arena;
  struct ws_reg *regs;
  size_t nregs;
  struct ws_edq_live live; /* EDQ */
  int allowed;
  bool barrier; /* wait for the writer before reading (ws_api_int.h) */
  struct ws_task *pend_head, *pend_tail;
};

struct ws_sess {
  struct td_ws *ws; /* NULL once the connection is gone */
  struct td_ctx *ctx;
  struct td_loop *loop;
  unsigned refs;     /* __atomic */
  unsigned inflight; /* __atomic: updates in the outbox or the flush task's hands */
  int closed;        /* __atomic: publishers stop formatting */
  int overflow;      /* __atomic: the overflow task is posted (once) */
  unsigned id;
  bool authed;
  struct td_auth_principal me;
  uv_timer_t auth_timer;
  bool timer_open;
  struct ws_sub *subs;
  size_t weight;
  size_t jobs;       /* storage jobs in flight (loop) */
  uint64_t next_uid;
  size_t max_subs;
  unsigned max_inflight;
  size_t pend_bytes;     /* updates held for PENDING subscriptions (loop) */
  size_t max_pend_bytes;
  struct td_task overflow_task;
  /* updates from publishers (any thread), taken by the flush task on the
   * loop: under load a session's updates leave in one write, not one each */
  pthread_mutex_t out_mu;
  struct ws_task *out_head, *out_tail;
  bool flush_posted; /* out_mu: flush_task is in the loop's inbox */
  struct td_task flush_task;
};

static unsigned next_sess_id; /* __atomic */

/* ---- session lifetime ---- */

static void sess_ref(struct ws_sess *s) { __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED); }

static void sess_free(struct ws_sess *s) {
  pthread_mutex_destroy(&s->out_mu);
  free(s);
}

static void sess_unref(struct ws_sess *s) {
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    TD_ASSERT(!s->subs && !s->ws && !s->out_head);
    sess_free(s);
  }
}

static void sess_close(struct ws_sess *s, int code, const char *reason) {
  __atomic_store_n(&s->closed, 1, __ATOMIC_RELEASE);
  if (s->ws) td_ws_close(s->ws, code, reason);
}

/* send_texts: messages to the client, in one write; a full send queue ends
 * the session. */
static void send_texts(struct ws_sess *s, const struct iovec *v, size_t n) {
  if (!s->ws || __atomic_load_n(&s->closed, __ATOMIC_ACQUIRE)) return;
  int rc = td_ws_send_texts(s->ws, v, n);
  if (rc == TD_EFULL) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"sending update\" err=%s close=1008 reason=\"%s\"", s->id,
                   td_errname(rc), MSG_OVERFLOW);
    sess_close(s, CLOSE_POLICY, MSG_OVERFLOW);
  } else if (rc == TD_ENOMEM) {
    sess_close(s, CLOSE_INTERNAL, "Out of memory");
  }
}

static void send_text(struct ws_sess *s, const char *text, size_t len) {
  struct iovec v = {.iov_base = (void *)text, .iov_len = len};
  send_texts(s, &v, 1);
}

static void send_buf_error(struct ws_sess *s, const struct ws_cmd *c, int code, const char *msg) {
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc = c && c->type == WS_CMD_EDQ ? ws_fmt_edq_error(&b, c->cmd_id, code, msg, (int)s->max_subs)
                                      : ws_fmt_error(&b, c ? c->cmd_id : 1, code, msg);
  if (!rc) send_text(s, b.data, b.len);
  td_buf_deinit(&b);
}

/* ---- updates from publishers ---- */

static void task_free(struct ws_task *k) {
  struct ws_sess *s = k->sess;
  free(k);
  __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
  sess_unref(s);
}

/* pend_free: a task held for a PENDING subscription (no longer in flight). */
static void pend_free(struct ws_task *k) {
  struct ws_sess *s = k->sess;
  s->pend_bytes -= k->len;
  free(k);
  sess_unref(s);
}

static struct ws_sub *sub_find(struct ws_sess *s, uint64_t uid) {
  for (struct ws_sub *p = s->subs; p; p = p->next)
    if (p->uid == uid) return p;
  return NULL;
}

/* hold: the subscription's initial data is not sent yet: keep k, in order.
 * The wait can last a writer commit (database.writer.max_delay_ms), so the
 * bound is in bytes (max_queue_bytes_per_session), like the send queue's. */
static void hold(struct ws_sess *s, struct ws_sub *sub, struct ws_task *k) {
  __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
  k->next = NULL;
  if (sub->pend_tail) sub->pend_tail->next = k;
  else sub->pend_head = k;
  sub->pend_tail = k;
  s->pend_bytes += k->len;
  if (s->pend_bytes > s->max_pend_bytes && !__atomic_load_n(&s->closed, __ATOMIC_ACQUIRE)) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"holding updates for a new subscription\" err=%s "
                   "close=1008 reason=\"%s\"", s->id, td_errname(TD_EFULL), MSG_OVERFLOW);
    sess_close(s, CLOSE_POLICY, MSG_OVERFLOW);
  }
}

/* send_batch: the n updates in v / sent, in one write; frees them. */
static void send_batch(struct ws_sess *s, struct iovec *v, struct ws_task **sent, size_t n) {
  if (n) send_texts(s, v, n);
  for (size_t i = 0; i < n; i++) task_free(sent[i]);
}

/* Loop: the updates appended since the last flush, in order. */
static void flush_run(struct td_task *t) {
  struct ws_sess *s = td_container_of(t, struct ws_sess, flush_task);
  pthread_mutex_lock(&s->out_mu);
  struct ws_task *k = s->out_head;
  s->out_head = s->out_tail = NULL;
  s->flush_posted = false;
  pthread_mutex_unlock(&s->out_mu);
  struct iovec v[FLUSH_BATCH];
  struct ws_task *sent[FLUSH_BATCH];
  size_t n = 0;
  for (struct ws_task *next; k; k = next) {
    next = k->next;
    struct ws_sub *sub = s->ws ? sub_find(s, k->uid) : NULL;
    if (!sub) {
      task_free(k);
    } else if (sub->state != SUB_LIVE) {
      hold(s, sub, k);
    } else {
      v[n] = (struct iovec){.iov_base = k->text, .iov_len = k->len};
      sent[n++] = k;
      if (n == FLUSH_BATCH) {
        send_batch(s, v, sent, n);
        n = 0;
      }
    }
  }
  send_batch(s, v, sent, n);
  sess_unref(s); /* the flush task's */
}

/* Loop: more updates were produced than the session may have in flight. */
static void overflow_run(struct td_task *t) {
  struct ws_sess *s = td_container_of(t, struct ws_sess, overflow_task);
  if (s->ws) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"queueing update\" err=%s close=1008 reason=\"%s\"", s->id,
                   td_errname(TD_EFULL), MSG_OVERFLOW);
    sess_close(s, CLOSE_POLICY, MSG_OVERFLOW);
  }
  sess_unref(s);
}

/* post_update: publisher thread; b holds the formatted update (rc its status). */
static void post_update(struct ws_sub *sub, struct td_buf *b, int rc) {
  struct ws_sess *s = sub->sess;
  if (rc) {
    td_log_limited(1, TD_LOG_WARN, "ws", "session=%u action=\"formatting update\" err=%s", s->id, td_errname(rc));
    return;
  }
  if (__atomic_add_fetch(&s->inflight, 1, __ATOMIC_ACQ_REL) > s->max_inflight) {
    __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
    if (!__atomic_exchange_n(&s->overflow, 1, __ATOMIC_ACQ_REL)) {
      __atomic_store_n(&s->closed, 1, __ATOMIC_RELEASE);
      sess_ref(s);
      td_loop_post(s->loop, &s->overflow_task);
    }
    return;
  }
  struct ws_task *k = malloc(sizeof *k + b->len + 1);
  if (!k) {
    __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
    td_log_limited(1, TD_LOG_WARN, "ws", "session=%u action=\"queueing update\" err=%s", s->id, td_errname(TD_ENOMEM));
    return;
  }
  k->sess = s;
  k->uid = sub->uid;
  k->next = NULL;
  k->len = b->len;
  memcpy(k->text, b->data, b->len + 1);
  sess_ref(s);
  pthread_mutex_lock(&s->out_mu);
  if (s->out_tail) s->out_tail->next = k;
  else s->out_head = k;
  s->out_tail = k;
  bool post = !s->flush_posted;
  s->flush_posted = true;
  pthread_mutex_unlock(&s->out_mu);
  if (post) {
    sess_ref(s);
    td_loop_post(s->loop, &s->flush_task);
  }
}

static bool sess_dead(const struct ws_sess *s) {
  return __atomic_load_n(&s->closed, __ATOMIC_ACQUIRE) || __atomic_load_n(&s->overflow, __ATOMIC_ACQUIRE);
}

/* post_formatted: post the update in b (formatting status rc) unless an
 * entity-data update turned out to carry nothing (any false); frees b. */
static void post_formatted(struct ws_sub *sub, struct td_buf *b, int rc, bool any) {
  if (rc || any) post_update(sub, b, rc);
  td_buf_deinit(b);
}

/* Publisher thread, registry lock held (subs.h). */
static void reg_on_ts(struct td_sub *r, const struct td_ts_point *pts, size_t n) {
  struct ws_sub *sub = r->user;
  if (sess_dead(sub->sess)) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  bool any = true;
  int rc = sub->type == WS_CMD_EDQ ? ws_fmt_edq_ts(&b, sub->cmd_id, &r->entity, &sub->live, pts, n, sub->allowed, &any)
                                   : ws_fmt_ts(&b, sub->cmd_id, pts, n);
  post_formatted(sub, &b, rc, any);
}

/* Publisher thread, registry lock held. Deleted attributes are sent as
 * ThingsBoard does: the key with ts 0 and an empty value. */
static void reg_on_attrs(struct td_sub *r, int scope, const struct td_kv *kvs, size_t n, int64_t ts, bool deleted) {
  struct ws_sub *sub = r->user;
  if (sess_dead(sub->sess)) return;
  struct td_buf b;
  td_buf_init(&b, 0);
  int rc;
  bool any = true;
  if (sub->type == WS_CMD_EDQ) {
    rc = ws_fmt_edq_attrs(&b, sub->cmd_id, &r->entity, &sub->live, scope, kvs, n, ts, deleted, sub->allowed, &any);
  } else {
    struct td_ts_point stack[32];
    struct td_ts_point *p = n <= 32 ? stack : malloc(n * sizeof *p);
    if (!p) {
      td_buf_deinit(&b);
      td_log_limited(1, TD_LOG_WARN, "ws", "action=\"formatting update\" err=%s", td_errname(TD_ENOMEM));
      return;
    }
    for (size_t i = 0; i < n; i++) {
      p[i].ts = deleted ? 0 : ts;
      p[i].kv = kvs[i];
      if (deleted) {
        p[i].kv.type = TD_KV_STRING;
        p[i].kv.v.s = "";
      }
    }
    rc = ws_fmt_ts(&b, sub->cmd_id, p, n);
    if (p != stack) free(p);
  }
  post_formatted(sub, &b, rc, any);
}

/* ---- subscriptions (loop) ---- */

static void sub_free(struct ws_sess *s, struct ws_sub *sub) {
  /* after remove no callback of the entry runs any more (subs.h) */
  for (size_t i = 0; i < sub->nregs; i++)
    if (sub->regs[i].added) td_subs_remove(&sub->regs[i].s);
  for (struct ws_task *k = sub->pend_head, *next; k; k = next) {
    next = k->next;
    pend_free(k);
  }
  s->weight -= sub->weight;
  td_arena_deinit(&sub->arena);
  free(sub);
}

static void sub_unlink(struct ws_sess *s, struct ws_sub *sub) {
  for (struct ws_sub **pp = &s->subs; *pp; pp = &(*pp)->next) {
    if (*pp == sub) {
      *pp = sub->next;
      return;
    }
  }
}

static void sub_drop(struct ws_sess *s, struct ws_sub *sub) {
  sub_unlink(s, sub);
  sub_free(s, sub);
}

/* sub_cancel: unsubscribe cmd_id (a no-op when there is none). */
static void sub_cancel(struct ws_sess *s, int cmd_id) {
  for (struct ws_sub *p = s->subs; p; p = p->next) {
    if (p->cmd_id == cmd_id) {
      sub_drop(s, p);
      return;
    }
  }
}

static struct ws_sub *sub_new(struct ws_sess *s, const struct ws_cmd *c, size_t weight) {
  struct ws_sub *sub = calloc(1, sizeof *sub);
  if (!sub) return NULL;
  td_arena_init(&sub->arena, 0);
  sub->sess = s;
  sub->uid = ++s->next_uid;
  sub->cmd_id = c->cmd_id;
  sub->type = c->type;
  sub->state = SUB_CHECKING;
  sub->weight = weight;
  sub->allowed = (int)s->max_subs;
  s->weight += weight;
  sub->next = s->subs;
  s->subs = sub;
  return sub;
}

/* reg_init: one registry entry (not yet added). */
static void reg_init(struct ws_reg *r, struct ws_sub *sub, enum td_sub_kind kind, const struct ws_ent *x, int scope,
                     const char *const *keys, size_t nkeys) {
  memset(r, 0, sizeof *r);
  r->s.kind = kind;
  r->s.tenant_id = x->tenant_id;
  r->s.entity = x->e;
  r->s.scope = scope;
  r->s.keys = nkeys ? keys : NULL;
  r->s.nkeys = nkeys;
  r->s.on_ts = reg_on_ts;
  r->s.on_attrs = reg_on_attrs;
  r->s.user = sub;
}

/* strs: copies of keys (NULL when none). */
static const char **strs(struct td_arena *a, const char *const *keys, size_t n, bool *ok) {
  if (!n) return NULL;
  const char **v = td_arena_alloc(a, n * sizeof *v);
  if (!v) {
    *ok = false;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!(v[i] = td_arena_strdup(a, keys[i]))) *ok = false;
  return v;
}

/* edq_live: the key sets an ENTITY_DATA subscription sends live (latestCmd
 * and tsCmd keys), copied into the sub; tsk and atk: the registry key filters. */
static bool edq_live(struct ws_sub *sub, const struct ws_edq *q, const char ***tsk, size_t *nts, const char ***atk,
                     size_t *nat) {
  struct td_arena *a = &sub->arena;
  size_t cap = q->nlatest + q->ts.nkeys + 1;
  const char **tl = td_arena_alloc(a, cap * sizeof *tl);
  const char **all_ts = td_arena_alloc(a, cap * sizeof *all_ts);
  const char **all_at = td_arena_alloc(a, cap * sizeof *all_at);
  struct ws_key *ak = td_arena_alloc(a, cap * sizeof *ak);
  if (!tl || !all_ts || !all_at || !ak) return false;
  bool ok = true;
  size_t ntl = 0, nak = 0;
  *nts = *nat = 0;
  for (size_t i = 0; i < q->nlatest && ok; i++) {
    const char *k = td_arena_strdup(a, q->latest[i].key);
    if (!k) ok = false;
    else if (q->latest[i].type == WS_KEY_TS) tl[ntl++] = all_ts[(*nts)++] = k;
    else if (q->latest[i].type != WS_KEY_FIELD) {
      ak[nak].type = q->latest[i].type;
      ak[nak++].key = all_at[(*nat)++] = k;
    }
  }
  sub->live.ts_latest = tl;
  sub->live.n_ts_latest = ntl;
  sub->live.attrs = ak;
  sub->live.nattrs = nak;
  if (q->has_ts) {
    sub->live.ts_series = strs(a, q->ts.keys, q->ts.nkeys, &ok);
    sub->live.n_ts_series = q->ts.nkeys;
    for (size_t i = 0; i < q->ts.nkeys && ok; i++) all_ts[(*nts)++] = sub->live.ts_series[i];
  }
  *tsk = all_ts;
  *atk = all_at;
  return ok;
}

/* sub_register: the checked entities into the registry (PENDING). 0, or an
 * error already answered (the caller drops the sub). */
static int sub_register(struct ws_sess *s, struct ws_sub *sub, struct ws_job *j) {
  const struct ws_cmd *c = &j->cmd;
  if (c->type == WS_CMD_EDQ) {
    if (s->weight + j->nents > s->max_subs) {
      char msg[160];
      snprintf(msg, sizeof msg, "Max subscriptions per session limit reached (%zu)!", s->max_subs);
      send_buf_error(s, c, WS_ERR_BAD_REQUEST, msg);
      return -1;
    }
    sub->weight = j->nents;
    s->weight += j->nents;
    const char **tsk, **atk;
    size_t nts, nat;
    sub->regs = td_arena_alloc(&sub->arena, (j->nents ? j->nents : 1) * 2 * sizeof *sub->regs);
    if (!sub->regs || !edq_live(sub, c->edq, &tsk, &nts, &atk, &nat)) goto nomem;
    sub->barrier = nts > 0 || nat > 0;
    for (size_t e = 0; e < j->nents; e++) {
      if (nts) reg_init(&sub->regs[sub->nregs++], sub, TD_SUB_TS, &j->ents[e], 0, tsk, nts);
      if (nat) reg_init(&sub->regs[sub->nregs++], sub, TD_SUB_ATTRS, &j->ents[e], 0, atk, nat);
    }
  } else {
    bool ok = true;
    const char **keys = strs(&sub->arena, c->keys, c->nkeys, &ok);
    sub->regs = td_arena_alloc(&sub->arena, sizeof *sub->regs);
    if (!ok || !sub->regs) goto nomem;
    reg_init(&sub->regs[0], sub, c->type == WS_CMD_TS ? TD_SUB_TS : TD_SUB_ATTRS, &j->ents[0], c->scope, keys, c->nkeys);
    sub->nregs = 1;
    sub->barrier = true;
  }
  sub->state = SUB_PENDING;
  for (size_t i = 0; i < sub->nregs; i++) {
    if (td_subs_add(&sub->regs[i].s)) goto nomem;
    sub->regs[i].added = true;
  }
  return 0;
nomem:
  send_buf_error(s, c, WS_ERR_INTERNAL, "Internal server error!");
  return -1;
}

static void emit_text(void *arg, const char *text, size_t len) { send_text(arg, text, len); }

/* sub_go_live: initial data sent; then what came meanwhile, merged into a
 * few updates of up to MERGE_BYTES (one by one, a burst held during a
 * writer commit could overrun the send queue of a client that keeps up). */
#define MERGE_BYTES 65536
static void sub_go_live(struct ws_sess *s, struct ws_sub *sub) {
  sub->state = SUB_LIVE;
  struct ws_task *head = sub->pend_head;
  sub->pend_head = sub->pend_tail = NULL;
  size_t n = 0;
  for (struct ws_task *k = head; k; k = k->next) n++;
  const char **texts = n > 1 ? malloc(n * sizeof *texts) : NULL;
  size_t *lens = n > 1 ? malloc(n * sizeof *lens) : NULL;
  if (texts && lens) {
    size_t i = 0;
    for (struct ws_task *k = head; k; k = k->next, i++) {
      texts[i] = k->text;
      lens[i] = k->len;
    }
    if (ws_merge_updates(texts, lens, n, sub->type == WS_CMD_EDQ, MERGE_BYTES, emit_text, s))
      sess_close(s, CLOSE_INTERNAL, "Out of memory");
  } else {
    for (struct ws_task *k = head; k; k = k->next) send_text(s, k->text, k->len);
  }
  free(texts);
  free(lens);
  for (struct ws_task *k = head, *next; k; k = next) {
    next = k->next;
    pend_free(k);
  }
}

/* ---- storage jobs ---- */

static void job_free(struct ws_job *j) {
  struct ws_sess *s = j->sess;
  ws_data_free(j);
  td_arena_deinit(&j->arena);
  free(j);
  s->jobs--;
  sess_unref(s);
}

static void job_run(struct td_dbjob *d, struct td_store *st) {
  struct ws_job *j = td_container_of(d, struct ws_job, db);
  if (j->err) return; /* set on the way (barrier): nothing to do */
  if (j->stage == WS_STAGE_CHECK) {
    ws_data_check(j, st);
    if (!j->err && j->uid == 0) ws_data_read(j, st); /* one-shot: read at once */
  } else {
    ws_data_read(j, st);
  }
}

static void job_done(struct td_dbjob *d);

/* submit: the job to the storage pool; on failure answers and frees. */
static void job_submit(struct ws_job *j) {
  int rc = td_dbpool_submit(j->sess->ctx->db, &j->db);
  if (!rc) return;
  td_log_limited(1, TD_LOG_WARN, "ws", "session=%u action=\"submitting storage job\" err=%s", j->sess->id,
                 td_errname(rc));
  j->err = WS_ERR_INTERNAL;
  snprintf(j->msg, sizeof j->msg, "%s", MSG_BUSY);
  job_done(&j->db);
}

static void job_task(struct td_task *t) { job_done(&td_container_of(t, struct ws_job, task)->db); }

/* Writer thread: everything queued before the barrier is committed. */
static void barrier_done(struct td_write_req *r, int status) {
  struct ws_job *j = td_container_of(r, struct ws_job, barrier);
  if (td_dbpool_submit(j->sess->ctx->db, &j->db)) {
    j->err = WS_ERR_INTERNAL;
    snprintf(j->msg, sizeof j->msg, "%s", MSG_BUSY);
    td_loop_post(j->sess->loop, &j->task);
  }
}

/* Loop: a stage of a command's store work is done. */
static void job_done(struct td_dbjob *d) {
  struct ws_job *j = td_container_of(d, struct ws_job, db);
  struct ws_sess *s = j->sess;
  if (!s->ws) goto out;
  if (j->uid == 0) { /* one-shot */
    if (j->err) send_buf_error(s, &j->cmd, j->err, j->msg);
    else send_text(s, j->text, j->len);
    goto out;
  }
  struct ws_sub *sub = sub_find(s, j->uid);
  if (!sub) goto out; /* unsubscribed or replaced meanwhile */
  if (j->err) {
    send_buf_error(s, &j->cmd, j->err, j->msg);
    sub_drop(s, sub);
    goto out;
  }
  if (j->stage == WS_STAGE_CHECK) {
    if (sub_register(s, sub, j)) {
      sub_drop(s, sub);
      goto out;
    }
    j->stage = WS_STAGE_READ;
    if (sub->barrier && s->ctx->writer) {
      memset(&j->barrier, 0, sizeof j->barrier);
      j->barrier.kind = TD_WRITE_ATTRS; /* no rows: only its place in the queue matters */
      j->barrier.scope = TD_SCOPE_CLIENT;
      j->barrier.done = barrier_done;
      j->barrier.urgent = true; /* the client waits for its first reply */
      if (td_writer_submit(s->ctx->writer, &j->barrier) == 0) return;
    }
    job_submit(j);
    return;
  }
  send_text(s, j->text, j->len);
  sub_go_live(s, sub);
out:
  job_free(j);
}

static struct ws_job *job_new(struct ws_sess *s, const struct ws_cmd *c, uint64_t uid) {
  struct ws_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  td_arena_init(&j->arena, 0);
  if (ws_cmd_copy(&j->arena, c, &j->cmd)) {
    td_arena_deinit(&j->arena);
    free(j);
    return NULL;
  }
  j->sess = s;
  j->uid = uid;
  j->stage = WS_STAGE_CHECK;
  j->me = s->me;
  j->allowed = (int)s->max_subs;
  j->db.run = job_run;
  j->db.done = job_done;
  j->db.reply_loop = s->loop;
  j->task.fn = job_task;
  s->jobs++;
  sess_ref(s);
  return j;
}

/* ---- commands (loop) ---- */

static bool edq_subscribes(const struct ws_cmd *c) {
  return c->edq && ((c->edq->has_latest && c->edq->nlatest) || (c->edq->has_ts && c->edq->ts.nkeys));
}

static void handle_cmd(struct ws_sess *s, const struct ws_cmd *c) {
  if (c->cmd_id < 0) {
    send_buf_error(s, c, WS_ERR_BAD_REQUEST, "Cmd id is negative value!");
    return;
  }
  switch (c->type) {
  case WS_CMD_UNSUB: sub_cancel(s, c->cmd_id); return;
  case WS_CMD_UNSUPPORTED: {
    char msg[160];
    snprintf(msg, sizeof msg, "Unsupported command: %s", c->name ? c->name : "?");
    send_buf_error(s, c, WS_ERR_BAD_REQUEST, msg);
    return;
  }
  case WS_CMD_TS:
  case WS_CMD_ATTRS:
    if (c->unsubscribe) {
      sub_cancel(s, c->cmd_id);
      return;
    }
    break;
  default: break;
  }
  if (c->error) {
    send_buf_error(s, c, WS_ERR_BAD_REQUEST, c->error);
    return;
  }
  if (s->jobs >= MAX_JOBS_PER_SESSION) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"running command\" err=%s", s->id, td_errname(TD_EBUSY));
    send_buf_error(s, c, WS_ERR_BAD_REQUEST, "Too many commands in progress, try again later!");
    return;
  }
  bool subscribe = c->type == WS_CMD_TS || c->type == WS_CMD_ATTRS || edq_subscribes(c);
  if (c->type != WS_CMD_HISTORY) sub_cancel(s, c->cmd_id); /* a reused cmdId replaces */
  struct ws_sub *sub = NULL;
  if (subscribe) {
    size_t w = c->type == WS_CMD_EDQ ? 0 : 1; /* EDQ: one per entity, counted once they are known */
    if (s->weight + (w ? w : 1) > s->max_subs) {
      char msg[160];
      snprintf(msg, sizeof msg, "Max subscriptions per session limit reached (%zu)!", s->max_subs);
      td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"subscribing\" err=%s", s->id, td_errname(TD_EFULL));
      send_buf_error(s, c, WS_ERR_BAD_REQUEST, msg);
      return;
    }
    if (!(sub = sub_new(s, c, w))) {
      send_buf_error(s, c, WS_ERR_INTERNAL, "Internal server error!");
      return;
    }
  }
  struct ws_job *j = job_new(s, c, sub ? sub->uid : 0);
  if (!j) {
    if (sub) sub_drop(s, sub);
    send_buf_error(s, c, WS_ERR_INTERNAL, "Internal server error!");
    return;
  }
  job_submit(j);
}

/* ---- authentication ---- */

static void timer_closed(uv_handle_t *h) { sess_unref(h->data); }

static void timer_close(struct ws_sess *s) {
  if (!s->timer_open) return;
  s->timer_open = false;
  if (uv_is_closing((uv_handle_t *)&s->auth_timer)) {
    /* closed by the loop's shutdown walk, without our callback: that close
     * has completed by the time the connection reports its end */
    sess_unref(s);
    return;
  }
  uv_timer_stop(&s->auth_timer);
  uv_close((uv_handle_t *)&s->auth_timer, timer_closed);
}

static void on_auth_timeout(uv_timer_t *t) {
  struct ws_sess *s = t->data;
  if (!s->authed && s->ws) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"waiting for authCmd\" err=%s close=1008", s->id,
                   td_errname(TD_ETIMEDOUT));
    sess_close(s, CLOSE_POLICY, "Authentication timeout");
  }
}

/* authenticate: verify a JWT for the session; on failure closes with 1007. */
static int authenticate(struct ws_sess *s, const char *token) {
  struct td_auth_principal me;
  int rc = token && *token ? td_auth_verify(s->ctx->auth, token, td_now_ms() / 1000, &me) : TD_EAUTH;
  if (!rc && (me.authority == TD_AUTHORITY_REFRESH_TOKEN || me.authority == TD_AUTHORITY_NONE)) rc = TD_EAUTH;
  if (rc) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"checking JWT\" err=%s close=1007", s->id, td_errname(rc));
    sess_close(s, CLOSE_BAD_DATA, rc == TD_ETIMEDOUT ? "Token has expired" : "Invalid JWT token");
    return -1;
  }
  s->me = me;
  s->authed = true;
  timer_close(s);
  return 0;
}

/* ---- the connection ---- */

static void on_text(struct td_ws *ws, void *user, const char *data, size_t len) {
  struct ws_sess *s = user;
  if (__atomic_load_n(&s->closed, __ATOMIC_ACQUIRE)) return;
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_msg m;
  int rc = ws_parse(data, len, &a, &m);
  if (!s->authed) {
    if (rc) {
      td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"reading first message\" err=%s close=1007", s->id,
                     td_errname(rc));
      sess_close(s, CLOSE_BAD_DATA, WS_MSG_PARSE);
      goto out;
    }
    if (!m.has_auth) {
      td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"reading first message\" err=%s close=1008", s->id,
                     td_errname(TD_EAUTH));
      sess_close(s, CLOSE_POLICY, "Auth cmd is missing");
      goto out;
    }
    if (authenticate(s, m.token)) goto out;
  } else if (rc) {
    td_log_limited(5, TD_LOG_INFO, "ws", "session=%u action=\"parsing command\" err=%s", s->id, td_errname(rc));
    send_buf_error(s, NULL, WS_ERR_BAD_REQUEST, WS_MSG_PARSE);
    goto out;
  }
  for (size_t i = 0; i < m.ncmds && s->ws && !__atomic_load_n(&s->closed, __ATOMIC_ACQUIRE); i++)
    handle_cmd(s, &m.cmds[i]);
out:
  td_arena_deinit(&a);
}

static void on_close(struct td_ws *ws, void *user, int code) {
  struct ws_sess *s = user;
  td_log(TD_LOG_DEBUG, "ws", "session=%u action=closed code=%d subscriptions=%zu", s->id, code, s->weight);
  __atomic_store_n(&s->closed, 1, __ATOMIC_RELEASE);
  s->ws = NULL;
  while (s->subs) sub_drop(s, s->subs);
  timer_close(s);
  sess_unref(s); /* the connection's */
}

static const struct td_ws_ops ops = {.on_text = on_text, .on_close = on_close};

/* h_ws: GET /api/ws/plugins/telemetry and GET /api/ws (loop). */
static void h_ws(struct td_http_req *r) {
  struct td_ctx *ctx = api_ctx(r);
  const struct td_config *cfg = ctx->cfg;
  if (!td_ws_is_upgrade(r)) {
    api_respond_error(r, 400, TD_TB_BAD_REQUEST_PARAMS, "Can \"Upgrade\" only to \"WebSocket\".");
    return;
  }
  struct ws_sess *s = calloc(1, sizeof *s);
  if (!s) {
    api_respond_error(r, 503, TD_TB_GENERAL, "Out of memory");
    return;
  }
  s->ctx = ctx;
  s->loop = r->loop;
  s->refs = 1;
  s->id = __atomic_add_fetch(&next_sess_id, 1, __ATOMIC_RELAXED);
  s->max_subs = cfg->ws_max_subscriptions_per_session > 0 ? (size_t)cfg->ws_max_subscriptions_per_session : 1000;
  s->max_inflight = cfg->ws_max_queue_messages > 0 ? (unsigned)cfg->ws_max_queue_messages : 1000;
  s->max_pend_bytes = cfg->ws_max_queue_bytes > 0 ? (size_t)cfg->ws_max_queue_bytes : (4u << 20);
  s->overflow_task.fn = overflow_run;
  s->flush_task.fn = flush_run;
  pthread_mutex_init(&s->out_mu, NULL);
  /* the token is read before accepting: r is gone afterwards */
  const char *q = td_http_query_get(r, "token");
  char *token = q && *q ? strdup(q) : NULL;
  struct td_ws_config wc = {
      .max_message = cfg->ws_max_message_size > 0 ? (size_t)cfg->ws_max_message_size : 0,
      .max_queued_msgs = s->max_inflight,
      .max_queued_bytes = cfg->ws_max_queue_bytes > 0 ? (size_t)cfg->ws_max_queue_bytes : 0,
      .ping_interval_ms = cfg->ws_ping_timeout_ms > 0 ? (int)cfg->ws_ping_timeout_ms : 0,
  };
  struct td_loop *loop = r->loop;
  s->ws = td_ws_accept(r, &wc, &ops, s);
  if (!s->ws) {
    free(token);
    sess_free(s);
    return;
  }
  if (token) {
    (void)authenticate(s, token);
    free(token);
    return;
  }
  /* no token in the URL: the first message must bring an authCmd in time */
  if (uv_timer_init(&loop->uv, &s->auth_timer) == 0) {
    s->auth_timer.data = s;
    s->timer_open = true;
    sess_ref(s);
    int64_t ms = cfg->ws_auth_timeout_ms > 0 ? cfg->ws_auth_timeout_ms : 10000;
    uv_timer_start(&s->auth_timer, on_auth_timeout, (uint64_t)ms, 0);
  } else {
    sess_close(s, CLOSE_INTERNAL, "Internal server error");
  }
}

/* api_ws_register: the two WebSocket routes (api_int.h). Before the server starts. */
int api_ws_register(struct td_http_router *rt, struct td_ctx *ctx) {
  static const struct api_route routes[] = {
      {TD_HTTP_GET, "/api/ws/plugins/telemetry", h_ws},
      {TD_HTTP_GET, "/api/ws", h_ws},
  };
  return api_routes(rt, ctx, routes, sizeof routes / sizeof routes[0]);
}
