"""Graph stores: one protocol, an embedded Oxigraph backend (default) and an rdflib backend.

The hot path only calls `objects(subject, predicate)`: a direct index look-up, never SPARQL.
SPARQL is for declared derived facts (`ask`, `select`), always with bound parameters.
A remote SPARQL endpoint fits the same protocol (planned; see the README).

The graph is also a system of record: `update` runs one SPARQL Update (the knowledge-graph
connector's action templates) with its variables bound to values, in one transaction together
with the execution marker `<urn:rulebridge:execution:KEY> <urn:rulebridge:executed> "time"`
(graph `urn:rulebridge:ledger`) and the new revision, so `executed(KEY)` tells exactly whether
an execution took effect, and a decision made after it reports a revision of its own.

How values are bound, and why that is injection-safe:

- rdflib: `initBindings` — the values never become query text.
- Oxigraph: `Store.query` takes SEP-0007 `substitutions`, but applies them only after the whole
  pattern is evaluated (measured: a bound duplicate-invoice ASK scans every invoice), and
  `Store.update` (pyoxigraph 0.5) takes none. So a query gets its parameters as one `VALUES` row
  at the start of its outer group (joined first), and in an update each variable token
  `?name`/`$name` of the template is replaced by the value's RDF term. Either way the term is in
  N-Triples form, as pyoxigraph itself writes it (`str(NamedNode)`, `str(Literal)`).
  A `NamedNode` only exists for a valid IRI (no space, `<`, `>`, `"`, `{`, `}`, backslash...), so
  `<...>` cannot be closed early; a `Literal` escapes `"`, the backslash and line breaks, so
  `"..."` cannot be closed early. A value therefore always stays ONE term: it cannot end a
  pattern, open a group or start another operation. Variables are found by a scanner that skips
  the strings, IRIs and comments of the (trusted) template, and its output is never scanned
  again. Oxigraph's parser does not pre-expand `\\u` escapes over the whole request (spargebra
  keeps that behind its non-default `standard-unicode-escaping` feature), and even where it did,
  an escaped quote would stay escaped. `tests/act/test_connectors_kg.py` round-trips hostile
  strings through an update and checks nothing else changed; `tests/kg/test_store_queries.py`
  checks queries answer exactly as with `substitutions`, hostile literals included.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from engine.case import IRI
from engine.errors import RulebridgeError

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
META_GRAPH = "urn:rulebridge:meta"
META_SUBJECT = "urn:rulebridge:graph"
META_REVISION = "urn:rulebridge:revision"
RDF_SUFFIXES = {".ttl": "turtle", ".nt": "nt", ".nq": "nquads", ".trig": "trig", ".rdf": "xml", ".owl": "xml"}
LEDGER_GRAPH = "urn:rulebridge:ledger"
EXECUTED = "urn:rulebridge:executed"
EXECUTION_PREFIX = "urn:rulebridge:execution:"

# The tokens of a SPARQL template that can hide a `?name`: strings, IRIs and comments are skipped
# whole; a `?` right after a name, `)` or `>` is a property-path modifier, not a variable.
_SPARQL_TOKENS = re.compile(r"""
    (?P<skip>
        \"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
      | '''(?:[^'\\]|\\.|'(?!''))*'''
      | "(?:[^"\\\n\r]|\\.)*"
      | '(?:[^'\\\n\r]|\\.)*'
      | <[^<>"{}|^`\\\x00-\x20]*>
      | \#[^\n\r]*
    )
  | (?<![\w)>:?$])[?$](?P<var>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)


class GraphUpdateError(RulebridgeError):
    """A graph update that cannot run: not valid SPARQL Update, a value that is no RDF term, ..."""

    code = "graph_update"


@dataclass(frozen=True)
class UpdateOutcome:
    """What `update` did: `applied`, or why not (`duplicate`: the key was done before; else no match)."""

    applied: bool
    matches: int  # solutions of `where` seen (at most max_matches + 1); -1 when not counted
    duplicate: bool
    revision: str


def sparql_variables(text: str) -> list[tuple[str, int]]:
    """The variables of a SPARQL text with their offsets, outside strings, IRIs and comments."""
    return [(m.group("var"), m.start()) for m in _SPARQL_TOKENS.finditer(text) if m.group("var")]


