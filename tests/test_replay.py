"""``compactor replay``, the main job, on the shipped demo and on the real transcripts.

Must-keep retention and probe answers are measured by this file itself, in what was sent:
it replays in-process through a recorder that sees every history handed to the compactor
and every history sent back, extracts the must-keep items of each evicted span with its
own pattern, looks the probe answers of the data file up in the final context, and
judges each sent history with the independent provider-rules checker. It never reads the
compactor's own ``must_keep_*`` or ``probes_*`` counts."""

import asyncio
import json
import re
import subprocess
import sys
from importlib import resources

import pytest

from compactor import MessageCompactor, PlanConfig, TiktokenCounter
from compactor._replay import load_conversations, replay
from compactor.cli import DEMO_WINDOW, main
from compactor.testing._rules import anthropic_problems, openai_problems

#: What a summary must keep, in the tau-bench and demo data: dates, flight numbers
#: (HAT052), reservation ids (6 capitals and digits), user ids (mia_li_3668), amounts.
MUST_KEEP = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|[A-Z]{3}\d{3}"
                       r"|(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{6}|[a-z]+_[a-z]+_\d{3,})\b"
                       r"|\$\d+(?:\.\d+)?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NOT_TEXT = ("type", "id", "tool_use_id", "tool_call_id", "role", "signature")


def _strings(x):
    """Every string value of a message (content, tool inputs and results), not its keys."""
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            if k not in _NOT_TEXT:
                yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def _text(system, messages) -> str:
    return "\n".join([*_strings(system or ""), *(s for m in messages for s in _strings(m))])


def _key(m) -> str:
    """A message is identified by its content."""
    return json.dumps(m, sort_keys=True, ensure_ascii=False)


def _items(text: str) -> set[str]:
    """The must-keep items of a text; an amount counts by its number ($255 kept as 255)."""
    return {i.lstrip("$") for i in MUST_KEEP.findall(text)}


class _SentRecorder:
    """Stands in for a MessageCompactor in ``replay``: passes every call through and
    records, from what went in and what came back, the must-keep items of the evicted
    span and those present in the sent history, the provider rules the sent history
    breaks (independent checker), and each conversation's final context."""

    def __init__(self, inner: MessageCompactor) -> None:
        self.inner = inner
        self.compactions = self.must_keep = self.kept = 0
        self.broken: list[str] = []
        self.final: dict[str, tuple] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def compact_if_needed(self, history, **kw):
        sid, system = kw.get("session_id"), kw.get("system")
        self.final[sid] = (system, list(history))
        r = await self.inner.compact_if_needed(history, **kw)
        self.final[sid] = (system, list(r.messages))
        check = anthropic_problems if r.fmt.value == "anthropic" else openai_problems
        self.broken += [f"{sid}: {b.rule}" for b in check(r.messages)]
        if r.compacted:
            self.compactions += 1
            sent = {_key(m) for m in r.messages}
            items = _items(_text(None, [m for m in history if _key(m) not in sent]))
            sent_text = _text(system, r.messages)
            there = _items(sent_text) | set(_NUMBER.findall(sent_text))
            self.must_keep += len(items)
            self.kept += len(items & there)
        return r


def _replay_recorded(path, *, window=None, share=None, tools=None, summarize=True):
    """Replay the file in-process as ``compactor replay`` does; return the recorder."""
    rec = _SentRecorder(MessageCompactor(counter=TiktokenCounter(), config=PlanConfig(),
                                         summarize=summarize))
    asyncio.run(replay(load_conversations(path), rec, window=window, share=share, tools=tools))
    return rec


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
    data = resources.files("compactor") / "data"
    tools = json.loads((data / "demo_tools.json").read_text())
    rec = _replay_recorded(str(data / "demo_session.jsonl"), window=DEMO_WINDOW, tools=tools)
    assert rec.compactions >= 3 and rec.broken == []
    assert rec.must_keep > 20 and rec.kept / rec.must_keep >= 0.99, (rec.kept, rec.must_keep)


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
    assert "bad.jsonl: conversation 2: line 2: json:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:   # an option argparse refuses: exit 2, one line
        main(["replay", str(bad), "--window", "lots"])
    assert info.value.code == 2 and "--window" in capsys.readouterr().err


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
    """With the 14 tool schemas counted (~2.3k tokens) a 4k window still sends only
    histories the independent checker accepts, and the ids, amounts, dates and flight
    numbers of evicted turns are found in what was sent at >= 99%."""
    tools = json.loads((shared_data / "tau_bench_gpt4o_airline.tools.json").read_text())
    rec = _replay_recorded(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl", window=4000,
                           tools=tools)
    assert rec.broken == [] and rec.compactions > 1000
    assert rec.kept / rec.must_keep >= 0.99, (rec.kept, rec.must_keep)


def test_tau_bench_must_keep_at_4k(shared_data):
    """ids, amounts, dates and flight numbers of evicted turns are found in what was sent
    at >= 99% (counted by this test in the evicted spans and the sent histories)."""
    rec = _replay_recorded(shared_data / "tau_bench_gpt4o_airline.anthropic.jsonl", window=4000)
    # not vacuous: many compactions and thousands of items (171 and 4,876 at the shipped
    # 0.85/0.65 watermarks; 306 and ~5,400 at the earlier 0.7/0.4)
    assert rec.broken == [] and rec.compactions > 150
    assert rec.must_keep > 4000
    assert rec.kept / rec.must_keep >= 0.99, (rec.kept, rec.must_keep)


def _words(text: str) -> str:
    return " " + " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split()) + " "


def _probe_hits(path, contexts) -> tuple[int, int]:
    """(answers found in each conversation's context, answers found in its full history),
    over the data file's probes with an answer (LoCoMo category 5 is adversarial: no
    answer in the conversation)."""
    hits = ceiling = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            conv = json.loads(line)
            msgs = conv["messages"]
            system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else None
            full = _words(_text(None, msgs))
            ctx_system, ctx = contexts[conv["id"]]
            sent = _words(_text(ctx_system or system, ctx))
            for pr in conv.get("probes") or []:
                ans = _words(str(pr.get("answer", ""))).strip()
                if pr.get("category") == 5 or not ans:
                    continue
                ceiling += f" {ans} " in full
                hits += f" {ans} " in sent
    return hits, ceiling


def test_locomo_probes_at_least_twice_the_truncation_baseline(shared_data):
    """At a window of 25% of each conversation, the final context the extractive summary
    leaves holds >= 2x the probe answers (from the data file, looked up by this test) that
    plain truncation leaves, against the same full-history ceiling."""
    path = shared_data / "locomo_dev.jsonl"
    ours = _replay_recorded(path, share=0.25)
    base = _replay_recorded(path, share=0.25, summarize=False)
    assert ours.broken == [] == base.broken
    o_hits, ceiling = _probe_hits(path, ours.final)
    b_hits, b_ceiling = _probe_hits(path, base.final)
    assert ceiling == b_ceiling > 200
    print(f"\nLoCoMo 25%: ours {o_hits}/{ceiling}, truncation {b_hits}/{ceiling}")
    assert o_hits >= 2 * b_hits > 0


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
