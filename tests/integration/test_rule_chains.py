"""The tenant's root rule chain is ThingsBoard's default (reference §2.9, §4.4), and messages
really travel through it: telemetry -> Save Timeseries, client attributes -> Save Client Attributes."""
import pytest

from tdlib import TENANT, wait_until

PFX = "org.thingsboard.rule.engine."
EXPECTED_NODES = {
    "Save Timeseries": PFX + "telemetry.TbMsgTimeseriesNode",
    "Save Client Attributes": PFX + "telemetry.TbMsgAttributesNode",
    "Message Type Switch": PFX + "filter.TbMsgTypeSwitchNode",
    "Log RPC from Device": PFX + "action.TbLogNode",
    "Log Other": PFX + "action.TbLogNode",
    "RPC Call Request": PFX + "rpc.TbSendRPCRequestNode",
}
EXPECTED_LINKS = {
    ("Message Type Switch", "Post telemetry", "Save Timeseries"),
    ("Message Type Switch", "Post attributes", "Save Client Attributes"),
    ("Message Type Switch", "RPC Request from Device", "Log RPC from Device"),
    ("Message Type Switch", "RPC Request to Device", "RPC Call Request"),
    ("Message Type Switch", "Other", "Log Other"),
}


def test_root_rule_chain_is_default(server):
    r = server.api("GET", "/api/ruleChains", TENANT, params={"pageSize": 100, "page": 0})
    if r.status_code == 404:
        pytest.skip("no rule chain REST endpoints in this build (GET /api/ruleChains -> 404); "
                    "behaviour is covered by the tests below")
    assert r.status_code == 200, r.text
    roots = [c for c in r.json()["data"] if c.get("root")]
    assert len(roots) == 1, r.json()
    root = roots[0]
    assert root["name"] == "Root Rule Chain" and root["type"] == "CORE"
    md = server.ok("GET", "/api/ruleChain/%s/metadata" % root["id"]["id"], TENANT)
    nodes = md["nodes"]
    by_name = {n["name"]: n for n in nodes}
    for name, typ in EXPECTED_NODES.items():
        assert name in by_name, (name, list(by_name))
        assert by_name[name]["type"] == typ
    names = [n["name"] for n in nodes]
    links = {(names[c["fromIndex"]], c["type"], names[c["toIndex"]]) for c in md["connections"]}
    assert EXPECTED_LINKS <= links, links
    first = names[md["firstNodeIndex"]]
    if "Device Profile Node" in by_name:  # <= 4.2 layout
        assert first == "Device Profile Node"
        assert ("Device Profile Node", "Success", "Message Type Switch") in links
    else:  # 4.3+ layout
        assert first == "Message Type Switch"
    assert by_name["Save Client Attributes"]["configuration"]["scope"] == "CLIENT_SCOPE"


def test_telemetry_reaches_store_through_chain(server):
    did, tok = server.new_device()
    assert server.post_telemetry(tok, {"chain_t": 1.5}).status_code == 200
    assert server.wait_latest(did, "chain_t")["value"] == 1.5


def test_client_attributes_reach_store_through_chain(server):
    did, tok = server.new_device()
    assert server.post_attributes(tok, {"chain_a": "v"}).status_code == 200
    path = "/api/plugins/telemetry/DEVICE/%s/values/attributes/CLIENT_SCOPE" % did
    wait_until(lambda: [e for e in server.ok("GET", path, TENANT) if e["key"] == "chain_a" and e["value"] == "v"],
               what="client attribute saved by the root chain")
    # they are not telemetry, nor another scope
    assert "chain_a" not in server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/keys/timeseries" % did, TENANT)
    srv = server.ok("GET", "/api/plugins/telemetry/DEVICE/%s/values/attributes/SERVER_SCOPE" % did, TENANT)
    assert "chain_a" not in [e["key"] for e in srv]
