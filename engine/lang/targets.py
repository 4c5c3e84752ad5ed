"""What an action changes, and which of the case's entities that must be.

An action's *targets* are the parameters naming the entities it changes (`approve_discount`
changes its `order`; its `percent` is a value and `approve_invoice`'s `approver` is only
referred to). The rules of a ruleset are written about the case's entities: `order.margin_percent`
is the margin of the case's order. A guard therefore protects an entity only when the action
changes that same entity — so the gate checks, for every proposal, whoever made it, that each
target *is* the case's entity it binds to, or (where the action or the ruleset says `any`)
evaluates the checks again on the facts of the entity the proposal names.

A target binds to one field of the case (`case.order`): the one written in the ruleset's
`targets:`, else the single case field of the target's class. No such field, or two of them,
leaves the target unbound, and a proposal of it cannot pass the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actions import ActionSpec
from .types import Schema, Type, entity_class


@dataclass(frozen=True)
class TargetBinding:
    """One target of an action in one ruleset: the parameter, how strictly it is bound, and to what."""

    param: str
    mode: str  # case: it must be the case's entity | any: another is checked on its own facts
    field: str | None  # the case field it binds to; None: unbound (`why` says why)
    why: str = ""


def field_holds_class(case_schema: Type, name: str, cls: str, schema: Schema) -> bool:
    """Whether case field `name` holds one entity of `cls` (or of a class related to it)."""
    t = case_schema.field_map().get(name)
    return t is not None and t.kind == "ref" and t.cls is not None and (
        t.cls == cls or schema.is_subclass(cls, t.cls) or schema.is_subclass(t.cls, cls))


def case_fields_of_class(case_schema: Type, cls: str, schema: Schema) -> list[str]:
    """The top-level case fields holding one entity of `cls` (exact class first, then related classes)."""
    fields = [(name, t.cls) for name, t in case_schema.fields if t.kind == "ref" and t.cls]
    exact = [name for name, c in fields if c == cls]
    if exact:
        return exact
    return [name for name, c in fields if c is not None and (schema.is_subclass(cls, c) or schema.is_subclass(c, cls))]


def bind_targets(spec: ActionSpec, case_schema: Type, schema: Schema,
                 declared: dict[str, str] | None = None) -> list[TargetBinding]:
    """How each target of `spec` binds in a ruleset with `case_schema`.

    `declared` is the ruleset's `targets:` for this action (param → `any` or `case.FIELD`)."""
    out = []
    for param, mode in (spec.targets or {}).items():
        cls = entity_class(spec.params[param].type)
        decl = (declared or {}).get(param)
        field: str | None = None
        why = ""
        if decl is not None and decl.startswith("case."):
            field = decl[len("case."):]
        else:
            if decl == "any":
                mode = "any"
            found = case_fields_of_class(case_schema, cls or "", schema)
            if len(found) == 1:
                field = found[0]
            elif not found:
                why = f"the case has no field of class `{cls}`"
            else:
                why = f"the case has several fields of class `{cls}` ({', '.join(found)})"
        out.append(TargetBinding(param, mode, field, why))
    return out


def params_read(node: Any) -> set[str]:
    """The parameters a guard or condition reads (`params.NAME...`), from its checked tree."""
    from . import expr as E

    out = set()
    for n in E.walk(node):
        if isinstance(n, E.Path):
            full = n.full or (n.root, *n.steps)
            if full[:1] == ("params",) and len(full) > 1:
                out.add(full[1])
    return out


__all__ = ["TargetBinding", "bind_targets", "case_fields_of_class", "params_read"]