def bind_variables(text: str, terms: dict[str, str]) -> str:
    """`text` with each variable named in `terms` replaced by its (already serialized) RDF term."""
    def sub(m: re.Match[str]) -> str:
        name = m.group("var")
        return terms[name] if name and name in terms else m.group(0)

    return _SPARQL_TOKENS.sub(sub, text)


def sparql_code(text: str) -> str:
    """`text` with its strings, IRIs and comments blanked out: what is left is SPARQL syntax."""
    return _SPARQL_TOKENS.sub(lambda m: " " * len(m.group(0)) if m.group("skip") else m.group(0), text)


_OUTER_GROUP = re.compile(r"\b(?:ASK|WHERE)\s*\{|^\s*SELECT\b[^{]*\{", re.I)


@functools.lru_cache(maxsize=512)
def values_position(query: str) -> int | None:
    """The offset just inside the outer group of an ASK or SELECT query (None: not found).

    Strings, IRIs and comments are blanked first, so a brace or keyword in them is not taken;
    the prologue (BASE, PREFIX) holds no brace. The first `ASK {` / `WHERE {` (or, for a
    `SELECT ... {` without WHERE, the first brace) opens the outer group: a sub-select sits
    inside it."""
    code = sparql_code(query)  # IRIs blanked too: a prologue is keywords, prefix names and spaces
    body = re.sub(r"^(?:\s+|(?:PREFIX\s+[\w.-]*:|BASE)(?=\s))*", "", code, flags=re.I)
    start = len(code) - len(body)
    m = _OUTER_GROUP.search(body)
    if m is None or not re.match(r"(?:ASK|SELECT)\b", body, re.I):
        return None
    return start + m.end()


def execution_iri(key: str) -> str:
    """The IRI of an execution's marker (the key percent-encoded: any key gives one valid IRI)."""
    return EXECUTION_PREFIX + urllib.parse.quote(key, safe="")


def decimal_lexical(v: float) -> str:
    """A finite float as an xsd:decimal lexical form (`1e-07` is not one; `0.0000001` is)."""
    if not math.isfinite(v):
        raise GraphUpdateError(f"`{v}` is not a finite number", code="graph_bad_value")
    text = format(decimal.Decimal(repr(v)), "f")
    return text if "." in text else text + ".0"


def next_revision(revision: str, template: str, bindings: dict[str, Any], key: str | None) -> str:
    """The revision after an update: the previous one hashed with the update and its key (deterministic)."""
    body = json.dumps({k: [type(v).__name__, str(v)] for k, v in sorted(bindings.items())}, sort_keys=True)
    h = hashlib.sha256()
    for part in (revision, template, body, key or ""):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


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

    backend: str

    @property
    def revision(self) -> str:
        """The id of the graph's current state (reported with every decision)."""

    def objects(self, subject: str, predicate: str) -> list[Any]:
        """The objects of `subject predicate ?o` (a direct index look-up)."""

    def objects_of(self, subject: str, predicates: Sequence[str]) -> dict[str, list[Any]]:
        """The objects of several predicates of one subject (what `objects` gives for each), read
        together where the backend can: one look-up for all the predicates a case needs of an entity."""

    def has_subject(self, subject: str) -> bool:
        """Whether any triple has this subject."""

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        """Run a SPARQL ASK with variables bound to values (never string-built)."""

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        """Run a SPARQL SELECT with variables bound to values."""

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        """Every `(subject, object)` of one predicate (for graph algorithms, built once per revision)."""

    def update(self, template: str, bindings: dict[str, Any], *, key: str | None = None,
               where: str | None = None, max_matches: int | None = None, prefixes: dict[str, str] | None = None,
               at: dt.datetime | None = None) -> UpdateOutcome:
        """Run one SPARQL Update with variables bound to values, in one transaction (all or nothing).

        With `key`: refused as a duplicate if `executed(key)`, else the execution marker is written
        in the same transaction. With `where` (the update's WHERE pattern): refused, nothing
        written, unless it has between 1 and `max_matches` solutions. Applied → the revision changes.
        Raises `GraphUpdateError` for an update that is not valid or a value that is no RDF term.
        """

    def executed(self, key: str) -> str | None:
        """When the execution with `key` took effect (ISO time), or None if it did not."""

    def __len__(self) -> int:
        """The number of triples."""


