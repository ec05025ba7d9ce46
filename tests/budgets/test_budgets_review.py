"""Edge cases found in review: inputs that used to give a traceback or a surprising
result, each pinned so it cannot come back."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from compactor import ConfigError, ContextOverflowError, MemorySink
from compactor.budgets import (BudgetMonitor, BudgetReport, Complexity, compute_report,
                               default_config, detect_complexity, effective_budget,
                               load_config, parse_config, usable_cap)
from compactor.budgets._chart import write_chart
from compactor.budgets._config import CONFIG_ENV, resolve_config

TS = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _line(**fields) -> str:
    return json.dumps({"schema_version": 1, "ts": TS, "session_id": None, **fields}) + "\n"


def _usage(agent, tokens=50, budget=100, profile="specialist-narrow") -> dict:
    return {"event": "usage", "agent_id": agent, "profile": profile, "tokens": tokens,
            "budget_tokens": budget}


# ------------------------------------------------------------------------- the report
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


# --------------------------------------------------------------------------- config
def test_empty_config_path_is_an_error_not_the_shipped_file(tmp_path, cli, monkeypatch):
    """`--config ""` (an unset shell variable) is an error naming (file), not a silent
    fallback to the shipped profiles; an empty $COMPACTOR_BUDGETS means unset."""
    run = cli("budgets", "check", "--config", "")
    assert run.code == 2 and "(file)" in run.err and "empty" in run.err
    monkeypatch.setenv(CONFIG_ENV, "")
    assert resolve_config().source == default_config().source


def test_a_directory_as_config_is_one_line(tmp_path, cli):
    """--config naming a directory: exit 2, one line naming (file)."""
    run = cli("budgets", "check", "--config", str(tmp_path))
    assert run.code == 2 and run.err.count("\n") == 1 and ": (file): " in run.err


def test_non_utf8_config_is_one_line(tmp_path):
    """A file that is not UTF-8 raises BudgetConfigError naming (file)."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[settings]\ndefault_profile = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == "(file)" and "UTF-8" in str(info.value)


# -------------------------------------------------------------------------- monitor
def test_tiny_budget_at_simple_complexity_is_not_zero():
    """budget_tokens = 1 at simple (x0.5) rounds to 1, not 0 (which divided by zero in
    alerts and the usage record)."""
    cfg = parse_config({"profiles": {"tiny": {"budget_tokens": 1, "weights": {"recent": 1.0}}},
                        "settings": {"default_profile": "tiny"}})
    assert effective_budget(cfg.profiles["tiny"], "simple").tokens == 1
    sink = MemorySink()
    with BudgetMonitor(cfg, sink=sink).start("a", complexity="simple") as inv:
        inv.check(1)
    assert sink.of("usage")[0]["usage_pct"] == 100.0


def test_negative_max_tokens_is_a_config_error(cli):
    """A negative output reserve would raise the cap above the model's window; it is a
    ConfigError naming max_tokens (and a CLI usage error)."""
    with pytest.raises(ConfigError) as info:
        usable_cap(model="claude-sonnet-4-5", max_tokens=-5)
    assert info.value.field == "max_tokens"
    with pytest.raises(SystemExit):
        cli("budgets", "estimate", "fix it now", "--max-tokens", "-5")


class _OverflowingCompactor:
    """compact_if_needed: ContextOverflowError with the budget window; with no window
    (the model's own), a result far over any budget."""

    def __init__(self) -> None:
        self.unbounded_calls = 0

    async def compact_if_needed(self, messages, *, window=None, force=False, **kw):
        if window is not None:
            raise ContextOverflowError(floor_tokens=10, summary_tokens=5, window_tokens=12)
        self.unbounded_calls += 1

        class R:
            tokens_after = 10**6
            messages = []
        return R()


async def test_hard_mode_never_falls_back_to_the_models_window():
    """Hard mode: when compaction overflows the budget window, the request is refused
    (an error), never compacted to the model's window and returned unchecked."""
    mon = BudgetMonitor(enforcement="hard")
    comp = _OverflowingCompactor()
    with mon.start("test-runner", complexity="medium") as inv:
        with pytest.raises(ContextOverflowError):
            await inv.compact(comp, [{"role": "user", "content": "hi"}])
    assert comp.unbounded_calls == 0


# ----------------------------------------------------------------------- complexity
@pytest.mark.parametrize("text", [
    "Implement pagination for the users endpoint",
    "Add caching to the API using Redis",
    "Fix the failing test in tests/test_api.py",
    "Make the function minor_version return an int",
])
def test_a_short_task_is_not_simple_for_being_short(text):
    """Short plausible tasks with no simple marker are medium (unsure), not halved."""
    assert detect_complexity(text).level is Complexity.MEDIUM


@pytest.mark.parametrize("text, marker", [("Fix typos in the docs", "typos"),
                                          ("Fix formatting issues in the parser", "formatting"),
                                          ("Renaming the helper module", "renaming")])
def test_simple_markers_match_inflected_words(text, marker):
    """Plurals and -ing forms of the simple markers count."""
    a = detect_complexity(text)
    assert a.level is Complexity.SIMPLE and marker in a.simple_markers


def test_urls_and_dates_are_not_files():
    """Links and dates with slashes are not counted as files named."""
    a = detect_complexity("Read https://example.com/docs/api/v2/users and "
                          "https://example.com/a/b/c before the 2024/01/02 release")
    assert a.files == ()
    assert detect_complexity("Edit src/a/b.py and lib/c.py now").files == ("src/a/b.py",
                                                                           "lib/c.py")
