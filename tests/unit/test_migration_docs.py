"""The plans the docs show are valid plans, and the docs' error lines are the ones the gateway prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.migration.plan import PlanError, check_csms, parse_plan

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "migration-plans.md").read_text()


def test_the_guides_full_plan_is_valid_and_means_what_its_comments_say() -> None:
    """docs/migration-plans.md's plan.yaml validates, with the durations and limits its comments give."""
    block = re.search(r"```yaml\n(.*?)```", GUIDE, re.S)
    assert block is not None
    plan = parse_plan(yaml.safe_load(block.group(1)), "docs/migration-plans.md")
    assert (plan.waves.size, plan.waves.pause, plan.gates.observe, plan.gates.wait_ready) == (50, 600, 300, 3600)
    assert (plan.gates.min_compared, plan.gates.max_disagreement, plan.deadline) == (20, 0.02, 7200)
    check_csms(plan, {"legacy", "new"})


def test_the_readme_plan_is_valid() -> None:
    """The README's migration-plan example validates."""
    section = (ROOT / "README.md").read_text().split("### Moving many chargers: migration plans in waves", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    assert parse_plan(yaml.safe_load(block.group(1)), "README.md").on_failure == "rollback"


@pytest.mark.parametrize(("plan", "line"), [
    ({"waves": {"size": 0}}, "plan.yaml: waves.size: Input should be greater than or equal to 1"),
    ({"gates": {"min_comapred": 20}}, "plan.yaml: gates.min_comapred: unknown key (did you mean 'min_compared'?)"),
])
def test_the_guides_error_lines_are_real(plan: dict[str, object], line: str) -> None:
    """The error lines the guide quotes are what a bad plan gets."""
    base = {"name": "x", "selection": {"ids": ["A"]}, "route": {"primary": "new"}, "waves": {"size": 1}}
    with pytest.raises(PlanError) as caught:
        parse_plan({**base, **plan}, "plan.yaml")
    assert caught.value.problems == [line]
    assert f"ocpp-gateway: {line}" in GUIDE
