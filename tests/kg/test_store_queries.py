"""Named queries on Oxigraph bind their parameters as a `VALUES` block at the start of the outer
group (pyoxigraph applies `substitutions` only after evaluating the whole pattern, which made the
duplicate-invoice ASK scan every invoice). The answers must be exactly those of `substitutions`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.case import IRI
from engine.kg.store import OxigraphStore, values_position
from tests.brightwater import workspace

QUERIES = Path(__file__).parent.parent.parent / "knowledge_graph" / "queries"
BW = "https://brightwater.example/ontology#"


@pytest.fixture(scope="module")
def store() -> OxigraphStore:
    st = workspace().store
    assert isinstance(st, OxigraphStore)
    return st


def _rows(res) -> list:
    if not hasattr(res, "variables"):  # an ASK answer
        return [bool(res)]
    names = [v.value for v in res.variables]
    return sorted(tuple(str(sol[n]) for n in names) for sol in res)


def _by_substitution(st: OxigraphStore, query: str, bindings: dict) -> list:
    return _rows(st.store.query(query, substitutions=st._subs(bindings), use_default_graph_as_union=True))


def _pushed(st: OxigraphStore, query: str, bindings: dict) -> list:
    return _rows(st._query(query, bindings))


def _subjects(st: OxigraphStore, cls: str) -> list[str]:
    return sorted(s for s, o in st.pairs("http://www.w3.org/1999/02/22-rdf-syntax-ns#type") if o == IRI(BW + cls))


REGIONS = ["APAC", "EMEA-NORTH", "EMEA-SOUTH", "LATAM", "NA-EAST", "NA-WEST", "nowhere"]
PARAMS = {  # query -> (parameter, values to bind: every entity of the class, or literals)
    "duplicate_invoice": ("invoice", "Invoice"),
    "customer_has_overdue_balance": ("customer", "Customer"),
    "vendor_open_invoice_count": ("vendor", "Vendor"),
    "territory_reps": ("region", REGIONS),
    "territory_account_managers": ("region", REGIONS),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_workspace_query_answers_as_with_substitutions(store, name):
    query = (QUERIES / f"{name}.rq").read_text()
    assert values_position(query) is not None, "the query should take the fast path"
    param, values = PARAMS[name]
    binds = [IRI(s) for s in _subjects(store, values)] if isinstance(values, str) else values
    assert len(binds) >= 5
    differ = [v for v in binds if _pushed(store, query, {param: v}) != _by_substitution(store, query, {param: v})]
    assert differ == []


def test_the_duplicate_check_still_finds_a_duplicate(store):
    query = (QUERIES / "duplicate_invoice.rq").read_text()
    answers = [store.ask(query, {"invoice": IRI(s)}) for s in _subjects(store, "Invoice")]
    assert any(answers) and not all(answers)


@pytest.mark.parametrize("hostile", ['NA-EAST" } ?s ?p ?o . { "', "NA-EAST> } ASK { ?s ?p ?o", "a\\\" . }"])
def test_a_hostile_literal_stays_one_term(store, hostile):
    query = (QUERIES / "territory_reps.rq").read_text()
    assert store.select(query, {"region": hostile}) == []


def test_an_unbound_parameter_is_left_free(store):
    query = (QUERIES / "territory_reps.rq").read_text()
    everyone = store.select(query, {})
    assert everyone == store.select(query, {"region": None})
    assert len(everyone) > len(store.select(query, {"region": "NA-EAST"})) > 0


@pytest.mark.parametrize("query, inside", [
    ("ASK { ?s ?p ?o }", "ASK {"),
    ("# a { in a comment\nPREFIX x: <http://x.test/>\nASK { ?s ?p \"{\" }", "ASK {"),
    ("select ?x where { ?x ?p ?o }", "select ?x where {"),
    ("SELECT * { ?s ?p ?o }", "SELECT * {"),
    ("SELECT ?x WHERE { { SELECT ?x WHERE { ?x ?p ?o } } }", "SELECT ?x WHERE {"),
    ("BASE <http://x.test/>\nPREFIX : <http://y.test/>\nSELECT ?x WHERE { ?x :p ?o }", "WHERE {"),
])
def test_the_outer_group_is_found(query, inside):
    at = values_position(query)
    assert at is not None and query[:at].endswith(inside)


@pytest.mark.parametrize("query", ["CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }", "DESCRIBE ?s WHERE { ?s ?p ?o }",
                                   "PREFIX a: <http://x/{>\nASK { ?s ?p ?o }"])
def test_other_forms_fall_back_to_substitutions(query):
    assert values_position(query) is None
