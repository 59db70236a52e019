"""The archive facade: `Archive`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from .. import _io, _remote
from .._lifetime import CloseOnce, open_owned
from .._skipped import SkippedRegion
from .._upload import start_upload
from ..errors import StorageNotSupported
from . import _files as files
from ._behind import WriteBehind
from ._entries import Appending, EntryReader, EntryWriter, NewEntry, Reading, read_held
from ._format import ArchiveEntry, Codec, entry_strings
from ._opened import Mode, OpenArchive
from ._publish import Publisher

__all__ = ["Archive", "ArchiveEntry", "EntryProperties", "EntryReader", "EntryWriter"]

logger = logging.getLogger("aiorecords")

T = TypeVar("T")

_MODES: Final = ("rdonly", "rdwr", "rdwr_exclusive")

#: Called with each damaged region ``contents(recover=True)`` steps over.
CorruptionCallback = Callable[[SkippedRegion], None]

# Waiting for another process's lock: the first and the longest pause.
_FIRST_WAIT: Final = 0.001
_LAST_WAIT: Final = 0.05


@dataclass(frozen=True, slots=True)
class EntryProperties:
    """The table-of-contents record of an entry, as the seed's ``info`` gives."""

    entry_name: str
    """The entry's name."""
    entry_timestamp: int
    """The timestamp given when the entry was added (seconds since the epoch
    unless the writer chose otherwise)."""
    entry_gzip: bool
    """True if the payload is stored gzip-compressed."""
    entry_comment: str
    """The comment given when the entry was added."""


# ----------------------------------------------------------------------
# The archive


