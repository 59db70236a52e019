"""Every format on a Dask cluster: files read into bags and dataframes, one
partition per [`Split`][aiorecords.Split], and bags written back as files.

Dask and distributed are the optional ``aiorecords[dask]``. The splits are
planned on the client (a few requests per file); each partition is read in
a task by [`read_split()`][aiorecords.read_split], which brings its own event
loop and leaves a worker's alone. Task keys are deterministic (tokens of the
splits and options): the same read of the same files is the same graph,
and a task a lost worker ran is run again, giving the same records.

```python
import aiorecords.dask

bag = aiorecords.dask.read("s3://bucket/events/*.log", storage_options=options)
counts = bag.map(json.loads).pluck("kind").frequencies().compute()
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

try:
    import dask
    import dask.bag
    import dask.base
    import dask.dataframe
    import pandas
    from dask.delayed import delayed
except ImportError as missing:  # the extra, not the library, is missing
    raise ImportError(
        f"aiorecords.dask needs Dask ({missing.name} is missing): "
        "pip install 'aiorecords[dask]'"
    ) from missing

from . import _bridge, _outputs, _remote
from ._formats import Format
from ._framed_reader import CorruptionCallback
from ._splits import DEFAULT_TARGET_BYTES, Split, plan_splits
from ._splits import read_split as _read_split

__all__ = ["read", "read_dataframe", "write"]


def _records_of(
    splits: Sequence[Split],
    storage_options: dict[str, Any] | None,
    strict: bool,
    on_corruption: CorruptionCallback | None,
) -> list[bytes]:
    """A partition: the records of its splits (one, as planned here)."""
    return [
        record
        for split in splits
        for record in _read_split(
            split,
            storage_options=storage_options,
            strict=strict,
            on_corruption=on_corruption,
        )
    ]


def read(
    urlpaths: str | Iterable[str],
    *,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    storage_options: dict[str, Any] | None = None,
    format: Format | None = None,
    latest_only: bool = False,
    strict: bool = False,
    on_corruption: CorruptionCallback | None = None,
) -> dask.bag.Bag:
    """A bag of the records (``bytes``) of every file ``urlpaths`` names: one
    partition per split, the splits of [`plan_splits()`][aiorecords.plan_splits]
    (which see for ``urlpaths``, ``target_bytes``, ``storage_options``,
    ``format`` and ``latest_only``), in order. An archive's records are its
    entries' data.

    ``strict`` and ``on_corruption`` are those of
    [`read_split()`][aiorecords.read_split]; ``on_corruption`` runs in the
    worker, so it must pickle (a module-level function). A file changed
    since it was planned fails its task with
    [`FileChangedError`][aiorecords.errors.FileChangedError].
    """
    splits = plan_splits(
        urlpaths,
        target_bytes=target_bytes,
        storage_options=storage_options,
        format=format,
        latest_only=latest_only,
    )
    return dask.bag.from_sequence(splits, partition_size=1).map_partitions(
        _records_of,
        storage_options=storage_options,
        strict=strict,
        on_corruption=on_corruption,
    )


def _frame_of(
    split: Split,
    decode: Callable[[bytes], Mapping[str, Any] | None],
    names: list[str] | None,
    dtypes: dict[str, Any] | None,
    storage_options: dict[str, Any] | None,
    strict: bool,
) -> pandas.DataFrame:
    """A partition of a dataframe: the rows decoded from a split's records."""
    rows = []
    for record in _read_split(split, storage_options=storage_options, strict=strict):
        row = decode(record)
        if row is not None:
            rows.append(row)
    frame = pandas.DataFrame(rows, columns=names)
    return frame.astype(dtypes) if dtypes is not None else frame


