"""The durable-rules adapter: compiled rules as Rete networks, every match collected.

How it works around the measured limits of durable-rules 2.0.28 (DESIGN.md):

- The case is asserted as a *fact* and retracted afterwards, so every matching rule fires
  (an event would be consumed by the first).
- We call its C engine (`durable_rules_engine`) directly and never create a `Host`: no
  background dispatch threads, no Python closures per action, and errors surface here.
- Sessions: a fixed pool of session ids, one per thread (never one per case, never
  `delete_state`); a lock per network because a session is not thread-safe.
- Ruleset names are global to the process: each network gets a unique name from its content
  hash; identical networks are shared across engines in one process.
- Range conditions never reach it as ranges (`engine.match.intervals`): per ordered path
  the literal bounds are sorted once, a case's value is placed by one `bisect` in an
  elementary segment (equal to a bound, or strictly between two), and each rule's `<`,
  `<=`, `>`, `>=` atoms on that path become one *interval field* (`q<n>`), tested by
  equality with true. The message to a network holds the interval fields whose run of
  segments holds the case's segment, and only those of rules whose first equality holds
  (one field per run and first equality; fragments cached per segment, bounded). A half-
  line `amount >= lo` used to be true for every larger amount; an interval field is true
  only where its rule's range holds, so far fewer nodes are true at once. The compiled
  atoms are unchanged: the reference evaluator and "why not" read them.
- Its alpha network is walked depth first with a fixed stack of 64 entries (error 303 when
  more are pending). `_bound` models that stack on the shared-prefix trie of a network's
  atom chains: below a node, k - 1 + the most any child needs, where k counts the children
  that can hold together (one per field among equalities; among the interval fields of one
  path, the most runs sharing a segment; every other child). Measured on 2.0.28 to the
  entry (64 true children of one node pass, 65 fail; 30 x 30 = 930 true nodes pass):
  `tests/match/test_durable_chunking.py`. Rules, their atoms ordered canonically
  (equalities, then interval fields, then the rest) and sorted so equal prefixes share
  nodes, go to the first network where the bound stays within `NODE_BUDGET`, the network
  within `RULE_BUDGET` rules (513 rules hang its compiler) and its messages within
  `MESSAGE_BUDGET` fields (more than 254 are refused: error 302). A network's message
  holds only the fields its rules test, and a network whose every rule starts with an
  equality the case fails is not asked. Should the engine still report an error, the
  case is matched by the reference evaluator and the fallback is counted — the answer is
  the same by the differential tests.
- Ordered comparisons, text and dates included, are decided by the interval index in
  Python, so its ordering quirks below only matter for what still reaches it (`==`, `!=`);
  the compiler still keeps ordered text literals with a space or `!` out of atoms (they
  are synthetic fields), which is no longer needed but harmless.
- Only JSON-native values reach it: dates as ISO strings, no `Decimal`; a value whose kind
  does not match the path's static type is left out, which makes every test on it false,
  exactly like the reference evaluator's unknown (so is NaN).
- Its JSON is written by `_dumps`: text as UTF-8 (it compares strings as written, so `\u00e9`
  would sort before `z`) and doubles with a decimal point before any exponent (it rejects
  `1e-05`). It holds integers in 64 bits, compares them with doubles as doubles, compares
  strings as JSON text, and a proper prefix by its closing quote (`"a" < "a!"` is false):
  only literals it compares exactly become atoms (`engine.lang.compiler.native_literal`),
  an integer beyond ±2**53 is sent as ±infinity, and text JSON escapes as a stand-in that
  compares the same (`_stand_in`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.lang.compiler import EXACT_INT, CompiledRuleset, needs_escape
from engine.lang.semantics import get_path

from .intervals import build_paths, rule_runs

NODE_BUDGET = 48  # < 64, the size of durable-rules' fixed stack
# create_ruleset never returns for a ruleset of more than 512 rules (measured on 2.0.28: 512
# rules compile in ~20 ms, 513 spin forever), so a network holds at most this many.
# 250 rather than 500: smaller networks get smaller messages (durable-rules walks every field
# of the message at each node it visits), measured ~10 % faster at 2,000 generated rules.
RULE_BUDGET = 250
# A message of more than 254 fields (sid and id included) is refused (error 302, measured on
# 2.0.28); a network is kept to messages of at most this many.
MESSAGE_BUDGET = 200
# The interval fields of a network for one segment are joined once and kept; at most this
# many such fragments per matcher (then the cache starts again): bounded memory (a few MB)
# whatever values the cases bring.
FRAGMENT_CACHE = 32768
_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_KIND_OK = {
    # NaN is unknown (engine.lang.semantics.is_unknown): left out, every test on it is false.
    "number": lambda v: (type(v) is int or type(v) is float) and v == v,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "date": lambda v: type(v) is dt.date,
}
# one test of a rule: (field, op, literal); an interval field's literal is (path id, first, last)
_Atom = tuple[str, str, Any]
_AtomTrie = dict[_Atom, "_AtomTrie"]  # atom -> the atoms below it
_Gate = tuple[str, Any]  # a rule's first equality: (field, encoded value)
# how a case's value is sent: field, root, steps, kinds, kind test, whether sent, interval path
# id (-1: none) and its segment function
_Field = tuple[str, str, tuple[str, ...], tuple[str, ...], Callable[[Any], bool], bool, int,
               Callable[[Any], int] | None]
_registry_lock = threading.Lock()
_networks: dict[str, _Network] = {}  # content hash -> network, shared process-wide
_name_counter = itertools.count()


def _count_in(counts: list[int], lo: int, hi: int) -> int:
    """Add one to `counts[lo..hi]` (grown with zeros as needed); the largest count in that run."""
    if len(counts) <= hi:
        counts.extend([0] * (hi + 1 - len(counts)))
    inside = [x + 1 for x in counts[lo:hi + 1]]
    counts[lo:hi + 1] = inside
    return max(inside)


class MatcherError(RuntimeError):
    """durable-rules reported an error for a case."""


_INF = float("inf")
_ABSENT = object()  # a gate field the case does not have: no gate value equals it


def _encode(v: Any) -> Any:
    """A value as the network sees it: dates as ISO text; an integer beyond ±2**53 as ±infinity.

    durable-rules compares integers with doubles as doubles (2**53 + 1 would equal 2**53), but
    every number literal of the network lies within ±2**53 (`native_literal`), so a larger
    integer orders against all of them exactly as infinity does.
    """
    t = type(v)
    if t is dt.date:
        return v.isoformat()
    if t is int and abs(v) > EXACT_INT:
        return _INF if v > 0 else -_INF
    return v


def _atom_json(key: str, op: str, lit: Any) -> dict[str, Any]:
    if op == "in":  # an interval field: true in the message when the case's segment is in its run
        return {key: True}
    lit = _encode(lit)
    if op == "==":
        return {key: lit}
    return {_OPS[op]: {key: lit}}


def _stand_in(v: str, ordered: list[str], equal: set[str]) -> str:
    """Text that JSON escapes, replaced by text that compares the same with every literal.

    durable-rules compares strings as their JSON text, so `a"b` (written `a\\"b`) would sort
    after `a#`. The literals are unescaped (`native_literal`), and `v`, escaped, equals none of
    them. The stand-in lies strictly between the ordered literals next to `v` and equals no
    literal: the lower neighbour plus spaces (ordered literals have no space, so this stays
    below the upper neighbour).
    """
    lo = max((s for s in ordered if s < v), default="")
    out = lo + " " if lo in ordered else lo
    while out in equal:
        out += " "
    return out


def _number(v: float) -> str:
    """A double as durable-rules' JSON parser reads it: an exponent only after a decimal point."""
    if v != v:
        raise MatcherError("NaN cannot be sent to durable-rules")
    if v in (_INF, -_INF):
        return "1.0e+999" if v > 0 else "-1.0e+999"  # parsed with atof: ±infinity, ordered as in Python
    text = repr(v)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _dumps(obj: Any) -> str:
    """JSON for durable-rules: text as UTF-8, not `\\u` escapes (it compares the text as written),
    and numbers in a form its parser reads exactly. Only what facts and networks hold."""
    t = type(obj)
    if t is str:
        return json.dumps(obj, ensure_ascii=False)
    if t is dict:
        return "{" + ", ".join(f"{_dumps(str(k))}: {_dumps(v)}" for k, v in obj.items()) + "}"
    if t is list or t is tuple:
        return "[" + ", ".join(_dumps(v) for v in obj) + "]"
    if t is bool or obj is None:
        return json.dumps(obj)
    if t is int:
        if abs(obj) >= 2 ** 63:
            raise MatcherError(f"the integer {obj} does not fit durable-rules' 64 bits")
        return str(obj)
    if t is float:
        return _number(obj)
    raise MatcherError(f"durable-rules cannot compare {obj!r} exactly")


