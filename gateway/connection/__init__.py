"""The connection layer: one charger's socket, upstream links, shadow and timers around its session.

Modules here may import the sans-I/O core (``gateway.session``, ``adapters``,
``gateway.ocppj`` ...) and shared infrastructure (config, metrics, store,
transport), never the estate (``gateway.app``, ``gateway.admin``,
``gateway.vendors``). ``tests/unit/test_architecture.py`` keeps it so.
"""

from gateway.connection.charger import ChargerConnection
from gateway.connection.services import ConnectionServices
from gateway.connection.shadow import ShadowLink
from gateway.connection.upstream import UpstreamLink

__all__ = ["ChargerConnection", "ConnectionServices", "ShadowLink", "UpstreamLink"]
