"""OpenTelemetry export: a :class:`~compactor.LedgerSink` that turns the events the
compactor already emits into spans and metrics, so the core carries no telemetry code.

``OTelSink(inner=Ledger(...))`` reports every event to ``inner`` unchanged and, besides,
records:

* a span per ``compaction`` record (``compactor.compaction``, from emit time minus
  ``duration_s`` to emit time), per ``summarizer_retry`` / ``summarizer_fallback``
  (``compactor.summarizer.retry`` / ``.fallback``, status ERROR), per ``recall``
  (``compactor.recall``), per ``budget_alert`` / ``budget_bump`` / ``usage``
  (``compactor.budget.alert`` / ``.bump`` / ``.usage``) and per ``history_rewrite``;
* the metrics ``compactor.tokens_saved`` (counter, ``{token}``),
  ``compactor.compaction.duration`` (histogram, ``s``), ``compactor.compactions``
  (counter), ``compactor.budget_alerts`` (counter, by ``compactor.budget.level``),
  ``compactor.summarizer.retries`` and ``compactor.summarizer.fallbacks`` (counters).

Attribute names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.conversation.id``, and the general
``error.type`` and ``http.response.status_code``); everything else is ours, under the
``compactor.`` prefix. Source of the names: the GenAI semantic conventions, "Semantic
conventions for generative client AI spans" (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/,
now maintained in the ``open-telemetry/semantic-conventions-genai`` repository,
``docs/gen-ai/gen-ai-spans.md`` and ``docs/gen-ai/retrieval.md``; status Development), as
checked on 2026-11-29 against opentelemetry-semantic-conventions 0.66b2. The duration
histogram's bucket boundaries are the ones those conventions advise for
``gen_ai.client.operation.duration`` ("Semantic conventions for generative AI metrics").

:func:`sink_from_env` builds the tracer and meter providers from the standard ``OTEL_*``
environment variables (``docs/otel.md``). The SDK is the optional extra ``[otel]``,
imported only here and only when used.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ConfigError
from ._optional import require
from ._sink import LedgerSink

log = logging.getLogger("compactor.otel")

#: The instrumentation scope name of every tracer and meter this module makes.
SCOPE = "compactor"

#: Bucket boundaries of ``compactor.compaction.duration``, seconds: the boundaries the
#: GenAI semantic conventions advise for ``gen_ai.client.operation.duration``.
DURATION_BUCKETS_S: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
                                         5.12, 10.24, 20.48, 40.96, 81.92)

#: ``gen_ai.operation.name`` of compaction spans. The conventions define no operation
#: for rewriting a conversation's history; they allow a value of the instrumentation's
#: own when none of theirs applies.
COMPACTION_OPERATION = "compaction"

#: ``OTEL_EXPORTER_OTLP_PROTOCOL`` values and the exporter entry point each selects.
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_EXPORTER_PACKAGE = {"otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
                     "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc"}

_TRUE = {"true", "1", "yes", "on"}


def _version() -> str:
    try:
        from . import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover - a partial install
        return "0+unknown"


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span/metric attributes: None dropped; str, bool, int, float kept; a list of
    strings kept; anything else as its ``str``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, (str, bool, int, float)):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out[k] = list(v)
        else:
            out[k] = str(v)
    return out


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _error_type(fields: Mapping[str, Any]) -> str:
    """A low-cardinality ``error.type``: the record's ``kind``, else the exception type
    named at the start of ``error`` (``"TimeoutError: ..."``), else ``"_OTHER"`` (the
    conventions' fallback value)."""
    kind = fields.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    err = fields.get("error")
    if isinstance(err, str) and ":" in err:
        head = err.split(":", 1)[0].strip()
        if head and " " not in head:
            return head
    return "_OTHER"


class OTelSink:
    """A :class:`~compactor.LedgerSink` that records spans and metrics for the events it
    receives and passes every event on to ``inner`` unchanged.

    Args:
        inner: the sink that keeps receiving every event (a ``Ledger``, a
            ``MemorySink``...), or None.
        tracer_provider: where spans go (default: the global one,
            ``opentelemetry.trace.get_tracer_provider()``, a no-op until the
            application sets one).
        meter_provider: where metrics go (default: the global one).
        own_providers: whether :meth:`close` shuts the given providers down (True for
            the ones :func:`sink_from_env` builds).

    Span times are wall-clock nanoseconds: a compaction span ends when ``emit`` is called
    and starts ``duration_s`` seconds (from the record) earlier; other spans have no
    duration of their own (start = end = emit time) unless their record has a
    ``duration_s``. A span is a child of the span current where ``emit`` runs (the
    compactor emits in a thread that carries the caller's context).

    ``emit`` never raises because of telemetry: a failure to record is logged on the
    ``compactor.otel`` logger and the event still reaches ``inner``. Errors ``inner``
    raises propagate, as they would without this wrapper.

    Raises:
        MissingExtraError: the OpenTelemetry API is not installed (extra ``otel``).
    """

    def __init__(self, inner: LedgerSink | None = None, *, tracer_provider: Any = None,
                 meter_provider: Any = None, own_providers: bool = False) -> None:
        trace = require("opentelemetry.trace", extra="otel", what="OpenTelemetry export")
        metrics = require("opentelemetry.metrics", extra="otel", what="OpenTelemetry export")
        self.inner = inner
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._owned = [p for p in (tracer_provider, meter_provider)
                       if p is not None] if own_providers else []
        self._trace = trace
        version = _version()
        tp = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        mp = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self.tracer = tp.get_tracer(SCOPE, version)
        meter = mp.get_meter(SCOPE, version)
        self.tokens_saved = meter.create_counter(
            "compactor.tokens_saved", unit="{token}",
            description="Tokens removed from histories by compaction (tokens_before - "
                        "tokens_after)")
        self.duration = meter.create_histogram(
            "compactor.compaction.duration", unit="s",
            description="Wall time of a compaction, seconds",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S)
        self.compactions = meter.create_counter(
            "compactor.compactions", unit="{compaction}", description="Compactions done")
        self.budget_alerts = meter.create_counter(
            "compactor.budget_alerts", unit="{alert}",
            description="Budget alerts fired, by compactor.budget.level")
        self.retries = meter.create_counter(
            "compactor.summarizer.retries", unit="{retry}",
            description="Summarizer calls that failed and were retried")
        self.fallbacks = meter.create_counter(
            "compactor.summarizer.fallbacks", unit="{fallback}",
            description="Summarizers that failed for good; the next one was used")
        self._handlers: dict[str, Callable[[Mapping[str, Any], int], None]] = {
            "compaction": self._compaction,
            "summarizer_retry": self._retry,
            "summarizer_fallback": self._fallback,
            "recall": self._recall,
            "budget_alert": self._budget_alert,
            "budget_bump": self._budget_bump,
            "usage": self._usage,
            "history_rewrite": self._history_rewrite,
        }

    # ------------------------------------------------------------------ the protocol
    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        """Record ``event`` as spans/metrics (events not listed in ``docs/otel.md`` only
        go to ``inner``), then pass it to ``inner``."""
        end_ns = time.time_ns()
        try:
            if self.inner is not None:
                self.inner.emit(event, fields)
        finally:
            handler = self._handlers.get(event)
            if handler is not None:
                try:
                    handler(fields, end_ns)
                except Exception:  # telemetry must never break the agent's call
                    log.exception("could not record the %s event as telemetry", event)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export what is buffered now (spans and metrics). True when every provider
        that supports it flushed within ``timeout_millis`` (milliseconds)."""
        ok = True
        for p in (self.tracer_provider, self.meter_provider):
            flush = getattr(p, "force_flush", None)
            if callable(flush):
                ok = bool(flush(timeout_millis)) and ok
        return ok

    def close(self) -> None:
        """Flush; shut the providers down when this sink owns them; close ``inner`` when
        it has a ``close`` method. Safe to call twice."""
        try:
            self.force_flush()
        except Exception:  # an exporter that cannot reach its endpoint
            log.exception("could not flush OpenTelemetry data")
        owned, self._owned = self._owned, []
        for p in owned:
            shutdown = getattr(p, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    log.exception("could not shut an OpenTelemetry provider down")
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> "OTelSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ spans
    def _span(self, name: str, attributes: Mapping[str, Any], end_ns: int, *,
              duration_s: float | None = None, error: str | None = None) -> None:
        start_ns = end_ns - max(0, int((duration_s or 0.0) * 1e9))
        span = self.tracer.start_span(name, kind=self._trace.SpanKind.INTERNAL,
                                      start_time=start_ns, attributes=_attrs(attributes))
        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end(end_time=end_ns)

    @staticmethod
    def _common(f: Mapping[str, Any]) -> dict[str, Any]:
        sid = f.get("session_id")
        return {"compactor.session_id": sid, "gen_ai.conversation.id": sid,
                "compactor.agent_id": f.get("agent_id")}

    def _compaction(self, f: Mapping[str, Any], end_ns: int) -> None:
        before, after = _int(f.get("tokens_before")), _int(f.get("tokens_after"))
        saved = before - after if before is not None and after is not None else None
        total, kept = _int(f.get("must_keep_total")), _int(f.get("must_keep_kept"))
        keep_ratio = _float(f.get("retention_score"))
        if keep_ratio is None and total is not None and kept is not None:
            keep_ratio = kept / total if total else 1.0
        duration = _float(f.get("duration_s"))
        self._span("compactor.compaction", {
            "gen_ai.operation.name": COMPACTION_OPERATION,
            "gen_ai.request.model": f.get("model"),
            "gen_ai.usage.input_tokens": _int(f.get("summarizer_input_tokens")),
            "gen_ai.usage.output_tokens": _int(f.get("summarizer_output_tokens")),
            **self._common(f),
            "compactor.tokens_before": before, "compactor.tokens_after": after,
            "compactor.tokens_saved": saved, "compactor.ratio": _float(f.get("ratio")),
            "compactor.cost_usd": _float(f.get("cost_usd")),
            "compactor.summarizer": f.get("summarizer"),
            "compactor.must_keep_ratio": keep_ratio,
            "compactor.must_keep_total": total, "compactor.must_keep_kept": kept,
            "compactor.summary_tokens": _int(f.get("summary_tokens")),
            "compactor.window": _int(f.get("window")),
            "compactor.messages_removed": _int(f.get("messages_removed")),
            "compactor.units_removed": _int(f.get("units_removed")),
            "compactor.compaction_count": _int(f.get("compaction_count")),
            "compactor.format": f.get("format"),
        }, end_ns, duration_s=duration)
        labels = _attrs({"compactor.summarizer": f.get("summarizer"),
                         "gen_ai.request.model": f.get("model")})
        self.compactions.add(1, labels)
        if saved is not None:
            self.tokens_saved.add(max(0, saved), labels)
        if duration is not None:
            self.duration.record(max(0.0, duration), labels)

    def _retry(self, f: Mapping[str, Any], end_ns: int) -> None:
        etype = _error_type(f)
        self._span("compactor.summarizer.retry", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": f.get("model"),
            "error.type": etype, "http.response.status_code": _int(f.get("status")),
            **self._common(f), "compactor.summarizer": f.get("summarizer"),
            "compactor.retry.attempt": _int(f.get("attempt")),
            "compactor.retry.max_attempts": _int(f.get("max_attempts")),
            "compactor.retry.delay_s": _float(f.get("delay_s")),
            "compactor.retry.retry_after_s": _float(f.get("retry_after_s")),
        }, end_ns, error=str(f.get("error") or etype))
        self.retries.add(1, _attrs({"compactor.summarizer": f.get("summarizer"),
                                    "error.type": etype}))

    def _fallback(self, f: Mapping[str, Any], end_ns: int) -> None:
        etype = _error_type(f)
        self._span("compactor.summarizer.fallback", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": f.get("model"),
            "error.type": etype, "http.response.status_code": _int(f.get("status")),
            **self._common(f), "compactor.summarizer": f.get("summarizer"),
            "compactor.fallback": f.get("fallback"),
        }, end_ns, error=str(f.get("error") or etype))
        self.fallbacks.add(1, _attrs({"compactor.summarizer": f.get("summarizer"),
                                      "compactor.fallback": f.get("fallback"),
                                      "error.type": etype}))

    def _recall(self, f: Mapping[str, Any], end_ns: int) -> None:
        items = f.get("items")
        count = len(items) if isinstance(items, (list, tuple)) else _int(items)
        self._span("compactor.recall", {
            "gen_ai.operation.name": "retrieval", **self._common(f),
            "compactor.recall.items": count,
            "compactor.recall.tokens": _int(f.get("tokens")),
        }, end_ns, duration_s=_float(f.get("duration_s")))

    def _budget(self, f: Mapping[str, Any]) -> dict[str, Any]:
        return {"gen_ai.request.model": f.get("model"), **self._common(f),
                "compactor.invocation_id": f.get("invocation_id"),
                "compactor.budget.profile": f.get("profile"),
                "compactor.budget.complexity": f.get("complexity"),
                "compactor.budget.enforcement": f.get("enforcement")}

    def _budget_alert(self, f: Mapping[str, Any], end_ns: int) -> None:
        level = f.get("level")
        self._span("compactor.budget.alert", {
            **self._budget(f), "compactor.budget.level": level,
            "compactor.budget.threshold": _float(f.get("threshold")),
            "compactor.budget.used_tokens": _int(f.get("used_tokens")),
            "compactor.budget.budget_tokens": _int(f.get("budget_tokens")),
            "compactor.budget.percent": _float(f.get("percent")),
        }, end_ns)
        self.budget_alerts.add(1, _attrs({"compactor.budget.level": level}))

    def _budget_bump(self, f: Mapping[str, Any], end_ns: int) -> None:
        self._span("compactor.budget.bump", {
            **self._budget(f), "compactor.budget.from_profile": f.get("from_profile"),
            "compactor.budget.to_profile": f.get("to_profile"),
            "compactor.budget.used_tokens": _int(f.get("used_tokens")),
            "compactor.budget.budget_tokens_before": _int(f.get("budget_tokens_before")),
            "compactor.budget.budget_tokens_after": _int(f.get("budget_tokens_after")),
        }, end_ns)

    def _usage(self, f: Mapping[str, Any], end_ns: int) -> None:
        alerts = f.get("alerts")
        self._span("compactor.budget.usage", {
            **self._budget(f),
            "gen_ai.usage.input_tokens": _int(f.get("input_tokens")),
            "gen_ai.usage.output_tokens": _int(f.get("output_tokens")),
            "compactor.budget.budget_tokens": _int(f.get("budget_tokens")),
            "compactor.budget.peak_tokens": _int(f.get("tokens")),
            "compactor.budget.usage_pct": _float(f.get("usage_pct")),
            "compactor.budget.exceeded": f.get("exceeded"),
            "compactor.budget.calls": _int(f.get("calls")),
            "compactor.budget.alerts": [str(a) for a in alerts]
            if isinstance(alerts, (list, tuple)) else None,
            "compactor.budget.bumps": _int(f.get("bumps")),
            "compactor.budget.blocked": _int(f.get("blocked")),
        }, end_ns)

    def _history_rewrite(self, f: Mapping[str, Any], end_ns: int) -> None:
        self._span("compactor.history_rewrite", {
            **self._common(f), "compactor.fork": _int(f.get("fork")),
            "compactor.state_reset": f.get("state_reset"),
            "compactor.messages_new": _int(f.get("messages_new")),
            "compactor.branch_length": _int(f.get("branch_length")),
        }, end_ns)


# ---------------------------------------------------------------------- configuration
def exporter_names(signal: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporter entry-point names ``OTEL_<SIGNAL>_EXPORTER`` selects (``signal``
    ``"traces"`` or ``"metrics"``): a comma-separated list; unset, empty or ``none`` is
    no exporter. ``otlp`` becomes the exporter of ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``
    (else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf``, the specification's
    default and the protocol the ``otel`` extra installs).

    Raises:
        ConfigError: an OTLP protocol other than ``http/protobuf`` or ``grpc``.
    """
    env = os.environ if environ is None else environ
    var = f"OTEL_{signal.upper()}_EXPORTER"
    raw = (env.get(var) or "").strip()
    if not raw or raw.lower() == "none":
        return []
    out = []
    for name in (n.strip() for n in raw.split(",")):
        if not name or name.lower() == "none":
            continue
        if name == "otlp":
            pvar = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
            proto = (env.get(pvar) or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                     or "http/protobuf").strip()
            if proto not in _OTLP_BY_PROTOCOL:
                raise ConfigError(f"{pvar}/OTEL_EXPORTER_OTLP_PROTOCOL={proto!r} is not an OTLP "
                                  "protocol this package can export with; fix: http/protobuf "
                                  "(or grpc with opentelemetry-exporter-otlp-proto-grpc "
                                  "installed)", field="OTEL_EXPORTER_OTLP_PROTOCOL")
            name = _OTLP_BY_PROTOCOL[proto]
        out.append(name)
    return out


def _load_exporter(signal: str, name: str) -> Any:
    """The exporter class registered under ``name`` in the SDK's entry-point group
    ``opentelemetry_<signal>_exporter``."""
    from importlib.metadata import entry_points

    group = f"opentelemetry_{signal}_exporter"
    found = list(entry_points(group=group, name=name))
    if not found:
        known = sorted({ep.name for ep in entry_points(group=group)})
        pkg = _EXPORTER_PACKAGE.get(name)
        fix = f"pip install {pkg}" if pkg else f"use one of {', '.join(known) or 'none'}"
        raise ConfigError(f"OTEL_{signal.upper()}_EXPORTER: no {signal} exporter named "
                          f"{name!r} is installed; fix: {fix}",
                          field=f"OTEL_{signal.upper()}_EXPORTER")
    return found[0].load()


def _resource() -> Any:
    """``Resource.create()`` (reads ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``),
    with ``service.name`` ``compactor`` when neither names the service."""
    from opentelemetry.sdk.resources import Resource

    r = Resource.create()
    if str(r.attributes.get("service.name", "")).startswith("unknown_service"):
        r = r.merge(Resource({"service.name": SCOPE}))
    return r


def sink_from_env(inner: LedgerSink | None = None, *,
                  environ: Mapping[str, str] | None = None) -> LedgerSink | None:
    """An :class:`OTelSink` around ``inner`` when ``OTEL_TRACES_EXPORTER`` or
    ``OTEL_METRICS_EXPORTER`` names an exporter, else ``inner`` itself (also when
    ``OTEL_SDK_DISABLED`` is true).

    The providers are the SDK's, built from the standard variables: the exporters are
    looked up by name in the SDK's entry points (``console``, ``otlp``,
    ``otlp_proto_http``...), and each exporter, the batch span processor, the periodic
    metric reader, the sampler and the resource read their own ``OTEL_*`` variables
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``,
    ``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_TRACES_SAMPLER``...). A signal whose variable
    is unset exports nothing (the SDK's auto-configuration would default it to ``otlp``).
    When the application already installed SDK providers globally (e.g. under
    ``opentelemetry-instrument``), those are used instead of new ones.
    ``environ`` (default ``os.environ``) is read only for the exporter selection; the
    SDK parts read ``os.environ``.

    The returned sink owns the providers it built: call its ``close()`` (it also closes
    ``inner``) to flush at the end; they are flushed at interpreter exit anyway.

    Raises:
        MissingExtraError: the SDK is not installed (extra ``otel``).
        ConfigError: an exporter name no installed package provides, or a bad OTLP
            protocol (one line naming the variable and the fix).
    """
    env = os.environ if environ is None else environ
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() in _TRUE:
        return inner
    traces, metrics = exporter_names("traces", env), exporter_names("metrics", env)
    if not traces and not metrics:
        return inner
    require("opentelemetry.sdk", extra="otel", what="OpenTelemetry export")
    from opentelemetry import metrics as metrics_api
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    span_exporters = [_load_exporter("traces", n) for n in traces]
    metric_exporters = [_load_exporter("metrics", n) for n in metrics]
    resource = _resource()
    tp: Any = None
    mp: Any = None
    owned: list[Any] = []
    if span_exporters:
        current = trace_api.get_tracer_provider()
        if isinstance(current, TracerProvider):
            tp = current
        else:
            tp = TracerProvider(resource=resource)
            owned.append(tp)
            for cls in span_exporters:
                tp.add_span_processor(BatchSpanProcessor(cls()))
    if metric_exporters:
        current = metrics_api.get_meter_provider()
        if isinstance(current, MeterProvider):
            mp = current
        else:
            readers = [cls() if isinstance(cls, type) and issubclass(cls, MetricReader)
                       else PeriodicExportingMetricReader(cls()) for cls in metric_exporters]
            mp = MeterProvider(resource=resource, metric_readers=readers)
            owned.append(mp)
    if tp is None:
        tp = trace_api.NoOpTracerProvider()
    if mp is None:
        mp = metrics_api.NoOpMeterProvider()
    sink = OTelSink(inner, tracer_provider=tp, meter_provider=mp)
    sink._owned = owned
    return sink


__all__ = ["COMPACTION_OPERATION", "DURATION_BUCKETS_S", "OTelSink", "SCOPE", "exporter_names",
           "sink_from_env"]
