/* loop.c — I/O threads with a task inbox (loop.h). */
#include "base/loop.h"
#include "base/err.h"
#include "base/thread.h"

#include <stdatomic.h>

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_wake(uv_async_t *a) {
  struct td_loop *l = a->data;
  struct td_task *t = td_taskq_take_all(&l->inbox);
  while (t) {
    struct td_task *next = t->next;
    if (t == &l->stop_task) {
      if (l->on_stop) l->on_stop(l);
      uv_walk(&l->uv, close_walk, NULL);
      l->running = 0;
    } else {
      t->fn(t);
    }
    t = next;
  }
}

int td_loop_init(struct td_loop *l, int index) {
  l->index = index;
  l->running = 0;
  l->on_stop = NULL;
  l->data = NULL;
  td_taskq_init(&l->inbox);
  if (uv_loop_init(&l->uv)) return TD_EIO;
  if (uv_async_init(&l->uv, &l->wake, on_wake)) return TD_EIO;
  l->wake.data = l;
  return 0;
}

static void loop_main(void *arg) {
  struct td_loop *l = arg;
  td_thread_name("td-io", l->index);
  uv_run(&l->uv, UV_RUN_DEFAULT);
}

int td_loop_start(struct td_loop *l) {
  l->running = 1;
  return uv_thread_create(&l->thread, loop_main, l) ? TD_EIO : 0;
}

void td_loop_post(struct td_loop *l, struct td_task *t) {
  td_taskq_push(&l->inbox, t);
  /* uv_async_send coalesces; cheap enough to call on every post. */
  uv_async_send(&l->wake);
}

void td_loop_stop(struct td_loop *l) {
  td_loop_post(l, &l->stop_task);
  uv_thread_join(&l->thread);
}

void td_loop_deinit(struct td_loop *l) {
  uv_loop_close(&l->uv);
  td_taskq_deinit(&l->inbox);
}
