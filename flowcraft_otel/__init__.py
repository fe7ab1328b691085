"""OpenTelemetry tracing for flowcraft (``pip install 'flowcraft[otel]'``).

One trace per run, one span per node attempt, joined across workers by the trace context each
job carries in its headers. Installed, the plugin is registered through the
``flowcraft.plugins`` entry point; it traces into whatever tracer provider the process has
(one set in code, or one built from the standard ``OTEL_*`` variables): see
:mod:`flowcraft_otel.tracing`.
"""

from flowcraft_otel.tracing import ATTRIBUTES, BLUEPRINT_HEADER, TracingPlugin, plugin

__all__ = ["ATTRIBUTES", "BLUEPRINT_HEADER", "TracingPlugin", "plugin"]
