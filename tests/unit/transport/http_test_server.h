/* http_test_server.h — for the transport unit tests (test_http.c, test_ws.c):
 * start the HTTP server on one loop of its own on a free loopback port, stop
 * it, and see whether the server closed a client socket. Header-only, static. */
#ifndef TD_TESTS_HTTP_TEST_SERVER_H
#define TD_TESTS_HTTP_TEST_SERVER_H
#include <stdbool.h>
#include <sys/socket.h>
#include "base/loop.h"
#include "transport/http/http.h"

/* http_test_start: serve rt (routes already added) on loop (initialised, not
 * running) with small limits; *port gets the bound port. Asserts on failure. */
static void http_test_start(struct td_loop *loop, struct td_http_router *rt, size_t max_header_bytes,
                            struct td_http_server **srv, int *port) {
  struct td_http_server_config cfg = {.bind_address = "127.0.0.1", .port = 0, .max_body = 100,
                                      .max_header_bytes = max_header_bytes, .max_connections = 100,
                                      .idle_timeout_ms = 30000};
  assert_int_equal(td_http_server_start(&cfg, rt, loop, 1, srv), 0);
  *port = td_http_server_port(*srv);
  assert_true(*port > 0);
  assert_int_equal(td_loop_start(loop), 0);
}

/* http_test_stop: stop accepting, stop the loop, free everything. */
static void http_test_stop(struct td_loop *loop, struct td_http_router *rt, struct td_http_server *srv) {
  td_http_server_stop_accepting(srv);
  td_loop_stop(loop);
  td_http_server_free(srv);
  td_http_router_free(rt);
  td_loop_deinit(loop);
}

/* http_test_peer_closed: the server closed fd (a read returns end of file). */
static bool http_test_peer_closed(int fd) {
  char c;
  return recv(fd, &c, 1, 0) == 0;
}
#endif
