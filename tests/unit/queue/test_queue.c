/* test_queue.c — the embedded durable log (queue.h, "log" backend): group
 * commit from several producers, in-order delivery, out-of-order acks,
 * restart without and with redelivery, torn-tail recovery, back-pressure,
 * segment roll and deletion, and a printed produce->done rate with fsync. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/time.h"
#include "queue/queue.h"

#define CAP 20000

/* ---- a collecting consumer ---- */
struct sink {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
  struct td_msg *msgs[CAP];
  uint64_t tokens[CAP];
  struct td_queue *q;
  int auto_ack;
};

static void sink_init(struct sink *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
}

static void sink_deinit(struct sink *s) {
  for (size_t i = 0; i < s->n; i++) td_msg_unref(s->msgs[i]);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

static void sink_fn(void *arg, struct td_msg *m, uint64_t token) {
  struct sink *s = arg;
  pthread_mutex_lock(&s->mu);
  assert_true(s->n < CAP);
  s->msgs[s->n] = m;
  s->tokens[s->n] = token;
  s->n++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->auto_ack) td_queue_ack(s->q, token);
}

/* Wait (bounded: 30 s, a failure not a pacing device) until n messages arrived. */
static void sink_wait(struct sink *s, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 30;
  pthread_mutex_lock(&s->mu);
  while (s->n < n) {
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT) break;
  }
  size_t got = s->n;
  pthread_mutex_unlock(&s->mu);
  assert_int_equal(got, n);
}

/* ---- done callback counter ---- */
static atomic_int done_ok, done_err;
static void done_fn(void *arg, int status) {
  (void)arg;
  if (status == 0) atomic_fetch_add(&done_ok, 1);
  else atomic_fetch_add(&done_err, 1);
}

/* ---- helpers ---- */
static char tmpdir[512];

static void rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[1024];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static int setup(void **st) {
  (void)st;
  const char *base = getenv("TD_TEST_TMP");
  if (!base) base = "/tmp";
  mkdir(base, 0755);
  static int seq;
  snprintf(tmpdir, sizeof tmpdir, "%s/qlog-%d-%d", base, (int)getpid(), seq++);
  rm_rf(tmpdir);
  atomic_store(&done_ok, 0);
  atomic_store(&done_err, 0);
  return 0;
}

static int teardown(void **st) {
  (void)st;
  rm_rf(tmpdir);
  return 0;
}

static struct td_queue *open_q(size_t max_inflight, size_t segment_bytes, int fsync) {
  struct td_queue_config cfg = {.type = "log", .dir = tmpdir, .partitions = 12,
                                .max_inflight = max_inflight, .segment_bytes = segment_bytes,
                                .fsync = fsync};
  struct td_queue *q = NULL;
  assert_int_equal(td_queue_open(&cfg, &q), 0);
  assert_non_null(q);
  return q;
}

static struct td_msg *mk(const char *data) {
  struct td_entity_id o = {.type = TD_ENTITY_DEVICE};
  td_uuid_new(&o.id);
  struct td_msg_md md[] = {{"deviceName", "d"}};
  return td_msg_new(TD_MSG_POST_TELEMETRY, &o, NULL, NULL, md, 1, TD_MSG_DATA_JSON, data, strlen(data));
}

static void produce_one(struct td_queue *q, const char *data) {
  struct td_msg *m = mk(data);
  assert_int_equal(td_queue_produce(q, &m, 1, done_fn, NULL), 0);
  td_msg_unref(m);
}

static void wait_done(int n) {
  int64_t until = td_mono_ms() + 30000;
  while (atomic_load(&done_ok) + atomic_load(&done_err) < n && td_mono_ms() < until) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL); /* polling for completion, bounded; not hiding a race */
  }
  assert_int_equal(atomic_load(&done_ok), n);
  assert_int_equal(atomic_load(&done_err), 0);
}

/* After a reopen: produce a marker and expect it to be the first thing
 * delivered (replay always comes first), at offset `expect_off`. */
static void expect_nothing_redelivered(struct td_queue *q, struct sink *s, uint64_t expect_off) {
  produce_one(q, "\"marker\"");
  sink_wait(s, 1);
  assert_string_equal(s->msgs[0]->data, "\"marker\"");
  assert_int_equal(s->tokens[0], expect_off);
}

/* ---- producers ---- */
struct prod {
  struct td_queue *q;
  int id, count, batch;
};

