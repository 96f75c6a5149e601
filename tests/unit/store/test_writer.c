/* test_writer.c — the batched writer (writer.h) and the storage thread pool
 * (dbpool.h): concurrent submitters, failure isolation, the bounded queues,
 * done delivery with and without a reply loop. Also prints the writer's
 * throughput (informational; nothing asserts on time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "base/err.h"
#include "base/time.h"
#include "store/dbpool.h"
#include "store/writer.h"
#include "store_test_util.h"

/* Completion counter the callbacks signal. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t done, failed;
} comp = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void comp_reset(void) {
  pthread_mutex_lock(&comp.mu);
  comp.done = comp.failed = 0;
  pthread_mutex_unlock(&comp.mu);
}

static void comp_add(int status) {
  pthread_mutex_lock(&comp.mu);
  comp.done++;
  if (status) comp.failed++;
  pthread_cond_broadcast(&comp.cv);
  pthread_mutex_unlock(&comp.mu);
}

static void comp_wait(size_t n) {
  pthread_mutex_lock(&comp.mu);
  while (comp.done < n) pthread_cond_wait(&comp.cv, &comp.mu);
  pthread_mutex_unlock(&comp.mu);
}

static void req_done(struct td_write_req *r, int status) { comp_add(status); }

#define SUBMITTERS 4
#define REQS 1000
#define PTS 5
#define ENTS 10

struct submitter {
  struct td_writer *w;
  struct td_uuid ents[ENTS];
  struct td_write_req reqs[REQS];
  struct td_ts_point pts[REQS][PTS];
  int rc;
};

static void *submit_main(void *arg) {
  struct submitter *s = arg;
  for (int i = 0; i < REQS; i++) {
    static const char *const keys[PTS] = {"k0", "k1", "k2", "k3", "k4"};
    for (int k = 0; k < PTS; k++)
      s->pts[i][k] = (struct td_ts_point){.ts = 1000 + i, .kv = {.key = keys[k], .type = TD_KV_LONG, .v.l = i}};
    s->reqs[i] = (struct td_write_req){.kind = TD_WRITE_TS, .entity = {TD_ENTITY_DEVICE, s->ents[i % ENTS]},
                                       .points = s->pts[i], .n = PTS, .done = req_done};
    int rc = td_writer_submit(s->w, &s->reqs[i]);
    if (rc) {
      s->rc = rc;
      return NULL;
    }
  }
  return NULL;
}

static void test_writer_concurrent(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "writer");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_writer *w;
  struct td_writer_config wc = {.max_batch_rows = 500};
  assert_int_equal(td_writer_new(&cfg, &wc, &w), 0);
  comp_reset();
  static struct submitter subs[SUBMITTERS];
  pthread_t th[SUBMITTERS];
  for (int i = 0; i < SUBMITTERS; i++) {
    memset(&subs[i], 0, sizeof subs[i]);
    subs[i].w = w;
    for (int e = 0; e < ENTS; e++) td_uuid_new(&subs[i].ents[e]);
    assert_int_equal(pthread_create(&th[i], NULL, submit_main, &subs[i]), 0);
  }
  for (int i = 0; i < SUBMITTERS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(subs[i].rc, 0);
  }
  comp_wait(SUBMITTERS * REQS);
  assert_int_equal(comp.failed, 0);
  uint64_t rows, commits;
  td_writer_stats(w, &rows, &commits);
  assert_int_equal(rows, SUBMITTERS * REQS * PTS);
  assert_true(commits >= 1 && commits <= SUBMITTERS * REQS);
  td_writer_free(w);

  struct td_store *st;
  assert_int_equal(td_store_open(&cfg, false, &st), 0);
  for (int i = 0; i < SUBMITTERS; i++) {
    for (int e = 0; e < ENTS; e++) {
      struct td_entity_id id = {TD_ENTITY_DEVICE, subs[i].ents[e]};
      int64_t cnt;
      assert_int_equal(td_store_ts_count(st, &id, &cnt), 0);
      assert_int_equal(cnt, REQS / ENTS * PTS);
    }
  }
  td_store_close(st);
  test_db_remove(path);
}

/* One bad request (invalid scope) in a batch fails alone. */
static void test_writer_isolates_failure(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "writer-bad");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_writer *w;
  assert_int_equal(td_writer_new(&cfg, NULL, &w), 0);
  comp_reset();
  struct td_entity_id e = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  static struct td_kv kv = {.key = "a", .type = TD_KV_LONG, .v.l = 1};
  static struct td_ts_point pt[3];
  static struct td_write_req r[4];
  for (int i = 0; i < 3; i++) {
    pt[i] = (struct td_ts_point){.ts = i, .kv = {.key = "x", .type = TD_KV_LONG, .v.l = i}};
    r[i] = (struct td_write_req){.kind = TD_WRITE_TS, .entity = e, .points = &pt[i], .n = 1, .done = req_done};
  }
  r[3] = (struct td_write_req){.kind = TD_WRITE_ATTRS, .entity = e, .scope = 9, .kvs = &kv, .n = 1, .done = req_done};
  assert_int_equal(td_writer_submit(w, &r[0]), 0);
  assert_int_equal(td_writer_submit(w, &r[3]), 0);
  assert_int_equal(td_writer_submit(w, &r[1]), 0);
  assert_int_equal(td_writer_submit(w, &r[2]), 0);
  comp_wait(4);
  assert_int_equal(comp.failed, 1);
  uint64_t rows;
  td_writer_stats(w, &rows, NULL);
  assert_int_equal(rows, 3);
  td_writer_free(w);
  struct td_store *st;
  assert_int_equal(td_store_open(&cfg, false, &st), 0);
  int64_t cnt;
  assert_int_equal(td_store_ts_count(st, &e, &cnt), 0);
  assert_int_equal(cnt, 3);
  td_store_close(st);
  test_db_remove(path);
}

