"""``ocpp-gateway demo``: a migration told in a few minutes, everything in one process on loopback.

The story: a mixed estate of simulated 1.6J and 2.0.1 chargers runs on a
legacy 1.6J CSMS while every CALL is shadowed to a new 2.0.1 CSMS, which
answers one id tag differently. (1) Shadowing: exchanges are compared field
by field and the difference is named. (2) A wave of chargers that showed no
difference is cut over live (``Gateway.set_route``, ``when="now"``): no
charger reconnects, and transactions open at the cut stay with the legacy
CSMS until they end. (3) Totals: transactions and energy per CSMS against
what the chargers metered, and what was lost (nothing).

Counters, defined once (the README repeats them):

- *chargers connected*: simulated chargers with an open socket (the fleet's
  count); *booted*: distinct chargers whose BootNotification was accepted;
  *gateway sessions*: connections the gateway holds (the simulated chargers
  plus cloud-locked vendor chargers, shown apart).
- *frames from chargers*: frames the simulated chargers wrote (their own
  count); *received by the gateway*: frames the gateway's metrics counted
  in from those charger ids. At the end they are equal; their difference
  plus CALLs left unanswered is *messages lost*.
- *reconnects*: connections beyond each charger's first, counted by the
  fleet (a cut-over must not make a charger reconnect).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.app import Gateway
from gateway.config import Route, parse_config
from gateway.ocppj import Version
from gateway.sim.csms import CsmsTransaction, DemoCsms
from gateway.sim.fleet import Fleet
from gateway.vendors.demo import VendorDemo

LEGACY, NEW = "legacy-csms", "new-csms"
USUAL_TAG, DIFFERENT_TAG = "DEMO-TAG-OK", "DEMO-TAG-B"  # the new CSMS blocks DEMO-TAG-B; legacy accepts it
CUT_AT = 0.4  # of the duration: shadowing before, the live cut-over then
WIND_DOWN_AT = 0.8  # of the duration: no new sessions after this, so the totals close
UNBOUNDED_CUT_AFTER = 30.0  # seconds, when the demo runs until Ctrl-C
EVERY = 2.0  # seconds between summary lines
CLOUD_NOTE = " Cloud-locked Easee and Zaptec chargers join through their vendor clouds."


def frames_by_chargers(gw: Gateway, chargers: set[str], direction: str) -> int:
    """Frames the gateway counted to (``out``) or from (``in``) these chargers (needs per-charger metrics)."""
    total = 0.0
    for family in gw.metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if (sample.name == "ocpp_gateway_frames_total" and labels.get("peer") == "charger"
                    and labels.get("direction") == direction and labels.get("charger_id") in chargers):
                total += sample.value
    return int(total)


@dataclass(slots=True)
class Ledger:
    """Transactions one CSMS ran as primary for the fleet: started, ended, energy of the ended ones."""

    started: int = 0
    ended: int = 0
    energy_wh: float = 0.0

    def add(self, tx: CsmsTransaction) -> None:
        self.started += 1
        if not tx.active:
            self.ended += 1
            self.energy_wh += tx.energy_wh or 0.0


@dataclass(slots=True)
class Story:
    """What the demo did and saw, for the live lines and the final totals."""

    chargers: set[str]
    wave: list[str] = field(default_factory=list)
    # Per wave charger, the new CSMS's transactions before the cut: shadow copies, not transactions it ran.
    shadow_copies: dict[str, set[str]] = field(default_factory=dict)
    held_by_legacy: dict[str, set[str]] = field(default_factory=dict)  # wave chargers' open transactions at the cut
    phase: str = "shadowing"


def comparisons(gw: Gateway) -> tuple[int, int]:
    """Exchanges compared with the new CSMS, and how many differed."""
    summary = gw.migration()["summary"]
    return int(summary["compared"]), int(summary["differed"])


def differences(gw: Gateway) -> Counter[tuple[str, str, str, str]]:
    """The kept differing exchanges by (action, field, legacy's value, new's value)."""
    found: Counter[tuple[str, str, str, str]] = Counter()
    for book in gw.comparisons.values():
        for entry in book.differences:
            for d in entry["differences"]:
                found[(entry["action"], d["path"], repr(d["primary"]), repr(d["shadow"]))] += 1
    return found


def ledgers(legacy: DemoCsms, new: DemoCsms, story: Story) -> tuple[Ledger, Ledger]:
    """The fleet's transactions each CSMS ran as primary (the new CSMS's shadow copies left out)."""
    on_legacy, on_new = Ledger(), Ledger()
    for cid in story.chargers:
        if cid in legacy.chargers:
            for tx in legacy.charger(cid).transactions.values():
                on_legacy.add(tx)
        if cid in story.wave and cid in new.chargers:
            copies = story.shadow_copies.get(cid, set())
            for key, tx in new.charger(cid).transactions.items():
                if key not in copies:
                    on_new.add(tx)
    return on_legacy, on_new


def still_held(legacy: DemoCsms, story: Story) -> int:
    """Transactions open at the cut that are still running on the legacy CSMS."""
    return sum(1 for cid, keys in story.held_by_legacy.items() for key in keys
               if legacy.charger(cid).transactions[key].active)


def live_line(gw: Gateway, fleet: Fleet, legacy: DemoCsms, story: Story, started: float) -> str:
    s = fleet.stats
    sent = s.counters.frames_sent
    received = frames_by_chargers(gw, story.chargers, "in")
    compared, differed = comparisons(gw)
    agree = f"{100.0 * (compared - differed) / compared:.1f}%" if compared else "-"
    cloud = len(gw.connections) - sum(1 for cid in gw.connections if cid in story.chargers)
    line = (
        f"[{time.monotonic() - started:5.0f}s] {story.phase:<9} | chargers connected {s.connected}/{s.chargers}, "
        f"booted {len(s.booted)}, reconnects {s.reconnects} | gateway sessions {len(gw.connections)}"
        f"{f' (+{cloud} cloud-locked)' if cloud else ''} | frames from chargers {sent}, received {received} | "
        f"compared {compared}, agree {agree} | sessions {s.sessions} ({s.energy_wh / 1000:.1f} kWh)"
    )
    if story.held_by_legacy:
        line += f" | open at cut, still on legacy {still_held(legacy, story)}"
    return line


def pick_wave(gw: Gateway, story: Story, tags: dict[str, str]) -> list[str]:
    """Up to half the fleet: chargers compared without a difference (the ones the comparison says are ready)."""
    size = math.ceil(len(story.chargers) / 2)
    clean = [cid for cid in sorted(story.chargers) if gw.shadow_tally(cid, NEW)[0] and not gw.shadow_tally(cid, NEW)[1]]
    if not clean:  # too short a shadowing to judge: fall back to chargers with the usual tag
        clean = [cid for cid in sorted(story.chargers) if tags[cid] == USUAL_TAG]
    return clean[:size]


async def cut_over(gw: Gateway, legacy: DemoCsms, new: DemoCsms, story: Story, wave: list[str],
                   out: TextIO) -> None:
    story.wave = wave
    for cid in wave:
        story.shadow_copies[cid] = set(new.charger(cid).transactions) if cid in new.chargers else set()
        open_now = ({k for k, t in legacy.charger(cid).transactions.items() if t.active}
                    if cid in legacy.chargers else set())
        if open_now:
            story.held_by_legacy[cid] = open_now
    changes = await asyncio.gather(*(gw.set_route(cid, Route(primary=NEW, shadow=None), when="now", actor="demo")
                                     for cid in wave))
    states = Counter(c.state.value if hasattr(c.state, "value") else str(c.state) for c in changes)
    held = sum(len(v) for v in story.held_by_legacy.values())
    story.phase = "cut over"
    print(f"\n== 2. Cut-over, live: {len(wave)} chargers that showed no difference move to {NEW} "
          f"({', '.join(wave)})\n"
          f"   route changes: {', '.join(f'{n} {state}' for state, n in sorted(states.items()))}; "
          f"{held} transactions open on {LEGACY} stay there until they end; no charger is disconnected.\n",
          file=out, flush=True)


def verdicts(gw: Gateway, fleet: Fleet, legacy: DemoCsms, new: DemoCsms, story: Story,
             out: TextIO) -> list[str]:
    """Print the totals; return the invariants that failed (empty: every counter agrees)."""
    s = fleet.stats
    on_legacy, on_new = ledgers(legacy, new, story)
    sent, received = s.counters.frames_sent, frames_by_chargers(gw, story.chargers, "in")
    unanswered = s.counters.timeouts
    lost = (sent - received) + unanswered
    compared, differed = comparisons(gw)
    csms_wh = on_legacy.energy_wh + on_new.energy_wh
    print(
        f"\n== 3. Totals\n"
        f"   {'':<12} {'started':>8} {'ended':>6} {'energy (Wh)':>12}\n"
        f"   {LEGACY:<12} {on_legacy.started:>8} {on_legacy.ended:>6} {on_legacy.energy_wh:>12.0f}\n"
        f"   {NEW:<12} {on_new.started:>8} {on_new.ended:>6} {on_new.energy_wh:>12.0f}\n"
        f"   chargers metered {s.sessions} sessions, {s.energy_wh} Wh; the CSMSs recorded "
        f"{on_legacy.ended + on_new.ended} sessions, {csms_wh:.0f} Wh\n"
        f"   shadow comparison: {compared} exchanges, {differed} differed\n"
        f"   chargers: {len(s.booted)} of {s.chargers} booted, reconnects {s.reconnects}\n"
        f"   frames from chargers {sent}, received by the gateway {received}; CALLs unanswered {unanswered}\n"
        f"   messages lost: {lost}",
        file=out, flush=True,
    )
    failed = []
    if lost:
        failed.append(f"messages lost {lost}")
    if s.reconnects:
        failed.append(f"reconnects {s.reconnects}")
    if on_legacy.ended + on_new.ended != s.sessions or round(csms_wh) != s.energy_wh:
        failed.append("the CSMSs' transactions or energy differ from what the chargers metered")
    if len(s.booted) != s.chargers:
        failed.append(f"{s.chargers - len(s.booted)} chargers never booted")
    return failed


async def demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    legacy = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V201,), auth={DIFFERENT_TAG: "Blocked"}).start()
    versions = (Version.V16, Version.V201) if args.translate else (Version.V16,)
    ids = [f"DEMO{i:04d}" for i in range(1, args.chargers + 1)]
    tags = {cid: DIFFERENT_TAG if i % 4 == 0 else USUAL_TAG for i, cid in enumerate(ids)}
    fleet = Fleet(
        "", versions=versions, ids=ids, id_tag_of=tags, heartbeat_interval=10.0, session_pause=(1.0, 4.0),
        meter_interval=(0.3, 1.0), ramp_up=min(3.0, 0.05 * args.chargers),
    )
    settings: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": args.port},
        "admin": {"host": "127.0.0.1", "port": args.admin_port},
        "store": args.store,
        "csms": {LEGACY: {"url": legacy.url, "ocpp": "1.6"}, NEW: {"url": new.url, "ocpp": "2.0.1"}},
        "chargers": {cid: {"route": {"primary": LEGACY, "shadow": NEW}} for cid in ids},
        "metrics": {"per_charger": True},  # a demo-sized estate: frames are counted per charger id
        "call_timeout": 15,
    }
    vendor_demo = None
    if args.vendors:
        # Cloud-locked chargers join the legacy CSMS too: Easee and Zaptec through their vendor clouds.
        vendor_demo = VendorDemo(easee_route=LEGACY, zaptec_route=LEGACY)
        settings["vendors"] = await vendor_demo.start()
    gw = Gateway(parse_config(settings, "<demo>"))
    try:
        await gw.start()
    except OSError as exc:
        await asyncio.gather(legacy.stop(), new.stop())
        if vendor_demo is not None:
            await vendor_demo.stop()
        print(f"ocpp-gateway demo: cannot listen ({exc.strerror}); try --port 0 --admin-port 0", file=sys.stderr)
        return 1
    fleet.url = f"ws://127.0.0.1:{gw.listen_port}/ocpp"
    admin = f"http://127.0.0.1:{gw.admin_port}"
    story = Story(chargers=set(ids))
    mix = ", ".join(f"{sum(1 for v in fleet.versions.values() if v is ver)} x {ver.value}" for ver in versions)
    print(
        f"OCPP migration gateway demo: moving an estate from {LEGACY} (1.6J) to {NEW} (2.0.1)\n"
        f"  chargers connect to ws://127.0.0.1:{gw.listen_port}/ocpp/<id>\n"
        f"  console:      {admin}/          migration: {admin}/api/migration\n"
        f"  chargers:     {admin}/api/chargers   metrics: {admin}/metrics\n"
        f"  message log:  ocpp-gateway logs {ids[0]} --store {args.store}\n"
        f"  Ctrl-C ends the demo early (with the totals).\n"
        f"\n== 1. Shadowing: {len(ids)} chargers ({mix}) on {LEGACY}; every CALL is copied to {NEW} and the "
        f"answers compared field by field.\n"
        f"   {NEW} answers tag {DIFFERENT_TAG} (used by {sum(1 for t in tags.values() if t == DIFFERENT_TAG)} "
        f"chargers) differently.{CLOUD_NOTE if vendor_demo else ''}\n",
        file=out, flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    bounded = args.duration > 0
    cut_at = started + (args.duration * CUT_AT if bounded else UNBOUNDED_CUT_AFTER)
    wind_at = started + args.duration * WIND_DOWN_AT if bounded else math.inf
    deadline = started + args.duration if bounded else math.inf
    failed: list[str] = []
    await fleet.start()
    try:
        while not stop.is_set() and time.monotonic() < wind_at:
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, min(EVERY, wind_at - time.monotonic())))
            except TimeoutError:
                pass
            print(live_line(gw, fleet, legacy, story, started), file=out, flush=True)
            if not story.wave and time.monotonic() >= cut_at and not stop.is_set():
                compared, differed = comparisons(gw)
                named = differences(gw).most_common(3)
                print(f"\n   shadowing: {compared} exchanges compared, {compared - differed} agree"
                      f"{f' ({100.0 * (compared - differed) / compared:.1f}%)' if compared else ''}; differences:",
                      file=out)
                for (action, path, was, now), n in named:
                    print(f"     {action} {path}: {LEGACY} {was}, {NEW} {now} ({n}x)", file=out)
                if not named:
                    print("     none yet", file=out)
                await cut_over(gw, legacy, new, story, pick_wave(gw, story, tags), out)
        story.phase = "ending"
        print("\n   winding down: no new sessions; waiting for the running ones to end", file=out, flush=True)
        await fleet.wind_down(max(5.0, deadline - time.monotonic()) if bounded else 15.0)
        await asyncio.sleep(0.5)  # the last answers reach the CSMSs' ledgers
        print(live_line(gw, fleet, legacy, story, started), file=out, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await fleet.stop()
        await gw.store.flush()
        failed = verdicts(gw, fleet, legacy, new, story, out)
        await gw.stop()
        await asyncio.gather(legacy.stop(), new.stop())
        if vendor_demo is not None:
            await vendor_demo.stop()
    if vendor_demo is not None:
        print(f"   cloud-locked chargers: simulated EVs drew {vendor_demo.sessions_wh / 1000:.1f} kWh through the "
              "Easee and Zaptec adapters", file=out)
    print(f"\nDone: {'every counter agrees' if not failed else 'DISAGREES: ' + '; '.join(failed)}. "
          f"Message log flushed to {args.store}.", file=out, flush=True)
    return 0 if not failed else 2


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(demo(args))


__all__ = ["run_demo"]
