"""The engine: handles one job at a time on top of the queue, context and coordination
protocols. See :mod:`flowcraft_core.engine.engine` for the steps and their guarantees."""

from flowcraft_core.engine.compiled import CompiledFlow
from flowcraft_core.engine.engine import Checkpoint, Engine
from flowcraft_core.engine.settings import EngineSettings
from flowcraft_core.engine.state import ComposedRunState, RunState

__all__ = ["Checkpoint", "CompiledFlow", "ComposedRunState", "Engine", "EngineSettings", "RunState"]
