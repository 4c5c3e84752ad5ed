"""The action models (`engine/lang/action_models.py`, through `ActionCatalog`): one strict pydantic
model per action of rules/actions.yaml, checked against the Brightwater graph."""

from __future__ import annotations

import math

import pytest

from engine.canonical import proposal_hash
from engine.lang.action_models import ParamContext, ValidationError, format_errors
from engine.lang.actions import ActionCatalog
from tests.brightwater import BWD, workspace


@pytest.fixture(scope="module")
def gate():
    return workspace().gate


@pytest.fixture(scope="module")
def catalog(gate) -> ActionCatalog:
    return gate.catalog


def ok(catalog, gate, action, params):
    return catalog.validate(action, params, gate.param_ctx)


def errors(catalog, gate, action, params) -> list[str]:
    with pytest.raises(ValidationError) as info:
        catalog.validate(action, params, gate.param_ctx)
    return format_errors(info.value)


DISCOUNT = {"order": "bwd:SO-3002", "percent": 7}


# -- the catalog ----------------------------------------------------------------------------------

def test_one_model_per_declared_action(catalog):
    assert set(catalog.models) == {"approve_invoice", "hold_invoice", "release_payment", "hold_payment",
                                   "approve_discount", "assign_lead",
                                   # the inverses that compensate them
                                   "reopen_invoice", "release_invoice_hold", "release_payment_hold",
                                   "revoke_discount", "unassign_lead"}
    assert set(catalog.models) == set(catalog.actions)


def test_unknown_action_is_a_key_error(catalog, gate):
    with pytest.raises(KeyError):
        catalog.validate("approve_everything", {}, gate.param_ctx)


# -- numbers ----------------------------------------------------------------------------------------

def test_valid_discount_is_normalised(catalog, gate):
    assert ok(catalog, gate, "approve_discount", DISCOUNT) == {"order": BWD + "SO-3002", "percent": 7.0}


@pytest.mark.parametrize("value", ["2.5", "7", True, False, None, [7], {"v": 7}],
                         ids=["numeric-text", "integer-text", "true", "false", "null", "list", "object"])
def test_number_is_strict(catalog, gate, value):
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "percent": value})
    assert errs and all(e.startswith("percent:") for e in errs), errs


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused(catalog, gate, value):
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "percent": value})
    assert errs == ["percent: Input should be a finite number"]


@pytest.mark.parametrize("value, ok_", [(0, True), (100, True), (-0.01, False), (100.01, False), (-1, False),
                                        (1e308, False)])
def test_minimum_and_maximum_are_inclusive_bounds(catalog, gate, value, ok_):
    if ok_:
        assert ok(catalog, gate, "approve_discount", {**DISCOUNT, "percent": value})["percent"] == value
    else:
        assert errors(catalog, gate, "approve_discount", {**DISCOUNT, "percent": value})[0].startswith("percent:")


def test_minimum_without_maximum(catalog, gate):
    base = {"invoice": "bwd:INV-10001", "method": "ach"}
    assert errors(catalog, gate, "release_payment", {**base, "amount": -5}) == [
        "amount: Input should be greater than or equal to 0"]
    # no maximum is declared: the catalog leaves the size of a payment to preconditions, guards and limits
    assert ok(catalog, gate, "release_payment", {**base, "amount": 10**9})["amount"] == 1e9



@pytest.mark.parametrize("action, params, field", [
    ("approve_discount", {**DISCOUNT, "percent": -0.0}, "percent"),
    ("release_payment", {"invoice": "bwd:INV-10001", "amount": -0.0, "method": "ach"}, "amount"),
], ids=["with-minimum-and-maximum", "with-minimum-only"])
def test_negative_zero_is_refused(catalog, gate, action, params, field):
    # Regression: `minimum: 0` let -0.0 through (it equals 0), a sign that can flip later arithmetic
    # (1 / -0.0 is -inf) and hide sign games; every number field of the catalog refuses it.
    errs = errors(catalog, gate, action, params)
    assert errs == [f"{field}: Value error, negative zero is not a number this field accepts"], errs
    assert ok(catalog, gate, action, {**params, field: 0.0})[field] == 0.0

