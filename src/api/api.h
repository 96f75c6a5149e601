/* api.h — the REST API for users and applications (reference §2): auth,
 * tenants, customers, users, devices, credentials, device profiles,
 * telemetry/attributes and rule chains, as routes on the HTTP server (transport/http/http.h).
 *
 * Handlers run on the I/O loops: they check the JWT there (no store access),
 * then do all store work in a td_dbjob on a storage thread, build the answer
 * there and send it from the loop. Tenant isolation is enforced by every
 * controller: an entity of another tenant is answered 403 "You don't have
 * permission to perform this operation!" (errorCode 20), as ThingsBoard's
 * AccessControlService does. */
#ifndef TD_API_API_H
#define TD_API_API_H
#include "core/ctx.h"
#include "transport/http/http.h"

/* td_api_register: add every REST route to rt. ctx (with ctx->auth, ctx->db,
 * ctx->cfg set; ctx->transport may be NULL in tests) must outlive the router.
 * Call before the server starts. 0 or a TD_E* code. */
int td_api_register(struct td_http_router *rt, struct td_ctx *ctx);
#endif
