"""The one description of bytes that a tolerant reader had to drop."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SkippedRegion"]


@dataclass(frozen=True, slots=True)
class SkippedRegion:
    """Bytes ``[start, end)`` of a file that a reader skipped, and why.

    Every format reports lost bytes with this type: the LevelDB records reader
    when it drops a damaged fragment, the archive reader when it steps over a
    damaged entry, the capture file reader in its recovery mode.
    """

    start: int
    """Offset of the first byte dropped."""
    end: int
    """Offset just past the last byte dropped."""
    reason: str
    """Why the bytes were dropped (``"bad checksum"``, ``"bad length"``, ...)."""

    @property
    def length(self) -> int:
        """How many bytes were dropped."""
        return self.end - self.start
