"""The live statistics are fed before a batch is stored; a feed that fails (a bug: the feed
itself survives Redis outages) neither fails the flush nor loses the batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db


def test_a_failing_statistics_feed_neither_fails_the_flush_nor_loses_the_batch(settings, monkeypatch, caplog):
    ledger = runtime().ledger
    first, second = UsageRecordFactory.build_batch(2)
    ledger.submit_usage(first)

    def feed(records):
        raise ValueError("a bug in the statistics")

    monkeypatch.setattr(runtime().stats, "feed", feed)
    assert ledger.flush() == 1
    monkeypatch.undo()
    ledger.submit_usage(second)
    assert ledger.flush() == 1

    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(
        [first.request_id, second.request_id]
    )
    spool = Path(settings.MODELHUB["SPOOL_DIR"])
    assert b"".join(path.read_bytes() for path in spool.glob("*.spool")) == b""
    assert "live statistics" in caplog.text
