"""The one I/O layer: every system call aiorecords makes on a file is here.

Two halves:

* `FileIO` and the module functions are *blocking* primitives
  (positional reads and writes, syncs, truncation, byte-range locks, durable
  creation). They run only inside worker threads.
* `offload()` and `run_to_completion()` move a blocking call off the
  event loop. A call handed to a thread is never abandoned: if the awaiting
  task is cancelled, it still waits for the thread to finish, because the
  thread may be writing through a descriptor that ``close()`` would otherwise
  release under it (``loop.run_in_executor`` abandons the thread on cancel).

Every primitive reports itself to the registered observers before it runs
(see `add_observer()`), which is how the test suites count fsyncs, record
crash traces and inject faults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import glob
import os
import re
import secrets
import stat
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

from ._scheduling import running_loop
from .errors import ClosedError, StorageError

__all__ = [
    "Change",
    "FileIO",
    "Outcome",
    "add_observer",
    "add_recorder",
    "allow_cached_reads",
    "canonical_path",
    "PathEscape",
    "create_temp_inside",
    "publish_file",
    "create_temp_beside",
    "datasync_descriptor",
    "expand_paths",
    "file_identity",
    "file_size",
    "same_file",
    "still_named",
    "temp_name_beside",
    "temp_name_local",
    "is_file",
    "offload",
    "open_file",
    "path_of",
    "publish_new",
    "read_head",
    "remove_observer",
    "remove_recorder",
    "silence_stdout",
    "replace",
    "run_to_completion",
    "sync_directory",
    "unlink_quietly",
]

T = TypeVar("T")

#: Called as ``observer(operation, path, offset, length)`` before each
#: primitive runs. An observer may raise `OSError` to simulate a fault.
Observer = Callable[[str, str, int, int], None]

_observers: list[Observer] = []


@dataclasses.dataclass(frozen=True)
class Change:
    """A change to the file system that succeeded, as a recorder sees it.

    ``operation`` is ``"create"``, ``"write"``, ``"truncate"``, ``"sync"``
    (``fsync`` or ``fdatasync``), ``"rename"``, ``"link"``, ``"unlink"`` or
    ``"sync_dir"``. Data operations name the file by ``inode`` (its device
    and inode number: a descriptor keeps writing to a file that was renamed);
    name operations by ``path`` (and ``target``).
    """

    operation: str
    inode: tuple[int, int] | None = None
    path: str = ""
    target: str = ""
    offset: int = 0
    data: bytes = b""


#: Called with each `Change` once it has succeeded.
Recorder = Callable[[Change], None]

_recorders: list[Recorder] = []


def add_recorder(recorder: Recorder) -> None:
    """Register ``recorder`` to be given every change made to files, with
    its data: what crash-consistency tests replay (see
    ``tests/reliability``)."""
    _recorders.append(recorder)


def remove_recorder(recorder: Recorder) -> None:
    """Undo `add_recorder()`."""
    _recorders.remove(recorder)


def _record(change: Change) -> None:
    for recorder in tuple(_recorders):
        recorder(change)


def _inode(fd: int) -> tuple[int, int]:
    status = os.fstat(fd)
    return (status.st_dev, status.st_ino)


def add_observer(observer: Observer) -> None:
    """Register ``observer`` to be told of every I/O primitive before it runs."""
    _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    """Undo `add_observer()`."""
    _observers.remove(observer)


def _note(operation: str, path: str, offset: int = 0, length: int = 0) -> None:
    for observer in tuple(_observers):
        observer(operation, path, offset, length)


# --------------------------------------------------------------------------
# Worker threads


_MAX_WORKERS: Final = 16
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_pid = 0


def _get_executor() -> concurrent.futures.ThreadPoolExecutor:
    # One pool per process: a pool inherited through fork() has no threads.
    global _executor, _executor_pid
    pid = os.getpid()
    if _executor is None or _executor_pid != pid:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=_MAX_WORKERS, thread_name_prefix="aiorecords-io"
        )
        _executor_pid = pid
    return _executor


class Outcome(Generic[T]):
    """The result of a call that ran to completion: a value or an exception."""

    __slots__ = ("error", "value")

    def __init__(self, value: T | None, error: BaseException | None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        """Return the value, or raise the exception."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def run_to_completion(
    function: Callable[..., T], /, *args: Any
) -> tuple[Outcome[T], asyncio.CancelledError | None]:
    """Run ``function(*args)`` in a worker thread and wait until it has finished.

    Returns its outcome and, if the awaiting task was cancelled meanwhile, the
    `asyncio.CancelledError` to re-raise once the caller has recorded
    what the thread did. Cancellation never abandons the thread.
    """
    loop = running_loop()
    # What the task waits on; replaced if a cancellation cancels it, because
    # the thread goes on and must still be waited for.
    waiting = [loop.create_future()]

    def wake() -> None:
        if not waiting[0].done():
            waiting[0].set_result(None)

    def finished(_: concurrent.futures.Future[None]) -> None:
        # In the worker thread (or here, if it was already done).
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(wake)

    # The call, its arguments and then its result pass through a list that
    # each side empties: the pool's work item (and the future it completes)
    # outlive the call for a moment in the worker thread, and must not keep
    # what the caller has since let go of (say, a dropped object's file).
    job: list[Any] = [function, args]

    def run() -> None:
        call, arguments = job
        job.clear()
        job.append(call(*arguments))

    work = _get_executor().submit(run)
    work.add_done_callback(finished)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await waiting[0]
            break
        except asyncio.CancelledError as error:
            cancelled = error
            if work.done():
                break
            waiting[0] = loop.create_future()  # the thread is still at work
    failure = work.exception()
    value = None if failure is not None else job.pop()
    return Outcome(value, failure), cancelled


