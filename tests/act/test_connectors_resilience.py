"""The resilience wrapper (`engine/act/connectors/resilience.py`) around the graph connector.

The fault tests over a real server and a locked database are in test_connectors_http.py and
test_connectors_sql.py; here: what counts for the breaker, what is retried, and that an
execution that took effect is never reported as failed because the breaker tripped meanwhile.
"""

from __future__ import annotations

import pytest

from engine.act.connectors.base import PermanentError, TransientError
from engine.act.connectors.kg import KgConnector
from engine.act.connectors.resilience import CIRCUIT_OPEN, Resilient
from engine.kg.store import open_store
from tests.brightwater import workspace

BW = "https://brightwater.example/ontology#"
BWD = "https://brightwater.example/id/"
PARAMS = {"invoice": BWD + "INV-1", "approver": BWD + "EMP-1"}


@pytest.fixture
def kg(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "g.ttl").write_text(
        "@prefix bw: <https://brightwater.example/ontology#> . @prefix bwd: <https://brightwater.example/id/> .\n"
        'bwd:INV-1 a bw:Invoice ; bw:status "received" .\n', encoding="utf-8")
    ws = workspace()
    return KgConnector("kg", open_store(tmp_path / "data"), ws.actions, prefixes=ws.prefixes)


class Interfering:
    """The graph connector, with something happening to the breaker while a call runs."""

    def __init__(self, inner: KgConnector, during=None, fail_first: int = 0, error: Exception | None = None):
        self.inner, self.name, self.during, self.fail_first, self.error = inner, inner.name, during, fail_first, error
        self.calls = 0

    def execute(self, action, params, *, key):
        self.calls += 1
        if self.during:
            self.during()
        if self.calls <= self.fail_first:
            raise self.error or TransientError("the graph store is busy", code="connector_io")
        return self.inner.execute(action, params, key=key)

    def status(self, key):
        self.calls += 1
        if self.calls <= self.fail_first:
            raise TransientError("busy", code="connector_io")
        return self.inner.status(key)


def test_a_success_is_reported_even_if_the_breaker_opened_meanwhile(kg):
    wrapped: Resilient
    # another thread tripped it mid-call (a lambda: `wrapped` is bound only below)
    conn = Interfering(kg, during=lambda: wrapped.breaker.open())  # noqa: PLW0108
    wrapped = Resilient(conn, retries=0)
    result = wrapped.execute("approve_invoice", PARAMS, key="k1")
    assert result["duplicate"] is False and kg.status("k1") == "done"
    assert kg.store.objects(BWD + "INV-1", BW + "status") == ["approved"]


def test_transient_faults_are_retried_under_the_same_key(kg):
    conn = Interfering(kg, fail_first=2)
    sleeps: list[float] = []
    wrapped = Resilient(conn, retries=3, backoff=0.5, max_backoff=1, sleep=sleeps.append)
    wrapped.execute("approve_invoice", PARAMS, key="k1")
    assert conn.calls == 3 and len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and sleeps[1] <= 1.0 + 0.5  # exponential, capped, with jitter
    assert kg.status("k1") == "done"


def test_a_permanent_fault_is_not_retried_and_does_not_count(kg):
    wrapped = Resilient(kg, retries=3, breaker_failures=1, sleep=lambda s: pytest.fail("no back-off expected"))
    wrapped.execute("approve_invoice", PARAMS, key="k1")
    with pytest.raises(PermanentError) as info:
        wrapped.execute("approve_invoice", PARAMS, key="k2")  # approved already: no effect
    assert info.value.code == "connector_no_effect"
    assert wrapped.attempts == 2 and wrapped.circuit == "closed"


def test_an_unexpected_exception_is_not_retried_and_does_not_open_the_circuit(kg):
    conn = Interfering(kg, fail_first=1, error=KeyError("a bug"))
    wrapped = Resilient(conn, retries=3, breaker_failures=1, sleep=lambda s: None)
    with pytest.raises(KeyError, match="a bug"):
        wrapped.execute("approve_invoice", PARAMS, key="k1")
    assert conn.calls == 1 and wrapped.circuit == "closed"
    assert kg.status("k1") == "not_done"


def test_status_is_retried_and_guarded_like_an_execution(kg):
    conn = Interfering(kg, fail_first=1)
    wrapped = Resilient(conn, retries=1, breaker_failures=5, sleep=lambda s: None)
    assert wrapped.status("k1") == "not_done" and conn.calls == 2
    wrapped.breaker.open()
    with pytest.raises(TransientError) as info:
        wrapped.status("k1")
    assert info.value.code == CIRCUIT_OPEN and conn.calls == 2
