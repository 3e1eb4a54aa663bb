"""What store-and-forward costs: ``ocpp-gateway bench --durability``.

Two figures, each against a real gateway process, the CSMS simulator and a SQLite message log:

- transactions: chargers loop StartTransaction, MeterValues x 3, StopTransaction as fast as they are answered;
  throughput and round-trip p50/p99 of those CALLs with the durable barrier (``offline.durable_answers: true``,
  the product: an answer waits until the state it depends on is committed) and without it (``false``: the state
  is written behind the answer, as before store-and-forward), for a 1.6 CSMS (pass-through) and a 2.0.1 CSMS
  (translation, whose state changes with every transaction message);
- replay: the CSMS is down while chargers run transactions (answered by the gateway, queued durably) until
  ``backlog`` messages wait; the CSMS comes up and the time until the gateway's
  ``ocpp_gateway_offline_replayed_total`` reaches the backlog gives the replay rate.

The chargers run in the bench process itself (websockets clients): the gateway and the CSMS have their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from websockets.asyncio.client import ClientConnection, connect

from gateway.benchkit.frames import iso_now

TRANSACTION_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


@dataclass
class DurabilityOptions:
    chargers: int = 20  # chargers looping transactions at once
    seconds: float = 10.0  # measurement window per configuration
    warmup: float = 2.0
    backlog: int = 10_000  # messages queued before the CSMS returns
    backlog_chargers: int = 10


class TxCharger:
    """A 1.6 charger running Start, 3 MeterValues, Stop in a loop; it times each CALL's round trip."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.n = 0
        self.ts = iso_now()

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 60.0) -> tuple[dict[str, Any], float]:
        self.n += 1
        uid = f"{self.name}-{self.n}"
        began = time.perf_counter()
        await self.ws.send(orjson.dumps([2, uid, action, payload]).decode())
        while True:
            frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame[1] == uid:
                break
        if frame[0] != 3:
            raise RuntimeError(f"{action} was refused: {frame}")
        return frame[2], time.perf_counter() - began

    async def transaction(self, meter_values: int = 3) -> list[float]:
        """One whole transaction; the round trip of each of its CALLs."""
        sample = [{"value": "0", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
        answer, rtt = await self.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": 0,
                                                           "timestamp": self.ts})
        times = [rtt]
        tx = answer["transactionId"]
        for i in range(meter_values):
            sample[0]["value"] = str(100 * (i + 1))
            times.append((await self.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": self.ts, "sampledValue": sample}]}))[1])
        times.append((await self.call("StopTransaction", {"transactionId": tx, "meterStop": 100 * (meter_values + 1),
                                                          "timestamp": self.ts}))[1])
        return times


async def _chargers(url: str, prefix: str, n: int) -> list[TxCharger]:
    async def one(i: int) -> TxCharger:
        ws = await connect(f"{url}/{prefix}{i}", subprotocols=["ocpp1.6"], compression=None,  # type: ignore[list-item]
                           proxy=None, open_timeout=30)
        return TxCharger(ws, f"{prefix}{i}")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


@contextlib.asynccontextmanager
async def connected_chargers(url: str, prefix: str, n: int) -> AsyncIterator[list[TxCharger]]:
    chargers = await _chargers(url, prefix, n)
    try:
        yield chargers
    finally:
        await asyncio.gather(*(c.ws.close() for c in chargers), return_exceptions=True)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def transaction_load(url: str, prefix: str, opts: DurabilityOptions) -> dict[str, Any]:
    """Chargers loop transactions for warm-up + window; CALLs/s and round trips within the window."""
    loop = asyncio.get_running_loop()
    start = loop.time() + opts.warmup
    end = start + opts.seconds
    measured: list[float] = []

    async def run(c: TxCharger) -> None:
        while loop.time() < end:
            began = loop.time()
            times = await c.transaction()
            if began >= start and loop.time() <= end:
                measured.extend(times)

    async with connected_chargers(url, prefix, opts.chargers) as chargers:
        await asyncio.gather(*(run(c) for c in chargers))
    measured.sort()
    return {"calls": len(measured), "calls_per_second": len(measured) / opts.seconds,
            "p50_ms": _ms(percentile(measured, 0.50)), "p99_ms": _ms(percentile(measured, 0.99))}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def fill_backlog(url: str, opts: DurabilityOptions, chargers: list[TxCharger]) -> dict[str, Any]:
    """Transactions while the CSMS is down until ``backlog`` messages are queued; the local answer rate.

    The chargers stay connected: a charger's queue is replayed over its own connection's upstream link.
    """
    per_charger = opts.backlog // opts.backlog_chargers
    began = time.perf_counter()

    async def run(c: TxCharger) -> None:
        left = per_charger
        while left >= 3:
            mv = min(left - 2, 98)  # transactions of up to 100 messages
            await c.transaction(meter_values=mv)
            left -= mv + 2
        for _ in range(left):  # the remainder as MeterValues outside a transaction
            await c.call("MeterValues", {"connectorId": 1, "meterValue": [
                {"timestamp": c.ts, "sampledValue": [{"value": "1"}]}]})

    await asyncio.gather(*(run(c) for c in chargers))
    seconds = time.perf_counter() - began
    queued = per_charger * opts.backlog_chargers
    return {"queued": queued, "seconds": seconds, "answers_per_second": queued / seconds}


async def wait_replayed(metrics: Callable[[], Awaitable[dict[str, float]]], target: int,
                        timeout: float) -> dict[str, Any]:
    """Poll the gateway's metrics until ``target`` queued messages were replayed; seconds from now to the first
    and to the last, and the rate in between."""
    began = time.perf_counter()
    first: float | None = None
    deadline = began + timeout
    done = 0.0
    while time.perf_counter() < deadline:
        done = (await metrics()).get("ocpp_gateway_offline_replayed_total", 0.0)
        now = time.perf_counter()
        if done and first is None:
            first = now
        if done >= target:
            total = now - began
            # A backlog replayed between two polls has no "first" sample before the last: count from CSMS up.
            flowing = now - first if first is not None and first < now else total
            return {"replayed": int(done), "seconds_from_csms_up": total, "seconds_replaying": flowing,
                    "messages_per_second": target / flowing if flowing > 0 else None}
        await asyncio.sleep(0.1)
    return {"replayed": int(done), "timed_out": True}


@contextlib.asynccontextmanager
async def gateway_running(make: Callable[[Path], Any], work: Path, config: dict[str, Any]) -> AsyncIterator[Any]:
    """A gateway process started with ``config`` (written to ``work``), stopped afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    gateway = make(path)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def render(results: dict[str, Any]) -> str:
    """The durability figures as a small table."""
    lines = ["durable-before-answer: transaction CALLs (Start, 3 MeterValues, Stop in a loop)",
             f"  {'CSMS':<22}{'barrier':<10}{'CALLs/s':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    for row in results.get("transactions", []):
        def f(v: Any, spec: str) -> str:
            return format(v, spec) if isinstance(v, int | float) else "-"
        lines.append(f"  {row['csms']:<22}{'on' if row['durable'] else 'off':<10}"
                     f"{f(row.get('calls_per_second'), ',.0f'):>10}{f(row.get('p50_ms'), '.2f'):>10}"
                     f"{f(row.get('p99_ms'), '.2f'):>10}")
    for row in results.get("replay", []):
        fill, rep = row["fill"], row["replay"]
        chargers = f"{row['chargers']} charger" + ("s" if row["chargers"] != 1 else "")
        lines.append(f"replay of a {fill['queued']:,}-message backlog ({chargers}, {row['csms']}): "
                     f"queued at {fill['answers_per_second']:,.0f} answers/s; replayed "
                     + (f"at {rep['messages_per_second']:,.0f} messages/s ({rep['seconds_replaying']:.1f} s, "
                        f"{rep['seconds_from_csms_up']:.1f} s after the CSMS came up)"
                        if rep.get("messages_per_second") else f"{rep.get('replayed')} only (timed out)"))
    return "\n".join(lines)
