"""The vendor runner: one task per vendor account, one virtual charger per vendor charger.

``VendorManager(gateway).start()`` (called by ``Gateway.start`` once the
charger port listens) starts an ``AccountRunner`` per ``vendors:`` entry:
it loads the credentials, logs in, discovers the chargers (again every
``options.discovery_interval`` seconds, default 3600), admits each one to
the gateway's charger list (id ``<adapter>-<vendor id>`` unless configured)
and runs a ``ChargerRunner`` for it: a poll loop (``poll_interval``; backing
off up to ``options.outage_backoff_max`` while the cloud is down) feeding
the adapter's readings through ``vendor_base.observe`` into the charger's
``VirtualCharger``, and the CSMS's commands through
``vendor_base.handle_csms_call`` back to the vendor.

The charger's vendor state (open transaction, seqNo, unacknowledged
transaction events, the stored charging profile, ...) is saved in the
store under ``vendor:<charger id>`` after every change, so a restart
continues where it stopped.

A charger switched to native OCPP (``gateway.vendors.native``) connects to
the gateway itself with the same id; the gateway replaces the virtual
charger's connection, and the runner then stops for good (it does not
reconnect, and remembers it under ``vendor-native:<charger id>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from adapters import vendor_base as vb
from adapters.vendor_base import (
    ChargerInfo,
    CommandOutcome,
    Reading,
    VendorAdapter,
    VendorApiError,
    VendorAuthError,
    VendorUnavailable,
)
from gateway.config import ChargerEntry, Route, VendorAccount
from gateway.estate import VendorHost
from gateway.logs import get_logger
from gateway.ocppj import Version
from gateway.records import FrameRecord
from gateway.vendors.client import CredentialsError, VendorClient, load_credentials
from gateway.vendors.metrics import VendorMetrics, vendor_metrics
from gateway.vendors.virtual import Answer, VirtualCharger


def state_key(charger_id: str) -> str:
    return f"vendor:{charger_id}"


def native_key(charger_id: str) -> str:
    return f"vendor-native:{charger_id}"


def default_charger_id(adapter: str, vendor_id: str) -> str:
    return f"{adapter}-{vendor_id}"


class ChargerRunner:
    """One vendor charger: poll loop, observe, commands, and its virtual charger."""

    def __init__(self, account: AccountRunner, info: ChargerInfo, charger_id: str, route: Route) -> None:
        self.account = account
        self.gateway = account.gateway
        self.adapter = account.adapter
        self.client = account.client
        self.info = info
        self.charger_id = charger_id
        self.route = route
        self.log = get_logger(charger_id=charger_id, vendor_account=account.name)
        self.state: dict[str, Any] = vb.new_state()
        self.reading: Reading | None = None
        self.lock = asyncio.Lock()
        self.native = False
        self.polls = 0
        options = account.account.options
        self.interval = account.account.poll_interval
        self.meter_interval = float(options.get("meter_interval", 0.0))
        self.outage_backoff_max = float(options.get("outage_backoff_max", 300.0))
        self.vc = self._virtual_charger()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _virtual_charger(self) -> VirtualCharger:
        options = self.account.account.options
        return VirtualCharger(
            self.charger_id, VirtualCharger.gateway_url(self.gateway.listen_port, self.charger_id),
            boot=lambda: vb.boot_notification(self.info), on_call=self.on_call, on_booted=self.on_booted,
            on_outbox=lambda _: self._save(),
            call_timeout=float(options.get("call_timeout", self.gateway.config.call_timeout + 5)),
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        store = self.gateway.store
        saved = await store.load_state(state_key(self.charger_id))
        if saved:
            self.state = saved
        if self.state.get("native") or await store.load_state(native_key(self.charger_id)):
            self._go_native("switched to native OCPP earlier")
            return
        self.vc.restore(self.state.pop("outbox", []) or [])
        await self.poll_once()  # the first reading gives the firmware for BootNotification
        self.vc.start()
        self._count("cloud", 1)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"vendor-poll:{self.charger_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.vc.stop()
        self._save()
        if not self.native:
            self._count("cloud", -1)

    def _count(self, state: str, delta: int) -> None:
        metrics = self.account.metrics
        metrics.chargers.labels(self.adapter.name, self.account.name, state).inc(delta)

    # ---------------------------------------------------------------- polling

    async def _loop(self) -> None:
        backoff = self.interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            if self.vc.replaced:
                if await self._stepped_aside():
                    return
                continue
            reading = await self.poll_once()
            if reading.reachable:
                backoff = self.interval
            else:
                backoff = min(max(backoff * 2, self.interval), max(self.outage_backoff_max, self.interval))

    async def poll_once(self, trigger: str | None = None) -> Reading:
        async with self.lock:
            self.polls += 1
            try:
                reading = await self.client.run(self.adapter.poll(self.info, self.state), self.charger_id)
            except VendorUnavailable as exc:
                self.log.info("vendor_poll_failed", error=str(exc))
                reading = Reading.unreachable()
            except VendorAuthError as exc:
                self.log.error("vendor_auth_failed", error=str(exc))
                reading = Reading.unreachable()
            except VendorApiError as exc:
                self.log.warning("vendor_poll_refused", error=str(exc))
                reading = Reading(online=False)
            if reading.firmware and not self.info.firmware:
                self.info.firmware = reading.firmware
            now = time.time()
            self.reading = reading
            obs = vb.observe(self.info, reading, self.state, now, lambda: str(uuid.uuid4()), self.meter_interval)
            self.state = obs.state
            messages = list(obs.messages)
            if trigger is not None:
                messages.extend(vb.triggered_messages(trigger, reading, self.state, now))
            self._emit(messages)
            self._save()
        await self._followups(obs.followups)
        return reading

    def _emit(self, messages: list[vb.Message]) -> None:
        for action, payload in messages:
            self.vc.send(action, payload)

    def _save(self) -> None:
        self.state["outbox"] = self.vc.outbox()
        self.gateway.store.save_state(state_key(self.charger_id), self.state)

    async def on_booted(self) -> None:
        """After every (re)boot: the connector's current status, as a real charger sends it."""
        async with self.lock:
            reading = self.reading or Reading.unreachable()
            self._emit(vb.triggered_messages("StatusNotification", reading, self.state, time.time()))
            self._save()

    # ---------------------------------------------------------------- CSMS commands

    async def on_call(self, action: str, payload: dict[str, Any]) -> Answer:
        outcome = await self._command(action, payload)
        messages, followups = outcome.messages, outcome.followups

        async def after() -> None:
            if messages:
                self._emit(messages)
                self._save()
            await self._followups(followups)

        return Answer(outcome.response, outcome.error, after)

    async def _command(self, action: str, payload: dict[str, Any]) -> CommandOutcome:
        async with self.lock:
            flow = vb.handle_csms_call(self.adapter, self.info, action, payload, self.reading, self.state, time.time())
            try:
                outcome = await self.client.run(flow, self.charger_id)
            except VendorAuthError as exc:
                outcome = CommandOutcome(response=vb.rejected("CloudAuthFailed"), note=str(exc))
            self._save()
        answer = outcome.response if outcome.response is not None else {
            "callerror": outcome.error[1] if outcome.error else None}
        status = (outcome.response or {}).get("status") if outcome.response else "CALLERROR"
        self.log.info("vendor_command", action=action, status=status, note=outcome.note)
        if outcome.note and not action.startswith("_"):
            # Why the charger answered the CSMS as it did, next to the frames in its message log.
            self.gateway.store.record(FrameRecord(
                time.time(), self.charger_id, "in", self.client.peer, "", "VENDOR_API", f"OCPP {action}", None,
                vb_json({"command": action, "answer": answer}), note=outcome.note))
        return outcome

    async def _followups(self, followups: list[vb.Followup]) -> None:
        for action, payload in followups:
            if action == "_poll":
                await self.poll_once(payload.get("then"))
            else:
                outcome = await self._command(action, payload)
                if outcome.messages:
                    self._emit(outcome.messages)
                    self._save()
                await self._followups(outcome.followups)

    # ---------------------------------------------------------------- native OCPP

    async def _stepped_aside(self) -> bool:
        """The gateway replaced the virtual charger's connection: a native charger took the id?"""
        if self.gateway.is_connected(self.charger_id):
            self._go_native("a charger with the same id connected natively")
            self.gateway.store.save_state(native_key(self.charger_id), {"native": True, "since": time.time()})
            return True
        # Replaced, but nobody is there now: reconnect as before.
        self.vc = self._virtual_charger()
        self.vc.restore(self.state.get("outbox") or [])
        self.vc.start()
        return False

    def _go_native(self, why: str) -> None:
        self.native = True
        self.state["native"] = True
        self._save()
        self.account.manager.native_ids.add(self.charger_id)
        self._count("native", 1)
        self.log.info("vendor_charger_native", reason=why)


