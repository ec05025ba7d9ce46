"""`[store] url` must be a postgresql:// or postgres:// URL: anything else, and a file
setting both url and root, is one stderr line naming the file, `store.url` and the fix,
exit 2 (real subprocess), never echoing a password."""

from __future__ import annotations

import pytest

BAD = [
    ("other-scheme", '"s3://bucket/sessions"'),
    ("a-folder", '"data/store"'),
    ("empty", '""'),
    ("not-a-string", "5"),
    ("mysql-with-password", '"mysql://u:hunter2@db/x"'),
]


@pytest.mark.parametrize("value", [v for _, v in BAD], ids=[c for c, _ in BAD])
def test_a_url_that_is_not_postgres_is_one_line(tmp_path, compactor_cli, value):
    """`config check` on `[store] url = <not a PostgreSQL URL>`: exit 2, one line
    `FILE: store.url: ...; fix: write url = "postgresql://..."`, no password in it."""
    path = tmp_path / "compactor.toml"
    path.write_text(f"[store]\nurl = {value}\n", encoding="utf-8")
    run = compactor_cli("config", "check", "--config", str(path))
    assert (run.code, run.out) == (2, ""), (run.out, run.err)
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"compactor: error: {path}: store.url: "), lines[0]
    assert '; fix: write url = "postgresql://' in lines[0], lines[0]
    assert "hunter2" not in run.err


def test_a_bad_url_from_set_names_set(tmp_path, compactor_cli):
    """`--set store.url=s3://x` is one line naming `--set` and store.url, exit 2."""
    run = compactor_cli("config", "check", "--set", "store.url=s3://x")
    assert run.code == 2
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("compactor: error: --set: store.url: "), \
        run.err
    assert '; fix: write url = "postgresql://' in lines[0], lines[0]


def test_url_and_root_in_one_file_is_one_line_naming_both(tmp_path, compactor_cli):
    """A file with both `root` and `url` in [store] names one store twice: exit 2, one
    line naming store.url and store.root, the fix saying to keep one."""
    path = tmp_path / "compactor.toml"
    path.write_text('[store]\nroot = "data"\nurl = "postgresql://db/x"\n', encoding="utf-8")
    run = compactor_cli("config", "check", "--config", str(path))
    assert (run.code, run.out) == (2, "")
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"compactor: error: {path}: store.url: "), lines[0]
    assert "store.root" in lines[0] and "; fix: keep one" in lines[0], lines[0]
