"""What ``check-config`` checks, and what ``run`` checks before it starts: every problem, in one pass.

``static_problems`` looks at the environment a config needs (directories,
files, the store's location, environment variables) without creating or
opening anything; ``table_problems`` loads the mapping tables and builds the
configured chargers' translators; ``connect_report`` (``--connect``) opens
the store once and knocks on each CSMS endpoint. Every problem is one line
``key: message``, so the caller can prefix the file name.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from gateway.config import ConfigError, CsmsEndpoint, GatewayConfig
from gateway.store import Store, StoreError, open_store

CONNECT_TIMEOUT = 5.0  # seconds for each --connect probe


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of a report: ``key: message``; ``ok`` False makes it a problem."""

    key: str
    message: str
    ok: bool = False

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def static_problems(config: GatewayConfig, environ: dict[str, str] | None = None) -> list[Finding]:
    """Problems with what the config points at, found without creating or connecting to anything."""
    env = dict(os.environ) if environ is None else environ
    found: list[Finding] = []
    for i, entry in enumerate(config.mapping_dirs):
        path = Path(entry).expanduser()
        if not path.exists():
            found.append(Finding(f"mapping_dirs[{i}]", f"{entry} does not exist"))
        elif not path.is_dir():
            found.append(Finding(f"mapping_dirs[{i}]", f"{entry} is a file, not a directory of mapping tables"))
    found += store_findings(config.store)
    found += _file_problems(config)
    found += _environment_problems(config, env)
    return found


def store_findings(url: str) -> list[Finding]:
    """The store URL's scheme and, for SQLite, whether its file can be created there (a note if it will be)."""
    try:
        store = open_store(url)
    except ValueError as exc:
        return [Finding("store", str(exc))]
    problem = store.location_problem()
    if problem is not None:
        return [Finding("store", problem)]
    note = store.location_note()
    return [Finding("store", note, ok=True)] if note else []


def _file_problems(config: GatewayConfig) -> list[Finding]:
    files: list[tuple[str, str | None]] = []
    if config.listen.tls is not None:
        tls = config.listen.tls
        files += [("listen.tls.cert_file", tls.cert_file), ("listen.tls.key_file", tls.key_file),
                  ("listen.tls.client_ca_file", tls.client_ca_file)]
    for name, endpoint in config.csms.items():
        if endpoint.tls is not None:
            files += [(f"csms.{name}.tls.{key}", getattr(endpoint.tls, key))
                      for key in ("ca_file", "cert_file", "key_file")]
    for cid, entry in config.chargers.items():
        for i, extra in enumerate(entry.options.get("config_key_files") or []):
            files.append((f"chargers.{cid}.options.config_key_files[{i}]", str(extra)))
    return [Finding(key, f"cannot read {value}") for key, value in files
            if value is not None and not os.access(Path(value).expanduser(), os.R_OK)]


def _environment_problems(config: GatewayConfig, env: dict[str, str]) -> list[Finding]:
    from gateway.vendors.client import CredentialsError, load_credentials

    def unset(key: str, variable: str, what: str) -> Finding | None:
        return None if env.get(variable) else Finding(key, f"environment variable {variable} ({what}) is not set")

    found = [
        unset("admin.token_env", config.admin.token_env, "the admin API token") if config.admin.token_env else None,
        *(unset(f"chargers.{cid}.password_env", e.password_env, "the charger's password")
          for cid, e in config.chargers.items() if e.password_env),
        *(unset(f"csms.{name}.basic_auth_password_env", e.basic_auth_password_env, "the upstream password")
          for name, e in config.csms.items() if e.basic_auth_password_env),
    ]
    for name, account in config.vendors.items():
        try:
            load_credentials(name, account, env)
        except CredentialsError as exc:
            key, _, message = str(exc).partition(": ")
            found.append(Finding(key, message))
    return [f for f in found if f is not None]


def table_problems(config: GatewayConfig) -> tuple[int, list[Finding]]:
    """Load the mapping tables and build each configured charger's translators: (mapping rows, problems)."""
    from gateway.app import Gateway
    from mappings import MappingError

    # The store is never opened by the check; an in-memory one keeps a bad store URL from hiding table problems.
    gateway = Gateway(config, store=open_store("sqlite://:memory:"))
    try:
        return gateway.check(), []
    except MappingError as exc:
        return 0, [Finding("mapping_dirs" if config.mapping_dirs else "mappings", str(exc))]
    except ConfigError as exc:
        key, _, message = str(exc).partition(": ")
        return 0, [Finding(key, message)]
    finally:
        asyncio.run(gateway.store.close())


async def connect_report(config: GatewayConfig, timeout: float = CONNECT_TIMEOUT) -> list[Finding]:
    """Open the store once (read only) and knock on every CSMS endpoint; what answered and what did not."""
    probes = [_probe_store(config.store, timeout)]
    probes += [_probe_csms(name, endpoint, timeout) for name, endpoint in config.csms.items()]
    return list(await asyncio.gather(*probes))


async def _probe_store(url: str, timeout: float) -> Finding:
    try:
        store: Store = open_store(url)
    except ValueError as exc:
        return Finding("store", str(exc))
    try:
        return Finding("store", await asyncio.to_thread(store.probe, timeout), ok=True)
    except StoreError as exc:
        return Finding("store", str(exc))
    finally:
        await store.close()


async def _probe_csms(name: str, endpoint: CsmsEndpoint, timeout: float) -> Finding:
    """An HTTP upgrade to the endpoint URL itself: any HTTP answer means something listens there."""
    from gateway import security

    key = f"csms.{name}"
    context: ssl.SSLContext | None = None
    if endpoint.url.startswith("wss://"):
        try:
            context = security.client_context(endpoint.tls)
        except (OSError, ssl.SSLError) as exc:
            return Finding(f"{key}.tls", f"cannot load: {exc}")
    try:
        async with ws_connect(endpoint.url, subprotocols=[endpoint.ocpp.subprotocol],  # type: ignore[list-item]
                              additional_headers=endpoint.headers or None, ssl=context,
                              open_timeout=timeout, compression=None) as ws:
            chosen = ws.subprotocol or "no subprotocol"
            return Finding(key, f"{endpoint.url} answers: WebSocket accepted ({chosen})", ok=True)
    except InvalidStatus as exc:
        status = exc.response.status_code
        return Finding(key, f"{endpoint.url} answers: HTTP {status} {exc.response.reason_phrase} "
                            "(a CSMS may refuse a URL without a charger id)", ok=True)
    except InvalidHandshake as exc:
        return Finding(key, f"{endpoint.url} answers, but not as a WebSocket server: {exc}")
    except TimeoutError:
        return Finding(key, f"{endpoint.url}: no answer within {timeout:g} s")
    except OSError as exc:
        return Finding(key, f"{endpoint.url}: no answer: {exc.strerror or exc}")
