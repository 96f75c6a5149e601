/* mqtt_int.h — private to the MQTT transport (listener.c, session.c,
 * handle_connect.c, handle_publish.c, topics.c). Everything here lives on
 * one I/O loop: a connection is owned by the loop that accepted it, from
 * accept to close, and is touched by no other thread. */
#ifndef TD_TRANSPORT_MQTT_MQTT_INT_H
#define TD_TRANSPORT_MQTT_MQTT_INT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/arena.h"
#include "store/store.h"
#include "core/device_session.h"
#include "transport/mqtt/codec.h"
#include "transport/mqtt/mqtt.h"
#include "transport/tls/tls.h"
#include "transport/transport.h"

#define MQTT_READ_BUF 65536
/* Bytes written to a socket and not yet sent; past it the connection is not
 * read (its downlink backs up: do not take more work from it). */
#define MQTT_WRITE_HIGH (1u << 20)
/* Outbound QoS 1 publishes tracked for their PUBACK (RPC delivered). */
#define MQTT_OUT_TRACK 32
/* QoS 2 (3.x) packet ids acknowledged with PUBREC, waiting for PUBREL. */
#define MQTT_QOS2_MAX 64
/* keep-alive 0: a connection without any packet for this long is closed. */
#define MQTT_INACTIVITY_MS 600000
#define MQTT_DISCONNECT_GRACE_MS 1000

struct mqtt_srv;
struct mconn;

struct mqtt_loop {
  struct mqtt_srv *srv;
  struct td_loop *loop;
  uv_tcp_t plain, tls;
  bool plain_on, tls_on;
  int nconns;
  struct mconn *conns;
  char rbuf[MQTT_READ_BUF];
};

struct mqtt_srv {
  struct td_ctx *ctx;
  struct td_tls_ctx *tls;
  int nloops;
  struct mqtt_loop *ml;
  int port, ssl_port;
  atomic_uint next_id;
  size_t max_packet;
  int receive_max;
  int max_pending;
  int max_conns;
  int64_t connect_timeout_ms;
  bool stopping;           /* mqtt_stop: the core is gone, sessions just end */
};

enum mstate {
  MS_WAIT_CONNECT = 0, /* nothing but CONNECT is allowed */
  MS_AUTH,             /* CONNECT received, credentials being checked */
  MS_OPEN,             /* CONNACK 0 sent: a device session */
  MS_PROVISION,        /* CONNACK 0 sent: only /provision/request */
  MS_CLOSING,
};

/* Subscription kinds (exact filter whitelist, topics.c). */
enum msub {
  SUB_ATTR = 0,   /* shared attribute updates */
  SUB_ATTR_RESP,  /* attribute request responses */
  SUB_RPC,        /* server-side RPC requests */
  SUB_RPC_RESP,   /* client-side RPC responses */
  SUB_OTA,        /* firmware/software topics: granted, nothing is sent yet */
  SUB_PROVISION,  /* /provision/response */
  SUB_GW_ATTR,    /* v1/gateway/attributes: child shared attribute updates */
  SUB_GW_RPC,     /* v1/gateway/rpc: child RPC requests */
  SUB_GW_ATTR_RESP, /* v1/gateway/attributes/response */
  SUB_N
};
enum mfam { FAM_V1 = 0, FAM_V2 = 1 };

/* Publish topics a device may use (topics.c). */
enum mtopic {
  T_UNKNOWN = 0,
  T_TELEMETRY,
  T_ATTRIBUTES,
  T_ATTR_REQUEST,
  T_RPC_RESPONSE, /* device answers a server-side RPC */
  T_RPC_REQUEST,  /* client-side RPC */
  T_CLAIM,
  T_PROVISION,
  T_GW_CONNECT, /* gateway API (reference §1.1.6), gateway devices only */
  T_GW_DISCONNECT,
  T_GW_TELEMETRY,
  T_GW_ATTRIBUTES,
  T_GW_ATTR_REQUEST,
  T_GW_RPC,
  T_GW_CLAIM,
};

