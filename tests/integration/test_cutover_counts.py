"""A hot cut-over loses, duplicates and misroutes nothing: every charger frame is logged and counted once.

Real sockets and a real store, whose commits the test slows down (a slow
disk): the old primary's answers wait for the durable barrier while the
route switches, which is when a frame could reach the wrong CSMS.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.demo import frames_by_chargers
from gateway.sim.csms import DemoCsms
from gateway.sim.payloads import now_iso
from tests.conftest import GatewayFactory
from tests.integration.test_cutover import V16, V201, Charger, applied, assert_clean, csms_pair, put_route, until
from tests.rawpeers import dumps

SLOW_COMMIT = 0.5  # seconds the store takes to commit, longer than the whole switch


def slow_commits(gw: Any) -> None:
    """Every durable commit resolves ``SLOW_COMMIT`` s after the store really committed it."""
    commit = gw.store.commit
    loop = asyncio.get_running_loop()

    def slower(*args: Any) -> asyncio.Future[None]:
        done = commit(*args)
        late: asyncio.Future[None] = loop.create_future()
        done.add_done_callback(lambda _f: loop.call_later(SLOW_COMMIT, late.set_result, None))
        return late

    gw.store.commit = slower


async def answers_to(cp: Charger, uids: set[str], timeout: float = 8.0) -> dict[str, list[Any]]:
    """Read until each of ``uids`` is answered, answering what the gateway asks meanwhile."""
    got: dict[str, list[Any]] = {}
    while set(got) != uids:
        frame = await cp.raw.recv(timeout)
        if frame[0] == 2:
            cp.asked.append(frame[2])
            await cp.raw.send(dumps(3, frame[1], {"setVariableResult": [{"attributeStatus": "Accepted", **{
                k: v for k, v in frame[3]["setVariableData"][0].items() if k in ("component", "variable")}}]}))
        else:
            got[frame[1]] = frame
    return got


async def test_frames_sent_while_a_now_change_waits_for_the_shadow_reach_their_csms_once(
        start_gateway: GatewayFactory) -> None:
    """The demo's case: a shadow's copy ends, the change applies, and the old primary's held CALL still goes to it."""
    old = await DemoCsms(versions=(V16,), first_transaction_id=100).start()
    new = await DemoCsms(versions=(V201,)).start()
    try:
        gw = await start_gateway(csms_pair(old, V16, new, V201), allow_unknown_chargers=False,
                                 chargers={"CP1": {"route": {"primary": "old", "shadow": "new"}}},
                                 metrics={"per_charger": True})
        cp = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", V201)
        sent = 0
        send = cp.raw.send

        async def counted(text: str) -> None:
            nonlocal sent
            sent += 1
            await send(text)

        cp.raw.send = counted  # type: ignore[method-assign]
        await cp.boot()
        await cp.status(1, "Occupied")
        tx = await cp.start(1, "TX-A")
        await new.wait_for(lambda: len(new.transactions("CP1")) == 1)  # the shadow has a copy

        status, body = await put_route(gw, "CP1", {"primary": "new", "shadow": None, "when": "now"})
        assert (status, body["state"]) == (202, "pending")  # the shadow's copy must end first
        slow_commits(gw)
        new.misbehave("delay", "BootNotification", delay=0.2, times=1)  # the switch comes while commits wait
        await cp.raw.send(dumps(2, "end", "TransactionEvent", {
            "eventType": "Ended", "timestamp": now_iso(), "triggerReason": "StopAuthorized", "seqNo": 1,
            "transactionInfo": {"transactionId": tx, "stoppedReason": "Local"}, "evse": {"id": 1, "connectorId": 1}}))
        await cp.raw.send(dumps(2, "finishing", "StatusNotification", {
            "timestamp": now_iso(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1}))
        got = await answers_to(cp, {"end", "finishing"})
        assert [got[uid][0] for uid in ("end", "finishing")] == [3, 3], got
        await until(lambda: applied(gw, "CP1"))
        for _ in range(50):  # the new CSMS's heartbeat interval reaches the charger as SetVariables
            await cp.call("Heartbeat", {})
            if "SetVariables" in cp.asked:
                break
            await asyncio.sleep(0.05)
        assert "SetVariables" in cp.asked

        assert [s for s in old.charger("CP1").statuses.values()][-1] == "Available"  # the old primary got it
        assert new.charger("CP1").calls_in("Heartbeat") and not old.violations and not new.violations
        await gw.store.flush()
        records = await gw.store.messages("CP1", 1000)
        from_charger = [r for r in records if r["peer"] == "charger" and r["direction"] == "in"]
        assert len(from_charger) == sent == frames_by_chargers(gw, {"CP1"}, "in")
        assert len({r["unique_id"] for r in from_charger}) == sent  # each logged once
        assert cp.still_connected()
        assert_clean(old, new)
    finally:
        await old.stop()
        await new.stop()
