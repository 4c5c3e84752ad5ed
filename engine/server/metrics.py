"""Prometheus metrics of one app: a registry of its own (never the process-global one), so two
apps in one process — tests — count apart.

Counted as requests end: requests and their latency by route, decisions by outcome and source,
LLM calls and failures, gate rejections, executions that failed at a connector. Read at scrape
time: the review queue's depth and the circuit breakers that are open.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Live(Collector):
    """Gauges read from the engine when scraped."""

    def __init__(self, engine: Any):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("rulebridge_review_queue_depth", "Review items waiting for a person.")
        try:
            depth.add_metric([], len(self.engine.review_list("pending")))
        except Exception:  # noqa: BLE001  (a scrape reports what it can; /readyz reports the database)
            depth.add_metric([], float("nan"))
        yield depth
        breakers = GaugeMetricFamily("rulebridge_circuit_open", "1 when the circuit breaker of a connector or "
                                     "of the model is open.", labels=["breaker"])
        executor = getattr(self.engine, "_executor", None)  # not opened yet: no connector has run
        for name, conn in sorted((executor.connectors if executor is not None else {}).items()):
            state = getattr(conn, "circuit", None)
            if state is not None:
                breakers.add_metric([f"connector:{name}"], 1.0 if state == "open" else 0.0)
        fallback = getattr(self.engine, "fallback", None)
        if fallback is not None:
            breakers.add_metric(["llm"], 1.0 if fallback.breaker.current_state == "open" else 0.0)
        yield breakers


class Metrics:
    """The app's counters and histograms, and the Prometheus text of them."""

    def __init__(self, engine: Any):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("rulebridge_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("rulebridge_http_request_duration_seconds", "HTTP request latency by route.",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("rulebridge_decisions", "Decisions by outcome and source.",
                                 ["outcome", "source"], registry=r)
        self.decide_latency = Histogram("rulebridge_decision_duration_seconds",
                                        "Time to decide a case (and execute it, when asked).",
                                        ["execute"], buckets=_LATENCY_BUCKETS, registry=r)
        self.llm_calls = Counter("rulebridge_llm_calls", "Model calls made for decisions.", registry=r)
        self.llm_failures = Counter("rulebridge_llm_failures", "Fallback rounds that ended without an answer, "
                                    "by failure.", ["failure"], registry=r)
        self.gate_rejections = Counter("rulebridge_gate_rejections", "Proposals the verification gate did not "
                                       "accept, by verdict and reason.", ["outcome", "reason"], registry=r)
        self.executions = Counter("rulebridge_executions", "Executions by outcome.", ["outcome"], registry=r)
        self.connector_failures = Counter("rulebridge_connector_failures", "Executions that failed at a "
                                          "connector, by error code.", ["code"], registry=r)
        r.register(_Live(engine))

    def decided(self, d: dict[str, Any]) -> None:
        """Count one decision (its JSON)."""
        self.decisions.labels(str(d.get("outcome")), str(d.get("source"))).inc()
        llm = d.get("llm")
        if isinstance(llm, dict):
            self.llm_calls.inc(int(llm.get("calls") or 0))
            answer = llm.get("answer")
            if isinstance(answer, dict) and answer.get("kind") == "failure":
                self.llm_failures.labels(str(answer.get("failure"))).inc()
        if d.get("outcome") in ("deny", "escalate") and d.get("checks"):
            self.gate_rejections.labels(str(d["outcome"]), str(d.get("reason"))).inc()
        if isinstance(d.get("execution"), dict):
            self.executed(d["execution"])

    def executed(self, e: dict[str, Any]) -> None:
        """Count one execution (its JSON)."""
        outcome = str(e.get("outcome"))
        self.executions.labels(outcome).inc()
        if outcome in ("failed", "needs_review", "compensated"):
            self.connector_failures.labels(str(e.get("error_code") or "unknown")).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
