"""Rule chains (reference §2.9, §4.1, §4.4).

The tenant's root rule chain is ThingsBoard's default, and messages really travel through it:
telemetry -> Save Timeseries, client attributes -> Save Client Attributes. ThingsBoard's own rule
chain files (shared/compat, copies in tests/fixtures/compat) import over REST the way the UI
imports an exported chain: POST /api/ruleChain with the export's "ruleChain", then
POST /api/ruleChain/metadata with its "metadata" and the new ruleChainId; POST
/api/ruleChain/{id}/root makes it the root chain and the running engine switches to it."""
import copy
import json
import os

import pytest

from tdlib import CUSTOMER, REPO, SYSADMIN, TENANT, assert_error_json, uniq, wait_until

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


# ---- import of ThingsBoard's own rule chain files over REST ----

def compat_file(name):
    """<repo>/../shared/compat/<name> (CI keeps a copy of shared/ beside its clone), else the
    copy in tests/fixtures/compat/."""
    for d in (os.path.join(REPO, "..", "shared", "compat"), os.path.join(REPO, "tests", "fixtures", "compat")):
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path
    raise AssertionError("compat fixture %s not found in ../shared/compat nor tests/fixtures/compat" % name)


def load_export(name):
    with open(compat_file(name)) as f:
        return json.load(f)


def ui_import(server, tok, export, name=None):
    """What ThingsBoard's UI does with an imported file: save the chain entity (the UI's own
    exports carry root=false and firstRuleNodeId=null; the install templates say root=true),
    then save the metadata with the new chain's id. Returns (chain, stored metadata)."""
    chain = copy.deepcopy(export["ruleChain"])
    chain.pop("id", None)
    chain["root"] = False
    chain["firstRuleNodeId"] = None
    chain["name"] = name or uniq(chain["name"])
    saved = server.ok("POST", "/api/ruleChain", tok, json=chain)
    assert saved["id"]["entityType"] == "RULE_CHAIN" and saved["root"] is False, saved
    assert saved["name"] == chain["name"] and saved["type"] == "CORE"
    md = copy.deepcopy(export["metadata"])
    md["ruleChainId"] = saved["id"]
    stored = server.ok("POST", "/api/ruleChain/metadata", tok, json=md, params={"updateRelated": "true"})
    return saved, stored


def make_tenant_admin(server, title):
    """A new tenant (with its default profile and root chain) and its activated admin's token."""
    tok, t, _ = server.new_tenant_admin(title, password="rule-chains", firstName="Rule", lastName="Chains")
    return tok, t["id"]["id"]


@pytest.fixture(scope="module")
def tenant_x(server):
    """A tenant of its own, so that changing its root chain leaves the demo tenant alone."""
    tok, tid = make_tenant_admin(server, "Rule chain tenant")
    return {"token": tok, "tenant_id": tid}


def chains(server, tok, **params):
    p = {"pageSize": 100, "page": 0}
    p.update(params)
    return server.ok("GET", "/api/ruleChains", tok, params=p)


def root_of(server, tok):
    roots = [c for c in chains(server, tok)["data"] if c["root"]]
    assert len(roots) == 1, roots
    return roots[0]


def new_device(server, tok):
    access = uniq("RC").replace("-", "_")
    d = server.create_device(tok, access_token=access)
    return d["id"]["id"], access


def attr_scope_values(server, tok, did, scope):
    path = "/api/plugins/telemetry/DEVICE/%s/values/attributes/%s" % (did, scope)
    return {e["key"]: e["value"] for e in server.ok("GET", path, tok)}