async def offload(function: Callable[..., T], /, *args: Any) -> T:
    """Run ``function(*args)`` in a worker thread; never abandon it on cancel.

    On cancellation the task still waits for the thread, then raises
    `asyncio.CancelledError`; the thread's own result is discarded.
    """
    outcome, cancelled = await run_to_completion(function, *args)
    if cancelled is not None:
        raise cancelled
    return outcome.unwrap()


# --------------------------------------------------------------------------
# Blocking primitives


@contextlib.contextmanager
def _system_call(
    operation: str, path: str, offset: int = 0, length: int = 0
) -> Iterator[None]:
    """Tell the observers, then turn an `OSError` into a StorageError."""
    try:
        _note(operation, path, offset, length)
        yield
    except StorageError:
        raise
    except OSError as error:
        raise StorageError(error, operation, path) from error


# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding)
_FLOCK = struct.Struct("hhqqi4x")
_OFD_SETLK: Final = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_SETLKW: Final = getattr(fcntl, "F_OFD_SETLKW", None)


# preadv2(RWF_NOWAIT): a read served from the page cache, or refused with
# EAGAIN rather than waiting for the disk (Linux 4.14 and later).
_RWF_NOWAIT: Final = getattr(os, "RWF_NOWAIT", None)
_NOWAIT_UNSUPPORTED: Final = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
)


_cached_reads_allowed = True


def allow_cached_reads(allowed: bool) -> bool:
    """Let `FileIO.read_cached()` read (the default), or make it always
    answer None, so that every read goes to a worker thread (tests use this
    to exercise that path on files the page cache holds). Returns the
    previous setting."""
    global _cached_reads_allowed
    previous, _cached_reads_allowed = _cached_reads_allowed, allowed
    return previous


