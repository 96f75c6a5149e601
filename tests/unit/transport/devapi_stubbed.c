/* devapi_stubbed.c — end-to-end test of the HTTP device API with a stub dbpool/store and a fake queue.
 * Not picked up by CMake (name is not test_*.c: its stubs would clash with tdcore). Run by hand:
 *   DEVCC_SAN=1 scripts/dev-cc.sh /tmp/x/devapi src/transport/http/{server,router,parse,device_api}.c src/transport/service.c \
 *     src/core/payload.c src/msg/msg.c tests/unit/transport/devapi_stubbed.c llhttp.o api.o http.o */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "base/err.h"
#include "base/config.h"
#include "queue/queue.h"
#include "store/dbpool.h"
#include "transport/http/http.h"
#include "transport/transport.h"

static int auth_lookups;
int td_store_device_auth_by_credentials(struct td_store *st, const char *id, struct td_device_auth *out) {
  auth_lookups++;
  if (strcmp(id, "GOOD")) return TD_ENOTFOUND;
  memset(out, 0, sizeof *out);
  td_uuid_new(&out->device_id);
  td_uuid_new(&out->tenant_id);
  strcpy(out->name, "dev1");
  strcpy(out->type, "default");
  strcpy(out->credentials_type, "ACCESS_TOKEN");
  return 0;
}
int td_store_attributes_get(struct td_store *st, const struct td_entity_id *e, int scope, const char *const *keys,
                            size_t nkeys, struct td_arena *a, struct td_attr **out, size_t *nout) {
  struct td_attr *r = td_arena_alloc(a, 2 * sizeof *r);
  size_t n = 0;
  const char *names[2] = {scope == TD_SCOPE_CLIENT ? "c1" : "s1", scope == TD_SCOPE_CLIENT ? "c2" : "s2"};
  for (int i = 0; i < 2; i++) {
    bool want = nkeys == 0;
    for (size_t k = 0; k < nkeys; k++) want |= !strcmp(keys[k], names[i]);
    if (!want) continue;
    r[n].scope = scope;
    r[n].kv.key = names[i];
    r[n].kv.type = i ? TD_KV_DOUBLE : TD_KV_LONG;
    if (i) r[n].kv.v.d = 1.5; else r[n].kv.v.l = 7;
    n++;
  }
  *out = r;
  *nout = n;
  return 0;
}
/* dbpool stub: one worker thread */
struct td_dbpool { pthread_mutex_t mu; pthread_cond_t cv; struct td_task *head, *tail; int stop; pthread_t th; };
static void *worker(void *arg) {
  struct td_dbpool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
    if (!p->head) break;
    struct td_task *t = p->head;
    p->head = t->next;
    if (!p->head) p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    struct td_dbjob *j = td_container_of(t, struct td_dbjob, task);
    j->run(j, NULL);
    j->task.fn = (td_task_fn)(void *)j->done; /* done(j) with j == &j->task since task is first */
    td_loop_post(j->reply_loop, &j->task);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}
int td_dbpool_submit(struct td_dbpool *p, struct td_dbjob *j) {
  pthread_mutex_lock(&p->mu);
  j->task.next = NULL;
  if (p->tail) p->tail->next = &j->task; else p->head = &j->task;
  p->tail = &j->task;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}
/* fake queue: durable immediately, from another thread */
static struct td_msg *seen[16];
static int nseen;
static int queue_full;
static int q_produce(struct td_queue *q, struct td_msg *const *m, size_t n, td_queue_done_fn done, void *arg) {
  if (queue_full) return TD_EFULL;
  for (size_t i = 0; i < n && nseen < 16; i++) seen[nseen++] = td_msg_ref(m[i]);
  done(arg, 0);
  return 0;
}
static const struct td_queue_ops qops = {.version = 1, .produce = q_produce};
static struct td_queue fq = {.ops = &qops};

static struct td_loop loop;
static struct td_http_router *rt;
static struct td_http_server *srv;
static struct td_dbpool pool;
static struct td_config cfg;
static struct td_ctx ctx;
static int port;

static int rq(const char *raw, char *body, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, (struct sockaddr *)&a, sizeof a);
  send(fd, raw, strlen(raw), 0);
  char buf[8192];
  size_t n = 0;
  ssize_t k;
  while ((k = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0) {
    n += (size_t)k;
    buf[n] = 0;
    char *e = strstr(buf, "\r\n\r\n");
    if (e) {
      char *cl = strstr(buf, "Content-Length: ");
      size_t len = strtoul(cl + 16, NULL, 10);
      if (n >= (size_t)(e + 4 - buf) + len) break;
    }
  }
  close(fd);
  buf[n] = 0;
  int st = 0;
  sscanf(buf, "HTTP/1.1 %d", &st);
  char *e = strstr(buf, "\r\n\r\n");
  snprintf(body, cap, "%s", e ? e + 4 : "");
  return st;
}

