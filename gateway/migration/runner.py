"""Run migration plans: waves, pauses, gates, automatic roll-back, progress kept after every step.

One asyncio task per running plan walks its waves in order:

1. wait out the pause since the previous wave (a wall-clock time, kept);
2. *readiness gate*: the wave's chargers' shadow comparisons against the
   target (``min_compared``, ``max_disagreement``), re-checked until
   ``gates.wait_ready`` has passed; not ready -> the plan stops, nothing of
   the wave has moved;
3. move every charger of the wave (``set_route`` with the plan's when,
   deadline and force), waiting for changes that are pending;
4. *health gate*: watch the wave for ``gates.observe`` seconds (Rejected
   boots, CALLERROR rate, upstream connect failures); a failure rolls the
   wave back to the chargers' old routes (``on_failure: rollback``) or
   leaves it (``stop``), and the plan stops.

Each step saves the plan's progress (``gateway.migration.progress``), so a
restarted gateway resumes a running plan at the step it was in. The runner
reaches the estate only through ``PlanTarget``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from gateway.config import Route
from gateway.estate import MigrationRequestError
from gateway.logs import get_logger
from gateway.migration import gates, select
from gateway.migration.plan import Plan, PlanError, check_csms, parse_plan
from gateway.migration.progress import ACTIVE, ChargerMove, PlanBook, PlanProgress, PlanStatus, WaveProgress

MOVE_CONCURRENCY = 32  # route changes in flight at once within a wave
PENDING_POLL = 1.0  # seconds between looks at route changes that wait for their charger


@dataclass(frozen=True, slots=True)
class MoveResult:
    """Where one route change stands (the words of gateway.routing.RouteChangeState, plus failed)."""

    state: Literal["applied", "pending", "rejected", "cancelled", "failed"]
    reason: str | None = None


class PlanTarget(Protocol):
    """What a plan needs of the estate; ``GatewayTarget`` is the gateway's."""

    @property
    def csms_names(self) -> set[str]: ...

    async def chargers(self) -> list[select.ChargerFacts]:
        """Every charger the estate knows, with its route and what its last boot said."""

    def current_route(self, charger_id: str) -> tuple[Route | None, bool]:
        """(the charger's effective route, whether it is an override rather than the config file's)."""

    async def move(self, charger_id: str, route: Route | None, *, when: str, deadline: float | None, force: bool,
                   actor: str) -> MoveResult:
        """Ask for a route change (None: back to the config file's route)."""

    async def move_state(self, charger_id: str) -> MoveResult | None:
        """The charger's last route change as it stands now (None: nothing is known, take it as applied)."""

    async def comparisons(self, charger_ids: Sequence[str], shadow: str) -> dict[str, gates.ChargerSignals]:
        """Per charger: its exchanges compared (and differing) between its primary and CSMS ``shadow``."""

    async def log_position(self) -> int:
        """Where the message log is now (its newest record id): health signals are read from here on."""

    async def health(self, since: Mapping[str, float], after: int) -> tuple[dict[str, gates.ChargerSignals], int]:
        """Per charger: the primary's answers logged after position ``after`` and at or after ``since[id]``;
        with the position read up to (read again from there next time: the counts add up)."""

    def connect_failures(self, csms: str) -> float:
        """Failed upstream connects to ``csms`` so far (a counter: the runner takes differences)."""


class PlanLease(Protocol):
    """Which gateway instance runs a plan: ``gateway.cluster.Cluster`` is the gateway's.

    A lease is taken or renewed for ``ttl`` seconds at a time by the instance
    that runs the plan; once it runs out (that instance died) another takes it.
    """

    @property
    def shared(self) -> bool:
        """Whether other instances share the plans (else nothing needs announcing or re-reading)."""

    async def lease_plan(self, name: str, ttl: float) -> bool:
        """Take or renew the plan's lease; False while another instance holds it."""

    async def release_plan(self, name: str) -> None:
        """Give the lease up (the plan ended here, or this instance stops)."""

    async def notify_plan(self, name: str) -> None:
        """Tell the other instances that the plan changed in the store."""


