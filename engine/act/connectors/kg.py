"""The knowledge-graph connector: an action is a SPARQL Update on the workspace's own graph.

The embedded default system of record. A binding in `rules/actions.yaml` names the three parts
of one DELETE/INSERT operation; the action's parameters are its variables (`?invoice`):

    execute:
      connector: kg
      where: |                              # what must hold: matched before anything is written
        ?invoice a bw:Invoice ; bw:status ?status .
        FILTER(?status IN ("received", "on_hold"))
      delete: ?invoice bw:status ?status
      insert: ?invoice bw:status "approved" ; bw:approved_by ?approver .
      max_matches: 1                        # optional (default 1): solutions of `where` allowed

The store runs it in one transaction with the execution marker (`GraphStore.update`), so
`status(key)` is exact. `where` is the compare-and-set: when the graph no longer matches (the
invoice was approved meanwhile), nothing is written and the execution fails with
`connector_no_effect`; when it matches more than `max_matches` times (a template that would
touch more than the one entity it names), nothing is written either (`connector_ambiguous`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import DiagnosticSink, Span, did_you_mean, suggest_help
from engine.kg.store import GraphStore, GraphUpdateError, sparql_code, sparql_variables
from engine.lang.actions import ActionCatalog, ActionSpec, ExecBinding
from engine.lang.source import LStr, span_of

from .base import ExecutionStatus, PermanentError, TransientError
from .values import graph_values

KEYS = ("where", "delete", "insert", "max_matches")


@dataclass(frozen=True)
class GraphTemplate:
    """One action's update, composed from its binding."""

    update: str
    where: str
    max_matches: int


def unbalanced(text: str) -> str | None:
    """Why a template part could escape its braces (and so add operations of its own), or None."""
    depth = 0
    for c in sparql_code(text):
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return "a `}` closes more than it opened"
    return None if depth == 0 else "a `{` is never closed"


def compose(template: dict[str, Any]) -> GraphTemplate:
    """`DELETE { delete } INSERT { insert } WHERE { where }` from a binding's parts.

    INVARIANT: each part stays inside its own braces (checked here), so the composition is ONE
    operation, whatever the parts say: a part cannot append `; DROP ALL` to the request.
    """
    for part in ("where", "delete", "insert"):
        why = unbalanced(str(template.get(part) or ""))
        if why:
            raise ValueError(f"`{part}`: {why}")
    where = str(template["where"])
    parts = []
    if template.get("delete"):
        parts.append(f"DELETE {{\n{template['delete']}\n}}")
    if template.get("insert"):
        parts.append(f"INSERT {{\n{template['insert']}\n}}")
    parts.append(f"WHERE {{\n{where}\n}}")
    return GraphTemplate("\n".join(parts), where, int(template.get("max_matches", 1)))


