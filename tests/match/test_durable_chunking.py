"""Splitting rules into durable-rules networks: the incremental bound, and the rule budget.

Regressions: recomputing `_bound` over the whole trie for every rule made the split O(n²),
and a network of more than 512 rules made durable-rules' `create_ruleset` spin forever.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

from engine.match.durable import NODE_BUDGET, RULE_BUDGET, DurableMatcher, _bound, _BoundTrie, _chain_key


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
        op = rng.choice(["==", "==", "<", ">=", "!="])
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

