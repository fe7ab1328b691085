"""What every test of the project shares: the Hypothesis profiles, and slow tests first.

Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (``make test`` sets ``ci``); without it,
``ci`` where ``CI`` is set and ``dev`` elsewhere:

* ``ci``: at least as many examples as any test ever asked for (400), failures printed with
  their reproduction blob;
* ``dev``: a quick loop while editing.

Neither has a deadline: the suite runs on shared, loaded machines (and on several xdist
workers), where a deadline measures the machine. A test whose examples are expensive asks for a
fraction of the profile's ``max_examples`` (``settings.default``), never a number of its own.
The conformance suite's state machines follow the same variable
(:data:`flowcraft_conformance.harness.MACHINE_EXAMPLES`).
"""

from __future__ import annotations

import os

import pytest
from flowcraft_conformance.harness import ENV_PROFILE
from hypothesis import settings

settings.register_profile("ci", max_examples=400, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=32, deadline=None)
# Set in the environment, so the conformance harness and subprocesses choose alike.
os.environ.setdefault(ENV_PROFILE, "ci" if os.environ.get("CI") else "dev")
settings.load_profile(os.environ[ENV_PROFILE])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: xdist hands out tests in this order, so the long waits start early and
    overlap everything else instead of trailing at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
