/* mqtt.h — the MQTT device transport (reference §1.1): MQTT 3.1, 3.1.1 and 5
 * on transport.mqtt.bind_port and, with a certificate configured, over TLS on
 * transport.mqtt.ssl.bind_port. Registered as a struct td_transport_ops.
 *
 * start(ctx, &state): after the I/O loops are initialised and before they
 * run (main thread); opens one listener per loop and port. Returns 0 or a
 * TD_E* (a bad TLS configuration is TD_EINVAL, logged with the file name).
 * stop(state): after the loops have stopped; frees what remains. NULL is a
 * no-op. */
#ifndef TD_TRANSPORT_MQTT_MQTT_H
#define TD_TRANSPORT_MQTT_MQTT_H
#include "transport/transport.h"

extern const struct td_transport_ops td_mqtt_transport;

/* td_mqtt_ports: the ports actually bound (0 = that listener is off). */
void td_mqtt_ports(void *state, int *plain, int *tls);
#endif
