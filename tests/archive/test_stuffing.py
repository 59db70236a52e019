"""Version 2's guarantee: the trailer's magic occurs nowhere but in
trailers, whatever names, comments, timestamps and payloads are stored.

Payloads are stuffed (a 00 is put after an E5 that 00, 01 or the end
follows), integers are written seven bits a
byte, and names and comments are UTF-8, in which E5 is always followed by a
continuation byte: so the pair E5 01 that starts the magic cannot occur
anywhere else. These tests check that by building archives of hostile
content and looking for the pair.
"""

from __future__ import annotations

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from aiorecords._codecs import DecodeError
from aiorecords.archive._format import V2, Codec, Stuffer, stuff, unstuff

from .build import CODECS, Decoding, Element, archive_bytes, listing, payload, reader

MAGIC = V2.trailer_magic
RUN = MAGIC[:-1]

# Bytes rich in the escape byte and in what follows it in structure.
hostile_bytes = st.lists(
    st.sampled_from(
        [
            b"\xe5",
            b"\x00",
            b"\x01",
            b"GAR",
            b" trailer v2",
            RUN,
            MAGIC,
            RUN[:7],
            b"GARe",
        ]
    ),
    max_size=60,
).map(b"".join) | st.binary(max_size=300)
names = st.text(
    st.characters(codec="utf-8", min_codepoint=1) | st.sampled_from("\x01å嗯Ӆ倀"),
    min_size=1,
    max_size=20,
)


def model_stuff(data: bytes) -> bytes:
    """Stuffing as the format page states it, a byte at a time."""
    out = bytearray()
    for byte in data:
        out.append(byte)
        if out.endswith(RUN):
            out.append(0)
    return bytes(out)


@given(st.binary(max_size=2000) | hostile_bytes)
def test_stuffing_round_trips_and_never_makes_the_magic(data: bytes) -> None:
    stuffed = stuff(data)
    assert stuffed == model_stuff(data)
    assert MAGIC not in stuffed
    assert unstuff(stuffed) == data


@given(st.binary(max_size=300) | hostile_bytes, st.lists(st.integers(0, 300)))
def test_stuffing_in_pieces_is_stuffing_whole(data: bytes, cuts: list[int]) -> None:
    stuffer = Stuffer()
    pieces = []
    last = 0
    for cut in sorted(min(cut, len(data)) for cut in cuts):
        pieces.append(stuffer.feed(data[last:cut]))
        last = cut
    pieces.append(stuffer.feed(data[last:]))
    pieces.append(stuffer.finish())
    assert b"".join(pieces) == stuff(data)


def test_many_escapes_are_stuffed_the_same_way() -> None:
    data = RUN * 1000 + b"x" + MAGIC * 100
    assert stuff(data) == model_stuff(data)
    assert unstuff(stuff(data)) == data


@pytest.mark.parametrize(
    "bad", [MAGIC, b"a" + RUN, RUN + b"\x01", (RUN + b"\x00") * 100 + RUN]
)
def test_unstuffing_refuses_what_stuffing_never_makes(bad: bytes) -> None:
    assert unstuff(bad) is None


def test_an_escape_is_put_only_after_the_magic_s_first_fifteen_bytes() -> None:
    almost = RUN[:-1] + b"x"
    assert stuff(almost + b"\xe5\x01\xe5") == almost + b"\xe5\x01\xe5"
    assert stuff(MAGIC) == RUN + b"\x00" + MAGIC[-1:]
    assert stuff(RUN) == RUN + b"\x00"


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            names,
            hostile_bytes,
            st.sampled_from(list(CODECS)),
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.text(max_size=10) | st.just("嗯\x01"),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_magic_pair_occurs_only_where_trailers_put_it(elements) -> None:
    data = archive_bytes(
        *(
            Element(name, body, compression, timestamp=ts, comment=comment)
            for name, body, compression, ts, comment in elements
        ),
        layout=V2,
    )
    entries = listing(data).entries
    magic_at = [entry.end - V2.trailer_size + 51 for entry in entries]
    found = []
    at = data.find(MAGIC)
    while at >= 0:
        found.append(at)
        at = data.find(MAGIC, at + 1)
    assert sorted(magic_at) == found
    for entry, (_, body, *_) in zip(entries, reversed(elements), strict=True):
        assert payload(data, entry) == body


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 64])
def test_a_stuffed_payload_is_undone_across_every_read_boundary(limit: int) -> None:
    body = RUN * 3 + b"a" + RUN + b"\x00" + MAGIC + b"b" + RUN[:9] + MAGIC[:14]
    data = archive_bytes(Element("e", body), layout=V2)
    (entry,) = listing(data).entries
    assert entry.stored_size == len(stuff(body))
    assert payload(data, entry, limit) == body


@pytest.mark.parametrize("body", [b"abX" + RUN, b"a" + MAGIC + b"b"])
def test_stuffing_that_was_never_written_is_damage(body: bytes) -> None:
    # Checksums made right: only the stuffing itself says it is wrong.
    data = bytearray(archive_bytes(Element("e", b"-" * len(body)), layout=V2))
    (entry,) = listing(bytes(data)).entries
    data[entry.payload_offset : entry.payload_offset + entry.stored_size] = body
    decoder = Decoding(
        reader(bytes(data)),
        entry.payload_offset,
        len(body),
        Codec.NONE,
        len(body),
        crc32c(body),
        True,
    )
    with pytest.raises(DecodeError, match="run of the trailer magic"):
        decoder.read(100)


def test_integers_are_written_seven_bits_a_byte() -> None:
    header, crc = V2.encode_header(16, "n", -1, "", Codec.ZSTD)
    fixed = header[: V2.header_size]
    assert fixed[:6] == b"GARe\x02\x00"
    assert all(byte < 0x80 for byte in fixed[4:])
    assert fixed[6:16] == b"\x7f" * 9 + b"\x01"  # -1 as 64 bits of two's complement
    trailer = V2.encode_trailer(16, 200, 10, 20, 0xFFFFFFFF, crc)
    body, magic, tail = trailer[:51], trailer[51:67], trailer[67:]
    assert body[0] == 0
    assert magic == b"\xe5\x01GAR trailer v2"
    assert all(byte < 0x80 for byte in body + tail)
    assert V2.decode_trailer(trailer, 216).payload_crc == 0xFFFFFFFF
