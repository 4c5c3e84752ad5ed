"""The HTTP API (engine/server) through FastAPI's TestClient, on the Brightwater workspace with
keys required: decide, explain, execute with idempotency, the review queue, the audit log, the
catalog, the probes and the metrics; problem+json for every refusal."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from engine.server import create_app
from engine.workspace import load_workspace
from tests.brightwater import AS_OF, ROOT, discount_case, engine

PROBLEM = "application/problem+json"
IDENTITIES = {"sales-assistant": "agent", "ap-assistant": "agent", "sales-ops-lead": "reviewer",
              "ap-lead": "reviewer"}


class Api:
    """A client of the app and the keys of the test's identities."""

    def __init__(self, client: TestClient, engine, keys: dict[str, str]):
        self.client, self.engine, self.keys = client, engine, keys

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def decide(self, case: dict, who: str = "sales-assistant", **kw):
        return self.client.post("/v1/decisions", json=case, headers={**self.auth(who), **kw.pop("headers", {})},
                                **kw)


@pytest.fixture
def api(tmp_path):
    """A fresh workspace (executions change its in-memory graph), keys required, no model."""
    e = engine(None, ws=load_workspace(ROOT), state=tmp_path / "state.db", mode="off")
    keys = {who: e.identities.issue(who, kind).token for who, kind in IDENTITIES.items()}
    with TestClient(create_app(e, require_keys=True)) as client:
        yield Api(client, e, keys)
    e.close()


def invoice(n: int) -> dict:
    return {"type": "invoice.received", "payload": {"invoice": f"bwd:INV-{n}"}, "as_of": AS_OF}


def assert_problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    return body


