"""Migration plans against a real gateway: 200 chargers in 4 waves, a wave rolled back by its gate, a restart
in the middle, and the `migrate` command as operators run it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.app import Gateway
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.payloads import now_iso
from tests.conftest import GatewayFactory, cli
from tests.rawpeers import RawCharger, dumps

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One", "firmwareVersion": "1.0"}


class RawFleet:
    """Chargers that boot, and reconnect and boot again whenever the gateway closes them, as real ones do."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.url = ""
        self.boots: dict[str, list[str]] = {cid: [] for cid in ids}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, url: str) -> None:
        self.url = url
        self._tasks = [asyncio.create_task(self._life(cid)) for cid in self.ids]

    async def _life(self, cid: str) -> None:
        n = 0
        while True:
            try:
                charger = await RawCharger.connect(f"{self.url}/{cid}", ["ocpp1.6"])
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            try:
                n += 1
                await charger.send(dumps(2, f"boot-{n}", "BootNotification", BOOT))
                async with asyncio.timeout(10):
                    reply = await self._answer_calls_until_reply(charger)
                self.boots[cid].append(reply[2]["status"] if reply[0] == 3 else f"error {reply[2]}")
                await self._answer_calls_until_reply(charger)  # until the gateway closes the socket
            except (ConnectionClosed, TimeoutError):
                pass
            finally:
                await charger.close()

    @staticmethod
    async def _answer_calls_until_reply(charger: RawCharger) -> list[Any]:
        """Answer what the gateway asks (an introduction's heartbeat interval may come before the boot's answer:
        both directions may have a CALL outstanding); the first answer that is not a CALL is returned."""
        while True:
            frame = orjson.loads(await charger.ws.recv())
            if frame[0] != 2:
                return frame  # type: ignore[no-any-return]
            await charger.send(dumps(3, frame[1], {"status": "Accepted"}))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def csms_config(old: DemoCsms, new: DemoCsms) -> dict[str, Any]:
    return {"old": {"url": old.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}}


