"""An open capture file: its descriptor and what is known of the file.

`open_capture()` opens (or creates) the file in a worker thread and reads its
newest commit; the [`OpenFile`][aiorecords.capture._opened.OpenFile] it
returns lives until the facade closes it. It is the one holder of the
descriptor: every thread hop that uses it is counted (`InFlight`), and
`close()` waits for them before the descriptor is closed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .. import _io, _ranges, _remote, _watch
from .._cache import block_cache
from .._lifetime import InFlight, open_owned
from .._limits import DEFAULT_MAX_RECORD_SIZE
from ..errors import (
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CorruptionError,
    InvalidCaptureFile,
    RecordNotText,
    StorageNotSupported,
)
from ._layout import Layout, MasterNode, MasterNodesInconsistent
from ._threads import BlockReader, create_file, finish_walk, open_existing, read_state
from ._writer import ReadView

__all__ = [
    "FORMAT_MAX_RECORD",
    "OpenFile",
    "Settings",
    "check_arguments",
    "load_state",
    "open_capture",
    "read_commit",
    "refuse_follow_on_storage",
    "release",
    "storage_of",
]

T = TypeVar("T")

# Delays between reads of the master nodes when they look inconsistent, which
# a reader can see while a writer is committing.
_MASTER_RETRY_DELAYS: Final = (0.0, 0.001, 0.01, 0.1, 1.0)

# A capture file on object storage is read in ranges this large, the last
# few held: a lookup's index path costs a range per level it misses. A
# stream reads larger ranges, two ahead.
_REMOTE_RANGE: Final = 1024 * 1024
_REMOTE_RANGES_HELD: Final = 16
_STREAM_RANGE: Final = 8 * 1024 * 1024

# Files open for writing in this process, by canonical path. Weak, so that an
# object dropped without close() does not keep its path reserved.
_writers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


#: The largest record the format can hold (its sizes are 32-bit).
FORMAT_MAX_RECORD: Final = 0xFFFFFFFF


def check_arguments(
    compression: str, max_record_size: int, max_pending_appends: int
) -> None:
    """Raise `ValueError` for constructor arguments out of range."""
    if compression not in ("zstd", "zlib"):
        raise ValueError(f"compression must be 'zstd' or 'zlib', not {compression!r}")
    if not 0 < max_record_size <= FORMAT_MAX_RECORD:
        raise ValueError(f"max_record_size must be in 1..{FORMAT_MAX_RECORD}")
    if max_pending_appends < 1:
        raise ValueError("max_pending_appends must be at least 1")


@dataclass(frozen=True, slots=True)
class Settings:
    """What a `CaptureFile` was asked for, as its parts need it."""

    file_name: str
    encoding: str | None
    use_os_file_locking: bool
    durable: bool
    max_record_size: int
    discard_damaged_commit: bool
    new_layout: Layout
    initial_metadata: bytes | None
    storage: tuple[Any, dict[str, Any] | None] | None = None
    """For a file on an fsspec file system: its ``fs`` (or None) and
    ``storage_options``; None for a local file."""

    @property
    def store_encoding(self) -> str:
        """How ``str`` records are encoded (UTF-8 when no encoding is set)."""
        return self.encoding or "utf_8"

    def corrupt(self, error: CorruptionError) -> CorruptionError:
        """The same error, naming this file."""
        if isinstance(error, RecordNotText):
            return RecordNotText(
                error.reason, error, path=self.file_name, offset=error.offset
            )
        return type(error)(error.reason, path=self.file_name, offset=error.offset)


class OpenFile:
    """The descriptor of an open capture file, and its last known commit."""

    def __init__(
        self,
        settings: Settings,
        io: _io.FileIO | _ranges.HeldFile,
        path_key: str,
        state: tuple[Layout, MasterNode, int, str | None],
    ) -> None:
        self.settings = settings
        self.io = io
        self.path_key = path_key
        """The canonical path: the key of in-process wake-ups."""
        self.layout, self.master, self.size, self.damage = state
        self.view = ReadView.of(self.master, self.layout.fan_out)
        """What a reader reads: the commit it opened or last refreshed at."""
        self.namespace = block_cache.namespace()
        self.in_flight = InFlight()
        self.followers: set[_watch.Watch] = set()
        """The waits of this file's followers: close() wakes them to end."""
        self.live = True
        """False from the moment close() begins: no new call may start."""

    def check(self, action: str) -> None:
        """Raise `CaptureFileNotOpen` once close() has begun."""
        if not self.live:
            raise CaptureFileNotOpen(
                f"cannot {action} {self.settings.file_name!r} because it is not open"
            )

    def limit(self, view: ReadView) -> int:
        """The most a data block of this file may decompress to."""
        layout = self.layout
        if layout.native and view.max_block:
            return view.max_block
        return (
            layout.block_size + 4 + max(self.settings.max_record_size, layout.node_size)
        )

    @property
    def remote(self) -> _ranges.HeldFile | None:
        """What a file on object storage is read through; None if local."""
        return self.io if isinstance(self.io, _ranges.HeldFile) else None

    def reader(self, view: ReadView, keep: int | None = None) -> BlockReader:
        """A block reader of ``view``, for one worker-thread hop or stream
        (``keep``: the blocks a stream remembers). A stream of a file on
        object storage reads it through ranges of its own, read ahead:
        close it with `end_stream()`."""
        io = self.io
        if keep is not None and isinstance(io, _ranges.HeldFile):
            io = _ranges.HeldFile(
                _ranges.RangeCache(
                    io.ranges.remote, _STREAM_RANGE, keep=2, forward=True
                )
            )
        return BlockReader(
            io, self.layout, view, self.namespace, self.limit(view), keep
        )

    async def end_stream(self, reader: BlockReader) -> None:
        """Let go of what a stream's reader holds (its ranges, remotely).

        Cancellation: it is let go of all the same.
        """
        if reader.io is not self.io and isinstance(reader.io, _ranges.HeldFile):
            await reader.io.close()

    async def walk(self, steps: Any, position: int | None, reader: BlockReader) -> Any:
        """Run an index walk or a stream's batch (``position``: the block
        it wants, None if not started) to its end in worker-thread hops:
        one, for a local file; for a file on object storage, one per range
        missed, each fetched on the loop in between.

        Cancellation: the walk is left part-way and must not be resumed.
        """
        io = reader.io
        if isinstance(io, _ranges.HeldFile):

            async def step(where: int | None) -> Any:
                self.check("read")
                return await self.in_flight.offload(finish_walk, steps, where, reader)

            return await _ranges.until_held(step, io, position)
        return await self.in_flight.offload(finish_walk, steps, position, reader)

    def keep(self, blocks: dict[int, bytes]) -> None:
        """Put blocks a worker thread read in the shared block cache."""
        for position, block in blocks.items():
            block_cache.put(self.namespace, position, block)

    async def load(
        self, for_write: bool, layout: Layout | None
    ) -> tuple[Layout, MasterNode, int, str | None]:
        """Read the newest commit (see `load_state()`)."""
        return await load_state(self.settings, self.io, layout, for_write)

    async def refresh(self) -> None:
        """Catch up with the commits made since the last load (for a file
        on object storage: if the object changed)."""
        remote = self.remote
        if remote is not None:
            if not await remote.ranges.remote.refresh():
                return
            # Another object now: nothing read of the old one is used.
            remote.ranges.forget()
            block_cache.drop(self.namespace)
            self.namespace = block_cache.namespace()
        with self.in_flight.held():
            _, master, _, damage = await self.load(False, self.layout)
        self.damage = damage
        self.master = master
        self.view = ReadView.of(master, self.layout.fan_out)

    async def close(self) -> None:
        """Wake the followers, wait for the work in flight and close the
        descriptor (once ``live`` is false)."""
        for watch in self.followers:  # they end now, cleanly
            watch.wake()
        await self.in_flight.idle()
        block_cache.drop(self.namespace)
        if isinstance(self.io, _ranges.HeldFile):
            await self.io.close()
            return
        outcome, _ = await _io.run_to_completion(self.io.close)
        outcome.unwrap()


