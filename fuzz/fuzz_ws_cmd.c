/* fuzz_ws_cmd.c — libFuzzer target for the WebSocket telemetry API's
 * command parser (src/api/ws_cmd.c): any text is either a command wrapper
 * or refused with TD_EPROTO; a parsed command keeps its invariants (key
 * counts within limits, arrays present when counted), survives a deep copy
 * into another arena unchanged, and every error update it could cause is
 * valid JSON. The same text also goes through the update merger as if it
 * were a held update (it must pass through or merge, never crash). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/ws_api_int.h"
#include "base/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_json(const struct td_buf *b) {
  json_error_t e;
  json_t *v = json_loadb(b->data, b->len, 0, &e);
  if (!json_is_object(v)) abort();
  json_decref(v);
}

static void check_keys(const char *const *keys, size_t n) {
  if (n > WS_MAX_KEYS || (n && !keys)) abort();
  for (size_t i = 0; i < n; i++)
    if (!keys[i] || !*keys[i]) abort();
}

static void check_cmd(const struct ws_cmd *c) {
  if (c->type < WS_CMD_TS || c->type > WS_CMD_UNSUPPORTED) abort();
  check_keys(c->keys, c->nkeys);
  if (c->edq) {
    const struct ws_edq *q = c->edq;
    if (q->nids > WS_MAX_EDQ_ENTITIES || (q->nids && !q->ids)) abort();
    if (!c->error && (q->page_size < 1 || q->page_size > WS_MAX_EDQ_ENTITIES || q->page < 0)) abort();
    if (q->nfields > WS_MAX_KEYS || q->nlatest > WS_MAX_KEYS) abort();
    for (size_t i = 0; i < q->nfields; i++)
      if (!q->fields[i].key || q->fields[i].type < WS_KEY_TS || q->fields[i].type > WS_KEY_FIELD) abort();
    for (size_t i = 0; i < q->nlatest; i++)
      if (!q->latest[i].key || q->latest[i].type < WS_KEY_TS || q->latest[i].type > WS_KEY_FIELD) abort();
    check_keys(q->ts.keys, q->ts.nkeys);
    check_keys(q->history.keys, q->history.nkeys);
  }
  struct td_arena a;
  td_arena_init(&a, 0);
  struct ws_cmd copy;
  if (ws_cmd_copy(&a, c, &copy)) abort();
  if (copy.nkeys != c->nkeys || copy.cmd_id != c->cmd_id || copy.type != c->type) abort();
  for (size_t i = 0; i < c->nkeys; i++)
    if (strcmp(copy.keys[i], c->keys[i])) abort();
  if (c->edq && (copy.edq->nids != c->edq->nids || copy.edq->nlatest != c->edq->nlatest)) abort();
  td_arena_deinit(&a);
  struct td_buf b;
  td_buf_init(&b, 0);
  if (ws_fmt_error(&b, c->cmd_id, WS_ERR_BAD_REQUEST, c->error ? c->error : "x")) abort();
  must_be_json(&b);
  td_buf_reset(&b);
  if (ws_fmt_edq_error(&b, c->cmd_id, WS_ERR_BAD_REQUEST, c->error ? c->error : "x", 1000)) abort();
  must_be_json(&b);
  td_buf_deinit(&b);
}

static void count_emit(void *arg, const char *text, size_t len) { ++*(size_t *)arg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct td_arena a;
  td_arena_init(&a, 1 << 22);
  struct ws_msg m;
  int rc = ws_parse((const char *)data, size, &a, &m);
  if (rc && rc != TD_EPROTO) abort();
  if (rc && (m.ncmds || m.cmds)) abort();
  if (!rc) {
    if (m.ncmds > WS_MAX_CMDS || (m.ncmds && !m.cmds)) abort();
    for (size_t i = 0; i < m.ncmds; i++) check_cmd(&m.cmds[i]);
  }
  td_arena_deinit(&a);
  const char *texts[2] = {(const char *)data, (const char *)data};
  size_t lens[2] = {size, size};
  for (int edq = 0; edq < 2; edq++) {
    size_t emitted = 0;
    if (ws_merge_updates(texts, lens, 2, edq, 64, count_emit, &emitted) == 0 && (emitted < 1 || emitted > 2)) abort();
  }
  return 0;
}
