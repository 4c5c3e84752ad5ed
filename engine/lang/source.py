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
    raw: str | None = None  # the scalar as written, when that differs from its value

    def span_at(self, i: int, length: int = 1) -> Span:
        """The span of `length` characters of the value from character `i` (on one line)."""
        line, col = self.position(i)
        return Span(self.span.file, line, col, line, col + max(length, 1))

    def position(self, i: int) -> tuple[int, int]:
        """The 1-based (line, column) in the file of character `i` of the value.

        Escapes (`\\"`, `''`) and folded lines make the value differ from what is written;
        the value is aligned with the written text to find each character.
        """
        if self.raw is None:
            return self.span.line, self.span.col + i
        offsets = self.__dict__.get("_offsets")
        if offsets is None:
            offsets = self.__dict__["_offsets"] = _align(str(self), self.raw, self.style)
        k = offsets[i] if i < len(offsets) else (offsets[-1] + 1 if offsets else 0)
        line = self.raw.count("\n", 0, k)
        col = k - (self.raw.rfind("\n", 0, k) + 1)
        return self.span.line + line, (self.span.col + col if line == 0 else col + 1)


class LInt(int, Located):
    """An integer scalar with its span."""


class LFloat(float, Located):
    """A float scalar with its span."""


class LBool(int, Located):
    """A boolean scalar with its span (bool cannot be subclassed; compares like 0/1)."""

    def __repr__(self) -> str:
        return "true" if self else "false"


class LList(list[Any], Located):
    """A sequence with its span."""


class LDict(dict[str, Any], Located):
    """A mapping with its span and the span of each key (`key_spans`)."""

    key_spans: dict[str, Span]


class LNone(Located):
    """An explicit YAML null with its span."""

    def __bool__(self) -> bool:
        return False


def _align(value: str, raw: str, style: str) -> list[int]:
    """For each character of a scalar's value, its offset in the scalar as written.

    Every character of the value is looked for a little ahead in the written text; what is
    skipped is quoting, escapes and the line breaks and indentation that folding removes. A
    character that escapes produce (`\\u00e9`) is not found and stays at the current place.
    """
    j = raw.index("\n") + 1 if style in ("|", ">") and "\n" in raw else (1 if style in ('"', "'") else 0)
    out: list[int] = []
    for c in value:
        k, limit = j, j + 8
        while k < len(raw) and raw[k] != c and k < limit:
            if raw[k] in " \t\r\n":
                limit += 1  # folding removes line breaks and indentation of any length
            k += 1
        if k < len(raw) and raw[k] == c:
            out.append(k)
            j = k + 1
        elif c in " \n" and j < len(raw) and raw[j] in "\r\n":
            out.append(j)  # a line break folded into a space
            j += 1
        else:
            out.append(min(j, max(len(raw) - 1, 0)))
    return out


def _span(file: str, node: yaml.Node) -> Span:
    s, e = node.start_mark, node.end_mark
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


class _Loader(yaml.SafeLoader):
    pass


# libyaml decides what parses when PyYAML has it (every PyYAML wheel does): ~4x faster on a
# 2,000-rule file, and it caps nesting at 1,000 levels itself. A file it rejects is parsed again
# by the pure-Python loader, whose messages and marks our diagnostics are written against.
_FastLoader = getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None


_CONSTRUCTOR = yaml.SafeLoader("")
# Rule files are a few levels deep; far deeper nesting, or aliases expanding to millions of
# values, is a mistake or an attack, reported instead of exhausting the stack or the memory.
MAX_DEPTH = 100
MAX_VALUES = 500_000
# An alias repeats its anchor's whole value, so a few values can stand for gigabytes of text (3,000
# aliases of a 1 MB string: 3 GB). The characters that aliases add are bounded as well: by this,
# or by a few times the file's own length when that is more.
MAX_ALIAS_CHARS = 4_000_000
ALIAS_CHARS_PER_CHAR = 4