def read_dataframe(
    urlpaths: str | Iterable[str],
    decode: Callable[[bytes], Mapping[str, Any] | None],
    *,
    meta: pandas.DataFrame | None = None,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    storage_options: dict[str, Any] | None = None,
    format: Format | None = None,
    latest_only: bool = False,
    strict: bool = False,
) -> dask.dataframe.DataFrame:
    """A dataframe of the rows ``decode`` makes of the records of every file
    ``urlpaths`` names (as [`read()`][aiorecords.dask.read]), one partition
    per split, through ``dask.dataframe.from_map``.

    ``decode(record)`` gives a mapping of column names to values for a
    record, or None to leave it out; it runs in the workers. ``meta`` (an
    empty dataframe of the columns and their dtypes) fixes every partition's
    columns and dtypes; without it Dask reads the first split on the client
    to learn them.
    """
    splits = plan_splits(
        urlpaths,
        target_bytes=target_bytes,
        storage_options=storage_options,
        format=format,
        latest_only=latest_only,
    )
    # Not passed as "columns": from_map takes a function's "columns" for
    # its own column projection.
    names = None if meta is None else list(meta.columns)
    dtypes = None if meta is None else dict(meta.dtypes)
    return dask.dataframe.from_map(
        _frame_of,
        splits,
        decode=decode,
        names=names,
        dtypes=dtypes,
        storage_options=storage_options,
        strict=strict,
        meta=meta,
        label="aiorecords-read-dataframe",
        enforce_metadata=meta is not None,
    )


def _write_partition(
    records: Iterable[bytes | str],
    destination: str,
    to: Format,
    compression: str | None,
    storage_options: dict[str, Any] | None,
) -> str:
    """Write one partition into the new file ``destination``; its name."""

    async def records_of() -> Any:
        for record in records:
            yield record

    async def build(temp: str) -> int:
        return await _outputs.write_records(
            records_of(), temp, to, compression=compression
        )

    options = storage_options if _remote.is_remote(destination) else None
    _bridge.run(
        _outputs.publish(build, destination, storage_options=options, replace=True)
    )
    return destination


def _numbered(last: int) -> Callable[[int], str]:
    """Partition numbers zero-padded to the width of ``last``: names that
    sort as the numbers do."""
    width = len(str(last))
    return lambda number: f"{number:0{width}d}"


def write(
    bag: dask.bag.Bag,
    urlpath: str,
    *,
    format: Format = "records",
    compression: str | None = None,
    storage_options: dict[str, Any] | None = None,
    name_function: Callable[[int], str] | None = None,
    compute: bool = True,
) -> list[str] | list[Any]:
    """Write each partition of ``bag`` (records: ``bytes`` or ``str``) into a
    file of ``format``: ``"records"`` (a LevelDB log), ``"tfrecord"``,
    ``"capture"`` or ``"archive"`` (entries named by number).

    ``urlpath`` is a local path or an fsspec URL with one ``*``, replaced
    by the partition's number as ``name_function`` makes it (by default
    zero-padded, so that the names sort in partition order, and
    [`read()`][aiorecords.dask.read] of the same pattern gives the records
    back in order). ``compression`` is a capture file's (``"zstd"``,
    ``"zlib"``) or a TFRecord file's (``"gzip"``, ``"zlib"``).

    Each file appears whole or not at all: built under a temporary name
    (beside it, or in the worker's ``TMPDIR`` for an object), then renamed
    or uploaded. A file of that name is replaced, so a task run again after
    a worker was lost writes the same file again. Returns the names written
    (with ``compute=False``, the delayed tasks that write them).
    """
    if urlpath.count("*") != 1:
        raise ValueError("urlpath has one '*', for the partition's number")
    if not isinstance(bag, dask.bag.Bag):
        raise TypeError(f"a dask bag is written, not {type(bag).__name__}")
    name = name_function or _numbered(max(bag.npartitions - 1, 0))
    write_one = delayed(_write_partition, pure=True)
    tasks = [
        write_one(
            part,
            urlpath.replace("*", name(number)),
            format,
            compression,
            storage_options,
        )
        for number, part in enumerate(bag.to_delayed())
    ]
    if not compute:
        return tasks
    return list(dask.base.compute(*tasks))
