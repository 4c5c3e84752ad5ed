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
  `NODE_BUDGET` nodes true at once (a static bound computed on the shared-prefix trie).
  Should the engine still report 303, the case is matched by the reference evaluator and
  the fallback is counted — the answer is the same by the differential tests.
- Only JSON-native values reach it: dates as ISO strings, no `Decimal`; a value whose kind
  does not match the path's static type is left out, which makes every test on it false,
  exactly like the reference evaluator's unknown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from engine.lang.compiler import CompiledRuleset
from engine.lang.semantics import get_path

NODE_BUDGET = 48  # < 64, the size of durable-rules' fixed stack
_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
_KIND_OK = {
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


def _encode(v: Any) -> Any:
    return v.isoformat() if type(v) is dt.date else v


def _atom_json(key: str, op: str, lit: Any) -> dict:
    lit = _encode(lit)
    if op == "==":
        return {key: lit}
    return {_OPS[op]: {key: lit}}


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


def _chain_key(atom: tuple[str, str, Any]) -> tuple:
    key, op, lit = atom
    return (0 if op == "==" else 1, key, op, str(type(lit)), str(lit))


class _Network:
    """One durable-rules ruleset (a chunk of a compiled ruleset) and its session pool."""

    def __init__(self, definition: dict[str, Any]):
        import durable_rules_engine as dre

        self.dre = dre
        self.name = f"rb{next(_name_counter)}_{_digest(definition)[:10]}"
        self.handle = dre.create_ruleset(self.name, json.dumps(definition))
        self.lock = threading.Lock()
        self._local = threading.local()
        self._sids = itertools.count()
        self._ids = itertools.count()

    def sid(self) -> str:
        s = getattr(self._local, "sid", None)
        if s is None:
            s = self._local.sid = str(next(self._sids) % 64)
        return s

    def match(self, fact: dict[str, Any]) -> list[str]:
        dre = self.dre
        with self.lock:
            fact["sid"] = self.sid()
            fact["id"] = str(next(self._ids))
            text = json.dumps(fact)
            try:
                result = dre.assert_fact(self.handle, text)
            except dre.error as exc:
                raise MatcherError(str(exc)) from exc
            out: list[str] = []
            try:
                state = result[1]
                res = dre.start_action_for_state(self.handle, state)
                if res:
                    out.extend(json.loads(res[1]))
                    while True:
                        nxt = dre.complete_and_start_action(self.handle, state)
                        if not nxt:
                            break
                        out.extend(json.loads(nxt))
            finally:
                dre.retract_fact(self.handle, text)
            return out


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
        chunks: list[dict[str, Any]] = []
        chunk: dict[str, Any] = {}
        trie: dict = {}
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
            candidate = _merge(trie, atoms)
            if chunk and _bound(candidate) > NODE_BUDGET:
                chunks.append(chunk)
                chunk, trie = {}, {}
                candidate = _merge({}, atoms)
            trie = candidate
            name = f"r{i}"
            self.rule_names[name] = rule.id
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
                fact[key] = _encode(v)
        for key, fn in self._synthetic:
            if fn(env) is True:
                fact[key] = True
        return fact

    def match(self, env: dict[str, Any]) -> list[str]:
        """Ids of every rule that matches, in ruleset order."""
        self.stats["cases"] += 1
        fact = self.flat_fact(env)
        names: list[str] = []
        try:
            for net in self.networks:
                names.extend(net.match(dict(fact)))
        except MatcherError as exc:
            from .reference import match_reference

            self.stats["fallbacks"] += 1
            self.last_fallback = str(exc)
            return match_reference(self.rs, env)
        ids = {self.rule_names[n] for n in names}
        return [r.id for r in self.rs.rules if r.id in ids]


def _merge(trie: dict, atoms: list) -> dict:
    """A copy of `trie` with one more rule's atom chain added (copy-on-write along the chain)."""
    new = dict(trie)
    node = new
    for a in atoms:
        child = dict(node.get(a, {}))
        node[a] = child
        node = child
    return new
