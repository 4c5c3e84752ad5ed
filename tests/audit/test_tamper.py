"""Tamper trials: random modifications, deletions, insertions and reorderings applied directly to
the database rows of a real log, each followed by `verify`. Detection must be 100%.

What is asserted for each trial is `first_broken_seq` = the chain POSITION where the stored log
first stops being a valid chain (see `VerifyReport`), computed from the tamper:

- an edited field (data, its bytes, ts, agent, step, decision_id, id, schema, prev, hash, sig)
  of event k → k (`hash_mismatch`; `bad_signature` for sig)
- an event's seq moved past the end → k (`seq_gap`); moved below 1 → 1 (`seq_out_of_order`)
- event k deleted, or k..k+m-1 → k (`seq_gap`: the position is empty, its successor sits there);
  deleted and the later seqs renumbered to close the gap → k (`hash_mismatch`)
- the last m events deleted → n-m+1, the first missing position (`head_mismatch`)
- junk inserted at k (later events shifted) → k (`hash_mismatch`); a forged event with a valid
  hash and link inserted at k → k+1 without a key (the shifted event's seq no longer matches its
  hash), k with a key (`bad_signature`); forged after the tail → n+1 (`head_mismatch`)
- two events swapped, a range rotated, or the contents of two events swapped → the lower one
- event k edited and its own hash recomputed → k+1 (`prev_mismatch`), or n (`head_mismatch`)
  when k is last; with a key → k (`bad_signature`)
- a whole suffix rewritten with valid hashes and head (only caught with a key) → k (`bad_signature`)
- the head row edited or deleted → where its seq and the stored tail part (`head_mismatch`)
- the last m events deleted and the head rewritten to the new last event (only caught with a key)
  → n-m+1 (`head_bad_signature`); the head's signature alone edited → n+1 (`head_bad_signature`)

Most trials run on SQLite; a smaller share on PostgreSQL. The counts per kind are printed (run
with `-s`) and recorded as the junit property `tamper_summary`.
"""

from __future__ import annotations

import collections
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from engine.audit import AuditLog
from engine.audit.chain import GENESIS, event_hash, hashed_text, sign, sign_head
from engine.audit.log import audit_events, audit_head
from tests.audit.helpers import KEY, clock, decision, ids

pytestmark = pytest.mark.slow

EV = audit_events.c
TRIALS = {"sqlite": 1200, "postgresql": 240}
DECISIONS = 10  # x 4 events each


@dataclass
class Expect:
    pos: int
    reasons: frozenset[str]


def _hex() -> str:
    return secrets.token_hex(32)


class Lab:
    """A real log of 40 events and its pristine rows, restored before every trial."""

    def __init__(self, url: str, key: bytes | None):
        self.key = key
        self.log = AuditLog(url, hmac_key=key, now=clock(), new_id=ids())
        with self.log.db.begin() as c:  # a fresh log, also when a previous lab used these tables
            c.execute(delete(audit_events))
            c.execute(update(audit_head).values(seq=0, hash=GENESIS, count=0))
        for i in range(DECISIONS):
            self.log.append_many(decision(i))
        with self.log.db.connect() as c:
            self.rows = [dict(r._mapping) for r in c.execute(select(audit_events).order_by(EV.seq))]
            self.head = dict(c.execute(select(audit_head)).one()._mapping)  # signed when the log is
        self.n = len(self.rows)
        assert self.log.verify().ok

    def row(self, seq: int) -> dict[str, Any]:
        return self.rows[seq - 1]

    def restore(self, c: Connection) -> None:
        c.execute(delete(audit_events))
        c.execute(insert(audit_events), self.rows)
        c.execute(delete(audit_head))
        c.execute(insert(audit_head).values(**self.head))

    def forged(self, seq: int, prev: str, data: dict[str, Any], *, base: dict[str, Any] | None = None) -> dict:
        """A row with a valid hash and link, as someone who knows the format (not the key) makes it."""
        base = base or self.row(min(seq, self.n))
        row = {**base, "seq": seq, "prev": prev, "data": json.dumps(data, sort_keys=True, separators=(",", ":"))}
        row["hash"] = event_hash(hashed_text(seq=seq, id=row["id"], schema=row["schema"], ts=row["ts"],
                                             decision_id=row["decision_id"], step=row["step"], agent=row["agent"],
                                             data_text=row["data"], prev=prev))
        row["sig"] = sign(b"the-attackers-own-key-123", row["hash"]) if self.key else None
        return row


