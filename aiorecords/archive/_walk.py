"""Walking an archive from its end to its beginning, as pure code.

Everything here reads through a ``pread(offset, size)`` function it is given
(a file's, in a worker thread, or a slice of bytes held in memory) and
decides from the bytes alone:

* where the last whole element ends (what follows it is a torn tail: an
  append that has not finished, or never will);
* which elements there are, newest first, stepping over damaged ones and
  describing each as a [`SkippedRegion`][aiorecords.SkippedRegion];
* where the newest element of a name is, reading no further back than that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._skipped import SkippedRegion
from ..errors import CorruptArchiveError
from ._format import FILE_HEADER_SIZE, ArchiveEntry, Codec, ElementLayout

__all__ = [
    "BackwardReader",
    "Damage",
    "Listing",
    "Pread",
    "element_at",
    "extend_listing",
    "find_back",
    "scan_back",
    "valid_end",
    "walk_back",
]

#: Reads ``size`` bytes at a file offset (fewer only at the end of the data).
Pread = Callable[[int, int], bytes]

#: Bytes read at a time when walking back (many small elements per read).
WINDOW: Final = 256 * 1024


class BackwardReader:
    """Serves reads near one another from one window read before them.

    Walking back through small elements asks for a trailer, then a header a
    little before it, then the next trailer before that: one read of the
    window that ends at the current position serves dozens of them.
    """

    __slots__ = ("_data", "_pread", "_start")

    def __init__(self, pread: Pread) -> None:
        self._pread = pread
        self._start = 0
        self._data = b""

    def read(self, offset: int, size: int, floor: int = 0) -> bytes:
        """Bytes ``[offset, offset + size)``, read with what lies before them
        (down to ``floor``)."""
        end = offset + size
        if self._start <= offset and end <= self._start + len(self._data):
            at = offset - self._start
            return self._data[at : at + size]
        if size >= WINDOW:
            return self._pread(offset, size)
        start = min(max(floor, end - WINDOW, 0), offset)
        self._data = self._pread(start, end - start)
        self._start = start
        at = offset - start
        return self._data[at : at + size]


def element_at(
    reader: BackwardReader, end: int, floor: int, layout: ElementLayout
) -> ArchiveEntry:
    """The element that ends at ``end`` and starts at or after ``floor``.

    Raises [`CorruptArchiveError`][aiorecords.errors.CorruptArchiveError] (at the offset
    where the bytes stop making sense) if there is no such element.
    """
    trailer_size = layout.trailer_size
    if end - floor < layout.header_size + trailer_size:
        raise CorruptArchiveError(
            "no room for an element here", offset=max(end - trailer_size, floor)
        )
    trailer = layout.decode_trailer(
        reader.read(end - trailer_size, trailer_size, floor), end
    )
    if trailer.start < floor:
        raise CorruptArchiveError(
            "element would start before the previous one ends",
            offset=end - trailer_size,
        )
    fixed = reader.read(trailer.start, layout.header_size, floor)
    fields = layout.header_fields(fixed, trailer.start)
    size = layout.header_size + fields[5] + fields[6]  # and name and comment
    if trailer.start + size + trailer.stored + trailer_size != end:
        raise CorruptArchiveError(
            "element lengths do not add up", offset=end - trailer_size
        )
    header = layout.decode_header(
        reader.read(trailer.start, size, floor), trailer.start, fields
    )
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


def scan_back(
    pread: Pread, end: int, floor: int, layout: ElementLayout
) -> ArchiveEntry | None:
    """The last whole element ending before ``end`` (or at it) and starting
    at or after ``floor``, found by looking for trailers; None if none.

    This steps over a torn tail or damage. A candidate is believed only if
    its trailer, its header and the offsets each records all agree, so bytes
    that merely look like an element (an archive stored as another's entry,
    say) are not taken for one. In a version-2 archive the trailer's magic
    occurs nowhere else, so no payload can imitate an element.
    """
    reader = BackwardReader(pread)
    chunk_end = end
    while chunk_end - floor >= layout.header_size + layout.trailer_size:
        chunk_start = max(floor, chunk_end - WINDOW)
        chunk = pread(chunk_start, chunk_end - chunk_start)
        for candidate in layout.trailer_candidates(chunk, chunk_start):
            try:
                return element_at(reader, candidate, floor, layout)
            except CorruptArchiveError:
                continue
        if chunk_start == floor:
            break
        # Overlap the chunks by a trailer, so that one across them is seen.
        chunk_end = chunk_start + layout.trailer_size
    return None


def valid_end(pread: Pread, size: int, floor: int, layout: ElementLayout) -> int:
    """Where the last whole element at or after ``floor`` ends (``floor`` if
    there is none): the offset an append writes at."""
    if size <= floor:
        return floor
    try:
        return element_at(BackwardReader(pread), size, floor, layout).end
    except CorruptArchiveError:
        last = scan_back(pread, size, floor, layout)
        return floor if last is None else last.end


def _ends_with_trailer(
    reader: BackwardReader, end: int, floor: int, layout: ElementLayout
) -> bool:
    """Whether a whole, checksummed trailer ends at ``end``."""
    size = layout.trailer_size
    if end - floor < size:
        return False
    try:
        layout.decode_trailer(reader.read(end - size, size, floor), end)
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
        listing._oldest_first = self._oldest_first + newest_first[::-1]
        listing.latest = dict(self.latest)
        for entry in reversed(newest_first):
            listing.latest[entry.name] = entry
        listing.end = end if newest_first else self.end
        listing.size = size
        listing.damage = tuple(damage) + self.damage
        return listing


def walk_back(
    pread: Pread,
    size: int,
    floor: int,
    layout: ElementLayout,
    stop: Callable[[ArchiveEntry], bool] | None = None,
) -> tuple[list[ArchiveEntry], int, list[Damage], bool]:
    """Walk from ``size`` back to ``floor``.

    Returns the elements found (newest first), where the newest ends, the
    damage stepped over, and whether ``stop`` (called on each element) asked
    to stop early.
    """
    entries: list[ArchiveEntry] = []
    damage: list[Damage] = []
    if size <= floor:
        return entries, floor, damage, False
    reader = BackwardReader(pread)
    try:
        entry: ArchiveEntry | None = element_at(reader, size, floor, layout)
    except CorruptArchiveError as error:
        # The element before the end is found by looking for its trailer.
        entry = scan_back(pread, size, floor, layout)
        if _ends_with_trailer(reader, size, floor, layout):
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
        if end <= floor:
            break
        try:
            entry = element_at(reader, end, floor, layout)
        except CorruptArchiveError as error:
            entry = scan_back(pread, end, floor, layout)
            start = floor if entry is None else entry.end
            region = SkippedRegion(start, end, error.reason)
            offset = start if error.offset is None else error.offset
            damage.append(Damage(region, offset))
    return entries, newest_end, damage, False


def extend_listing(pread: Pread, size: int, known: Listing) -> Listing:
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
    entries, end, damage, _ = walk_back(pread, size, known.end, known.layout)
    return known.extended(entries, end, size, damage)


def find_back(
    pread: Pread, size: int, known: Listing, name: str
) -> tuple[ArchiveEntry | None, Listing | None]:
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
        entries, end, new_damage, stopped = walk_back(
            pread, size, known.end, known.layout, lambda entry: entry.name == name
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
