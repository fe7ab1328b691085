"""flowcraft_conformance: the driver conformance suite.

Adopt it from pytest with one class::

    from flowcraft_conformance.suite import DriverConformance

    class TestMyDriver(DriverConformance):
        backend_url = "mydriver://..."

or run it without a test file: ``flowcraft conformance mydriver://...`` (see
:mod:`flowcraft_conformance.runner`). Modules, one concept each:

* :mod:`~flowcraft_conformance.capabilities`: capability names and ``requires``;
* :mod:`~flowcraft_conformance.target`: the driver under test (URL or factory);
* :mod:`~flowcraft_conformance.harness`: the per-test ``conformance`` fixture object;
* :mod:`~flowcraft_conformance.facade`: the sync facade over the async stores;
* :mod:`~flowcraft_conformance.strategies`: JSON strategies and exact JSON equality;
* one module per contract: ``declaration``, ``context``, ``coordination``, ``atomicity``,
  ``ttl``, ``signals``, ``queueing``, ``processes``, and ``scenarios`` (workflows);
* :mod:`~flowcraft_conformance.suite`: the umbrella class; :mod:`~flowcraft_conformance.runner`:
  the programmatic runner and the CLI command.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DriverConformance", "Harness", "Target", "requires", "run_conformance"]

_EXPORTS = {
    "DriverConformance": "suite",
    "Harness": "harness",
    "Target": "target",
    "requires": "capabilities",
    "run_conformance": "runner",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing one module of the suite does not import pytest and all contracts.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
