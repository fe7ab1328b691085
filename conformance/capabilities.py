"""Capabilities: what a driver declares it can do, and how a test says what it needs.

A driver declares capabilities in ``DriverInfo.capabilities`` (a dict). A conformance test that
needs one the driver lacks is **skipped with the reason**, never passed silently::

    @requires("queue", "delays")
    def test_delays_are_honoured(self, conformance): ...

Three kinds of names can be required:

* declared capabilities (:data:`CAPABILITIES`), read from ``DriverInfo.capabilities``;
* components (``queue``, ``context``, ``coordination``), read from ``DriverInfo.provides``;
* harness abilities (``clock``, ``url``): whether the test class can build a coordination store
  on an injected clock, and whether the driver under test is reachable by URL (so another process
  can open it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

COMPONENTS: Final = ("queue", "context", "coordination")


@dataclass(frozen=True)
class Capability:
    """One capability name the suite knows: its meaning, the type of its value, and the value
    assumed when a driver does not declare it (``None``: absent)."""

    name: str
    description: str
    kind: type | tuple[type, ...] = bool
    default: Any = None


CAPABILITIES: Final[dict[str, Capability]] = {
    c.name: c
    for c in (
        Capability("delays", "the queue honours enqueue(..., delay=s)"),
        Capability(
            "ttl",
            "coordination keys expire after their ttl, and ContextStore.expire drops a run",
        ),
        Capability(
            "redelivery_after_crash_s",
            "seconds within which a job is delivered again after its worker died or its handler "
            "was cancelled (and after its handler raised, unless redelivery_after_error_s is "
            "declared)",
            kind=(int, float),
        ),
        Capability(
            "redelivery_after_error_s",
            "seconds within which a job whose handler raised is delivered again, when that "
            "differs from redelivery_after_crash_s (which it defaults to)",
            kind=(int, float),
        ),
        Capability(
            "delay_tolerance_s",
            "how late (seconds) a delayed or redelivered job may arrive beyond its due time; "
            "1.0 if not declared",
            kind=(int, float),
            default=1.0,
        ),
        Capability(
            "multi_process",
            "state, signals and jobs are shared by every process that opens the same URL",
        ),
        Capability(
            "signal",
            "CoordinationStore.signal / wait_any wake waiters by push (part of the protocol, so "
            "assumed unless a driver declares signal=False)",
            default=True,
        ),
        Capability(
            "signal_poll_s",
            "wait_any learns of signals from other processes by looking every this many seconds "
            "rather than by a push (signals within one process still wake at once); at most "
            "0.5, and waiters must still wake within the signal contract's bound",
            kind=(int, float),
        ),
        Capability(
            "fault_injection",
            "the driver can inject duplicate deliveries and crashes itself (informational: the "
            "suite injects faults by wrapping the public protocols)",
        ),
        Capability(
            "isolation",
            "how the suite gets a fresh namespace from a URL: 'query:NAME' adds ?NAME=<token>, "
            "'path' appends /<token>; without it stores are shared and the suite relies on "
            "unique keys and run ids",
            kind=str,
        ),
    )
}

HARNESS: Final[dict[str, str]] = {
    "clock": "the test class builds no coordination store on an injected clock "
    "(override make_clocked_coordination to run the TTL state machine)",
    "url": "the driver under test is not reachable by URL, so no other process can open it",
}


def value_of(capabilities: Mapping[str, Any], name: str) -> Any:
    """The declared value of ``name``, or the capability's default."""
    if name in capabilities:
        return capabilities[name]
    known = CAPABILITIES.get(name)
    return known.default if known is not None else None


def present(value: Any) -> bool:
    """A capability is present when declared with a value other than None or False. Note that
    a number 0 (e.g. ``redelivery_after_crash_s: 0.0``) is present."""
    return value is not None and value is not False


def missing_reason(
    required: str,
    *,
    driver: str,
    capabilities: Mapping[str, Any],
    provides: tuple[str, ...] | frozenset[str],
    harness: Mapping[str, bool],
) -> str | None:
    """Why ``required`` is unavailable for this driver, or None if it is available."""
    if required in COMPONENTS:
        if required in provides:
            return None
        return f"driver {driver!r} does not provide a {required}"
    if required in HARNESS:
        return None if harness.get(required) else f"{HARNESS[required]}"
    value = value_of(capabilities, required)
    if present(value):
        return None
    known = CAPABILITIES.get(required)
    what = f" ({known.description})" if known is not None else ""
    how = "declares it False" if value is False else "does not declare it"
    return f"driver {driver!r} lacks capability {required!r}{what}: it {how}"


def problems(capabilities: Mapping[str, Any]) -> list[str]:
    """Declared capability values of the wrong type (unknown names are allowed)."""
    found = []
    for name, value in capabilities.items():
        known = CAPABILITIES.get(name)
        if known is None or value is None or value is False:
            continue
        kind = known.kind
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if not ok:
            found.append(f"capability {name!r} should be {_kind_name(kind)}, got {value!r}")
    return found


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


F = TypeVar("F", bound=Callable[..., Any])

REQUIRES_ATTR: Final = "__conformance_requires__"


def requires(*names: str) -> Callable[[F], F]:
    """Mark a conformance test (or a whole contract mixin class: then every test it defines) as
    needing ``names``. The ``conformance`` fixture skips the test, with the reason, when any of
    them is missing."""

    def mark(obj: F) -> F:
        previous: tuple[str, ...] = vars(obj).get(REQUIRES_ATTR, ())
        setattr(obj, REQUIRES_ATTR, previous + tuple(names))
        return obj

    return mark
