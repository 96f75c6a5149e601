/* test_codec.c — unit tests for the MQTT packet codec
 * (src/transport/mqtt/codec.h): round trips of every packet type in 3.1,
 * 3.1.1 and 5.0 (with properties), every truncation of a valid packet giving
 * TD_EAGAIN, and each malformed case giving TD_EPROTO with its detail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "transport/mqtt/codec.h"

#define S(lit) TD_MQTT_STR(lit)

/* ---- helpers ----------------------------------------------------------- */

/* Check that every proper prefix of wire[0..n) asks for more bytes. */
static void check_prefixes(const uint8_t *wire, size_t n, int level) {
  struct td_mqtt_packet out;
  struct td_mqtt_error err;
  for (size_t k = 0; k < n; k++) {
    int rc = td_mqtt_decode(wire, k, level, 0, &out, &err);
    if (rc != TD_EAGAIN) fail_msg("prefix %zu/%zu of type %d: rc=%d detail=%s", k, n, wire[0] >> 4, rc,
                                  td_mqtt_err_name(err.code));
    assert_true(td_mqtt_peek(wire, k, 0, NULL) == TD_EAGAIN || td_mqtt_peek(wire, k, 0, NULL) == (int)n);
  }
}

/* Encode pkt at level, decode it back, compare; check prefixes, that the
 * packet followed by another one consumes just itself, and that re-encoding
 * the decoded packet gives the same bytes. Returns the encoded length. */
static size_t roundtrip(int level, const struct td_mqtt_packet *pkt) {
  struct td_buf b, b2;
  td_buf_init(&b, 0);
  td_buf_init(&b2, 0);
  assert_int_equal(td_mqtt_encode(&b, level, pkt), 0);
  size_t n = b.len;
  const uint8_t *wire = (const uint8_t *)b.data;
  assert_int_equal(td_mqtt_peek(wire, n, 0, NULL), (int)n);

  struct td_mqtt_packet out;
  struct td_mqtt_error err;
  int rc = td_mqtt_decode(wire, n, level, 0, &out, &err);
  if (rc < 0) fail_msg("decode type %d level %d: rc=%d detail=%s", pkt->type, level, rc, td_mqtt_err_name(err.code));
  assert_int_equal(rc, (int)n);

  struct td_mqtt_packet want = *pkt;
  want.flags = wire[0] & 0x0F;
  want.level = (uint8_t)(pkt->type == TD_MQTT_CONNECT ? pkt->u.connect.protocol_level : level);
  if (!td_mqtt_packet_equal(&want, &out)) fail_msg("type %d level %d: decoded packet differs", pkt->type, level);

  check_prefixes(wire, n, level);

  /* Followed by a PINGREQ: only the first packet is consumed. */
  assert_int_equal(td_buf_append(&b, "\xC0\x00", 2), 0);
  wire = (const uint8_t *)b.data;
  assert_int_equal(td_mqtt_decode(wire, n + 2, level, 0, &out, &err), (int)n);
  assert_int_equal(td_mqtt_decode(wire + n, 2, level, 0, &out, &err), 2);
  assert_int_equal(out.type, TD_MQTT_PINGREQ);

  /* Re-encoding the decoded packet gives the same bytes. */
  assert_int_equal(td_mqtt_decode(wire, n, level, 0, &out, &err), (int)n);
  assert_int_equal(td_mqtt_encode(&b2, level, &out), 0);
  assert_int_equal(b2.len, n);
  assert_memory_equal(b2.data, b.data, n);

  td_buf_deinit(&b);
  td_buf_deinit(&b2);
  return n;
}

/* Build "first byte, remaining length, body" into a static buffer. */
static uint8_t wirebuf[8192];
static size_t mk(uint8_t first, const uint8_t *body, size_t len) {
  size_t i = 0;
  wirebuf[i++] = first;
  size_t v = len;
  do {
    uint8_t d = v & 0x7f;
    v >>= 7;
    wirebuf[i++] = d | (v ? 0x80 : 0);
  } while (v);
  memcpy(wirebuf + i, body, len);
  return i + len;
}
#define MK0(first) mk((first), (const uint8_t *)"", 0)
#define MK(first, ...) mk((first), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Decode wirebuf[0..n) at level and expect TD_EPROTO with detail e. */
static void expect_err(size_t n, int level, enum td_mqtt_err e, int line) {
  struct td_mqtt_packet out;
  struct td_mqtt_error err;
  int rc = td_mqtt_decode(wirebuf, n, level, 0, &out, &err);
  if (rc != TD_EPROTO || err.code != e)
    fail_msg("line %d: want %s, got rc=%d detail=%s", line, td_mqtt_err_name(e), rc, td_mqtt_err_name(err.code));
}
#define EXPECT_ERR(n, level, e) expect_err((n), (level), (e), __LINE__)

static int decode_ok(size_t n, int level, struct td_mqtt_packet *out) {
  struct td_mqtt_error err;
  int rc = td_mqtt_decode(wirebuf, n, level, 0, out, &err);
  if (rc < 0) fail_msg("decode failed rc=%d detail=%s", rc, td_mqtt_err_name(err.code));
  return rc;
}

