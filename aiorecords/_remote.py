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
import sys
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeVar

from . import _io
from .errors import StorageError, StorageThrottled

__all__ = [
    "RemoteFile",
    "exists",
    "expand",
    "failure",
    "failures_named",
    "file_system",
    "is_async_fs",
    "is_remote",
    "is_url",
    "locate",
    "local_path",
    "open_remote",
    "retrieve",
]

S = TypeVar("S")

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


def locate(source: S, fs: Any) -> tuple[S | str, bool]:
    """``source`` as it is opened, and whether it is an object on an fsspec
    file system (a URL other than ``file://``, or anything given with
    ``fs``); a ``file://`` URL gives the local path it names."""
    if fs is not None or is_remote(source):
        return source, True
    if is_url(source):
        return local_path(str(source)) or source, False
    return source, False


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "reading a URL needs fsspec: pip install 'aiorecords[fsspec]'"
        ) from None
    return fsspec


@contextlib.contextmanager
def failures_named(
    operation: str, url: str, *, passing: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Raise what a file system raises inside as a typed error naming
    ``url`` (see `failure()`); ``passing`` errors go through as they are."""
    try:
        yield
    except passing:
        raise
    except Exception as error:
        raise failure(error, operation, url) from error


def is_async_fs(fs: Any) -> bool:
    """Whether ``fs`` is an fsspec file system to be awaited on the loop."""
    return bool(getattr(fs, "async_impl", False)) and bool(
        getattr(fs, "asynchronous", False)
    )


# What stores call "slow down": S3 and its imitators, GCS, Azure.
_THROTTLING: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestThrottled",
        "ServerBusy",
    }
)


def _is_throttling(error: BaseException) -> bool:
    """Whether ``error``, or one it was raised from, is a store's refusal
    to be asked so often (HTTP 429 or 503, or a throttling error code)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)  # botocore's ClientError
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _THROTTLING or status in (429, 503):
                return True
        # aiohttp's status, requests' status_code, gcsfs's code (aiohttp
        # deprecates its own code: never asked for where status is).
        status = getattr(current, "status", None)
        if status is None:
            status = getattr(current, "status_code", None)
        if status is None:
            status = getattr(current, "code", None)
        if status in (429, 503):
            return True
        current = current.__cause__ or current.__context__
    return False


def failure(error: Exception, operation: str, url: str) -> StorageError:
    """A typed error naming ``url`` for what the file system raised."""
    if _is_throttling(error):
        return StorageThrottled(
            OSError(16, "the store asked to slow down"), operation, url
        )
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
        self.is_async = is_async_fs(fs)

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
        with failures_named("read", self.url):
            if self.is_async:
                data = await self.fs._cat_file(self.path, start=offset, end=end)
            else:
                data = await _io.offload(self.fs.cat_file, self.path, offset, end)
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
    fs, path, url = await file_system(url, fs, storage_options)
    remote = RemoteFile(fs, path, url, 0)
    remote.size, remote.version = await _object_state(remote)
    return remote


async def file_system(
    url: str | None, fs: Any, storage_options: dict[str, Any] | None
) -> tuple[Any, str, str]:
    """The file system, the path on it and the URL (for messages) of
    ``url``, or of the path ``url`` on ``fs`` (see `open_remote()`).

    Cancellation: nothing is left made.
    """
    if url is None:
        raise TypeError("a URL, or a path with fs=, is needed")
    if fs is None:
        fs, path = await _file_systems().get(url, storage_options or {})
        return fs, path, url
    name = url if "://" in url else f"{_protocol_of(fs)}://{url}"
    return fs, url, name


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
        if "fsspec" in sys.modules:
            fsspec = _fsspec()
        else:  # its first import would stall the loop for tens of ms
            fsspec = await _io.offload(_fsspec)
        protocol = urllib.parse.urlsplit(url).scheme
        try:
            if protocol in fsspec.registry:  # imported already
                kind = fsspec.get_filesystem_class(protocol)
            else:
                # The first use imports the implementation (s3fs brings
                # aiobotocore and aiohttp: a third of a second of imports
                # that would stall the loop).
                kind = await _io.offload(fsspec.get_filesystem_class, protocol)
        except (ImportError, ValueError) as error:
            raise ImportError(f"{url}: {error}") from None
        if not getattr(kind, "async_impl", False):
            # Synchronous: fsspec's own instance cache serves. Made in a
            # worker thread: some connect as they are made (SFTP, FTP).
            with failures_named("open", url, passing=(TypeError,)):
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
                making.add_done_callback(retrieve)  # its waiters may all leave
                self.making[key] = making
            # Bad storage options (a profile that does not exist, a
            # malformed endpoint) fail here; a wrong keyword is the
            # caller's mistake and stays a TypeError.
            with failures_named("open", url, passing=(TypeError,)):
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
                if _is_s3fs(fs) and getattr(fs, "session", False) is None:
                    # Making the client reads botocore's JSON models (tens
                    # of ms); done in a worker thread, the loop's part of
                    # making it finds them read.
                    session_options = getattr(fs, "kwargs", {})
                    fs.session = await _io.offload(_read_s3_session, session_options)
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


