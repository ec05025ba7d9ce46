"""Compaction spans nest under the caller's current span, and ``sink_from_env`` reuses
SDK providers the application installed globally instead of building a second pipeline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import anthropic_session

from compactor import HeuristicCounter, MessageCompactor
from compactor._otel import OTelSink

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def test_a_compaction_span_is_a_child_of_the_callers_span(otel) -> None:
    """Called inside the agent's span, the compaction span (emitted from a worker thread)
    has that span as its parent and shares its trace."""
    sink = OTelSink(None, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    comp = MessageCompactor(sink=sink, counter=HeuristicCounter(), window=3000)
    tracer = otel.tracer_provider.get_tracer("agent")

    async def turn() -> bool:
        with tracer.start_as_current_span("agent.turn"):
            return (await comp.compact_if_needed(anthropic_session(30), force=True)).compacted

    assert asyncio.run(turn())
    (span,) = otel.finished("compactor.compaction")
    (parent,) = otel.finished("agent.turn")
    assert span.parent is not None and span.parent.span_id == parent.context.span_id
    assert span.context.trace_id == parent.context.trace_id


SCRIPT = r"""
import asyncio, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from compactor._otel import sink_from_env
from compactor._sink import MemorySink

exporter = InMemorySpanExporter()
app = TracerProvider()
app.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(app)             # the application's own pipeline
sink = sink_from_env(MemorySink())
assert sink.tracer_provider is app, sink.tracer_provider
sink.emit("compaction", {"tokens_before": 100, "tokens_after": 40, "duration_s": 0.01})
sink.close()
names = [s.name for s in exporter.get_finished_spans()]
print(names)
app.shutdown()
"""


def test_sink_from_env_uses_the_applications_global_tracer_provider() -> None:
    """With an SDK TracerProvider already set globally, sink_from_env records into it:
    the application's exporter receives the compaction span, and no console output
    appears although OTEL_TRACES_EXPORTER=console."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_EXPORTER"] = "console"
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, text=True, env=env,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "['compactor.compaction']"
