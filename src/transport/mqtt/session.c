/* session.c — one MQTT connection's state machine (mqtt_int.h): framing the
 * input with the codec, the order of packets (CONNECT first and only once),
 * keep-alive (1.5 x the client's value, MQTT 3.1.1 §3.1.2.10), the
 * acknowledgements of uplinks in arrival order once their work is done (for
 * telemetry: once durable in the queue), queue back-pressure, and publishes
 * to the device.
 *
 * What a failure does (reference §1.1.10): a malformed packet closes the
 * connection, MQTT 5 first gets DISCONNECT 0x81 (0x95 for a packet over
 * transport.mqtt.max_payload_size, 0x82 for a protocol error such as a second
 * CONNECT); MQTT 3.x has no DISCONNECT from the server, so it is just closed. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/time.h"
#include "core/device_state.h"
#include "transport/mqtt/mqtt_int.h"

/* ---- timers ---- */

static void on_timer(uv_timer_t *t) {
  struct mconn *c = t->data;
  if (c->closing) return;
  if (c->state == MS_WAIT_CONNECT || c->state == MS_AUTH) {
    td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"waiting for CONNECT\" err=TD_ETIMEDOUT", c->id);
    mqtt_conn_close(c);
    return;
  }
  int64_t period = c->keep_alive ? (int64_t)c->keep_alive * 1500 : MQTT_INACTIVITY_MS;
  int64_t idle = td_mono_ms() - c->last_rx_ms;
  if (idle >= period) {
    td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"keep-alive\" idle_ms=%lld err=TD_ETIMEDOUT", c->id,
                   (long long)idle);
    mqtt_conn_end(c, c->keep_alive ? TD_MQTT_RC_KEEP_ALIVE_TIMEOUT : TD_MQTT_RC_MAXIMUM_CONNECT_TIME);
    return;
  }
  uv_timer_start(&c->timer, on_timer, (uint64_t)(period - idle), 0);
}

