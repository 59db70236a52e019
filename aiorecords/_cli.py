"""The ``aiorecords`` command: look into, check, follow and convert files of
every format.

Each command is a thin shell over the public API, run with ``asyncio.run``.
Errors are one line on stderr naming the file, exit status 2, and no
traceback unless ``--debug``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import errno
import json
import logging
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO, Final, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from . import _formats, _io, _outputs, _remote
from ._formats import FORMATS, Format
from ._framed_reader import FramedReader
from ._skipped import SkippedRegion
from .archive import Archive, ArchiveEntry
from .archive._format import archive_version
from .capture import CaptureFile
from .capture._layout import capture_version
from .capture._opened import read_commit
from .errors import AiorecordsError, CorruptionError, StorageError
from .records import RecordsReader
from .records._log import HEADER_SIZE
from .tfrecord import TFRecordReader
from .tfrecord._index import index_path_of
from .tfrecord._splits import compression_of_file

logger = logging.getLogger("aiorecords")

__all__ = ["main"]

T = TypeVar("T")

#: Files at least this large get a progress bar (on a terminal).
PROGRESS_FROM: Final = 4 * 1024 * 1024

stderr = Console(stderr=True)


class Failure(Exception):
    """A one-line error for the user; exit status 2."""


@dataclasses.dataclass
class Options:
    debug: bool = False


def fail(message: str) -> NoReturn:
    raise Failure(message)


def run(coroutine: Awaitable[T]) -> T:
    """Run a command's coroutine in a new event loop (Ctrl-C cancels it and
    surfaces as KeyboardInterrupt, which `main()` turns into status 130)."""

    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


# --------------------------------------------------------------------------
# Format detection


# fsspec storage_options for FILEs given as URLs (--storage-option).
STORAGE_OPTIONS: dict[str, Any] = {}


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL of an fsspec file system (not file://)."""
    return _remote.is_remote(path)


async def _head(path: str, size: int) -> bytes:
    """The first ``size`` bytes of a file or object."""
    return await _formats.head(path, size, STORAGE_OPTIONS)


async def _size(path: str) -> int:
    """The size of a file or object."""
    if not is_remote(path):
        return _io.file_size(_remote.local_path(path) or path)
    remote = await _remote.open_remote(path, storage_options=STORAGE_OPTIONS)
    await remote.close()
    return remote.size


def records_reader(path: str, **options: Any) -> RecordsReader:
    """A reader of the log at ``path`` (a URL with --storage-option)."""
    if is_remote(path):
        options["storage_options"] = STORAGE_OPTIONS
    return RecordsReader(path, **options)


async def framed_reader(path: str, fmt: Format, **options: Any) -> FramedReader:
    """A reader of the log or TFRecord file at ``path`` (a TFRecord file's
    compression told by its first bytes)."""
    if fmt == "records":
        return records_reader(path, **options)
    if is_remote(path):
        options["storage_options"] = STORAGE_OPTIONS
    compression = await compression_of_file(path, options.get("storage_options"))
    return TFRecordReader(path, compression=compression, **options)


def archive_at(path: str) -> contextlib.AbstractAsyncContextManager[Archive]:
    """The archive at ``path``, read-only (a URL with --storage-option)."""
    if is_remote(path):
        return Archive.open(path, storage_options=STORAGE_OPTIONS)
    return Archive.open(path)


def capture_at(path: str) -> CaptureFile:
    """The capture file at ``path``, to read (a URL with --storage-option)."""
    if is_remote(path):
        return CaptureFile(path, encoding=None, storage_options=STORAGE_OPTIONS)
    return CaptureFile(path, encoding=None)


def detect(path: str) -> Format:
    """The format of ``path``, from its first bytes."""
    if is_remote(path):
        return asyncio.run(detect_async(path))
    try:
        head = _io.read_head(_remote.local_path(path) or path, _formats.HEAD_SIZE)
    except OSError as error:
        fail(f"{path}: {error.strerror or error}")
    return _format_of_head(path, head)


async def detect_async(path: str) -> Format:
    """`detect()`, for a caller on the event loop."""
    try:
        head = await _head(path, _formats.HEAD_SIZE)
    except OSError as error:
        fail(f"{path}: {error.strerror or error}")
    return _format_of_head(path, head)


def _format_of_head(path: str, head: bytes) -> Format:
    found = _formats.format_of_head(head)
    if found is not None:
        return found
    if not head:
        fail(f"{path}: the file is empty; give --format")
    fail(
        f"{path}: not a capture file, LevelDB log, archive or TFRecord file "
        "(use --format)"
    )


