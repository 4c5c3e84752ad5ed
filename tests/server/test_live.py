"""A REAL `rulebridge serve` (uvicorn) on a free port: driven with httpx, then checked by
schemathesis against its own OpenAPI document (0 server errors, every response conforming), then
stopped with SIGTERM (a graceful shutdown)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.brightwater import AS_OF, ROOT, discount_case

pytestmark = pytest.mark.slow
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rulebridge serve` on the example workspace, keys required, its state in a temporary database."""
    from engine.govern.identity import IdentityStore

    state = f"sqlite:///{tmp_path_factory.mktemp('serve')}/state.db"
    ids = IdentityStore(state)
    keys = {who: ids.issue(who, kind).token for who, kind in
            (("sales-assistant", "agent"), ("ops-console", "agent"), ("sales-ops-lead", "reviewer"),
             ("controller", "reviewer"))}
    ids.close()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    port = free_port()
    env = {**os.environ, "RULEBRIDGE_STATE_URL": state, "RULEBRIDGE_LLM_MODEL": "", "RULEBRIDGE_LLM_MODE": "off"}
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "serve", "-w", str(ROOT), "--port",
                                 str(port), "--log-level", "info"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    yield base, keys, proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_decide_execute_and_review_over_http(server):
    base, keys, _, _ = server
    agent = {"Authorization": f"Bearer {keys['sales-assistant']}"}
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/v1/decisions", json=discount_case("bwd:SO-3002", 3)).status_code == 401
        d = c.post("/v1/decisions", json=discount_case("bwd:SO-3002", 3), headers=agent).json()
        assert d["outcome"] == "execute" and d["source"] == "rule"
        run = c.post(f"/v1/decisions/{d['id']}/execute", headers={**agent, "Idempotency-Key": "live-1"})
        assert run.status_code == 200 and run.json()["outcome"] == "done"
        again = c.post(f"/v1/decisions/{d['id']}/execute", headers={**agent, "Idempotency-Key": "live-1"})
        assert again.json() == run.json()
        esc = c.post("/v1/decisions", json=discount_case("bwd:SO-3014", 3), headers=agent).json()
        lead = {"Authorization": f"Bearer {keys['sales-ops-lead']}"}
        item = c.get(f"/v1/reviews/{esc['review_id']}", headers=lead).json()
        ok = c.post(f"/v1/reviews/{item['id']}/approve", json={"proposal_hash": item["proposal_hash"]}, headers=lead)
        assert ok.status_code == 200 and ok.json()["status"] == "approved"
        assert c.get("/v1/audit/verify", headers=lead).json()["ok"] is True
        r = c.post("/v1/decisions", content=b"x" * (2 * 1024 * 1024), headers={**agent, "content-type":
                                                                                "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert "rulebridge_decisions_total" in c.get("/metrics").text


@pytest.mark.parametrize("who", ["ops-console", "controller"])  # an agent's key, then a reviewer's
def test_schemathesis_finds_no_server_error_and_every_response_conforms(server, tmp_path, who):
    base, keys, _, _ = server
    exe = Path(sys.executable).parent / "schemathesis"
    cmd = [str(exe) if exe.exists() else "schemathesis", "run", f"{base}/openapi.json", "--checks", CHECKS,
           "--max-examples", "20", "--phases", "examples,coverage,fuzzing", "--seed", "12",
           "--workers", "1", "--request-timeout", "20", "--suppress-health-check", "all",
           "-H", f"Authorization: Bearer {keys[who]}", "--report-dir", str(tmp_path)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout.lower(), done.stdout[-3000:]


def test_sigterm_shuts_down_gracefully(server):
    base, keys, proc, log = server
    agent = {"Authorization": f"Bearer {keys['sales-assistant']}"}
    with httpx.Client(base_url=base, timeout=30) as c:
        case = {**discount_case("bwd:SO-3053", 3), "as_of": AS_OF}
        assert c.post("/v1/decisions", json=case, headers=agent).json()["outcome"] == "deny"
    proc.send_signal(signal.SIGTERM)
    # uvicorn finishes the requests in flight, runs the app's shutdown (the engine is closed), then
    # ends by the signal it was sent (exit status -15), as its recent versions do
    assert proc.wait(timeout=40) in (0, -signal.SIGTERM)
    text = log.read_text(errors="replace")
    assert "Application shutdown complete" in text and "Traceback" not in text, text[-3000:]
