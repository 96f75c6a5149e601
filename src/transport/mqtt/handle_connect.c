/* handle_connect.c — CONNECT and authentication (reference §1.1.1).
 *
 * Decision order: user name or client id "provision" -> a provisioning-only
 * session; on the TLS port a client certificate -> X.509 (credentialsId =
 * sha3 of the certificate, td_tls_peer_credentials_id); else MQTT basic /
 * access token (td_transport_auth_basic). The answer follows ThingsBoard's
 * table: MQTT 3.x bad credentials 0x05 (never 0x04), unknown client id
 * without user name 0x02; MQTT 5 0x86 / 0x85 / 0x87 / 0x88. After a refused
 * CONNECT the connection is closed.
 *
 * Authentication is asynchronous (a storage job on a cache miss): the
 * request lives apart from the connection and is detached if the connection
 * goes first. Packets that arrive meanwhile wait in the input buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/device_state.h"
#include "transport/mqtt/mqtt_int.h"

struct conn_auth {
  struct mconn *c;
  uint8_t fail_reason; /* v5 reason for unknown credentials */
  struct td_auth_req x509;
  struct td_basic_auth_req basic;
};

static void send_connack(struct mconn *c, int level, uint8_t v5_reason, const struct td_mqtt_props *props) {
  struct td_buf b;
  td_buf_init(&b, 1024);
  int code = v5_reason;
  if (level != TD_MQTT_V5) code = td_mqtt_v3_connack_code(v5_reason);
  if (code >= 0 && td_mqtt_encode_connack(&b, level, false, (uint8_t)code, level == TD_MQTT_V5 ? props : NULL) == 0)
    mqtt_conn_send(c, b.data, b.len);
  td_buf_deinit(&b);
}

/* refuse: CONNACK with the failure (if the level has a code for it), then close. */
static void refuse(struct mconn *c, uint8_t v5_reason) {
  td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"authenticating CONNECT\" level=%d reason=0x%02x", c->id,
                 c->level, v5_reason);
  c->state = MS_AUTH; /* no DISCONNECT after a CONNACK */
  send_connack(c, c->level, v5_reason, NULL);
  mqtt_conn_end(c, v5_reason);
}

static void accept_session(struct mconn *c, bool provision) {
  struct mqtt_srv *srv = c->ml->srv;
  char assigned_id[32];
  snprintf(assigned_id, sizeof assigned_id, "thingsd-%u", c->id);
  struct td_mqtt_props props;
  memset(&props, 0, sizeof props);
  if (c->level == TD_MQTT_V5) {
    props.present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_RECEIVE_MAXIMUM) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_QOS) |
                    TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                    TD_MQTT_PROP_BIT(TD_MQTT_PROP_SHARED_SUB_AVAILABLE) |
                    TD_MQTT_PROP_BIT(TD_MQTT_PROP_SUB_ID_AVAILABLE);
    props.receive_maximum = (uint16_t)srv->receive_max;
    props.maximum_qos = 1; /* QoS 2 is refused with DISCONNECT 0x9B (docs/compatibility.md) */
    props.max_packet_size = (uint32_t)srv->max_packet;
    props.shared_sub_available = 0;
    props.sub_id_available = 0;
    if (c->assign_id) {
      props.present |= TD_MQTT_PROP_BIT(TD_MQTT_PROP_ASSIGNED_CLIENT_ID);
      props.assigned_client_id = (struct td_mqtt_str){assigned_id, strlen(assigned_id)};
    }
  }
  send_connack(c, c->level, TD_MQTT_RC_SUCCESS, &props);
  if (c->closing) return;
  c->state = provision ? MS_PROVISION : MS_OPEN;
  mqtt_session_arm_timer(c);
  if (!provision) {
    c->ds_opened = true;
    int rc = td_core_session_open(srv->ctx, c->ds);
    if (rc) {
      td_log(TD_LOG_WARN, "mqtt", "conn=%u action=\"opening device session\" err=%s", c->id, td_errname(rc));
      mqtt_conn_end(c, TD_MQTT_RC_IMPLEMENTATION_SPECIFIC);
      return;
    }
    td_device_state_connect(srv->ctx->device_state, &c->ds->tenant_id, &c->ds->device_id, td_now_ms());
  }
  td_log(TD_LOG_DEBUG, "mqtt", "conn=%u action=connected level=%d tls=%d provision=%d", c->id, c->level, c->is_tls,
         provision);
}

static void auth_finished(struct conn_auth *a, int status, struct td_device_ref *d) {
  struct mconn *c = a->c;
  uint8_t fail = a->fail_reason;
  free(a);
  if (!c) {
    td_device_ref_put(d);
    return;
  }
  c->auth = NULL;
  if (status) {
    refuse(c, status == TD_EAUTH ? fail : TD_MQTT_RC_SERVER_UNAVAILABLE);
    return;
  }
  c->dev = d;
  c->ds = td_dsession_new(c->ml->loop, &mqtt_dsession_ops, c, &d->info.device_id, &d->info.tenant_id);
  if (!c->ds) {
    refuse(c, TD_MQTT_RC_SERVER_UNAVAILABLE);
    return;
  }
  accept_session(c, false);
  if (c->closing) return;
  mqtt_conn_update_reading(c);
  mqtt_session_process(c); /* packets that came after CONNECT */
}

