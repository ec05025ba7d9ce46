"""Shared fixtures for the OpenTelemetry tests: in-memory SDK providers, a clean ``OTEL_*``
environment, and a local OTLP/HTTP receiver on 127.0.0.1 that decodes what it gets with
``opentelemetry.proto``."""

from __future__ import annotations

import gzip
import os
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: "
                    "pip install -e '.[otel]'")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``OTEL_*`` variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@dataclass
class InMemoryOTel:
    """SDK providers that keep what they get: finished spans and metric points."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self, name: str) -> list[Any]:
        """The finished spans called ``name``, in the order they ended."""
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of one metric (cumulative), [] when it has none."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in (data.resource_metrics if data else []):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out

    def unit(self, metric: str) -> str | None:
        data = self.reader.get_metrics_data()
        for rm in (data.resource_metrics if data else []):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        return m.unit
        return None


@pytest.fixture
def otel() -> Iterator[InMemoryOTel]:
    """Fresh in-memory tracer and meter providers (spans exported as they end)."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield InMemoryOTel(exporter, reader, tp, mp)
    tp.shutdown()
    mp.shutdown()


@dataclass
class Receiver:
    """What the local OTLP/HTTP receiver got: decoded export requests, by signal."""

    url: str
    requests: "queue.Queue[tuple[str, Any]]" = field(default_factory=queue.Queue)
    paths: list[str] = field(default_factory=list)

    def drain(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"traces": [], "metrics": []}
        while True:
            try:
                signal, msg = self.requests.get_nowait()
            except queue.Empty:
                return out
            out[signal].append(msg)


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    """A tiny OTLP/HTTP receiver on 127.0.0.1 (a free port): POST /v1/traces and
    /v1/metrics, protobuf bodies (gzip or not) decoded with ``opentelemetry.proto``."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    kinds = {"/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                            trace_service_pb2.ExportTraceServiceResponse),
             "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                             metrics_service_pb2.ExportMetricsServiceResponse)}
    got: "queue.Queue[tuple[str, Any]]" = queue.Queue()
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # seconds: a read that stalls fails instead of hanging

        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            paths.append(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            kind = kinds.get(self.path)
            if kind is None:
                self.send_response(404)
                self.end_headers()
                return
            signal, request_type, response_type = kind
            msg = request_type()
            msg.ParseFromString(body)
            got.put((signal, msg))
            reply = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", got, paths)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
