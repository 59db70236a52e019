"""The fuzz harnesses, run without atheris over mutated seed files, so that
they keep working between fuzzing sessions (``nox -s fuzz`` runs them under
atheris for real)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from .conftest import count
from .fuzz_readers import HARNESSES, seeds

INPUTS = 300


def mutate(data: bytes, rng: random.Random) -> bytes:
    """What a fuzzer does first: flip, insert, delete, cut, splice."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        action = rng.randrange(5)
        at = rng.randrange(len(out) + 1)
        if action == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif action == 1:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif action == 2:
            del out[at : at + rng.randint(1, 64)]
        elif action == 3:
            del out[at:]
        else:
            out[at : at + 8] = (rng.getrandbits(64)).to_bytes(8, "little")
    return bytes(out)


@pytest.mark.parametrize("fmt", list(HARNESSES))
async def test_a_harness_survives_mutated_files(fmt: str, tmp_path) -> None:
    harness = HARNESSES[fmt]
    files = await asyncio.to_thread(seeds, fmt, str(tmp_path))
    rng = random.Random(fmt)
    logger = logging.getLogger("aiorecords")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        for n in range(INPUTS):
            data = mutate(rng.choice(files), rng) if n else b""
            # Each input runs its own event loop, as under atheris.
            await asyncio.to_thread(harness, data)
    finally:
        logger.setLevel(level)
    count(f"fuzz harness inputs (no atheris), {fmt}", INPUTS)
