/* uuid.c — time-based and random ids (uuid.h). */
#include "base/uuid.h"
#include "base/err.h"
#include "base/hash.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t uuid_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ticks;
static uint8_t node_bits[8];
static int node_ready;

int td_random_bytes(void *p, int n) { return RAND_bytes(p, n) == 1 ? 0 : TD_EIO; }

void td_uuid_new(struct td_uuid *out) {
  /* 100-ns intervals since 1582-10-15, made strictly increasing per process. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t t = (uint64_t)ts.tv_sec * 10000000ULL + (uint64_t)ts.tv_nsec / 100 + 0x01B21DD213814000ULL;
  pthread_mutex_lock(&uuid_mu);
  if (!node_ready) {
    td_random_bytes(node_bits, sizeof node_bits);
    node_ready = 1;
  }
  if (t <= last_ticks) t = last_ticks + 1;
  last_ticks = t;
  pthread_mutex_unlock(&uuid_mu);
  uint32_t time_low = (uint32_t)t;
  uint16_t time_mid = (uint16_t)(t >> 32);
  uint16_t time_hi = (uint16_t)((t >> 48) & 0x0fff) | 0x1000;
  out->b[0] = time_low >> 24; out->b[1] = time_low >> 16; out->b[2] = time_low >> 8; out->b[3] = time_low;
  out->b[4] = time_mid >> 8; out->b[5] = time_mid;
  out->b[6] = time_hi >> 8; out->b[7] = time_hi;
  memcpy(out->b + 8, node_bits, 8);
  out->b[8] = (out->b[8] & 0x3f) | 0x80;
}

void td_uuid_random(struct td_uuid *out) {
  td_random_bytes(out->b, 16);
  out->b[6] = (out->b[6] & 0x0f) | 0x40;
  out->b[8] = (out->b[8] & 0x3f) | 0x80;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int td_uuid_parse(const char *s, struct td_uuid *out) {
  if (!s) return TD_EINVAL;
  int j = 0;
  for (int i = 0; i < TD_UUID_STR_LEN; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return TD_EINVAL;
      continue;
    }
    int hi = hexval(s[i]);
    if (hi < 0) return TD_EINVAL;
    int lo = hexval(s[++i]);
    if (lo < 0) return TD_EINVAL;
    out->b[j++] = (uint8_t)(hi << 4 | lo);
  }
  return s[TD_UUID_STR_LEN] == '\0' ? 0 : TD_EINVAL;
}

char *td_uuid_fmt(const struct td_uuid *u, char out[TD_UUID_STR_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = hex[u->b[i] >> 4];
    *p++ = hex[u->b[i] & 15];
  }
  *p = '\0';
  return out;
}

bool td_uuid_eq(const struct td_uuid *a, const struct td_uuid *b) { return memcmp(a->b, b->b, 16) == 0; }

bool td_uuid_is_zero(const struct td_uuid *u) {
  static const struct td_uuid zero;
  return td_uuid_eq(u, &zero);
}

const struct td_uuid *td_uuid_null(void) {
  static const struct td_uuid n = {{0x13, 0x81, 0x40, 0x00, 0x1d, 0xd2, 0x11, 0xb2,
                                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}};
  return &n;
}

bool td_uuid_is_null(const struct td_uuid *u) { return td_uuid_is_zero(u) || td_uuid_eq(u, td_uuid_null()); }

uint32_t td_uuid_hash(const struct td_uuid *u) { return td_hash32(u->b, 16); }
