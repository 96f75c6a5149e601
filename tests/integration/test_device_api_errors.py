"""HTTP device API error handling: bad token, malformed JSON, oversized bodies; the server keeps
serving other clients after each bad request (reference §1.2; thingsd answers malformed JSON
with 400 + error JSON where ThingsBoard gives 500)."""
import socket

import pytest
import requests

from tdlib import TENANT

BAD_BODIES = [
    "{",
    "{\"a\":}",
    "not json",
    "",
    "[1,2]",            # array elements must be objects
    "\"str\"",
    "42",
    "{\"ts\":1,\"values\":5}",
    "[{\"a\":1}, 7]",
    "{\"a\":1}garbage",
    "\xff\xfe",
]


def still_serving(server, tok):
    # a new connection, a valid message, and the REST API
    r = server.post_telemetry(tok, {"alive": 1}, session=requests)
    assert r.status_code == 200, r.text
    assert server.api("GET", "/api/auth/user", TENANT).status_code == 200


def test_bad_token(server):
    _, tok = server.new_device()
    for path in ("telemetry", "attributes"):
        r = server.http.post(server.base + "/api/v1/NO_SUCH_TOKEN_123/" + path, json={"a": 1})
        assert r.status_code == 401, r.text
    assert server.http.get(server.base + "/api/v1/NO_SUCH_TOKEN_123/attributes").status_code == 401
    still_serving(server, tok)


@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_telemetry(server, body):
    _, tok = server.new_device()
    r = server.post_telemetry(tok, body.encode("latin-1"))
    assert r.status_code == 400, "%r -> %d %s" % (body, r.status_code, r.text)
    err = r.json()
    assert err.get("status") == 400 and isinstance(err.get("message"), str), err
    still_serving(server, tok)


def test_malformed_attributes(server):
    _, tok = server.new_device()
    for body in ("{", "[{\"a\":1}]", "5", ""):
        r = server.post_attributes(tok, body)
        assert r.status_code == 400, "%r -> %d %s" % (body, r.status_code, r.text)
        assert r.json().get("status") == 400
    still_serving(server, tok)


def test_malformed_json_keeps_connection_usable(server):
    _, tok = server.new_device()
    s = requests.Session()
    for _ in range(3):
        assert server.post_telemetry(tok, "{", session=s).status_code == 400
        assert server.post_telemetry(tok, {"ok": 1}, session=s).status_code == 200


def test_bad_token_with_bad_json(server):
    # authentication comes first (ThingsBoard parses after authenticating)
    r = server.post_telemetry("NO_SUCH_TOKEN_456", "{")
    assert r.status_code in (400, 401)


def raw_request(server, head, body=b"", read_timeout=10):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=read_timeout)
    try:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def status_of(resp):
    line = resp.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 else None


def test_oversized_body_small_limit(make_server):
    s = make_server(env={"HTTP_DEVICE_MAX_PAYLOAD_SIZE": "1024"})
    _, tok = s.new_device()
    ok = '{"k":"%s"}' % ("a" * 900)
    assert s.post_telemetry(tok, ok).status_code == 200
    big = '{"k":"%s"}' % ("a" * 2000)
    r = s.post_telemetry(tok, big)
    assert r.status_code == 413, r.text
    still_serving(s, tok)
    # announced length past the limit: refused from the headers alone, body never sent
    head = ("POST /api/v1/%s/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000000\r\n\r\n" % tok).encode()
    assert status_of(raw_request(s, head)) == 413
    still_serving(s, tok)
    # chunked body past the limit
    chunk = b"%x\r\n%s\r\n" % (1500, b"a" * 1500)
    head = ("POST /api/v1/%s/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % tok).encode()
    assert status_of(raw_request(s, head, chunk + chunk)) == 413
    still_serving(s, tok)


def test_oversized_body_default_limit(server):
    _, tok = server.new_device()
    head = ("POST /api/v1/%s/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (tok, 60 * 1024 * 1024)).encode()
    assert status_of(raw_request(server, head)) == 413
    still_serving(server, tok)


def test_garbage_http(server):
    _, tok = server.new_device()
    resp = raw_request(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert resp == b"" or status_of(resp) == 400
    still_serving(server, tok)
