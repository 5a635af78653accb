"""Export the event contracts for outside systems: JSON Schema per event, AsyncAPI per service.

``make schemas`` writes them under ``contracts/`` (committed); a test checks that the
committed files match the models, so the models stay the one source of truth.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Union

from pydantic import create_model

from mediation_schemas.envelope import Envelope, Payload, registry
from mediation_schemas.topics import Topics

SERVICES = ["intake", "routing", "cases", "alerts", "reporting"]


def event_model(payload: type[Payload]) -> type[Envelope]:
    """The envelope with its payload typed: what one event of this type looks like."""
    return create_model(  # type: ignore[call-overload]
        f"{payload.event_type}V{payload.version}Event", __base__=Envelope,
        __doc__=(payload.__doc__ or payload.event_type).strip(),
        payload=(payload, ...),
    )


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    return path


def channels(service: str) -> dict[str, dict[str, list[type[Payload]]]]:
    try:
        mod = importlib.import_module(f"mediation_{service}.service")
    except ImportError:
        return {}
    return getattr(mod, "CHANNELS", {})


def asyncapi(service: str, topics: Topics | None = None) -> dict[str, Any]:
    from faststream.kafka import KafkaBroker
    from faststream.specification import AsyncAPI

    topics = topics or Topics()
    broker = KafkaBroker("kafka:9092", description="Apache Kafka (KRaft)")
    ch = channels(service)
    for attr, models in ch.get("consumes", {}).items():
        topic = getattr(topics, attr)
        schema = Union[tuple(event_model(m) for m in models)] if len(models) > 1 else event_model(models[0])  # noqa: UP007

        async def handler(msg: schema) -> None:  # type: ignore[valid-type]  # pragma: no cover
            ...

        broker.subscriber(topic, group_id=f"mediation.{service}", title=f"{attr}:consume",
                          description=getattr(Topics, attr).__doc__)(handler)
    for attr, models in ch.get("emits", {}).items():
        topic = getattr(topics, attr)
        schema = Union[tuple(event_model(m) for m in models)] if len(models) > 1 else event_model(models[0])  # noqa: UP007
        broker.publisher(topic, title=f"{attr}:publish", schema=schema,
                         description=getattr(Topics, attr).__doc__)
    spec = AsyncAPI(broker, title=f"mediation {service}", version="1.0.0",
                    description=f"Kafka channels of the {service} service. Every message is "
                    "an Envelope; trace context travels in the `traceparent` header.",
                    schema_version="3.0.0").to_specification()
    return json.loads(spec.to_json())


def export_all(out: str | Path) -> list[Path]:
    out = Path(out)
    written = [_write(out / "envelope.schema.json", Envelope.model_json_schema())]
    for (etype, version), model in sorted(registry().items()):
        if etype.startswith("Test"):
            continue
        written.append(_write(out / "events" / f"{etype}.v{version}.schema.json",
                              event_model(model).model_json_schema()))
    for svc in SERVICES:
        if channels(svc):
            written.append(_write(out / "asyncapi" / f"{svc}.json", asyncapi(svc)))
    try:
        contract = importlib.import_module("mediation_intake.contract")
        written.extend(Path(p) for p in (contract.export(out) or []))
    except ImportError:
        pass
    return written
