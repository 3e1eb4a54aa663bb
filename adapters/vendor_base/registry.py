"""Vendor adapters by name: registered ones, the built-in ones and those of the entry-point group."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from adapters.vendor_base.adapter import VendorAdapter

ENTRY_POINT_GROUP = "ocpp_gateway.vendor_adapters"

AdapterFactory = Callable[[dict[str, Any]], VendorAdapter]

_BUILTIN: dict[str, str] = {"easee": "adapters.easee:EaseeAdapter", "zaptec": "adapters.zaptec:ZaptecAdapter"}
_REGISTERED: dict[str, AdapterFactory] = {}


def register(name: str, factory: AdapterFactory) -> None:
    """Make ``factory`` (usually a ``VendorAdapter`` subclass) the adapter named ``name``."""
    _REGISTERED[name] = factory


def _load(ref: str) -> AdapterFactory:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj  # type: ignore[no-any-return]


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every adapter name: registered, built-in and installed through the entry-point group."""
    return sorted(set(_REGISTERED) | set(_BUILTIN) | set(_entry_points()))


def adapter_for(name: str, options: dict[str, Any] | None = None) -> VendorAdapter:
    """A new adapter instance; ``KeyError`` (naming the known ones) for an unknown name."""
    factory = _REGISTERED.get(name)
    if factory is None and name in _BUILTIN:
        factory = _REGISTERED[name] = _load(_BUILTIN[name])
    if factory is None:
        ep = _entry_points().get(name)
        if ep is not None:
            factory = _REGISTERED[name] = ep.load()
    if factory is None:
        raise KeyError(f"no vendor adapter named {name!r} (known: {', '.join(available())})")
    adapter = factory(dict(options or {}))
    if not isinstance(adapter, VendorAdapter):
        raise TypeError(f"vendor adapter {name!r} is not a VendorAdapter: {adapter!r}")
    return adapter