def format_of(path: str, given: str | None) -> Format:
    fmt: Format = given if given is not None else detect(path)  # type: ignore[assignment]
    return fmt


# --------------------------------------------------------------------------
# Reading any format as a stream of records


async def records_of(
    path: str,
    fmt: Format,
    start: int = 1,
    stop: int | None = None,
    skipped: list[SkippedRegion] | None = None,
) -> AsyncIterator[bytes]:
    """The records (an archive's entries' data, oldest first) numbered
    ``start`` to ``stop`` (from 1, inclusive); a log's or TFRecord file's
    damaged regions, stepped over (and logged), go to ``skipped``."""
    if fmt == "capture":
        cf = await capture_at(path)
        try:
            end = cf.record_count() if stop is None else min(stop, cf.record_count())
            if start <= end:
                async for record in cf.record_generator(start):
                    yield record  # type: ignore[misc]
                    start += 1
                    if start > end:
                        break
        finally:
            await cf.close()
    elif fmt in ("records", "tfrecord"):
        report = None if skipped is None else skipped.append
        async with await framed_reader(path, fmt, on_corruption=report) as reader:
            number = 0
            async for record in reader:
                number += 1
                if number < start:
                    continue
                if stop is not None and number > stop:
                    break
                yield record
            else:
                if skipped is not None:
                    report_torn_tail(reader, skipped)
    else:
        async with archive_at(path) as archive:
            entries = list(reversed(await archive.contents()))
            for entry in entries[start - 1 : stop]:
                yield await archive.read_bytes(entry)


# --------------------------------------------------------------------------
# The commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "-o",
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec storage option for FILEs given as URLs (s3://, https://, "
    "...); VALUE is read as JSON if it can be. Repeatable.",
)
@click.version_option(package_name="aiorecords")
@click.pass_context
def cli(context: click.Context, debug: bool, storage_options: tuple[str, ...]) -> None:
    """Look into, check, follow and convert capture files, LevelDB logs and
    archives. The format is detected from a file's first bytes. A FILE may
    be an fsspec URL, and convert writes to one (see the storage guide)."""
    context.obj = Options(debug)
    STORAGE_OPTIONS.clear()
    for option in storage_options:
        key, equals, value = option.partition("=")
        if not equals or not key:
            fail(f"--storage-option {option!r}: give KEY=VALUE")
        try:
            STORAGE_OPTIONS[key] = json.loads(value)
        except ValueError:
            STORAGE_OPTIONS[key] = value


as_option = click.option(
    "--as",
    "as_",
    type=click.Choice(["text", "json", "hex", "raw"]),
    default="text",
    help="One per line as text, a JSON string or hex; or raw, each record "
    "preceded by its length (4 bytes, big-endian).",
)

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="The file's format (detected if not given).",
)


@cli.command()
@click.argument("file", metavar="FILE")
@format_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def info(file: str, fmt: str | None, as_json: bool) -> None:
    """What FILE holds: format, counts, sizes, compression, metadata.

    A damaged file is described as far as it can be read, with what is
    damaged; the exit status is then 1.
    """
    facts = run(_facts(file, format_of(file, fmt)))
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        table = Table(show_header=False, box=None)
        for key, value in facts.items():
            # Text, not a string rich would read as markup: a capture
            # file's metadata or an entry's name is the file's to choose
            # ("[/bold]" raised MarkupError here, "[link=...]" made a link).
            table.add_row(key.replace("_", " "), Text(printable(str(value))))
        Console().print(table)
    if facts.get("damaged"):
        sys.exit(1)


