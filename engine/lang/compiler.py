"""Rule files → checked, compiled rulesets.

A compiled ruleset carries everything later stages need and nothing they must recompute:
typed conditions compiled to closures, the split of each condition into a network atom
(`path op literal`, matched by durable-rules) or a shared synthetic field (anything else,
computed once per case), and the resolution plan (exactly the graph paths the rules read).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from engine.case import as_of_date
from engine.errors import DiagnosticSink, Span, suggest_help

from . import expr as E
from .actions import ActionCatalog, parse_type
from .checker import Checker, DerivedSignature, Scope, expand_iri
from .semantics import compile_node
from .source import LBool, LDict, LList, LNone, LStr, load_yaml, plain, span_of
from .types import ANY, Schema, Type, ref

HIT_POLICIES = ("priority", "first", "unique", "collect")
RULESET_KEYS = ("ruleset", "description", "on", "hit_policy", "case", "facts", "derived", "rules",
                "decision_table", "guards", "targets", "tests")
RULE_KEYS = ("id", "description", "priority", "when", "then")
GUARD_KEYS = ("id", "description", "deny_when", "review_when", "message", "applies_to")
TEST_KEYS = ("name", "case", "as_of", "expect")
EXPECT_KEYS = ("outcome", "action", "rule", "params", "reason", "guard")
NEGATE = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

Fn = Callable[[dict[str, Any]], Any]
# a graph path from its root: the root, then per step its name, kind and property IRI
PlanPath = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str | None, ...]]


@dataclass
class Condition:
    """One item of a rule's `when`: its typed tree, its closure and how the matcher sees it."""

    text: str
    node: E.Node
    span: Span | None
    fn: Fn
    atom: tuple[tuple[str, ...], str, Any] | None = None  # (path, op, literal) for the Rete network
    synthetic: str | None = None  # key of the shared synthetic field otherwise


@dataclass
class Consequence:
    """What a rule proposes: an action with parameters, or an explicit escalate / deny / no_action."""

    kind: str  # action | escalate | deny | no_action
    action: str | None = None
    params: dict[str, tuple[E.Node, Fn]] = field(default_factory=dict)
    message: str = ""
    span: Span | None = None


@dataclass
class Rule:
    """A compiled rule; `order` is its position in the ruleset (ties and `first` use it)."""

    id: str
    description: str
    priority: int
    order: int
    conditions: list[Condition]
    then: Consequence
    span: Span | None
    origin: str = "yaml"  # yaml | table


@dataclass
class Guard:
    """A check every proposal must pass: `deny` (forbid always wins) or `review` (a person decides)."""

    id: str
    kind: str  # deny | review
    text: str
    node: E.Node
    fn: Fn
    message: str
    applies_to: tuple[str, ...]
    span: Span | None
    description: str = ""


@dataclass
class Derived:
    """A named derived fact: a graph query or algorithm, or a named sub-expression."""

    name: str
    text: str
    node: E.Node
    fn: Fn
    type: Type
    span: Span | None


@dataclass
class RuleTest:
    """A test beside the rules: a case payload and the decision it must get."""

    name: str
    payload: dict[str, Any]
    as_of: str | None
    expect: dict[str, Any]
    span: Span | None


@dataclass
class TrieEdge:
    """One step of the resolution plan: how to read it and what is read below it."""

    kind: str  # field | one | many
    prop: str | None  # property IRI for graph steps
    children: dict[str, TrieEdge] = field(default_factory=dict)


@dataclass
class CompiledRuleset:
    """A checked ruleset ready for resolution and matching."""

    name: str
    version: str  # content hash of the source files
    file: str
    description: str
    case_type: str
    hit_policy: str
    case_schema: Type
    rules: list[Rule]
    guards: list[Guard]
    derived: list[Derived]
    tests: list[RuleTest]
    plan: dict[str, dict[str, TrieEdge]]  # root -> trie
    network: dict[tuple[str, ...], str]  # scalar path -> network field key
    network_info: dict[tuple[str, ...], tuple[tuple[str, ...], str]]  # path -> (step kinds, static kind)
    synthetic: dict[str, tuple[str, Fn, E.Node]]  # canonical text -> (field key, closure, node)
    scope: Scope | None = None
    targets: dict[str, dict[str, str]] = field(default_factory=dict)  # action -> param -> `any` | `case.F`

    @functools.cached_property
    def actions(self) -> list[str]:
        """The actions this ruleset is about: those its rules propose and its guards name."""
        names = {r.then.action for r in self.rules if r.then.kind == "action" and r.then.action}
        names |= {a for g in self.guards for a in g.applies_to}
        return sorted(names)

    @functools.cached_property
    def rule_by_id(self) -> dict[str, Rule]:
        """Rules by id (built once: `rules` is not changed after compilation)."""
        return {r.id: r for r in self.rules}

    @functools.cached_property
    def order_rank(self) -> dict[str, int]:
        """Each rule's position in the ruleset (as written)."""
        return {r.id: r.order for r in self.rules}

    @functools.cached_property
    def priority_rank(self) -> dict[str, int]:
        """Each rule's position in priority order: highest priority first, then as written."""
        ranked = sorted(self.rules, key=lambda r: (-r.priority, r.order))
        return {r.id: i for i, r in enumerate(ranked)}


