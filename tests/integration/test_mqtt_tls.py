"""MQTT over TLS (reference §1.1.1 step 2): a throwaway CA and certificates
made with the openssl CLI; access tokens over TLS, X.509 client certificates
registered as X509_CERTIFICATE credentials over REST, unknown certificates
refused (3.x 0x05, 5 0x87)."""
import base64
import hashlib
import os
import ssl

import pytest

import mqttlib
from mqttlib import V311, V5, connect, connack_code
from tdlib import TENANT


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return mqttlib.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_server(make_server, pki):
    return make_server(env={"MQTT_SSL_PEM_CERT": pki["server_cert"], "MQTT_SSL_PEM_KEY": pki["server_key"],
                            "MQTT_SSL_CA_FILE": pki["ca"]})


def tls_opts(pki, who=None):
    o = {"ca_certs": pki["ca"], "cert_reqs": ssl.CERT_REQUIRED}
    if who:
        o["certfile"] = pki[who + "_cert"]
        o["keyfile"] = pki[who + "_key"]
    return o


def sha3_of_pem(path):
    pem = open(path).read()
    b64 = "".join(l.strip() for l in pem.splitlines() if l.strip() and not l.startswith("-----"))
    assert base64.b64decode(b64)
    return hashlib.sha3_256(b64.encode()).hexdigest()


def test_token_over_tls(tls_server, pki):
    did, tok = tls_server.new_device()
    d = connect(tls_server, tok, tls=tls_opts(pki))
    try:
        d.pub("v1/devices/me/telemetry", {"secure": 1})
    finally:
        d.close()
    assert tls_server.wait_latest(did, "secure")["value"] == 1
    # the plain port works alongside
    assert connack_code(tls_server, tok) == 0


def test_x509_client_certificate(tls_server, pki):
    did, _ = tls_server.new_device()
    c = tls_server.ok("GET", "/api/device/%s/credentials" % did, TENANT)
    c["credentialsType"] = "X509_CERTIFICATE"
    c["credentialsValue"] = open(pki["client_cert"]).read()
    saved = tls_server.ok("POST", "/api/device/credentials", TENANT, json=c)
    # reference §1.0.1: credentialsId = sha3-256 of the trimmed base64 DER
    assert saved["credentialsId"] == sha3_of_pem(pki["client_cert"])
    for ver in (V311, V5):
        d = connect(tls_server, None, client_id="x509-%d" % ver, version=ver, tls=tls_opts(pki, "client"))
        try:
            d.pub("v1/devices/me/telemetry", {"x509": ver})
        finally:
            d.close()
        assert tls_server.wait_latest(did, "x509", pred=lambda e, v=ver: e["value"] == v)["value"] == ver


def test_unknown_certificate_refused(tls_server, pki):
    _, tok = tls_server.new_device()
    assert connack_code(tls_server, None, client_id="s1", tls=tls_opts(pki, "stranger")) == 5
    assert connack_code(tls_server, None, client_id="s2", version=V5, tls=tls_opts(pki, "stranger")) == 0x87
    # a certificate decides even with a valid token as user name (decision order step 2)
    assert connack_code(tls_server, tok, client_id="s3", tls=tls_opts(pki, "stranger")) == 5


def test_tls_not_started_without_certificate(server):
    import socket
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", server.mqtt_ssl_port)) != 0
    finally:
        s.close()
