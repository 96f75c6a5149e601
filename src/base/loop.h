/* loop.h — an I/O thread: one libuv loop plus an inbox of tasks.
 *
 * Other threads (storage workers, the queue writer, actors) finish work for a
 * loop by td_loop_post(): the task runs on the loop's thread, in post order.
 * Nothing may block a loop: no database call, no script, no DNS. */
#ifndef TD_BASE_LOOP_H
#define TD_BASE_LOOP_H
#include <uv.h>
#include "base/task.h"

struct td_loop {
  uv_loop_t uv;
  uv_async_t wake;
  struct td_taskq inbox;
  uv_thread_t thread;
  int index;          /* 0..n-1 among the I/O loops */
  int running;
  void (*on_stop)(struct td_loop *l); /* called on the loop thread when stopping; closes its handles */
  void *data;         /* owner's per-loop state */
  struct td_task stop_task;
};

/* td_loop_init: set up the uv loop and inbox (caller's storage). */
int td_loop_init(struct td_loop *l, int index);
/* td_loop_start: run the loop on a new thread. */
int td_loop_start(struct td_loop *l);
/* td_loop_post: run t->fn on the loop thread. Any thread; never fails. */
void td_loop_post(struct td_loop *l, struct td_task *t);
/* td_loop_stop: ask the loop to call on_stop, close remaining handles and exit;
 * then join its thread. Call from another thread. */
void td_loop_stop(struct td_loop *l);
void td_loop_deinit(struct td_loop *l);
#endif