/* One piece of work a publish started; acknowledgements leave in arrival
 * order (MQTT 4.6), so they wait in a per-connection FIFO until their own
 * work and everything before them is done. A pend outlives its connection
 * when its work is still running: c is then NULL and the completion frees it. */
struct pend {
  struct pend *next;
  struct mconn *c;
  uint16_t pid;
  uint8_t ack_type;       /* 0, TD_MQTT_PUBACK or TD_MQTT_PUBREC */
  uint8_t reason;         /* v5 reason code of the ack */
  bool qos_counted;       /* counts against the receive maximum */
  bool done;
  int status;             /* < 0: the work failed; the connection is closed */
  struct td_uplink_req up;
  struct td_msg **msgs;   /* kept while the queue pushes back (TD_EFULL) */
  size_t nmsgs;
  /* attribute request */
  struct td_dbjob job;
  struct td_arena arena;
  bool arena_on;
  struct td_uuid device_id;
  const char **ckeys, **skeys;
  size_t nck, nsk;
  bool want_client, want_shared;
  struct td_attr *cattr, *sattr;
  size_t ncattr, nsattr;
  int32_t req_id;
  enum mfam fam;
  char *gw_device;        /* gateway attribute request: the child's name (malloc'd) */
  bool gw_single;         /* ... asked with "key": answer "value", not "values" */
  /* provisioning request (request: a malloc'd copy of the payload) */
  struct td_provision_req prov;
};

struct out_track {
  uint16_t pid;
  bool used;
  bool rpc;
  int32_t rpc_id;
  struct td_dsession *ds; /* the session the RPC belongs to (a reference) */
};

/* A gateway's child device: its own core session on the gateway's connection. */
struct gw_child {
  struct gw_child *next;
  struct mconn *c;
  struct td_device_ref *dev;
  struct td_dsession *ds;
  char name[256];
};
struct gw_wait;

struct conn_auth;

struct mconn {
  uv_tcp_t tcp;
  uv_timer_t timer;       /* connect timeout, keep-alive, close grace */
  uv_timer_t retry;       /* queue back-pressure retry */
  int nclosed;
  struct mqtt_loop *ml;
  struct mconn *prev, *next;
  unsigned id;
  bool is_tls;
  struct td_tls_conn *tls;
  enum mstate state;
  int level;              /* protocol level after CONNECT (3, 4, 5); 4 before */
  bool reading, closing, close_after_write, processing;
  /* input: bytes received and not yet decoded */
  uint8_t *in;
  size_t in_len, in_cap;
  /* output */
  size_t wbytes;
  /* session */
  uint16_t keep_alive;
  int64_t last_rx_ms;
  bool assign_id;          /* v5 CONNECT with an empty client id */
  uint32_t client_max_packet; /* v5: the client's Maximum Packet Size, 0 = none */
  struct conn_auth *auth;
  struct td_device_ref *dev;
  struct td_dsession *ds;
  bool ds_opened;          /* td_core_session_open was called */
  enum mfam rpc_fam;       /* family of the last client-side RPC request */
  int8_t sub_qos[SUB_N];   /* -1 = not subscribed */
  uint8_t sub_fam[SUB_N];
  /* uplink acknowledgements in order */
  struct pend *ph, *pt;
  int npend;
  int inflight;            /* QoS > 0 publishes not acknowledged yet */
  struct pend *blocked;    /* its messages wait for queue room */
  uint16_t qos2[MQTT_QOS2_MAX];
  int nqos2;
  /* downlink */
  uint16_t next_pid;
  struct out_track out[MQTT_OUT_TRACK];
  int out_hand;
  /* gateway */
  struct gw_child *children;
  int nchildren;
  struct gw_wait *gw_wait;  /* child devices being found or created: input waits */
};

/* ---- listener.c: sockets, TLS, writes, lifecycle ---- */
/* conn_send: write bytes (through TLS when on). 0 or an error (the connection is then closing). */
int mqtt_conn_send(struct mconn *c, const void *data, size_t len);
/* conn_send_buf: mqtt_conn_send(b) and reset b. */
int mqtt_conn_send_buf(struct mconn *c, struct td_buf *b);
/* conn_close: close now (idempotent); the memory goes when the handles closed. */
void mqtt_conn_close(struct mconn *c);
/* conn_end: v5 (and level known): DISCONNECT with reason, then close once
 * written; otherwise close now. */
