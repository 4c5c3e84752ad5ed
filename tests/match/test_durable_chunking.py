"""Splitting rules into durable-rules networks: the incremental bound, and the rule budget.

Regressions: recomputing `_bound` over the whole trie for every rule made the split O(n²),
and a network of more than 512 rules made durable-rules' `create_ruleset` spin forever.
The bound models durable-rules' fixed alpha stack; `test_the_alpha_stack_is_as_modelled`
pins the measured limit, so an upgrade that changes it fails here first.
"""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from engine.match.durable import (
    NODE_BUDGET,
    RULE_BUDGET,
    DurableMatcher,
    MatcherError,
    _bound,
    _BoundTrie,
    _chain_key,
    _Network,
)


def _dict_trie(chains: list[list[tuple]]) -> dict:
    trie: dict = {}
    for atoms in chains:
        node = trie
        for a in atoms:
            node = node.setdefault(a, {})
    return trie


def _random_chain(rng: random.Random) -> list[tuple]:
    atoms = set()
    for _ in range(rng.randint(1, 4)):
        key = f"f{rng.randrange(4)}"
        op = rng.choice(["==", "==", "<", ">=", "!=", "in", "in"])
        if op == "in":  # an interval field: (path id, first segment, last segment)
            pid, lo = rng.randrange(2), rng.randrange(12)
            run = (pid, lo, lo + rng.randrange(6))
            atoms.add((f"q{run}", "in", run))
        else:
            atoms.add((key, op, rng.randrange(6)))
    return sorted(atoms, key=_chain_key)


def test_incremental_bound_equals_full_recomputation():
    rng = random.Random(3)
    for _ in range(30):
        trie, chains = _BoundTrie(), []
        for _ in range(rng.randint(1, 60)):
            chain = _random_chain(rng)
            predicted = trie.bound_with(chain)
            assert predicted == _bound(_dict_trie(chains + [chain]))
            assert trie.add(chain) == predicted
            chains.append(chain)
            assert trie.root.bound == _bound(_dict_trie(chains))


def _fake_ruleset(n: int, *, op: str = "==") -> SimpleNamespace:
    """`n` rules `case.x OP "v<i>"`, shaped like a compiled ruleset as far as the matcher reads it."""
    path = ("case", "x")
    rules = [SimpleNamespace(id=f"r{i}", conditions=[SimpleNamespace(atom=(path, op, f"v{i:05d}"), synthetic=None)])
             for i in range(n)]
    return SimpleNamespace(name=f"chunking{n}{op}", rules=rules, network={path: "f0"},
                           network_info={path: (("field",), "string")}, synthetic={})


def test_more_than_512_equality_rules_are_split_and_match():
    # all 600 equalities on one field share one eq group: the node bound alone would allow one network
    m = DurableMatcher(_fake_ruleset(600))
    assert len(m.networks) == -(-600 // RULE_BUDGET)  # split by the rule budget, not the node bound
    assert m.match({"case": {"x": "v00550"}}) == ["r550"]
    assert m.match({"case": {"x": "v00007"}}) == ["r7"]
    assert m.stats["fallbacks"] == 0


def test_overlapping_ranges_are_split_by_the_node_budget():
    m = DurableMatcher(_fake_ruleset(200, op=">="))
    assert len(m.networks) >= 200 // NODE_BUDGET
    assert len(m.match({"case": {"x": "v99999"}})) == 200
    assert m.stats["fallbacks"] == 0



def _ask(definition: dict, fact: dict) -> int:
    """Matches of one fact in a network built from `definition`; MatcherError on error 303."""
    net = _Network(definition)
    return len(net.match(json.dumps(fact)[1:-1]))


def _tree(groups: int, leaves: int) -> tuple[dict, dict, dict]:
    """`groups` x `leaves` rules `g<i> and b<j>`: a node per group, each with `leaves` true children."""
    rules = {f"r{g}_{i}": {"all": [{"m": {"$and": [{f"g{g}": True}, {f"b{i}": True}]}}]}
             for g in range(groups) for i in range(leaves)}
    fact = {**{f"g{g}": True for g in range(groups)}, **{f"b{i}": True for i in range(leaves)}}
    trie = {(f"g{g}", "==", True): {(f"b{i}", "==", True): {} for i in range(leaves)} for g in range(groups)}
    return rules, fact, trie


@pytest.mark.parametrize("groups,leaves,ok", [(1, 64, True), (1, 65, False), (2, 63, True), (2, 64, False),
                                              (30, 30, True), (34, 34, False)])
def test_the_alpha_stack_is_as_modelled(groups, leaves, ok):
    """durable-rules 2.0.28 walks the alpha network depth first with a 64-entry stack: `_bound`
    (k - 1 + the largest child's need) is exactly its peak here. 30 x 30 is 930 true nodes and passes."""
    rules, fact, trie = _tree(groups, leaves)
    assert (_bound(trie) <= 64) is ok
    if ok:
        assert _ask(rules, fact) == groups * leaves
    else:
        with pytest.raises(MatcherError, match="303"):
            _ask(rules, fact)


def test_interval_fields_of_one_path_count_only_where_their_runs_overlap():
    runs = [(0, 0, 3), (0, 2, 5), (0, 4, 9), (0, 6, 7), (1, 0, 9)]
    trie = {(f"q{r}", "in", r): {} for r in runs}
    assert _bound(trie) == 2 + 1  # at most two runs of path 0 share a segment, plus path 1
    t = _BoundTrie()
    for r in runs:
        t.add([(f"q{r}", "in", r)])
    assert t.root.bound == 3


@pytest.mark.parametrize("heads_first", [True, False])
def test_durable_rules_keeps_the_order_of_a_rules_atoms(heads_first):
    """The bound is computed on the chains as written: `{"$and": [a, b]}` must become node a
    with child b. 120 rules `a and b<i>`, `c and d<i>`: 2 nodes with 60 true children each
    (stack 61) as written; written the other way round, 120 true children of the root."""
    rules, trie = {}, {}
    for head, tail, prefix in (("a", "b", "r"), ("c", "d", "s")):
        for i in range(60):
            chain = [(head, "==", True), (f"{tail}{i}", "==", True)]
            if not heads_first:
                chain.reverse()
            rules[f"{prefix}{i}"] = {"all": [{"m": {"$and": [{k: v} for k, _, v in chain]}}]}
            node = trie
            for atom in chain:
                node = node.setdefault(atom, {})
    fact = {"a": True, "c": True, **{f"b{i}": True for i in range(60)}, **{f"d{i}": True for i in range(60)}}
    assert _bound(trie) == (61 if heads_first else 120)
    if heads_first:
        assert _ask(rules, fact) == 120
    else:
        with pytest.raises(MatcherError, match="303"):
            _ask(rules, fact)