_TERM = r"(?:\?\w+|\$\w+|<[^>\s]*>|[A-Za-z][\w.-]*:[\w.-]*|:[\w.-]+|\"[^\"]*\"|\d[\d.]*|true|false|\[)"
# A variable where a predicate goes: `subject ?p object`, or `; ?p object` in a predicate list.
_VARIABLE_PREDICATE = re.compile(rf"(?:{_TERM}|;)\s+[?$]\w+\s+{_TERM}")
_IRI = re.compile(r"<([^>\s]*)>")
_PNAME = re.compile(r"(?<![\w?$<\"])([A-Za-z][\w.-]*)?:([\w.-]+)")
_DECLARED = re.compile(r"PREFIX\s+([A-Za-z][\w.-]*)?:\s*<([^>]*)>", re.I)


def touched_iris(template: str, prefixes: dict[str, str] | None) -> frozenset[str] | None:
    """Every IRI an update template names (prefixed names expanded; `a` is rdf:type): a superset
    of the predicates it can change. None when a variable stands where a predicate goes — then
    any predicate may have changed. Caches keyed by predicate (`engine.kg.derived`) use this to
    survive updates that do not touch them."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', template)  # strings out (they may hold `<`, `#`, `?`)
    out = set(_IRI.findall(text))
    text = re.sub(r"#[^\n]*", " ", _IRI.sub("<>", text))  # then comments (an IRI may hold `#`)
    if _VARIABLE_PREDICATE.search(text):
        return None
    declared = dict(_DECLARED.findall(template))
    known = {**(prefixes or {}), **{(p or ""): iri for p, iri in declared.items()}}
    for prefix, local in _PNAME.findall(text):
        if (prefix or "") not in known:
            return None  # a name we cannot expand: assume the worst
        out.add(known[prefix or ""] + local)
    if re.search(r"(?<![\w?$:])a(?![\w:])", text):
        out.add(RDF_TYPE)
    return frozenset(out)


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise GraphUpdateError(f"`{name}` is not a variable name", code="graph_bad_value")


def _now(at: dt.datetime | None) -> str:
    return (at or dt.datetime.now(dt.UTC)).isoformat()


def _limit(max_matches: int | None) -> str:
    return "" if max_matches is None else f" LIMIT {int(max_matches) + 1}"


def ox_term(v: Any) -> Any:
    """A value as one pyoxigraph term: IRIs (and entities) as named nodes, typed literals otherwise."""
    import pyoxigraph as ox

    if isinstance(v, IRI) or hasattr(v, "iri"):
        return ox.NamedNode(getattr(v, "iri", v))
    if isinstance(v, bool):
        return ox.Literal("true" if v else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(v, int):
        return ox.Literal(str(v), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(v, float):
        return ox.Literal(decimal_lexical(v), datatype=ox.NamedNode(XSD + "decimal"))
    if isinstance(v, dt.datetime):
        return ox.Literal(v.isoformat(), datatype=ox.NamedNode(XSD + "dateTime"))
    if isinstance(v, dt.date):
        return ox.Literal(v.isoformat(), datatype=ox.NamedNode(XSD + "date"))
    return ox.Literal(str(v))


def update_terms(bindings: dict[str, Any]) -> dict[str, str]:
    """Each value as one RDF term in N-Triples form (the module docstring says why that is safe)."""
    out = {}
    for k, v in bindings.items():
        _check_name(k)
        if v is None:
            continue  # left unbound: the template triples that use it are not written
        if not isinstance(v, (str, int, float, dt.date)) and not hasattr(v, "iri"):
            raise GraphUpdateError(f"`{k}`: a {type(v).__name__} value cannot be bound in a graph update",
                                   code="graph_bad_value")
        try:
            out[k] = str(ox_term(v))
        except (ValueError, UnicodeError) as exc:  # an invalid IRI, a lone surrogate
            raise GraphUpdateError(f"`{k}`: not an RDF term: {exc}", code="graph_bad_value") from exc
    return out


def with_values(query: str, bindings: dict[str, Any]) -> str | None:
    """`query` with its bound parameters as one `VALUES` row at the start of its outer group
    (None: no outer group found, or nothing to bind). Each value is one term written by pyoxigraph."""
    at = values_position(query)
    terms = {k: v for k, v in bindings.items() if v is not None}
    if at is None or not terms:
        return None
    names = sorted(terms)
    for k in names:
        _check_name(k)
    row = " ".join(str(ox_term(terms[k])) for k in names)
    return query[:at] + f" VALUES ({' '.join('?' + k for k in names)}) {{ ({row}) }} " + query[at:]


class ReadCache:
    """What the graph answered at its current revision: `(subject, predicate)` look-ups (`fact`)
    and named queries with their bindings (`get`).

    Decisions read the same entities again and again (the vendor of every invoice, the approval
    chain, the facts a decision is re-verified on before it executes): a look-up costs ~8 µs in
    memory and ~40 µs on disk, a named query ~50 µs, a hit here ~0.3 µs.

    An update of the store calls `invalidate(predicates)` after it committed, with the predicates
    it may have changed (`touched_iris`; None: any): the look-ups of those predicates are dropped
    and every other look-up stays (an executed action no longer empties the cache for every other
    case); named queries may read anything, so all of them are dropped. A look-up that raced with
    an update cannot leave a stale entry: it is kept only if no invalidation happened since it
    began (`epoch`). At most `size` entries (then it starts over), so memory stays flat;
    `size = 0` turns it off."""

    __slots__ = ("_by_pred", "_lock", "epoch", "facts", "queries", "size")

    def __init__(self, size: int = 100_000):
        self.size = size
        self.facts: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.queries: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._by_pred: dict[str, list[tuple[str, str]]] = {}  # predicate -> its keys in `facts`
        self.epoch = 0  # moved by every invalidation
        self._lock = threading.Lock()

    def fact(self, subject: str, predicate: str, load: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """The objects kept for `(subject, predicate)`, else `load()` (kept when there is room)."""
        found = self.facts.get((subject, predicate))
        if found is None:
            epoch = self.epoch
            found = load()
            self.keep(subject, predicate, found, epoch)
        return found

    def keep(self, subject: str, predicate: str, values: tuple[Any, ...], epoch: int) -> None:
        """Keep a look-up read since `epoch` (not if an invalidation came in between)."""
        if not self.size:
            return
        with self._lock:
            if self.epoch != epoch:
                return
            if len(self.facts) + len(self.queries) >= self.size:
                self.facts, self.queries, self._by_pred = {}, {}, {}
            key = (subject, predicate)
            if key not in self.facts:
                self.facts[key] = values
                self._by_pred.setdefault(predicate, []).append(key)

    def get(self, key: tuple[Any, ...], load: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
        """The answer kept for a named query's `key`, else `load()` (kept when there is room)."""
        m = self.queries
        found = m.get(key)
        if found is None:
            found = load()
            if self.size:  # into the map it started with: an update in between has replaced it
                if len(m) + len(self.facts) >= self.size:
                    m.clear()
                m[key] = found
        return found

    def invalidate(self, predicates: frozenset[str] | None) -> None:
        """After an update: drop the look-ups of `predicates` (all of them for None) and every query."""
        with self._lock:
            self.epoch += 1
            self.queries = {}
            if predicates is None:
                self.facts, self._by_pred = {}, {}
                return
            for p in predicates:
                for key in self._by_pred.pop(p, ()):
                    self.facts.pop(key, None)

    def reset(self) -> None:
        """Drop everything."""
        self.invalidate(None)