static void full_props(struct td_mqtt_props *p, int type) {
  memset(p, 0, sizeof *p);
  p->user[0] = (struct td_mqtt_user_prop){S("k"), S("v")};
  p->user[1] = (struct td_mqtt_user_prop){S("k"), S("v2")};
  p->n_user = 2;
  switch (type) {
  case TD_MQTT_CONNECT:
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_SESSION_EXPIRY) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_RECEIVE_MAXIMUM) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_REQUEST_RESPONSE_INFO) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_REQUEST_PROBLEM_INFO) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_METHOD) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_DATA);
    p->session_expiry = 3600;
    p->receive_maximum = 10;
    p->max_packet_size = 65536;
    p->topic_alias_maximum = 5;
    p->request_response_info = 1;
    p->request_problem_info = 0;
    p->auth_method = S("SCRAM");
    p->auth_data = S("\x00\x01");
    break;
  case 0: /* will */
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_WILL_DELAY) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_PAYLOAD_FORMAT) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_MESSAGE_EXPIRY) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_CONTENT_TYPE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_RESPONSE_TOPIC) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_CORRELATION_DATA);
    p->will_delay = 5;
    p->payload_format = 1;
    p->message_expiry = 60;
    p->content_type = S("text/plain");
    p->response_topic = S("r/t");
    p->correlation_data = S("\xff\x00");
    break;
  case TD_MQTT_CONNACK:
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_SESSION_EXPIRY) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_RECEIVE_MAXIMUM) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_QOS) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_RETAIN_AVAILABLE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_ASSIGNED_CLIENT_ID) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS_MAXIMUM) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_REASON_STRING) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_SUB_ID_AVAILABLE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_SHARED_SUB_AVAILABLE) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_SERVER_KEEP_ALIVE) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_RESPONSE_INFO) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_SERVER_REFERENCE);
    p->session_expiry = 0;
    p->receive_maximum = 100;
    p->maximum_qos = 1;
    p->retain_available = 0;
    p->max_packet_size = 65536;
    p->assigned_client_id = S("auto-1");
    p->topic_alias_maximum = 0;
    p->reason_string = S("ok");
    p->server_keep_alive = 30;
    p->response_info = S("ri");
    p->server_reference = S("other:1883");
    break;
  case TD_MQTT_PUBLISH:
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_PAYLOAD_FORMAT) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_MESSAGE_EXPIRY) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_CONTENT_TYPE) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_RESPONSE_TOPIC) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_CORRELATION_DATA) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS);
    p->payload_format = 1;
    p->message_expiry = 10;
    p->content_type = S("application/json");
    p->response_topic = S("resp");
    p->correlation_data = S("abc");
    p->topic_alias = 3;
    p->sub_ids[0] = 1;
    p->sub_ids[1] = 268435455;
    p->n_sub_ids = 2;
    break;
  case TD_MQTT_SUBSCRIBE:
    p->sub_ids[0] = 77;
    p->n_sub_ids = 1;
    break;
  case TD_MQTT_DISCONNECT:
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_SESSION_EXPIRY) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_REASON_STRING) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_SERVER_REFERENCE);
    p->session_expiry = 1;
    p->reason_string = S("bye");
    p->server_reference = S("x");
    break;
  case TD_MQTT_AUTH:
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_METHOD) | TD_MQTT_PROP_BIT(TD_MQTT_PROP_AUTH_DATA) |
                 TD_MQTT_PROP_BIT(TD_MQTT_PROP_REASON_STRING);
    p->auth_method = S("SCRAM");
    p->auth_data = S("d");
    p->reason_string = S("more");
    break;
  case TD_MQTT_UNSUBSCRIBE: break; /* user properties only */
  default:                        /* acks, SUBACK, UNSUBACK */
    p->present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_REASON_STRING);
    p->reason_string = S("why");
  }
}

/* ---- round trips ------------------------------------------------------- */

static void connect_pkt(struct td_mqtt_packet *p, int level, bool will, bool v5props) {
  memset(p, 0, sizeof *p);
  p->type = TD_MQTT_CONNECT;
  p->u.connect.protocol_level = (uint8_t)level;
  p->u.connect.clean_start = true;
  p->u.connect.keep_alive = 60;
  p->u.connect.client_id = S("dev-1");
  p->u.connect.has_username = true;
  p->u.connect.username = S("ACCESS_TOKEN");
  p->u.connect.has_password = true;
  p->u.connect.password = S("p\x00w");
  if (will) {
    p->u.connect.will = true;
    p->u.connect.will_qos = 1;
    p->u.connect.will_retain = true;
    p->u.connect.will_topic = S("spBv1.0/g/NDEATH/n");
    p->u.connect.will_payload = S("\x01\x02");
    if (v5props) full_props(&p->u.connect.will_props, 0);
  }
  if (v5props) full_props(&p->props, TD_MQTT_CONNECT);
}

static void test_roundtrip_connect(void **state) {
  struct td_mqtt_packet p;
  for (int level = 3; level <= 5; level++) {
    for (int will = 0; will <= 1; will++) {
      connect_pkt(&p, level, will, level == 5);
      roundtrip(level, &p);
    }
  }
  /* minimal: no user, no password, empty client id */
  connect_pkt(&p, 4, false, false);
  p.u.connect.has_username = p.u.connect.has_password = false;
  p.u.connect.client_id = S("");
  p.u.connect.clean_start = false;
  roundtrip(4, &p);
  /* v5 allows a password without a user name */
  connect_pkt(&p, 5, false, false);
  p.u.connect.has_username = false;
  p.u.connect.username = S("");
  roundtrip(5, &p);
}

