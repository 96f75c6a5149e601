/* listen.c — the listening socket every TCP transport opens once per I/O loop
 * (transport.h). libuv 1.44 has no SO_REUSEPORT flag, so the socket is made
 * by hand (SO_REUSEADDR + SO_REUSEPORT before bind) and then handed to
 * uv_tcp_open(): the kernel spreads connections over the loops' sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"
#include "transport/transport.h"

/* port_taken: is addr:port already listened on (by another process, or by
 * another of our listeners)? SO_REUSEPORT would let our sockets join such a
 * port silently, and the kernel would then hand some of the connections to
 * the other listener; a plain bind (no SO_REUSEPORT) tells. */
static bool port_taken(const struct sockaddr_storage *ss, int family) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false; /* the real bind reports it */
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* TIME_WAIT leftovers are no owner */
  bool taken = bind(fd, (const struct sockaddr *)ss,
                    family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) < 0 &&
               errno == EADDRINUSE;
  close(fd);
  return taken;
}

int td_transport_listen_fd(const char *addr, int port, const char *module, bool first, int *bound) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int family;
  if (strchr(addr, ':')) {
    if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss)) return TD_EINVAL;
    family = AF_INET6;
  } else {
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss)) return TD_EINVAL;
    family = AF_INET;
  }
  if (first && port != 0 && port_taken(&ss, family)) {
    td_log(TD_LOG_ERROR, module, "action=bind address=%s port=%d err=\"port already in use\"", addr, port);
    return TD_EIO;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return TD_EIO;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
      bind(fd, (struct sockaddr *)&ss, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
    td_log(TD_LOG_ERROR, module, "action=bind address=%s port=%d err=\"%s\"", addr, port, strerror(errno));
    close(fd);
    return TD_EIO;
  }
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  getsockname(fd, (struct sockaddr *)&got, &gl);
  *bound = ntohs(family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port : ((struct sockaddr_in6 *)&got)->sin6_port);
  return fd;
}
