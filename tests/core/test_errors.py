"""Which faults are retried and which are dead-lettered."""

from __future__ import annotations

import asyncpg

from mediation_core.errors import DomainRejection, is_transient


def test_a_connection_ended_under_the_driver_is_retried_not_fatal():
    # what asyncpg raises on a connection the server ended mid-operation (database restart)
    assert is_transient(asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"))
    assert is_transient(asyncpg.InterfaceError(
        "cannot call Connection.is_closed(): connection has been released back to the pool"))
    assert is_transient(ConnectionRefusedError())


def test_a_handler_bug_or_a_refusal_is_not_retried():
    assert not is_transient(ValueError("bug"))
    assert not is_transient(DomainRejection("cannot_route"))
    assert not is_transient(asyncpg.UniqueViolationError("dup"))