async def api(gw: Gateway, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{gw.admin_port}{path}", **kwargs) as resp:
        return resp.status, await resp.json()


async def test_200_chargers_in_4_waves_wave_3_rolled_back_and_a_restart_in_the_middle(
        start_gateway: GatewayFactory) -> None:
    """Waves 1-2 move to the new CSMS, the gateway restarts between them and resumes, the new CSMS rejects wave
    3's introductions so those chargers never leave the old CSMS (nor see the rejection) and the plan stops, and
    wave 4 never leaves the old CSMS."""
    ids = [f"CP{i:03}" for i in range(200)]
    wave3 = set(ids[100:150])
    old = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,)).start()
    new.handlers["BootNotification"] = lambda cid, version, payload: {
        "currentTime": now_iso(), "interval": 300, "status": "Rejected" if cid in wave3 else "Accepted"}
    fleet = RawFleet(ids)
    try:
        gw = await start_gateway(csms_config(old, new))
        fleet.start(f"ws://127.0.0.1:{gw.listen_port}/ocpp")
        await wait_until(lambda: all(fleet.boots[cid] for cid in ids))
        plan = {"name": "to-new", "selection": {"id_pattern": "CP*", "vendor": "acme", "current_csms": "old"},
                "route": {"primary": "new"}, "waves": {"size": 50, "pause": "1.5s"},
                "gates": {"observe": "1.5s", "max_rejected_boots": 0, "max_callerror_rate": 0.05},
                "on_failure": "rollback"}
        status, body = await api(gw, "POST", "/api/migration/plans", json=plan, headers={"X-Actor": "ops@test"})
        assert status == 201, body
        assert (body["chargers"], body["waves"]) == (200, 4)

        # Wave 1 done, wave 2 not started: the gateway goes down in the pause between them.
        await wait_until(lambda: gw.migration_plans.progress["to-new"].waves[0].state == "done")
        assert gw.migration_plans.progress["to-new"].waves[1].state == "waiting"
        await gw.stop()
        gw = await start_gateway(csms_config(old, new))
        fleet.url = f"ws://127.0.0.1:{gw.listen_port}/ocpp"
        assert gw.migration_plans.progress["to-new"].status == "running"
        await asyncio.wait_for(gw.migration_plans.wait("to-new"), 90)

        status, done = await api(gw, "GET", "/api/migration/plans/to-new")
        assert status == 200
        assert done["status"] == "stopped"
        assert [w["state"] for w in done["waves"]] == ["done", "done", "rolled_back", "waiting"]
        # A hot route change introduces the charger first: the new CSMS's Rejected boot refuses the change.
        failed = re.match(r"wave 3 failed its gate: 50 route change\(s\) refused: \['(CP\d+)'", done["reason"])
        assert failed is not None and failed[1] in wave3, done["reason"]
        assert done["summary"]["counts"] == {"waiting": 50, "pending": 0, "moved": 100, "rolled_back": 0,
                                             "failed": 50}
        outcomes = [(h["outcome"], h["actor"]) for h in done["history"] if h["charger"]]
        assert outcomes.count(("moved", "ops@test")) == 100 and outcomes.count(("move_rejected", "ops@test")) == 50
        assert [h["wave"] for h in done["history"] if h["outcome"] == "wave_started"] == [1, 2, 3]

        # Where every charger ended up, as the CSMSs see it.
        await wait_until(lambda: all(new.charger(cid).connected for cid in ids[:100]))
        await wait_until(lambda: all(old.charger(cid).connected for cid in ids[100:]))
        assert all(new.charger(cid).calls_in("BootNotification") for cid in ids[:150])
        assert not any(cid in new.chargers for cid in ids[150:])
        await wait_until(lambda: all(fleet.boots[cid][-1] == "Accepted" for cid in ids))
        assert not any("Rejected" in fleet.boots[cid] for cid in wave3)  # the charger never heard of it
        assert [gw.route_for(cid).primary for cid in (ids[0], ids[99], ids[100], ids[149], ids[199])] == [  # type: ignore[union-attr]
            "new", "new", "old", "old", "old"]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
            metrics = await resp.text()
        assert 'ocpp_gateway_migration_plan_chargers{plan="to-new",state="failed"} 50.0' in metrics
        assert 'ocpp_gateway_migration_plan_waves{plan="to-new",state="done"} 2.0' in metrics
        assert 'ocpp_gateway_migration_plan_status{plan="to-new",status="stopped"} 1.0' in metrics
        assert not old.violations and not new.violations
    finally:
        await fleet.stop()
        await old.stop()
        await new.stop()


