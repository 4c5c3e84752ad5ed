"""The indexed shadow analysis finds exactly what comparing every pair finds."""

from types import SimpleNamespace as NS

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lang.analysis import _covers, find_contradiction, shadowed_rules

PATHS = [("case", "amount"), ("vendor", "status"), ("po", "total")]
OPS = ["==", "!=", "<", "<=", ">", ">="]


def _cond(draw_path, op, lit, opaque):
    if opaque is not None:
        return NS(text=f"f({opaque})", atom=None)
    path = PATHS[draw_path]
    return NS(text=f"{'.'.join(path)} {op} {lit!r}", atom=(path, op, lit))


conditions = st.builds(_cond, st.integers(0, len(PATHS) - 1), st.sampled_from(OPS), st.integers(0, 4),
                       st.one_of(st.none(), st.none(), st.integers(0, 2)))
rules = st.lists(st.lists(conditions, max_size=3), min_size=1, max_size=25)


def pairwise(ranked):
    """The plain definition: the first higher rule that covers a rule that can fire."""
    out = []
    for i, r in enumerate(ranked):
        if find_contradiction(r):
            continue
        texts = {c.text for c in r.conditions}
        atoms = [c.atom for c in r.conditions if c.atom is not None]
        for h in ranked[:i]:
            if _covers(r, texts, atoms, h):
                out.append((r.id, h.id))
                break
    return out


@settings(max_examples=400, deadline=None)
@given(rules)
def test_indexed_shadowing_equals_pairwise(conds):
    ranked = [NS(id=f"r{i}", conditions=cs) for i, cs in enumerate(conds)]
    assert [(r.id, h.id) for r, h in shadowed_rules(ranked)] == pairwise(ranked)


def test_a_narrower_rule_below_a_broader_one_is_shadowed():
    broad = NS(id="broad", conditions=[NS(text="case.amount > 100", atom=(("case", "amount"), ">", 100))])
    narrow = NS(id="narrow", conditions=[NS(text="case.amount > 500", atom=(("case", "amount"), ">", 500)),
                                         NS(text="f(x)", atom=None)])
    assert [(r.id, h.id) for r, h in shadowed_rules([broad, narrow])] == [("narrow", "broad")]
    assert shadowed_rules([narrow, broad]) == []
