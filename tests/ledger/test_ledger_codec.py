"""The record codec: shape, key order, secrets, redaction and field validation (no I/O)."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compactor._errors import CompactorError, ConfigError
from compactor.ledger import LedgerFieldError
from compactor.ledger._codec import (
    COMMON_KEYS,
    MASK,
    BadLineError,
    build_record,
    decode_line,
    encode_record,
    format_ts,
    is_secret_key,
    mask_secrets,
)

NOW = datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=timezone.utc)


def test_common_keys_come_first_then_sorted_event_fields():
    """A record starts with schema_version, ts, event, session_id, agent_id, then the event fields sorted by name."""
    rec = build_record("compaction", {"zeta": 1, "agent_id": "a1", "alpha": 2,
                                      "session_id": "s1"}, now=NOW)
    assert list(rec) == [*COMMON_KEYS, "alpha", "zeta"]
    assert rec["schema_version"] == 1 and rec["event"] == "compaction"
    assert (rec["session_id"], rec["agent_id"]) == ("s1", "a1")


def test_missing_session_and_agent_are_null():
    """session_id and agent_id are written as null when the event does not carry them."""
    rec = build_record("usage", {}, now=NOW)
    assert rec["session_id"] is None and rec["agent_id"] is None


def test_ts_is_utc_millisecond_iso_with_z():
    """ts is UTC ISO 8601 with millisecond precision (truncated) and a Z suffix, whatever the clock's zone."""
    assert format_ts(NOW) == "2025-03-04T05:06:07.891Z"
    plus2 = NOW.astimezone(timezone(timedelta(hours=2)))
    assert format_ts(plus2) == "2025-03-04T05:06:07.891Z"
    assert format_ts(NOW.replace(microsecond=0)) == "2025-03-04T05:06:07.000Z"


def test_naive_clock_is_a_config_error():
    """A clock returning a naive datetime raises ConfigError naming the clock."""
    with pytest.raises(ConfigError) as err:
        build_record("usage", {}, now=datetime(2025, 1, 1))
    assert err.value.field == "clock"


def test_encoding_is_one_compact_line_with_nested_keys_sorted():
    """The encoded record is one compact UTF-8 JSON line ending in a newline, nested keys sorted."""
    rec = build_record("usage", {"d": {"b": 1, "a": "é\nx"}}, now=NOW)
    line = encode_record(rec)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b", " not in line and b": " not in line
    assert '"d":{"a":"é\\nx","b":1}' in line.decode("utf-8")


def test_lone_surrogates_fall_back_to_ascii_escapes():
    """A string with a lone surrogate is written with \\u escapes and still decodes."""
    line = encode_record(build_record("usage", {"s": "a\ud800b"}, now=NOW))
    assert decode_line(line)["s"] == "a\ud800b"


@pytest.mark.parametrize("key", ["api_key", "API-KEY", "x-api-key", "X-Api-Key", "Authorization",
                                 "authorization", "OPENAI_API_KEY", "anthropic_api_key", "token",
                                 "access_token", "refresh_token", "client_secret", "password",
                                 "Cookie", "proxy-authorization", "apikey"])
def test_credential_key_names_are_secret(key):
    """Key names of credentials (API keys, auth headers, tokens, passwords) are recognised case-insensitively."""
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["tokens_before", "tokens_after", "summary_tokens", "session_id",
                                 "agent_id", "cost_usd", "keys", "author", "token_count"])
def test_ordinary_key_names_are_not_secret(key):
    """Ordinary field names such as tokens_before and session_id are kept."""
    assert not is_secret_key(key)


def test_secret_keys_are_dropped_at_any_depth():
    """Credential keys are dropped with their values, at the top level, nested and inside lists."""
    rec = build_record("usage", {
        "api_key": "x", "headers": {"Authorization": "y", "x-api-key": "z", "accept": "json"},
        "calls": [{"token": "t", "n": 1}],
    }, now=NOW)
    assert "api_key" not in rec
    assert rec["headers"] == {"accept": "json"}
    assert rec["calls"] == [{"n": 1}]


def test_secret_looking_values_are_masked_in_any_string():
    """sk-/sk-ant- keys, Bearer credentials and Authorization/x-api-key assignments are masked inside any string."""
    text = ("key sk-ant-test-0123456789abcdef and sk-proj-ABCDEFGHIJKLMNOP12 "
            "header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc x-api-key: abc123def "
            "api_key=zzz9 plain bearer QWERTYUIOP123")
    masked = mask_secrets(text)
    for secret in ["sk-ant-test", "sk-proj", "eyJhbGci", "abc123def", "zzz9", "QWERTYUIOP123"]:
        assert secret not in masked
    assert masked == ("key [REDACTED] and [REDACTED] header Authorization: Bearer [REDACTED] "
                      "x-api-key: [REDACTED] api_key=[REDACTED] plain bearer [REDACTED]")
    rec = build_record("usage", {"msgs": [{"note": text}]}, now=NOW)
    assert "sk-ant-test" not in json.dumps(rec)


