/* api_int.h — private to src/api: the request job that carries a REST call
 * from its I/O loop to a storage thread and back, plus the shared checks
 * (JWT, authority, tenant/customer ownership), paging parameters and JSON
 * helpers. Controllers are in auth.c, tenant.c, customer.c, user.c,
 * device.c, device_profile.c, telemetry.c and rule_chain.c.
 *
 * Life of a call: handler (loop) -> api_begin() checks the token and the
 * authority -> api_job_new() + captured parameters -> api_submit() -> work()
 * on a storage thread does the store calls and sets the answer with api_ok_*
 * or api_fail* -> done on the loop sends it, invalidates transport cache
 * entries and frees the job. */
#ifndef TD_API_API_INT_H
#define TD_API_API_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/arena.h"
#include "base/buf.h"
#include "base/entity.h"
#include "core/auth.h"
#include "core/ctx.h"
#include "store/dbpool.h"
#include "store/store.h"
#include "transport/http/http.h"

/* authority masks for api_begin */
#define API_SYS (1u << TD_AUTHORITY_SYS_ADMIN)
#define API_TENANT (1u << TD_AUTHORITY_TENANT_ADMIN)
#define API_CUSTOMER (1u << TD_AUTHORITY_CUSTOMER_USER)
#define API_ANY_USER (API_SYS | API_TENANT | API_CUSTOMER)

#define API_MSG_DENIED "You don't have permission to perform this operation!"
#define API_MAX_INVALIDATE 4

struct api_job;
typedef void (*api_work_fn)(struct api_job *j, struct td_store *st);

struct api_job {
  struct td_dbjob db;
  struct td_http_req *r;
  struct td_ctx *ctx;
  struct td_auth_principal me;
  api_work_fn work;
  struct td_arena arena;       /* storage-thread allocations, freed with the job */
  /* inputs captured on the loop (strings live in r->arena) */
  struct td_uuid id, id2;
  const char *s[4];
  bool f[4];
  int64_t n[6];
  struct td_page_link pl;
  void *x;                     /* controller-specific data */
  /* the answer */
  int status;
  int tb_code;                 /* != 0: error JSON with msg */
  char msg[256];
  const char *ctype;           /* NULL with body: application/json */
  char *body;                  /* malloc'd */
  size_t len;
  char *invalidate[API_MAX_INVALIDATE]; /* credentials ids to drop from the transport cache */
  int ninvalidate;
  bool invalidate_all;
};

/* ---- loop side ---- */
/* api_begin: authenticate the request (X-Authorization or Authorization:
 * Bearer) and check the authority against mask. On failure it has already
 * answered (401/403) and returns -1. */
int api_begin(struct td_http_req *r, unsigned mask, struct td_auth_principal *me);
/* api_ctx: the context the routes were registered with. */
struct td_ctx *api_ctx(struct td_http_req *r);
/* api_tx_begin: open a store transaction for the job; on failure answers
 * with the error and returns -1 (the caller just leaves). Storage thread. */
int api_tx_begin(struct api_job *j, struct td_store *st);
/* api_run: the whole life of a plain call — api_begin with mask, then a job
 * running `work` on a storage thread, which answers. Loop thread. */
void api_run(struct td_http_req *r, unsigned mask, api_work_fn work);
/* api_job_new: a job for r (me may be NULL for public endpoints). NULL after
 * answering 500 when out of memory. */
struct api_job *api_job_new(struct td_http_req *r, const struct td_auth_principal *me, api_work_fn work);
/* api_job_finish: (loop) answer what the job holds and free it — the default
 * j->db.done, for controllers that replace done to continue on the loop. */
void api_job_finish(struct api_job *j);
/* api_job_free: free without answering (loop; the controller answers later). */
void api_job_free(struct api_job *j);
/* api_submit: hand the job to the storage pool; on TD_EFULL answers 503 and frees it. */
void api_submit(struct api_job *j);
/* api_uuid_param: parse the path parameter `name`; on failure answers 400 and returns -1. */
int api_uuid_param(struct td_http_req *r, const char *name, struct td_uuid *out);
/* api_page_params: pageSize, page, textSearch, sortProperty, sortOrder; answers 400 on error. */
int api_page_params(struct td_http_req *r, struct td_page_link *pl);
/* api_query_bool: "true"/"false" query parameter, dflt when absent. */
bool api_query_bool(struct td_http_req *r, const char *name, bool dflt);
/* api_query_i64: integer query parameter; 1 = present and parsed, 0 = absent, -1 = malformed. */
int api_query_i64(struct td_http_req *r, const char *name, int64_t *out);
/* api_respond_error: answer an error JSON now (loop side). */
void api_respond_error(struct td_http_req *r, int status, int tb_code, const char *msg);
/* api_split_csv: split "a,b , c" into trimmed non-empty strings (r->arena). */
int api_split_csv(struct td_http_req *r, const char *csv, const char ***out, size_t *n);

