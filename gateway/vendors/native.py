"""Migration to native OCPP: point a cloud-locked charger at the gateway itself.

Where the vendor's API can switch a charger to its own OCPP client (Easee's
local-OCPP connection details), ``switch_to_native`` stores the gateway's
OCPP URL plus the charger's gateway id as the charger's OCPP endpoint and
applies it. The charger then connects to the gateway with the same id it
had as a virtual charger: same route, same message log, same history. The
gateway replaces the virtual charger's connection with the real one, and
the vendor runner steps aside for good (the switch is also remembered in
the store under ``vendor-native:<charger id>``).

The CLI (``ocpp-gateway vendor native-ocpp <charger_id> --config F
[--url ws://gateway.example:9000/ocpp]``) calls ``main``.

The OCPP URL is the gateway's address *as the charger reaches it*; the
listen address (often 0.0.0.0) cannot tell, so it comes from ``--url`` or
the account's ``options.ocpp_url``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from adapters import vendor_base as vb
from adapters.vendor_base import Unsupported, VendorApiError, VendorAuthError, VendorUnavailable
from gateway.config import GatewayConfig, VendorAccount
from gateway.vendors.client import CredentialsError, VendorClient, load_credentials
from gateway.vendors.manager import default_charger_id, native_key, state_key


class NativeError(Exception):
    """The switch cannot be made (the message says why)."""


def _find(config: GatewayConfig, charger_id: str) -> tuple[str, VendorAccount, str | None]:
    """The account that presents ``charger_id`` and, when the config tells, the charger's vendor id."""
    for name, account in config.vendors.items():
        for vendor_id, entry in account.chargers.items():
            if entry.id == charger_id or default_charger_id(account.adapter, vendor_id) == charger_id:
                return name, account, vendor_id
    for name, account in config.vendors.items():
        prefix = f"{account.adapter}-"
        if charger_id.startswith(prefix):
            return name, account, None
    known = ", ".join(config.vendors) or "none"
    raise NativeError(f"{charger_id}: no vendor account presents this charger (accounts: {known})")


async def switch_to_native(
    config: GatewayConfig,
    charger_id: str,
    *,
    ocpp_url: str | None = None,
    store: Any = None,
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Point vendor charger ``charger_id`` at ``<ocpp_url>/<charger_id>`` over native OCPP."""
    name, account, vendor_id = _find(config, charger_id)
    adapter = vb.adapter_for(account.adapter, account.options)
    if not adapter.supports_native_ocpp:
        raise NativeError(f"{charger_id}: the {adapter.vendor_name} cloud API cannot switch a charger to OCPP")
    base = ocpp_url or account.options.get("ocpp_url")
    if not base:
        raise NativeError(f"{charger_id}: give the gateway's OCPP URL as the charger reaches it "
                          f"(--url or vendors.{name}.options.ocpp_url)")
    if not str(base).startswith(("ws://", "wss://")):
        raise NativeError(f"{charger_id}: the OCPP URL must start with ws:// or wss:// (got {base})")
    if store is not None:
        state = await store.load_state(state_key(charger_id)) or {}
        if state.get("tx") is not None:
            raise NativeError(f"{charger_id}: a transaction is running; switch when the charger is idle so the "
                              "CSMS sees it end")
    try:
        credentials = load_credentials(name, account, environ)
    except CredentialsError as exc:
        raise NativeError(str(exc)) from None
    client = VendorClient(adapter, name, account, credentials, store=store)
    url = f"{str(base).rstrip('/')}/{charger_id}"
    try:
        found = await client.run(adapter.discover())
        info = next((c for c in found if c.vendor_id == vendor_id or c.serial == vendor_id
                     or default_charger_id(adapter.name, c.vendor_id) == charger_id), None)
        if info is None:
            raise NativeError(f"{charger_id}: the {adapter.vendor_name} account {name} does not list this charger")
        result = await client.run(adapter.native_ocpp(info, url), charger_id)
    except Unsupported as exc:
        raise NativeError(f"{charger_id}: {exc}") from None
    except (VendorUnavailable, VendorAuthError, VendorApiError) as exc:
        raise NativeError(f"{charger_id}: the vendor cloud refused or failed: {exc}") from None
    finally:
        await client.close()
    marker = {"native": True, "since": time.time(), "url": url, "vendor_id": info.vendor_id, **result}
    if store is not None:
        store.save_state(native_key(charger_id), marker)
    return marker


async def _main(config: GatewayConfig, charger_id: str, url: str | None) -> dict[str, Any]:
    from gateway.store import open_store

    store = open_store(config.store, retention_days=config.retention_days)
    await store.start()
    try:
        return await switch_to_native(config, charger_id, ocpp_url=url, store=store)
    finally:
        await store.close()


def main(config: GatewayConfig, charger_id: str, url: str | None = None) -> int:
    """``ocpp-gateway vendor native-ocpp``: 0 on success, 1 with a one-line reason on stderr."""
    try:
        result = asyncio.run(_main(config, charger_id, url))
    except NativeError as exc:
        print(f"native-ocpp: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    print(f"{charger_id} will connect natively to {result['url']}; the gateway keeps its id, route and history.",
          file=sys.stderr)
    return 0
