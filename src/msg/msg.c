/* msg.c — TbMsg (msg.h): one heap block per message, reference-counted,
 * with a compact binary form for the durable queue and a JSON form for logs.
 *
 * Memory layout of one message (a single malloc):
 *   struct td_msg | struct td_msg_md[md_count] | type\0 | key\0 value\0 ... | data\0
 *
 * Binary form, version 1 (all integers little-endian):
 *   u8  version (1)
 *   16  id
 *   i64 ts
 *   str type                      (str = u32 length + bytes, no NUL inside)
 *   u8  originator entity type    (< TD_ENTITY__COUNT)
 *   16  originator id
 *   16  tenant id
 *   16  customer id
 *   16  rule chain id
 *   u32 metadata count (<= TD_MSG_MAX_MD), then count x (str key, str value), keys unique
 *   u8  data type (0..2)
 *   u32 data length + bytes       (may contain NUL for BINARY)
 * The encoding is canonical: decoding then encoding gives the same bytes. */
#include "msg/msg.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/time.h"

#define MSG_VERSION 1
#define TD_MSG_MAX_MD 1024u
/* Largest single string accepted by the decoder (the queue's record cap is the real bound). */
#define TD_MSG_MAX_STR (64u * 1024 * 1024)

struct parts {
  const struct td_uuid *id;
  int64_t ts;
  const char *type;
  size_t type_len;
  const struct td_entity_id *originator;
  const struct td_uuid *tenant_id;
  const struct td_uuid *customer_id;
  const struct td_uuid *rule_chain_id;
  const struct td_msg_md *md;
  size_t md_count;
  enum td_msg_data_type data_type;
  const char *data;
  size_t data_len;
};

/* Keys stay unique: a repeated key keeps its first position and takes its
 * last value (O(n^2), metadata is small and capped at TD_MSG_MAX_MD on decode). */
static int md_is_dup_of_earlier(const struct td_msg_md *md, size_t i) {
  for (size_t j = 0; j < i; j++)
    if (strcmp(md[j].key, md[i].key) == 0) return 1;
  return 0;
}

static const char *md_last_value(const struct td_msg_md *md, size_t n, size_t i) {
  const char *v = md[i].value;
  for (size_t j = i + 1; j < n; j++)
    if (strcmp(md[j].key, md[i].key) == 0) v = md[j].value;
  return v ? v : "";
}

static struct td_msg *build(const struct parts *p) {
  size_t md_count = 0;
  size_t strs = p->type_len + 1 + p->data_len + 1;
  for (size_t i = 0; i < p->md_count; i++) {
    if (!p->md[i].key || md_is_dup_of_earlier(p->md, i)) continue;
    md_count++;
    strs += strlen(p->md[i].key) + 1 + strlen(md_last_value(p->md, p->md_count, i)) + 1;
  }
  size_t total = sizeof(struct td_msg) + md_count * sizeof(struct td_msg_md) + strs;
  struct td_msg *m = malloc(total);
  if (!m) return NULL;
  struct td_msg_md *md = (struct td_msg_md *)(m + 1);
  char *s = (char *)(md + md_count);

  atomic_init(&m->refs, 1);
  m->id = *p->id;
  m->ts = p->ts;
  memcpy(s, p->type, p->type_len);
  s[p->type_len] = '\0';
  m->type = s;
  s += p->type_len + 1;
  m->originator = *p->originator;
  m->tenant_id = *p->tenant_id;
  m->customer_id = *p->customer_id;
  m->rule_chain_id = *p->rule_chain_id;
  size_t k = 0;
  for (size_t i = 0; i < p->md_count; i++) {
    if (!p->md[i].key || md_is_dup_of_earlier(p->md, i)) continue;
    const char *v = md_last_value(p->md, p->md_count, i);
    size_t kl = strlen(p->md[i].key), vl = strlen(v);
    memcpy(s, p->md[i].key, kl + 1);
    md[k].key = s;
    s += kl + 1;
    memcpy(s, v, vl + 1);
    md[k].value = s;
    s += vl + 1;
    k++;
  }
  m->md_count = md_count;
  m->md = md;
  m->data_type = p->data_type;
  if (p->data_len) memcpy(s, p->data, p->data_len);
  s[p->data_len] = '\0';
  m->data = s;
  m->data_len = p->data_len;
  return m;
}

