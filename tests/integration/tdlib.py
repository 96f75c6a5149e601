"""tdlib.py — drives a real thingsd process for the integration tests.

A Server starts the binary named by $THINGSD_BIN (default <repo>/build/thingsd)
on a free 127.0.0.1 port with its own data directory, captures its stderr in a
log file, waits (bounded) until the REST API answers, and offers small helpers:
login(), api(), device-API calls, restart(), kill9(), stop().

Nothing here skips: a missing binary raises, so the tests fail.
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("THINGSD_BIN", os.path.join(REPO, "build", "thingsd"))
NULL_ID = "13814000-1dd2-11b2-8080-808080808080"

START_DEADLINE_S = float(os.environ.get("TD_TEST_START_DEADLINE", "60"))
STOP_DEADLINE_S = float(os.environ.get("TD_TEST_STOP_DEADLINE", "30"))

SYSADMIN = ("sysadmin@thingsboard.org", "sysadmin")
TENANT = ("tenant@thingsboard.org", "tenant")
CUSTOMER = ("customer@thingsboard.org", "customer")
CUSTOMER_A = ("customerA@thingsboard.org", "customer")
CUSTOMER_B = ("customerB@thingsboard.org", "customer")
CUSTOMER_C = ("customerC@thingsboard.org", "customer")

# every Server ever created in this pytest process (conftest prints their logs on failure)
ALL_SERVERS = []
# all servers' temp dirs live under one directory per pytest run (removed by conftest when all passed)
RUN_TMP = tempfile.mkdtemp(prefix="td-it-", dir=os.environ.get("TD_TEST_TMP") or None)


_ISSUED_PORTS = set()


def free_port():
    """A TCP port that was free a moment ago (bind to port 0, read it, close)
    and that this test run has not handed out before: the kernel may give the
    same port to two calls in a row, and a server's HTTP and MQTT ports must
    differ (thingsd refuses to start on a port that is already listened on)."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _ISSUED_PORTS:
            _ISSUED_PORTS.add(port)
            return port