def proposed_actions(rules: list[Rule]) -> dict[str, Span | None]:
    """The actions the rules propose, each with where it is first proposed (for diagnostics)."""
    where: dict[str, Span | None] = {}
    for r in rules:
        if r.then.kind == "action" and r.then.action:
            where.setdefault(r.then.action, r.then.span or r.span)
    return where


@dataclass
class CompileContext:
    """What a ruleset is compiled against: the ontology schema, the actions and graph functions."""

    schema: Schema
    actions: ActionCatalog
    derived_signatures: dict[str, DerivedSignature]
    derived_impls: dict[str, Callable[..., Any]]
    prefixes: dict[str, str]


def _loc(d: Any, key: str, default: Span | None) -> Span | None:
    if isinstance(d, LDict) and key in d.key_spans:
        return d.key_spans[key]
    return default


def check_keys(d: LDict, allowed: tuple[str, ...], what: str, sink: DiagnosticSink) -> None:
    """Every key of `d` not in `allowed` is a `schema` error, with a "did you mean" suggestion."""
    for k in d:
        if k not in allowed:
            help_, sug = suggest_help(str(k), allowed, "keys")
            sink.error("schema", f"unknown key `{k}` in {what}", d.key_spans.get(k), help=help_, suggestion=sug)


def _locate(value: Any) -> Callable[[int], tuple[int, int]] | None:
    """Where each character of a YAML scalar is in its file (escapes and folded lines included)."""
    return value.position if isinstance(value, LStr) and getattr(value, "span", None) is not None else None


def _expr_span(value: Any, fallback: Span | None) -> Span | None:
    sp = span_of(value, fallback)
    if sp is not None and isinstance(value, LStr) and value.style in ('"', "'"):
        return sp.shifted(col=1)
    return sp


