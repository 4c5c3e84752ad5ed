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
- More than ~64 simultaneously true alpha nodes overflow a fixed stack (error 303). Each
  rule's atoms are ordered canonically (equalities first) so rules share prefixes, and the
  rules are split into several networks so that no network can have more than
  `NODE_BUDGET` nodes true at once (a static bound computed on the shared-prefix trie,
  kept incrementally) nor more than `RULE_BUDGET` rules (513 rules hang its compiler).
  Should the engine still report 303, the case is matched by the reference evaluator and
  the fallback is counted — the answer is the same by the differential tests.
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
from dataclasses import dataclass, field
from typing import Any

from engine.lang.compiler import EXACT_INT, CompiledRuleset, needs_escape
from engine.lang.semantics import get_path

NODE_BUDGET = 48  # < 64, the size of durable-rules' fixed stack
# create_ruleset never returns for a ruleset of more than 512 rules (measured on 2.0.28: 512
# rules compile in ~20 ms, 513 spin forever), so a network holds at most this many.
RULE_BUDGET = 500
_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_KIND_OK = {
    # NaN is unknown (engine.lang.semantics.is_unknown): left out, every test on it is false.
    "number": lambda v: (type(v) is int or type(v) is float) and v == v,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "date": lambda v: type(v) is dt.date,
}
_registry_lock = threading.Lock()
_networks: dict[str, "_Network"] = {}  # content hash -> network, shared process-wide
_name_counter = itertools.count()


class MatcherError(RuntimeError):
    """durable-rules reported an error for a case."""


_INF = float("inf")


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


def _atom_json(key: str, op: str, lit: Any) -> dict:
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


def _bound(trie: dict) -> int:
    """Upper bound on simultaneously true nodes below a trie level."""
    total = 0
    eq_groups: dict[str, int] = {}
    for (key, op, lit), child in trie.items():
        b = 1 + _bound(child)
        if op == "==":
            eq_groups[key] = max(eq_groups.get(key, 0), b)
        else:
            total += b
    return total + sum(eq_groups.values())


class _TrieNode:
    __slots__ = ("children", "bound", "ne_total", "eq_max")

    def __init__(self) -> None:
        self.children: dict[tuple, _TrieNode] = {}
        self.bound = 0  # INVARIANT: == _bound() of this node's subtree
        self.ne_total = 0  # sum of 1 + bound over the children whose atom is not an equality
        self.eq_max: dict[str, int] = {}  # per field: max of 1 + bound over its equality children


class _BoundTrie:
    """The shared-prefix trie of one network's atom chains, with `_bound` kept at every node.

    Adding a chain only changes the nodes along it, so checking and adding a rule costs
    O(chain length) instead of recomputing `_bound` over the whole trie (which made splitting
    n rules into networks O(n²): minutes for 2,000 rules that share equality prefixes).
    """

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root = _TrieNode()

    def bound_with(self, atoms: list) -> int:
        """`_bound` of the root if `atoms` were added (nothing is changed)."""
        path: list[_TrieNode | None] = [self.root]
        for a in atoms:
            node = path[-1]
            path.append(node.children.get(a) if node is not None else None)
        last = path[-1]
        nb = last.bound if last is not None else 0
        for i in range(len(atoms) - 1, -1, -1):
            parent, child = path[i], path[i + 1]
            key, op, _ = atoms[i]
            if parent is None:  # a new node whose only child is this chain
                nb = 1 + nb
            elif op == "==":
                old = parent.eq_max.get(key, 0)
                nb = parent.bound - old + max(old, 1 + nb)
            else:
                nb = parent.bound + (1 + nb) - (0 if child is None else 1 + child.bound)
        return nb

    def add(self, atoms: list) -> int:
        """Add one chain; returns the new bound of the root."""
        path = [self.root]
        fresh = [False]
        for a in atoms:
            node = path[-1]
            child = node.children.get(a)
            fresh.append(child is None)
            if child is None:
                child = node.children[a] = _TrieNode()
            path.append(child)
        old = [n.bound for n in path]
        for i in range(len(atoms) - 1, -1, -1):
            parent, child = path[i], path[i + 1]
            key, op, _ = atoms[i]
            if op == "==":
                parent.eq_max[key] = max(parent.eq_max.get(key, 0), 1 + child.bound)
            else:
                parent.ne_total += (1 + child.bound) - (0 if fresh[i + 1] else 1 + old[i + 1])
            parent.bound = parent.ne_total + sum(parent.eq_max.values())
        return self.root.bound


