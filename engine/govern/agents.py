"""Agents: non-human identities with the actions they may take, their limits and rulesets.

Declared in the workspace (`rules/agents.yaml` by default):

    default: ops-console              # the identity of a case that names no agent
    agents:
      ap-assistant:
        description: accounts-payable agent
        rulesets: [accounts_payable.*]
        actions:
          approve_invoice:
            limits:
              - {when: "params.invoice.amount <= 100000", message: "approvals above 100,000 need a person"}
          hold_invoice: {}

    reviewers:                        # people who settle escalations, by ruleset
      ap-lead: {description: AP team lead, rulesets: [accounts_payable.*]}

An action not listed is out of the agent's scope (denied); a limit that does not hold sends
the proposal to review. An identity's name (declared, or named by a case or a review) has 1 to
128 characters, none of them hidden (`name_problem`): a control, format or bidi character.
Keys are not declared here: they are issued, rotated and revoked with `rulebridge agents ...`
and stored hashed in the state database (`engine.govern.identity`).
"""

from __future__ import annotations

import fnmatch
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import HIDDEN_CATEGORIES, DiagnosticSink, Span, shown
from engine.lang.actions import ActionCatalog, raw_conditions
from engine.lang.compiler import CompileContext, TrieEdge
from engine.lang.conditions import ParamCondition, ParamConditionCompiler
from engine.lang.source import LDict, LList, LStr, load_yaml, span_of

IMPLICIT = "anonymous"
MAX_NAME = 128  # characters of an identity's name
NAME_HELP = (f"an identity's name has 1 to {MAX_NAME} characters, none of them a control, "
             "format or bidi character (C0/C1 controls, U+200B-U+200F, U+202A-U+202E, "
             "U+2066-U+2069, line separators)")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an agent or a reviewer, or None when it can.

    Names are shown to people (review queues, audit reports) and stored in every audit event: a
    hidden character could make one name read as another, and a long one floods what shows it."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"has {len(name):,} characters (at most {MAX_NAME})"
    for ch in name:
        if unicodedata.category(ch) in HIDDEN_CATEGORIES:
            return f"contains the control or format character U+{ord(ch):04X}"
    return None


def check_name(name: str, kind: str) -> None:
    """Raise `AuthError` (`agent_name_invalid`, `reviewer_name_invalid`) for a name no identity
    may have."""
    why = name_problem(name)
    if why is not None:
        from engine.errors import AuthError, Diagnostic

        raise AuthError([Diagnostic(f"{kind}_name_invalid", f"{kind} name `{shown(name)}` {why}",
                                    help=NAME_HELP)])


@dataclass
class Agent:
    """One identity: what it may ask and do."""

    id: str
    description: str = ""
    rulesets: tuple[str, ...] = ("*",)
    actions: dict[str, list[ParamCondition]] = field(default_factory=dict)  # action -> limits
    all_actions: bool = False

    def may_ask(self, ruleset: str) -> bool:
        return any(fnmatch.fnmatchcase(ruleset, pat) for pat in self.rulesets)

    def may_take(self, action: str) -> bool:
        return self.all_actions or action in self.actions

    def limits(self, action: str) -> list[ParamCondition]:
        return self.actions.get(action, [])


@dataclass
class Reviewer:
    """A person who may settle escalations of the rulesets that match `rulesets`."""

    id: str
    description: str = ""
    rulesets: tuple[str, ...] = ("*",)

    def may_review(self, ruleset: str) -> bool:
        return any(fnmatch.fnmatchcase(ruleset, pat) for pat in self.rulesets)


@dataclass
class AgentRegistry:
    """Every declared agent, the default identity, and the plan of graph paths their limits read."""

    agents: dict[str, Agent]
    default: str
    plan: dict[str, TrieEdge] = field(default_factory=dict)
    file: str | None = None
    implicit: bool = False  # no agents file: any named agent gets the implicit, unrestricted scope
    reviewers: dict[str, Reviewer] = field(default_factory=dict)

    def get(self, agent_id: str | None) -> Agent | None:
        if self.implicit and agent_id:
            return Agent(agent_id, "implicit identity (no agents declared)", ("*",), {}, True)
        return self.agents.get(agent_id or self.default)

    def reviewer(self, reviewer_id: str) -> Reviewer | None:
        """A declared reviewer; without an agents file (or a `reviewers:` section) anyone named."""
        if self.implicit or not self.reviewers:
            return Reviewer(reviewer_id, "implicit reviewer (none declared)") if reviewer_id else None
        return self.reviewers.get(reviewer_id)


def implicit_registry(catalog: ActionCatalog) -> AgentRegistry:
    """No agents file: one implicit identity that may ask every ruleset and take every action."""
    return AgentRegistry({IMPLICIT: Agent(IMPLICIT, "implicit identity (no agents declared)", ("*",), {}, True)},
                         IMPLICIT, implicit=True)


