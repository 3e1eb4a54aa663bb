"""OCPP 2.0.1 charging station -> OCPP 1.6J central system.

Modules: ``env`` (per-station options, handler registry), ``state``
(persisted translation state), ``convert`` (pure value conversions),
``connectors`` (the connector status state machine), ``transactions``
(TransactionEvent, and what the offline queue asks about its messages), ``charger`` and ``csms``
(one handler per message, by the side that sends it), ``translator``
(dispatch and the conformance rows). Facts shared with the 1.6 -> 2.0.1
translator (statuses, stop reasons, units, measurands, configuration keys,
...) come from the tables in ``mappings/`` through
``adapters.v16_v201.tables``; only behaviour lives here.

Transactions. A 2.0.1 transaction is a stream of TransactionEvents under a
string id; 1.6 knows StartTransaction (the CSMS assigns an integer id),
MeterValues with that id, and StopTransaction. Started becomes
StartTransaction as soon as the transaction has an idToken (a Started
without one, e.g. TxStartPoint EVConnected, waits for the Updated that
authorizes it, its meter values kept in ``ctx.state`` meanwhile). Every
1.6 transaction message is deferred (``adapters.base.Defer``) into the
charger's offline queue: sent at once when nothing is queued ahead of it,
else replayed in order when the CSMS can take it, with the integer id
filled in by ``resolve`` and learnt by ``settled``. Duplicates
(a station retrying an event whose answer it missed) are recognised by
seqNo and answered without a second 1.6 message.

Connector status. 2.0.1 says only Occupied; a per-connector state machine
turns it into Preparing (no 1.6 transaction yet), Charging / SuspendedEV /
SuspendedEVSE (from the transaction's chargingState) or Finishing (after
the transaction ended), and reports changes of chargingState as 1.6
StatusNotifications.

Plug & Charge messages travel as DataTransfer with vendorId
org.openchargealliance.iso15118pnc, as in the OCA 1.6 Plug & Charge
whitepaper.
"""

from __future__ import annotations

from adapters.registry import register
from adapters.v201_v16.env import PNC_VENDOR
from adapters.v201_v16.translator import V201V16, factory
from gateway.ocppj import Version

register(Version.V201, Version.V16, factory)

__all__ = ["PNC_VENDOR", "V201V16", "factory"]
