"""The interface one vendor's cloud API implements: account, discovery, polling and command primitives."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from adapters.vendor_base.api import Flow, T, Unsupported
from adapters.vendor_base.model import ChargerInfo, Credentials, Reading, Token


class VendorAdapter(abc.ABC):
    """One vendor's cloud API. Subclasses describe requests; they never perform them."""

    name: ClassVar[str]  # registry name, used in config (`adapter: easee`) and in the log peer
    vendor_name: ClassVar[str]  # BootNotification vendorName
    default_base_url: ClassVar[str]
    # The client-side request budget the runner keeps for one account: (requests, per seconds).
    request_budget: ClassVar[tuple[int, float]] = (60, 60.0)
    supports_native_ocpp: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    # ---- account

    @abc.abstractmethod
    def login(self, credentials: Credentials, now: float) -> Flow[Token]:
        """Log in; raise ``VendorAuthError`` when the credentials are refused."""

    def refresh(self, token: Token, now: float) -> Flow[Token] | None:
        """Refresh ``token``, or None when the vendor has no refresh (the runner logs in again)."""
        return None

    @abc.abstractmethod
    def discover(self) -> Flow[list[ChargerInfo]]:
        """Every charger the account can see."""

    # ---- per charger

    @abc.abstractmethod
    def poll(self, charger: ChargerInfo, state: dict[str, Any]) -> Flow[Reading]:
        """The charger's current state. ``state`` is read-only here (the previous poll's view)."""

    # ---- command primitives: a flow that returns when the vendor accepted, raises otherwise

    def start(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        raise Unsupported("start charging")

    def stop(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        raise Unsupported("stop charging")

    def set_current(self, charger: ChargerInfo, amps: float | None, reading: Reading) -> Flow[None]:
        """Limit the charger to ``amps`` per phase; None lifts the limit."""
        raise Unsupported("dynamic current limit")

    def reboot(self, charger: ChargerInfo) -> Flow[None]:
        raise Unsupported("reboot")

    def set_available(self, charger: ChargerInfo, available: bool) -> Flow[None]:
        raise Unsupported("enable/disable")

    def update_firmware(self, charger: ChargerInfo) -> Flow[None]:
        raise Unsupported("firmware update")

    # ---- migration to native OCPP

    def native_ocpp(self, charger: ChargerInfo, ocpp_url: str) -> Flow[dict[str, Any]]:
        """Point the charger at ``ocpp_url`` over its own OCPP (where the vendor can)."""
        raise Unsupported("switching to native OCPP")

    # ---- helpers for subclasses

    def option(self, key: str, default: T) -> T:
        value = self.options.get(key, default)
        return value  # type: ignore[no-any-return]
