"""What every writer of framed records does, whatever the framing: the
machinery of `RecordsWriter` (LevelDB logs) and `TFRecordWriter`.

Records are framed in memory by the format's encoder (per-record work on
the event loop) and written a buffer at a time: one worker-thread hop per
buffer to a local file (`aiorecords._io`), a part at a time to an object
(`aiorecords._upload`), or a ``write()`` of an async file object.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Final, Protocol, TypeVar

from . import _io, _kernels, _remote, _watch
from ._kernels import UNLIMITED, record_bytes
from ._lifetime import CloseOnce
from ._scheduling import RECORDS_PER_TURN, let_others_run
from ._upload import Upload, start_upload
from .errors import (
    ClosedError,
    RecordsLocked,
    StorageError,
    StorageNotSupported,
    WriterFailedError,
)

__all__ = ["AsyncWritable", "Encoder", "FramedWriter", "Target"]

logger = logging.getLogger("aiorecords")

W = TypeVar("W", bound="FramedWriter")

#: Bytes gathered in memory before the writer hands them to the file.
DEFAULT_BUFFER_SIZE: Final = 1024 * 1024
#: A writer that never waits for I/O lets other tasks run once it has framed
#: this many bytes, or RECORDS_PER_TURN records, since it last did.
_YIELD_EVERY: Final = 128 * 1024


class AsyncWritable(Protocol):
    """An async file object a [`RecordsWriter`][aiorecords.RecordsWriter] or
    [`TFRecordWriter`][aiorecords.TFRecordWriter] can write to."""

    async def write(self, data: bytes, /) -> Any: ...


Target = _io.PathLike | AsyncWritable


class Encoder(Protocol):
    """A format's framing of records into a buffer, as a writer drives it."""

    def encode(self, data: bytes | bytearray | memoryview, out: bytearray, /) -> Any:
        """Append the framed record ``data`` to ``out``."""

    def encode_many(
        self,
        records: Sequence[bytes | bytearray | memoryview | str],
        start: int,
        stop: int,
        out: bytearray,
        max_bytes: int,
        /,
    ) -> int:
        """Append ``records[start:stop]`` framed to ``out`` until it has grown
        by ``max_bytes``; the index reached."""


Records = Sequence[bytes | bytearray | memoryview | str]


