"""Server-side RPC over REST without a connected device (reference §2.7; ThingsBoard's
RpcV1Controller/RpcV2Controller): timeouts, access, body checks. The MQTT suite covers
delivery to a connected device."""
import time

import pytest

from tdlib import CUSTOMER, SYSADMIN, TENANT, uniq


@pytest.fixture(scope="module")
def other_tenant_device(server):
    tok, _, _ = server.new_tenant_admin("RPC tenant B")
    return server.create_device(tok, name=uniq("rpc-b"))["id"]["id"]


def test_twoway_without_session_times_out_504(server):
    did, _ = server.new_device()
    t0 = time.monotonic()
    r = server.api("POST", "/api/rpc/twoway/" + did, TENANT, json={"method": "getTemp", "params": {}, "timeout": 1000})
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert r.content == b""
    assert 4.5 <= took < 9, took  # the minimum timeout is 5000 ms


def test_legacy_oneway_without_session_is_409(server):
    did, _ = server.new_device()
    r = server.api("POST", "/api/plugins/rpc/oneway/" + did, TENANT,
                   json={"method": "reboot", "params": None, "timeout": 5000})
    assert r.status_code == 409, r.text  # NO_ACTIVE_CONNECTION on the legacy controller


def test_cross_tenant_denied(server, other_tenant_device):
    r = server.api("POST", "/api/rpc/twoway/" + other_tenant_device, TENANT, json={"method": "m", "params": {}})
    assert r.status_code == 403, r.text
    assert r.json()["errorCode"] == 20


def test_customer_user_must_own_device(server):
    did, _ = server.new_device()  # not assigned to the customer
    r = server.api("POST", "/api/rpc/oneway/" + did, CUSTOMER, json={"method": "m", "params": {}})
    assert r.status_code == 403, r.text


def test_sysadmin_denied(server):
    did, _ = server.new_device()
    r = server.api("POST", "/api/rpc/oneway/" + did, SYSADMIN, json={"method": "m", "params": {}})
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("body", [
    "not json", "[]", '{"params":{}}', '{"method":"m"}', '{"method":"m","params":{},"timeout":"x"}',
    '{"method":"m","params":{},"persistent":"yes"}', '{"method":"m","params":{},"requestUUID":"nope"}'])
def test_bad_body_400(server, body):
    did, _ = server.new_device()
    r = server.api("POST", "/api/rpc/twoway/" + did, TENANT, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["status"] == 400


def test_unknown_device_404(server):
    r = server.api("POST", "/api/rpc/twoway/" + "7a1b5c4e-0000-11ee-8000-000000000001", TENANT,
                   json={"method": "m", "params": {}})
    assert r.status_code == 404, r.text