def _run_depth(runs: list[tuple[int, int]]) -> int:
    """The most runs (first, last; inclusive) that share one segment."""
    events = sorted([(lo, 1) for lo, _ in runs] + [(hi + 1, -1) for _, hi in runs])
    depth = best = 0
    for _, d in events:  # at one position, runs that end are removed before runs that start
        depth += d
        best = max(best, depth)
    return best


def _bound(trie: _AtomTrie) -> int:
    """Upper bound on durable-rules' alpha stack while it matches one fact against a trie level.

    Its matcher walks the alpha network depth first with a fixed stack of 64 entries: a node
    it pops pushes every child that holds, and the stack overflows (error 303) when more are
    pending than that. So the stack below a node needs at most k - 1 + (the most any child
    needs), at least k, where k is how many children can hold together: one per field among
    equalities, and among the interval fields of one path (`op` "in", literal `(path id,
    first, last)`) the most runs that share a segment; any other child may hold with the
    rest. Measured on 2.0.28: 64 true children of one node pass, 65 fail; 30 nodes with 30
    true children each (930 true nodes, stack 59) pass.
    """
    if not trie:
        return 0
    ne = 0
    eq: set[str] = set()
    runs: dict[Any, list[tuple[int, int]]] = {}
    most = 0
    for (key, op, lit), child in trie.items():
        most = max(most, _bound(child))
        if op == "==":
            eq.add(key)
        elif op == "in":
            runs.setdefault(lit[0], []).append((lit[1], lit[2]))
        else:
            ne += 1
    k = ne + len(eq) + sum(_run_depth(r) for r in runs.values())
    return k - 1 + max(1, most)


