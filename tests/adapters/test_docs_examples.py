"""The runnable examples of the adapter and testing docs run as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("page", ["adapters/anthropic.md", "adapters/openai-compatible.md",
                                  "testing.md"])
def test_doc_example_runs(page: str, tmp_path: Path, capsys):
    """Each page's python blocks, run as one script, finish without error (they assert
    that the loopback server saw no invalid request)."""
    code = "\n".join(re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S))
    assert code, f"{page} has no python example"
    script = tmp_path / "example.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