def _chain_key(atom: tuple[str, str, Any]) -> tuple:
    key, op, lit = atom
    return (0 if op == "==" else 1, key, op, str(type(lit)), str(lit))


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


@dataclass
class DurableMatcher:
    """Matches a compiled ruleset with durable-rules; `stats` counts fallbacks."""

    name = "durable"
    rs: CompiledRuleset
    networks: list[_Network] = field(default_factory=list)
    rule_names: dict[str, str] = field(default_factory=dict)  # durable rule name -> rule id
    stats: dict[str, int] = field(default_factory=lambda: {"cases": 0, "fallbacks": 0})
    last_fallback: str | None = None

    def __post_init__(self) -> None:
        rs = self.rs
        self._fields = []
        for path, key in rs.network.items():
            kinds, kind = rs.network_info[path]
            self._fields.append((key, path[0], tuple(path[1:]), kinds, _KIND_OK.get(kind, lambda v: False)))
        self._synthetic = [(key, fn) for key, fn, _node in rs.synthetic.values()]
        self._order: dict[str, int] = {}  # durable rule name -> index in rs.rules
        chunks: list[dict[str, Any]] = []
        chunk: dict[str, Any] = {}
        trie = _BoundTrie()
        for i, rule in enumerate(self.rs.rules):
            atoms = []
            for c in rule.conditions:
                if c.atom is not None:
                    path, op, lit = c.atom
                    atoms.append((self.rs.network[path], op, lit))
                else:
                    atoms.append((c.synthetic, "==", True))
            atoms = sorted(set(atoms), key=_chain_key) or [("_t", "==", 1)]
            # Would this rule push the chunk over the budget? Then start a new chunk.
            if chunk and (len(chunk) >= RULE_BUDGET or trie.bound_with(atoms) > NODE_BUDGET):
                chunks.append(chunk)
                chunk, trie = {}, _BoundTrie()
            trie.add(atoms)
            name = f"r{i}"
            self.rule_names[name] = rule.id
            self._order[name] = i
            tests = [_atom_json(k, op, lit) for k, op, lit in atoms]
            cond = tests[0] if len(tests) == 1 else {"$and": tests}
            chunk[name] = {"all": [{"m": cond}]}
        if chunk:
            chunks.append(chunk)
        with _registry_lock:
            for definition in chunks:
                key = _digest(definition)
                net = _networks.get(key)
                if net is None:
                    net = _networks[key] = _Network(definition)
                self.networks.append(net)

    def flat_fact(self, env: dict[str, Any]) -> dict[str, Any]:
        """The case as one flat JSON object: network fields and true synthetic fields."""
        fact: dict[str, Any] = {"_t": 1}
        for key, root, steps, kinds, ok in self._fields:
            v = env.get(root)
            if steps and v is not None:
                v = get_path(v, steps, kinds)
            if v is not None and ok(v):
                if type(v) is str and needs_escape(v):
                    v = _stand_in(v, *self._text_literals().get(key, ([], set())))
                fact[key] = _encode(v)
        for key, fn in self._synthetic:
            if fn(env) is True:
                fact[key] = True
        return fact

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
        body = _dumps(self.flat_fact(env))[1:-1]  # encoded once, shared by every network
        names: list[str] = []
        try:
            for net in self.networks:
                names.extend(net.match(body))
        except MatcherError as exc:
            from .reference import match_reference

            self.stats["fallbacks"] += 1
            self.last_fallback = str(exc)
            return match_reference(self.rs, env)
        order = self._order
        return [self.rs.rules[i].id for i in sorted({order[n] for n in names})]