/* Queue bound: hold the writer inside a done callback, fill the queue. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int entered, release;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void gate_done(struct td_write_req *r, int status) {
  pthread_mutex_lock(&gate.mu);
  gate.entered = 1;
  pthread_cond_broadcast(&gate.cv);
  while (!gate.release) pthread_cond_wait(&gate.cv, &gate.mu);
  pthread_mutex_unlock(&gate.mu);
  comp_add(status);
}

static void test_writer_queue_limit(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "writer-full");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_writer *w;
  struct td_writer_config wc = {.queue_limit = 2};
  assert_int_equal(td_writer_new(&cfg, &wc, &w), 0);
  comp_reset();
  struct td_entity_id e = {TD_ENTITY_DEVICE};
  td_uuid_new(&e.id);
  static struct td_ts_point pt[5];
  static struct td_write_req r[5];
  for (int i = 0; i < 5; i++) {
    pt[i] = (struct td_ts_point){.ts = i, .kv = {.key = "x", .type = TD_KV_LONG, .v.l = i}};
    r[i] = (struct td_write_req){.kind = TD_WRITE_TS, .entity = e, .points = &pt[i], .n = 1,
                                 .done = i == 0 ? gate_done : req_done};
  }
  assert_int_equal(td_writer_submit(w, &r[0]), 0);
  pthread_mutex_lock(&gate.mu);
  while (!gate.entered) pthread_cond_wait(&gate.cv, &gate.mu);
  pthread_mutex_unlock(&gate.mu);
  assert_int_equal(td_writer_submit(w, &r[1]), 0);
  assert_int_equal(td_writer_submit(w, &r[2]), 0);
  assert_int_equal(td_writer_submit(w, &r[3]), TD_EFULL);
  /* the rule engine's writes are bounded by its window, never refused here */
  r[4].bounded = true;
  assert_int_equal(td_writer_submit(w, &r[4]), 0);
  pthread_mutex_lock(&gate.mu);
  gate.release = 1;
  pthread_cond_broadcast(&gate.cv);
  pthread_mutex_unlock(&gate.mu);
  comp_wait(4);
  assert_int_equal(comp.failed, 0);
  td_writer_free(w);
  test_db_remove(path);
}

