"""The blocking steps of archives: each runs whole in one worker thread.

Opening and creating archive files, the locks that order writers, and
finding where an append goes all happen here, on an `FileIO`
(or on bytes held in memory, which read the same way).
"""

from __future__ import annotations

from typing import Final

from .. import _io, _ranges, _remote
from .._wants import answer_reads
from ..errors import CorruptArchiveError
from ._format import (
    FILE_HEADER,
    FILE_HEADER_SIZE,
    ElementLayout,
    check_file_header,
)
from ._walk import valid_end

__all__ = [
    "MemoryArchive",
    "RemoteArchive",
    "Storage",
    "begin_append",
    "check_header",
    "end_append",
    "initialize",
    "open_archive",
    "take_owner_lock",
]

# Byte-range locks far past any real data (they need not lie inside the
# file). A rdwr_exclusive writer holds the owner byte exclusively from open
# to close; a rdwr writer holds it shared while it appends, so the two
# exclude each other but rdwr writers do not exclude one another. Every
# append also holds the append byte exclusively: one append at a time, in
# all processes.
_OWNER_BYTE: Final = (1 << 63) - 16
_APPEND_BYTE: Final = (1 << 63) - 15


class MemoryArchive:
    """An archive held in memory: the same bytes a file would hold."""

    __slots__ = ("data", "layout")

    def __init__(self, data: bytes) -> None:
        self.layout = check_file_header(data)
        self.data = data

    def pread(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)``, fewer at the end."""
        return self.data[offset : offset + size]

    def size(self) -> int:
        """How many bytes the archive holds."""
        return len(self.data)


# An archive on object storage is read in ranges this large while it is
# listed (the walk back reads windows of 256 KiB), the last few held.
_LISTING_RANGE: Final = 1024 * 1024
_LISTING_RANGES_HELD: Final = 4


class RemoteArchive:
    """An archive on an fsspec file system (object storage, HTTP, ...),
    read-only: the bytes the object held when it was opened (or last
    refreshed), fetched in aligned ranges on the event loop."""

    __slots__ = ("ranges", "remote")

    def __init__(self, remote: _remote.RemoteFile) -> None:
        self.remote = remote
        self.ranges = _ranges.RangeCache(
            remote, _LISTING_RANGE, keep=_LISTING_RANGES_HELD
        )

    def size(self) -> int:
        """How many bytes the object held when last looked at."""
        return self.remote.size

    async def layout(self) -> ElementLayout:
        """Check the file header and say which layout the archive has."""
        head = await self.ranges.read(0, FILE_HEADER_SIZE)
        if not head:
            raise CorruptArchiveError("the file is empty", offset=0)
        return check_file_header(head)


#: Where an archive's bytes are.
Storage = _io.FileIO | MemoryArchive | RemoteArchive


def _create(path: str) -> _io.FileIO:
    """Create an empty archive at ``path`` durably, unless another process
    creates one first (then that one is used); return it open for writing."""
    temp = _io.create_temp_beside(path)
    try:
        temp.pwrite(0, FILE_HEADER)
        temp.sync()
        created = _io.publish_new(temp.path, path)
    finally:
        temp.close()
        _io.unlink_quietly(temp.path)
    if created:
        _io.sync_directory(path)
    return _io.open_file(path, writable=True)


def open_archive(path: str, writable: bool) -> _io.FileIO:
    """Open the archive at ``path`` (if ``writable``, creating it if missing)."""
    try:
        return _io.open_file(path, writable=writable)
    except FileNotFoundError:
        if not writable:
            raise
    return _create(path)


def take_owner_lock(io: _io.FileIO) -> bool:
    """Take the owner lock (``rdwr_exclusive``); False if another holds it."""
    return io.lock(_OWNER_BYTE, 1, exclusive=True, wait=False)


def check_header(io: _io.FileIO) -> ElementLayout | None:
    """Check the file header and say which layout the archive has; None if
    the file is empty (not yet an archive)."""
    head = io.pread(0, FILE_HEADER_SIZE)
    if not head:
        return None
    return check_file_header(head)


def initialize(io: _io.FileIO) -> bool:
    """Give an empty file its header, holding the append lock; False if the
    lock is busy (another writer is at it)."""
    if not io.lock(_APPEND_BYTE, 1, exclusive=True, wait=False):
        return False
    try:
        if io.size() == 0:
            io.pwrite(0, FILE_HEADER)
            io.datasync()
        return True
    finally:
        io.unlock(_APPEND_BYTE, 1)


def begin_append(
    io: _io.FileIO, floor: int, share_owner: bool, layout: ElementLayout
) -> int | str:
    """Take the append locks and find where the new element goes, cutting off
    a torn tail; or say which lock is busy (``"owner"`` or ``"append"``).

    ``floor`` is an offset known to end a whole element (what lies before it
    never changes); ``share_owner`` is false for the owner itself.
    """
    if share_owner and not io.lock(_OWNER_BYTE, 1, exclusive=False, wait=False):
        return "owner"
    if not io.lock(_APPEND_BYTE, 1, exclusive=True, wait=False):
        if share_owner:
            io.unlock(_OWNER_BYTE, 1)
        return "append"
    try:
        size = io.size()
        end = answer_reads(
            valid_end(size, floor if size >= floor else FILE_HEADER_SIZE, layout),
            io.pread,
        )
        if size > end:
            io.truncate(end)
    except BaseException:
        end_append(io, share_owner)
        raise
    return end


def end_append(io: _io.FileIO, share_owner: bool) -> None:
    """Release what `begin_append()` took."""
    io.unlock(_APPEND_BYTE, 1)
    if share_owner:
        io.unlock(_OWNER_BYTE, 1)
