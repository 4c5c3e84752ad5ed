"""docs/openapi.json is the app's OpenAPI document: a test fails when they drift apart.

Regenerate it with `rulebridge openapi -o docs/openapi.json`."""

from __future__ import annotations

import json

from engine.cli.main import openapi_text
from engine.server import create_app
from tests.brightwater import ROOT, engine

DOC = ROOT / "docs" / "openapi.json"


def test_the_written_openapi_document_is_the_apps():
    doc = create_app(engine(None, mode="off")).openapi()
    assert DOC.read_text(encoding="utf-8") == openapi_text(doc), \
        "docs/openapi.json is stale: run `rulebridge openapi -o docs/openapi.json`"


def test_errors_are_problem_json_and_every_action_schema_is_a_component():
    doc = json.loads(DOC.read_text(encoding="utf-8"))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if status.startswith("4"):
                    assert list(resp["content"]) == ["application/problem+json"], (path, method, status)
    ws = engine(None, mode="off").ws
    for name in ws.actions.actions:
        assert doc["components"]["schemas"][f"ActionParams.{name}"] == ws.actions.json_schema(name)