def test_ordinary_text_is_not_masked():
    """Prose that merely mentions tasks, risk or authorization is left alone."""
    text = "task-force risk-averse: the authorization step failed; ask-me-later"
    assert mask_secrets(text) == text


def test_redaction_replaces_content_fields_with_digests_at_any_depth():
    """With redact=True, text/content/messages/summary/prompt become {sha256, chars} at any depth."""
    messages = [{"role": "user", "content": "hi"}]
    rec = build_record("compaction", {"summary": "hello", "messages": messages,
                                      "nested": {"Prompt": "p", "keep": 1}}, now=NOW, redact=True)
    assert rec["summary"] == {"sha256": hashlib.sha256(b"hello").hexdigest(), "chars": 5}
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"))
    assert rec["messages"] == {"sha256": hashlib.sha256(canonical.encode()).hexdigest(),
                               "chars": len(canonical)}
    assert rec["nested"]["Prompt"]["chars"] == 1 and rec["nested"]["keep"] == 1


def test_without_redaction_content_is_kept():
    """With redact=False, content fields are written as given (secrets still masked)."""
    rec = build_record("compaction", {"summary": "hello sk-ant-test-0123456789abcdef"}, now=NOW)
    assert rec["summary"] == f"hello {MASK}"


@pytest.mark.parametrize("fields, path", [
    ({"x": object()}, "x"),
    ({"a": {"b": {1, 2}}}, "a.b"),
    ({"a": [1, {"c": b"raw"}]}, "a[1].c"),
    ({"f": math.nan}, "f"),
    ({"f": [math.inf]}, "f[0]"),
    ({"d": {1: "x"}}, "d"),
    ({"summary": {"x": object()}}, "summary.x"),
])
def test_unserialisable_fields_raise_a_typed_error_naming_the_field(fields, path):
    """A value JSON cannot carry raises LedgerFieldError (a CompactorError and TypeError) naming its path."""
    with pytest.raises(LedgerFieldError) as err:
        build_record("usage", fields, now=NOW, redact=True)
    assert err.value.field == path and err.value.event == "usage"
    assert isinstance(err.value, CompactorError) and isinstance(err.value, TypeError)
    assert repr(path) in str(err.value)


@pytest.mark.parametrize("name", ["ts", "schema_version", "event"])
def test_reserved_field_names_are_rejected(name):
    """Fields named ts, schema_version or event are refused: the ledger writes those itself."""
    with pytest.raises(LedgerFieldError) as err:
        build_record("usage", {name: 1}, now=NOW)
    assert err.value.field == name


def test_bad_event_name_is_rejected():
    """An empty or non-string event name raises LedgerFieldError."""
    for event in ["", None, 3]:
        with pytest.raises(LedgerFieldError):
            build_record(event, {}, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw, kind, reason", [
    (b'{"schema_version":1', "torn", "no_newline"),
    (b'{"schema_ver\n', "torn", "bad_json"),
    (b"\n", "invalid", "empty"),
    (b"[1,2]\n", "invalid", "not_object"),
    (b'{"ts":"2025-01-01T00:00:00.000Z"}\n', "invalid", "missing_keys"),
    (b'{"schema_version":"1","ts":"x","event":1,"session_id":null,"agent_id":null}\n',
     "invalid", "bad_types"),
])
def test_decode_line_classifies_bad_lines(raw, kind, reason):
    """decode_line says whether a bad line is torn (incomplete, not JSON) or invalid (not a record), and why."""
    with pytest.raises(BadLineError) as err:
        decode_line(raw)
    assert (err.value.kind, err.value.reason) == (kind, reason)


_json_scalars = (st.none() | st.booleans() | st.integers(-2**62, 2**62)
                 | st.floats(allow_nan=False, allow_infinity=False)
                 | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda k: not is_secret_key(k) and k not in {"ts", "event", "schema_version"})
_json = st.recursive(_json_scalars, lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(_keys, kids, max_size=4), max_leaves=20)


@given(st.dictionaries(_keys, _json, max_size=6))
def test_any_json_fields_round_trip(fields):
    """Any JSON fields without secrets decode back to the values emitted (strings unmasked when harmless)."""
    rec = build_record("usage", fields, now=NOW)
    back = decode_line(encode_record(rec))
    assert back == rec
    for key, value in fields.items():
        text = json.dumps(value, ensure_ascii=False)
        if key not in ("session_id", "agent_id") and mask_secrets(text) == text:
            assert json.loads(json.dumps(back[key])) == json.loads(json.dumps(value))
