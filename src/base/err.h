/* err.h — the one table of error codes used across thingsd.
 *
 * Every function that can fail returns int: 0 on success or a negative TD_E*
 * value from this table. Detail goes into the log, never into new codes. Each
 * transport maps these to its wire codes in one function of its own. */
#ifndef TD_BASE_ERR_H
#define TD_BASE_ERR_H

#define TD_ERRNO_MAP(X)                                            \
  X(ENOMEM,     "out of memory")                                   \
  X(EINVAL,     "invalid argument")                                \
  X(EAGAIN,     "resource temporarily unavailable (try again)")   \
  X(EPROTO,     "protocol error")                                  \
  X(ENOTFOUND,  "not found")                                       \
  X(EAUTH,      "authentication failed")                           \
  X(EPERM,      "permission denied")                               \
  X(EBUSY,      "busy")                                            \
  X(EIO,        "input/output error")                              \
  X(ECLOSED,    "closed")                                          \
  X(ETIMEDOUT,  "timed out")                                       \
  X(EEXIST,     "already exists")                                  \
  X(ETOOBIG,    "too big")                                         \
  X(ECONFLICT,  "version conflict")                                \
  X(ECORRUPT,   "corrupt data")                                    \
  X(EFULL,      "queue full")

enum td_errno {
  TD_OK = 0,
  TD__ERRBASE = -1000,
#define TD_ERR_ENUM(name, msg) TD_##name,
  TD_ERRNO_MAP(TD_ERR_ENUM)
#undef TD_ERR_ENUM
  TD__ERRMAX
};

/* td_strerror: a static human-readable message for a TD_E* code (or 0). */
const char *td_strerror(int err);
/* td_errname: the static symbolic name, e.g. "TD_EPROTO". */
const char *td_errname(int err);

#endif