# -- tampering, straight on the rows ----------------------------------------------------------------
def _set(c: Connection, at: int, /, **values: Any) -> None:
    assert c.execute(update(audit_events).where(EV.seq == at).values(**values)).rowcount == 1


_AWAY = 10**6  # rows in flight while shifting live below -_AWAY, clear of a row parked at -1


def _shift(c: Connection, start: int, delta: int, end: int | None = None) -> None:
    """seq += delta for start <= seq (<= end), in two steps so the primary key never collides."""
    where = [EV.seq >= start] + ([EV.seq <= end] if end is not None else [])
    c.execute(update(audit_events).where(*where).values(seq=-(EV.seq + delta) - _AWAY))
    c.execute(update(audit_events).where(EV.seq <= -_AWAY).values(seq=-(EV.seq + _AWAY)))


def _hash_fail(k: int) -> Expect:
    return Expect(k, frozenset({"hash_mismatch"}))


def _edit(field: str, value: Callable[[Lab, dict, random.Random], Any]) -> Callable[..., Expect]:
    def tamper(lab: Lab, c: Connection, rng: random.Random) -> Expect:
        k = rng.randint(1, lab.n)
        new = value(lab, lab.row(k), rng)
        assert new != lab.row(k)[field]
        _set(c, k, **{field: new})
        return _hash_fail(k)
    return tamper


def _edit_data(lab: Lab, row: dict, rng: random.Random) -> str:
    d = json.loads(row["data"])
    key = rng.choice(sorted(d))
    d[key] = None if d[key] is not None and rng.random() < 0.5 else {"tampered": rng.randint(0, 10**6)}
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _edit_ts(lab: Lab, row: dict, rng: random.Random) -> str:
    micro = int(row["ts"][20:26]) + rng.randint(1, 999)
    return f"{row['ts'][:20]}{micro % 10**6:06d}{row['ts'][26:]}"


def t_seq_up(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n)
    _set(c, k, seq=lab.n + rng.randint(1, 50))
    return Expect(k, frozenset({"seq_gap"}))