class _TrieNode:
    __slots__ = ("bound", "children", "eq", "iv", "iv_max", "most", "ne")

    def __init__(self) -> None:
        self.children: dict[_Atom, _TrieNode] = {}
        self.bound = 0  # INVARIANT: == _bound() of this node's subtree
        self.ne = 0  # children whose atom is neither an equality nor an interval field
        self.eq: set[str] = set()  # fields of the equality children
        # per indexed path: for each segment, how many interval children's runs hold it; the max of that
        self.iv: dict[Any, list[int]] = {}
        self.iv_max: dict[Any, int] = {}
        self.most = 0  # the largest bound of a child

    def k(self) -> int:
        return self.ne + len(self.eq) + sum(self.iv_max.values())

    def k_with(self, atom: _Atom, exact: bool = True) -> int:
        """`k()` if a new child for `atom` were added (not `exact`: an upper bound, cheaper)."""
        key, op, lit = atom
        if op == "==":
            return self.k() + (key not in self.eq)
        if op == "in":
            if not exact:
                return self.k() + 1
            pid, lo, hi = lit
            w = self.iv.get(pid)
            inside = max(w[lo:hi + 1], default=0) if w else 0
            old = self.iv_max.get(pid, 0)
            return self.k() - old + max(old, inside + 1)
        return self.k() + 1

    def add_child(self, atom: _Atom) -> None:
        key, op, lit = atom
        if op == "==":
            self.eq.add(key)
        elif op == "in":
            pid, lo, hi = lit
            peak = _count_in(self.iv.setdefault(pid, []), lo, hi)
            self.iv_max[pid] = max(self.iv_max.get(pid, 0), peak)
        else:
            self.ne += 1