void mqtt_session_arm_timer(struct mconn *c) {
  if (c->closing) return;
  int64_t ms;
  if (c->state == MS_WAIT_CONNECT || c->state == MS_AUTH) ms = c->ml->srv->connect_timeout_ms;
  else ms = c->keep_alive ? (int64_t)c->keep_alive * 1500 : MQTT_INACTIVITY_MS;
  uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- pending acknowledgements ---- */

static void pend_free(struct pend *p) {
  for (size_t i = 0; i < p->nmsgs; i++) td_msg_unref(p->msgs[i]);
  free(p->msgs);
  if (p->arena_on) td_arena_deinit(&p->arena);
  free(p->gw_device);
  free(p);
}

struct pend *mqtt_pend_new(struct mconn *c, uint16_t pid, int qos) {
  if (c->closing) return NULL; /* torn down: nothing would detach the pend */
  struct pend *p = calloc(1, sizeof *p);
  if (!p) {
    mqtt_conn_close(c);
    return NULL;
  }
  p->c = c;
  p->pid = pid;
  p->ack_type = qos == 1 ? TD_MQTT_PUBACK : qos == 2 ? TD_MQTT_PUBREC : 0;
  p->qos_counted = qos > 0;
  if (p->qos_counted) c->inflight++;
  if (c->pt) c->pt->next = p;
  else c->ph = p;
  c->pt = p;
  c->npend++;
  return p;
}

static uint8_t fail_reason(int status) {
  switch (status) {
  case TD_ECLOSED: return TD_MQTT_RC_SERVER_SHUTTING_DOWN;
  case TD_EFULL: return TD_MQTT_RC_SERVER_BUSY;
  default: return TD_MQTT_RC_IMPLEMENTATION_SPECIFIC;
  }
}

static bool qos2_has(struct mconn *c, uint16_t pid) {
  for (int i = 0; i < c->nqos2; i++)
    if (c->qos2[i] == pid) return true;
  return false;
}

static void qos2_del(struct mconn *c, uint16_t pid) {
  for (int i = 0; i < c->nqos2; i++) {
    if (c->qos2[i] == pid) {
      c->qos2[i] = c->qos2[--c->nqos2];
      return;
    }
  }
}

/* flush: send the acknowledgements at the head of the FIFO whose work is done. */
static void flush(struct mconn *c) {
  bool freed = false;
  struct td_buf b;
  td_buf_init(&b, 64);
  while (c->ph && c->ph->done) {
    struct pend *p = c->ph;
    c->ph = p->next;
    if (!c->ph) c->pt = NULL;
    c->npend--;
    if (p->qos_counted) c->inflight--;
    freed = true;
    if (!c->closing && !c->close_after_write) {
      if (p->status < 0) {
        td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"handling PUBLISH\" err=%s", c->id,
                       td_errname(p->status));
        mqtt_conn_end(c, fail_reason(p->status));
      } else if (p->ack_type) {
        if (p->ack_type == TD_MQTT_PUBREC && !qos2_has(c, p->pid)) {
          if (c->nqos2 == MQTT_QOS2_MAX) {
            mqtt_conn_end(c, TD_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
            pend_free(p);
            continue;
          }
          c->qos2[c->nqos2++] = p->pid;
        }
        if (td_mqtt_encode_ack(&b, c->level, p->ack_type, p->pid, p->reason) == 0) mqtt_conn_send_buf(c, &b);
      }
    }
    pend_free(p);
  }
  td_buf_deinit(&b);
  if (freed && !c->closing) {
    mqtt_conn_update_reading(c);
    mqtt_session_process(c);
  }
}

void mqtt_pend_finish(struct pend *p, int status, uint8_t reason) {
  struct mconn *c = p->c;
  if (!c) {
    pend_free(p); /* the connection went away while the work ran */
    return;
  }
  p->done = true;
  p->status = status;
  if (reason) p->reason = reason;
  flush(c);
}

static void on_uplink(struct td_uplink_req *u) {
  struct pend *p = td_container_of(u, struct pend, up);
  mqtt_pend_finish(p, u->status, 0);
}

static void on_retry(uv_timer_t *t);

/* try_produce: 0 (done will run), TD_EFULL (messages kept, retried), or an error. */
static int try_produce(struct pend *p, struct td_msg **msgs, size_t n) {
  struct mconn *c = p->c;
  p->up.loop = c->ml->loop;
  p->up.done = on_uplink;
  return td_transport_uplink(mqtt_ctx(c)->transport, msgs, n, &p->up);
}

void mqtt_pend_produce(struct pend *p, struct td_msg **msgs, size_t n) {
  struct mconn *c = p->c;
  if (n == 0) {
    mqtt_pend_finish(p, 0, 0);
    return;
  }
  int rc = try_produce(p, msgs, n);
  if (rc == TD_EFULL) {
    /* the queue's in-flight window is full: keep the messages, stop reading
     * this connection and try again shortly (bounded: one publish per connection) */
    p->msgs = malloc(n * sizeof *p->msgs);
    if (!p->msgs) {
      for (size_t i = 0; i < n; i++) td_msg_unref(msgs[i]);
      mqtt_pend_finish(p, TD_ENOMEM, 0);
      return;
    }
    memcpy(p->msgs, msgs, n * sizeof *msgs);
    p->nmsgs = n;
    c->blocked = p;
    mqtt_conn_update_reading(c);
    uv_timer_start(&c->retry, on_retry, 20, 0);
    return;
  }
  for (size_t i = 0; i < n; i++) td_msg_unref(msgs[i]);
  if (rc) mqtt_pend_finish(p, rc, 0);
}

static void on_retry(uv_timer_t *t) {
  struct mconn *c = t->data;
  struct pend *p = c->blocked;
  if (c->closing || !p) return;
  int rc = try_produce(p, p->msgs, p->nmsgs);
  if (rc == TD_EFULL) {
    uv_timer_start(&c->retry, on_retry, 50, 0);
    return;
  }
  for (size_t i = 0; i < p->nmsgs; i++) td_msg_unref(p->msgs[i]);
  free(p->msgs);
  p->msgs = NULL;
  p->nmsgs = 0;
  c->blocked = NULL;
  if (rc) mqtt_pend_finish(p, rc, 0);
  if (c->closing) return;
  mqtt_conn_update_reading(c);
  mqtt_session_process(c);
}

/* ---- publishes to the device ---- */

uint16_t mqtt_next_pid(struct mconn *c) {
  if (++c->next_pid == 0) c->next_pid = 1;
  return c->next_pid;
}

int mqtt_send_publish(struct mconn *c, const char *topic, const char *payload, size_t len, int qos, int32_t rpc_id,
                      struct td_dsession *rpc_ds) {
  if (c->closing || c->close_after_write) return TD_ECLOSED;
  struct td_buf b;
  size_t tl = strlen(topic);
  td_buf_init(&b, len + tl + 64);
  uint16_t pid = qos > 0 ? mqtt_next_pid(c) : 0;
  struct td_mqtt_str t = {topic, tl}, pl = {payload, len};
  int rc = td_mqtt_encode_publish(&b, c->level, t, pl, qos > 0 ? 1 : 0, false, false, pid, NULL);
  if (!rc && c->client_max_packet && b.len > c->client_max_packet) rc = TD_ETOOBIG; /* MQTT 5 §3.1.2.11.4: discard */
  if (!rc) {
    if (qos > 0) {
      /* remember it for its PUBACK; a slot still in use after a full lap is
       * given up (its RPC then times out in the core) */
      struct out_track *o = &c->out[c->out_hand];
      c->out_hand = (c->out_hand + 1) % MQTT_OUT_TRACK;
      if (o->ds) td_dsession_unref(o->ds);
      *o = (struct out_track){.pid = pid, .used = true, .rpc = rpc_id >= 0, .rpc_id = rpc_id,
                              .ds = rpc_id >= 0 && rpc_ds ? td_dsession_ref(rpc_ds) : NULL};
    }
    rc = mqtt_conn_send(c, b.data, b.len);
  }
  td_buf_deinit(&b);
  return rc;
}

static void on_puback(struct mconn *c, uint16_t pid) {
  for (int i = 0; i < MQTT_OUT_TRACK; i++) {
    struct out_track *o = &c->out[i];
    if (!o->used || o->pid != pid) continue;
    o->used = false;
    struct td_dsession *ds = o->ds ? o->ds : c->ds;
    if (o->rpc && ds) td_core_rpc_delivered(mqtt_ctx(c), ds, o->rpc_id);
    if (o->ds) td_dsession_unref(o->ds);
    o->ds = NULL;
    return;
  }
}

/* ---- packets ---- */

static void send_simple(struct mconn *c, int type, uint16_t pid, uint8_t reason) {
  struct td_buf b;
  td_buf_init(&b, 64);
  int rc;
  if (type == TD_MQTT_PINGRESP) {
    struct td_mqtt_packet r;
    memset(&r, 0, sizeof r);
    r.type = TD_MQTT_PINGRESP;
    rc = td_mqtt_encode(&b, c->level, &r);
  } else {
    rc = td_mqtt_encode_ack(&b, c->level, type, pid, reason);
  }
  if (!rc) mqtt_conn_send(c, b.data, b.len);
  td_buf_deinit(&b);
}

static void protocol_error(struct mconn *c, const char *what, uint8_t reason) {
  td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"%s\" err=TD_EPROTO reason=0x%02x", c->id, what, reason);
  mqtt_conn_end(c, reason);
}

