"""The usage spool's files: segments, their locks, and the replay of a dead process's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelhub.spool import Spool, orphans_replay, spool_dir_default

ROOT = Path(__file__).resolve().parents[1]


def spool_in_a_process_killed_after(directory: Path, *writes: bytes) -> None:
    """Append ``writes`` (raw, as they would reach the file) from another process, which then
    dies by SIGKILL holding its segment's lock: no exit hook runs."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from modelhub.spool import Spool
        spool = Spool(Path({str(directory)!r}))
        for write in {list(writes)!r}:
            spool.append(write)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    finished = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=30)
    assert finished.returncode == -9, finished.stderr


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


class Replayed:
    """A replay target that records the lines it was handed."""

    def __init__(self):
        self.batches: list[list[bytes]] = []

    def __call__(self, lines: list[bytes]) -> int:
        self.batches.append(lines)
        return len(lines)


def contents(directory: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in segments(directory))


def test_rows_are_on_disk_as_lines_until_acknowledged(tmp_path):
    spool = Spool(tmp_path)
    spool.append(b'{"n":1}\n')
    spool.append(b'{"n":2}\n')
    assert contents(tmp_path) == [b'{"n":1}\n{"n":2}\n']

    spool.seal()
    spool.append(b'{"n":3}\n')
    assert contents(tmp_path) == [b'{"n":1}\n{"n":2}\n', b'{"n":3}\n']  # the sealed segment and the new one
    spool.acknowledge()
    assert contents(tmp_path) == [b"", b'{"n":3}\n']


def test_segments_are_reused_once_stored_not_created_at_each_flush(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append(b'{"n":%d}\n' % n)
        spool.seal()
        spool.acknowledge()
    made = segments(tmp_path)
    for n in range(3, 50):
        spool.append(b'{"n":%d}\n' % n)
        spool.seal()
        spool.acknowledge()
    assert segments(tmp_path) == made
    assert len(made) == 2
    assert contents(tmp_path) == [b"", b""]


def test_a_live_process_segments_are_not_replayed(tmp_path):
    spool = Spool(tmp_path)
    spool.append(b'{"n":1}\n')
    spool.seal()
    spool.append(b'{"n":2}\n')
    replayed = Replayed()

    assert orphans_replay(tmp_path, replay=replayed) == 0
    assert replayed.batches == []
    assert len(segments(tmp_path)) == 2


def test_a_dead_process_segment_is_replayed_then_deleted(tmp_path):
    spool_in_a_process_killed_after(tmp_path, b'{"n":1}\n', b'{"n":2}\n')
    replayed = Replayed()

    assert orphans_replay(tmp_path, replay=replayed) == 2
    assert replayed.batches == [[b'{"n":1}', b'{"n":2}']]
    assert segments(tmp_path) == []
    assert orphans_replay(tmp_path, replay=replayed) == 0


def test_a_torn_last_line_is_skipped_and_the_complete_ones_replayed(tmp_path, caplog):
    spool_in_a_process_killed_after(tmp_path, b'{"n":1}\n', b'{"n":2}\n', b'{"n":3,"mod')
    replayed = Replayed()

    assert orphans_replay(tmp_path, replay=replayed) == 2
    assert replayed.batches == [[b'{"n":1}', b'{"n":2}']]
    assert segments(tmp_path) == []
    assert "torn line" in caplog.text


def test_a_segment_whose_replay_fails_stays_for_the_next_sweep(tmp_path):
    spool_in_a_process_killed_after(tmp_path, b'{"n":1}\n')

    def database_down(lines):
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        orphans_replay(tmp_path, replay=database_down)
    assert len(segments(tmp_path)) == 1
    replayed = Replayed()
    assert orphans_replay(tmp_path, replay=replayed) == 1
    assert segments(tmp_path) == []


def test_while_a_store_fails_the_spool_keeps_two_segments_not_one_per_retry(tmp_path):
    spool = Spool(tmp_path)
    for n in range(5):  # five flushes whose store fails: each seals, none acknowledges
        spool.append(b'{"n":%d}\n' % n)
        spool.seal()
    assert contents(tmp_path) == [b'{"n":0}\n', b"".join(b'{"n":%d}\n' % n for n in range(1, 5))]
    spool.acknowledge()  # the store that worked covered every row queued again
    spool.seal()
    spool.acknowledge()
    assert contents(tmp_path) == [b"", b""]


def test_no_segment_is_made_before_a_row_comes(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.seal()
    spool.acknowledge()
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/hub/db.sqlite3"}, "/srv/hub/db.sqlite3.modelhub-spool"),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}, None),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": "file:memorydb_default?mode=memory&cache=shared"}, None),
    ],
)
def test_spool_dir_default_for_sqlite(database, expected):
    found = spool_dir_default(database=database)
    assert (str(found) if found else None) == expected


def test_spool_dir_default_is_one_per_database(settings):
    def postgres(name):
        database = {"ENGINE": "django.db.backends.postgresql", "HOST": "db", "PORT": 5432, "NAME": name}
        return spool_dir_default(database=database)

    assert postgres("hub") == postgres("hub")
    assert postgres("hub") != postgres("hub_staging")
    assert postgres("hub").parent == Path(settings.BASE_DIR) / "var"
