"""flowcraft: workflows as graphs of Python nodes, run on pluggable backend drivers.

The same blueprint runs in one process on the in-memory driver or across many worker
processes on Redis. Every effect is exactly once on an at-least-once queue: see docs/design.md.
"""

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.client import Client, RunResult, SyncClient
from flowcraft_core.drivers import Backends, open_backends
from flowcraft_core.engine import Engine, EngineSettings
from flowcraft_core.engine.history import Attempt, NodeHistory, RunHistory, RunPage, RunSummary
from flowcraft_core.errors import (
    BackendUnavailable,
    BlueprintError,
    DriverError,
    ExpressionError,
    FlowcraftError,
    RegistryError,
    RunNotFound,
)
from flowcraft_core.hookspecs import DriverInfo, hookimpl
from flowcraft_core.local import run_workflow, run_workflow_sync
from flowcraft_core.node import BaseNode, NodeContext, Result
from flowcraft_core.registry import Registry
from flowcraft_core.worker import Worker

__all__ = [
    "Attempt",
    "BackendUnavailable",
    "Backends",
    "BaseNode",
    "Blueprint",
    "BlueprintError",
    "Client",
    "DriverError",
    "DriverInfo",
    "EdgeDef",
    "Engine",
    "EngineSettings",
    "ExpressionError",
    "FlowcraftError",
    "NodeConfig",
    "NodeContext",
    "NodeDef",
    "NodeHistory",
    "Registry",
    "RegistryError",
    "Result",
    "RunHistory",
    "RunNotFound",
    "RunPage",
    "RunResult",
    "RunSummary",
    "SyncClient",
    "Worker",
    "hookimpl",
    "open_backends",
    "run_workflow",
    "run_workflow_sync",
]
