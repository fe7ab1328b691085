"""Contract: ``signal`` latches and ``wait_any`` wakes by push.

* a ``wait_any`` that starts after a signal returns at once (the signal is latched);
* every waiter of a key wakes when it is signalled, within :data:`WAKE_BOUND` seconds (a
  waiter polling the backend less often than that fails);
* ``wait_any`` over several keys returns the one signalled;
* a timeout returns None, no earlier than the timeout;
* with ``multi_process``, a signal through one client wakes a waiter on another.
"""

from __future__ import annotations

import asyncio
import time

from flowcraft_core.protocols import CoordinationStore

from .capabilities import requires
from .harness import Harness

WAKE_BOUND = 0.25  # seconds from signal to wake-up
WAITERS = 5


async def _wake_times(
    waiting: CoordinationStore, signalling: CoordinationStore, key: str, waiters: int
) -> tuple[list[str | None], list[float]]:
    woke: list[float] = []

    async def wait() -> str | None:
        got = await waiting.wait_any([key], 5.0)
        woke.append(time.monotonic())
        return got

    tasks = [asyncio.create_task(wait()) for _ in range(waiters)]
    await asyncio.sleep(0.1)  # let every waiter block
    signalled_at = time.monotonic()
    await signalling.signal(key)
    results = await asyncio.gather(*tasks)
    return list(results), [t - signalled_at for t in woke]


@requires("coordination", "signal")
class SignalContract:
    """The signal contract (see the module docstring)."""

    contract = "signals"

    def test_signal_is_latched(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id("sig")

        async def body() -> tuple[str | None, float]:
            await store.signal(key)
            start = time.monotonic()
            got = await store.wait_any([key], 5.0)
            return got, time.monotonic() - start

        got, elapsed = conformance.run(body())
        assert got == key, f"wait_any after signal returned {got!r}"
        assert elapsed < WAKE_BOUND, f"wait_any after signal took {elapsed:.3f}s, not at once"

    def test_every_waiter_wakes_promptly(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id("sig")
        results, delays = conformance.run(_wake_times(store, store, key, WAITERS))
        assert results == [key] * WAITERS, f"waiters returned {results}"
        slowest = max(delays)
        assert slowest < WAKE_BOUND, (
            f"a waiter woke {slowest:.3f}s after the signal (bound {WAKE_BOUND}s): polling?"
        )

    def test_wait_any_returns_the_signalled_key(self, conformance: Harness) -> None:
        store = conformance.coordination()
        base = conformance.new_id("sig")
        keys = [f"{base}:a", f"{base}:b", f"{base}:c"]

        async def body() -> str | None:
            waiter = asyncio.create_task(store.wait_any(keys, 5.0))
            await asyncio.sleep(0.05)
            await store.signal(keys[1])
            return await waiter

        got = conformance.run(body())
        assert got == keys[1], f"wait_any returned {got!r}, not the signalled {keys[1]!r}"

    def test_timeout_returns_none(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id("sig")

        async def body() -> tuple[str | None, float]:
            start = time.monotonic()
            got = await store.wait_any([key], 0.2)
            return got, time.monotonic() - start

        got, elapsed = conformance.run(body())
        assert got is None, f"wait_any on an unsignalled key returned {got!r}"
        assert 0.19 <= elapsed < 0.2 + 1.0, f"wait_any(timeout=0.2) returned after {elapsed:.3f}s"

    def test_signals_are_per_key(self, conformance: Harness) -> None:
        store = conformance.coordination()
        base = conformance.new_id("sig")

        async def body() -> str | None:
            await store.signal(base + ":other")
            return await store.wait_any([base + ":mine"], 0.1)

        got = conformance.run(body())
        assert got is None, f"a signal on another key woke wait_any: {got!r}"

    @requires("multi_process")
    def test_signal_from_another_client(self, conformance: Harness) -> None:
        namespace = conformance.new_id("sig")
        first = conformance.open(namespace, components=["coordination"]).coordination
        second = conformance.open(namespace, components=["coordination"]).coordination
        assert first is not None and second is not None
        key = namespace + ":k"
        results, delays = conformance.run(_wake_times(first, second, key, 3))
        assert results == [key] * 3, f"waiters on another client returned {results}"
        assert max(delays) < WAKE_BOUND, f"cross-client wake-up took {max(delays):.3f}s"
