"""Graph stores: one protocol, an embedded Oxigraph backend (default) and an rdflib backend.

The hot path only calls `objects(subject, predicate)`: a direct index look-up, never SPARQL.
SPARQL is for declared derived facts (`ask`, `select`), always with bound parameters.
A remote SPARQL endpoint fits the same protocol (planned; see the README).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from engine.model import IRI

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
META_GRAPH = "urn:rulebridge:meta"
META_SUBJECT = "urn:rulebridge:graph"
META_REVISION = "urn:rulebridge:revision"
RDF_SUFFIXES = {".ttl": "turtle", ".nt": "nt", ".nq": "nquads", ".trig": "trig", ".rdf": "xml", ".owl": "xml"}


def convert_literal(lexical: str, datatype: str | None) -> Any:
    """An RDF literal as the Python value the rules compare: numbers, booleans, dates, strings."""
    if not datatype or datatype in (XSD + "string", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"):
        return lexical
    local = datatype[len(XSD):] if datatype.startswith(XSD) else ""
    try:
        if local in ("decimal", "double", "float"):
            return float(lexical)
        if local in ("integer", "int", "long", "short", "nonNegativeInteger", "positiveInteger",
                     "nonPositiveInteger", "negativeInteger", "unsignedInt", "unsignedLong"):
            return int(lexical)
        if local == "boolean":
            return lexical.strip() in ("true", "1")
        if local == "date":
            return dt.date.fromisoformat(lexical[:10])
        if local == "dateTime":
            return dt.date.fromisoformat(lexical[:10])
    except ValueError:
        return None  # ill-typed literal: unknown, so no rule fires on it
    return lexical


def files_revision(paths: Iterable[Path]) -> str:
    """A content hash over data files: the graph revision of a workspace loaded from disk."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def data_files(folder: Path) -> list[Path]:
    """The RDF files of a folder, recursively, in a stable order."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in RDF_SUFFIXES and p.is_file())


@runtime_checkable
class GraphStore(Protocol):
    """What the engine needs from a graph. Values: `IRI` for nodes, Python values for literals."""

    revision: str
    backend: str

    def objects(self, subject: str, predicate: str) -> list[Any]:
        """The objects of `subject predicate ?o` (a direct index look-up)."""

    def has_subject(self, subject: str) -> bool:
        """Whether any triple has this subject."""

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        """Run a SPARQL ASK with variables bound to values (never string-built)."""

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        """Run a SPARQL SELECT with variables bound to values."""

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        """Every `(subject, object)` of one predicate (for graph algorithms, built once per revision)."""

    def __len__(self) -> int:
        """The number of triples."""


class OxigraphStore:
    """The default backend: pyoxigraph, in memory or on disk (RocksDB)."""

    backend = "oxigraph"

    def __init__(self, store: Any, revision: str):
        import pyoxigraph as ox

        self._ox = ox
        self.store = store
        self.revision = revision
        self._pred_cache: dict[str, Any] = {}

    @classmethod
    def from_files(cls, files: list[Path], *, path: Path | None = None) -> "OxigraphStore":
        """Load RDF files into a new store (in memory, or a new on-disk store at `path`)."""
        import pyoxigraph as ox

        store = ox.Store(str(path)) if path else ox.Store()
        revision = files_revision(files)
        for f in files:
            fmt = ox.RdfFormat.from_extension(f.suffix.lstrip(".")) or ox.RdfFormat.TURTLE
            if path:
                store.bulk_load(path=str(f), format=fmt)
            else:
                store.load(path=str(f), format=fmt)
        store.add(ox.Quad(ox.NamedNode(META_SUBJECT), ox.NamedNode(META_REVISION), ox.Literal(revision),
                          ox.NamedNode(META_GRAPH)))
        if path:
            store.flush()
        return cls(store, revision)

    @classmethod
    def open(cls, path: Path) -> "OxigraphStore":
        """Open an existing on-disk store built by `from_files(..., path=...)`."""
        import pyoxigraph as ox

        store = ox.Store(str(path))
        revision = "unknown"
        for q in store.quads_for_pattern(ox.NamedNode(META_SUBJECT), ox.NamedNode(META_REVISION), None,
                                         ox.NamedNode(META_GRAPH)):
            revision = q.object.value
        return cls(store, revision)

    def _pred(self, iri: str) -> Any:
        p = self._pred_cache.get(iri)
        if p is None:
            p = self._pred_cache[iri] = self._ox.NamedNode(iri)
        return p

    def _value(self, term: Any) -> Any:
        if type(term) is self._ox.NamedNode:
            return IRI(term.value)
        if type(term) is self._ox.Literal:
            return convert_literal(term.value, term.datatype.value if term.datatype else None)
        return IRI("_:" + term.value)

    def objects(self, subject: str, predicate: str) -> list[Any]:
        ox = self._ox
        try:
            s = ox.NamedNode(subject)
        except ValueError:
            return []
        return [self._value(q.object) for q in self.store.quads_for_pattern(s, self._pred(predicate), None, None)]

    def has_subject(self, subject: str) -> bool:
        try:
            s = self._ox.NamedNode(subject)
        except ValueError:
            return False
        return next(iter(self.store.quads_for_pattern(s, None, None, None)), None) is not None

    def _term(self, v: Any) -> Any:
        ox = self._ox
        if isinstance(v, IRI) or hasattr(v, "iri"):
            return ox.NamedNode(getattr(v, "iri", v))
        if isinstance(v, bool):
            return ox.Literal("true" if v else "false", datatype=ox.NamedNode(XSD + "boolean"))
        if isinstance(v, int):
            return ox.Literal(str(v), datatype=ox.NamedNode(XSD + "integer"))
        if isinstance(v, float):
            return ox.Literal(repr(v), datatype=ox.NamedNode(XSD + "decimal"))
        if isinstance(v, dt.date):
            return ox.Literal(v.isoformat(), datatype=ox.NamedNode(XSD + "date"))
        return ox.Literal(str(v))

    def _subs(self, bindings: dict[str, Any]) -> dict[Any, Any]:
        return {self._ox.Variable(k): self._term(v) for k, v in bindings.items() if v is not None}

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        return bool(self.store.query(query, substitutions=self._subs(bindings), use_default_graph_as_union=True))

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        res = self.store.query(query, substitutions=self._subs(bindings), use_default_graph_as_union=True)
        names = [v.value for v in res.variables]
        for sol in res:
            out.append({n: (self._value(sol[n]) if sol[n] is not None else None) for n in names})
        return out

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        for q in self.store.quads_for_pattern(None, self._pred(predicate), None, None):
            yield q.subject.value, self._value(q.object)

    def __len__(self) -> int:
        return len(self.store)


class RdflibStore:
    """A plain rdflib graph: for small workspaces and what pyshacl validates."""

    backend = "rdflib"

    def __init__(self, graph: Any, revision: str):
        from rdflib import URIRef

        self.graph = graph
        self.revision = revision
        self._uri = URIRef

    @classmethod
    def from_files(cls, files: list[Path]) -> "RdflibStore":
        from rdflib import Graph

        g = Graph()
        for f in files:
            g.parse(str(f), format=RDF_SUFFIXES.get(f.suffix, "turtle"))
        return cls(g, files_revision(files))

    def _value(self, term: Any) -> Any:
        from rdflib import Literal, URIRef

        if isinstance(term, URIRef):
            return IRI(str(term))
        if isinstance(term, Literal):
            return convert_literal(str(term), str(term.datatype) if term.datatype else None)
        return IRI("_:" + str(term))

    def objects(self, subject: str, predicate: str) -> list[Any]:
        return [self._value(o) for o in self.graph.objects(self._uri(subject), self._uri(predicate))]

    def has_subject(self, subject: str) -> bool:
        return next(iter(self.graph.predicate_objects(self._uri(subject))), None) is not None

    def _term(self, v: Any) -> Any:
        from rdflib import Literal

        if isinstance(v, IRI) or hasattr(v, "iri"):
            return self._uri(getattr(v, "iri", v))
        return Literal(v)

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        res = self.graph.query(query, initBindings={k: self._term(v) for k, v in bindings.items() if v is not None})
        return bool(res.askAnswer)

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        res = self.graph.query(query, initBindings={k: self._term(v) for k, v in bindings.items() if v is not None})
        names = [str(v) for v in res.vars or []]
        return [{n: (self._value(row[i]) if row[i] is not None else None) for i, n in enumerate(names)} for row in res]

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        for s, o in self.graph.subject_objects(self._uri(predicate)):
            yield str(s), self._value(o)

    def __len__(self) -> int:
        return len(self.graph)


def open_store(data_dir: Path, *, backend: str = "oxigraph", path: Path | None = None) -> GraphStore:
    """Open the workspace graph: every RDF file under `data_dir`, on the chosen backend."""
    files = data_files(data_dir)
    if backend == "rdflib":
        return RdflibStore.from_files(files)
    if backend == "oxigraph-disk":
        if path is None:
            raise ValueError("the on-disk Oxigraph backend needs a store path")
        if path.exists() and any(path.iterdir()):
            return OxigraphStore.open(path)
        return OxigraphStore.from_files(files, path=path)
    return OxigraphStore.from_files(files)
