"""TFRecord files against a real peer: the tfrecord package (its reader,
its tf.train.Example writer, its .tfindex builder, its example decoder)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

tfrecord = pytest.importorskip("tfrecord")
from tfrecord.reader import example_loader, tfrecord_iterator  # noqa: E402
from tfrecord.tools.tfrecord2idx import create_index  # noqa: E402
from tfrecord.writer import TFRecordWriter as PeerWriter  # noqa: E402

from aiorecords import TFRecordReader, TFRecordWriter  # noqa: E402


def records(count: int) -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(rng.choice([0, 1, 50, 5000, 70_000])) for _ in range(count)]


@pytest.mark.parametrize("compression", [None, "gzip"])
async def test_the_peer_reads_our_files(
    tmp_path: Path, compression: str | None
) -> None:
    data = records(200)
    path = tmp_path / "ours.tfrecord"
    async with TFRecordWriter(path, compression=compression) as writer:
        await writer.write_many(data)
    read = [
        bytes(r) for r in tfrecord_iterator(str(path), compression_type=compression)
    ]
    assert read == data


async def test_we_read_the_peers_examples(tmp_path: Path) -> None:
    path = tmp_path / "peer.tfrecord"
    writer = PeerWriter(str(path))
    rows = [
        {"id": (n, "int"), "name": (f"row {n}".encode(), "byte"), "x": (n / 4, "float")}
        for n in range(300)
    ]
    for row in rows:
        writer.write(row)
    writer.close()
    ours = await _read(path)
    assert ours == [bytes(r) for r in tfrecord_iterator(str(path))]
    assert ours == [PeerWriter.serialize_tf_example(row) for row in rows]


async def _read(path: Path) -> list[bytes]:
    async with TFRecordReader(path, strict=True) as reader:
        return [record async for record in reader]


async def test_our_index_is_the_peers(tmp_path: Path) -> None:
    path = tmp_path / "indexed.tfrecord"
    async with TFRecordWriter(path, index=True) as writer:
        await writer.write_many(records(500))
    create_index(str(path), str(tmp_path / "peer.tfindex"))
    ours = (tmp_path / "indexed.tfindex").read_text()
    assert ours == (tmp_path / "peer.tfindex").read_text()
    # The peer reads a shard of our file through our index, as it would its own.
    shard = tfrecord_iterator(
        str(path), str(tmp_path / "indexed.tfindex"), shard=(1, 4)
    )
    assert [bytes(r) for r in shard] == records(500)[125:250]


async def test_the_peers_example_decoder_reads_our_records(tmp_path: Path) -> None:
    rows = [{"id": (n, "int"), "tag": (b"t%d" % n, "byte")} for n in range(50)]
    path = tmp_path / "examples.tfrecord"
    async with TFRecordWriter(path) as writer:
        for row in rows:
            await writer.write(PeerWriter.serialize_tf_example(row))
    decoded = list(example_loader(str(path), None, description=None))
    assert [int(row["id"][0]) for row in decoded] == list(range(50))
    assert [bytes(row["tag"]) for row in decoded] == [b"t%d" % n for n in range(50)]