class _Problem(Exception):
    """A YAML document that composes but cannot be used: reported at `span`."""

    def __init__(self, message: str, span: Span, help: str | None = None):
        super().__init__(message)
        self.message, self.span, self.help = message, span, help


class _Builder:
    """Composed YAML nodes to located values; duplicate keys go to the sink, cycles raise.

    An alias is the same node as its anchor, built once more each time it is used. The first
    node built again outside any other alias is an alias written in the file (`alias`: its
    parent and its place there); what it expands to is counted against the alias budget.
    """

    def __init__(self, file: str, sink: DiagnosticSink, text: str = ""):
        self.text = text
        self.file = file
        self.sink = sink
        self.active: set[int] = set()  # ids of the nodes being built: an alias back to one is a cycle
        self.count = 0
        self.built: set[int] = set()  # ids of the nodes built once: built again, they are an alias
        self.alias: tuple[yaml.Node, int] | None = None  # the alias being expanded: (parent, index)
        self.alias_chars = 0
        self.max_alias_chars = max(MAX_ALIAS_CHARS, ALIAS_CHARS_PER_CHAR * len(text))

    def value(self, node: yaml.Node, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _Problem(f"the file expands to more than {MAX_VALUES} values", self._where(node),
                           help="aliases (`*name`) repeat their anchor's whole value; use fewer of them")
        if depth > MAX_DEPTH:
            raise _Problem(f"values are nested more than {MAX_DEPTH} levels deep", _span(self.file, node))
        self.built.add(id(node))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self.active:
                raise _Problem("an alias refers to a value that contains it", _span(self.file, node),
                               help="an anchor (`&name`) cannot be used (`*name`) inside its own value")
            self.active.add(id(node))
            try:
                return self._collection(node, depth)
            finally:
                self.active.discard(id(node))
        self._spend(node)
        return _scalar(node, self.file, self.text)

    def _child(self, parent: yaml.Node, index: int, node: yaml.Node, depth: int) -> Any:
        """Item `index` of `parent` (a mapping's key 2i and value 2i+1), noting an alias."""
        if self.alias is not None or id(node) not in self.built:
            return self.value(node, depth + 1)
        self.alias = (parent, index)
        try:
            return self.value(node, depth + 1)
        finally:
            self.alias = None

    def _spend(self, node: yaml.Node) -> None:
        """Count a scalar an alias repeats against the budget."""
        if self.alias is None:
            return
        self.alias_chars += len(node.value)
        if self.alias_chars > self.max_alias_chars:
            raise _Problem(f"aliases expand to more than {self.max_alias_chars} characters",
                           self._where(node), help="an alias (`*name`) repeats its anchor's whole "
                           "value; use fewer of them, or shorter ones")

    def _where(self, node: yaml.Node) -> Span:
        """The alias being expanded, else `node` itself."""
        if self.alias is None:
            return _span(self.file, node)
        return _alias_span(self.file, self.text, *self.alias) or _span(self.file, node)

    def _collection(self, node: yaml.Node, depth: int) -> Any:
        file = self.file
        if isinstance(node, yaml.SequenceNode):
            lst = LList(self._child(node, i, v, depth) for i, v in enumerate(node.value))
            lst.span = _span(file, node)
            return lst
        out = LDict()
        out.span = _span(file, node)
        out.key_spans = {}
        for i, (k, v) in enumerate(node.value):
            # Keys are text: YAML 1.1 would read `on:` as `true:` and `1:` as an integer.
            if isinstance(k, yaml.ScalarNode):
                key = LStr(self._key(node, 2 * i, k))
            else:
                key = LStr(str(self._child(node, 2 * i, k, depth)))
            key.span = _span(file, k)
            if key in out:
                first = out.key_spans[key]
                self.sink.error("yaml_syntax", f"duplicate key `{key}`", key.span,
                                help=f"`{key}` is already set at line {first.line}; a key may appear once "
                                "in a mapping")
                continue
            out[key] = self._child(node, 2 * i + 1, v, depth)
            out.key_spans[key] = key.span
        return out

    def _key(self, parent: yaml.Node, index: int, k: yaml.ScalarNode) -> str:
        """A scalar key's text, as written (an alias as a key is counted like any other)."""
        if self.alias is not None or id(k) not in self.built:
            self.built.add(id(k))
            self._spend(k)
            text: str = k.value  # a scalar node's value is its text
            return text
        self.alias = (parent, index)
        try:
            self._spend(k)
        finally:
            self.alias = None
        text = k.value
        return text


def _alias_span(file: str, text: str, parent: yaml.Node, index: int) -> Span | None:
    """Where item `index` of `parent` is written: the alias there (`*name`).

    Composed nodes do not keep where an alias was written (it is its anchor's node), so the
    file's events are read again, on this error path only: item `index` of the collection that
    starts and ends where `parent` does.
    """
    loader = _FastLoader or _Loader
    starts = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
    ends = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    mapping = isinstance(parent, yaml.MappingNode)
    kind = yaml.MappingStartEvent if mapping else yaml.SequenceStartEvent
    # the open collections, each with the first event of each of its items so far
    stack: list[tuple[yaml.Event, list[yaml.Event]]] = []
    try:
        for event in yaml.parse(text, Loader=loader):
            if stack and not isinstance(event, ends):
                stack[-1][1].append(event)
            if isinstance(event, starts):
                stack.append((event, []))
            elif isinstance(event, ends) and stack:
                start, items = stack.pop()
                # INVARIANT: the parser marks every event and node it makes
                assert start.start_mark is not None and parent.start_mark is not None
                assert event.end_mark is not None and parent.end_mark is not None
                if (isinstance(start, kind) and start.start_mark.index == parent.start_mark.index
                        and event.end_mark.index == parent.end_mark.index):
                    return _event_span(file, items[index]) if index < len(items) else None
    except yaml.YAMLError:
        return None
    return None


def _event_span(file: str, event: yaml.Event) -> Span:
    s, e = event.start_mark, event.end_mark
    assert s is not None and e is not None  # INVARIANT: the parser marks every event
    return Span(file, s.line + 1, s.column + 1, e.line + 1, e.column + 1)


def _scalar(node: yaml.Node, file: str, text: str) -> Any:
    span = _span(file, node)
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
    s, e = node.start_mark, node.end_mark
    # Keep the scalar as written (carets after escapes): the pure loader's marks carry the
    # buffer, libyaml's a character index into `text`.
    raw = s.buffer[s.pointer:e.pointer] if s.buffer is not None else text[s.index:e.index]
    if raw != out_s:
        out_s.raw = raw
    return out_s


def _compose(text: str) -> yaml.Node | None:
    if _FastLoader is None:
        return yaml.compose(text, Loader=_Loader)
    try:
        return yaml.compose(text, Loader=_FastLoader)
    except yaml.YAMLError:
        yaml.compose(text, Loader=_Loader)  # raises with the message we report
        raise  # only libyaml rejects it: its own message


def read_source(path: Path | str) -> tuple[str | None, str]:
    """(text, "") of a UTF-8 text file, or (None, why not) — a folder, unreadable, not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8"), ""
    except IsADirectoryError:
        return None, "is a folder, not a file"
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    except OSError as exc:
        return None, f"cannot be read: {(exc.strerror or str(exc)).lower()}"


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
        node = _compose(text)
    except RecursionError:
        sink.error("yaml_syntax", f"invalid YAML: values are nested more than {MAX_DEPTH} levels deep",
                   Span(file, 1, 1))
        return None
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
        return _Builder(file, sink, text).value(node)
    except _Problem as exc:
        sink.error("yaml_syntax", f"invalid YAML: {exc.message}", exc.span, help=exc.help)
        return None
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
