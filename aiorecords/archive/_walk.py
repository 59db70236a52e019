"""Walking an archive from its end to its beginning, as a push-style core.

Every walk here is a generator that yields the byte ranges it wants
([`Read`][aiorecords._wants.Read]) and is sent them; it decides from the
bytes alone:

* where the last whole element ends (what follows it is a torn tail: an
  append that has not finished, or never will);
* which elements there are, newest first, stepping over damaged ones and
  describing each as a [`SkippedRegion`][aiorecords.SkippedRegion];
* where the newest element of a name is, reading no further back than that.

The driver answers the reads from a file in a worker thread, from bytes in
memory, or from any other storage.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, fields
from typing import Final, TypeVar

from .._kernels import compiled
from .._skipped import SkippedRegion
from .._wants import Read
from ..errors import CorruptArchiveError
from ._format import FILE_HEADER_SIZE, ArchiveEntry, Codec, ElementLayout

__all__ = [
    "Damage",
    "Listing",
    "Walk",
    "Window",
    "element_at",
    "extend_listing",
    "find_back",
    "scan_back",
    "valid_end",
    "walk_back",
    "whole_elements",
]

#: Bytes read at a time when walking back (many small elements per read).
WINDOW: Final = 256 * 1024
#: Elements decoded by one call of the compiled kernel (about half a
#: millisecond, holding the GIL), or of its reference.
ELEMENTS_PER_CALL: Final = 512

R = TypeVar("R")

#: A walk at work: yields reads, is sent their bytes, returns ``R``.
Walk = Generator[Read, bytes, R]


class Window:
    """The last bytes read while walking back, to serve reads near them.

    Walking back through small elements wants a trailer, then a header a
    little before it, then the next trailer before that: one read of the
    window that ends at the current position serves dozens of them.
    """

    __slots__ = ("_data", "_start")

    def __init__(self, data: bytes = b"", start: int = 0) -> None:
        self._start = start
        self._data = data

    @property
    def start(self) -> int:
        """The offset of the first byte held."""
        return self._start

    @property
    def data(self) -> bytes:
        """The bytes held."""
        return self._data

    def held(self, offset: int, size: int) -> bytes | None:
        """Bytes ``[offset, offset + size)`` if the window holds them."""
        at = offset - self._start
        if at >= 0 and at + size <= len(self._data):
            return self._data[at : at + size]
        return None

    def read(self, offset: int, size: int, floor: int = 0) -> Walk[bytes]:
        """Bytes ``[offset, offset + size)``, wanting (if they are not held)
        a window of what lies before them too (down to ``floor``)."""
        end = offset + size
        if self._start <= offset and end <= self._start + len(self._data):
            at = offset - self._start
            return self._data[at : at + size]
        if size >= WINDOW:
            return (yield Read(offset, size))
        start = min(max(floor, end - WINDOW, 0), offset)
        self._data = yield Read(start, end - start)
        self._start = start
        at = offset - start
        return self._data[at : at + size]


def element_at(
    window: Window, end: int, floor: int, layout: ElementLayout
) -> Walk[ArchiveEntry]:
    """The element that ends at ``end`` and starts at or after ``floor``.

    Raises [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] (at the offset
    where the bytes stop making sense) if there is no such element.
    """
    trailer_size = layout.trailer_size
    if end - floor < layout.header_size + trailer_size:
        raise CorruptArchiveError(
            "no room for an element here", offset=max(end - trailer_size, floor)
        )
    # (Reads the window holds are taken without a generator: walking back
    # over many small elements makes three reads per element.)
    data = window.held(end - trailer_size, trailer_size)
    if data is None:
        data = yield from window.read(end - trailer_size, trailer_size, floor)
    trailer = layout.decode_trailer(data, end)
    if trailer.start < floor:
        raise CorruptArchiveError(
            "element would start before the previous one ends",
            offset=end - trailer_size,
        )
    fixed = window.held(trailer.start, layout.header_size)
    if fixed is None:
        fixed = yield from window.read(trailer.start, layout.header_size, floor)
    fields = layout.header_fields(fixed, trailer.start)
    size = layout.header_size + fields[5] + fields[6]  # and name and comment
    if trailer.start + size + trailer.stored + trailer_size != end:
        raise CorruptArchiveError(
            "element lengths do not add up", offset=end - trailer_size
        )
    data = window.held(trailer.start, size)
    if data is None:
        data = yield from window.read(trailer.start, size, floor)
    header = layout.decode_header(data, trailer.start, fields)
    if header.crc != trailer.header_crc:
        raise CorruptArchiveError(
            "element header and trailer do not belong together",
            offset=trailer.start,
        )
    return ArchiveEntry(
        name=header.name,
        timestamp=header.timestamp,
        compression=Codec.NAMES[header.codec],
        comment=header.comment,
        offset=trailer.start,
        payload_offset=trailer.start + size,
        stored_size=trailer.stored,
        size=trailer.data,
        payload_crc=trailer.payload_crc,
        end=end,
    )


def whole_elements(
    data: bytes,
    base: int,
    end: int,
    floor: int,
    layout: ElementLayout,
    out: list[ArchiveEntry],
    most: int = ELEMENTS_PER_CALL,
) -> int:
    """The elements ending at ``end`` and before it that ``data`` (the bytes
    from offset ``base``) holds whole, appended to ``out`` newest first,
    walking back to ``floor`` or to the first that does not decode; where it
    stopped. The next element, if any, is then the walk's to judge (from
    more bytes, or as damage).

    At most ``most`` are taken. The reference of the compiled
    ``archive_elements`` kernel, which does the same for version 2 in one
    call: walking back over small elements is otherwise a few microseconds
    of Python each.
    """
    window = Window(data, base)
    while end > floor and len(out) < most:
        walk = element_at(window, end, floor, layout)
        try:
            walk.send(None)  # type: ignore[arg-type]
        except StopIteration as done:
            entry: ArchiveEntry = done.value
        except CorruptArchiveError:
            break
        else:
            walk.close()
            break  # it wants bytes the window does not hold
        out.append(entry)
        end = entry.offset
    return end


# The compiled kernel's arguments: the codec names by codec byte, and the
# member descriptors that set an entry's fields.
_CODEC_NAMES: Final = tuple(Codec.NAMES[codec] for codec in range(len(Codec.NAMES)))
_ENTRY_SLOTS: Final = tuple(
    ArchiveEntry.__dict__[field.name] for field in fields(ArchiveEntry)
)


def _compiled_whole_elements(
    data: bytes,
    base: int,
    end: int,
    floor: int,
    layout: ElementLayout,
    out: list[ArchiveEntry],
) -> int:
    if layout.version != 2 or compiled is None:
        return whole_elements(data, base, end, floor, layout, out)
    reached: int = compiled.archive_elements(
        data,
        base,
        end,
        floor,
        _CODEC_NAMES,
        ArchiveEntry,
        _ENTRY_SLOTS,
        ELEMENTS_PER_CALL,
        out,
    )
    return reached


#: The walk's fast path: the compiled kernel where it is built.
fast_whole_elements = _compiled_whole_elements if compiled else whole_elements


def scan_back(end: int, floor: int, layout: ElementLayout) -> Walk[ArchiveEntry | None]:
    """The last whole element ending before ``end`` (or at it) and starting
    at or after ``floor``, found by looking for trailers; None if none.

    This steps over a torn tail or damage. A candidate is believed only if
    its trailer, its header and the offsets each records all agree, so bytes
    that merely look like an element (an archive stored as another's entry,
    say) are not taken for one. In a version-2 archive the trailer's magic
    occurs nowhere else, so no payload can imitate an element.
    """
    window = Window()
    chunk_end = end
    while chunk_end - floor >= layout.header_size + layout.trailer_size:
        chunk_start = max(floor, chunk_end - WINDOW)
        chunk = yield Read(chunk_start, chunk_end - chunk_start)
        for candidate in layout.trailer_candidates(chunk, chunk_start):
            try:
                return (yield from element_at(window, candidate, floor, layout))
            except CorruptArchiveError:
                continue
        if chunk_start == floor:
            break
        # Overlap the chunks by a trailer, so that one across them is seen.
        chunk_end = chunk_start + layout.trailer_size
    return None


def valid_end(size: int, floor: int, layout: ElementLayout) -> Walk[int]:
    """Where the last whole element at or after ``floor`` ends (``floor`` if
    there is none): the offset an append writes at."""
    if size <= floor:
        return floor
    try:
        return (yield from element_at(Window(), size, floor, layout)).end
    except CorruptArchiveError:
        last = yield from scan_back(size, floor, layout)
        return floor if last is None else last.end


def _ends_with_trailer(
    window: Window, end: int, floor: int, layout: ElementLayout
) -> Walk[bool]:
    """Whether a whole, checksummed trailer ends at ``end``."""
    size = layout.trailer_size
    if end - floor < size:
        return False
    try:
        layout.decode_trailer((yield from window.read(end - size, size, floor)), end)
    except CorruptArchiveError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes stepped over while walking back, and where the damage was seen."""

    region: SkippedRegion
    offset: int
    """Offset of the bytes that did not decode (inside the region)."""


