"""The gateway's YAML configuration, validated with pydantic.

``load_config`` is the only entry point: it reads the file, validates it and
raises ``ConfigError`` whose message names the file, the key and the problem,
so ``ocpp-gateway run`` can exit non-zero with a line an operator can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.ocppj import Version


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerTls(_Model):
    """TLS for chargers (OCPP security profiles 2 and 3)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = Field(None, description="CA that signs charger certificates (profile 3)")
    require_client_cert: bool = Field(False, description="mutual TLS: the certificate's CN must be the charger id")


class ClientTls(_Model):
    """TLS towards a CSMS (wss://): a private CA and/or a client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class Listen(_Model):
    host: str = "0.0.0.0"
    port: int = Field(9000, ge=0, le=65535)
    tls: ServerTls | None = None


class Admin(_Model):
    host: str = "127.0.0.1"
    port: int = Field(9100, ge=0, le=65535)
    token_env: str | None = Field(
        None, description="environment variable with a bearer token that /api/* requires (/metrics and /healthz "
        "stay open)"
    )


class Keepalive(_Model):
    """WebSocket ping/pong on one side; a peer that misses a pong is dropped and cleaned up."""

    ping_interval: float | None = Field(20.0, gt=0)
    ping_timeout: float | None = Field(20.0, gt=0)
    close_timeout: float = Field(5.0, gt=0, description="seconds a closing handshake may take before the cut")


class CsmsEndpoint(_Model):
    """A named upstream CSMS: chargers routed here connect to ``<url>/<charger_id>``."""

    url: str
    ocpp: Version
    connect_timeout: float = Field(10.0, gt=0)
    call_timeout: float | None = Field(None, gt=0, description="overrides the gateway-wide call_timeout")
    basic_auth_password_env: str | None = Field(
        None, description="environment variable with the HTTP Basic password sent upstream (user = charger id)"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    tls: ClientTls | None = None

    @field_validator("url")
    @classmethod
    def _ws_url(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v.rstrip("/")

    @field_validator("ocpp", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, Version):
            return v
        return Version.parse(str(v)) if isinstance(v, str | float | int) else v


class Route(_Model):
    primary: str
    shadow: str | None = None


class ChargerEntry(_Model):
    route: Route | None = None
    ocpp: Version | None = Field(None, description="the charger's version, for chargers that offer no subprotocol")
    id_token_type: str = "ISO14443"
    connectors_per_evse: int = Field(1, ge=1)
    validation: Literal["strict", "repair", "observe"] | None = None
    password_env: str | None = Field(
        None, description="environment variable with the charger's HTTP Basic password (security profiles 1-2)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="extra translator options")

    @field_validator("ocpp", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, Version):
            return v
        return Version.parse(str(v)) if isinstance(v, str | float | int) else v


class Upstream(_Model):
    """How the gateway keeps its own connection to each charger's CSMS."""

    reconnect_initial: float = Field(1.0, gt=0)
    reconnect_max: float = Field(60.0, gt=0)
    reconnect_jitter: float = Field(0.3, ge=0, le=1)
    max_concurrent_connects: int = Field(200, ge=1)


class Admission(_Model):
    """Admission control on accept, so a reconnect flood neither stalls the gateway nor hammers the CSMS."""

    rate: float = Field(200.0, gt=0, description="new charger connections admitted per second (token bucket)")
    burst: int = Field(400, ge=1, description="connections admitted at once before the rate applies")
    max_pending: int = Field(500, ge=1, description="handshakes being set up at once; more get HTTP 503")


class Metrics(_Model):
    per_charger: bool = Field(False, description="label frame counters with charger_id (off for large estates)")


class Migration(_Model):
    """When shadow comparisons say a charger is ready to move (docs/shadow-and-compare.md)."""

    ready_after: int = Field(
        20, ge=1, description="a charger is ready once this many exchanges in a row were compared without a "
        "status, error, missing or timeout difference"
    )
    differences_kept: int = Field(50, ge=1, le=1000, description="differing exchanges kept per charger")


class Logging(_Model):
    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"


class VendorCharger(_Model):
    id: str | None = None
    route: Route | None = None


class VendorAccount(_Model):
    adapter: str
    base_url: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    credentials_file: str | None = None
    poll_interval: float = Field(30.0, gt=0)
    route: Route | None = None
    chargers: dict[str, VendorCharger] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class GatewayConfig(_Model):
    listen: Listen = Listen()
    admin: Admin = Admin()
    store: str = "sqlite:////var/lib/ocpp-gateway/gateway.db"
    retention_days: float | None = Field(30.0, gt=0)
    csms: dict[str, CsmsEndpoint]
    default_route: Route | None = None
    allow_unknown_chargers: bool = False
    require_charger_auth: bool = Field(False, description="refuse chargers without a configured password")
    chargers: dict[str, ChargerEntry] = Field(default_factory=dict)
    call_timeout: float = Field(30.0, gt=0)
    held_retry_interval: float = Field(
        30.0, gt=0, description="seconds between retries of messages a translator holds while the charger is quiet"
    )
    max_frame_bytes: int = Field(65536, ge=1024)
    upstream: Upstream = Upstream()
    charger_keepalive: Keepalive = Keepalive()
    csms_keepalive: Keepalive = Keepalive()
    metrics: Metrics = Metrics()
    migration: Migration = Migration()
    logging: Logging = Field(default_factory=Logging)
    mapping_dirs: list[str] = Field(default_factory=list, description="operator mapping tables, read at start-up")
    validation: Literal["strict", "repair", "observe"] = "strict"
    validation_by_model: dict[str, Literal["strict", "repair", "observe"]] = Field(
        default_factory=dict, description="policy by the model a charger reports at boot"
    )
    admission: Admission = Admission()
    vendors: dict[str, VendorAccount] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _routes_exist(self) -> GatewayConfig:
        def check(route: Route | None, where: str) -> None:
            if route is None:
                return
            for role, name in (("primary", route.primary), ("shadow", route.shadow)):
                if name is not None and name not in self.csms:
                    known = ", ".join(sorted(self.csms)) or "none"
                    raise ValueError(f"{where}.{role}: no csms named {name!r} (known: {known})")

        check(self.default_route, "default_route")
        for cid, entry in self.chargers.items():
            check(entry.route, f"chargers.{cid}.route")
        for name, account in self.vendors.items():
            check(account.route, f"vendors.{name}.route")
        if self.allow_unknown_chargers and self.default_route is None:
            raise ValueError("allow_unknown_chargers: true needs a default_route")
        for cid, entry in self.chargers.items():
            if entry.route is None and self.default_route is None:
                raise ValueError(f"chargers.{cid}: no route and no default_route")
        return self

    def route_for(self, charger_id: str) -> Route | None:
        """The charger's route, or None when the charger is unknown and unknown ones are refused."""
        entry = self.chargers.get(charger_id)
        if entry is not None:
            return entry.route or self.default_route
        if self.allow_unknown_chargers:
            return self.default_route
        return None


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, path: str = "<config>") -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate the YAML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))