static void test_roundtrip_connack(void **state) {
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_CONNACK;
  p.u.connack.session_present = true;
  roundtrip(4, &p);
  p.u.connack.session_present = false;
  p.reason = TD_MQTT_V3_NOT_AUTHORIZED;
  roundtrip(4, &p);
  roundtrip(3, &p);
  p.reason = TD_MQTT_RC_BAD_USERNAME_OR_PASSWORD;
  roundtrip(5, &p);
  p.reason = 0;
  p.u.connack.session_present = true;
  full_props(&p.props, TD_MQTT_CONNACK);
  roundtrip(5, &p);

  /* The helper writes the same bytes as the generic encoder. */
  struct td_buf a, b;
  td_buf_init(&a, 0);
  td_buf_init(&b, 0);
  assert_int_equal(td_mqtt_encode(&a, 5, &p), 0);
  assert_int_equal(td_mqtt_encode_connack(&b, 5, true, 0, &p.props), 0);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.data, b.data, a.len);
  td_buf_reset(&b);
  assert_int_equal(td_mqtt_encode_connack(&b, 4, false, TD_MQTT_V3_NOT_AUTHORIZED, NULL), 0);
  assert_int_equal(b.len, 4);
  assert_memory_equal(b.data, "\x20\x02\x00\x05", 4);
  td_buf_deinit(&a);
  td_buf_deinit(&b);
}

static void test_roundtrip_publish(void **state) {
  struct td_mqtt_packet p;
  static char big[70000];
  memset(big, 'x', sizeof big);
  for (int level = 3; level <= 5; level++) {
    for (int qos = 0; qos <= 2; qos++) {
      memset(&p, 0, sizeof p);
      p.type = TD_MQTT_PUBLISH;
      p.u.publish.qos = (uint8_t)qos;
      p.u.publish.dup = qos > 0;
      p.u.publish.retain = qos == 1;
      p.u.publish.topic = S("v1/devices/me/telemetry");
      p.u.publish.payload = S("{\"temperature\":42}");
      p.packet_id = qos ? 0xBEEF : 0;
      if (level == 5) full_props(&p.props, TD_MQTT_PUBLISH);
      roundtrip(level, &p);
    }
  }
  /* empty payload; payload big enough for a 3-byte remaining length */
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_PUBLISH;
  p.u.publish.topic = S("t");
  roundtrip(4, &p);
  p.u.publish.payload = (struct td_mqtt_str){big, sizeof big};
  assert_int_equal(roundtrip(4, &p), 1 + 3 + 3 + sizeof big);
  /* v5: empty topic with a topic alias */
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_PUBLISH;
  p.props.present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_TOPIC_ALIAS);
  p.props.topic_alias = 1;
  p.u.publish.payload = S("1");
  roundtrip(5, &p);

  /* the hot-path helper matches the generic encoder */
  struct td_buf a, b;
  td_buf_init(&a, 0);
  td_buf_init(&b, 0);
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_PUBLISH;
  p.u.publish.qos = 1;
  p.packet_id = 7;
  p.u.publish.topic = S("v1/devices/me/rpc/request/1");
  p.u.publish.payload = S("{}");
  assert_int_equal(td_mqtt_encode(&a, 4, &p), 0);
  assert_int_equal(td_mqtt_encode_publish(&b, 4, p.u.publish.topic, p.u.publish.payload, 1, false, false, 7, NULL), 0);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.data, b.data, a.len);
  td_buf_deinit(&a);
  td_buf_deinit(&b);
}

static void test_roundtrip_acks(void **state) {
  struct td_mqtt_packet p;
  for (int type = TD_MQTT_PUBACK; type <= TD_MQTT_PUBCOMP; type++) {
    memset(&p, 0, sizeof p);
    p.type = (uint8_t)type;
    p.packet_id = 1;
    assert_int_equal(roundtrip(3, &p), 4);
    assert_int_equal(roundtrip(4, &p), 4);
    assert_int_equal(roundtrip(5, &p), 4); /* short form */
    p.reason = type <= TD_MQTT_PUBREC ? TD_MQTT_RC_TOPIC_NAME_INVALID : TD_MQTT_RC_PACKET_ID_NOT_FOUND;
    assert_int_equal(roundtrip(5, &p), 5); /* reason, no properties */
    full_props(&p.props, type);
    roundtrip(5, &p);
    p.reason = 0;
    roundtrip(5, &p);

    struct td_buf b;
    td_buf_init(&b, 0);
    assert_int_equal(td_mqtt_encode_ack(&b, 5, type, 0x1234, 0), 0);
    assert_int_equal(b.len, 4);
    assert_int_equal((uint8_t)b.data[0], type << 4 | (type == TD_MQTT_PUBREL ? 2 : 0));
    td_buf_reset(&b);
    uint8_t rc = type <= TD_MQTT_PUBREC ? TD_MQTT_RC_PAYLOAD_FORMAT_INVALID : TD_MQTT_RC_PACKET_ID_NOT_FOUND;
    assert_int_equal(td_mqtt_encode_ack(&b, 5, type, 0x1234, rc), 0);
    assert_int_equal(b.len, 5);
    assert_int_equal((uint8_t)b.data[4], rc);
    td_buf_reset(&b);
    assert_int_equal(td_mqtt_encode_ack(&b, 4, type, 0x1234, rc), 0);
    assert_int_equal(b.len, 4); /* no reason below v5 */
    td_buf_deinit(&b);
  }
}

static void test_roundtrip_subscribe(void **state) {
  struct td_mqtt_packet p;
  for (int level = 3; level <= 5; level++) {
    memset(&p, 0, sizeof p);
    p.type = TD_MQTT_SUBSCRIBE;
    p.packet_id = 2;
    p.u.subscribe.subs[0] = (struct td_mqtt_sub){S("v1/devices/me/attributes"), 1};
    p.u.subscribe.subs[1] = (struct td_mqtt_sub){S("v1/devices/me/rpc/request/+"), 0};
    p.u.subscribe.subs[2] = (struct td_mqtt_sub){S("#"), 2};
    p.u.subscribe.n = 3;
    if (level == 5) {
      p.u.subscribe.subs[1].opts = 0x04 | 0x08 | 0x20 | 1; /* no local, RAP, retain handling 2 */
      full_props(&p.props, TD_MQTT_SUBSCRIBE);
    }
    roundtrip(level, &p);

    p.type = TD_MQTT_UNSUBSCRIBE;
    for (size_t i = 0; i < 3; i++) p.u.subscribe.subs[i].opts = 0;
    if (level == 5) full_props(&p.props, TD_MQTT_UNSUBSCRIBE);
    roundtrip(level, &p);
  }
  /* exactly the cap */
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_SUBSCRIBE;
  p.packet_id = 9;
  p.u.subscribe.n = TD_MQTT_MAX_TOPICS;
  for (size_t i = 0; i < TD_MQTT_MAX_TOPICS; i++) p.u.subscribe.subs[i] = (struct td_mqtt_sub){S("a/b"), 1};
  roundtrip(4, &p);
}

