"""Only the session store knows its layout: no module under compactor/ but _store.py names
its files or folders, and maintenance archives and puts back sessions whose ids hold `/`,
look alike, or are long enough to be hashed, byte-identical, through the store's API."""

from __future__ import annotations

import ast
import json

from fleet import small_store
from maintenance_support import REPO, cli, cli_json, run_proc, site_args
from compactor._store import SessionStore, canonical_json
from compactor.maintenance import entries

#: File and folder names of the store's layout (see the docstring of compactor/_store.py).
LAYOUT_NAMES = {"sessions", "archive.jsonl", "state.json", "IMPORTANT", ".lock", "id"}
LAYOUT_PARTS = ("archive.jsonl", "state.json", "archive-")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose may name the layout)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def layout_uses(source: str) -> list[str]:
    """Places in ``source`` that know the store's layout: a string literal naming one of
    its files, a path join (``/``, ``joinpath``, ``os.path.join``) with one of its names,
    or the old id-to-folder mapping ``.replace("/", "__")``."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []

    def is_name(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and node.value in LAYOUT_NAMES

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs and any(p in node.value for p in LAYOUT_PARTS):
            found.append(f"{line}: literal {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and is_name(node.right):
            found.append(f"{line}: path / {node.right.value!r}")  # type: ignore[attr-defined]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if node.func.attr in ("joinpath", "join") and any(is_name(a) for a in node.args):
                found.append(f"{line}: {node.func.attr}(... {args!r})")
            elif node.func.attr == "replace" and args == ["/", "__"]:
                found.append(f"{line}: .replace('/', '__')")
    return found


def test_the_layout_check_catches_each_form():
    """The checker flags each way a module could know the layout, and not prose."""
    bad = '''
import os
def f(root, sid):
    """Reads archive.jsonl and state.json (prose is fine)."""
    a = root / "sessions" / sid.replace("/", "__")
    b = os.path.join(a, "IMPORTANT")
    c = a.joinpath(".lock")
    return [a / "state.json", sorted(a.glob("archive-*.jsonl.gz")), "x/archive.jsonl", b, c]
'''
    assert sorted(layout_uses(bad)) == sorted([
        "5: path / 'sessions'", "5: .replace('/', '__')", "6: join(... ['IMPORTANT'])",
        "7: joinpath(... ['.lock'])", "8: path / 'state.json'", "8: literal 'state.json'",
        "8: literal 'archive-*.jsonl.gz'", "8: literal 'x/archive.jsonl'"])
    assert layout_uses('def g():\n    """sessions/<name>/state.json"""\n    return 1\n') == []


def test_no_module_but_the_store_knows_its_layout():
    """No module under compactor/ other than _store.py names the store's files or
    folders or maps ids to folder names itself."""
    pkg = REPO / "compactor"
    offenders = {}
    for f in sorted(pkg.rglob("*.py")):
        if f == pkg / "_store.py":
            continue
        uses = layout_uses(f.read_text(encoding="utf-8"))
        if uses:
            offenders[str(f.relative_to(REPO))] = uses
    assert offenders == {}


LONG_ID = "org/team/" + "x" * 192          # 201 characters: stored under a hashed name


def test_maintain_archives_and_puts_back_ids_with_slashes_and_long_ids(tmp_path):
    """`maintain --run` archives sessions whose ids hold `/`, look alike once `/` is
    written `__`, or are 201 characters long, each to its own entry; `archive restore`
    gives each back byte-identical; `--to-store` puts one back with its state, and
    `sessions restore` (a real subprocess) reads it and a live `/` session."""
    ids = {"tenant/alice": 200, "tenant__alice": 200, LONG_ID: 200, "tenant/bob": 1}
    store = SessionStore(tmp_path / "store")
    store.save_state("tenant/alice", {"compaction_count": 2, "summary": "rebooked"})
    sent = small_store(tmp_path, ids)         # ages every session's files
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0

    assert SessionStore(tmp_path / "store").sessions() == ["tenant/bob"]
    arch = entries(tmp_path / "store" / "archive")
    assert sorted(arch) == sorted(["tenant/alice", "tenant__alice", LONG_ID])
    assert len({e.path for e in arch.values()}) == 3
    for sid in arch:
        out = tmp_path / "out.json"
        assert cli(site_args(tmp_path, "archive", "restore", sid, "--out", str(out)))[0] == 0
        got = json.loads(out.read_text(encoding="utf-8"))
        assert [canonical_json(m) for m in got] == [canonical_json(m) for m in sent[sid]], sid

    for sid in ("tenant/alice", LONG_ID):
        assert cli(site_args(tmp_path, "archive", "restore", sid, "--to-store"))[0] == 0
    live = SessionStore(tmp_path / "store")
    assert live.sessions() == sorted(["tenant/alice", LONG_ID, "tenant/bob"])
    assert live.load_state("tenant/alice")["compaction_count"] == 2
    assert live.load_state(LONG_ID) is None
    for sid in ("tenant/alice", LONG_ID, "tenant/bob"):
        p = run_proc(["sessions", "restore", sid, "--store", str(tmp_path / "store")])
        assert p.returncode == 0, p.stderr
        got = json.loads(p.stdout)
        assert [canonical_json(m) for m in got] == [canonical_json(m) for m in sent[sid]], sid


def test_mark_goes_through_the_store_for_an_id_with_a_slash(tmp_path):
    """`archive mark` of a live session whose id holds `/` marks it in the store, and the
    next run archives it as important (its score is 1)."""
    small_store(tmp_path, {"tenant/carol": 40})
    assert cli(site_args(tmp_path, "archive", "mark", "tenant/carol"))[0] == 0
    assert SessionStore(tmp_path / "store").stat("tenant/carol").marked
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    imp = entries(tmp_path / "store" / "archive")["tenant/carol"].data["importance"]
    assert imp["marked"] and imp["score"] == 1.0


def test_archives_of_earlier_versions_and_branches_restore(tmp_path):
    """A session whose history forked (an agent rewrote a message) is archived and put back
    with every branch, restoring its current one; an entry written by an earlier version
    (lines without `prev`, the id's `/` written `__` in its name) still restores."""
    import gzip
    import hashlib

    from compactor._store import ArchiveNode, chain_id, content_hash

    from fleet import NOW, set_age

    store = SessionStore(tmp_path / "store")
    a, b, b2 = ({"role": "user", "content": t} for t in ("book Oslo", "for Monday", "for Friday"))
    ha, hb, hb2 = content_hash(a), content_hash(b), content_hash(b2)
    store.append("tenant/erin", [ArchiveNode(0, ha, "", a), ArchiveNode(1, hb, chain_id("", ha), b)])
    store.append("tenant/erin", [ArchiveNode(1, hb2, chain_id("", ha), b2)])   # the fork
    assert store.restore("tenant/erin") == [a, b2] and len(store.branches("tenant/erin")) == 2
    set_age(store.session_dir("tenant/erin"), NOW.replace(year=2024))
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    arch = entries(tmp_path / "store" / "archive")
    assert arch["tenant/erin"].messages() == [a, b2]
    assert cli(site_args(tmp_path, "archive", "restore", "tenant/erin", "--to-store"))[0] == 0
    back = SessionStore(tmp_path / "store")
    assert back.restore("tenant/erin") == [a, b2] and len(back.branches("tenant/erin")) == 2

    # an entry as an earlier version wrote it: format-1 lines, hash elided, legacy name
    lines = [json.dumps({"ordinal": i, "hash": content_hash(m), "message": m}, sort_keys=True,
                        separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
             for i, m in enumerate([a, b])]
    payload = b"".join(lines)
    stored = gzip.compress(b"".join(
        json.dumps({"ordinal": i, "message": m}, sort_keys=True, separators=(",", ":"),
                   ensure_ascii=False).encode() + b"\n" for i, m in enumerate([a, b])))
    month = tmp_path / "store" / "archive" / "2024" / "01"
    (month / "tenant__old.jsonl.gz").parent.mkdir(parents=True, exist_ok=True)
    (month / "tenant__old.jsonl.gz").write_bytes(stored)
    entry = json.loads(arch["tenant/erin"].path.read_text(encoding="utf-8"))
    entry["session_id"] = "tenant/old"
    entry["lossless"].update(file="tenant__old.jsonl.gz", bytes=len(payload),
                             stored_bytes=len(stored),
                             sha256="sha256:" + hashlib.sha256(payload).hexdigest())
    (month / "tenant__old.json").write_text(json.dumps(entry), encoding="utf-8")
    out = tmp_path / "old.json"
    assert cli(site_args(tmp_path, "archive", "restore", "tenant/old", "--out", str(out)))[0] == 0
    assert json.loads(out.read_text(encoding="utf-8")) == [a, b]


def test_a_run_leaves_a_session_its_writer_holds_for_a_later_run(tmp_path, monkeypatch):
    """A run reads and moves a live session only under its store lock: one whose writer
    holds the lock (through the store's own `lock`) stays live and whole; the next run,
    with the lock free, archives it."""
    import compactor.maintenance._maintain as mm

    monkeypatch.setattr(mm, "SESSION_LOCK_TIMEOUT_S", 0.2)
    msgs = small_store(tmp_path, {"tenant/busy": 200, "tenant/free": 200})
    writer = SessionStore(tmp_path / "store")
    with writer.lock("tenant/busy"):
        code, rep = cli_json(site_args(tmp_path, "maintain", "--run"))
    assert code == 0 and rep["status"] == "ok", rep
    arch = entries(tmp_path / "store" / "archive")
    assert "tenant/busy" not in arch and arch["tenant/free"].messages() == msgs["tenant/free"]
    assert writer.restore("tenant/busy") == msgs["tenant/busy"]
    assert cli(site_args(tmp_path, "maintain", "--run"))[0] == 0
    assert entries(tmp_path / "store" / "archive")["tenant/busy"].messages() == msgs["tenant/busy"]
    assert writer.sessions() == []


def test_vacuum_removes_old_empty_sessions_through_the_store(tmp_path):
    """An empty session (no archive line, no state; here one with a hashed 201-character
    name) idle for more than a day is vacuumed; a young empty one is left alone."""
    from datetime import timedelta

    from fleet import NOW, set_age

    store = SessionStore(tmp_path / "store")
    for sid, age in ((LONG_ID, timedelta(days=3)), ("tenant/new", timedelta(hours=2))):
        with store.lock(sid):                 # a writer that never wrote: an empty folder
            pass
        set_age(store.session_dir(sid), NOW - age)
    assert store.stat(LONG_ID).empty and store.sessions() == sorted([LONG_ID, "tenant/new"])
    code, rep = cli_json(site_args(tmp_path, "maintain", "--run", "--only", "vacuum"))
    assert code == 0 and rep["counts"] == {"vacuum": 1}, rep
    assert SessionStore(tmp_path / "store").sessions() == ["tenant/new"]