static void test_all(void **s) {
  char body[4096], raw[4096];
  const char *t = "{\"ts\":1700000000000,\"values\":{\"temperature\":21.5,\"humidity\":\"40\"}}";
  snprintf(raw, sizeof raw, "POST /api/v1/GOOD/telemetry HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", strlen(t), t);
  assert_int_equal(rq(raw, body, sizeof body), 200);
  assert_int_equal(nseen, 1);
  assert_string_equal(seen[0]->type, "POST_TELEMETRY_REQUEST");
  assert_string_equal(seen[0]->data, "{\"temperature\":21.5,\"humidity\":40}");
  assert_string_equal(td_msg_md_get(seen[0], "ts"), "1700000000000");
  assert_string_equal(td_msg_md_get(seen[0], "deviceName"), "dev1");
  assert_string_equal(td_msg_md_get(seen[0], "deviceType"), "default");
  /* array: two groups, second request hits the cache */
  t = "[{\"a\":1},{\"ts\":5,\"values\":{\"b\":true}}]";
  snprintf(raw, sizeof raw, "POST /api/v1/GOOD/telemetry HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", strlen(t), t);
  assert_int_equal(rq(raw, body, sizeof body), 200);
  assert_int_equal(nseen, 3);
  assert_int_equal(auth_lookups, 1);
  assert_string_equal(td_msg_md_get(seen[2], "ts"), "5");
  t = "{\"fw\":\"1.0\",\"o\":{\"x\": 1}}";
  snprintf(raw, sizeof raw, "POST /api/v1/GOOD/attributes HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", strlen(t), t);
  assert_int_equal(rq(raw, body, sizeof body), 200);
  assert_string_equal(seen[3]->type, "POST_ATTRIBUTES_REQUEST");
  assert_string_equal(seen[3]->data, "{\"fw\":1.0,\"o\":{\"x\":1}}");
  assert_string_equal(td_msg_md_get(seen[3], "notifyDevice"), "false");
  /* unknown token: 401, twice, second from the negative cache */
  assert_int_equal(rq("POST /api/v1/BAD/telemetry HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", body, sizeof body), 401);
  assert_int_equal(rq("POST /api/v1/BAD/telemetry HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", body, sizeof body), 401);
  assert_int_equal(auth_lookups, 2);
  assert_int_equal(rq("POST /api/v1/GOOD/telemetry HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\":", body, sizeof body), 400);
  assert_non_null(strstr(body, "\"errorCode\":31"));
  printf("400 body: %s\n", body);
  queue_full = 1;
  assert_int_equal(rq("POST /api/v1/GOOD/telemetry HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}", body, sizeof body), 503);
  queue_full = 0;
  assert_int_equal(rq("POST /api/v1/GOOD/telemetry HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", body, sizeof body), 413);
  assert_int_equal(rq("GET /api/v1/GOOD/attributes HTTP/1.1\r\n\r\n", body, sizeof body), 200);
  assert_string_equal(body, "{\"client\":{\"c1\":7,\"c2\":1.5},\"shared\":{\"s1\":7,\"s2\":1.5}}");
  assert_int_equal(rq("GET /api/v1/GOOD/attributes?sharedKeys=s2 HTTP/1.1\r\n\r\n", body, sizeof body), 200);
  assert_string_equal(body, "{\"shared\":{\"s2\":1.5}}");
  assert_int_equal(rq("GET /api/v1/GOOD/attributes?clientKeys=c1,%20zz&sharedKeys=s1 HTTP/1.1\r\n\r\n", body, sizeof body), 200);
  assert_string_equal(body, "{\"client\":{\"c1\":7},\"shared\":{\"s1\":7}}");
  assert_int_equal(rq("GET /api/v1/BAD/attributes HTTP/1.1\r\n\r\n", body, sizeof body), 401);
  td_transport_invalidate(ctx.transport, "GOOD");
  assert_int_equal(rq("GET /api/v1/GOOD/attributes HTTP/1.1\r\n\r\n", body, sizeof body), 200);
  assert_int_equal(auth_lookups, 3);
  for (int i = 0; i < nseen; i++) td_msg_unref(seen[i]);
}

int main(void) {
  td_config_defaults(&cfg);
  cfg.http_device_max_body = 65536;
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.cv, NULL);
  pthread_create(&pool.th, NULL, worker, &pool);
  td_loop_init(&loop, 0);
  ctx.cfg = &cfg;
  ctx.loops = &loop;
  ctx.nloops = 1;
  ctx.queue = &fq;
  ctx.db = &pool;
  struct td_transport_service_config tc = {.cache_limit = 4};
  td_transport_service_new(&ctx, &tc, &ctx.transport);
  rt = td_http_router_new();
  td_http_device_api_register(rt, &ctx);
  struct td_http_server_config sc = {.bind_address = "127.0.0.1", .port = 0};
  td_http_server_start(&sc, rt, &loop, 1, &srv);
  port = td_http_server_port(srv);
  td_loop_start(&loop);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_all)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  td_http_server_stop_accepting(srv);
  td_loop_stop(&loop);
  td_http_server_free(srv);
  td_http_router_free(rt);
  td_loop_deinit(&loop);
  pool.stop = 1;
  pthread_cond_signal(&pool.cv);
  pthread_join(pool.th, NULL);
  td_transport_service_free(ctx.transport);
  return rc;
}
