"""The plan runner against a scripted estate: waves, gates, roll-back, pause/abort, and resuming from the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Route
from gateway.estate import MigrationRequestError
from gateway.migration import MoveResult, PlanBook, PlanProgress, PlanRunner
from gateway.migration.gates import ChargerSignals
from gateway.migration.progress import ChargerMove, WaveProgress
from gateway.migration.select import ChargerFacts
from gateway.store import Store, open_store

LEGACY = Route(primary="legacy")


class ScriptedEstate:
    """A PlanTarget whose chargers' routes and signals the test decides."""

    def __init__(self, ids: list[str]) -> None:
        self.routes: dict[str, Route | None] = dict.fromkeys(ids)  # None: the config's route (legacy)
        self.moves: list[tuple[str, str | None, str]] = []
        self.failing: set[str] = set()  # chargers whose new CSMS rejects their boot
        self.compared: dict[str, int] = {}
        self.looks = 0  # the "log position": one step per look at the wave's health
        self.started: dict[str, int] = {}

    @property
    def csms_names(self) -> set[str]:
        return {"legacy", "new"}

    async def chargers(self) -> list[ChargerFacts]:
        return [ChargerFacts(cid, "1.6", self.routes[cid] or LEGACY, "ACME", "One", "1") for cid in self.routes]

    def current_route(self, charger_id: str) -> tuple[Route | None, bool]:
        override = self.routes[charger_id]
        return override or LEGACY, override is not None

    async def move(self, charger_id: str, route: Route | None, *, when: str, deadline: float | None, force: bool,
                   actor: str) -> MoveResult:
        self.routes[charger_id] = route
        self.moves.append((charger_id, route.primary if route else None, actor))
        return MoveResult("applied")

    async def move_state(self, charger_id: str) -> MoveResult | None:
        return None

    async def comparisons(self, charger_ids: Sequence[str], shadow: str) -> dict[str, ChargerSignals]:
        return {cid: ChargerSignals(compared=self.compared.get(cid, 0)) for cid in charger_ids}

    async def log_position(self) -> int:
        return self.looks

    async def health(self, since: Mapping[str, float], after: int) -> tuple[dict[str, ChargerSignals], int]:
        """Each look reports one new answer per charger (and the boot rejections once)."""
        self.looks += 1
        return {cid: ChargerSignals(answers=1, rejected_boots=int(
            cid in self.failing and self.routes[cid] is not None and after == self.started.setdefault(cid, after)))
            for cid in since}, self.looks

    def connect_failures(self, csms: str) -> float:
        return 0.0


def plan(name: str = "p", size: int = 50, **extra: Any) -> dict[str, Any]:
    return {"name": name, "selection": {"id_pattern": "CP*"}, "route": {"primary": "new"},
            "waves": {"size": size, "pause": 0}, "gates": {"observe": 0.05}, **extra}


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = open_store(f"sqlite:///{tmp_path}/plans.db", flush_interval=0.01)
    await s.start()
    yield s
    await s.close()


async def test_four_waves_with_the_third_rolled_back_by_its_gate(store: Store) -> None:
    """200 chargers in 4 waves: waves 1-2 move, wave 3 fails its gate and goes back, wave 4 never moves."""
    estate = ScriptedEstate([f"CP{i:03}" for i in range(200)])
    estate.failing = {"CP120"}
    shadowed = Route(primary="legacy", shadow="new")
    estate.routes["CP101"] = shadowed  # an operator's override: the roll-back puts it back as it was
    runner = PlanRunner(estate, PlanBook(store), poll=0.01)
    summary = await runner.submit(plan(), "ops@example")
    assert (summary["chargers"], summary["waves"]) == (200, 4)
    await runner.wait("p")
    done = runner.plan("p")
    assert done is not None and done["status"] == "stopped"
    assert [w["state"] for w in done["waves"]] == ["done", "done", "rolled_back", "waiting"]
    assert "wave 3 failed its gate: 1 Rejected boot(s) (limit 0), from CP120" in done["reason"]
    assert done["summary"]["counts"] == {"waiting": 50, "pending": 0, "moved": 100, "rolled_back": 50, "failed": 0}
    assert all(estate.routes[f"CP{i:03}"] == Route(primary="new") for i in range(100))
    assert estate.routes["CP101"] == shadowed
    assert all(estate.routes[f"CP{i:03}"] is None for i in range(100, 200) if i != 101)  # the config's route
    rolled = [h for h in done["history"] if h["outcome"] == "rolled_back"]
    assert len(rolled) == 50 and rolled[0]["actor"] == "gate" and rolled[0]["from"] == {"primary": "new",
                                                                                        "shadow": None}
    moved = [h for h in done["history"] if h["outcome"] == "moved"]
    assert len(moved) == 150 and moved[0]["actor"] == "ops@example" and moved[0]["to"]["primary"] == "new"


