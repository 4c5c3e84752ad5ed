"""Decision tables in CSV: one row per rule, compiled to the same rules as YAML.

Format (documented in `rules/README.md`):

    # hit_policy: first
    # description: discount limits by customer tier
    id,priority,customer.tier,case.discount_percent,then,param:percent,message,description
    crm.discount.platinum,10,"platinum","<= 20",apply_discount,case.discount_percent,,Platinum up to 20%

Columns: `id` (required), optional `priority` and `description`; every column whose header is
an expression is an input; `then` is an action name or `escalate` / `deny` / `no_action`;
`param:NAME` columns are the action's parameters (expressions, or quoted text); `message` is
the escalate / deny text. An input cell is a test on its column: `-` or empty (any value),
a literal (`"gold"`, `42`, `true`), a comparison (`<= 1000`, `!= "blocked"`), a list
(`"gold", "platinum"`), or an interval (`[1000..5000)`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import DiagnosticSink, Span

from .source import LDict, LStr

RESERVED = ("id", "priority", "description", "then", "message")
_INTERVAL = re.compile(r"^([\[\(\]])\s*([^.]+?)\s*\.\.\s*([^\]\)\[]+?)\s*([\]\)\[])$")
_COMPARISON = re.compile(r"^(<=|>=|!=|==|<|>)\s*(.+)$")
_PATH = re.compile(r"[A-Za-z_][\w.]*")  # a column that is a path needs no parentheses around it


@dataclass
class CellTest:
    """An input cell as a condition on its column: the synthesised text and where it came from."""

    text: str
    column: str
    span: Span  # the cell
    offsets: list[int]  # per character of `text`: its offset in the cell (the column's text: the cell start)

    def position(self, i: int) -> tuple[int, int]:
        """The (line, column) in the CSV file of character `i` of `text`; always inside the cell."""
        k = self.offsets[min(i, len(self.offsets) - 1)] if self.offsets else 0
        return self.span.line, self.span.col + k


@dataclass
class TableRow:
    id: str
    priority: int
    description: str
    conditions: list[CellTest]
    then: LDict
    span: Span


@dataclass
class Table:
    hit_policy: str
    rows: list[TableRow] = field(default_factory=list)
    raw: str = ""
    columns: dict[str, Span] = field(default_factory=dict)  # input column header -> its cell


def _cell_spans(line: str, values: list[str], file: str, lineno: int) -> list[Span]:
    """Where each cell of a CSV line starts (csv does not report offsets)."""
    spans, pos = [], 0
    for v in values:
        while pos < len(line) and line[pos] == " ":
            pos += 1
        start = pos
        if pos < len(line) and line[pos] == '"':
            pos += 1
            while pos < len(line):
                if line[pos] == '"' and pos + 1 < len(line) and line[pos + 1] == '"':
                    pos += 2
                    continue
                if line[pos] == '"':
                    pos += 1
                    break
                pos += 1
        else:
            while pos < len(line) and line[pos] != ",":
                pos += 1
        quoted = line[start:start + 1] == '"'
        spans.append(Span(file, lineno, start + 1 + (1 if quoted else 0), lineno,
                          start + 1 + (1 if quoted else 0) + max(len(v), 1)))
        pos += 1  # the comma
    return spans


def _literal(text: str) -> str:
    """A cell value as an expression literal: bare words are strings, numbers and quoted text stay."""
    t = text.strip()
    if t in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", t) or t[:1] in ('"', "'"):
        return t
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        return f'"{t}"'
    if re.fullmatch(r"[A-Za-z_][\w.]*", t) and "." in t:
        return t  # a path: compare with another value of the case
    return '"' + t.replace('"', '\\"') + '"'


def cell_to_test(column: str, cell: str) -> str | None:
    """Turn an input cell into a condition on its column expression; None for "any value"."""
    c = cell.strip()
    if c in ("", "-", "*"):
        return None
    m = _INTERVAL.match(c)
    if m:
        lo_br, lo, hi, hi_br = m.groups()
        lo_op = ">=" if lo_br == "[" else ">"
        hi_op = "<=" if hi_br == "]" else "<"
        return f"{column} {lo_op} {_literal(lo)} and {column} {hi_op} {_literal(hi)}"
    m = _COMPARISON.match(c)
    if m:
        if m.group(2)[:1] in "<>=!":  # `<< 0`, `>=> 5`: a typo, not a comparison with the text "< 0"
            return f"{column} {m.group(1)} {m.group(2)}"  # left as written: the parser reports it
        return f"{column} {m.group(1)} {_literal(m.group(2))}"
    if c.startswith("not "):
        inner = cell_to_test(column, c[4:])
        return f"not ({inner})" if inner else None
    items = next(csv.reader([c], skipinitialspace=True))
    if len(items) > 1:
        return f"{column} in [" + ", ".join(_literal(i) for i in items) + "]"
    return f"{column} == {_literal(c)}"


def cell_test(column: str, cell: str, span: Span) -> CellTest | None:
    """The condition an input cell stands for, mapped back onto the cell; None for "any value"."""
    mark = "\x00"  # stands for the column while the test is built, so its characters can be told apart
    test = cell_to_test(mark, cell)
    if test is None:
        return None
    col = column if _PATH.fullmatch(column.strip()) else f"({column})"
    text, offsets, j = [], [], 0
    for ch in test:
        if ch == mark:
            text.append(col)
            offsets.extend([0] * len(col))
            continue
        k = j
        if ch != " ":  # spaces are mostly synthesised; other characters are looked for a little ahead
            while k < len(cell) and k < j + 4 and cell[k] != ch:
                k += 1
        if k < len(cell) and cell[k] == ch:
            offsets.append(k)
            j = k + 1
        else:
            offsets.append(min(j, max(len(cell.rstrip()) - 1, 0)))
        text.append(ch)
    return CellTest("".join(text), column, span, offsets)


def load_table(path: Path, sink: DiagnosticSink, where: Span | None) -> Table | None:
    """Read a decision table; errors carry the file, line and column of the cell."""
    file = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        sink.error("table_syntax", f"cannot read decision table `{path.name}`: {exc}", where)
        return None
    lines = raw.splitlines()
    meta: dict[str, str] = {}
    header: list[str] | None = None
    header_spans: list[Span] = []
    table = Table(hit_policy="first", raw=raw)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            key, sep, value = line.lstrip()[1:].partition(":")
            if sep and header is None:
                meta[key.strip()] = value.strip()
            continue
        values = next(csv.reader(io.StringIO(line), skipinitialspace=True))
        spans = _cell_spans(line, values, file, lineno)
        if header is None:
            header, header_spans = [v.strip() for v in values], spans
            if "id" not in header:
                sink.error("table_syntax", "a decision table needs an `id` column", Span(file, lineno, 1),
                           help="the first row names the columns: id, the inputs, then, param:NAME, ...")
                return None
            if "then" not in header:
                sink.error("table_syntax", "a decision table needs a `then` column", Span(file, lineno, 1),
                           help="`then` holds an action name, or escalate / deny / no_action")
                return None
            table.columns = {c: sp for c, sp in zip(header, header_spans, strict=True)
                             if c not in RESERVED and not c.startswith("param:")}
            continue
        if len(values) != len(header):
            sink.error("table_syntax", f"row has {len(values)} cells, the header has {len(header)}",
                       Span(file, lineno, 1), help="quote cells that contain commas")
            continue
        row = dict(zip(header, values, strict=True))
        cell_span = dict(zip(header, spans, strict=True))
        rid = row["id"].strip()
        if not rid:
            sink.error("table_syntax", "row without an id", Span(file, lineno, 1))
            continue
        try:
            priority = int(row.get("priority", "0").strip() or 0)
        except ValueError:
            sink.error("table_syntax", f"priority `{row['priority']}` is not a whole number", cell_span["priority"])
            continue
        conditions = []
        for col in header:
            if col in RESERVED or col.startswith("param:"):
                continue
            test = cell_test(col, row[col], cell_span[col])
            if test is not None:
                conditions.append(test)
        then = LDict()
        then.span = cell_span["then"]
        then.key_spans = {}
        kind = row["then"].strip()
        if kind in ("escalate", "deny", "no_action"):
            then[kind] = LStr(row.get("message", "").strip() or rid)
            then.key_spans[kind] = cell_span["then"]
        else:
            then["action"] = _lstr(kind, cell_span["then"])
            params = LDict()
            params.span = cell_span["then"]
            params.key_spans = {}
            for col in header:
                if col.startswith("param:") and row[col].strip():
                    pname = col[len("param:"):]
                    cell = row[col].strip()
                    value = _lstr(cell, cell_span[col])
                    if cell.startswith("'") and cell.endswith("'") and len(cell) > 1:
                        value = _lstr(cell[1:-1], cell_span[col])
                        value.style = "'"
                    params[pname] = value
                    params.key_spans[pname] = cell_span[col]
            then["params"] = params
        table.rows.append(TableRow(rid, priority, row.get("description", "").strip(), conditions, then,
                                   cell_span["id"]))
    if header is None:
        sink.error("table_syntax", "the decision table is empty", Span(file, 1, 1))
        return None
    table.hit_policy = meta.get("hit_policy", "first")
    return table


def _lstr(text: str, span: Span) -> LStr:
    s = LStr(text)
    s.span = span
    return s
