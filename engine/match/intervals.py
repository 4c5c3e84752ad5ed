"""The interval index: range conditions on one path, evaluated once per case by bisection.

For every scalar path the rules order against literals (`invoice.amount >= 1000`), the
distinct literal bounds are sorted, `b0 < b1 < ... < b(k-1)`, and cut the line into
2k + 1 elementary segments:

    0: below b0    1: equal to b0    2: between b0 and b1    3: equal to b1   ...   2k: above b(k-1)

Equal bounds get a segment of their own, so `< b` and `<= b` (and `> b`, `>= b`) are
different unions of segments. Every ordered atom on the path is a contiguous run of
segments, and so is the conjunction of one rule's atoms on it (their intersection; empty
when the atoms contradict each other). Per case the value's segment is found with one
`bisect` (`segment`); a rule's range conditions on the path hold exactly when that segment
lies in the rule's run.

Unknown values keep the reference evaluator's answer: a value that is missing, NaN, or of
another kind than the path's static type gets no segment (the adapter checks the kind
before asking for one), and every range test on it is false. Known values are compared by
Python itself (ints against floats exactly, dates, text by code point), exactly as
`engine.lang.semantics.order` does.

The atoms of the compiled plan are not changed: explanations and the reference evaluator
still read them. The durable-rules adapter (`engine.match.durable`) sends the runs as
interval fields; the index matcher (`engine.match.index`) keeps a bitset of rules per segment.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

ORDERED = ("<", "<=", ">", ">=")
INDEXED_KINDS = ("number", "string", "date")  # what `order` compares; booleans are not ordered


@dataclass
class PathIndex:
    """The sorted distinct bounds of one path and its elementary segments."""

    path: tuple[str, ...]
    bounds: list[Any]
    pos: dict[Any, int] = field(default_factory=dict)  # bound -> its index (1 and 1.0 are one bound)

    def __post_init__(self) -> None:
        self.pos = {b: i for i, b in enumerate(self.bounds)}

    @property
    def nseg(self) -> int:
        return 2 * len(self.bounds) + 1

    def segment(self, v: Any) -> int:
        """The elementary segment of a known value of the path's kind."""
        b = self.bounds
        i = bisect_left(b, v)
        return 2 * i + 1 if i < len(b) and b[i] == v else 2 * i

    def run(self, op: str, lit: Any) -> tuple[int, int]:
        """The segments (first, last; inclusive) where `value op lit` holds."""
        j = self.pos[lit]
        top = 2 * len(self.bounds)
        if op == ">=":
            return 2 * j + 1, top
        if op == ">":
            return 2 * j + 2, top
        if op == "<=":
            return 0, 2 * j + 1
        if op == "<":
            return 0, 2 * j
        raise ValueError(f"not an ordered operator: {op}")


def build_paths(rules: list[Any], network_info: dict[tuple[str, ...], tuple[tuple[str, ...], str]]
                ) -> dict[tuple[str, ...], PathIndex]:
    """A `PathIndex` for every path of a number, text or date kind that an atom orders against a literal."""
    lits: dict[tuple[str, ...], set[Any]] = {}
    for rule in rules:
        for c in rule.conditions:
            atom = c.atom
            if atom is None or atom[1] not in ORDERED:
                continue
            path = atom[0]
            if network_info[path][1] in INDEXED_KINDS:
                lits.setdefault(path, set()).add(atom[2])
    return {p: PathIndex(p, sorted(vals)) for p, vals in lits.items()}


def rule_runs(conditions: list[Any], paths: dict[tuple[str, ...], PathIndex]
              ) -> tuple[list[Any], dict[tuple[str, ...], tuple[int, int]]]:
    """Split a rule's conditions: those left as they are, and per indexed path the run of
    segments where all its range atoms on that path hold (first > last: they never do)."""
    rest: list[Any] = []
    runs: dict[tuple[str, ...], tuple[int, int]] = {}
    for c in conditions:
        atom = c.atom
        px = paths.get(atom[0]) if atom is not None and atom[1] in ORDERED else None
        if px is None:
            rest.append(c)
            continue
        lo, hi = px.run(atom[1], atom[2])
        plo, phi = runs.get(px.path, (0, px.nseg - 1))
        runs[px.path] = (max(lo, plo), min(hi, phi))
    return rest, runs
