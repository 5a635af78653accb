"""A batch rerun one message at a time (a message failed for good) decides admissions as
its first attempt did: a sender's tokens are spent once per form, so forms within budget
are not parked because another message of their batch failed."""

from __future__ import annotations

import pytest

from tests.helpers import produce
from tests.intake.forms import GP, envelope, form
from tests.intake.test_flood import FLOOD, accepted, handled, parked, started

pytestmark = pytest.mark.stack


async def test_isolation_rerun_does_not_park_forms_within_budget(settings_for):
    svc = await started(settings_for("intake"), kafka_burst=5, drain=False)
    try:
        forms = [form(GP) for _ in range(4)]       # 4 forms, a budget of 5: all straight through
        values = [envelope(f) for f in forms]
        values.insert(2, envelope(form(GP), version=2))  # one message the handler refuses
        await produce(svc.settings.kafka_bootstrap, svc.settings.topics.referrals_received,
                      [(b"one-partition", v) for v in values])
        await handled(svc, 5)
        assert svc.consumers[0].stats.isolated == 1, "the batch was rerun one by one"
        assert await parked(svc, FLOOD) == 0
        assert len(await accepted(svc, FLOOD)) == 4
    finally:
        await svc.stop()
