"""Contract: ``signal`` latches and ``wait_any`` wakes by push.

* a ``wait_any`` that starts after a signal returns at once (the signal is latched);
* every waiter of a key wakes when it is signalled, within :func:`wake_bound` seconds: at once
  (by push), or for waiters on another client at the latest at the driver's next declared poll
  (``signal_poll_s``, at most :data:`MAX_SIGNAL_POLL`); a waiter that learns of the signal only
  by a slow look (a poll a second or more apart, its own timeout) fails;
* ``wait_any`` over several keys returns the one signalled;
* a timeout returns None, no earlier than the timeout;
* with ``multi_process``, a signal through one client wakes a waiter on another;
* all of it holds over several keys and several waiters at once, checked by a state machine
  against a model of which keys are latched: a latched key is seen whichever place it has in
  the keys waited on, by every waiter, and no waiter consumes it.
"""

from __future__ import annotations

import asyncio
import time

from hypothesis import strategies as st
from hypothesis.stateful import rule

from flowcraft_core.protocols import CoordinationStore

from .capabilities import requires
from .harness import BoundMachine, Harness, run_machine

#: Seconds a waiter may wake after its signal, beyond the poll the driver declares: the time a
#: loaded CI machine takes for the signal's own write and for waking the waiters' tasks (0.25 s
#: was too tight for SQLite under load). What it tells apart is a waiter woken by the signal
#: from one that would only have noticed it at a look seconds later.
WAKE_SLACK = 1.0
#: The longest ``signal_poll_s`` a driver may declare: a short poll, not a slow one.
MAX_SIGNAL_POLL = 0.5
WAITERS = 5


def wake_bound(harness: Harness, *, across: bool) -> float:
    """Seconds from a signal to its waiters' wake-up: :data:`WAKE_SLACK`, plus, when the signal
    comes through another client or process (``across``), the poll the driver declares.
    Signals within one client wake at once, polling or not (see ``signal_poll_s``)."""
    poll = harness.capability("signal_poll_s") if across and harness.has("signal_poll_s") else 0
    return WAKE_SLACK + min(float(poll), MAX_SIGNAL_POLL)


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


MACHINE_KEYS = 6
NOT_SIGNALLED = 0.05  # seconds a machine's wait on unsignalled keys lasts before it judges
key_sets = st.lists(
    st.integers(0, MACHINE_KEYS - 1), min_size=1, max_size=MACHINE_KEYS, unique=True
)
waiter_counts = st.integers(1, 4)


class SignalMachine(BoundMachine):
    """``signal`` / ``wait_any`` over several keys and waiters against the set of latched keys.
    With ``multi_process`` the signals go through a second client of the same namespace."""

    def __init__(self) -> None:
        super().__init__()
        h = self.harness
        namespace = h.new_id("sigm")
        self.parts = [h.open(namespace, components=["coordination"])]
        if h.has("multi_process"):
            self.parts.append(h.open(namespace, components=["coordination"]))
        self.waiting = self.parts[0].coordination
        self.signalling = self.parts[-1].coordination
        self.keys = [f"{namespace}:k{i}" for i in range(MACHINE_KEYS)]
        self.latched: set[int] = set()
        self.bound = wake_bound(h, across=len(self.parts) > 1)

    def teardown(self) -> None:
        for parts in self.parts:
            self.harness.release(parts)

    async def _wait(self, keys: list[str], waiters: int, timeout: float) -> list[str | None]:
        assert self.waiting is not None
        return list(
            await asyncio.gather(*(self.waiting.wait_any(keys, timeout) for _ in range(waiters)))
        )

    def _judge(self, chosen: list[int], got: list[str | None], latched: set[int]) -> None:
        keys = [self.keys[i] for i in chosen]
        allowed = {self.keys[i] for i in chosen if i in latched}
        for n, result in enumerate(got, 1):
            if allowed:
                assert result in allowed, (
                    f"waiter {n} of {len(got)} on {len(keys)} keys got {result!r}; latched "
                    f"among them: {sorted(allowed)} (at positions "
                    f"{[keys.index(k) for k in sorted(allowed)]})"
                )
            else:
                assert result is None, f"waiter {n} got {result!r}, but none of its keys is latched"

    @rule(index=st.integers(0, MACHINE_KEYS - 1))
    def signal(self, index: int) -> None:
        assert self.signalling is not None
        self.harness.run(self.signalling.signal(self.keys[index]))
        self.latched.add(index)

    @rule(chosen=key_sets, waiters=waiter_counts)
    def wait_latched(self, chosen: list[int], waiters: int) -> None:
        """Waiters on keys of which some are latched return at once, each with one of them."""
        latched = set(self.latched)
        timeout = 2 * self.bound if latched & set(chosen) else NOT_SIGNALLED
        start = time.monotonic()
        got = self.harness.run(self._wait([self.keys[i] for i in chosen], waiters, timeout))
        elapsed = time.monotonic() - start
        self._judge(chosen, got, latched)
        if latched & set(chosen):
            assert elapsed < self.bound, (
                f"{waiters} waiter(s) on latched keys took {elapsed:.3f}s, not at once "
                f"(bound {self.bound}s)"
            )

    @rule(chosen=key_sets, waiters=waiter_counts, data=st.data())
    def wake(self, chosen: list[int], waiters: int, data: st.DataObject) -> None:
        """A signal on one of the keys waited on wakes every waiter."""
        target = data.draw(st.sampled_from(chosen), label="signalled")
        keys = [self.keys[i] for i in chosen]

        async def body() -> tuple[list[str | None], float]:
            assert self.signalling is not None
            tasks = asyncio.gather(*(self._wait(keys, 1, 5.0) for _ in range(waiters)))
            await asyncio.sleep(NOT_SIGNALLED)  # let every waiter block
            signalled_at = time.monotonic()
            await self.signalling.signal(self.keys[target])
            got = [r for results in await tasks for r in results]
            return got, time.monotonic() - signalled_at

        got, elapsed = self.harness.run(body())
        self.latched.add(target)
        self._judge(chosen, got, self.latched)
        assert elapsed < self.bound, (
            f"{waiters} waiter(s) woke {elapsed:.3f}s after the signal (bound {self.bound}s): "
            "polling?"
        )


