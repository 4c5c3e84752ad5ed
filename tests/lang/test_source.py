"""The YAML front end: libyaml decides what parses, the pure loader words the errors."""

import pytest
import yaml

from engine.errors import DiagnosticSink
from engine.lang import source
from engine.lang.source import load_yaml, plain

needs_libyaml = pytest.mark.skipif(source._FastLoader is None, reason="PyYAML without libyaml")


@needs_libyaml
def test_a_tab_inside_flow_brackets_is_whitespace(tmp_path):
    # YAML allows a tab as separation inside `[...]`; the pure-Python loader alone refuses it.
    sink = DiagnosticSink()
    data = load_yaml(tmp_path / "r.yaml", sink, text="when: [\tcase.x > 1]\n")
    assert not sink.items
    assert plain(data) == {"when": ["case.x > 1"]}


@needs_libyaml
def test_scalars_keep_their_written_form_with_libyaml_marks(tmp_path):
    sink = DiagnosticSink()
    data = load_yaml(tmp_path / "r.yaml", sink, text='a: "caf\\u00e9 \\t x"\nb: plain\n')
    assert data["a"] == "café \t x"
    assert data["a"].raw == '"caf\\u00e9 \\t x"'
    assert getattr(data["b"], "raw", None) is None
    assert (data["a"].span.line, data["a"].span.col) == (1, 4)


def test_a_syntax_error_is_worded_by_the_pure_loader(tmp_path):
    sink = DiagnosticSink()
    assert load_yaml(tmp_path / "r.yaml", sink, text="a: [1, 2\nb: 3\n") is None
    [d] = sink.items
    assert d.code == "yaml_syntax"
    with pytest.raises(yaml.MarkedYAMLError) as pure:
        yaml.compose("a: [1, 2\nb: 3\n", Loader=source._Loader)
    assert pure.value.problem.strip() in d.message
    assert (d.span.line, d.span.col) == (pure.value.problem_mark.line + 1, pure.value.problem_mark.column + 1)


def test_aliases_are_bounded_by_the_text_they_expand_to(tmp_path):
    """Regression: 3,000 aliases of a 1 MB string took 5.9 GB; the count bound did not see it.

    Here 3,000 aliases of a 16 KB string (48 MB expanded) stop at the alias that passes the
    bound, reported there, with little memory spent."""
    import tracemalloc

    big = "x" * 16_000
    text = f"big: &big {big}\nall:\n" + "".join("  - *big\n" for _ in range(3000))
    sink = DiagnosticSink()
    tracemalloc.start()
    try:
        assert load_yaml(tmp_path / "r.yaml", sink, text=text) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [d] = sink.items
    assert d.code == "yaml_syntax"
    limit = source.MAX_ALIAS_CHARS
    assert d.message == f"invalid YAML: aliases expand to more than {limit} characters"
    assert d.help == ("an alias (`*name`) repeats its anchor's whole value; use fewer of them, "
                      "or shorter ones")
    n = source.MAX_ALIAS_CHARS // len(big) + 1  # the alias that passes the bound
    assert (d.span.line, d.span.col, d.span.end_col) == (2 + n, 5, 9)
    assert peak < 4 * source.MAX_ALIAS_CHARS


def test_aliases_inside_an_anchor_count_each_time_it_is_used(tmp_path):
    # `*row` repeats two aliases of `&cell` each time: the bound sees the text, not the aliases.
    cell = "y" * 100_000
    text = (f"cell: &cell '{cell}'\nrow: &row [*cell, *cell]\n"
            + "".join(f"r{i}: *row\n" for i in range(40)))
    sink = DiagnosticSink()
    assert load_yaml(tmp_path / "r.yaml", sink, text=text) is None
    [d] = sink.items
    assert d.code == "yaml_syntax" and "aliases expand to more than" in d.message
    # 2 (in `row`) + 2 per use of `row`: the 20th use (`r19: *row`) passes 4,000,000 characters
    assert source.MAX_ALIAS_CHARS == 4_000_000
    assert (d.span.line, d.span.col, d.span.end_col) == (22, 6, 10)


def test_ordinary_aliases_load(tmp_path):
    sink = DiagnosticSink()
    data = load_yaml(tmp_path / "r.yaml", sink,
                     text="common: &c [a > 1, b < 2]\nx: {when: *c}\ny: {when: *c, k: *c}\n")
    assert not sink.items
    assert plain(data)["y"] == {"when": ["a > 1", "b < 2"], "k": ["a > 1", "b < 2"]}
