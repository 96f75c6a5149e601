/* test_http.c — the HTTP server (transport/http/http.h) over real sockets:
 * routing, parameters, query decoding, keep-alive, pipelining, 404/405/413/431,
 * HTTP/1.0 close, deferred answers and a client leaving before its answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "base/loop.h"
#include "transport/http/http.h"
#include "http_test_server.h"

static struct td_loop loop;
static struct td_http_router *rt;
static struct td_http_server *srv;
static int port;

/* ---- handlers (loop thread) ---- */

static void h_param(struct td_http_req *r) {
  char out[256];
  snprintf(out, sizeof out, "param a=%s", td_http_param(r, "a"));
  td_http_respond(r, 200, "text/plain", out, strlen(out));
}

static void h_literal(struct td_http_req *r) { td_http_respond(r, 200, "text/plain", "literal", 7); }

static void h_query(struct td_http_req *r) {
  const char *v = td_http_query_get(r, "name");
  const char *m = td_http_query_get(r, "missing");
  char out[256];
  snprintf(out, sizeof out, "name=[%s] missing=%s path=%s", v ? v : "(null)", m ? m : "(null)", r->path);
  td_http_respond(r, 200, "text/plain", out, strlen(out));
}

static void h_body(struct td_http_req *r) {
  char out[64];
  const char *ct = td_http_header_get(r, "Content-Type");
  snprintf(out, sizeof out, "len=%zu ct=%s", r->body_len, ct ? ct : "-");
  td_http_respond(r, 200, "text/plain", out, strlen(out));
}

struct later {
  struct td_task task;
  struct td_http_req *r;
};

static void later_fn(struct td_task *t) {
  struct later *l = td_container_of(t, struct later, task);
  td_http_respond_error(l->r, 503, TD_TB_GENERAL, "later \"quoted\"");
  free(l);
}

static void h_later(struct td_http_req *r) {
  struct later *l = calloc(1, sizeof *l);
  l->r = r;
  l->task.fn = later_fn;
  td_loop_post(r->loop, &l->task); /* answered from a task, after this handler returned */
}

/* /slow: parked until the test asks for the answer */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct td_http_req *parked;
static int parked_count;
static struct later answer_task;

