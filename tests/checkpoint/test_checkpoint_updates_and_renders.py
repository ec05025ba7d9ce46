"""The checkpoint keeps state: later values replace earlier ones, rules stay whole, the
rendering is ordered, traceable, within budget and reads back."""

from __future__ import annotations

import json

import pytest

from compactor import ExtractiveSummarizer, HeuristicCounter, SummaryRequest
from compactor._checkpoint import (CHECKPOINT_VERSION, Checkpoint, checkpoint_json_schema,
                                   checkpoint_prompt, parse, render, update,
                                   validate_llm_checkpoint, words_to_number)
from compactor._errors import SummarizerError
from compactor._format import Format

COUNTER = HeuristicCounter()

SESSION = [
    {"role": "user", "content": "I need a quarterly sales report for the board. The budget cap is $800 "
                                "for this project. Never push to remote until Dana reviews the work. "
                                "This applies to every branch."},
    {"role": "assistant", "content": "Acknowledged. Continuing with the plan."},
    {"role": "user", "content": "Set the deploy region to eu-north-5. Use imperial units for all charts."},
    {"role": "assistant", "content": [
        {"type": "text", "text": "I'll read the config first."},
        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "src/cfg/app.yaml"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                  "content": "Error: key PAMNT missing in src/cfg/app.yaml"}]},
    {"role": "user", "content": "Actually, use metric units. Switch to eu-west-2. Keep spend under "
                                "three hundred dollars."},
]
ORDINALS = [10, 11, 12, 13, 14, 15]


def _facts(cp: Checkpoint) -> dict[str, str]:
    return {f.slot: f.value for f in cp.facts}


def test_later_values_replace_earlier_ones_and_are_reported() -> None:
    """A restated slot keeps only its newest value (budget, region, units) and each
    replacement is reported with both ordinals."""
    cp, sup = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    values = set(_facts(cp).values())
    assert {"metric", "eu-west-2", "three hundred dollars"} <= values
    assert not {"imperial", "eu-north-5", "$800"} & values
    got = {(s.old, s.new, s.old_ordinal, s.new_ordinal) for s in sup}
    assert got == {("$800", "three hundred dollars", 10, 15), ("eu-north-5", "eu-west-2", 12, 15),
                   ("imperial", "metric", 12, 15)}


def test_superseded_values_do_not_appear_in_the_rendering() -> None:
    """Neither the old budget, region nor units are rendered; the new ones are."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    text = render(cp, 2000, COUNTER)
    for old in ("$800", "eu-north-5", "imperial"):
        assert old not in text
    for new in ("three hundred dollars", "eu-west-2", "metric"):
        assert new in text


def test_a_rule_written_as_two_sentences_stays_one_item() -> None:
    """"Never push ... This applies to every branch." is one rule item."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    assert [r.text for r in cp.rules] == [
        "Never push to remote until Dana reviews the work. This applies to every branch."]


def test_rules_survive_a_small_budget_before_routine_turns() -> None:
    """At a budget that holds only a few lines, the rule and the latest facts are
    rendered and the routine acknowledgement is not."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    text = render(cp, 90, COUNTER)
    assert COUNTER.count(text) <= 90
    assert "Never push to remote until Dana reviews the work. This applies to every branch." in text
    assert "Continuing with the plan" not in text


def test_rendering_is_ordered_and_traceable() -> None:
    """Sections come in the fixed order, every item line ends with its ordinals, the
    notes carry one ordinal range."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    text = render(cp, 2000, COUNTER)
    lines = text.splitlines()
    assert lines[0] == "Checkpoint v1 (6 messages)"
    titles = [ln[:-1] for ln in lines if ln.endswith(":")]
    order = ["Task", "Rules and constraints", "User preferences", "Facts (latest values)",
             "Decisions", "Open tasks", "Pending tool calls", "Errors seen", "Next action", "Notes"]
    assert titles == [t for t in order if t in titles]
    assert "- Never push to remote until Dana reviews the work. This applies to every branch. [#10]" in lines
    assert "- deploy region: eu-west-2 [#15]" in lines
    notes = lines.index(next(ln for ln in lines if ln.startswith("Notes:")))
    assert lines[notes] == "Notes: [#11]"  # one range for the routine notes
    assert all(ln.rstrip().endswith("]") for ln in lines[:notes] if ln.startswith("- "))
    assert "Tool calls: read_file x1 (1 failed)" in lines


