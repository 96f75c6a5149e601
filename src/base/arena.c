/* arena.c — bump allocator (arena.h). */
#include "base/arena.h"
#include <stdlib.h>
#include <string.h>

struct td_arena_chunk {
  struct td_arena_chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void td_arena_init(struct td_arena *a, size_t limit) {
  a->head = NULL;
  a->used_total = 0;
  a->limit = limit ? limit : (64u << 20);
}

void td_arena_deinit(struct td_arena *a) {
  struct td_arena_chunk *c = a->head;
  while (c) {
    struct td_arena_chunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
  a->used_total = 0;
}

void *td_arena_alloc(struct td_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  if (a->used_total + n > a->limit) return NULL;
  struct td_arena_chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 8192 ? n : 8192;
    c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  a->used_total += n;
  return p;
}

char *td_arena_strndup(struct td_arena *a, const char *s, size_t n) {
  char *p = td_arena_alloc(a, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *td_arena_strdup(struct td_arena *a, const char *s) { return td_arena_strndup(a, s, strlen(s)); }
