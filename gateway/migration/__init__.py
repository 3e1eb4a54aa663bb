"""Migration plans: move many chargers to another CSMS in gated waves, with a kept record of every step.

    plan.py      the plan file (YAML, pydantic): selection, route, waves, gates, on_failure
    select.py    which chargers a plan selects and how they split into waves (pure)
    gates.py     readiness (shadow comparison) and health (failure signals) of a wave (pure)
    progress.py  a plan's progress and history, kept in the store after every step
    runner.py    PlanRunner: one task per plan; PlanTarget, what it needs of the estate
    target.py    GatewayTarget: PlanTarget over the gateway (gateway.estate.MigrationEstate)

docs/migration-plans.md is the operator's guide.
"""

from gateway.migration.plan import Plan, PlanError, load_plan, parse_plan
from gateway.migration.progress import PlanBook, PlanProgress
from gateway.migration.runner import MoveResult, PlanRunner, PlanTarget

__all__ = ["MoveResult", "Plan", "PlanBook", "PlanError", "PlanProgress", "PlanRunner", "PlanTarget", "load_plan",
           "parse_plan"]
