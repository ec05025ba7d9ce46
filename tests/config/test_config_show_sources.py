"""`compactor config show`: every effective value with where it came from (default, file,
env, flag), and which file is read (--config, $COMPACTOR_CONFIG, ./compactor.toml,
shipped defaults)."""

from __future__ import annotations

import json
import tomllib

from compactor._config import shipped_path

from config_samples import write


def _show(compactor_cli, *args, **kw) -> dict:
    run = compactor_cli("config", "show", "--json", *args, **kw)
    assert run.code == 0, run.err
    return json.loads(run.out)


def test_sources_default_file_env_and_flag(tmp_path, compactor_cli):
    """A value from the file, one from $COMPACTOR_HOME, one from --set and one left alone
    each report their own source."""
    path = write(tmp_path, "[compactor]\nhigh_watermark = 0.8\n")
    got = _show(compactor_cli, "--config", str(path), "--set", "compactor.keep_recent=3",
                env={"COMPACTOR_HOME": str(tmp_path / "home")})
    v = got["values"]
    assert v["compactor.high_watermark"] == {"value": 0.8, "source": "file", "from": str(path)}
    assert v["store.root"] == {"value": str(tmp_path / "home"), "source": "env",
                               "from": "$COMPACTOR_HOME"}
    assert v["compactor.keep_recent"] == {"value": 3, "source": "flag", "from": "--set"}
    shipped = tomllib.loads(shipped_path().read_text())["compactor"]["low_watermark"]
    assert v["compactor.low_watermark"] == {"value": shipped, "source": "default", "from": None}
    assert v["maintenance.store"]["value"] == str(tmp_path / "home")   # follows store.root
    assert got["file"] == str(path) and got["found_by"] == "flag"


def test_env_beats_file_and_flag_beats_env(tmp_path, compactor_cli):
    """The same key set in the file, the environment and --set: the flag wins, then env."""
    path = write(tmp_path, '[ledger]\npath = "from-file.jsonl"\n')
    env = {"COMPACTOR_LEDGER": "from-env.jsonl"}
    v = _show(compactor_cli, "--config", str(path), env=env)["values"]
    assert (v["ledger.path"]["value"], v["ledger.path"]["source"]) == ("from-env.jsonl", "env")
    v = _show(compactor_cli, "--config", str(path), "--set", "ledger.path=from-flag.jsonl",
              env=env)["values"]
    assert (v["ledger.path"]["value"], v["ledger.path"]["source"]) == ("from-flag.jsonl",
                                                                       "flag")
    v = _show(compactor_cli, "--config", str(path))["values"]
    assert v["ledger.path"] == {"value": str(tmp_path / "from-file.jsonl"), "source": "file",
                                "from": str(path)}   # relative to the file's folder


def test_which_file_is_read(tmp_path, compactor_cli):
    """./compactor.toml is found; $COMPACTOR_CONFIG wins over it; --config over both; with
    none of them the shipped defaults are read and every value is a default."""
    none = _show(compactor_cli)
    assert none["file"] is None and none["found_by"] == "default"
    assert {x["source"] for x in none["values"].values()} == {"default"}
    write(tmp_path, "[compactor]\nkeep_recent = 1\n")
    other = write(tmp_path, "[compactor]\nkeep_recent = 2\n", name="other.toml")
    third = write(tmp_path, "[compactor]\nkeep_recent = 3\n", name="third.toml")
    cwd = _show(compactor_cli)
    assert (cwd["found_by"], cwd["values"]["compactor.keep_recent"]["value"]) == ("cwd", 1)
    env = _show(compactor_cli, env={"COMPACTOR_CONFIG": str(other)})
    assert (env["found_by"], env["values"]["compactor.keep_recent"]["value"]) == ("env", 2)
    flag = _show(compactor_cli, "--config", str(third), env={"COMPACTOR_CONFIG": str(other)})
    assert (flag["found_by"], flag["values"]["compactor.keep_recent"]["value"]) == ("flag", 3)


def test_budgets_and_maintenance_values_are_listed_with_sources(tmp_path, compactor_cli):
    """A [budgets] without profiles changes the shipped ones key by key; [maintenance]
    keys set in the file say file, the rest default."""
    path = write(tmp_path, '[budgets.settings]\nenforcement = "hard"\n'
                           '[maintenance.tiers]\nfull_days = 3\n')
    v = _show(compactor_cli, "--config", str(path))["values"]
    assert v["budgets.settings.enforcement"]["value"] == "hard"
    assert v["budgets.settings.enforcement"]["source"] == "file"
    assert v["budgets.settings.default_profile"] == {"value": "specialist-broad",
                                                     "source": "default", "from": None}
    assert v["budgets.profiles.specialist-narrow.budget_tokens"]["value"] == 20_000
    assert (v["maintenance.tiers.full_days"]["value"],
            v["maintenance.tiers.full_days"]["source"]) == (3, "file")
    assert v["maintenance.tiers.brief_days"]["source"] == "default"


def test_text_output_names_each_source(tmp_path, compactor_cli):
    """The text form prints `key = value  # source` lines, env and flag with their origin."""
    path = write(tmp_path, "[compactor]\nhigh_watermark = 0.8\n")
    run = compactor_cli("config", "show", "--config", str(path), "--set", "compactor.window=9000",
                        env={"COMPACTOR_HOME": "h"})
    assert run.code == 0, run.err
    lines = {ln.split(" = ")[0]: ln for ln in run.out.splitlines() if " = " in ln}
    assert lines["compactor.high_watermark"].rstrip().endswith("# file")
    assert lines["compactor.window"].rstrip().endswith("# flag --set")
    assert lines["store.root"].rstrip().endswith("# env $COMPACTOR_HOME")
    assert lines["compactor.keep_recent"].rstrip().endswith("# default")
    assert run.out.startswith(f"# config: {path} (from --config)")
