"""`budgets report` on odd ledgers and arguments: records with a non-string agent id or
profile, malformed lines, a folder as ledger, `--min-invocations` below 1, and charts of
an empty report or to a path that cannot be written: counted or refused in one line,
never a traceback."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from compactor import ConfigError
from compactor.budgets import BudgetReport, compute_report, default_config
from compactor.budgets._chart import write_chart

TS = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _line(**fields) -> str:
    return json.dumps({"schema_version": 1, "ts": TS, "session_id": None, **fields}) + "\n"


def _usage(agent, tokens=50, budget=100, profile="specialist-narrow") -> dict:
    return {"event": "usage", "agent_id": agent, "profile": profile, "tokens": tokens,
            "budget_tokens": budget}


def test_report_skips_records_whose_agent_id_is_not_a_string():
    """A usage record with a list or number as agent_id (not ours) is skipped, not a
    TypeError; the valid records are still counted."""
    records = [_usage(["x"]), _usage(5), _usage("ok"),
               {"event": "budget_alert", "agent_id": {"a": 1}, "level": "info",
                "profile": "specialist-narrow"}]
    report = compute_report(records, default_config())
    assert report.invocations == 1
    assert [g.name for g in report.by_agent] == ["ok"]
    assert report.by_profile[0].alerts == {"info": 0, "warning": 0, "critical": 0}


def test_report_counts_a_non_string_profile_as_unknown():
    """A usage record whose profile is not a string is grouped under '(unknown)'; the
    agent's profile column says so too."""
    report = compute_report([_usage("a", profile={"p": 1})], default_config())
    assert [g.name for g in report.by_profile] == ["(unknown)"]
    assert report.by_agent[0].profile == "(unknown)"


def test_recommendation_for_a_profile_not_in_the_config_says_so():
    """A profile the config no longer defines is not called 'the largest profile'."""
    records = [_usage("a", tokens=200, profile="retired")] * 20
    (g,) = compute_report(records, default_config()).by_profile
    assert g.recommendation == "upgrade" and g.suggested_profile is None
    assert "not in the config" in g.reason and "largest" not in g.reason


def test_report_from_malformed_ledger_via_cli(tmp_path, cli):
    """`budgets report` over a ledger holding other events and malformed usage records
    exits 0 and counts only the valid usage records."""
    path = tmp_path / "ledger.jsonl"
    path.write_text(_line(**_usage(["x"])) + _line(event="compaction", agent_id="a")
                    + _line(**{**_usage("a"), "tokens": "lots"}) + _line(**_usage("a")))
    run = cli("budgets", "report", "--ledger", str(path), "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["invocations"] == 1


def test_report_on_a_directory_exits_2_with_one_line(tmp_path, cli):
    """--ledger naming a directory is one line on stderr and exit 2, not a traceback."""
    run = cli("budgets", "report", "--ledger", str(tmp_path))
    assert run.code == 2
    assert run.err.count("\n") == 1 and "cannot read the ledger" in run.err


def test_min_invocations_below_one_is_rejected(tmp_path, cli):
    """--min-invocations 0 would recommend 'downgrade' for profiles with no invocation;
    the CLI refuses it like the config does (>= 1)."""
    path = tmp_path / "ledger.jsonl"
    path.write_text("")
    with pytest.raises(SystemExit) as info:
        cli("budgets", "report", "--ledger", str(path), "--min-invocations", "0")
    assert info.value.code == 2


def test_chart_of_an_empty_report_is_written(tmp_path):
    """An empty report still gives a PNG (the threshold lines, no boxes)."""
    report = compute_report([], default_config())
    write_chart(report, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["missing-folder/out.png", "out.xyz"])
def test_chart_path_that_cannot_be_written_is_one_line(tmp_path, cli, name):
    """--chart into a missing folder or with an unknown format: exit 2, one line naming
    --chart, no traceback."""
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("")
    run = cli("budgets", "report", "--ledger", str(ledger), "--chart", str(tmp_path / name))
    assert run.code == 2, run.err
    assert run.err.count("\n") == 1 and "--chart" in run.err and "fix:" in run.err


def test_write_chart_raises_config_error(tmp_path):
    """write_chart's documented error: ConfigError with field 'chart'."""
    report = BudgetReport([], [], default_config().recommendations)
    with pytest.raises(ConfigError) as info:
        write_chart(report, tmp_path / "nope" / "x.png")
    assert info.value.field == "chart"
