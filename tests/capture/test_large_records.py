"""Issue 18: large records (a megabyte or more) are not copied on the event
loop: a large text or buffer is converted in a worker thread, and a large
record joins its block in the flush's worker thread.

What must not change: the bytes of the file (CaptureFile 1.2.0 writes the
same ones for the same calls), the numbers calls return, what a reader
reads back (committed or not), and what cancellation leaves.
"""

from __future__ import annotations

import asyncio
import codecs
import random
import threading
from collections.abc import Iterator

import pytest
from CaptureFile import CaptureFile as PeerCaptureFile

from aiorecords import CaptureFile, CaptureFileNotOpen
from aiorecords.capture._writer import LARGE_RECORD


def large(rng: random.Random) -> bytes:
    size = LARGE_RECORD + rng.choice([0, 1, 4093, 70_000, LARGE_RECORD])
    if rng.random() < 0.5:
        return rng.randbytes(size)  # incompressible: many pages written
    return bytes([rng.randrange(256)]) * size


def calls(seed: int) -> Iterator[tuple]:
    rng = random.Random(seed)
    for _ in range(rng.randint(10, 40)):
        roll = rng.random()
        if roll < 0.2:
            yield ("add", large(rng))
        elif roll < 0.8:
            yield ("add", rng.randbytes(rng.randint(0, 300)))
        elif roll < 0.9:
            yield ("meta", rng.randbytes(rng.randint(0, 5000)))
        else:
            yield ("commit",)
    yield ("commit",)


@pytest.mark.parametrize("seed", range(6))
async def test_large_records_give_capturefiles_bytes(tmp_path, seed: int) -> None:
    """Large records among small ones, added as bytes, bytearray, memoryview
    or in add_records lists: byte for byte the file CaptureFile 1.2.0
    writes for the same records."""
    ops = list(calls(seed))
    block_size = [32768, 4096, 65536][seed % 3]
    theirs, ours = str(tmp_path / "peer.capture"), str(tmp_path / "ours.capture")
    peer = PeerCaptureFile(
        theirs, to_write=True, force_new_empty_file=True,
        compression_block_size=block_size,
    )  # fmt: skip
    for op in ops:
        if op[0] == "add":
            peer.add_record(op[1])
        elif op[0] == "meta":
            peer.set_metadata(op[1])
        else:
            peer.commit()
    peer.close()
    rng = random.Random(seed)
    async with CaptureFile(
        ours, to_write=True, force_new_empty_file=True,
        compression_block_size=block_size, compression="zlib", encoding=None,
    ) as capture:  # fmt: skip
        batch: list[object] = []
        for op in ops:
            if op[0] == "add":
                how = rng.choice(["bytes", "bytearray", "memoryview", "batch"])
                if how == "batch":
                    batch.append(op[1])
                    continue
                if batch:
                    await capture.add_records(batch)  # type: ignore[arg-type]
                    batch = []
                kind = {"bytes": bytes, "bytearray": bytearray}.get(how, memoryview)
                await capture.add_record(kind(op[1]))
                continue
            if batch:
                await capture.add_records(batch)  # type: ignore[arg-type]
                batch = []
            if op[0] == "meta":
                await capture.set_metadata(op[1])
            else:
                await capture.commit()
    with open(theirs, "rb") as a, open(ours, "rb") as b:
        assert b.read() == a.read()


async def test_large_records_read_back_committed_or_not(path: str) -> None:
    rng = random.Random(7)
    records = [large(rng), b"small", large(rng), large(rng)]
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None
    ) as capture:
        for record in records[:2]:
            await capture.add_record(record)
        await capture.commit()
        await capture.add_record(memoryview(records[2]))
        await capture.add_records(records[3:])
        # Not committed yet: this writer reads them from memory.
        for number, record in enumerate(records, 1):
            assert await capture.record_at(number) == record
        await capture.commit()
    async with CaptureFile(path, encoding=None) as reader:
        assert [r async for r in reader] == records
        assert await reader.record_at(3) == records[2]


