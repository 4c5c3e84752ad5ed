"""Workers starting at once against a new state database all come up: the first creation of the
tables (review queue, identities, decisions, ledger) is not a race that one of them loses."""

from __future__ import annotations

import threading

from engine.act.decision_store import DecisionStore
from engine.act.ledger import Ledger
from engine.govern.identity import IdentityStore
from engine.govern.review import ReviewQueue


def test_concurrent_first_opens_of_the_state_database_all_succeed(sql_url):
    kinds = [ReviewQueue, IdentityStore, DecisionStore, Ledger] * 3
    barrier = threading.Barrier(len(kinds))
    errors: list[str] = []
    opened = []

    def open_one(cls):
        try:
            barrier.wait()
            opened.append(cls(sql_url))
        except Exception as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_one, args=(k,)) for k in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = next(o for o in opened if isinstance(o, IdentityStore))
    assert ids.authenticate(ids.issue("ap-assistant").token) == "ap-assistant"  # the tables work
    for o in opened:
        o.db.dispose()
