"""The vendor adapters' virtual charger against a real WebSocket peer: what a stop does to an event in flight."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from gateway.vendors.virtual import Answer, VirtualCharger

BOOT = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


def updated(seq_no: int) -> dict[str, Any]:
    return {"eventType": "Updated", "timestamp": "2026-11-30T10:00:00Z", "triggerReason": "MeterValuePeriodic",
            "seqNo": seq_no, "transactionInfo": {"transactionId": "tx-1"}}


async def no_calls(action: str, payload: dict[str, Any]) -> Answer:
    return Answer({})


async def test_a_stop_waits_for_the_answer_to_the_event_in_flight_and_sends_no_other() -> None:
    """stop() lets the CSMS answer the TransactionEvent already sent, so the outbox keeps only what was never sent."""
    received: list[tuple[str, dict[str, Any]]] = []
    first_event = asyncio.Event()

    async def slow_csms(ws: ServerConnection) -> None:
        async for text in ws:
            _, uid, action, payload = json.loads(text)
            received.append((action, payload))
            if action == "BootNotification":
                answer = {"currentTime": "2026-11-30T10:00:00Z", "interval": 300, "status": "Accepted"}
            else:
                first_event.set()
                await asyncio.sleep(0.3)  # the answer is still on its way when the stop begins
                answer = {}
            await ws.send(json.dumps([3, uid, answer]))

    async with serve(slow_csms, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        vc = VirtualCharger("vc-1", f"ws://127.0.0.1:{port}/vc-1", boot=lambda: BOOT, on_call=no_calls)
        vc.start()
        vc.send("TransactionEvent", updated(1))
        vc.send("TransactionEvent", updated(2))
        await asyncio.wait_for(first_event.wait(), 5)
        await vc.stop()

    assert [payload.get("seqNo") for action, payload in received if action == "TransactionEvent"] == [1]
    assert [item["payload"]["seqNo"] for item in vc.outbox()] == [2]
