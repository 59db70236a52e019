"""What every reader of framed records does, whatever the framing: the
machinery of `RecordsReader` (LevelDB logs) and `TFRecordReader`.

A reader drives a push-style decoder (the format's sans-IO core): it reads
the bytes the decoder wants, from a local file (a block the page cache
holds on the event loop, others in worker-thread hops), a range of an
object, or an async file object, feeds them, and hands out the records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Final, Protocol, TypeVar

from . import _io, _kernels, _ranges, _remote, _watch
from ._lifetime import CloseOnce, open_owned
from ._limits import DEFAULT_MAX_RECORD_SIZE
from ._scheduling import RECORDS_PER_TURN, let_others_run
from ._skipped import SkippedRegion
from .errors import ClosedError, CorruptRecordError, FileChangedError
from .records._log import BLOCK_SIZE

__all__ = ["AsyncReadable", "CorruptionCallback", "Decoder", "FramedReader", "Source"]

logger = logging.getLogger("aiorecords")

R = TypeVar("R", bound="FramedReader")

#: Bytes of records in a batch of ``batches()`` unless told otherwise.
DEFAULT_BATCH_BYTES: Final = 1024 * 1024
#: Records decoded at a time: a slice is short work for the event loop.
_DECODE_SLICE: Final = 500
#: Bytes the reader asks a worker thread for at a time (a whole number of
#: blocks); bytes in the page cache are read a block at a time without one.
DEFAULT_READ_SIZE: Final = BLOCK_SIZE
#: Bytes asked of object storage at a time: a request costs milliseconds,
#: so few and large (a whole number of blocks).
REMOTE_READ_SIZE: Final = 8 * 1024 * 1024
#: Bytes of a range fed to the decoder at a time.
_REMOTE_PIECE: Final = 4 * BLOCK_SIZE
#: A reader that never waits for a thread lets other tasks run once it has
#: decoded this many bytes, or RECORDS_PER_TURN records, since it last did.
_READER_YIELD_BYTES: Final = 256 * 1024


class AsyncReadable(Protocol):
    """An async file object a [`RecordsReader`][aiorecords.RecordsReader] can read
    from."""

    async def read(self, size: int, /) -> bytes: ...

    async def seek(self, offset: int, /) -> Any: ...

    async def tell(self) -> int: ...


Source = _io.PathLike | AsyncReadable


#: Called with each region of bytes the reader drops.
CorruptionCallback = Callable[[SkippedRegion], None]


class Decoder(Protocol):
    """A format's push-style decoder, as a reader drives it."""

    @property
    def wanted(self) -> int:
        """The offset of the next byte to feed."""

    @property
    def position(self) -> int:
        """Where the decoder stands (the end of the last record handed out)."""

    @property
    def finished(self) -> bool:
        """True once nothing more will be handed out."""

    @property
    def needs_end(self) -> bool:
        """True when only the end of the stream is still wanted (after damage
        the format cannot read past)."""

    @property
    def record_in_progress(self) -> tuple[int, bytes] | None:
        """The offset and first header of the record being assembled."""

    def feed(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def feed_eof(self, at: int | None = None, /) -> None: ...

    def discard_unread(self) -> None: ...

    def read_many(self, limit: int, /) -> list[Any]: ...


class FramedReader:
    """The machinery of a reader of framed records (LevelDB logs, TFRecord
    files): opening a path, a URL or a file object, feeding a push-style
    decoder block by block, following a growing file, seeking, closing.
    A format's reader gives the decoder (`_decoder_for`) and its docs."""

    #: The public class's name, for reprs.
    _kind: ClassVar[str] = "reader"

    def __init__(
        self,
        source: Source,
        *,
        start: int | None = None,
        stop: int | None = None,
        strict: bool = False,
        on_corruption: CorruptionCallback | None = None,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        read_size: int = DEFAULT_READ_SIZE,
        storage_options: dict[str, Any] | None = None,
        fs: Any = None,
        remote_read_size: int = REMOTE_READ_SIZE,
    ) -> None:
        if read_size < BLOCK_SIZE or read_size % BLOCK_SIZE:
            raise ValueError("read_size must be a whole number of 32 KiB blocks")
        if remote_read_size < BLOCK_SIZE or remote_read_size % BLOCK_SIZE:
            raise ValueError("remote_read_size must be a whole number of 32 KiB blocks")
        self.remote_read_size = remote_read_size
        # An fsspec object: a URL (not file://), or a path on ``fs``.
        self._url: str | None = None
        where, remote = _remote.locate(source, fs)
        if remote:
            if not isinstance(source, str):
                raise TypeError("with fs=, the source is a path on it")
            self._url = source
        else:
            source = where
        self._storage_options = storage_options
        self._fs = fs
        self._remote: _ranges.RangeCache | None = None
        self.strict = strict
        self.on_corruption = on_corruption
        self.max_record_size = max_record_size
        self.read_size = read_size
        self._source = source
        self._path = None if self._url is not None else _io.path_of(source)
        self._io: _io.FileIO | None = None
        self._start = start
        self._stop = stop
        self._decoder: Decoder | None = None
        self._pending: list[Any] = []  # records and SkippedRegions
        self._index = 0
        self._position = start or 0
        self._source_position = -1  # where a file object stands, if known
        self._lock = asyncio.Lock()
        self._closed = False
        self._close = CloseOnce()
        # The waits of this reader's followers: close() wakes them to end.
        self._followers: set[_watch.Watch] = set()
        # Work done on the loop since the reader last let other tasks run.
        self._unyielded_bytes = 0
        self._unyielded_records = 0

    def __repr__(self) -> str:
        return f"<{self._kind} {self.name}>"

    @property
    def name(self) -> str:
        """The path or URL read, or a description of the file object."""
        return self._path or self._url or repr(self._source)

    async def __aenter__(self: R) -> R:
        """Open the file (for a path) and return the reader."""
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the reader."""
        await self.close()

    async def _open(self) -> Decoder:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if self._decoder is None:
            if self._path is not None and self._io is None:
                io = await open_owned(_open_for_reading, _close_of, self._path)
                if self._closed:
                    # Closed while it opened: nobody else will close this.
                    await _io.run_to_completion(io.close)
                    raise ClosedError(f"{self!r} was closed while it opened")
                self._io = io
            elif self._url is not None and self._remote is None:
                remote = await _remote.open_remote(
                    self._url, fs=self._fs, storage_options=self._storage_options
                )
                if self._closed:
                    await remote.close()
                    raise ClosedError(f"{self!r} was closed while it opened")
                self._remote = _ranges.RangeCache(
                    remote, self.remote_read_size, forward=True
                )
            start = self._start
            if start is None and self._path is None and self._url is None:
                start = await self._source.tell()  # type: ignore[union-attr]
                self._source_position = start
            self._new_decoder(start or 0)
        assert self._decoder is not None
        return self._decoder

    def _new_decoder(self, start: int) -> None:
        self._decoder = self._decoder_for(start, self._stop, self.max_record_size)
        self._pending = []
        self._index = 0
        self._position = start

    async def _fill(self, follow: bool) -> bool:
        """Decode the next records, reading the next bytes first if needed.

        Bytes the page cache holds are read here a block at a time
        (`read_cached()` never waits for the
        disk); others are read by a worker thread, ``read_size`` at a time,
        or by the file object. Decoding is light in-memory work done here.
        False when nothing more can come.
        """
        if (
            self._unyielded_bytes >= _READER_YIELD_BYTES
            or self._unyielded_records >= RECORDS_PER_TURN
        ):
            # All of this reader's work has been on the loop for a while (a
            # block holds up to 4,096 records: checked per slice, not block).
            self._unyielded_bytes = self._unyielded_records = 0
            await let_others_run()
        decoder = await self._open()
        self._index = 0
        self._pending = decoder.read_many(_DECODE_SLICE)
        if self._pending or decoder.finished:
            self._unyielded_records += len(self._pending)
            return bool(self._pending)
        if follow:
            decoder.discard_unread()  # a writer may rewrite a torn tail
        data, at_end = await self._read_at(decoder.wanted)
        if follow and data and not await self._still_in_progress(decoder):
            # The record being assembled was cut off and written over (a
            # writer restarting after a crash): read again from the end of
            # the last record given out, never joining old and new bytes.
            self._new_decoder(self._position)
            return True
        if data:
            decoder.feed(data)
        if at_end and not follow:
            decoder.feed_eof()
        elif decoder.needs_end:
            # Damage the format cannot read past: the rest of the file is
            # lost, and reading it only to learn where it ends is not needed.
            end = await self._stream_end()
            if end is not None:
                decoder.feed_eof(end)
        self._pending = decoder.read_many(_DECODE_SLICE)
        self._unyielded_records += len(self._pending)
        return bool(self._pending) or not decoder.finished

    async def _read_at(self, wanted: int) -> tuple[bytes | bytearray, bool]:
        """The bytes from ``wanted`` on (a block the page cache holds, a
        chunk read by a worker thread, a piece of a range of an object, or
        a read of the file object), and whether they reach the end."""
        data: bytes | bytearray | None
        if self._io is not None:
            data = self._io.read_cached(wanted, self.read_size)
            if data is not None:
                self._unyielded_bytes += len(data)
                return data, not data  # a short cached read may be partial
            data = await _io.offload(self._io.pread, wanted, self.read_size)
            self._unyielded_bytes = self._unyielded_records = 0
            return data, len(data) < self.read_size
        if self._remote is not None:
            # Fed a piece at a time, as a local file's blocks are: decoding
            # a whole range at once would hold the loop for milliseconds.
            data = await self._remote.piece(wanted, _REMOTE_PIECE)
            self._unyielded_bytes += len(data)
            return data, wanted + len(data) >= self._remote.remote.size
        if self._source_position != wanted:
            await self._source.seek(wanted)  # type: ignore[union-attr]
        data = await self._source.read(self.read_size)  # type: ignore[union-attr]
        self._source_position = wanted + len(data)
        return data, len(data) < self.read_size

    async def _stream_end(self) -> int | None:
        """The size of the file or object now (None for a file object)."""
        if self._io is not None:
            return await _io.offload(self._io.size)
        if self._remote is not None:
            return self._remote.remote.size
        return None

    async def _still_in_progress(self, decoder: Decoder) -> bool:
        """False if the FIRST fragment of the record being assembled is no
        longer in the file as it was read. Checked after reading the bytes
        that would continue it: if it still holds then, they were written
        after it by the same writer."""
        progress = decoder.record_in_progress
        if progress is None or self._io is None:
            return True
        start, header = progress
        cached = self._io.read_cached(start, len(header))
        if cached is not None and len(cached) == len(header):
            return cached == header
        return await _io.offload(self._io.pread, start, len(header)) == header

    async def _check_followed_file(self) -> None:
        """Before a follower waits: raise FileChangedError if its path now
        names another file or the file was cut short of what was given out;
        re-read from the last record given out if it was cut short of what
        was read, or the record being assembled is no longer there (a torn
        tail cut off by a restarting writer)."""
        if self._io is None or self._path is None or self._decoder is None:
            return
        io, path = self._io, self._path
        named, size = await _io.offload(lambda: (_io.still_named(io, path), io.size()))
        if not named:
            raise FileChangedError(
                "another file took its name while it was followed",
                path=path,
                change="replaced",
            )
        if size < self._position:
            raise FileChangedError(
                f"cut to {size} bytes while followed past offset {self._position}",
                path=path,
                change="truncated",
            )
        if size < self._decoder.wanted or not await self._still_in_progress(
            self._decoder
        ):
            # Bytes read are gone (a torn tail cut off by a restarting
            # writer): never join what was read to what is written next.
            # The size alone does not tell: a record torn just past a block
            # boundary, cut off and replaced by a shorter one padded to
            # that boundary, leaves the file as long as what was read.
            self._new_decoder(self._position)

    def _check_open(self) -> None:
        """Raise ClosedError once close() has begun (records decoded before
        it are not handed out after it)."""
        if self._closed:
            raise ClosedError(f"{self!r} is closed")

    def _report(self, region: SkippedRegion) -> None:
        logger.warning(
            "%s: dropped %d bytes at offset %d: %s",
            self.name,
            region.length,
            region.start,
            region.reason,
        )
        if self.strict:
            raise CorruptRecordError(region.reason, path=self.name, offset=region.start)
        if self.on_corruption is not None:
            self.on_corruption(region)

    async def _next(self, follow: bool) -> bytes | None:
        """The next record; None at the end (or, following, when it must wait)."""
        while True:
            pending = self._pending
            while self._index < len(pending):
                item = pending[self._index]
                self._index += 1
                if type(item) is tuple:
                    self._position = item[2]
                    return bytes(item[0])
                self._report(item)
            if not await self._fill(follow):
                return None
            if follow and not self._pending:
                return None

    async def read(self) -> bytes:
        """The next record; `EOFError` at the end, as in the seed.

        Cancellation: nothing is lost; a chunk read already in a worker
        thread finishes, and the next call goes on from where this one was.
        """
        async with self._lock:
            self._check_open()
            record = await self._next(follow=False)
        if record is None:
            raise EOFError(f"no more records in {self.name}")
        return record

    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for record in reader``: the records to the end of the file."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            pending = self._pending
            # Records already decoded are handed out without the lock; the
            # lock only guards reading and decoding the next chunk.
            while self._index < len(pending):
                self._check_open()
                item = pending[self._index]
                self._index += 1
                if type(item) is tuple:
                    self._position = item[2]
                    yield item[0]
                else:
                    self._report(item)
                if self._pending is not pending:
                    break  # seek() started over
            else:
                async with self._lock:
                    stale = self._pending is pending and self._index >= len(pending)
                    if stale and not await self._fill(follow=False):
                        return

    def batches(
        self, batch_bytes: int = DEFAULT_BATCH_BYTES
    ) -> AsyncIterator[list[bytes]]:
        """``async for batch in reader.batches()``: the records to the end of
        the file, as lists, the way ``async for`` gives them one by one.

        A list holds the records decoded from what was read in one step (a
        block of the page cache, ``read_size`` bytes from the disk, a piece
        of an object's range), and is closed earlier once its records reach
        ``batch_bytes`` bytes (1 MiB unless told; one record may take it
        past) and before a damaged region is reported (to ``on_corruption``,
        or raised with ``strict=True``), so that the records before the
        damage arrive first. A list is handed out before the reader waits
        for more bytes, so none is lost to an error of that read. Handing
        out lists, not records, saves a step per record.

        Cancellation: nothing is lost; a chunk read already in a worker
        thread finishes, and the reader goes on after the last list handed
        out.
        """
        if batch_bytes <= 0:
            raise ValueError("batch_bytes must be positive")
        return _batches(self, batch_bytes)

    async def tell(self) -> int:
        """The offset just past the last record read (or where reading starts).

        ``seek(tell())`` goes on with the next record.

        Cancellation: nothing happens.
        """
        async with self._lock:
            self._check_open()
            await self._open()
        return self._position

    async def seek(self, offset: int) -> None:
        """Go to ``offset``: the next record read is the first one whose first
        fragment starts at or after it (LevelDB's initial offset).

        Cancellation: nothing happens, or the reader is at ``offset``.
        """
        if offset < 0:
            raise ValueError("offset cannot be negative")
        async with self._lock:
            self._check_open()
            await self._open()
            self._new_decoder(offset)

    async def follow(self) -> AsyncIterator[bytes]:
        """Yield the records, then wait for more as the file grows.

        At the end of the file it waits: a [`RecordsWriter`][aiorecords.RecordsWriter]
        of this process wakes it as soon as it has written to the file, and the file
        is looked at for other processes' writes at intervals doubling from
        1 ms to 100 ms while nothing comes. It yields each record only once
        it is whole and its checksums hold: never a half-written one. The
        iteration ends at ``stop`` if one was given, otherwise never.

        ``close()`` ends it cleanly, at once: a follower waiting for the
        file to grow is woken.

        Cancellation: cancelling the iterating task ends it cleanly; a read
        already in a worker thread finishes first.
        """
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if self._url is not None:
            raise ValueError(
                f"{self._url}: follow() reads local files and file objects; "
                "an object in storage is read to its end with async for"
            )
        backoff = _watch.Backoff()
        key = _io.canonical_path(self._path) if self._path is not None else ""
        with _watch.watching(key) as watch:
            self._followers.add(watch)
            try:
                while not self._closed:
                    async with self._lock:
                        if self._closed:
                            return  # close() came while this waited
                        record = await self._next(follow=True)
                        finished = self._decoder is not None and self._decoder.finished
                        if record is None and not finished:
                            await self._check_followed_file()
                    if record is not None:
                        backoff.reset()
                        yield record
                        continue
                    if finished:
                        return
                    if not await watch.wait(backoff.delay):
                        backoff.longer()
            finally:
                self._followers.discard(watch)

    async def close(self) -> None:
        """Close the reader and a file it opened (a file object stays open).
        A read under way in another task finishes first; later calls raise
        [`ClosedError`][aiorecords.errors.ClosedError].

        Cancellation: the close runs to its end all the same; the
        cancellation is raised afterwards.
        """
        if self._close.begun:
            await self._close.wait()
            return
        self._closed = True
        for watch in self._followers:  # they end now, cleanly
            watch.wake()
        await self._close.begin(self._close_now())

    async def _close_now(self) -> None:
        async with self._lock:
            if self._io is not None:
                (await _io.run_to_completion(self._io.close))[0].unwrap()
            if self._remote is not None:
                await self._remote.close()
                await self._remote.remote.close()

    def _decoder_for(
        self, start: int, stop: int | None, max_record_size: int
    ) -> Decoder:
        """The format's decoder, reading from ``start``."""
        raise NotImplementedError


async def _batches(
    reader: FramedReader, batch_bytes: int
) -> AsyncIterator[list[bytes]]:
    """`FramedReader.batches()` (outside the class, for the class's size)."""
    take = _kernels.fast_take_records
    batch: list[bytes] = []
    size = 0
    while True:
        pending = reader._pending
        if reader._index >= len(pending):
            if batch:
                # Handed out before the reader waits for more: a list is
                # never lost to a cancellation or an error of that wait.
                yield batch
                batch, size = [], 0
                continue
            async with reader._lock:
                stale = reader._pending is pending and reader._index >= len(pending)
                if stale and not await reader._fill(follow=False):
                    break
            continue
        reader._check_open()
        index, taken = take(pending, reader._index, batch_bytes - size, batch)
        if index > reader._index:
            reader._position = pending[index - 1][2]
        reader._index = index
        size += taken
        at_region = index < len(pending) and type(pending[index]) is not tuple
        if size < batch_bytes and not at_region:
            continue  # the next slice joins this list
        if batch:
            yield batch
            batch, size = [], 0
            if reader._pending is not pending or reader._index != index:
                continue  # seek() started over
        if at_region:
            reader._index = index + 1
            reader._report(pending[index])
    if batch:
        yield batch


def _open_for_reading(path: str) -> _io.FileIO:
    return _io.open_file(path, writable=False)


def _close_of(io: _io.FileIO) -> Callable[[], None]:
    return io.close
