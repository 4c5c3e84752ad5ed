"""The indexed shadow analysis finds exactly what comparing every pair finds."""

from types import SimpleNamespace as NS

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lang import analysis
from engine.lang.analysis import _covers, find_contradiction, shadowed_rules
from tests.rulesets import compile_ruleset

PATHS = [("case", "amount"), ("vendor", "status"), ("po", "total")]
OPS = ["==", "!=", "<", "<=", ">", ">="]
# equal values of different types (1, 1.0, true) are one key of the index, as `implies` has them
LITERALS = st.one_of(st.integers(0, 4), st.sampled_from([1.0, True, False, "a"]))


def _cond(draw_path, op, lit, opaque):
    if opaque is not None:
        return NS(text=f"f({opaque})", atom=None)
    path = PATHS[draw_path]
    return NS(text=f"{'.'.join(path)} {op} {lit!r}", atom=(path, op, lit))


conditions = st.builds(_cond, st.integers(0, len(PATHS) - 1), st.sampled_from(OPS), LITERALS,
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


def _comparisons(monkeypatch, run) -> int:
    """How many times `run()` compares a rule with a higher one (`_covers`)."""
    calls = 0

    def counting(*args):
        nonlocal calls
        calls += 1
        return real(*args)

    real = analysis._covers
    monkeypatch.setattr(analysis, "_covers", counting)
    try:
        run()
    finally:
        monkeypatch.setattr(analysis, "_covers", real)
    return calls


def _one_shape(n: int) -> list:
    """`n` rules on the same two paths, none of which covers a later one."""
    return [NS(id=f"r{i}", conditions=[
        NS(text=f"case.amount >= {(n - i) * 10}", atom=(("case", "amount"), ">=", (n - i) * 10)),
        NS(text=f"case.percent <= {i % 40 + 1}", atom=(("case", "percent"), "<=", i % 40 + 1)),
    ]) for i in range(n)]


def test_shadow_analysis_of_many_rules_of_one_shape_is_near_linear(monkeypatch):
    """Regression: a decision table of 8,000 rows took 46 s to check, every row compared with
    every row above it. Each rule is now compared with a bounded number of higher rules."""
    work = {n: _comparisons(monkeypatch, lambda n=n: shadowed_rules(_one_shape(n)))
            for n in (500, 1000, 2000)}
    assert work[2000] <= 2.2 * work[1000] and work[1000] <= 2.2 * work[500], work
    assert work[2000] <= 2000 * analysis.MAX_SHADOW_CANDIDATES, work


def _table(tmp_path, n: int):
    """A decision table of `n` rows by tier (four values) and two ranges, plus one row at the end
    that the first row shadows; compiled against the mini workspace."""
    tiers = ["platinum", "gold", "silver", "bronze"]
    rows = [f"r.{i},{tiers[i % 4]},<= {i % 40 + 1},>= {(n - i) * 10},deny,no {i}" for i in range(n)]
    rows.append(f"r.narrow,platinum,<= 1,>= {n * 10 + 100},deny,narrow")
    header = "# hit_policy: first\nid,case.tier,case.percent,case.invoice.amount,then,message\n"
    (tmp_path / "t.csv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text("ruleset: t.big\non: invoice.received\n"
                    "case: {invoice: Invoice, tier: string, percent: number}\n"
                    "decision_table: t.csv\n", encoding="utf-8")
    return compile_ruleset(None, path)


def test_checking_a_large_decision_table_is_near_linear(tmp_path, monkeypatch):
    # rows are compared only with rows above of the same tier, and with at most so many of those
    for n in (400, 800):
        (tmp_path / str(n)).mkdir()
        sinks = []
        work = _comparisons(monkeypatch,
                            lambda n=n, sinks=sinks: sinks.append(_table(tmp_path / str(n), n)[1]))
        assert work <= n * analysis.MAX_SHADOW_CANDIDATES, (n, work)
        [d] = sinks[0].items
        assert d.code == "shadowed"
        assert d.message == ("rule `r.narrow` can never win: `r.0` ranks higher and matches "
                             "whenever it does")


def test_an_equality_is_implied_by_an_equal_value_of_another_type():
    # `implies` takes `x == 1.0` and `x == true` to imply `x == 1`: the index files them together
    def rule(name, lit):
        atom = (("case", "amount"), "==", lit)
        return NS(id=name, conditions=[NS(text=f"case.amount == {lit!r}", atom=atom)])

    ranked = [rule("h", 1), rule("f", 1.0), rule("t", True), rule("other", 2)]
    want = [("f", "h"), ("t", "h")]
    assert [(r.id, h.id) for r, h in shadowed_rules(ranked)] == pairwise(ranked) == want