async def _facts(path: str, fmt: Format) -> dict[str, Any]:
    size = await _size(path)
    facts: dict[str, Any] = {"file": path, "format": fmt, "size_on_disk": size}
    head = await _head(path, 16)
    # The LevelDB log format has no version field: logs get none.
    version = capture_version(head) if fmt == "capture" else archive_version(head)
    if fmt != "records" and version is not None:
        facts["version"] = version
    damage: list[str] = []
    total: int | None = 0
    if fmt == "capture":
        cf = await capture_at(path)
        try:
            layout, commit = await read_commit(
                path, (None, STORAGE_OPTIONS) if is_remote(path) else None
            )
            facts["layout"] = "aiorecords capture" if layout.native else "capture v2"
            facts["compression"] = "zstd" if layout.native else "zlib"
            facts["records"] = cf.record_count()
            # The file is preallocated ahead of its data: compare with what
            # the data takes.
            size = facts["size_used"] = commit.file_limit
            if cf.damaged_commit is not None:
                damage.append(cf.damaged_commit)
            try:
                metadata = await cf.get_metadata()
                facts["metadata"] = None if metadata is None else _text(metadata)
            except CorruptionError as error:
                facts["metadata"] = None
                damage.append(f"the metadata: {error}")
            read = 0
            try:
                async for record in cf:
                    read += 1
                    total += len(record)  # type: ignore[operator]
            except CorruptionError as error:
                damage.append(f"record {read + 1} and after: {error}")
                total = None
        finally:
            await cf.close()
    elif fmt in ("records", "tfrecord"):
        total = count = 0
        dropped: list[SkippedRegion] = []
        reader = await framed_reader(path, fmt, on_corruption=dropped.append)
        async with reader:
            async for record in reader:
                count += 1
                total += len(record)
            report_torn_tail(reader, dropped)
        if isinstance(reader, TFRecordReader):
            facts["compression"] = reader.compression
            facts["index"] = await _index_of(path)
        facts["records"] = count
        facts["damaged_bytes"] = sum(region.length for region in dropped)
        damage += [f"offset {r.start}, {r.length} bytes: {r.reason}" for r in dropped]
    else:
        regions: list[SkippedRegion] = []
        async with archive_at(path) as archive:
            entries = await archive.contents(recover=True, on_corruption=regions.append)
            facts["entries"] = len(entries)
            facts["names"] = len({entry.name for entry in entries})
            facts["stored_bytes"] = sum(entry.stored_size for entry in entries)
            total = sum(entry.size for entry in entries)
            if entries:
                newest = entries[0]
                facts["newest"] = f"{newest.name} ({_when(newest.timestamp)})"
        damage += [f"offset {r.start}, {r.length} bytes: {r.reason}" for r in regions]
    facts["uncompressed_bytes"] = total
    facts["compression_ratio"] = round(total / size, 2) if size and total else None
    if damage:
        facts["damaged"] = "; ".join(damage)
    return facts


async def _index_of(path: str) -> str | None:
    """The ``.tfindex`` beside a TFRecord file, if there is one."""
    index = index_path_of(path)
    try:
        await _size(index)
    except OSError:
        return None
    return index


def _when(timestamp: int) -> str:
    """An entry's timestamp in ISO 8601 (UTC), or the number if it is not a
    time (a writer may store any 64-bit value)."""
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
    return moment.isoformat().replace("+00:00", "Z")


class _Moments:
    """`_when()` for many timestamps, each minute's text made once: a
    listing of 300,000 entries spent most of its time making datetimes."""

    def __init__(self) -> None:
        self._minutes: dict[int, str | None] = {}

    def iso(self, timestamp: int) -> str:
        """The same text as `_when(timestamp)`."""
        minute, second = divmod(timestamp, 60)
        start = self._minutes.get(minute, "")
        if start == "":
            start = self._minutes[minute] = self._minute(minute)
        if start is None:
            return _when(timestamp)  # not a time datetime can show
        return start + _SECONDS[second]

    @staticmethod
    def _minute(minute: int) -> str | None:
        # "YYYY-MM-DDTHH:MM:" of the minute, if datetime can show it
        text = _when(minute * 60)
        return text[:-3] if text.endswith("Z") else None


_SECONDS: Final = [f"{second:02d}Z" for second in range(60)]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


@cli.command()
@click.argument("file", metavar="FILE")
@format_option
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=1),
    default=1,
    help="First record (from 1).",
)
@click.option(
    "--to", "stop", type=click.IntRange(min=1), default=None, help="Last record."
)
@as_option
def cat(file: str, fmt: str | None, start: int, stop: int | None, as_: str) -> None:
    """Write FILE's records to standard output."""
    skipped: list[SkippedRegion] = []
    run(_cat(file, format_of(file, fmt), start, stop, as_, sys.stdout.buffer, skipped))
    if skipped:
        sys.exit(1)  # every readable record was written; some were not


async def _cat(
    path: str,
    fmt: Format,
    start: int,
    stop: int | None,
    as_: str,
    out: BinaryIO,
    skipped: list[SkippedRegion],
) -> None:
    async for record in records_of(path, fmt, start, stop, skipped):
        out.write(_rendered(record, as_))
    out.flush()


