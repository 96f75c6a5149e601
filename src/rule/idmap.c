/* idmap.c — a chained hash map from uuid to pointer, owned by one actor
 * (the App actor's tenants, a Tenant actor's devices). Grows at load 1. */
#include <stdlib.h>
#include <string.h>
#include "base/err.h"
#include "rule/rule_int.h"

struct td_idmap_entry {
  struct td_idmap_entry *next;
  struct td_uuid k;
  void *v;
};

void td_idmap_init(struct td_idmap *m) { memset(m, 0, sizeof *m); }

void td_idmap_deinit(struct td_idmap *m) {
  for (size_t i = 0; i < m->nb; i++) {
    struct td_idmap_entry *e = m->b[i];
    while (e) {
      struct td_idmap_entry *n = e->next;
      free(e);
      e = n;
    }
  }
  free(m->b);
  memset(m, 0, sizeof *m);
}

static struct td_idmap_entry **slot(struct td_idmap *m, const struct td_uuid *k) {
  struct td_idmap_entry **p = &m->b[td_uuid_hash(k) & (m->nb - 1)];
  while (*p && !td_uuid_eq(&(*p)->k, k)) p = &(*p)->next;
  return p;
}

void *td_idmap_get(struct td_idmap *m, const struct td_uuid *k) {
  if (!m->nb) return NULL;
  struct td_idmap_entry *e = *slot(m, k);
  return e ? e->v : NULL;
}

static int grow(struct td_idmap *m) {
  size_t nb = m->nb ? m->nb * 2 : 16;
  struct td_idmap_entry **b = calloc(nb, sizeof *b);
  if (!b) return TD_ENOMEM;
  for (size_t i = 0; i < m->nb; i++) {
    struct td_idmap_entry *e = m->b[i];
    while (e) {
      struct td_idmap_entry *n = e->next;
      size_t j = td_uuid_hash(&e->k) & (nb - 1);
      e->next = b[j];
      b[j] = e;
      e = n;
    }
  }
  free(m->b);
  m->b = b;
  m->nb = nb;
  return 0;
}

int td_idmap_put(struct td_idmap *m, const struct td_uuid *k, void *v) {
  if (m->n >= m->nb) {
    int rc = grow(m);
    if (rc && !m->nb) return rc; /* a failed grow of a non-empty table only costs speed */
  }
  struct td_idmap_entry **p = slot(m, k);
  if (*p) {
    (*p)->v = v;
    return 0;
  }
  struct td_idmap_entry *e = malloc(sizeof *e);
  if (!e) return TD_ENOMEM;
  e->next = NULL;
  e->k = *k;
  e->v = v;
  *p = e;
  m->n++;
  return 0;
}

void *td_idmap_del(struct td_idmap *m, const struct td_uuid *k) {
  if (!m->nb) return NULL;
  struct td_idmap_entry **p = slot(m, k), *e = *p;
  if (!e) return NULL;
  void *v = e->v;
  *p = e->next;
  free(e);
  m->n--;
  return v;
}

void td_idmap_each(struct td_idmap *m, void (*fn)(void *v, void *arg), void *arg) {
  for (size_t i = 0; i < m->nb; i++)
    for (struct td_idmap_entry *e = m->b[i]; e; e = e->next) fn(e->v, arg);
}
