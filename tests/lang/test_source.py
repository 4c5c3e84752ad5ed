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