def report_torn_tail(reader: FramedReader, regions: list[SkippedRegion]) -> None:
    """After reading a log to its end: its torn last record, which LevelDB's
    reader (and so this one) passes over without a word, logged and added
    to ``regions`` as a TFRecord file's is, so that no command calls a
    file whole that ends in the middle of a record (or in bytes that are
    not records at all)."""
    region = reader.torn_tail if isinstance(reader, RecordsReader) else None
    if region is not None:
        logger.warning(
            "%s: dropped %d bytes at offset %d: %s (its writer stopped writing "
            "it, or is still writing)",
            reader.name,
            region.length,
            region.start,
            region.reason,
        )
        regions.append(region)


def _rendered(record: bytes, as_: str) -> bytes:
    if as_ == "raw":
        return struct.pack(">I", len(record)) + record
    if as_ == "hex":
        line = record.hex()
    elif as_ == "json":
        line = json.dumps(_text(record))
    else:
        line = _text(record)
    return line.encode("utf-8", "surrogateescape") + b"\n"


@cli.command()
@click.argument("file", metavar="FILE")
@format_option
@click.option(
    "-n",
    "--lines",
    "last",
    type=click.IntRange(min=0),
    default=10,
    help="How many of the last records to show first.",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Then show new records as they are committed."
)
@as_option
def tail(file: str, fmt: str | None, last: int, follow: bool, as_: str) -> None:
    """The last records of FILE; with -f, then each new one (Ctrl-C ends)."""
    skipped: list[SkippedRegion] = []
    run(
        _tail(file, format_of(file, fmt), last, follow, as_, sys.stdout.buffer, skipped)
    )
    if skipped:
        sys.exit(1)  # the last readable records were written; some were lost


async def _tail(
    path: str,
    fmt: Format,
    last: int,
    follow: bool,
    as_: str,
    out: BinaryIO,
    skipped: list[SkippedRegion],
) -> None:
    if fmt == "capture":
        cf = await capture_at(path)
        try:
            start = max(1, cf.record_count() - last + 1)
            stream = cf.follow(start) if follow else cf.record_generator(start)
            async for record in stream:
                out.write(_rendered(record, as_))  # type: ignore[arg-type]
                out.flush()
        finally:
            await cf.close()
        return
    if fmt == "archive":
        if follow:
            fail(f"{path}: tail -f follows capture files, logs and TFRecord files")
        async with archive_at(path) as archive:
            entries = list(reversed(await archive.contents()))
            for entry in entries[max(0, len(entries) - last) :] if last else []:
                out.write(_rendered(await archive.read_bytes(entry), as_))
        out.flush()
        return
    # A log has no index: read through, keeping the last records, then
    # follow from where that read ended.
    # Damage is stepped over and reported (the exit status then says so).
    recent: collections.deque[bytes] = collections.deque(maxlen=last)
    if follow and is_remote(path):
        fail(f"{path}: tail -f follows local files; an object does not grow")
    reader = await framed_reader(path, fmt, on_corruption=skipped.append)
    if follow and isinstance(reader, TFRecordReader) and reader.compression:
        fail(f"{path}: a compressed TFRecord file cannot be followed")
    async with reader:
        async for record in reader:
            recent.append(record)
        if not follow:  # followed, a torn record may yet be finished
            report_torn_tail(reader, skipped)
        end = await reader.tell()
    for record in recent:
        out.write(_rendered(record, as_))
    out.flush()
    if follow:
        follower = await framed_reader(
            path, fmt, start=end, on_corruption=skipped.append
        )
        async with follower as reader:
            async for record in reader.follow():
                out.write(_rendered(record, as_))
                out.flush()


@cli.command()
@click.argument("file", metavar="FILE")
@format_option
def verify(file: str, fmt: str | None) -> None:
    """Read all of FILE and check every checksum.

    Prints each damaged region (offset, bytes, reason) and a summary. Exit
    status 0: clean; 1: damaged; 2: unusable.
    """
    damaged = run(_verify(file, format_of(file, fmt)))
    sys.exit(1 if damaged else 0)