static void handle_packet(struct mconn *c, const struct td_mqtt_packet *pkt) {
  if (c->state == MS_WAIT_CONNECT) {
    if (pkt->type != TD_MQTT_CONNECT) {
      td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"waiting for CONNECT\" got=%s err=TD_EPROTO", c->id,
                     td_mqtt_type_name(pkt->type));
      mqtt_conn_close(c);
      return;
    }
    mqtt_handle_connect(c, pkt);
    return;
  }
  if (c->ds && (pkt->type == TD_MQTT_PUBLISH || pkt->type == TD_MQTT_SUBSCRIBE || pkt->type == TD_MQTT_PINGREQ))
    td_device_state_activity(mqtt_ctx(c)->device_state, &c->ds->tenant_id, &c->ds->device_id, td_now_ms());
  switch (pkt->type) {
  case TD_MQTT_CONNECT: protocol_error(c, "second CONNECT", TD_MQTT_RC_PROTOCOL_ERROR); break;
  case TD_MQTT_PUBLISH: mqtt_handle_publish(c, pkt); break;
  case TD_MQTT_PUBACK: on_puback(c, pkt->packet_id); break;
  case TD_MQTT_PUBREL:
    /* 3.x QoS 2: the message was stored when PUBREC went out; complete it */
    if (qos2_has(c, pkt->packet_id)) {
      qos2_del(c, pkt->packet_id);
      send_simple(c, TD_MQTT_PUBCOMP, pkt->packet_id, 0);
    } else {
      send_simple(c, TD_MQTT_PUBCOMP, pkt->packet_id, TD_MQTT_RC_PACKET_ID_NOT_FOUND);
    }
    break;
  case TD_MQTT_PUBREC:
  case TD_MQTT_PUBCOMP: break; /* the server never publishes with QoS 2 */
  case TD_MQTT_SUBSCRIBE: mqtt_handle_subscribe(c, pkt); break;
  case TD_MQTT_UNSUBSCRIBE: mqtt_handle_unsubscribe(c, pkt); break;
  case TD_MQTT_PINGREQ: send_simple(c, TD_MQTT_PINGRESP, 0, 0); break;
  case TD_MQTT_DISCONNECT: mqtt_conn_close(c); break;
  default: protocol_error(c, "reading packet", TD_MQTT_RC_PROTOCOL_ERROR); break;
  }
}