def release(path_key: str, owner: object) -> None:
    """Free ``owner``'s place as the writer of a file in this process."""
    if _writers.get(path_key) is owner:
        del _writers[path_key]


async def open_capture(
    settings: Settings, owner: object, to_write: bool, create: bool
) -> OpenFile:
    """Open the file (creating it when ``create``, or when opening for write
    a file that does not exist) and read its newest commit.

    ``owner`` is the object that will hold the writer's place in this
    process. Cancellation: nothing is left open, no file half made.
    """
    name = settings.file_name
    if settings.storage is not None:
        return await _open_remote(settings, to_write or create)
    path = _io.canonical_path(name)
    if (to_write or create) and _writers.get(path) is not None:
        raise CaptureFileAlreadyOpen(f"capture file {name!r} is already open for write")
    if to_write:
        _writers[path] = owner
    try:
        if create or (to_write and not _io.is_file(path)):
            io, layout, master, size = await open_owned(
                create_file,
                _close_of_first,
                path,
                settings.new_layout,
                settings.initial_metadata,
                settings.durable,
                settings.use_os_file_locking,
                to_write,
                settings.max_record_size,
            )
            state: tuple[Layout, MasterNode, int, str | None] = (
                layout,
                master,
                size,
                None,
            )
        else:
            io = await open_owned(
                open_existing,
                _close_of,
                path,
                to_write,
                settings.use_os_file_locking,
            )
            try:
                state = await load_state(settings, io, None, to_write)
            except BaseException:
                await _io.run_to_completion(io.close)
                raise
    except BaseException:
        if to_write and _writers.get(path) is owner:
            del _writers[path]
        raise
    return OpenFile(settings, io, path, state)