def wait_until(fn, timeout=20.0, interval=0.05, what="condition"):
    """Calls fn() until it returns a truthy value; returns it. Raises AssertionError
    with the last value/exception after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - remembered and reported
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s; last: %r" % (timeout, what, last))
        time.sleep(interval)


def uniq(prefix="t"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def jwt_parts(token):
    h, p, s = token.split(".")

    def dec(x):
        return json.loads(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    return dec(h), dec(p), s


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_error_json(r, status, error_code=None):
    """r is a ThingsBoard error response: {"status","message","errorCode","timestamp"}."""
    assert r.status_code == status, "want %d, got %d: %s" % (status, r.status_code, r.text[:500])
    body = r.json()
    assert body.get("status") == status, body
    assert isinstance(body.get("message"), str), body
    assert isinstance(body.get("errorCode"), int), body
    assert isinstance(body.get("timestamp"), int), body
    if error_code is not None:
        assert body["errorCode"] == error_code, body
    return body


class Server:
    def __init__(self, demo=True, env=None, data_dir=None, args=None, name="thingsd"):
        if not os.path.isfile(BIN) or not os.access(BIN, os.X_OK):
            raise AssertionError("thingsd binary not found or not executable: %s (set THINGSD_BIN)" % BIN)
        self.tmp = tempfile.mkdtemp(prefix="srv-", dir=RUN_TMP)
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.demo = demo
        self.extra_env = dict(env or {})
        self.args = list(args or [])
        self.port = free_port()
        self.mqtt_port = free_port()
        self.mqtt_ssl_port = free_port()  # the TLS listener starts only with MQTT_SSL_PEM_CERT set
        self.base = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.log_path = os.path.join(self.tmp, "thingsd.log")
        self.starts = 0
        self.name = name
        self.http = requests.Session()
        self._tokens = {}
        ALL_SERVERS.append(self)

    # ---- process control ----
    def env(self):
        e = dict(os.environ)
        e.update({
            "HTTP_BIND_ADDRESS": "127.0.0.1",
            "HTTP_BIND_PORT": str(self.port),
            "MQTT_BIND_ADDRESS": "127.0.0.1",
            "MQTT_BIND_PORT": str(self.mqtt_port),
            "MQTT_SSL_BIND_PORT": str(self.mqtt_ssl_port),
            "COAP_BIND_PORT": "0",
            "COAP_DTLS_BIND_PORT": "0",
            "LWM2M_BIND_PORT": "0",
        })
        e.update(self.extra_env)
        return e

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [BIN, "--data-dir", self.data_dir] + (["--demo"] if self.demo else []) + self.args
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("\n==== start #%d: %s (port %d) ====\n" % (self.starts, " ".join(cmd), self.port)).encode())
        log.flush()
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self._tokens = {}
        self.http = requests.Session()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        """Ready = sysadmin (and, with --demo, the tenant admin) can log in."""
        users = [SYSADMIN] + ([TENANT] if self.demo else [])
        deadline = time.monotonic() + START_DEADLINE_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("thingsd exited with %s during start-up; log:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                ok = True
                for u, p in users:
                    r = requests.post(self.base + "/api/auth/login", json={"username": u, "password": p}, timeout=5)
                    last = (u, r.status_code, r.text[:200])
                    if r.status_code != 200:
                        ok = False
                        break
                if ok:
                    return
            except requests.RequestException as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("thingsd not ready within %.0fs (last: %r); log:\n%s" % (START_DEADLINE_S, last, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True):
        """SIGTERM; the exit code must be 0 within the deadline, else SIGKILL and fail."""
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            self.proc = None
            if check and rc not in (None, 0):
                raise AssertionError("thingsd had already exited with %s; log:\n%s" % (rc, self.log_tail()))
            return rc
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            raise AssertionError("thingsd did not exit within %.0fs of SIGTERM (killed); log:\n%s" % (STOP_DEADLINE_S, self.log_tail()))
        self.proc = None
        if check:
            assert rc == 0, "thingsd exited with %s after SIGTERM; log:\n%s" % (rc, self.log_tail())
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, kill=False):
        """Stop (SIGTERM, or SIGKILL with kill=True) and start again on the same data dir and port."""
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def log_tail(self, lines=200):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(data[-lines:])
        except OSError:
            return "(no log)"

    # ---- REST helpers ----
    def login(self, user, password=None):
        if isinstance(user, tuple):
            user, password = user
        r = self.http.post(self.base + "/api/auth/login", json={"username": user, "password": password}, timeout=10)
        assert r.status_code == 200, "login %s: %d %s" % (user, r.status_code, r.text[:300])
        return r.json()["token"]

    def token(self, who):
        """Cached access token for a (user, password) tuple."""
        if who not in self._tokens:
            self._tokens[who] = self.login(who)
        return self._tokens[who]

    def api(self, method, path, token=None, json_body=None, params=None, data=None, headers=None, timeout=30, **kw):
        h = dict(headers or {})
        if token is not None:
            if isinstance(token, tuple):
                token = self.token(token)
            h["X-Authorization"] = "Bearer " + token
        if "json" in kw:
            json_body = kw.pop("json")
        return self.http.request(method, self.base + path, json=json_body, params=params, data=data, headers=h,
                                 timeout=timeout, **kw)

    def ok(self, method, path, token=None, **kw):
        """api() that must answer 200; returns the parsed JSON (or None for an empty body)."""
        r = self.api(method, path, token, **kw)
        assert r.status_code == 200, "%s %s -> %d %s" % (method, path, r.status_code, r.text[:500])
        return r.json() if r.content else None

    # ---- device API ----
    def post_telemetry(self, token, body, session=None):
        s = session or self.http
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return s.post(self.base + "/api/v1/%s/telemetry" % token, data=body,
                      headers={"Content-Type": "application/json"}, timeout=30)

    def post_attributes(self, token, body, session=None):
        s = session or self.http
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return s.post(self.base + "/api/v1/%s/attributes" % token, data=body,
                      headers={"Content-Type": "application/json"}, timeout=30)

    # ---- entities ----
    def new_tenant_admin(self, title, password="tenant-pass", **user_fields):
        """A new tenant created by the sysadmin and its activated TENANT_ADMIN.
        Returns (token, tenant JSON, user JSON)."""
        t = self.ok("POST", "/api/tenant", SYSADMIN, json={"title": uniq(title)})
        email = uniq("admin") + "@example.com"
        body = {"email": email, "authority": "TENANT_ADMIN", "tenantId": t["id"]}
        body.update(user_fields)
        u = self.ok("POST", "/api/user", SYSADMIN, params={"sendActivationMail": "false"}, json=body)
        r = self.api("GET", "/api/user/%s/activationLink" % u["id"]["id"], SYSADMIN)
        assert r.status_code == 200, r.text
        m = re.search(r"activateToken=([A-Za-z0-9_\-]+)", r.text)
        assert m, r.text
        r = self.api("POST", "/api/noauth/activate", params={"sendActivationMail": "false"},
                     json={"activateToken": m.group(1), "password": password})
        assert r.status_code == 200, r.text
        assert r.json()["token"]
        return self.login(email, password), t, u

    def create_device(self, token=TENANT, name=None, access_token=None, **fields):
        body = {"name": name or uniq("dev"), "type": "default"}
        body.update(fields)
        params = {"accessToken": access_token} if access_token else None
        return self.ok("POST", "/api/device", token, json=body, params=params)

    def new_device(self, token=TENANT, name=None):
        """Creates a device with a known access token; returns (device_id, access_token)."""
        tok = uniq("TOK").replace("-", "_")
        d = self.create_device(token, name=name, access_token=tok)
        return d["id"]["id"], tok

    def device_by_name(self, name, token=TENANT):
        return self.ok("GET", "/api/tenant/devices", token, params={"deviceName": name})

    def timeseries(self, dev_id, keys, token=TENANT, **params):
        p = {"keys": ",".join(keys) if isinstance(keys, (list, tuple)) else keys}
        p.update(params)
        return self.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/timeseries" % dev_id, token, params=p)

    def wait_latest(self, dev_id, key, token=TENANT, timeout=20, pred=None, strict=True):
        """Polls the latest value of `key` until present (and pred(entry) holds)."""
        def probe():
            r = self.timeseries(dev_id, key, token, useStrictDataTypes="true" if strict else "false")
            e = (r or {}).get(key)
            if e and (pred is None or pred(e[0])):
                return e[0]
            return None
        return wait_until(probe, timeout, what="latest %s of %s" % (key, dev_id))

    def __repr__(self):
        return "<thingsd %s pid=%s data=%s>" % (self.base, self.proc.pid if self.proc else None, self.data_dir)
