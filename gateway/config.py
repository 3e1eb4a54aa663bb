"""The gateway's YAML configuration, validated with pydantic.

``load_config`` is the only entry point: it reads the file, validates it and
raises ``ConfigError`` whose message names the file, the key and the problem,
so ``ocpp-gateway run`` can exit non-zero with a line an operator can act on.
"""

from __future__ import annotations

import difflib
import os
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from gateway import charger_ids
from gateway.ocppj import Version


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why (one line per problem)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else message.splitlines()


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
    id_token_type: str | None = Field(
        None, description="idToken type for every 1.6 idTag going to 2.x; unset: inferred from each tag's shape"
    )
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
    """Admission control on accept, so a reconnect flood neither stalls the gateway nor hammers the CSMS.

    The defaults come from the reconnect-storm measurement in docs/benchmark.md (issue 18): one gateway process sets
    up about 700 chargers a second on a core (about 1.4 ms of CPU each, plain WebSocket), so admitting faster only
    queues handshakes inside it, while each HTTP 503 costs about 0.4 ms too. With these, 5,000 chargers can be back
    within (5,000 - burst) / rate = 5 s of admission, and the CSMS sees at most ``rate`` new connections and
    BootNotifications a second: lower ``rate`` for a CSMS that cannot take that.
    """

    rate: float = Field(700.0, gt=0, description="new charger connections admitted per second (token bucket)")
    burst: int = Field(1500, ge=1, description="connections admitted at once before the rate applies")
    max_pending: int = Field(1000, ge=1, description="handshakes being set up at once; more get HTTP 503")


class ChargerIds(_Model):
    """Which charger ids are admitted (see gateway/charger_ids.py): OCPP's identifierString by default."""

    extra_characters: str = Field(
        "", description="characters admitted in charger ids beyond letters, digits and * - _ = : + | @ . "
        "(never control characters or '/'); ids are always percent-encoded in upstream URLs"
    )
    max_length: int = Field(charger_ids.MAX_LENGTH, ge=1, le=255)

    @field_validator("extra_characters")
    @classmethod
    def _printable(cls, v: str) -> str:
        reason = charger_ids.forbidden_extra(v)
        if reason is not None:
            raise ValueError(reason)
        return v

    @property
    def rules(self) -> charger_ids.IdRules:
        return charger_ids.IdRules(self.extra_characters, self.max_length)


class ChargerCalls(_Model):
    """How many CALLs a charger may send without waiting for answers (OCPP-J allows one at a time)."""

    max_waiting: int = Field(100, ge=1, description="CALLs queued behind the one in progress; more get a CALLERROR")
    close_after_refused: int = Field(
        1000, ge=1, description="CALLs refused in a row for a full queue before the connection is closed (1008)"
    )


