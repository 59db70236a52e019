"""The process-wide block cache."""

from __future__ import annotations

import pytest

from aiorecords import set_block_cache_size
from aiorecords._cache import BlockCache, block_cache


def test_least_recently_used_blocks_go_first() -> None:
    cache = BlockCache(capacity=300)
    ns = cache.namespace()
    for position in range(3):
        cache.put(ns, position, bytes(100))
    assert cache.get(ns, 0) is not None  # now the most recent
    cache.put(ns, 3, bytes(100))
    assert cache.peek(ns, 1) is None
    assert [cache.peek(ns, p) is not None for p in (0, 2, 3)] == [True, True, True]
    assert cache.size == 300


def test_peek_does_not_change_the_order() -> None:
    cache = BlockCache(capacity=200)
    ns = cache.namespace()
    cache.put(ns, 0, bytes(100))
    cache.put(ns, 1, bytes(100))
    assert cache.peek(ns, 0) is not None
    cache.put(ns, 2, bytes(100))
    assert cache.peek(ns, 0) is None


def test_namespaces_are_separate_and_dropped_whole() -> None:
    cache = BlockCache(capacity=10_000)
    a, b = cache.namespace(), cache.namespace()
    cache.put(a, 5, b"a" * 10)
    cache.put(b, 5, b"b" * 10)
    assert cache.get(a, 5) == b"a" * 10
    cache.drop(a)
    assert cache.get(a, 5) is None
    assert cache.get(b, 5) == b"b" * 10
    assert cache.size == 10
    cache.put(a, 6, b"late")  # a dropped namespace takes nothing
    assert cache.size == 10


def test_replacing_a_block_and_oversized_blocks() -> None:
    cache = BlockCache(capacity=100)
    ns = cache.namespace()
    cache.put(ns, 1, bytes(50))
    cache.put(ns, 1, bytes(60))
    assert cache.size == 60
    cache.put(ns, 2, bytes(101))
    assert cache.peek(ns, 2) is None
    assert cache.size == 60


def test_resize_and_disable() -> None:
    cache = BlockCache(capacity=1000)
    ns = cache.namespace()
    for position in range(10):
        cache.put(ns, position, bytes(100))
    cache.resize(250)
    assert cache.size == 200
    cache.resize(0)
    assert cache.size == 0
    cache.put(ns, 1, b"x")
    assert cache.size == 0


def test_set_block_cache_size() -> None:
    before = block_cache.capacity
    try:
        set_block_cache_size(1234)
        assert block_cache.capacity == 1234
        with pytest.raises(ValueError, match="negative"):
            set_block_cache_size(-1)
    finally:
        set_block_cache_size(before)
