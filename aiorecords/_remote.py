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
import re
import urllib.parse
from typing import Any, Final

from . import _io
from .errors import StorageError

__all__ = ["RemoteFile", "is_url", "local_path", "open_remote"]

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

    __slots__ = ("_close_fs", "fs", "is_async", "path", "size", "url")

    def __init__(self, fs: Any, path: str, url: str, size: int, close_fs: bool) -> None:
        self.fs = fs
        self.path = path
        self.url = url
        self.size = size
        self.is_async = bool(getattr(fs, "async_impl", False)) and bool(
            getattr(fs, "asynchronous", False)
        )
        self._close_fs = close_fs

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

    async def close(self) -> None:
        """Let go of a file system opened for this object (its sessions)."""
        fs, self._close_fs = (self.fs if self._close_fs else None), False
        if fs is None or not self.is_async:
            return
        # Async file systems hold client sessions bound to this loop.
        session = getattr(fs, "_session", None)  # HTTP (aiohttp)
        if session is not None:
            await session.close()
        creator = getattr(fs, "_s3creator", None)  # s3fs (aiobotocore)
        if creator is not None and hasattr(creator, "__aexit__"):
            await creator.__aexit__(None, None, None)


async def open_remote(
    url: str | None,
    *,
    fs: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> RemoteFile:
    """Open the object ``url`` names (or the path ``url`` on ``fs``).

    A file system made here from the URL is asynchronous where its kind can
    be (bound to the running loop) and is let go of by `RemoteFile.close()`;
    one given as ``fs`` is the caller's and is used as it is.

    Cancellation: nothing is left open.
    """
    if url is None:
        raise TypeError("a URL, or a path with fs=, is needed")
    close_fs = fs is None
    if fs is None:
        fsspec = _fsspec()
        protocol = urllib.parse.urlsplit(url).scheme
        try:
            kind = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as error:
            raise ImportError(f"{url}: {error}") from None
        options = dict(storage_options or {})
        if getattr(kind, "async_impl", False):
            options.update(asynchronous=True, loop=asyncio.get_running_loop())
        # A fresh instance: fsspec's cache would hand an async one bound to
        # another (perhaps closed) loop, or one from before a fork.
        options["skip_instance_cache"] = True
        fs, path = fsspec.core.url_to_fs(url, **options)
        if getattr(fs, "async_impl", False) and hasattr(fs, "set_session"):
            await fs.set_session()
    else:
        path = url
        url = f"{_protocol_of(fs)}://{path}" if "://" not in path else path
    remote = RemoteFile(fs, path, url, 0, close_fs)
    try:
        remote.size = await _object_size(remote)
    except BaseException:
        await remote.close()
        raise
    return remote


def _protocol_of(fs: Any) -> str:
    protocol = getattr(fs, "protocol", "fs")
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


async def _object_size(remote: RemoteFile) -> int:
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
    return int(size)
