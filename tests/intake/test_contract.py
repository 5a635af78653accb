"""The published contract: JSON Schema and examples, as outside systems read them."""

from __future__ import annotations

import json
from datetime import date

from mediation_intake.contract import EXAMPLES, export
from mediation_intake.validation import Valid, validate
from mediation_schemas.envelope import registry


def test_export_writes_schema_and_two_examples_that_validate(tmp_path):
    paths = export(tmp_path)
    assert {p.name for p in paths} == {"referral-received.schema.json", *EXAMPLES}
    schema = json.loads((tmp_path / "referral-received.schema.json").read_text())
    assert schema["x-event-type"] == "ReferralReceived" and schema["x-event-version"] == 1
    assert set(schema["required"]) >= {"source_system", "source_reference", "referrer", "person",
                                       "motives"}
    defs = schema["$defs"]
    # every field of the public contract is documented
    for model in ("PersonReceived", "ReferrerReceived", "MotiveReceived"):
        for name, prop in defs[model]["properties"].items():
            assert prop.get("description"), f"{model}.{name} has no description"
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{name} has no description"
    for name in EXAMPLES:
        payload = json.loads((tmp_path / "examples" / name).read_text())
        assert isinstance(validate(payload, today=date(2026, 11, 23)), Valid)
    assert registry()[("ReferralReceived", 1)].__name__ == "ReferralReceived"
