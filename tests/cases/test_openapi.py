"""The API is described by its OpenAPI document, with examples and explicit error bodies."""

from __future__ import annotations

from mediation_cases.service import CHANNELS, build
from mediation_core.settings import from_env


def test_openapi_has_examples_and_explicit_errors():
    spec = build(from_env("cases")).app.openapi()
    schemas = spec["components"]["schemas"]
    for name in ("OpenCaseRequest", "ContactRequest", "InterviewRequest", "AutonomyRequest",
                 "DysfunctionRequest", "CloseRequest", "ReopenRequest", "ReassignRequest",
                 "CollectiveActionRequest", "ErrorBody"):
        assert schemas[name].get("examples"), name
    actions = spec["paths"]["/cases/{case_id}/actions"]["post"]
    body = actions["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"information", "orientation", "rights_procedure",
                                     "appointment", "accompaniment", "interpreting", "other"}
    assert body["schema"]["discriminator"]["propertyName"] == "kind"
    for code in ("403", "404", "409", "422", "428"):
        assert code in actions["responses"], code
    assert actions["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody")
    assert "If-Match" in [p["name"] for p in actions["parameters"]]
    close = spec["paths"]["/cases/{case_id}/close"]["post"]
    assert "409" in close["responses"] and "404" in close["responses"]
    # the AsyncAPI channels name every event this service emits
    assert {m.event_type for m in CHANNELS["emits"]["cases"]} >= {
        "CaseOpened", "FirstContactMade", "ActionRecorded", "CaseReassigned", "CaseClosed",
        "CaseReopened", "FirstContactOverdue", "CollectiveActionRecorded"}
