"""mqttlib.py — MQTT helpers for the integration tests.

  connect(server, token, ...)   a paho-mqtt (1.6 API) client connected to the
                                server's MQTT port, its network loop running;
                                returns a Dev with the received messages and
                                helpers (pub() waits for the PUBACK)
  Raw                           a raw TCP MQTT client built by hand (packets
                                encoded here, not by paho) for malformed input
                                and exact wire checks
  make_pki(dir)                 a throwaway CA, server and client certificates
                                made with the openssl CLI
"""
import os
import queue
import socket
import ssl
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import tdlib

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


class Dev:
    """A connected paho client: .msgs is a queue of (topic, payload bytes)."""

    def __init__(self, client, rc, props=None):
        self.c = client
        self.rc = rc
        self.connack_props = props
        self.msgs = queue.Queue()
        self.disconnects = queue.Queue()

    def pub(self, topic, payload, qos=1, timeout=10):
        if not isinstance(payload, (bytes, str)):
            import json
            payload = json.dumps(payload)
        info = self.c.publish(topic, payload, qos)
        if qos:
            info.wait_for_publish(timeout)
            assert info.is_published(), "no PUBACK for %s within %ss" % (topic, timeout)
        return info

    def sub(self, topic, qos=1, timeout=10):
        done = threading.Event()
        res = {}

        def on_sub(c, u, mid, granted, props=None):
            res["granted"] = granted
            done.set()
        self.c.on_subscribe = on_sub
        rc, mid = self.c.subscribe(topic, qos)
        assert rc == 0
        assert done.wait(timeout), "no SUBACK for %s" % topic
        g = res["granted"]
        return [x.value if hasattr(x, "value") else x for x in g]

    def next_msg(self, timeout=10):
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message within %ss" % timeout)

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def connect(server, username=None, password=None, client_id="", version=V311, tls=None, port=None,
            keepalive=60, expect_rc=0, timeout=10):
    """Connects and returns a Dev (expect_rc None: return whatever the CONNACK said)."""
    c = mqtt.Client(client_id=client_id, protocol=version,
                    clean_session=True if version != V5 else None)
    if username is not None:
        c.username_pw_set(username, password)
    if tls:
        c.tls_set(**tls)
        c.tls_insecure_set(True)
    got = threading.Event()
    res = {}

    def on_connect(cl, u, flags, rc, props=None):
        res["rc"] = rc.value if hasattr(rc, "value") else rc
        res["props"] = props
        got.set()
    dev = Dev(c, None)
    c.on_connect = on_connect
    c.on_message = lambda cl, u, m: dev.msgs.put((m.topic, m.payload))

    def on_disconnect(cl, u, rc, props=None):
        dev.disconnects.put(rc.value if hasattr(rc, "value") else rc)
        got.set()
    c.on_disconnect = on_disconnect
    c.reconnect_delay_set(60, 60)
    p = port or (server.mqtt_ssl_port if tls else server.mqtt_port)
    c.connect("127.0.0.1", p, keepalive)
    c.loop_start()
    if not got.wait(timeout):
        c.loop_stop()
        raise AssertionError("no CONNACK within %ss" % timeout)
    dev.rc = res.get("rc")
    dev.connack_props = res.get("props")
    if expect_rc is not None:
        if dev.rc != expect_rc:
            c.loop_stop()
            raise AssertionError("CONNACK %r, want %r" % (dev.rc, expect_rc))
    if dev.rc != 0:
        c.loop_stop()
    return dev


def connack_code(server, username=None, password=None, client_id="", version=V311, tls=None):
    """The CONNACK return/reason code of one connect attempt (the client is then stopped)."""
    dev = connect(server, username, password, client_id, version, tls, expect_rc=None)
    if dev.rc == 0:
        dev.close()
    return dev.rc


# ---- raw packets ----

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def p_connect(client_id="raw", username=None, password=None, level=4, keepalive=60, clean=True, props=b""):
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    name = b"MQIsdp" if level == 3 else b"MQTT"
    vh = s16(name) + bytes([level, flags]) + struct.pack(">H", keepalive)
    if level == 5:
        vh += varint(len(props)) + props
    pl = s16(client_id)
    if username is not None:
        pl += s16(username)
    if password is not None:
        pl += s16(password)
    return packet(0x10, vh + pl)


def p_publish(topic, payload, qos=0, pid=1, level=4, retain=False, dup=False, props=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    vh = s16(topic)
    if qos:
        vh += struct.pack(">H", pid)
    if level == 5:
        vh += varint(len(props)) + props
    return packet(0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0), vh + payload)


def p_subscribe(pid, filters, level=4):
    body = struct.pack(">H", pid) + (b"\x00" if level == 5 else b"")
    for f, q in filters:
        body += s16(f) + bytes([q])
    return packet(0x82, body)


def p_pubrel(pid):
    return packet(0x62, struct.pack(">H", pid))


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class Raw:
    """A raw MQTT client over TCP: send bytes, read whole packets."""

    def __init__(self, server, port=None, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port or server.mqtt_port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet")
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                return False
            self.buf += d
        return True

    def read(self, timeout=10):
        """(type, flags, body) of the next packet; None if the server closed the connection."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        mult, n, i = 1, 0, 1
        while True:
            if not self._fill(i + 1, deadline):
                return None
            b = self.buf[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if not self._fill(i + n, deadline):
            return None
        first = self.buf[0]
        body = self.buf[i:i + n]
        self.buf = self.buf[i + n:]
        return first >> 4, first & 0x0F, body

    def connect(self, token, level=4, keepalive=60, client_id="raw"):
        self.send(p_connect(client_id, token, None, level, keepalive))
        t, _, body = self.read()
        assert t == 2, "want CONNACK, got type %r" % t
        assert body[1] == 0, "CONNACK code %d" % body[1]
        return body

    def closed(self, timeout=10):
        """True once the server closed the connection (any packets before are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p = self.read(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return False
            if p is None:
                return True
        return False

    def close(self):
        self.s.close()


def disconnect_reason(raw, timeout=10):
    """Reads until DISCONNECT (returns its reason code) or close (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        p = raw.read(timeout=max(0.01, deadline - time.monotonic()))
        if p is None:
            return None
        if p[0] == 14:
            return p[2][0] if p[2] else 0


# ---- certificates ----

def _ossl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki(d):
    """CA, server (CN=localhost) and two client certificates (EC P-256) under d. Returns a dict of paths."""
    os.makedirs(d, exist_ok=True)
    _ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=d)
    _ossl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=thingsd test CA", "-days", "2", "-out", "ca.pem", cwd=d)
    for name in ("server", "client", "stranger"):
        _ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key", cwd=d)
        _ossl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + ("localhost" if name == "server" else name),
              "-out", name + ".csr", cwd=d)
        _ossl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-days", "2", "-out", name + ".pem", cwd=d)
    return {k: os.path.join(d, v) for k, v in {
        "ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key",
        "client_cert": "client.pem", "client_key": "client.key",
        "stranger_cert": "stranger.pem", "stranger_key": "stranger.key"}.items()}


def v5_props(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p