class ThreadNoting:
    """A text codec (UTF-8 underneath) that notes the thread each piece of
    text is encoded in, and can hold a piece until released."""

    made = 0

    def __init__(self) -> None:
        # A name of its own: Python caches what a codec name finds.
        ThreadNoting.made += 1
        self.name = f"aiorecords-test-noting-{ThreadNoting.made}"
        self.threads: list[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        noting = self

        class Encoder(codecs.IncrementalEncoder):
            def encode(self, text: str, final: bool = False) -> bytes:
                noting.threads.append(threading.get_ident())
                noting.entered.set()
                noting.hold.wait()
                return text.encode("utf-8")

        def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
            noting.threads.append(threading.get_ident())
            return text.encode("utf-8", errors), len(text)

        def decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
            return codecs.utf_8_decode(data, errors, True)

        self.info = codecs.CodecInfo(
            encode, decode, name=self.name, incrementalencoder=Encoder,
            incrementaldecoder=codecs.getincrementaldecoder("utf-8"),
        )  # fmt: skip

    def search(self, name: str) -> codecs.CodecInfo | None:
        return (
            self.info
            if name == self.name.replace("-", "_") or name == self.name
            else None
        )


@pytest.fixture
def noting() -> Iterator[ThreadNoting]:
    codec = ThreadNoting()
    codecs.register(codec.search)
    try:
        yield codec
    finally:
        codecs.unregister(codec.search)


async def test_large_text_is_encoded_off_the_loop(
    path: str, noting: ThreadNoting
) -> None:
    loop_thread = threading.get_ident()
    text = "événement " * (LARGE_RECORD // 10 + 5)
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=noting.name
    ) as capture:
        await capture.add_record("small")
        assert noting.threads == [loop_thread]  # a small one: on the loop
        noting.threads.clear()
        await capture.add_record(text)
        await capture.append(text)
        await capture.append_batch([text, "small too"])
        assert noting.threads
        assert loop_thread not in noting.threads
        await capture.commit()
    async with CaptureFile(path, encoding=None) as reader:
        stored = [r async for r in reader]
    assert stored == [b"small"] + [text.encode("utf-8")] * 3 + [b"small too"]


async def test_large_text_in_a_stateful_encoding_is_encoded_whole(path: str) -> None:
    """UTF-16 writes its byte-order mark once: the pieces a large text is
    encoded in give the bytes encoding it whole gives."""
    text = "\U0001f600 and more " * (LARGE_RECORD // 12)
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding="utf_16"
    ) as capture:
        await capture.add_record(text)
        await capture.commit()
        assert await capture.record_at(1) == text
    async with CaptureFile(path, encoding=None) as reader:
        assert await reader.record_at(1) == text.encode("utf_16")


@pytest.mark.parametrize(
    "call", ["add_record", "append", "append_batch", "add_records"]
)
async def test_cancelled_while_converting_adds_nothing(
    path: str, noting: ThreadNoting, call: str
) -> None:
    """Cancelled while its text is being encoded in a worker thread, the
    call waits for the thread, then adds nothing; the file goes on."""
    text = "x" * (LARGE_RECORD + 1)
    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=noting.name
    ) as capture:
        await capture.add_record("before")
        noting.hold.clear()
        noting.entered.clear()
        if call == "append_batch":
            task = asyncio.ensure_future(capture.append_batch(["a", text]))
        elif call == "add_records":
            task = asyncio.ensure_future(capture.add_records(iter(["a", text])))
        else:
            task = asyncio.ensure_future(getattr(capture, call)(text))
        await asyncio.to_thread(noting.entered.wait)
        task.cancel()
        await asyncio.sleep(0)
        assert not task.done()  # the thread is never abandoned
        noting.hold.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        expected = ["before"] + (["a"] if call == "add_records" else [])
        assert capture.record_count() == len(expected)
        await capture.add_record("after")
        await capture.commit()
    async with CaptureFile(path) as reader:
        assert [r async for r in reader] == [*expected, "after"]


