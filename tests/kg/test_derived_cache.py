"""Graph-algorithm caches (approval chains, sanctioned flags) follow updates of the graph: an
update that names a cached predicate rebuilds it, an unrelated one keeps it, an update whose
predicates cannot be known drops everything."""

from __future__ import annotations

import pytest

from engine.case import IRI
from engine.kg.derived import GraphAlgorithms
from engine.kg.store import OxigraphStore, RdflibStore, touched_iris

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
    store.update(f"DELETE {{ ?s <{EX}status> ?o }} INSERT {{ ?s <{EX}status> \"gone\" }} "
                 f"WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")})
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


# -- the look-up cache (engine.kg.store.ReadCache) -------------------------------------------------

def test_a_read_after_an_update_sees_the_new_value(store):
    assert store.objects(f"{EX}a", f"{EX}status") == ["active"]  # now cached
    store.update(f"DELETE {{ ?s <{EX}status> ?o }} INSERT {{ ?s <{EX}status> \"gone\" }} "
                 f"WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")})
    assert store.objects(f"{EX}a", f"{EX}status") == ["gone"]


def test_an_update_that_matches_nothing_keeps_the_cache(store):
    store.objects(f"{EX}a", f"{EX}status")
    before = store.reads.facts
    out = store.update(f"DELETE {{ ?s <{EX}status> ?o }} WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}zzz")},
                       where=f"?s <{EX}status> ?o")
    assert not out.applied and store.reads.facts is before and len(before) == 1


def test_a_look_up_racing_an_update_leaves_no_stale_value():
    from engine.kg.store import ReadCache

    cache = ReadCache(10)
    graph = {"v": "old"}

    def load_during_update(s, p):  # the store is read, then the update commits before the value is kept
        value = (graph["v"],)
        graph["v"] = "new"
        cache.reset()
        return value

    assert cache.fact("s", "p", lambda: load_during_update("s", "p")) == ("old",)
    assert cache.fact("s", "p", lambda: (graph["v"],)) == ("new",)
    graph["v"] = "old"  # a named query the same way
    assert cache.get(("ask", "q"), lambda: load_during_update("s", "p")) == ("old",)
    assert cache.get(("ask", "q"), lambda: (graph["v"],)) == ("new",)


def test_a_look_up_racing_a_selective_invalidation_leaves_no_stale_value():
    """An update that touches only `p` drops `p`'s look-ups; a look-up of `p` that began before it
    (and read the old value) is not kept afterwards."""
    from engine.kg.store import ReadCache

    cache = ReadCache(10)
    graph = {"v": "old"}

    def load_during_update():
        value = (graph["v"],)
        graph["v"] = "new"
        cache.invalidate(frozenset({"p"}))
        return value

    assert cache.fact("s", "p", load_during_update) == ("old",)
    assert cache.fact("s", "p", lambda: (graph["v"],)) == ("new",)


def test_an_update_drops_only_the_look_ups_of_what_it_touches(store):
    """An executed action no longer empties the cache for every other case: the look-ups of
    predicates its template names are dropped (and every named query); the others stay."""
    assert store.objects(f"{EX}a", f"{EX}status") == ["active"]
    assert store.objects(f"{EX}a", f"{EX}reports_to") == [IRI(f"{EX}b")]
    store.select(f"SELECT ?o WHERE {{ <{EX}a> <{EX}status> ?o }}", {})
    assert len(store.reads.facts) == 2 and len(store.reads.queries) == 1
    store.update(f"DELETE {{ ?s <{EX}status> ?o }} INSERT {{ ?s <{EX}status> \"gone\" }} "
                 f"WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")})
    assert set(store.reads.facts) == {(f"{EX}a", f"{EX}reports_to")} and store.reads.queries == {}
    assert store.objects(f"{EX}a", f"{EX}status") == ["gone"]
    # a template whose predicate is a variable may change anything: everything goes
    store.update("DELETE { ?s ?p ?o } WHERE { ?s ?p ?o . FILTER(false) }", {"s": IRI(f"{EX}zzz")})
    assert store.reads.facts == {}


