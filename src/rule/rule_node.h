/* rule_node.h — the rule node plug-in interface and the API nodes use to route.
 *
 * A node type is a const struct td_rule_node_type named by ThingsBoard's full
 * Java class name (reference §4.6), so chains exported from ThingsBoard import
 * unchanged. Each node of a chain runs in its own Rule node actor (src/rule/
 * chain.c): on_msg is called on a dispatcher thread, one message at a time, so
 * the node's state needs no lock.
 *
 * Routing (reference §4.3, ThingsBoard's RuleChainActorMessageProcessor):
 * td_rule_tell_next() sends the message along every outgoing connection whose
 * label is in `labels` (each target gets a reference to the same immutable
 * message). If no connection matches, the branch ends: as success, unless the
 * label set contains "Failure", then the queue message is marked failed (one
 * log line). A queue message is acknowledged when all its branches have ended.
 *
 * Synchronous nodes call td_rule_tell_* inside on_msg. Asynchronous nodes (the
 * save nodes, whose writes finish on the writer thread) take a completion
 * handle with td_rule_async_begin() inside on_msg and complete it exactly once
 * later, from any thread; the routing then happens on the node's actor. */
#ifndef TD_RULE_RULE_NODE_H
#define TD_RULE_RULE_NODE_H
#include <stdbool.h>
#include <jansson.h>
#include <stddef.h>
#include "msg/msg.h"

struct td_ctx;
struct td_rule_ctx;
struct td_rule_async;

struct td_rule_node_type {
  const char *clazz; /* e.g. "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode" */
  /* init: parse `configuration` (borrowed; may be NULL or JSON null; unknown
   * fields are ignored) into *state. 0, or TD_EINVAL with a one-line reason in err. */
  int (*init)(json_t *configuration, void **state, char *err, size_t errlen);
  /* on_msg: handle one message (borrowed for the duration of the call). Must
   * call td_rule_tell_*() or take a completion with td_rule_async_begin(); a
   * node that does neither ends the branch as success. */
  void (*on_msg)(struct td_rule_ctx *ctx, struct td_msg *msg);
  /* destroy: free the state from init (may be NULL). */
  void (*destroy)(void *state);
};

/* What a node sees while handling a message. Owned by the node's actor. */
struct td_rule_ctx {
  struct td_ctx *td_ctx;     /* writer, queue, dbpool, config (may be NULL in unit tests) */
  void *state;               /* the node's state from init */
  const char *node_name;     /* the node's "name" in the chain */
  struct td_rule_node_priv *priv; /* internal (chain.c) */
};

/* Standard relation labels. */
#define TD_RULE_SUCCESS "Success"
#define TD_RULE_FAILURE "Failure"
#define TD_RULE_TRUE "True"
#define TD_RULE_FALSE "False"
#define TD_RULE_OTHER "Other"

/* td_rule_node_type_find: the registered type with that class name, or NULL.
 * Built-in types are always registered. Any thread. */
const struct td_rule_node_type *td_rule_node_type_find(const char *clazz);
/* td_rule_node_type_register: add a type (tests, later plug-ins). The struct
 * must outlive the process's use of it. 0, TD_EEXIST (class already known) or
 * TD_EFULL (at most 32 extra types). Any thread. */
int td_rule_node_type_register(const struct td_rule_node_type *t);

/* td_rule_tell_next: route msg (the input or a message derived from it; the
 * callee takes its own references) along the connections labelled with any
 * of labels[0..nlabels). Only inside on_msg (or an async completion). May be
 * called several times to emit several messages. */
void td_rule_tell_next(struct td_rule_ctx *ctx, struct td_msg *msg, const char *const *labels, size_t nlabels);
/* td_rule_tell_success: td_rule_tell_next with "Success". */
void td_rule_tell_success(struct td_rule_ctx *ctx, struct td_msg *msg);
/* td_rule_tell_failure: route along "Failure"; without such a connection the
 * queue message is marked failed and `reason` (no payload bytes!) is logged. */
void td_rule_tell_failure(struct td_rule_ctx *ctx, struct td_msg *msg, const char *reason);
/* td_rule_require_device: true if msg's originator is a device; otherwise
 * fails msg with ThingsBoard's "Message originator is not a device entity!"
 * (the nodes that talk to a device) and returns false. */
bool td_rule_require_device(struct td_rule_ctx *ctx, struct td_msg *msg);

/* td_rule_async_begin: inside on_msg, take over the current branch for a
 * completion that happens later. The handle keeps a reference to msg.
 * Returns NULL on ENOMEM (then route synchronously, e.g. tell_failure). */
struct td_rule_async *td_rule_async_begin(struct td_rule_ctx *ctx, struct td_msg *msg);
/* td_rule_async_tell_next / _success / _failure: complete the handle (exactly
 * one call; the handle is consumed). Any thread; never blocks. The message is
 * routed on the node's actor with the given label (reason as in
 * td_rule_tell_failure; copied, truncated to 127 bytes). If the chain has been
 * stopped meanwhile, the branch ends as failed. */
void td_rule_async_tell_next(struct td_rule_async *h, const char *label);
void td_rule_async_success(struct td_rule_async *h);
void td_rule_async_failure(struct td_rule_async *h, const char *reason);
/* td_rule_async_tell_next_msg: complete h routing msg (a reference is taken;
 * e.g. derived from the input with the result as data) instead of the input. */
void td_rule_async_tell_next_msg(struct td_rule_async *h, struct td_msg *msg, const char *label);

/* Built-in node types (src/rule/nodes/). */
extern const struct td_rule_node_type td_rule_node_msg_type_switch;
extern const struct td_rule_node_type td_rule_node_timeseries;
extern const struct td_rule_node_type td_rule_node_attributes;
extern const struct td_rule_node_type td_rule_node_log;
extern const struct td_rule_node_type td_rule_node_device_profile;
extern const struct td_rule_node_type td_rule_node_send_rpc_request;
extern const struct td_rule_node_type td_rule_node_send_rpc_reply;

/* td_rule_msg_type_label: the "message type switch" label of a message type
 * (reference §4.2), "Other" for unknown/custom types. Static string. */
const char *td_rule_msg_type_label(const char *type);
#endif
