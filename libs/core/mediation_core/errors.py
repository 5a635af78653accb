"""Which faults are transient (retry with backoff) and which are permanent (dead letter)."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka.errors import KafkaError


class TransientError(Exception):
    """Raised by a handler when it cannot proceed now but will later (retry, don't dead-letter)."""


class DomainRejection(Exception):
    """A permanent, explainable refusal. ``code`` and ``detail`` never quote personal data."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


_TRANSIENT_SQLSTATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01", "57P02", "57P03",  # admin/crash shutdown, cannot connect now
    "53300",  # too_many_connections
    "08000", "08003", "08006", "08001", "08004",  # connection exceptions
}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)):
        return True
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
        return True
    # asyncpg's own state, never the message's: when the server ends a connection in the
    # middle of an operation (a database restart), the next call on it may raise "cannot
    # switch to state N; another operation is in progress". Not retried, it killed the
    # consumer (and with it the service) in the chaos test.
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    if isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", True))
    return False
