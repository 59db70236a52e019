"""Crash states of a directory, built from a trace of what a workload did.

The approach is ALICE's (Pillai et al., "All File Systems Are Not Created
Equal", OSDI 2014): record every change a workload makes through the one
I/O layer (creates, writes, truncates, syncs, renames, links, unlinks,
directory syncs), then build the states a crash could leave:

* every prefix of the changes, applied whole;
* every prefix with the changes since each file's last sync (or, for names,
  since the directory's last sync) dropped, zero-filled or garbage-filled;
* random reorderings of those unsynced changes, each write possibly split
  at 4096-byte boundaries with each piece kept or lost on its own.

Synced data and synced names are always kept: what a sync promises.
A workload marks its acknowledgements in the trace (``Trace.ack``), so a
check knows what had been promised before each crash point.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiorecords import _io

PAGE = 4096


@dataclass
class Ack:
    """A workload's promise, made at this point of the trace."""

    what: object


@dataclass
class Trace:
    """Changes a workload made in one directory, and its acknowledgements."""

    directory: str
    events: list[_io.Change | Ack] = field(default_factory=list)

    def __call__(self, change: _io.Change) -> None:
        self.events.append(change)

    def ack(self, what: object) -> None:
        self.events.append(Ack(what))

    def __enter__(self) -> Trace:
        _io.add_recorder(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _io.remove_recorder(self)

    @property
    def changes(self) -> int:
        return sum(1 for e in self.events if not isinstance(e, Ack))

    def acked_before(self, point: int) -> list[object]:
        """Acknowledgements made before event ``point``."""
        return [e.what for e in self.events[:point] if isinstance(e, Ack)]

    def crash_points(self) -> Iterator[int]:
        """Every point between two changes (after each change)."""
        for point, event in enumerate(self.events, start=1):
            if not isinstance(event, Ack):
                yield point


VARIANTS = ("prefix", "dropped", "zeroed", "garbage")


def crash_state(
    trace: Trace, point: int, variant: str, rng: random.Random | None = None
) -> dict[str, bytes]:
    """The files (by name) a crash after ``trace.events[:point]`` leaves.

    ``variant`` is one of :data:`VARIANTS`, or ``"reordered"`` (which needs
    ``rng``): what happens to the changes not yet made durable by a sync.
    """
    events = [e for e in trace.events[:point] if isinstance(e, _io.Change)]
    # What a sync made durable: for data, everything before the file's last
    # sync; for names, everything before the directory's last sync.
    last_sync: dict[tuple[int, int], int] = {}
    last_dir_sync = -1
    for index, change in enumerate(events):
        if change.operation == "sync" and change.inode is not None:
            last_sync[change.inode] = index
        elif change.operation == "sync_dir":
            last_dir_sync = index

    names: dict[str, tuple[int, int]] = {}
    files: dict[tuple[int, int], bytearray] = {}
    volatile: list[tuple[int, _io.Change]] = []
    for index, change in enumerate(events):
        durable = (
            index <= last_sync.get(change.inode, -1)
            if change.inode is not None
            else index <= last_dir_sync
        )
        if change.operation == "create":
            assert change.inode is not None
            files.setdefault(change.inode, bytearray())
            if durable:
                names[_name(change.path)] = change.inode
            else:
                volatile.append((index, change))
        elif change.operation in ("write", "truncate"):
            assert change.inode is not None
            if durable:
                _apply(files.setdefault(change.inode, bytearray()), change)
            else:
                volatile.append((index, change))
        elif change.operation in ("rename", "link", "unlink"):
            if durable:
                _rename(names, change)
            else:
                volatile.append((index, change))
    if variant == "reordered":
        assert rng is not None
        chosen = [item for item in volatile if rng.random() < 0.5]
        rng.shuffle(chosen)
        for _, change in chosen:
            if change.operation == "write" and len(change.data) > PAGE:
                pieces = _pages(change)
                for piece in pieces:
                    if rng.random() < 0.5:
                        _apply(files.setdefault(change.inode, bytearray()), piece)
            else:
                _replay(names, files, change)
    elif variant != "dropped":
        for _, change in volatile:
            if change.operation == "write" and variant != "prefix":
                filler = (
                    bytes(len(change.data))
                    if variant == "zeroed"
                    else (random.Random(change.offset).randbytes(len(change.data)))
                )
                change = _io.Change(
                    "write", change.inode, offset=change.offset, data=filler
                )
            _replay(names, files, change)
    return {name: bytes(files[inode]) for name, inode in names.items()}


def _name(path: str) -> str:
    return os.path.basename(path)


def _apply(content: bytearray, change: _io.Change) -> None:
    if change.operation == "truncate":
        size = change.offset
        if size < len(content):
            del content[size:]
        else:
            content.extend(bytes(size - len(content)))
        return
    end = change.offset + len(change.data)
    if end > len(content):
        content.extend(bytes(end - len(content)))
    content[change.offset : end] = change.data


def _rename(names: dict[str, tuple[int, int]], change: _io.Change) -> None:
    source, target = _name(change.path), _name(change.target)
    if change.operation == "unlink":
        names.pop(source, None)
    elif source in names:
        names[target] = names[source]
        if change.operation == "rename":
            del names[source]


def _replay(
    names: dict[str, tuple[int, int]],
    files: dict[tuple[int, int], bytearray],
    change: _io.Change,
) -> None:
    if change.operation == "create":
        assert change.inode is not None
        names[_name(change.path)] = change.inode
    elif change.operation in ("write", "truncate"):
        assert change.inode is not None
        _apply(files.setdefault(change.inode, bytearray()), change)
    else:
        _rename(names, change)


def _pages(change: _io.Change) -> list[_io.Change]:
    """A write split where it crosses 4096-byte boundaries."""
    pieces = []
    at = change.offset
    end = change.offset + len(change.data)
    while at < end:
        stop = min(end, (at // PAGE + 1) * PAGE)
        data = change.data[at - change.offset : stop - change.offset]
        pieces.append(_io.Change("write", change.inode, offset=at, data=data))
        at = stop
    return pieces


def materialize(state: dict[str, bytes], directory: str) -> None:
    """Write a crash state's files into an empty ``directory``."""
    for name, data in state.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