/* Throughput, printed only. */
static void test_writer_rate(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "writer-rate");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_writer *w;
  assert_int_equal(td_writer_new(&cfg, NULL, &w), 0);
  comp_reset();
  enum { NREQ = 20000, NP = 10, NE = 200 };
  struct td_ts_point *pts = calloc((size_t)NREQ * NP, sizeof *pts);
  struct td_write_req *reqs = calloc(NREQ, sizeof *reqs);
  struct td_uuid ents[NE];
  for (int i = 0; i < NE; i++) td_uuid_new(&ents[i]);
  static const char *const keys[NP] = {"temperature", "humidity", "pressure", "voltage", "current",
                                       "rssi", "battery", "lat", "lon", "speed"};
  for (int i = 0; i < NREQ; i++) {
    for (int k = 0; k < NP; k++)
      pts[i * NP + k] = (struct td_ts_point){.ts = 1700000000000LL + i, .kv = {.key = keys[k], .type = k % 2 ? TD_KV_DOUBLE : TD_KV_LONG}};
    for (int k = 0; k < NP; k++) {
      if (k % 2) pts[i * NP + k].kv.v.d = i * 0.5; else pts[i * NP + k].kv.v.l = i;
    }
    reqs[i] = (struct td_write_req){.kind = TD_WRITE_TS, .entity = {TD_ENTITY_DEVICE, ents[i % NE]},
                                    .points = &pts[i * NP], .n = NP, .done = req_done};
  }
  int64_t t0 = td_mono_us();
  for (int i = 0; i < NREQ; i++) assert_int_equal(td_writer_submit(w, &reqs[i]), 0);
  comp_wait(NREQ);
  int64_t us = td_mono_us() - t0;
  uint64_t rows, commits;
  td_writer_stats(w, &rows, &commits);
  assert_int_equal(rows, (uint64_t)NREQ * NP);
  assert_int_equal(comp.failed, 0);
  printf("writer: %llu rows in %llu commits, %.0f ms, %.0f rows/s\n", (unsigned long long)rows,
         (unsigned long long)commits, us / 1000.0, rows * 1e6 / (double)(us ? us : 1));
  td_writer_free(w);
  free(pts);
  free(reqs);
  test_db_remove(path);
}

/* ---- dbpool ---- */

struct kvjob {
  struct td_dbjob job;
  char key[32];
  char *value;
  uv_thread_t done_thread;
};

static void kv_run(struct td_dbjob *j, struct td_store *st) {
  struct kvjob *k = (struct kvjob *)j;
  j->status = td_store_kv_put(st, k->key, k->key);
  if (j->status == 0) j->status = td_store_kv_get(st, k->key, &k->value);
}

static void kv_done(struct td_dbjob *j) {
  struct kvjob *k = (struct kvjob *)j;
  k->done_thread = uv_thread_self();
  comp_add(j->status);
}

static void test_dbpool_no_loop(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "pool");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_dbpool *p;
  struct td_dbpool_config pc = {.threads = 2};
  assert_int_equal(td_dbpool_new(&cfg, &pc, &p), 0);
  comp_reset();
  enum { N = 200 };
  static struct kvjob jobs[N];
  for (int i = 0; i < N; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    snprintf(jobs[i].key, sizeof jobs[i].key, "key-%d", i);
    jobs[i].job.run = kv_run;
    jobs[i].job.done = kv_done;
    assert_int_equal(td_dbpool_submit(p, &jobs[i].job), 0);
  }
  comp_wait(N);
  assert_int_equal(comp.failed, 0);
  for (int i = 0; i < N; i++) {
    assert_string_equal(jobs[i].value, jobs[i].key);
    free(jobs[i].value);
  }
  td_dbpool_free(p);
  test_db_remove(path);
}

static void test_dbpool_reply_loop(void **state) {
  (void)state;
  char path[512];
  test_db_path(path, sizeof path, "pool-loop");
  struct td_store_config cfg = {.type = "sqlite", .path = path};
  struct td_loop loop;
  assert_int_equal(td_loop_init(&loop, 0), 0);
  assert_int_equal(td_loop_start(&loop), 0);
  struct td_dbpool *p;
  assert_int_equal(td_dbpool_new(&cfg, NULL, &p), 0);
  comp_reset();
  static struct kvjob jobs[10];
  for (int i = 0; i < 10; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    snprintf(jobs[i].key, sizeof jobs[i].key, "k%d", i);
    jobs[i].job.run = kv_run;
    jobs[i].job.done = kv_done;
    jobs[i].job.reply_loop = &loop;
    assert_int_equal(td_dbpool_submit(p, &jobs[i].job), 0);
  }
  comp_wait(10);
  for (int i = 0; i < 10; i++) {
    assert_true(uv_thread_equal(&jobs[i].done_thread, &loop.thread));
    free(jobs[i].value);
  }
  td_dbpool_free(p);
  assert_int_equal(td_dbpool_new(&cfg, &(struct td_dbpool_config){.threads = 1, .queue_limit = 1}, &p), 0);
  td_dbpool_free(p);
  td_loop_stop(&loop);
  td_loop_deinit(&loop);
  test_db_remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_concurrent),
      cmocka_unit_test(test_writer_isolates_failure),
      cmocka_unit_test(test_writer_queue_limit),
      cmocka_unit_test(test_writer_rate),
      cmocka_unit_test(test_dbpool_no_loop),
      cmocka_unit_test(test_dbpool_reply_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
