"""The states of a `CaptureFile`, and the rules for moving between them.

Rule 1: A capture file object starts CLOSED. `open()` moves it to OPENING,
and from there to READING or WRITING once the file is open and its newest
commit read, or back to CLOSED if that fails or is cancelled. Only a CLOSED
object may be opened.

Rule 2: A writer is WRITING while records can go straight into the sans-IO
writer: this is the only state in which `add_record()` does nothing but
in-memory work. While a flush job (blocks, and for a commit the master
node) is in its worker thread the writer is FLUSHING; records added then
are held by the writer core and placed when the job ends. The job ending
well moves it back to WRITING.

Rule 3: A flush whose I/O fails moves the writer to FAILED: what reached the
file is unknown, so every later write, commit or append raises
`WriterFailedError`. Reads still work. Only closing (and opening again)
leaves FAILED.

Rule 4: `close()` moves any other state to CLOSING at once, so no new call
reaches the descriptor; work already in a worker thread is waited for, the
descriptor is closed, and the object is CLOSED. A CLOSED object may be
opened again (Rule 1), for reading or for writing.

Rule 5: Nothing but this module's `FileState.move()` changes the state, and
it refuses a move these rules do not allow.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["FileState", "State"]


class State(enum.Enum):
    """Where a capture file object is in its life (see the rules above)."""

    CLOSED = "closed"
    OPENING = "opening"
    READING = "open for reading"
    WRITING = "open for writing"
    FLUSHING = "open for writing, flushing"
    FAILED = "open for writing, failed"
    CLOSING = "closing"


_OPEN: Final = {State.READING, State.WRITING, State.FLUSHING, State.FAILED}

#: The moves the rules allow: from each state, the states it may go to.
_MOVES: Final[dict[State, frozenset[State]]] = {
    State.CLOSED: frozenset({State.OPENING}),
    State.OPENING: frozenset({State.READING, State.WRITING, State.CLOSED}),
    State.READING: frozenset({State.CLOSING}),
    State.WRITING: frozenset({State.FLUSHING, State.CLOSING}),
    State.FLUSHING: frozenset({State.WRITING, State.FAILED, State.CLOSING}),
    State.FAILED: frozenset({State.CLOSING}),
    State.CLOSING: frozenset({State.CLOSED}),
}


class FileState:
    """The state of one capture file object, moved only by the rules."""

    __slots__ = ("failure", "state")

    def __init__(self) -> None:
        self.state = State.CLOSED
        self.failure: BaseException | None = None
        """The error that moved the object to FAILED."""

    def move(self, to: State, failure: BaseException | None = None) -> None:
        """Go to state ``to``; `RuntimeError` if the rules do not allow it."""
        if to not in _MOVES[self.state]:
            raise RuntimeError(f"a capture file cannot go from {self.state} to {to}")
        self.state = to
        if to is State.FAILED:
            self.failure = failure
        elif to is State.OPENING:
            self.failure = None

    @property
    def is_open(self) -> bool:
        """Open for reading or writing (failed or not), and not closing."""
        return self.state in _OPEN

    @property
    def writing(self) -> bool:
        """Open for writing (failed or not), and not closing."""
        return self.state in (State.WRITING, State.FLUSHING, State.FAILED)