class Listing:
    """What walking back over an archive found.

    Kept oldest first, so that noting one more element (`add()`) costs
    the same however many there are; `entries` gives them newest
    first. Only `add()` changes a listing; `extended()` makes a new
    one, so a listing being extended in a worker thread is never changed
    under it.
    """

    __slots__ = ("_oldest_first", "damage", "end", "latest", "layout", "size")

    def __init__(self, layout: ElementLayout) -> None:
        self.layout = layout
        """The layout of the archive's elements (its format version)."""
        self._oldest_first: list[ArchiveEntry] = []
        self.latest: dict[str, ArchiveEntry] = {}
        """The newest element of each name."""
        self.end = FILE_HEADER_SIZE
        """Offset just past the newest whole element: where an append writes."""
        self.size = FILE_HEADER_SIZE
        """Size of the archive when it was walked."""
        self.damage: tuple[Damage, ...] = ()
        """Damaged stretches stepped over, newest first (a torn tail is not one)."""

    def __repr__(self) -> str:
        return (
            f"<Listing of {len(self._oldest_first)} elements, end {self.end}, "
            f"size {self.size}, {len(self.damage)} damaged>"
        )

    @property
    def entries(self) -> tuple[ArchiveEntry, ...]:
        """Every whole element, newest first."""
        return tuple(reversed(self._oldest_first))

    def newest_first(self) -> list[ArchiveEntry]:
        """`entries` as a new list (one copy, not two)."""
        return self._oldest_first[::-1]

    def __len__(self) -> int:
        return len(self._oldest_first)

    def add(self, entry: ArchiveEntry) -> None:
        """Note an element just appended at `end`."""
        self._oldest_first.append(entry)
        self.latest[entry.name] = entry
        self.end = self.size = entry.end

    def extended(
        self,
        newest_first: list[ArchiveEntry],
        end: int,
        size: int,
        damage: list[Damage],
    ) -> Listing:
        """A new listing: this one, then what a walk of the bytes after it
        found (``end`` is where the newest of those ends)."""
        listing = Listing(self.layout)
        if self._oldest_first:
            listing._oldest_first = self._oldest_first + newest_first[::-1]
            listing.latest = dict(self.latest)
        else:  # (no copies of what is empty)
            newest_first.reverse()
            listing._oldest_first = newest_first
        for entry in listing._oldest_first[len(self._oldest_first) :]:
            listing.latest[entry.name] = entry
        listing.end = end if newest_first else self.end
        listing.size = size
        listing.damage = tuple(damage) + self.damage
        return listing


