"""Size limits shared by the formats."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_MAX_RECORD_SIZE", "check_size"]

#: The largest record a writer accepts, and a reader assembles, by default.
DEFAULT_MAX_RECORD_SIZE: Final = 256 * 1024 * 1024


def check_size(size: int, limit: int, what: str = "record") -> None:
    """Raise `ValueError` if an item of ``size`` bytes is over ``limit``."""
    if size > limit:
        raise ValueError(f"{what} of {size} bytes is over the largest allowed, {limit}")