/* td_msg_new: see msg.h. Any thread; the caller owns the returned reference. */
struct td_msg *td_msg_new(const char *type, const struct td_entity_id *originator,
                          const struct td_uuid *tenant_id, const struct td_uuid *customer_id,
                          const struct td_msg_md *md, size_t md_count,
                          enum td_msg_data_type data_type, const char *data, size_t data_len) {
  static const struct td_uuid zero;
  static const struct td_entity_id none;
  struct td_uuid id;
  td_uuid_new(&id);
  if (!type) type = "";
  if (!data) data_len = 0;
  struct parts p = {
    .id = &id, .ts = td_now_ms(), .type = type, .type_len = strlen(type),
    .originator = originator ? originator : &none,
    .tenant_id = tenant_id ? tenant_id : &zero,
    .customer_id = customer_id ? customer_id : &zero,
    .rule_chain_id = &zero,
    .md = md, .md_count = md ? md_count : 0,
    .data_type = data_type, .data = data ? data : "", .data_len = data_len,
  };
  return build(&p);
}

/* td_msg_derive: see msg.h. Any thread; the caller owns the returned reference. */
struct td_msg *td_msg_derive(const struct td_msg *m, const char *type,
                             const struct td_msg_md *md, size_t md_count,
                             const char *data, size_t data_len) {
  if (!type) type = m->type;
  struct parts p = {
    .id = &m->id, .ts = m->ts, .type = type, .type_len = strlen(type),
    .originator = &m->originator, .tenant_id = &m->tenant_id,
    .customer_id = &m->customer_id, .rule_chain_id = &m->rule_chain_id,
    .md = md ? md : m->md, .md_count = md ? md_count : m->md_count,
    .data_type = m->data_type,
    .data = data ? data : m->data, .data_len = data ? data_len : m->data_len,
  };
  return build(&p);
}

