/* arena.h — a bump allocator for per-request work, freed all at once.
 * Allocations are 16-byte aligned. `limit` caps the total bytes (0 = 64 MiB);
 * past it td_arena_alloc returns NULL. Not thread-safe. */
#ifndef TD_BASE_ARENA_H
#define TD_BASE_ARENA_H
#include <stddef.h>

struct td_arena_chunk;
struct td_arena {
  struct td_arena_chunk *head;
  size_t used_total;
  size_t limit;
};

void td_arena_init(struct td_arena *a, size_t limit);
void td_arena_deinit(struct td_arena *a);
void *td_arena_alloc(struct td_arena *a, size_t n);
char *td_arena_strndup(struct td_arena *a, const char *s, size_t n);
char *td_arena_strdup(struct td_arena *a, const char *s);
#endif
