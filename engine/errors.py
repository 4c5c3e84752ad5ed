"""Diagnostics and typed errors: one shape for the parser, compiler, graph checks, CLI and API.

A `Diagnostic` carries a stable snake_case `code` (error codes are API: documented in
`rules/README.md`, never reused), a severity, a lower-case message, a source span and a
help line. Renderers live here too so that every edge prints the same thing.
"""

from __future__ import annotations

import difflib
import json
import reprlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Severity(str, Enum):
    """How bad a diagnostic is; warnings become fatal only with `--deny-warnings`."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Span:
    """A 1-based source location: file, line and column, with an optional end."""

    file: str
    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0

    def shifted(self, *, line: int = 0, col: int = 0, length: int = 0) -> Span:
        """A span inside this one: `line`/`col` are 0-based offsets from its start."""
        start_col = (self.col + col) if line == 0 else col + 1
        return Span(self.file, self.line + line, start_col, self.line + line, start_col + max(length, 1))


@dataclass(frozen=True)
class Diagnostic:
    """One finding about user input, renderable as text (with a caret) or JSON."""

    code: str
    message: str
    span: Span | None = None
    severity: Severity = Severity.ERROR
    help: str | None = None
    suggestion: str | None = None

    def sort_key(self) -> tuple[str, int, int, str, str]:
        s = self.span or Span("")
        return (s.file, s.line, s.col, self.code, self.message)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        return d


# Error codes that stand for the same thing everywhere. Kept here so they are listed once.
CODES: dict[str, str] = {
    "yaml_syntax": "the file is not valid YAML",
    "schema": "a key is missing, unknown or of the wrong kind",
    "expr_syntax": "an expression cannot be parsed",
    "expr_forbidden": "an expression uses a construct the language does not allow",
    "unknown_name": "a path, binding, builtin or query name is not known",
    "unknown_property": "a path step names no property of the class it reaches",
    "type_mismatch": "an expression combines values of incompatible types",
    "duplicate_id": "two rules, guards, tests or rulesets share an id",
    "duplicate_case_type": "two rulesets decide the same case type",
    "unknown_action": "a consequence names an action the catalog does not declare",
    "action_params": "a consequence's parameters do not fit its action",
    "never_fires": "a rule's conditions contradict each other",
    "shadowed": "a rule can never win because a higher-priority rule always matches first",
    "table_syntax": "a decision table cell or header is malformed",
    "graph_syntax": "a graph file cannot be parsed",
    "shacl": "the graph data violates a SHACL shape",
    "query": "a named SPARQL query is missing or malformed",
    "config": "rulebridge.toml is malformed",
    "case_invalid": "a case does not fit the case schema of its ruleset",
    "no_ruleset": "no ruleset decides the case type",
    "duration_syntax": "a window (`within:`) is not a duration like `7d`, or is longer than a year",
    "event_invalid": "an event does not fit its event type, or is no event",
    "event_type_unknown": "an event names no declared event type",
    "event_out_of_order": "an event is earlier than one already observed",
    "case_too_large": "a case is larger than `[security] max_case_bytes`",
    "test_failed": "a rule test did not get the expected decision",
}


class RulebridgeError(Exception):
    """Base of every error the engine raises on purpose; carries diagnostics."""

    code = "error"

    def __init__(self, diagnostics: Sequence[Diagnostic] | str, *, code: str | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(code or self.code, diagnostics)]
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        if code:
            self.code = code
        elif self.diagnostics:
            self.code = self.diagnostics[0].code
        super().__init__("\n".join(d.message for d in self.diagnostics))


class LoadError(RulebridgeError):
    """The workspace (rules, tables, graph, config) failed to load."""

    code = "load_error"


class AuthError(RulebridgeError):
    """An identity that may not act (refused before anything is decided); `code` is stable:
    auth_required, auth_key_malformed, auth_key_unknown, auth_key_revoked, auth_identity_revoked,
    auth_identity_mismatch, auth_wrong_kind, agent_unknown, agent_not_permitted, agent_name_invalid,
    reviewer_unknown, reviewer_not_permitted, reviewer_name_invalid."""

    code = "auth_error"


class CaseError(RulebridgeError):
    """A case is malformed or names a case type nothing decides."""

    code = "case_invalid"


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """The closest known name within a small edit distance, or None."""
    matches = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggest_help(name: str, known: Iterable[str], what: str) -> tuple[str | None, str | None]:
    """A (help, suggestion) pair for an unknown `name` among `known`."""
    known = sorted(set(known))
    best = did_you_mean(name, known)
    if best:
        return f"did you mean `{best}`?", best
    if known:
        shown = ", ".join(f"`{k}`" for k in known[:12])
        more = "" if len(known) <= 12 else f" and {len(known) - 12} more"
        return f"known {what}: {shown}{more}", None
    return None, None



# Characters a message never shows as they are: controls (C0, DEL, C1), format characters (bidi
# controls that reorder what a person reads, zero-width ones), surrogates, line separators.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SHOWN_CHARS = 80


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """User input as a message may quote it: at most `limit` characters then `…`, and every
    hidden character escaped (`\\u202e`), so a message is short and reads as it is stored."""
    head = "".join(ascii(ch)[1:-1] if unicodedata.category(ch) in HIDDEN_CATEGORIES else ch
                   for ch in text[:limit])
    return head + ("…" if len(text) > limit else "")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = SHOWN_CHARS


def shown_value(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A value as a message may quote it: its repr, bounded at each level (`reprlib`), cut short."""
    return shown(_REPR.repr(value), limit)

