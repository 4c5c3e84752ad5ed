"""A custom connector: actions become tickets in a (toy) ticketing system, a JSON-lines file.

Any class with a `name`, `execute(action, params, *, key) -> dict` and `status(key)` is a
connector (`engine.act.connectors.base.Connector`). A workspace names it in rulebridge.toml:

    [connectors.tickets]
    kind = "python"
    class = "examples.custom_connector:TicketConnector"   # module:Class, from the workspace root
    path = ".rulebridge/tickets.jsonl"                    # other keys arrive in `options`

and binds actions to it in rules/actions.yaml (the keys besides `connector` are this class's
template, checked by nobody but it):

    execute: {connector: tickets, queue: accounts-payable, title: "Approve {invoice}"}

The engine wraps it in retries and a circuit breaker (`Resilient`), so it only has to
classify its faults: `TransientError` (worth another try) or `PermanentError` (not).

What makes it exactly-once: one ticket line per idempotency key, written with a single
`write` on a file opened for appending (a line is whole or, after a crash, a torn tail that is
ignored — and the next ticket starts on a line of its own). `execute` with a key already in the
file returns that ticket instead of filing a second one, and `status` reads the file, so it
answers done / not_done exactly.

Run it: `python examples/custom_connector.py` files a ticket and files it "again".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from engine.act.connectors.base import ExecutionStatus, PermanentError, TransientError


class TicketConnector:
    """Files one ticket per execution in a JSON-lines file; the key is the ticket's marker."""

    def __init__(self, name: str, *, bindings: dict[str, dict[str, Any]], options: dict[str, Any],
                 root: Path | None = None):
        self.name = name
        self.bindings = bindings  # action → its template from rules/actions.yaml
        self.path = Path(root or ".") / str(options.get("path", ".rulebridge/tickets.jsonl"))
        self._lock = threading.Lock()  # one writer per process; the key check and the append go together

    def _tickets(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise TransientError(f"cannot read {self.path}: {exc}", code="connector_io") from exc
        for line in lines:
            try:
                ticket = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash: it was never acknowledged
            out[ticket["key"]] = ticket
        return out

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """File the ticket for `action` under `key` (once: a known key returns its ticket)."""
        template = self.bindings.get(action)
        if template is None:
            raise PermanentError(f"action `{action}` is not bound to `{self.name}`", code="connector_unbound")
        try:
            title = str(template.get("title", action)).format(**params)
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(f"the title template of `{action}` does not fit its parameters: {exc}",
                                 code="connector_bad_params") from exc
        with self._lock:
            done = self._tickets().get(key)
            if done is not None:
                return {"ticket": done["ticket"], "duplicate": True}
            ticket = {"key": key, "ticket": f"T-{key[:12]}", "queue": template.get("queue", "default"),
                      "action": action, "title": title, "params": params,
                      "filed_at": dt.datetime.now(dt.UTC).isoformat()}
            line = (json.dumps(ticket, sort_keys=True) + "\n").encode()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    size = os.fstat(fd).st_size
                    torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a crash cut the last line
                    os.write(fd, b"\n" + line if torn else line)  # one write: the line is appended whole
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise TransientError(f"cannot write {self.path}: {exc}", code="connector_io") from exc
        return {"ticket": ticket["ticket"], "duplicate": False}

    def status(self, key: str) -> ExecutionStatus:
        """Exact: a ticket line with this key exists, or it does not."""
        return "done" if key in self._tickets() else "not_done"


if __name__ == "__main__":
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tickets-"))
    tickets = TicketConnector("tickets", bindings={"approve_invoice": {"queue": "ap", "title": "Approve {invoice}"}},
                              options={"path": "tickets.jsonl"}, root=folder)
    params = {"invoice": "https://brightwater.example/id/INV-10001"}
    print(tickets.execute("approve_invoice", params, key="demo-key-1"))
    print(tickets.execute("approve_invoice", params, key="demo-key-1"))  # the same key: the same ticket
    print(tickets.status("demo-key-1"), tickets.status("another-key"))
    print((folder / "tickets.jsonl").read_text(encoding="utf-8"), end="")