static void *prod_main(void *arg) {
  struct prod *p = arg;
  for (int i = 0; i < p->count;) {
    struct td_msg *m[4];
    int k = 0;
    for (; k < p->batch && i + k < p->count; k++) {
      char d[64];
      snprintf(d, sizeof d, "{\"p\":%d,\"i\":%d}", p->id, i + k);
      m[k] = mk(d);
    }
    int rc;
    while ((rc = td_queue_produce(p->q, m, (size_t)k, done_fn, NULL)) == TD_EFULL) sched_yield();
    assert_int_equal(rc, 0);
    for (int j = 0; j < k; j++) td_msg_unref(m[j]);
    i += k;
  }
  return NULL;
}

static void run_producers(struct td_queue *q, int threads, int per, int batch) {
  pthread_t t[8];
  struct prod p[8];
  for (int i = 0; i < threads; i++) {
    p[i] = (struct prod){q, i, per, batch};
    pthread_create(&t[i], NULL, prod_main, &p[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

/* ---- tests ---- */

static void test_produce_consume_ack_reopen(void **st) {
  (void)st;
  enum { THREADS = 4, PER = 250, N = THREADS * PER };
  struct td_queue *q = open_q(N, 0, 1);
  static struct sink s;
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), TD_EBUSY);
  run_producers(q, THREADS, PER, 3);
  wait_done(THREADS * ((PER + 2) / 3));   /* one done per produce call */
  sink_wait(&s, N);
  /* in order: consecutive offsets; per producer, increasing sequence */
  int last[THREADS];
  for (int i = 0; i < THREADS; i++) last[i] = -1;
  for (size_t i = 0; i < N; i++) {
    assert_int_equal(s.tokens[i], i);
    int p, k;
    assert_int_equal(sscanf(s.msgs[i]->data, "{\"p\":%d,\"i\":%d}", &p, &k), 2);
    assert_true(p >= 0 && p < THREADS);
    assert_int_equal(k, last[p] + 1);
    last[p] = k;
    assert_string_equal(td_msg_md_get(s.msgs[i], "deviceName"), "d");
  }
  uint64_t produced, acked;
  size_t inflight;
  td_queue_stats(q, &produced, &acked, &inflight);
  assert_int_equal(produced, N);
  assert_int_equal(inflight, N);
  /* ack out of order: odd offsets descending, then even ones */
  for (int i = N - 1; i >= 0; i--)
    if (i & 1) td_queue_ack(q, s.tokens[i]);
  td_queue_stats(q, NULL, &acked, &inflight);
  assert_int_equal(acked, N / 2);
  for (int i = 0; i < N; i += 2) td_queue_ack(q, s.tokens[i]);
  td_queue_ack(q, s.tokens[0]);   /* a double ack is ignored */
  td_queue_stats(q, NULL, &acked, &inflight);
  assert_int_equal(acked, N);
  assert_int_equal(inflight, 0);
  td_queue_close(q);
  sink_deinit(&s);

  q = open_q(N, 0, 1);
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  expect_nothing_redelivered(q, &s, N);
  td_queue_ack(q, s.tokens[0]);
  td_queue_close(q);
  sink_deinit(&s);
}

static void test_redelivery(void **st) {
  (void)st;
  enum { N = 100 };
  struct td_queue *q = open_q(1000, 0, 1);
  struct td_uuid ids[N];
  for (int i = 0; i < N; i++) {
    char d[32];
    snprintf(d, sizeof d, "%d", i);
    struct td_msg *m = mk(d);
    ids[i] = m->id;
    assert_int_equal(td_queue_produce(q, &m, 1, done_fn, NULL), 0);
    td_msg_unref(m);
  }
  td_queue_close(q);   /* no consumer: nothing acked; close ran every done callback */
  assert_int_equal(atomic_load(&done_ok), N);

  static struct sink s;
  q = open_q(1000, 0, 1);
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  sink_wait(&s, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(s.tokens[i], i);
    assert_memory_equal(&s.msgs[i]->id, &ids[i], 16);
    assert_int_equal(atoi(s.msgs[i]->data), i);
  }
  size_t inflight;
  td_queue_stats(q, NULL, NULL, &inflight);
  assert_int_equal(inflight, N);
  /* ack the first 60 except 10: the committed offset stays at 10 */
  for (int i = 0; i < 60; i++)
    if (i != 10) td_queue_ack(q, s.tokens[i]);
  td_queue_close(q);
  sink_deinit(&s);

  q = open_q(1000, 0, 1);
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  sink_wait(&s, N - 10);
  for (int i = 0; i < N - 10; i++) assert_int_equal(s.tokens[i], 10 + i);
  s.q = q;
  for (int i = 0; i < N - 10; i++) td_queue_ack(q, s.tokens[i]);
  td_queue_close(q);
  sink_deinit(&s);

  q = open_q(1000, 0, 1);
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  expect_nothing_redelivered(q, &s, N);
  td_queue_ack(q, s.tokens[0]);
  td_queue_close(q);
  sink_deinit(&s);
}

static void damage_last(int how) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%020d.log", tmpdir, 0);
  struct stat stt;
  assert_int_equal(stat(p, &stt), 0);
  if (how == 0) {
    assert_int_equal(truncate(p, stt.st_size - 3), 0);
  } else {
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, stt.st_size - 5), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, stt.st_size - 5), 1);
    close(fd);
  }
}

