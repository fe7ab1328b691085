"""The instance of a job and the job key: one definition, shared by the queue protocol's
:class:`~flowcraft_core.protocols.Job`, the engine's keys (:mod:`flowcraft_core.engine.keys`,
which re-exports these) and, through them, the Redis driver's Lua scripts.

An *instance* names one execution of a node inside loops and batches: a path of integers
joined by ``/`` below the root ``"0"`` (the instance of every node outside them). A node in a
loop body runs at ``<enclosing instance>/<iteration>``, a batch worker at ``<scatter's
instance>/<item index>``, and each nesting adds a component: ``"0/3/1"`` is the first iteration
of an inner loop during the third of an outer one. A job key is ``<node id>#<instance>``: a
node id may hold any character, an instance never holds ``#``, so a key splits at its last one.
"""

from __future__ import annotations

import re

ROOT = "0"  # the instance of every node outside loops and batches
INSTANCE_SEP = "/"
_INSTANCE = re.compile(r"0(/\d+)*")


def valid_instance(instance: str) -> bool:
    """Whether ``instance`` has the form above (``0``, ``0/3``, ``0/3/1``...)."""
    return _INSTANCE.fullmatch(instance) is not None


def child_instance(instance: str, index: int) -> str:
    """The instance one level inside ``instance``: iteration or item ``index``."""
    return f"{instance}{INSTANCE_SEP}{index}"


def parent_instance(instance: str) -> str:
    """The enclosing instance (the root's parent is the root)."""
    head, sep, _ = instance.rpartition(INSTANCE_SEP)
    return head if sep else ROOT


def last_index(instance: str) -> int:
    """The innermost component: the iteration or item index (0 for the root)."""
    return int(instance.rpartition(INSTANCE_SEP)[2])


def job_key(node_id: str, instance: str = ROOT) -> str:
    return f"{node_id}#{instance}"


def split_job_key(key: str) -> tuple[str, str]:
    """(node id, instance) of a job key, split at its last ``#``."""
    node_id, _, instance = key.rpartition("#")
    return node_id, instance or ROOT
