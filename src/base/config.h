/* config.h — thingsd's configuration: thingsd.yml plus environment overrides.
 *
 * Every key is declared once, in the table in config.c, with its YAML path,
 * its environment variable (ThingsBoard's name where one exists), its default
 * and a one-line description; `thingsd --help-config` prints the table and
 * docs/configuration.md is generated from it. Precedence: default < YAML <
 * environment < command line. A port set to 0 disables that listener. */
#ifndef TD_BASE_CONFIG_H
#define TD_BASE_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct td_config {
  /* server */
  char data_dir[1024];
  char log_level[16];
  int io_threads;                 /* 0 = one per core */
  /* actors */
  int actor_threads;              /* 0 = one per core */
  int actor_throughput;
  int actor_mailbox_limit;
  int64_t device_actor_idle_ms;
  int max_sessions_per_device;    /* actors.session.max_concurrent_sessions_per_device; 0 = unlimited */
  int rpc_max_retries;            /* actors.rpc.max_retries: persistent RPC re-sends after unacknowledged losses */
  /* rule engine */
  int rule_engine_max_inflight;   /* messages inside the rule engine at once (its window) */
  /* HTTP (REST API, WebSocket, HTTP device API) */
  char http_bind_address[64];
  int http_bind_port;
  int64_t http_max_body;          /* REST API request body limit */
  int64_t http_device_max_body;   /* /api/v1 device API request body limit */
  int64_t http_request_timeout_ms;
  int64_t client_side_rpc_timeout_ms; /* transport.client_side_rpc.timeout */
  int http_max_connections;
  /* WebSocket (server.ws.*; per session) */
  int64_t ws_max_message_size;    /* largest incoming message (bytes); larger closes with 1009 */
  int ws_max_queue_messages;      /* outgoing messages not yet written */
  int64_t ws_max_queue_bytes;     /* outgoing bytes not yet written */
  int64_t ws_ping_timeout_ms;     /* ping interval; no pong by the next ping closes; 0 = no pings */
  int ws_max_subscriptions_per_session; /* telemetry API: subscriptions one session may hold */
  int64_t ws_auth_timeout_ms;     /* telemetry API: a session must authenticate within this time */
  /* other transports (ports reserved for later transports) */
  char mqtt_bind_address[64];
  int mqtt_bind_port;
  int mqtt_ssl_bind_port;
  char mqtt_ssl_cert_file[1024];  /* PEM certificate chain; "" = no TLS listener */
  char mqtt_ssl_key_file[1024];
  char mqtt_ssl_key_password[256];
  char mqtt_ssl_ca_file[1024];    /* PEM bundle for client certificates; "" = none */
  char mqtt_ssl_client_auth[16];  /* none, optional, required */
  int mqtt_max_payload_size;      /* largest MQTT packet accepted (bytes) */
  int mqtt_max_inflight;          /* v5 receive maximum announced to clients */
  int mqtt_max_pending_uplinks;   /* per connection, waiting for durability; reading stops past it */
  int mqtt_max_connections;       /* per I/O loop */
  int64_t mqtt_connect_timeout_ms;
  int coap_bind_port;
  int coap_dtls_bind_port;
  int lwm2m_bind_port;
  /* JSON typing */
  bool json_type_cast_enabled;
  int json_max_string_value_length;
  /* security */
  int64_t jwt_token_expiration_s;
  int64_t jwt_refresh_token_expiration_s;
  char jwt_issuer[128];
  /* database */
  char database_type[16];         /* sqlite */
  char sqlite_path[1024];         /* "" = <data_dir>/thingsd.db */
  int sqlite_cache_kb;
  int db_pool_threads;
  int db_pool_queue_limit;
  int writer_max_batch_rows;
  int writer_max_delay_ms;
  int writer_queue_limit;
  /* queue */
  char queue_type[16];            /* log */
  int queue_partitions;
  int queue_max_inflight;
  bool queue_fsync;
  int64_t queue_fsync_interval_us;
  /* device state service (src/core/device_state.h) */
  int64_t state_default_inactivity_timeout_s;
  int64_t state_check_interval_ms;
  int64_t state_persist_interval_ms;
  bool state_persist_to_telemetry;
  int64_t state_max_devices;
};

/* td_config_defaults: fill every field with its default. */
void td_config_defaults(struct td_config *c);
/* td_config_load_yaml: apply a YAML file; unknown keys are an error (named in
 * *err, a static or malloc'd message printed by the caller). */
int td_config_load_yaml(struct td_config *c, const char *path, char *err, size_t errlen);
/* td_config_load_env: apply environment overrides. */
int td_config_load_env(struct td_config *c, char *err, size_t errlen);
/* td_config_set: set one key by its YAML path ("http.bind_port") from text. */
int td_config_set(struct td_config *c, const char *key, const char *value, char *err, size_t errlen);
/* td_config_print: the documented table (key, env, default, description) as YAML comments + values. */
void td_config_print(FILE *f, const struct td_config *c);
#endif