class SoloLease:
    """One gateway instance: every plan is its own."""

    shared = False

    async def lease_plan(self, name: str, ttl: float) -> bool:
        return True

    async def release_plan(self, name: str) -> None:
        return None

    async def notify_plan(self, name: str) -> None:
        return None


LEASE_TTL = 15.0  # seconds a plan's lease lasts unrenewed: how soon another instance takes over a dead one's plan


class _Aborted(Exception):
    pass


_AFTER: dict[str, PlanStatus] = {"pause": "paused", "resume": "running", "abort": "aborted"}


def _route(data: Mapping[str, Any] | None) -> Route | None:
    return None if data is None else Route(**data)


def _dump(route: Route | None) -> dict[str, Any] | None:
    return None if route is None else route.model_dump()


class PlanRunner:
    """Every plan of one gateway: submitted through the admin API, kept in the store, run as tasks."""

    def __init__(self, target: PlanTarget, book: PlanBook,
                 publish: Callable[[PlanProgress], None] | None = None, poll: float = 1.0,
                 lease: PlanLease | None = None, lease_ttl: float = LEASE_TTL) -> None:
        self.target = target
        self.book = book
        self.lease = lease or SoloLease()
        self.lease_ttl = lease_ttl
        self._leading: set[str] = set()  # plans this instance holds the lease of (and runs)
        self._requests_done: set[str] = set()  # ids of commands left by other instances, applied here
        self.publish = publish or (lambda progress: None)
        self.poll = poll  # longest wait between looks at a wave under observation
        self.progress: dict[str, PlanProgress] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        # (plan, wave) -> (log position read up to, signals so far): each look reads only what is new
        self._health_tally: dict[tuple[str, int], tuple[int, dict[str, gates.ChargerSignals]]] = {}
        self.log = get_logger()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load every plan from the store and resume those that were running."""
        for progress in await self.book.load():
            self.progress[progress.name] = progress
            self.publish(progress)
            if progress.status in ACTIVE:
                self._launch(progress)
                self.log.info("migration_plan_resumed", plan=progress.name, status=progress.status,
                              wave=progress.current_wave())

    async def stop(self) -> None:
        """Stop every plan's task where it is; its saved progress resumes it here or on another instance."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.book.flush()
        if not self.lease.shared:
            self._leading.clear()
            return
        with contextlib.suppress(Exception):  # the store going away must not stop the gateway stopping
            await self.book.persist()
        for name in list(self._leading):  # after the progress is stored: whoever takes over reads it
            self._leading.discard(name)
            with contextlib.suppress(Exception):
                await self.lease.release_plan(name)
                await self.lease.notify_plan(name)

    def runs(self, name: str) -> bool:
        """Whether this instance runs the plan (holds its lease) now."""
        return name in self._leading

    async def wait(self, name: str) -> None:
        """Until the plan's task ends (completed, stopped or aborted); for tests and the bench."""
        task = self._tasks.get(name)
        if task is not None:
            await asyncio.shield(task)

    def _launch(self, progress: PlanProgress) -> None:
        self._wake[progress.name] = asyncio.Event()
        task = asyncio.create_task(self._lead(progress), name=f"migration:{progress.name}")
        self._tasks[progress.name] = task
        task.add_done_callback(self._forget)

    async def _lead(self, progress: PlanProgress) -> None:
        """Run the plan while this instance holds its lease; stand by while another instance does."""
        name = progress.name
        waited = False
        while True:
            if not await self._take_lease(name):
                waited = True
                await asyncio.sleep(self.lease_ttl / 3)
                fresh = await self.book.load_one(name)
                if fresh is None or fresh.status not in ACTIVE:  # it ended where it ran
                    if fresh is not None:
                        self.progress[name] = fresh
                        self.publish(fresh)
                    return
                continue
            if waited:  # another instance ran it until now: continue from what it stored
                progress = await self.book.load_one(name) or progress
                self.progress[name] = progress
                self.publish(progress)
                self.log.info("migration_plan_taken_over", plan=name, wave=progress.current_wave())
                if progress.status not in ACTIVE:
                    await self._give_up_lease(name)
                    return
            self._leading.add(name)
            drive = asyncio.create_task(self._drive(progress), name=f"migration-drive:{name}")
            try:
                if await self._keep_lease(name, drive):
                    await self._give_up_lease(name)
                    await self._announce(name)
                    return
            finally:
                if not drive.done():
                    drive.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await drive
            self.log.error("migration_plan_lease_lost", plan=name)
            waited = True

    async def _take_lease(self, name: str) -> bool:
        try:
            return await self.lease.lease_plan(name, self.lease_ttl)
        except Exception as exc:  # the store is away: nobody can take it meanwhile without it either
            self.log.warning("migration_plan_lease_failed", plan=name, error=str(exc))
            return False

    async def _keep_lease(self, name: str, drive: asyncio.Task[None]) -> bool:
        """Renew the lease while ``drive`` runs: True when it ended, False when the lease was lost."""
        valid_until = time.monotonic() + self.lease_ttl
        while True:
            done, _ = await asyncio.wait({drive}, timeout=self.lease_ttl / 3)
            if done:
                drive.result()
                return True
            try:
                if not await self.lease.lease_plan(name, self.lease_ttl):
                    self._leading.discard(name)
                    return False
                valid_until = time.monotonic() + self.lease_ttl
            except Exception as exc:
                self.log.warning("migration_plan_lease_failed", plan=name, error=str(exc))
                # Stop short of the lease running out: past it another instance may already run the plan.
                if time.monotonic() > valid_until - self.lease_ttl / 3:
                    self._leading.discard(name)
                    return False

    async def _announce(self, name: str) -> None:
        """Tell the other instances that the plan changed, once the store has the change."""
        if self.lease.shared:
            await self.book.persist()
            await self.lease.notify_plan(name)

    async def _give_up_lease(self, name: str) -> None:
        self._leading.discard(name)
        if not self.lease.shared:
            return
        try:
            await self.book.persist()
            await self.lease.release_plan(name)
        except Exception as exc:  # it runs out by itself
            self.log.warning("migration_plan_lease_not_released", plan=name, error=str(exc))

    async def changed_elsewhere(self, name: str) -> None:
        """Another instance changed plan ``name``: apply a command left for it here, or refresh this view."""
        if name in self._leading:
            request = await self.book.pending_request(name)
            if request and request.get("id") not in self._requests_done:
                self._requests_done.add(str(request["id"]))
                with contextlib.suppress(MigrationRequestError):  # checked where it was asked; a race lost
                    await self.control(name, str(request["command"]), str(request["actor"]))
            return
        fresh = await self.book.load_one(name)
        if fresh is None:
            return
        self.progress[name] = fresh
        self.publish(fresh)
        if fresh.status in ACTIVE and name not in self._tasks:
            self._launch(fresh)  # stand by: this instance takes the plan over if its runner dies

    def _forget(self, task: asyncio.Task[None]) -> None:
        name = task.get_name().removeprefix("migration:")
        if self._tasks.get(name) is task:
            del self._tasks[name]

    def _save(self, progress: PlanProgress, waves: set[int] | None = None) -> None:
        """Keep the plan's progress (and the moves of ``waves``) in the store and on its gauges."""
        self.book.save(progress, waves)
        self.publish(progress)

    # ------------------------------------------------------------ requests (MigrationPlans)

    def _parse(self, data: Any) -> Plan:
        try:
            plan = parse_plan(data, "plan")
            check_csms(plan, self.target.csms_names, "plan")
        except PlanError as exc:
            raise MigrationRequestError(400, exc.problems) from None
        return plan

    async def _layout(self, plan: Plan) -> tuple[list[list[str]], list[str], list[select.ChargerFacts]]:
        facts = await self.target.chargers()
        to_move, already = select.select(plan.selection, facts, plan.route)
        return select.waves(to_move, plan.waves.size), already, facts

    async def preview(self, data: Any) -> dict[str, Any]:
        plan = self._parse(data)
        layout, already, facts = await self._layout(plan)
        routes = {f.charger_id: f.route for f in facts}
        busy = self._busy([cid for ids in layout for cid in ids])
        waves_out = []
        for index, ids in enumerate(layout, start=1):
            ready = gates.readiness(plan.gates, await self.target.comparisons(ids, plan.route.primary))
            waves_out.append({"wave": index, "chargers": [{"id": cid, "from": _dump(routes.get(cid)),
                                                           "to": plan.route.model_dump()} for cid in ids],
                              "readiness": ready.as_dict()})
        return {"name": plan.name, "dry_run": True, "route": plan.route.model_dump(),
                "to_move": sum(len(w) for w in layout), "already_on_route": already,
                "in_other_plans": busy, "waves": waves_out,
                "gates": plan.gates.model_dump(),
                "connect_failures_so_far": self.target.connect_failures(plan.route.primary),
                "exists": plan.name in self.progress}

    def _busy(self, ids: Sequence[str]) -> dict[str, str]:
        """Chargers of ``ids`` that an active plan still has to move (or may roll back), by plan."""
        wanted = set(ids)
        out = {}
        for other in self.progress.values():
            if other.status in ACTIVE:
                for cid, move in other.moves.items():
                    if cid in wanted and move.state != "rolled_back":
                        out[cid] = other.name
        return out

    async def submit(self, data: Any, actor: str) -> dict[str, Any]:
        plan = self._parse(data)
        if plan.name in self.progress:
            raise MigrationRequestError(409, [f"a plan named {plan.name!r} exists already "
                                              f"({self.progress[plan.name].status}); choose another name"])
        layout, already, _ = await self._layout(plan)
        if not layout:
            raise MigrationRequestError(422, [f"plan {plan.name!r} selects no charger to move "
                                              f"({len(already)} selected are on the target route already)"])
        busy = self._busy([cid for ids in layout for cid in ids])
        if busy:
            shown = ", ".join(f"{cid} ({name})" for cid, name in sorted(busy.items())[:5])
            raise MigrationRequestError(409, [f"{len(busy)} selected charger(s) belong to a running plan: {shown}"])
        progress = PlanProgress(plan.name, plan.model_dump(mode="json"), actor)
        for index, ids in enumerate(layout, start=1):
            progress.waves.append(WaveProgress(index, ids))
            for cid in ids:
                route, override = self.target.current_route(cid)
                progress.moves[cid] = ChargerMove(cid, index, _dump(route), override, plan.route.model_dump())
        progress.note(actor, "submitted", reason=f"{len(progress.moves)} chargers in {len(layout)} waves of "
                      f"up to {plan.waves.size}; {len(already)} already on the route")
        self.progress[plan.name] = progress
        self._save(progress, {w.index for w in progress.waves})
        self._launch(progress)
        await self._announce(plan.name)
        self.log.info("migration_plan_submitted", plan=plan.name, actor=actor, chargers=len(progress.moves),
                      waves=len(layout))
        return progress.summary()

    def plans(self) -> list[dict[str, Any]]:
        return [p.summary() for p in sorted(self.progress.values(), key=lambda p: p.created_at, reverse=True)]

    def plan(self, name: str, history: int | None = None) -> dict[str, Any] | None:
        progress = self.progress.get(name)
        return None if progress is None else progress.as_dict(history)

    async def control(self, name: str, command: str, actor: str) -> dict[str, Any]:
        if self.lease.shared and name not in self._leading:
            # Another instance may run it: the store has the plan as it stands, this view may be behind.
            fresh = await self.book.load_one(name)
            if fresh is not None:
                self.progress[name] = fresh
        progress = self.progress.get(name)
        if progress is None:
            raise MigrationRequestError(404, [f"no plan named {name!r}"])
        allowed = {"pause": ("running",), "resume": ("paused", "stopped"), "abort": ("running", "paused", "stopped")}
        if command not in allowed:
            raise MigrationRequestError(404, [f"unknown command {command!r}: pause, resume or abort"])
        if progress.status not in allowed[command]:
            raise MigrationRequestError(409, [f"plan {name!r} is {progress.status}: cannot {command} it"])
        if name not in self._leading and progress.status in ACTIVE and not await self._take_lease(name):
            # Running on another instance: leave the command there; its runner applies it and saves.
            await self.book.request(name, command, actor)
            await self.lease.notify_plan(name)
            self.log.info("migration_plan_command_forwarded", plan=name, command=command, actor=actor)
            return {**progress.summary(), "status": _AFTER[command], "applied_by": "the instance running the plan"}
        if command == "pause":
            progress.status = "paused"
        elif command == "abort":
            progress.status = "aborted"
        else:
            restarting = progress.status == "stopped"
            progress.status = "running"
            progress.reason = None
            if restarting:  # the wave that stopped the plan is tried again, from its gate
                for wave in progress.waves:
                    if wave.state not in ("done",):
                        wave.state = "waiting"
                        wave.reason = None
                for move in progress.moves.values():
                    if move.state in ("rolled_back", "failed"):
                        move.state = "waiting"
                        move.reason = None
        progress.note(actor, {"pause": "paused", "resume": "resumed", "abort": "aborted"}[command])
        self._save(progress, {w.index for w in progress.waves})
        if progress.status == "running" and name not in self._tasks:
            self._launch(progress)
        elif name not in self._leading:
            await self._give_up_lease(name)  # taken only to change it: whoever runs it next reads it stored
        wake = self._wake.get(name)
        if wake is not None:
            wake.set()
        await self._announce(name)
        self.log.info("migration_plan_" + progress.status, plan=name, actor=actor)
        return progress.summary()

    # ------------------------------------------------------------ the plan's task

    async def _drive(self, progress: PlanProgress) -> None:
        try:
            plan = Plan.model_validate(progress.plan)
        except ValidationError as exc:  # a plan stored by another version of the gateway
            self._finish(progress, "stopped", f"the stored plan no longer validates: {exc}")
            return
        try:
            for wave in progress.waves:
                if wave.state == "done":
                    continue
                if not await self._run_wave(progress, plan, wave):
                    return
                if wave.index < len(progress.waves):
                    progress.next_wave_at = time.time() + plan.waves.pause
                self._save(progress)
            progress.next_wave_at = None
            progress.note(progress.actor, "completed", reason=f"{progress.counts()['moved']} chargers moved")
            self._finish(progress, "completed", None)
        except _Aborted:
            self.log.info("migration_plan_stopped_by_operator", plan=progress.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a store failure: the plan stops visibly, the gateway runs on
            self.log.exception("migration_plan_failed", plan=progress.name)
            progress.note("gateway", "stopped", reason=f"internal error: {exc!r}")
            self._finish(progress, "stopped", f"internal error: {exc!r}")

    def _finish(self, progress: PlanProgress, status: Literal["completed", "stopped"], reason: str | None) -> None:
        progress.status = status
        progress.reason = reason
        self._save(progress)
        self.log.info("migration_plan_" + status, plan=progress.name, reason=reason, counts=progress.counts())

    async def _checkpoint(self, progress: PlanProgress) -> None:
        """Between steps: hold while paused, leave when aborted."""
        while True:
            if progress.status == "aborted":
                raise _Aborted
            if progress.status != "paused":
                return
            await self._sleep(progress, 3600.0)

    async def _sleep(self, progress: PlanProgress, seconds: float) -> None:
        """Sleep up to ``seconds``; a pause, resume or abort wakes it early."""
        wake = self._wake.setdefault(progress.name, asyncio.Event())
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(0.0, seconds))

    async def _sleep_until(self, progress: PlanProgress, at: float) -> None:
        while (left := at - time.time()) > 0:
            await self._checkpoint(progress)
            await self._sleep(progress, left)
        await self._checkpoint(progress)

    async def _run_wave(self, progress: PlanProgress, plan: Plan, wave: WaveProgress) -> bool:
        """Carry one wave through its gates; False when the plan stopped on it."""
        if progress.next_wave_at is not None:
            await self._sleep_until(progress, progress.next_wave_at)
            progress.next_wave_at = None
        await self._checkpoint(progress)
        if wave.state in ("waiting", "gating"):
            if not await self._gate_ready(progress, plan, wave):
                return False
        if wave.state == "moving":
            await self._move_wave(progress, plan, wave)
        if wave.state == "observing":
            return await self._observe(progress, plan, wave)
        return True

    async def _gate_ready(self, progress: PlanProgress, plan: Plan, wave: WaveProgress) -> bool:
        wave.state = "gating"
        wave.started_at = wave.started_at or time.time()
        self._save(progress)
        give_up = time.time() + plan.gates.wait_ready
        while True:
            result = gates.readiness(plan.gates, await self.target.comparisons(wave.chargers, plan.route.primary))
            wave.readiness = result.as_dict()
            if result.ok:
                break
            if time.time() >= give_up:
                reason = f"wave {wave.index} not ready: " + "; ".join(result.reasons)
                wave.state = "waiting"
                wave.reason = reason
                progress.note("gate", "not_ready", wave=wave.index, reason=reason)
                self._finish(progress, "stopped", reason)
                return False
            self._save(progress)
            await self._sleep(progress, min(self.poll * 5, give_up - time.time()))
            await self._checkpoint(progress)
        wave.state = "moving"
        wave.reason = None
        wave.connect_failures_before = self.target.connect_failures(plan.route.primary)
        wave.log_position = await self.target.log_position()
        progress.note(progress.actor, "wave_started", wave=wave.index,
                      reason=f"{len(wave.chargers)} chargers; readiness {result.figures}")
        self._save(progress)
        return True

    async def _move_wave(self, progress: PlanProgress, plan: Plan, wave: WaveProgress) -> None:
        slots = asyncio.Semaphore(MOVE_CONCURRENCY)
        deadline = None if plan.deadline is None else time.time() + plan.deadline
        to = plan.route

        async def move_one(move: ChargerMove) -> None:
            async with slots:
                await self._checkpoint(progress)
                result = await self._ask(move.charger_id, to, when=plan.when, deadline=deadline, force=plan.force,
                                         actor=f"plan:{progress.name}")
                self._settle(progress, move, result, to)

        waiting = [progress.moves[cid] for cid in wave.chargers if progress.moves[cid].state == "waiting"]
        await asyncio.gather(*(move_one(m) for m in waiting))
        while pending := [progress.moves[c] for c in wave.chargers if progress.moves[c].state == "pending"]:
            await self._sleep(progress, PENDING_POLL)
            await self._checkpoint(progress)
            for move in pending:
                state = await self.target.move_state(move.charger_id)
                if state is None or state.state != "pending":
                    self._settle(progress, move, state or MoveResult("applied"), to)
        wave.state = "observing"
        wave.moved_at = time.time()
        self._save(progress)

    async def _ask(self, charger_id: str, route: Route | None, **kwargs: Any) -> MoveResult:
        try:
            return await self.target.move(charger_id, route, **kwargs)
        except (KeyError, ValueError) as exc:
            return MoveResult("failed", f"the estate refused the route: {exc}")

    def _settle(self, progress: PlanProgress, move: ChargerMove, result: MoveResult, to: Route) -> None:
        """Record what became of one charger's move, with a history entry once it is decided."""
        if result.state == "pending":
            move.state = "pending"
            move.reason = result.reason
        else:
            move.state = "moved" if result.state == "applied" else "failed"
            move.reason = result.reason
            move.moved_at = time.time()
            progress.note(progress.actor, "moved" if move.state == "moved" else f"move_{result.state}",
                          wave=move.wave, charger=move.charger_id, from_route=move.from_route,
                          to_route=to.model_dump(), reason=result.reason)
        self._save(progress, {move.wave})

    async def _observe(self, progress: PlanProgress, plan: Plan, wave: WaveProgress) -> bool:
        """Watch a moved wave for ``gates.observe`` seconds; roll it back (or stop) on a failure signal."""
        assert wave.moved_at is not None
        end = wave.moved_at + plan.gates.observe
        while True:
            final = time.time() >= end
            result = await self._health(progress, plan, wave, final)
            wave.health = result.as_dict()
            if not result.ok:
                await self._fail_wave(progress, plan, wave, "; ".join(result.reasons))
                return False
            if final:
                break
            self._save(progress)
            await self._sleep(progress, min(self.poll, end - time.time()))
            await self._checkpoint(progress)
        failed = [cid for cid in wave.chargers if progress.moves[cid].state == "failed"]
        if failed:
            await self._fail_wave(progress, plan, wave, f"{len(failed)} route change(s) refused: {failed[:5]}")
            return False
        wave.state = "done"
        wave.finished_at = time.time()
        progress.note("gate", "wave_done", wave=wave.index, reason=f"health {result.figures}")
        self._save(progress)
        return True

    async def _health(self, progress: PlanProgress, plan: Plan, wave: WaveProgress, final: bool) -> gates.GateResult:
        """The wave's failure signals so far: the log is read on from where the last look stopped."""
        moved = (progress.moves[cid] for cid in wave.chargers)
        since = {m.charger_id: m.moved_at or wave.moved_at or 0.0 for m in moved if m.state == "moved"}
        key = (progress.name, wave.index)
        after, tally = self._health_tally.get(key, (wave.log_position, {}))
        fresh, position = await self.target.health(since, after)
        for cid, new in fresh.items():
            tally[cid] = tally[cid].plus(new) if cid in tally else new
        self._health_tally[key] = (position, tally)
        signals = dict(tally)
        if not final:  # a charger still reconnecting is not yet a connect failure
            signals = {cid: replace(s, upstream_down=False) for cid, s in signals.items()}
        now_failed = self.target.connect_failures(plan.route.primary)
        before = wave.connect_failures_before if now_failed >= wave.connect_failures_before else 0.0
        return gates.health(plan.gates, signals, int(now_failed - before))

    async def _fail_wave(self, progress: PlanProgress, plan: Plan, wave: WaveProgress, reason: str) -> None:
        reason = f"wave {wave.index} failed its gate: {reason}"
        progress.note("gate", "wave_failed", wave=wave.index, reason=reason)
        wave.reason = reason
        if plan.on_failure == "rollback":
            await self._roll_back(progress, wave, reason)
            wave.state = "rolled_back"
        else:
            wave.state = "failed"
        wave.finished_at = time.time()
        self._finish(progress, "stopped", reason)

    async def _roll_back(self, progress: PlanProgress, wave: WaveProgress, reason: str) -> None:
        """Every charger of the wave back on the route it had before the plan (at once: the wave is failing)."""
        slots = asyncio.Semaphore(MOVE_CONCURRENCY)

        async def back(move: ChargerMove) -> None:
            async with slots:
                old = _route(move.from_route) if move.from_override else None
                result = await self._ask(move.charger_id, old, when="now", deadline=None, force=False,
                                         actor="gate")
                move.state = "rolled_back" if result.state in ("applied", "pending") else "failed"
                move.reason = reason if result.state != "failed" else f"roll-back refused: {result.reason}"
                progress.note("gate", "rolled_back" if move.state == "rolled_back" else "rollback_failed",
                              wave=wave.index, charger=move.charger_id, from_route=move.to_route,
                              to_route=move.from_route, reason=move.reason)
                self._save(progress, {wave.index})

        await asyncio.gather(*(back(progress.moves[cid]) for cid in wave.chargers
                               if progress.moves[cid].state in ("moved", "pending")))
