"""`compactor replay --probe-mode question`: each probe's question is asked after the
conversation; question-time recall brings back archived answers the compacted context lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compactor", "replay", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_question_mode_recalls_an_answer_the_end_context_lost(tmp_path):
    """A fact stated in the first turn and buried under routine turns is not in the
    compacted end context, but is in what is sent when its question is asked (recall on);
    without --store the mode is refused in one line."""
    msgs = [{"role": "user", "content": "My locker number is 8812-QX, please remember it."},
            {"role": "assistant", "content": "I will remember locker 8812-QX."}]
    for t in range(40):
        msgs += [{"role": "user", "content": f"routine update {t}: " + "nothing new " * 20},
                 {"role": "assistant", "content": f"noted update {t}"}]
    probes = [{"question": "What is my locker number?", "answer": "8812-QX", "category": 1}]
    data = tmp_path / "conv.jsonl"
    data.write_text(json.dumps({"id": "locker", "messages": msgs, "probes": probes}) + "\n")
    common = [str(data), "--window", "1500", "--counter", "heuristic", "--summarizer", "none",
              "--json"]
    end = _run(*common)
    assert end.returncode == 0, end.stderr
    e = json.loads(end.stdout)
    assert (e["probes_ceiling"], e["probes_contained"]) == (1, 0)
    q = _run(*common, "--store", str(tmp_path / "store"), "--recall", "0.2",
             "--probe-mode", "question")
    assert q.returncode == 0, q.stderr
    d = json.loads(q.stdout)
    assert (d["probes_ceiling"], d["probes_contained"], d["invalid_histories"]) == (1, 1, 0)
    refused = _run(*common, "--probe-mode", "question")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
