"""Process lifecycle: SIGTERM exits 0 with data flushed, --help, port 0 disables a listener."""
import os
import subprocess

import requests

from tdlib import BIN, TENANT, wait_until

T0 = 1700000000000


def test_help():
    assert os.access(BIN, os.X_OK), "no thingsd binary at %s" % BIN
    p = subprocess.run([BIN, "--help"], capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0, out
    for opt in ("--config", "--data-dir", "--demo"):
        assert opt in out, out


def test_bad_option_fails():
    p = subprocess.run([BIN, "--no-such-option"], capture_output=True, timeout=20)
    assert p.returncode != 0


def test_sigterm_flushes(make_server):
    s = make_server()
    did, tok = s.new_device()
    sess = requests.Session()
    for i in range(300):
        assert s.post_telemetry(tok, '{"ts":%d,"values":{"v":%d}}' % (T0 + i, i), session=sess).status_code == 200
    assert s.post_attributes(tok, {"fw": "2.0"}).status_code == 200
    sess.close()
    s.stop()  # SIGTERM, exit code 0 asserted
    s.start()
    h = s.timeseries(did, "v", TENANT, startTs=T0, endTs=T0 + 1000, limit=1000)
    got = len(h.get("v", []))
    # all acknowledged messages were processed before the exit, or are replayed right after start
    wait_until(lambda: len(s.timeseries(did, "v", TENANT, startTs=T0, endTs=T0 + 1000, limit=1000).get("v", [])) == 300,
               timeout=30, what="300 points after SIGTERM (had %d right after start)" % got)
    attrs = s.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did, TENANT)
    wait_until(lambda: any(e["key"] == "fw" for e in
                           s.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did, TENANT)),
               timeout=30, what="fw attribute after SIGTERM (had %r)" % attrs)


def test_demo_data_created_once(make_server):
    s = make_server()
    before = s.ok("GET", "/api/tenant/devices", TENANT, params={"pageSize": 100, "page": 0})["totalElements"]
    s.restart()  # --demo again on the same data dir must not duplicate anything
    after = s.ok("GET", "/api/tenant/devices", TENANT, params={"pageSize": 100, "page": 0})["totalElements"]
    assert before == after >= 7


def listening_ports(pid):
    """TCP ports in LISTEN state whose sockets belong to process `pid`."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def udp_ports(pid):
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/%d/net/udp" % pid, "/proc/%d/net/udp6" % pid):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_port_zero_disables_listeners(make_server):
    # the fixture sets CoAP/CoAPS/LwM2M ports to 0 and gives MQTT a port (MQTTS
    # starts only with a certificate): HTTP and MQTT listen
    s = make_server()
    assert listening_ports(s.proc.pid) == {s.port, s.mqtt_port}
    s.stop()
    s = make_server(env={"MQTT_BIND_PORT": "0"})
    assert listening_ports(s.proc.pid) == {s.port}
    assert udp_ports(s.proc.pid) == set()


def exits_with_port_in_use(s, port):
    """s started without waiting: it must exit non-zero and say which port is taken."""
    s.start(wait=False)
    try:
        rc = s.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("thingsd kept running on a port that was taken; log:\n" + s.log_tail())
    s.proc = None
    assert rc != 0, s.log_tail()
    assert 'port=%d err="port already in use"' % port in s.log_tail(), s.log_tail()


def test_port_already_listened_on(make_server):
    """The listeners set SO_REUSEPORT (one socket per I/O loop), which would let
    a second thingsd, or a second listener of the same one, join a port
    silently and take some of its connections. Both are refused at start."""
    a = make_server()
    # a second server on the first one's HTTP port
    b = make_server(start=False, env={"HTTP_BIND_PORT": str(a.port)})
    exits_with_port_in_use(b, a.port)
    # one server whose MQTT port is its own HTTP port
    c = make_server(start=False)
    c.extra_env["MQTT_BIND_PORT"] = str(c.port)
    exits_with_port_in_use(c, c.port)
    # the first server still has all its connections
    assert requests.post(a.base + "/api/auth/login", json={"username": TENANT[0], "password": TENANT[1]},
                         timeout=10).status_code == 200
