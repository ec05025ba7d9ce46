"""`compactor config check`: a file holding every table passes; each malformed config
gives exactly one line on stderr naming the file, the dotted key and a fix, exit 2, run
as a real subprocess."""

from __future__ import annotations

import pytest

from config_samples import FULL, variant, write

#: (case id, (old, new) substituted into FULL, the key the line must name, words it holds)
BAD = [
    ("toml-syntax", ("keep_recent = 6", "keep_recent = = 6"), "line 4", "not valid TOML"),
    ("unknown-table", ("[store]", "[stores]"), "stores", "did you mean 'store'?"),
    ("unknown-key", ("keep_recent = 6", "keep_recnet = 6"), "compactor.keep_recnet",
     "did you mean 'keep_recent'?"),
    ("wrong-type", ("max_summary_tokens = 1500", 'max_summary_tokens = "1500"'),
     "compactor.max_summary_tokens", "whole number"),
    ("out-of-range", ("summary_share = 0.6", "summary_share = 1.6"),
     "compactor.summary_share", "1.6"),
    ("low-not-below-high", ("low_watermark = 0.5", "low_watermark = 0.9"),
     "compactor.low_watermark", "high_watermark"),
    ("bad-model-map-tier", ('"acme-*" = "reasoning"', '"acme-*" = "reasonable"'),
     'windows.model_tiers."acme-*"', "unknown tier 'reasonable'"),
    ("bad-tier-window", ("coding = 100_000", 'coding = "100k"'),
     "windows.tier_windows.coding", "whole number"),
    ("bad-budgets-profile-ref", ('bot = "large"', 'bot = "larg"'), "budgets.agents.bot",
     "did you mean 'large'?"),
    ("budgets-weights-sum", ("recent = 0.6", "recent = 0.7"), "budgets.profiles.small.weights",
     "sum to 1"),
    ("bad-maintenance-value", ("ledger_rotate_mb = 32", "ledger_rotate_mb = -32"),
     "maintenance.ledger_rotate_mb", "> 0"),
    ("bad-ledger-fsync", ('fsync = "never"', 'fsync = "nightly"'), "ledger.fsync",
     "'nightly'"),
    ("old-budgets-table-beside-new", ("[store]", "[settings]\nenforcement = 'soft'\n[store]"),
     "settings", "[budgets.settings]"),
    ("store-url-not-postgres", ('root = "data/store"', 'url = "s3://bucket"'), "store.url",
     'write url = "postgresql://'),
]


def _one_problem_line(run, path: str, key: str, words: str) -> str:
    assert run.code == 2, (run.out, run.err)
    assert run.out == ""
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    line = lines[0]
    assert line.startswith(f"compactor: error: {path}: {key}: "), line
    assert "; fix: " in line and words in line, line
    return line


def test_a_file_holding_every_table_passes(tmp_path, compactor_cli):
    """A compactor.toml with all six tables set: one `OK: FILE: ...` line, exit 0."""
    path = write(tmp_path)
    run = compactor_cli("config", "check", "--config", str(path))
    assert (run.code, run.err) == (0, "")
    assert run.out.startswith(f"OK: {path}: ") and run.out.count("\n") == 1
    assert "2 budget profiles, 1 agents" in run.out


def test_no_file_checks_the_shipped_defaults(tmp_path, compactor_cli):
    """With no --config, no $COMPACTOR_CONFIG and no ./compactor.toml, check validates the
    shipped defaults file and passes."""
    run = compactor_cli("config", "check")
    assert run.code == 0 and run.out.startswith("OK: ")
    assert run.out.split(":")[1].strip().endswith("data/compactor.toml")


@pytest.mark.parametrize("case, change, key, words", BAD, ids=[c[0] for c in BAD])
def test_each_malformed_config_is_one_line_exit_2(tmp_path, compactor_cli, case, change, key,
                                                  words):
    """Each kind of mistake: exit 2, exactly one stderr line `FILE: KEY: problem; fix: ...`."""
    path = write(tmp_path, variant(*change))
    run = compactor_cli("config", "check", "--config", str(path))
    _one_problem_line(run, str(path), key, words)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, compactor_cli):
    """A Latin-1 byte in the file: one line naming (file) and UTF-8, exit 2."""
    path = tmp_path / "compactor.toml"
    path.write_bytes(FULL.encode() + b"# caf\xe9\n")
    run = compactor_cli("config", "check", "--config", str(path))
    _one_problem_line(run, str(path), "(file)", "UTF-8")


def test_a_missing_file_given_by_flag_is_one_line(tmp_path, compactor_cli):
    """--config naming no file: one line naming the path and (file), exit 2 (no fallback
    to the defaults)."""
    path = tmp_path / "nope.toml"
    run = compactor_cli("config", "check", "--config", str(path))
    _one_problem_line(run, str(path), "(file)", "cannot read")


def test_a_directory_given_as_the_file_is_one_line(tmp_path, compactor_cli):
    """--config naming a directory: one line saying it is a directory, exit 2."""
    run = compactor_cli("config", "check", "--config", str(tmp_path))
    _one_problem_line(run, str(tmp_path), "(file)", "directory")


def test_show_with_a_bad_file_is_one_line_too(tmp_path, compactor_cli):
    """`config show` on a malformed file fails the same way (exit 2, one line)."""
    path = write(tmp_path, variant("keep_recent = 6", "keep_recnet = 6"))
    run = compactor_cli("config", "show", "--config", str(path))
    _one_problem_line(run, str(path), "compactor.keep_recnet", "did you mean")


def test_independent_problems_each_get_a_line(tmp_path, compactor_cli):
    """Three mistakes in three tables: three lines, one per key, exit 2."""
    text = variant("keep_recent = 6", "keep_recnet = 6")
    text = text.replace('fsync = "never"', 'fsync = "nightly"').replace(
        "ledger_rotate_mb = 32", "ledger_rotate_mb = 0")
    path = write(tmp_path, text)
    run = compactor_cli("config", "check", "--config", str(path))
    assert run.code == 2 and run.out == ""
    keys = sorted(line.split(": ")[3] for line in run.err.splitlines())
    assert keys == ["compactor.keep_recnet", "ledger.fsync", "maintenance.ledger_rotate_mb"]