class _BoundTrie:
    """The shared-prefix trie of one network's atom chains, with `_bound` kept at every node.

    Adding a chain only changes the nodes along it, so checking and adding a rule costs
    O(chain length) (plus the runs of its interval fields) instead of recomputing `_bound`
    over the whole trie.
    """

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root = _TrieNode()

    def bound_with(self, atoms: list[_Atom], exact: bool = True) -> int:
        """`_bound` of the root if `atoms` were added (nothing is changed); not `exact`: an
        upper bound of it, without looking at the runs of interval fields."""
        path: list[_TrieNode | None] = [self.root]
        for a in atoms:
            node = path[-1]
            path.append(node.children.get(a) if node is not None else None)
        last = path[-1]
        nb = last.bound if last is not None else 0
        for i in range(len(atoms) - 1, -1, -1):
            parent, child = path[i], path[i + 1]
            if parent is None:  # a new node whose only child is this chain
                nb = max(1, nb)
            else:
                k = parent.k() if child is not None else parent.k_with(atoms[i], exact)
                nb = k - 1 + max(1, parent.most, nb)
        return nb

    def add(self, atoms: list[_Atom]) -> int:
        """Add one chain; returns the new bound of the root."""
        path = [self.root]
        for a in atoms:
            node = path[-1]
            child = node.children.get(a)
            if child is None:
                child = node.children[a] = _TrieNode()
                node.add_child(a)
            path.append(child)
        for i in range(len(atoms) - 1, -1, -1):
            parent, child = path[i], path[i + 1]
            parent.most = max(parent.most, child.bound)
            parent.bound = parent.k() - 1 + max(1, parent.most)
        return self.root.bound


def _chain_key(atom: _Atom) -> tuple[int, str, str, str, str]:
    """Equalities first (they share prefixes and exclude each other), then interval fields,
    then the rest (`!=`, which holds for almost every value)."""
    key, op, lit = atom
    return (0 if op == "==" else 1 if op == "in" else 2, key, op, str(type(lit)), str(lit))


class _Network:
    """One durable-rules ruleset (a chunk of a compiled ruleset) and its session pool."""

    def __init__(self, definition: dict[str, Any]):
        import durable_rules_engine as dre

        self.dre = dre
        self.name = f"rb{next(_name_counter)}_{_digest(definition)[:10]}"
        self.handle = dre.create_ruleset(self.name, _dumps(definition))
        self.lock = threading.Lock()
        self._local = threading.local()
        self._sids = itertools.count()
        self._ids = itertools.count()

    def sid(self) -> str:
        s = getattr(self._local, "sid", None)
        if s is None:
            s = self._local.sid = str(next(self._sids) % 64)
        return s

    def match(self, body: str) -> list[str]:
        """Names of the rules of this network that match `body` (a fact's JSON fields, no braces)."""
        dre = self.dre
        with self.lock:
            text = f'{{"sid": "{self.sid()}", "id": "{next(self._ids)}", {body}}}'
            try:
                result = dre.assert_fact(self.handle, text)
            except dre.error as exc:
                raise MatcherError(str(exc)) from exc
            out: list[str] = []
            try:
                state = result[1]
                res = dre.start_action_for_state(self.handle, state)
                if res:
                    out.append(_action_name(res[1]))
                    while True:
                        nxt = dre.complete_and_start_action(self.handle, state)
                        if not nxt:
                            break
                        out.append(_action_name(nxt))
            finally:
                dre.retract_fact(self.handle, text)
            return out


def _action_name(text: str) -> str:
    """The rule name of one action result, `{"r12":{"m":{...}}}`, without parsing the fact."""
    if not text.startswith('{"'):
        raise MatcherError(f"unexpected action result from durable-rules: {text[:80]!r}")
    return text[2:text.index('"', 2)]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


_Q_BLOCK = 16


