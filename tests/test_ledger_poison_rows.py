"""A row the database refuses never holds up the ledger: a batch that one of its rows fails
(a constraint, a value the database cannot take) is stored row by row, and a row the
database refuses on its own is repaired once where that is safe (NUL characters taken out
of its text) or else set aside in the spool directory's rejected-rows file, with an ERROR
naming its request id. A database that refuses every row (unreachable, read-only, not
migrated) keeps the whole batch queued and spooled, and nothing is set aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import InternalError, OperationalError, ProgrammingError

from modelhub import ledger as ledger_module
from modelhub.ledger import usage_line
from modelhub.models import UsageRecord
from modelhub.runtime import runtime
from tests.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db

# Refused by the driver on SQLite (OverflowError), by the server on PostgreSQL (DataError).
TOO_BIG = 2**63
REJECTED = "rejected.jsonl"  # in the spool directory, for an operator to read


@pytest.fixture
def spool_dir(settings) -> Path:
    return Path(settings.MODELHUB["SPOOL_DIR"])


def spooled_lines(directory: Path) -> list[bytes]:
    return [line for path in sorted(directory.glob("*.spool")) for line in path.read_bytes().splitlines()]


def rejected_lines(directory: Path) -> list[bytes]:
    path = directory / REJECTED
    return path.read_bytes().splitlines() if path.exists() else []


def stored_ids() -> list[str]:
    return sorted(UsageRecord.objects.values_list("request_id", flat=True))


def test_a_row_refused_for_any_reason_is_set_aside_and_the_batch_stored(spool_dir, caplog):
    refused = UsageRecordFactory.build(input_tokens=TOO_BIG, error_message="not for the log")
    fine = UsageRecordFactory.build()
    ledger = runtime().ledger
    ledger.submit_usage(refused)
    ledger.submit_usage(fine)

    assert ledger.flush() == 2

    assert stored_ids() == [fine.request_id]
    assert ledger.pending() == 0
    assert spooled_lines(spool_dir) == []
    assert rejected_lines(spool_dir) == [usage_line(refused).rstrip(b"\n")]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and refused.request_id in errors[0]
    assert "not for the log" not in caplog.text

    later = UsageRecordFactory.build()
    ledger.submit_usage(later)
    assert ledger.flush() == 1
    assert stored_ids() == sorted([fine.request_id, later.request_id])


def test_a_row_with_nul_characters_is_stored_not_set_aside(spool_dir):
    """PostgreSQL refuses NUL in text and in JSON strings: the row is stored without them
    (SQLite takes them as they are)."""
    nul = UsageRecordFactory.build(error_message="upstream said\x00 no", routing={"skipped": ["m\x00odel"]})
    fine = UsageRecordFactory.build()
    ledger = runtime().ledger
    ledger.submit_usage(nul)
    ledger.submit_usage(fine)

    assert ledger.flush() == 2

    assert stored_ids() == sorted([nul.request_id, fine.request_id])
    row = UsageRecord.objects.get(request_id=nul.request_id)
    assert row.error_message.replace("\x00", "") == "upstream said no"
    assert row.routing["skipped"][0].replace("\x00", "") == "model"
    assert rejected_lines(spool_dir) == []


def test_a_dead_process_row_the_database_refuses_is_set_aside_and_its_segment_replayed(spool_dir):
    refused = UsageRecordFactory.build(input_tokens=TOO_BIG)
    fine = UsageRecordFactory.build()
    spool_dir.mkdir(parents=True)
    (spool_dir / "4242-dead.spool").write_bytes(usage_line(refused) + usage_line(fine))

    assert runtime().ledger.sweep() == 2

    assert stored_ids() == [fine.request_id]
    assert spooled_lines(spool_dir) == [] and not list(spool_dir.glob("*.spool"))
    assert rejected_lines(spool_dir) == [usage_line(refused).rstrip(b"\n")]


@pytest.mark.parametrize(
    "refusal",
    [
        OperationalError("connection refused"),  # unreachable
        InternalError("cannot execute INSERT in a read-only transaction"),  # a standby after a failover
        ProgrammingError('column "routing" of relation "modelhub_usagerecord" does not exist'),  # not migrated
    ],
    ids=["unreachable", "read-only", "not-migrated"],
)
def test_a_database_refusing_every_row_keeps_the_whole_batch_queued_and_sets_nothing_aside(
    spool_dir, monkeypatch, refusal
):
    records = UsageRecordFactory.build_batch(2)
    ledger = runtime().ledger
    for record in records:
        ledger.submit_usage(record)
    insert = ledger_module._usage_insert

    def refused(records):
        raise refusal

    monkeypatch.setattr(ledger_module, "_usage_insert", refused)
    with pytest.raises(type(refusal)):
        ledger.flush()

    assert ledger.pending() == 2
    assert len(spooled_lines(spool_dir)) == 2
    assert rejected_lines(spool_dir) == []

    monkeypatch.setattr(ledger_module, "_usage_insert", insert)
    assert ledger.flush() == 2
    assert stored_ids() == sorted(record.request_id for record in records)
    assert spooled_lines(spool_dir) == []


def test_a_row_set_aside_is_set_aside_once_when_the_database_goes_away_during_the_split(spool_dir, monkeypatch):
    """The database went away in the middle of storing a batch row by row: the batch stays
    queued and is stored again later, and the row already set aside is not set aside twice."""
    refused, fine = UsageRecordFactory.build(input_tokens=TOO_BIG), UsageRecordFactory.build()
    ledger = runtime().ledger
    ledger.submit_usage(refused)
    ledger.submit_usage(fine)
    insert, calls = ledger_module._usage_insert, []

    def gone_at_the_third_insert(records):
        calls.append(len(records))
        if len(calls) == 3:  # the batch, the refused row, then this one: the database goes away
            raise OperationalError("server closed the connection unexpectedly")
        insert(records)

    monkeypatch.setattr(ledger_module, "_usage_insert", gone_at_the_third_insert)
    with pytest.raises(OperationalError):
        ledger.flush()
    assert calls == [2, 1, 1] and ledger.pending() == 2
    assert rejected_lines(spool_dir) == [usage_line(refused).rstrip(b"\n")]

    assert ledger.flush() == 2

    assert stored_ids() == [fine.request_id]
    assert ledger.pending() == 0
    assert rejected_lines(spool_dir) == [usage_line(refused).rstrip(b"\n")]