@pytest.mark.parametrize("fname", ["root_rule_chain_3x.json", "root_rule_chain_4x.json"])
def test_ui_import_of_compat_chain_becomes_root_and_stores_data(server, tenant_x, fname):
    tok = tenant_x["token"]
    export = load_export(fname)
    before = root_of(server, tok)
    chain, md = ui_import(server, tok, export)
    cid = chain["id"]["id"]

    # the metadata is stored as sent, with node ids assigned; the chain points at its first node
    want = export["metadata"]
    assert md["ruleChainId"]["id"] == cid
    assert [(n["type"], n["name"]) for n in md["nodes"]] == [(n["type"], n["name"]) for n in want["nodes"]]
    assert all(n["id"]["entityType"] == "RULE_NODE" for n in md["nodes"])
    assert md["firstNodeIndex"] == want["firstNodeIndex"]
    assert sorted((c["fromIndex"], c["toIndex"], c["type"]) for c in md["connections"]) == \
        sorted((c["fromIndex"], c["toIndex"], c["type"]) for c in want["connections"])
    for a, b in zip(md["nodes"], want["nodes"]):
        assert a["configuration"] == b["configuration"], a["name"]
    assert server.ok("GET", "/api/ruleChain/%s/metadata" % cid, tok) == md
    got = server.ok("GET", "/api/ruleChain/%s" % cid, tok)
    assert got["firstRuleNodeId"]["id"] == md["nodes"][md["firstNodeIndex"]]["id"]["id"]
    assert got["root"] is False and got["tenantId"]["id"] == tenant_x["tenant_id"]
    assert server.ok("GET", "/api/ruleChain/%s/output/labels" % cid, tok) == []

    # make it the root: exactly one root afterwards, the previous one can now be deleted
    r = server.ok("POST", "/api/ruleChain/%s/root" % cid, tok)
    assert r["root"] is True and r["id"]["id"] == cid
    assert root_of(server, tok)["id"]["id"] == cid
    assert server.ok("GET", "/api/ruleChain/%s" % before["id"]["id"], tok)["root"] is False
    assert_error_json(server.api("DELETE", "/api/ruleChain/%s" % cid, tok), 400, 31)
    assert server.api("DELETE", "/api/ruleChain/%s" % before["id"]["id"], tok).status_code == 200
    assert_error_json(server.api("GET", "/api/ruleChain/%s" % before["id"]["id"], tok), 404, 32)

    # device data goes through it into the store
    did, access = new_device(server, tok)
    assert server.post_telemetry(access, {"rc_temp": 21.5, "rc_on": True}).status_code == 200
    assert server.post_attributes(access, {"rc_fw": "1.2.3", "rc_n": 7}).status_code == 200
    assert server.wait_latest(did, "rc_temp", tok)["value"] == 21.5
    assert server.wait_latest(did, "rc_on", tok)["value"] is True
    vals = wait_until(lambda: (lambda v: v if {"rc_fw", "rc_n"} <= set(v) else None)(
        attr_scope_values(server, tok, did, "CLIENT_SCOPE")), what="client attributes saved by %s" % fname)
    assert vals["rc_fw"] == "1.2.3" and vals["rc_n"] == 7


def scope_probe(server, tok, access, did, scope):
    """Posts a fresh client attribute until one lands in `scope` (the engine switches chains
    asynchronously: the old chain serves until the new one is built). Returns the key."""
    key = uniq("probe").replace("-", "_")
    n = [0]

    def probe():
        n[0] += 1
        assert server.post_attributes(access, {key: n[0]}).status_code == 200
        return attr_scope_values(server, tok, did, scope).get(key)
    wait_until(probe, timeout=20, interval=0.2, what="attribute %s in %s" % (key, scope))
    return key


def test_engine_follows_root_changes_and_root_metadata_saves(server, tenant_x):
    """The Save Client Attributes node's configured scope tells which chain the engine runs."""
    tok = tenant_x["token"]
    did, access = new_device(server, tok)
    export = load_export("root_rule_chain_4x.json")
    shared = copy.deepcopy(export)
    for n in shared["metadata"]["nodes"]:
        if n["type"].endswith("TbMsgAttributesNode"):
            n["configuration"]["scope"] = "SHARED_SCOPE"
    chain, _ = ui_import(server, tok, shared, name=uniq("scope probe"))
    cid = chain["id"]["id"]
    server.ok("POST", "/api/ruleChain/%s/root" % cid, tok)
    k1 = scope_probe(server, tok, access, did, "SHARED_SCOPE")

    # saving the root chain's metadata (UI: GET, edit, POST with the version) reloads it
    md = server.ok("GET", "/api/ruleChain/%s/metadata" % cid, tok)
    for n in md["nodes"]:
        if n["type"].endswith("TbMsgAttributesNode"):
            n["configuration"]["scope"] = "SERVER_SCOPE"
    saved = server.ok("POST", "/api/ruleChain/metadata", tok, json=md)
    assert saved["version"] == md["version"] + 1
    # a stale version is a conflict
    assert_error_json(server.api("POST", "/api/ruleChain/metadata", tok, json=md), 409, 35)
    k2 = scope_probe(server, tok, access, did, "SERVER_SCOPE")

    # back to an unmodified import as root: client scope again
    plain, _ = ui_import(server, tok, load_export("root_rule_chain_3x.json"))
    server.ok("POST", "/api/ruleChain/%s/root" % plain["id"]["id"], tok)
    k3 = scope_probe(server, tok, access, did, "CLIENT_SCOPE")
    assert k1 not in attr_scope_values(server, tok, did, "CLIENT_SCOPE")
    assert k2 not in attr_scope_values(server, tok, did, "SHARED_SCOPE")
    assert k3 not in attr_scope_values(server, tok, did, "SERVER_SCOPE")
    # the probe chain is no longer root and may go
    assert server.api("DELETE", "/api/ruleChain/%s" % cid, tok).status_code == 200