# -- decide, explain, get ------------------------------------------------------------------------
def test_decide_by_rule_and_execute_at_once(api):
    r = api.decide(discount_case("bwd:SO-3002", 3), params={"execute": "true"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["outcome"], d["source"], d["agent"]) == ("execute", "rule", "sales-assistant")
    assert d["execution"]["outcome"] == "done"
    steps = [e["step"] for e in api.client.get(f"/v1/audit/decisions/{d['id']}",
                                                 headers=api.auth("sales-ops-lead")).json()]
    assert steps[0] == "received" and "decided" in steps and steps[-1] == "executed"


def test_decide_escalates_to_review_and_denies(api):
    esc = api.decide(discount_case("bwd:SO-3014", 3)).json()
    assert esc["outcome"] == "escalate" and esc["review_id"].startswith("R-")
    deny = api.decide(discount_case("bwd:SO-3053", 3)).json()
    assert deny["outcome"] == "deny" and deny["reason"] == "guard_deny" and deny["execution"] is None


def test_explain_says_why_and_why_not(api):
    r = api.client.post("/v1/explanations", json=discount_case("bwd:SO-3053", 3), headers=api.auth("sales-assistant"))
    assert r.status_code == 200, r.text
    x = r.json()
    assert x["outcome"] == "deny"
    assert any(t["matched"] for t in x["explanation"])
    assert any(not t["matched"] and t["failed"]["condition"] for t in x["explanation"])


def test_get_a_recorded_decision_for_its_agent_and_a_reviewer_not_another_agent(api):
    d = api.decide(discount_case("bwd:SO-3002", 3)).json()
    mine = api.client.get(f"/v1/decisions/{d['id']}", headers=api.auth("sales-assistant"))
    assert mine.status_code == 200
    body = mine.json()
    assert body["decided_by"]["by"] == "rule" and body["status"] == "decided"
    assert [e["step"] for e in body["events"]][-1] == "decided"
    assert api.client.get(f"/v1/decisions/{d['id']}", headers=api.auth("ap-lead")).status_code == 200
    assert_problem(api.client.get(f"/v1/decisions/{d['id']}", headers=api.auth("ap-assistant")), 404,
                   "decision_not_found")
    assert_problem(api.client.get("/v1/decisions/nope", headers=api.auth("ap-lead")), 404, "decision_not_found")


# -- execute and Idempotency-Key ------------------------------------------------------------------
def test_execute_with_an_idempotency_key_runs_once_and_a_reused_key_is_a_409(api):
    d = api.decide(discount_case("bwd:SO-3002", 3)).json()
    other = api.decide(discount_case("bwd:SO-3002", 2)).json()
    headers = {**api.auth("sales-assistant"), "Idempotency-Key": "k-1"}
    first = api.client.post(f"/v1/decisions/{d['id']}/execute", headers=headers)
    assert first.status_code == 200 and first.json()["outcome"] == "done", first.text
    again = api.client.post(f"/v1/decisions/{d['id']}/execute", headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(api.engine.executor.ledger.executions(d["id"])) == 1
    assert_problem(api.client.post(f"/v1/decisions/{other['id']}/execute", headers=headers), 409,
                   "idempotency_key_reused")
    # another caller's key space: the same key is theirs to use
    assert api.client.post(f"/v1/decisions/{d['id']}/execute",
                           headers={**api.auth("ap-assistant"), "Idempotency-Key": "k-1"}).status_code == 403


def test_decide_and_execute_retried_with_its_key_makes_one_decision(api):
    headers = {"Idempotency-Key": "order-3002-3pct"}
    first = api.decide(discount_case("bwd:SO-3002", 3), params={"execute": "true"}, headers=headers)
    again = api.decide(discount_case("bwd:SO-3002", 3), params={"execute": "true"}, headers=headers)
    assert first.json()["id"] == again.json()["id"] and again.json()["execution"]["outcome"] == "done"
    assert_problem(api.decide(discount_case("bwd:SO-3002", 2), params={"execute": "true"}, headers=headers),
                   409, "idempotency_key_reused")


def test_executing_a_denied_decision_is_a_409(api):
    deny = api.decide(discount_case("bwd:SO-3053", 3)).json()
    assert_problem(api.client.post(f"/v1/decisions/{deny['id']}/execute", headers=api.auth("sales-assistant")),
                   404, "decision_not_found")  # only decisions that act are kept for execution
    assert_problem(api.client.post("/v1/decisions/missing/execute", headers=api.auth("sales-assistant")),
                   404, "decision_not_found")


# -- the review queue -----------------------------------------------------------------------------
def test_review_list_show_approve_with_the_hash_then_execute(api):
    esc = api.decide(discount_case("bwd:SO-3014", 3)).json()
    lead = api.auth("sales-ops-lead")
    listed = api.client.get("/v1/reviews", headers=lead).json()
    assert [i["id"] for i in listed] == [esc["review_id"]]
    assert api.client.get("/v1/reviews", headers=api.auth("ap-lead")).json() == []  # not their rulesets
    item = api.client.get(f"/v1/reviews/{esc['review_id']}", headers=lead).json()
    wrong = "0" * 12 if not item["proposal_hash"].startswith("0" * 12) else "f" * 12
    assert_problem(api.client.post(f"/v1/reviews/{item['id']}/approve", json={"proposal_hash": wrong},
                                   headers=lead), 409, "review_hash_mismatch")
    ok = api.client.post(f"/v1/reviews/{item['id']}/approve",
                         json={"proposal_hash": item["proposal_hash"][:12], "note": "checked"}, headers=lead)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "approved" and ok.json()["reviewer"] == "sales-ops-lead"
    assert_problem(api.client.post(f"/v1/reviews/{item['id']}/approve",
                                   json={"proposal_hash": item["proposal_hash"]}, headers=lead), 409,
                   "review_not_pending")
    run = api.client.post(f"/v1/decisions/{item['id']}/execute", headers=api.auth("sales-assistant"))
    assert run.status_code == 200 and run.json()["outcome"] == "done", run.text


def test_approve_needs_the_hash_and_reject_needs_a_reason(api):
    esc = api.decide(discount_case("bwd:SO-3014", 2)).json()
    lead = api.auth("sales-ops-lead")
    body = assert_problem(api.client.post(f"/v1/reviews/{esc['review_id']}/approve", json={}, headers=lead),
                          422, "request_invalid")
    assert "proposal_hash" in body["detail"]
    assert_problem(api.client.post(f"/v1/reviews/{esc['review_id']}/approve", json={"proposal_hash": "abc"},
                                   headers=lead), 422, "request_invalid")
    assert_problem(api.client.post(f"/v1/reviews/{esc['review_id']}/reject", json={}, headers=lead), 422,
                   "request_invalid")
    r = api.client.post(f"/v1/reviews/{esc['review_id']}/reject", json={"reason": "too big"}, headers=lead)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert_problem(api.client.get("/v1/reviews/R-nothing", headers=lead), 404, "review_not_found")


def test_a_reviewer_endpoint_refuses_an_agent_key(api):
    esc = api.decide(discount_case("bwd:SO-3014", 3)).json()
    agent = api.auth("sales-assistant")
    assert_problem(api.client.get("/v1/reviews", headers=agent), 403, "auth_wrong_kind")
    assert_problem(api.client.post(f"/v1/reviews/{esc['review_id']}/approve", json={"proposal_hash": "a" * 12},
                                   headers=agent), 403, "auth_wrong_kind")
    assert_problem(api.client.get("/v1/audit/verify", headers=agent), 403, "auth_wrong_kind")
    # and the refused approval is audited on the item's decision, like the CLI's
    refused = [e for e in api.engine.audit.trace(esc["id"]) if e.step == "refused"]
    assert refused and refused[-1].data["code"] == "auth_wrong_kind"


# -- identities -----------------------------------------------------------------------------------
def test_missing_malformed_unknown_and_revoked_keys_are_401(api):
    case = discount_case("bwd:SO-3002", 3)
    assert_problem(api.client.post("/v1/decisions", json=case), 401, "auth_required")
    assert_problem(api.client.get("/v1/actions"), 401, "auth_required")
    bad = {"Authorization": "Bearer not-a-key"}
    assert_problem(api.client.post("/v1/decisions", json=case, headers=bad), 401, "auth_key_malformed")
    unknown = {"Authorization": "Bearer rbk_000000000000_" + "x" * 40}
    assert_problem(api.client.post("/v1/decisions", json=case, headers=unknown), 401, "auth_key_unknown")
    api.engine.identities.rotate("sales-assistant")  # the old key is revoked
    assert_problem(api.decide(case), 401, "auth_key_revoked")
    fresh = api.engine.identities.issue("sales-assistant").token
    api.engine.identities.revoke("sales-assistant", "offboarded")
    assert_problem(api.client.post("/v1/decisions", json=case, headers={"Authorization": f"Bearer {fresh}"}),
                   401, "auth_key_revoked")


def test_an_agent_out_of_scope_or_impersonating_is_403(api):
    assert_problem(api.decide(invoice(10001)), 403, "agent_not_permitted")  # sales agent, AP ruleset
    assert_problem(api.decide({**discount_case(), "agent": "ap-assistant"}), 403, "auth_identity_mismatch")


# -- bad bodies -----------------------------------------------------------------------------------
def test_a_bad_body_is_a_422_naming_the_field_never_a_500(api):
    agent = api.auth("sales-assistant")
    body = assert_problem(api.client.post("/v1/decisions", json={"payload": {}}, headers=agent), 422,
                          "request_invalid")
    assert body["errors"][0]["field"] == "body.type"
    body = assert_problem(api.client.post("/v1/decisions", json={"type": "x", "payloads": {}}, headers=agent), 422,
                          "request_invalid")
    assert "body.payloads" in body["detail"]
    r = api.client.post("/v1/decisions", content=b"{not json", headers={**agent, "content-type": "application/json"})
    assert_problem(r, 422, "request_invalid")
    assert_problem(api.client.post("/v1/decisions", json=[1, 2], headers=agent), 422, "request_invalid")
    # the engine's own checks: a payload that does not fit the case schema, an unknown case type
    bad = discount_case("bwd:SO-3002", "seven")
    assert_problem(api.decide(bad), 422, "case_invalid")
    body = assert_problem(api.decide({**discount_case(), "type": "discount.requestd"}), 422, "no_ruleset")
    assert "discount.requested" in body["diagnostics"][0]["help"]
    assert_problem(api.client.get("/v1/reviews", params={"status": "nope"}, headers=api.auth("ap-lead")), 422,
                   "request_invalid")


def test_a_body_over_the_limit_is_a_413(tmp_path):
    e = engine(None, ws=load_workspace(ROOT), state=tmp_path / "state.db", mode="off")
    with TestClient(create_app(e, require_keys=False, max_body_bytes=2048)) as client:
        big = discount_case(note="x" * 4096)
        assert_problem(client.post("/v1/decisions", json=big), 413, "request_too_large")
        r = client.post("/v1/decisions", json=discount_case("bwd:SO-3002", 3))
        assert r.status_code == 200, r.text
    e.close()


def test_a_case_over_max_case_bytes_is_a_413(api):
    api.engine.max_case_bytes = 1000
    assert_problem(api.decide(discount_case("bwd:SO-3002", 3, id="x" * 190, agent="sales-assistant")
                              | {"payload": {"order": "bwd:SO-3002", "percent": 3, "requested_by": "bwd:EMP-037",
                                             "pad": "y" * 2000}}), 413, "case_too_large")


# -- the audit log --------------------------------------------------------------------------------
def test_audit_verify_show_export_and_stats(api):
    d = api.decide(discount_case("bwd:SO-3002", 3)).json()
    lead = api.auth("ap-lead")
    v = api.client.get("/v1/audit/verify", headers=lead).json()
    assert v["ok"] is True and v["checked"] >= 5
    shown = api.client.get(f"/v1/audit/decisions/{d['id']}", headers=lead).json()
    assert all(e["decision_id"] == d["id"] for e in shown)
    assert_problem(api.client.get("/v1/audit/decisions/none", headers=lead), 404, "audit_unknown_decision")
    r = api.client.get("/v1/audit/events", headers=lead)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1)) and lines[-1]["hash"]
    stats = api.client.get("/v1/audit/stats", headers=lead).json()
    assert stats["decisions"] >= 1 and stats["by_source"]["rule"]["execute"] >= 1
    assert_problem(api.client.get("/v1/audit/events", params={"since": "yesterday"}, headers=lead), 422,
                   "audit_bad_time")