# A subject with more triples than this is read predicate by predicate: one scan of all its
# triples would cost more than the look-ups it saves (a hub entity with thousands of links).
SCAN_LIMIT = 256


def _bindings_key(bindings: dict[str, Any]) -> tuple[Any, ...]:
    """Bindings as a key: an IRI and a string of the same text are different values."""
    return tuple(sorted((k, type(v).__name__, str(v)) for k, v in bindings.items() if v is not None))


def objects_together(store: Any, subject: str, predicates: Sequence[str],
                     load: Callable[[str, set[str]], dict[str, tuple[Any, ...]] | None]) -> dict[str, list[Any]]:
    """`objects_of` over a store's read cache: what is kept comes from the cache, the rest (two
    predicates or more) from one `load(subject, predicates)`, each answer then kept on its own;
    one predicate, or a `load` that gives up (None), goes through `store.objects`."""
    reads: ReadCache = store.reads
    out: dict[str, list[Any]] = {}
    missing: list[str] = []
    for p in predicates:
        found = reads.facts.get((subject, p))
        if found is None:
            missing.append(p)
        else:
            out[p] = list(found)
    if len(missing) > 1:
        epoch = reads.epoch
        loaded = load(subject, set(missing))
        if loaded is not None:
            for p in missing:
                values = loaded.get(p, ())
                reads.keep(subject, p, values, epoch)
                out[p] = list(values)
            return out
    for p in missing:
        out[p] = store.objects(subject, p)
    return out


