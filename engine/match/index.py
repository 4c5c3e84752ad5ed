"""The discrimination index: single-case rules matched with bitsets, no Rete.

Bit `i` of every mask stands for the ruleset's rule `i` (Python ints are the bitsets), so
the matched rules come out in ruleset order. Built once per ruleset:

- Per path that equality atoms test (`==`, `!=`, booleans): a dict from each literal to the
  mask of the rules its value lets through (those with no `==` on the path, and those whose
  `==` names that literal, less those whose `!=` names it); a value equal to no literal
  lets the rules without `==` through, and an unknown value only the rules with neither.
- Per path that ordered atoms test (`<`, `<=`, `>`, `>=`): the interval index's elementary
  segments (`engine.match.intervals.PathIndex`) and one mask per segment (the rules whose
  run of segments holds it, and every rule without a range test on the path); an unknown
  value lets only the rules without one through.
- Every other condition stays a compiled closure, evaluated only for the rules the masks
  leave, at most once per case (conditions of the same text share the answer, as they share
  a synthetic field in the durable-rules adapter).

Per case each indexed path is read once, a prefix shared by several paths once too (step by
step, as `get_path` reads), and its masks are ANDed into the candidates. `match` walks the
candidates that have closures left, lowest bit first, drops those whose closures do not all
hold, and returns every rule left (the audit records every matched rule); `first_match`
walks all candidates lowest bit first and stops at the first that holds: the `first` hit
policy's answer (a `priority` one would need the bits in priority order).

Unknown values give the reference evaluator's answer (`engine.lang.semantics`): a value
that is missing, null, NaN or of another kind than the path's static type makes every
atom on it false, `!=` included; booleans are not numbers (`True` does not equal 1);
numbers equal and order exactly (1 == 1.0, integers beyond 2**53); text orders by code
point; an entity on a text path equals its IRI but orders against nothing. An atom whose
literal is not of the path's kind (never made by the compiler) stays a closure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from itertools import compress
from typing import Any

from engine.case import Entity
from engine.lang.compiler import CompiledRuleset, Condition
from engine.lang.semantics import get_path, get_step, kind_of

from .intervals import INDEXED_KINDS, ORDERED, PathIndex

PathKey = tuple[str, ...]  # a scalar path from its root: ('case', 'invoice', 'amount')
_UNKNOWN = object()  # a value no atom holds on: each path's masks map it to its unknown mask
_NO_LITERAL = object()  # key of the mask for a known value equal to no literal of the path
_BIT_BYTES = bytes.maketrans(b"01", b"\x00\x01")  # binary digits as false / true selectors


def _eq_number(v: Any) -> Any:
    return v if (type(v) is int or type(v) is float) and v == v else _UNKNOWN


def _eq_string(v: Any) -> Any:
    if type(v) is Entity:  # `equal` compares an entity by its IRI
        v = str(v.iri)
    return v if type(v) is str else _UNKNOWN


def _eq_boolean(v: Any) -> Any:
    return v if type(v) is bool else _UNKNOWN


def _eq_date(v: Any) -> Any:
    return v if type(v) is dt.date else _UNKNOWN


def _ord_string(v: Any) -> Any:
    return v if type(v) is str else _UNKNOWN  # `order` does not look into entities


# A case value as `equal` / `order` compare it with a literal of the path's static kind, or
# `_UNKNOWN` where they would answer null (tests/match/test_index.py holds them to `kind_of`).
EQ_KEY: dict[str, Callable[[Any], Any]] = {"number": _eq_number, "string": _eq_string, "boolean": _eq_boolean,
                                           "date": _eq_date}
ORD_KEY: dict[str, Callable[[Any], Any]] = {"number": _eq_number, "string": _ord_string, "date": _eq_date}


def _never(v: Any) -> Any:
    return _UNKNOWN


def _indexable(c: Condition, kinds: dict[PathKey, str]) -> bool:
    """Whether a condition's atom can be indexed: its literal of the path's kind (`kind_of`)."""
    if c.atom is None:
        return False
    path, op, lit = c.atom
    kind = kinds.get(path)
    if kind is None or kind_of(lit) != kind:
        return False
    return (op in ("==", "!=") and kind in EQ_KEY) or (op in ORDERED and kind in INDEXED_KINDS)


class _PathMasks:
    """What one path lets through, per value: its equality masks and its segment masks."""

    __slots__ = ("eq", "eq_key", "eq_other", "ord_key", "ord_unknown", "path", "px", "segs")

    def __init__(self, path: PathKey, kind: str):
        self.path = path
        self.eq_key = EQ_KEY.get(kind, _never)
        self.ord_key = ORD_KEY.get(kind, _never)
        self.eq: dict[Any, int] | None = None  # literal (or `_NO_LITERAL`, `_UNKNOWN`) -> mask
        self.eq_other = 0  # the mask of a known value equal to no literal (`eq[_NO_LITERAL]`)
        self.px: PathIndex | None = None
        self.segs: list[int] = []  # segment -> mask
        self.ord_unknown = 0


def _equality_masks(everyone: int, eqs: dict[int, set[Any]], nes: dict[int, set[Any]]) -> dict[Any, int]:
    """Literal -> the rules a known value equal to it lets through; `_NO_LITERAL` -> those a
    known value equal to no literal lets through; `_UNKNOWN` -> those an unknown value does."""
    with_eq = with_ne = 0
    for i in eqs:
        with_eq |= 1 << i
    for i in nes:
        with_ne |= 1 << i
    no_eq = everyone & ~with_eq
    hit: dict[Any, int] = {}
    for i, lits in eqs.items():
        if len(lits) == 1:  # two different `==` literals on one path: never holds, in no mask
            (lit,) = lits
            hit[lit] = hit.get(lit, 0) | 1 << i
    miss: dict[Any, int] = {}
    for i, lits in nes.items():
        for lit in lits:
            miss[lit] = miss.get(lit, 0) | 1 << i
    masks = {lit: (no_eq | hit.get(lit, 0)) & ~miss.get(lit, 0) for lit in hit.keys() | miss.keys()}
    masks[_NO_LITERAL] = no_eq
    masks[_UNKNOWN] = everyone & ~(with_eq | with_ne)
    return masks


# One read of a case: the read it continues (-1: the env itself), its step's name and kind,
# the same as `get_path` takes them, and the masks of the path it ends (None: a shared prefix).
_Read = tuple[int, str, str, tuple[str], tuple[str], "_PathMasks | None"]


def _read_plan(kinds: dict[PathKey, tuple[str, ...]], masks: dict[PathKey, _PathMasks]) -> list[_Read]:
    """The indexed paths as a trie of one-step reads, so that a shared prefix (`case.invoice.vendor`)
    is read once per case. Following a path one step at a time is what `get_path` does; a step
    from a value that is no list is `get_step`, called directly as compiled paths do (measured:
    a third of the time of `get_path` per read)."""
    slot: dict[PathKey, int] = {}
    plan: list[_Read] = []
    for path in masks:
        for n in range(1, len(path) + 1):
            prefix = path[:n]
            if prefix not in slot:
                slot[prefix] = len(plan)
                parent = slot[path[:n - 1]] if n > 1 else -1
                kind = kinds[path][n - 2] if n > 1 else ""
                plan.append((parent, prefix[-1], kind, (prefix[-1],), (kind,), None))
        i = slot[path]
        plan[i] = (*plan[i][:5], masks[path])
    return plan


class IndexMatcher:
    """Matches a compiled ruleset with a discrimination index over its atoms (see the module)."""

    name = "index"

    def __init__(self, rs: CompiledRuleset):
        self.rs = rs
        self._ids = [r.id for r in rs.rules]
        everyone = (1 << len(rs.rules)) - 1
        static = {p: info[1] for p, info in rs.network_info.items()}
        eqs: dict[PathKey, dict[int, set[Any]]] = {}  # path -> rule -> its `==` literals there
        nes: dict[PathKey, dict[int, set[Any]]] = {}  # path -> rule -> its `!=` literals there
        bounds: dict[PathKey, set[Any]] = {}
        ordered: list[list[tuple[PathKey, str, Any]]] = []  # per rule, its ordered atoms
        slots: dict[tuple[str, str], int] = {}  # a condition's synthetic field (or text) -> its slot in a case's memo
        # per rule, the closures left to evaluate: (slot, closure)
        self._rest: list[tuple[tuple[int, Callable[[dict[str, Any]], Any]], ...]] = []
        for i, rule in enumerate(rs.rules):
            rest = []
            mine: list[tuple[PathKey, str, Any]] = []
            for c in rule.conditions:
                if not _indexable(c, static):
                    # same text, same meaning: one synthetic field (the durable-rules adapter relies on it too)
                    key = ("synthetic", c.synthetic) if c.synthetic else ("text", c.text)
                    rest.append((slots.setdefault(key, len(slots)), c.fn))
                    continue
                assert c.atom is not None
                path, op, lit = c.atom
                if op == "==":
                    eqs.setdefault(path, {}).setdefault(i, set()).add(lit)
                elif op == "!=":
                    nes.setdefault(path, {}).setdefault(i, set()).add(lit)
                else:
                    bounds.setdefault(path, set()).add(lit)
                    mine.append(c.atom)
            ordered.append(mine)
            self._rest.append(tuple(rest))
        self._plain = [not rest for rest in self._rest]
        self._closured = sum(1 << i for i, plain in enumerate(self._plain) if not plain)  # rules with closures
        # Matched ids are picked bit by bit (per match ~0.1 µs, plus ~0.05 ns per rule of the
        # ruleset) or, above this many matches, by `itertools.compress` over every rule (~9 ns
        # per rule); measured, the break-even is ~16 matches at 200 rules, ~90 at 2,000, ~150 at 10,000.
        n = len(rs.rules)
        self._few = n * 9 // (100 + n // 20)

        paths: dict[PathKey, _PathMasks] = {}
        for path in (*eqs, *nes, *bounds):
            if path not in paths:
                paths[path] = _PathMasks(path, static[path])
        for path, pm in paths.items():
            if path in eqs or path in nes:
                pm.eq = _equality_masks(everyone, eqs.get(path, {}), nes.get(path, {}))
                pm.eq_other = pm.eq[_NO_LITERAL]
        for path, lits in bounds.items():
            paths[path].px = PathIndex(path, sorted(lits))
        self._segment_masks(everyone, paths, ordered)
        self._paths = list(paths.values())
        self._plan = _read_plan({p: rs.network_info[p][0] for p in paths}, paths)
        self._everyone = everyone

    @staticmethod
    def _segment_masks(everyone: int, paths: dict[PathKey, _PathMasks], ordered: list[list[tuple[PathKey, str, Any]]]
                       ) -> None:
        """Each ordered path's mask per segment: a sweep over the rules' runs (one run per rule
        and path: the intersection of its atoms there; empty when they contradict)."""
        runs: dict[PathKey, dict[int, tuple[int, int]]] = {}
        for i, atoms in enumerate(ordered):
            for path, op, lit in atoms:
                px = paths[path].px
                assert px is not None
                lo, hi = px.run(op, lit)
                plo, phi = runs.setdefault(path, {}).get(i, (0, px.nseg - 1))
                runs[path][i] = (max(lo, plo), min(hi, phi))
        for path, by_rule in runs.items():
            pm = paths[path]
            assert pm.px is not None
            nseg = pm.px.nseg
            starts, ends = [0] * (nseg + 1), [0] * (nseg + 1)
            ranged = 0
            for i, (lo, hi) in by_rule.items():
                ranged |= 1 << i
                if lo <= hi:
                    starts[lo] |= 1 << i
                    ends[hi + 1] |= 1 << i
            pm.ord_unknown = everyone & ~ranged
            cur = 0
            for s in range(nseg):
                cur = (cur | starts[s]) & ~ends[s]
                pm.segs.append(pm.ord_unknown | cur)

    def candidates(self, env: dict[str, Any]) -> int:
        """The rules whose indexed atoms all hold for this case, as a bitset."""
        cand = self._everyone
        vals: list[Any] = []
        for parent, name, kind, names, kinds, pm in self._plan:
            if parent < 0:
                v = env.get(name)
            else:
                v = vals[parent]
                if v is not None:
                    v = get_path(v, names, kinds) if type(v) is list else get_step(v, name, kind)
            vals.append(v)
            if pm is None:
                continue
            eq = pm.eq
            if eq is not None:
                cand &= eq.get(pm.eq_key(v), pm.eq_other)
            px = pm.px
            if px is not None:
                k = pm.ord_key(v)
                cand &= pm.ord_unknown if k is _UNKNOWN else pm.segs[px.segment(k)]
            if not cand:
                break
        return cand

    def _holds(self, i: int, env: dict[str, Any], memo: dict[int, bool]) -> bool:
        """Whether rule `i`'s closures all hold (its atoms did)."""
        for slot, fn in self._rest[i]:
            r = memo.get(slot)
            if r is None:
                r = memo[slot] = fn(env) is True  # `truth(...) is True`
            if not r:
                return False
        return True

    def match(self, env: dict[str, Any]) -> list[str]:
        """Ids of every rule that matches, in ruleset order."""
        cand = self.candidates(env)
        todo = cand & self._closured  # only these have closures left; lowest bit first
        memo: dict[int, bool] = {}
        while todo:
            low = todo & -todo
            todo ^= low
            if not self._holds(low.bit_length() - 1, env, memo):
                cand ^= low
        return self._ids_of(cand)

    def _ids_of(self, bits: int) -> list[str]:
        """The ids of the set bits, lowest first."""
        ids = self._ids
        if bits.bit_count() > self._few:  # in C: bit i is the i-th character of the reversed binary text
            return list(compress(ids, bin(bits)[:1:-1].encode().translate(_BIT_BYTES)))
        out = []
        while bits:
            low = bits & -bits
            bits ^= low
            out.append(ids[low.bit_length() - 1])
        return out

    def first_match(self, env: dict[str, Any]) -> str | None:
        """The id of the first rule in ruleset order that matches (the `first` hit policy), or None."""
        cand = self.candidates(env)
        memo: dict[int, bool] = {}
        while cand:
            low = cand & -cand
            i = low.bit_length() - 1
            cand ^= low
            if self._plain[i] or self._holds(i, env, memo):
                return self._ids[i]
        return None
