"""The usage journal: each record is appended (and flushed to the kernel) before the answer leaves, in segment
files that are deleted once the database holds all of theirs. The journal holds what is not yet written, plus
the written head of at most the segments that still hold unwritten records (each under `segment_bytes`, one
record more at most), and a restart replays only that.

One writing process (an owner: its pid and a random suffix) keeps in the journal folder:

    journal-{owner}.lock               locked (flock) while the owner lives: nobody replays a live owner's segments
    journal-{owner}-{seq:06d}.jsonl    its segments, one JSON record a line

A crash between a batch's database write and the deletion of its segment leaves records that are already
written: the replay writes them again, and the database ignores a request id it holds (no record twice)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["Journal", "replay_segments", "orphan_segments"]

log = logging.getLogger("flopex.ledger")

Rows = Callable[[list[dict[str, Any]]], object]  # writes rows to the database (all or none)


class Journal:
    def __init__(self, folder: Path, segment_bytes: int = 1 << 20) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lock: IO[bytes] | None = None
        self.file: IO[bytes] | None = None
        self.seq = 0
        self.size = 0  # bytes in the current segment
        self.unwritten: dict[int, int] = {}  # segment -> records appended to it and not yet written

    def open(self) -> None:
        """Take this owner's lock, then start its first segment (nothing touches the disk before)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = (self.folder / f"journal-{self.owner}.lock").open("ab")
        fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.file = self.path(self.seq).open("ab")

    def path(self, seq: int) -> Path:
        return self.folder / f"journal-{self.owner}-{seq:06d}.jsonl"

    def append(self, row: dict[str, Any]) -> int:
        """Append a record and flush it to the kernel (it survives the process being killed); its segment."""
        if self.file is None:
            self.open()
        assert self.file is not None
        line = (json.dumps(row) + "\n").encode()
        self.file.write(line)
        self.file.flush()
        seq = self.seq
        self.unwritten[seq] = self.unwritten.get(seq, 0) + 1
        self.size += len(line)
        if self.size >= self.segment_bytes:
            self._next_segment()
        return seq

    def written(self, segments: Iterable[int]) -> None:
        """One record of each of these segments is in the database: delete every segment with none left
        unwritten, and empty the current one if it has none."""
        for seq in segments:
            if seq in self.unwritten:  # a segment forgotten after its replay is already gone
                self.unwritten[seq] -= 1
        for seq in [s for s, n in self.unwritten.items() if n <= 0]:
            del self.unwritten[seq]
            if seq == self.seq and self.file is not None:
                self.file.truncate(0)  # appends go on at its (new) end
                self.size = 0
            else:
                self.path(seq).unlink(missing_ok=True)

    def seal(self) -> list[Path]:
        """Start a new segment; the earlier segments that remain, oldest first (closed: safe to read elsewhere)."""
        if self.file is not None:
            self._next_segment()
        return [self.path(seq) for seq in sorted(self.unwritten) if seq != self.seq]

    def forget(self, paths: Sequence[Path]) -> None:
        """These sealed segments were written from their files: delete them."""
        for path in paths:
            self.unwritten.pop(int(path.stem.rsplit("-", 1)[1]), None)
            path.unlink(missing_ok=True)

    def close(self, remove: bool) -> None:
        """Close the segment and let go of the lock; with `remove` (all is written), delete every file of ours."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if remove:
            for path in self.folder.glob(f"journal-{self.owner}-*.jsonl"):
                path.unlink(missing_ok=True)
            self.unwritten.clear()
        if self.lock is not None:
            if remove:
                (self.folder / f"journal-{self.owner}.lock").unlink(missing_ok=True)
            self.lock.close()  # releases the flock
            self.lock = None

    def _next_segment(self) -> None:
        assert self.file is not None
        self.file.close()
        if self.seq not in self.unwritten:  # emptied: all of it is written
            self.path(self.seq).unlink(missing_ok=True)
        self.seq += 1
        self.size = 0
        self.file = self.path(self.seq).open("ab")


def replay_segments(paths: Iterable[Path], write: Rows, batch: int = 2000) -> int:
    """Write the records of these segments to the database, `batch` at a time, oldest first; the count. A line
    cut short (its process died writing it, before its answer left) is skipped."""
    total = 0
    for path in paths:
        try:
            lines = path.open("rb")
        except FileNotFoundError:  # replayed and deleted by another process meanwhile
            continue
        with lines:
            rows: list[dict[str, Any]] = []
            for line in lines:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    if line.strip():
                        log.warning("skipped a cut-short journal line in %s: %r", path, line[:80])
                    continue
                if len(rows) >= batch:
                    write(rows)
                    total, rows = total + len(rows), []
            if rows:
                write(rows)
                total += len(rows)
    return total


def orphan_segments(folder: Path, own: str | None = None) -> Iterator[tuple[list[Path], Callable[[], None]]]:
    """For each owner in `folder` other than `own` whose lock is free (it died, or stopped without writing all):
    its segments oldest first, and a function that deletes them and its lock. The owner's lock is held while
    the caller replays them, so no other process replays them at the same time. Journals of versions before
    segments (`journal-{pid}-{suffix}.jsonl`, no lock) count as one segment of their owner."""
    owners: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.glob("journal-*.jsonl"):
        parts = path.stem.split("-")
        if len(parts) == 4 and parts[3].isdigit():
            owners.setdefault(f"{parts[1]}-{parts[2]}", []).append((int(parts[3]), path))
        else:
            owners.setdefault(path.stem.removeprefix("journal-"), []).append((-1, path))
    for owner, segments in sorted(owners.items()):
        if owner == own:
            continue
        lock_path = folder / f"journal-{owner}.lock"
        with lock_path.open("ab") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # alive: its own writer writes its records
                continue
            paths = [path for _, path in sorted(segments)]

            def delete(paths: list[Path] = paths, lock_path: Path = lock_path) -> None:
                for path in paths:
                    path.unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)

            yield paths, delete
