"""TensorFlow's GZIP and ZLIB stream compression of a whole TFRecord file,
sans I/O: bounded pieces in, bounded pieces out."""

from __future__ import annotations

import zlib
from typing import Final, Literal

from ._frame import WINDOW_BITS

__all__ = ["Compression", "Deflater", "Inflater"]

Compression = Literal["gzip", "zlib"]

#: Bytes an inflation gives at most at a time (a damaged or hostile stream
#: that inflates without bound is read a piece at a time, never at once).
INFLATE_PIECE: Final = 1024 * 1024


class Inflater:
    """Inflates a compressed TFRecord stream fed in order."""

    __slots__ = ("_inflate", "consumed")

    def __init__(self, kind: Compression) -> None:
        self._inflate = zlib.decompressobj(WINDOW_BITS[kind])
        self.consumed = 0
        """Compressed bytes taken so far (where the next ones are read)."""

    @property
    def needs_input(self) -> bool:
        """True when what was fed is all inflated (feed the next bytes)."""
        return not self._inflate.unconsumed_tail

    @property
    def ended(self) -> bool:
        """True once the compressed stream's own end was reached."""
        return self._inflate.eof

    def inflate(self, data: bytes | bytearray) -> bytes:
        """Up to `INFLATE_PIECE` bytes of output from ``data`` (the next
        compressed bytes) or, when ``data`` is empty, from what is left of
        the last; raises `zlib.error` for a damaged stream."""
        if data:
            self.consumed += len(data)
            if self._inflate.eof:
                return b""  # bytes after the stream's end: not records
            return self._inflate.decompress(data, INFLATE_PIECE)
        return self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_PIECE)


class Deflater:
    """Compresses what a TFRecord writer frames, a buffer at a time."""

    __slots__ = ("_deflate",)

    def __init__(self, kind: Compression, level: int = 6) -> None:
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, WINDOW_BITS[kind])

    def deflate(self, data: bytes | bytearray, final: bool) -> bytes:
        """The compressed bytes for ``data``: flushed to a byte boundary (so
        a reader can inflate every record written so far), or, ``final``,
        with the stream's end."""
        out = self._deflate.compress(data)
        return out + self._deflate.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
