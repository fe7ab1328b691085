"""The conformance suite's loop thread reports what happened: its own time-out only when the
call ran out of time, the call's own exception otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from flowcraft_conformance.facade import LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def test_a_timeout_the_call_raises_is_not_reported_as_the_calls_own(
    loop_thread: LoopThread,
) -> None:
    async def gives_up() -> None:
        raise TimeoutError("run r1 did not finish within 30 s")

    with pytest.raises(TimeoutError, match="run r1 did not finish within 30 s"):
        loop_thread.run(gives_up(), timeout=10)


def test_a_call_that_runs_out_of_time_is_cancelled_and_reported(
    loop_thread: LoopThread,
) -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2s"):
        loop_thread.run(forever(), timeout=0.2)

    async def was_cancelled() -> bool:
        await asyncio.wait_for(cancelled.wait(), 5)
        return True

    assert loop_thread.run(was_cancelled(), timeout=10)