async def test_many_tasks_adding_large_and_small_records_keep_every_acknowledgement(
    path: str,
) -> None:
    """Tasks adding large and small records of every kind at once, some
    cancelled at random: every record whose call returned is in the file at
    the number the call gave."""
    rng = random.Random(11)
    acknowledged: dict[int, bytes] = {}
    big = [rng.randbytes(LARGE_RECORD + n) for n in (0, 3, 5000)]

    async def adder(seed: int, capture: CaptureFile) -> None:
        own = random.Random(seed)
        for _ in range(12):
            data = (
                own.choice(big)
                if own.random() < 0.3
                else own.randbytes(own.randint(0, 900))
            )
            record = own.choice([bytes, bytearray, memoryview])(data)
            count = await capture.add_record(record)
            acknowledged[count] = data
            if own.random() < 0.2:
                await capture.commit()

    async with CaptureFile(
        path, to_write=True, force_new_empty_file=True, encoding=None
    ) as capture:
        tasks = [asyncio.ensure_future(adder(seed, capture)) for seed in range(8)]
        for _ in range(3):
            for _ in range(rng.randint(0, 30)):
                await asyncio.sleep(0)
            rng.choice(tasks).cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await capture.commit()
        total = capture.record_count()
    async with CaptureFile(path, encoding=None) as reader:
        stored = [r async for r in reader]
    assert len(stored) == total
    for count, data in acknowledged.items():
        assert stored[count - 1] == data


@pytest.mark.parametrize("seed", range(10))
async def test_close_at_a_random_moment_keeps_every_committed_large_record(
    path: str, seed: int
) -> None:
    """Tasks adding large and small records of every kind, committing and
    appending, some cancelled, while another task closes the file at a
    random moment: after reopening, every record whose commit (or append)
    returned is there at its number, every record there is one that was
    added at that number, and nothing is there that no call added."""
    rng = random.Random(seed)
    big = [rng.randbytes(LARGE_RECORD + n) for n in (0, 7, 9000)]
    added: dict[int, bytes] = {}  # number -> data, for every add that returned
    attempted: set[bytes] = set()  # every record handed to a call
    committed = 0  # the highest number a returned commit covers
    operations = 0

    async def worker(own: random.Random, capture: CaptureFile) -> None:
        nonlocal committed, operations
        mine: list[int] = []
        while True:
            data = (
                own.choice(big)
                if own.random() < 0.25
                else own.randbytes(own.randint(0, 700))
            )
            record = own.choice([bytes, bytearray, memoryview])(data)
            attempted.add(data)
            if own.random() < 0.15:
                number = await capture.append(record)
                added[number] = data
                committed = max(committed, number)
            else:
                number = await capture.add_record(record)
                added[number] = data
                mine.append(number)
                if own.random() < 0.25:
                    await capture.commit()
                    committed = max(committed, *mine)
                    mine.clear()
            operations += 1

    capture = CaptureFile(path, to_write=True, force_new_empty_file=True, encoding=None)
    await capture.open(to_write=True)
    tasks = [
        asyncio.ensure_future(worker(random.Random(seed * 100 + n), capture))
        for n in range(6)
    ]
    close_after = rng.randint(10, 200)
    cancel_at = sorted(rng.sample(range(close_after), 2))
    while operations < close_after and not all(task.done() for task in tasks):
        await asyncio.sleep(0)
        if cancel_at and operations >= cancel_at[0]:
            cancel_at.pop(0)
            rng.choice(tasks).cancel()
    await capture.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:  # closed or cancelled: nothing else
        assert isinstance(result, (asyncio.CancelledError, CaptureFileNotOpen)), result
    async with CaptureFile(path, encoding=None) as reader:
        stored = [r async for r in reader]
    assert len(stored) >= committed
    for number, data in enumerate(stored, 1):
        if number in added:
            assert data == added[number], number
        else:  # a call cancelled or closed after it took its record
            assert data in attempted, number
