"""Derived facts: named SPARQL queries with bound parameters, and graph algorithms (networkx).

Rule files use these only under `derived:`:

- `ask("query", var=expr, ...)` → true/false from `knowledge_graph/queries/query.rq`
- `select("query", var=expr, ...)` → the values of the first column
- `chain(start, "property")` → the entities reached by following a single-valued property
  (e.g. the approval chain up `reports_to`), nearest first, without `start`
- `within_hops(start, "property", n, "flag")` → whether an entity within `n` steps along
  `property` (including `start`) has the boolean property `flag` set to true (e.g. a vendor
  owned, directly or through up to n-1 intermediaries, by a sanctioned entity)

Parameters are bound as RDF terms (rdflib `initBindings`; on Oxigraph a `VALUES` row of terms
written by pyoxigraph, see `engine.kg.store`), never as case text spliced into the query.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.case import Entity
from engine.errors import DiagnosticSink, Span, suggest_help
from engine.lang.checker import Checker, DerivedSignature
from engine.lang.expr import Call, Lit
from engine.lang.source import read_source
from engine.lang.types import ANY, BOOLEAN, Schema, Type, list_of

GRAPH_KEY = "__graph__"
_VAR = re.compile(r"[?$]([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class NamedQuery:
    """A SPARQL query file: its name (file stem), text, variables and description."""

    name: str
    text: str
    form: str  # ask | select
    variables: set[str]
    description: str
    file: str


def load_queries(folder: Path, sink: DiagnosticSink) -> dict[str, NamedQuery]:
    """Every `*.rq` file of the workspace's `knowledge_graph/queries/`."""
    out: dict[str, NamedQuery] = {}
    if not folder.exists():
        return out
    for f in sorted(folder.glob("*.rq")):
        text, why = read_source(f)
        if text is None:
            sink.error("query", f"query `{f.stem}`: the file {why}", Span(str(f)))
            continue
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        upper = re.sub(r"PREFIX\s+\S+\s*<[^>]*>", "", body, flags=re.I).strip().upper()
        form = "ask" if upper.startswith("ASK") else "select" if upper.startswith("SELECT") else ""
        if not form:
            sink.error("query", f"query `{f.stem}` must be an ASK or SELECT query", Span(str(f), 1, 1))
            continue
        desc = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
        out[f.stem] = NamedQuery(f.stem, text, form, set(_VAR.findall(body)), desc, str(f))
    return out


class GraphAlgorithms:
    """networkx graphs of single properties, built once per graph revision."""

    def __init__(self, store: Any):
        self.store = store
        self._graphs: dict[str, Any] = {}
        self._flags: dict[str, set[str]] = {}
        self._revision = store.revision
        self._seen = len(getattr(store, "touched", ()))

    def _fresh(self) -> None:
        """Drop the cached graphs an update of the store may have changed (an action executed on
        the graph): those of the predicates its template names, or all when it cannot tell."""
        if self.store.revision == self._revision:
            return
        log = getattr(self.store, "touched", None)
        new = log[self._seen:] if log is not None and len(log) > self._seen else [None]
        self._revision, self._seen = self.store.revision, len(log) if log is not None else 0
        if any(t is None for t in new):
            self._graphs, self._flags = {}, {}
            return
        changed = frozenset().union(*new)
        for cache in (self._graphs, self._flags):
            for prop in [p for p in cache if p in changed]:
                del cache[prop]

    def graph(self, prop: str) -> Any:
        self._fresh()
        g = self._graphs.get(prop)
        if g is None:
            import networkx as nx

            g = nx.DiGraph()
            g.add_edges_from((s, str(o)) for s, o in self.store.pairs(prop) if isinstance(o, str))
            self._graphs[prop] = g
        return g

    def flagged(self, prop: str) -> set[str]:
        self._fresh()
        f = self._flags.get(prop)
        if f is None:
            f = self._flags[prop] = {s for s, o in self.store.pairs(prop) if o is True}
        return f

    def chain(self, start: str, prop: str) -> list[str]:
        g = self.graph(prop)
        out, seen, node = [], {start}, start
        while node in g:
            succ = list(g.successors(node))
            if not succ or succ[0] in seen:
                break  # the top of the line, or a cycle in the data
            node = succ[0]
            seen.add(node)
            out.append(node)
        return out

    def hop_path(self, start: str, prop: str, hops: int, flag: str) -> list[str] | None:
        """The shortest path from `start` to a flagged node within `hops` steps, or None."""
        import networkx as nx

        flagged = self.flagged(flag)
        if start in flagged:
            return [start]
        g = self.graph(prop)
        if start not in g:
            return None
        paths = nx.single_source_shortest_path(g, start, cutoff=hops)
        hits = sorted((len(p), p) for n, p in paths.items() if n in flagged)
        return hits[0][1] if hits else None