def walk_back(
    size: int,
    floor: int,
    layout: ElementLayout,
    stop: Callable[[ArchiveEntry], bool] | None = None,
) -> Walk[tuple[list[ArchiveEntry], int, list[Damage], bool]]:
    """Walk from ``size`` back to ``floor``.

    Returns the elements found (newest first), where the newest ends, the
    damage stepped over, and whether ``stop`` (called on each element) asked
    to stop early.
    """
    entries: list[ArchiveEntry] = []
    damage: list[Damage] = []
    if size <= floor:
        return entries, floor, damage, False
    window = Window()
    try:
        entry: ArchiveEntry | None = yield from element_at(window, size, floor, layout)
    except CorruptArchiveError as error:
        # The element before the end is found by looking for its trailer.
        entry = yield from scan_back(size, floor, layout)
        if (yield from _ends_with_trailer(window, size, floor, layout)):
            # A whole trailer ends the archive, so its append finished: the
            # element is damaged, not torn.
            start = floor if entry is None else entry.end
            offset = (
                size - layout.trailer_size if error.offset is None else error.offset
            )
            damage.append(Damage(SkippedRegion(start, size, error.reason), offset))
        # Otherwise no trailer ends the archive: a torn tail, not damage.
    if entry is None:
        return entries, floor, damage, False
    newest_end = entry.end
    while entry is not None:
        entries.append(entry)
        if stop is not None and stop(entry):
            return entries, newest_end, damage, True
        end = entry.offset
        while end > floor:
            # Those the window holds whole, a bounded number per call.
            held: list[ArchiveEntry] = []
            end = fast_whole_elements(
                window.data, window.start, end, floor, layout, held
            )
            for entry in held:
                entries.append(entry)
                if stop is not None and stop(entry):
                    return entries, newest_end, damage, True
            if len(held) < ELEMENTS_PER_CALL:
                break
        if end <= floor:
            break
        try:
            entry = yield from element_at(window, end, floor, layout)
        except CorruptArchiveError as error:
            entry = yield from scan_back(end, floor, layout)
            start = floor if entry is None else entry.end
            region = SkippedRegion(start, end, error.reason)
            offset = start if error.offset is None else error.offset
            damage.append(Damage(region, offset))
    return entries, newest_end, damage, False