# -- catalog and rules ----------------------------------------------------------------------------
def test_the_catalog_carries_each_actions_schema_from_the_catalog(api):
    catalog = api.engine.ws.actions
    listed = api.client.get("/v1/actions", headers=api.auth("sales-assistant")).json()
    assert sorted(a["name"] for a in listed) == sorted(catalog.actions)
    for a in listed:
        assert a["params_schema"] == catalog.json_schema(a["name"])
    one = api.client.get("/v1/actions/approve_discount", headers=api.auth("ap-lead")).json()
    assert one["params_schema"] == catalog.json_schema("approve_discount")
    doc = api.client.get("/openapi.json").json()
    assert doc["components"]["schemas"]["ActionParams.approve_discount"] == catalog.json_schema("approve_discount")


def test_rulesets_and_their_revisions(api):
    listed = api.client.get("/v1/rulesets", headers=api.auth("sales-assistant")).json()
    names = {rs["name"] for rs in listed}
    assert "crm.discount_approval" in names
    one = api.client.get("/v1/rulesets/crm.discount_approval", headers=api.auth("sales-assistant")).json()
    rs = api.engine.ws.rulesets["crm.discount_approval"]
    assert one["revision"] == f"{rs.name}@{rs.version}" and one["rules"] == [r.id for r in rs.rules]
    d = api.decide(discount_case("bwd:SO-3002", 3)).json()
    assert d["rule_revision"] == one["revision"]
    assert_problem(api.client.get("/v1/rulesets/crm.nope", headers=api.auth("ap-lead")), 404, "ruleset_unknown")