/* ---- storage side (inside work) ---- */
void api_ok_json(struct api_job *j, json_t *v);              /* steals v; 200 */
void api_ok_status_json(struct api_job *j, int status, json_t *v);
void api_ok_buf(struct api_job *j, struct td_buf *b);        /* takes b's JSON text; 200 */
void api_ok_empty(struct api_job *j);
void api_ok_text(struct api_job *j, const char *ctype, const char *text);
void api_fail(struct api_job *j, int status, int tb_code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void api_fail_denied(struct api_job *j);
/* api_fail_rc: map a store error (TD_ENOTFOUND -> 404 "<what> with id [<id>] is not found" or
 * "Requested item wasn't found!", TD_EEXIST -> 400, TD_ECONFLICT -> 409, other -> 500/503). */
void api_fail_rc(struct api_job *j, int rc, const char *what, const struct td_uuid *id);
/* api_body_object: the request body as a JSON object (new reference), or NULL after answering 400. */
json_t *api_body_object(struct api_job *j);
/* api_invalidate: drop a credentials id from the transport cache once answered. */
void api_invalidate(struct api_job *j, const char *credentials_id);

/* ---- ownership (storage side; on refusal they answer 403 and return -1) ---- */
/* api_check_tenant_write: me is TENANT_ADMIN of e's tenant. */
int api_check_tenant_write(struct api_job *j, json_t *e);
/* api_check_read: tenant admin of e's tenant, or a customer user of e's customer. */
int api_check_read(struct api_job *j, json_t *e);

/* ---- JSON helpers ---- */
/* api_json_id: o[field].id as a uuid: 0, TD_ENOTFOUND (absent/null) or TD_EINVAL. */
int api_json_id(json_t *o, const char *field, struct td_uuid *out);
/* api_json_set_id: o[field] = {"entityType":type,"id":u}. */
void api_json_set_id(json_t *o, const char *field, enum td_entity_type type, const struct td_uuid *u);
/* api_json_str: o[field] if it is a string, else NULL. */
const char *api_json_str(json_t *o, const char *field);
/* api_same_tenant: e's tenantId equals me's tenant. */
bool api_same_tenant(const struct api_job *j, json_t *e);
/* api_ok_pair: issue a JwtPair for a stored user (enabled from credentials) and answer it;
 * session_id NULL for a new session. */
void api_ok_pair(struct api_job *j, json_t *user, bool enabled, const struct td_uuid *session_id);
/* api_page_all: iterate a paged store listing into one array (for small lists). */
typedef int (*api_page_fn)(struct td_store *st, void *arg, const struct td_page_link *pl, json_t **out);
int api_page_all(struct td_store *st, api_page_fn fn, void *arg, size_t max, json_t **arr);

/* ---- route tables ---- */
struct api_route {
  enum td_http_method m;
  const char *pattern;
  td_http_handler h;
};
/* api_routes: register n routes with ctx as route data. */
int api_routes(struct td_http_router *rt, struct td_ctx *ctx, const struct api_route *routes, size_t n);

/* api_password_policy: NULL if pw is acceptable (6..72 bytes), else the message. */
const char *api_password_policy(const char *pw);

/* api_device_profile_defaults: fill missing DeviceProfile fields with
 * ThingsBoard's defaults (type DEFAULT, transportType DEFAULT, provisioning
 * DISABLED, profileData with DEFAULT configurations). */
void api_device_profile_defaults(json_t *p);

/* ---- controllers ---- */
int api_auth_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_tenant_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_customer_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_user_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_device_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_device_profile_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_telemetry_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_rule_chain_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_rpc_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_claim_register(struct td_http_router *rt, struct td_ctx *ctx);
int api_ws_register(struct td_http_router *rt, struct td_ctx *ctx); /* WebSocket telemetry API (ws_session.c) */
#endif
