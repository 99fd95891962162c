"""The dashboard's plan form and policy sections with selection techniques: the technique and
samples of the plan and of every candidate, the form's sample cap, the per-task picks, and the
policy's ``selection`` settings (rendered HTML, no server)."""

from __future__ import annotations

import re

from proxy.ops.policy_view import plan_section, plan_view, policy_section
from routing.policy import Policy
from tests.routing.conftest import policy_from
from tests.routing.test_techniques import TECHNIQUES


def cells(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        if "<td" in row
    ]


def test_the_plan_form_shows_the_technique_of_the_plan_and_each_candidate() -> None:
    policy: Policy = policy_from(TECHNIQUES)
    view = plan_view(policy, {"task": "coding", "prompt_tokens": "100"})
    assert view.decision is not None
    html = plan_section(policy, view)
    summary = html.split('id="plan-summary"', 1)[1].split("</p>", 1)[0]
    assert "<b>local</b>, <b>best_of</b>, best_of 8 samples, score 0.809691" in summary
    rows = cells(html, "plan-result")
    assert rows[0][:4] == ["local", "best_of", "0", "8"]
    assert ["remote", "vote", "0", "4"] in [row[:4] for row in rows]
    assert 'name="max_samples"' in html

    capped = plan_view(policy, {"task": "coding", "prompt_tokens": "100", "max_samples": "4"})
    assert capped.decision is not None
    assert (capped.decision.plan.model, capped.decision.plan.technique) == ("remote", "best_of")
    above = [row for row in cells(plan_section(policy, capped), "plan-result") if row[3] == "8"]
    assert above[0][-1] == "samples above cap"
    refused = plan_view(policy, {"max_samples": "many"})
    assert refused.error is not None
    assert "x-perfics-max-samples" in refused.error


def test_the_policy_section_shows_picks_and_the_selection_settings() -> None:
    policy = policy_from(TECHNIQUES)
    html = policy_section(policy, frozenset())
    selection = html.split('id="selection"', 1)[1].split("</p>", 1)[0]
    assert "tasks coding; drawn at temperature 0.7" in selection
    assert "code examples in prompts never run (selection.checks: false), 5 s at most" in selection
    picks = cells(html, "picks-coding")
    assert picks[0][1].startswith("local, best_of 8 samples, ")
    general = cells(html, "picks-general")
    assert general[0][1].startswith("local, 0 rounds, ")