static void test_roundtrip_suback(void **state) {
  struct td_mqtt_packet p;
  for (int level = 3; level <= 5; level++) {
    memset(&p, 0, sizeof p);
    p.type = TD_MQTT_SUBACK;
    p.packet_id = 3;
    p.u.suback.codes[0] = 0;
    p.u.suback.codes[1] = 1;
    p.u.suback.codes[2] = 0x80;
    p.u.suback.n = 3;
    if (level == 5) {
      p.u.suback.codes[2] = TD_MQTT_RC_TOPIC_FILTER_INVALID;
      full_props(&p.props, TD_MQTT_SUBACK);
    }
    roundtrip(level, &p);

    memset(&p, 0, sizeof p);
    p.type = TD_MQTT_UNSUBACK;
    p.packet_id = 4;
    if (level == 5) {
      p.u.suback.codes[0] = TD_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
      p.u.suback.codes[1] = 0;
      p.u.suback.n = 2;
      full_props(&p.props, TD_MQTT_UNSUBACK);
    }
    size_t n = roundtrip(level, &p);
    if (level < 5) assert_int_equal(n, 4);
  }
}

static void test_roundtrip_ping_disconnect_auth(void **state) {
  struct td_mqtt_packet p;
  for (int level = 3; level <= 5; level++) {
    memset(&p, 0, sizeof p);
    p.type = TD_MQTT_PINGREQ;
    assert_int_equal(roundtrip(level, &p), 2);
    p.type = TD_MQTT_PINGRESP;
    assert_int_equal(roundtrip(level, &p), 2);
    p.type = TD_MQTT_DISCONNECT;
    assert_int_equal(roundtrip(level, &p), 2);
  }
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_DISCONNECT;
  p.reason = TD_MQTT_RC_ADMINISTRATIVE_ACTION;
  assert_int_equal(roundtrip(5, &p), 3);
  full_props(&p.props, TD_MQTT_DISCONNECT);
  roundtrip(5, &p);

  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_AUTH;
  assert_int_equal(roundtrip(5, &p), 2);
  p.reason = TD_MQTT_RC_CONTINUE_AUTHENTICATION;
  full_props(&p.props, TD_MQTT_AUTH);
  roundtrip(5, &p);
  p.reason = TD_MQTT_RC_REAUTHENTICATE;
  memset(&p.props, 0, sizeof p.props);
  assert_int_equal(roundtrip(5, &p), 4); /* reason + empty property length */
}

/* ---- MQTT 3.1 ---------------------------------------------------------- */

static void test_mqtt31_connect(void **state) {
  /* As sent by an MQTT 3.1 client: "MQIsdp", level 3, clean session, user +
   * password, keep alive 10, client id "c1". */
  size_t n = MK(0x10, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0xC2, 0, 10, 0, 2, 'c', '1', 0, 1, 'u', 0, 1, 'p');
  struct td_mqtt_packet p;
  assert_int_equal(decode_ok(n, 0, &p), (int)n);
  assert_int_equal(p.type, TD_MQTT_CONNECT);
  assert_int_equal(p.level, 3);
  assert_int_equal(p.u.connect.protocol_level, 3);
  assert_true(p.u.connect.clean_start);
  assert_int_equal(p.u.connect.keep_alive, 10);
  assert_true(td_mqtt_packet_equal(&p, &p));
  assert_int_equal(p.u.connect.client_id.len, 2);
  assert_memory_equal(p.u.connect.client_id.p, "c1", 2);
  assert_memory_equal(p.u.connect.username.p, "u", 1);
  assert_memory_equal(p.u.connect.password.p, "p", 1);
  /* 3.1 left the reserved flag and password-without-user unspecified */
  n = MK(0x10, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x43, 0, 10, 0, 2, 'c', '1', 0, 1, 'p');
  assert_int_equal(decode_ok(n, 4, &p), (int)n);
  /* level 3 under the 3.1.1 name, and "MQIsdp" with level 4 */
  n = MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 3, 0x02, 0, 10, 0, 0);
  EXPECT_ERR(n, 0, TD_MQTT_E_PROTOCOL_VERSION);
  n = MK(0x10, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 4, 0x02, 0, 10, 0, 0);
  EXPECT_ERR(n, 0, TD_MQTT_E_PROTOCOL_VERSION);
}

/* ---- malformed --------------------------------------------------------- */

