/* task.c — intrusive task FIFO (task.h). */
#include "base/task.h"

void td_taskq_init(struct td_taskq *q) {
  pthread_mutex_init(&q->mu, NULL);
  q->head = q->tail = NULL;
}

void td_taskq_deinit(struct td_taskq *q) { pthread_mutex_destroy(&q->mu); }

int td_taskq_push(struct td_taskq *q, struct td_task *t) {
  t->next = NULL;
  pthread_mutex_lock(&q->mu);
  int was_empty = q->head == NULL;
  if (q->tail) q->tail->next = t; else q->head = t;
  q->tail = t;
  pthread_mutex_unlock(&q->mu);
  return was_empty;
}

struct td_task *td_taskq_take_all(struct td_taskq *q) {
  pthread_mutex_lock(&q->mu);
  struct td_task *h = q->head;
  q->head = q->tail = NULL;
  pthread_mutex_unlock(&q->mu);
  return h;
}
