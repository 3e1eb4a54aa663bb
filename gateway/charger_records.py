"""What the gateway remembers about every charger it has seen, connected or not.

A charger record is a small dict kept in the store under ``__charger__:<id>``:
its version, vendor, model and firmware (from its last BootNotification),
when it was last heard from, when it connected and disconnected, on which
instance, and the schema violations and offline queue of its last session.
The admin API shows it for chargers that are not connected, so an offline
charger is still described seconds (or a restart) after it left.

Records are written at connect, at disconnect, and by a periodic sweep while
connected (a new boot's identity at once, last-seen every few minutes), never
per frame: a store write per frame would double the store's load for a value
the connection already holds live; the sweep bounds what a crash can lose.
"""

from __future__ import annotations

from typing import Any

RECORD_PREFIX = "__charger__:"
VIOLATIONS_KEPT = 20  # of the last session's distinct violations, the first ones seen
LAST_SEEN_EVERY = 300.0  # seconds: how stale a connected charger's stored last_seen may get
IDENTITY = ("ocpp_version", "vendor", "model", "firmware")


def boot_identity(boot: Any) -> dict[str, str | None]:
    """Vendor, model and firmware from a BootNotification payload of any version (None where absent)."""
    if not isinstance(boot, dict):
        return {"vendor": None, "model": None, "firmware": None}
    station = boot.get("chargingStation")
    if isinstance(station, dict):  # 2.0.1 / 2.1
        return {"vendor": station.get("vendorName"), "model": station.get("model"),
                "firmware": station.get("firmwareVersion")}
    return {"vendor": boot.get("chargePointVendor"), "model": boot.get("chargePointModel"),
            "firmware": boot.get("firmwareVersion")}


def from_connection(previous: dict[str, Any] | None, described: dict[str, Any], boot: Any,
                    last_seen: float | None, connected_since: float, instance: str) -> dict[str, Any]:
    """The record of a connected charger: its live description over what was known before."""
    record = dict(previous or {})
    record.update(ocpp_version=described.get("ocpp_version"), instance=instance, connected_since=connected_since,
                  validation_policy=described.get("validation_policy"))
    identity = boot_identity(boot)
    if isinstance(boot, dict):  # a charger that has not booted in this session keeps its last boot's identity
        record.update(identity)
    else:
        for key, value in identity.items():
            record.setdefault(key, value)
    if last_seen is not None:
        record["last_seen"] = last_seen
    return record


def at_disconnect(record: dict[str, Any], described: dict[str, Any], now: float) -> dict[str, Any]:
    """The record as the charger leaves: last-seen exact, its session's violations and offline queue kept."""
    out = dict(record)
    out["disconnected_at"] = now
    out["violations"] = list(described.get("violations") or [])[:VIOLATIONS_KEPT]
    if described.get("offline") is not None:
        out["offline"] = described["offline"]
    return out


def sweep_due(stored: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """Whether a connected charger's record must be written now: new identity (a boot) or a stale last-seen."""
    if stored is None:
        return True
    if any(stored.get(k) != current.get(k) for k in IDENTITY):
        return True
    seen, was = current.get("last_seen"), stored.get("last_seen")
    return seen is not None and (was is None or seen - was >= LAST_SEEN_EVERY)
