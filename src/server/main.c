/* main.c — thingsd: parse the command line, load the configuration, install
 * on first start, wire the parts together (ARCHITECTURE.md §2–3), serve until
 * SIGTERM/SIGINT, then shut down in order so that nothing acknowledged is lost.
 *
 * Threads: the main thread only starts and stops things and waits for
 * signals; I/O loops, actor dispatchers, storage threads and the queue's
 * writer/consumer threads do the work. */
#include "actor/actor.h"
#include "api/api.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "core/auth.h"
#include "core/ctx.h"
#include "core/device_state.h"
#include "queue/queue.h"
#include "rule/engine.h"
#include "server/install.h"
#include "store/dbpool.h"
#include "store/store.h"
#include "store/writer.h"
#include "transport/http/http.h"
#include "transport/mqtt/mqtt.h"
#include "transport/transport.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(f,
          "usage: thingsd [--config FILE] [--data-dir DIR] [--demo]\n"
          "\n"
          "  -c, --config FILE    read configuration from FILE (YAML, see thingsd.yml)\n"
          "  -d, --data-dir DIR   data directory (default ./data; overrides server.data_dir)\n"
          "      --demo           load ThingsBoard's demo tenant, customers, users and devices once\n"
          "      --help-config    print every configuration key with its default and environment variable\n"
          "  -V, --version        print the version\n"
          "  -h, --help           this help\n"
          "\n"
          "Environment variables override the file (HTTP_BIND_ADDRESS, HTTP_BIND_PORT, MQTT_BIND_PORT, ...;\n"
          "see --help-config). A port set to 0 disables that listener. SIGTERM or SIGINT shut down cleanly.\n");
}

static int mkdir_p(const char *path) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0700) && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) && errno != EEXIST ? -1 : 0;
}

struct server {
  struct td_config cfg;
  struct td_ctx ctx;
  struct td_loop *loops;
  int nloops;
  struct td_http_router *router;
  struct td_http_server *http;
  void *mqtt;                     /* td_mqtt_transport state */
  unsigned char *jwt_key;
  size_t jwt_key_len;
  char db_path[1100];
  char queue_dir[1100];
};

