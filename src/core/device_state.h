/* device_state.h — device activity state (ThingsBoard's DeviceStateService,
 * reference §4.8): per device `active`, lastConnectTime, lastDisconnectTime,
 * lastActivityTime, inactivityAlarmTime and inactivityTimeout, the
 * CONNECT/DISCONNECT/ACTIVITY/INACTIVITY_EVENT TbMsgs, and the SERVER_SCOPE
 * attributes (or timeseries) that make the state visible over REST.
 *
 * One service per process (ctx->device_state). Transports report on their
 * I/O loops: td_device_state_connect / _disconnect / _activity. That is the
 * hot path of every uplink, so for a device already known it is one striped
 * mutex and one hash lookup, no allocation and no store access; an event
 * (a state transition, rare) allocates its TbMsg. A device seen for the
 * first time gets an entry at once and its stored state is read in batches
 * on a storage thread; reports that arrive meanwhile are merged when the
 * read completes, and only then can its events fire.
 *
 * The service's own thread does the periodic work:
 *   - every check_interval_ms (1 s; ThingsBoard checks every 60 s) an
 *     active device with now - lastActivityTime > inactivityTimeout becomes
 *     inactive (inactivityAlarmTime = now, INACTIVITY_EVENT);
 *   - events go to the durable queue in report order (so to the rule
 *     engine, originator the device, metadata deviceName/deviceType and
 *     scope=SERVER_SCOPE, data the state JSON as ThingsBoard sends it);
 *   - every persist_interval_ms (1 s) the changed keys of every changed
 *     device are written through the batched writer, one request per device
 *     — so a device costs at most one write per interval however often it
 *     reports (ThingsBoard writes lastActivityTime per activity report, the
 *     write amplification reference §8 item 12 warns about). A flush starts
 *     only when the previous one has committed: a slow store makes the
 *     flushes rarer and larger, never a growing queue.
 * Memory is bounded: at most max_devices entries (past it new devices are
 * ignored, logged once), an event outbox of TD_DSTATE_OUTBOX_MAX messages.
 *
 * Storage, queue and writer are reached through a struct td_device_state_io
 * (the real ones by default), so tests drive the state machine with their
 * own and with injected time (manual mode + td_device_state_run). */
#ifndef TD_CORE_DEVICE_STATE_H
#define TD_CORE_DEVICE_STATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/entity.h"
#include "base/kv.h"
#include "base/uuid.h"
#include "store/dbpool.h"

struct td_ctx;
struct td_msg;
struct td_write_req;
struct td_device_state;

#define TD_DSTATE_OUTBOX_MAX 100000 /* events waiting for the queue; more are dropped (logged) */
#define TD_DSTATE_LOAD_BATCH 256    /* devices read per storage job */

/* The stored state of one device, as a load finds it. */
struct td_dstate_stored {
  int status;                  /* 0 found; TD_ENOTFOUND: no such device (it is forgotten);
                                * other: not readable (treated as nothing stored) */
  struct td_uuid customer_id;  /* zero when none */
  char name[256], type[256];   /* for event metadata */
  bool active;
  int64_t last_connect, last_disconnect, last_activity, inactivity_alarm;
  int64_t inactivity_timeout;  /* ms; <= 0: not set, the default applies */
};

/* A batch of devices to load: the io fills out[0..n) and then calls
 * td_device_state_loaded(l) exactly once, from any thread. */
struct td_dstate_load {
  struct td_dbjob job;         /* for the default io (a storage job) */
  struct td_device_state *ds;
  size_t n;
  struct td_uuid ids[TD_DSTATE_LOAD_BATCH];
  struct td_dstate_stored out[TD_DSTATE_LOAD_BATCH];
};

/* Where the service reads, sends and writes (version 1). NULL members of a
 * test io mean "not available": no publish, loads find nothing stored. */
struct td_device_state_io {
  int version;
  /* load: start reading l; 0 (td_device_state_loaded follows) or an error
   * (TD_EFULL: tried again later). */
  int (*load)(void *arg, struct td_dstate_load *l);
  /* produce: as td_queue_produce (references taken); 0, TD_EFULL (the
   * messages stay in the outbox, tried again) or another error (dropped). */
  int (*produce)(void *arg, struct td_msg *const *msgs, size_t n);
  /* write: as td_writer_submit; r->done runs once unless an error is returned. */
  int (*write)(void *arg, struct td_write_req *r);
  /* publish: what a write saves, for subscriptions (attributes when scope > 0,
   * else the timeseries points in kvs with ts). Called as the write is submitted. */
  void (*publish)(void *arg, const struct td_uuid *tenant_id, const struct td_entity_id *e, int scope,
                  const struct td_kv *kvs, size_t n, int64_t ts);
};

struct td_device_state_config {
  int64_t default_timeout_ms;     /* state.defaultInactivityTimeoutInSec * 1000 */
  int64_t check_interval_ms;      /* state.check_interval_ms */
  int64_t persist_interval_ms;    /* state.persist_interval_ms */
  bool persist_to_telemetry;      /* state.persistToTelemetry: timeseries instead of SERVER_SCOPE attributes */
  size_t max_devices;             /* state.max_devices */
  bool manual;                    /* no thread: the owner calls td_device_state_run (tests) */
  const struct td_device_state_io *io; /* NULL: ctx's dbpool, queue and writer */
  void *io_arg;
};