async def _verify(path: str, fmt: Format) -> bool:
    size = await _size(path)
    regions: list[SkippedRegion] = []
    problems: list[str] = []  # damage that is not a region of bytes
    show = size >= PROGRESS_FROM and sys.stderr.isatty()
    with Progress(console=stderr, disable=not show, transient=True) as progress:
        task = progress.add_task("verifying", total=size)
        if fmt in ("records", "tfrecord"):
            count = 0
            reader = await framed_reader(path, fmt, on_corruption=regions.append)
            async with reader:
                async for _ in reader:
                    count += 1
                    if count % 1000 == 0:
                        progress.update(task, completed=await reader.tell())
                report_torn_tail(reader, regions)
            what = f"{count} records"
        elif fmt == "archive":
            async with archive_at(path) as archive:
                entries = await archive.contents(
                    recover=True, on_corruption=regions.append
                )
                for entry in entries:
                    try:
                        async with archive.read(entry) as stream:
                            async for _ in stream:
                                pass
                    except CorruptionError as error:
                        regions.append(
                            SkippedRegion(entry.offset, entry.end, error.reason)
                        )
                    progress.update(task, advance=entry.end - entry.offset)
            what = f"{len(entries)} entries"
        else:
            cf = await capture_at(path)
            try:
                if cf.damaged_commit is not None:
                    problems.append(cf.damaged_commit)
                count = 0
                try:
                    async for _ in cf:
                        count += 1
                        if count % 1000 == 0:
                            progress.update(
                                task,
                                completed=size * count // max(1, cf.record_count()),
                            )
                    await cf.get_metadata()
                except CorruptionError as error:
                    at = error.offset if error.offset is not None else 0
                    regions.append(SkippedRegion(at, at, error.reason))
                what = f"{count} of {cf.record_count()} records read"
            finally:
                await cf.close()
    for problem in problems:
        click.echo(f"{path}: damaged: {problem}")
    for region in regions:
        click.echo(
            f"{path}: damaged: offset {region.start}, {region.length} bytes: "
            f"{region.reason}"
        )
    status = "damaged" if regions or problems else "ok"
    click.echo(f"{path}: {status}: {what}, {len(regions)} damaged regions")
    return bool(regions or problems)


@cli.command()
@click.argument("source", metavar="SOURCE")
@click.argument("destination", metavar="DESTINATION")
@click.option(
    "--to", "to", type=click.Choice(FORMATS), required=True, help="The format to write."
)
@format_option
@click.option(
    "--compression",
    type=click.Choice(["zstd", "zlib", "gzip"]),
    default=None,
    help="For --to capture: zstd (aiorecords' layout, the default) or zlib "
    "(CaptureFile 1.2.0's); for --to tfrecord: gzip or zlib (the whole file "
    "as one stream, as TensorFlow's compression_type; none by default).",
)
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
def convert(
    source: str,
    destination: str,
    to: str,
    fmt: str | None,
    compression: str | None,
    force: bool,
) -> None:
    """Copy the records of SOURCE into a new DESTINATION of another format.

    Archive entries become records (oldest first); records become entries
    named by number. An archive converted to an archive keeps its entries'
    names, timestamps, comments and compression (this rewrites an archive
    of format version 1 in version 2). Memory stays bounded: records stream
    through. A capture file's metadata goes with it into a capture file; a
    log or an archive has nowhere to keep it (a note says so). DESTINATION
    appears whole, or not at all: it is written under a temporary name, then
    renamed; a URL (s3://...) is built in the temporary directory (TMPDIR),
    then uploaded, and appears when the upload ends.
    """
    allowed = {"capture": ("zstd", "zlib"), "tfrecord": ("gzip", "zlib")}.get(to, ())
    if compression is not None and compression not in allowed:
        fail(
            f"--compression {compression} does not apply to --to {to} "
            f"({'takes ' + ' or '.join(allowed) if allowed else 'written as it is'})"
        )
    if to == "capture":
        compression = compression or "zstd"
    if _remote.is_url(destination) and not is_remote(destination):
        destination = _remote.local_path(destination) or destination  # file://
    if is_remote(destination):
        if source == destination:
            fail(f"{destination}: is {source} itself; convert into another object")
        if not force and run(_object_exists(destination)):
            fail(f"{destination}: exists (use --force to replace it)")
    else:
        if _io.same_file(source, destination):
            fail(f"{destination}: is {source} itself; convert into another file")
        try:
            _io.refuse_special(destination)
        except StorageError as error:
            fail(f"{destination}: {error.strerror}")
        if _io.exists(destination) and not force:
            fail(f"{destination}: exists (use --force to replace it)")
    skipped: list[SkippedRegion] = []
    count = run(
        _convert(
            source,
            format_of(source, fmt),
            destination,
            to,  # type: ignore[arg-type]
            compression,
            force,
            skipped,
        )
    )
    click.echo(f"{destination}: wrote {count} records", err=True)
    if skipped:
        lost = sum(region.length for region in skipped)
        click.echo(
            f"{source}: {len(skipped)} damaged region(s), {lost} bytes, not "
            "converted (see above)",
            err=True,
        )
        sys.exit(1)