static void torn_tail(int how) {
  enum { N = 10 };
  struct td_queue *q = open_q(100, 0, 1);
  for (int i = 0; i < N; i++) {
    char d[16];
    snprintf(d, sizeof d, "%d", i);
    produce_one(q, d);
  }
  td_queue_close(q);
  damage_last(how);
  static struct sink s;
  q = open_q(100, 0, 1);
  sink_init(&s);
  s.q = q;
  s.auto_ack = 1;
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  produce_one(q, "\"after\"");   /* goes after the recovered records, at offset N-1 */
  sink_wait(&s, N);
  for (int i = 0; i < N - 1; i++) {
    assert_int_equal(s.tokens[i], i);
    assert_int_equal(atoi(s.msgs[i]->data), i);
  }
  assert_int_equal(s.tokens[N - 1], N - 1);
  assert_string_equal(s.msgs[N - 1]->data, "\"after\"");
  td_queue_close(q);
  sink_deinit(&s);
}

static void test_torn_tail_truncated(void **st) { (void)st; torn_tail(0); }
static void test_torn_tail_flipped(void **st) { (void)st; torn_tail(1); }

static void test_full_window(void **st) {
  (void)st;
  struct td_queue *q = open_q(5, 0, 0);
  static struct sink s;
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  for (int i = 0; i < 5; i++) produce_one(q, "1");
  struct td_msg *m = mk("2");
  assert_int_equal(td_queue_produce(q, &m, 1, done_fn, NULL), TD_EFULL);
  struct td_msg *two[2] = {m, m};
  sink_wait(&s, 5);
  td_queue_ack(q, s.tokens[3]);
  assert_int_equal(td_queue_produce(q, two, 2, done_fn, NULL), TD_EFULL);
  assert_int_equal(td_queue_produce(q, &m, 1, done_fn, NULL), 0);
  assert_int_equal(td_queue_produce(q, &m, 0, done_fn, NULL), TD_EINVAL);
  sink_wait(&s, 6);
  for (size_t i = 0; i < 6; i++)
    if (i != 3) td_queue_ack(q, s.tokens[i]);
  size_t inflight;
  td_queue_stats(q, NULL, NULL, &inflight);
  assert_int_equal(inflight, 0);
  td_msg_unref(m);
  td_queue_close(q);
  sink_deinit(&s);
  wait_done(6);
}

static int count_segments(void) {
  DIR *d = opendir(tmpdir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".log")) n++;
  }
  closedir(d);
  return n;
}

/* expect_replay: reopen and expect offsets 0..n-1 delivered in
 * order, acknowledging them. */
static void expect_replay(size_t segment_bytes, int fsync, size_t n) {
  struct td_queue *q = open_q(1000, segment_bytes, fsync);
  static struct sink s;
  sink_init(&s);
  s.q = q;
  s.auto_ack = 1;
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  sink_wait(&s, n);
  for (size_t i = 0; i < n; i++) assert_int_equal(s.tokens[i], i);
  td_queue_close(q);
  sink_deinit(&s);
}

static void test_segments_roll_and_delete(void **st) {
  (void)st;
  enum { N = 200 };
  struct td_queue *q = open_q(1000, 2048, 0);
  for (int i = 0; i < N; i++) produce_one(q, "{\"v\":1234567890}");
  wait_done(N);
  assert_true(count_segments() > 5);
  td_queue_close(q);

  /* Reopen: replay spans all segments */
  expect_replay(2048, 0, N);
  assert_true(count_segments() <= 1);

  q = open_q(1000, 2048, 0);
  static struct sink s;
  sink_init(&s);
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  expect_nothing_redelivered(q, &s, N);
  td_queue_ack(q, s.tokens[0]);
  td_queue_close(q);
  sink_deinit(&s);
}