# -- enums, text, required and extra fields -------------------------------------------------------

@pytest.mark.parametrize("method", ["ach", "wire", "card", "check"])
def test_enum_accepts_its_values(catalog, gate, method):
    params = {"invoice": "bwd:INV-10001", "amount": 10, "method": method}
    assert ok(catalog, gate, "release_payment", params)["method"] == method


@pytest.mark.parametrize("method", ["ACH", "bitcoin", "", " ach", 1, None])
def test_enum_refuses_anything_else(catalog, gate, method):
    errs = errors(catalog, gate, "release_payment", {"invoice": "bwd:INV-10001", "amount": 10, "method": method})
    assert [e for e in errs if e.startswith("method:")], errs


def test_extra_fields_are_forbidden(catalog, gate):
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "approved": True})
    assert errs == ["approved: Extra inputs are not permitted"]


def test_missing_required_field(catalog, gate):
    assert errors(catalog, gate, "approve_discount", {"order": "bwd:SO-3002"}) == ["percent: Field required"]


def test_optional_field_may_be_absent_or_null_but_not_of_another_type(catalog, gate):
    assert "note" not in ok(catalog, gate, "approve_discount", DISCOUNT)
    assert "note" not in ok(catalog, gate, "approve_discount", {**DISCOUNT, "note": None})
    assert ok(catalog, gate, "approve_discount", {**DISCOUNT, "note": "ok"})["note"] == "ok"
    assert errors(catalog, gate, "approve_discount", {**DISCOUNT, "note": 5})[0].startswith("note:")


def test_text_is_capped(catalog, gate):
    params = {"lead": "bwd:LEAD-4001", "owner": "bwd:EMP-037", "reason": "x" * 4001}
    assert errors(catalog, gate, "assign_lead", params) == ["reason: String should have at most 4000 characters"]



@pytest.mark.parametrize("action, params, field", [
    ("assign_lead", {"lead": "bwd:LEAD-4001", "owner": "bwd:EMP-037", "reason": "ok\x00; DROP"},
     "reason"),
    ("approve_discount", {**DISCOUNT, "note": "\x00"}, "note"),
    ("approve_discount", {**DISCOUNT, "order": "bwd:SO-3002\x00"}, "order"),
    ("release_payment", {"invoice": "bwd:INV-10001", "amount": 1, "method": "ach\x00"}, "method"),
], ids=["text", "optional-text", "iri", "enum"])
def test_nul_characters_are_refused_in_text(catalog, gate, action, params, field):
    # Regression: a NUL in a text parameter passed the schema; C libraries, drivers and log viewers
    # cut a string at NUL, so what a person reviews would not be what a connector receives.
    errs = errors(catalog, gate, action, params)
    assert [e for e in errs if e.startswith(f"{field}:")], errs

def test_params_must_be_an_object(catalog, gate):
    for value in (None, [], "order=SO-3002", 7):
        with pytest.raises(ValidationError):
            catalog.validate("approve_discount", value, gate.param_ctx)


def test_every_error_of_a_proposal_is_reported(catalog, gate):
    errs = errors(catalog, gate, "release_payment", {"invoice": "bwd:SO-3002", "amount": "1", "method": "cash",
                                                     "extra": 1})
    assert {e.split(":")[0] for e in errs} == {"invoice", "amount", "method", "extra"}


# -- IRIs -------------------------------------------------------------------------------------------

def test_curie_and_full_iri_are_the_same_value(catalog, gate):
    full = ok(catalog, gate, "approve_discount", {**DISCOUNT, "order": BWD + "SO-3002"})
    short = ok(catalog, gate, "approve_discount", DISCOUNT)
    assert full == short
    assert short["order"] == BWD + "SO-3002"


