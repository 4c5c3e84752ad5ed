"""The action catalog: names, typed parameters, bindings, and each action's parameter model.

Actions are declared once in the workspace (`rules/actions.yaml`). The compiler checks every
consequence against them; the same catalog gives each action's strict pydantic model, its JSON
schema and parameter validation (`ActionCatalog.model`, `json_schema`, `validate`), for the gate,
the LLM fallback, HTTP and MCP.

An action may say where it is carried out (`execute:` — a connector of `rulebridge.toml` and
that connector's template for this action) and how it is undone (`inverse:` — the compensating
action and how its parameters follow from this action's). The structure is checked here; each
kind of connector checks its own templates (`engine.act.connectors.registry.check_bindings`),
because only it knows its template language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import DiagnosticSink, Span

from .source import LDict, LList, LStr, load_yaml, plain, span_of
from .types import Schema, Type

if TYPE_CHECKING:  # pydantic is imported by the models module, on first use (see `ActionCatalog`)
    from pydantic import BaseModel

    from .action_models import ParamContext


@dataclass
class ParamSpec:
    """One parameter of an action."""

    name: str
    type: Type
    required: bool = True
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()


@dataclass
class ExecBinding:
    """Where an action is carried out: a connector named in `rulebridge.toml` and its template.

    `template` keeps the binding's other keys as written (with their source positions), because
    their meaning depends on the connector's kind: a SPARQL `where`/`delete`/`insert` for the
    graph, `sql` statements for a database, `method`/`path`/`body` for an HTTP API.
    """

    connector: str
    template: dict[str, Any]
    span: Span | None = None
    connector_span: Span | None = None

    def key_span(self, key: str) -> Span | None:
        """Where a key of the template is written (the binding's span when it is not)."""
        return getattr(self.template, "key_spans", {}).get(key, self.span)

    def check_keys(self, action: str, known: tuple[str, ...], sink: DiagnosticSink, help: str) -> None:
        """Every key of the template not in `known` is a `schema` error."""
        for k in sorted(set(self.template) - set(known)):
            sink.error("schema", f"unknown key `{k}` in the `{self.connector}` binding of `{action}`",
                       self.key_span(k), help=help)

    def max_matches(self, action: str, sink: DiagnosticSink) -> int | None:
        """The template's `max_matches` (default 1); None, with an error, when it is no whole number >= 1."""
        mm = self.template.get("max_matches", 1)
        if isinstance(mm, bool) or not isinstance(mm, int) or mm < 1:
            sink.error("schema", f"`max_matches` of the binding of `{action}` must be a whole number >= 1",
                       span_of(mm, self.key_span("max_matches")))
            return None
        return mm


@dataclass(frozen=True)
class ParamSource:
    """Where one parameter of an inverse action comes from: a forward parameter, or a literal."""

    param: str | None = None  # `params.NAME` of the forward action
    value: Any = None  # the literal, when `param` is None


@dataclass
class InverseSpec:
    """The compensating action of an action, and how its parameters derive from the forward ones."""

    action: str
    params: dict[str, ParamSource]
    span: Span | None = None

    def derive(self, params: dict[str, Any]) -> dict[str, Any]:
        """The inverse action's parameters for a forward action run with `params`.

        A forward parameter that was left out (an optional one) is left out here too.
        """
        out: dict[str, Any] = {}
        for name, src in self.params.items():
            if src.param is None:
                out[name] = src.value
            elif params.get(src.param) is not None:
                out[name] = params[src.param]
        return out


@dataclass
class ActionSpec:
    """A typed operation on a system of record."""

    name: str
    description: str
    params: dict[str, ParamSpec]
    span: Span | None = None
    inverse: InverseSpec | None = None
    preconditions: list[RawCondition] = field(default_factory=list)
    execute: ExecBinding | None = None
    # The parameters naming the entities this action changes, each `case` (it must be the case's
    # own entity) or `any` (another entity is allowed; the gate checks it on its own facts).
    # None until known: declared with `targets:`, else inferred by `infer_targets`.
    targets: dict[str, str] | None = None
    targets_span: Span | None = None

    def class_params(self) -> list[str]:
        """The parameters whose values are graph entities (an ontology class, or a list of one)."""
        from .types import entity_class

        return [p.name for p in self.params.values() if entity_class(p.type) is not None]


@dataclass
class RawCondition:
    """A condition as written (checked and compiled by the stage that evaluates it)."""

    text: Any  # an LStr with its source position
    message: str
    span: Span | None


@dataclass
class ActionCatalog:
    """All actions of a workspace by name, and one strict pydantic model per action.

    The models (`engine/lang/action_models.py`) are built on first use, one action at a time:
    code that only reads the declarations (the compiler, the connectors' binding checks, the
    CLI's quick commands) does not import pydantic.
    """

    actions: dict[str, ActionSpec] = field(default_factory=dict)
    file: str | None = None
    # Built on first use. Two threads may build the same entry at once; both results are equal
    # and either may stay, so no lock is needed.
    _models: dict[str, type[BaseModel]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _schemas: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def models(self) -> dict[str, type[BaseModel]]:
        """Every action's model by name (builds the ones not built yet)."""
        return {name: self.model(name) for name in self.actions}

    def model(self, name: str) -> type[BaseModel]:
        """The parameters of action `name` as a strict pydantic model; raises `KeyError` for an unknown action."""
        model = self._models.get(name)
        if model is None:
            from .action_models import action_model

            model = self._models[name] = action_model(self.actions[name])
        return model

    def json_schema(self, name: str) -> dict[str, Any]:
        """The JSON schema of an action's parameters (for the LLM prompt, HTTP and MCP); built
        once per action (pydantic regenerates it on every call: 0.3 ms of each LLM prompt).
        Callers must not change the returned dict."""
        schema = self._schemas.get(name)
        if schema is None:
            schema = self._schemas[name] = self.model(name).model_json_schema()
        return schema

    def validate(self, name: str, params: Any, ctx: ParamContext) -> dict[str, Any]:
        """Validated, normalised parameters (IRIs expanded); raises `ValidationError` or `KeyError`."""
        obj = self.model(name).model_validate(params, context={"params": ctx})
        return obj.model_dump(mode="json", exclude_none=True)


def parse_type(spec: object, schema: Schema, sink: DiagnosticSink, where: Span | None) -> Type | None:
    """Parse a type spelling: a scalar, a class name, `[T]`/`list[T]`, `T?`, or a mapping of fields."""
    from .types import BOOLEAN, DATE, NUMBER, STRING, list_of, ref

    if isinstance(spec, dict):
        fields = []
        for k, v in spec.items():
            ft = parse_type(v, schema, sink, span_of(v, where))
            if ft is None:
                return None
            fields.append((str(k), ft))
        return Type("object", fields=tuple(fields))
    if isinstance(spec, list):
        if len(spec) != 1:
            sink.error("schema", "a list type has exactly one element type, like `[Product]`", where)
            return None
        inner = parse_type(spec[0], schema, sink, span_of(spec[0], where))
        return list_of(inner) if inner else None
    if not isinstance(spec, str):
        sink.error("schema", f"`{spec}` is not a type", where,
                   help="types are string, number, integer, decimal, boolean, date, a class name, [T] or a mapping")
        return None
    text = spec.strip()
    optional = text.endswith("?")
    if optional:
        text = text[:-1].strip()
    t: Type | None
    if text.startswith("list[") and text.endswith("]"):
        inner = parse_type(LStr(text[5:-1]), schema, sink, where)
        t = list_of(inner) if inner else None
    elif text.startswith("[") and text.endswith("]"):
        inner = parse_type(LStr(text[1:-1]), schema, sink, where)
        t = list_of(inner) if inner else None
    elif text == "string":
        t = STRING
    elif text in ("number", "integer", "decimal", "int", "float"):
        t = NUMBER
    elif text in ("boolean", "bool"):
        t = BOOLEAN
    elif text == "date":
        t = DATE
    elif text in schema.classes:
        t = ref(text)
    else:
        from engine.errors import suggest_help

        help_, sug = suggest_help(text, ["string", "number", "boolean", "date", *schema.classes], "types")
        sink.error("unknown_name", f"unknown type `{text}`", where, help=help_, suggestion=sug)
        return None
    if t is not None and optional:
        t = Type(t.kind, t.cls, t.elem, t.fields, optional=True)
    return t


def load_actions(path: Path, schema: Schema, sink: DiagnosticSink) -> ActionCatalog:
    """Load `actions.yaml`: `actions: {name: {description, params, preconditions, execute, inverse}}`."""
    catalog = ActionCatalog(file=str(path))
    data = load_yaml(path, sink)
    if data is None:
        return catalog
    if not isinstance(data, LDict) or not isinstance(data.get("actions"), LDict):
        sink.error("schema", "an action catalog has a top-level `actions:` mapping",
                   span_of(data, Span(str(path), 1, 1)))
        return catalog
    inverses: list[tuple[ActionSpec, Any, Span | None]] = []
    for name, body in data["actions"].items():
        where = data["actions"].key_spans.get(name)
        if not isinstance(body, LDict):
            sink.error("schema", f"action `{name}` must be a mapping with `description` and `params`", where)
            continue
        unknown = set(body) - {"description", "params", "inverse", "execute", "preconditions", "effect", "targets"}
        for k in sorted(unknown):
            sink.error("schema", f"unknown key `{k}` in action `{name}`", body.key_spans.get(k),
                       help="known keys: description, params, targets, preconditions, execute, inverse")
        params: dict[str, ParamSpec] = {}
        raw_params = body.get("params") or LDict()
        if not isinstance(raw_params, dict):
            sink.error("schema", f"`params` of action `{name}` must be a mapping", span_of(raw_params, where))
            raw_params = {}
        for pname, pspec in raw_params.items():
            pspan = raw_params.key_spans.get(pname) if isinstance(raw_params, LDict) else where
            if not _PARAM_NAME.fullmatch(str(pname)) or str(pname).startswith("model_"):
                sink.error("schema", f"parameter `{pname}` of action `{name}` is not a usable name", pspan,
                           help="a parameter name is a letter followed by letters, digits or `_`, and does not "
                                "start with `model_` (the names of the validation model's own members)")
                continue
            opts: dict[str, Any] = {}
            tspec = pspec
            if isinstance(pspec, LDict) and "type" in pspec:
                opts = plain(pspec)
                tspec = pspec["type"]
            t = parse_type(tspec, schema, sink, span_of(tspec, pspan))
            if t is None:
                continue
            params[str(pname)] = ParamSpec(
                name=str(pname), type=t, required=not t.optional and bool(opts.get("required", True)),
                description=str(opts.get("description", "")), minimum=opts.get("minimum"),
                maximum=opts.get("maximum"), enum=tuple(opts.get("enum", ())))
        spec = ActionSpec(str(name), str(body.get("description", "")), params, where,
                          preconditions=raw_conditions(body.get("preconditions"), where, sink),
                          execute=parse_binding(body.get("execute"), str(name), body.key_spans.get("execute"), sink))
        if "targets" in body:
            spec.targets_span = body.key_spans.get("targets")
            spec.targets = parse_targets(body["targets"], spec, spec.targets_span, sink)
        catalog.actions[str(name)] = spec
        if body.get("inverse") is not None:
            inverses.append((spec, body["inverse"], body.key_spans.get("inverse")))
    # Second pass: an inverse may name an action declared further down the file.
    for spec, raw, at in inverses:
        spec.inverse = parse_inverse(raw, spec, catalog, at, sink)
    return catalog


TARGET_MODES = ("case", "any")
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def parse_targets(raw: Any, spec: ActionSpec, where: Span | None, sink: DiagnosticSink) -> dict[str, str] | None:
    """`targets: [order]` (each must be the case's entity) or `targets: {order: case | any}`.

    A target is a parameter whose value is a graph entity; a parameter that is not an entity
    cannot name what an action changes, so it is an error here."""
    from engine.errors import suggest_help

    help_text = "for example `targets: [invoice]`, or `targets: {invoice: any}` to allow other invoices"
    if isinstance(raw, LStr):
        raw = LList([raw])
    if isinstance(raw, LList):
        items = [(item, "case", span_of(item, where)) for item in raw]
    elif isinstance(raw, LDict):
        items = [(k, v, raw.key_spans.get(k, where)) for k, v in raw.items()]
    else:
        sink.error("schema", f"`targets` of action `{spec.name}` is a list of parameters or a mapping",
                   span_of(raw, where), help=help_text)
        return None
    out: dict[str, str] = {}
    entities = spec.class_params()
    for pname, mode, at in items:
        pname, mode = str(plain(pname)), str(plain(mode))
        if pname not in spec.params:
            h, sug = suggest_help(pname, spec.params, f"parameters of `{spec.name}`")
            sink.error("action_targets", f"`{spec.name}` has no parameter `{pname}`", at, help=h, suggestion=sug)
        elif pname not in entities:
            sink.error("action_targets", f"target `{pname}` of `{spec.name}` is {spec.params[pname].type}, not an "
                       "entity of the graph", at, help="a target names an entity the action changes (a class of "
                       "the ontology)")
        elif mode not in TARGET_MODES:
            h, sug = suggest_help(mode, TARGET_MODES, "target modes")
            sink.error("action_targets", f"unknown target mode `{mode}` for `{spec.name}.{pname}`", at,
                       help=h or "`case` (the case's own entity) or `any` (checked on its own facts)",
                       suggestion=sug)
        else:
            out[pname] = mode
    return out


def parse_binding(raw: Any, action: str, where: Span | None, sink: DiagnosticSink) -> ExecBinding | None:
    """`execute: {connector: NAME, ...template}` — the template is checked by the connector's kind."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = LDict({"connector": raw})  # `execute: NAME`: a connector that needs no template
    if not isinstance(raw, dict) or not isinstance(raw.get("connector"), str) or not raw.get("connector"):
        sink.error("schema", f"`execute` of action `{action}` must be a mapping with a `connector`",
                   span_of(raw, where), help="for example `execute: {connector: kg, where: ..., insert: ...}`")
        return None
    spans = getattr(raw, "key_spans", {})
    template = LDict({str(k): v for k, v in raw.items() if k != "connector"})
    template.key_spans = {str(k): v for k, v in spans.items() if k != "connector"}
    template.span = span_of(raw, where)  # type: ignore[assignment]  # None when `raw` has no place either
    return ExecBinding(str(raw["connector"]), template, span_of(raw, where),
                       span_of(raw["connector"], spans.get("connector", where)))


def _param_ref(value: Any) -> str | None:
    """`params.NAME` → NAME (a reference to a forward parameter); anything else → None."""
    if isinstance(value, str) and value.startswith("params."):
        return value[len("params."):].strip()
    return None


def parse_inverse(raw: Any, spec: ActionSpec, catalog: ActionCatalog, where: Span | None,
                  sink: DiagnosticSink) -> InverseSpec | None:
    """`inverse: NAME` (parameters by equal name) or `inverse: {action: NAME, params: {p: params.q | literal}}`.

    The parameters must fit the inverse action: every name it declares, every required one given,
    each `params.q` a parameter of this action of the same type (and required where the inverse
    requires it, or the compensation could be missing an argument exactly when it is needed).
    """
    from engine.errors import suggest_help

    from .types import BOOLEAN, DATE, NUMBER, STRING

    given: Any
    if isinstance(raw, str):
        target_name, target_span, given = str(raw), span_of(raw, where), None
    elif isinstance(raw, dict) and isinstance(raw.get("action"), str):
        target_name, target_span = str(raw["action"]), span_of(raw["action"], where)
        given = raw.get("params")
        extra = sorted(set(raw) - {"action", "params"})
        for k in extra:
            sink.error("schema", f"unknown key `{k}` in the inverse of `{spec.name}`",
                       getattr(raw, "key_spans", {}).get(k, where), help="known keys: action, params")
        if given is not None and not isinstance(given, dict):
            sink.error("schema", f"`params` of the inverse of `{spec.name}` must be a mapping", span_of(given, where))
            return None
    else:
        sink.error("schema", f"`inverse` of action `{spec.name}` is an action name or `{{action: ..., params: ...}}`",
                   span_of(raw, where),
                   help="for example `inverse: {action: reopen_invoice, params: {invoice: params.invoice}}`")
        return None
    target = catalog.actions.get(target_name)
    if target is None:
        help_, sug = suggest_help(target_name, catalog.actions, "actions")
        sink.error("unknown_action", f"unknown action `{target_name}` as the inverse of `{spec.name}`", target_span,
                   help=help_, suggestion=sug)
        return None
    if target.name == spec.name:
        sink.error("action_params", f"action `{spec.name}` cannot be its own inverse", target_span)
        return None
    if given is None:  # the short form: each parameter of the inverse comes from the same-named one
        given = {p: f"params.{p}" for p in target.params if p in spec.params}
    key_spans = getattr(given, "key_spans", {})
    sources: dict[str, ParamSource] = {}
    ok = True
    for pname, value in given.items():
        pname = str(pname)
        at = key_spans.get(pname, span_of(value, target_span))
        tp = target.params.get(pname)
        if tp is None:
            help_, sug = suggest_help(pname, target.params, f"parameters of `{target.name}`")
            sink.error("action_params", f"inverse action `{target.name}` has no parameter `{pname}`", at,
                       help=help_, suggestion=sug)
            ok = False
            continue
        ref = _param_ref(value)
        if ref is not None:
            sp = spec.params.get(ref)
            vspan = span_of(value, at)
            if sp is None:
                help_, sug = suggest_help(ref, spec.params, f"parameters of `{spec.name}`")
                sink.error("action_params", f"`{spec.name}` has no parameter `{ref}` to pass to its inverse", vspan,
                           help=help_, suggestion=sug)
                ok = False
            elif (sp.type.kind, sp.type.cls, sp.type.elem) != (tp.type.kind, tp.type.cls, tp.type.elem):
                sink.error("action_params", f"parameter `{pname}` of inverse `{target.name}` expects {tp.type}, "
                           f"but `params.{ref}` is {sp.type}", vspan)
                ok = False
            elif tp.required and not sp.required:
                sink.error("action_params", f"parameter `{pname}` of inverse `{target.name}` is required, but "
                           f"`params.{ref}` is optional", vspan,
                           help="pass a required parameter, or make the inverse's parameter optional")
                ok = False
            else:
                sources[pname] = ParamSource(param=ref)
            continue
        lit = plain(value)
        expected: dict[str, type | tuple[type, ...]] = {STRING.kind: str, NUMBER.kind: (int, float),
                                                         BOOLEAN.kind: bool, DATE.kind: str, "ref": str}
        want = expected.get(tp.type.kind)
        if want is None or lit is None or isinstance(lit, bool) != (tp.type.kind == "boolean") \
                or not isinstance(lit, want):
            sink.error("action_params", f"parameter `{pname}` of inverse `{target.name}` expects {tp.type}, "
                       f"but this is `{lit!r}`", span_of(value, at),
                       help=f"pass `params.NAME` (a parameter of `{spec.name}`) or a literal of that type")
            ok = False
            continue
        sources[pname] = ParamSource(value=lit)
    for pname, tp in target.params.items():
        if tp.required and pname not in given:
            sink.error("action_params", f"inverse action `{target.name}` needs parameter `{pname}`", target_span,
                       help=f"add `{pname}: params.NAME` under the inverse's `params:` ({tp.type})")
            ok = False
    return InverseSpec(target.name, sources, span_of(raw, where)) if ok else None


def raw_conditions(spec: Any, where: Span | None, sink: DiagnosticSink) -> list[RawCondition]:
    """A list of conditions: each an expression, or `{when: expression, message: text}`."""
    if spec is None:
        return []
    if not isinstance(spec, LList):
        spec = LList([spec])
    out = []
    for item in spec:
        if isinstance(item, LDict):
            if "when" not in item:
                sink.error("schema", "a condition is an expression or `{when: ..., message: ...}`",
                           span_of(item, where))
                continue
            out.append(RawCondition(item["when"], str(item.get("message") or item["when"]), span_of(item, where)))
        else:
            out.append(RawCondition(item, str(item), span_of(item, where)))
    return out


__all__ = ["TARGET_MODES", "ActionCatalog", "ActionSpec", "ExecBinding", "InverseSpec", "ParamSource", "ParamSpec",
           "load_actions", "parse_type", "LList"]