def extend_listing(size: int, known: Listing) -> Walk[Listing]:
    """The listing of an archive of ``size`` bytes, reusing ``known`` (a
    listing of it when it was smaller, or the empty one).

    Bytes before ``known.end`` never change (archives only grow), so only
    what lies after it is walked. An archive smaller than that was replaced
    or cut by someone else, and is walked whole.
    """
    if size == known.size:
        return known
    if size < known.end:
        known = Listing(known.layout)
    entries, end, damage, _ = yield from walk_back(size, known.end, known.layout)
    return known.extended(entries, end, size, damage)


def find_back(
    size: int, known: Listing, name: str
) -> Walk[tuple[ArchiveEntry | None, Listing | None]]:
    """The newest element named ``name``, reading back only as far as needed.

    Walks the bytes after ``known`` first, stopping at the first match, then
    looks in ``known``. Raises
    [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] if damage lies
    between the end and the match (or, with no match, anywhere): what the damage hides
    might be a newer element of that name. Also returns the extended listing when the
    walk covered all the new bytes (else None).
    """
    listing: Listing | None = None
    damage: tuple[Damage, ...]
    if size == known.size:
        listing = known
        found, damage = None, ()
    else:
        if size < known.end:
            known = Listing(known.layout)
        entries, end, new_damage, stopped = yield from walk_back(
            size, known.end, known.layout, lambda entry: entry.name == name
        )
        damage = tuple(new_damage)
        found = entries[-1] if stopped else None
        if not stopped:
            listing = known.extended(entries, end, size, new_damage)
    if found is None:
        found = known.latest.get(name)
        damage += known.damage
    if damage:
        newer = [d for d in damage if found is None or d.region.end > found.offset]
        if newer:
            raise CorruptArchiveError(newer[0].region.reason, offset=newer[0].offset)
    return found, listing