/* td_device_state_config_from: the configuration of cfg's state.* keys. */
struct td_config;
void td_device_state_config_from(const struct td_config *cfg, struct td_device_state_config *out);

/* td_device_state_new: the service (its thread started unless manual). ctx
 * (may be NULL with a custom io) must outlive it. Free with
 * td_device_state_free. 0, TD_ENOMEM or TD_EINVAL. Main thread. */
int td_device_state_new(struct td_ctx *ctx, const struct td_device_state_config *cfg, struct td_device_state **out);
/* td_device_state_stop: stop the thread, then send the events still waiting
 * and write every changed device once more (call before the writer and the
 * queue close). Reports after it are accepted and go nowhere. Idempotent. */
void td_device_state_stop(struct td_device_state *ds);
/* td_device_state_free: stop (if not yet) and free. Nothing may report, and
 * no load or write of it may be outstanding (close the dbpool and the writer first). */
void td_device_state_free(struct td_device_state *ds);

/* ---- reports (any thread; ds may be NULL: ignored) ---- */

/* connect: a session opened: lastConnectTime = now, CONNECT_EVENT, and
 * activity (ThingsBoard's transport reports activity with the open). */
void td_device_state_connect(struct td_device_state *ds, const struct td_uuid *tenant_id,
                             const struct td_uuid *device_id, int64_t now_ms);
/* disconnect: a session closed: lastDisconnectTime = now, DISCONNECT_EVENT. */
void td_device_state_disconnect(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                const struct td_uuid *device_id, int64_t now_ms);
/* activity: an uplink, subscribe or ping: lastActivityTime = now; an
 * inactive device becomes active (ACTIVITY_EVENT). */
void td_device_state_activity(struct td_device_state *ds, const struct td_uuid *tenant_id,
                              const struct td_uuid *device_id, int64_t now_ms);
/* timeout_changed: the device's SERVER_SCOPE inactivityTimeout was set to
 * timeout_ms (<= 0: deleted, the default applies). A device not tracked yet
 * reads it when it is first seen. */
void td_device_state_timeout_changed(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                     const struct td_uuid *device_id, int64_t timeout_ms);
/* attrs_saved / attrs_deleted: hooks for whoever saves or deletes attributes
 * (REST, the save-attributes rule node): forward an inactivityTimeout of a
 * device's SERVER_SCOPE to timeout_changed; anything else is ignored. */
void td_device_state_attrs_saved(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                 const struct td_entity_id *e, int scope, const struct td_kv *kvs, size_t n);
void td_device_state_attrs_deleted(struct td_device_state *ds, const struct td_uuid *tenant_id,
                                   const struct td_entity_id *e, int scope, const char *const *keys, size_t n);
/* track: know the device (its stored state is loaded) without a report; a
 * device stored as active then goes inactive on time even if it never
 * reports again. */
void td_device_state_track(struct td_device_state *ds, const struct td_uuid *tenant_id,
                           const struct td_uuid *device_id);
/* td_device_state_restore: after a start, track every device the store says
 * is active (a storage job on ctx->db; ThingsBoard reads all devices at start
 * for the same reason). 0 or TD_EFULL/TD_ENOMEM/TD_EINVAL. Main thread. */
int td_device_state_restore(struct td_device_state *ds);
/* forget: drop the device (deleted); no more events or writes for it. */
void td_device_state_forget(struct td_device_state *ds, const struct td_uuid *device_id);

/* ---- for the io and for tests ---- */

/* td_device_state_loaded: the io finished l (any thread). */
void td_device_state_loaded(struct td_dstate_load *l);

/* td_device_state_run: one round of the service's work at wall-clock now_ms
 * (manual mode; the thread calls it otherwise): start loads, the inactivity
 * check when check_interval_ms has passed since the last, send events, and
 * a flush when persist_interval_ms has passed and the previous flush is done
 * (force_flush: flush now regardless of the interval). */
void td_device_state_run(struct td_device_state *ds, int64_t now_ms, bool force_flush);

/* The state of one device as the service holds it (tests, debugging). */
struct td_dstate_view {
  bool known, ready, active;
  int64_t last_connect, last_disconnect, last_activity, inactivity_alarm, inactivity_timeout;
};
/* td_device_state_get: false if the device is not tracked. */
bool td_device_state_get(struct td_device_state *ds, const struct td_uuid *device_id, struct td_dstate_view *out);

struct td_device_state_stats {
  size_t devices;            /* tracked */
  size_t outbox;             /* events waiting for the queue */
  uint64_t events;           /* events handed to the queue */
  uint64_t events_dropped;   /* outbox full or produce failed */
  uint64_t flushes;          /* flushes that wrote something */
  uint64_t writes;           /* write requests submitted (one per device per flush) */
  uint64_t rows;             /* keys written */
  uint64_t write_errors;     /* failed writes (the device is written again at the next flush) */
  uint64_t loads;            /* load batches started */
  uint64_t ignored;          /* reports about new devices past max_devices */
};
void td_device_state_stats(struct td_device_state *ds, struct td_device_state_stats *out);
#endif