static int start(struct server *s, bool demo) {
  struct td_config *cfg = &s->cfg;
  struct td_ctx *ctx = &s->ctx;
  int rc;
  ctx->cfg = cfg;

  if (mkdir_p(cfg->data_dir)) {
    td_log(TD_LOG_ERROR, "server", "action=\"creating data directory\" dir=%s err=\"%s\"", cfg->data_dir, strerror(errno));
    return TD_EIO;
  }
  if (cfg->sqlite_path[0]) snprintf(s->db_path, sizeof s->db_path, "%s", cfg->sqlite_path);
  else snprintf(s->db_path, sizeof s->db_path, "%s/thingsd.db", cfg->data_dir);
  snprintf(s->queue_dir, sizeof s->queue_dir, "%s/queue", cfg->data_dir);

  struct td_store_config scfg = {.type = cfg->database_type, .path = s->db_path, .cache_kb = cfg->sqlite_cache_kb,
                                 .busy_timeout_ms = 10000};
  /* Install on the main thread, before any other thread exists. */
  struct td_store *st = NULL;
  if ((rc = td_store_open(&scfg, true, &st))) {
    td_log(TD_LOG_ERROR, "server", "action=\"opening store\" path=%s err=%s", s->db_path, td_errname(rc));
    return rc;
  }
  rc = td_install_run(st, demo, &s->jwt_key, &s->jwt_key_len);
  td_store_close(st);
  if (rc) return rc;

  if ((rc = td_auth_new(cfg, s->jwt_key, s->jwt_key_len, &ctx->auth))) return rc;

  struct td_dbpool_config pcfg = {.threads = cfg->db_pool_threads, .queue_limit = (size_t)cfg->db_pool_queue_limit};
  if ((rc = td_dbpool_new(&scfg, &pcfg, &ctx->db))) return rc;
  struct td_writer_config wcfg = {.max_batch_rows = (size_t)cfg->writer_max_batch_rows,
                                  .queue_limit = (size_t)cfg->writer_queue_limit,
                                  .max_delay_ms = cfg->writer_max_delay_ms};
  if ((rc = td_writer_new(&scfg, &wcfg, &ctx->writer))) return rc;
  struct td_queue_config qcfg = {.type = cfg->queue_type, .dir = s->queue_dir, .partitions = cfg->queue_partitions,
                                 .max_inflight = (size_t)cfg->queue_max_inflight, .fsync = cfg->queue_fsync,
                                 .fsync_interval_us = cfg->queue_fsync_interval_us};
  if (mkdir_p(s->queue_dir)) return TD_EIO;
  if ((rc = td_queue_open(&qcfg, &ctx->queue))) {
    td_log(TD_LOG_ERROR, "server", "action=\"opening queue\" dir=%s err=%s", s->queue_dir, td_errname(rc));
    return rc;
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  struct td_actor_system_config acfg = {.threads = cfg->actor_threads > 0 ? cfg->actor_threads : (int)ncpu,
                                        .throughput = cfg->actor_throughput};
  if ((rc = td_actor_system_new(&acfg, &ctx->actors))) return rc;

  s->nloops = cfg->io_threads > 0 ? cfg->io_threads : (int)ncpu;
  s->loops = calloc((size_t)s->nloops, sizeof *s->loops);
  if (!s->loops) return TD_ENOMEM;
  for (int i = 0; i < s->nloops; i++)
    if ((rc = td_loop_init(&s->loops[i], i))) return rc;
  ctx->loops = s->loops;
  ctx->nloops = s->nloops;

  struct td_transport_service_config tcfg = {.cache_limit = 100000};
  if ((rc = td_transport_service_new(ctx, &tcfg, &ctx->transport))) return rc;
  struct td_device_state_config dscfg;
  td_device_state_config_from(cfg, &dscfg);
  if ((rc = td_device_state_new(ctx, &dscfg, &ctx->device_state))) return rc;
  if ((rc = td_device_state_restore(ctx->device_state)))
    td_log(TD_LOG_WARN, "server", "action=\"restoring device states\" err=%s", td_errname(rc));
  if ((rc = td_rule_engine_new(ctx, &ctx->rules))) return rc;

  if (cfg->http_bind_port > 0) {
    s->router = td_http_router_new();
    if (!s->router) return TD_ENOMEM;
    if ((rc = td_api_register(s->router, ctx))) return rc;
    if ((rc = td_http_device_api_register(s->router, ctx))) return rc;
    struct td_http_server_config hcfg = {.bind_address = cfg->http_bind_address, .port = cfg->http_bind_port,
                                         .max_body = (size_t)cfg->http_max_body, .max_header_bytes = 65536,
                                         .max_connections = cfg->http_max_connections, .idle_timeout_ms = 60000};
    if ((rc = td_http_server_start(&hcfg, s->router, s->loops, s->nloops, &s->http))) {
      td_log(TD_LOG_ERROR, "server", "action=\"listening\" address=%s port=%d err=%s", cfg->http_bind_address,
             cfg->http_bind_port, td_errname(rc));
      return rc;
    }
  }
  if ((rc = td_mqtt_transport.start(ctx, &s->mqtt))) {
    td_log(TD_LOG_ERROR, "server", "action=\"starting MQTT\" port=%d ssl_port=%d err=%s", cfg->mqtt_bind_port,
           cfg->mqtt_ssl_bind_port, td_errname(rc));
    return rc;
  }
  for (int i = 0; i < s->nloops; i++)
    if ((rc = td_loop_start(&s->loops[i]))) return rc;
  if ((rc = td_rule_engine_start(ctx->rules))) return rc;

  td_log(TD_LOG_INFO, "server", "action=started version=%s data_dir=%s http=%s:%d io_threads=%d actor_threads=%d",
         TD_VERSION, cfg->data_dir, cfg->http_bind_address, cfg->http_bind_port, s->nloops, acfg.threads);
  return 0;
}

/* Shut down in the order that keeps the invariants: stop taking new work,
 * let the rule engine finish what it holds (its writes complete into the
 * node actors, so the writer goes before the actors), detach it from the
 * queue, close the queue (pending writes finish and their callbacks answer
 * the devices still waiting on the loops), then stop the loops, the actors
 * and the storage threads. Anything durable but unprocessed is replayed on
 * the next start (at-least-once). */
static void stop(struct server *s) {
  struct td_ctx *ctx = &s->ctx;
  if (s->http) td_http_server_stop_accepting(s->http);
  if (ctx->rules) td_rule_engine_stop(ctx->rules);
  /* its last events and writes go while the queue and the writer still take them */
  td_device_state_stop(ctx->device_state);
  if (ctx->writer) td_writer_close(ctx->writer);
  if (ctx->rules) td_rule_engine_detach(ctx->rules);
  if (ctx->queue) td_queue_close(ctx->queue);
  ctx->queue = NULL;
  /* Storage jobs still queued finish and post their answers to the loops,
   * which are still running; requests arriving later get TD_ECLOSED (503). */
  if (ctx->db) td_dbpool_close(ctx->db);
  for (int i = 0; i < s->nloops; i++)
    if (s->loops[i].running) td_loop_stop(&s->loops[i]);
  td_mqtt_transport.stop(s->mqtt); /* after the loops: frees the connections left */
  s->mqtt = NULL;
  td_device_state_free(ctx->device_state); /* nobody reports any more; its loads and writes are done */
  ctx->device_state = NULL;
  if (ctx->rules) td_rule_engine_free(ctx->rules);
  if (ctx->actors) td_actor_system_free(ctx->actors);
  if (ctx->writer) td_writer_free(ctx->writer);
  if (ctx->db) td_dbpool_free(ctx->db);
  if (s->http) td_http_server_free(s->http);
  if (s->router) td_http_router_free(s->router);
  if (ctx->transport) td_transport_service_free(ctx->transport);
  if (ctx->auth) td_auth_free(ctx->auth);
  for (int i = 0; i < s->nloops; i++) td_loop_deinit(&s->loops[i]);
  free(s->loops);
  free(s->jwt_key);
}

int main(int argc, char **argv) {
  static struct server s;
  const char *config_file = NULL, *data_dir = NULL;
  bool demo = false, help_config = false;
  static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'}, {"data-dir", required_argument, NULL, 'd'},
    {"demo", no_argument, NULL, 'D'}, {"help-config", no_argument, NULL, 'C'},
    {"version", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "c:d:Vh", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config_file = optarg; break;
    case 'd': data_dir = optarg; break;
    case 'D': demo = true; break;
    case 'C': help_config = true; break;
    case 'V': printf("thingsd %s\n", TD_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "thingsd: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  char err[600];
  td_config_defaults(&s.cfg);
  if (config_file && td_config_load_yaml(&s.cfg, config_file, err, sizeof err)) {
    fprintf(stderr, "thingsd: %s\n", err);
    return 2;
  }
  if (td_config_load_env(&s.cfg, err, sizeof err)) {
    fprintf(stderr, "thingsd: environment: %s\n", err);
    return 2;
  }
  if (data_dir && td_config_set(&s.cfg, "server.data_dir", data_dir, err, sizeof err)) {
    fprintf(stderr, "thingsd: --data-dir: %s\n", err);
    return 2;
  }
  if (help_config) {
    td_config_print(stdout, &s.cfg);
    return 0;
  }
  int level = td_log_level_parse(s.cfg.log_level);
  if (level < 0) {
    fprintf(stderr, "thingsd: server.log_level: unknown level \"%s\"\n", s.cfg.log_level);
    return 2;
  }
  td_log_set_level((enum td_log_level)level);

  /* Signals are taken by sigwait() on this thread only: block them before
   * any thread is created so that every thread inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  int rc = start(&s, demo);
  if (rc) {
    td_log(TD_LOG_ERROR, "server", "action=\"starting\" err=%s", td_errname(rc));
    stop(&s);
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  td_log(TD_LOG_INFO, "server", "action=\"shutting down\" signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  stop(&s);
  td_log(TD_LOG_INFO, "server", "action=stopped");
  return 0;
}