class RulesetCompiler:
    """Compiles one ruleset file; collect diagnostics, never raise on user errors."""

    def __init__(self, path: FsPath, ctx: CompileContext, sink: DiagnosticSink):
        self.path = path
        self.file = str(path)
        self.ctx = ctx
        self.sink = sink
        self.checker = Checker(ctx.schema, sink, prefixes=ctx.prefixes)
        self.network: dict[tuple[str, ...], str] = {}
        self.network_info: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
        self.synthetic: dict[str, tuple[str, Fn, E.Node]] = {}
        self.plan: dict[str, dict[str, TrieEdge]] = {}

    # -- the whole file -----------------------------------------------------------------------
    def compile(self, text: str | None = None) -> CompiledRuleset | None:
        n_errors = len(self.sink.errors)
        data = load_yaml(self.path, self.sink, text=text)
        if data is None:
            if len(self.sink.errors) == n_errors:
                self.sink.error("schema", "the rule file is empty", Span(self.file, 1, 1),
                                help="a rule file starts with `ruleset:`, `on:`, `case:` and `rules:`")
            return None
        top = Span(self.file, 1, 1)
        if not isinstance(data, LDict):
            self.sink.error("schema", "a rule file is a mapping with `ruleset:`, `on:`, `case:` and `rules:`",
                            span_of(data, top))
            return None
        check_keys(data, RULESET_KEYS, "a ruleset", self.sink)
        for key in ("ruleset", "on", "case"):
            if key not in data or isinstance(data.get(key), LNone):
                self.sink.error("schema", f"missing `{key}:`", top, help=_MISSING_HELP[key])
        for key in ("ruleset", "on"):
            value = data.get(key)
            if value is not None and not isinstance(value, (LStr, LNone)):
                self.sink.error("schema", f"`{key}:` must be text, not {_kind_of_yaml(value)}",
                                span_of(value, _loc(data, key, top)), help=_MISSING_HELP[key])
        name = str(data.get("ruleset") or self.path.stem)
        case_type = str(data.get("on") or "")
        hit_policy = str(data.get("hit_policy", "priority"))
        table_rows = None
        if "decision_table" in data:
            from .table import load_table

            if "hit_policy" in data:
                self.sink.error("schema", "the hit policy of a decision table is set in the table itself",
                                data.key_spans.get("hit_policy"), help="remove `hit_policy:` here; write "
                                "`# hit_policy: first` at the top of the CSV file")
            table_path = self.path.parent / str(data["decision_table"])
            table_rows = load_table(table_path, self.sink, span_of(data["decision_table"], top))
            if table_rows is not None:
                hit_policy = table_rows.hit_policy
            if "rules" in data:
                self.sink.error("schema", "a ruleset has `rules:` or `decision_table:`, not both",
                                data.key_spans.get("rules"))
        if hit_policy not in HIT_POLICIES:
            help_, sug = suggest_help(hit_policy, HIT_POLICIES, "hit policies")
            self.sink.error("schema", f"unknown hit policy `{hit_policy}`", _loc(data, "hit_policy", top),
                            help=help_, suggestion=sug)
        case_schema = self._case_schema(data.get("case"), _loc(data, "case", top))
        scope = Scope({"case": case_schema}, derived_fns=self.ctx.derived_signatures)
        self._facts(data.get("facts"), scope, top)
        derived = self._derived(data.get("derived"), scope, top)
        rules: list[Rule] = []
        if table_rows is not None:
            rules = self._table_rules(table_rows, scope)
        elif "rules" in data:
            rules = self._rules(data.get("rules"), scope, _loc(data, "rules", top))
        elif "decision_table" not in data:
            self.sink.error("schema", "missing `rules:`", top, help="add `rules:` with at least one rule")
        guards = self._guards(data.get("guards"), scope, top)
        targets = self._targets(data.get("targets"), case_schema, top)
        self._check_targets(rules, guards, case_schema, targets)
        tests = self._tests(data.get("tests"), top)
        self._analyse(rules, hit_policy)
        sources = [self.path.read_bytes()] if self.path.exists() and text is None else [(text or "").encode()]
        if table_rows is not None:
            sources.append(table_rows.raw.encode())
        version = hashlib.sha256(b"\0".join(sources)).hexdigest()[:12]
        return CompiledRuleset(
            name=name, version=version, file=self.file, description=str(data.get("description", "")),
            case_type=case_type, hit_policy=hit_policy, case_schema=case_schema, rules=rules, guards=guards,
            derived=derived, tests=tests, plan=self.plan, network=self.network, network_info=self.network_info,
            synthetic=self.synthetic, scope=scope, targets=targets)

    # -- sections -------------------------------------------------------------------------------
    def _case_schema(self, spec: Any, where: Span | None) -> Type:
        if spec is None or isinstance(spec, LNone):
            return Type("object")
        if not isinstance(spec, dict):
            self.sink.error("schema", "`case:` maps each payload field to its type", where,
                            help="for example `case: {invoice: Invoice, amount: number}`")
            return Type("object")
        t = parse_type(spec, self.ctx.schema, self.sink, where)
        return t or Type("object")

    def _facts(self, spec: Any, scope: Scope, top: Span) -> None:
        if spec is None or isinstance(spec, LNone):
            return
        if not isinstance(spec, LDict):
            self.sink.error("schema", "`facts:` maps names to paths", span_of(spec, top),
                            help="for example `facts: {vendor: case.invoice.vendor}`")
            return
        for name, value in spec.items():
            where = spec.key_spans.get(name)
            if name in scope.roots or name in scope.aliases:
                self.sink.error("duplicate_id", f"`{name}` is already defined", where)
                continue
            node = self._parse(value, where)
            if node is None:
                continue
            if not isinstance(node, E.Path):
                self.sink.error("schema", f"fact binding `{name}` must be a path", node.span,
                                help="bind names to paths such as `case.invoice.vendor`; put computed values "
                                "under `derived:`")
                continue
            self.checker.check(node, scope)
            scope.aliases[str(name)] = node

    def _derived(self, spec: Any, scope: Scope, top: Span) -> list[Derived]:
        out: list[Derived] = []
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LDict):
            self.sink.error("schema", "`derived:` maps names to expressions", span_of(spec, top))
            return out
        for name, value in spec.items():
            where = spec.key_spans.get(name)
            if name in scope.roots or name in scope.aliases:
                self.sink.error("duplicate_id", f"`{name}` is already defined", where)
                continue
            node = self._parse(value, where)
            if node is None:
                continue
            dscope = Scope(scope.roots, scope.aliases, scope.derived_fns, allow_derived_calls=True)
            t = self.checker.check(node, dscope)
            self._collect_paths(node)
            fn = compile_node(node, self.ctx.derived_impls)
            scope.roots[str(name)] = t
            out.append(Derived(str(name), E.render(node), node, fn, t, where))
        return out

    def _rules(self, spec: Any, scope: Scope, where: Span | None) -> list[Rule]:
        rules: list[Rule] = []
        if not isinstance(spec, LList):
            self.sink.error("schema", "`rules:` is a list of rules", where, help="each item starts with `- id: ...`")
            return rules
        seen: dict[str, Span | None] = {}
        for i, item in enumerate(spec):
            if not isinstance(item, LDict):
                self.sink.error("schema", "a rule is a mapping with `id`, `when` and `then`", span_of(item, where))
                continue
            check_keys(item, RULE_KEYS, "a rule", self.sink)
            rid = item.get("id")
            if not rid:
                self.sink.error("schema", "rule without `id`", item.span, help="give every rule a stable dotted id")
                continue
            rid = str(rid)
            duplicate = rid in seen  # still checked below, so its own mistakes are reported too; never kept
            if duplicate:
                first = seen[rid]
                self.sink.error("duplicate_id", f"duplicate rule id `{rid}`", span_of(item["id"], item.span),
                                help=f"first defined at line {first.line if first else '?'}")
            else:
                seen[rid] = span_of(item["id"], item.span)
            priority = item.get("priority", 0)
            if not isinstance(priority, int) or isinstance(priority, bool):
                self.sink.error("schema", "`priority` must be a whole number", _loc(item, "priority", item.span))
                priority = 0
            when = item.get("when", LList())
            if isinstance(when, LStr):
                when = LList([when])
            if not isinstance(when, list):
                self.sink.error("schema", "`when` is a condition or a list of conditions",
                                _loc(item, "when", item.span))
                continue
            compiled = [self._condition(w, scope, _loc(item, "when", item.span)) for w in when]
            conditions = [c for c in compiled if c is not None]
            if "then" not in item:
                self.sink.error("schema", f"rule `{rid}` has no `then`", item.span,
                                help="`then:` proposes an action (`action:` and `params:`) or says `escalate:`")
                continue
            then = self._consequence(item["then"], scope, _loc(item, "then", item.span))
            # A rule with a broken condition is left out: kept with the others it would fire more
            # broadly than written, and the analysis would warn about that phantom rule.
            if then is None or len(conditions) < len(compiled) or duplicate:
                continue
            rules.append(Rule(rid, str(item.get("description", "")), int(priority), i, conditions, then,
                              span_of(item["id"], item.span)))
        return rules

    def _table_rules(self, table: Any, scope: Scope) -> list[Rule]:
        # Each input column is checked once, at its header; a broken column is not reported again per row.
        broken = set()
        for column, span in table.columns.items():
            n_err = len(self.sink.errors)
            node = E.parse_expr(column, span, self.sink)
            if node is not None:
                self.checker.check(node, scope)
            if node is None or len(self.sink.errors) > n_err:
                broken.add(column)
        rules: list[Rule] = []
        for i, row in enumerate(table.rows):
            conditions: list[Condition | None] = []
            for test in row.conditions:
                if test.column in broken:
                    conditions.append(None)
                    continue
                node = E.parse_expr(test.text, test.span, self.sink, locate=test.position)
                conditions.append(self._finish_condition(node, scope) if node is not None else None)
            then = self._consequence(row.then, scope, row.span)
            # A row with a broken condition is left out, not kept broader than it was written.
            if then is not None and all(c is not None for c in conditions):
                rules.append(Rule(row.id, row.description, row.priority, i, [c for c in conditions if c],
                                  then, row.span, "table"))
        return rules

    def _condition(self, value: Any, scope: Scope, where: Span | None) -> Condition | None:
        node = self._parse(value, where)
        if node is None:
            return None
        return self._finish_condition(node, scope)

    def _finish_condition(self, node: E.Node, scope: Scope) -> Condition | None:
        n_err = len(self.sink.errors)
        self.checker.check_condition(node, scope)
        if len(self.sink.errors) > n_err:
            return None
        self._collect_paths(node)
        fn = compile_node(node, self.ctx.derived_impls)
        cond = Condition(E.render(node), node, node.span, fn)
        atom = network_atom(node)
        if atom is not None:
            path = atom[0]
            if path not in self.network:
                self.network[path] = f"f{len(self.network)}"
                p = _atom_path(node)
                self.network_info[path] = (tuple(p.kinds), p.type.kind if p.type else "any")
            cond.atom = atom
        else:
            key = cond.text
            if key not in self.synthetic:
                self.synthetic[key] = (f"s{len(self.synthetic)}", fn, node)
            cond.synthetic = self.synthetic[key][0]
        return cond

    def _consequence(self, spec: Any, scope: Scope, where: Span | None) -> Consequence | None:
        if not isinstance(spec, LDict):
            self.sink.error("schema", "`then` is a mapping: `action:` with `params:`, or `escalate:`, `deny:` or "
                            "`no_action:` with a message", span_of(spec, where))
            return None
        kinds = [k for k in ("action", "escalate", "deny", "no_action") if k in spec]
        if len(kinds) != 1:
            self.sink.error("schema", "`then` needs exactly one of `action`, `escalate`, `deny`, `no_action`",
                            spec.span)
            return None
        kind = kinds[0]
        allowed = ("action", "params", "note") if kind == "action" else (kind,)
        check_keys(spec, allowed, "`then`", self.sink)
        if kind != "action":
            return Consequence(kind, message=str(spec[kind] or ""), span=spec.key_spans.get(kind))
        name = str(spec["action"])
        action = self.ctx.actions.actions.get(name)
        aspan = span_of(spec["action"], spec.span)
        if action is None:
            help_, sug = suggest_help(name, self.ctx.actions.actions, "actions")
            self.sink.error("unknown_action", f"unknown action `{name}`", aspan, help=help_, suggestion=sug)
            return None
        params_spec = spec.get("params", LDict())
        if not isinstance(params_spec, LDict):
            self.sink.error("action_params", "`params` maps parameter names to expressions",
                            span_of(params_spec, aspan))
            return None
        params: dict[str, tuple[E.Node, Fn]] = {}
        for pname, pvalue in params_spec.items():
            pspan = params_spec.key_spans.get(pname)
            pdef = action.params.get(str(pname))
            if pdef is None:
                help_, sug = suggest_help(str(pname), action.params, f"parameters of `{name}`")
                self.sink.error("action_params", f"action `{name}` has no parameter `{pname}`", pspan,
                                help=help_, suggestion=sug)
                continue
            node = self._param_node(pvalue, pspan)
            if node is None:
                continue
            t = self.checker.check(node, scope)
            if isinstance(node, E.Lit) and isinstance(node.value, str) and pdef.type.kind == "ref":
                node.value = expand_iri(node.value, self.ctx.prefixes)
            elif not _param_fits(t, pdef.type, self.ctx.schema):
                self.sink.error("action_params", f"parameter `{pname}` of `{name}` expects {pdef.type}, "
                                f"but this is {t}", node.span)
                continue
            self._collect_paths(node)
            params[str(pname)] = (node, compile_node(node, self.ctx.derived_impls))
        for pname, pdef in action.params.items():
            if pdef.required and pname not in params and pname not in params_spec:
                self.sink.error("action_params", f"action `{name}` needs parameter `{pname}`", aspan,
                                help=f"add `{pname}: ...` under `params:` ({pdef.type})")
        return Consequence("action", name, params, span=aspan)

    def _param_node(self, value: Any, where: Span | None) -> E.Node | None:
        """A plain scalar is an expression, a quoted one is text, a YAML list is a list of either."""
        if isinstance(value, LStr):
            if value.style in ('"', "'", "|", ">"):
                return E.Lit(str(value), _expr_span(value, where))
            n_err = len(self.sink.errors)
            node = E.parse_expr(str(value), _expr_span(value, where) or Span(self.file), self.sink,
                                locate=_locate(value))
            if node is None and len(self.sink.errors) > n_err:
                last = self.sink.items[-1]
                self.sink.items[-1] = type(last)(last.code, last.message, last.span, last.severity,
                                                 last.help or "quote text to pass it as a string: `note: \"...\"`")
            return node
        if isinstance(value, LList):
            items = [self._param_node(v, span_of(v, where)) for v in value]
            if any(i is None for i in items):
                return None
            return E.ListLit([i for i in items if i is not None], span_of(value, where))
        if isinstance(value, LDict):
            self.sink.error("action_params", "a parameter value is an expression, text or a list, not a mapping",
                            span_of(value, where))
            return None
        return E.Lit(plain(value), span_of(value, where))

    def _guards(self, spec: Any, scope: Scope, top: Span) -> list[Guard]:
        out: list[Guard] = []
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LList):
            self.sink.error("schema", "`guards:` is a list", span_of(spec, top))
            return out
        seen: set[str] = set()
        for item in spec:
            if not isinstance(item, LDict):
                self.sink.error("schema", "a guard is a mapping with `id`, `deny_when` or `review_when`, and "
                                "`message`", span_of(item, top))
                continue
            check_keys(item, GUARD_KEYS, "a guard", self.sink)
            gid = str(item.get("id") or "")
            if not gid:
                self.sink.error("schema", "guard without `id`", item.span)
                continue
            if gid in seen:
                self.sink.error("duplicate_id", f"duplicate guard id `{gid}`", span_of(item["id"], item.span))
                continue
            seen.add(gid)
            kinds = [k for k in ("deny_when", "review_when") if k in item]
            if len(kinds) != 1:
                self.sink.error("schema", f"guard `{gid}` needs exactly one of `deny_when`, `review_when`", item.span)
                continue
            applies = item.get("applies_to") or LList()
            if isinstance(applies, LStr):
                applies = LList([applies])
            for a in applies:
                if str(a) not in self.ctx.actions.actions:
                    help_, sug = suggest_help(str(a), self.ctx.actions.actions, "actions")
                    self.sink.error("unknown_action", f"unknown action `{a}`", span_of(a, item.span), help=help_,
                                    suggestion=sug)
            gscope = self._guard_scope(scope, [str(a) for a in applies])
            node = self._parse(item[kinds[0]], item.key_spans.get(kinds[0]))
            if node is None:
                continue
            n_err = len(self.sink.errors)
            self.checker.check_condition(node, gscope)
            if len(self.sink.errors) > n_err:
                continue
            self._collect_paths(node)
            out.append(Guard(gid, kinds[0].split("_")[0], E.render(node), node,
                             compile_node(node, self.ctx.derived_impls), str(item.get("message", gid)),
                             tuple(str(a) for a in applies), span_of(item["id"], item.span),
                             str(item.get("description", ""))))
        return out

    def _guard_scope(self, scope: Scope, applies: list[str]) -> Scope:
        """Guards see the facts plus `action` (its name) and `params` (typed if one action applies)."""
        from .types import STRING

        roots = dict(scope.roots)
        roots["action"] = STRING
        if len(applies) == 1:
            spec = self.ctx.actions.actions.get(applies[0])
            fields = tuple((p.name, p.type) for p in spec.params.values()) if spec else ()
            roots["params"] = Type("object", fields=fields)
        else:
            roots["params"] = ANY
        return Scope(roots, scope.aliases, scope.derived_fns)

    def _targets(self, spec: Any, case_schema: Type, top: Span) -> dict[str, dict[str, str]]:
        """`targets: {action.param: any | case.FIELD}` — how an action's targets bind in this ruleset."""
        from .targets import case_fields_of_class, field_holds_class
        from .types import entity_class

        out: dict[str, dict[str, str]] = {}
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LDict):
            self.sink.error("schema", "`targets:` maps `action.parameter` to `any` or `case.FIELD`", span_of(spec, top),
                            help="for example `targets: {approve_discount.order: case.order}`")
            return out
        actions = self.ctx.actions.actions
        for key, value in spec.items():
            at = spec.key_spans.get(key, top)
            action, _, param = str(key).partition(".")
            aspec = actions.get(action)
            if aspec is None:
                help_, sug = suggest_help(action, actions, "actions")
                self.sink.error("unknown_action", f"unknown action `{action}`", at, help=help_, suggestion=sug)
                continue
            targets = aspec.targets or {}
            if param not in targets:
                help_, sug = suggest_help(param, targets, f"targets of `{action}`")
                self.sink.error("action_targets", f"`{param}` is not a target of `{action}`", at,
                                help=help_ or f"its targets: {', '.join(targets) or 'none'} (`targets:` in the "
                                "action catalog)", suggestion=sug)
                continue
            text = str(plain(value) or "").strip()
            vspan = span_of(value, at)
            if text == "any":
                out.setdefault(action, {})[param] = "any"
                continue
            fieldname = text[len("case."):] if text.startswith("case.") else ""
            cls = entity_class(aspec.params[param].type) or ""
            if not field_holds_class(case_schema, fieldname, cls, self.ctx.schema):
                fields = case_fields_of_class(case_schema, cls, self.ctx.schema)
                self.sink.error("action_targets", f"`{key}` must be `any` or a case field of class `{cls}`, not "
                                f"`{text}`", vspan, help=f"case fields of class `{cls}`: "
                                + (", ".join(f"`case.{f}`" for f in fields) or "none"))
                continue
            out.setdefault(action, {})[param] = f"case.{fieldname}"
        return out

    def _check_targets(self, rules: list[Rule], guards: list[Guard], case_schema: Type,
                       declared: dict[str, dict[str, str]]) -> None:
        """Every target of an action this ruleset proposes (or guards) binds to one field of the case:
        otherwise the gate can never accept it."""
        from .targets import bind_targets

        where = proposed_actions(rules)
        for g in guards:
            for a in g.applies_to:
                where.setdefault(a, g.span)
        for action, at in sorted(where.items()):
            spec = self.ctx.actions.actions.get(action)
            if spec is None:
                continue
            for b in bind_targets(spec, case_schema, self.ctx.schema, declared.get(action)):
                if b.field is None:
                    in_catalog = spec.targets_span is not None
                    self.sink.error("target_unbound", f"target `{b.param}` of `{action}` binds to no case field: "
                                    f"{b.why}", at, help=f"name the field under `targets:` "
                                    f"(`{action}.{b.param}: case.FIELD`), or give the case one field of that class"
                                    + ("" if in_catalog else f"; if `{action}` only refers to its `{b.param}`, declare "
                                       f"the entities it changes with `targets:` in the action catalog"))

    def _tests(self, spec: Any, top: Span) -> list[RuleTest]:
        out: list[RuleTest] = []
        if spec is None or isinstance(spec, LNone):
            return out
        if not isinstance(spec, LList):
            self.sink.error("schema", "`tests:` is a list", span_of(spec, top))
            return out
        names: set[str] = set()
        for item in spec:
            if not isinstance(item, LDict):
                self.sink.error("schema", "a test is a mapping with `name`, `case` and `expect`", span_of(item, top))
                continue
            check_keys(item, TEST_KEYS, "a test", self.sink)
            name = str(item.get("name") or "")
            if not name:
                self.sink.error("schema", "test without `name`", item.span)
                continue
            if name in names:
                self.sink.error("duplicate_id", f"duplicate test name `{name}`", span_of(item["name"], item.span))
            names.add(name)
            expect = item.get("expect")
            if not isinstance(expect, LDict):
                self.sink.error("schema", f"test `{name}` needs `expect:` with at least `outcome:`", item.span)
                continue
            check_keys(expect, EXPECT_KEYS, "`expect`", self.sink)
            case = item.get("case", LDict())
            if not isinstance(case, LDict):
                self.sink.error("schema", f"`case` of test `{name}` is the payload mapping", span_of(case, item.span))
                continue
            if item.get("as_of") and as_of_date(str(item["as_of"])) is None:
                self.sink.error("schema", f"`as_of` of test `{name}` must be a date like 2026-01-31",
                                span_of(item["as_of"], item.span))
                continue
            out.append(RuleTest(name, plain(case), str(item["as_of"]) if item.get("as_of") else None,
                                plain(expect), span_of(item["name"], item.span)))
        return out

    # -- helpers ---------------------------------------------------------------------------------
    def _parse(self, value: Any, where: Span | None) -> E.Node | None:
        if isinstance(value, LBool):
            return E.Lit(bool(value), span_of(value, where))
        if not isinstance(value, LStr):
            self.sink.error("expr_syntax", "expected an expression in quotes or plain text", span_of(value, where))
            return None
        return E.parse_expr(str(value), _expr_span(value, where) or Span(self.file), self.sink,
                            locate=_locate(value))

    def _collect_paths(self, node: E.Node, varmap: dict[str, PlanPath | None] | None = None) -> None:
        """Add every graph path a node reads to the plan; loop variables resolve to their source path."""
        varmap = dict(varmap or {})
        if isinstance(node, E.Comprehension):
            self._collect_paths(node.source, varmap)
            inner = dict(varmap)
            if isinstance(node.source, E.Path) and node.source.full:
                inner[node.var] = self._absolute(node.source, varmap)
            else:
                inner[node.var] = None
            self._collect_paths(node.body, inner)
            if node.cond is not None:
                self._collect_paths(node.cond, inner)
            return
        if isinstance(node, E.Path):
            absolute = self._absolute(node, varmap)
            if absolute is not None:
                self._add_plan(*absolute)
            return
        for c in node.children():
            self._collect_paths(c, varmap)

    def _absolute(self, p: E.Path, varmap: dict[str, PlanPath | None]) -> PlanPath | None:
        full = p.full or (p.root, *p.steps)
        root = full[0]
        if root in varmap:
            base = varmap[root]
            if base is None:
                return None
            broot, bsteps, bkinds, bprops = base
            return broot, bsteps + tuple(full[1:]), bkinds + tuple(p.kinds), bprops + tuple(p.props)
        return root, tuple(full[1:]), tuple(p.kinds), tuple(p.props)

    def _add_plan(self, root: str, steps: tuple[str, ...], kinds: tuple[str, ...],
                  props: tuple[str | None, ...]) -> None:
        trie = self.plan.setdefault(root, {})
        for step, kind, prop in zip(steps, kinds, props, strict=True):
            edge = trie.get(step)
            if edge is None:
                edge = trie[step] = TrieEdge(kind, prop)
            trie = edge.children

    def _analyse(self, rules: list[Rule], hit_policy: str) -> None:
        from .analysis import find_contradiction, shadowed_rules

        for r in rules:
            why = find_contradiction(r)
            if why:
                self.sink.warning("never_fires", f"rule `{r.id}` can never fire: {why}", r.span,
                                  help="check the comparison operators and values")
        if hit_policy in ("priority", "first"):
            ranked = sorted(rules, key=lambda r: (-r.priority, r.order)) if hit_policy == "priority" else rules
            for r, winner in shadowed_rules(ranked):
                self.sink.warning("shadowed", f"rule `{r.id}` can never win: `{winner.id}` ranks higher and "
                                  "matches whenever it does", r.span,
                                  help=f"raise the priority of `{r.id}` or narrow `{winner.id}`")