async def _object_exists(url: str) -> bool:
    try:
        await _remote.open_remote(url, storage_options=STORAGE_OPTIONS)
    except StorageError as error:
        if error.errno == errno.ENOENT:
            return False
        raise
    return True


async def _convert(
    source: str,
    fmt: Format,
    destination: str,
    to: Format,
    compression: str | None,
    force: bool,
    skipped: list[SkippedRegion],
) -> int:
    metadata = await _metadata_of(source, fmt)
    if metadata is not None and to != "capture":
        stderr.print(
            f"note: the metadata of {source} is not carried over "
            f"(a {_NAMES[to]} has no metadata)",
            markup=False,
            highlight=False,
        )
    temp = ""

    async def build(path: str) -> int:
        nonlocal temp
        temp = path
        return await _convert_into(
            source, fmt, path, to, compression, metadata, destination, skipped
        )

    try:
        return await _outputs.publish(
            build,
            destination,
            storage_options=STORAGE_OPTIONS if is_remote(destination) else None,
            replace=force,
        )
    except FileExistsError:
        fail(f"{destination}: was created meanwhile (use --force to replace it)")
    except (AiorecordsError, OSError) as error:
        # The user named the destination, not the temporary files made
        # beside it (a format's writer may make its own beside the first).
        message = str(error)
        shown = message.replace(temp, destination) if temp else message
        if not is_remote(destination):
            shown = _io.with_temp_names_as(shown, destination)
        if shown == message:
            raise
        if isinstance(error, OSError) and error.errno in _CANNOT_WRITE:
            fail(f"{destination}: cannot write there ({error.strerror})")
        fail(shown)


#: The errors that say a file cannot be made or written where it was asked.
_CANNOT_WRITE: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


#: What each format's files are called in messages.
_NAMES: Final = {
    "capture": "capture file",
    "records": "log",
    "archive": "archive",
    "tfrecord": "TFRecord file",
}


async def _copy_archive(
    source: str, destination: str, tick: Callable[[bytes], None]
) -> int:
    """Append every entry of the archive ``source`` to ``destination``,
    oldest first, with its name, timestamp, comment and compression; the
    count. (This rewrites an archive in the current format version.)"""
    count = 0
    async with (
        archive_at(source) as old,
        Archive.open(destination, mode="rdwr_exclusive", durable=False) as new,
    ):
        for entry in reversed(await old.contents()):
            async with (
                old.read(entry) as stream,
                new.append(
                    entry.name,
                    timestamp=entry.timestamp,
                    comment=entry.comment,
                    compression=entry.compression,  # type: ignore[arg-type]
                ) as out,
            ):
                async for chunk in stream:
                    await out.write(chunk)
            count += 1
            tick(b"")
        await new.sync()
    return count


async def _metadata_of(path: str, fmt: Format) -> bytes | None:
    if fmt != "capture":
        return None
    cf = await capture_at(path)
    try:
        return await cf.get_metadata()
    finally:
        await cf.close()


async def _convert_into(
    source: str,
    fmt: Format,
    destination: str,
    to: Format,
    compression: str | None,
    metadata: bytes | None,
    shown_as: str,
    skipped: list[SkippedRegion],
) -> int:
    size = await _size(source)
    show = size >= PROGRESS_FROM and sys.stderr.isatty()
    records = records_of(source, fmt, skipped=skipped)
    count = 0
    # Progress by records where the source says how many it holds (a capture
    # file, an archive); through a log, by the bytes its records take.
    known = await _record_total(source, fmt)
    read = 0

    def tick(record: bytes | str) -> None:
        nonlocal count, read
        count += 1
        read += len(record) + HEADER_SIZE
        if count % 1000 == 0:
            progress.update(task, completed=count if known else min(read, size))

    with Progress(console=stderr, disable=not show, transient=True) as progress:
        task = progress.add_task(
            f"converting into {escape(shown_as)}", total=known if known else size
        )
        if fmt == "archive" and to == "archive":
            # Entries copied whole (names and all); the records stream, not
            # started, is dropped.
            count = await _copy_archive(source, destination, tick)
        else:
            count = await _outputs.write_records(
                records,
                destination,
                to,
                compression=compression,
                metadata=metadata,
                tick=tick,
            )
    return count