def storage_of(
    file_name: str, fs: Any, options: dict[str, Any] | None, to_write: bool
) -> tuple[str, tuple[Any, dict[str, Any] | None] | None]:
    """The file name (a ``file://`` URL's path) and, for a file on an fsspec
    file system, what `Settings.storage` holds. Writing there is refused."""
    where, remote = _remote.locate(file_name, fs)
    if remote:
        if to_write:
            _refuse_writing(file_name)
        return str(where), (fs, options)
    if options is not None:
        raise TypeError("storage_options is for URLs of fsspec file systems")
    return str(where), None


def _refuse_writing(name: str) -> None:
    raise StorageNotSupported(
        f"{name}: a capture file on an fsspec file system is read-only "
        "(its commits rewrite master nodes in place, which object storage "
        "cannot do): write it locally, then upload it whole"
    )


def refuse_follow_on_storage(opened: OpenFile) -> None:
    """Raise StorageNotSupported for follow() of a file on object storage."""
    if opened.remote is not None:
        raise StorageNotSupported(
            f"{opened.settings.file_name}: follow() watches a local file; an "
            "object on storage does not grow (use refresh() to see a new one)"
        )


async def _open_remote(settings: Settings, to_write: bool) -> OpenFile:
    """Open a capture file on an fsspec file system, to read it."""
    name = settings.file_name
    if to_write:
        _refuse_writing(name)
    assert settings.storage is not None
    fs, options = settings.storage
    remote = await _remote.open_remote(name, fs=fs, storage_options=options)
    held = _ranges.HeldFile(
        _ranges.RangeCache(remote, _REMOTE_RANGE, keep=_REMOTE_RANGES_HELD)
    )
    try:
        state = await load_state(settings, held, None, False)
    except BaseException:
        await held.close()
        raise
    return OpenFile(settings, held, remote.url, state)


def _close_of(io: _io.FileIO) -> Callable[[], None]:
    return io.close


def _close_of_first(
    opened: tuple[_io.FileIO, Layout, MasterNode, int],
) -> Callable[[], None]:
    return opened[0].close


async def read_commit(
    path: str, storage: tuple[Any, dict[str, Any] | None] | None = None
) -> tuple[Layout, MasterNode]:
    """The layout and newest readable commit of the capture file at
    ``path`` (on an fsspec file system, with ``storage``: see
    `Settings.storage`), for inspecting it (``aiorecords info``)."""
    settings = Settings(
        file_name=path,
        encoding=None,
        use_os_file_locking=False,
        durable=False,
        max_record_size=DEFAULT_MAX_RECORD_SIZE,
        discard_damaged_commit=False,
        new_layout=Layout(True),
        initial_metadata=None,
        storage=storage,
    )
    if storage is not None:
        opened = await _open_remote(settings, False)
        await opened.close()
        return opened.layout, opened.master
    io = await open_owned(open_existing, _close_of, path, False, False)
    try:
        layout, master, _, _ = await load_state(settings, io, None, False)
    finally:
        await _io.run_to_completion(io.close)
    return layout, master


async def load_state(
    settings: Settings,
    io: _io.FileIO | _ranges.HeldFile,
    layout: Layout | None,
    for_write: bool,
) -> tuple[Layout, MasterNode, int, str | None]:
    """Read the first page (unless ``layout`` is known) and the current
    master node. A writer refuses a file whose newest commit is unreadable
    unless ``discard_damaged_commit`` (its first commit would overwrite it).

    Both master nodes can look inconsistent to a reader while a writer
    commits, so that is read again (after a pause) before it is believed;
    but once two reads in a row see the same bytes, nothing is changing
    them, and the damage is real.
    """
    last: MasterNodesInconsistent | None = None
    for delay in _MASTER_RETRY_DELAYS:
        if delay:
            await asyncio.sleep(delay)
        try:
            if isinstance(io, _ranges.HeldFile):
                state = await _ranges.until_held(
                    lambda _: _io.offload(read_state, io, layout, False, True), io
                )
            else:
                state = await _io.offload(
                    read_state, io, layout, settings.use_os_file_locking, not for_write
                )
        except MasterNodesInconsistent as error:
            if last is not None and error.observed == last.observed:
                break
            last = error
            continue
        except CorruptionError as error:
            raise settings.corrupt(error) from None
        damage = state[3]
        if for_write and damage is not None and not settings.discard_damaged_commit:
            raise InvalidCaptureFile(
                f"the newest commit cannot be read ({damage}); opening for "
                "write would overwrite it. Read it at the commit before, or "
                "pass discard_damaged_commit=True to write on from there",
                path=settings.file_name,
                offset=state[1].file_limit,
            )
        return state
    assert last is not None
    raise settings.corrupt(last)
