"""The benchmark run end to end on a tiny synthetic input: results.json, results.md, charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("matplotlib")

from compactor import ConfigError  # noqa: E402
from compactor.bench import BenchConfig, render_markdown, run_bench, write_results  # noqa: E402
from compactor.bench._report import CHARTS  # noqa: E402
from compactor.bench._run import fit_slope, must_keep_final, percentile  # noqa: E402
from compactor.cli import main  # noqa: E402

TINY = dict(windows=("1500", "25%"), scaling_sizes=(40, 80), scaling_window=1500,
            under_threshold_messages=60, counter="heuristic")
CELL_KEYS = {"dataset", "window", "strategy", "conversations", "model_calls", "tokens_sent",
             "tokens_per_call", "compaction_ratio", "compactions_per_conversation",
             "invalid_histories", "invalid_rate", "invalid_rules", "empty_histories",
             "over_window", "overflows", "must_keep_total", "must_keep_kept", "must_keep_rate",
             "probes_total", "probes_contained", "probes_ceiling", "probes_vs_ceiling",
             "cpu_per_call_median_ms", "cpu_per_call_p95_ms", "cpu_total_s"}


@pytest.fixture(scope="module")
def results(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("results")
    steps: list[str] = []
    r = run_bench(BenchConfig(data=str(tiny_data), **TINY),
                  on_step=lambda d, n: steps.append(d))
    write_results(r, out)
    assert steps, "the progress callback was never called"
    return r, out


def test_results_json_schema(results: tuple[dict, Path]) -> None:
    """results.json has one cell per strategy and window with every metric, scaling
    points with slopes, and the under-threshold ratio."""
    r, out = results
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(r))
    strategies = [s for s in data["strategies"]]
    assert "ours+llm" not in strategies and data["skipped"][0]["strategy"] == "ours+llm"
    assert {(c["window"], c["strategy"]) for c in data["cells"]} == \
        {(w, s) for w in ("1.5k", "25%") for s in strategies}
    for c in data["cells"]:
        assert CELL_KEYS <= set(c), CELL_KEYS - set(c)
    sc = data["scaling"]["strategies"]
    assert set(sc) == {"ours", "trim_messages"}
    assert [p["messages"] for p in sc["ours"]["points"]] == [40, 80]
    assert data["under_threshold"]["ratio"] > 0


def test_markdown_regenerates_from_json(results: tuple[dict, Path]) -> None:
    """results.md is exactly render_markdown(results.json): the tables reproduce."""
    _, out = results
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text() == render_markdown(data)
    assert "| tiny.anthropic | 1.5k | ours |" in render_markdown(data)


def test_markdown_changes_with_the_json(results: tuple[dict, Path]) -> None:
    """A figure changed in the JSON shows up in the markdown (the table is not canned)."""
    _, out = results
    data = json.loads((out / "results.json").read_text())
    cell = next(c for c in data["cells"] if c["strategy"] == "ours")
    cell["invalid_histories"], cell["invalid_rate"] = 7, 0.5
    assert "7 (50.0%)" in render_markdown(data)


def test_charts_written(results: tuple[dict, Path]) -> None:
    """The three charts are written as non-empty PNGs."""
    _, out = results
    for name in CHARTS.values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_ceiling_and_our_validity(results: tuple[dict, Path]) -> None:
    """The ceiling saves nothing and keeps every probe; ours never sends an invalid
    history, saves tokens and keeps more must-keep items than plain truncation."""
    r, _ = results
    cell = {(c["window"], c["strategy"]): c for c in r["cells"]}
    assert cell[("1.5k", "none")]["compaction_ratio"] == 0
    assert cell[("1.5k", "none")]["over_window"] > 0
    ours, trunc = cell[("1.5k", "ours")], cell[("1.5k", "truncation")]
    assert ours["invalid_histories"] == 0 and ours["compaction_ratio"] > 0
    assert ours["must_keep_rate"] > trunc["must_keep_rate"]


def test_must_keep_final_counts_evicted_items() -> None:
    """Items of a message that left the context count as kept only if the context still
    holds them."""
    msgs = [{"role": "user", "content": "Book flight HAT123 for reservation ZX9Y8W."},
            {"role": "assistant", "content": "Done."}]
    assert must_keep_final(msgs, None, msgs) == (0, 0)
    assert must_keep_final(msgs, None, msgs[1:]) == (2, 0)
    summary = {"role": "user", "content": "<conversation_summary>HAT123</conversation_summary>"}
    assert must_keep_final(msgs, None, [summary, msgs[1]]) == (2, 1)


def test_fit_slope_and_percentile() -> None:
    """The log-log slope of y = x^2 is 2; percentiles interpolate."""
    assert fit_slope([10, 100, 1000], [100, 10_000, 1_000_000]) == pytest.approx(2.0)
    assert fit_slope([10], [1]) is None
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3 and percentile([], 0.9) == 0.0


def test_config_errors_name_the_field() -> None:
    """An unknown strategy or window is a ConfigError naming the field."""
    with pytest.raises(ConfigError) as e:
        BenchConfig(strategies=("ours", "magic"))
    assert e.value.field == "strategies"
    with pytest.raises(ConfigError) as e:
        BenchConfig(windows=("lots",))
    assert e.value.field == "window"


def test_cli_writes_a_results_folder(tiny_data: Path, tmp_path: Path) -> None:
    """`compactor bench` runs from the command line into --out and exits 0."""
    out = tmp_path / "r"
    code = main(["bench", "--data", str(tiny_data), "--out", str(out), "--windows", "2k",
                 "--strategies", "none,ours,trim_messages", "--scaling-sizes", "30,60",
                 "--counter", "heuristic", "--no-charts"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert {c["strategy"] for c in data["cells"]} == {"none", "ours", "trim_messages"}
    assert main(["bench", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_kind_table_shows_each_strategy_kind_by_kind() -> None:
    """The per-kind table has a row per window and strategy and a column per probe kind,
    each cell kept/ceiling from that cell's probes_by_kind ('–' where a kind is absent)."""
    from compactor.bench._report import _kind_table

    cells = [{"window": "25%", "strategy": "truncation",
              "probes_by_kind": {"file_modified": {"contained": 51, "ceiling": 59}}},
             {"window": "25%", "strategy": "ours",
              "probes_by_kind": {"file_modified": {"contained": 59, "ceiling": 59},
                                 "symbol_changed": {"contained": 70, "ceiling": 78}}}]
    lines = _kind_table(cells)
    assert "| 25% | truncation | 51/59 | – |" in lines
    assert "| 25% | ours | 59/59 | 70/78 |" in lines
    assert _kind_table([{"window": "4k", "strategy": "ours", "probes_by_kind": {}}]) == []
