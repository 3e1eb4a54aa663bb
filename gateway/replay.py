"""``ocpp-gateway replay``: ask a candidate CSMS the questions chargers really asked, before shadowing any.

For each charger, the CALLs it sent (the message log's frames with peer
"charger", as received) go through a ``ChargerSession`` with the translator
from the charger's version to the candidate's, over a real WebSocket to
``<candidate url>/<prefix><charger id>``, one at a time at the candidate's
pace. Each answer, as the charger would have received it, is compared
(``gateway.compare``) with the answer the real CSMS gave at the time, found
in the log by unique id, and the comparisons make the same report as
``ocpp-gateway report``.

Nothing reaches a charger: the replay has no charger-facing socket, and a
CALL the candidate makes to the test charger is answered at once with a
CALLERROR. The candidate assigns its own 1.6 ``transactionId``s; recorded
MeterValues and StopTransaction carry the real CSMS's and are rewritten to
the candidate's (by role: the id the answer to the same StartTransaction
gave). Chargers are replayed ``concurrency`` at a time; a progress line goes
to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

import mappings
from adapters import registry
from adapters.base import Context, Side
from gateway import ocppj, security
from gateway.compare import Answer, ChargerComparisons, compare_answers
from gateway.config import CsmsEndpoint, GatewayConfig
from gateway.ocppj import CallError, ErrorKind, Version
from gateway.repair import load_rules
from gateway.report import charger_row, emit, estate_report, migration_view, open_for_reading
from gateway.session import Action, CancelTimer, ChargerSession, Problem, Send, SessionLimits, StartTimer
from gateway.store import Store, StoreError

PAGE = 10_000  # log records read per query
# 1.6 charger CALLs that carry the transactionId the CSMS assigned in its StartTransaction answer.
TX_ID_FIELDS = {"MeterValues": "transactionId", "StopTransaction": "transactionId"}


@dataclass(slots=True)
class RecordedCall:
    """A CALL a charger sent, with the answer the gateway gave it from the real CSMS."""

    unique_id: str
    action: str
    payload: dict[str, Any]
    ts: float
    answer: Answer = None
    answered_at: float | None = None


@dataclass(slots=True)
class ChargerLog:
    charger_id: str
    version: Version | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    other_versions: int = 0  # CALLs logged in another version (a firmware change): not replayed


async def read_charger_log(store: Store, charger_id: str, since: float | None, until: float | None) -> ChargerLog:
    """The charger's CALLs between ``since`` and ``until`` and the answers it got, oldest first."""
    log = ChargerLog(charger_id)
    waiting: dict[str, RecordedCall] = {}
    after = 0
    while True:
        rows = await store.charger_frames(charger_id, since, until, after, PAGE)
        for r in rows:
            uid, mtype = r["unique_id"], r["message_type"]
            if r["direction"] == "in" and mtype == "CALL":
                payload = _call_payload(r["frame"])
                if uid in waiting or payload is None:
                    continue  # a repaired copy of a CALL already read: replay it as the charger sent it
                version = Version.parse(r["ocpp_version"])
                if log.version is None:
                    log.version = version
                if version is not log.version:
                    log.other_versions += 1
                    continue
                call = RecordedCall(uid, r["action"], payload, r["ts"])
                waiting[uid] = call
                log.calls.append(call)
            elif r["direction"] == "out" and mtype in ("CALLRESULT", "CALLERROR") and uid in waiting:
                call = waiting.pop(uid)
                call.answer, call.answered_at = orjson.loads(r["frame"]), r["ts"]
        if len(rows) < PAGE:
            return log
        after = rows[-1]["id"]


def _call_payload(frame: str) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if isinstance(msg, list) and len(msg) == 4 and isinstance(msg[3], dict):
        return msg[3]
    return None


# ------------------------------------------------------------------------------------------ the runner