class FramedWriter:
    """The machinery of a writer of framed records: opening (new, appended
    to or replacing a file; a new object), buffering, flushing, syncing,
    closing. A format's writer gives the encoder (`_encoder_for`), where an
    existing file's last whole record ends (`_valid_end`) and its docs."""

    #: The public class's name, for reprs and messages.
    _kind: ClassVar[str] = "writer"
    #: Whether the bytes framed are converted (compressed) before they go
    #: to the file, by `_converted` in a worker thread.
    _converts: bool = False
    #: Whether the close's last flush runs even with nothing buffered.
    _finishes: bool = False

    def __init__(
        self,
        target: Target,
        *,
        append: bool = False,
        replace: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        storage_options: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> None:
        if buffer_size <= 0:
            raise ValueError("buffer_size must be positive")
        if append and replace:
            raise ValueError("append=True and replace=True contradict each other")
        self.append = append
        """Whether an existing file is continued."""
        self.replace = replace
        """Whether an existing file is replaced by a new one."""
        self.buffer_size = buffer_size
        where, remote = _remote.locate(target, fs)
        # An fsspec object: a URL (not file://), or a path on ``fs``.
        self._url: str | None = None
        if remote:
            if not isinstance(target, str):
                raise TypeError("with fs=, the target is a path on it")
            if append:
                raise StorageNotSupported(
                    f"{target}: an object cannot be appended to (object stores "
                    "have no append); write a new log beside it"
                )
            self._url = target
        else:
            target = where
        self._fs = fs
        self._storage_options = storage_options
        self._upload: Upload | None = None
        self._target = target
        self._path = _io.path_of(target)
        self._io: _io.FileIO | None = None
        self._encoder: Encoder | None = None if self._path else self._encoder_for(0)
        self._buffer = bytearray()
        self._spare = bytearray()
        # The buffer length at which write() next flushes, or lets others run.
        self._next_check = min(buffer_size, _YIELD_EVERY)
        # Records framed since other tasks last had the loop.
        self._unyielded_records = 0
        self._offset = 0  # file offset of the first buffered byte
        self._lock = asyncio.Lock()
        self._closed = False
        self._close = CloseOnce()
        self._failed: BaseException | None = None
        self._watch_key = ""  # the canonical path, once opened

    def __repr__(self) -> str:
        name = self._path or repr(self._target)
        return f"<{self._kind} {name}{' closed' if self._closed else ''}>"

    async def __aenter__(self: W) -> W:
        """Open the file (for a path) and return the writer."""
        await self._ready()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Pad (if asked), flush and close."""
        await self.close()

    async def _ready(self) -> Encoder:
        if self._closed:
            raise ClosedError(f"{self!r} is closed")
        if self._failed is not None:
            raise WriterFailedError(
                f"an earlier I/O error ({self._failed}) left {self!r} "
                "in an unknown state"
            ) from self._failed
        if self._encoder is None:
            async with self._lock:
                if self._closed:  # closed while this task waited
                    raise ClosedError(f"{self!r} is closed")
                if self._encoder is None and self._url is not None:
                    await self._start_upload()
                elif self._encoder is None:
                    assert self._path is not None
                    outcome, cancelled = await _io.run_to_completion(
                        self._open_for_writing, self._path
                    )
                    # Kept even if this task was cancelled meanwhile: the file
                    # may be one this writer just created, which opening again
                    # would refuse (and close() holds the lock we hold, so it
                    # closes what is kept here).
                    if outcome.error is not None and cancelled is not None:
                        raise cancelled
                    self._io, size = outcome.unwrap()
                    self._watch_key = _io.canonical_path(self._path)
                    self._offset = size
                    self._encoder = self._encoder_for(size)
                    if cancelled is not None:
                        raise cancelled
        encoder = self._encoder
        assert encoder is not None  # set above, under the lock
        return encoder

    async def _start_upload(self) -> None:
        assert self._url is not None
        self._upload = await start_upload(
            self._url,
            fs=self._fs,
            storage_options=self._storage_options,
            replace=self.replace,
        )
        self._encoder = self._encoder_for(0)

    async def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Write one record (``str`` is written as UTF-8).

        The record is framed in memory; once ``buffer_size`` bytes are
        gathered they are written in one worker-thread hop (or one
        ``write()`` of the file object). A writer that is never made to wait
        still lets other tasks run every 128 KiB or 500 records.

        Cancellation: the record is written (it is in the buffer) even if the
        call is cancelled while the buffer is being written out; that write
        finishes first.
        """
        encoder = self._encoder
        if encoder is None or self._closed or self._failed is not None:
            encoder = await self._ready()
        buffer = self._buffer
        encoder.encode(data if type(data) is bytes else record_bytes(data), buffer)
        self._unyielded_records += 1
        if (
            len(buffer) >= self._next_check
            or self._unyielded_records >= RECORDS_PER_TURN
        ):
            await self._buffer_grew()

    async def _buffer_grew(self) -> None:
        """The buffer has reached ``_next_check``, or many records were framed
        without a pause: write the buffer out if full, otherwise let other
        tasks run (no task may hold the loop for long)."""
        size = len(self._buffer)
        if size >= self.buffer_size:
            await self._flush_buffer()
        else:
            self._next_check = min(self.buffer_size, size + _YIELD_EVERY)
            self._unyielded_records = 0
            await let_others_run()

    async def write_many(
        self, records: Iterable[bytes | bytearray | memoryview | str]
    ) -> int:
        """Write records in order, as many calls of
        [`write()`][aiorecords.RecordsWriter.write] would, with less work per record
        (one call, one check of the writer's state per buffer rather than per record);
        return how many were written.

        The records are framed as the iterable yields them, so it may be a
        generator of any length: memory holds at most ``buffer_size`` bytes
        of them at once. Other tasks run every 128 KiB or 500 records, and
        other tasks' records may land between these.

        Cancellation: the records framed before the cancellation are written
        (they are in the buffer), in order; the rest are not, and are still
        in the iterable (none is taken from it without being framed before
        the call next waits). A write of the buffer already handed to a
        worker thread finishes first.
        """
        encoder = self._encoder
        if encoder is None or self._closed or self._failed is not None:
            encoder = await self._ready()
        if isinstance(records, (list, tuple)):
            return await _write_sequence(self, encoder, records)
        if _kernels.compiled is None:
            return await _write_each(self, encoder, records)
        return await _write_pieces(self, encoder, iter(records))

    async def _flush_buffer(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self, final: bool = False) -> None:
        """Write the buffer out (``final``: the last time, at the close);
        the caller holds the lock."""
        if not self._buffer and not (final and self._finishes):
            return
        if self._io is not None and self._io.closed:
            # Never reached: close() takes no record after it begins and
            # flushes before it closes. Never write to a closed descriptor
            # (its number may already be another file's).
            raise ClosedError(f"{self!r} is closed")
        # Two buffers take turns, so that their memory is reused rather than
        # allocated (and faulted in) afresh for every flush. Records written
        # while this one is out go to the other.
        data, self._buffer = self._buffer, self._spare
        self._next_check = min(self.buffer_size, _YIELD_EVERY)
        self._unyielded_records = 0
        offset = self._offset
        side = self._side_data()
        cancelled: asyncio.CancelledError | None = None
        try:
            if self._io is not None:
                outcome, cancelled = await _io.run_to_completion(
                    self._write_out, self._io, offset, data, final, side
                )
                if outcome.error is not None:
                    self._failed = outcome.error
                    raise outcome.error
                self._offset += outcome.unwrap()
                _watch.notify(self._watch_key)
            elif self._upload is not None:
                try:
                    out, cancelled = await self._converted_off_loop(data, final)
                    # Sent even if cancelled while it was converted: the
                    # records were taken (and a compressor consumed them).
                    await self._upload.write(out)
                except asyncio.CancelledError:
                    raise  # the data was taken; a part under way was sent
                except BaseException as error:
                    self._failed = error
                    raise
            else:
                try:
                    out, cancelled = await self._converted_off_loop(data, final)
                    await self._target.write(bytes(out))  # type: ignore[union-attr]
                except BaseException as error:
                    # Written, partly written or not: the file object cannot
                    # say, so nothing more is written through this writer.
                    self._failed = error
                    raise
        finally:
            # Whatever happened, the written buffer becomes the spare again:
            # the two must never be one object (a cancelled flush once left
            # them so, and records written later were lost with it).
            del data[:]
            self._spare = data
        if cancelled is not None:
            raise cancelled

    async def flush(self) -> None:
        """Write what is buffered to the file (not yet durable: see
        [`sync()`][aiorecords.RecordsWriter.sync]).

        Cancellation: a write already handed to a worker thread finishes.
        """
        await self._ready()
        await self._flush_buffer()

    async def sync(self) -> None:
        """Flush, then ``fdatasync``: once this returns, every record written
        so far survives a power cut. A file object is flushed and, if it has
        ``fileno()``, synced through it. A writer closed before the sync can
        run raises [`ClosedError`][aiorecords.errors.ClosedError] (its records were
        written by the close, but not synced).

        On object storage nothing is durable before the close (the
        commit): this raises
        [`StorageNotSupported`][aiorecords.errors.StorageNotSupported], and the
        writer goes on.

        Cancellation: a write or sync already in a worker thread finishes;
        what is then synced is not known to the caller (sync again).
        """
        await self._ready()
        if self._upload is not None:
            raise StorageNotSupported(
                f"{self._url}: an object is written whole; its records are "
                "durable once the writer is closed (the close is the commit)"
            )
        async with self._lock:
            if self._io is not None and self._io.closed:
                raise ClosedError(f"{self!r} was closed before it could sync")
            await self._flush_locked()
            if self._io is not None:
                outcome, cancelled = await _io.run_to_completion(self._io.datasync)
            else:
                flush = getattr(self._target, "flush", None)
                if flush is not None:
                    await flush()
                fileno = getattr(self._target, "fileno", None)
                if fileno is None:
                    return
                outcome, cancelled = await _io.run_to_completion(
                    _io.datasync_descriptor, fileno(), repr(self._target)
                )
            if outcome.error is not None:
                # Never retried: the kernel may have dropped the pages it
                # could not write, and a second fdatasync would report
                # success for data that is not on the disk.
                self._failed = outcome.error
            if cancelled is not None:
                raise cancelled
            outcome.unwrap()

    async def close(self) -> None:
        """Write what the format ends with (a log's padding, with
        ``pad_last_block``; the end of a compressed stream), flush, and close a file
        this writer opened (a file object given to it stays open). Closing
        twice does nothing; a second ``close()`` while the first runs waits
        for it.

        Every record a write call accepted before the close began is written
        (but not synced: call [`sync()`][aiorecords.RecordsWriter.sync] first for that).
        A flush or sync of another task already under way finishes first; one that had
        not begun raises [`ClosedError`][aiorecords.errors.ClosedError].

        On object storage the close completes the upload: the object
        appears now, or, if the upload fails (or the name was taken
        meanwhile: `FileExistsError`), never, and the error is raised.

        Cancellation: the close runs to its end all the same (no descriptor
        is left open, none closed under a running write; an upload is
        completed or aborted); the cancellation is raised afterwards.
        """
        if self._close.begun:
            await self._close.wait()
            return
        # From now on no record is taken (write() raises ClosedError); those
        # already framed, by this or any other task, are written.
        self._closed = True
        await self._close.begin(self._close_now())

    async def _close_now(self) -> None:
        async with self._lock:
            try:
                encoder = self._encoder
                if self._failed is None and encoder is not None:
                    self._buffer += self._closing_bytes(encoder)
                    await self._flush_locked(final=True)
            finally:
                if self._io is not None:
                    (await _io.run_to_completion(self._io.close))[0].unwrap()
            if self._upload is not None:
                if self._failed is None:
                    await self._upload.commit()
                    return
                try:
                    await self._upload.discard()
                except StorageError as error:
                    # The write's error was raised already; the parts sent
                    # are the store's to reap (its lifecycle rules).
                    logger.warning("%s: could not abort the upload: %s", self, error)

    # ------------------------------------------------------------------
    # What a format gives

    def _encoder_for(self, size: int) -> Encoder:
        """The format's encoder, for a file whose records end at ``size``."""
        raise NotImplementedError

    def _closing_bytes(self, encoder: Any) -> bytes:
        """What the format writes at the close, before the last flush."""
        return b""

    @staticmethod
    def _valid_end(io: _io.FileIO, size: int) -> int:
        """Where the last whole record of an existing file ends (run in a
        worker thread, to append after it)."""
        raise NotImplementedError

    def _converted(self, data: bytearray, final: bool) -> bytes | bytearray:
        """The bytes that go to the file for ``data`` (run in a worker
        thread when it converts)."""
        return data

    def _side_data(self) -> Any:
        """Taken on the loop with each buffer, for `_write_out`."""
        return None

    def _write_out(
        self, io: _io.FileIO, offset: int, data: bytearray, final: bool, side: Any
    ) -> int:
        """Write a buffer at ``offset`` (in a worker thread); the bytes the
        file grew by."""
        out = self._converted(data, final) if self._converts else data
        io.pwrite(offset, out)
        return len(out)

    async def _converted_off_loop(
        self, data: bytearray, final: bool
    ) -> tuple[bytes | bytearray, asyncio.CancelledError | None]:
        """``data`` converted in a worker thread (if the format converts),
        and the cancellation that came meanwhile: the conversion finishes
        all the same, and its output must still be written."""
        if not self._converts:
            return data, None
        outcome, cancelled = await _io.run_to_completion(self._converted, data, final)
        return outcome.unwrap(), cancelled

    def _open_for_writing(self, path: str) -> tuple[_io.FileIO, int]:
        """Open ``path`` for records at its end (in a worker thread)."""
        return open_for_writing(
            path, self.append, self.replace, self._valid_end, self._kind
        )


# A byte far past any real end of file, locked (an OFD lock, so it also
# excludes other writers in this process) by the writer of a log.
_WRITER_BYTE: Final = (1 << 63) - 32


def _take_writer_lock(io: _io.FileIO, kind: str) -> None:
    """Hold the writer byte of ``io``'s file, or raise RecordsLocked. A file
    system that cannot lock is tolerated (as LevelDB's log itself is)."""
    try:
        held = io.lock(_WRITER_BYTE, 1, exclusive=True, wait=False)
    except StorageError:
        return
    if not held:
        raise RecordsLocked(f"{io.path!r} is being written by another {kind}")


def _exists(path: str) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST,
        "a file of that name exists: pass append=True to continue the log "
        "in it, or replace=True to replace it",
        path,
    )


