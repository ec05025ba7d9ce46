"""Every example in README.md and docs/**/*.md runs as written.

What is run, block by block (fenced code blocks, found by their info string):

* ```` ```python ````: the block alone, as a script, in a fresh subprocess (timeout), with an
  empty temporary directory as its working directory. ``ANTHROPIC_BASE_URL`` /
  ``ANTHROPIC_API_KEY`` and ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` point at a
  :class:`compactor.testing.LoopbackServer` started for the block, so an example that builds
  its client the way the SDKs document (``anthropic.AsyncAnthropic()`` reads those variables)
  talks to it; every request it sent must have been valid (``server.violations == []``).
* ```` ```sh ```` / ```` ```console ```` / ```` ```shell ```` / ```` ```bash ````: every line that
  starts with ``compactor `` (after an optional ``$ `` prompt) is run as
  ``python -m compactor ARGS`` (``shlex``, ``#`` starts a comment). A page's commands run in
  order, in one temporary directory per page, like a user typing them. The exit code must be 0
  unless the line's comment says ``exits N``; no command may print a traceback.

Markers, an HTML comment on the line(s) right above the opening fence (visible in the
markdown source):

* ``<!-- file: NAME -->``: the block's text is written to ``NAME`` in the working directory of
  the page's examples before they run (e.g. the sample ``compactor.toml`` that a later
  ``compactor budgets check`` reads).
* ``<!-- not-run: REASON -->``: the block is deliberately not run; it is reported as a skipped
  test with the reason (pytest ``-ra`` lists them). Keep these rare (a block that needs a
  PostgreSQL server, a long-running server or minutes of CPU); more than a third of the
  examples is a failure.

Other blocks (toml, json, untagged output, sh lines that are not ``compactor`` commands) are
data or sample output, not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from compactor.testing import LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = {"sh", "console", "shell", "bash"}
#: Longest run of one python example / one command, seconds.
TIMEOUT_S = 90

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<key>not-run|file)\s*:\s*(?P<value>.*?)\s*-->\s*$")
_EXITS = re.compile(r"\bexits (?P<code>\d+)\b")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown page."""

    page: str                   # path relative to the repository root
    line: int                   # 1-based line of the opening fence
    lang: str                   # first word of the info string ('' when none)
    text: str                   # the block's content, its fence indentation removed
    not_run: str | None = None  # the reason of a <!-- not-run: ... --> marker
    file: str | None = None     # the name of a <!-- file: ... --> marker

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced code blocks of one markdown file, with the markers right above each.

    Raises:
        AssertionError: a fence is never closed, or a marker has no value.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(root).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        lang = (m["info"].split() or [""])[0].lower()
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (mk := _MARKER.match(lines[j])):
            assert mk["value"], f"{rel}:{j + 1}: a {mk['key']} marker needs a value"
            markers.setdefault(mk["key"], mk["value"])
            j -= 1
        body: list[str] = []
        k = i + 1
        while k < len(lines) and not (lines[k].strip().startswith(fence)
                                      and lines[k].strip().strip(fence[0]) == ""):
            body.append(lines[k][len(indent):] if lines[k].startswith(indent) else lines[k])
            k += 1
        assert k < len(lines), f"{rel}:{i + 1}: the code fence is never closed"
        name = markers.get("file")
        assert name is None or (not Path(name).is_absolute() and ".." not in Path(name).parts), \
            f"{rel}:{i + 1}: a file marker names a path inside the working directory"
        blocks.append(Block(rel, i + 1, lang, "\n".join(body) + "\n",
                            markers.get("not-run"), markers.get("file")))
        i = k + 1
    return blocks


BLOCKS = [b for page in PAGES for b in parse_blocks(page)]
PYTHON = [b for b in BLOCKS if b.lang == "python" and not b.not_run]
NOT_RUN = [b for b in BLOCKS if b.not_run]


def commands(block: Block) -> list[str]:
    """The ``compactor ...`` lines of a shell block, without their ``$ `` prompt (in a
    ``console`` block only prompted lines are commands; the rest is output)."""
    if block.lang not in SHELL_LANGS:
        return []
    out = []
    for raw in block.text.splitlines():
        line = raw.strip()
        prompted = line.startswith("$ ")
        if prompted:
            line = line[2:].lstrip()
        if line.startswith("compactor ") and (prompted or block.lang != "console"):
            out.append(line)
    return out


def comment_of(line: str) -> str:
    """The shell comment of ``line`` (from the first ``#`` outside quotes), or ''."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1:]
    return ""


def expected_exit(line: str) -> int:
    """0, or N when the line's comment says ``exits N``."""
    m = _EXITS.search(comment_of(line))
    return int(m["code"]) if m else 0


SHELL_PAGES = sorted({b.page for b in BLOCKS if commands(b) and not b.not_run})


