"""Which translator serves a (charger version, CSMS version) pair.

Translators register here by name and by version pair; ``translator_for``
is called once per charger session, never per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.base import Translator
from adapters.passthrough import PassThrough
from gateway.ocppj import Version

TranslatorFactory = Callable[[dict[str, Any]], Translator]

_BY_PAIR: dict[tuple[Version, Version], TranslatorFactory] = {}


def register(charger: Version, csms: Version, factory: TranslatorFactory) -> None:
    """Make ``factory`` the translator for chargers speaking ``charger`` routed to a ``csms`` CSMS."""
    _BY_PAIR[(charger, csms)] = factory


def supported_pairs() -> list[tuple[Version, Version]]:
    _load_builtin()
    pairs = set(_BY_PAIR) | {(v, v) for v in Version}
    return sorted(pairs, key=lambda p: (p[0].value, p[1].value))


def translator_for(charger: Version, csms: Version, options: dict[str, Any] | None = None) -> Translator | None:
    """The translator for the pair, or None when the gateway cannot bridge it."""
    if charger is csms:
        return PassThrough(charger)
    _load_builtin()
    factory = _BY_PAIR.get((charger, csms))
    return factory(options or {}) if factory else None


_loaded = False


def _load_builtin() -> None:
    """Import the built-in translator modules, each of which registers itself."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


# Built-in translator modules; each calls ``register`` at import.
_BUILTIN_MODULES: list[str] = [
    "adapters.v201_v21",  # 2.0.1 <-> 2.1, both orientations
    "adapters.v201_v16",  # 2.0.1 charger -> 1.6J CSMS
    "adapters.v16_v201",  # 1.6J charger -> 2.0.1 CSMS
    "adapters.composed",  # 2.1 -> 1.6J and 1.6J -> 2.1 by chaining; keep last
]
