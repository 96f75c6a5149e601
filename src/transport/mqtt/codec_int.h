/* codec_int.h — private to the MQTT codec files (codec.c, codec_encode.c,
 * codec_props.c): the bounded reader and the two-pass writer they share.
 * Nothing outside src/transport/mqtt/codec*.c includes this. */
#ifndef TD_TRANSPORT_MQTT_CODEC_INT_H
#define TD_TRANSPORT_MQTT_CODEC_INT_H
#include "transport/mqtt/codec.h"

/* A reader over one packet body: never reads at or past `end`. Every read
 * returns 0 or TD_EPROTO after recording the detail in err. */
struct td_mqtt_rd {
  const uint8_t *p;
  size_t pos, end;
  struct td_mqtt_error *err;
};

/* td_mqtt_fail: record detail e in r->err and return TD_EPROTO. */
int td_mqtt_fail(struct td_mqtt_rd *r, enum td_mqtt_err e);
int td_mqtt_rd_u8(struct td_mqtt_rd *r, uint8_t *v);
int td_mqtt_rd_u16(struct td_mqtt_rd *r, uint16_t *v);
int td_mqtt_rd_u32(struct td_mqtt_rd *r, uint32_t *v);
/* td_mqtt_rd_varint: variable byte integer, at most 4 bytes. */
int td_mqtt_rd_varint(struct td_mqtt_rd *r, uint32_t *v);
/* td_mqtt_rd_bin: 2-byte length + bytes; td_mqtt_rd_str also checks UTF-8. */
int td_mqtt_rd_bin(struct td_mqtt_rd *r, struct td_mqtt_str *s);
int td_mqtt_rd_str(struct td_mqtt_rd *r, struct td_mqtt_str *s);

/* td_mqtt_props_decode: read a v5 property block (length + properties) for
 * packet type `ptype` (0 = the will properties of CONNECT) into *out, which
 * must be zeroed. Checks ids allowed for the packet, duplicates and values. */
int td_mqtt_props_decode(struct td_mqtt_rd *r, int ptype, struct td_mqtt_props *out);

/* The writer runs twice over the same encoder code: first with count set,
 * only adding up `n`, then appending to b (already reserved, so appends do
 * not fail). `rc` keeps the first error (TD_EINVAL for unrepresentable). */
struct td_mqtt_wr {
  struct td_buf *b;
  size_t n;
  bool count;
  int rc;
};

void td_mqtt_wr_bytes(struct td_mqtt_wr *w, const void *p, size_t len);
void td_mqtt_wr_u8(struct td_mqtt_wr *w, uint8_t v);
void td_mqtt_wr_u16(struct td_mqtt_wr *w, uint16_t v);
void td_mqtt_wr_u32(struct td_mqtt_wr *w, uint32_t v);
void td_mqtt_wr_varint(struct td_mqtt_wr *w, uint32_t v);
/* td_mqtt_wr_str: 2-byte length + bytes; TD_EINVAL if longer than 65535. */
void td_mqtt_wr_str(struct td_mqtt_wr *w, struct td_mqtt_str s);
/* td_mqtt_varint_len: bytes a variable byte integer of v takes (1..4). */
size_t td_mqtt_varint_len(uint32_t v);

/* td_mqtt_props_encode: write the property block (length + properties) of
 * *p (NULL = empty) for packet type ptype (0 = will); TD_EINVAL in w->rc if a
 * present property is not allowed there. */
void td_mqtt_props_encode(struct td_mqtt_wr *w, int ptype, const struct td_mqtt_props *p);
/* td_mqtt_props_empty: true iff p is NULL or carries no property. */
bool td_mqtt_props_empty(const struct td_mqtt_props *p);
/* td_mqtt_props_equal: property blocks compare equal by content. */
bool td_mqtt_props_equal(const struct td_mqtt_props *a, const struct td_mqtt_props *b);
/* td_mqtt_str_eq: slices with equal content. */
bool td_mqtt_str_eq(struct td_mqtt_str a, struct td_mqtt_str b);

#endif