static void test_remaining_length(void **state) {
  struct td_mqtt_packet p;
  struct td_mqtt_error err;
  /* five length bytes: refused as soon as the fifth is due */
  static const uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
  assert_int_equal(td_mqtt_decode(five, sizeof five, 4, 0, &p, &err), TD_EPROTO);
  assert_int_equal(err.code, TD_MQTT_E_VARINT);
  assert_int_equal(err.reason, TD_MQTT_RC_MALFORMED_PACKET);
  assert_int_equal(td_mqtt_decode(five, 5, 4, 0, &p, &err), TD_EPROTO);
  assert_int_equal(td_mqtt_decode(five, 4, 4, 0, &p, &err), TD_EAGAIN);
  /* the maximum 4-byte length is only "need more" */
  static const uint8_t four[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
  assert_int_equal(td_mqtt_peek(four, sizeof four, 0, NULL), (int)TD_MQTT_MAX_PACKET);
  assert_int_equal(td_mqtt_decode(four, sizeof four, 4, 0, &p, &err), TD_EAGAIN);
  /* reserved type 0 */
  static const uint8_t zero[] = {0x00, 0x00};
  assert_int_equal(td_mqtt_decode(zero, 1, 4, 0, &p, &err), TD_EPROTO);
  assert_int_equal(err.code, TD_MQTT_E_PACKET_TYPE);
}

static void test_max_packet(void **state) {
  uint8_t body[200];
  memset(body, 'x', sizeof body);
  body[0] = 0;
  body[1] = 1; /* topic "x" */
  size_t n = mk(0x30, body, sizeof body); /* 203 bytes */
  struct td_mqtt_packet p;
  struct td_mqtt_error err;
  assert_int_equal(td_mqtt_decode(wirebuf, n, 4, n, &p, &err), (int)n);
  assert_int_equal(td_mqtt_decode(wirebuf, n, 4, n - 1, &p, &err), TD_EPROTO);
  assert_int_equal(err.code, TD_MQTT_E_TOO_LARGE);
  assert_int_equal(err.reason, TD_MQTT_RC_PACKET_TOO_LARGE);
  assert_int_equal(err.type, TD_MQTT_PUBLISH);
  /* known from the header alone, before the body arrives */
  assert_int_equal(td_mqtt_decode(wirebuf, 3, 5, 100, &p, &err), TD_EPROTO);
  assert_int_equal(err.code, TD_MQTT_E_TOO_LARGE);
  assert_int_equal(td_mqtt_peek(wirebuf, 3, 100, &err), TD_EPROTO);
  assert_int_equal(td_mqtt_peek(wirebuf, 3, 0, &err), (int)n);
}

static void test_bad_flags(void **state) {
  EXPECT_ERR(MK(0x41, 0, 1), 4, TD_MQTT_E_FLAGS);             /* PUBACK flags 1 */
  EXPECT_ERR(MK(0x60, 0, 1), 4, TD_MQTT_E_FLAGS);             /* PUBREL flags 0 */
  EXPECT_ERR(MK(0x80, 0, 1, 0, 1, 'a', 0), 4, TD_MQTT_E_FLAGS); /* SUBSCRIBE flags 0 */
  EXPECT_ERR(MK(0xA0, 0, 1, 0, 1, 'a'), 4, TD_MQTT_E_FLAGS);   /* UNSUBSCRIBE flags 0 */
  EXPECT_ERR(MK0(0xC1), 4, TD_MQTT_E_FLAGS);                   /* PINGREQ flags 1 */
  EXPECT_ERR(MK(0x1F, 0), 4, TD_MQTT_E_FLAGS);                /* CONNECT flags */
  EXPECT_ERR(MK(0x36, 0, 1, 'a', 0, 1), 4, TD_MQTT_E_QOS);    /* PUBLISH QoS 3 */
  EXPECT_ERR(MK(0x38, 0, 1, 'a'), 4, TD_MQTT_E_FLAGS);        /* DUP on QoS 0 */
  EXPECT_ERR(MK0(0xF0), 4, TD_MQTT_E_PACKET_TYPE);             /* AUTH below v5 */
  EXPECT_ERR(MK(0xC0, 0), 4, TD_MQTT_E_TRAILING);             /* PINGREQ with a body */
  EXPECT_ERR(MK(0x40, 0, 1, 0), 4, TD_MQTT_E_TRAILING);       /* 3.1.1 PUBACK of 3 bytes */
  EXPECT_ERR(MK(0xE0, 0), 4, TD_MQTT_E_TRAILING);             /* 3.1.1 DISCONNECT with a body */
  EXPECT_ERR(MK(0x20, 2, 0), 4, TD_MQTT_E_FLAGS);             /* CONNACK reserved ack flags */
  EXPECT_ERR(MK(0x20, 1, 5), 4, TD_MQTT_E_FLAGS);             /* session present with a failure */
}

static void test_bad_utf8(void **state) {
  EXPECT_ERR(MK(0x30, 0, 3, 'a', 0xC0, 0x80), 4, TD_MQTT_E_UTF8);    /* overlong U+0000 */
  EXPECT_ERR(MK(0x30, 0, 3, 'a', 0x00, 'b'), 4, TD_MQTT_E_UTF8);     /* U+0000 */
  EXPECT_ERR(MK(0x30, 0, 3, 0xED, 0xA0, 0x80), 4, TD_MQTT_E_UTF8);   /* surrogate U+D800 */
  EXPECT_ERR(MK(0x30, 0, 2, 'a', 0xE2), 4, TD_MQTT_E_UTF8);          /* cut sequence */
  EXPECT_ERR(MK(0x30, 0, 4, 0xF4, 0x90, 0x80, 0x80), 4, TD_MQTT_E_UTF8); /* > U+10FFFF */
  EXPECT_ERR(MK(0x30, 0, 1, 0xFF), 4, TD_MQTT_E_UTF8);
  /* valid multibyte text decodes */
  struct td_mqtt_packet p;
  size_t n = MK(0x30, 0, 5, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 'x');
  assert_int_equal(decode_ok(n, 4, &p), (int)n);
  assert_int_equal(p.u.publish.payload.len, 1);
  /* invalid UTF-8 in a client id and a user property key */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, 1, 0xC1), 0, TD_MQTT_E_UTF8);
  EXPECT_ERR(MK(0xE0, 0x80, 6, 0x26, 0, 1, 0xFE, 0, 0), 5, TD_MQTT_E_UTF8);
  assert_true(td_mqtt_utf8_valid("\xF0\x9F\x98\x80", 4));
  assert_false(td_mqtt_utf8_valid("\xE0\x80\xAF", 3)); /* overlong '/' */
  assert_false(td_mqtt_utf8_valid("\x80", 1));
}

