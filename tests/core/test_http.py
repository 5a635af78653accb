"""Every service's HTTP app: validation errors name fields, never echo what was sent."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import BaseModel, Field

from mediation_core.service import Service
from mediation_core.settings import from_env

CANARY = "CANARY-0611223344"


class Body(BaseModel):
    phone: str = Field(pattern=r"^\+33\d{9}$")
    age: int
    kind: Literal["a", "b"]


async def test_validation_errors_name_fields_and_rules_without_echoing_values():
    svc = Service(from_env("toy"))

    @svc.app.post("/things")
    async def create(body: Body) -> dict:
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app),
                                 base_url="http://t") as http:
        r = await http.post("/things", json={"phone": CANARY, "age": CANARY, "kind": CANARY})
    assert r.status_code == 422
    body = r.json()
    assert CANARY not in r.text
    assert {p["field"] for p in body["problems"]} == {"phone", "age", "kind"}
    assert {p["code"] for p in body["problems"]} == {"string_pattern_mismatch", "int_parsing",
                                                      "literal_error"}
