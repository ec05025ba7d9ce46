"""The 400-day fleet through `maintain --run`: tiers, forms, bytes, restores, idempotence,
and `--dry-run`/`--assess`/`health` writing nothing."""

from __future__ import annotations

import json
from datetime import timedelta

from checks import assert_all_restorable, expected_tier, leftovers, locate
from maintenance_support import cli, cli_json
from fleet import NOW, tree_digest
from compactor.ledger import read_records
from compactor.maintenance import entries


def _du(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_run_tiers_every_session_and_restores_byte_identical(fleet):
    """After one run each of the 205 sessions sits in the tier its age and importance call
    for, stored bytes drop by the reported factor, and every session restores identically."""
    before = _du(fleet.store / "sessions")
    code, rep = cli_json(fleet.args("maintain", "--run"))
    assert code == 0 and rep["status"] == "ok", rep
    arch = entries(fleet.store / "archive")
    where = locate(fleet.store)
    seen = {"full": 0, "key_points": 0, "brief_summary": 0, "metadata_only": 0}
    for sid, info in fleet.manifest.items():
        if sid in arch:
            e = arch[sid]
            imp = e.data["importance"]
            if info["marked"]:
                assert imp["marked"] and imp["important"] and imp["score"] == 1.0, sid
            assert imp["important"] == (imp["score"] >= 0.6), sid
            tier = e.tier
            assert where[sid] == "archive", sid            # the live copy is gone
            assert tier == expected_tier(info["age_days"], imp["important"]), sid
        else:
            tier = "full"
            assert where[sid] == "live" and info["age_days"] < 7 * 3, sid
            assert expected_tier(info["age_days"], info["marked"]) == "full" or not info["marked"]
        seen[tier] += 1
    assert all(n > 0 for n in seen.values()), seen
    assert rep["tiers"] == seen
    # the forms: key points about 70 %, brief about 40 % of the tokens, metadata always
    shares = {"key_points": [], "brief_summary": []}
    for e in arch.values():
        md = e.data["metadata"]
        assert md["messages"] == len(fleet.manifest[e.session_id]["messages"])
        assert {"participants", "first_seen", "last_active", "tool_calls", "tools", "errors",
                "outcome"} <= set(md)
        if e.tier in shares:
            form = e.data["form"]
            assert form["kind"] == e.tier and form["text"]
            assert form["tokens"] <= form["target_share"] * md["tokens"] + 24
            shares[e.tier].append(form["share"])
        else:
            assert e.data["form"] is None
    mean = {k: sum(v) / len(v) for k, v in shares.items()}
    assert 0.35 < mean["key_points"] <= 0.72 and 0.2 < mean["brief_summary"] <= 0.42, mean
    assert mean["key_points"] > mean["brief_summary"]
    # bytes: the factor reported is the one on disk
    after = _du(fleet.store / "sessions") + _du(fleet.store / "archive")
    assert rep["sizes_before"]["sessions_bytes"] == before
    assert rep["sizes_after"]["sessions_bytes"] == after
    assert rep["reduction_factor"] == round(before / after, 3) and before / after > 2.0
    assert_all_restorable(fleet.store, fleet.manifest)
    assert leftovers(fleet.store) == []
    # the maintenance record in the ledger carries the sizes before and after
    recs = [r for r in read_records(fleet.ledger) if r["event"] == "maintenance"]
    assert recs[-1]["action"] == "maintain" and recs[-1]["sizes_after"]["sessions_bytes"] == after
    assert recs[-1]["ts"].startswith("2025-06-01")
    # a second run at the same time has nothing to do and changes no session byte
    digest = tree_digest(fleet.store / "archive")
    code, rep2 = cli_json(fleet.args("maintain", "--run"))
    assert code == 0 and rep2["counts"] == {} and tree_digest(fleet.store / "archive") == digest


def test_dry_run_assess_health_and_list_change_no_byte(small_fleet):
    """`--dry-run`, `--assess`, `health` and `archive list` leave every byte, file and mode
    of the store and the ledger as they were, before and after a real run."""
    fleet = small_fleet
    for stage in ("fresh", "after a run, 60 days later"):
        now = NOW if stage == "fresh" else NOW + timedelta(days=60)
        iso = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        before = tree_digest(fleet.root)
        code, out, _ = cli(fleet.args("maintain", "--dry-run", now=iso))
        assert code == 0 and ("archive" in out if stage == "fresh" else "retier" in out)
        assert cli(fleet.args("maintain", "--assess", now=iso))[0] == 0
        assert cli(fleet.args("health", now=iso))[0] in (0, 1)
        assert cli(["archive", "list", *fleet.args(now=iso)])[0] == 0
        assert tree_digest(fleet.root) == before, stage
        if stage == "fresh":
            assert cli(fleet.args("maintain", "--run"))[0] == 0


def test_tiers_follow_time_and_rolled_up_forms_restore(small_fleet):
    """Run at day 0, then 45 and 400 days later: sessions only move to thinner tiers, each
    as its age dictates, and every restore stays byte-identical."""
    last: dict[str, int] = {}
    for days in (0, 45, 400):
        now = NOW + timedelta(days=days)
        code, rep = cli_json(small_fleet.args("maintain", "--run",
                                              now=now.strftime("%Y-%m-%dT%H:%M:%SZ")))
        assert code == 0, rep
        arch = entries(small_fleet.store / "archive")
        for sid, info in small_fleet.manifest.items():
            age = info["age_days"] + days
            tier = arch[sid].tier if sid in arch else "full"
            imp = arch[sid].important if sid in arch else info["marked"]
            assert tier == expected_tier(age, imp), (sid, days)
            rank = ["full", "key_points", "brief_summary", "metadata_only"].index(tier)
            assert rank >= last.get(sid, 0)
            last[sid] = rank
        assert_all_restorable(small_fleet.store, small_fleet.manifest)
    assert set(last.values()) == {3}
    hist = json.loads(next((small_fleet.store / "archive").rglob("*.json")).read_text())["history"]
    assert [h["tier"] for h in hist][-1] == "metadata_only"