async def _record_total(path: str, fmt: Format) -> int | None:
    """How many records a capture file or archive holds (None for a log,
    which does not say without being read)."""
    if fmt == "capture":
        cf = await capture_at(path)
        try:
            return cf.record_count()
        finally:
            await cf.close()
    if fmt == "archive":
        async with archive_at(path) as archive:
            return len(await archive.contents())
    return None


@cli.command(name="ls")
@click.argument("archive", metavar="ARCHIVE")
@click.option(
    "--all",
    "every",
    is_flag=True,
    help="Also entries a newer one of the same name replaced.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def ls(archive: str, every: bool, as_json: bool) -> None:
    """The entries of ARCHIVE, newest first (the newest of each name).

    Timestamps are shown in ISO 8601 (UTC); --json gives them as numbers.
    On a terminal, more than a screen of entries goes through the pager.
    """
    entries = run(_entries(archive, every))
    out = sys.stdout
    if as_json:
        # Streamed: a list of any length costs no more than its lines.
        out.write("[")
        for n, entry in enumerate(entries):
            out.write(",\n  " if n else "\n  ")
            out.write(json.dumps(_entry_facts(entry)))
        out.write("\n]\n" if entries else "]\n")
        return
    header = ("name", "timestamp", "size", "stored", "compression", "comment")
    when = _Moments()
    rows = [
        (
            printable(entry.name),
            when.iso(entry.timestamp),
            str(entry.size),
            str(entry.stored_size),
            entry.compression or "",
            printable(entry.comment),
        )
        for entry in entries
    ]
    # Columns as wide as their widest cell (names capped, so that one long
    # name does not push the rest off the screen); written a line at a time.
    widths = [len(title) for title in header]
    if rows:
        columns = zip(*rows, strict=True)
        widths = [
            max(w, *map(len, cells)) for w, cells in zip(widths, columns, strict=True)
        ]
    widths[0] = min(widths[0], 60)
    # One format for every line: a longer name overflows its column, as
    # str.ljust would let it.
    row_format = "  ".join([f"{{:<{width}}}" for width in widths[:-1]] + ["{}"])

    def lines() -> Iterator[str]:
        for line in (header, *rows):
            yield row_format.format(*line).rstrip() + "\n"

    if out.isatty() and len(rows) + 1 >= Console().height:
        # More than a screen on a terminal: through the pager ($PAGER, or
        # less), a line at a time, as git does.
        click.echo_via_pager(lines())
        return
    # Written a thousand lines at a time: a write per line is most of the
    # cost of a long listing.
    batch: list[str] = []
    for text in lines():
        batch.append(text)
        if len(batch) == 1000:
            out.write("".join(batch))
            batch.clear()
    out.write("".join(batch))


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: names, comments and metadata
    come from the file, and whoever made it may have put escape sequences
    in them (to set the terminal's title, move the cursor, hide a line) or
    a newline that would start a false row. Characters that do not print
    are shown as Python escapes (``\\x1b``, ``\\n``, ``\\u202e``); the
    rest is left as it is."""
    if text.isprintable():
        return text  # nearly always: a test in C, no copy
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _entry_facts(entry: ArchiveEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "timestamp": entry.timestamp,
        "size": entry.size,
        "stored_size": entry.stored_size,
        "compression": entry.compression,
        "comment": entry.comment,
        "offset": entry.offset,
    }


async def _entries(path: str, every: bool) -> list[ArchiveEntry]:
    if await detect_async(path) != "archive":
        fail(f"{path}: not an archive")
    async with archive_at(path) as archive:
        if every:
            return await archive.contents()
        latest = await archive.latest()
        return sorted(latest.values(), key=lambda e: e.offset, reverse=True)


@cli.command()
@click.argument("archive", metavar="ARCHIVE")
@click.argument("names", nargs=-1)
@click.option(
    "-C",
    "--directory",
    default=".",
    metavar="DIRECTORY",
    help="Where to write the files.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def extract(archive: str, names: tuple[str, ...], directory: str, force: bool) -> None:
    """Write the newest entry of each name (or of NAMES) under DIRECTORY.

    Names that would leave DIRECTORY (absolute, with .., a NUL, or through a
    symbolic link) are refused, and files are not overwritten without
    --force.
    """
    written, damaged = run(_extract(archive, names, directory, force))
    noun = "entry" if written == 1 else "entries"
    click.echo(f"{archive}: extracted {written} {noun} to {directory}", err=True)
    if damaged:
        click.echo(f"{archive}: {damaged} damaged, not extracted (see above)", err=True)
        sys.exit(1)


def safe_name(name: str) -> str:
    """``name`` as a relative path, or `Failure` if it could escape
    (the rules of PEP 706's ``data`` filter that apply to names)."""
    if not name or "\0" in name or "\\" in name:
        fail(f"refusing entry name {name!r}: empty, or holds NUL or backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        fail(f"refusing entry name {name!r}: absolute")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        fail(f"refusing entry name {name!r}: it leaves the directory")
    return "/".join(parts)


async def _extract(
    path: str, names: tuple[str, ...], directory: str, force: bool
) -> tuple[int, int]:
    """Extract; how many entries were written, and how many were damaged."""
    if await detect_async(path) != "archive":
        fail(f"{path}: not an archive")
    damaged = 0
    async with archive_at(path) as archive:
        regions: list[SkippedRegion] = []
        latest: dict[str, ArchiveEntry] = {}
        for entry in await archive.contents(recover=True, on_corruption=regions.append):
            latest.setdefault(entry.name, entry)  # newest first
        for region in regions:
            stderr.print(
                f"{path}: damaged: offset {region.start}, {region.length} bytes: "
                f"{region.reason} (entries there, if any, cannot be extracted)",
                markup=False,
                highlight=False,
            )
            damaged += 1
        wanted = names or tuple(sorted(latest))
        missing = [name for name in wanted if name not in latest]
        if missing:
            fail(f"{path}: no entry named {missing[0]!r}")
        targets = [(name, safe_name(name)) for name in wanted]  # all checked first
        written = 0
        for name, relative in targets:
            if await _extract_one(archive, latest[name], directory, relative, force):
                written += 1
            else:
                damaged += 1
    return written, damaged


async def _extract_one(
    archive: Archive, entry: ArchiveEntry, directory: str, relative: str, force: bool
) -> bool:
    """Write one entry under a temporary name, then give it its name; False
    (and nothing left behind) if the entry is damaged."""
    shown = f"{directory}/{relative}"
    try:
        io, final = _io.create_temp_inside(directory, relative)
    except _io.PathEscape:
        fail(f"refusing entry name {entry.name!r}: it leads outside {directory}")
    except OSError as error:
        if error.errno in _CANNOT_WRITE:
            fail(f"{shown}: cannot write there ({error.strerror})")
        raise
    if not force and _io.exists(final):
        await _io.offload(io.close)
        _io.unlink_quietly(io.path)
        fail(f"{shown}: exists (use --force to overwrite)")
    whole = False
    try:
        offset = 0
        async with archive.read(entry) as stream:
            async for chunk in stream:
                await _io.offload(io.pwrite, offset, chunk)
                offset += len(chunk)
        whole = True
    except CorruptionError as error:
        stderr.print(
            f"{archive.path}: entry {entry.name!r} is damaged, not extracted: "
            f"{error.reason}",
            markup=False,
            highlight=False,
        )
    finally:
        await _io.offload(io.close)
        if not whole:
            _io.unlink_quietly(io.path)
    if whole and not _io.publish_file(io.path, final, overwrite=force):
        fail(f"{shown}: exists (use --force to overwrite)")
    return whole


# --------------------------------------------------------------------------
# The entry point


def main(argv: list[str] | None = None) -> None:
    """Run the command line (the ``aiorecords`` console script)."""
    args = list(argv if argv is not None else sys.argv[1:])
    # --debug is taken anywhere on the line, before or after the command.
    debug = "--debug" in args[: args.index("--") if "--" in args else len(args)]
    if debug:
        args.remove("--debug")
        args.insert(0, "--debug")
    try:
        cli.main(args=args, prog_name="aiorecords", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except (Failure, AiorecordsError, OSError, ImportError) as error:
        if debug:
            raise
        stderr.print(
            f"aiorecords: {error}", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(2)


def _quiet_broken_pipe() -> NoReturn:
    """``aiorecords cat ... | head`` ends quietly when head stops reading:
    standard output is pointed at nothing, so that flushing it at exit does
    not fail again."""
    _io.silence_stdout()
    sys.exit(0)