/* td_msg_ref: one more reference to m (returned). Any thread. */
struct td_msg *td_msg_ref(struct td_msg *m) {
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

/* td_msg_unref: drop one reference; frees the message with the last one. NULL is ignored. */
void td_msg_unref(struct td_msg *m) {
  if (!m) return;
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free(m);
}

/* td_msg_md_get: see msg.h. */
const char *td_msg_md_get(const struct td_msg *m, const char *key) {
  for (size_t i = 0; i < m->md_count; i++)
    if (strcmp(m->md[i].key, key) == 0) return m->md[i].value;
  return NULL;
}

/* ---- binary form ---- */

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int enc_str(struct td_buf *out, const char *s, size_t n) {
  if (n > TD_MSG_MAX_STR) return TD_ETOOBIG;
  uint8_t h[4];
  put_u32(h, (uint32_t)n);
  int rc = td_buf_append(out, h, 4);
  return rc ? rc : td_buf_append(out, s, n);
}

/* td_msg_encode: append the binary form of m to out. Returns 0, TD_ENOMEM or
 * TD_ETOOBIG (out's limit or a string too long); on error out may hold a
 * partial record past its old length, which the caller should discard. */
int td_msg_encode(const struct td_msg *m, struct td_buf *out) {
  uint8_t h[1 + 16 + 8];
  h[0] = MSG_VERSION;
  memcpy(h + 1, m->id.b, 16);
  uint64_t ts = (uint64_t)m->ts;
  for (int i = 0; i < 8; i++) h[17 + i] = (uint8_t)(ts >> (8 * i));
  int rc = td_buf_append(out, h, sizeof h);
  if (!rc) rc = enc_str(out, m->type, strlen(m->type));
  if (rc) return rc;
  uint8_t ids[1 + 16 * 4 + 4];
  ids[0] = (uint8_t)m->originator.type;
  memcpy(ids + 1, m->originator.id.b, 16);
  memcpy(ids + 17, m->tenant_id.b, 16);
  memcpy(ids + 33, m->customer_id.b, 16);
  memcpy(ids + 49, m->rule_chain_id.b, 16);
  put_u32(ids + 65, (uint32_t)m->md_count);
  if (m->md_count > TD_MSG_MAX_MD) return TD_ETOOBIG;
  rc = td_buf_append(out, ids, sizeof ids);
  for (size_t i = 0; !rc && i < m->md_count; i++) {
    rc = enc_str(out, m->md[i].key, strlen(m->md[i].key));
    if (!rc) rc = enc_str(out, m->md[i].value, strlen(m->md[i].value));
  }
  if (rc) return rc;
  uint8_t dt = (uint8_t)m->data_type;
  rc = td_buf_append(out, &dt, 1);
  return rc ? rc : enc_str(out, m->data, m->data_len);
}

struct rd {
  const uint8_t *p;
  size_t left;
};

static int rd_bytes(struct rd *r, void *dst, size_t n) {
  if (r->left < n) return TD_EPROTO;
  memcpy(dst, r->p, n);
  r->p += n;
  r->left -= n;
  return 0;
}

/* A string: returns a pointer into the input (not NUL-terminated) and its length. */
static int rd_str(struct rd *r, int allow_nul, const char **s, size_t *n) {
  uint8_t h[4];
  if (rd_bytes(r, h, 4)) return TD_EPROTO;
  uint32_t len = get_u32(h);
  if (len > r->left || len > TD_MSG_MAX_STR) return TD_EPROTO;
  if (!allow_nul && memchr(r->p, '\0', len)) return TD_EPROTO;
  *s = (const char *)r->p;
  *n = len;
  r->p += len;
  r->left -= len;
  return 0;
}

/* td_msg_decode: see msg.h. The input is validated completely before any
 * allocation that depends on it; on failure *out is untouched. */
int td_msg_decode(const void *buf, size_t n, struct td_msg **out) {
  struct rd r = {buf, n};
  uint8_t h[1 + 16 + 8];
  if (rd_bytes(&r, h, sizeof h) || h[0] != MSG_VERSION) return TD_EPROTO;
  struct td_uuid id, tenant, customer, chain;
  struct td_entity_id orig;
  memcpy(id.b, h + 1, 16);
  uint64_t ts = 0;
  for (int i = 0; i < 8; i++) ts |= (uint64_t)h[17 + i] << (8 * i);
  const char *type;
  size_t type_len;
  if (rd_str(&r, 0, &type, &type_len)) return TD_EPROTO;
  uint8_t ids[1 + 16 * 4 + 4];
  if (rd_bytes(&r, ids, sizeof ids) || ids[0] >= TD_ENTITY__COUNT) return TD_EPROTO;
  orig.type = (enum td_entity_type)ids[0];
  memcpy(orig.id.b, ids + 1, 16);
  memcpy(tenant.b, ids + 17, 16);
  memcpy(customer.b, ids + 33, 16);
  memcpy(chain.b, ids + 49, 16);
  uint32_t md_count = get_u32(ids + 65);
  /* Each entry needs at least 8 bytes, which also bounds the count by the input. */
  if (md_count > TD_MSG_MAX_MD || (size_t)md_count * 8 > r.left) return TD_EPROTO;

  /* Metadata strings are not NUL-terminated in the input: copy them into one
   * scratch block (bounded by n) so build() can treat them as C strings. */
  struct td_msg_md *md = NULL;
  char *scratch = NULL;
  int rc = TD_EPROTO;
  if (md_count) {
    md = malloc(md_count * sizeof *md);
    scratch = malloc(r.left + 2 * (size_t)md_count);
    if (!md || !scratch) { rc = TD_ENOMEM; goto out; }
  }
  char *sp = scratch;
  for (uint32_t i = 0; i < md_count; i++) {
    const char *k, *v;
    size_t kl, vl;
    if (rd_str(&r, 0, &k, &kl) || rd_str(&r, 0, &v, &vl)) goto out;
    memcpy(sp, k, kl); sp[kl] = '\0'; md[i].key = sp; sp += kl + 1;
    memcpy(sp, v, vl); sp[vl] = '\0'; md[i].value = sp; sp += vl + 1;
    /* Duplicate keys are malformed: the encoder never writes them. */
    if (md_is_dup_of_earlier(md, i)) goto out;
  }
  uint8_t dt;
  const char *data;
  size_t data_len;
  if (rd_bytes(&r, &dt, 1) || dt > TD_MSG_DATA_BINARY) goto out;
  if (rd_str(&r, 1, &data, &data_len) || r.left != 0) goto out;

  char *type_z = malloc(type_len + 1);
  if (!type_z) { rc = TD_ENOMEM; goto out; }
  memcpy(type_z, type, type_len);
  type_z[type_len] = '\0';
  struct parts p = {
    .id = &id, .ts = (int64_t)ts, .type = type_z, .type_len = type_len,
    .originator = &orig, .tenant_id = &tenant, .customer_id = &customer, .rule_chain_id = &chain,
    .md = md, .md_count = md_count, .data_type = (enum td_msg_data_type)dt,
    .data = data, .data_len = data_len,
  };
  struct td_msg *m = build(&p);
  free(type_z);
  if (!m) { rc = TD_ENOMEM; goto out; }
  *out = m;
  rc = 0;
out:
  free(md);
  free(scratch);
  return rc;
}

/* ---- JSON form ---- */

static int json_uuid(struct td_buf *b, const char *key, const struct td_uuid *u, int null_if_zero) {
  char s[TD_UUID_STR_LEN + 1];
  if (null_if_zero && td_uuid_is_zero(u)) return td_buf_printf(b, "\"%s\":null", key);
  return td_buf_printf(b, "\"%s\":\"%s\"", key, td_uuid_fmt(u, s));
}

/* td_msg_to_json: append ThingsBoard-like JSON for m to out (for logs and
 * debug events). Returns 0 or TD_ENOMEM/TD_ETOOBIG. BINARY data is written as
 * its text up to the first NUL. */
int td_msg_to_json(const struct td_msg *m, struct td_buf *out) {
  static const char *const dts[] = {"JSON", "TEXT", "BINARY"};
  char s[TD_UUID_STR_LEN + 1];
  int rc = td_buf_printf(out, "{\"id\":\"%s\",\"ts\":%lld,\"type\":", td_uuid_fmt(&m->id, s),
                         (long long)m->ts);
  if (!rc) rc = td_buf_json_str(out, m->type);
  if (!rc) rc = td_buf_printf(out, ",\"originator\":{\"entityType\":\"%s\",\"id\":\"%s\"},",
                              td_entity_type_name(m->originator.type),
                              td_uuid_fmt(&m->originator.id, s));
  if (!rc) rc = json_uuid(out, "tenantId", &m->tenant_id, 1);
  if (!rc) rc = td_buf_puts(out, ",");
  if (!rc) rc = json_uuid(out, "customerId", &m->customer_id, 1);
  if (!rc && !td_uuid_is_zero(&m->rule_chain_id)) {
    rc = td_buf_puts(out, ",");
    if (!rc) rc = json_uuid(out, "ruleChainId", &m->rule_chain_id, 0);
  }
  if (!rc) rc = td_buf_puts(out, ",\"metaData\":{");
  for (size_t i = 0; !rc && i < m->md_count; i++) {
    if (i) rc = td_buf_puts(out, ",");
    if (!rc) rc = td_buf_json_str(out, m->md[i].key);
    if (!rc) rc = td_buf_puts(out, ":");
    if (!rc) rc = td_buf_json_str(out, m->md[i].value);
  }
  unsigned dt = (unsigned)m->data_type;
  if (!rc) rc = td_buf_printf(out, "},\"dataType\":\"%s\",\"data\":", dt < 3 ? dts[dt] : "JSON");
  if (!rc) rc = td_buf_json_str(out, m->data);
  if (!rc) rc = td_buf_puts(out, "}");
  return rc;
}