# -- probes and metrics ---------------------------------------------------------------------------
def _sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            got = head[len(name):]
            parts = sorted(got.strip("{}").split(",")) if got else []
            if ",".join(parts) == want:
                return float(value)
    return 0.0


def test_healthz_readyz_and_metrics_move(api):
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"] == {"graph": True, "rules": True, "state_database": True}
    before = api.client.get("/metrics").text
    api.decide(discount_case("bwd:SO-3053", 3))
    api.decide(discount_case("bwd:SO-3014", 3))
    api.decide(discount_case("bwd:SO-3002", 3), params={"execute": "true"})
    api.client.post("/v1/decisions", json={"type": 1}, headers=api.auth("sales-assistant"))
    after = api.client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for labels in ({"outcome": "deny", "source": "rule"}, {"outcome": "escalate", "source": "rule"},
                   {"outcome": "execute", "source": "rule"}):
        assert _sample(text, "rulebridge_decisions_total", **labels) == _sample(
            before, "rulebridge_decisions_total", **labels) + 1
    assert _sample(text, "rulebridge_gate_rejections_total", outcome="deny", reason="guard_deny") == 1
    assert _sample(text, "rulebridge_executions_total", outcome="done") == 1
    assert _sample(text, "rulebridge_review_queue_depth") == 1
    assert _sample(text, "rulebridge_http_requests_total", method="POST", route="/v1/decisions", status="422") == 1
    assert _sample(text, "rulebridge_http_request_duration_seconds_count", method="POST",
                   route="/v1/decisions") == 4
    assert 'rulebridge_circuit_open{breaker="connector:kg"} 0.0' in text


def test_two_apps_count_apart(tmp_path):
    e = engine(None, ws=load_workspace(ROOT), state=tmp_path / "state.db", mode="off")
    a, b = TestClient(create_app(e, require_keys=False)), TestClient(create_app(e, require_keys=False))
    a.get("/healthz")
    assert _sample(b.get("/metrics").text, "rulebridge_http_requests_total", method="GET", route="/healthz",
                   status="200") == 0
    e.close()


def test_an_unknown_route_and_method_are_problems(api):
    assert_problem(api.client.get("/v2/nothing"), 404, "not_found")
    assert_problem(api.client.delete("/v1/actions"), 405, "method_not_allowed")


def test_serve_refuses_more_than_one_worker_with_a_reason():
    from typer.testing import CliRunner

    from engine.cli.main import app

    r = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert r.exit_code == 2 and "serve_workers" in r.output and "in-memory graph" in r.output