class KgConnector:
    """Actions as SPARQL Updates on the workspace graph, each with its execution marker."""

    kind = "kg"

    def __init__(self, name: str, store: GraphStore, actions: ActionCatalog, *,
                 prefixes: dict[str, str] | None = None, clock: Callable[[], dt.datetime] | None = None):
        self.name = name
        self.store = store
        self.prefixes = dict(prefixes or {})
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.specs: dict[str, ActionSpec] = {}
        self.templates: dict[str, GraphTemplate] = {}
        for spec in actions.actions.values():
            if spec.execute is not None and spec.execute.connector == name:
                self.specs[spec.name] = spec
                try:
                    self.templates[spec.name] = compose(spec.execute.template)
                except ValueError as exc:
                    raise ValueError(f"the binding of `{spec.name}`: {exc}") from exc

    def execute(self, action: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Run the action's update with its marker; a repeated key changes nothing and says so."""
        template = self.templates.get(action)
        if template is None:
            raise PermanentError(f"action `{action}` is not bound to connector `{self.name}`",
                                 code="connector_unbound")
        values = graph_values(self.specs[action], params)
        try:
            out = self.store.update(template.update, values, key=key, where=template.where,
                                    max_matches=template.max_matches, prefixes=self.prefixes, at=self.clock())
        except GraphUpdateError as exc:
            raise PermanentError(f"action `{action}`: {exc}", code=exc.code) from exc
        except OSError as exc:  # the on-disk store could not be written: worth another try
            raise TransientError(f"action `{action}`: the graph store failed: {exc}", code="connector_io") from exc
        if out.duplicate:
            return {"revision": out.revision, "executed_at": self.store.executed(key), "duplicate": True}
        if not out.applied:
            if out.matches == 0:
                raise PermanentError(f"action `{action}`: the graph does not match the action's `where` (any more): "
                                     "nothing was changed", code="connector_no_effect")
            raise PermanentError(f"action `{action}`: the action's `where` matches more than "
                                 f"{template.max_matches} time(s): nothing was changed", code="connector_ambiguous")
        return {"revision": out.revision, "executed_at": self.store.executed(key), "duplicate": False}

    def status(self, key: str) -> ExecutionStatus:
        """Exact: the marker is written in the same transaction as the change."""
        return "done" if self.store.executed(key) is not None else "not_done"


# -- load-time checks of a binding ----------------------------------------------------------------

def _var_span(text: Any, offset: int, name: str, default: Span | None) -> Span | None:
    if isinstance(text, LStr) and getattr(text, "span", None) is not None:
        return text.span_at(offset, len(name) + 1)
    return span_of(text, default)


def check_binding(spec: ActionSpec, binding: ExecBinding, sink: DiagnosticSink, *,
                  prefixes: dict[str, str] | None = None) -> None:
    """A graph binding: its keys, its variables against the action's parameters, its SPARQL syntax.

    A variable named after no parameter is a pattern variable: it must occur in `where`, or it
    would be unbound (silently writing nothing). One that looks like a misspelt parameter
    (`?invioce`) is flagged — in `where` it would match every node, not the one the action names.
    """
    t, where = binding.template, binding.span
    spans = getattr(t, "key_spans", {})
    binding.check_keys(spec.name, KEYS, sink, help="a graph binding has `where`, `delete`, `insert` and `max_matches`")
    for k in ("where", "delete", "insert"):
        if k in t and not isinstance(t[k], str):
            sink.error("schema", f"`{k}` of the binding of `{spec.name}` must be text (a SPARQL pattern)",
                       span_of(t[k], spans.get(k, where)))
            return
    if not t.get("where"):
        sink.error("schema", f"the graph binding of `{spec.name}` needs a `where` pattern", where,
                   help="`where` names what must hold before the change, e.g. `?invoice a bw:Invoice`")
        return
    if not t.get("delete") and not t.get("insert"):
        sink.error("schema", f"the graph binding of `{spec.name}` changes nothing: add `delete` or `insert`", where)
        return
    if binding.max_matches(spec.name, sink) is None:
        return
    for k in ("where", "delete", "insert"):
        why = unbalanced(str(t.get(k) or ""))
        if why:
            sink.error("query", f"`{k}` of the binding of `{spec.name}` must be one pattern: {why}",
                       span_of(t[k], spans.get(k, where)))
            return
    params = set(spec.params)
    local = {name for name, _ in sparql_variables(t["where"])} - params
    if not {name for name, _ in sparql_variables(t["where"])} & params:
        sink.error("unknown_name", f"the `where` of `{spec.name}` uses none of its parameters: it would match "
                   "any node", span_of(t["where"], where),
                   help="name the entity the action is about, e.g. `?invoice a bw:Invoice`")
    for part in ("where", "delete", "insert"):
        text = t.get(part)
        if not text:
            continue
        seen: set[str] = set()
        for name, offset in sparql_variables(text):
            if name in params or name in seen:
                continue
            seen.add(name)
            near = did_you_mean(name, params)
            if part != "where" and name not in local:
                help_, sug = suggest_help(name, params | local, f"parameters of `{spec.name}` and variables of `where`")
                sink.error("unknown_name", f"unknown template parameter `?{name}` in `{part}` of `{spec.name}`",
                           _var_span(text, offset, name, spans.get(part, where)), help=help_, suggestion=sug)
            elif part == "where" and near:
                sink.error("unknown_name", f"`?{name}` is not a parameter of `{spec.name}`: it would match any "
                           "node", _var_span(text, offset, name, spans.get(part, where)),
                           help=f"did you mean `{near}`?", suggestion=near)
    try:
        import pyoxigraph as ox

        # Parsing needs a store; an empty one changes nothing and answers in microseconds.
        ox.Store().update(compose(t).update, prefixes=prefixes or None)
    except SyntaxError as exc:
        sink.error("query", f"the graph binding of `{spec.name}` is not valid SPARQL: "
                   f"{str(exc).splitlines()[0][:300]}", where)


_TERM = re.compile(r"[?$]\w+|[;,]|\.(?![^\s;,{}\[\]().])|[{}\[\]()]|[^\s;,{}\[\]().]+(?:\.[^\s;,{}\[\]().]+)*")


def changed_params(spec: ActionSpec, template: dict[str, Any]) -> set[str]:
    """The entity parameters whose triples the template deletes or inserts: the subjects of its
    `delete` and `insert` patterns (`?invoice bw:status "approved"` changes `invoice`, not the
    `?approver` it points to). Where a pattern has a shape this reading does not follow (blank
    node brackets, collections, GRAPH blocks), every entity parameter it mentions counts: an
    action is never taken to change less than it may."""
    entities = set(spec.class_params())
    out: set[str] = set()
    for part in ("delete", "insert"):
        code = sparql_code(str(template.get(part) or ""))
        tokens = _TERM.findall(code)
        if any(t in "{}[]()" or t.upper() == "GRAPH" for t in tokens):
            out |= {name for name, _ in sparql_variables(code)} & entities
            continue
        subject = True
        for tok in tokens:
            if tok == ".":
                subject = True
            elif subject:
                if tok[:1] in "?$" and tok[1:] in entities:
                    out.add(tok[1:])
                subject = False
    return out


__all__ = ["GraphTemplate", "KgConnector", "changed_params", "check_binding", "compose"]
