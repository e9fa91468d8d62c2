"""A dead process's segment whose replay fails stays for the next sweep, logged, and the
segments after it are replayed all the same; the failure is raised once they were."""

from __future__ import annotations

import pytest

from modelhub.spool import orphans_replay


def test_a_segment_whose_replay_fails_stays_and_the_others_are_replayed(tmp_path, caplog):
    for n, name in enumerate(["1000-a", "2000-b", "3000-c"], start=1):
        (tmp_path / f"{name}.spool").write_bytes(b'{"n":%d}\n' % n)
    replayed: list[bytes] = []

    def replay(lines: list[bytes]) -> int:
        if lines == [b'{"n":2}']:
            raise RuntimeError("refused")
        replayed.extend(lines)
        return len(lines)

    with pytest.raises(RuntimeError, match="refused"):
        orphans_replay(tmp_path, replay=replay)

    assert replayed == [b'{"n":1}', b'{"n":3}']
    assert [path.name for path in tmp_path.glob("*.spool")] == ["2000-b.spool"]
    assert "2000-b.spool not replayed" in caplog.text

    assert orphans_replay(tmp_path, replay=len) == 1  # the next sweep
    assert list(tmp_path.glob("*.spool")) == []
