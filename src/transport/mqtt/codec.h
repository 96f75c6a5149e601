/* codec.h — MQTT packet codec for MQTT 3.1 (level 3, "MQIsdp"), 3.1.1 (level 4)
 * and 5.0 (level 5). A pure parser/encoder: no sockets, no session state.
 *
 * Where it sits: the MQTT transport session (src/transport/mqtt/session*.c)
 * frames bytes from the socket with td_mqtt_peek(), decodes whole packets with
 * td_mqtt_decode() and answers with td_mqtt_encode*(). The load generator in
 * bench/ and the tests use the same functions as a client.
 *
 * Decoding is zero-copy: every string or binary field of a decoded packet is a
 * (pointer, length) slice into the caller's input buffer, valid as long as that
 * buffer is. Lists (topic filters, SUBACK codes, user properties, subscription
 * identifiers) go into small fixed arrays inside struct td_mqtt_packet, so a
 * decode never allocates; a packet with more entries than an array holds is
 * refused with TD_EPROTO / TD_MQTT_E_TOO_MANY (a server limit, documented per
 * cap below).
 *
 * What the codec checks: everything the specs call a Malformed Packet or a
 * Protocol Error that can be seen in one packet alone (see enum td_mqtt_err).
 * What it leaves to the session: connection state (a packet before CONNECT, a
 * second CONNECT, a packet a client must not send such as CONNACK from a
 * client), client-id rules (empty id with clean session 0 -> CONNACK 0x02,
 * 3.1's 23-character limit), topic alias ranges against the negotiated
 * maximum, topic-filter wildcard placement (td_mqtt_filter_valid() helps),
 * direction rules (a client's PUBLISH must not carry a subscription
 * identifier), and the payload-format-indicator UTF-8 check of a payload.
 *
 * Thread safety: all functions are reentrant; they touch only their arguments. */
#ifndef TD_TRANSPORT_MQTT_CODEC_H
#define TD_TRANSPORT_MQTT_CODEC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Protocol levels (the "Protocol Version" byte of CONNECT). */
#define TD_MQTT_V31 3  /* MQTT 3.1, protocol name "MQIsdp" */
#define TD_MQTT_V311 4 /* MQTT 3.1.1, protocol name "MQTT" */
#define TD_MQTT_V5 5   /* MQTT 5.0, protocol name "MQTT" */

/* Packet types (high nibble of the first byte). */
enum td_mqtt_type {
  TD_MQTT_CONNECT = 1,
  TD_MQTT_CONNACK = 2,
  TD_MQTT_PUBLISH = 3,
  TD_MQTT_PUBACK = 4,
  TD_MQTT_PUBREC = 5,
  TD_MQTT_PUBREL = 6,
  TD_MQTT_PUBCOMP = 7,
  TD_MQTT_SUBSCRIBE = 8,
  TD_MQTT_SUBACK = 9,
  TD_MQTT_UNSUBSCRIBE = 10,
  TD_MQTT_UNSUBACK = 11,
  TD_MQTT_PINGREQ = 12,
  TD_MQTT_PINGRESP = 13,
  TD_MQTT_DISCONNECT = 14,
  TD_MQTT_AUTH = 15, /* v5 only */
};

/* The largest remaining length a 4-byte variable byte integer can carry, and
 * so the largest packet: 1 type byte + 4 length bytes + this. */
#define TD_MQTT_MAX_REMAINING 268435455u
#define TD_MQTT_MAX_PACKET (TD_MQTT_MAX_REMAINING + 5u)

/* Caps of the fixed arrays (server limits, beyond them TD_MQTT_E_TOO_MANY). */
#define TD_MQTT_MAX_TOPICS 32    /* topic filters per SUBSCRIBE/UNSUBSCRIBE, codes per SUBACK/UNSUBACK */
#define TD_MQTT_MAX_USER_PROPS 16 /* user properties per property block */
#define TD_MQTT_MAX_SUB_IDS 8     /* subscription identifiers per PUBLISH */

/* v5 reason codes (MQTT 5.0 §2.4). Several share a value; the name says the
 * meaning the packet gives it. */