def test_iri_of_the_wrong_class_is_refused(catalog, gate):
    # C-2038 is the customer of SO-3002: a real node, but not a SalesOrder
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "order": "bwd:C-2038"})
    assert len(errs) == 1 and errs[0].startswith("order:") and "SalesOrder" in errs[0], errs


def test_iri_of_another_action_class_is_refused(catalog, gate):
    errs = errors(catalog, gate, "assign_lead", {"lead": "bwd:SO-3002", "owner": "bwd:LEAD-4001", "reason": "x"})
    assert {e.split(":")[0] for e in errs} == {"lead", "owner"}


def test_unknown_iri_is_refused(catalog, gate):
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "order": "bwd:SO-999999"})
    assert len(errs) == 1 and "SalesOrder" in errs[0]
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "order": "https://evil.example/SO-3002"})
    assert len(errs) == 1 and errs[0].startswith("order:")


@pytest.mark.parametrize("value", ["not an iri", "SO-3002", "unknownprefix:SO-3002", "", "bwd:SO 3002",
                                   "https://brightwater.example/id/SO-3002>", "<https://brightwater.example/id/SO-3002>",
                                   'bwd:SO-3002" . <x> <y> <z'],
                         ids=["words", "bare-id", "unknown-prefix", "empty", "space", "trailing-bracket",
                              "angle-brackets", "injection"])
def test_text_that_is_not_an_iri_is_refused(catalog, gate, value):
    errs = errors(catalog, gate, "approve_discount", {**DISCOUNT, "order": value})
    assert len(errs) == 1 and errs[0].startswith("order:"), errs


@pytest.mark.parametrize("value", [3002, None, ["bwd:SO-3002"], {"iri": "bwd:SO-3002"}])
def test_iri_must_be_text(catalog, gate, value):
    assert errors(catalog, gate, "approve_discount", {**DISCOUNT, "order": value})[0].startswith("order:")


def test_iri_check_fails_closed_without_graph_context(catalog):
    with pytest.raises(ValidationError) as info:
        catalog.validate("approve_discount", DISCOUNT, None)  # type: ignore[arg-type]
    assert "no graph context" in str(info.value)


def test_iri_check_uses_the_graph_it_is_given(catalog, gate):
    nothing_exists = ParamContext(gate.param_ctx.prefixes, lambda iri, cls: False)
    with pytest.raises(ValidationError):
        catalog.validate("approve_discount", DISCOUNT, nothing_exists)
    seen = []
    anything = ParamContext(gate.param_ctx.prefixes, lambda iri, cls: seen.append((iri, cls)) or True)
    catalog.validate("approve_discount", DISCOUNT, anything)
    assert seen == [(BWD + "SO-3002", "SalesOrder")]


# -- JSON schema ------------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["approve_invoice", "hold_invoice", "release_payment", "hold_payment",
                                    "approve_discount", "assign_lead"])
def test_json_schema_per_action(catalog, action):
    schema = catalog.json_schema(action)
    spec = catalog.actions[action]
    assert schema["type"] == "object"
    assert schema["title"] == action
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(spec.params)
    assert set(schema.get("required", [])) == {p.name for p in spec.params.values() if p.required}
    assert schema["description"] == spec.description


def test_json_schema_carries_types_bounds_and_enums(catalog):
    pay = catalog.json_schema("release_payment")["properties"]
    assert pay["amount"]["type"] == "number" and pay["amount"]["minimum"] == 0
    assert pay["method"]["enum"] == ["ach", "wire", "card", "check"]
    disc = catalog.json_schema("approve_discount")["properties"]
    assert disc["percent"]["minimum"] == 0 and disc["percent"]["maximum"] == 100
    assert disc["order"]["type"] == "string"


def test_json_schema_tells_the_class_of_each_iri_parameter(catalog):
    """Regression: the parameter's own `description` (or its absence) erased the IRI class from
    the schema, so the model was never told that `order` is the IRI of a SalesOrder."""
    disc = catalog.json_schema("approve_discount")["properties"]["order"]
    assert "SalesOrder" in str(disc)
    approver = catalog.json_schema("approve_invoice")["properties"]["approver"]
    assert "Employee" in str(approver)
    assert "approval limit" in approver["description"]  # the analyst's own description is kept too


