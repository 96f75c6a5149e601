/* install.h — first start and demo data.
 *
 * On an empty store: the schema (migrations), a random JWT signing key, the
 * system administrator sysadmin@thingsboard.org / sysadmin. With --demo, once:
 * ThingsBoard's demo tenant, customers, users and devices. Runs on the main
 * thread with its own store connection before any other thread starts. */
#ifndef TD_SERVER_INSTALL_H
#define TD_SERVER_INSTALL_H
#include <stdbool.h>
#include <stddef.h>
#include "store/store.h"

/* td_install_run: idempotent; *jwt_key (malloc'd, *jwt_key_len bytes) gets the
 * installation's signing key. */
int td_install_run(struct td_store *st, bool demo, unsigned char **jwt_key, size_t *jwt_key_len);
#endif