class Archive:
    """An open archive of named entries.

    Make one with [`open()`][aiorecords.Archive.open] (a file) or
    [`from_bytes()`][aiorecords.Archive.from_bytes]
    (bytes in memory, read-only). Every method that touches the file is async and runs
    its I/O in worker threads.

    One entry is appended or read at a time per archive object: a second
    [`append()`][aiorecords.Archive.append] or [`read()`][aiorecords.Archive.read] waits
    (on an `asyncio.Lock`) until the first one's ``async with`` block ends. Listing
    ([`contents()`][aiorecords.Archive.contents],
    [`latest()`][aiorecords.Archive.latest], [`find()`][aiorecords.Archive.find]) never
    waits for them. Use one object per task for concurrent reads: each has its own
    descriptor.
    """

    def __init__(
        self,
        storage: files.Storage,
        *,
        path: str | None,
        mode: Mode,
        durable: bool,
        wait: bool,
    ) -> None:
        # Private: use Archive.open() or Archive.from_bytes().
        self.path = path
        """The file's path (or, on an fsspec file system, its URL), or None
        for an archive held in memory."""
        self.mode: Mode = mode
        """``"rdonly"``, ``"rdwr"`` or ``"rdwr_exclusive"``."""
        self.durable = durable
        """Whether appends sync by default (see
        [`append()`][aiorecords.Archive.append])."""
        self.wait = wait
        """Whether appends wait for a ``rdwr_exclusive`` writer to go away."""
        self._opened = OpenArchive(storage, path=path, mode=mode, wait=wait)
        self._close = CloseOnce()

    # ------------------------------------------------------------------
    # Opening and closing

    @classmethod
    def open(
        cls,
        path: _io.PathLike,
        mode: Mode = "rdonly",
        *,
        wait: bool = False,
        durable: bool = False,
        write_behind: bool = False,
        fs: Any = None,
        storage_options: dict[str, Any] | None = None,
    ) -> _Opening:
        """Open the archive at ``path``: ``await`` the result, or use it with
        ``async with`` (which closes the archive at the end of the block).

        ``mode`` is ``"rdonly"`` (the file must exist), ``"rdwr"`` (created,
        durably, if missing) or ``"rdwr_exclusive"`` (as ``"rdwr"``, and no
        other writer may append until this one is closed: it holds an
        exclusive lock from open to close). With ``"rdwr"`` every append
        takes the lock only while it runs, so several ``"rdwr"`` writers,
        in any processes, append in turn.

        While another object holds the exclusive lock, opening with
        ``"rdwr_exclusive"`` and appending with ``"rdwr"`` raise
        [`ArchiveLocked`][aiorecords.errors.ArchiveLocked]; with ``wait=True`` they
        wait for the lock instead. Readers never take a lock.

        ``durable`` is the default of [`append()`][aiorecords.Archive.append]'s
        ``durable``.

        ``write_behind=True`` (for a writer) queues each small entry (its
        data under 1 MiB, not ``data_gzip``) when its block exits, instead of
        writing it in a worker-thread hop of its own, and writes the queue
        in batches of about a megabyte, one hop each, while more are
        queued. Such an entry is **committed once a later
        [`flush()`][aiorecords.Archive.flush] (or `sync()` or `close()`)
        returns**, not when its block exits; a durable one is written and
        synced before its block exits, as usual. At most 8 MiB wait: an
        exit then waits for the queue to be written. This object's listings
        and finds write the queue first, so they include every entry it
        appended; other readers see queued entries once they are written.
        A batch that fails is cut off and its entries are lost: the error
        is raised to whoever waits next (and by `close()`), and the archive
        refuses appends after it.

        ``path`` may also be an fsspec URL (``"s3://bucket/a.archive"``,
        ``"https://..."``, ``"memory://..."``) with ``storage_options`` for
        its file system, or a path on ``fs``, an fsspec file system (the
        seed's ``openfile_filesys``). An existing object is read-only: it is
        read as it was when opened, in ranges awaited on the event loop,
        until [`refresh()`][aiorecords.Archive.refresh] sees it changed
        (``"rdwr"`` raises
        [`StorageNotSupported`][aiorecords.errors.StorageNotSupported]: an object
        cannot be appended to). ``"rdwr"`` (or ``"rdwr_exclusive"``) at a name
        not taken writes a new object: the archive is built in a local file
        in the temporary directory, its complete entries streamed to the
        store in 8 MiB parts as they are appended, and **the close is the
        commit**: the object appears when the archive is closed, and not
        before (on S3 created conditionally: `FileExistsError` from the
        close if another writer made it meanwhile). ``durable=True`` and
        [`sync()`][aiorecords.Archive.sync] are refused there. See the storage
        guide.

        Raises `FileNotFoundError` for a missing file in ``"rdonly"``
        mode (a [`StorageError`][aiorecords.errors.StorageError] for a missing
        object) and [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] for
        a file that is not an archive.

        Cancellation: nothing stays open (a file just created stays: it is a
        valid, empty archive).
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if write_behind and mode == "rdonly":
            raise ValueError("write_behind is for an archive opened to append")
        path, remote = _remote.locate(path, fs)
        if remote:
            if not isinstance(path, str):
                raise TypeError(f"an archive URL is a str, not {path!r}")
            if mode != "rdonly" and durable:
                raise StorageNotSupported(
                    f"{path}: an archive on object storage is durable once it "
                    "is closed (the close publishes it); durable=True means "
                    "nothing there"
                )
            return _Opening(
                path, mode, wait, durable, (fs, storage_options), write_behind
            )
        if storage_options is not None:
            raise TypeError("storage_options is for URLs of fsspec file systems")
        name = _io.path_of(path)
        if name is None:
            raise TypeError(f"an archive path is str or os.PathLike, not {path!r}")
        return _Opening(name, mode, wait, durable, None, write_behind)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Archive:
        """An archive held in memory (the seed's ``openstring``): read-only.

        The bytes are those an archive file holds. Raises
        [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] if they do not
        start like an archive.
        """
        return cls(
            files.MemoryArchive(bytes(data)),
            path=None,
            mode="rdonly",
            durable=False,
            wait=False,
        )

    @classmethod
    async def _open(
        cls,
        path: str,
        mode: Mode,
        wait: bool,
        durable: bool,
        remote: tuple[Any, dict[str, Any] | None] | None,
        write_behind: bool,
    ) -> Archive:
        archive = await _open_storage(path, mode, wait, durable, remote)
        if write_behind:
            archive._opened.behind = WriteBehind(archive._opened)
        return archive

    async def __aenter__(self) -> Archive:
        """The archive itself, for an ``async with`` block that closes it."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the archive."""
        await self.close()

    def __repr__(self) -> str:
        return repr(self._opened)

    @property
    def closed(self) -> bool:
        """True once [`close()`][aiorecords.Archive.close] has run."""
        return self._opened.closed

    async def refresh(self) -> bool:
        """Look again at an archive on object storage: if the object changed
        (its size, ETag or modification time), forget what was read of it,
        so that the next listing reads it anew. True if it changed.

        A local archive needs no refresh (every listing sees what the file
        holds now): this returns False for it.

        Cancellation: nothing changes.
        """
        return await self._opened.refresh()

    async def close(self) -> None:
        """Close the archive, releasing its lock. Closing twice does nothing.

        An append still in progress (in another task) is left torn: it fails
        on its next write, its block raises
        [`ClosedError`][aiorecords.errors.ClosedError] on exit (the entry was not
        added), and the next writer overwrites it. Work already in a worker
        thread is waited for first; from the moment the close begins, no
        call reaches the descriptor (later ones raise ClosedError).

        An archive written to object storage is published now: the rest
        of its bytes are sent and the upload completed (the object
        appears), or, if that fails, nothing is published and the error is
        raised; its local file is removed either way.

        Cancellation: the archive is closed (and published) all the same,
        and the cancellation is raised once it is.
        """
        opened = self._opened
        storage = opened.storage
        if storage is None:
            await self._close.wait()
            return
        opened.storage = None  # from now on no call reaches the file
        await self._close.begin(opened.finish_close(storage))

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()

    async def contents(
        self,
        *,
        recover: bool = False,
        on_corruption: CorruptionCallback | None = None,
    ) -> list[ArchiveEntry]:
        """Every entry, newest first.

        The list is cached until the archive grows; then only the new bytes
        are read. A torn tail (an append that has not finished, or never
        will) is not an entry and not an error.

        A damaged element raises
        [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] naming its
        offset.
        With ``recover=True`` damaged stretches are stepped over instead:
        the entries on both sides are listed, and each stretch is logged and
        given to ``on_corruption`` as a [`SkippedRegion`][aiorecords.SkippedRegion].
        Payloads are checked when they are read, not here.

        Cancellation: nothing changes; the list is not cached.
        """
        listing = await self._opened.current_listing()
        if not recover:
            self._opened.raise_damage(listing)
        elif on_corruption is not None:
            for damage in listing.damage:
                on_corruption(damage.region)
        return listing.newest_first()

    async def latest(self, *, recover: bool = False) -> dict[str, ArchiveEntry]:
        """The newest entry of each name (as
        [`contents()`][aiorecords.Archive.contents], which see for ``recover``).

        Cancellation: nothing changes.
        """
        listing = await self._opened.current_listing()
        if not recover:
            self._opened.raise_damage(listing)
        return dict(listing.latest)

    async def find(self, name: str) -> ArchiveEntry:
        """The newest entry named ``name``; `KeyError` if there is none.

        Only the bytes newer than the cached listing are read, back to the
        first match. Raises
        [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] if a damaged
        element lies between the end and the match (it could be a newer entry of that
        name).

        Cancellation: nothing changes.
        """
        found = await self._opened.find(name)
        if found is None:
            raise KeyError(name)
        return found

    def info(self, entry: ArchiveEntry) -> EntryProperties:
        """The seed's table-of-contents record of ``entry``."""
        return EntryProperties(
            entry_name=entry.name,
            entry_timestamp=entry.timestamp,
            entry_gzip=entry.compression == "gzip",
            entry_comment=entry.comment,
        )

    # ------------------------------------------------------------------
    # Reading

    def read(self, entry: ArchiveEntry | str) -> Reading:
        """Stream an entry's data (uncompressed): ``async with ar.read(e) as
        stream: async for chunk in stream: ...``.

        ``entry`` is an [`ArchiveEntry`][aiorecords.ArchiveEntry] of this archive, or a
        name (then its newest entry, `KeyError` if none). Chunks are at
        most 1 MiB, each read and decompressed in a worker thread. The
        payload's checksum and size are checked as the end is reached:
        damage raises [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError]
        then (data already given cannot be taken back;
        [`read_bytes()`][aiorecords.Archive.read_bytes] checks before it returns
        anything).

        Entering waits for any other append or read of this object.
        Cancellation: the stream is closed; nothing else changes.
        """
        return Reading(self._opened, entry)

    async def read_bytes(self, entry: ArchiveEntry | str) -> bytes:
        """The whole data of an entry (or of the newest entry of a name),
        checked; `KeyError` if there is no entry of that name.

        Cancellation: nothing changes.
        """
        if isinstance(entry, ArchiveEntry):
            # A small entry in the page cache: read now, on the loop.
            data = read_held(self._opened, entry)
            if data is not None:
                await self._opened.cooperate()
                return data
        async with self.read(entry) as stream:
            return await stream.read()

    # ------------------------------------------------------------------
    # Appending

    def append(
        self,
        name: str,
        *,
        timestamp: int | None = None,
        gzip: bool = False,
        data_gzip: bool = False,
        comment: str = "",
        compression: Literal["gzip", "zstd"] | None = None,
        durable: bool | None = None,
    ) -> Appending:
        """Append an entry: ``async with ar.append(name) as out: await
        out.write(data)``. The entry exists once the block exits cleanly.

        ``name`` is non-empty text, ``comment`` any text, each at most 64 KiB
        of UTF-8; ``timestamp`` a signed 64-bit integer (default: now, in
        whole seconds since the epoch). ``gzip=True`` (or
        ``compression="gzip"``) stores the payload as a gzip member;
        ``compression="zstd"`` as a zstandard frame. ``data_gzip=True`` says
        the bytes written are already gzip: stored as they are if the entry
        is gzip, else decompressed as they stream (in bounded memory).

        If the block raises, is cancelled, or the process dies, no entry
        appears: the bytes written so far are cut off (or, after a crash,
        ignored by readers and overwritten by the next append). ``durable``
        (default: the archive's) syncs the payload, then the trailer, so the
        entry survives a power cut once the block has exited; otherwise use
        [`sync()`][aiorecords.Archive.sync].

        Entering waits for any other append or read of this object, and
        with ``"rdwr"`` for other processes' appends; it raises
        [`ArchiveLocked`][aiorecords.errors.ArchiveLocked] if a ``"rdwr_exclusive"``
        writer holds the archive (unless the archive was opened with
        ``wait=True``), and [`ArchiveReadOnly`][aiorecords.errors.ArchiveReadOnly] for a
        read-only archive.
        """
        if compression is None and gzip:
            compression = "gzip"
        elif gzip and compression != "gzip":
            raise ValueError(f"gzip=True contradicts compression={compression!r}")
        codec = Codec.BY_NAME.get(compression, -1)
        if codec < 0:
            raise ValueError(
                f"compression must be gzip, zstd or None, not {compression!r}"
            )
        if not isinstance(name, str) or not isinstance(comment, str):
            raise TypeError("an entry name and comment are text (str)")
        if timestamp is None:
            timestamp = int(time.time())
        if durable and self._opened.publisher is not None:
            raise StorageNotSupported(
                f"{self.path}: an entry of an archive on object storage is "
                "durable once the archive is closed (the close publishes it)"
            )
        # Checks the name, comment and timestamp now, before anything waits.
        entry_strings(name, timestamp, comment)
        new = NewEntry(
            name,
            timestamp,
            comment,
            codec,
            data_gzip,
            self.durable if durable is None else durable,
        )
        return Appending(self._opened, new)

    async def flush(self) -> None:
        """Write every entry that write-behind has queued (see
        [`open()`][aiorecords.Archive.open]'s ``write_behind``): once this
        returns they are committed (to the page cache: `sync()` makes them
        survive a power cut). Does nothing without write-behind.

        Raises what a failed batch raised (its entries are lost).
        Cancellation: the batch being written is written all the same, and
        the cancellation raised after; entries not yet in it stay queued.
        """
        self._opened.writable("flush")
        await self._opened.flush_behind()

    async def sync(self) -> None:
        """Make every entry appended so far survive a power cut (``fdatasync``),
        writing write-behind's queue first.

        Cancellation: the sync still completes in its thread; the
        cancellation is raised after (entries still queued stay queued).
        """
        io = self._opened.writable("sync")
        if self._opened.publisher is not None:
            raise StorageNotSupported(
                f"{self.path}: an archive on object storage is durable once "
                "it is closed (the close publishes it)"
            )
        await self._opened.flush_behind()
        await self._opened.offload(io.datasync)

    async def keep_page_cache_clean(self) -> None:
        """Ask the kernel to drop this file's pages from its page cache
        (``posix_fadvise(DONTNEED)``), as a batch job reading a large archive
        once would. Does nothing for an archive in memory.

        Cancellation: harmless; the advice may or may not have been given.
        """
        storage = self._opened.live("advise the kernel")
        if isinstance(storage, _io.FileIO):
            await self._opened.offload(storage.advise_dont_need)


async def _open_storage(
    path: str,
    mode: Mode,
    wait: bool,
    durable: bool,
    remote: tuple[Any, dict[str, Any] | None] | None,
) -> Archive:
    storage: files.Storage
    if remote is not None and mode != "rdonly":
        return await _open_new_object(path, mode, wait, remote)
    if remote is not None:
        fs, options = remote
        found = await _remote.open_remote(path, fs=fs, storage_options=options)
        storage, path = files.RemoteArchive(found), found.url
    else:
        storage = await open_owned(
            files.open_archive, _close_of, path, mode != "rdonly"
        )
    archive = Archive(storage, path=path, mode=mode, durable=durable, wait=wait)
    try:
        await archive._opened.prepare()
    except BaseException:
        await archive._close_quietly()
        raise
    return archive


async def _open_new_object(
    url: str,
    mode: Mode,
    wait: bool,
    remote: tuple[Any, dict[str, Any] | None],
) -> Archive:
    # Built in a local file, streamed to a new object (see _publish).
    fs, options = remote
    try:
        upload = await start_upload(url, fs=fs, storage_options=options)
    except FileExistsError:
        raise StorageNotSupported(
            f"{url}: an archive on object storage cannot be appended to "
            '(open it "rdonly" to read it; write a new one beside it)'
        ) from None
    try:
        # In a worker thread, the name too: finding the temporary
        # directory may probe the disk the first time.
        storage = await open_owned(_open_temp_archive, _close_of, url)
    except BaseException:
        await upload.discard()
        raise
    archive = Archive(storage, path=upload.url, mode=mode, durable=False, wait=wait)
    opened = archive._opened
    opened.mode = "rdwr_exclusive"  # the local file is this object's alone
    opened.publisher = Publisher(upload, storage.path)
    try:
        await opened.prepare()
    except BaseException:
        await archive._close_quietly()
        raise
    return archive


class _Opening:
    """What [`Archive.open()`][aiorecords.Archive.open] returns: awaitable, or an async
    context."""

    __slots__ = ("_archive", "_args")

    def __init__(
        self,
        path: str,
        mode: Mode,
        wait: bool,
        durable: bool,
        remote: tuple[Any, dict[str, Any] | None] | None,
        write_behind: bool,
    ) -> None:
        self._args = (path, mode, wait, durable, remote, write_behind)
        self._archive: Archive | None = None

    def __await__(self) -> Generator[Any, None, Archive]:
        return Archive._open(*self._args).__await__()

    async def __aenter__(self) -> Archive:
        self._archive = await Archive._open(*self._args)
        return self._archive

    async def __aexit__(self, *exc_info: object) -> None:
        if self._archive is not None:
            await self._archive.close()


def _open_temp_archive(url: str) -> _io.FileIO:
    """A new archive file in the temporary directory, for one built there
    before it goes to ``url``."""
    return files.open_archive(_io.temp_name_local(url), True)


def _close_of(io: _io.FileIO) -> Callable[[], None]:
    return io.close
