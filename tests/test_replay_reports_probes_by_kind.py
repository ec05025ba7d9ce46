"""`compactor replay --json` reports probe answers per probe kind, and the kinds add up to
the totals."""

import json
import subprocess
import sys


def test_probes_by_kind_counts_each_kind_and_adds_up(tmp_path):
    """Answers written into the history are in the ceiling of their kind, absent ones are
    not, and per-kind sums equal the totals (no compaction: contained == ceiling)."""
    msgs = [{"role": "user", "content": "Please edit src/app/main.py and the helper parse_row."},
            {"role": "assistant", "content": "Edited src/app/main.py; parse_row now strips."}]
    probes = [{"question": "file?", "answer": "src/app/main.py", "kind": "file_modified"},
              {"question": "symbol?", "answer": "parse_row", "kind": "symbol_changed"},
              {"question": "symbol?", "answer": "never_written", "kind": "symbol_changed"},
              {"question": "when?", "answer": "strips", "category_name": "temporal"},
              {"question": "adversarial", "answer": "main", "category": 5}]
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "c1", "messages": msgs, "probes": probes}) + "\n")
    r = subprocess.run([sys.executable, "-m", "compactor", "replay", str(path), "--window",
                        "100000", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["probes_by_kind"] == {"file_modified": {"contained": 1, "ceiling": 1},
                                   "symbol_changed": {"contained": 1, "ceiling": 1},
                                   "temporal": {"contained": 1, "ceiling": 1}}
    assert d["probes_total"] == 4      # category 5 is not scored
    assert sum(k["ceiling"] for k in d["probes_by_kind"].values()) == d["probes_ceiling"] == 3