def _env(server: LoopbackServer | None = None) -> dict[str, str]:
    """The child's environment: no compactor or provider settings of whoever runs the tests
    (every default path is then relative to the working directory); the provider variables
    the SDKs read point at ``server``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMPACTOR_", "ANTHROPIC_", "OPENAI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if server is not None:
        env.update(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="test-key",
                   OPENAI_BASE_URL=f"{server.url}/v1", OPENAI_API_KEY="sk-test")
    return env


def _write_files(page: str, workdir: Path) -> None:
    """Write the page's ``<!-- file: NAME -->`` blocks into ``workdir``."""
    for b in BLOCKS:
        if b.page == page and b.file:
            target = workdir / b.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(b.text, encoding="utf-8")


def _report(what: str, r: subprocess.CompletedProcess[str]) -> str:
    return f"{what}\nexit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


def test_the_pages_have_examples_to_run():
    """The parser finds the README's python examples and the docs' CLI examples (a parser
    that matched nothing would make every test below vacuous)."""
    readme_python = [b for b in PYTHON if b.page == "README.md"]
    assert len(readme_python) >= 2
    assert "docs/maintenance.md" in SHELL_PAGES
    assert all(b.text.strip() for b in PYTHON), [b.id for b in PYTHON if not b.text.strip()]


def test_blocks_markers_commands_and_exit_codes_are_read_as_written(tmp_path: Path):
    """The parser keeps indented and marked blocks, takes only prompted lines of a console
    block as commands, and reads ``exits N`` only from a line's comment."""
    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- file: cfg/a.toml -->\n```toml\nx = 1\n```\n"
        "* item\n\n  <!-- not-run: needs a GPU cluster -->\n  ```sh\n  compactor bench\n  ```\n"
        "```console\n$ compactor health   # exits 1 here\ncompactor health  status: WARNING\n"
        "$ compactor budgets estimate \"typo # exits 3\" --agent a\n```\n", encoding="utf-8")
    toml, sh, console = parse_blocks(page, tmp_path)
    assert (toml.lang, toml.file, toml.text, toml.line) == ("toml", "cfg/a.toml", "x = 1\n", 3)
    assert (sh.not_run, sh.text, commands(sh)) == ("needs a GPU cluster", "compactor bench\n",
                                                   ["compactor bench"])
    assert commands(console) == ["compactor health   # exits 1 here",
                                 'compactor budgets estimate "typo # exits 3" --agent a']
    assert [expected_exit(c) for c in commands(console)] == [1, 0]


def test_markers_name_a_reason_or_a_file_and_skips_stay_rare():
    """Every not-run marker carries a reason, and at most a third of the examples (python
    blocks and shell blocks with ``compactor`` commands) are not run (pytest's skip summary
    lists each one with its reason)."""
    assert all(len(b.not_run) >= 10 for b in NOT_RUN), [(b.id, b.not_run) for b in NOT_RUN]
    examples = [b for b in BLOCKS if b.lang == "python" or commands(b)]
    skipped = [b for b in examples if b.not_run]
    assert len(skipped) <= max(3, len(examples) // 3), [(b.id, b.not_run) for b in skipped]


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs_as_written(block: Block, tmp_path: Path):
    """The python block, alone and unedited, exits 0 in a fresh interpreter, and every
    request it sent to the loopback provider server was valid."""
    _write_files(block.page, tmp_path)
    script = tmp_path / "example.py"
    script.write_text(block.text, encoding="utf-8")
    with LoopbackServer() as server:
        try:
            r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(server),
                               capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.id}: still running after {TIMEOUT_S} s")
        violations = list(server.violations)
    assert r.returncode == 0, _report(f"{block.id}: the example failed", r)
    assert violations == [], f"{block.id}: invalid requests sent: {violations}"


@pytest.mark.parametrize("page", SHELL_PAGES)
def test_cli_examples_run_as_written(page: str, tmp_path: Path):
    """Each ``compactor ...`` line of the page's shell blocks, run in order in one fresh
    directory, exits as the page says (0 unless it says ``exits N``) without a traceback."""
    blocks = [b for b in BLOCKS if b.page == page and b.lang in SHELL_LANGS and commands(b)
              and not b.not_run]
    _write_files(page, tmp_path)
    env = _env()
    for block in blocks:
        for line in commands(block):
            expected = expected_exit(line)
            args = shlex.split(line, comments=True)[1:]
            try:
                r = subprocess.run([sys.executable, "-m", "compactor", *args], cwd=tmp_path,
                                   env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{block.id}: `{line}` still running after {TIMEOUT_S} s")
            where = f"{block.id}: `{line}`"
            assert "Traceback (most recent call last)" not in r.stderr, _report(where, r)
            assert r.returncode == expected, _report(f"{where}: expected exit {expected}", r)


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.id for b in NOT_RUN])
def test_not_run_block(block: Block):
    """A block marked not-run is reported as skipped, with the reason its page gives."""
    pytest.skip(f"{block.id} ({block.lang or 'untagged'}) not-run: {block.not_run}")
