"""``perfics report``: the charts and report.md from a policy's quality figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.calibrate.report import gains, task_views, write_report
from routing.policy import Policy


def test_views_carry_cost_plan_and_plannability(policy: Policy) -> None:
    measured = frozenset({("alpha", "creative")})
    views = {view.task: view for view in task_views(policy, 100, measured)}
    math = views["math"]
    alpha = [p for p in math.points if p.model == "alpha"]
    assert [p.rounds for p in alpha] == [0, 1, 2]
    assert [p.plannable for p in alpha] == [True, True, False]  # math: max_rounds 1
    assert alpha[0].cost_usd < alpha[1].cost_usd < alpha[2].cost_usd
    assert alpha[0].source == "default"
    assert views["creative"].points[0].source == "creative"
    assert [p.calibrated for p in views["creative"].points if p.model == "alpha"] == [True, True]
    assert not any(p.calibrated for p in math.points)
    assert math.planned is not None
    assert math.plan_note.startswith("plan: ")
    assert gains(views["creative"])["alpha"] == (1, 0.5, None)  # guessed: no interval


@pytest.mark.slow
def test_report_files(policy: Policy, tmp_path: Path) -> None:
    paths = write_report(policy, tmp_path / "out")
    assert [p.name for p in paths] == ["quality_vs_cost.png", "refinement_gain.png", "report.md"]
    for png in paths[:2]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
    report = paths[2].read_text()
    for task in policy.tasks:
        assert f"## {task}" in report
    assert report.count("**(plan)**") == len(policy.tasks)
    assert "| creative | alpha | 1 | +0.50 |" in report
    assert "| alpha | 1 | 4.50 |" in report
    assert "| creative | no |" in report
