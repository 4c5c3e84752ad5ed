"""Action parameters as a connector receives them: checked once more, then typed for its system.

What reaches a connector has passed the gate, so these checks should never fail. They are here
because a connector is the last place before a system of record changes, and it is reachable
directly from Python: an unknown, missing or ill-typed parameter is refused (fail closed) with
`PermanentError(code="connector_bad_params")` rather than written.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from engine.case import IRI
from engine.lang.actions import ActionSpec
from engine.lang.payload import is_iri

from .base import PermanentError


def _bad(action: str, message: str) -> PermanentError:
    return PermanentError(f"action `{action}`: {message}", code="connector_bad_params")


def checked_params(spec: ActionSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as JSON values, each of the kind its declaration says; None values dropped."""
    if not isinstance(params, dict):
        raise _bad(spec.name, "parameters must be an object")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise _bad(spec.name, f"unknown parameter `{unknown[0]}`")
    out: dict[str, Any] = {}
    for name, p in spec.params.items():
        v = params.get(name)
        if v is None:
            if p.required:
                raise _bad(spec.name, f"missing parameter `{name}`")
            continue
        kind = p.type.kind
        if kind == "ref" and not (isinstance(v, str) and is_iri(v)):
            raise _bad(spec.name, f"parameter `{name}` must be an absolute IRI")
        if kind == "number" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise _bad(spec.name, f"parameter `{name}` must be a finite number")
        if kind == "string" and not isinstance(v, str):
            raise _bad(spec.name, f"parameter `{name}` must be a string")
        if kind == "boolean" and not isinstance(v, bool):
            raise _bad(spec.name, f"parameter `{name}` must be true or false")
        if kind == "date":
            if isinstance(v, dt.date):
                v = v.isoformat()
            try:
                dt.date.fromisoformat(str(v))
            except ValueError:
                raise _bad(spec.name, f"parameter `{name}` must be a date (YYYY-MM-DD)") from None
        out[name] = v
    return out


def graph_values(spec: ActionSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters typed for the graph: `IRI` for references, `date` for dates.

    Lists and objects have no single RDF term; an action that takes them cannot be bound to
    the graph connector (refused here, not flattened into some string).
    """
    out: dict[str, Any] = {}
    for name, v in checked_params(spec, params).items():
        kind = spec.params[name].type.kind
        if kind == "ref":
            out[name] = IRI(v)
        elif kind == "date":
            out[name] = dt.date.fromisoformat(str(v))
        elif kind in ("list", "object", "any"):
            raise _bad(spec.name, f"parameter `{name}` is a {kind}: the graph connector binds single values only")
        else:
            out[name] = v
    return out


__all__ = ["checked_params", "graph_values"]
