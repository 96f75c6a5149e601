/* mqttc.h — a pool of MQTT device connections that publish telemetry: the
 * client side shared by bench/mqtt_load.c and bench/ws_latency.c.
 *
 * Where it sits: bench/common (benchcommon), over libuv and thingsd's own MQTT
 * codec (src/transport/mqtt/codec.h, from tdcore), so the bench tools exercise
 * the codec as a client too.
 *
 * Model: connection i (0 <= i < n) logs in with the access token cfg->token
 * gives for i as user name. Each of cfg->threads worker threads runs its own
 * libuv loop over a contiguous slice of the connections and follows the
 * phases (run.h) the main thread stores in *cfg->phase:
 *   CONNECT  connect its slice, at most connect_conc / threads TCP+MQTT
 *            handshakes in flight (so the listener's backlog is not stampeded);
 *   RUN      publish cfg->payload to v1/devices/me/telemetry, paced by a token
 *            bucket at cfg->rate msg/s in total, round-robin over the
 *            connections with room, or (rate 0) as fast as each connection's
 *            in-flight window allows; with cfg->idle nothing is published;
 *            connections quiet for half the keep-alive send a PINGREQ;
 *   DRAIN    nothing new; the worker reports drained once every QoS 1 publish
 *            is acknowledged (QoS 0: written out);
 *   STOP     DISCONNECT, close everything after 300 ms, end the loop.
 * Connects still pending when CONNECT ends count as failed.
 *
 * Memory is bounded: per connection a fixed read buffer, two write buffers of
 * at most cfg->wbuf_limit bytes, and `window` send times; publish -> PUBACK
 * latency goes into a fixed histogram per worker. */
#ifndef BENCH_COMMON_MQTTC_H
#define BENCH_COMMON_MQTTC_H
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errkind.h"
#include "hist.h"

#define BENCH_MQTTC_TOPIC "v1/devices/me/telemetry"

struct bench_mqttc_config {
  struct sockaddr_storage addr; /* the server's MQTT listener */
  int protocol;                 /* 3, 4, 5: MQTT 3.1, 3.1.1, 5.0 */
  int qos;                      /* 0 or 1 */
  int keepalive;                /* seconds; 0 = none */
  int window;                   /* QoS 1 publishes in flight per connection (capped by a v5 Receive
                                   Maximum); QoS 0 and rate 0: publishes queued per write */
  int threads, connect_conc;    /* worker threads; handshakes in flight in total */
  size_t wbuf_limit;            /* per write buffer of a connection */
  double rate;                  /* publishes/s in total; 0 = as fast as the window allows */
  double burst_s;               /* token bucket capacity in seconds of the rate: the rate is a ceiling */
  bool idle;                    /* publish nothing: hold the connections with PINGREQs */
  /* Latency mode: stamp each publish with its own clock reading and write it
   * out at once. Else a tick's publishes share the tick's time and are written
   * once per connection at the end of the tick (less CPU at high rates). */
  bool precise;
  const char *client_prefix; /* client id: <prefix><pid>-<connection> */
  const char *err_prefix;    /* put before every failure kind ("" or e.g. "mqtt_") */
  atomic_int *phase;         /* enum bench_phase, stored by the main thread */
  /* The access token of connection idx; the string must live as long as the
   * pool. Called on worker threads. */
  const char *(*token)(void *arg, uint32_t idx);
  /* Write the payload of message seq (1, 2, ... per connection) of connection
   * idx, published at now_ns (uv_hrtime), into buf (cap bytes); returns its
   * length, or < 0 to skip the publish. Called on worker threads. */
  int (*payload)(void *arg, uint32_t idx, uint64_t seq, uint64_t now_ns, char *buf, size_t cap);
  void *arg;
};

/* Counters the main thread may read while the workers run. */
struct bench_mqttc_progress {
  uint64_t ok, failed; /* connects: CONNACK 0, or failed / timed out / not started */
  uint64_t sent, acked;
  bool connected; /* every connect attempt has an outcome */
  bool drained;   /* every worker is drained (see DRAIN above) */
};

/* The whole run, merged over the workers. */
struct bench_mqttc_result {
  uint64_t ok, failed, sent, acked;
  uint64_t sent_run, acked_run; /* during RUN only */
  uint64_t ack_err;             /* PUBACKs with a v5 failure reason */
  uint64_t unexpected;          /* packets that do not fit (a PUBACK for no publish, ...) */
  uint64_t pingresp, closed_by_peer;
  uint64_t lost_on_close; /* in flight on a connection that closed */
  uint64_t no_room;       /* ticks that left tokens unspent: every connection full or closed */
  uint64_t connack[256], puback_rc[256]; /* by reason code */
  int min_window;                        /* smallest window granted (cfg->window when none) */
  struct bench_errkind errs[BENCH_ERRKINDS * 4];
  size_t nerrs;
  struct bench_hist ack; /* publish -> PUBACK, microseconds */
};

struct bench_mqttc;

/* Set up a pool of n connections (n >= threads >= 1) from cfg (copied). The
 * caller frees it with bench_mqttc_free. NULL when out of memory or a loop
 * cannot be set up. Main thread. */
struct bench_mqttc *bench_mqttc_new(const struct bench_mqttc_config *cfg, size_t n);
/* Start the worker threads, which begin connecting. 0 or -1. Main thread. */
int bench_mqttc_start(struct bench_mqttc *m);
/* Read the counters of a running pool. Main thread. */
void bench_mqttc_progress(const struct bench_mqttc *m, struct bench_mqttc_progress *p);
/* Wait for the worker threads to end (after the phase is BENCH_STOP). */
void bench_mqttc_join(struct bench_mqttc *m);
/* Merge the workers' results into r; after bench_mqttc_join. */
void bench_mqttc_result(const struct bench_mqttc *m, struct bench_mqttc_result *r);
/* Free the pool; after bench_mqttc_join (or when never started). */
void bench_mqttc_free(struct bench_mqttc *m);
#endif
