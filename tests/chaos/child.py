"""The crash suite's child process: run one seed's decisions, and die by SIGKILL where told.

    RULEBRIDGE_CHAOS_SEED=7 RULEBRIDGE_CHAOS_DIR=/tmp/run RULEBRIDGE_CHAOS_LEDGER_URL=sqlite:///... \
    RULEBRIDGE_CHAOS_KILL=after_commit:2 python tests/chaos/child.py

`RULEBRIDGE_CHAOS_KILL=point:n` kills the process (SIGKILL, no clean-up of any kind) the n-th
time it reaches `point` (see `scenario.KILL_POINTS`); the parent may also kill it after a random
delay. With `RULEBRIDGE_CHAOS_AUDIT_URL` every state change is appended to the audit log
(`engine.audit.log.AuditLog`); with `RULEBRIDGE_CHAOS_ONE_DB=1` as well, the ledger and the log are one
database and the executor writes through the log's units of work (a state change and its event in
one transaction, committed before each connector call). Prints `ready` once imported, `finished` at
the end.

Kept light on purpose (a run costs one interpreter start): it imports the ledger, the executor
and the test systems of record, not the `engine` facade (the whole pipeline, rules, models).
"""

from __future__ import annotations

import os
import signal
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# Skip engine/__init__.py (it imports the facade: the pipeline, the rule compiler, pydantic): the
# subpackages this process needs are found through the package path alone.
_pkg = types.ModuleType("engine")
_pkg.__path__ = [str(ROOT / "engine")]
sys.modules.setdefault("engine", _pkg)

from engine.act.execute import Executor  # noqa: E402
from engine.act.ledger import Ledger  # noqa: E402
from tests.chaos.scenario import AGENT, decisions, records  # noqa: E402

point, _, nth = os.environ.get("RULEBRIDGE_CHAOS_KILL", "none:0").partition(":")
remaining = int(nth or 0)
compensating = False  # whether the execution in flight is a compensation


def reach(here: str) -> None:
    """Die here if this is the n-th time the kill point is reached."""
    global remaining  # noqa: PLW0603 - one child process, one kill point: module state is the point
    if here == point:
        remaining -= 1
        if remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)


class KillingLedger(Ledger):
    """The real ledger, with the kill points around its writes."""

    def claim(self, key, **kw):  # type: ignore[no-untyped-def,override]
        global compensating  # noqa: PLW0603 - read by `reach` in the same process
        compensating = kw.get("compensates") is not None
        if not compensating:
            reach("before_claim")
        c = super().claim(key, **kw)
        if c.won:
            reach("compensation_claimed" if compensating else "after_claim")
        return c

    def finish(self, key, **kw):  # type: ignore[no-untyped-def,override]
        ok = super().finish(key, **kw)
        if ok and not compensating:
            reach({"done": "after_done", "failed": "after_fail"}.get(kw["status"], ""))
        return ok

    def move(self, key, **kw):  # type: ignore[no-untyped-def,override]
        ok = super().move(key, **kw)
        if ok and kw["to"] == "compensating":
            reach("compensation_marked")
        return ok


def main() -> None:
    seed = int(os.environ["RULEBRIDGE_CHAOS_SEED"])
    folder = Path(os.environ["RULEBRIDGE_CHAOS_DIR"])
    audit: Callable[[str, str, dict[str, Any]], None] | None = None
    log: Any = None
    if os.environ.get("RULEBRIDGE_CHAOS_AUDIT_URL"):
        from engine.audit.log import AuditLog  # the parent sets the URL only when the module exists

        log = AuditLog(os.environ["RULEBRIDGE_CHAOS_AUDIT_URL"])

        def append(decision_id: str, step: str, data: dict[str, Any]) -> None:
            log.append(decision_id, step, data.get("agent", AGENT), data)

        audit = append
    units = None
    if os.environ.get("RULEBRIDGE_CHAOS_ONE_DB") == "1":  # ledger and audit log in one database: units of work
        units = log.database
    ledger = KillingLedger(units or os.environ["RULEBRIDGE_CHAOS_LEDGER_URL"])
    recs = records(folder, after_commit=lambda connector, action, key: reach(
        "compensation_committed" if compensating else "blind_after_commit" if connector == "crm" else "after_commit"))
    executor = Executor(ledger, recs, audit=audit, units=units)
    print("ready", flush=True)
    for p in decisions(seed):
        executor.run(p.decision_id, AGENT, p.steps)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