class FileIO:
    """An open file: positional I/O on one descriptor, called from threads
    only (but for `read_cached()`, which never waits for the disk).

    Nothing here moves a file offset, so any number of threads may read one
    descriptor at once. Writers serialise themselves above this layer. Every
    failure is raised as `StorageError`.
    """

    __slots__ = ("_cached_reads", "_closed", "fd", "path", "writable")

    def __init__(self, fd: int, path: str, writable: bool) -> None:
        self.fd = fd
        self.path = path
        self.writable = writable
        self._closed = False
        self._cached_reads = _RWF_NOWAIT is not None

    def __repr__(self) -> str:
        return f"<FileIO {self.path!r} fd={self.fd}>"

    @property
    def closed(self) -> bool:
        """True once `close()` has run."""
        return self._closed

    def _call(
        self, operation: str, offset: int = 0, length: int = 0
    ) -> contextlib.AbstractContextManager[None]:
        """`_system_call()` for this descriptor, refused once closed: its
        number may already be another file's."""
        if self._closed:
            raise ClosedError(f"{operation} on {self.path!r} after it was closed")
        return _system_call(operation, self.path, offset, length)

    def pread(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; fewer only at the end of file."""
        with self._call("pread", offset, size):
            data = os.pread(self.fd, size, offset)
            if len(data) == size or not data:
                return data
            # A regular file may still return short reads (signals, huge sizes).
            parts = [data]
            got = len(data)
            while got < size:
                more = os.pread(self.fd, size - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)

    def read_cached(self, offset: int, size: int) -> bytearray | None:
        """Read up to ``size`` bytes at ``offset`` if the page cache holds
        them, without ever waiting for the disk; safe to call from the event
        loop's thread. None when the bytes are not (all) cached, or where
        the system cannot read this way: use `pread()` in a worker
        thread then. Fewer bytes than asked for (even none) means that only
        those were cached, or that the file ends there (none: it ends at
        ``offset``).
        """
        if not (self._cached_reads and _cached_reads_allowed):
            return None
        buffer = bytearray(size)
        with self._call("pread", offset, size):
            try:
                got = os.preadv(self.fd, [buffer], offset, _RWF_NOWAIT)  # type: ignore[arg-type]
            except BlockingIOError:
                return None  # it would have waited for the disk
            except OSError as error:
                if error.errno not in _NOWAIT_UNSUPPORTED:
                    raise
                self._cached_reads = False
                return None
        del buffer[got:]
        return buffer

    def pwrite(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at ``offset``."""
        with self._call("pwrite", offset, len(data)):
            view = memoryview(data)
            start = offset
            try:
                while view:
                    written = os.pwrite(self.fd, view, offset)
                    view = view[written:]
                    offset += written
            finally:
                # A failed write's traceback keeps this frame: a view left
                # in it would pin a bytearray ``data`` (a writer's buffer,
                # emptied for reuse) with "existing exports".
                view.release()
            if _recorders:
                _record(
                    Change("write", _inode(self.fd), offset=start, data=bytes(data))
                )

    def datasync(self) -> None:
        """``fdatasync``: data and the metadata needed to read it reach the disk."""
        with self._call("fdatasync"):
            os.fdatasync(self.fd)
            if _recorders:
                _record(Change("sync", _inode(self.fd)))

    def sync(self) -> None:
        """``fsync``: data and all metadata reach the disk."""
        with self._call("fsync"):
            os.fsync(self.fd)
            if _recorders:
                _record(Change("sync", _inode(self.fd)))

    def truncate(self, size: int) -> None:
        """Set the file's size (growing it with zeros, or cutting it)."""
        with self._call("truncate", size):
            os.ftruncate(self.fd, size)
            if _recorders:
                _record(Change("truncate", _inode(self.fd), offset=size))

    def size(self) -> int:
        """The file's current size in bytes."""
        with self._call("fstat"):
            return os.fstat(self.fd).st_size

    def state(self) -> tuple[int, ...]:
        """What changes when the file is written to: its size, and its
        modification and status-change times."""
        with self._call("fstat"):
            status = os.fstat(self.fd)
        return (status.st_size, status.st_mtime_ns, status.st_ctime_ns)

    def lock(self, start: int, length: int, *, exclusive: bool, wait: bool) -> bool:
        """Lock a byte range; return False if ``wait`` is false and it is held.

        Linux open-file-description locks are used where available: unlike
        POSIX record locks they belong to this descriptor, so closing another
        descriptor of the same file does not release them, and two descriptors
        in one process exclude each other. They also conflict with the POSIX
        ``lockf`` locks of other programs (CaptureFile 1.2.0 among them).
        Elsewhere ``fcntl.lockf`` is used.
        """
        lock_type = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        try:
            with self._call("lock", start, length):
                _set_lock(self.fd, lock_type, start, length, wait)
        except StorageError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES) and not wait:
                return False
            raise
        return True

    def unlock(self, start: int, length: int) -> None:
        """Release a range taken with `lock()`."""
        with self._call("unlock", start, length):
            _set_lock(self.fd, fcntl.F_UNLCK, start, length, True)

    def advise_dont_need(self) -> None:
        """Ask the kernel to drop this file's pages from the page cache."""
        advise = getattr(os, "posix_fadvise", None)
        with self._call("fadvise"):
            if advise is not None:
                advise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        """Close the descriptor (which releases its locks); idempotent."""
        if self._closed:
            return
        self._closed = True
        with _system_call("close", self.path):
            os.close(self.fd)

    def __del__(self) -> None:
        # A file dropped without close() (its capture file, log or archive
        # object was) still gives back its descriptor, then says so: after,
        # so that a warning turned into an error leaves nothing open.
        if not getattr(self, "_closed", True):
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)
            warnings.warn(
                f"{self.path!r} was left open: the object using it was dropped "
                "without close()",
                ResourceWarning,
                stacklevel=1,
            )


