"""Graph-algorithm caches (approval chains, sanctioned flags) follow updates of the graph: an
update that names a cached predicate rebuilds it, an unrelated one keeps it, an update whose
predicates cannot be known drops everything."""

from __future__ import annotations

import pytest

from engine.kg.derived import GraphAlgorithms
from engine.kg.store import OxigraphStore, RdflibStore, touched_iris
from engine.model import IRI

EX = "https://example.test/"
DATA = f"""
<{EX}a> <{EX}reports_to> <{EX}b> .
<{EX}b> <{EX}reports_to> <{EX}c> .
<{EX}a> <{EX}status> "active" .
"""


@pytest.fixture(params=["oxigraph", "rdflib"])
def store(request, tmp_path):
    f = tmp_path / "g.nt"
    f.write_text(DATA)
    return (OxigraphStore if request.param == "oxigraph" else RdflibStore).from_files([f])


def test_an_unrelated_update_keeps_the_cached_graph(store):
    algo = GraphAlgorithms(store)
    g = algo.graph(f"{EX}reports_to")
    assert algo.chain(f"{EX}a", f"{EX}reports_to") == [f"{EX}b", f"{EX}c"]
    store.update(f"DELETE {{ ?s <{EX}status> ?o }} INSERT {{ ?s <{EX}status> \"gone\" }} WHERE {{ ?s <{EX}status> ?o }}",
                 {"s": IRI(f"{EX}a")})
    assert algo.graph(f"{EX}reports_to") is g  # not rebuilt


def test_an_update_of_the_cached_predicate_rebuilds_it(store):
    algo = GraphAlgorithms(store)
    algo.graph(f"{EX}reports_to")
    store.update(f"INSERT {{ ?s <{EX}reports_to> ?o }} WHERE {{}}", {"s": IRI(f"{EX}c"), "o": IRI(f"{EX}d")})
    assert algo.chain(f"{EX}a", f"{EX}reports_to") == [f"{EX}b", f"{EX}c", f"{EX}d"]


def test_an_update_with_a_variable_predicate_drops_every_cache(store):
    algo = GraphAlgorithms(store)
    g = algo.graph(f"{EX}reports_to")
    store.update("DELETE { ?s ?p ?o } WHERE { ?s ?p ?o . FILTER(?s = ?x) }", {"x": IRI(f"{EX}b")})
    assert algo.graph(f"{EX}reports_to") is not g
    assert algo.chain(f"{EX}a", f"{EX}reports_to") == [f"{EX}b"]  # b reports to nobody now


@pytest.mark.parametrize("template, expected", [
    ('INSERT { ?i bw:status "x" ; bw:note ?n } WHERE { ?i a bw:Invoice }',
     {"https://b/o#status", "https://b/o#note", "https://b/o#Invoice", "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"}),
    ('INSERT { ?i <https://x#y> "not: an ?iri ?here" } WHERE {} # ?a ?b ?c', {"https://x#y"}),
    ("DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }", None),
    ("DELETE { ?s bw:x ?o ; ?p ?q } WHERE { }", None),
    ("INSERT DATA { unknown:a unknown:b 1 }", None),
])
def test_touched_iris(template, expected):
    got = touched_iris(template, {"bw": "https://b/o#"})
    assert got == (None if expected is None else frozenset(expected))
