"""The test class :mod:`flowcraft_conformance.runner` binds to a target (not for direct use)."""

from __future__ import annotations

from . import runner
from .harness import Harness
from .suite import DriverConformance
from .target import Target


class TestConformance(DriverConformance):
    """Every conformance test, on the target of the current :func:`runner.run_conformance`."""

    def conformance_target(self) -> Target:
        return runner.current_binding().target

    def make_harness(self) -> Harness:
        binding = runner.current_binding()
        return Harness(binding.target, max_examples=binding.max_examples, shrink=binding.shrink)
