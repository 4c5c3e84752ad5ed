"""The action catalog as the rule compiler sees it: names and typed parameters.

Actions are declared once in the workspace (`rules/actions.yaml`). The compiler checks every
consequence against them; later stages turn the same declarations into pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import DiagnosticSink, Span

from .source import LDict, LList, LStr, load_yaml, plain, span_of
from .types import Schema, Type


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
class ActionSpec:
    """A typed operation on a system of record."""

    name: str
    description: str
    params: dict[str, ParamSpec]
    span: Span | None = None
    inverse: str | None = None
    preconditions: list["RawCondition"] = field(default_factory=list)


@dataclass
class RawCondition:
    """A condition as written (checked and compiled by the stage that evaluates it)."""

    text: Any  # an LStr with its source position
    message: str
    span: Span | None


@dataclass
class ActionCatalog:
    """All actions of a workspace by name."""

    actions: dict[str, ActionSpec] = field(default_factory=dict)
    file: str | None = None


def parse_type(spec: object, schema: Schema, sink: DiagnosticSink, where: Span | None) -> Type | None:
    """Parse a type spelling: a scalar, a class name, `[T]`/`list[T]`, `T?`, or a mapping of fields."""
    from .types import BOOLEAN, DATE, NUMBER, STRING, list_of, ref

    if isinstance(spec, dict):
        fields = []
        for k, v in spec.items():
            t = parse_type(v, schema, sink, span_of(v, where))
            if t is None:
                return None
            fields.append((str(k), t))
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
    """Load `actions.yaml`: `actions: {name: {description, params: {p: type | {type, ...}}}}`."""
    catalog = ActionCatalog(file=str(path))
    data = load_yaml(path, sink)
    if data is None:
        return catalog
    if not isinstance(data, LDict) or not isinstance(data.get("actions"), LDict):
        sink.error("schema", "an action catalog has a top-level `actions:` mapping", span_of(data, Span(str(path), 1, 1)))
        return catalog
    for name, body in data["actions"].items():
        where = data["actions"].key_spans.get(name)
        if not isinstance(body, LDict):
            sink.error("schema", f"action `{name}` must be a mapping with `description` and `params`", where)
            continue
        unknown = set(body) - {"description", "params", "inverse", "connector", "preconditions", "effect"}
        for k in sorted(unknown):
            sink.error("schema", f"unknown key `{k}` in action `{name}`", body.key_spans.get(k),
                       help="known keys: description, params, preconditions, inverse")
        params: dict[str, ParamSpec] = {}
        raw_params = body.get("params") or LDict()
        if not isinstance(raw_params, dict):
            sink.error("schema", f"`params` of action `{name}` must be a mapping", span_of(raw_params, where))
            raw_params = {}
        for pname, pspec in raw_params.items():
            pspan = raw_params.key_spans.get(pname) if isinstance(raw_params, LDict) else where
            opts: dict = {}
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
        catalog.actions[str(name)] = ActionSpec(str(name), str(body.get("description", "")), params, where,
                                                inverse=str(body["inverse"]) if body.get("inverse") else None,
                                                preconditions=raw_conditions(body.get("preconditions"), where, sink))
    return catalog


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
                sink.error("schema", "a condition is an expression or `{when: ..., message: ...}`", span_of(item, where))
                continue
            out.append(RawCondition(item["when"], str(item.get("message") or item["when"]), span_of(item, where)))
        else:
            out.append(RawCondition(item, str(item), span_of(item, where)))
    return out


__all__ = ["ActionCatalog", "ActionSpec", "ParamSpec", "load_actions", "parse_type", "LList"]
