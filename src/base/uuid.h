/* uuid.h — 128-bit ids as ThingsBoard uses them (text form 8-4-4-4-12, lower case).
 *
 * New ids are time-based (version 1 layout, like ThingsBoard's Uuids.timeBased())
 * so that ids sort roughly by creation; the node and clock-sequence bits are
 * random per process. TD_UUID_NULL_STR is ThingsBoard's "null" id used for the
 * system tenant and for "no customer". */
#ifndef TD_BASE_UUID_H
#define TD_BASE_UUID_H
#include <stdbool.h>
#include <stdint.h>

#define TD_UUID_STR_LEN 36
#define TD_UUID_NULL_STR "13814000-1dd2-11b2-8080-808080808080"

struct td_uuid { uint8_t b[16]; };

/* td_uuid_new: a fresh time-based id. Thread-safe. */
void td_uuid_new(struct td_uuid *out);
/* td_uuid_random: 128 random bits with version 4 marks (for secrets use td_random_bytes). */
void td_uuid_random(struct td_uuid *out);
/* td_uuid_parse: 0, or TD_EINVAL if s is not exactly a 36-char uuid. */
int td_uuid_parse(const char *s, struct td_uuid *out);
/* td_uuid_fmt: writes 36 chars + NUL into out (size >= 37); returns out. */
char *td_uuid_fmt(const struct td_uuid *u, char out[TD_UUID_STR_LEN + 1]);
bool td_uuid_eq(const struct td_uuid *a, const struct td_uuid *b);
bool td_uuid_is_zero(const struct td_uuid *u);
/* td_uuid_null: ThingsBoard's null id (TD_UUID_NULL_STR). */
const struct td_uuid *td_uuid_null(void);
/* td_uuid_is_null: zero or ThingsBoard's null id. */
bool td_uuid_is_null(const struct td_uuid *u);
/* td_uuid_hash: 32-bit hash for tables and partitions. */
uint32_t td_uuid_hash(const struct td_uuid *u);

/* td_random_bytes: cryptographically secure random bytes (OpenSSL RAND_bytes). */
int td_random_bytes(void *p, int n);
#endif
