"""Vendor cloud runner: brings cloud-locked chargers into the gateway as virtual OCPP 2.0.1 chargers.

The adapters (``adapters.vendor_base``, ``adapters.easee``, ``adapters.zaptec``)
are pure; this package does their I/O. ``VendorManager`` is what
``Gateway.start`` starts when the configuration has a ``vendors:`` section.
"""

from gateway.vendors.manager import VendorManager

__all__ = ["VendorManager"]
