"""Contract: the driver describes itself truthfully.

* declared capabilities have the documented value types (unknown names are allowed);
* for a URL, the driver owning its scheme lists it in ``DriverInfo.schemes``;
* every component the driver provides implements its protocol's methods.
"""

from __future__ import annotations

from flowcraft_core.drivers import scheme_of
from flowcraft_core.protocols import ContextStore, CoordinationStore, Queue

from .capabilities import COMPONENTS, problems, requires
from .harness import Harness

PROTOCOLS: dict[str, type] = {
    "queue": Queue,
    "context": ContextStore,
    "coordination": CoordinationStore,
}


class DeclarationContract:
    """The declaration contract (see the module docstring)."""

    contract = "driver declaration"

    def test_capabilities_are_well_formed(self, conformance: Harness) -> None:
        found = problems(conformance.capabilities)
        assert not found, "; ".join(found)

    @requires("url")
    def test_driver_owns_its_scheme(self, conformance: Harness) -> None:
        url, info = conformance.target.url, conformance.target.info
        assert url is not None and info is not None
        assert info.name, "DriverInfo.name is empty"
        assert scheme_of(url) in info.schemes, f"{info.schemes} lacks {scheme_of(url)!r}"
        unknown = set(info.provides) - set(COMPONENTS)
        assert not unknown, f"DriverInfo.provides names unknown components: {sorted(unknown)}"

    def test_components_implement_the_protocols(self, conformance: Harness) -> None:
        parts = conformance.open()
        wrong = []
        for name in sorted(conformance.target.provides):
            component = getattr(parts, name)
            if component is None:
                wrong.append(f"the driver provides a {name} but built none")
            elif not isinstance(component, PROTOCOLS[name]):
                wrong.append(f"its {name} {type(component).__name__} lacks protocol methods")
        assert not wrong, "; ".join(wrong)