static void test_truncated_fields(void **state) {
  EXPECT_ERR(MK(0x30, 0, 5, 'a'), 4, TD_MQTT_E_TRUNCATED);           /* topic longer than the packet */
  EXPECT_ERR(MK(0x32, 0, 1, 'a', 0), 4, TD_MQTT_E_TRUNCATED);        /* half a packet id */
  EXPECT_ERR(MK(0x40, 0), 4, TD_MQTT_E_TRUNCATED);                   /* PUBACK of 1 byte */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 5, 1), 5, TD_MQTT_E_TRUNCATED);     /* property length past the end */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 1, 0x02, 0, 0), 5, TD_MQTT_E_TRUNCATED); /* u32 past the property block */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 3, 0x03, 0, 5, 'x', 'y'), 5, TD_MQTT_E_TRUNCATED);
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 0x80, 0x80, 0x80, 0x80, 0x01), 5, TD_MQTT_E_VARINT); /* 5-byte prop length */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10), 0, TD_MQTT_E_TRUNCATED); /* no client id */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 10, 0, 0), 0, TD_MQTT_E_TRUNCATED); /* no user */
}

static void test_bad_properties(void **state) {
  /* v5 PUBLISH topic "a": [props] */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 4, 0x01, 1, 0x01, 0), 5, TD_MQTT_E_PROP_DUP);
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 6, 0x23, 0, 1, 0x23, 0, 2), 5, TD_MQTT_E_PROP_DUP);
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 5, 0x11, 0, 0, 0, 1), 5, TD_MQTT_E_PROP_NOT_ALLOWED); /* session expiry */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 2, 0x05, 0), 5, TD_MQTT_E_PROP_NOT_ALLOWED);          /* unknown id */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 3, 0x23, 0, 0), 5, TD_MQTT_E_PROP_VALUE);              /* topic alias 0 */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 2, 0x01, 2), 5, TD_MQTT_E_PROP_VALUE);                 /* format 2 */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 2, 0x0B, 0), 5, TD_MQTT_E_PROP_VALUE);                 /* sub id 0 */
  /* PUBLISH may carry several subscription identifiers, SUBSCRIBE only one */
  struct td_mqtt_packet p;
  size_t n = MK(0x30, 0, 1, 'a', 4, 0x0B, 1, 0x0B, 2);
  assert_int_equal(decode_ok(n, 5, &p), (int)n);
  assert_int_equal(p.props.n_sub_ids, 2);
  EXPECT_ERR(MK(0x82, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, 'a', 0), 5, TD_MQTT_E_PROP_DUP);
  /* v5 CONNECT: receive maximum 0, auth data without method, duplicate session expiry */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 10, 3, 0x21, 0, 0, 0, 0), 0,
             TD_MQTT_E_PROP_VALUE);
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 10, 4, 0x16, 0, 1, 'x', 0, 0), 0,
             TD_MQTT_E_PROP_VALUE);
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 10, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2, 0, 0), 0,
             TD_MQTT_E_PROP_DUP);
  /* will delay in CONNECT properties (allowed only among the will's) */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 10, 5, 0x18, 0, 0, 0, 1, 0, 0), 0,
             TD_MQTT_E_PROP_NOT_ALLOWED);
  /* reason string in a PUBLISH, topic alias in a PUBACK */
  EXPECT_ERR(MK(0x30, 0, 1, 'a', 4, 0x1F, 0, 1, 'x'), 5, TD_MQTT_E_PROP_NOT_ALLOWED);
  EXPECT_ERR(MK(0x40, 0, 1, 0, 3, 0x23, 0, 1), 5, TD_MQTT_E_PROP_NOT_ALLOWED);
  /* too many user properties */
  uint8_t body[512];
  size_t k = 0;
  body[k++] = 0;
  body[k++] = 1;
  body[k++] = 'a';
  body[k++] = (TD_MQTT_MAX_USER_PROPS + 1) * 5;
  for (int i = 0; i <= TD_MQTT_MAX_USER_PROPS; i++) {
    body[k++] = 0x26;
    body[k++] = 0;
    body[k++] = 0;
    body[k++] = 0;
    body[k++] = 0;
  }
  EXPECT_ERR(mk(0x30, body, k), 5, TD_MQTT_E_TOO_MANY);
}

static void test_packet_id_zero(void **state) {
  EXPECT_ERR(MK(0x32, 0, 1, 'a', 0, 0), 4, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0x34, 0, 1, 'a', 0, 0), 4, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0x40, 0, 0), 4, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0x62, 0, 0), 5, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0x82, 0, 0, 0, 1, 'a', 0), 4, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0xA2, 0, 0, 0, 1, 'a'), 4, TD_MQTT_E_PACKET_ID);
  EXPECT_ERR(MK(0x90, 0, 0, 0), 4, TD_MQTT_E_PACKET_ID);
  /* QoS 0 carries no packet id: the two bytes are payload */
  struct td_mqtt_packet p;
  size_t n = MK(0x30, 0, 1, 'a', 0, 0);
  assert_int_equal(decode_ok(n, 4, &p), (int)n);
  assert_int_equal(p.u.publish.payload.len, 2);
}