static void on_x509(struct td_auth_req *r) {
  struct conn_auth *a = td_container_of(r, struct conn_auth, x509);
  auth_finished(a, r->status, r->device);
}

static void on_basic(struct td_basic_auth_req *r) {
  struct conn_auth *a = td_container_of(r, struct conn_auth, basic);
  auth_finished(a, r->status, r->device);
}

void mqtt_connect_detach(struct mconn *c) {
  if (c->auth) c->auth->c = NULL;
  c->auth = NULL;
}

/* copy_str: a NUL-terminated copy; false if it does not fit or holds a NUL. */
static bool copy_str(char *dst, size_t cap, struct td_mqtt_str s) {
  if (s.len >= cap || memchr(s.p, '\0', s.len)) return false;
  memcpy(dst, s.p, s.len);
  dst[s.len] = '\0';
  return true;
}

static bool str_is(struct td_mqtt_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.p, lit, s.len); }

static bool blank(struct td_mqtt_str s) {
  for (size_t i = 0; i < s.len; i++)
    if (s.p[i] != ' ' && s.p[i] != '\t' && s.p[i] != '\n' && s.p[i] != '\r') return false;
  return true;
}

void mqtt_handle_connect(struct mconn *c, const struct td_mqtt_packet *pkt) {
  const struct td_mqtt_connect *cn = &pkt->u.connect;
  struct mqtt_srv *srv = c->ml->srv;
  c->level = cn->protocol_level;
  c->keep_alive = cn->keep_alive;
  c->state = MS_AUTH;
  bool has_user = cn->has_username, has_pass = cn->has_password;
  if (c->level == TD_MQTT_V5) {
    if (pkt->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_PACKET_SIZE))
      c->client_max_packet = pkt->props.max_packet_size;
    if (pkt->props.present & TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_METHOD)) {
      refuse(c, TD_MQTT_RC_BAD_AUTHENTICATION_METHOD); /* no enhanced authentication */
      return;
    }
  }
  /* MQTT 3.1.1 §3.1.3.1: a zero-byte client id needs a clean session */
  if (cn->client_id.len == 0 && !cn->clean_start && c->level != TD_MQTT_V5) {
    refuse(c, TD_MQTT_RC_CLIENT_ID_NOT_VALID);
    return;
  }
  c->assign_id = c->level == TD_MQTT_V5 && cn->client_id.len == 0;
  if ((has_user && str_is(cn->username, "provision")) || str_is(cn->client_id, "provision")) {
    accept_session(c, true);
    return;
  }
  struct conn_auth *a = calloc(1, sizeof *a);
  if (!a) {
    refuse(c, TD_MQTT_RC_SERVER_UNAVAILABLE);
    return;
  }
  a->c = c;
  c->auth = a;
  char hash[65];
  if (c->tls && td_tls_peer_credentials_id(c->tls, hash) == 0) {
    a->fail_reason = TD_MQTT_RC_NOT_AUTHORIZED;
    memcpy(a->x509.credentials_id, hash, sizeof hash);
    a->x509.loop = c->ml->loop;
    a->x509.done = on_x509;
    td_transport_auth_x509(srv->ctx->transport, &a->x509);
    return;
  }
  /* the reason for credentials that are not found, by what the client sent (§1.1.1 table) */
  if (has_user || has_pass) a->fail_reason = TD_MQTT_RC_BAD_USERNAME_OR_PASSWORD;
  else if (!blank(cn->client_id)) a->fail_reason = TD_MQTT_RC_CLIENT_ID_NOT_VALID;
  else a->fail_reason = TD_MQTT_RC_NOT_AUTHORIZED;
  struct td_basic_auth_req *r = &a->basic;
  r->loop = c->ml->loop;
  r->done = on_basic;
  r->has_username = has_user;
  r->has_password = has_pass;
  if (!copy_str(r->client_id, sizeof r->client_id, cn->client_id) ||
      (has_user && !copy_str(r->username, sizeof r->username, cn->username)) ||
      (has_pass && !copy_str(r->password, sizeof r->password, cn->password))) {
    auth_finished(a, TD_EAUTH, NULL); /* longer than any stored credentials */
    return;
  }
  td_transport_auth_basic(srv->ctx->transport, r);
}

void mqtt_connect_decode_failed(struct mconn *c, const struct td_mqtt_error *err) {
  td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"reading CONNECT\" err=%s", c->id,
                 td_mqtt_err_name(err->code));
  if (err->type == TD_MQTT_CONNECT && err->code == TD_MQTT_E_PROTOCOL_VERSION) {
    /* answer in the client's own protocol: 3.x 0x01, 5 0x84 */
    send_connack(c, err->level == TD_MQTT_V5 ? TD_MQTT_V5 : TD_MQTT_V311, TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, NULL);
  } else if (err->type == TD_MQTT_CONNECT && err->level == TD_MQTT_V5 && err->code != TD_MQTT_E_PROTOCOL_NAME &&
             err->reason >= 0x80) {
    send_connack(c, TD_MQTT_V5, err->reason, NULL);
  }
  mqtt_conn_end(c, 0); /* state WAIT_CONNECT: no DISCONNECT, just close once written */
}
