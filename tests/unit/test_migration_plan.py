"""Migration plan files: what a valid plan means, and the exact line each mistake earns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.migration.plan import PlanError, check_csms, load_plan, parse_plan
from gateway.ocppj import Version

BASE: dict[str, Any] = {"name": "west", "selection": {"id_pattern": "CP*"}, "route": {"primary": "new"},
                        "waves": {"size": 10}}


def test_a_full_plan_reads_durations_versions_and_defaults(tmp_path: Path) -> None:
    """Durations take s/m/h/d, a single OCPP version is a list of one, and unset gates get their defaults."""
    path = tmp_path / "plan.yaml"
    path.write_text("name: west\nselection: {vendor: ACME, ocpp: 1.6}\nroute: {primary: new, shadow: legacy}\n"
                    "waves: {size: 50, pause: 10m}\ngates: {observe: 1.5h, min_compared: 20}\n"
                    "on_failure: stop\nwhen: now\ndeadline: 2h\nforce: true\n")
    plan = load_plan(path)
    assert plan.waves.pause == 600 and plan.gates.observe == 5400 and plan.deadline == 7200
    assert plan.selection.ocpp == [Version.V16] and plan.selection.vendor == "ACME"
    assert plan.gates.min_compared == 20 and plan.gates.max_rejected_boots == 0
    assert (plan.on_failure, plan.when, plan.force) == ("stop", "now", True)
    assert parse_plan(BASE).on_failure == "rollback" and parse_plan(BASE).when == "idle"


@pytest.mark.parametrize(("change", "problems"), [
    ({"name": None}, ["plan.yaml: name: Input should be a valid string"]),
    ({"name": "bad name"},
     ["plan.yaml: name: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"]),
    ({"selection": {}},
     ["plan.yaml: selection: name at least one of ids, id_pattern, model, vendor, firmware, ocpp, current_csms"]),
    ({"selection": {"vendr": "ACME"}}, ["plan.yaml: selection.vendr: unknown key (did you mean 'vendor'?)"]),
    ({"selection": {"ocpp": "1.7"}},
     ["plan.yaml: selection.ocpp: unknown OCPP version '1.7' (expected 1.6, 2.0.1 or 2.1)"]),
    ({"route": {"shadow": "new"}}, ["plan.yaml: route.primary: Field required"]),
    ({"route": {"primary": "new", "shadow": "new"}}, ["plan.yaml: route: primary and shadow name the same CSMS"]),
    ({"waves": {"size": 0}}, ["plan.yaml: waves.size: Input should be greater than or equal to 1"]),
    ({"waves": {"size": 5, "pause": "ten minutes"}},
     ["plan.yaml: waves.pause: expected a duration: seconds, or a number with s, m, h or d (e.g. 30s, 10m)"]),
    ({"gates": {"max_disagreement": 1.5}},
     ["plan.yaml: gates.max_disagreement: Input should be less than or equal to 1"]),
    ({"gates": {"min_comapred": 3}}, ["plan.yaml: gates.min_comapred: unknown key (did you mean 'min_compared'?)"]),
    ({"on_failure": "panic"}, ["plan.yaml: on_failure: Input should be 'stop' or 'rollback'"]),
    ({"when": "later"}, ["plan.yaml: when: Input should be 'idle' or 'now'"]),
    ({"waves": {"size": 0}, "on_failure": "x"}, ["plan.yaml: waves.size: Input should be greater than or equal to 1",
                                                 "plan.yaml: on_failure: Input should be 'stop' or 'rollback'"]),
])
def test_a_bad_plan_names_the_file_and_the_key(change: dict[str, Any], problems: list[str]) -> None:
    """Each mistake is one line naming the file and the key, all of them at once."""
    with pytest.raises(PlanError) as caught:
        parse_plan({**BASE, **change}, "plan.yaml")
    assert caught.value.problems == problems


def test_missing_keys_and_a_non_mapping_are_named() -> None:
    """An empty plan lists every required key; a list is not a plan."""
    with pytest.raises(PlanError) as caught:
        parse_plan({}, "p.yaml")
    assert caught.value.problems == [f"p.yaml: {k}: Field required" for k in ("name", "selection", "route", "waves")]
    with pytest.raises(PlanError) as caught:
        parse_plan([1], "p.yaml")
    assert caught.value.problems == ["p.yaml: expected a YAML mapping at the top level"]


def test_unreadable_and_unparsable_files_are_named(tmp_path: Path) -> None:
    """A missing file and broken YAML each give one line naming the file."""
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path / "none.yaml")
    assert caught.value.problems == [f"{tmp_path / 'none.yaml'}: cannot read: No such file or directory"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(PlanError) as caught:
        load_plan(broken)
    assert caught.value.problems[0].startswith(f"{broken}: not valid YAML:")


def test_csms_names_are_checked_against_the_gateway() -> None:
    """A route or current_csms naming a CSMS the gateway lacks is refused, with the known names."""
    plan = parse_plan({**BASE, "selection": {"current_csms": "old"}, "route": {"primary": "nu", "shadow": "old"}})
    with pytest.raises(PlanError) as caught:
        check_csms(plan, {"legacy", "new"}, "plan.yaml")
    assert caught.value.problems == [
        "plan.yaml: route.primary: no csms named 'nu' (known: legacy, new)",
        "plan.yaml: route.shadow: no csms named 'old' (known: legacy, new)",
        "plan.yaml: selection.current_csms: no csms named 'old' (known: legacy, new)",
    ]
    check_csms(parse_plan(BASE), {"new"})