def network_atom(node: E.Node) -> tuple[tuple[str, ...], str, Any] | None:
    """`path op literal` on a single scalar path, in a form durable-rules matches natively."""
    negate = False
    while isinstance(node, E.Unary) and node.op == "not":
        negate = not negate
        node = node.operand
    if isinstance(node, E.Path):
        if _scalar_path(node) and node.type is not None and node.type.kind == "boolean":
            return tuple(node.full), "==", (not negate)
        return None
    if not isinstance(node, E.Compare) or node.op not in NEGATE:
        return None
    left, right, op = node.left, node.right, node.op
    if isinstance(left, E.Lit) and isinstance(right, E.Path):
        left, right, op = right, left, FLIP[op]
    if not (isinstance(left, E.Path) and isinstance(right, E.Lit)) or right.value is None:
        return None
    if not _scalar_path(left):
        return None
    kind = left.type.kind if left.type else "any"
    lit = right.value
    ok = ((kind == "number" and isinstance(lit, (int, float)) and not isinstance(lit, bool))
          or (kind == "string" and isinstance(lit, str))
          or (kind == "boolean" and isinstance(lit, bool) and op in ("==", "!="))
          or (kind == "date" and isinstance(lit, dt.date)))
    op = NEGATE[op] if negate else op
    if not ok or not native_literal(lit, op):
        return None
    return tuple(left.full), op, lit


