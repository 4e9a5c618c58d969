"""Group commit (store/group_commit.py): writes that arrive together go as one batch, each caller gets its
own result, and a failure reaches exactly the callers whose batch failed."""

from __future__ import annotations

import asyncio

import pytest

from lockstep.server.errors import Unavailable
from lockstep.server.store.group_commit import GroupCommit

pytestmark = pytest.mark.anyio


class SlowWriter:
    """Doubles each item; notes every batch, and holds each write until the test lets it finish."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    async def write(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("the database went away")
        return [2 * item for item in items]


async def test_writes_arriving_together_are_one_batch_and_those_during_a_write_the_next() -> None:
    writer = SlowWriter()
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    first = [asyncio.create_task(commit.submit(item)) for item in (1, 2, 3)]
    await asyncio.sleep(0.01)  # the first batch is being written...
    later = [asyncio.create_task(commit.submit(item)) for item in (4, 5)]
    await asyncio.sleep(0.01)
    assert writer.batches == [[1, 2, 3]] and not any(task.done() for task in first + later)
    writer.release.set()
    assert await asyncio.gather(*first, *later) == [2, 4, 6, 8, 10]
    assert writer.batches == [[1, 2, 3], [4, 5]]
    assert await commit.submit(6) == 12  # alone, at once: no timer to wait for
    assert writer.batches[-1] == [6]


async def test_a_failed_batch_fails_its_callers_only_and_the_next_batch_is_written() -> None:
    writer = SlowWriter()
    writer.fail_next = True
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    failing = [asyncio.create_task(commit.submit(item)) for item in (1, 2)]
    await asyncio.sleep(0.01)
    next_batch = asyncio.create_task(commit.submit(3))
    writer.release.set()
    for task in failing:
        with pytest.raises(Unavailable):
            await task
    assert await next_batch == 6


async def test_a_caller_that_gives_up_leaves_the_others_answered() -> None:
    writer = SlowWriter()
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    leaving, staying = asyncio.create_task(commit.submit(1)), asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0.01)
    leaving.cancel()  # its socket closed while the batch was written
    writer.release.set()
    assert await staying == 4
    assert leaving.cancelled()
