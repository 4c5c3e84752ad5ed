"""The audit log on SQLite and PostgreSQL: appending, the chain, signatures, reading, reports."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import OperationalError

from engine.audit import AuditError, AuditLog, jsonable
from engine.audit.chain import GENESIS, hash_of
from engine.audit.log import audit_events, audit_head, hmac_key_from_env, utc_text
from engine.audit.report import read_events
from tests.audit.helpers import KEY, START, clock, decision, ids


def test_append_builds_a_gapless_chain(make_log):
    log = make_log(now=clock(), new_id=ids())
    first = log.append("D-1", "received", "ops", {"case": {"type": "t", "payload": {"x": "é"}}})
    assert (first.seq, first.id, first.schema, first.prev) == (1, "E-00000001", 1, GENESIS)
    assert first.ts == "2026-11-01T09:00:00.000000+00:00"
    assert first.hash == hash_of(first) and first.sig is None
    batch = log.append_many(decision(2))
    assert [e.seq for e in batch] == [2, 3, 4, 5]
    assert [e.prev for e in batch] == [first.hash] + [e.hash for e in batch[:-1]]
    assert all(e.hash == hash_of(e) for e in batch)
    assert len({e.ts for e in batch}) == 1  # one transaction, one time
    report = log.verify()
    assert report.ok and report.checked == 5 and report.complete
    assert (report.head.seq, report.head.hash, report.head.count) == (5, batch[-1].hash, 5)
    assert log.append_many([]) == []
    # a reopened log continues the same chain
    again = make_log(now=clock(), new_id=ids("F-"))
    assert again.append("D-3", "decided", "ops", {}).prev == batch[-1].hash
    assert again.verify().checked == 6


def test_returned_event_is_a_copy_of_what_was_stored(make_log):
    log = make_log()
    data = {"list": [1, 2], "nested": {"a": "b"}}
    e = log.append("D-1", "facts", "ops", data)
    data["list"].append(3)
    assert e.data == {"list": [1, 2], "nested": {"a": "b"}}
    assert log.trace("D-1")[0].data == e.data


@pytest.mark.parametrize("item, code", [
    (("D-1", "s", "ops", {"when": dt.date(2026, 1, 1)}), "audit_not_json"),
    (("D-1", "s", "ops", {"t": (1, 2)}), "audit_not_json"),
    (("D-1", "s", "ops", {1: "int key"}), "audit_not_json"),
    (("D-1", "s", "ops", {"x": float("nan")}), "audit_not_json"),
    (("D-1", "s", "ops", ["not", "an", "object"]), "audit_not_json"),
    (("", "s", "ops", {}), "audit_invalid"),
    (("D-1", "s\n", "ops", {}), "audit_invalid"),
    (("D-1", "s", None, {}), "audit_invalid"),
    (("D-1", "s", "x" * 201, {}), "audit_invalid"),
    (("D-1", "s", "ops"), "audit_invalid"),
])
def test_bad_input_is_refused_and_nothing_is_half_written(make_log, item, code):
    log = make_log()
    log.append("D-0", "received", "ops", {})
    with pytest.raises(AuditError) as exc:
        log.append_many([("D-1", "received", "ops", {"ok": True}), item])
    assert exc.value.code == code
    assert log.verify().checked == 1  # the valid first item was not written either
    assert log.append("D-1", "s", "ops", jsonable({"when": dt.date(2026, 1, 1)})).data == {"when": "2026-01-01"}


def test_signatures_detect_a_wrong_or_missing_key(make_log):
    signed = make_log(hmac_key=KEY)
    events = signed.append_many(decision(1))
    assert all(e.sig and len(e.sig) == 64 for e in events)
    assert signed.verify().ok and signed.verify().signatures == "checked"
    unsigned_view = make_log()
    assert unsigned_view.verify().ok and unsigned_view.verify().signatures == "not_checked"
    wrong = make_log(hmac_key=b"another-key-0123456789")
    report = wrong.verify()
    assert (report.ok, report.reason, report.first_broken_seq, report.first_broken_id) == (
        False, "bad_signature", 1, events[0].id)
    # events appended without the key are refused by a verifier that has it
    unsigned_view.append("D-9", "decided", "ops", {})
    report = signed.verify()
    assert (report.reason, report.first_broken_seq) == ("bad_signature", 5) and "not signed" in report.message


def test_a_signed_head_catches_a_cut_tail_with_a_rewritten_head(make_log):
    """Regression: with a key, cutting events from the end and rewriting the head row to the new
    last event (seq, hash, count) passed `verify`. The head row is signed with the key too."""
    log = make_log(hmac_key=KEY, new_id=ids())
    for i in range(3):
        log.append_many(decision(i))
    assert log.verify().ok and log.head().sig
    with log.db.begin() as c:
        last = c.execute(select(audit_events.c.hash).where(audit_events.c.seq == 8)).scalar()
        c.execute(delete(audit_events).where(audit_events.c.seq > 8))
        c.execute(update(audit_head).values(seq=8, hash=last, count=8))
    report = log.verify()
    assert (report.ok, report.reason, report.first_broken_seq, report.first_broken_id) == (
        False, "head_bad_signature", 9, None)
    assert "not signed with the configured key" in report.message
    assert make_log().verify().ok  # without the key only an anchor catches it: the documented limit
    with log.db.begin() as c:  # the old head's signature does not fit the rewritten head either
        c.execute(update(audit_head).values(sig=None))
    assert log.verify().reason == "head_bad_signature"


def test_a_log_from_before_signed_heads_verifies_as_before_and_is_upgraded(make_log):
    """An unsigned log (no key) verifies as before, also when its head has no signature column yet."""
    log = make_log()
    log.append_many(decision(1))
    assert log.head().sig is None and log.verify().ok
    with log.db.begin() as c:  # the head row as older releases made it
        c.exec_driver_sql("ALTER TABLE audit_head DROP COLUMN sig")
    reader = make_log(create=False)
    assert reader.verify().ok and reader.head().sig is None
    writer = make_log(hmac_key=KEY)  # a writer adds the column; the next head it writes is signed
    writer.append("D-2", "decided", "ops", {})
    assert writer.head().sig and make_log().verify().ok


def test_hmac_key_from_env():
    assert hmac_key_from_env({}) is None
    assert hmac_key_from_env({"RULEBRIDGE_AUDIT_HMAC_KEY": "a" * 16}) == b"a" * 16
    assert hmac_key_from_env({"RULEBRIDGE_AUDIT_HMAC_KEY": "hex:" + "ab" * 16}) == bytes.fromhex("ab" * 16)
    for bad in ("short", "hex:zz" + "0" * 40, "hex:abcd"):
        with pytest.raises(AuditError) as exc:
            hmac_key_from_env({"RULEBRIDGE_AUDIT_HMAC_KEY": bad})
        assert exc.value.code == "audit_bad_key"
    with pytest.raises(AuditError) as exc:
        AuditLog("sqlite://", hmac_key=b"short")
    assert exc.value.code == "audit_bad_key" and "the HMAC key has 5 bytes" in str(exc.value)


def test_from_env_signs(sql_url, make_log, monkeypatch):
    monkeypatch.setenv("RULEBRIDGE_AUDIT_HMAC_KEY", KEY.decode())
    with AuditLog.from_env(sql_url) as log:
        e = log.append("D-1", "s", "ops", {})
    assert e.sig is not None
    assert make_log(hmac_key=KEY).verify().ok


def test_trace_events_window_and_export_round_trip(make_log):
    log = make_log(now=clock(step_ms=60_000), new_id=ids(), hmac_key=KEY)
    for i in range(5):
        log.append_many(decision(i))  # one clock reading per decision: 09:00, 09:01, ...
    assert [e.step for e in log.trace("D-00002")] == ["received", "facts", "matched", "decided"]
    assert log.trace("D-404") == []
    assert len(list(log.events())) == 20
    window = list(log.events(since="2026-11-01T09:01", until=dt.datetime(2026, 11, 1, 9, 3, tzinfo=dt.UTC)))
    assert {e.decision_id for e in window} == {"D-00001", "D-00002"}
    zoned = list(log.events(since="2026-11-01T10:02:00+01:00"))  # 09:02 UTC
    assert {e.decision_id for e in zoned} == {"D-00002", "D-00003", "D-00004"}
    assert list(log.events(since=dt.date(2026, 11, 2))) == []
    assert len(list(log.events(batch=3))) == 20  # batches join up without loss or repeat
    for fmt in ("jsonl", "csv"):
        buf = io.StringIO()
        assert log.export(buf, fmt, since="2026-11-01T09:01") == 16
        back = read_events(io.StringIO(buf.getvalue()), fmt)
        assert back == [e for e in log.events() if e.ts >= "2026-11-01T09:01"]
        assert all(hash_of(e) == e.hash for e in back)
    lines = log.export(io.StringIO(), "jsonl")
    assert lines == 20
    with pytest.raises(AuditError) as exc:
        log.export(io.StringIO(), "xml")
    assert exc.value.code == "audit_bad_format"
    with pytest.raises(AuditError) as exc:
        list(log.events(since="yesterday"))
    assert exc.value.code == "audit_bad_time"


def test_jsonl_export_is_canonical_one_event_per_line(make_log):
    log = make_log()
    log.append("D-1", "s", "ops", {"b": 1, "a": "ü"})
    line = io.StringIO()
    log.export(line, "jsonl")
    rec = json.loads(line.getvalue())
    assert line.getvalue().count("\n") == 1 and '"a":"ü","b":1' in line.getvalue()
    assert set(rec) == {"seq", "id", "schema", "ts", "decision_id", "step", "agent", "data", "prev", "hash", "sig"}


def test_stats_count_the_latest_decided_event_per_decision(make_log):
    log = make_log(now=clock(step_ms=60_000))
    for i in range(3):
        log.append_many(decision(i))
    log.append_many(decision(3, outcome="deny", rule="ap.guard.sanctioned"))
    log.append_many(decision(4, outcome="execute", source="llm", rule=None, agent="ops-console"))
    log.append_many(decision(5, outcome="escalate", source="none", rule=None, ruleset="crm.discount_approval"))
    # the escalation is approved later by a person: a second `decided` event for the same decision
    log.append_many([("D-00005", "reviewed", "alice", {"verdict": "approved", "reviewer": "alice"}),
                     ("D-00005", "decided", "alice", {"outcome": "execute", "source": "human", "rule": None,
                                                      "ruleset": "crm.discount_approval", "reviewer": "alice"})])
    s = log.stats()
    assert s["decisions"] == 6 and s["events"] == 26
    assert s["by_step"] == {"decided": 7, "facts": 6, "matched": 6, "received": 6, "reviewed": 1}
    assert s["by_outcome"] == {"deny": 1, "execute": 5}
    assert s["by_source"] == {"human": {"execute": 1}, "llm": {"execute": 1}, "rule": {"deny": 1, "execute": 3}}
    assert s["by_rule"] == {"ap.approve.small": {"execute": 3}, "ap.guard.sanctioned": {"deny": 1}}
    assert s["by_ruleset"] == {"accounts_payable.invoice_approval": {"deny": 1, "execute": 4},
                               "crm.discount_approval": {"execute": 1}}
    assert s["by_agent"] == {"alice": {"execute": 1}, "ap-assistant": {"deny": 1, "execute": 3},
                             "ops-console": {"execute": 1}}
    windowed = log.stats(since=START + dt.timedelta(minutes=3), until=START + dt.timedelta(minutes=5))
    assert windowed["decisions"] == 2 and windowed["by_outcome"] == {"deny": 1, "execute": 1}
    assert windowed["since"] == "2026-11-01T09:03:00.000000+00:00"


def test_verify_limit_and_anchor(make_log):
    log = make_log()
    events = [e for i in range(3) for e in log.append_many(decision(i))]
    part = log.verify(limit=5, batch=2)
    assert part.ok and part.checked == 5 and not part.complete
    assert log.verify(limit=12).complete and log.verify(limit=50).checked == 12
    assert log.verify(anchor=(6, events[5].hash)).ok
    report = log.verify(anchor=(6, "f" * 64))
    assert (report.ok, report.reason, report.first_broken_seq) == (False, "anchor_mismatch", 6)
    report = log.verify(anchor=(40, "f" * 64))
    assert (report.reason, report.first_broken_seq) == ("anchor_mismatch", 13)


def test_a_missing_log_is_not_created_by_readers(tmp_path):
    url = f"sqlite:///{tmp_path}/nothing.db"
    with pytest.raises(AuditError) as exc:
        AuditLog(url, create=False)
    assert exc.value.code == "audit_not_found"
    assert not (tmp_path / "nothing.db").exists()
    AuditLog(url).close()
    with AuditLog(url, create=False) as log:
        assert log.verify().ok


def test_a_missing_head_row_is_reported_and_blocks_appends(make_log):
    log = make_log()
    log.append_many(decision(1))
    with log.db.begin() as c:
        c.execute(delete(audit_head))
    report = log.verify()
    assert (report.ok, report.reason, report.first_broken_seq) == (False, "head_mismatch", 5)
    with pytest.raises(AuditError) as exc:
        log.append("D-2", "s", "ops", {})
    assert exc.value.code == "audit_broken"


def test_lost_races_are_retried_then_fail_closed(make_log, monkeypatch):
    log = make_log(attempts=3)
    real = log._write
    calls = {"n": 0}

    def flaky(prepared):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(prepared)

    monkeypatch.setattr(log, "_write", flaky)
    assert log.append("D-1", "s", "ops", {}).seq == 1 and calls["n"] == 3
    calls["n"] = -10  # every attempt fails now
    with pytest.raises(AuditError) as exc:
        log.append("D-2", "s", "ops", {})
    assert exc.value.code == "audit_unavailable"
    assert log.verify().checked == 1


def test_the_head_guard_refuses_a_writer_that_lost_the_race(make_log):
    # Simulate a head that moved between the read and the write: the conditional update matches
    # nothing, the transaction is rolled back and retried from the new head.
    log = make_log(attempts=3)
    log.append("D-0", "s", "ops", {})
    moved = {"done": False}
    real = log._move_head

    class Racing:
        sql, defaults, order = real.sql, real.defaults, real.order

        def args(self, values):
            if not moved["done"]:
                moved["done"] = True
                values = {**values, "old_seq": -1}  # as if another writer had moved the head
            return real.args(values)

    log._move_head = Racing()
    e = log.append("D-1", "s", "ops", {})
    assert moved["done"] and e.seq == 2
    assert log.verify().ok and log.verify().checked == 2
    with log.db.connect() as c:
        assert c.execute(select(func.count()).select_from(audit_events)).scalar() == 2


def test_utc_text_formats_sort_as_time():
    assert utc_text(dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5)))) == \
        "2026-01-01T17:00:00.000000+00:00"
    assert utc_text("2026-01-01") == "2026-01-01T00:00:00.000000+00:00"
    assert utc_text(dt.date(2026, 1, 1)) < utc_text("2026-01-01T00:00:00.000001")


def test_naive_clock_is_refused(make_log):
    log = make_log(now=lambda: dt.datetime(2026, 1, 1))  # noqa: DTZ001 - the naive clock under test
    with pytest.raises(AuditError) as exc:
        log.append("D-1", "s", "ops", {})
    assert exc.value.code == "audit_bad_time"
    with log.db.connect() as c:
        assert c.execute(select(audit_head.c.seq)).scalar() == 0


def test_update_of_stored_row_is_caught(make_log):
    log = make_log()
    events = log.append_many(decision(1))
    with log.db.begin() as c:
        c.execute(update(audit_events).where(audit_events.c.seq == 2).values(agent="mallory"))
    report = log.verify()
    assert (report.ok, report.first_broken_seq, report.first_broken_id, report.reason) == (
        False, 2, events[1].id, "hash_mismatch")


def test_sqlite_wal_is_checkpointed_in_the_background_not_in_a_commit(tmp_path):
    """The writers' own checkpoint is only a safety net (AUTOCHECKPOINT_PAGES); a background pass
    copies the WAL into the database file shortly after commits, and the chain is intact."""
    import sqlite3
    import time

    from engine import storage

    path = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{path}")
    try:
        with log.db.connect() as c:
            assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == storage.AUTOCHECKPOINT_PAGES
        before = path.stat().st_size
        for i in range(40):
            log.append_many(decision(i))
        deadline = time.monotonic() + 10
        while path.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before  # the events reached the database file, not only the WAL
        with log.unit():  # a unit's commit asks for a checkpoint too
            log.append_many(decision(99))
        assert log.verify().ok and log.head().count == 41 * len(decision(0))
        # a deleted file is not created again by a pending checkpoint
        log.close()
        for p in tmp_path.iterdir():
            p.unlink()
        storage.checkpointer.touch(str(path))
        time.sleep(storage.CHECKPOINT_AFTER_S + 0.3)
        assert not path.exists()
        with pytest.raises(sqlite3.OperationalError):
            sqlite3.connect(path.as_uri() + "?mode=rw", uri=True).execute("select 1")
    finally:
        log.close()


def test_a_closed_log_is_not_checkpointed_again(tmp_path, monkeypatch):
    """Regression: a checkpoint pending at `close()` opened the database once more shortly after,
    recreating its `-wal`/`-shm` files while the caller removed the folder (`OSError: Directory not
    empty` from a temporary directory's cleanup)."""
    import sqlite3
    import time

    from engine import storage

    opened: list[str] = []
    real = sqlite3.connect

    def spy(database, *a, **k):
        opened.append(str(database))
        return real(database, *a, **k)

    path = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{path}")
    log.append_many(decision(1))  # a checkpoint of the file is now pending
    log.close()
    monkeypatch.setattr(sqlite3, "connect", spy)
    time.sleep(storage.CHECKPOINT_AFTER_S + 0.3)
    assert [o for o in opened if "audit.db" in o] == []


def test_an_atomic_block_of_a_unit_rolls_back_its_own_writes_only(make_log):
    """`Unit.atomic`: what the block appended is undone when it fails (the head too); what the unit
    wrote before it commits as usual, and the next append continues the chain from there."""
    log = make_log(hmac_key=KEY)
    with pytest.raises(RuntimeError, match="the block fails after its writes"), log.unit() as u:
        log.append("D-1", "received", "ops", {"n": 1})
        with u.atomic():
            log.append_many(decision(2))
            raise RuntimeError("the block fails after its writes")
    assert [e.decision_id for e in log.events()] == ["D-1"]
    assert log.head().seq == 1 and log.verify().ok
    with log.unit() as u, u.atomic():
        log.append("D-3", "received", "ops", {"n": 3})
    assert log.head().seq == 2 and log.verify().ok
