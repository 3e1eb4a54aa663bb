"""OCPP 1.6J charger <-> OCPP 2.0.1 CSMS translator, driven by the tables in ``mappings/``.

Modules: ``tables`` (typed views of the mapping tables, shared with the reverse
direction), ``env`` (per-charger options, handler registry), ``state``
(persisted translation state), ``convert`` (pure payload conversions),
``charger`` and ``csms`` (one handler per message), ``translator`` (dispatch
and the conformance rows).

Options (per charger, from the configuration): ``id_token_type`` (2.0.1
idToken type for every 1.6 idTag; default: inferred from each tag's shape,
see ``convert.infer_token_type``), ``connectors_per_evse``
(default 1) or ``connector_map`` ({connector: [evse, connector]}),
``config_key_files`` (extra config_keys tables for vendor keys) and
``report_chunk`` (entries per NotifyReport part, default 50).
"""

from __future__ import annotations

from adapters.registry import register
from adapters.v16_v201.translator import V16ToV201, factory
from gateway.ocppj import Version

register(Version.V16, Version.V201, factory)

__all__ = ["V16ToV201", "factory"]