class _Chunk:
    """The rules of one network while they are split, and what its messages need."""

    __slots__ = ("gates", "keys", "q", "q_count", "q_max", "rules", "runs", "trie")

    def __init__(self) -> None:
        self.rules: dict[str, Any] = {}  # durable rule name -> definition
        self.trie = _BoundTrie()
        # (path id, gate field) -> gate value -> interval field -> (first, last)
        self.runs: dict[tuple[int, Any], dict[Any, dict[str, tuple[int, int]]]] = {}
        self.keys: set[str] = {"_t"}  # the fields its atoms test: its messages hold only those
        # the first equality of each rule (field -> values); None once a rule has none
        self.gates: dict[str, set[Any]] | None = {}
        # its interval fields; per path and block of `_Q_BLOCK` segments how many of their runs
        # reach into it (an upper bound on those holding one segment), and the max
        self.q: set[str] = set()
        self.q_count: dict[int, list[int]] = {}
        self.q_max: dict[int, int] = {}

    def fits(self, atoms: list[_Atom]) -> bool:
        """Whether one more rule keeps the network within its budgets."""
        if len(self.rules) >= RULE_BUDGET:
            return False
        # the most fields a message can have: sid, id, the fields tested, and the interval
        # fields whose runs share a segment (gates ignored)
        props = 2 + len(self.keys) + sum(self.q_max.values())
        new_q = []
        for key, op, lit in atoms:
            if op != "in":
                props += key not in self.keys
            elif key not in self.q:
                new_q.append(lit)
        if props + len(new_q) > MESSAGE_BUDGET:  # then look at the runs (cheap upper bound first)
            for pid, lo, hi in new_q:
                w = self.q_count.get(pid)
                lo, hi = lo // _Q_BLOCK, hi // _Q_BLOCK
                inside = max(w[lo:hi + 1], default=0) if w else 0
                props += max(0, inside + 1 - self.q_max.get(pid, 0))
            if props > MESSAGE_BUDGET:
                return False
        return (self.trie.bound_with(atoms, exact=False) <= NODE_BUDGET
                or self.trie.bound_with(atoms) <= NODE_BUDGET)

    def add(self, name: str, atoms: list[_Atom], gate: _Gate | None) -> None:
        self.trie.add(atoms)
        for key, op, lit in atoms:
            if op == "in" and key not in self.q:
                self.q.add(key)
                pid, lo, hi = lit
                lo, hi = lo // _Q_BLOCK, hi // _Q_BLOCK
                peak = _count_in(self.q_count.setdefault(pid, []), lo, hi)
                self.q_max[pid] = max(self.q_max.get(pid, 0), peak)
        if gate is None:
            self.gates = None
        elif self.gates is not None:
            self.gates.setdefault(gate[0], set()).add(gate[1])
        gkey, gval = gate if gate is not None else (None, None)
        for key, op, lit in atoms:
            if op == "in":
                self.runs.setdefault((lit[0], gkey), {}).setdefault(gval, {})[key] = (lit[1], lit[2])
            else:
                self.keys.add(key)
        tests = [_atom_json(k, op, lit) for k, op, lit in atoms]
        self.rules[name] = {"all": [{"m": tests[0] if len(tests) == 1 else {"$and": tests}}]}


