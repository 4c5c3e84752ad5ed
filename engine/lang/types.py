"""Static types of the rule language and the schema (classes, properties) paths are checked against.

`lang` knows nothing of RDF stores: the knowledge-graph layer builds a `Schema` from the
ontology and hands it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALARS = ("string", "number", "boolean", "date")


@dataclass(frozen=True)
class Type:
    """A value type: a scalar kind, a reference to a graph class, a list or an object."""

    kind: str  # string | number | boolean | date | null | any | ref | list | object
    cls: str | None = None  # for ref
    elem: Type | None = None  # for list
    fields: tuple[tuple[str, Type], ...] = ()  # for object
    optional: bool = False

    def __str__(self) -> str:
        if self.kind == "ref":
            return f"{self.cls}"
        if self.kind == "list":
            return f"list of {self.elem}"
        if self.kind == "object":
            return "object {" + ", ".join(f"{k}: {v}" for k, v in self.fields) + "}"
        return self.kind

    @property
    def is_scalar(self) -> bool:
        return self.kind in SCALARS

    def field_map(self) -> dict[str, Type]:
        return dict(self.fields)


STRING = Type("string")
NUMBER = Type("number")
BOOLEAN = Type("boolean")
DATE = Type("date")
NULL = Type("null")
ANY = Type("any")


def ref(cls: str) -> Type:
    """The type of an IRI naming an instance of graph class `cls`."""
    return Type("ref", cls=cls)


def entity_class(t: Type) -> str | None:
    """The class of the graph entities a value of type `t` names (a `ref`, or a list of them); None
    for any other type."""
    if t.kind == "ref":
        return t.cls
    if t.kind == "list" and t.elem is not None and t.elem.kind == "ref":
        return t.elem.cls
    return None


def list_of(t: Type) -> Type:
    """A list of `t` (lists of lists are flattened: paths map over list elements)."""
    if t.kind == "list":
        return t
    return Type("list", elem=t)


def compatible(a: Type, b: Type) -> bool:
    """Whether values of `a` and `b` may be compared for equality."""
    if ANY in (a, b) or NULL in (a, b) or a.kind == "any" or b.kind == "any":
        return True
    if a.kind == "ref" and b.kind in ("ref", "string"):
        return True
    if b.kind == "ref" and a.kind == "string":
        return True
    return a.kind == b.kind


def orderable(a: Type, b: Type) -> bool:
    """Whether `a < b` is meaningful."""
    if a.kind == "any" or b.kind == "any":
        return True
    return a.kind == b.kind and a.kind in ("number", "string", "date")


@dataclass(frozen=True)
class Property:
    """A graph property as the ontology declares it."""

    name: str  # the local name rule authors write
    iri: str
    domain: str  # class local name
    range: Type  # a scalar or ref type
    functional: bool
    comment: str = ""
    used_by: tuple[str, ...] = ()


@dataclass
class Schema:
    """Classes and properties of the workspace ontology, by local name."""

    classes: dict[str, str] = field(default_factory=dict)  # local name -> IRI
    superclasses: dict[str, set[str]] = field(default_factory=dict)  # class -> all ancestors
    properties: dict[str, list[Property]] = field(default_factory=dict)  # name -> candidates
    class_comments: dict[str, str] = field(default_factory=dict)

    def class_named(self, iri: str) -> str:
        """The local name of the class with this IRI ("" for none): built once, when first asked."""
        index: dict[str, str] | None = self.__dict__.get("_by_iri")
        if index is None or len(index) != len(self.classes):
            index = self.__dict__["_by_iri"] = {v: k for k, v in self.classes.items()}
        return index.get(iri, "")

    def ancestors(self, cls: str) -> set[str]:
        return {cls} | self.superclasses.get(cls, set())

    def property_of(self, cls: str, name: str) -> Property | None:
        """The property `name` as seen on instances of `cls` (inherited, or via `usedBy`)."""
        anc = self.ancestors(cls)
        for p in self.properties.get(name, ()):
            if p.used_by:
                if anc & set(p.used_by):
                    return p
            elif p.domain in anc:
                return p
        return None

    def properties_of(self, cls: str) -> list[str]:
        """All property names usable on `cls` (for "did you mean")."""
        return sorted(n for n in self.properties if self.property_of(cls, n) is not None)

    def is_subclass(self, sub: str, sup: str) -> bool:
        return sup in self.ancestors(sub)