static void h_slow(struct td_http_req *r) {
  pthread_mutex_lock(&mu);
  parked = r;
  parked_count++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void answer_parked(struct td_task *t) {
  struct td_http_req *r = parked;
  parked = NULL;
  td_http_respond(r, 200, "text/plain", "late", 4);
  pthread_mutex_lock(&mu);
  parked_count = -1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* ---- client side ---- */

static int connect_srv(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

struct resp {
  int status;
  char headers[2048];
  char body[4096];
  size_t body_len;
};

/* read_resp: one response (headers + Content-Length body). 0, or -1 on EOF/error. */
static int read_resp_opt(int fd, struct resp *r, bool head);
static int read_resp(int fd, struct resp *r) { return read_resp_opt(fd, r, false); }
static int read_resp_opt(int fd, struct resp *r, bool head) {
  static char buf[16384];
  size_t n = 0;
  char *end = NULL;
  memset(r, 0, sizeof *r);
  while (!end) {
    ssize_t k = recv(fd, buf + n, 1, 0); /* byte by byte: never read past this response */
    if (k <= 0) return -1;
    n += (size_t)k;
    buf[n] = 0;
    end = strstr(buf, "\r\n\r\n");
    if (n >= sizeof buf - 1) return -1;
  }
  size_t hl = (size_t)(end - buf) + 4;
  memcpy(r->headers, buf, hl < sizeof r->headers ? hl : sizeof r->headers - 1);
  sscanf(buf, "HTTP/1.1 %d", &r->status);
  const char *cl = strstr(r->headers, "Content-Length: ");
  size_t len = cl && !head ? strtoul(cl + 16, NULL, 10) : 0;
  size_t got = 0;
  while (got < len) {
    ssize_t k = recv(fd, r->body + got, len - got, 0);
    if (k <= 0) return -1;
    got += (size_t)k;
  }
  r->body_len = got;
  r->body[got] = 0;
  return 0;
}

static struct resp request(const char *raw) {
  int fd = connect_srv();
  send_all(fd, raw, strlen(raw));
  struct resp r;
  assert_int_equal(read_resp(fd, &r), 0);
  close(fd);
  return r;
}

/* ---- setup ---- */

static int setup(void **st) {
  assert_int_equal(td_loop_init(&loop, 0), 0);
  rt = td_http_router_new();
  td_http_route(rt, TD_HTTP_GET, "/echo/{a}/x", h_param, NULL, 0);
  td_http_route(rt, TD_HTTP_GET, "/echo/lit/x", h_literal, NULL, 0);
  td_http_route(rt, TD_HTTP_GET, "/q/{p}", h_query, NULL, 0);
  td_http_route(rt, TD_HTTP_POST, "/body", h_body, NULL, 16);
  td_http_route(rt, TD_HTTP_POST, "/big", h_body, NULL, 0);
  td_http_route(rt, TD_HTTP_GET, "/later", h_later, NULL, 0);
  td_http_route(rt, TD_HTTP_GET, "/slow", h_slow, NULL, 0);
  http_test_start(&loop, rt, 1024, &srv, &port);
  return 0;
}

static int teardown(void **st) {
  http_test_stop(&loop, rt, srv);
  return 0;
}

/* ---- tests ---- */

static void test_routing(void **st) {
  struct resp r = request("GET /echo/abc/x HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "param a=abc");
  assert_non_null(strstr(r.headers, "Content-Type: text/plain\r\n"));
  assert_non_null(strstr(r.headers, "Connection: keep-alive\r\n"));
  r = request("GET /echo/lit/x HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "literal");
  /* an encoded '/' stays inside its segment */
  r = request("GET /echo/a%2Fb%20c/x HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "param a=a/b c");
  r = request("GET /nope HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "\"errorCode\":32"));
  assert_non_null(strstr(r.body, "\"status\":404"));
  r = request("DELETE /echo/abc/x HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(r.body, "\"status\":405"));
  r = request("GET /echo/%zz/x HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 400);
}

static void test_query(void **st) {
  struct resp r = request("GET /q/p%41th?x=1&name=a%20b+c%26&flag HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "name=[a b c&] missing=(null) path=/q/pAth");
}

static void test_keepalive_and_pipelining(void **st) {
  int fd = connect_srv();
  struct resp r;
  const char *req = "POST /body HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
  send_all(fd, req, strlen(req));
  assert_int_equal(read_resp(fd, &r), 0);
  assert_string_equal(r.body, "len=5 ct=application/json");
  send_all(fd, req, strlen(req));
  assert_int_equal(read_resp(fd, &r), 0);
  assert_string_equal(r.body, "len=5 ct=application/json");
  /* two pipelined requests in one write, the second chunked */
  const char *two = "GET /echo/1/x HTTP/1.1\r\n\r\n"
                    "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  send_all(fd, two, strlen(two));
  assert_int_equal(read_resp(fd, &r), 0);
  assert_string_equal(r.body, "param a=1");
  assert_int_equal(read_resp(fd, &r), 0);
  assert_string_equal(r.body, "len=5 ct=-");
  close(fd);
  /* HTTP/1.0 without keep-alive: answered, then closed */
  fd = connect_srv();
  send_all(fd, "GET /echo/z/x HTTP/1.0\r\n\r\n", 26);
  assert_int_equal(read_resp(fd, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.headers, "Connection: close\r\n"));
  assert_true(http_test_peer_closed(fd));
  close(fd);
}

static void test_limits(void **st) {
  /* 413 from Content-Length, before any body byte */
  int fd = connect_srv();
  const char *req = "POST /body HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
  send_all(fd, req, strlen(req));
  struct resp r;
  assert_int_equal(read_resp(fd, &r), 0);
  assert_int_equal(r.status, 413);
  assert_non_null(strstr(r.body, "\"status\":413"));
  assert_true(http_test_peer_closed(fd));
  close(fd);
  /* exactly the limit is fine; the default limit applies to routes without their own */
  r = request("POST /body HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
  assert_string_equal(r.body, "len=16 ct=-");
  r = request("POST /big HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
  assert_int_equal(r.status, 413);
  /* 413 while reading a chunked body */
  r = request("POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
  assert_int_equal(r.status, 413);
  /* 431 for headers past 1024 bytes */
  char big[2048];
  snprintf(big, sizeof big, "GET /echo/a/x HTTP/1.1\r\nX-Big: %01100d\r\n\r\n", 0);
  r = request(big);
  assert_int_equal(r.status, 431);
  /* garbage: 400 and close */
  fd = connect_srv();
  send_all(fd, "BLAH\r\n\r\n", 8);
  assert_int_equal(read_resp(fd, &r), 0);
  assert_int_equal(r.status, 400);
  assert_true(http_test_peer_closed(fd));
  close(fd);
}

static void test_deferred(void **st) {
  struct resp r = request("GET /later HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "\"message\":\"later \\\"quoted\\\"\""));
  assert_non_null(strstr(r.body, "\"errorCode\":2"));
  /* HEAD gets the headers of GET without the body */
  int fd = connect_srv();
  const char *hg = "HEAD /echo/a/x HTTP/1.1\r\n\r\nGET /echo/b/x HTTP/1.1\r\n\r\n";
  send_all(fd, hg, strlen(hg));
  /* the HEAD answer says Content-Length 9 but has no body: the next bytes are the GET answer */
  assert_int_equal(read_resp_opt(fd, &r, true), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.headers, "Content-Length: 9\r\n"));
  assert_int_equal(read_resp(fd, &r), 0);
  assert_string_equal(r.body, "param a=b");
  close(fd);
}

static void test_client_leaves_before_answer(void **st) {
  int fd = connect_srv();
  send_all(fd, "GET /slow HTTP/1.1\r\n\r\n", 22);
  pthread_mutex_lock(&mu);
  while (parked_count == 0) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  close(fd);
  /* the server sees EOF while the request is parked; make sure that happened
   * before answering: another connection's request is processed after it
   * on the same loop, in order */
  struct resp r = request("GET /echo/sync/x HTTP/1.1\r\n\r\n");
  assert_int_equal(r.status, 200);
  answer_task.task.fn = answer_parked;
  td_loop_post(&loop, &answer_task.task);
  pthread_mutex_lock(&mu);
  while (parked_count != -1) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  /* the server still works */
  r = request("GET /echo/after/x HTTP/1.1\r\n\r\n");
  assert_string_equal(r.body, "param a=after");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routing),
      cmocka_unit_test(test_query),
      cmocka_unit_test(test_keepalive_and_pipelining),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_deferred),
      cmocka_unit_test(test_client_leaves_before_answer),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
