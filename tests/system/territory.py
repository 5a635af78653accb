"""A territory version with no capacity limit, so that a load test routes every referral of
the CPTS to its area's mediator (the packaged version caps each file active at 40)."""

from __future__ import annotations

import json

from mediation_routing import territory
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.territory import TerritoryChanged


def unlimited_cpts_version() -> tuple[bytes, bytes]:
    cfg = json.loads(territory._read("structures.json"))
    refs = {r.insee: r for r in territory.reference_communes()}
    doc = territory._packaged_document(
        next(s for s in cfg["structures"] if s["structure"] == "cpts-ecm"), refs)
    for m in doc["mediators"]:
        m["capacity"] = None
    payload = TerritoryChanged(structure="cpts-ecm", territory_version=2,
                               effective_from=cfg["effective_from"], territory=doc,
                               reason="load test: no capacity limit")
    env = new_envelope(payload, producer="tests", correlation_id="territory-v2",
                       structure="cpts-ecm")
    return b"cpts-ecm", encode(env)