_line_cache: dict[str, list[str]] = {}


def _source_line(file: str, line: int) -> str | None:
    if file not in _line_cache:
        try:
            _line_cache[file] = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            _line_cache[file] = []
    lines = _line_cache[file]
    return lines[line - 1] if 0 < line <= len(lines) else None


def render_text(diags: Sequence[Diagnostic], *, sources: dict[str, str] | None = None) -> str:
    """Render diagnostics for people: `file:line:col: error[code]: message`, source, caret, help."""
    out: list[str] = []
    for d in sorted(diags, key=Diagnostic.sort_key):
        s = d.span
        where = ""
        if s and s.file:
            where = f"{s.file}:{s.line}:{s.col}: " if s.line else f"{s.file}: "
        out.append(f"{where}{d.severity.value}[{d.code}]: {d.message}")
        if s and s.line:
            src = None
            if sources and s.file in sources:
                lines = sources[s.file].splitlines()
                src = lines[s.line - 1] if 0 < s.line <= len(lines) else None
            else:
                src = _source_line(s.file, s.line)
            if src is not None:
                gutter = f"{s.line:>4} | "
                out.append(f"{gutter}{src}")
                width = 1
                if s.end_line == s.line and s.end_col > s.col:
                    width = s.end_col - s.col
                out.append(" " * (len(gutter) + max(s.col - 1, 0)) + "^" * width)
        if d.help:
            out.append(f"  = help: {d.help}")
    n_err = sum(1 for d in diags if d.severity == Severity.ERROR)
    n_warn = len(diags) - n_err
    if diags:
        out.append(f"{n_err} error(s), {n_warn} warning(s)")
    return "\n".join(out)


def render_json(diags: Sequence[Diagnostic]) -> str:
    """Render diagnostics for machines: the same objects as JSON."""
    return json.dumps([d.to_json() for d in sorted(diags, key=Diagnostic.sort_key)], indent=2)


@dataclass
class DiagnosticSink:
    """Collects diagnostics during a load; callers decide when errors are fatal."""

    items: list[Diagnostic] = field(default_factory=list)
    limit: int = 200

    def add(self, code: str, message: str, span: Span | None = None, *, help: str | None = None,
            suggestion: str | None = None, severity: Severity = Severity.ERROR) -> None:
        if len(self.items) < self.limit:
            self.items.append(Diagnostic(code, message, span, severity, help, suggestion))

    def error(self, code: str, message: str, span: Span | None = None, *, help: str | None = None,
              suggestion: str | None = None) -> None:
        self.add(code, message, span, help=help, suggestion=suggestion)

    def warning(self, code: str, message: str, span: Span | None = None, *, help: str | None = None,
                suggestion: str | None = None) -> None:
        self.add(code, message, span, help=help, suggestion=suggestion, severity=Severity.WARNING)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == Severity.WARNING]