def vb_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


class AccountRunner:
    """One vendor account: credentials, client, discovery, and its chargers' runners."""

    def __init__(self, manager: VendorManager, name: str, account: VendorAccount) -> None:
        self.manager = manager
        self.gateway = manager.gateway
        self.name = name
        self.account = account
        self.metrics: VendorMetrics = manager.metrics
        self.log = get_logger(vendor_account=name, adapter=account.adapter)
        self.adapter: VendorAdapter = vb.adapter_for(account.adapter, account.options)
        self.client: VendorClient  # set in run() once the credentials are loaded
        self.chargers: dict[str, ChargerRunner] = {}
        self.discovered = asyncio.Event()

    async def run(self) -> None:
        try:
            credentials = load_credentials(self.name, self.account)
        except CredentialsError as exc:
            self.log.error("vendor_credentials_missing", error=str(exc))
            return
        self.client = VendorClient(self.adapter, self.name, self.account, credentials,
                                   store=self.gateway.store, metrics=self.metrics)
        options = self.account.options
        interval = float(options.get("discovery_interval", 3600.0))
        retry = max(1.0, min(self.account.poll_interval, 60.0))
        while True:
            try:
                found = await self.client.run(self.adapter.discover())
            except VendorAuthError as exc:
                self.log.error("vendor_login_failed", error=str(exc))
                await asyncio.sleep(min(retry * 10, 3600.0))
                continue
            except (VendorUnavailable, VendorApiError) as exc:
                self.log.warning("vendor_discovery_failed", error=str(exc), retry_in=retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 300.0)
                continue
            retry = max(1.0, min(self.account.poll_interval, 60.0))
            await self._adopt(found)
            self.discovered.set()
            await asyncio.sleep(interval)

    def _select(self, found: list[ChargerInfo]) -> list[tuple[ChargerInfo, str, Route | None]]:
        """Which discovered chargers this gateway presents, under which id and route."""
        configured = self.account.chargers
        include_unlisted = bool(self.account.options.get("include_unlisted", not configured))
        out = []
        for info in found:
            entry = configured.get(info.vendor_id) or configured.get(info.serial)
            if entry is None and not include_unlisted:
                continue
            cid = (entry.id if entry and entry.id else None) or default_charger_id(self.adapter.name, info.vendor_id)
            route = (entry.route if entry else None) or self.account.route
            out.append((info, cid, route))
        return out

    async def _adopt(self, found: list[ChargerInfo]) -> None:
        config = self.gateway.config
        for info, cid, route in self._select(found):
            if cid in self.chargers:
                continue
            existing = config.chargers.get(cid)
            chosen = route or (existing.route if existing else None) or config.default_route
            if chosen is None:
                self.log.error("vendor_charger_without_route", charger_id=cid,
                               hint=f"set vendors.{self.name}.route or a default_route")
                continue
            try:
                if existing is None:
                    # (the version as text: GatewayConfig's validator reads str(value))
                    # A 1.6 CSMS needs an idTag at StartTransaction; vendors often tell the card only later (or
                    # never, for free charging), so the 2.0.1 -> 1.6 translator gets one to start with.
                    anonymous = self.account.options.get("anonymous_id_tag", self.adapter.vendor_name)
                    options = {"anonymous_id_tag": anonymous} if anonymous else {}
                    config.chargers[cid] = ChargerEntry(route=chosen, ocpp=Version.V201.value, options=options)
                runner = ChargerRunner(self, info, cid, chosen)
                self.chargers[cid] = runner
                self.manager.chargers[cid] = runner
                self.log.info("vendor_charger_adopted", charger_id=cid, vendor_id=info.vendor_id, model=info.model)
                await runner.start()
            except Exception as exc:  # one broken charger must not stop its account
                self.log.error("vendor_charger_start_failed", charger_id=cid, error=repr(exc))

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.chargers.values()), return_exceptions=True)
        client = getattr(self, "client", None)
        if client is not None:
            await client.close()


class VendorManager:
    """Every vendor account of a gateway (see the module docstring)."""

    def __init__(self, gateway: VendorHost) -> None:
        self.gateway = gateway
        self.metrics = vendor_metrics(gateway.metrics)
        self.log = get_logger(component="vendors")
        self.accounts: dict[str, AccountRunner] = {}
        self.chargers: dict[str, ChargerRunner] = {}
        self.native_ids: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name, account in self.gateway.config.vendors.items():
            try:
                runner = AccountRunner(self, name, account)
            except (KeyError, TypeError) as exc:
                self.log.error("vendor_adapter_unknown", account=name, error=str(exc))
                continue
            self.accounts[name] = runner
            self._tasks.append(asyncio.get_running_loop().create_task(runner.run(), name=f"vendor-account:{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(a.stop() for a in self.accounts.values()), return_exceptions=True)

    async def wait_discovered(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(asyncio.gather(*(a.discovered.wait() for a in self.accounts.values())), timeout)