static void decode_failed(struct mconn *c, const struct td_mqtt_error *err) {
  if (c->state == MS_WAIT_CONNECT) {
    mqtt_connect_decode_failed(c, err);
    return;
  }
  uint8_t reason = err->code == TD_MQTT_E_TOO_LARGE ? TD_MQTT_RC_PACKET_TOO_LARGE
                   : err->reason                    ? err->reason
                                                    : TD_MQTT_RC_MALFORMED_PACKET;
  td_log_limited(5, TD_LOG_INFO, "mqtt", "conn=%u action=\"reading %s\" err=%s reason=0x%02x", c->id,
                 td_mqtt_type_name(err->type), td_mqtt_err_name(err->code), reason);
  mqtt_conn_end(c, reason);
}

void mqtt_session_process(struct mconn *c) {
  if (c->processing || c->closing) return;
  struct mqtt_srv *srv = c->ml->srv;
  c->processing = true;
  size_t off = 0;
  while (!c->closing && !c->close_after_write && c->state != MS_AUTH && !c->blocked && !c->gw_wait &&
         c->npend < srv->max_pending && c->wbytes < MQTT_WRITE_HIGH && off < c->in_len) {
    struct td_mqtt_error err;
    memset(&err, 0, sizeof err);
    size_t avail = c->in_len - off;
    int n = td_mqtt_peek(c->in + off, avail, srv->max_packet, &err);
    if (n == TD_EAGAIN) break;
    if (n < 0) {
      decode_failed(c, &err);
      break;
    }
    if ((size_t)n > avail) break;
    struct td_mqtt_packet pkt;
    int used = td_mqtt_decode(c->in + off, (size_t)n, c->level, srv->max_packet, &pkt, &err);
    if (used < 0) {
      if (used == TD_EAGAIN) err.code = TD_MQTT_E_TRUNCATED; /* a whole packet cannot be "incomplete" */
      decode_failed(c, &err);
      break;
    }
    c->last_rx_ms = td_mono_ms();
    handle_packet(c, &pkt);
    off += (size_t)used;
  }
  if (!c->closing) {
    if (off) {
      memmove(c->in, c->in + off, c->in_len - off);
      c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > 0) { /* drained: an idle connection keeps no buffer */
      free(c->in);
      c->in = NULL;
      c->in_cap = 0;
    }
  }
  c->processing = false;
  mqtt_conn_update_reading(c);
}

void mqtt_session_teardown(struct mconn *c) {
  struct mqtt_srv *srv = c->ml->srv;
  mqtt_connect_detach(c);
  mqtt_gw_teardown(c);
  for (int i = 0; i < MQTT_OUT_TRACK; i++) {
    if (c->out[i].ds) td_dsession_unref(c->out[i].ds);
    c->out[i].ds = NULL;
  }
  for (struct pend *p = c->ph, *next; p; p = next) {
    next = p->next;
    /* done ones and a blocked one have no work out; the others free themselves when it ends */
    if (p->done || p == c->blocked || srv->stopping) pend_free(p);
    else p->c = NULL;
  }
  c->ph = c->pt = NULL;
  c->blocked = NULL;
  c->npend = 0;
  if (c->ds) {
    if (!srv->stopping && c->ds_opened) td_core_session_close(srv->ctx, c->ds);
    if (!srv->stopping && c->ds_opened)
      td_device_state_disconnect(srv->ctx->device_state, &c->ds->tenant_id, &c->ds->device_id, td_now_ms());
    c->ds->owner = NULL;
    td_dsession_unref(c->ds);
    c->ds = NULL;
  }
  td_device_ref_put(c->dev);
  c->dev = NULL;
}