def test_rendered_text_reads_back_to_the_same_rendering() -> None:
    """parse(render(cp)) renders to the same text (a summary text alone is enough)."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    text = render(cp, 2000, COUNTER)
    assert render(parse(text), 2000, COUNTER) == text


def test_json_round_trip_and_version_check() -> None:
    """to_json/from_json round-trip; another version is a SummarizerError."""
    cp, _ = update(None, SESSION, Format.ANTHROPIC, ORDINALS)
    data = json.loads(json.dumps(cp.to_json()))
    assert Checkpoint.from_json(data) == cp
    with pytest.raises(SummarizerError):
        Checkpoint.from_json({**data, "version": CHECKPOINT_VERSION + 1})


def test_update_merges_into_the_previous_checkpoint() -> None:
    """A second update keeps the first one's rule and replaces its budget."""
    first, _ = update(None, SESSION[:1], Format.OPENAI, [1])
    second, sup = update(first, [{"role": "user", "content": "The budget is now $300."}],
                         Format.OPENAI, [9])
    assert second.rules == first.rules
    assert [(s.old, s.new) for s in sup] == [("$800", "$300")]
    assert first.facts[0].value == "$800"  # the previous checkpoint is not modified


def test_extractive_summarizer_returns_the_rendered_checkpoint() -> None:
    """The offline summarizer renders the checkpoint, fills out[] and continues from the
    checkpoint JSON (or, without it, from the previous summary text)."""
    req = SummaryRequest(SESSION[:5], Format.ANTHROPIC, None, 100, COUNTER, ordinals=ORDINALS[:5])
    text = ExtractiveSummarizer().summarize_sync(req)
    assert text.startswith("Checkpoint v1 (5 messages)") and "$800" in text
    later = [{"role": "user", "content": "The budget is now $300."}]
    by_json = SummaryRequest(later, Format.OPENAI, text, 400, COUNTER, ordinals=[20],
                             checkpoint=req.out["checkpoint"])
    by_text = SummaryRequest(later, Format.OPENAI, text, 400, COUNTER, ordinals=[20])
    for r in (by_json, by_text):
        out = ExtractiveSummarizer().summarize_sync(r)
        assert "$300" in out and "$800" not in out
        assert [(s["old"], s["new"], s["new_ordinal"]) for s in r.out["superseded"]] == [("$800", "$300", 20)]


def test_words_to_number() -> None:
    """Numbers written in words are read: "three hundred" = 300."""
    assert words_to_number("three hundred") == 300
    assert words_to_number("two thousand and five") == 2005
    assert words_to_number("blue") is None


def test_llm_checkpoint_is_repaired_or_refused() -> None:
    """A fenced answer with a trailing comma, string items and no version is repaired;
    text without a JSON object, or an empty checkpoint, is a SummarizerError."""
    answer = ('Here it is:\n```json\n{"rules": ["Never push to main."], '
              '"facts": ["budget: $300", {"slot": "region", "value": "eu-west-2", "ordinal": 7}],}\n```')
    cp = validate_llm_checkpoint(answer)
    assert [r.text for r in cp.rules] == ["Never push to main."]
    assert [(f.slot, f.value, f.ordinal) for f in cp.facts] == [("budget", "$300", None),
                                                                ("region", "eu-west-2", 7)]
    for bad in ("no json here", '{"rules": []}', '{"facts": [{"slot": "x"}]}'):
        with pytest.raises(SummarizerError):
            validate_llm_checkpoint(bad)


def test_schema_and_prompt_name_every_section() -> None:
    """The JSON schema lists every section and the prompt carries schema and budget."""
    schema = checkpoint_json_schema()
    assert {"rules", "facts", "goal", "next_action", "artifacts", "notes"} <= set(schema["properties"])
    p = checkpoint_prompt(None, "[#3] user: hi", 500)
    assert '"facts"' in p and "500 tokens" in p and "[#3] user: hi" in p