async def test_a_restart_resumes_the_plan_from_the_store(store: Store, tmp_path: Path) -> None:
    """A runner stopped between waves leaves its progress in the store; a new one finishes the plan."""
    estate = ScriptedEstate([f"CP{i:03}" for i in range(20)])
    runner = PlanRunner(estate, PlanBook(store), poll=0.01)
    await runner.submit(plan(size=5, waves={"size": 5, "pause": "0.3s"}), "ops")
    while runner.progress["p"].current_wave() in (None, 1):
        await runner._sleep(runner.progress["p"], 0.02)
    await runner.stop()
    await store.close()
    moved_before = len(estate.moves)
    assert 5 <= moved_before < 20

    reopened = open_store(f"sqlite:///{tmp_path}/plans.db", flush_interval=0.01)
    await reopened.start()
    try:
        again = PlanRunner(estate, PlanBook(reopened), poll=0.01)
        await again.start()
        assert again.progress["p"].status == "running"
        await again.wait("p")
        assert again.progress["p"].status == "completed"
        assert sorted(cid for cid, *_ in estate.moves) == sorted(set(cid for cid, *_ in estate.moves))
        assert all(r == Route(primary="new") for r in estate.routes.values())
    finally:
        await reopened.close()


async def test_readiness_stops_a_plan_before_anything_moves(store: Store) -> None:
    """Without enough shadow comparisons the wave does not move and the plan says why."""
    estate = ScriptedEstate(["CP1", "CP2"])
    estate.compared = {"CP1": 30, "CP2": 3}
    runner = PlanRunner(estate, PlanBook(store), poll=0.01)
    preview = await runner.preview(plan(gates={"min_compared": 20, "observe": 0.05}))
    assert preview["waves"][0]["readiness"]["reasons"] == [
        "1 charger(s) have fewer than 20 compared exchanges: CP2"]
    assert estate.moves == [] and runner.plans() == []
    await runner.submit(plan(gates={"min_compared": 20, "observe": 0.05}), "ops")
    await runner.wait("p")
    assert runner.progress["p"].status == "stopped" and estate.moves == []
    estate.compared["CP2"] = 25
    await runner.control("p", "resume", "ops")
    await runner.wait("p")
    assert runner.progress["p"].status == "completed" and len(estate.moves) == 2


async def test_requests_that_cannot_be_carried_out_are_refused(store: Store) -> None:
    """Same name, overlapping chargers, nothing to move, unknown CSMS, a command in the wrong state: clear refusals."""
    estate = ScriptedEstate(["CP1", "CP2"])
    runner = PlanRunner(estate, PlanBook(store), poll=0.01)
    await runner.submit(plan(waves={"size": 1, "pause": 30}), "ops")
    cases = [
        (runner.submit(plan(), "ops"), 409, "a plan named 'p' exists already (running); choose another name"),
        (runner.submit(plan("q"), "ops"), 409, "2 selected charger(s) belong to a running plan: CP1 (p), CP2 (p)"),
        (runner.submit(plan("r", selection={"ids": ["NONE"]}), "ops"), 422,
         "plan 'r' selects no charger to move (0 selected are on the target route already)"),
        (runner.submit(plan("s", route={"primary": "nu"}), "ops"), 400,
         "plan: route.primary: no csms named 'nu' (known: legacy, new)"),
        (runner.control("p", "resume", "ops"), 409, "plan 'p' is running: cannot resume it"),
        (runner.control("zz", "pause", "ops"), 404, "no plan named 'zz'"),
    ]
    for call, status, line in cases:
        with pytest.raises(MigrationRequestError) as caught:
            await call
        assert (caught.value.status, caught.value.problems) == (status, [line])
    await runner.control("p", "pause", "alice")
    await runner.control("p", "abort", "bob")
    await runner.wait("p")
    state = runner.plan("p", history=2)
    assert state is not None and state["status"] == "aborted"
    assert [(h["actor"], h["outcome"]) for h in state["history"]] == [("alice", "paused"), ("bob", "aborted")]
    await runner.stop()


async def test_a_plan_is_kept_in_pieces_and_comes_back_whole(store: Store) -> None:
    """Plan record, per-wave moves and chunked history written step by step load back as the same plan."""
    book = PlanBook(store)
    book.HISTORY_CHUNK = 3
    progress = PlanProgress("p", plan(), "ops")
    progress.waves = [WaveProgress(1, ["A", "B"]), WaveProgress(2, ["C"])]
    for cid, wave in (("A", 1), ("B", 1), ("C", 2)):
        progress.moves[cid] = ChargerMove(cid, wave, {"primary": "legacy", "shadow": None}, False,
                                          {"primary": "new", "shadow": None})
    book.save(progress, {1, 2})
    for step in range(7):  # 7 entries: two full chunks and one partial, written as they come
        progress.note("ops", f"step-{step}", wave=1, charger="A")
        progress.moves["A"].state = "moved" if step % 2 else "pending"
        book.save(progress, {1})
        book.flush()
    progress.waves[0].state = "done"
    book.save(progress)
    book.flush()
    loaded = await PlanBook(store).load()
    assert len(loaded) == 1
    again = loaded[0]
    assert [h["outcome"] for h in again.history] == [f"step-{i}" for i in range(7)]
    assert again.moves == progress.moves and again.waves == progress.waves
    assert again.as_dict() == progress.as_dict()
