"""Contract: TTLs expire keys, and ``extend`` renews them.

With an injected clock (a test class that overrides ``make_clocked_coordination``), the
coordination state machine runs with short TTLs and a clock it advances, so expiry is checked
exactly against the model. For every driver with the ``ttl`` capability, real-time tests with
short TTLs (0.3 s) check the same on the driver as deployed, with tolerance:

* a key set with a ttl is there before it and gone after it (``set``, ``set_if_absent``,
  ``incr`` creating the key, ``add_member`` creating the set, a ``signal`` latch);
* ``extend`` pushes the deadline out; ``set`` without a ttl makes the key persistent.

(``ContextStore.expire`` is checked with the context store, in real time.)
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from flowcraft_core.protocols import Op

from .capabilities import requires
from .coordination import CoordinationMachine
from .harness import Harness, run_machine

SHORT = 0.3  # seconds: the TTL of the real-time checks
AFTER = SHORT + 0.5  # by when a short-lived key must be gone


class CoordinationTTLMachine(CoordinationMachine):
    """The coordination machine on an injected clock, with TTLs of a few seconds."""

    clocked: ClassVar[bool] = True


async def _sleep_until(start: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, start + offset - time.monotonic()))


@requires("coordination", "ttl")
class TTLContract:
    """The TTL contract (see the module docstring)."""

    contract = "coordination TTL"

    @requires("clock")
    def test_ttl_state_machine_on_injected_clock(self, conformance: Harness) -> None:
        """Every operation with TTLs, against the model, as the injected clock advances."""
        run_machine(CoordinationTTLMachine, conformance)

    def test_short_ttls_expire_in_real_time(self, conformance: Harness) -> None:
        store = conformance.coordination()
        k = conformance.new_id("ttl") + ":"

        async def body() -> list[str]:
            start = time.monotonic()
            await store.set(k + "set", "v", ttl=SHORT)
            await store.set_if_absent(k + "sia", "v", ttl=SHORT)
            await store.incr(k + "incr", 3, ttl=SHORT)
            await store.add_member(k + "set2", "m", ttl=SHORT)
            await store.set(k + "keep", "v", ttl=SHORT)
            await store.set(k + "keep", "v2")  # set without ttl: persistent
            await store.batch([Op.set(k + "batch", "v", ttl=SHORT)])
            early = time.monotonic() - start
            failures: list[str] = []
            if early < SHORT * 0.6:  # otherwise too slow to tell: only check expiry
                if await store.get(k + "set") != "v":
                    failures.append("set(ttl) key vanished before its ttl")
                if await store.get(k + "incr") != "3":
                    failures.append("incr(ttl) key vanished before its ttl")
                if await store.members(k + "set2") != {"m"}:
                    failures.append("add_member(ttl) set vanished before its ttl")
            # A TTL runs from its write, and on a loaded machine the last write may finish
            # well after ``start``: every key must be gone ``AFTER`` seconds after the writes.
            await _sleep_until(start, early + AFTER)
            for name in ("set", "sia", "incr", "batch"):
                if (got := await store.get(k + name)) is not None:
                    failures.append(
                        f"{name} key with ttl={SHORT} still holds {got!r} {AFTER}s after"
                        f" it was written"
                    )
            if (got_set := await store.members(k + "set2")) != set():
                failures.append(f"member set with ttl={SHORT} still holds {got_set!r}")
            if await store.get(k + "keep") != "v2":
                failures.append("set without ttl did not make the key persistent")
            return failures

        failures = conformance.run(body())
        assert not failures, "; ".join(failures)

    def test_extend_renews_and_incr_keeps_the_ttl(self, conformance: Harness) -> None:
        store = conformance.coordination()
        k = conformance.new_id("ttl") + ":"

        async def body() -> list[str]:
            start = time.monotonic()
            await store.set(k + "ext", "v", ttl=SHORT)
            await store.incr(k + "n", 1, ttl=SHORT)
            await store.incr(k + "n", 1, ttl=60.0)  # existing key: its ttl is kept
            failures: list[str] = []
            if not await store.extend(k + "ext", 3.0):
                failures.append("extend of an existing key returned False")
            if await store.extend(k + "absent", 3.0):
                failures.append("extend of an absent key returned True")
            await _sleep_until(start, AFTER)
            if await store.get(k + "ext") != "v":
                failures.append("extend did not renew the key's ttl")
            if (got := await store.get(k + "n")) is not None:
                failures.append(
                    f"a key created by incr(ttl={SHORT}) and incremented again still holds "
                    f"{got!r} after {AFTER}s: its ttl was lost or replaced"
                )
            return failures

        failures = conformance.run(body())
        assert not failures, "; ".join(failures)

    @requires("signal")
    def test_signal_latch_expires_with_its_ttl(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id("sig")

        async def body() -> str | None:
            start = time.monotonic()
            await store.signal(key, ttl=SHORT)
            first = await store.wait_any([key], 1.0)
            assert first == key, f"wait_any right after signal returned {first!r}"
            await _sleep_until(start, AFTER)
            return await store.wait_any([key], 0.2)

        late = conformance.run(body())
        assert late is None, f"a signal with ttl={SHORT} still latched after {AFTER}s"
