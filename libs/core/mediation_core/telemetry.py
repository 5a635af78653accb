"""Tracing, metrics and structured logs, with personal data kept out of all three.

- Traces: OpenTelemetry SDK; W3C ``traceparent`` in Kafka headers; OTLP/HTTP export when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else a JSON-lines file sink when
  ``MEDIATION_TRACE_FILE`` is set, else nothing leaves the process.
- Redaction: every exported span and every log record goes through :func:`redact`, which
  blanks attributes whose *key* names a personal field. Code never puts values of personal
  fields in attributes or messages in the first place; this is the second fence.
- Metrics: Prometheus counters/histograms/gauges served on each service's ``/metrics``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import Counter, Gauge, Histogram

# --------------------------------------------------------------------------- redaction

SENSITIVE_KEY = re.compile(
    r"(name|birth|phone|tel|mobile|email|mail|address|adresse|street|comment|description|"
    r"free_?text|note|identity|nir|ssn|secu|password|secret|token)",
    re.IGNORECASE,
)
# keys that contain a sensitive word but are technical ids or codes
_ALLOWED_KEYS = {
    "service.name", "span.name", "messaging.destination.name", "messaging.system",
    "db.name", "db.namespace", "event.name", "logger", "telemetry.sdk.name", "host.name",
    "messaging.consumer.group.name", "code.function.name", "exception.type",
}
REDACTED = "[redacted]"


@functools.lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    """Whether a field or attribute name denotes personal data (names recur: cached)."""
    return key not in _ALLOWED_KEYS and SENSITIVE_KEY.search(key) is not None


def redact(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (attrs or {}).items():
        if _sensitive(k):
            out[k] = REDACTED
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


class RedactingExporter(SpanExporter):
    """Wraps an exporter: spans leave with sensitive attributes blanked, and exception
    events carry the exception type only (messages may quote data)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_clean_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _clean_span(s: ReadableSpan) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event

    events = []
    for e in s.events:
        attrs = redact(e.attributes)
        if e.name == "exception":
            attrs = {"exception.type": (e.attributes or {}).get("exception.type", "")}
        events.append(Event(e.name, attrs, e.timestamp))
    status = s.status
    if status.description:
        from opentelemetry.trace import Status

        status = Status(status.status_code, "error")
    return ReadableSpan(
        name=s.name, context=s.context, parent=s.parent, resource=s.resource,
        attributes=redact(s.attributes), events=events, links=s.links, kind=s.kind,
        status=status, start_time=s.start_time, end_time=s.end_time,
        instrumentation_scope=s.instrumentation_scope,
    )


class JsonLinesExporter(SpanExporter):
    """The local sink: one JSON object per span, appended to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [s.to_json(indent=None) for s in spans]
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(line.replace("\n", "") + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


_provider: TracerProvider | None = None


def setup_tracing(service: str, *, otlp_endpoint: str | None = None,
                  trace_file: str | None = None,
                  extra_exporters: Sequence[SpanExporter] = ()) -> TracerProvider:
    """Install the global tracer provider once per process; later calls add exporters."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service}))
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(RedactingExporter(
                OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))))
        zipkin = os.environ.get("MEDIATION_ZIPKIN_ENDPOINT")
        if zipkin:  # the local trace UI of `make run`
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            _provider.add_span_processor(BatchSpanProcessor(RedactingExporter(
                ZipkinExporter(endpoint=zipkin))))
        if trace_file:
            _provider.add_span_processor(
                BatchSpanProcessor(RedactingExporter(JsonLinesExporter(trace_file))))
    for exp in extra_exporters:
        _provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exp)))
    return _provider


def tracer(name: str = "mediation") -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers(ctx: otel_context.Context | None = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return carrier


def extract_context(headers: Mapping[str, str] | Sequence[tuple[str, bytes]] | None):
    carrier: dict[str, str] = {}
    if headers is None:
        pass
    elif isinstance(headers, Mapping):
        carrier = dict(headers)
    else:
        for k, v in headers:
            try:
                carrier[k] = v.decode() if isinstance(v, bytes | bytearray) else str(v)
            except UnicodeDecodeError:
                continue
    return propagate.extract(carrier)


# --------------------------------------------------------------------------- logs

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace ids, redacted fields.

    Messages are constant strings; variable data goes in ``extra={"fields": {...}}``,
    which is redacted by key. Exceptions are logged by type only unless marked safe.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage() if not record.args else record.msg,
        }
        if span.is_valid:
            out["trace_id"] = f"{span.trace_id:032x}"
            out["span_id"] = f"{span.span_id:016x}"
        fields = getattr(record, "fields", None)
        if fields:
            out.update(redact(fields))
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup_logging(service: str, level: str = "INFO", stream=None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_mediation", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._mediation = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- metrics

MESSAGES = Counter("mediation_messages_total", "Messages consumed, by outcome",
                   ["service", "consumer", "outcome"])
DEAD_LETTERS = Counter("mediation_dead_letters_total", "Messages sent to a dead-letter topic",
                       ["service", "consumer", "reason"])
RETRIES = Counter("mediation_transient_retries_total", "Batches retried after a transient fault",
                  ["service", "component"])
HANDLER_SECONDS = Histogram("mediation_handler_seconds", "Processing time per event handler",
                            ["service", "consumer", "event_type"],
                            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5))
BATCH_SECONDS = Histogram("mediation_batch_seconds", "Processing time per consumed batch",
                          ["service", "consumer"])
CONSUMER_LAG = Gauge("mediation_consumer_lag", "Messages behind the partition end",
                     ["service", "consumer", "topic", "partition"])
OUTBOX_BACKLOG = Gauge("mediation_outbox_backlog", "Outbox rows not yet published", ["service"])
PUBLISHED = Counter("mediation_published_total", "Events published by the outbox relay",
                    ["service", "topic"])