class OxigraphStore:
    """The default backend: pyoxigraph, in memory or on disk (RocksDB)."""

    backend = "oxigraph"

    def __init__(self, store: Any, revision: str, *, read_cache: int = 100_000):
        import pyoxigraph as ox

        self._ox = ox
        self.store = store
        self.revision = revision
        self.reads = ReadCache(read_cache)
        self.on_disk = False  # True for a store opened or built at a path (`open`, `from_files(path=...)`)
        self.touched: list[frozenset[str] | None] = []  # per applied update: the IRIs it may have changed
        self._pred_cache: dict[str, Any] = {}
        # INVARIANT: the updates of one store are serialised, so a `where` count and the update that
        # follows it see the same graph (an on-disk store is opened read-write by one process only).
        self._write_lock = threading.RLock()

    @classmethod
    def from_files(cls, files: list[Path], *, path: Path | None = None) -> OxigraphStore:
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
        out = cls(store, revision)
        out.on_disk = path is not None
        return out

    @classmethod
    def open(cls, path: Path) -> OxigraphStore:
        """Open an existing on-disk store built by `from_files(..., path=...)`."""
        import pyoxigraph as ox

        store = ox.Store(str(path))
        revision = "unknown"
        for q in store.quads_for_pattern(ox.NamedNode(META_SUBJECT), ox.NamedNode(META_REVISION), None,
                                         ox.NamedNode(META_GRAPH)):
            if isinstance(q.object, ox.Literal):  # as `from_files` writes it
                revision = q.object.value
        out = cls(store, revision)
        out.on_disk = True
        return out

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
        return list(self.reads.fact(subject, predicate, lambda: self._load(subject, predicate)))

    def _load(self, subject: str, predicate: str) -> tuple[Any, ...]:
        try:
            s = self._ox.NamedNode(subject)
        except ValueError:
            return ()
        return tuple(self._value(q.object) for q in self.store.quads_for_pattern(s, self._pred(predicate), None, None))

    def objects_of(self, subject: str, predicates: Sequence[str]) -> dict[str, list[Any]]:
        return objects_together(self, subject, predicates, self._scan)

    def _scan(self, subject: str, wanted: set[str]) -> dict[str, tuple[Any, ...]] | None:
        """The objects of `wanted` predicates of `subject`, from one scan of its triples (in the
        order per predicate a look-up gives); None past `SCAN_LIMIT` triples."""
        try:
            s = self._ox.NamedNode(subject)
        except ValueError:
            return {}
        got: dict[str, list[Any]] = {}
        for n, q in enumerate(self.store.quads_for_pattern(s, None, None, None)):
            if n >= SCAN_LIMIT:
                return None
            p = q.predicate.value
            if p in wanted:
                got.setdefault(p, []).append(self._value(q.object))
        return {p: tuple(v) for p, v in got.items()}

    def has_subject(self, subject: str) -> bool:
        try:
            s = self._ox.NamedNode(subject)
        except ValueError:
            return False
        return next(iter(self.store.quads_for_pattern(s, None, None, None)), None) is not None

    def update(self, template: str, bindings: dict[str, Any], *, key: str | None = None,
               where: str | None = None, max_matches: int | None = None, prefixes: dict[str, str] | None = None,
               at: dt.datetime | None = None) -> UpdateOutcome:
        ox = self._ox
        terms = update_terms(bindings)
        request = bind_variables(template, terms)
        with self._write_lock:
            if key is not None and self.executed(key) is not None:
                return UpdateOutcome(False, -1, True, self.revision)
            matches = -1
            if where is not None:
                try:
                    query = f"SELECT * WHERE {{\n{bind_variables(where, terms)}\n}}{_limit(max_matches)}"
                    rows = self.store.query(query, prefixes=prefixes or None)
                    matches = sum(1 for _ in rows)
                except (SyntaxError, RuntimeError) as exc:
                    raise GraphUpdateError(f"the WHERE pattern cannot run: {exc}", code="graph_update_syntax") from exc
                if matches == 0 or (max_matches is not None and matches > max_matches):
                    return UpdateOutcome(False, matches, False, self.revision)
            revision = next_revision(self.revision, template, bindings, key)
            tail = []
            if key is not None:
                marker = ox.Literal(_now(at), datatype=ox.NamedNode(XSD + "dateTime"))
                tail.append(f"INSERT DATA {{ GRAPH <{LEDGER_GRAPH}> {{ {ox.NamedNode(execution_iri(key))} "
                            f"<{EXECUTED}> {marker} }} }}")
            tail.append(f"DELETE WHERE {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> ?r }} }}")
            tail.append(f"INSERT DATA {{ GRAPH <{META_GRAPH}> {{ <{META_SUBJECT}> <{META_REVISION}> "
                        f"{ox.Literal(revision)} }} }}")
            try:
                # INVARIANT: one request is one transaction: the change, the marker and the new revision
                # are written together or not at all (pyoxigraph: "either the full operation succeeds,
                # or nothing is written to the database").
                self.store.update(request + "\n;\n" + " ;\n".join(tail), prefixes=prefixes or None)
            except SyntaxError as exc:
                raise GraphUpdateError(f"not a valid SPARQL Update: {exc}", code="graph_update_syntax") from exc
            except RuntimeError as exc:
                raise GraphUpdateError(f"the update failed: {exc}", code="graph_update_failed") from exc
            self.revision = revision
            touched = touched_iris(template, prefixes)
            self.reads.invalidate(touched)
            self.touched.append(touched)
            return UpdateOutcome(True, matches, False, revision)

    def executed(self, key: str) -> str | None:
        ox = self._ox
        for q in self.store.quads_for_pattern(ox.NamedNode(execution_iri(key)), ox.NamedNode(EXECUTED), None,
                                              ox.NamedNode(LEDGER_GRAPH)):
            return str(q.object.value)
        return None

    def _subs(self, bindings: dict[str, Any]) -> dict[Any, Any]:
        return {self._ox.Variable(k): ox_term(v) for k, v in bindings.items() if v is not None}

    def _query(self, query: str, bindings: dict[str, Any]) -> Any:
        """Run a named query with its parameters bound.

        pyoxigraph 0.5 applies `substitutions` after evaluating the whole pattern (the duplicate-
        invoice ASK scans every invoice: ~0.9 ms on the example graph), so where the query's outer
        group can be found the same bindings go in as a `VALUES` block at its start, which the
        planner joins first (~50 µs). Each value is one RDF term written by pyoxigraph, exactly as
        in `update` (the module docstring says why that cannot inject); `tests/kg/test_store_queries.py`
        checks both ways give the same answers."""
        bound = with_values(query, bindings)
        if bound is None:
            return self.store.query(query, substitutions=self._subs(bindings), use_default_graph_as_union=True)
        return self.store.query(bound, use_default_graph_as_union=True)

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        answer: bool = self.reads.get(("ask", query, _bindings_key(bindings)),
                                      lambda: (bool(self._query(query, bindings)),))[0]
        return answer

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(row) for row in self.reads.get(("select", query, _bindings_key(bindings)),
                                                    lambda: self._select(query, bindings))]

    def _select(self, query: str, bindings: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        res = self._query(query, bindings)
        names = [v.value for v in res.variables]
        return tuple({n: (self._value(sol[n]) if sol[n] is not None else None) for n in names} for sol in res)

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        for q in self.store.quads_for_pattern(None, self._pred(predicate), None, None):
            yield q.subject.value, self._value(q.object)

    def __len__(self) -> int:
        return len(self.store)


class RdflibStore:
    """A plain rdflib graph: for small workspaces and what pyshacl validates.

    `graph` is the default graph of an rdflib `Dataset` (`dataset`), which also keeps the
    execution markers in their own named graph.
    """

    backend = "rdflib"

    def __init__(self, graph: Any, revision: str, dataset: Any = None, *, read_cache: int = 100_000):
        from rdflib import Dataset, URIRef

        if dataset is None:  # a bare graph: its triples become the default graph of a new dataset
            dataset = Dataset()
            dataset.default_graph.addN((s, p, o, dataset.default_graph) for s, p, o in graph)
            graph = dataset.default_graph
        self.dataset = dataset
        self.graph = graph
        self.revision = revision
        self.reads = ReadCache(read_cache)
        self.touched: list[frozenset[str] | None] = []  # per applied update: the IRIs it may have changed
        self._uri = URIRef
        self._write_lock = threading.RLock()

    @classmethod
    def from_files(cls, files: list[Path]) -> RdflibStore:
        from rdflib import Dataset

        ds = Dataset()
        for f in files:
            ds.default_graph.parse(str(f), format=RDF_SUFFIXES.get(f.suffix, "turtle"))
        return cls(ds.default_graph, files_revision(files), ds)

    def _value(self, term: Any) -> Any:
        from rdflib import Literal, URIRef

        if isinstance(term, URIRef):
            return IRI(str(term))
        if isinstance(term, Literal):
            return convert_literal(str(term), str(term.datatype) if term.datatype else None)
        return IRI("_:" + str(term))

    def objects(self, subject: str, predicate: str) -> list[Any]:
        return list(self.reads.fact(subject, predicate, lambda: self._load(subject, predicate)))

    def _load(self, subject: str, predicate: str) -> tuple[Any, ...]:
        return tuple(self._value(o) for o in self.graph.objects(self._uri(subject), self._uri(predicate)))

    def objects_of(self, subject: str, predicates: Sequence[str]) -> dict[str, list[Any]]:
        return {p: self.objects(subject, p) for p in predicates}  # rdflib's look-ups are dict reads

    def has_subject(self, subject: str) -> bool:
        return next(iter(self.graph.predicate_objects(self._uri(subject))), None) is not None

    def _term(self, v: Any) -> Any:
        from rdflib import Literal
        from rdflib.namespace import XSD as RXSD

        if isinstance(v, IRI) or hasattr(v, "iri"):
            return self._uri(getattr(v, "iri", v))
        if isinstance(v, float):
            return Literal(decimal_lexical(v), datatype=RXSD.decimal)
        return Literal(v)

    def _update_terms(self, bindings: dict[str, Any]) -> dict[str, Any]:
        from engine.lang.payload import is_iri

        out = {}
        for k, v in bindings.items():
            _check_name(k)
            if v is None:
                continue
            if not isinstance(v, (str, int, float, dt.date)) and not hasattr(v, "iri"):
                raise GraphUpdateError(f"`{k}`: a {type(v).__name__} value cannot be bound in a graph update",
                                       code="graph_bad_value")
            if (isinstance(v, IRI) or hasattr(v, "iri")) and not is_iri(str(getattr(v, "iri", v))):
                raise GraphUpdateError(f"`{k}`: `{v}` is not an IRI", code="graph_bad_value")
            out[k] = self._term(v)
        return out

    def update(self, template: str, bindings: dict[str, Any], *, key: str | None = None,
               where: str | None = None, max_matches: int | None = None, prefixes: dict[str, str] | None = None,
               at: dt.datetime | None = None) -> UpdateOutcome:
        """See `GraphStore.update`. rdflib has no transactions, so it runs exactly ONE operation per
        request: rdflib evaluates the whole WHERE of a DELETE/INSERT before it changes anything,
        so one operation fails before its first write or not at all. Several are refused."""
        from rdflib import Literal, URIRef
        from rdflib.namespace import XSD as RXSD
        from rdflib.plugins.sparql import prepareQuery, prepareUpdate

        terms = self._update_terms(bindings)
        try:
            prepared = prepareUpdate(template, initNs=prefixes or {})
        except Exception as exc:  # pyparsing's ParseException and whatever the translation raises
            raise GraphUpdateError(f"not a valid SPARQL Update: {exc}", code="graph_update_syntax") from exc
        if len(prepared.algebra) != 1:
            raise GraphUpdateError(f"the rdflib backend runs one update operation per request, not "
                                   f"{len(prepared.algebra)}", code="graph_update_syntax")
        with self._write_lock:
            if key is not None and self.executed(key) is not None:
                return UpdateOutcome(False, -1, True, self.revision)
            matches = -1
            if where is not None:
                used = {name for name, _ in sparql_variables(where)}
                try:
                    q = prepareQuery(f"SELECT * WHERE {{\n{where}\n}}{_limit(max_matches)}", initNs=prefixes or {})
                    matches = len(list(self.dataset.query(q, initBindings={k: v for k, v in terms.items()
                                                                           if k in used})))
                except Exception as exc:
                    raise GraphUpdateError(f"the WHERE pattern cannot run: {exc}", code="graph_update_syntax") from exc
                if matches == 0 or (max_matches is not None and matches > max_matches):
                    return UpdateOutcome(False, matches, False, self.revision)
            revision = next_revision(self.revision, template, bindings, key)
            try:
                self.dataset.update(prepared, initBindings=terms)
            except Exception as exc:
                self.reads.reset()  # it should have failed before its first write; do not bet on it
                raise GraphUpdateError(f"the update failed: {exc}", code="graph_update_failed") from exc
            if key is not None:
                self.dataset.graph(URIRef(LEDGER_GRAPH)).add(
                    (URIRef(execution_iri(key)), URIRef(EXECUTED), Literal(_now(at), datatype=RXSD.dateTime)))
            self.revision = revision
            touched = touched_iris(template, prefixes)
            self.reads.invalidate(touched)
            self.touched.append(touched)
            return UpdateOutcome(True, matches, False, revision)

    def executed(self, key: str) -> str | None:
        from rdflib import URIRef

        v = self.dataset.graph(URIRef(LEDGER_GRAPH)).value(URIRef(execution_iri(key)), URIRef(EXECUTED))
        return str(v) if v is not None else None

    def ask(self, query: str, bindings: dict[str, Any]) -> bool:
        def load() -> tuple[bool]:
            res = self.graph.query(query, initBindings={k: self._term(v) for k, v in bindings.items() if v is not None})
            return (bool(res.askAnswer),)
        answer: bool = self.reads.get(("ask", query, _bindings_key(bindings)), load)[0]
        return answer

    def select(self, query: str, bindings: dict[str, Any]) -> list[dict[str, Any]]:
        def load() -> tuple[dict[str, Any], ...]:
            res = self.graph.query(query, initBindings={k: self._term(v) for k, v in bindings.items() if v is not None})
            names = [str(v) for v in res.vars or []]
            return tuple({n: (self._value(row[i]) if row[i] is not None else None) for i, n in enumerate(names)}
                         for row in res)
        return [dict(row) for row in self.reads.get(("select", query, _bindings_key(bindings)), load)]

    def pairs(self, predicate: str) -> Iterator[tuple[str, Any]]:
        for s, o in self.graph.subject_objects(self._uri(predicate)):
            yield str(s), self._value(o)

    def __len__(self) -> int:
        return len(self.graph)


BACKENDS = ("oxigraph", "oxigraph-disk", "rdflib", "sparql")


def open_store(data_dir: Path, *, backend: str = "oxigraph", path: Path | None = None,
               read_cache: int | None = None, endpoint: dict[str, Any] | None = None) -> GraphStore:
    """Open the workspace graph: every RDF file under `data_dir` on an embedded backend, or the
    remote SPARQL endpoint described by `endpoint` (`query_url`, `update_url`, `timeout`), with a
    `ReadCache` of `read_cache` answers (None: 100,000 embedded, 0 remote; 0: none)."""
    if backend == "sparql":
        from .remote import SparqlStore

        ep = dict(endpoint or {})
        if not ep.get("query_url"):
            raise ValueError("the sparql backend needs `query_url` (and `update_url` to execute actions)")
        return SparqlStore(str(ep["query_url"]), str(ep.get("update_url") or "") or None,
                           timeout=float(ep.get("timeout", 10.0)), read_cache=read_cache or 0)
    files = data_files(data_dir)
    store: OxigraphStore | RdflibStore
    if backend == "rdflib":
        store = RdflibStore.from_files(files)
    elif backend == "oxigraph-disk":
        if path is None:
            raise ValueError("the on-disk Oxigraph backend needs a store path")
        store = OxigraphStore.open(path) if path.exists() and any(path.iterdir()) else \
            OxigraphStore.from_files(files, path=path)
    else:
        store = OxigraphStore.from_files(files)
    store.reads.size = 100_000 if read_cache is None else read_cache
    return store