# -- proposal hash ----------------------------------------------------------------------------------

def test_proposal_hash_is_stable_and_order_independent():
    a = proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.0})
    b = proposal_hash("approve_discount", {"percent": 7.0, "order": BWD + "SO-3002"})
    assert a == b
    assert len(a) == 64 and int(a, 16) >= 0
    # a fixed value: the hash binds approvals and idempotency keys across processes and versions
    assert a == proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.0})


def test_proposal_hash_binds_action_and_every_parameter():
    base = proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.0})
    assert proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.01}) != base
    assert proposal_hash("approve_discount", {"order": BWD + "SO-3003", "percent": 7.0}) != base
    assert proposal_hash("approve_discount", {"order": BWD + "SO-3002", "percent": 7.0, "note": "x"}) != base
    assert proposal_hash("hold_invoice", {"order": BWD + "SO-3002", "percent": 7.0}) != base


def test_hash_of_validated_params_does_not_depend_on_spelling(catalog, gate):
    spellings = [{"order": "bwd:SO-3002", "percent": 7}, {"percent": 7.0, "order": BWD + "SO-3002"},
                 {"order": " bwd:SO-3002", "percent": 7, "note": None}]
    hashes = {proposal_hash("approve_discount", ok(catalog, gate, "approve_discount", p)) for p in spellings}
    assert len(hashes) == 1


def test_proposal_hash_known_value():
    # pinned so that a change of the canonical form (which would orphan stored approvals) is noticed
    import hashlib
    import json

    body = json.dumps({"action": "a", "params": {"x": 1}}, sort_keys=True, separators=(",", ":"))
    assert proposal_hash("a", {"x": 1}) == hashlib.sha256(body.encode()).hexdigest()


@pytest.mark.parametrize("pname", ["_secret", "model_config", "model_x", "2nd", "per-cent"])
def test_a_parameter_name_the_model_cannot_take_is_a_load_error(tmp_path, pname):
    """`model_config` would silently configure the validation model instead of being a field,
    `_secret` is refused by pydantic: both are load errors at the parameter, never a surprise at
    the first proposal."""
    import shutil

    from engine.workspace import load_workspace
    from tests.brightwater import ROOT

    for name in ("rules", "knowledge_graph"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    shutil.copy(ROOT / "rulebridge.toml", tmp_path / "rulebridge.toml")
    p = tmp_path / "rules/actions.yaml"
    anchor = "      note: {type: string, required: false}\n"
    text = p.read_text(encoding="utf-8")
    assert anchor in text
    p.write_text(text.replace(anchor, anchor + f"      '{pname}': {{type: string, required: false}}\n", 1),
                 encoding="utf-8")
    errs = [(d.code, d.message) for d in load_workspace(tmp_path).errors]
    want = f"parameter `{pname}` of action `approve_invoice` is not a usable name"  # the anchor's first action
    assert ("schema", want) in errs, errs


def test_a_model_that_cannot_be_built_is_a_load_error(monkeypatch):
    """Whatever pydantic refuses when a model is built is reported at load, with the action."""
    from engine.errors import DiagnosticSink
    from engine.lang.actions import ActionSpec
    from engine.workspace import _build_models

    catalog = ActionCatalog(actions={"a": ActionSpec("a", "", {}), "b": ActionSpec("b", "", {})})

    def refuse(name):
        if name == "b":
            raise TypeError("a field pydantic cannot take\nmore detail")
        return object

    monkeypatch.setattr(catalog, "model", refuse)
    sink = DiagnosticSink()
    assert _build_models(catalog, sink) is False
    assert [(d.code, d.message) for d in sink.items] == [
        ("schema", "the parameters of action `b` cannot be checked: a field pydantic cannot take")]
