/* config.c — the table of every configuration key (config.h).
 *
 * Adding a key: one field in struct td_config and one row here; YAML, the
 * environment, --help-config and docs/configuration.md all follow from it. */
#include "base/config.h"
#include "base/err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

enum kind { K_STR, K_INT, K_I64, K_BOOL };

struct key {
  const char *path;    /* YAML path, dotted */
  const char *env;     /* environment variable, NULL if none */
  enum kind kind;
  size_t off;
  size_t size;         /* K_STR: buffer size */
  const char *def;     /* default, as text */
  const char *doc;
};

#define F(field) offsetof(struct td_config, field), sizeof(((struct td_config *)0)->field)

static const struct key keys[] = {
  {"server.data_dir", "TD_DATA_DIR", K_STR, F(data_dir), "./data", "data directory: database, queue log, keys"},
  {"server.log_level", "TD_LOG_LEVEL", K_STR, F(log_level), "info", "debug, info, warn or error"},
  {"server.io_threads", "TD_IO_THREADS", K_INT, F(io_threads), "0", "I/O loops (threads); 0 = one per core"},
  {"actors.dispatcher_threads", "TD_ACTOR_THREADS", K_INT, F(actor_threads), "0", "actor dispatcher threads; 0 = one per core"},
  {"actors.throughput", "ACTORS_SYSTEM_THROUGHPUT", K_INT, F(actor_throughput), "5", "messages an actor handles per turn"},
  {"actors.mailbox_limit", "TD_ACTOR_MAILBOX_LIMIT", K_INT, F(actor_mailbox_limit), "10000", "bounded mailbox size of each actor"},
  {"actors.session.max_concurrent_sessions_per_device", "ACTORS_MAX_CONCURRENT_SESSIONS_PER_DEVICE", K_INT, F(max_sessions_per_device), "0", "sessions one device may hold; past it the oldest is closed (MQTT 5: 0x8E); 0 = unlimited (ThingsBoard: 1)"},
  {"actors.rpc.max_retries", "ACTORS_RPC_MAX_RETRIES", K_INT, F(rpc_max_retries), "5", "persistent RPC: how often it is sent again after a session closed without acknowledging it (an RPC's own \"retries\" may lower it); then FAILED"},
  {"actors.device_idle_timeout_ms", "TD_DEVICE_ACTOR_IDLE_MS", K_I64, F(device_actor_idle_ms), "600000", "a device actor without messages for this long is stopped"},
  {"rule_engine.max_inflight", "TD_RULE_ENGINE_MAX_INFLIGHT", K_INT, F(rule_engine_max_inflight), "100000", "messages the rule engine processes at once (taken from the queue, not yet acked); bounds its memory and the telemetry write batch"},
  {"http.bind_address", "HTTP_BIND_ADDRESS", K_STR, F(http_bind_address), "0.0.0.0", "address of the REST API, WebSocket API and HTTP device API"},
  {"http.bind_port", "HTTP_BIND_PORT", K_INT, F(http_bind_port), "8080", "HTTP port; 0 disables HTTP"},
  {"http.max_payload_size", "HTTP_MAX_PAYLOAD_SIZE", K_I64, F(http_max_body), "16777216", "largest REST request body (bytes); larger gets 413"},
  {"transport.http.max_payload_size", "HTTP_DEVICE_MAX_PAYLOAD_SIZE", K_I64, F(http_device_max_body), "8388608", "largest HTTP device API request body (bytes); larger gets 413"},
  {"transport.http.request_timeout", "HTTP_REQUEST_TIMEOUT", K_I64, F(http_request_timeout_ms), "60000", "default long-poll timeout of the HTTP device API (ms)"},
  {"transport.client_side_rpc.timeout", "CLIENT_SIDE_RPC_TIMEOUT", K_I64, F(client_side_rpc_timeout_ms), "60000", "client-side RPC over HTTP: how long POST /api/v1/{token}/rpc waits for the rule chain's reply before answering {\"error\":\"timeout\"} (ms)"},
  {"http.max_connections", "TD_HTTP_MAX_CONNECTIONS", K_INT, F(http_max_connections), "10000", "open HTTP connections per I/O loop; more are closed"},
  {"server.ws.max_message_size", "TD_SERVER_WS_MAX_MESSAGE_SIZE", K_I64, F(ws_max_message_size), "65536", "largest WebSocket message a client may send (bytes, all fragments); larger closes the session with 1009"},
  {"server.ws.max_queue_messages_per_session", "TB_SERVER_WS_MAX_QUEUE_MESSAGES_PER_SESSION", K_INT, F(ws_max_queue_messages), "1000", "WebSocket messages queued for a session and not yet written; past it the session is closed with 1008"},
  {"server.ws.max_queue_bytes_per_session", "TD_SERVER_WS_MAX_QUEUE_BYTES_PER_SESSION", K_I64, F(ws_max_queue_bytes), "4194304", "WebSocket bytes queued for a session and not yet written; past it the session is closed with 1008"},
  {"server.ws.ping_timeout", "TB_SERVER_WS_PING_TIMEOUT", K_I64, F(ws_ping_timeout_ms), "30000", "the server pings each WebSocket this often (ms) and closes it when the pong has not come by the next ping; 0 = no pings"},
  {"server.ws.max_subscriptions_per_session", "TD_SERVER_WS_MAX_SUBSCRIPTIONS_PER_SESSION", K_INT, F(ws_max_subscriptions_per_session), "1000", "WebSocket telemetry API: subscriptions one session may hold (an entity-data command counts one per entity); past it the command gets errorCode 2"},
  {"server.ws.auth_timeout_ms", "TB_SERVER_WS_AUTH_TIMEOUT_MS", K_I64, F(ws_auth_timeout_ms), "10000", "WebSocket telemetry API: a session without a token in the URL must send its authCmd within this time (ms), else it is closed with 1008"},
  {"transport.mqtt.bind_address", "MQTT_BIND_ADDRESS", K_STR, F(mqtt_bind_address), "0.0.0.0", "MQTT address"},
  {"transport.mqtt.bind_port", "MQTT_BIND_PORT", K_INT, F(mqtt_bind_port), "1883", "MQTT port; 0 disables"},
  {"transport.mqtt.ssl.bind_port", "MQTT_SSL_BIND_PORT", K_INT, F(mqtt_ssl_bind_port), "8883", "MQTT over TLS port; 0 disables; the listener starts only when ssl.cert_file is set"},
  {"transport.mqtt.ssl.cert_file", "MQTT_SSL_PEM_CERT", K_STR, F(mqtt_ssl_cert_file), "", "MQTT TLS server certificate (PEM, then its chain); empty = no TLS listener"},
  {"transport.mqtt.ssl.key_file", "MQTT_SSL_PEM_KEY", K_STR, F(mqtt_ssl_key_file), "", "MQTT TLS private key (PEM)"},
  {"transport.mqtt.ssl.key_password", "MQTT_SSL_PEM_KEY_PASSWORD", K_STR, F(mqtt_ssl_key_password), "", "password of an encrypted key_file"},
  {"transport.mqtt.ssl.ca_file", "MQTT_SSL_CA_FILE", K_STR, F(mqtt_ssl_ca_file), "", "PEM bundle client certificates may chain to (sent as acceptable CAs); empty = none"},
  {"transport.mqtt.ssl.client_auth", "MQTT_SSL_CLIENT_AUTH", K_STR, F(mqtt_ssl_client_auth), "optional", "client certificates: none, optional (ThingsBoard: any certificate, checked by its hash at CONNECT) or required"},
  {"transport.mqtt.max_payload_size", "NETTY_MAX_PAYLOAD_SIZE", K_INT, F(mqtt_max_payload_size), "65536", "largest MQTT packet accepted (bytes); larger closes the connection (v5: DISCONNECT 0x95)"},
  {"transport.mqtt.max_inflight", "TD_MQTT_MAX_INFLIGHT", K_INT, F(mqtt_max_inflight), "100", "receive maximum announced to MQTT 5 clients (QoS 1 publishes not yet acknowledged)"},
  {"transport.mqtt.max_pending_uplinks", "TD_MQTT_MAX_PENDING_UPLINKS", K_INT, F(mqtt_max_pending_uplinks), "100", "per connection: publishes waiting for durability; past it the socket is not read"},
  {"transport.mqtt.max_connections", "TD_MQTT_MAX_CONNECTIONS", K_INT, F(mqtt_max_connections), "50000", "open MQTT connections per I/O loop; more are closed"},
  {"transport.mqtt.timeout", "MQTT_TIMEOUT", K_I64, F(mqtt_connect_timeout_ms), "10000", "a connection must send CONNECT within this time (ms)"},
  {"transport.coap.bind_port", "COAP_BIND_PORT", K_INT, F(coap_bind_port), "5683", "CoAP port; 0 disables (transport not built yet)"},
  {"transport.coap.dtls.bind_port", "COAP_DTLS_BIND_PORT", K_INT, F(coap_dtls_bind_port), "5684", "CoAP over DTLS port; 0 disables (transport not built yet)"},
  {"transport.lwm2m.bind_port", "LWM2M_BIND_PORT", K_INT, F(lwm2m_bind_port), "5685", "LwM2M port; 0 disables (transport not built yet)"},
  {"transport.json.type_cast_enabled", "JSON_TYPE_CAST_ENABLED", K_BOOL, F(json_type_cast_enabled), "true", "numeric strings in device JSON become numbers"},
  {"transport.json.max_string_value_length", "JSON_MAX_STRING_VALUE_LENGTH", K_INT, F(json_max_string_value_length), "0", "longest string value in device JSON; 0 = unlimited"},
  {"security.jwt.token_expiration_time", "SECURITY_JWT_TOKEN_EXPIRATION_TIME", K_I64, F(jwt_token_expiration_s), "9000", "access token lifetime (s)"},
  {"security.jwt.refresh_token_expiration_time", "SECURITY_JWT_REFRESH_TOKEN_EXPIRATION_TIME", K_I64, F(jwt_refresh_token_expiration_s), "604800", "refresh token lifetime (s)"},
  {"security.jwt.token_issuer", "SECURITY_JWT_TOKEN_ISSUER", K_STR, F(jwt_issuer), "thingsboard.io", "iss claim of issued tokens"},
  {"database.type", "DATABASE_TYPE", K_STR, F(database_type), "sqlite", "store backend: sqlite"},
  {"database.sqlite.path", "SQLITE_PATH", K_STR, F(sqlite_path), "", "database file; empty = <data_dir>/thingsd.db"},
  {"database.sqlite.cache_kb", "SQLITE_CACHE_KB", K_INT, F(sqlite_cache_kb), "65536", "SQLite page cache per connection (KiB)"},
  {"database.pool_threads", "TD_DB_POOL_THREADS", K_INT, F(db_pool_threads), "2", "storage threads for request work (REST, device reads)"},
  {"database.pool_queue_limit", "TD_DB_POOL_QUEUE_LIMIT", K_INT, F(db_pool_queue_limit), "10000", "queued storage jobs; past it requests get 503"},
  {"database.writer.max_batch_rows", "TD_WRITER_MAX_BATCH_ROWS", K_INT, F(writer_max_batch_rows), "300000", "most rows per telemetry commit (group commit)"},
  {"database.writer.max_delay_ms", "TD_WRITER_MAX_DELAY_MS", K_INT, F(writer_max_delay_ms), "500", "under load, commit telemetry at most once per this many ms unless max_batch_rows are queued (fewer, larger commits); 0 = at once"},
  {"database.writer.queue_limit", "TD_WRITER_QUEUE_LIMIT", K_INT, F(writer_queue_limit), "100000", "queued write requests from outside the rule engine (device state, WebSocket reads); the rule engine's own are bounded by rule_engine.max_inflight"},
  {"queue.type", "TB_QUEUE_TYPE", K_STR, F(queue_type), "log", "queue backend: log (embedded durable log)"},
  {"queue.partitions", "TB_QUEUE_PARTITIONS", K_INT, F(queue_partitions), "12", "queue partitions (hash of the originator)"},
  {"queue.max_inflight", "TD_QUEUE_MAX_INFLIGHT", K_INT, F(queue_max_inflight), "100000", "messages accepted but not yet processed; past it devices get back-pressure (HTTP 503)"},
  {"queue.fsync", "TD_QUEUE_FSYNC", K_BOOL, F(queue_fsync), "true", "fdatasync the queue log before acknowledging (never turn off in production)"},
  {"queue.fsync_interval_us", "TD_QUEUE_FSYNC_INTERVAL_US", K_I64, F(queue_fsync_interval_us), "1000", "at most one queue fdatasync per this many microseconds; messages written meanwhile share it (fewer syncs: less CPU and disk work, up to this much more acknowledgement latency); 0 = sync again as soon as the last sync ends"},
  {"state.defaultInactivityTimeoutInSec", "DEFAULT_INACTIVITY_TIMEOUT", K_I64, F(state_default_inactivity_timeout_s), "600", "a device without activity for this long becomes inactive (s); per device: SERVER_SCOPE attribute inactivityTimeout (ms)"},
  {"state.check_interval_ms", "TD_STATE_CHECK_INTERVAL_MS", K_I64, F(state_check_interval_ms), "1000", "how often devices are checked for inactivity (ms; ThingsBoard's defaultStateCheckIntervalInSec is 60 s)"},
  {"state.persist_interval_ms", "TD_STATE_PERSIST_INTERVAL_MS", K_I64, F(state_persist_interval_ms), "1000", "device state changes (active, lastActivityTime, ...) are written at most once per device per this many ms"},
  {"state.persistToTelemetry", "PERSIST_STATE_TO_TELEMETRY", K_BOOL, F(state_persist_to_telemetry), "false", "keep the device state as timeseries instead of SERVER_SCOPE attributes"},
  {"state.max_devices", "TD_STATE_MAX_DEVICES", K_I64, F(state_max_devices), "1000000", "devices whose activity state is tracked; past it new devices get none (logged once)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int set_value(struct td_config *c, const struct key *k, const char *v, char *err, size_t errlen) {
  char *p = (char *)c + k->off;
  char *end;
  switch (k->kind) {
  case K_STR:
    if (strlen(v) >= k->size) {
      snprintf(err, errlen, "%s: value too long (max %zu)", k->path, k->size - 1);
      return TD_EINVAL;
    }
    memcpy(p, v, strlen(v) + 1);
    return 0;
  case K_INT:
  case K_I64: {
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || (k->kind == K_INT && (n < -2147483647LL || n > 2147483647LL))) {
      snprintf(err, errlen, "%s: not an integer: \"%.64s\"", k->path, v);
      return TD_EINVAL;
    }
    if (k->kind == K_INT) *(int *)p = (int)n; else *(int64_t *)p = (int64_t)n;
    return 0;
  }
  case K_BOOL:
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) *(bool *)p = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) *(bool *)p = false;
    else {
      snprintf(err, errlen, "%s: not a boolean: \"%.64s\"", k->path, v);
      return TD_EINVAL;
    }
    return 0;
  }
  return TD_EINVAL;
}

