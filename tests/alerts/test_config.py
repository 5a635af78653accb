"""Per-structure configuration file: validated, loaded on start, used by the rules."""

from __future__ import annotations

import json

import pytest

from mediation_alerts.directory import DEFAULTS_FILE, ConfigError, load_structures_file
from tests.conftest import eventually
from tests.helpers import read_topic, values

from .conftest import api, coordinator_headers, count_is, dysfunction, report

DEMO = str(DEFAULTS_FILE.parent / "demo-structures.json")


def test_config_file_errors_name_the_entry(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"structures": {"s1": {"authorities": {
        "ars": {"channels": ["fax"]}}}}}))
    with pytest.raises(ConfigError, match=r"structures\.s1\.authorities\.ars\.channels"):
        load_structures_file(bad)
    bad.write_text(json.dumps({"structures": {"s1": {"rules": [{"rule_id": "r"}]}}}))
    with pytest.raises(ConfigError, match=r"structures\.s1\.rules\[0\]\.category: required"):
        load_structures_file(bad)
    loaded = load_structures_file(DEMO)
    auths, rules = loaded["cpts-ecm"]
    ars = next(a for a in auths if a.authority_id == "ars")
    assert ars.usable_channels() == ["kafka"] and ars.ack["urgent"] == "8h", "defaults kept"


@pytest.mark.stack
async def test_structure_rules_from_the_file_route_and_deliver_by_kafka(make_alerts):
    svc = await make_alerts(config_file=DEMO)
    async with api(svc) as c:
        r = await c.get("/alerts/structures/sept-marseille/directory",
                        headers=coordinator_headers("sept-marseille"))
    assert r.status_code == 200
    assert [x["rule_id"] for x in r.json()["rules"] if x["own"]] == ["housing-urgent-health"]
    urgent = dysfunction("insalubrious_housing", urgency="urgent", structure="sept-marseille",
                         commune="Marseille")
    normal = dysfunction("insalubrious_housing", structure="sept-marseille", commune="Marseille")
    await report(svc, [urgent, normal])
    await eventually(lambda: count_is(svc.pool, "SELECT count(*) FROM dispatches "
                                      "WHERE state='delivered'", 5), 60, what="5 deliveries")
    s = svc.settings
    out = values(await read_topic(s.kafka_bootstrap, s.topics.alerts_outbound, expect=5,
                                  timeout=60))
    by = {(o["payload"]["alert"]["dysfunction_id"], o["payload"]["alert"]["authority_id"])
          for o in out}
    assert by == {(str(urgent.dysfunction_id), "mairie_hygiene"), (str(urgent.dysfunction_id), "ars"),
                  (str(urgent.dysfunction_id), "ars_alerte"),
                  (str(normal.dysfunction_id), "mairie_hygiene"), (str(normal.dysfunction_id), "ars")}
    assert all(o["payload"]["identity_available"] is False for o in out), "no consent given"
