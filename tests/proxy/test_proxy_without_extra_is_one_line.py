"""Without the ``proxy`` extra (starlette, uvicorn) the command registers, and running it
says which extra to install in one line, exit 2 -- no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from proxy_helpers import ROOT, cli_command

BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('starlette', 'uvicorn'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
"""


def test_missing_extra_names_it(tmp_path: Path) -> None:
    """``compactor proxy`` with starlette and uvicorn unimportable: one line naming the
    extra, exit 2, before any store or ledger is created; ``compactor proxy --help`` still
    works."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
               COMPACTOR_DEBUG="")
    r = subprocess.run(cli_command("proxy", "--listen", "127.0.0.1:0", "--store", "s",
                                   "--ledger", "l.jsonl"), env=env, capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "[proxy]" in lines[0] and "pip install" in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sitecustomize.py"]  # nothing made
    h = subprocess.run(cli_command("proxy", "--help"), env=env, capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert h.returncode == 0 and "--shadow" in h.stdout
