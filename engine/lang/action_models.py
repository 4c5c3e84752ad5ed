"""One pydantic model per action: the single schema for rule consequences, LLM output, HTTP and MCP.

The models are built from the workspace's action catalog (`rules/actions.yaml`), each on its
first use through `ActionCatalog.model`, `json_schema` or `validate`
(`engine/lang/actions.py`), which import this module only then: code that does not validate
parameters does not load pydantic.

Values are validated strictly — no `"2.5"` for a number, no `true` for `1`, no NaN, no negative
zero, no NUL character in text, no extra fields — and an IRI parameter must name an instance of
its declared graph class, which is checked against the graph through the validation context
(`ParamContext`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, ValidationInfo, create_model

from .actions import ActionCatalog, ActionSpec, ParamSpec
from .checker import expand_iri
from .payload import is_iri
from .types import Type

MAX_TEXT = 4000  # a parameter of type string longer than this is refused


def refuse_nul(value: str) -> str:
    """A text without NUL: C libraries, drivers and log viewers cut a string there, so what a
    person reads would not be what a system receives."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed in text")
    return value


def refuse_negative_zero(value: float) -> float:
    """A number that is not -0.0: it equals 0 (and passes `minimum: 0`) but flips signs later
    (`1 / -0.0` is -inf), which can hide sign games."""
    if value == 0 and math.copysign(1.0, value) < 0:
        raise ValueError("negative zero is not a number this field accepts")
    return value


@dataclass(frozen=True)
class ParamContext:
    """What validation needs beyond the value: prefixes and a graph class-membership test."""

    prefixes: dict[str, str]
    instance_of: Callable[[str, str], bool]  # (iri, class local name) -> bool


def _iri_validator(cls: str) -> Callable[[str, ValidationInfo], str]:
    def check(value: str, info: ValidationInfo) -> str:
        ctx = (info.context or {}).get("params")
        if not isinstance(ctx, ParamContext):  # fail closed: no graph, no IRI check, no pass
            raise ValueError("no graph context to check the IRI against")
        iri = expand_iri(value.strip(), ctx.prefixes)
        if not iri.startswith(("http://", "https://", "urn:")) or not is_iri(iri):
            raise ValueError(f"`{value}` is not an IRI")
        if not ctx.instance_of(iri, cls):
            raise ValueError(f"`{value}` is not a {cls} in the knowledge graph")
        return iri

    return check


def _annotation(t: Type, p: ParamSpec | None, name: str) -> Any:
    """The pydantic annotation for one rule-language type."""
    k = t.kind
    if k == "ref":
        return Annotated[str, Strict(), Field(min_length=1, max_length=2000,
                                              description=f"the IRI of a {t.cls} in the knowledge graph"),
                         AfterValidator(refuse_nul), AfterValidator(_iri_validator(t.cls or ""))]
    if k == "number":
        kw: dict[str, Any] = {"allow_inf_nan": False}
        if p is not None and p.minimum is not None:
            kw["ge"] = p.minimum
        if p is not None and p.maximum is not None:
            kw["le"] = p.maximum
        return Annotated[float, Strict(), Field(**kw), AfterValidator(refuse_negative_zero)]
    if k == "string":
        if p is not None and p.enum:
            return Literal[tuple(p.enum)]
        return Annotated[str, Strict(), Field(max_length=MAX_TEXT), AfterValidator(refuse_nul)]
    if k == "boolean":
        return Annotated[bool, Strict()]
    if k == "date":
        return dt.date
    if k == "list":
        # an annotation built at run time: mypy cannot check a type made from a value
        return list[_annotation(t.elem or Type("any"), None, name)]  # type: ignore[misc]
    if k == "object":
        fields = {fname: (_annotation(ft, None, fname), None if ft.optional else ...) for fname, ft in t.fields}
        # fields as (annotation, default) pairs: pydantic's overloads do not type a dict of them
        return create_model(f"{name}_object", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]
    return Any


def action_model(spec: ActionSpec) -> type[BaseModel]:
    """The parameters of `spec` as a strict pydantic model (extra fields forbidden)."""
    fields: dict[str, Any] = {}
    for p in spec.params.values():
        ann = _annotation(p.type, p, p.name)
        if not p.required:
            ann = ann | None
        desc = p.description or None
        if p.type.kind == "ref":  # the outer Field's description replaces the annotation's: keep the class
            desc = f"the IRI of a {p.type.cls} in the knowledge graph" + (f": {desc}" if desc else "")
        fields[p.name] = (ann, Field(... if p.required else None, description=desc))
    model: type[BaseModel] = create_model(spec.name, __config__=ConfigDict(extra="forbid", title=spec.name), **fields)
    model.__doc__ = spec.description
    return model


def literal_errors(catalog: ActionCatalog, action: str, name: str, value: Any,
                   ctx: ParamContext | None) -> list[str]:
    """Errors of one literal parameter value (ranges, enums, types) — for load-time checks of rules."""
    if action not in catalog.actions:
        return []
    model = catalog.model(action)
    if name not in model.model_fields:
        return []
    try:
        model.__pydantic_validator__.validate_assignment(model.model_construct(), name, value,
                                                         context={"params": ctx} if ctx else None)
    except ValidationError as exc:
        return [e["msg"] for e in exc.errors(include_url=False)]
    return []


def format_errors(exc: ValidationError) -> list[str]:
    """Validation errors as short lines: `field: message` (what goes back to the model)."""
    out = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        out.append(f"{loc}: {e['msg']}")
    return out


__all__ = ["MAX_TEXT", "ParamContext", "ValidationError", "action_model", "format_errors", "literal_errors",
           "refuse_negative_zero", "refuse_nul"]