@dataclass
class GraphContext:
    """What derived facts may use: the store, the named queries, cached algorithms."""

    store: Any
    queries: dict[str, NamedQuery]
    schema: Schema
    algorithms: GraphAlgorithms
    reads: Any = None
    _prop_iris: dict[str, str] = field(default_factory=dict)

    def for_case(self, reads: Any) -> GraphContext:
        return GraphContext(self.store, self.queries, self.schema, self.algorithms, reads, self._prop_iris)

    def prop_iri(self, name: str) -> str | None:
        if name not in self._prop_iris:
            cands = self.schema.properties.get(name) or []
            self._prop_iris[name] = cands[0].iri if cands else ""
        return self._prop_iris[name] or None


def _iri(v: Any) -> Any:
    return v.iri if type(v) is Entity else v


def _ask(env: dict[str, Any], raw: list[Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    g: GraphContext = env[GRAPH_KEY]
    q = g.queries[raw[0]]
    if any(v is None for v in kwargs.values()):
        return None
    bindings = {k: _bind(v) for k, v in kwargs.items()}
    result = g.store.ask(q.text, bindings)
    if g.reads is not None:
        g.reads.queries.append({"query": q.name, "bindings": {k: _iri(v) for k, v in kwargs.items()},
                                "result": result})
    return result


def _select(env: dict[str, Any], raw: list[Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    g: GraphContext = env[GRAPH_KEY]
    q = g.queries[raw[0]]
    if any(v is None for v in kwargs.values()):
        return None
    rows = g.store.select(q.text, {k: _bind(v) for k, v in kwargs.items()})
    values = [next(iter(r.values())) if r else None for r in rows]
    values = [Entity(str(v)) if v.__class__.__name__ == "IRI" else v for v in values]
    if g.reads is not None:
        g.reads.queries.append({"query": q.name, "bindings": {k: _iri(v) for k, v in kwargs.items()},
                                "result": [_iri(v) for v in values]})
    return values


def _bind(v: Any) -> Any:
    from engine.case import IRI

    return IRI(v.iri) if type(v) is Entity else v


def _chain(env: dict[str, Any], raw: list[Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    g: GraphContext = env[GRAPH_KEY]
    start, prop = args[0], g.prop_iri(raw[1])
    if type(start) is not Entity or prop is None:
        return None
    nodes = g.algorithms.chain(start.iri, prop)
    if g.reads is not None:
        links = [start.iri, *nodes]
        g.reads.items.extend((a, prop, [Entity(b)]) for a, b in itertools.pairwise(links))
    return [Entity(n) for n in nodes]


def _within_hops(env: dict[str, Any], raw: list[Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    g: GraphContext = env[GRAPH_KEY]
    start, prop, hops, flag = args[0], g.prop_iri(raw[1]), args[2], g.prop_iri(raw[3])
    if type(start) is not Entity or prop is None or flag is None or not isinstance(hops, (int, float)):
        return None
    path = g.algorithms.hop_path(start.iri, prop, int(hops), flag)
    if g.reads is not None and path:
        g.reads.items.extend((a, prop, [Entity(b)]) for a, b in itertools.pairwise(path))
        g.reads.items.append((path[-1], flag, [True]))
    return path is not None


DERIVED_IMPLS = {"ask": _ask, "select": _select, "chain": _chain, "within_hops": _within_hops}


def derived_signatures(queries: dict[str, NamedQuery], schema: Schema) -> dict[str, DerivedSignature]:
    """How the checker types the graph functions, against this workspace's queries and ontology."""

    def query_sig(form: str) -> Callable[[Checker, Call, list[Type]], Type]:
        def check(c: Checker, n: Call, ts: list[Type]) -> Type:
            if not n.args or not (isinstance(n.args[0], Lit) and isinstance(n.args[0].value, str)):
                c.sink.error("query", f"`{n.name}` needs the query name as its first argument, in quotes", n.span,
                             help=f'for example `{n.name}("duplicate_invoice", invoice=case.invoice)`')
                return ANY
            name = n.args[0].value
            q = queries.get(name)
            if q is None:
                help_, sug = suggest_help(name, queries, "queries")
                c.sink.error("unknown_name", f"unknown query `{name}`", n.args[0].span, help=help_, suggestion=sug)
                return ANY
            if q.form != form:
                c.sink.error("query", f"query `{name}` is a {q.form.upper()} query; use `{q.form}(...)`", n.span)
            if len(n.args) > 1:
                c.sink.error("query", "query parameters are passed by name", n.args[1].span,
                             help=f"for example `{n.name}(\"{name}\", {next(iter(sorted(q.variables)), 'x')}=...)`")
            for k, v in n.kwargs.items():
                if k not in q.variables:
                    help_, sug = suggest_help(k, q.variables, f"variables of `{name}`")
                    c.sink.error("query", f"query `{name}` has no variable `?{k}`", v.span, help=help_, suggestion=sug)
            return BOOLEAN if form == "ask" else list_of(ANY)
        return check

    def prop_arg(c: Checker, n: Call, i: int, start: Type) -> Type | None:
        a = n.args[i]
        if not (isinstance(a, Lit) and isinstance(a.value, str)):
            c.sink.error("type_mismatch", f"argument {i + 1} of `{n.name}` is a property name in quotes", a.span)
            return None
        if start.kind != "ref":
            return None
        p = schema.property_of(start.cls or "", a.value)
        if p is None:
            help_, sug = suggest_help(a.value, schema.properties_of(start.cls or ""), f"properties of `{start.cls}`")
            c.sink.error("unknown_property", f"`{start.cls}` has no property `{a.value}`", a.span, help=help_,
                         suggestion=sug)
            return None
        return p.range

    def chain_sig(c: Checker, n: Call, ts: list[Type]) -> Type:
        if not c.arity(n, 2):
            return ANY
        c.want(n, 0, ts[0], "ref")
        r = prop_arg(c, n, 1, ts[0])
        return list_of(r) if r is not None else list_of(ANY)

    def hops_sig(c: Checker, n: Call, ts: list[Type]) -> Type:
        if not c.arity(n, 4):
            return BOOLEAN
        c.want(n, 0, ts[0], "ref")
        r = prop_arg(c, n, 1, ts[0])
        c.want(n, 2, ts[2], "number")
        if r is not None:
            f, flag = prop_arg(c, n, 3, r), n.args[3]
            if f is not None and f.kind != "boolean" and isinstance(flag, Lit):  # `f`: `flag` is a name in quotes
                c.sink.error("type_mismatch", f"`{flag.value}` must be a true/false property", flag.span)
        return BOOLEAN

    return {
        "ask": DerivedSignature("ask", query_sig("ask"), "a named SPARQL ASK query"),
        "select": DerivedSignature("select", query_sig("select"), "a named SPARQL SELECT query"),
        "chain": DerivedSignature("chain", chain_sig, "follow a single-valued property"),
        "within_hops": DerivedSignature("within_hops", hops_sig, "a flagged entity within n hops"),
    }
