/* ctx.h — the running server's parts, wired together by src/server.
 *
 * One struct td_ctx exists per process; every service gets a pointer to it.
 * The pointers are set before any thread starts and never change, so reading
 * them needs no lock. */
#ifndef TD_CORE_CTX_H
#define TD_CORE_CTX_H
#include "base/config.h"
#include "base/loop.h"

struct td_queue;
struct td_dbpool;
struct td_writer;
struct td_actor_system;
struct td_rule_engine;
struct td_transport_service;
struct td_auth;
struct td_device_state;

struct td_ctx {
  const struct td_config *cfg;
  struct td_loop *loops;          /* I/O loops */
  int nloops;
  struct td_queue *queue;         /* durable queue: transports -> rule engine */
  struct td_dbpool *db;           /* storage threads for request work */
  struct td_writer *writer;       /* batched telemetry/attribute writes */
  struct td_actor_system *actors;
  struct td_rule_engine *rules;   /* app actor, tenants, rule chains (src/rule/engine.h) */
  struct td_transport_service *transport; /* device auth cache + uplink (src/transport/transport.h) */
  struct td_auth *auth;           /* JWT key and user auth (src/core/auth.h) */
  struct td_device_state *device_state; /* device activity state (src/core/device_state.h) */
};
#endif