def _is_s3fs(fs: Any) -> bool:
    return type(fs).__module__.split(".")[0] == "s3fs"


# What making an S3 client reads from botocore's data files: the service
# model and its endpoint rules, the partitions and the default settings.
_S3_MODELS = ("service-2", "endpoint-rule-set-1")
_BOTOCORE_DATA = ("endpoints", "partitions", "_retry", "sdk-default-configuration")


def _read_s3_session(session_options: dict[str, Any]) -> Any:
    """An aiobotocore session (made with s3fs's ``session_options``) whose
    data loader has read what making an S3 client needs; its loader keeps
    what it read. Blocking: run in a worker thread."""
    import aiobotocore.session

    session = aiobotocore.session.AioSession(**session_options)
    # Only a warm-up: what fails here fails, or not, where it matters.
    with contextlib.suppress(Exception):
        loader = session.get_component("data_loader")
        for model in _S3_MODELS:
            loader.load_service_model("s3", model)
        loader.list_available_services("service-2")
        for name in _BOTOCORE_DATA:
            loader.load_data(name)
        session.get_scoped_config()
    return session


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
    # Never a listing's cached entry (a glob leaves them; s3fs answers from
    # them): its fields can be stale, and typed otherwise than a HEAD's.
    fs.invalidate_cache(path)
    with failures_named("open", remote.url):
        if remote.is_async:
            info = await fs._info(path)
        else:
            info = await _io.offload(fs.info, path)
    if info.get("type") == "directory":
        raise StorageError(OSError(21, "is a directory"), "open", remote.url)
    size = info.get("size")
    if size is None:
        raise StorageError(OSError(5, "its size is not known"), "open", remote.url)
    version = tuple(_comparable(info.get(key)) for key in _VERSION_KEYS)
    return int(size), (int(size), *version)


def _comparable(value: Any) -> str:
    """A version field as text that is the same for the same state however
    it was learnt: a time as its instant (a listing and a HEAD give the
    same time in different zones)."""
    if hasattr(value, "timestamp") and hasattr(value, "tzinfo"):
        return repr(value.timestamp())
    return repr(value)


async def exists(fs: Any, path: str, url: str) -> bool:
    """Whether an object is at ``path`` on the async file system ``fs``.

    Cancellation: nothing changes.
    """
    try:
        with failures_named("open", url, passing=(FileNotFoundError,)):
            await fs._info(path)
    except FileNotFoundError:
        return False
    return True


async def expand(url: str, storage_options: dict[str, Any] | None) -> list[str]:
    """The objects ``url`` names, as sorted URLs: those a glob (``*``,
    ``?``, ``[``) matches, those directly under a "directory" (a URL ending
    in ``/``, or a prefix the store lists as one), or the URL itself.

    Cancellation: nothing changes.
    """
    fs, path, _ = await file_system(url, None, storage_options)
    protocol = urllib.parse.urlsplit(url).scheme
    is_glob = any(char in path for char in "*?[")
    if not is_glob and protocol in ("http", "https"):
        return [url]  # an HTTP server lists nothing; the URL is one object
    with failures_named("list", url):
        fs.invalidate_cache(path.split("*")[0].rsplit("/", 1)[0] or path)
        if is_async_fs(fs):
            found = await _listing(fs, path, is_glob)
        else:
            found = await _io.offload(_listing_now, fs, path, is_glob)
    if found is None:
        return [url]
    return sorted(fs.unstrip_protocol(name) for name in found)


async def _listing(fs: Any, path: str, is_glob: bool) -> list[str] | None:
    if is_glob:
        infos = await fs._glob(path, detail=True)
        return [name for name, info in infos.items() if info.get("type") == "file"]
    if not await fs._isdir(path):
        return None
    infos = await fs._ls(path, detail=True)
    return [info["name"] for info in infos if info.get("type") == "file"]


def _listing_now(fs: Any, path: str, is_glob: bool) -> list[str] | None:
    if is_glob:
        infos = fs.glob(path, detail=True)
        return [name for name, info in infos.items() if info.get("type") == "file"]
    if not fs.isdir(path):
        return None
    infos = fs.ls(path, detail=True)
    return [info["name"] for info in infos if info.get("type") == "file"]


def retrieve(task: asyncio.Future[Any]) -> None:
    # A request read ahead and dropped, or failed: its error is raised to
    # whoever awaits it, if anyone does; asyncio must not log it.
    if not task.cancelled():
        task.exception()
