"""``flowcraft worker --registry guest_worker:registry``: the guest nodes, in a worker whose
plugin manager has ``boom``, a plugin that raises in every lifecycle hook."""

from __future__ import annotations

from guest_plugin import register_everywhere, registry

register_everywhere()

__all__ = ["registry"]