void mqtt_conn_end(struct mconn *c, uint8_t v5_reason);
/* conn_update_reading: start or stop reading the socket by the limits. */
void mqtt_conn_update_reading(struct mconn *c);
struct td_ctx *mqtt_ctx(const struct mconn *c);

/* ---- session.c: framing, state machine, acknowledgements ---- */
/* process input bytes in c->in as far as the state and limits allow. */
void mqtt_session_process(struct mconn *c);
/* the connection is going away: detach pends, close the core session. */
void mqtt_session_teardown(struct mconn *c);
/* arm the keep-alive / connect timer. */
void mqtt_session_arm_timer(struct mconn *c);
/* pend_new: append a pend to c's FIFO (NULL on ENOMEM, the connection then
 * closes, or when it is closed already). */
struct pend *mqtt_pend_new(struct mconn *c, uint16_t pid, int qos);
/* pend_finish: the pend's work finished with status (0 ok); flush acks in order. */
void mqtt_pend_finish(struct pend *p, int status, uint8_t reason);
/* pend_produce: hand msgs (caller's references, consumed) to the queue for p. */
void mqtt_pend_produce(struct pend *p, struct td_msg **msgs, size_t n);
/* publish to the device; qos 0/1; tracks QoS 1 for PUBACK (rpc_id >= 0: an
 * RPC of session rpc_ds, NULL = the connection's own). */
int mqtt_send_publish(struct mconn *c, const char *topic, const char *payload, size_t len, int qos, int32_t rpc_id,
                      struct td_dsession *rpc_ds);
/* next outbound packet id */
uint16_t mqtt_next_pid(struct mconn *c);

/* ---- handle_connect.c ---- */
void mqtt_handle_connect(struct mconn *c, const struct td_mqtt_packet *pkt);
void mqtt_connect_detach(struct mconn *c);
/* the failed-decode path of a CONNECT */
void mqtt_connect_decode_failed(struct mconn *c, const struct td_mqtt_error *err);

/* ---- handle_publish.c ---- */
void mqtt_handle_publish(struct mconn *c, const struct td_mqtt_packet *pkt);
void mqtt_handle_subscribe(struct mconn *c, const struct td_mqtt_packet *pkt);
void mqtt_handle_unsubscribe(struct mconn *c, const struct td_mqtt_packet *pkt);
extern const struct td_dsession_ops mqtt_dsession_ops;
/* bad_payload: MQTT 5 PUBACK 0x99 (session stays), 3.x close. */
void mqtt_bad_payload(struct mconn *c, uint16_t pid, int qos, const char *what, const char *err);
/* immediate: an acknowledgement with nothing to wait for (still in order). */
void mqtt_immediate(struct mconn *c, uint16_t pid, int qos, uint8_t reason);
/* attribute request job (attr_run/attr_done) started for p. */
void mqtt_attr_job_start(struct mconn *c, struct pend *p);
size_t mqtt_arena_limit(const struct mconn *c);

/* ---- gateway.c (reference §1.1.6) ---- */
void mqtt_gw_publish(struct mconn *c, const struct td_mqtt_packet *pkt, enum mtopic t, uint16_t pid, int qos);
/* the connection ends: close the children's sessions, detach a running lookup */
void mqtt_gw_teardown(struct mconn *c);
/* attribute response to a gateway (pend with gw_device) */
int mqtt_gw_attr_response(struct mconn *c, struct pend *p);

/* ---- topics.c ---- */
/* topic_parse: which device topic; *id = the {requestId} (int32) where the
 * topic carries one; *fam = v1/v2. T_UNKNOWN also for a bad id. */
enum mtopic mqtt_topic_parse(struct td_mqtt_str t, enum mfam *fam, int32_t *id, bool *id_bad);
/* filter_parse: which subscription; -1 if not on the whitelist. */
int mqtt_filter_parse(struct td_mqtt_str f, enum mfam *fam);
#endif
