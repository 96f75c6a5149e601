/* err.c — messages and names for the TD_E* table in err.h. */
#include "base/err.h"

const char *td_strerror(int err) {
  switch (err) {
  case 0: return "success";
#define TD_ERR_MSG(name, msg) case TD_##name: return msg;
  TD_ERRNO_MAP(TD_ERR_MSG)
#undef TD_ERR_MSG
  default: return "unknown error";
  }
}

const char *td_errname(int err) {
  switch (err) {
  case 0: return "TD_OK";
#define TD_ERR_NAME(name, msg) case TD_##name: return "TD_" #name;
  TD_ERRNO_MAP(TD_ERR_NAME)
#undef TD_ERR_NAME
  default: return "TD_EUNKNOWN";
  }
}