def load_agents(path: Path, catalog: ActionCatalog, ctx: CompileContext, sink: DiagnosticSink) -> AgentRegistry:
    """Load and check the agents file; every problem is a diagnostic, never an exception."""
    if not path.exists():
        return implicit_registry(catalog)
    data = load_yaml(path, sink)
    top = Span(str(path), 1, 1)
    compiler = ParamConditionCompiler(ctx, sink, str(path))
    reg = AgentRegistry({}, "", file=str(path))
    if not isinstance(data, LDict) or not isinstance(data.get("agents"), LDict):
        if data is not None:
            sink.error("schema", "an agents file has a top-level `agents:` mapping", span_of(data, top))
        return reg
    for k in sorted(set(data) - {"agents", "default", "reviewers"}):
        sink.error("schema", f"unknown key `{k}` in the agents file", data.key_spans.get(k),
                   help="known keys: agents, default, reviewers")
    for aid, body in data["agents"].items():
        where = data["agents"].key_spans.get(aid)
        if not isinstance(body, LDict):
            sink.error("schema", f"agent `{aid}` must be a mapping with `actions:`", where)
            continue
        for k in sorted(set(body) - {"description", "rulesets", "actions"}):
            sink.error("schema", f"unknown key `{k}` in agent `{aid}`", body.key_spans.get(k),
                       help="known keys: description, rulesets, actions")
        if (why := name_problem(str(aid))) is not None:
            sink.error("schema", f"agent `{shown(str(aid))}`: the name {why}", where,
                       help=NAME_HELP)
        agent = Agent(str(aid), str(body.get("description", "")), _rulesets(body.get("rulesets")))
        actions = body.get("actions", LDict())
        if isinstance(actions, LStr) and str(actions) == "*":
            agent.all_actions = True
            actions = LDict()
        if not isinstance(actions, LDict):
            sink.error("schema", f"`actions` of agent `{aid}` maps action names to `{{limits: [...]}}`, or is `*`",
                       span_of(actions, where))
            actions = LDict()
        for name, spec in actions.items():
            aspan = actions.key_spans.get(name)
            action = catalog.actions.get(str(name))
            if action is None:
                from engine.errors import suggest_help

                help_, sug = suggest_help(str(name), catalog.actions, "actions")
                sink.error("unknown_action", f"unknown action `{name}` in agent `{aid}`", aspan, help=help_,
                           suggestion=sug)
                continue
            limits = []
            if isinstance(spec, LDict):
                for k in sorted(set(spec) - {"limits"}):
                    sink.error("schema", f"unknown key `{k}` under action `{name}`", spec.key_spans.get(k),
                               help="known keys: limits")
                limits = compiler.compile_all(raw_conditions(spec.get("limits"), aspan, sink), action)
            agent.actions[str(name)] = limits
        reg.agents[agent.id] = agent
    default = data.get("default")
    if default is not None:
        if str(default) not in reg.agents:
            sink.error("unknown_name", f"default agent `{default}` is not declared", span_of(default, top))
        reg.default = str(default)
    reg.reviewers = _reviewers(data.get("reviewers"), top, sink)
    for rid in sorted(set(reg.reviewers) & set(reg.agents)):
        sink.error("duplicate_id", f"`{rid}` is declared as an agent and as a reviewer",
                   data["reviewers"].key_spans.get(rid), help="an identity is either a non-human agent or a person")
    reg.plan = compiler.plan
    return reg


def _rulesets(value: object) -> tuple[str, ...]:
    if isinstance(value, LStr):
        return (str(value),)
    return tuple(str(r) for r in value) if isinstance(value, LList) else ("*",)


def _reviewers(data: object, top: Span, sink: DiagnosticSink) -> dict[str, Reviewer]:
    if data is None:
        return {}
    if not isinstance(data, LDict):
        sink.error("schema", "`reviewers` maps reviewer ids to `{description, rulesets}`", span_of(data, top))
        return {}
    out = {}
    for rid, body in data.items():
        where = data.key_spans.get(rid)
        if not isinstance(body, LDict):
            sink.error("schema", f"reviewer `{rid}` must be a mapping with `rulesets:`", where)
            continue
        for k in sorted(set(body) - {"description", "rulesets"}):
            sink.error("schema", f"unknown key `{k}` in reviewer `{rid}`", body.key_spans.get(k),
                       help="known keys: description, rulesets")
        if (why := name_problem(str(rid))) is not None:
            sink.error("schema", f"reviewer `{shown(str(rid))}`: the name {why}", where,
                       help=NAME_HELP)
        out[str(rid)] = Reviewer(str(rid), str(body.get("description", "")), _rulesets(body.get("rulesets")))
    return out
