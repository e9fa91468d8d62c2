"""A short write to a segment (disk full, file-size limit) is undone: the fragment it left
is cut off, so the next row starts a line of its own and is readable at replay."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from modelhub.spool import orphans_replay

ROOT = Path(__file__).resolve().parents[1]
FIRST, SECOND, THIRD = b'{"n":1}\n', b'{"n":2,"pad":"' + b"x" * 40 + b'"}\n', b'{"n":3}\n'


def test_a_short_write_leaves_no_fragment_before_the_next_row(tmp_path):
    """In a process of its own: the file-size limit that cuts the second row short (its
    SIGXFSZ ignored) would cut the test run's own files too."""
    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from modelhub.spool import Spool
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        spool = Spool(Path({str(tmp_path)!r}))
        spool.append({FIRST!r})
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(FIRST) + len(SECOND) // 2}, hard))
        try:
            spool.append({SECOND!r})
        except OSError as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        spool.append({THIRD!r})
    """)
    finished = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=30, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "short write" in finished.stdout

    [segment] = tmp_path.glob("*.spool")
    assert segment.read_bytes() == FIRST + THIRD
    replayed: list[bytes] = []
    assert orphans_replay(tmp_path, replay=lambda lines: replayed.extend(lines) or len(lines)) == 2
    assert replayed == [FIRST.rstrip(), THIRD.rstrip()]


def _row(request_id: str, pad: int = 0) -> bytes:
    return b'{"request_id":"' + request_id.encode() + b'","attempt":1,"pad":"' + b"x" * pad + b'"}\n'


def test_a_short_write_to_the_rejected_rows_leaves_no_fragment_and_a_dead_writers_fragment_ends_its_line(tmp_path):
    """The rejected-rows file, likewise: a short write is cut back; a fragment left by a
    process that died writing is ended before the next row, which stays readable."""
    first, second, third = _row("a"), _row("b", pad=40), _row("c")
    code = textwrap.dedent(f"""
        import resource, signal
        from django.conf import settings
        settings.configure(MODELHUB={{"SPOOL_DIR": {str(tmp_path)!r}}})
        from modelhub.spool import rejected_append
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        rejected_append({first!r}, attempt=("a", 1))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(first) + len(second) // 2}, hard))
        try:
            rejected_append({second!r}, attempt=("b", 1))
        except OSError as exc:
            print("refused:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        rejected_append({third!r}, attempt=("c", 1))
    """)
    finished = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=30, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "short write" in finished.stdout
    rejected = tmp_path / "rejected.jsonl"
    assert rejected.read_bytes() == first + third

    with rejected.open("ab") as died_writing:
        died_writing.write(b'{"request_id":"d","att')
    code = f"""
from django.conf import settings
settings.configure(MODELHUB={{"SPOOL_DIR": {str(tmp_path)!r}}})
from modelhub.spool import rejected_append
rejected_append({_row("e")!r}, attempt=("e", 1))
"""
    finished = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=30, text=True)
    assert finished.returncode == 0, finished.stderr
    assert rejected.read_bytes().splitlines()[-2:] == [b'{"request_id":"d","att', _row("e").rstrip()]