def _publish(temp: str, path: str, replace: bool) -> None:
    """Give the new log its name: replacing any file there, or only if the
    name is free (never clobbering a file created meanwhile)."""
    if replace:
        _io.replace(temp, path)
    else:
        published = _io.publish_new(temp, path)
        _io.unlink_quietly(temp)
        if not published:
            raise _exists(path)
    _io.sync_directory(path)


def open_for_writing(
    path: str,
    append: bool,
    replace: bool,
    valid_end: Callable[[_io.FileIO, int], int],
    kind: str,
) -> tuple[_io.FileIO, int]:
    """Open ``path`` for writing records at its end; return it and that end
    (``valid_end`` finds it in an existing file)."""
    if not append and not replace and _io.exists(path):
        raise _exists(path)
    if _io.is_file(path) and (append or replace):
        io = _io.open_file(path, writable=True)
        try:
            _take_writer_lock(io, kind)
            if not append:
                # Replaced below; checked first so that a live writer's file
                # is never swapped from under it.
                io.close()
            else:
                size = io.size()
                end = valid_end(io, size)
                if end != size:
                    logger.warning(
                        "%s: cut %d bytes of a torn record at offset %d before "
                        "appending",
                        path,
                        size - end,
                        end,
                    )
                    io.truncate(end)
                return io, end
        except BaseException:
            io.close()
            raise
    temp = _io.create_temp_beside(path)
    try:
        _take_writer_lock(temp, kind)
        temp.sync()
        _publish(temp.path, path, replace)
    except BaseException:
        temp.close()
        _io.unlink_quietly(temp.path)
        raise
    temp.path = path
    return temp, 0


