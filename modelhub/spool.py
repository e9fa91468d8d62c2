"""The usage spool: every ledger row on local disk before it is queued for the database, so
that a process that dies (kill -9, out of memory) loses none of the rows it had not stored.

Each process appends to a segment file of its own, one line per row, with one write(2) on
an unbuffered descriptor opened ``O_APPEND``. Once that call returns, the line is in the kernel's page
cache and outlives the process, so no fsync is needed against a process's death; surviving a
crash of the machine itself would need an fsync per row (or per batch, acknowledging rows
to the client only after it), which the hub does not promise. Each flush of the ledger seals
the current segment and appends to another; once the sealed rows are stored, their segment
is emptied and kept for the next flush (two files per process, made once: creating a file
costs 0.1-1 ms on a busy disk, too much for the request path at every flush).

A live process holds an exclusive ``flock`` on each of its segments, and the kernel drops
the lock when the process dies: a sweeper that can take a segment's lock knows that its
owner is gone, replays the segment's rows and deletes it. Replays must be idempotent (the
ledger stores rows by their attempt id), since a process can die after storing a batch and
before emptying its segment."""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from django.conf import settings

log = logging.getLogger("modelhub.spool")

SUFFIX = ".spool"
STAGING_SUFFIX = ".new"
# Rows the database refused, set aside for an operator (one JSON line each); never replayed.
REJECTED = "rejected.jsonl"


class Segment:
    """One spool file, open for appending and exclusively locked by the process writing it."""

    def __init__(self, path: Path):
        self.path = path
        self.file = _open_locked(path)
        self.size = 0

    def append(self, line: bytes) -> None:
        """Append one line, or nothing: a short write's fragment is cut off, else the next
        line would be glued to it and unreadable at replay."""
        written = self.file.write(line) or 0
        if written != len(line):
            self.file.truncate(self.size)
            raise OSError(f"short write to {self.path} (disk full?)")
        self.size += written

    def empty(self) -> None:
        self.file.truncate(0)
        self.size = 0


def _open_locked(path: Path) -> io.FileIO:
    """Create and lock under a staging name, then rename into place: a sweeper never sees a
    segment before its owner's lock is on it. Unbuffered: each row is one write(2)."""
    staging = path.with_suffix(STAGING_SUFFIX)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(staging, path)
    return io.FileIO(fd, "a")


class Spool:
    """One process's segments: the current one takes new rows; a sealed one holds rows being
    stored; a spare one, emptied once its rows were stored, becomes the next current one.
    Not thread-safe: the ledger serialises appends with seals, and seals with
    acknowledgements."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._current: Segment | None = None
        self._sealed: Segment | None = None
        self._spare: Segment | None = None

    def append(self, line: bytes) -> None:
        if self._current is None:
            self._current = self._segment_new()
        self._current.append(line)

    def seal(self) -> None:
        """Rows appended from now on go to another segment. While a sealed segment still
        waits for its rows to be stored (its store failed), the current one carries on
        instead: the next successful store covers both, as every row of a failed batch is
        queued again."""
        if self._sealed is None and self._current is not None and self._current.size:
            self._sealed, self._current, self._spare = self._current, self._spare, None

    def acknowledge(self) -> None:
        """Every row of the sealed segment is stored: empty it, and keep it as the spare."""
        if self._sealed is not None:
            self._sealed.empty()
            self._spare, self._sealed = self._sealed, None

    def _segment_new(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        return Segment(self.directory / f"{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}")


def orphans_replay(directory: Path, *, replay: Callable[[list[bytes]], int]) -> int:
    """Hand the complete lines of every segment whose owner died to ``replay``, then delete
    the segment. A segment whose replay fails is logged and stays for the next sweep; the
    others go on, and the first failure is raised once they had their turn. Returns the sum
    of what ``replay`` returned."""
    replayed, failure = 0, None
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            replayed += _orphan_replay(path, replay)
        except Exception as exc:  # noqa: BLE001 - raised below, after the other segments
            log.warning("spool segment %s not replayed, kept for the next sweep: %s", path.name, exc)
            failure = failure or exc
    if failure is not None:
        raise failure
    return replayed


def _orphan_replay(path: Path, replay: Callable[[list[bytes]], int]) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # its owner stored and deleted it meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its owner is alive
        if not _still_linked(path, fd):
            return 0  # another sweeper, or its owner just before it died, deleted it
        replayed = replay(_complete_lines(path, fd))
        os.unlink(path)
        return replayed
    finally:
        os.close(fd)


def _still_linked(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _complete_lines(path: Path, fd: int) -> list[bytes]:
    """The segment's lines; a last line without its newline was torn by its process's death
    in the middle of a write, and is skipped."""
    with open(fd, "rb", closefd=False) as segment:
        *lines, torn = segment.read().split(b"\n")
    if torn:
        log.warning("spool segment %s ends with a torn line (its process died writing it): skipped", path.name)
    return [line for line in lines if line]


def rejected_append(line: bytes, *, attempt: tuple[str, int]) -> Path | None:
    """Append a row the database refused to the spool directory's rejected-rows file, once
    per ``attempt`` (request id, attempt number): a batch stored again after the database
    went away in the middle of its rows finds its refused rows set aside already. Under an
    exclusive lock (processes share the file), with one write(2); a short write (a full
    disk) is cut back, so the next row does not end up glued to its fragment. Returns the
    file's path; None where there is no spool directory (an in-memory SQLite database, whose
    ledger dies with its process)."""
    directory = spool_dir()
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REJECTED
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(fd, "rb", closefd=False) as kept:
            held = kept.read()
        if _attempt_in(held, attempt):
            return path
        if held and not held.endswith(b"\n"):  # a fragment left by a process that died writing
            line = b"\n" + line
        if os.write(fd, line) != len(line):
            os.ftruncate(fd, len(held))
            raise OSError(f"short write to {path} (disk full?)")
    finally:
        os.close(fd)  # and the lock with it
    return path


def _attempt_in(rows: bytes, attempt: tuple[str, int]) -> bool:
    """Whether one of the rows (JSON lines) is ``attempt``'s. Only the lines holding its
    request id are parsed: the file is read whole for every row set aside."""
    request_id = orjson.dumps(attempt[0])
    for line in rows.splitlines() if request_id in rows else ():
        if request_id in line:
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn line names no attempt
            if isinstance(row, dict) and (row.get("request_id"), row.get("attempt")) == attempt:
                return True
    return False


def spool_make() -> Spool | None:
    directory = spool_dir()
    return Spool(directory) if directory is not None else None


def spool_dir() -> Path | None:
    configured = settings.MODELHUB.get("SPOOL_DIR")
    if configured:
        return Path(configured)
    return spool_dir_default(database=settings.DATABASES["default"])


def spool_dir_default(*, database: dict) -> Path | None:
    """Beside a SQLite database file; none for an in-memory SQLite database, which dies with
    its process (nothing would be left to replay into); for any other database, under the
    project's ``var/`` directory, named after the database's identity, so that a spool is
    replayed only into the database its rows were meant for."""
    name = str(database.get("NAME") or "")
    if database["ENGINE"].endswith("sqlite3"):
        in_memory = name in ("", ":memory:") or name.startswith("file:")
        return None if in_memory else Path(f"{name}.modelhub-spool")
    identity = f"{database['ENGINE']}|{database.get('HOST')}|{database.get('PORT')}|{name}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(settings.BASE_DIR) / "var" / f"spool-{digest}"
