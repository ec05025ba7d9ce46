"""Running the real ``compactor`` command in a child process, and the conversations the
bad-input tests build (written by the tests themselves into ``tmp_path``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Longest a single command may take, seconds.
TIMEOUT_S = 60


@dataclass(frozen=True)
class Run:
    """The outcome of one ``compactor`` process."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """Non-empty stderr lines."""
        return [ln for ln in self.err.splitlines() if ln.strip()]


def compactor(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None
              ) -> Run:
    """``python -m compactor ARGS`` in ``cwd`` (stdin closed, at most :data:`TIMEOUT_S`)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("COMPACTOR_CONFIG", "COMPACTOR_HOME", "COMPACTOR_LEDGER",
                             "COMPACTOR_DEBUG")}
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-m", "compactor", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=TIMEOUT_S,
                       stdin=subprocess.DEVNULL, env=full_env)
    return Run(p.returncode, p.stdout, p.stderr)


def good_conversation(cid: str, turns: int = 3) -> dict[str, Any]:
    """A valid plain-text conversation (Anthropic/OpenAI alike) of ``turns`` exchanges."""
    msgs: list[dict[str, Any]] = []
    for t in range(turns):
        msgs.append({"role": "user", "content": f"question {t} about invoice {cid}-{t} " * 8})
        msgs.append({"role": "assistant", "content": f"answer {t} for {cid} " * 8})
    return {"id": cid, "messages": msgs}


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """One line per item: a dict/list is dumped as JSON, ``str`` is written as is,
    ``bytes`` as raw bytes."""
    with open(path, "wb") as fh:
        for item in lines:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            elif isinstance(item, str):
                fh.write(item.encode("utf-8") + b"\n")
            else:
                fh.write(json.dumps(item).encode("utf-8") + b"\n")
    return path


def assert_one_line_error(run: Run, *needles: str) -> str:
    """Exit 2, exactly one stderr line in the ``compactor: error:`` format holding every
    needle, no traceback. Returns the line."""
    assert run.code == 2, (run.code, run.err)
    assert "Traceback" not in run.err, run.err
    assert len(run.err_lines) == 1, run.err
    line = run.err_lines[0]
    assert line.startswith("compactor: error: "), line
    for n in needles:
        assert n in line, (n, line)
    return line