def test_the_cache_is_bounded_and_can_be_turned_off():
    from engine.kg.store import ReadCache

    loads = []

    def load(s, p):
        loads.append(s)
        return (s,)

    cache = ReadCache(2)
    for s in ("a", "b", "c", "a"):
        cache.fact(s, "p", lambda s=s: load(s, "p"))
        cache.get(("ask", s), lambda s=s: load(s, "q"))
    assert len(cache.facts) + len(cache.queries) <= 2
    off = ReadCache(0)
    off.fact("a", "p", lambda: load("a", "p"))
    off.fact("a", "p", lambda: load("a", "p"))
    assert off.facts == {} and loads[-2:] == ["a", "a"]


def test_a_bad_read_cache_setting_is_a_config_error(tmp_path):
    import shutil

    from engine.workspace import load_workspace
    from tests.conftest import MINI

    ws_dir = tmp_path / "ws"
    shutil.copytree(MINI, ws_dir)
    toml = ws_dir / "rulebridge.toml"
    text = toml.read_text()
    toml.write_text(text.replace("[graph]", "[graph]\nread_cache = -5", 1) if "[graph]" in text
                    else text + "\n[graph]\nread_cache = -5\n")
    ws = load_workspace(ws_dir)
    assert [d.code for d in ws.diagnostics if d.severity == "error"] == ["config"]
    assert "read_cache" in ws.diagnostics[0].message


def test_a_query_answer_follows_updates(store):
    ask = f"ASK {{ ?s <{EX}status> \"gone\" }}"
    assert store.ask(ask, {"s": IRI(f"{EX}a")}) is False  # now cached
    assert store.ask(ask, {"s": f"{EX}a"}) is False  # a string is not the IRI: a key of its own
    store.update(f"DELETE {{ ?s <{EX}status> ?o }} INSERT {{ ?s <{EX}status> \"gone\" }} "
                 f"WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")})
    assert store.ask(ask, {"s": IRI(f"{EX}a")}) is True
    rows = store.select(f"SELECT ?o WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")})
    assert rows == [{"o": "gone"}]
    rows[0]["o"] = "changed by the caller"  # a caller's copy: the kept answer is not touched
    assert store.select(f"SELECT ?o WHERE {{ ?s <{EX}status> ?o }}", {"s": IRI(f"{EX}a")}) == [{"o": "gone"}]


# -- all the predicates an entity needs in one look-up (`objects_of`) -------------------------------

def test_objects_of_answers_as_objects_does_and_fills_the_cache(store):
    preds = [f"{EX}status", f"{EX}reports_to", f"{EX}missing"]
    got = store.objects_of(f"{EX}a", preds)
    assert got == {p: store.objects(f"{EX}a", p) for p in preds}
    assert got[f"{EX}missing"] == [] and (f"{EX}a", f"{EX}missing") in store.reads.facts
    assert store.objects_of("not an iri", preds) == {p: [] for p in preds}


def test_oxigraph_reads_an_entity_in_one_scan_and_gives_up_on_a_hub(tmp_path, monkeypatch):
    from engine.kg import store as store_module

    f = tmp_path / "g.nt"
    hub = "".join(f"<{EX}hub> <{EX}links> <{EX}n{i}> .\n" for i in range(40))
    f.write_text(DATA + hub + f"<{EX}hub> <{EX}status> \"busy\" .\n")
    st = OxigraphStore.from_files([f])
    calls = []
    real = st.store.quads_for_pattern

    class Spy:
        def quads_for_pattern(self, *a):
            calls.append(a[1])
            return real(*a)

        def __getattr__(self, name):
            return getattr(st.store, name)

    st.store = Spy()
    st.objects_of(f"{EX}a", [f"{EX}status", f"{EX}reports_to"])
    assert calls == [None]  # one scan of the subject's triples, no look-up per predicate
    calls.clear()
    monkeypatch.setattr(store_module, "SCAN_LIMIT", 10)
    got = st.objects_of(f"{EX}hub", [f"{EX}status", f"{EX}links"])
    assert got[f"{EX}status"] == ["busy"] and len(got[f"{EX}links"]) == 40
    assert calls[0] is None and len(calls) == 3  # the scan stopped at the limit, then one look-up each
