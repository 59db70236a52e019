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

from .. import _io, _remote, _watch
from .._cache import block_cache
from .._lifetime import InFlight, open_owned
from .._limits import DEFAULT_MAX_RECORD_SIZE
from ..errors import (
    CaptureFileAlreadyOpen,
    CaptureFileNotOpen,
    CorruptionError,
    InvalidCaptureFile,
    RecordNotText,
)
from ._layout import Layout, MasterNode, MasterNodesInconsistent
from ._threads import BlockReader, create_file, open_existing, read_state
from ._writer import ReadView

__all__ = [
    "FORMAT_MAX_RECORD",
    "OpenFile",
    "Settings",
    "check_arguments",
    "load_state",
    "open_capture",
    "read_commit",
    "release",
]

T = TypeVar("T")

# Delays between reads of the master nodes when they look inconsistent, which
# a reader can see while a writer is committing.
_MASTER_RETRY_DELAYS: Final = (0.0, 0.001, 0.01, 0.1, 1.0)

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
        io: _io.FileIO,
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

    def reader(self, view: ReadView, keep: int | None = None) -> BlockReader:
        """A block reader of ``view``, for one worker-thread hop or stream."""
        return BlockReader(
            self.io, self.layout, view, self.namespace, self.limit(view), keep
        )

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
        """Catch up with the commits made since the last load."""
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
    _remote.refuse_storage(name, "a capture file")
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


def _close_of(io: _io.FileIO) -> Callable[[], None]:
    return io.close


def _close_of_first(
    opened: tuple[_io.FileIO, Layout, MasterNode, int],
) -> Callable[[], None]:
    return opened[0].close


async def read_commit(path: str) -> tuple[Layout, MasterNode]:
    """The layout and newest readable commit of the capture file at
    ``path``, for inspecting it (``aiorecords info``)."""
    settings = Settings(
        file_name=path,
        encoding=None,
        use_os_file_locking=False,
        durable=False,
        max_record_size=DEFAULT_MAX_RECORD_SIZE,
        discard_damaged_commit=False,
        new_layout=Layout(True),
        initial_metadata=None,
    )
    io = await open_owned(open_existing, _close_of, path, False, False)
    try:
        layout, master, _, _ = await load_state(settings, io, None, False)
    finally:
        await _io.run_to_completion(io.close)
    return layout, master


async def load_state(
    settings: Settings, io: _io.FileIO, layout: Layout | None, for_write: bool
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
