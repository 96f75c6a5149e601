/* dbpool.c — storage threads for request work (dbpool.h).
 *
 * N threads share one bounded FIFO of jobs (a mutex and a condition
 * variable; jobs are linked through their embedded td_task, so submitting
 * never allocates). Each thread owns one store connection, opened in
 * td_dbpool_new: the first with migrate=true, so the schema exists before the
 * others open. */
#include "store/dbpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/err.h"
#include "base/log.h"
#include "base/thread.h"

struct worker {
  struct td_dbpool *pool;
  struct td_store *store;
  pthread_t thread;
  bool started;
};

struct td_dbpool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct td_task *head, *tail;
  size_t len, limit;
  bool closing;
  int nworkers;
  struct worker *workers;
};

static void job_done_task(struct td_task *t) {
  struct td_dbjob *j = td_container_of(t, struct td_dbjob, task);
  j->done(j);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct td_dbpool *p = w->pool;
  td_thread_name("td-db", (int)(w - p->workers));
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->closing) pthread_cond_wait(&p->cv, &p->mu);
    struct td_task *t = p->head;
    if (!t) { /* closing and drained */
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    p->head = t->next;
    if (!p->head) p->tail = NULL;
    p->len--;
    pthread_mutex_unlock(&p->mu);

    struct td_dbjob *j = td_container_of(t, struct td_dbjob, task);
    t->next = NULL;
    j->run(j, w->store);
    if (!j->done) continue;
    if (j->reply_loop) {
      j->task.fn = job_done_task;
      td_loop_post(j->reply_loop, &j->task);
    } else {
      j->done(j);
    }
  }
}

/* td_dbpool_new: see dbpool.h. */
int td_dbpool_new(const struct td_store_config *scfg, const struct td_dbpool_config *cfg, struct td_dbpool **out) {
  struct td_dbpool *p = calloc(1, sizeof *p);
  if (!p) return TD_ENOMEM;
  int n = cfg && cfg->threads > 0 ? cfg->threads : 2;
  p->limit = cfg && cfg->queue_limit > 0 ? cfg->queue_limit : 10000;
  p->workers = calloc((size_t)n, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return TD_ENOMEM;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    p->workers[i].pool = p;
    rc = td_store_open(scfg, i == 0, &p->workers[i].store);
    if (rc == 0) p->nworkers = i + 1;
  }
  for (int i = 0; i < p->nworkers && rc == 0; i++) {
    if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
      rc = TD_ENOMEM;
    else
      p->workers[i].started = true;
  }
  if (rc) {
    td_log(TD_LOG_ERROR, "store", "action=\"dbpool start\" err=%s", td_errname(rc));
    td_dbpool_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

/* td_dbpool_submit: see dbpool.h. */
int td_dbpool_submit(struct td_dbpool *p, struct td_dbjob *j) {
  if (!j || !j->run) return TD_EINVAL;
  j->task.next = NULL;
  pthread_mutex_lock(&p->mu);
  int rc = 0;
  if (p->closing)
    rc = TD_ECLOSED;
  else if (p->len >= p->limit)
    rc = TD_EFULL;
  if (rc == 0) {
    if (p->tail)
      p->tail->next = &j->task;
    else
      p->head = &j->task;
    p->tail = &j->task;
    p->len++;
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

/* td_dbpool_free: see dbpool.h. Call from a thread that is not a pool thread. */
void td_dbpool_close(struct td_dbpool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  bool was_closing = p->closing;
  p->closing = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (was_closing) return;
  for (int i = 0; i < p->nworkers; i++) {
    if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
    td_store_close(p->workers[i].store);
    p->workers[i].started = false;
    p->workers[i].store = NULL;
  }
}

void td_dbpool_free(struct td_dbpool *p) {
  if (!p) return;
  td_dbpool_close(p);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->workers);
  free(p);
}