static void test_subscribe_lists(void **state) {
  EXPECT_ERR(MK(0x82, 0, 1), 4, TD_MQTT_E_EMPTY_LIST);
  EXPECT_ERR(MK(0x82, 0, 1, 0), 5, TD_MQTT_E_EMPTY_LIST); /* v5: only empty properties */
  EXPECT_ERR(MK(0xA2, 0, 1), 4, TD_MQTT_E_EMPTY_LIST);
  EXPECT_ERR(MK(0x90, 0, 1), 4, TD_MQTT_E_EMPTY_LIST);
  EXPECT_ERR(MK(0x82, 0, 1, 0, 0, 1), 4, TD_MQTT_E_TOPIC_FILTER); /* empty filter */
  EXPECT_ERR(MK(0x82, 0, 1, 0, 1, 'a'), 4, TD_MQTT_E_TRUNCATED);  /* filter without options */
  EXPECT_ERR(MK(0x82, 0, 1, 0, 1, 'a', 3), 4, TD_MQTT_E_QOS);
  EXPECT_ERR(MK(0x82, 0, 1, 0, 1, 'a', 0x04), 4, TD_MQTT_E_SUB_OPTIONS); /* v5 bit in 3.1.1 */
  EXPECT_ERR(MK(0x82, 0, 1, 0, 0, 1, 'a', 0x40), 5, TD_MQTT_E_SUB_OPTIONS);
  EXPECT_ERR(MK(0x82, 0, 1, 0, 0, 1, 'a', 0x30), 5, TD_MQTT_E_SUB_OPTIONS); /* retain handling 3 */
  EXPECT_ERR(MK(0x90, 0, 1, 0x03), 4, TD_MQTT_E_REASON_CODE);              /* SUBACK code 3 */
  EXPECT_ERR(MK(0x90, 0, 1, 0, 0x8F), 4, TD_MQTT_E_REASON_CODE);           /* v5 code in 3.1.1 */
  /* 33 filters */
  uint8_t body[512];
  size_t k = 0;
  body[k++] = 0;
  body[k++] = 1;
  for (int i = 0; i <= TD_MQTT_MAX_TOPICS; i++) {
    body[k++] = 0;
    body[k++] = 1;
    body[k++] = 'a';
    body[k++] = 1;
  }
  EXPECT_ERR(mk(0x82, body, k), 4, TD_MQTT_E_TOO_MANY);
}

static void test_connect_errors(void **state) {
  struct td_mqtt_error err;
  struct td_mqtt_packet p;
  size_t n = MK(0x10, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 10, 0, 0);
  EXPECT_ERR(n, 0, TD_MQTT_E_PROTOCOL_NAME);
  /* unsupported level: the detail and the level the client sent */
  n = MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 10, 0, 0);
  assert_int_equal(td_mqtt_decode(wirebuf, n, 0, 0, &p, &err), TD_EPROTO);
  assert_int_equal(err.code, TD_MQTT_E_PROTOCOL_VERSION);
  assert_int_equal(err.level, 6);
  assert_int_equal(err.type, TD_MQTT_CONNECT);
  assert_int_equal(err.reason, TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
  assert_int_equal(td_mqtt_v3_connack_code(err.reason), TD_MQTT_V3_BAD_PROTOCOL_VERSION);
  /* reserved connect flag */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 10, 0, 0), 0, TD_MQTT_E_CONNECT_FLAGS);
  /* will QoS / retain without the will flag; will QoS 3 */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 10, 0, 0), 0, TD_MQTT_E_CONNECT_FLAGS);
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 10, 0, 0), 0, TD_MQTT_E_CONNECT_FLAGS);
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1E, 0, 10, 0, 0, 0, 1, 't', 0, 0), 0, TD_MQTT_E_QOS);
  /* will topic with a wildcard */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x06, 0, 10, 0, 0, 0, 1, '#', 0, 0), 0, TD_MQTT_E_TOPIC);
  /* password without user name: refused in 3.1.1, fine in v5 */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 10, 0, 0, 0, 1, 'p'), 0, TD_MQTT_E_PASSWORD);
  n = MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x42, 0, 10, 0, 0, 0, 0, 1, 'p');
  assert_int_equal(decode_ok(n, 0, &p), (int)n);
  assert_true(p.u.connect.has_password && !p.u.connect.has_username);
  /* bytes after the last field */
  EXPECT_ERR(MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, 0, 9), 0, TD_MQTT_E_TRAILING);
  /* a CONNECT ignores the session level argument */
  n = MK(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 10, 0, 0, 0);
  assert_int_equal(decode_ok(n, 4, &p), (int)n);
  assert_int_equal(p.level, 5);
}

static void test_topics_and_reasons(void **state) {
  EXPECT_ERR(MK(0x30, 0, 3, 'a', '/', '+'), 4, TD_MQTT_E_TOPIC);
  EXPECT_ERR(MK(0x30, 0, 1, '#'), 4, TD_MQTT_E_TOPIC);
  EXPECT_ERR(MK(0x30, 0, 0), 4, TD_MQTT_E_TOPIC);    /* empty topic in 3.1.1 */
  EXPECT_ERR(MK(0x30, 0, 0, 0), 5, TD_MQTT_E_TOPIC); /* empty topic, no alias */
  EXPECT_ERR(MK(0x40, 0, 1, 0x05), 5, TD_MQTT_E_REASON_CODE);
  EXPECT_ERR(MK(0x60 | 2, 0, 1, 0x10), 5, TD_MQTT_E_REASON_CODE); /* PUBREL: only 0x00 / 0x92 */
  EXPECT_ERR(MK(0xE0, 0x05), 5, TD_MQTT_E_REASON_CODE);
  EXPECT_ERR(MK(0xF0, 0x01), 5, TD_MQTT_E_REASON_CODE);
  EXPECT_ERR(MK(0x20, 0, 0x06), 4, TD_MQTT_E_REASON_CODE);
  EXPECT_ERR(MK(0x20, 0, 0x01, 0), 5, TD_MQTT_E_REASON_CODE);
  EXPECT_ERR(MK(0xB0, 0, 1, 0, 0x01), 5, TD_MQTT_E_REASON_CODE); /* UNSUBACK granted-QoS code */
  /* the short forms decode to reason 0 / no properties */
  struct td_mqtt_packet p;
  size_t n = MK0(0xE0);
  assert_int_equal(decode_ok(n, 5, &p), 2);
  assert_int_equal(p.reason, 0);
  n = MK(0xF0, 0x18);
  assert_int_equal(decode_ok(n, 5, &p), 3);
  assert_int_equal(p.reason, TD_MQTT_RC_CONTINUE_AUTHENTICATION);
}

