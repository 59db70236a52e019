"""The ``.tfindex`` file of the ``tfrecord`` package, sans I/O: one text
line ``"<offset> <length>\\n"`` per record (the offset of its header, and
its framed length), and the cuts of a file into splits it gives."""

from __future__ import annotations

import itertools
import posixpath
from typing import Final

__all__ = ["INDEX_SUFFIX", "IndexCuts", "index_line", "index_path_of"]

#: How an index's name ends.
INDEX_SUFFIX: Final = ".tfindex"

#: A line longer than this is no index's.
_LONGEST_LINE: Final = 64


def index_path_of(path: str) -> str:
    """Where the index of the TFRecord file ``path`` lies: its name with
    the extension replaced by ``.tfindex`` (the ``tfrecord`` package's
    convention)."""
    root, _ = posixpath.splitext(path)
    return root + INDEX_SUFFIX


def index_line(offset: int, length: int) -> bytes:
    """The index line of a record framed at ``offset`` in ``length`` bytes."""
    return b"%d %d\n" % (offset, length)


class IndexCuts:
    """Reads an index fed in pieces, keeping only where to cut the file:
    before a record, once ``target_bytes`` were passed since the last cut.
    Memory stays bounded whatever the index's size. An index whose records
    do not follow one another from offset 0 is not the file's (`valid`)."""

    __slots__ = ("_cuts", "_expected", "_partial", "_since", "_target", "valid")

    def __init__(self, target_bytes: int) -> None:
        self._target = target_bytes
        self._cuts = [0]
        self._expected = 0  # where the next record must start
        self._since = 0
        self._partial = b""
        self.valid = True
        """False once the index is seen not to describe a whole file."""

    def feed(self, data: bytes) -> None:
        """The next bytes of the index."""
        if not self.valid:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _LONGEST_LINE:
            self.valid = False
            return
        for line in lines:
            self._take(line)

    def _take(self, line: bytes) -> None:
        fields = line.split()
        if (
            len(fields) != 2
            or not fields[0].isdigit()
            or not fields[1].isdigit()
            or int(fields[0]) != self._expected
            or int(fields[1]) < 16
        ):
            self.valid = False
            return
        if self._since >= self._target:
            self._cuts.append(self._expected)
            self._since = 0
        length = int(fields[1])
        self._expected += length
        self._since += length

    def ranges(self, size: int) -> list[tuple[int, int]] | None:
        """The ``[start, stop)`` byte ranges of a file of ``size`` bytes,
        once the whole index was fed; None if the index is not that file's
        (damaged, or for other contents)."""
        if self._partial:
            self.feed(b"\n")
        if not self.valid or self._expected != size:
            return None
        cuts = [*self._cuts, size]
        return [
            (start, stop) for start, stop in itertools.pairwise(cuts) if stop > start
        ] or [(0, 0)]
