"""``compactor replay``, the main job, on the shipped demo and on the real transcripts."""

import json
import subprocess
import sys

import pytest

from compactor.cli import main


def run_json(*args):
    """Run ``compactor replay ... --json`` in a real subprocess and parse its stdout."""
    p = subprocess.run([sys.executable, "-m", "compactor.cli", "replay", *args, "--json"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def test_demo_replays_the_shipped_session():
    """`replay --demo` (what `make demo` runs) compacts the shipped session validly."""
    p = subprocess.run([sys.executable, "-m", "compactor.cli", "replay", "--demo"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "compaction before call" in p.stdout and "invalid histories sent" in p.stdout
    d = run_json("--demo")
    assert d["compactions"] >= 3 and d["invalid_histories"] == 0 and d["over_window"] == 0
    assert d["must_keep_kept"] / d["must_keep_total"] >= 0.99
    assert d["probes_contained"] > 0


def test_json_has_the_documented_keys():
    """--json prints one object with every documented key."""
    d = run_json("--demo", "--summarizer", "none")
    for k in ("conversations", "model_calls", "compactions", "tokens_before", "tokens_after",
              "invalid_histories", "overflows", "must_keep_total", "must_keep_kept",
              "probes_total", "probes_contained", "probes_ceiling", "seconds"):
        assert k in d
    assert d["must_keep_total"] == 0 and d["compactions"] > 0


def test_bad_input_is_a_clear_error(tmp_path, capsys, shared_data):
    """A tool-schema file passed as a conversation is refused with the fix, exit code 2."""
    assert main(["replay", str(shared_data / "tau_bench_gpt4o_airline.tools.json"),
                 "--window", "4000"]) == 2
    err = capsys.readouterr().err
    assert "--tools" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "messages": []}\n{"not json\n')
    assert main(["replay", str(bad), "--window", "4000"]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["replay", str(bad), "--window", "lots"]) == 2


FILES = ["tau_bench_gpt4o_airline.anthropic.jsonl", "tau_bench_gpt4o_airline.openai.json",
         "locomo_dev.jsonl"]


@pytest.mark.parametrize("window", ["4000", "8000", "16000"])
@pytest.mark.parametrize("name", FILES)
def test_real_transcripts_never_produce_an_invalid_history(shared_data, name, window):
    """Every history sent while replaying the real transcripts keeps the provider rules."""
    d = run_json(str(shared_data / name), "--window", window)
    assert d["invalid_histories"] == 0 and d["over_window"] == 0
    assert d["model_calls"] > 1000
    if window == "4000":
        assert d["compactions"] > 0


def test_tau_bench_with_tool_schemas_at_4k(shared_data):
    """With the 14 tool schemas counted (~2.3k tokens) a 4k window still sends only valid
    histories, and must-keep items survive at >= 99%."""
    d = run_json(str(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl"), "--window", "4000",
                 "--tools", str(shared_data / "tau_bench_gpt4o_airline.tools.json"))
    assert d["invalid_histories"] == 0 and d["compactions"] > 1000
    assert d["must_keep_kept"] / d["must_keep_total"] >= 0.99


def test_tau_bench_must_keep_at_4k(shared_data):
    """ids, amounts, dates and flight numbers of evicted turns survive at >= 99%."""
    d = run_json(str(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl"), "--window", "4000")
    assert d["must_keep_total"] > 1000
    assert d["must_keep_kept"] / d["must_keep_total"] >= 0.99


def test_locomo_probes_at_least_twice_the_truncation_baseline(shared_data):
    """At a window of 25% of each conversation, the extractive summary keeps >= 2x the probe
    answers plain truncation keeps (measured against the same full-context ceiling)."""
    ours = run_json(str(shared_data / "locomo_dev.jsonl"), "--window", "25%")
    base = run_json(str(shared_data / "locomo_dev.jsonl"), "--window", "25%", "--summarizer", "none")
    assert ours["probes_ceiling"] == base["probes_ceiling"] > 200
    assert ours["invalid_histories"] == 0 == base["invalid_histories"]
    print(f"\nLoCoMo 25%: ours {ours['probes_contained']}/{ours['probes_ceiling']}, "
          f"truncation {base['probes_contained']}/{base['probes_ceiling']}")
    assert ours["probes_contained"] >= 2 * base["probes_contained"]


def test_jsonl_with_a_leading_system_message_keeps_its_format(tmp_path):
    """Our JSONL schema puts the system prompt first in either format: an Anthropic history
    (tool_use blocks) stays Anthropic with the system prompt lifted out, so its tool pairs
    are grouped and validated; an OpenAI history stays OpenAI."""
    from compactor._format import Format
    from compactor._replay import load_conversations
    anthropic_msgs = [
        {"role": "system", "content": "You are an airline agent."},
        {"role": "user", "content": "Cancel reservation ABC123."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get",
                                           "input": {"id": "ABC123"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "ok"}]},
    ]
    openai_msgs = [
        {"role": "system", "content": "You are an airline agent."},
        {"role": "user", "content": "Cancel reservation ABC123."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    f = tmp_path / "two.jsonl"
    f.write_text("\n".join(json.dumps({"id": i, "messages": m})
                           for i, m in (("a", anthropic_msgs), ("o", openai_msgs))) + "\n")
    a, o = load_conversations(f)
    assert a.fmt is Format.ANTHROPIC and a.system == "You are an airline agent."
    assert [m["role"] for m in a.messages] == ["user", "assistant", "user"]
    assert o.fmt is Format.OPENAI and o.messages[0]["role"] == "system"


def test_the_anthropic_tau_bench_file_loads_as_anthropic(shared_data):
    from compactor._format import Format
    from compactor._replay import load_conversations
    convs = load_conversations(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl")
    assert len(convs) == 200 and all(c.fmt is Format.ANTHROPIC and c.system for c in convs)


def test_a_closed_pipe_stops_the_cli_without_a_traceback(tmp_path):
    """`compactor sessions restore ID | head -1` (~280 KB, more than a pipe holds): the
    reader goes away; the CLI stops without a traceback. Also: --store after the
    sub-command."""
    cli = [sys.executable, "-m", "compactor.cli"]
    subprocess.run([*cli, "replay", "--demo", "--store", str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    listed = subprocess.run([*cli, "sessions", "list", "--store", str(tmp_path), "--json"],
                            check=True, capture_output=True, text=True, timeout=60)
    sid = json.loads(listed.stdout)[0]["session_id"]
    p = subprocess.Popen([*cli, "sessions", "--store", str(tmp_path), "restore", sid],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(100)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err
