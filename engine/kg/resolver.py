"""Fact resolution: walk exactly the planned paths with direct look-ups, recording every read.

The plan is a trie per root (`case`, then each derived fact) built by the compiler from
the paths the rules, parameters and guards read. Each `(entity, property)` is read at most
once per case; every read is kept for provenance.
"""

from __future__ import annotations

from typing import Any

from engine.case import IRI, Entity, Provenance
from engine.lang.compiler import CompiledRuleset, TrieEdge
from engine.lang.semantics import TODAY

from .derived import GRAPH_KEY, GraphContext


class Reads:
    """The raw reads of one case: `(subject, predicate, values)`; provenance is built on demand."""

    __slots__ = ("items", "queries")

    def __init__(self) -> None:
        self.items: list[tuple[str, str, list[Any]]] = []
        self.queries: list[dict[str, Any]] = []

    def provenance(self) -> list[Provenance]:
        out = []
        for s, p, values in self.items:
            for v in values:
                o = (v.iri if type(v) is Entity else "true" if v is True else "false" if v is False
                     else v.isoformat() if hasattr(v, "isoformat") else str(v))
                out.append(Provenance(s, p, o))
        return out


class _Walker:
    __slots__ = ("entities", "reads", "store")

    def __init__(self, store: Any, reads: Reads):
        self.store = store
        self.entities: dict[str, Entity] = {}
        self.reads = reads

    def entity(self, iri: str) -> Entity:
        e = self.entities.get(iri)
        if e is None:
            e = self.entities[iri] = Entity(iri)
        return e

    def walk(self, value: Any, trie: dict[str, TrieEdge]) -> None:
        t = type(value)
        if t is list:
            for v in value:
                self.walk(v, trie)
        elif t is Entity:
            props = value.props
            # Every property this entity still needs, read together (one look-up of the entity
            # where the store can) — then recorded in the plan's order, as one by one.
            need = [edge.prop for name, edge in trie.items() if edge.prop is not None and name not in props]
            raws = self.store.objects_of(value.iri, need) if len(need) > 1 else None
            for name, edge in trie.items():
                if edge.prop is None:
                    continue
                vals = props.get(name)
                if vals is None:
                    raw = raws[edge.prop] if raws is not None else self.store.objects(value.iri, edge.prop)
                    vals = [self.entity(o) if type(o) is IRI else o for o in raw]
                    props[name] = vals
                    self.reads.items.append((value.iri, edge.prop, vals))
                if edge.children:
                    for v in vals:
                        if type(v) is Entity:
                            self.walk(v, edge.children)
        elif t is dict:
            for name, edge in trie.items():
                if edge.kind == "field" and edge.children:
                    child = value.get(name)
                    if child is not None:
                        self.walk(child, edge.children)

    def adopt(self, value: Any) -> Any:
        """Share entities across roots so each (entity, property) is read once."""
        t = type(value)
        if t is Entity:
            return self.entity(value.iri)
        if t is list:
            return [self.adopt(v) for v in value]
        if t is dict:
            return {k: self.adopt(v) for k, v in value.items()}
        return value


def resolve_facts(rs: CompiledRuleset, payload: dict[str, Any], graph: GraphContext, *, as_of: Any
                  ) -> tuple[dict[str, Any], Reads]:
    """Build the environment the rules evaluate: `case`, derived facts, the decision date."""
    reads = Reads()
    walker = _Walker(graph.store, reads)
    case = walker.adopt(payload)
    env: dict[str, Any] = {"case": case, TODAY: as_of, GRAPH_KEY: graph.for_case(reads)}
    trie = rs.plan.get("case")
    if trie:
        walker.walk(case, trie)
    for d in rs.derived:
        value = walker.adopt(d.fn(env))
        env[d.name] = value
        sub = rs.plan.get(d.name)
        if sub and value is not None:
            walker.walk(value, sub)
    return env, reads


def case_entity_problems(t: Any, value: Any, store: Any, schema: Any, *, where: str = "payload") -> list[Any]:
    """Every entity the case names must be in the graph and of its declared class: checked before
    any rule runs, so a vendor given as an invoice (or an IRI nobody knows) is refused as the bad
    input it is instead of being decided on missing facts."""
    from engine.errors import Diagnostic
    from engine.kg.store import RDF_TYPE

    out: list[Any] = []
    kind = getattr(t, "kind", None)
    if value is None:
        return out
    if kind == "object" and isinstance(value, dict):
        for name, ft in t.fields:
            out += case_entity_problems(ft, value.get(name), store, schema, where=f"{where}.{name}")
    elif kind == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            out += case_entity_problems(t.elem, v, store, schema, where=f"{where}[{i}]")
    elif kind == "ref" and type(value) is Entity:
        types = [schema.class_named(str(o)) for o in store.objects(value.iri, RDF_TYPE)]
        if not types:
            out.append(Diagnostic("case_unknown_entity", f"`{where}`: `{value.iri}` is not in the graph",
                                  help=f"give the IRI of an existing `{t.cls}`"))
        elif not any(c and schema.is_subclass(c, t.cls) for c in types):
            named = ", ".join(f"`{c}`" for c in types if c) or "no class of the ontology"
            out.append(Diagnostic("case_wrong_class", f"`{where}`: `{value.iri}` is of class {named}, not `{t.cls}`",
                                  help=f"give the IRI of a `{t.cls}`"))
    return out


def resolve_params(params: dict[str, Any], tries: list[dict[str, TrieEdge]], graph: GraphContext,
                   reads: Reads) -> dict[str, Any]:
    """Walk the planned paths under `params` (guards, preconditions, agent limits) from a proposal."""
    walker = _Walker(graph.store, reads)
    value: dict[str, Any] = walker.adopt(params)
    for trie in tries:
        if trie:
            walker.walk(value, trie)
    return value
