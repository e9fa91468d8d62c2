"""A spool written by an older version of the hub is replayed after an upgrade: a field its
lines lack takes its default, a field they have and the ledger no longer knows is ignored."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from modelhub.ledger import usage_line
from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db

# The ledger's fields added since the spool came (migrations 0011 and 0017).
ADDED = ["strategy", "tier", "category", "score", "arm", "counterfactual_cost_usd", "routing"]


@pytest.fixture
def spool_dir(settings) -> Path:
    return Path(settings.MODELHUB["SPOOL_DIR"])


def dead_segment(directory: Path, row: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "4242-old.spool").write_bytes(orjson.dumps(row) + b"\n")


def test_a_line_spooled_before_fields_were_added_is_stored_with_their_defaults(spool_dir):
    old = UsageRecordFactory.build(strategy="ordered", arm="canary", score=0.5, routing={"strategy": "ordered"})
    row = orjson.loads(usage_line(old))
    for name in ADDED:
        del row[name]
    dead_segment(spool_dir, row)

    assert runtime().ledger.sweep() == 1

    stored = UsageRecord.objects.get(request_id=old.request_id)
    assert (stored.cost_usd, stored.created_at, stored.outcome) == (old.cost_usd, old.created_at, old.outcome)
    assert (stored.strategy, stored.arm, stored.score, stored.routing) == ("", "", None, None)
    assert list(spool_dir.glob("*.spool")) == []


def test_a_line_with_a_field_the_ledger_no_longer_has_is_stored(spool_dir):
    newer = UsageRecordFactory.build()
    dead_segment(spool_dir, {**orjson.loads(usage_line(newer)), "dropped_since": "whatever"})

    assert runtime().ledger.sweep() == 1

    assert UsageRecord.objects.filter(request_id=newer.request_id).exists()


def test_a_line_without_a_field_that_has_no_default_is_still_skipped(spool_dir, caplog):
    row = orjson.loads(usage_line(UsageRecordFactory.build()))
    del row["created_at"]
    dead_segment(spool_dir, row)

    assert runtime().ledger.sweep() == 0

    assert UsageRecord.objects.count() == 0
    assert "spooled usage row skipped" in caplog.text
