"""Group commit: many small writes that arrive together, written together, each caller answered with
its own result only once the batch is written.

After a group message at 1,024 members x 2 devices, 2,047 devices acknowledge it within a second or
two. Written one by one, each acknowledgement is a transaction of its own: a commit into SQLite's
write-ahead log, a round trip to PostgreSQL (docs/benchmarks.md, "Large groups"). Here a write joins
the batch being gathered; the batch is written once the event loop has run everything that was ready
(so every request that arrived in the same turn joins it), and writes that arrive while it is being
written make up the next batch. Nothing waits on a timer: a lone write goes at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class GroupCommit(Generic[In, Out]):
    def __init__(self, write: Callable[[list[In]], Awaitable[list[Out]]]) -> None:
        self._write = write
        """Writes a batch; gives one result per item, in order (or raises for the whole batch)."""
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Write ``item`` with whatever else arrives meanwhile; its own result once the batch is written."""
        answer: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="group-commit")
        return await answer

    async def _write_batches(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as error:  # e.g. the database is unavailable: every caller hears of it
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(error)
                continue
            except BaseException:  # cancelled (the server stops): so are the callers still waiting
                for _, answer in [*batch, *self._waiting]:
                    answer.cancel()
                raise
            for (_, answer), result in zip(batch, results, strict=True):
                if not answer.done():  # its request may have been cancelled (the socket closed)
                    answer.set_result(result)
