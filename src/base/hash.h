/* hash.h — non-cryptographic hashing (FNV-1a 32/64) and CRC-32C for log records. */
#ifndef TD_BASE_HASH_H
#define TD_BASE_HASH_H
#include <stddef.h>
#include <stdint.h>

uint32_t td_hash32(const void *p, size_t n);
uint64_t td_hash64(const void *p, size_t n);
/* td_crc32c: CRC-32C (Castagnoli); pass 0 as the initial crc. */
uint32_t td_crc32c(uint32_t crc, const void *p, size_t n);
#endif