/* ---- helpers of the API ------------------------------------------------ */

static void test_v3_mapping_and_names(void **state) {
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_SUCCESS), 0);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_CLIENT_ID_NOT_VALID), TD_MQTT_V3_IDENTIFIER_REJECTED);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_BAD_USERNAME_OR_PASSWORD), TD_MQTT_V3_NOT_AUTHORIZED);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_NOT_AUTHORIZED), TD_MQTT_V3_NOT_AUTHORIZED);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_SERVER_UNAVAILABLE), TD_MQTT_V3_SERVER_UNAVAILABLE);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_CONNECTION_RATE_EXCEEDED), TD_MQTT_V3_SERVER_UNAVAILABLE);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_MALFORMED_PACKET), TD_EINVAL);
  assert_int_equal(td_mqtt_v3_connack_code(TD_MQTT_RC_PACKET_TOO_LARGE), TD_EINVAL);
  assert_string_equal(td_mqtt_type_name(TD_MQTT_PUBLISH), "PUBLISH");
  assert_string_equal(td_mqtt_type_name(99), "?");
  assert_string_equal(td_mqtt_err_name(TD_MQTT_E_UTF8), "TD_MQTT_E_UTF8");
  assert_true(td_mqtt_filter_valid(S("v1/devices/me/rpc/request/+")));
  assert_true(td_mqtt_filter_valid(S("#")));
  assert_true(td_mqtt_filter_valid(S("a/+/#")));
  assert_false(td_mqtt_filter_valid(S("a/b#")));
  assert_false(td_mqtt_filter_valid(S("a/#/b")));
  assert_false(td_mqtt_filter_valid(S("a+")));
  assert_false(td_mqtt_filter_valid(S("")));
}

static void test_encode_errors(void **state) {
  struct td_buf b;
  td_buf_init(&b, 0);
  assert_int_equal(td_buf_puts(&b, "keep"), 0);
  struct td_mqtt_packet p;
  memset(&p, 0, sizeof p);
  p.type = TD_MQTT_PUBLISH;
  static char big[70000];
  p.u.publish.topic = (struct td_mqtt_str){big, sizeof big}; /* > 65535 */
  assert_int_equal(td_mqtt_encode(&b, 4, &p), TD_EINVAL);
  assert_int_equal(b.len, 4);
  assert_string_equal(b.data, "keep");
  p.u.publish.topic = S("t");
  p.u.publish.qos = 3;
  assert_int_equal(td_mqtt_encode(&b, 4, &p), TD_EINVAL);
  p.u.publish.qos = 0;
  p.props.present = TD_MQTT_PROP_BIT(TD_MQTT_PROP_SESSION_EXPIRY); /* not allowed in PUBLISH */
  assert_int_equal(td_mqtt_encode(&b, 5, &p), TD_EINVAL);
  assert_int_equal(td_mqtt_encode(&b, 4, &p), 0); /* no properties below v5 */
  assert_int_equal(b.len, 4 + 5);
  p.type = TD_MQTT_AUTH;
  assert_int_equal(td_mqtt_encode(&b, 4, &p), TD_EINVAL);
  p.type = 0;
  assert_int_equal(td_mqtt_encode(&b, 4, &p), TD_EINVAL);
  assert_int_equal(td_mqtt_encode_ack(&b, 4, TD_MQTT_CONNACK, 1, 0), TD_EINVAL);
  td_buf_deinit(&b);

  /* the buffer limit */
  td_buf_init(&b, 16);
  assert_int_equal(td_mqtt_encode_publish(&b, 4, S("t"), S("0123456789abcdef"), 0, false, false, 0, NULL),
                   TD_ETOOBIG);
  assert_int_equal(b.len, 0);
  td_buf_deinit(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_roundtrip_connect),
    cmocka_unit_test(test_roundtrip_connack),
    cmocka_unit_test(test_roundtrip_publish),
    cmocka_unit_test(test_roundtrip_acks),
    cmocka_unit_test(test_roundtrip_subscribe),
    cmocka_unit_test(test_roundtrip_suback),
    cmocka_unit_test(test_roundtrip_ping_disconnect_auth),
    cmocka_unit_test(test_mqtt31_connect),
    cmocka_unit_test(test_remaining_length),
    cmocka_unit_test(test_max_packet),
    cmocka_unit_test(test_bad_flags),
    cmocka_unit_test(test_bad_utf8),
    cmocka_unit_test(test_truncated_fields),
    cmocka_unit_test(test_bad_properties),
    cmocka_unit_test(test_packet_id_zero),
    cmocka_unit_test(test_subscribe_lists),
    cmocka_unit_test(test_connect_errors),
    cmocka_unit_test(test_topics_and_reasons),
    cmocka_unit_test(test_v3_mapping_and_names),
    cmocka_unit_test(test_encode_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