async def test_migrate_cli_dry_run_submit_and_status(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    """`migrate --dry-run` shows waves and gates without moving anything; submitting and --status follow it."""
    old = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,)).start()
    ids = [f"CP{i}" for i in range(6)]
    fleet = RawFleet(ids)
    try:
        gw = await start_gateway(csms_config(old, new))
        fleet.start(f"ws://127.0.0.1:{gw.listen_port}/ocpp")
        await wait_until(lambda: all(fleet.boots[cid] for cid in ids))
        admin = f"http://127.0.0.1:{gw.admin_port}"
        plan_file = tmp_path / "plan.yaml"
        plan_file.write_text(yaml.safe_dump({
            "name": "cli-plan", "selection": {"ids": ids[:5], "firmware": "1.*"}, "route": {"primary": "new"},
            "waves": {"size": 2, "pause": 0}, "gates": {"observe": "0.5s", "min_compared": 0}}))

        code, out, err = await cli("migrate", str(plan_file), "--dry-run", "--admin", admin)
        assert code == 0, err
        assert f"{plan_file}: plan cli-plan: 5 charger(s) to new in 3 wave(s); 0 selected are there already" in out
        assert "  wave 1: 2 charger(s): CP0, CP1" in out and "  wave 3: 1 charger(s): CP4" in out
        assert "readiness today: gate holds (compared 0, disagreement 0.0%)" in out
        assert "nothing was changed (dry run)" in out
        assert gw.migration_plans.plans() == [] and all(cid not in new.chargers for cid in ids)

        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\nselection: {ids: [CP0]}\nroute: {primary: nowhere}\nwaves: {size: 0}\n")
        code, _, err = await cli("migrate", str(bad), "--admin", admin)
        assert (code, err) == (2, f"ocpp-gateway: {bad}: waves.size: Input should be greater than or equal to 1\n")
        bad.write_text("name: x\nselection: {ids: [CP0]}\nroute: {primary: nowhere}\nwaves: {size: 1}\n")
        code, _, err = await cli("migrate", str(bad), "--admin", admin)
        assert (code, err) == (1, f"ocpp-gateway: {bad}: route.primary: no csms named 'nowhere' (known: new, old)\n")

        code, out, err = await cli("migrate", str(plan_file), "--admin", admin)
        assert code == 0, err
        assert "plan cli-plan submitted: 5 charger(s) in 3 wave(s)" in out
        await asyncio.wait_for(gw.migration_plans.wait("cli-plan"), 30)
        code, out, err = await cli("migrate", "--status", "--admin", admin)
        assert (code, out) == (0, "cli-plan: completed, 3 waves; moved 5, pending 0, rolled back 0, failed 0 of 5\n")
        code, out, err = await cli("migrate", "--status", "cli-plan", "--admin", admin, "--history", "3")
        assert code == 0 and "  wave 3: done, 1 charger(s)" in out
        assert out.rstrip().splitlines()[-1].endswith("completed  (5 chargers moved)")
        code, _, err = await cli("migrate", "--pause", "cli-plan", "--admin", admin)
        assert (code, err) == (1, "ocpp-gateway: plan 'cli-plan' is completed: cannot pause it\n")
        await wait_until(lambda: all(new.charger(cid).connected for cid in ids[:5]))
        assert ids[5] not in new.chargers
    finally:
        await fleet.stop()
        await old.stop()
        await new.stop()


async def test_the_plans_api_answers_bad_requests_clearly(start_gateway: GatewayFactory,
                                                          monkeypatch: Any) -> None:
    """Bad JSON, a bad plan, an unknown plan and a missing token get a 4xx naming the problem; nothing runs."""
    monkeypatch.setenv("GW_TEST_ADMIN_TOKEN", "s3cret")
    old = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,)).start()
    try:
        gw = await start_gateway(csms_config(old, new), admin={"host": "127.0.0.1", "port": 0,
                                                               "token_env": "GW_TEST_ADMIN_TOKEN"})
        auth = {"Authorization": "Bearer s3cret"}
        plan = {"name": "p", "selection": {"ids": ["CP1"]}, "route": {"primary": "new"}, "waves": {"size": 1}}
        cases: list[tuple[str, str, dict[str, Any], int, dict[str, Any]]] = [
            ("POST", "/api/migration/plans", {"json": plan}, 401,
             {"error": "this admin API needs 'Authorization: Bearer <token>'"}),
            ("POST", "/api/migration/plans", {"data": "{not json", "headers": auth}, 400,
             {"error": "expected the plan as a JSON object"}),
            ("POST", "/api/migration/plans", {"json": {**plan, "waves": {"size": 0}, "gates": {"x": 1}},
                                              "headers": auth}, 400,
             {"error": "2 problems", "problems": ["plan: waves.size: Input should be greater than or equal to 1",
                                                  "plan: gates.x: unknown key"]}),
            ("POST", "/api/migration/plans", {"json": plan, "headers": auth}, 422,
             {"error": "plan 'p' selects no charger to move (0 selected are on the target route already)",
              "problems": ["plan 'p' selects no charger to move (0 selected are on the target route already)"]}),
            ("GET", "/api/migration/plans/nope", {"headers": auth}, 404, {"error": "no plan named nope"}),
            ("POST", "/api/migration/plans/nope/pause", {"headers": auth}, 404,
             {"error": "no plan named 'nope'", "problems": ["no plan named 'nope'"]}),
            ("GET", "/api/migration/plans", {"headers": auth}, 200, {}),
        ]
        for method, path, kwargs, status, body in cases:
            got_status, got = await api(gw, method, path, **kwargs)
            assert (got_status, got if body else None) == (status, body or None), (method, path)
        assert gw.migration_plans.plans() == []
    finally:
        await old.stop()
        await new.stop()
