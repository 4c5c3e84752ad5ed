"""Static checks over compiled rules: conditions that contradict, rules that can never win.

Both work on network atoms (`path op literal`); conditions the analysis cannot reason
about are compared by their canonical text only, so a warning is never a guess.
"""

from __future__ import annotations

from heapq import merge
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .compiler import Rule

Atom = tuple[tuple[str, ...], str, Any]
Need = tuple[Any, ...]  # ("text", text) | ("eq", path, value) | ("path", path)


def _holds(op: str, value: Any, lit: Any) -> bool:
    held: bool
    try:
        if op == "==":
            held = value == lit
        elif op == "!=":
            held = value != lit
        elif op == "<":
            held = value < lit
        elif op == "<=":
            held = value <= lit
        elif op == ">":
            held = value > lit
        else:
            held = value >= lit
    except TypeError:
        return True  # incomparable: assume it may hold
    return held


def find_contradiction(rule: Rule) -> str | None:
    """Why the atoms of one rule can never all hold together, or None."""
    by_path: dict[tuple[str, ...], list[Atom]] = {}
    for c in rule.conditions:
        if c.atom is not None:
            by_path.setdefault(c.atom[0], []).append(c.atom)
    for path, atoms in by_path.items():
        name = ".".join(path)
        eqs = [a for a in atoms if a[1] == "=="]
        for a in eqs:
            for b in atoms:
                if b is not a and not _holds(b[1], a[2], b[2]):
                    return f"`{name} == {_show(a[2])}` contradicts `{name} {b[1]} {_show(b[2])}`"
        lows = [a for a in atoms if a[1] in (">", ">=")]
        highs = [a for a in atoms if a[1] in ("<", "<=")]
        for lo in lows:
            for hi in highs:
                try:
                    empty = lo[2] > hi[2] or (lo[2] == hi[2] and (lo[1] == ">" or hi[1] == "<"))
                except TypeError:
                    continue
                if empty:
                    return f"`{name} {lo[1]} {_show(lo[2])}` and `{name} {hi[1]} {_show(hi[2])}` leave no value"
    return None


def implies(b: Atom, a: Atom) -> bool:
    """Whether atom `b` holding guarantees atom `a` holds (same path)."""
    if b[0] != a[0]:
        return False
    (_, bop, bv), (_, aop, av) = b, a
    try:
        if bop == "==":
            return (_holds(aop, bv, av) and type(bv) is type(av)) or (bop, bv) == (aop, av)
        if bop == aop and bv == av:
            return True
        if aop in ("<", "<=") and bop in ("<", "<="):
            return bv < av or (bv == av and (aop == "<=" or bop == "<"))
        if aop in (">", ">=") and bop in (">", ">="):
            return bv > av or (bv == av and (aop == ">=" or bop == ">"))
    except TypeError:
        return False
    return False


def _covers(rule: Rule, own_texts: set[str], own_atoms: list[Atom], h: Rule) -> bool:
    """Whether every condition of `h` holds whenever `rule`'s conditions do."""
    return all(c.text in own_texts or (c.atom is not None and any(implies(b, c.atom) for b in own_atoms))
               for c in h.conditions)


def _needs(rule: Rule) -> frozenset[Need]:
    """What another rule must mention for `rule` to be implied by it (a cheap necessary condition
    of `_covers`): the text of each condition that is no atom, the value of each `==` atom (only
    `path == value` itself implies it), the path of every other atom."""
    return frozenset(_need(c) for c in rule.conditions)


def _need(c: Any) -> Need:
    if c.atom is None:
        return ("text", c.text)
    path, op, lit = c.atom
    if op == "==" and _hashable(lit):
        return ("eq", path, lit)  # equal values are one key: `implies` takes 1 == 1.0 == true alike
    return ("path", path)


def _has(rule: Rule) -> set[Need]:
    """What `rule` offers to the needs of a higher rule (see `_needs`)."""
    out: set[Need] = set()
    for c in rule.conditions:
        if c.atom is None:
            out.add(("text", c.text))
            continue
        path, op, lit = c.atom
        out.add(("path", path))
        if op == "==" and _hashable(lit):
            out.add(("eq", path, lit))
    return out


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


# Each rule is compared with at most this many higher-ranked rules whose needs it meets, the
# highest first. A table of thousands of rows of one shape (the same columns, ranges in them)
# meets the needs of every row above it: 8,000 rows were 32 million comparisons. Past the bound
# a shadowing rule ranked lower than the first MAX_SHADOW_CANDIDATES is not looked for, so a
# warning can be missed, never invented.
MAX_SHADOW_CANDIDATES = 64


def shadowed_rules(ranked: list[Rule]) -> list[tuple[Rule, Rule]]:
    """(rule, winner) for each rule that a higher-ranked rule matches whenever it does.

    `ranked` is highest first. The higher rules are grouped by what they need (`_needs`), and
    each group is filed under one of its needs, the one fewest groups had when it was made;
    a rule looks only in the files of what it has, and compares itself with at most
    `MAX_SHADOW_CANDIDATES` rules of the groups whose needs it meets, in rank order.
    """
    out: list[tuple[Rule, Rule]] = []
    groups: dict[frozenset[Need], list[tuple[int, Rule]]] = {}
    files: dict[Any, list[frozenset[Need]]] = {}  # a need -> the groups filed under it
    uses: dict[Any, int] = {}  # a need -> how many groups have it
    for i, rule in enumerate(ranked):
        if not find_contradiction(rule):
            has = _has(rule)
            met = [groups[need] for e in (None, *has) for need in files.get(e, ()) if need <= has]
            if met:
                own_texts = {c.text for c in rule.conditions}
                own_atoms = [c.atom for c in rule.conditions if c.atom is not None]
                for _, h in islice(merge(*met, key=_rank), MAX_SHADOW_CANDIDATES):
                    if _covers(rule, own_texts, own_atoms, h):
                        out.append((rule, h))
                        break
        need = _needs(rule)
        group = groups.get(need)
        if group is None:
            group = groups[need] = []
            # INVARIANT: a group is filed once, under one of its needs (None when it needs nothing)
            anchor = min(need, key=lambda e: uses.get(e, 0), default=None)
            files.setdefault(anchor, []).append(need)
            for e in need:
                uses[e] = uses.get(e, 0) + 1
        group.append((i, rule))
    return out


def _rank(item: tuple[int, Rule]) -> int:
    return item[0]


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)
