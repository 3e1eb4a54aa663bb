"""Version pairs served by chaining two translators (see adapters.compose).

- 2.1 charger -> 1.6J CSMS: 2.1 -> 2.0.1, then 2.0.1 -> 1.6J.
- 1.6J charger -> 2.1 CSMS: 1.6J -> 2.0.1, then 2.0.1 -> 2.1.

Each part is looked up in the registry when a charger connects, not when this
module is imported, so a part that is not installed yet does not break
registration; such a charger is refused with a clear error instead.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Translator
from adapters.compose import compose
from adapters.registry import register, translator_for
from gateway.ocppj import Version


def _part(charger: Version, csms: Version, options: dict[str, Any]) -> Translator:
    tr = translator_for(charger, csms, options)
    if tr is None:
        raise LookupError(f"no OCPP {charger.value} -> {csms.value} translator is installed")
    return tr


def chain(charger: Version, middle: Version, csms: Version, options: dict[str, Any]) -> Translator:
    """The translator charger -> middle -> csms built from the two registered steps."""
    return compose(_part(charger, middle, options), _part(middle, csms, options))


register(Version.V21, Version.V16, lambda options: chain(Version.V21, Version.V201, Version.V16, options))
register(Version.V16, Version.V21, lambda options: chain(Version.V16, Version.V201, Version.V21, options))
