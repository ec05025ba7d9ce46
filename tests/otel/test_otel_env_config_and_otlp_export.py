"""``sink_from_env`` follows the standard OTEL_* variables: nothing set leaves the sink
alone; ``otlp`` sends spans and metrics over OTLP/HTTP to the configured endpoint; bad
values are one-line errors naming the variable."""

from __future__ import annotations

import asyncio
import sys

import pytest
from builders import anthropic_session

from compactor import HeuristicCounter, MessageCompactor
from compactor._errors import ConfigError
from compactor._optional import MissingExtraError
from compactor._otel import OTelSink, exporter_names, sink_from_env
from compactor._sink import MemorySink

pytestmark = pytest.mark.timeout(60)


def _attrs(kvs) -> dict:
    """OTLP KeyValue list -> dict of plain values."""
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def test_no_exporter_variable_returns_the_inner_sink_itself(monkeypatch) -> None:
    """Without OTEL_TRACES_EXPORTER/OTEL_METRICS_EXPORTER (or with none, or with the SDK
    disabled) sink_from_env returns inner unchanged (None stays None)."""
    inner = MemorySink()
    assert sink_from_env(inner) is inner
    assert sink_from_env() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert sink_from_env(inner) is inner
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert sink_from_env(inner) is inner


def test_otlp_means_the_protocol_variable_defaulting_to_http_protobuf() -> None:
    """``otlp`` selects otlp_proto_http by default and the exporter of
    OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL otherwise; a list keeps every name."""
    assert exporter_names("traces", {"OTEL_TRACES_EXPORTER": "otlp"}) == ["otlp_proto_http"]
    assert exporter_names("metrics", {"OTEL_METRICS_EXPORTER": "console, otlp",
                                      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == \
        ["console", "otlp_proto_grpc"]
    assert exporter_names("traces", {"OTEL_TRACES_EXPORTER": "otlp",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}) == \
        ["otlp_proto_http"]


@pytest.mark.parametrize("env, var", [
    ({"OTEL_TRACES_EXPORTER": "zipkin-nonesuch"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_METRICS_EXPORTER": "nonesuch"}, "OTEL_METRICS_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_fix(monkeypatch, env, var) -> None:
    """An exporter no installed package provides, or an OTLP protocol we cannot speak, is
    a ConfigError of one line that names the variable and says 'fix:'."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        sink_from_env(MemorySink())
    msg = str(info.value)
    assert var in msg and "fix:" in msg and "\n" not in msg
    assert info.value.field == var


def test_without_the_sdk_the_error_names_the_otel_extra(monkeypatch) -> None:
    """When the SDK cannot be imported, an exporter variable gives MissingExtraError
    naming the otel extra."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(MissingExtraError) as info:
        sink_from_env(MemorySink())
    assert info.value.extra == "otel"
    assert "[otel]" in str(info.value) and "\n" not in str(info.value)


def test_otlp_http_export_reaches_a_local_receiver(monkeypatch, otlp_receiver) -> None:
    """With OTEL_*_EXPORTER=otlp and OTEL_EXPORTER_OTLP_ENDPOINT on a local receiver, the
    receiver gets one compaction span per compaction record (token attributes equal) and
    the compactor.tokens_saved sum, under the configured service name."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "compactor-otlp-test")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")   # only the final flush
    mem = MemorySink()
    sink = sink_from_env(mem)
    assert isinstance(sink, OTelSink)
    comp = MessageCompactor(sink=sink, counter=HeuristicCounter(), window=3000)

    async def drive() -> None:
        hist: list = []
        for m in anthropic_session(30):
            hist.append(m)
            if m["role"] == "user":
                hist = list((await comp.compact_if_needed(hist, session_id="otlp")).messages)

    asyncio.run(drive())
    sink.close()
    got = otlp_receiver.drain()
    records = mem.of("compaction")
    assert len(records) >= 2
    spans, services = [], set()
    for req in got["traces"]:
        for rs in req.resource_spans:
            services.add(_attrs(rs.resource.attributes).get("service.name"))
            for ss in rs.scope_spans:
                assert ss.scope.name == "compactor"
                spans += [s for s in ss.spans if s.name == "compactor.compaction"]
    assert services == {"compactor-otlp-test"}
    assert len(spans) == len(records)
    got_tokens = sorted((_attrs(s.attributes)["compactor.tokens_before"],
                         _attrs(s.attributes)["compactor.tokens_after"]) for s in spans)
    assert got_tokens == sorted((r["tokens_before"], r["tokens_after"]) for r in records)
    saved = [dp.as_int for req in got["metrics"] for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics if m.name == "compactor.tokens_saved"
             for dp in m.sum.data_points]
    assert saved and saved[-1] == sum(r["tokens_before"] - r["tokens_after"] for r in records)
    assert "/v1/traces" in otlp_receiver.paths and "/v1/metrics" in otlp_receiver.paths
