"""Files on an fsspec file system: object storage, HTTP, memory, ...

The storage seam for bytes that do not live on a local disk. A
`RemoteFile` reads byte ranges of one object, awaited on the event loop
when its file system is asynchronous (fsspec's ``AsyncFileSystem``, with
``asynchronous=True``: s3fs, gcsfs, adlfs, HTTP), or in a worker thread, one
hop per range, when it is not (memory, SFTP, ...). Cores never see which.

fsspec is an optional dependency (``aiorecords[fsspec]``): it is imported
only when a URL or a file system is given. ``file://`` URLs name local
files and keep the local code path (`local_path()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar, cast

from . import _io
from ._wants import Read, Steps
from .errors import StorageError, StorageNotSupported

__all__ = [
    "RangeCache",
    "answer_reads_held",
    "RemoteFile",
    "is_remote",
    "is_url",
    "local_path",
    "open_remote",
    "refuse_storage",
]

R = TypeVar("R")

_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(source: object) -> bool:
    """Whether ``source`` is a URL for fsspec (``file://`` ones included)."""
    return isinstance(source, str) and _URL.match(source) is not None


def local_path(source: str) -> str | None:
    """The local path a ``file://`` URL names; None for other URLs."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme.lower() != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return urllib.parse.unquote(parsed.path)


def is_remote(source: object) -> bool:
    """Whether ``source`` is a URL of an fsspec file system other than a
    ``file://`` one (those name local files)."""
    return is_url(source) and local_path(str(source)) is None


def refuse_storage(path: object, what: str) -> None:
    """Raise StorageNotSupported if ``path`` is a URL of an fsspec file
    system (not ``file://``): ``what`` is not done there yet."""
    if is_url(path) and local_path(str(path)) is None:
        raise StorageNotSupported(
            f"{path}: {what} on object storage is not supported yet (LevelDB "
            "logs are read there: see the storage guide)"
        )


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "reading a URL needs fsspec: pip install 'aiorecords[fsspec]'"
        ) from None
    return fsspec


def _failure(error: Exception, operation: str, url: str) -> StorageError:
    """A typed error naming ``url`` for what the file system raised."""
    if isinstance(error, OSError) and error.errno is not None:
        os_error = error
    elif isinstance(error, FileNotFoundError):
        os_error = OSError(2, "no such object")
    elif isinstance(error, PermissionError):
        os_error = OSError(13, "permission denied")
    else:
        os_error = OSError(5, f"{type(error).__name__}: {error}")
    return StorageError(os_error, operation, url)