#define TD_MQTT_RC_SUCCESS 0x00 /* also "normal disconnection", "granted QoS 0" */
#define TD_MQTT_RC_NORMAL_DISCONNECTION 0x00
#define TD_MQTT_RC_GRANTED_QOS_0 0x00
#define TD_MQTT_RC_GRANTED_QOS_1 0x01
#define TD_MQTT_RC_GRANTED_QOS_2 0x02
#define TD_MQTT_RC_DISCONNECT_WITH_WILL 0x04
#define TD_MQTT_RC_NO_MATCHING_SUBSCRIBERS 0x10
#define TD_MQTT_RC_NO_SUBSCRIPTION_EXISTED 0x11
#define TD_MQTT_RC_CONTINUE_AUTHENTICATION 0x18
#define TD_MQTT_RC_REAUTHENTICATE 0x19
#define TD_MQTT_RC_UNSPECIFIED_ERROR 0x80
#define TD_MQTT_RC_MALFORMED_PACKET 0x81
#define TD_MQTT_RC_PROTOCOL_ERROR 0x82
#define TD_MQTT_RC_IMPLEMENTATION_SPECIFIC 0x83
#define TD_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION 0x84
#define TD_MQTT_RC_CLIENT_ID_NOT_VALID 0x85
#define TD_MQTT_RC_BAD_USERNAME_OR_PASSWORD 0x86
#define TD_MQTT_RC_NOT_AUTHORIZED 0x87
#define TD_MQTT_RC_SERVER_UNAVAILABLE 0x88
#define TD_MQTT_RC_SERVER_BUSY 0x89
#define TD_MQTT_RC_BANNED 0x8A
#define TD_MQTT_RC_SERVER_SHUTTING_DOWN 0x8B
#define TD_MQTT_RC_BAD_AUTHENTICATION_METHOD 0x8C
#define TD_MQTT_RC_KEEP_ALIVE_TIMEOUT 0x8D
#define TD_MQTT_RC_SESSION_TAKEN_OVER 0x8E
#define TD_MQTT_RC_TOPIC_FILTER_INVALID 0x8F
#define TD_MQTT_RC_TOPIC_NAME_INVALID 0x90
#define TD_MQTT_RC_PACKET_ID_IN_USE 0x91
#define TD_MQTT_RC_PACKET_ID_NOT_FOUND 0x92
#define TD_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED 0x93
#define TD_MQTT_RC_TOPIC_ALIAS_INVALID 0x94
#define TD_MQTT_RC_PACKET_TOO_LARGE 0x95
#define TD_MQTT_RC_MESSAGE_RATE_TOO_HIGH 0x96
#define TD_MQTT_RC_QUOTA_EXCEEDED 0x97
#define TD_MQTT_RC_ADMINISTRATIVE_ACTION 0x98
#define TD_MQTT_RC_PAYLOAD_FORMAT_INVALID 0x99
#define TD_MQTT_RC_RETAIN_NOT_SUPPORTED 0x9A
#define TD_MQTT_RC_QOS_NOT_SUPPORTED 0x9B
#define TD_MQTT_RC_USE_ANOTHER_SERVER 0x9C
#define TD_MQTT_RC_SERVER_MOVED 0x9D
#define TD_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED 0x9E
#define TD_MQTT_RC_CONNECTION_RATE_EXCEEDED 0x9F
#define TD_MQTT_RC_MAXIMUM_CONNECT_TIME 0xA0
#define TD_MQTT_RC_SUB_IDS_NOT_SUPPORTED 0xA1
#define TD_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED 0xA2

/* MQTT 3.1 / 3.1.1 CONNACK return codes, and the 3.1.1 SUBACK failure code. */
#define TD_MQTT_V3_ACCEPTED 0x00
#define TD_MQTT_V3_BAD_PROTOCOL_VERSION 0x01
#define TD_MQTT_V3_IDENTIFIER_REJECTED 0x02
#define TD_MQTT_V3_SERVER_UNAVAILABLE 0x03
#define TD_MQTT_V3_BAD_USERNAME_OR_PASSWORD 0x04
#define TD_MQTT_V3_NOT_AUTHORIZED 0x05
#define TD_MQTT_V3_SUBACK_FAILURE 0x80