# durable-rules holds integers in 64 bits and compares them with doubles as doubles, and it
# compares strings as their JSON text, a case value that is a proper prefix of the literal by its
# closing quote (so "a" < "a!" is false there). A literal becomes a network atom only where that
# gives the reference evaluator's answer; any other comparison is a synthetic field, computed in Python.
EXACT_INT = 2 ** 53  # every integer up to here is a double
_ESCAPED = re.compile(r'[\x00-\x1f"\\\ud800-\udfff]')  # written escaped in JSON (or not UTF-8 at all)


def native_literal(lit: Any, op: str = "==") -> bool:
    """Whether durable-rules compares a case value with `lit` by `op` exactly as the reference evaluator does.

    Numbers: finite and within ±2**53, so that the matcher may send a larger case integer as
    ±infinity and still order it right against every literal. Text: nothing JSON escapes, and
    to be ordered, no character that sorts before the quote `"` (space and `!`).
    """
    if isinstance(lit, (bool, dt.date)):
        return True
    if isinstance(lit, (int, float)):
        return math.isfinite(lit) and abs(lit) <= EXACT_INT
    if isinstance(lit, str):
        return not needs_escape(lit) and (op in ("==", "!=") or not (" " in lit or "!" in lit))
    return False


def needs_escape(text: str) -> bool:
    """Whether JSON writes `text` with escapes (quote, backslash, control characters, surrogates)."""
    return _ESCAPED.search(text) is not None