/* More segments below the committed offset than one deletion pass takes
 * (64): they all go at once. */
static void test_many_segments_deleted(void **st) {
  (void)st;
  enum { N = 300 };
  struct td_queue *q = open_q(1000, 200, 0);
  for (int i = 0; i < N; i++) produce_one(q, "{\"v\":1234567890}");
  wait_done(N);
  assert_true(count_segments() > 100);
  td_queue_close(q);
  expect_replay(200, 0, N);
  assert_true(count_segments() <= 1);
}

/* With fsync on, the syncer syncs and closes every segment the writer leaves
 * and syncs the directory entry of each new one: acknowledgements still come
 * in produce order and all succeed, no file descriptor is left open after
 * close, and a reopen replays every record across the segments. */
static atomic_int order_next, order_bad;
static void done_in_order(void *arg, int status) {
  int i = (int)(intptr_t)arg;
  if (status != 0 || atomic_fetch_add(&order_next, 1) != i) atomic_fetch_add(&order_bad, 1);
  done_fn(NULL, status);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static void test_segments_roll_with_fsync(void **st) {
  (void)st;
  enum { N = 300 };
  atomic_store(&order_next, 0);
  atomic_store(&order_bad, 0);
  int fds0 = count_fds();
  struct td_queue *q = open_q(1000, 2048, 1);
  for (int i = 0; i < N; i++) {
    struct td_msg *m = mk("{\"v\":1234567890}");
    assert_int_equal(td_queue_produce(q, &m, 1, done_in_order, (void *)(intptr_t)i), 0);
    td_msg_unref(m);
  }
  wait_done(N);
  assert_int_equal(atomic_load(&order_bad), 0);
  assert_true(count_segments() > 5);
  td_queue_close(q);
  assert_int_equal(count_fds(), fds0);

  expect_replay(2048, 1, N);
}

/* A sync held for its interval (fsync_interval_us) is done at close, not
 * after the interval: with an interval of days, close still returns and every
 * produce is acknowledged as durable; a reopen replays them all. */
static void test_close_flushes_held_sync(void **st) {
  (void)st;
  enum { N = 50 };
  struct td_queue_config cfg = {.type = "log", .dir = tmpdir, .max_inflight = 1000, .fsync = 1,
                                .fsync_interval_us = (int64_t)1000000 * 86400 * 30};
  struct td_queue *q = NULL;
  assert_int_equal(td_queue_open(&cfg, &q), 0);
  for (int i = 0; i < N; i++) produce_one(q, "{\"v\":1}");
  td_queue_close(q);
  assert_int_equal(atomic_load(&done_ok), N);
  assert_int_equal(atomic_load(&done_err), 0);

  expect_replay(0, 1, N);
}

static void test_rate_with_fsync(void **st) {
  (void)st;
  enum { THREADS = 4, PER = 1000, N = THREADS * PER };
  struct td_queue *q = open_q(N, 0, 1);
  static struct sink s;
  sink_init(&s);
  s.q = q;
  s.auto_ack = 1;
  assert_int_equal(td_queue_consume(q, sink_fn, &s), 0);
  int64_t t0 = td_mono_us();
  run_producers(q, THREADS, PER, 1);
  wait_done(N);
  int64_t us = td_mono_us() - t0;
  print_message("queue: %d msgs from %d threads, produce->done with fsync: %.0f msgs/s (%.1f ms)\n", N,
                THREADS, us > 0 ? N * 1e6 / (double)us : 0.0, us / 1000.0);
  sink_wait(&s, N);
  td_queue_close(q);
  sink_deinit(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_produce_consume_ack_reopen, setup, teardown),
    cmocka_unit_test_setup_teardown(test_redelivery, setup, teardown),
    cmocka_unit_test_setup_teardown(test_torn_tail_truncated, setup, teardown),
    cmocka_unit_test_setup_teardown(test_torn_tail_flipped, setup, teardown),
    cmocka_unit_test_setup_teardown(test_full_window, setup, teardown),
    cmocka_unit_test_setup_teardown(test_segments_roll_and_delete, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_segments_deleted, setup, teardown),
    cmocka_unit_test_setup_teardown(test_segments_roll_with_fsync, setup, teardown),
    cmocka_unit_test_setup_teardown(test_close_flushes_held_sync, setup, teardown),
    cmocka_unit_test_setup_teardown(test_rate_with_fsync, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