# write_many's three ways (outside the class, for the class's size). Each
# makes the writer's checks (a flush; a turn for other tasks) where as many
# write() calls would, and takes no record from the iterable that it does
# not frame before it next waits: a cancellation loses none of them.


async def _write_sequence(
    writer: FramedWriter, encoder: Encoder, records: Records
) -> int:
    """A list or tuple: framed in runs up to each check, in one call each."""
    index = 0
    while index < len(records):
        buffer = writer._buffer
        reached = encoder.encode_many(
            records,
            index,
            index + max(1, RECORDS_PER_TURN - writer._unyielded_records),
            buffer,
            max(1, writer._next_check - len(buffer)),
        )
        writer._unyielded_records += reached - index
        index = reached
        encoder = await _after_check(writer, encoder)
    return index


async def _write_pieces(
    writer: FramedWriter, encoder: Encoder, records: Iterator[Any]
) -> int:
    """Any other iterable, with the compiled kernels: taken a piece at a
    time, each piece no more than the room before the next check, then
    framed whole in one call."""
    written = 0
    while True:
        piece = _piece(
            records,
            max(1, RECORDS_PER_TURN - writer._unyielded_records),
            writer._next_check - len(writer._buffer),
        )
        if not piece:
            return written
        encoder.encode_many(piece, 0, len(piece), writer._buffer, UNLIMITED)
        written += len(piece)
        writer._unyielded_records += len(piece)
        encoder = await _after_check(writer, encoder)


