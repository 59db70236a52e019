"""CaptureFile against a simple in-memory model, driven by hypothesis."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from aiorecords import CaptureFile

records = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=3000, max_size=9000),
    st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 20_000), st.integers(0, 255)),
)
metadata = st.one_of(st.none(), st.binary(max_size=200))


class CaptureFileModel(RuleBasedStateMachine):
    """A writer and a reader of one file, against lists of what they should see."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.mkdtemp(prefix="aiorecords-model-")
        self.path = os.path.join(self.directory, "model.capture")
        self.committed: list[bytes] = []
        self.pending: list[bytes] = []
        self.committed_metadata: bytes | None = None
        self.metadata: bytes | None = None
        self.seen_by_reader = 0
        self.reader_metadata: bytes | None = None

    def run(self, awaitable):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(awaitable)

    @initialize(
        compression=st.sampled_from(["zstd", "zlib"]),
        block=st.sampled_from([4096, 8192]),
    )
    def open_files(self, compression: str, block: int) -> None:
        self.writer = self.run(
            CaptureFile(
                self.path,
                to_write=True,
                encoding=None,
                compression=compression,
                compression_block_size=block,
            )
        )
        self.reader = self.run(CaptureFile(self.path, encoding=None))

    def teardown(self) -> None:
        if hasattr(self, "writer"):
            self.run(self.writer.close())
            self.run(self.reader.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def everything(self) -> list[bytes]:
        return self.committed + self.pending

    @rule(record=records)
    def add(self, record: bytes) -> None:
        count = self.run(self.writer.add_record(record))
        self.pending.append(record)
        assert count == len(self.everything)

    @rule(data=st.lists(records, min_size=10, max_size=400))
    def add_many(self, data: list[bytes]) -> None:
        for record in data:
            self.run(self.writer.add_record(record))
        self.pending.extend(data)

    @rule(value=metadata)
    def set_metadata(self, value: bytes | None) -> None:
        self.run(self.writer.set_metadata(value))
        self.metadata = value

    @rule()
    def commit(self) -> None:
        self.run(self.writer.commit())
        self.committed.extend(self.pending)
        self.pending.clear()
        self.committed_metadata = self.metadata

    @rule()
    def reopen_writer(self) -> None:
        self.run(self.writer.close())
        self.run(self.writer.open(to_write=True))
        self.pending.clear()
        self.metadata = self.committed_metadata

    @rule()
    def refresh_reader(self) -> None:
        self.run(self.reader.refresh())
        self.seen_by_reader = len(self.committed)
        self.reader_metadata = self.committed_metadata

    @rule(fraction=st.floats(0, 1, exclude_max=True))
    def read_one(self, fraction: float) -> None:
        if self.everything:
            n = int(fraction * len(self.everything)) + 1
            assert self.run(self.writer.record_at(n)) == self.everything[n - 1]
        if self.seen_by_reader:
            n = int(fraction * self.seen_by_reader) + 1
            assert self.run(self.reader.record_at(n)) == self.committed[n - 1]

    @rule(start=st.integers(1, 5000), length=st.integers(0, 3000))
    def read_slice(self, start: int, length: int) -> None:
        got = self.run(self.writer[start : start + length])
        assert got == self.everything[start - 1 : start - 1 + length]
        got = self.run(self.reader[start : start + length])
        assert (
            got == self.committed[: self.seen_by_reader][start - 1 : start - 1 + length]
        )

    @precondition(lambda self: len(self.everything) < 20_000)
    @rule()
    def iterate_all(self) -> None:
        async def collect(cf: CaptureFile) -> list:
            return [r async for r in cf]

        assert self.run(collect(self.writer)) == self.everything
        assert self.run(collect(self.reader)) == self.committed[: self.seen_by_reader]

    @invariant()
    def counts_and_metadata_agree(self) -> None:
        if not hasattr(self, "writer"):
            return
        assert self.writer.record_count() == len(self.everything)
        assert self.reader.record_count() == self.seen_by_reader
        assert self.run(self.writer.get_metadata()) == self.metadata
        assert self.run(self.reader.get_metadata()) == self.reader_metadata


CaptureFileModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestCaptureFileModel = CaptureFileModel.TestCase
