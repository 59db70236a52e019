"""What every format is called, and how a file's first bytes tell which it
is (one definition for the splits, Dask and the command line)."""

from __future__ import annotations

from typing import Any, Final, Literal

from . import _io, _remote
from .archive._format import is_archive
from .capture._layout import is_capture
from .errors import UnknownFormatError
from .records._log import BLOCK_SIZE, starts_like_log
from .tfrecord._frame import starts_like_tfrecord

__all__ = ["FORMATS", "Format", "detect", "format_of_head", "head"]

Format = Literal["capture", "records", "archive", "tfrecord"]
FORMATS: Final[tuple[Format, ...]] = ("capture", "records", "archive", "tfrecord")

#: Bytes read to tell a file's format.
HEAD_SIZE: Final = BLOCK_SIZE


def format_of_head(head: bytes) -> Format | None:
    """The format a file's first bytes (up to `HEAD_SIZE`) show, or None.

    Capture files and archives begin with signatures; a LevelDB log and a
    TFRecord file with a header whose checksum holds (TFRecord files
    compressed with GZIP or ZLIB are told by their stream headers).
    """
    if is_capture(head):
        return "capture"
    if is_archive(head):
        return "archive"
    if starts_like_tfrecord(head):
        return "tfrecord"
    if starts_like_log(head):
        return "records"
    return None


async def head(path: str, size: int, storage_options: dict[str, Any] | None) -> bytes:
    """The first ``size`` bytes of a local file or an object.

    Cancellation: nothing is left open.
    """
    if not _remote.is_remote(path):
        local = _remote.local_path(path) or path
        return await _io.offload(_io.read_head, local, size)
    remote = await _remote.open_remote(path, storage_options=storage_options)
    try:
        return await remote.read(0, size)
    finally:
        await remote.close()


async def detect(path: str, storage_options: dict[str, Any] | None) -> Format:
    """The format of the file or object ``path``, from its first bytes;
    `UnknownFormatError` if they are none of the four.

    Cancellation: nothing is left open.
    """
    found = format_of_head(await head(path, HEAD_SIZE, storage_options))
    if found is None:
        raise UnknownFormatError(
            "not a capture file, LevelDB log, archive or TFRecord file (or "
            "empty); name its format",
            path=path,
        )
    return found
