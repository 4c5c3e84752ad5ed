"""Audit fixtures: logs on the `sql_url` backends, closed after each test (no leaked connections)."""

from __future__ import annotations

import pytest

from engine.audit import AuditLog


@pytest.fixture
def make_log(sql_url):
    """`make_log(**kw)` opens an AuditLog on this test's database (or `url=`); all are closed after."""
    logs: list[AuditLog] = []

    def make(url: str | None = None, **kw) -> AuditLog:
        log = AuditLog(url or sql_url, **kw)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()