def test_unknown_node_type_is_rejected_naming_the_class(server, tenant_x):
    tok = tenant_x["token"]
    export = load_export("root_rule_chain_4x.json")
    bogus = "org.thingsboard.rule.engine.nosuch.TbNoSuchNode"
    export["metadata"]["nodes"][3]["type"] = bogus
    chain = server.ok("POST", "/api/ruleChain", tok, json={"name": uniq("bogus"), "type": "CORE"})
    assert chain["root"] is False and chain["firstRuleNodeId"] is None
    md = export["metadata"]
    md["ruleChainId"] = chain["id"]
    body = assert_error_json(server.api("POST", "/api/ruleChain/metadata", tok, json=md), 400)
    assert bogus in body["message"], body
    # nothing was stored: a new chain has no nodes
    got = server.ok("GET", "/api/ruleChain/%s/metadata" % chain["id"]["id"], tok)
    assert got["nodes"] == [] and got["connections"] == []


def test_chain_entity_rules(server, tenant_x):
    tok = tenant_x["token"]
    assert_error_json(server.api("POST", "/api/ruleChain", tok, json={"type": "CORE"}), 400, 31)
    # a second root cannot be created, the root flag of the current root survives an update
    body = assert_error_json(server.api("POST", "/api/ruleChain", tok, json={"name": uniq("r2"), "root": True}), 400)
    assert body["message"] == "Another root rule chain is present in scope of current tenant!"
    root = root_of(server, tok)
    upd = dict(root, name=uniq("renamed root"), root=False)
    saved = server.ok("POST", "/api/ruleChain", tok, json=upd)
    assert saved["root"] is True and saved["name"] == upd["name"]
    assert saved["firstRuleNodeId"] == root["firstRuleNodeId"]
    body = assert_error_json(server.api("DELETE", "/api/ruleChain/%s" % root["id"]["id"], tok), 400, 31)
    assert body["message"] == "Deletion of Root Tenant Rule Chain is prohibited!"
    # paging, text search, type
    name = uniq("findme")
    made = server.ok("POST", "/api/ruleChain", tok, json={"name": name, "additionalInfo": {"description": "x"}})
    page = chains(server, tok, textSearch=name[-10:])
    assert [c["id"]["id"] for c in page["data"]] == [made["id"]["id"]] and page["totalElements"] == 1
    assert chains(server, tok, type="CORE", textSearch=name)["totalElements"] == 1
    assert chains(server, tok, type="EDGE")["data"] == []
    assert_error_json(server.api("GET", "/api/ruleChains", tok, params={"pageSize": 10, "page": 0, "type": "X"}), 400)
    assert_error_json(server.api("GET", "/api/ruleChains", tok, params={"page": 0}), 400)
    assert server.api("DELETE", "/api/ruleChain/%s" % made["id"]["id"], tok).status_code == 200
    assert_error_json(server.api("DELETE", "/api/ruleChain/%s" % made["id"]["id"], tok), 404, 32)


def test_other_tenant_and_customer_are_denied(server, tenant_x):
    demo_root = root_of(server, TENANT)
    rid = demo_root["id"]["id"]
    tok = tenant_x["token"]
    # another tenant's admin: 403 on every operation on the demo tenant's chain
    for method, path in (("GET", "/api/ruleChain/%s" % rid), ("GET", "/api/ruleChain/%s/metadata" % rid),
                         ("POST", "/api/ruleChain/%s/root" % rid), ("DELETE", "/api/ruleChain/%s" % rid)):
        assert_error_json(server.api(method, path, tok), 403, 20)
    md = server.ok("GET", "/api/ruleChain/%s/metadata" % rid, TENANT)
    assert_error_json(server.api("POST", "/api/ruleChain/metadata", tok, json=md), 403, 20)
    assert_error_json(server.api("POST", "/api/ruleChain", tok, json=dict(demo_root, name="stolen")), 403, 20)
    assert rid not in [c["id"]["id"] for c in chains(server, tok)["data"]]
    # a customer user and the sysadmin are not tenant admins
    for who in (CUSTOMER, SYSADMIN):
        assert_error_json(server.api("GET", "/api/ruleChains", who, params={"pageSize": 10, "page": 0}), 403, 20)
        assert_error_json(server.api("GET", "/api/ruleChain/%s" % rid, who), 403, 20)
        assert_error_json(server.api("POST", "/api/ruleChain", who, json={"name": uniq("c")}), 403, 20)
    assert_error_json(server.api("GET", "/api/ruleChain/%s/metadata" % rid, CUSTOMER), 403, 20)
    # unchanged
    assert server.ok("GET", "/api/ruleChain/%s" % rid, TENANT) == demo_root
