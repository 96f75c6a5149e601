/* task.h — an intrusive unit of work handed from one thread to another.
 *
 * A task lives inside the struct of whoever posts it (a request, a job), so
 * posting never allocates and can never fail: the number of tasks in flight
 * is bounded by the number of live requests, which are bounded themselves.
 * td_taskq is a mutex-protected FIFO of such tasks. */
#ifndef TD_BASE_TASK_H
#define TD_BASE_TASK_H
#include <pthread.h>
#include <stddef.h>

struct td_task;
typedef void (*td_task_fn)(struct td_task *t);

struct td_task {
  struct td_task *next;
  td_task_fn fn;
};

struct td_taskq {
  pthread_mutex_t mu;
  struct td_task *head, *tail;
};

void td_taskq_init(struct td_taskq *q);
void td_taskq_deinit(struct td_taskq *q);
/* td_taskq_push: append; returns 1 if the queue was empty before (wake the consumer). */
int td_taskq_push(struct td_taskq *q, struct td_task *t);
/* td_taskq_take_all: detach the whole list (FIFO order) for processing. */
struct td_task *td_taskq_take_all(struct td_taskq *q);

#define td_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#endif
