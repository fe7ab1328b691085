"""``engine.slots.Slots``: never more holders than its size, first come first served, and a
waiter that times out or is cancelled takes no slot and loses none."""

from __future__ import annotations

import asyncio

import pytest

from flowcraft_core.engine.slots import Slots


async def test_free_slots_are_taken_without_waiting_and_no_more() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take()
    assert not slots.take()
    slots.give()
    assert slots.take()


async def test_waiters_are_served_in_order_and_the_bound_holds() -> None:
    slots = Slots(1)
    assert slots.take()
    order: list[int] = []

    async def waiter(i: int) -> None:
        assert await slots.wait()
        order.append(i)
        await asyncio.sleep(0)
        slots.give()

    tasks = [asyncio.ensure_future(waiter(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == [] and not slots.take()  # a waiter is first in line: take() gets nothing
    slots.give()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert order == [0, 1, 2, 3, 4]
    assert slots.free == 1


async def test_a_timed_out_or_cancelled_waiter_takes_no_slot_and_loses_none() -> None:
    slots = Slots(1)
    assert slots.take()
    assert await slots.wait(0.01) is False
    cancelled = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    slots.give()
    assert slots.free == 1 and slots.take()


async def test_a_slot_handed_over_as_the_wait_is_cancelled_is_passed_on() -> None:
    slots = Slots(1)
    assert slots.take()
    first = asyncio.ensure_future(slots.wait())
    second = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0.01)
    slots.give()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it resumes with it
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) is True
    assert slots.free == 0
    slots.give()
    assert slots.free == 1
