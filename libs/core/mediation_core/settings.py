"""Settings read from the environment, with the local stack as the default."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, replace

from mediation_schemas.topics import Topics, topics_from_env

from . import stack


def _key(name: str, dev_seed: str) -> bytes:
    """A 256-bit key from the environment (base64), or a fixed dev key derived from a seed.

    The dev keys exist so that `make run` works with nothing set up; production sets every
    ``MEDIATION_*_KEY`` from a secret store (see deploy/k8s/secrets.yaml).
    """
    val = os.environ.get(name)
    if val:
        raw = base64.b64decode(val)
        if len(raw) != 32:
            raise ValueError(f"{name} must be 32 bytes, base64-encoded")
        return raw
    return hashlib.sha256(f"mediation-dev-only:{dev_seed}".encode()).digest()


@dataclass(frozen=True)
class Settings:
    service: str
    kafka_bootstrap: str
    database_url: str
    schema: str
    topics: Topics = field(default_factory=Topics)
    http_host: str = "127.0.0.1"
    http_port: int = 0
    group_id: str = ""
    partitions: int = 3
    batch_size: int = 500
    dlq_key: bytes = b""
    master_key: bytes = b""
    master_key_id: str = "dev-1"
    blind_index_key: bytes = b""
    keyvault_schema: str = "keyvault"
    previous_master_keys: dict[str, bytes] = field(default_factory=dict)
    otlp_endpoint: str | None = None
    trace_file: str | None = None
    instance: str = "0"

    def with_(self, **kw) -> Settings:
        return replace(self, **kw)

    @property
    def master_keys(self) -> dict[str, bytes]:
        """The current master key, plus the previous ones during a rotation."""
        return {**self.previous_master_keys, self.master_key_id: self.master_key}


def previous_master_keys(spec: str) -> dict[str, bytes]:
    """``MEDIATION_MASTER_KEYS_PREVIOUS`` = ``id:base64,id:base64``: master keys that still
    unwrap data keys wrapped before a rotation, until ``mediation rewrap-keys`` moved them."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        kid, _, b64 = item.partition(":")
        raw = base64.b64decode(b64)
        if not kid or len(raw) != 32:
            raise ValueError("MEDIATION_MASTER_KEYS_PREVIOUS: expected id:base64 of 32 bytes")
        keys[kid] = raw
    return keys


DEFAULT_PORTS = {"intake": 8081, "routing": 8082, "cases": 8083, "alerts": 8084, "reporting": 8085}


def from_env(service: str, **overrides) -> Settings:
    ext = stack.external_urls()
    urls = ext or stack.local_urls()
    prefix_env = f"MEDIATION_{service.upper()}_"
    topics = topics_from_env()
    s = Settings(
        service=service,
        kafka_bootstrap=urls.kafka_bootstrap,
        database_url=urls.database_url,
        schema=os.environ.get(prefix_env + "SCHEMA", service),
        topics=topics,
        http_host=os.environ.get("MEDIATION_HTTP_HOST", "127.0.0.1"),
        http_port=int(os.environ.get(prefix_env + "PORT", DEFAULT_PORTS.get(service, 0))),
        group_id=os.environ.get(prefix_env + "GROUP", f"{topics.prefix}{service}"),
        partitions=int(os.environ.get("MEDIATION_PARTITIONS", "3")),
        batch_size=int(os.environ.get("MEDIATION_BATCH_SIZE", "500")),
        dlq_key=_key("MEDIATION_DLQ_KEY", "dlq"),
        master_key=_key("MEDIATION_MASTER_KEY", "master"),
        master_key_id=os.environ.get("MEDIATION_MASTER_KEY_ID", "dev-1"),
        blind_index_key=_key("MEDIATION_BLIND_INDEX_KEY", "blind-index"),
        keyvault_schema=os.environ.get("MEDIATION_KEYVAULT_SCHEMA", "keyvault"),
        previous_master_keys=previous_master_keys(os.environ.get("MEDIATION_MASTER_KEYS_PREVIOUS", "")),
        otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        trace_file=os.environ.get("MEDIATION_TRACE_FILE"),
        instance=os.environ.get("MEDIATION_INSTANCE", str(os.getpid())),
    )
    return s.with_(**overrides) if overrides else s
