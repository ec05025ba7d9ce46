"""`[store] url = "postgresql://..."` in compactor.toml is a valid key: `config show` lists
it as coming from the file (the password replaced by `***`), `config check` passes naming
the store, and maintenance takes it as its store."""

from __future__ import annotations

import json

URL = "postgresql://worker:s3cret-pw@db.internal:5432/agents"
SHOWN = "postgresql://worker:***@db.internal:5432/agents"


def _write(tmp_path, body: str):
    path = tmp_path / "compactor.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_config_show_lists_store_url_from_the_file(tmp_path, compactor_cli):
    """`config show` prints `store.url = "<url without password>"  # file` and the
    maintenance store taken from it; the password appears nowhere in the output."""
    path = _write(tmp_path, f'[store]\nurl = "{URL}"\n')
    run = compactor_cli("config", "show", "--config", str(path))
    assert (run.code, run.err) == (0, ""), run.err
    lines = {ln.split(" = ", 1)[0]: ln for ln in run.out.splitlines() if " = " in ln}
    assert lines["store.url"].split("#")[0].strip() == f'store.url = "{SHOWN}"'
    assert lines["store.url"].split("#")[1].strip() == "file"
    assert lines["store.root"].split("#")[0].strip() == "store.root = (unset)"
    assert f'"{SHOWN}"' in lines["maintenance.store"]
    assert "(store.url)" in lines["maintenance.store"]
    assert "s3cret" not in run.out


def test_config_show_json_gives_store_url_its_source_and_file(tmp_path, compactor_cli):
    """`config show --json`: store.url has source "file" and from = the file's path."""
    path = _write(tmp_path, f'[store]\nurl = "{URL}"\n')
    run = compactor_cli("config", "show", "--json", "--config", str(path))
    assert run.code == 0, run.err
    got = json.loads(run.out)["values"]["store.url"]
    assert got == {"value": SHOWN, "source": "file", "from": str(path)}
    assert "s3cret" not in run.out


def test_config_check_passes_and_names_the_store_without_password(tmp_path, compactor_cli):
    """`config check` on a file with `[store] url` exits 0 with one OK line whose store is
    the URL without its password."""
    path = _write(tmp_path, f'[store]\nurl = "{URL}"\n')
    run = compactor_cli("config", "check", "--config", str(path))
    assert (run.code, run.err) == (0, ""), run.err
    assert run.out.count("\n") == 1 and f"store {SHOWN}, ledger" in run.out
    assert "s3cret" not in run.out
