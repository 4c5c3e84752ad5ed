"""A remote SPARQL 1.1 endpoint as the workspace graph: the `oxigraph` server from PyPI, Apache
Jena Fuseki, GraphDB — the same `GraphStore` protocol, the same rules, over HTTP (httpx).

- Queries go to `query_url` (SPARQL 1.1 Protocol, POST `application/sparql-query`, results as
  `application/sparql-results+json`), updates to `update_url` (POST `application/sparql-update`).
- The workspace data lives in the endpoint's default graph; the graph revision and the
  execution markers in their own named graphs, as in the embedded store (`engine.kg.store`).
- Values are bound exactly as in the embedded store: each becomes one RDF term written by
  pyoxigraph — a `VALUES` row for queries (`with_values`), the template's variables for updates
  (`bind_variables`) — never case text spliced into SPARQL.
- One update (the change, its execution marker, the new revision) is ONE request: the SPARQL 1.1
  Update request is the endpoint's unit of atomicity (Oxigraph, Fuseki and GraphDB run a request
  in one transaction).
- Other processes may write the endpoint too, so nothing is cached by default (`read_cache`
  0) and `revision` is read from the endpoint each time it is asked for.
- The revision is an id of the graph's state, not a content hash (that would mean reading the
  whole graph): a new endpoint gets a fresh id when rulebridge first opens it, and every update
  made through rulebridge derives the next one. An endpoint changed behind rulebridge's back keeps
  its revision: let writers go through the engine, or bump the revision triple yourself.
- Timeouts, refused connections and 5xx answers raise `GraphUnavailable` (an `OSError`: the
  graph connector retries it with back-off); a 4xx answer to an update is a `GraphUpdateError`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from engine.case import IRI
from engine.errors import RulebridgeError

from .store import (
    EXECUTED,
    LEDGER_GRAPH,
    META_GRAPH,
    META_REVISION,
    META_SUBJECT,
    XSD,
    GraphUpdateError,
    ReadCache,
    UpdateOutcome,
    _bindings_key,
    _limit,
    _now,
    bind_variables,
    convert_literal,
    execution_iri,
    next_revision,
    objects_together,
    ox_term,
    touched_iris,
    update_terms,
    with_values,
)

RESULTS_JSON = "application/sparql-results+json"


class GraphUnavailable(RulebridgeError, ConnectionError):
    """The SPARQL endpoint did not answer (timeout, refused connection, 5xx): worth another try."""

    code = "graph_unavailable"


def _iri(value: str) -> str:
    """An IRI as one SPARQL term (pyoxigraph refuses what is no IRI)."""
    return str(ox_term(IRI(value)))


class SparqlStore:
    """The graph behind a SPARQL 1.1 endpoint (see the module docstring)."""

    backend = "sparql"

    def __init__(self, query_url: str, update_url: str | None = None, *, timeout: float = 10.0,
                 read_cache: int = 0, client: httpx.Client | None = None):
        self.query_url = query_url
        self.update_url = update_url or query_url
        self.http = client or httpx.Client(timeout=timeout)
        self.reads = ReadCache(read_cache)
        self.touched: list[frozenset[str] | None] = []  # per applied update: the IRIs it may have changed
        # INVARIANT: this process's updates are serialised, so a `where` count and the update that
        # follows it see the same graph as far as this process can tell (see the module docstring).
        self._write_lock = threading.RLock()
        if self._read_revision() is None:
            self._request(self.update_url, "application/sparql-update",
                          f"INSERT DATA {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> "
                          f"\"{uuid.uuid4().hex[:16]}\" }} }}")

    # -- the wire ------------------------------------------------------------------------------
    def _request(self, url: str, content_type: str, body: str, *, accept: str | None = None) -> httpx.Response:
        headers = {"Content-Type": content_type + "; charset=utf-8"}
        if accept:
            headers["Accept"] = accept
        try:
            r = self.http.post(url, content=body.encode("utf-8"), headers=headers)
        except httpx.TimeoutException as exc:
            raise GraphUnavailable(f"the SPARQL endpoint {url} did not answer in time: {exc}") from exc
        except httpx.TransportError as exc:
            raise GraphUnavailable(f"cannot reach the SPARQL endpoint {url}: {exc}") from exc
        if r.status_code >= 500 or r.status_code == 429:
            raise GraphUnavailable(f"the SPARQL endpoint {url} answered {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            if content_type == "application/sparql-update":
                raise GraphUpdateError(f"the endpoint refused the update ({r.status_code}): {r.text[:300]}",
                                       code="graph_update_failed")
            raise RulebridgeError(f"the endpoint refused the query ({r.status_code}): {r.text[:300]}",
                                  code="graph_query_failed")
        return r

    def _query(self, query: str) -> Any:
        """The results of a query: a bool for ASK, else the rows as {var: term-json}."""
        return self._results(query)[1]

    def _results(self, query: str) -> tuple[list[str], Any]:
        """(the variables of the head, the answer) of a query, from SPARQL JSON results."""
        body = self._request(self.query_url, "application/sparql-query", query, accept=RESULTS_JSON).json()
        if "boolean" in body:
            return [], bool(body["boolean"])
        return list(body.get("head", {}).get("vars", [])), body.get("results", {}).get("bindings", [])

    @staticmethod
    def _value(term: dict[str, Any]) -> Any:
        kind = term.get("type")
        if kind == "uri":
            return IRI(term["value"])
        if kind == "bnode":
            return IRI("_:" + term["value"])
        return convert_literal(term["value"], term.get("datatype"))

    def _bound(self, query: str, bindings: dict[str, Any]) -> str:
        bound = with_values(query, bindings)
        if bound is not None or not any(v is not None for v in bindings.values()):
            return bound or query
        # No outer group found: a trailing VALUES clause binds the same (evaluated last: slower).
        terms = {k: str(ox_term(v)) for k, v in sorted(bindings.items()) if v is not None}
        return f"{query}\nVALUES ({' '.join('?' + k for k in terms)}) {{ ({' '.join(terms.values())}) }}"

    # -- reads -----------------------------------------------------------------------------------
    @property
    def revision(self) -> str:
        return self._read_revision() or "unknown"

    def _read_revision(self) -> str | None:
        rows = self._query(f"SELECT ?r WHERE {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> ?r }} }}")
        return rows[0]["r"]["value"] if rows else None

    def objects(self, subject: str, predicate: str) -> list[Any]:
        return list(self.reads.fact(subject, predicate, lambda: self._load(subject, predicate)))

    def objects_of(self, subject: str, predicates: Sequence[str]) -> dict[str, list[Any]]:
        """One request for all the predicates (one HTTP round trip instead of one per predicate)."""
        return objects_together(self, subject, predicates, self._load_many)

    def _load_many(self, subject: str, wanted: set[str]) -> dict[str, tuple[Any, ...]]:
        try:
            s, ps = _iri(subject), " ".join(_iri(p) for p in sorted(wanted))
        except ValueError:
            return {}
        got: dict[str, list[Any]] = {}
        for row in self._query(f"SELECT ?p ?o WHERE {{ VALUES ?p {{ {ps} }} {s} ?p ?o }}"):
            got.setdefault(row["p"]["value"], []).append(self._value(row["o"]))
        return {p: tuple(v) for p, v in got.items()}

    def _load(self, subject: str, predicate: str) -> tuple[Any, ...]:
        try:
            s, p = _iri(subject), _iri(predicate)
        except ValueError:
            return ()
        return tuple(self._value(row["o"]) for row in self._query(f"SELECT ?o WHERE {{ {s} {p} ?o }}"))

    def has_subject(self, subject: str) -> bool:
        try:
            s = _iri(subject)
        except ValueError:
            return False
        return bool(self._query(f"ASK {{ {s} ?p ?o }}"))

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        answer: bool = self.reads.get(("ask", query, _bindings_key(bindings)),
                                      lambda: (bool(self._query(self._bound(query, bindings))),))[0]
        return answer

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        def load() -> tuple[dict[str, Any], ...]:
            names, rows = self._results(self._bound(query, bindings))
            return tuple({n: (self._value(row[n]) if n in row else None) for n in names} for row in rows)
        return [dict(row) for row in self.reads.get(("select", query, _bindings_key(bindings)), load)]

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        p = _iri(predicate)
        for row in self._query(f"SELECT ?s ?o WHERE {{ ?s {p} ?o }}"):
            yield row["s"]["value"], self._value(row["o"])

    def executed(self, key: str) -> str | None:
        rows = self._query(f"SELECT ?t WHERE {{ GRAPH <{LEDGER_GRAPH}> {{ <{execution_iri(key)}> <{EXECUTED}> ?t }} }}")
        return str(rows[0]["t"]["value"]) if rows else None

    def __len__(self) -> int:
        rows = self._query("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
        return int(rows[0]["n"]["value"]) if rows else 0

    # -- writes ----------------------------------------------------------------------------------
    def update(self, template: str, bindings: dict[str, Any], *, key: str | None = None,
               where: str | None = None, max_matches: int | None = None, prefixes: dict[str, str] | None = None,
               at: dt.datetime | None = None) -> UpdateOutcome:
        """See `GraphStore.update`: the change, the marker and the new revision in one request."""
        terms = update_terms(bindings)
        prologue = "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in sorted((prefixes or {}).items()))
        with self._write_lock:
            revision = self.revision
            if key is not None and self.executed(key) is not None:
                return UpdateOutcome(False, -1, True, revision)
            matches = -1
            if where is not None:
                try:
                    rows = self._query(f"{prologue}SELECT * WHERE {{\n{bind_variables(where, terms)}\n}}"
                                       f"{_limit(max_matches)}")
                except RulebridgeError as exc:
                    if isinstance(exc, GraphUnavailable):
                        raise
                    raise GraphUpdateError(f"the WHERE pattern cannot run: {exc}", code="graph_update_syntax") from exc
                matches = len(rows)
                if matches == 0 or (max_matches is not None and matches > max_matches):
                    return UpdateOutcome(False, matches, False, revision)
            new = next_revision(revision, template, bindings, key)
            tail = []
            if key is not None:
                marker = f"\"{_now(at)}\"^^<{XSD}dateTime>"
                tail.append(f"INSERT DATA {{ GRAPH <{LEDGER_GRAPH}> "
                            f"{{ <{execution_iri(key)}> <{EXECUTED}> {marker} }} }}")
            tail.append(f"DELETE WHERE {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> ?r }} }}")
            tail.append(f"INSERT DATA {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> "
                        f"{json.dumps(new)} }} }}")
            # INVARIANT: one request is one transaction at the endpoint: all of it or nothing.
            self._request(self.update_url, "application/sparql-update",
                          prologue + bind_variables(template, terms) + "\n;\n" + " ;\n".join(tail))
            touched = touched_iris(template, prefixes)
            self.reads.invalidate(touched)
            self.touched.append(touched)
            return UpdateOutcome(True, matches, False, new)

    def close(self) -> None:
        self.http.close()

