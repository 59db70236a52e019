"""Counting the turns a busy task leaves to others on the event loop."""

from __future__ import annotations

import asyncio


class TurnCounter:
    """A task that counts the turns of the event loop it gets until stopped:
    how often a busy task lets others run."""

    def __init__(self) -> None:
        self.turns = 0
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stopped:
            await asyncio.sleep(0)
            self.turns += 1

    async def __aenter__(self) -> TurnCounter:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)  # it starts, and waits for its next turn
        self.turns = 0
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopped = True
        assert self._task is not None
        await self._task
