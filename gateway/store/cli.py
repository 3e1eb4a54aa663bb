"""``ocpp-gateway logs``: read a charger's message log as a table or JSON lines, optionally following it."""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import Any, TextIO

import orjson

from gateway.store import Store, StoreError, open_store

FOLLOW_PAGE = 1000  # records per poll while following; more are fetched at once when a burst arrives

# Reading the flow from the gateway's point of view: "in" came from the peer, "out" went to it.
_ARROWS = {"in": "{peer} -> gw", "out": "gw -> {peer}"}
_COLUMNS: list[tuple[str, str, int, int]] = [
    # (heading, field, minimum width, maximum width for alignment; longer values just overflow)
    ("TS", "ts", 24, 24),
    ("FLOW", "flow", 13, 20),
    ("VER", "ocpp_version", 5, 5),
    ("TYPE", "message_type", 10, 15),
    ("ACTION", "action", 6, 28),
    ("UNIQUE ID", "unique_id", 9, 36),
    ("ERROR", "error_code", 5, 28),
]


async def logs_command(
    store_url: str,
    charger_id: str | None,
    limit: int,
    jsonl: bool,
    follow: bool,
    out: TextIO = sys.stdout,
    *,
    poll_interval: float = 0.5,
    err: TextIO = sys.stderr,
) -> int:
    """Print the newest ``limit`` records of a charger (all chargers if None); with ``follow``, keep printing new ones.

    Returns the process exit code: 0, or 1 when the store cannot be read or (not following) holds no
    message for the charger, so scripts can tell a typo in the id from an empty answer.
    Following ends with KeyboardInterrupt (exit 0) or cancellation.
    """
    try:
        store = open_store(store_url, retention_days=None)
    except ValueError as exc:
        print(f"ocpp-gateway logs: {exc}", file=err)
        return 1
    printer = _Printer(out, jsonl, show_charger=charger_id is None)
    try:
        try:
            rows = await store.messages(charger_id, limit=limit)
        except StoreError as exc:
            print(f"ocpp-gateway logs: {exc}", file=err)
            return 1
        printer.print(rows)
        out.flush()
        if not rows and not follow:
            print(f"ocpp-gateway logs: no messages for {charger_id or 'any charger'} in {store.description}", file=err)
            return 1
        if follow:
            last_id = rows[-1]["id"] if rows else await _last_id(store, charger_id)
            await _follow(store, charger_id, last_id, printer, poll_interval, err)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        await store.close()


def run_logs(
    store_url: str, charger_id: str | None, limit: int, jsonl: bool, follow: bool, out: TextIO = sys.stdout
) -> int:
    """``logs_command`` for a synchronous CLI entry point: Ctrl-C ends following with exit code 0."""
    try:
        return asyncio.run(logs_command(store_url, charger_id, limit, jsonl, follow, out))
    except KeyboardInterrupt:
        return 0


async def _last_id(store: Store, charger_id: str | None) -> int:
    rows = await store.messages(charger_id, limit=1)
    return int(rows[-1]["id"]) if rows else 0


async def _follow(
    store: Store, charger_id: str | None, last_id: int, printer: _Printer, poll_interval: float, err: TextIO
) -> None:
    failing = False
    while True:
        await asyncio.sleep(poll_interval)
        while True:
            try:
                rows = await store.messages(charger_id, limit=FOLLOW_PAGE, after_id=last_id)
            except StoreError as exc:
                if not failing:  # say it once per outage, keep trying: the gateway may be restarting
                    print(f"ocpp-gateway logs: {exc}; retrying", file=err)
                    failing = True
                break
            failing = False
            if rows:
                printer.print(rows)
                printer.out.flush()
                last_id = rows[-1]["id"]
            if len(rows) < FOLLOW_PAGE:
                break


class _Printer:
    """Formats records as aligned table rows (widths fixed by the first page) or JSON lines."""

    def __init__(self, out: TextIO, jsonl: bool, show_charger: bool) -> None:
        self.out = out
        self.jsonl = jsonl
        self.columns = list(_COLUMNS)
        if show_charger:
            self.columns.insert(1, ("CHARGER", "charger_id", 7, 24))
        self.widths: list[int] | None = None
        self.payload_width: int | None = None

    def print(self, rows: list[dict[str, Any]]) -> None:
        if self.jsonl:
            for row in rows:
                self.out.write(orjson.dumps(row).decode() + "\n")
            return
        if not rows:
            return
        cells = [self._cells(r) for r in rows]
        if self.widths is None:
            self.widths = [
                max(lo, min(hi, max(len(c[i]) for c in cells))) for i, (_, _, lo, hi) in enumerate(self.columns)
            ]
            used = sum(self.widths) + 2 * len(self.widths)
            if _isatty(self.out):
                self.payload_width = max(40, shutil.get_terminal_size().columns - used)
            self.out.write(self._line([h for h, *_ in self.columns], "PAYLOAD") + "\n")
        for row, c in zip(rows, cells, strict=True):
            self.out.write(self._line(c, _payload_text(row, self.payload_width)) + "\n")

    def _cells(self, row: dict[str, Any]) -> list[str]:
        values = dict(row)
        values["flow"] = _ARROWS.get(row["direction"], "{peer} ? " + str(row["direction"])).format(peer=row["peer"])
        return ["" if values.get(f) is None else str(values[f]) for _, f, _, _ in self.columns]

    def _line(self, cells: list[str], payload: str) -> str:
        assert self.widths is not None
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)) + "  " + payload


def _payload_text(row: dict[str, Any], width: int | None) -> str:
    payload = row["payload"]
    text = row["frame"] if payload is None else orjson.dumps(payload).decode()
    if row["error_code"] is not None:
        text = _error_description(row["frame"]) + text
    if row.get("note"):
        text += f"  # {row['note']}"
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _error_description(frame: str) -> str:
    """The errorDescription of a CALLERROR frame, quoted and followed by a space ("" if none)."""
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(msg, list) and len(msg) > 3 and isinstance(msg[3], str) and msg[3]:
        return orjson.dumps(msg[3]).decode() + " "
    return ""


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
