"""Jobs travel as JSON: the check that Dramatiq's encoder still is its JSON encoder."""

from __future__ import annotations

import dramatiq
from dramatiq.encoder import JSONEncoder

from flowcraft_core.errors import DriverError


def require_json(driver: str) -> None:
    """Raise :class:`DriverError` unless Dramatiq's global encoder is its :class:`JSONEncoder`.

    Dramatiq encodes every message with one process-wide encoder; a pickling one would let a job
    carry code, which the queue protocol rules out ("JSON only").
    """
    encoder = dramatiq.get_encoder()
    if not isinstance(encoder, JSONEncoder):
        raise DriverError(
            f"the {driver} driver sends jobs as JSON, but dramatiq.set_encoder() was given "
            f"{type(encoder).__name__}; restore dramatiq.JSONEncoder"
        )