def _set_lock(fd: int, lock_type: int, start: int, length: int, wait: bool) -> None:
    if _OFD_SETLK is not None and _OFD_SETLKW is not None:
        command = _OFD_SETLKW if wait else _OFD_SETLK
        fcntl.fcntl(fd, command, _FLOCK.pack(lock_type, os.SEEK_SET, start, length, 0))
        return
    flags = {  # pragma: no cover - not Linux
        fcntl.F_WRLCK: fcntl.LOCK_EX,
        fcntl.F_RDLCK: fcntl.LOCK_SH,
        fcntl.F_UNLCK: fcntl.LOCK_UN,
    }[lock_type]
    if not wait and lock_type != fcntl.F_UNLCK:  # pragma: no cover
        flags |= fcntl.LOCK_NB
    fcntl.lockf(fd, flags, length, start, os.SEEK_SET)  # pragma: no cover


def open_file(path: str, *, writable: bool) -> FileIO:
    """Open an existing file for reading, or for reading and writing.

    A missing file raises `FileNotFoundError` and a forbidden one
    `PermissionError`, as ``open()`` does.
    """
    _note("open", path)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
    return FileIO(_open_regular(path, flags), path, writable)


_NOT_REGULAR: Final = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _open_regular(path: str, flags: int) -> int:
    """``os.open()`` of a regular file; anything else raises `StorageError`.

    Opened without blocking, then checked: a named pipe with no writer
    would otherwise hang the open (and a pipe, device or socket has no size
    and no offsets to read at), so it is refused at once, naming what it is.
    """
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        _check_regular(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(mode: int, path: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a file")
    raise StorageError(
        OSError(errno.ESPIPE, f"not a regular file ({kind})"), "open", path
    )


def create_temp_beside(path: str) -> FileIO:
    """Create a new, empty, private file in the directory of ``path``.

    It is meant to be built, synced and then moved over ``path`` with
    `replace()`, so that ``path`` is never seen half made.
    """
    temp = temp_name_beside(path)
    with _system_call("create", temp):
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        if _recorders:
            _record(Change("create", _inode(fd), path=temp))
    return FileIO(fd, temp, True)


def replace(source: str, destination: str) -> None:
    """Atomically move ``source`` over ``destination`` (same directory).

    Only a regular file (or a link, itself replaced) is ever replaced: a
    device, pipe or socket at ``destination`` (``/dev/null`` named by
    mistake, run as root) raises `StorageError` and is left alone.
    """
    with _system_call("rename", destination):
        refuse_special(destination)
        os.replace(source, destination)
        if _recorders:
            _record(Change("rename", path=source, target=destination))


def publish_new(source: str, destination: str) -> bool:
    """Give the file ``source`` the name ``destination`` unless that name is
    taken; return False (leaving both alone) if it is.

    Unlike `replace()` this never clobbers a file another process created
    meanwhile: two processes creating one archive at once end up sharing the
    first one's file.
    """
    with _system_call("link", destination):
        try:
            os.link(source, destination)
        except FileExistsError:
            return False
        except OSError as error:
            # A file system without hard links: no atomic way to refuse an
            # existing name, so check first (the race is then a narrow one).
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if os.path.exists(destination):
                return False
            os.replace(source, destination)
            if _recorders:
                _record(Change("rename", path=source, target=destination))
            return True
        if _recorders:
            _record(Change("link", path=source, target=destination))
    unlink_quietly(source)
    return True


def sync_directory(path: str) -> None:
    """fsync the directory holding ``path``, so a rename or creation is durable."""
    directory = os.path.dirname(os.path.abspath(path))
    with _system_call("fsync_dir", directory):
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if _recorders:
            _record(Change("sync_dir", path=directory))


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if it exists; used to clean up after a failure."""
    with contextlib.suppress(OSError):
        _note("unlink", path)
        os.unlink(path)
        if _recorders:
            _record(Change("unlink", path=path))


def datasync_descriptor(fd: int, name: str) -> None:
    """``fdatasync`` a descriptor this layer did not open (a caller's file)."""
    with _system_call("fdatasync", name):
        os.fdatasync(fd)


def still_named(io: FileIO, path: str) -> bool:
    """True if ``path`` still names the file ``io`` has open (not another
    file moved there, nor nothing)."""
    with io._call("fstat"):
        mine = os.fstat(io.fd)
    with _system_call("stat", path):
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return False
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def same_file(first: str, second: str) -> bool:
    """True if both paths name one existing file (through links too)."""
    with _system_call("stat", second):
        try:
            return os.path.samefile(first, second)
        except FileNotFoundError:
            return False


def temp_name_beside(path: str) -> str:
    """A fresh hidden name in the directory of ``path``, for a file that is
    built whole and then moved over ``path`` with `replace()`."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def with_temp_names_as(message: str, path: str) -> str:
    """``message`` with every temporary name made beside ``path`` (by
    `temp_name_beside`, of ``path`` or of such a name in turn) shown as
    ``path``: the user named ``path``, never the temporary files."""
    directory, name = os.path.split(os.path.abspath(path))
    temp = (
        re.escape(os.path.join(directory, ""))
        + r"\.+"
        + re.escape(name)
        + r"(?:\.[0-9a-f]{12}\.tmp)+"
    )
    return re.sub(temp, lambda _: path, message)


def temp_name_local(name: str) -> str:
    """A fresh name in the temporary directory (``TMPDIR``) for a file
    built there before it goes elsewhere (an upload), ending like ``name``."""
    base = name.rstrip("/").rsplit("/", 1)[-1] or "file"
    return os.path.join(tempfile.gettempdir(), f".{base}.{secrets.token_hex(6)}.tmp")


def file_identity(path: str) -> tuple[int, int]:
    """What tells one state of the file at ``path`` from another: its size
    and modification time (nanoseconds)."""
    with _system_call("stat", path):
        status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise StorageError(OSError(errno.EISDIR, "not a regular file"), "stat", path)
    return status.st_size, status.st_mtime_ns


def expand_paths(pattern: str) -> list[str]:
    """The regular files ``pattern`` names, sorted: itself if it is one
    (or does not exist, to fail when opened), those a glob matches, or those
    directly in a directory."""
    if os.path.isdir(pattern):
        names = [os.path.join(pattern, name) for name in os.listdir(pattern)]
        return sorted(name for name in names if os.path.isfile(name))
    if glob.has_magic(pattern):
        return sorted(name for name in glob.glob(pattern) if os.path.isfile(name))
    return [pattern]


def file_size(path: str) -> int:
    """The size of the file at ``path``."""
    with _system_call("stat", path):
        return os.stat(path).st_size


#: What the public API accepts as a file name.
PathLike = str | os.PathLike[str]


def path_of(thing: object) -> str | None:
    """``thing`` as a path string if it names a file, else None."""
    if isinstance(thing, (str, os.PathLike)):
        return os.fspath(thing)
    return None


def canonical_path(path: str | os.PathLike[str]) -> str:
    """The absolute, symlink-free form of ``path`` (which need not exist)."""
    return os.path.realpath(os.fspath(path))


def refuse_special(path: str) -> None:
    """Raise `StorageError` if ``path`` names a device, pipe or socket
    (nothing a record file may be written over)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    kind = _NOT_REGULAR.get(stat.S_IFMT(mode))
    if kind is not None:
        raise StorageError(
            OSError(
                errno.EEXIST, f"exists and is not a regular file ({kind}); left alone"
            ),
            "rename",
            path,
        )


def is_file(path: str) -> bool:
    """True if ``path`` names an existing regular file."""
    return os.path.isfile(path)


def exists(path: str) -> bool:
    """True if anything has the name ``path`` (a dangling link too)."""
    return os.path.lexists(path)


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of a file (fewer if it is shorter)."""
    with _system_call("read", path, 0, size):
        fd = _open_regular(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)


class PathEscape(Exception):
    """A path that would lead outside the directory it must stay in."""


def create_temp_inside(directory: str, relative: str) -> tuple[FileIO, str]:
    """A new file under a temporary name, beside where ``relative`` (a
    ``/``-separated path checked by the caller) lies under ``directory``,
    open for writing, with the directories it needs; and that final path.

    Never writes outside ``directory``: the parent, once made, must resolve
    inside it, or `PathEscape` is raised (a symbolic link on the way that
    leads out). The temporary file is created anew, never through a link;
    `publish_file()` gives it its name once it is whole.
    """
    root = os.path.realpath(directory)
    target = os.path.join(root, *relative.split("/"))
    parent = os.path.dirname(target)
    with _system_call("create", target):
        os.makedirs(parent, exist_ok=True)
        real_parent = os.path.realpath(parent)
        if os.path.commonpath([root, real_parent]) != root:
            raise PathEscape(target)
        final = os.path.join(real_parent, os.path.basename(target))
        temp = temp_name_beside(final)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o644)
    return FileIO(fd, temp, writable=True), final


def publish_file(temp: str, final: str, *, overwrite: bool) -> bool:
    """Give the whole file ``temp`` the name ``final``: replacing what is
    there if ``overwrite`` (a link there is replaced, not followed), else
    only if the name is free (False if it is not; ``temp`` is removed
    either way)."""
    if overwrite:
        try:
            replace(temp, final)
        except BaseException:
            unlink_quietly(temp)
            raise
        return True
    try:
        return publish_new(temp, final)
    finally:
        unlink_quietly(temp)


def silence_stdout() -> None:
    """Point standard output at /dev/null (after its reader went away)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