@dataclass
class DurableMatcher:
    """Matches a compiled ruleset with durable-rules; `stats` counts fallbacks."""

    name = "durable"
    rs: CompiledRuleset
    networks: list[_Network] = field(default_factory=list)
    rule_names: dict[str, str] = field(default_factory=dict)  # durable rule name -> rule id
    # cases matched, cases that fell back to the reference evaluator, networks asked (<= cases x networks)
    stats: dict[str, int] = field(default_factory=lambda: {"cases": 0, "fallbacks": 0, "asked": 0})
    last_fallback: str | None = None

    def __post_init__(self) -> None:
        rs = self.rs
        # The interval index: every ordered path, its bounds and elementary segments.
        self.paths = build_paths(rs.rules, rs.network_info)
        pids = {path: n for n, path in enumerate(self.paths)}
        self._order: dict[str, int] = {}  # durable rule name -> index in rs.rules
        self.never: list[str] = []  # rules whose range conditions contradict: in no network
        chains = []
        used: set[str] = {"_t"}
        qkeys: dict[tuple[int, int, int, _Gate | None], str] = {}  # (path id, first, last, gate) -> interval field
        for i, rule in enumerate(rs.rules):
            rest, runs = rule_runs(rule.conditions, self.paths)
            if any(lo > hi for lo, hi in runs.values()):
                self.never.append(rule.id)
                continue
            atoms = []
            for c in rest:
                if c.atom is not None:
                    path, op, lit = c.atom
                    atoms.append((rs.network[path], op, lit))
                else:
                    atoms.append((c.synthetic, "==", True))
            atoms = sorted(set(atoms), key=_chain_key)
            # The rule's first equality gates its interval fields: they are sent only when it
            # holds (below). One field per run and gate, so a message never names a field twice.
            gate = (atoms[0][0], _encode(atoms[0][2])) if atoms and atoms[0][1] == "==" else None
            ivs = []
            for path, (lo, hi) in runs.items():
                run = (pids[path], lo, hi)
                key = qkeys.setdefault((*run, gate), f"q{len(qkeys)}")
                ivs.append((key, "in", run))
            atoms = sorted(atoms + ivs, key=_chain_key) or [("_t", "==", 1)]
            used.update(a[0] for a in atoms if a[1] != "in")
            chains.append((tuple(_chain_key(a) for a in atoms), i, atoms, gate))
        # Rules sharing atoms go together (sorted chains): equal prefixes share trie nodes. Each
        # rule goes to the first network it fits in (first fit), so rules whose equalities
        # exclude each other fill a network up to the rule budget.
        chains.sort(key=lambda c: c[0])
        chunks: list[_Chunk] = []
        for _key, i, atoms, gate in chains:
            for chunk in chunks:
                if chunk.fits(atoms):
                    break
            else:
                chunk = _Chunk()
                chunks.append(chunk)
            name = f"r{i}"
            chunk.add(name, atoms, gate)
            self.rule_names[name] = rs.rules[i].id
            self._order[name] = i
        with _registry_lock:
            for definition in (c.rules for c in chunks):
                key = _digest(definition)
                net = _networks.get(key)
                if net is None:
                    net = _networks[key] = _Network(definition)
                self.networks.append(net)
        # What a case is turned into: the network fields its atoms test (`used`: the others,
        # e.g. a path only ordered against literals, stay out of the message), the true
        # synthetic fields, and per network the interval fields whose run holds the case's segment.
        self._fields: list[_Field] = []
        for path, key in rs.network.items():
            kinds, kind = rs.network_info[path]
            px = self.paths.get(path)
            self._fields.append((key, path[0], tuple(path[1:]), kinds, _KIND_OK.get(kind, lambda v: False),
                                 key in used, pids[path] if px else -1, px.segment if px else None))
        self._synthetic = [(key, fn) for key, fn, _node in rs.synthetic.values()]
        self._ids = [r.id for r in rs.rules]
        self._net_keys = [sorted(c.keys) for c in chunks]
        self._net_gates = [None if c.gates is None else [(k, frozenset(v)) for k, v in sorted(c.gates.items())]
                           for c in chunks]
        self._caches: list[dict[int, str]] = []
        self._cached = 0
        self._net_runs = [[(pid, gkey, {gval: (sorted(((k, lo, hi) for k, (lo, hi) in fields.items()),
                                                        key=lambda r: r[1]), self._new_cache())
                                          for gval, fields in by_value.items()})
                            for (pid, gkey), by_value in sorted(c.runs.items(),
                                                                key=lambda kv: (kv[0][0], str(kv[0][1])))]
                           for c in chunks]

    def _new_cache(self) -> dict[int, str]:
        cache: dict[int, str] = {}
        self._caches.append(cache)
        return cache

    def _prepare(self, env: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[int, int]]:
        """The flat fact (every network field), what durable-rules is sent of it, and the segments."""
        fact: dict[str, Any] = {"_t": 1}
        sent: dict[str, Any] = {"_t": 1}
        segs: dict[int, int] = {}
        for key, root, steps, kinds, ok, in_net, pid, segment in self._fields:
            v = env.get(root)
            if steps and v is not None:
                v = get_path(v, steps, kinds)
            if v is not None and ok(v):
                if segment is not None:
                    segs[pid] = segment(v)  # the value itself, compared by Python: exact
                if type(v) is str and needs_escape(v):
                    v = _stand_in(v, *self._text_literals().get(key, ([], set())))
                fact[key] = _encode(v)
                if in_net:
                    sent[key] = fact[key]
        for key, fn in self._synthetic:
            if fn(env) is True:
                fact[key] = sent[key] = True
        return fact, sent, segs

    def flat_fact(self, env: dict[str, Any]) -> dict[str, Any]:
        """The case as one flat JSON object: every network field and the true synthetic fields
        (without the interval fields, which differ per network: see `bodies`)."""
        return self._prepare(env)[0]

    def bodies(self, env: dict[str, Any]) -> list[str | None]:
        """What each network is sent for this case: JSON fields without braces, `sid` and `id`;
        None for a network that cannot match it (not asked)."""
        _fact, sent, segs = self._prepare(env)
        return self._bodies(sent, segs)

    def _bodies(self, sent: dict[str, Any], segs: dict[int, int]) -> list[str | None]:
        # each field encoded once per case; each network gets the fields it tests. Text is
        # written as it is: what reaches `sent` never needs a JSON escape (`_stand_in`).
        parts = {}
        for k, v in sent.items():
            t = type(v)
            parts[k] = (f'"{k}": "{v}"' if t is str else f'"{k}": true' if v is True else f'"{k}": false'
                        if v is False else f'"{k}": {_dumps(v)}')
        out: list[str | None] = []
        for keys, gates, net_runs in zip(self._net_keys, self._net_gates, self._net_runs, strict=True):
            # A network whose every rule starts with an equality the case fails cannot match:
            # it is not asked (None). Python's == is at least as wide as durable-rules' here.
            if gates is not None and not any(sent.get(k, _ABSENT) in vals for k, vals in gates):
                out.append(None)
                continue
            text = ", ".join([parts[k] for k in keys if k in parts])  # never empty: "_t" is always there
            for pid, gkey, by_value in net_runs:
                seg = segs.get(pid)
                if seg is None:  # unknown: no interval field is true
                    continue
                # Only the interval fields of rules whose first equality can hold: for the
                # others durable-rules would never test them. A gate that holds in Python holds
                # there: the same encoded values, equal the same way (1 == True only widens it).
                entry = by_value.get(None if gkey is None else sent.get(gkey, _ABSENT))
                if entry is None:
                    continue
                runs, cache = entry
                frag = cache.get(seg)
                if frag is None:
                    if self._cached >= FRAGMENT_CACHE:
                        for c in self._caches:
                            c.clear()
                        self._cached = 0
                    frag = cache[seg] = "".join(f', "{key}": true' for key, lo, hi in runs
                                                if lo <= seg <= hi)
                    self._cached += 1
                text += frag
            out.append(text)
        return out

    def _text_literals(self) -> dict[str, tuple[list[str], set[str]]]:
        """Per network field, the text literals it is ordered against and those it is equated with."""
        found = self.__dict__.get("_text_lits")
        if found is None:
            found = {}
            for rule in self.rs.rules:
                for c in rule.conditions:
                    if c.atom is not None and type(c.atom[2]) is str:
                        ordered, equal = found.setdefault(self.rs.network[c.atom[0]], ([], set()))
                        if c.atom[1] in ("==", "!="):
                            equal.add(c.atom[2])
                        else:
                            ordered.append(c.atom[2])
            self.__dict__["_text_lits"] = found
        return found

    def match(self, env: dict[str, Any]) -> list[str]:
        """Ids of every rule that matches, in ruleset order."""
        self.stats["cases"] += 1
        _fact, sent, segs = self._prepare(env)
        names: list[str] = []
        try:
            for net, text in zip(self.networks, self._bodies(sent, segs), strict=True):
                if text is not None:
                    self.stats["asked"] += 1
                    names.extend(net.match(text))
        except MatcherError as exc:
            from .reference import match_reference

            self.stats["fallbacks"] += 1
            self.last_fallback = str(exc)
            return match_reference(self.rs, env)
        ids = self._ids
        return [ids[i] for i in sorted(set(map(self._order.__getitem__, names)))]
