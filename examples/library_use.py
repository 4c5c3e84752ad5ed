"""Use the engine from Python: open the workspace once, decide and explain cases."""

from pathlib import Path

from engine import Engine

ROOT = Path(__file__).resolve().parent.parent

engine = Engine.open(ROOT)
case = {"type": "invoice.received", "payload": {"invoice": "bwd:INV-10004"}, "as_of": "2026-11-01"}
decision = engine.decide(case)
print(decision.outcome, decision.reason, decision.deciding, [p.to_json() for p in decision.proposals])
for trace in engine.explain(case).rules:
    print("matched" if trace.matched else f"not matched: {trace.failed.text if trace.failed else ''}", trace.id)