class RemoteFile:
    """One object on an fsspec file system, read by byte ranges."""

    __slots__ = ("fs", "is_async", "path", "size", "url", "version")

    def __init__(self, fs: Any, path: str, url: str, size: int) -> None:
        self.fs = fs
        self.path = path
        self.url = url
        self.size = size
        self.version: tuple[Any, ...] = (size,)
        """What tells one state of the object from another: its size, and
        its ETag or modification time where the file system gives them."""
        self.is_async = bool(getattr(fs, "async_impl", False)) and bool(
            getattr(fs, "asynchronous", False)
        )

    def __repr__(self) -> str:
        return f"<RemoteFile {self.url}>"

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)``, fewer only where the object ends.

        Cancellation: an awaited request is cancelled with it; a worker
        thread's finishes, its bytes dropped.
        """
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        try:
            if self.is_async:
                data = await self.fs._cat_file(self.path, start=offset, end=end)
            else:
                data = await _io.offload(self.fs.cat_file, self.path, offset, end)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise _failure(error, "read", self.url) from error
        if len(data) != end - offset:
            raise StorageError(
                OSError(
                    5, f"asked for {end - offset} bytes at {offset}, got {len(data)}"
                ),
                "read",
                self.url,
            )
        return bytes(data)

    async def refresh(self) -> bool:
        """Look at the object again; True if it changed (its size, ETag or
        modification time), and then `size` is its new size.

        Cancellation: nothing changes.
        """
        size, version = await _object_state(self)
        if version == self.version:
            return False
        self.size, self.version = size, version
        return True

    async def close(self) -> None:
        """Nothing to let go of: the file system is shared or the caller's
        (kept so that every storage closes the same way)."""


async def open_remote(
    url: str | None,
    *,
    fs: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> RemoteFile:
    """Open the object ``url`` names (or the path ``url`` on ``fs``).

    A file system made here from the URL is, where its kind can be,
    asynchronous and bound to the running loop, shared by the loop's readers
    of the same kind and options, and let go of (its client sessions
    closed) when the loop shuts its async generators down, as
    ``asyncio.run()`` does. One given as ``fs`` is the caller's and is used
    as it is.

    Cancellation: nothing is left open.
    """
    if url is None:
        raise TypeError("a URL, or a path with fs=, is needed")
    if fs is None:
        fs, path = await _file_systems().get(url, storage_options or {})
    else:
        path = url
        url = f"{_protocol_of(fs)}://{path}" if "://" not in path else path
    remote = RemoteFile(fs, path, url, 0)
    remote.size, remote.version = await _object_state(remote)
    return remote


class _LoopFileSystems:
    """The async file systems made for one event loop, by kind and options.

    They are closed by an async generator the loop holds: a loop shutting
    its async generators down (``asyncio.run()`` does, before it closes
    the loop) closes them, while the loop can still run their closing."""

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}
        self.making: dict[str, asyncio.Future[Any]] = {}
        self._keeper = self._keep()
        self._started = False

    async def _keep(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            made, self.made = self.made, {}
            for fs in made.values():
                with contextlib.suppress(Exception):
                    await _close_file_system(fs)

    async def get(self, url: str, options: dict[str, Any]) -> tuple[Any, str]:
        fsspec = _fsspec()
        protocol = urllib.parse.urlsplit(url).scheme
        try:
            kind = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as error:
            raise ImportError(f"{url}: {error}") from None
        if not getattr(kind, "async_impl", False):
            # Synchronous: fsspec's own instance cache serves. Made in a
            # worker thread: some connect as they are made (SFTP, FTP).
            fs, path = await _io.offload(
                functools.partial(fsspec.core.url_to_fs, url, **options)
            )
            return fs, path
        key = json.dumps([protocol, options], sort_keys=True, default=repr)
        if key not in self.made:
            if not self._started:
                self._started = True
                await self._keeper.__anext__()  # now the loop holds it
            if key not in self.making:
                making = asyncio.ensure_future(self._make(url, options, key))
                making.add_done_callback(_retrieve)  # its waiters may all leave
                self.making[key] = making
            await asyncio.shield(self.making[key])
        fs = self.made[key]
        return fs, fs._strip_protocol(url)

    async def _make(self, url: str, options: dict[str, Any], key: str) -> None:
        try:
            fs, _ = _fsspec().core.url_to_fs(
                url,
                asynchronous=True,
                loop=asyncio.get_running_loop(),
                # Not fsspec's cache: it could give one bound to another loop.
                skip_instance_cache=True,
                **options,
            )
            if hasattr(fs, "set_session"):
                await fs.set_session()
            self.made[key] = fs
        finally:
            del self.making[key]


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopFileSystems] = (
    weakref.WeakKeyDictionary()
)


def _file_systems() -> _LoopFileSystems:
    loop = asyncio.get_running_loop()
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = _LoopFileSystems()
    return found


async def _close_file_system(fs: Any) -> None:
    """Close the client sessions an async file system holds."""
    session = getattr(fs, "_session", None)  # HTTP (aiohttp)
    if session is not None:
        await session.close()
    creator = getattr(fs, "_s3creator", None)  # s3fs (aiobotocore)
    if creator is not None and hasattr(creator, "__aexit__"):
        await creator.__aexit__(None, None, None)


def _protocol_of(fs: Any) -> str:
    protocol = getattr(fs, "protocol", "fs")
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


# What file systems call an object's version (s3fs, gcsfs, adlfs, HTTP,
# local and memory ones), in the order looked at.
_VERSION_KEYS: Final = (
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "LastModified",
    "last_modified",
    "updated",
    "mtime",
    "created",
)


async def _object_state(remote: RemoteFile) -> tuple[int, tuple[Any, ...]]:
    fs, path = remote.fs, remote.path
    try:
        if remote.is_async:
            info = await fs._info(path)
        else:
            info = await _io.offload(fs.info, path)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        raise _failure(error, "open", remote.url) from error
    if info.get("type") == "directory":
        raise StorageError(OSError(21, "is a directory"), "open", remote.url)
    size = info.get("size")
    if size is None:
        raise StorageError(OSError(5, "its size is not known"), "open", remote.url)
    version = tuple(repr(info.get(key)) for key in _VERSION_KEYS)
    return int(size), (int(size), *version)


class RangeCache:
    """An object read in aligned ranges of ``size`` bytes, the last
    ``keep`` of them held in memory.

    A miss that continues a run (the range after, or before, the one missed
    last) also requests the next ``depth`` ranges that way, so that the
    store works while the caller decodes: reading forward streams, and so
    does walking an archive back from its end; a jump requests one range.
    Memory: at most ``keep + depth`` ranges.

    `held()` may be called from a worker thread (it only looks); the rest
    runs on the event loop.
    """

    __slots__ = (
        "_ahead",
        "_forward",
        "_held",
        "_run",
        "depth",
        "keep",
        "remote",
        "size",
    )

    def __init__(
        self,
        remote: RemoteFile,
        size: int,
        *,
        depth: int = 2,
        keep: int = 1,
        forward: bool = False,
    ) -> None:
        if size <= 0 or keep < 1 or depth < 0:
            raise ValueError("a range cache needs size > 0, keep >= 1, depth >= 0")
        self.remote = remote
        self.size = size
        self.depth = depth
        self.keep = keep
        self._held: dict[int, bytes] = {}  # by range index, oldest first
        self._ahead: dict[int, asyncio.Task[bytes]] = {}
        # Where the run of misses is: a reader that streams forward says so
        # (``forward``), so that its first miss reads ahead too.
        self._forward = forward
        self._run: tuple[int, int] | None = None  # the ranges missed last

    def held(self, offset: int, size: int) -> bytes | None:
        """Bytes ``[offset, offset + size)`` (fewer where the object ends) if
        the ranges held cover them, else None."""
        end = min(offset + size, self.remote.size)
        if offset >= end:
            return b""
        first, last = offset // self.size, (end - 1) // self.size
        if first == last:
            data = self._held.get(first)
            if data is None:
                return None
            at = offset - first * self.size
            return data[at : at + end - offset]
        parts = []
        for index in range(first, last + 1):
            data = self._held.get(index)
            if data is None:
                return None
            parts.append(data)
        at = offset - first * self.size
        return b"".join(parts)[at : at + end - offset]

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)``, fewer only where the object
        ends.

        Cancellation: requests go on and serve the next call.
        """
        end = min(offset + size, self.remote.size)
        if offset >= end:
            return b""
        first, last = offset // self.size, (end - 1) // self.size
        self._ask(first, last)
        for index in range(first, last + 1):
            await self._take(index)
        found = self.held(offset, size)
        if found is None:  # more ranges than are kept: read it whole
            return await self.remote.read(offset, size)
        return found

    async def piece(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes at ``offset``, from one range (fewer at its
        end or the object's; b"" at the object's end), without a copy of
        the range when the piece is all of it.

        Cancellation: requests go on and serve the next call.
        """
        if offset >= self.remote.size:
            return b""
        index, at = divmod(offset, self.size)
        data = await self.range(index)
        if at == 0 and limit >= len(data):
            return data
        return data[at : at + limit]

    async def range(self, index: int) -> bytes:
        """The range ``index`` (bytes ``[index * size, (index + 1) * size)``).

        Cancellation: its request goes on and serves the next call.
        """
        self._ask(index, index)
        return await self._take(index)

    def _ask(self, first: int, last: int) -> None:
        # Request the ranges first to last not held; and if they continue
        # the run of misses (forward or back), the next depth ranges too.
        missing = [
            i
            for i in range(first, last + 1)
            if i not in self._held and i not in self._ahead
        ]
        if not missing:
            return
        for index in missing:
            self._ahead[index] = self._start(index)
        low, high = missing[0], missing[-1]
        run, self._run = self._run, (low, high)
        if run is None and self._forward:
            run = (low - 1, low - 1)
        if run is None:
            return
        if low == run[1] + 1:
            later = range(high + 1, high + 1 + self.depth)
        elif high == run[0] - 1:
            later = range(low - 1, low - 1 - self.depth, -1)
        else:
            return  # a jump
        count = -(-self.remote.size // self.size)
        for index in later:
            if 0 <= index < count and index not in self._ahead | self._held.keys():
                self._ahead[index] = self._start(index)

    async def _take(self, index: int) -> bytes:
        data = self._held.get(index)
        if data is not None:
            self._held[index] = self._held.pop(index)  # now the newest
            return data
        task = self._ahead.get(index)
        if task is None:  # dropped meanwhile (a jump elsewhere): again
            task = self._ahead[index] = self._start(index)
        try:
            data = await asyncio.shield(task)  # cancelled: it stays for next time
        finally:
            if task.done() and self._ahead.get(index) is task:
                del self._ahead[index]
        self._held[index] = data
        while len(self._held) > self.keep:
            del self._held[next(iter(self._held))]
        self._drop_stale(index)
        return data

    def forget(self) -> None:
        """Let go of every range held or asked for (the object changed)."""
        self._cancel(list(self._ahead))
        self._held.clear()
        self._run = None

    def _drop_stale(self, index: int) -> None:
        # Ranges read ahead for a run the reader has left are of no use.
        reach = self.depth + self.keep
        self._cancel([i for i in self._ahead if abs(i - index) > reach])

    def _cancel(self, indexes: list[int]) -> None:
        for i in indexes:
            self._ahead.pop(i).cancel()

    def _start(self, index: int) -> asyncio.Task[bytes]:
        task = asyncio.ensure_future(self.remote.read(index * self.size, self.size))
        task.add_done_callback(_retrieve)
        return task

    async def close(self) -> None:
        """Cancel the requests in flight and wait for them to end.

        Cancellation: they are cancelled all the same.
        """
        tasks = list(self._ahead.values())
        self.forget()
        if tasks:
            await asyncio.wait(tasks)  # their outcomes are retrieved, not raised


async def answer_reads_held(
    steps: Steps[Read, R],
    ranges: RangeCache,
    offload: Callable[..., Awaitable[Any]],
) -> R:
    """Run a push-style core over an object: in worker-thread hops (made by
    ``offload(function, *args)``) while ``ranges`` holds what it wants, and
    on the event loop, awaiting the store, for each read it does not.

    One hop per range missed, plus one: a walk over what is held never
    holds the loop, and no thread ever waits for the network.

    Cancellation: ``steps`` is left part-way and must not be resumed.
    """
    data: bytes | None = None  # sending None first starts the generator
    while True:
        want, done, result = await offload(_run_while_held, steps, ranges, data)
        if done:
            return cast(R, result)
        data = await ranges.read(want.offset, want.size)


def _run_while_held(
    steps: Steps[Read, Any], ranges: RangeCache, data: bytes | None
) -> tuple[Read | None, bool, Any]:
    # In a worker thread: run the core until it wants what is not held.
    try:
        want = steps.send(data)  # type: ignore[arg-type]
        while (held := ranges.held(want.offset, want.size)) is not None:
            want = steps.send(held)
    except StopIteration as finished:
        return None, True, finished.value
    return want, False, None


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A request read ahead and dropped, or failed: its error is raised to
    # whoever awaits it, if anyone does; asyncio must not log it.
    if not task.cancelled():
        task.exception()