class CandidateSession:
    """One test charger at the candidate CSMS: a ``ChargerSession`` whose charger side is the log."""

    def __init__(self, session: ChargerSession) -> None:
        self.session = session
        self.ws: ClientConnection | None = None
        self._answers: dict[str, asyncio.Future[Answer]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._outbox: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.timed_out = False  # the CALL being replayed was not answered by the candidate in time
        self.refused_commands = 0

    async def run(self, ws: ClientConnection) -> None:
        """Read the candidate's frames until the socket closes."""
        self.ws = ws
        await self._do(self.session.link_up(Side.CSMS, time.time()))
        try:
            async for msg in ws:
                text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
                await self._do(self.session.receive(Side.CSMS, text, time.time()))
        except ConnectionClosed:
            pass
        finally:
            self.ws = None
            self._apply(self.session.link_down(Side.CSMS, time.time()))

    async def ask(self, call: RecordedCall, payload: dict[str, Any], timeout: float) -> Answer:
        """Send one recorded CALL as the charger and wait for its answer (None: none came)."""
        self.timed_out = False
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[call.unique_id] = future
        text = ocppj.serialize(ocppj.Call(call.unique_id, call.action, payload))
        await self._do(self.session.receive(Side.CHARGER, text, time.time()))
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            self._answers.pop(call.unique_id, None)
        return None if self.timed_out else answer

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._apply(self.session.close(time.time()))

    async def _do(self, actions: list[Action]) -> None:
        self._apply(actions)
        outbox, self._outbox = self._outbox, []
        for text in outbox:
            if self.ws is not None:
                try:
                    await self.ws.send(text)
                except ConnectionClosed:
                    break

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if action.to is Side.CSMS:
                    self._outbox.append(action.text)
                else:
                    self._to_charger(action.text)
            elif isinstance(action, StartTimer):
                self._start_timer(action.key, action.delay)
            elif isinstance(action, CancelTimer):
                handle = self._timers.pop(action.key, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, Problem) and action.event == "call_timeout" \
                    and action.detail.get("to") == Side.CSMS.value:
                self.timed_out = True
            # Frame records, state saves and round trips stay here: a replay writes nothing to the live store.

    def _to_charger(self, text: str) -> None:
        frame = orjson.loads(text)
        if frame[0] == 2:
            # The candidate commands the test charger: there is no charger here, and never will be.
            self.refused_commands += 1
            code = ocppj.error_code(self.session.translator.charger_version, ErrorKind.SECURITY)
            refusal = ocppj.serialize(CallError(frame[1], code, "a replay cannot command the charger"))
            self._apply(self.session.receive(Side.CHARGER, refusal, time.time()))
            return
        future = self._answers.get(frame[1])
        if future is not None and not future.done():
            future.set_result(frame)

    def _start_timer(self, key: str, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            task = asyncio.ensure_future(self._do(self.session.timer_fired(key, time.time())))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)


# ------------------------------------------------------------------------------------------ progress


class Progress:
    """One line on standard error: chargers and CALLs done, the rate, how long so far."""

    def __init__(self, chargers: int, out: TextIO | None) -> None:
        self.chargers = chargers
        self.out = out
        self.done_chargers = 0
        self.calls = 0
        self.differed = 0
        self.started = time.monotonic()
        self._tty = bool(out is not None and out.isatty())
        self._last = 0.0

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        width = 24
        filled = int(width * self.done_chargers / self.chargers) if self.chargers else width
        rate = self.calls / elapsed if elapsed > 0 else 0.0
        return (f"replay [{'#' * filled}{'.' * (width - filled)}] {self.done_chargers}/{self.chargers} chargers, "
                f"{self.calls} calls ({self.differed} differed), {rate:.0f} calls/s, {elapsed:.0f} s")

    def tick(self, force: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.5 if self._tty else 10.0):
            return
        self._last = now
        self.out.write(("\r" + self.line()) if self._tty else self.line() + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.out is not None:
            self.tick(force=True)
            if self._tty:
                self.out.write("\n")


# ------------------------------------------------------------------------------------------ replay


class ReplayTarget:
    """Where and how the replay asks: the candidate, under which test ids, with the gateway's own limits."""

    def __init__(self, config: GatewayConfig, name: str, prefix: str = "replay-") -> None:
        self.config = config
        self.name = name
        self.endpoint = config.csms[name]
        self.prefix = prefix
        self.call_timeout = self.endpoint.call_timeout or config.call_timeout
        self._repair_rules = load_rules()

    def test_id(self, charger_id: str) -> str:
        return f"{self.prefix}{charger_id}"

    def options(self, charger_id: str) -> dict[str, Any]:
        """The charger's translator options, as the gateway gives them (``Gateway.charger_options``)."""
        entry = self.config.chargers.get(charger_id)
        if entry is None:
            return {}
        return {"id_token_type": entry.id_token_type, "connectors_per_evse": entry.connectors_per_evse,
                **entry.options}

    def limits(self, charger_id: str) -> SessionLimits:
        """The session limits and validation policy the gateway applies to this charger."""
        entry = self.config.chargers.get(charger_id)
        return SessionLimits(
            call_timeout=self.call_timeout, max_frame_bytes=self.config.max_frame_bytes,
            retry_interval=self.config.held_retry_interval,
            validation=(entry.validation if entry and entry.validation else self.config.validation),
            validation_fixed=bool(entry and entry.validation),
            model_validation=tuple(self.config.validation_by_model.items()), repair_rules=self._repair_rules,
        )


async def replay_charger(log: ChargerLog, target: ReplayTarget, book: ChargerComparisons,
                         progress: Progress | None = None) -> str | None:
    """Replay one charger's CALLs to the candidate, recording each comparison; the reason it could not, or None."""
    if log.version is None or not log.calls:
        return None
    endpoint = target.endpoint
    options = target.options(log.charger_id)
    translator = registry.translator_for(log.version, endpoint.ocpp, options)
    if translator is None:
        return f"no translator from OCPP {log.version.value} to {endpoint.ocpp.value}"
    test_id = target.test_id(log.charger_id)
    ctx = Context(test_id, log.version, endpoint.ocpp, options=options, state={})
    candidate = CandidateSession(ChargerSession(test_id, translator, ctx, target.limits(log.charger_id),
                                                csms_peer=f"replay:{target.name}"))
    try:
        ws = await connect(
            f"{endpoint.url}/{quote(test_id, safe='')}", subprotocols=[endpoint.ocpp.subprotocol],  # type: ignore[list-item]
            additional_headers=_headers(endpoint, test_id), open_timeout=endpoint.connect_timeout,
            compression=None, proxy=None, user_agent_header="ocpp-migration-gateway replay",
            ssl=security.client_context(endpoint.tls) if endpoint.url.startswith("wss://") else None,
        )
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return f"cannot connect to {target.name} as {test_id}: {exc}"
    reader = asyncio.create_task(candidate.run(ws))
    tx_ids: dict[Any, Any] = {}  # the real CSMS's transactionId -> the candidate's
    try:
        for call in log.calls:
            if reader.done():
                return f"{target.name} closed the connection of {test_id}"
            payload = call.payload
            tx_field = TX_ID_FIELDS.get(call.action) if log.version is Version.V16 else None
            if tx_field is not None and payload.get(tx_field) in tx_ids:
                payload = {**payload, tx_field: tx_ids[payload[tx_field]]}
            now = time.time()
            answer = await candidate.ask(call, payload, target.call_timeout + 5.0)
            answered_at = time.time()
            if call.action == "StartTransaction" and _ok(call.answer) and _ok(answer):
                assert call.answer is not None and answer is not None
                tx_ids[call.answer[2].get("transactionId")] = answer[2].get("transactionId")
            if progress is not None:
                progress.calls += 1
            if call.answer is None or call.answered_at is None:
                continue  # the log has no answer to compare with (the charger left before it came)
            differences = compare_answers(call.action, call.answer, answer, primary_at=call.answered_at,
                                          shadow_at=answered_at if answer is not None else now)
            book.record(call.ts, target.name, call.action, call.unique_id, call.payload, call.answer, answer,
                        differences)
            if progress is not None:
                progress.differed += bool(differences)
                progress.tick()
        return None
    finally:
        candidate.close()
        await ws.close()
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            pass


def _ok(answer: Answer) -> bool:
    return answer is not None and answer[0] == 3 and isinstance(answer[2], dict)


def _headers(endpoint: CsmsEndpoint, test_id: str) -> dict[str, str]:
    headers = dict(endpoint.headers)
    if endpoint.basic_auth_password_env:
        secret = os.environ.get(endpoint.basic_auth_password_env, "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{test_id}:{secret}".encode()).decode()
    return headers


async def replay_estate(store: Store, charger_ids: list[str], target: ReplayTarget, *, since: float | None = None,
                        until: float | None = None, concurrency: int = 50, kept: int = 50,
                        progress_out: TextIO | None = None) -> tuple[dict[str, ChargerComparisons], dict[str, str]]:
    """Replay every charger, ``concurrency`` at a time: their comparisons, and why some could not be replayed."""
    books = {cid: ChargerComparisons(cid, kept) for cid in charger_ids}
    failed: dict[str, str] = {}
    slots = asyncio.Semaphore(max(1, concurrency))
    progress = Progress(len(charger_ids), progress_out)

    async def one(cid: str) -> None:
        async with slots:
            try:
                log = await read_charger_log(store, cid, since, until)
                reason = await replay_charger(log, target, books[cid], progress)
                if log.other_versions:
                    reason = (reason + "; " if reason else "") + \
                        f"{log.other_versions} CALLs in another OCPP version were not replayed"
            except StoreError as exc:
                reason = f"cannot read its log: {exc}"
            if reason is not None:
                failed[cid] = reason
            progress.done_chargers += 1
            progress.tick()

    await asyncio.gather(*(one(cid) for cid in charger_ids))
    progress.finish()
    return books, failed


def parse_time(text: str | None) -> float | None:
    """``--since``/``--until``: ISO 8601 (a bare time is UTC) or unix seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def replay_report(config: GatewayConfig, target: ReplayTarget, books: dict[str, ChargerComparisons],
                  failed: dict[str, str], source: str) -> dict[str, Any]:
    """The replay's comparisons as the migration report (phase "replay", judged against the candidate)."""
    rows = []
    for cid, book in sorted(books.items()):
        row = charger_row(cid, config.route_for(cid), config.route_for(cid), book, None,
                          config.migration.ready_after, target=target.name)
        row["phase"] = "replay"
        if cid in failed:
            row["readiness"] = {"ready": False, "reasons": [*row["readiness"]["reasons"], failed[cid]]}
        rows.append(row)
    return estate_report(migration_view(rows, config.migration.ready_after), books, source)


async def replay_command(config: GatewayConfig, args: argparse.Namespace, out: TextIO = sys.stdout,
                         err: TextIO = sys.stderr) -> int:
    """``ocpp-gateway replay``: exit 0 with a report, 1 when it cannot run (store, candidate name, times)."""
    endpoint = config.csms.get(args.csms)
    if endpoint is None:
        print(f"ocpp-gateway replay: no csms named {args.csms!r} (known: {', '.join(sorted(config.csms))})",
              file=err)
        return 1
    try:
        since, until = parse_time(args.since), parse_time(args.until)
    except ValueError as exc:
        print(f"ocpp-gateway replay: --since/--until: {exc}", file=err)
        return 1
    prefix = "" if args.as_real_id else args.prefix
    if not prefix and not args.as_real_id:
        print("ocpp-gateway replay: an empty --prefix would use the real charger ids; say --as-real-id if you mean "
              "it", file=err)
        return 1
    mappings.set_extra_dirs([Path(d) for d in config.mapping_dirs])
    try:
        target = ReplayTarget(config, args.csms, prefix)
    except mappings.MappingError as exc:
        print(f"ocpp-gateway replay: {exc}", file=err)
        return 1
    store = open_for_reading(config, "replay", err)
    if store is None:
        return 1
    try:
        ids = list(args.charger) if args.charger else await store.logged_chargers(since, until)
        books, failed = await replay_estate(
            store, ids, target, since=since, until=until, concurrency=args.concurrency,
            kept=config.migration.differences_kept, progress_out=None if args.no_progress else err)
    except StoreError as exc:
        print(f"ocpp-gateway replay: {exc}", file=err)
        return 1
    finally:
        await store.close()
    window = f"{args.since or 'the start of the log'} to {args.until or 'its end'}"
    source = f"replay of {len(ids)} chargers' recorded CALLs to {args.csms} as {prefix or '(real id)'}<id>, {window}"
    return emit(replay_report(config, target, books, failed, source), args.format, args.output, out, err, "replay")