@requires("coordination", "signal")
class SignalContract:
    """The signal contract (see the module docstring)."""

    contract = "signals"

    def test_signal_state_machine(self, conformance: Harness) -> None:
        """Signals and waits over several keys and waiters, in random order, agree with the
        model. Each wait on unsignalled keys costs a short timeout, so fewer, shorter runs."""
        run_machine(
            SignalMachine,
            conformance,
            max_examples=max(1, conformance.max_examples // 4),
            stateful_step_count=15,
        )

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
        bound = wake_bound(conformance, across=False)
        assert elapsed < bound, f"wait_any after signal took {elapsed:.3f}s, not at once"

    def test_a_latched_signal_is_seen_whichever_key_it_is(self, conformance: Harness) -> None:
        """The latch holds for every key of a ``wait_any``, not only the first (the state
        machine finds this too, but not in every run: here it is checked every time)."""
        store = conformance.coordination()
        bound = wake_bound(conformance, across=False)

        async def body(keys: list[str], latched: str) -> tuple[str | None, float]:
            await store.signal(latched)
            start = time.monotonic()
            got = await store.wait_any(keys, 2 * bound)
            return got, time.monotonic() - start

        for position in (2, 1):  # the last key, then the middle one, of fresh keys each time
            base = conformance.new_id("sig")
            keys = [f"{base}:a", f"{base}:b", f"{base}:c"]
            latched = keys[position]
            got, elapsed = conformance.run(body(keys, latched))
            assert got == latched, (
                f"wait_any on {len(keys)} keys, the one at position {keys.index(latched)} "
                f"latched, returned {got!r}"
            )
            assert elapsed < bound, f"wait_any on a latched key took {elapsed:.3f}s, not at once"

    def test_every_waiter_wakes_promptly(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id("sig")
        results, delays = conformance.run(_wake_times(store, store, key, WAITERS))
        assert results == [key] * WAITERS, f"waiters returned {results}"
        slowest, bound = max(delays), wake_bound(conformance, across=False)
        assert slowest < bound, (
            f"a waiter woke {slowest:.3f}s after the signal (bound {bound}s): polling?"
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
        bound = wake_bound(conformance, across=True)
        assert max(delays) < bound, f"cross-client wake-up took {max(delays):.3f}s (bound {bound}s)"

    @requires("signal_poll_s")
    def test_declared_poll_is_short(self, conformance: Harness) -> None:
        """A driver that polls for other processes' signals declares a short poll: the wake-up
        bounds grow by it, so a long one would let a slow poll pass for a push."""
        poll = conformance.capability("signal_poll_s")
        assert poll <= MAX_SIGNAL_POLL, (
            f"signal_poll_s is {poll}: a poll of at most {MAX_SIGNAL_POLL}s is a wake-up, a "
            "longer one is not"
        )
