"""Errors raised by flowcraft. Every error a user can cause names what is wrong and where."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FlowcraftError(Exception):
    """Base class of every error flowcraft raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One validation problem, with the place it concerns (``node 'x'``, ``edge a -> b``)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class BlueprintError(FlowcraftError):
    """A blueprint is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem], blueprint_id: str | None = None) -> None:
        self.problems = list(problems)
        self.blueprint_id = blueprint_id
        head = f"blueprint {blueprint_id!r} is invalid" if blueprint_id else "invalid blueprint"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head} ({len(self.problems)} problem(s)):\n{lines}")


class ExpressionError(FlowcraftError):
    """An expression is outside the safe language, or failed to evaluate."""


class DriverError(FlowcraftError):
    """A backend URL names no installed driver, or a driver cannot be loaded or reached."""


class BackendUnavailable(DriverError):
    """A backend could not be reached, or dropped the connection during a call, which may or
    may not have taken effect. What a retry may cure: a call that is safe to repeat (such as
    :meth:`Client.start <flowcraft_core.client.Client.start>`) is asked again."""


class RegistryError(FlowcraftError):
    """A node implementation is missing or cannot be loaded."""


class RunNotFound(FlowcraftError):
    """No run with this id exists (or it expired after its retention)."""


class NotRetried(FlowcraftError):
    """Raised around ``error`` by node code whose failure must not be retried (a class node's
    ``prep`` or ``post``, as in Flowcraft): the node goes straight to its fallback or fails."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class RunExists(FlowcraftError):
    """A start named a run id that is already taken; the existing run was left unchanged."""


class NodeTimeout(FlowcraftError):
    """A node attempt ran longer than its ``config.timeout``."""


class OutputNotSerializable(FlowcraftError):
    """A node returned an output that is not JSON-serialisable."""