def _atom_path(node: E.Node) -> E.Path:
    """The path of a network atom (see `network_atom`)."""
    while isinstance(node, E.Unary):
        node = node.operand
    if isinstance(node, E.Compare):
        node = node.left if isinstance(node.left, E.Path) else node.right
    assert isinstance(node, E.Path)
    return node


def _scalar_path(p: E.Path) -> bool:
    """A path to one scalar value: no multi-valued step on the way."""
    return bool(p.full) and p.type is not None and p.type.is_scalar and "many" not in p.kinds


def _kind_of_yaml(value: Any) -> str:
    """How a loaded YAML value is described in messages."""
    if isinstance(value, LDict):
        return "a mapping"
    if isinstance(value, LList):
        return "a list"
    if isinstance(value, LBool):
        return "true or false"
    return "a number" if isinstance(value, (int, float)) else "text"


def _param_fits(t: Type, want: Type, schema: Schema) -> bool:
    """Whether a value of type `t` may be passed where `want` is expected (subclasses fit)."""
    if t.kind in ("any", "null") or want.kind == "any":
        return True
    if want.kind == "ref":
        return (t.kind == "ref" and schema.is_subclass(t.cls or "", want.cls or "")) or t.kind == "string"
    if want.kind == "list":
        return t.kind == "list" and _param_fits(t.elem or ANY, want.elem or ANY, schema)
    return t.kind == want.kind


_MISSING_HELP = {
    "ruleset": "name the ruleset with a dotted id, e.g. `ruleset: accounts_payable.invoice_approval`",
    "on": "say which case type it decides, e.g. `on: invoice.received`",
    "case": "declare the payload fields, e.g. `case: {invoice: Invoice}`",
}

__all__ = ["CompiledRuleset", "CompileContext", "Condition", "Consequence", "Derived", "Guard", "Rule",
           "RuleTest", "RulesetCompiler", "TrieEdge", "network_atom", "ref"]