def t_seq_down(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    _set(c, rng.randint(1, lab.n), seq=rng.randint(-50, 0))
    return Expect(1, frozenset({"seq_out_of_order"}))


def t_delete(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n - 1)
    c.execute(delete(audit_events).where(EV.seq == k))
    return Expect(k, frozenset({"seq_gap"}))


def t_delete_range(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n - 2)
    m = rng.randint(2, lab.n - k)
    c.execute(delete(audit_events).where(EV.seq >= k, EV.seq < k + m))
    return Expect(k, frozenset({"seq_gap"}))


def t_truncate_tail(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    m = rng.randint(1, 8)
    c.execute(delete(audit_events).where(EV.seq > lab.n - m))
    return Expect(lab.n - m + 1, frozenset({"head_mismatch"}))


def t_delete_renumber(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n - 1)
    c.execute(delete(audit_events).where(EV.seq == k))
    _shift(c, k + 1, -1)
    return _hash_fail(k)


def t_insert_junk(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n + 1)
    _shift(c, k, +1)
    prev = lab.row(k - 1)["hash"] if k > 1 else GENESIS
    junk = {**lab.row(min(k, lab.n)), "seq": k, "id": "E-junk", "prev": prev, "hash": _hex(),
            "data": '{"note":"inserted"}'}
    c.execute(insert(audit_events).values(**junk))
    return _hash_fail(k)


def t_insert_forged(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n + 1)
    _shift(c, k, +1)
    prev = lab.row(k - 1)["hash"] if k > 1 else GENESIS
    c.execute(insert(audit_events).values(**lab.forged(k, prev, {"outcome": "execute", "forged": True})))
    if lab.key:
        return Expect(k, frozenset({"bad_signature"}))
    if k == lab.n + 1:
        return Expect(k, frozenset({"head_mismatch"}))
    return _hash_fail(k + 1)


def _swap_seq(c: Connection, i: int, j: int) -> None:
    _set(c, i, seq=-1)
    _set(c, j, seq=i)
    _set(c, -1, seq=j)


def t_swap(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    i, j = sorted(rng.sample(range(1, lab.n + 1), 2))
    _swap_seq(c, i, j)
    return _hash_fail(i)


def t_swap_adjacent(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    i = rng.randint(1, lab.n - 1)
    _swap_seq(c, i, i + 1)
    return _hash_fail(i)


def t_rotate(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    i = rng.randint(1, lab.n - 2)
    j = rng.randint(i + 2, lab.n)
    _set(c, j, seq=-1)  # park j, move i..j-1 up one, put j at i
    _shift(c, i, +1, end=j - 1)
    _set(c, -1, seq=i)
    return _hash_fail(i)


def t_swap_content(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    i, j = sorted(rng.sample(range(1, lab.n + 1), 2))
    a, b = lab.row(i), lab.row(j)
    _set(c, i, **{k: v for k, v in b.items() if k != "seq"})
    _set(c, j, **{k: v for k, v in a.items() if k != "seq"})
    return _hash_fail(i)


def t_rehash_one(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    k = rng.randint(1, lab.n)
    row = lab.row(k)
    forged = lab.forged(k, row["prev"], {**json.loads(row["data"]), "outcome": "deny"}, base=row)
    _set(c, k, data=forged["data"], hash=forged["hash"])  # the signature stays: the key is not known
    if lab.key:
        return Expect(k, frozenset({"bad_signature"}))
    if k == lab.n:
        return Expect(k, frozenset({"head_mismatch"}))
    return Expect(k + 1, frozenset({"prev_mismatch"}))


def t_rewrite_suffix(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    """Edit event k and recompute every later hash and the head: only the key can tell."""
    assert lab.key is not None
    k = rng.randint(1, lab.n)
    prev = lab.row(k)["prev"]
    for seq in range(k, lab.n + 1):
        row = lab.row(seq)
        data = json.loads(row["data"])
        if seq == k:
            data["amount_paid"] = 999_999
        f = lab.forged(seq, prev, data, base=row)
        _set(c, seq, data=f["data"], hash=f["hash"], prev=prev,
             **({"sig": f["sig"]} if rng.random() < 0.5 else {}))  # re-signed with the wrong key, or stale
        prev = f["hash"]
    c.execute(update(audit_head).values(hash=prev))
    return Expect(k, frozenset({"bad_signature"}))


def t_sig(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    assert lab.key is not None
    k = rng.randint(1, lab.n)
    _set(c, k, sig=rng.choice([None, "", _hex(), lab.row(k)["sig"][:-1] + "0" if lab.row(k)["sig"][-1] != "0"
                                   else lab.row(k)["sig"][:-1] + "1"]))
    return Expect(k, frozenset({"bad_signature"}))


def t_head_seq(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    new = rng.choice([lab.n + rng.randint(1, 5), rng.randint(0, lab.n - 1)])
    c.execute(update(audit_head).values(seq=new))
    return Expect(min(new, lab.n) + 1, frozenset({"head_mismatch"}))


def t_head_hash(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    c.execute(update(audit_head).values(hash=rng.choice([_hex(), lab.row(lab.n - 1)["hash"], GENESIS])))
    return Expect(lab.n, frozenset({"head_mismatch"}))


def t_head_count(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    c.execute(update(audit_head).values(count=lab.n + rng.choice([-3, -1, 1, 7])))
    return Expect(lab.n, frozenset({"head_mismatch"}))


def t_truncate_and_rewrite_head(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    """Cut the last m events and make the head agree with the new last one: only the key can tell."""
    assert lab.key is not None
    m = rng.randint(1, 8)
    last = lab.row(lab.n - m)
    c.execute(delete(audit_events).where(EV.seq > lab.n - m))
    sig = rng.choice([None, lab.head["sig"], last["sig"],  # none, the old head's, an event's
                      sign_head(b"the-attackers-own-key-123", lab.n - m, last["hash"], lab.n - m)])
    c.execute(update(audit_head).values(seq=lab.n - m, hash=last["hash"], count=lab.n - m, sig=sig))
    return Expect(lab.n - m + 1, frozenset({"head_bad_signature"}))


def t_head_sig(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    assert lab.key is not None
    c.execute(update(audit_head).values(sig=rng.choice([None, "", _hex(), lab.row(lab.n)["sig"]])))
    return Expect(lab.n + 1, frozenset({"head_bad_signature"}))


def t_head_delete(lab: Lab, c: Connection, rng: random.Random) -> Expect:
    c.execute(delete(audit_head))
    return Expect(lab.n + 1, frozenset({"head_mismatch"}))


KINDS: dict[str, tuple[Callable[..., Expect], str]] = {  # name → (tamper, which logs: any | keyed)
    "edit_data": (_edit("data", _edit_data), "any"),
    "edit_data_bytes": (_edit("data", lambda lab, r, rng: r["data"].replace(":", ": ", 1)), "any"),
    "edit_ts": (_edit("ts", _edit_ts), "any"),
    "edit_agent": (_edit("agent", lambda lab, r, rng: rng.choice(["mallory", r["agent"] + " "])), "any"),
    "edit_step": (_edit("step", lambda lab, r, rng: "decided" if r["step"] != "decided" else "received"), "any"),
    "edit_decision_id": (_edit("decision_id", lambda lab, r, rng: "D-99999"), "any"),
    "edit_id": (_edit("id", lambda lab, r, rng: "E-" + secrets.token_hex(4)), "any"),
    "edit_schema": (_edit("schema", lambda lab, r, rng: rng.choice([0, 2])), "any"),
    "edit_prev": (_edit("prev", lambda lab, r, rng: _hex()), "any"),
    "edit_hash": (_edit("hash", lambda lab, r, rng: _hex()), "any"),
    "seq_moved_past_end": (t_seq_up, "any"),
    "seq_moved_below_1": (t_seq_down, "any"),
    "delete": (t_delete, "any"),
    "delete_range": (t_delete_range, "any"),
    "truncate_tail": (t_truncate_tail, "any"),
    "delete_and_renumber": (t_delete_renumber, "any"),
    "insert_junk": (t_insert_junk, "any"),
    "insert_forged": (t_insert_forged, "any"),
    "reorder_swap": (t_swap, "any"),
    "reorder_adjacent": (t_swap_adjacent, "any"),
    "reorder_rotate": (t_rotate, "any"),
    "swap_contents": (t_swap_content, "any"),
    "edit_and_rehash": (t_rehash_one, "any"),
    "rewrite_suffix_and_head": (t_rewrite_suffix, "keyed"),
    "edit_sig": (t_sig, "keyed"),
    "head_seq": (t_head_seq, "any"),
    "head_hash": (t_head_hash, "any"),
    "head_count": (t_head_count, "any"),
    "head_delete": (t_head_delete, "any"),
    "truncate_and_rewrite_head": (t_truncate_and_rewrite_head, "keyed"),
    "head_sig": (t_head_sig, "keyed"),
}


@dataclass
class Tally:
    """Trials per kind, how many went undetected, and every wrong answer (position or reason)."""

    per_kind: collections.Counter = field(default_factory=collections.Counter)
    undetected: int = 0
    failures: list[str] = field(default_factory=list)


def run_trials(url: str, trials: int, seed: int) -> Tally:
    """An unsigned log first, then a signed one on the same tables; every kind gets its share of
    the trials (round robin), each at positions drawn from a seeded random."""
    rng = random.Random(seed)
    plans = {keyed: [k for k, (_f, which) in KINDS.items() if which == "any" or keyed] for keyed in (False, True)}
    total = sum(len(p) for p in plans.values())
    tally = Tally()
    for keyed, plan in plans.items():
        lab = Lab(url, KEY if keyed else None)
        try:
            for t in range(trials * len(plan) // total):
                trial(lab, plan[t % len(plan)], rng, tally)
        finally:
            lab.log.close()
    return tally


def trial(lab: Lab, kind: str, rng: random.Random, tally: Tally) -> None:
    """Restore the pristine log, tamper with its rows, verify, and compare with the expectation."""
    with lab.log.db.begin() as c:
        lab.restore(c)
        want = KINDS[kind][0](lab, c, rng)
        order = c.execute(select(EV.id).order_by(EV.seq)).scalars().all()
    report = lab.log.verify()
    name = kind + (" (keyed)" if lab.key else "")
    tally.per_kind[name] += 1
    tally.undetected += report.ok
    want_id = order[want.pos - 1] if want.pos <= len(order) else None
    event_level = report.reason not in ("head_mismatch", "head_bad_signature", "anchor_mismatch")
    if (report.ok or report.first_broken_seq != want.pos or report.reason not in want.reasons
            or (event_level and report.first_broken_id != want_id)):
        tally.failures.append(f"{name}: want {want.pos} {sorted(want.reasons)} (id {want_id}), got "
                              f"{report.first_broken_seq} {report.reason} (id {report.first_broken_id}): "
                              f"{report.message}")


@pytest.mark.parametrize("backend_seed", [20261101])
def test_tamper_trials(sql_url, backend_seed, record_property):
    backend = "sqlite" if sql_url.startswith("sqlite") else "postgresql"
    tally = run_trials(sql_url, TRIALS[backend], backend_seed)
    n = sum(tally.per_kind.values())
    summary = {"backend": backend, "trials": n, "detected": n - tally.undetected,
               "exact_position": n - len(tally.failures), "per_kind": dict(sorted(tally.per_kind.items()))}
    record_property("tamper_summary", json.dumps(summary))
    print(f"\ntamper trials on {backend}: {summary['detected']}/{n} detected, {summary['exact_position']}/{n} at "
          "the expected position; per kind: " + ", ".join(f"{k} {v}" for k, v in summary["per_kind"].items()))
    assert tally.undetected == 0, tally.failures[:10]
    assert not tally.failures, f"{len(tally.failures)} wrong answers:\n" + "\n".join(tally.failures[:10])
    assert len(tally.per_kind) == sum(1 + (which == "any") for _f, which in KINDS.values())
    assert n >= TRIALS[backend] - len(KINDS)


def test_a_rewritten_chain_without_a_key_passes_unless_anchored(make_log):
    """The documented limit: someone with write access who rewrites every hash from event k AND
    the head cannot be caught by the hashes alone — by a key, or by an anchor recorded earlier."""
    log = make_log(now=clock(), new_id=ids())
    for i in range(3):
        log.append_many(decision(i))
    anchor = (log.head().seq, log.head().hash)
    lab_rows = []
    with log.db.connect() as c:
        lab_rows = [dict(r._mapping) for r in c.execute(select(audit_events).order_by(EV.seq))]
    prev = lab_rows[4]["prev"]
    with log.db.begin() as c:
        for row in lab_rows[4:]:
            data = json.loads(row["data"])
            data["rewritten"] = True
            text = json.dumps(data, sort_keys=True, separators=(",", ":"))
            digest = event_hash(hashed_text(seq=row["seq"], id=row["id"], schema=1, ts=row["ts"],
                                            decision_id=row["decision_id"], step=row["step"], agent=row["agent"],
                                            data_text=text, prev=prev))
            _set(c, row["seq"], data=text, prev=prev, hash=digest)
            prev = digest
        c.execute(update(audit_head).values(hash=prev))
    assert log.verify().ok  # undetectable from the database alone: stated in the docs
    report = log.verify(anchor=anchor)
    assert (report.ok, report.reason, report.first_broken_seq) == (False, "anchor_mismatch", anchor[0])