void td_config_defaults(struct td_config *c) {
  char err[128];
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < NKEYS; i++) set_value(c, &keys[i], keys[i].def, err, sizeof err);
}

int td_config_set(struct td_config *c, const char *key, const char *value, char *err, size_t errlen) {
  for (size_t i = 0; i < NKEYS; i++)
    if (!strcmp(keys[i].path, key)) return set_value(c, &keys[i], value, err, errlen);
  snprintf(err, errlen, "unknown configuration key \"%.128s\"", key);
  return TD_EINVAL;
}

int td_config_load_env(struct td_config *c, char *err, size_t errlen) {
  for (size_t i = 0; i < NKEYS; i++) {
    if (!keys[i].env) continue;
    const char *v = getenv(keys[i].env);
    if (!v) continue;
    int rc = set_value(c, &keys[i], v, err, errlen);
    if (rc) return rc;
  }
  return 0;
}

/* YAML: nested mappings of scalars; the dotted path of each scalar is a key.
 * A value may also be written as a dotted key at any level ("jwt.token_issuer: x"). */
int td_config_load_yaml(struct td_config *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open config file %.512s: %s", path, strerror(errno));
    return TD_EIO;
  }
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  char stack[16][128];
  int depth = 0;              /* number of open mappings */
  int expect_key[17] = {0};   /* per level: next scalar is a key */
  int rc = 0, done = 0;
  while (!done && !rc) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      snprintf(err, errlen, "%.512s:%zu: %s", path, parser.problem_mark.line + 1,
               parser.problem ? parser.problem : "YAML error");
      rc = TD_EINVAL;
      break;
    }
    switch (ev.type) {
    case YAML_MAPPING_START_EVENT:
      if (depth >= 15) { snprintf(err, errlen, "%.512s: nesting too deep", path); rc = TD_EINVAL; break; }
      depth++;
      expect_key[depth] = 1;
      break;
    case YAML_MAPPING_END_EVENT:
      depth--;
      if (depth > 0) expect_key[depth] = 1;
      break;
    case YAML_SCALAR_EVENT: {
      const char *v = (const char *)ev.data.scalar.value;
      if (depth <= 0) break;
      if (expect_key[depth]) {
        snprintf(stack[depth], sizeof stack[depth], "%s", v);
        expect_key[depth] = 0;
      } else {
        char key[1024] = "";
        for (int i = 1; i <= depth; i++) {
          if (i > 1) strncat(key, ".", sizeof key - strlen(key) - 1);
          strncat(key, stack[i], sizeof key - strlen(key) - 1);
        }
        rc = td_config_set(c, key, v, err, errlen);
        expect_key[depth] = 1;
      }
      break;
    }
    case YAML_SEQUENCE_START_EVENT:
      snprintf(err, errlen, "%.512s:%zu: lists are not used in thingsd.yml", path, ev.start_mark.line + 1);
      rc = TD_EINVAL;
      break;
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

void td_config_print(FILE *f, const struct td_config *c) {
  fprintf(f, "# thingsd.yml — every key with its default. Environment variables override the file.\n");
  const char *section = "";
  size_t section_len = 0;
  for (size_t i = 0; i < NKEYS; i++) {
    const struct key *k = &keys[i];
    size_t slen = (size_t)(strchr(k->path, '.') - k->path);
    if (section_len != slen || strncmp(section, k->path, slen)) {
      fprintf(f, "\n# --- %.*s ---\n", (int)slen, k->path);
      section = k->path;
      section_len = slen;
    }
    const char *p = (const char *)c + k->off;
    char val[1100];
    switch (k->kind) {
    case K_STR: snprintf(val, sizeof val, "\"%s\"", p); break;
    case K_INT: snprintf(val, sizeof val, "%d", *(const int *)p); break;
    case K_I64: snprintf(val, sizeof val, "%" PRId64, *(const int64_t *)p); break;
    case K_BOOL: snprintf(val, sizeof val, "%s", *(const bool *)p ? "true" : "false"); break;
    }
    fprintf(f, "# %s%s%s\n%s: %s\n", k->doc, k->env ? " — env " : "", k->env ? k->env : "", k->path, val);
  }
}
