"""YAML with source positions: every mapping, list and scalar remembers where it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.errors import DiagnosticSink, Span


class Located:
    """Mixin for loaded values: `.span` is where the value starts in its file."""

    span: Span


class LStr(str, Located):
    """A string scalar with its span; `.style` is the YAML quoting style ('' plain, '"', "'")."""

    style: str = ""


class LInt(int, Located):
    """An integer scalar with its span."""


class LFloat(float, Located):
    """A float scalar with its span."""


class LBool(int, Located):
    """A boolean scalar with its span (bool cannot be subclassed; compares like 0/1)."""

    def __repr__(self) -> str:
        return "true" if self else "false"


class LList(list, Located):
    """A sequence with its span."""


class LDict(dict, Located):
    """A mapping with its span and the span of each key (`key_spans`)."""

    key_spans: dict[str, Span]


class LNone(Located):
    """An explicit YAML null with its span."""

    def __bool__(self) -> bool:
        return False


def _span(file: str, node: yaml.Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


class _Loader(yaml.SafeLoader):
    pass


_CONSTRUCTOR = yaml.SafeLoader("")


def _to_value(node: yaml.Node, file: str) -> Any:
    span = _span(file, node)
    if isinstance(node, yaml.MappingNode):
        out = LDict()
        out.span = span
        out.key_spans = {}
        for k, v in node.value:
            # Keys are text: YAML 1.1 would read `on:` as `true:` and `1:` as an integer.
            if isinstance(k, yaml.ScalarNode):
                key = LStr(k.value)
                key.span = _span(file, k)
            else:
                key = LStr(str(_to_value(k, file)))
                key.span = _span(file, k)
            out[key] = _to_value(v, file)
            out.key_spans[key] = _span(file, k)
        return out
    if isinstance(node, yaml.SequenceNode):
        lst = LList(_to_value(v, file) for v in node.value)
        lst.span = span
        return lst
    assert isinstance(node, yaml.ScalarNode)
    resolved = _CONSTRUCTOR.construct_object(node) if node.tag != "tag:yaml.org,2002:str" else node.value
    if isinstance(resolved, bool):
        out_b = LBool(resolved)
        out_b.span = span
        return out_b
    if isinstance(resolved, int):
        out_i = LInt(resolved)
        out_i.span = span
        return out_i
    if isinstance(resolved, float):
        out_f = LFloat(resolved)
        out_f.span = span
        return out_f
    if resolved is None:
        n = LNone()
        n.span = span
        return n
    out_s = LStr(str(resolved) if not isinstance(resolved, str) else resolved)
    out_s.span = span
    out_s.style = node.style or ""
    return out_s


def load_yaml(path: Path | str, sink: DiagnosticSink, *, text: str | None = None) -> Any:
    """Parse one YAML file into located values; syntax errors go to `sink` and return None."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            sink.error("yaml_syntax", f"cannot read file: {exc}", Span(file))
            return None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        sink.error("yaml_syntax", f"invalid YAML: {problem}", span,
                   help="check indentation and that strings with `:` or `#` are quoted")
        return None
    except yaml.YAMLError as exc:
        sink.error("yaml_syntax", f"invalid YAML: {exc}", Span(file))
        return None
    if node is None:
        return None
    try:
        return _to_value(node, file)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file)
        sink.error("yaml_syntax", f"invalid YAML value: {getattr(exc, 'problem', exc)}", span)
        return None


def span_of(value: Any, default: Span | None = None) -> Span | None:
    """The span of a located value, or `default`."""
    return getattr(value, "span", default)


def plain(value: Any) -> Any:
    """Strip location wrappers: located values back to plain Python values."""
    if isinstance(value, LNone):
        return None
    if isinstance(value, LBool):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, LInt):
        return int(value)
    if isinstance(value, LFloat):
        return float(value)
    if isinstance(value, LStr):
        return str(value)
    return value