class Offline(_Model):
    """Store-and-forward: what the gateway does for chargers while their CSMS cannot answer."""

    mode: Literal["answer", "reject"] = Field(
        "answer", description="answer: answer chargers locally and replay to the CSMS later; reject: CALLERROR"
    )
    answer_after: float = Field(
        5.0, gt=0, description="seconds a transaction CALL waits for the CSMS before the gateway answers it"
    )
    unknown_id_tag: Literal["accept", "reject"] = Field(
        "accept", description="local verdict for an idTag the CSMS never judged (like AllowOfflineTxForUnknownId)"
    )
    max_queue_per_charger: int = Field(10_000, ge=1, description="messages queued per charger for the CSMS")
    replay_concurrency: int = Field(50, ge=1, description="chargers replaying their queue at the same time")
    durable_answers: bool = Field(
        True, description="benchmark knob only (ocpp-gateway bench --durability): false writes translation state "
        "in the background as before store-and-forward, so an answer may outrun the state it depends on"
    )


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
    instance_id: str | None = Field(
        None, description="this instance's name among gateway instances sharing a PostgreSQL store "
        "(default hostname:pid)")
    workers: int | Literal["auto"] = Field(
        "auto", description="processes sharing the charger port on this host (docs/cluster.md); auto: one per "
        "core with a PostgreSQL store, 1 with SQLite")
    retention_days: float | None = Field(30.0, gt=0)
    csms: dict[str, CsmsEndpoint]
    default_route: Route | None = None
    allow_unknown_chargers: bool = False
    require_charger_auth: bool = Field(False, description="refuse chargers without a configured password")
    chargers: dict[str, ChargerEntry] = Field(default_factory=dict)
    charger_ids: ChargerIds = ChargerIds()
    charger_calls: ChargerCalls = ChargerCalls()
    offline: Offline = Offline()
    call_timeout: float = Field(30.0, gt=0)
    held_retry_interval: float = Field(
        30.0, gt=0, description="seconds between replays of the offline queue while the CSMS does not answer "
        "(and the charger is quiet)"
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

    @field_validator("workers", mode="before")
    @classmethod
    def _process_count(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError("must be a number of processes (1 or more) or auto")

    @model_validator(mode="after")
    def _routes_exist(self) -> GatewayConfig:
        problems = route_problems(self.model_dump(include=_ROUTING_KEYS))
        workers = workers_problem(self.workers, self.store)
        if workers is not None:
            problems.append(workers)
        rules = self.charger_ids.rules
        for cid in self.chargers:
            reason = charger_ids.problem(cid, rules)
            if reason is not None:
                problems.append(f"chargers.{cid}: {reason} (widen the set with charger_ids.extra_characters)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def route_for(self, charger_id: str) -> Route | None:
        """The charger's route, or None when the charger is unknown and unknown ones are refused."""
        entry = self.chargers.get(charger_id)
        if entry is not None:
            return entry.route or self.default_route
        if self.allow_unknown_chargers:
            return self.default_route
        return None


def shares_store(store_url: str) -> bool:
    """Whether several processes may use this store at once (PostgreSQL; a SQLite file is one process's)."""
    return store_url.split(":", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres")


def workers_problem(workers: int | str, store_url: str) -> str | None:
    """``workers: message`` when the number of worker processes cannot work with the store."""
    if isinstance(workers, int) and workers > 1 and not shares_store(store_url):
        return (f"workers: {workers} processes need a PostgreSQL store; a SQLite store is one process's "
                "(use workers: 1, or postgresql://... - docs/cluster.md)")
    return None


def worker_count(workers: int | str, store_url: str) -> int:
    """The processes to run: ``auto`` is one per core this process may use with PostgreSQL, 1 with SQLite."""
    if isinstance(workers, int):
        return workers
    if not shares_store(store_url):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_ROUTING_KEYS = {"csms", "default_route", "chargers", "vendors", "allow_unknown_chargers"}


def route_problems(data: dict[str, Any]) -> list[str]:
    """Every route that names an unknown CSMS, and every charger left without a route, as ``key: message``.

    Works on the raw YAML data too, so a file whose CSMS entries are broken
    still gets its route typos reported in the same run.
    """
    csms = data.get("csms")
    known = set(csms) if isinstance(csms, dict) else set()
    problems: list[str] = []

    def check(route: Any, where: str) -> None:
        if not isinstance(route, dict):
            return
        for role in ("primary", "shadow"):
            name = route.get(role)
            if isinstance(name, str) and name not in known:
                listed = ", ".join(sorted(known)) or "none"
                problems.append(f"{where}.{role}: no csms named {name!r}{_did_you_mean(name, known)} (known: {listed})")
        primary = route.get("primary")
        if isinstance(primary, str) and route.get("shadow") == primary:
            problems.append(f"{where}.shadow: the shadow is the primary {primary!r}: that CSMS would get two "
                            "connections and every CALL twice, StartTransaction included; drop the shadow or "
                            "name another CSMS")

    default_route = data.get("default_route")
    check(default_route, "default_route")
    chargers = data.get("chargers")
    chargers = chargers if isinstance(chargers, dict) else {}
    vendors = data.get("vendors")
    for cid, entry in chargers.items():
        check(entry.get("route") if isinstance(entry, dict) else None, f"chargers.{cid}.route")
    for name, account in (vendors if isinstance(vendors, dict) else {}).items():
        check(account.get("route") if isinstance(account, dict) else None, f"vendors.{name}.route")
    if data.get("allow_unknown_chargers") is True and default_route is None:
        problems.append("allow_unknown_chargers: true needs a default_route")
    if default_route is None:
        for cid, entry in chargers.items():
            if not (isinstance(entry, dict) and entry.get("route") is not None):
                problems.append(f"chargers.{cid}: no route and no default_route")
    return problems


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if args else annotation
    return annotation


def _keys_at(loc: tuple[int | str, ...], model: type[BaseModel]) -> list[str]:
    """The keys the model allows at ``loc`` (the mapping that holds an unknown key), for "did you mean"."""
    current: Any = model
    for segment in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(segment))
            if field is None:
                return []
            current = _unwrap(field.annotation)
        elif get_origin(current) in (dict, list):
            current = _unwrap(get_args(current)[-1])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def config_problems(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One ``key: message`` line per problem pydantic found (``model``: the one validated, default GatewayConfig)."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(str(loc[-1]), _keys_at(loc[:-1], model or GatewayConfig))
        if not key:  # the model-wide check: its message is already "key: message" lines
            lines.extend(msg.splitlines())
        else:
            lines.append(f"{key}: {msg}")
    return lines


def validate(data: Any, path: str = "<config>") -> tuple[GatewayConfig | None, list[str]]:
    """The config and no problems, or None and every problem as ``file: key: message``."""
    if not isinstance(data, dict):
        return None, [f"{path}: expected a YAML mapping at the top level"]
    try:
        return GatewayConfig.model_validate(data), []
    except ValidationError as exc:
        problems = config_problems(exc)
        if all(err["loc"] for err in exc.errors()):
            # Field errors stop pydantic before the model-wide route check: run it on the raw data.
            problems += route_problems(data)
            workers, store = data.get("workers", "auto"), data.get("store", "sqlite://")
            if isinstance(workers, int) and isinstance(store, str):
                problems += [p for p in [workers_problem(workers, store)] if p is not None]
    return None, [f"{path}: {p}" for p in problems]


def salvage(data: dict[str, Any]) -> GatewayConfig:
    """The parts of an invalid config that validate on their own (top-level keys; single csms, chargers and
    vendors entries), the rest defaulted, so checks of the environment still run. Never for serving."""
    parts: dict[str, Any] = {"csms": {}}
    for name, field in GatewayConfig.model_fields.items():
        if name not in data:
            continue
        value, annotation = data[name], field.annotation
        if annotation is None:
            continue
        if get_origin(annotation) is dict and isinstance(value, dict):
            entry = TypeAdapter(get_args(annotation)[1])
            parts[name] = {key: valid for key, item in value.items() if (valid := _valid(entry, item)) is not None}
        elif (valid := _valid(TypeAdapter(annotation), value)) is not None:
            parts[name] = valid
    return GatewayConfig.model_construct(**parts)


def _valid(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def parse_config(data: Any, path: str = "<config>") -> GatewayConfig:
    config, problems = validate(data, path)
    if config is None:
        raise ConfigError("\n".join(problems), problems)
    return config


def read_config_data(path: str | Path) -> Any:
    """The YAML data of a configuration file; ConfigError if it cannot be read or parsed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate the YAML configuration file."""
    return parse_config(read_config_data(path), str(path))