/* v5 property identifiers (MQTT 5.0 §2.2.2.2). */
enum td_mqtt_prop_id {
  TD_MQTT_PROP_PAYLOAD_FORMAT = 0x01,
  TD_MQTT_PROP_MESSAGE_EXPIRY = 0x02,
  TD_MQTT_PROP_CONTENT_TYPE = 0x03,
  TD_MQTT_PROP_RESPONSE_TOPIC = 0x08,
  TD_MQTT_PROP_CORRELATION_DATA = 0x09,
  TD_MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
  TD_MQTT_PROP_SESSION_EXPIRY = 0x11,
  TD_MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
  TD_MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
  TD_MQTT_PROP_AUTH_METHOD = 0x15,
  TD_MQTT_PROP_AUTH_DATA = 0x16,
  TD_MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
  TD_MQTT_PROP_WILL_DELAY = 0x18,
  TD_MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
  TD_MQTT_PROP_RESPONSE_INFO = 0x1A,
  TD_MQTT_PROP_SERVER_REFERENCE = 0x1C,
  TD_MQTT_PROP_REASON_STRING = 0x1F,
  TD_MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
  TD_MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
  TD_MQTT_PROP_TOPIC_ALIAS = 0x23,
  TD_MQTT_PROP_MAXIMUM_QOS = 0x24,
  TD_MQTT_PROP_RETAIN_AVAILABLE = 0x25,
  TD_MQTT_PROP_USER = 0x26,
  TD_MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
  TD_MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
  TD_MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
  TD_MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Bit of property `id` in td_mqtt_props.present. */
#define TD_MQTT_PROP_BIT(id) ((uint64_t)1 << (id))

/* A string or binary field: a slice, not NUL-terminated. After decode it
 * points into the input buffer; for encode the caller points it anywhere. */
struct td_mqtt_str {
  const char *p;
  size_t len;
};
/* TD_MQTT_STR("literal") builds a td_mqtt_str from a string literal. */
#define TD_MQTT_STR(lit) ((struct td_mqtt_str){(lit), sizeof(lit) - 1})

struct td_mqtt_user_prop {
  struct td_mqtt_str key, value;
};

/* v5 properties of one packet (or of the will in CONNECT). A property is
 * there iff its TD_MQTT_PROP_BIT is set in `present` (for the user property
 * and the subscription identifier: iff n_user / n_sub_ids > 0). Decode fills
 * only what the packet carried; encode writes exactly the present ones and
 * refuses (TD_EINVAL) one the packet type may not carry. */
struct td_mqtt_props {
  uint64_t present;
  uint32_t message_expiry, session_expiry, will_delay, max_packet_size;
  uint16_t server_keep_alive, receive_maximum, topic_alias_maximum, topic_alias;
  uint8_t payload_format, request_problem_info, request_response_info, maximum_qos;
  uint8_t retain_available, wildcard_sub_available, sub_id_available, shared_sub_available;
  struct td_mqtt_str content_type, response_topic, correlation_data, assigned_client_id;
  struct td_mqtt_str auth_method, auth_data, response_info, server_reference, reason_string;
  uint32_t sub_ids[TD_MQTT_MAX_SUB_IDS]; /* PUBLISH: any number (cap), SUBSCRIBE: at most one */
  size_t n_sub_ids;
  struct td_mqtt_user_prop user[TD_MQTT_MAX_USER_PROPS];
  size_t n_user;
};

/* One entry of SUBSCRIBE (filter + options byte) or UNSUBSCRIBE (opts 0).
 * Options byte: bits 0-1 QoS, bit 2 no local, bit 3 retain as published,
 * bits 4-5 retain handling (v5; in 3.x only the QoS bits may be set). */
struct td_mqtt_sub {
  struct td_mqtt_str filter;
  uint8_t opts;
};
#define TD_MQTT_SUB_QOS(opts) ((opts) & 3)

/* A decoded packet, or one to encode. Fields that a packet type does not use
 * are zero after decode. `reason` is the v5 reason code of CONNACK, PUBACK,
 * PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH, or the 3.x CONNACK return
 * code (TD_MQTT_V3_*); 0 elsewhere. */
struct td_mqtt_packet {
  uint8_t type;      /* enum td_mqtt_type */
  uint8_t flags;     /* low nibble of the first byte as received/sent */
  uint8_t level;     /* protocol level the packet was decoded with */
  uint8_t reason;
  uint16_t packet_id; /* PUBLISH QoS>0, PUBACK..PUBCOMP, (UN)SUBSCRIBE, (UN)SUBACK */
  struct td_mqtt_props props; /* v5 only */
  union {
    struct td_mqtt_connect {
      uint8_t protocol_level; /* what the client asked for: 3, 4 or 5 */
      bool clean_start;       /* "clean session" in 3.x */
      bool will, will_retain, has_username, has_password;
      uint8_t will_qos;
      uint16_t keep_alive;
      struct td_mqtt_str client_id, will_topic, will_payload, username, password;
      struct td_mqtt_props will_props; /* v5 only */
    } connect;
    struct {
      bool session_present; /* always false at level 3 (reserved byte) */
    } connack;
    struct {
      uint8_t qos;
      bool dup, retain;
      struct td_mqtt_str topic; /* may be empty in v5 when props.topic_alias is present */
      struct td_mqtt_str payload;
    } publish;
    struct {
      struct td_mqtt_sub subs[TD_MQTT_MAX_TOPICS];
      size_t n;
    } subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
    struct {
      uint8_t codes[TD_MQTT_MAX_TOPICS];
      size_t n; /* always 0 for a 3.x UNSUBACK */
    } suback; /* SUBACK and UNSUBACK */
  } u;
};

/* Why a decode failed (TD_EPROTO). `reason` in struct td_mqtt_error is the v5
 * reason code a server should put in its CONNACK/DISCONNECT for it. */
enum td_mqtt_err {
  TD_MQTT_E_NONE = 0,
  TD_MQTT_E_VARINT,           /* variable byte integer longer than 4 bytes (0x81) */
  TD_MQTT_E_TOO_LARGE,        /* packet larger than max_packet (0x95 packet too large) */
  TD_MQTT_E_PACKET_TYPE,      /* type 0, or AUTH below v5 (0x81) */
  TD_MQTT_E_FLAGS,            /* reserved fixed-header flag bits, DUP on QoS 0 (0x81) */
  TD_MQTT_E_QOS,              /* QoS 3 in PUBLISH, will or subscription (0x81) */
  TD_MQTT_E_UTF8,             /* invalid UTF-8, U+0000 or a surrogate in a string (0x81) */
  TD_MQTT_E_TRUNCATED,        /* a field runs past the remaining length (0x81) */
  TD_MQTT_E_TRAILING,         /* bytes left after the last field / wrong fixed size (0x81) */
  TD_MQTT_E_PROP_DUP,         /* a property that may appear once appears twice (0x82) */
  TD_MQTT_E_PROP_NOT_ALLOWED, /* unknown property, or not allowed in this packet (0x81) */
  TD_MQTT_E_PROP_VALUE,       /* property value out of range, e.g. receive maximum 0 (0x82) */
  TD_MQTT_E_PACKET_ID,        /* packet identifier 0 where one is required (0x82) */
  TD_MQTT_E_EMPTY_LIST,       /* SUBSCRIBE/UNSUBSCRIBE without filters, SUBACK without codes (0x82) */
  TD_MQTT_E_TOO_MANY,         /* more entries than a TD_MQTT_MAX_* cap (0x83) */
  TD_MQTT_E_PROTOCOL_NAME,    /* CONNECT protocol name not "MQTT"/"MQIsdp": just close (0x84) */
  TD_MQTT_E_PROTOCOL_VERSION, /* CONNECT level unsupported or not matching the name:
                               * 3.x CONNACK 0x01 / v5 CONNACK 0x84; see error.level */
  TD_MQTT_E_CONNECT_FLAGS,    /* reserved connect flag, will QoS/retain without will (0x81) */
  TD_MQTT_E_PASSWORD,         /* password flag without user name flag in 3.1.1 (0x81) */
  TD_MQTT_E_TOPIC,            /* PUBLISH topic with wildcards, or empty without alias (0x90) */
  TD_MQTT_E_TOPIC_FILTER,     /* empty topic filter (0x8F) */
  TD_MQTT_E_REASON_CODE,      /* reason/return code not valid for this packet (0x81) */
  TD_MQTT_E_SUB_OPTIONS,      /* reserved subscription option bits, retain handling 3 (0x81) */
};

struct td_mqtt_error {
  enum td_mqtt_err code;
  uint8_t reason; /* v5 reason code for the failure (see enum td_mqtt_err) */
  uint8_t type;   /* packet type being decoded, 0 if not known */
  uint8_t level;  /* CONNECT: the level the client sent (0 if not reached) */
};

/* td_mqtt_peek: read the fixed header at p[0..n). Returns the total packet
 * length (fixed header + remaining length, > 0) as soon as the header is
 * complete, even if n is shorter (the caller then knows how much to buffer);
 * TD_EAGAIN if the header itself is incomplete; TD_EPROTO with err->code
 * TD_MQTT_E_VARINT (5th length byte), TD_MQTT_E_TOO_LARGE (total >
 * max_packet; 0 means TD_MQTT_MAX_PACKET), TD_MQTT_E_PACKET_TYPE (type 0).
 * err may be NULL. Never reads past p[n-1]. */
int td_mqtt_peek(const uint8_t *p, size_t n, size_t max_packet, struct td_mqtt_error *err);

/* td_mqtt_decode: decode one packet from p[0..n).
 * `level` is the session's protocol level (3, 4 or 5; any other value is
 * treated as 4). A CONNECT ignores it and is decoded by the level it carries
 * (out->level and out->u.connect.protocol_level). `max_packet` bounds the
 * total packet size as in td_mqtt_peek(). Returns the number of bytes the
 * packet took (the caller drops them), TD_EAGAIN if p does not yet hold a
 * whole packet (a valid prefix never yields TD_EPROTO), or TD_EPROTO with the
 * detail in *err (may be NULL). On success *out refers into p (zero-copy). On
 * TD_EPROTO *out is unspecified. Does not allocate. */
int td_mqtt_decode(const uint8_t *p, size_t n, int level, size_t max_packet,
                   struct td_mqtt_packet *out, struct td_mqtt_error *err);

/* td_mqtt_encode: append packet `pkt` encoded for protocol `level` (3, 4, 5)
 * to b. A CONNECT is encoded with pkt->u.connect.protocol_level (protocol name
 * "MQIsdp" for 3, else "MQTT") and `level` is ignored. The fixed-header flags
 * are derived from the fields (PUBLISH dup/qos/retain; 0x2 for PUBREL,
 * SUBSCRIBE, UNSUBSCRIBE); pkt->flags is ignored. v5 acks use the short forms
 * when the reason is 0 / there are no properties. Returns 0, TD_EINVAL for a
 * packet that cannot be represented (string > 65535 bytes, QoS > 2, count over
 * a cap, property not allowed in the packet, type unknown, remaining length
 * over 268435455), or TD_ETOOBIG from the buffer limit; on error b is left as
 * it was. It does not check every rule the decoder checks: tests use it to
 * build some malformed packets on purpose. */
int td_mqtt_encode(struct td_buf *b, int level, const struct td_mqtt_packet *pkt);

/* td_mqtt_encode_publish: PUBLISH without building a td_mqtt_packet (the hot
 * path). props may be NULL (and is ignored below v5). Returns as td_mqtt_encode. */
int td_mqtt_encode_publish(struct td_buf *b, int level, struct td_mqtt_str topic,
                           struct td_mqtt_str payload, int qos, bool retain, bool dup,
                           uint16_t packet_id, const struct td_mqtt_props *props);

/* td_mqtt_encode_ack: PUBACK, PUBREC, PUBREL or PUBCOMP (`type`) for
 * packet_id with v5 reason `reason` (ignored below v5). Returns as
 * td_mqtt_encode. */
int td_mqtt_encode_ack(struct td_buf *b, int level, int type, uint16_t packet_id, uint8_t reason);

/* td_mqtt_encode_connack: CONNACK with `code` (v5 reason code at level 5, a
 * TD_MQTT_V3_* return code below) and optional v5 props (may be NULL). */
int td_mqtt_encode_connack(struct td_buf *b, int level, bool session_present, uint8_t code,
                           const struct td_mqtt_props *props);

/* td_mqtt_v3_connack_code: the 3.x CONNACK return code for a v5 CONNACK
 * reason, following ThingsBoard's choices (see reference §1.1.1: bad
 * credentials are 0x05, never 0x04). Returns the code (0..5), or TD_EINVAL
 * when 3.x has no code for it (malformed/protocol errors, packet too large):
 * the server then closes the connection without a CONNACK. */
int td_mqtt_v3_connack_code(uint8_t v5_reason);

/* td_mqtt_packet_equal: true iff a and b carry the same packet (field by
 * field, slices compared by content; CONNECT will/user/password fields count
 * only when their flag is set). For tests and the fuzz target. */
bool td_mqtt_packet_equal(const struct td_mqtt_packet *a, const struct td_mqtt_packet *b);

/* td_mqtt_utf8_valid: true iff s[0..n) is well-formed UTF-8 as MQTT requires
 * (no overlongs, no surrogates, <= U+10FFFF, no U+0000). */
bool td_mqtt_utf8_valid(const char *s, size_t n);

/* td_mqtt_filter_valid: true iff f is a non-empty topic filter whose '+' and
 * '#' wildcards each occupy a whole level and '#' is last. */
bool td_mqtt_filter_valid(struct td_mqtt_str f);

/* td_mqtt_type_name / td_mqtt_err_name: static names for logs
 * ("PUBLISH", "TD_MQTT_E_UTF8"); "?" for unknown values. */
const char *td_mqtt_type_name(int type);
const char *td_mqtt_err_name(enum td_mqtt_err e);

#endif
