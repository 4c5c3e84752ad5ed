"""The workspace ontology as a `Schema`: classes, properties, ranges and cardinality.

Conventions (see `knowledge_graph/README.md`): every property has one `rdfs:domain` and one
`rdfs:range`; `owl:FunctionalProperty` marks single-valued properties; a property shared by
several classes lists them with the annotation `usedBy`.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import DiagnosticSink, Span
from engine.lang.types import BOOLEAN, DATE, NUMBER, STRING, Property, Schema, Type, ref

from .store import RDF_SUFFIXES, data_files

XSD = "http://www.w3.org/2001/XMLSchema#"
_SCALAR_RANGES = {
    "string": STRING, "normalizedString": STRING, "anyURI": STRING, "langString": STRING,
    "decimal": NUMBER, "integer": NUMBER, "int": NUMBER, "long": NUMBER, "double": NUMBER, "float": NUMBER,
    "nonNegativeInteger": NUMBER, "positiveInteger": NUMBER,
    "boolean": BOOLEAN, "date": DATE, "dateTime": DATE,
}


def local_name(iri: str) -> str:
    """The part of an IRI after its last `#` or `/`."""
    for sep in ("#", "/"):
        if sep in iri:
            iri = iri.rsplit(sep, 1)[1]
    return iri


def load_schema(folder: Path, sink: DiagnosticSink) -> tuple[Schema, dict[str, str]]:
    """Read every ontology file of `folder`; returns the schema and the prefixes the files declare."""
    from rdflib import OWL, RDF, RDFS, Graph, URIRef

    g = Graph()
    for f in data_files(folder):
        try:
            g.parse(str(f), format=RDF_SUFFIXES.get(f.suffix, "turtle"))
        except Exception as exc:  # noqa: BLE001 - rdflib raises many parser types; all mean "cannot parse"
            line = getattr(exc, "lines", None) or getattr(exc, "line", 0) or 0
            sink.error("graph_syntax", f"cannot parse ontology: {str(exc).splitlines()[0][:200]}",
                       Span(str(f), int(line) if isinstance(line, int) else 0, 1 if line else 0))
    schema = Schema()
    classes = set(g.subjects(RDF.type, OWL.Class)) | set(g.subjects(RDF.type, RDFS.Class))
    classes |= set(g.objects(None, RDFS.subClassOf))
    for c in classes:
        if isinstance(c, URIRef):
            schema.classes[local_name(str(c))] = str(c)
            comment = g.value(c, RDFS.comment)
            if comment:
                schema.class_comments[local_name(str(c))] = str(comment)
    for c in classes:
        if not isinstance(c, URIRef):
            continue
        ancestors = {local_name(str(a)) for a in g.transitive_objects(c, RDFS.subClassOf) if a != c}
        schema.superclasses[local_name(str(c))] = ancestors
    functional = set(g.subjects(RDF.type, OWL.FunctionalProperty))
    props = set(g.subjects(RDFS.domain, None)) | set(g.subjects(RDFS.range, None))
    for p in sorted(p for p in props if isinstance(p, URIRef)):
        name = local_name(str(p))
        domain = g.value(p, RDFS.domain)
        rng = g.value(p, RDFS.range)
        if domain is None or rng is None:
            sink.warning("schema", f"property `{name}` needs one `rdfs:domain` and one `rdfs:range` to be usable "
                         "in rules", Span(str(folder)))
            continue
        r = str(rng)
        if r.startswith(XSD) or r.endswith("langString"):
            t: Type = _SCALAR_RANGES.get(local_name(r), STRING)
        else:
            t = ref(local_name(r))
        used_by = tuple(sorted(local_name(str(o)) for o in g.objects(p, URIRef(str(p).rsplit("#", 1)[0] + "#usedBy"))))
        schema.properties.setdefault(name, []).append(Property(
            name=name, iri=str(p), domain=local_name(str(domain)), range=t, functional=p in functional,
            comment=str(g.value(p, RDFS.comment) or ""), used_by=used_by))
    prefixes = {str(k): str(v) for k, v in g.namespaces() if k}
    return schema, prefixes