def _piece(records: Iterator[Any], count: int, size: int) -> list[Any]:
    """Up to ``count`` records from ``records``, fewer once they reach
    ``size`` bytes (str counted by characters: the checks are thresholds)."""
    piece: list[Any] = []
    total = 0
    for data in records:
        piece.append(data)
        if len(piece) >= count:
            break
        try:
            total += len(data)
        except TypeError:
            break  # not a record: the encoder raises for it, after the rest
        if total >= size:
            break
    return piece


async def _after_check(writer: FramedWriter, encoder: Encoder) -> Encoder:
    """The writer's check, if one is due (a flush; a turn for other tasks),
    and the encoder to go on with: another task may have closed the writer
    meanwhile, or a flush swapped the buffers. (write() and `_write_each`,
    per record, keep the test inline.)"""
    if (
        len(writer._buffer) >= writer._next_check
        or writer._unyielded_records >= RECORDS_PER_TURN
    ):
        await writer._buffer_grew()
        return await writer._ready()
    return encoder


async def _write_each(
    writer: FramedWriter, encoder: Encoder, records: Iterable[Any]
) -> int:
    """Any other iterable, on the pure-Python path: one record at a time
    (collecting pieces would cost more than it saves there)."""
    encode = encoder.encode
    buffer = writer._buffer
    written = 0
    for data in records:
        encode(data if type(data) is bytes else record_bytes(data), buffer)
        written += 1
        writer._unyielded_records += 1
        if (
            len(buffer) >= writer._next_check
            or writer._unyielded_records >= RECORDS_PER_TURN
        ):
            await writer._buffer_grew()
            encode = (await writer._ready()).encode
            buffer = writer._buffer
    return written
