"""``OTEL_TRACES_EXPORTER=console`` on a replay of the demo session prints one
``compactor.compaction`` span per compaction, with the token attributes of the ledger's
compaction records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compactor.ledger import read_records

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]

#: A replay of the shipped demo session, as ``compactor replay --demo`` runs it, with the
#: sink ``sink_from_env`` gives around a ledger at argv[1]. Prints its stats on stderr.
SCRIPT = r"""
import asyncio, json, sys
from importlib import resources
from compactor import MessageCompactor
from compactor._otel import sink_from_env
from compactor._replay import load_tools, read_conversations, replay
from compactor.cli import DEMO_WINDOW
from compactor.ledger import Ledger

data = resources.files("compactor") / "data"
convs, problems = read_conversations(str(data / "demo_session.jsonl"))
sink = sink_from_env(Ledger(sys.argv[1]))
comp = MessageCompactor(sink=sink, agent_id="replay")
stats = asyncio.run(replay(convs, comp, window=DEMO_WINDOW,
                           tools=load_tools(str(data / "demo_tools.json"))))
sink.close()
print(json.dumps({"compactions": stats.compactions, "sink": type(sink).__name__}),
      file=sys.stderr)
"""


def _json_objects(text: str) -> list[dict]:
    """Every JSON object printed one after another (pretty-printed spans, JSON lines)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def _compaction_spans(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o.get("name") == "compactor.compaction" and "context" in o]


def test_console_exporter_prints_one_span_per_compaction(tmp_path) -> None:
    """A demo replay under OTEL_TRACES_EXPORTER=console prints as many compaction spans
    as the replay counted compactions, each with the tokens of the matching ledger record."""
    ledger = tmp_path / "ledger.jsonl"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(ledger)], cwd=ROOT, text=True,
                       capture_output=True, timeout=90,
                       env=_env(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="demo"))
    assert p.returncode == 0, p.stderr[-2000:]
    stats = json.loads(p.stderr.strip().splitlines()[-1])
    assert stats["sink"] == "OTelSink"
    records = [r for r in read_records(ledger) if r["event"] == "compaction"]
    spans = _compaction_spans(_json_objects(p.stdout))
    assert stats["compactions"] >= 2
    assert len(spans) == len(records) == stats["compactions"]
    for span, rec in zip(spans, records):
        a = span["attributes"]
        assert (a["compactor.tokens_before"], a["compactor.tokens_after"]) == \
            (rec["tokens_before"], rec["tokens_after"])
        assert a["compactor.tokens_saved"] == rec["tokens_before"] - rec["tokens_after"]
        assert a["compactor.session_id"] == rec["session_id"]
        assert span["resource"]["attributes"]["service.name"] == "demo"


def test_without_otel_variables_nothing_is_printed(tmp_path) -> None:
    """The same replay with no OTEL_* variable keeps the plain ledger and prints no span."""
    ledger = tmp_path / "ledger.jsonl"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(ledger)], cwd=ROOT, text=True,
                       capture_output=True, timeout=90, env=_env())
    assert p.returncode == 0, p.stderr[-2000:]
    stats = json.loads(p.stderr.strip().splitlines()[-1])
    assert stats["sink"] == "Ledger"
    assert p.stdout == ""
    assert sum(r["event"] == "compaction" for r in read_records(ledger)) == stats["compactions"]


@pytest.mark.skipif("sink_from_env" not in (ROOT / "compactor" / "cli.py").read_text(),
                    reason="compactor/cli.py does not build its sink with sink_from_env yet "
                           "(the replay wiring docs/otel.md describes)")
def test_cli_replay_demo_prints_one_span_per_compaction() -> None:
    """`OTEL_TRACES_EXPORTER=console compactor replay --demo --json` prints one compaction
    span per compaction the replay reports."""
    p = subprocess.run([sys.executable, "-m", "compactor", "replay", "--demo", "--json"],
                       cwd=ROOT, text=True, capture_output=True, timeout=90,
                       env=_env(OTEL_TRACES_EXPORTER="console"))
    assert p.returncode == 0, p.stderr[-2000:]
    objs = _json_objects(p.stdout)
    (stats,) = [o for o in objs if "compactions" in o and "model_calls" in o]
    spans = _compaction_spans(objs)
    assert stats["compactions"] >= 2
    assert len(spans) == stats["compactions"]
    assert all(s["attributes"]["compactor.tokens_before"] > s["attributes"]["compactor.tokens_after"]
               for s in spans)
