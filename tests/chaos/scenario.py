"""The crash suite's world: decisions with chains, their systems of record, and the checks.

Shared by the child process (`child.py`, which runs the chains and gets killed) and the parent
(`test_crash.py`, which recovers and checks). Everything is derived from a seed, so a failing run
is reproduced by its seed alone.

Two systems of record, both real SQLite files (`tests/act/records.py`): `erp` can tell whether a
key took effect (exact `status`), `crm` cannot (`status` is always unknown). Four kinds of
decision: `ok` (2–3 steps, expected done), `fail` (a step fails permanently at index 1 or 2:
expected failed_compensated), `no_inverse` (a done step that cannot be undone before the failing
one: expected failed_needs_review), `blind` (a step on `crm`: done, or needs_review when a crash
left that step's effect unknowable).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.act.execute import Step
from engine.act.ledger import CHAIN_FINAL, Ledger, idempotency_key
from tests.act.records import BlindRecord, SqliteRecord

AGENT = "svc-chaos"

# Where the child may be killed (see child.py); "timed" is a SIGKILL from the parent after a random delay.
KILL_POINTS = ("before_claim", "after_claim", "after_commit", "blind_after_commit", "after_done", "after_fail",
               "compensation_marked", "compensation_claimed", "compensation_committed", "timed")


@dataclass(frozen=True)
class Planned:
    """One decision of a run: its chain and the outcomes allowed at the end."""

    decision_id: str
    kind: str
    steps: list[Step]
    allowed: frozenset[str]


def debit(account: str, amount: int, connector: str = "erp", **extra: object) -> Step:
    params = {"account": account, "amount": amount, **extra}
    return Step("debit", params, connector, Step("credit", {"account": account, "amount": amount}, connector))


def notify(to: str) -> Step:
    return Step("notify", {"to": to}, "erp")  # cannot be undone: no inverse


def decisions(seed: int, n: int = 4) -> list[Planned]:
    """The decisions of run `seed`: at least one that succeeds, one that must be compensated, one on `crm`."""
    rng = random.Random(seed)
    kinds = ["ok", "fail", "blind"] + [rng.choice(("ok", "fail", "no_inverse", "blind")) for _ in range(n - 3)]
    rng.shuffle(kinds)
    out = []
    for i, kind in enumerate(kinds):
        acct = lambda: f"A{rng.randint(1, 3)}"  # noqa: E731 - a few shared accounts: chains touch the same rows
        amt = lambda: rng.randint(1, 100)  # noqa: E731
        if kind == "ok":
            steps = [debit(acct(), amt()), debit(acct(), amt())] + ([notify("ops")] if rng.random() < 0.5 else [])
            allowed = {"done"}
        elif kind == "fail":
            steps = [debit(acct(), amt())] + ([debit(acct(), amt())] if rng.random() < 0.5 else [])
            steps.append(debit(acct(), amt(), fail="permanent"))
            allowed = {"failed_compensated"}
        elif kind == "no_inverse":
            steps = [notify("customer"), debit(acct(), amt()), debit(acct(), amt(), fail="permanent")]
            allowed = {"failed_needs_review"}
        else:
            steps = [debit(acct(), amt()), debit(acct(), amt(), "crm")]
            steps += [notify("ops")] if rng.random() < 0.5 else []
            allowed = {"done", "needs_review"}
        out.append(Planned(f"D-{seed}-{i}", kind, steps, frozenset(allowed)))
    return out


def records(folder: Path, *, after_commit: Callable[[str, str, str], None] | None = None) -> dict[str, SqliteRecord]:
    """The run's systems of record, by connector name; `after_commit(connector, action, key)` is the child's hook."""
    def hook(name: str) -> Callable[[str, str], None] | None:
        return (lambda action, key: after_commit(name, action, key)) if after_commit else None
    return {"erp": SqliteRecord(folder / "erp.db", name="erp", after_commit=hook("erp")),
            "crm": BlindRecord(folder / "crm.db", name="crm", after_commit=hook("crm"))}


@dataclass
class Findings:
    """What the checks found in one run (all but `needs_review` must stay empty)."""

    lost: list[str] = field(default_factory=list)  # decisions not finished as allowed
    doubled: list[str] = field(default_factory=list)  # keys that took effect more than once
    inconsistent: list[str] = field(default_factory=list)  # ledger and system of record disagree
    needs_review: int = 0  # decisions left to a person (allowed for `no_inverse` and `blind`)


def check(ledger: Ledger, recs: dict[str, SqliteRecord], planned: list[Planned]) -> Findings:
    """Compare the ledger, the chains and the systems of record after recovery and re-runs."""
    f = Findings()
    rows = {r.key: r for r in ledger.executions()}
    effects = {name: Counter(k for k, _, _ in rec.journal()) for name, rec in recs.items()}  # key → times
    for name, times in effects.items():
        f.doubled += [f"{name}:{k}" for k, n in times.items() if n > 1]
    expected_balance: Counter[str] = Counter()
    for p in planned:
        chain = ledger.chain(p.decision_id)
        outcome = chain.status if chain else "never started"
        if outcome not in p.allowed:
            f.lost.append(f"{p.decision_id} ({p.kind}): {outcome}")
            continue
        f.needs_review += outcome in ("needs_review", "failed_needs_review")
        for i, step in enumerate(p.steps):
            key = idempotency_key(p.decision_id, i, step.action, step.params)
            row, effect = rows.get(key), effects[step.connector][key]
            status = row.status if row else None
            comp_key = (idempotency_key(p.decision_id, i, step.inverse.action, step.inverse.params, compensation=True)
                        if step.inverse else None)
            comp = rows.get(comp_key) if comp_key else None
            comp_effect = effects[step.connector][comp_key] if comp_key else 0
            bad = None
            if status in ("started", "compensating") or (comp and comp.status == "started"):
                bad = f"left {status}"
            elif ((status in ("done", "compensated") and effect != 1)
                  or (status in (None, "failed") and effect != 0)):
                bad = f"{status} but took effect {effect} times"
            elif status == "needs_review" and (step.connector != "crm" or effect > 1):
                bad = f"needs_review on {step.connector} with {effect} effects"
            elif (status == "compensated") != (comp is not None and comp.status == "done" and comp_effect == 1):
                bad = f"{status} with compensation {comp.status if comp else None} ×{comp_effect}"
            elif comp is None and comp_effect:
                bad = f"compensated {comp_effect} times without a ledger row"
            elif outcome == "done" and status != "done":
                bad = f"chain done but step {status}"
            elif outcome == "failed_compensated" and status not in ("compensated", "failed", None):
                bad = f"chain failed_compensated but step {status}"
            if bad:
                f.inconsistent.append(f"{p.decision_id} step {i} `{step.action}`: {bad}")
            if step.action == "debit" and status == "done":
                expected_balance[step.params["account"]] -= step.params["amount"]
            elif step.action == "debit" and status == "needs_review":
                expected_balance[step.params["account"]] -= step.params["amount"] * effect
    for acct in {f"A{i}" for i in range(1, 4)}:
        got = sum(rec.balance(acct) for rec in recs.values())
        if got != expected_balance[acct]:
            f.inconsistent.append(f"balance of {acct}: {got} in the systems of record, "
                                  f"{expected_balance[acct]} by the ledger")
    for r in rows.values():
        if r.status == "started":
            f.inconsistent.append(f"execution {r.key[:12]} still started")
    for c in ledger.chains():
        if c.status not in CHAIN_FINAL:
            f.inconsistent.append(f"chain of {c.decision_id} left {c.status}")
    return f
