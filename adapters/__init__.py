"""Translators between OCPP dialects and vendor cloud adapters.

See ``adapters.base`` for the interface and ``adapters.registry`` for how a
(charger version, CSMS version) pair finds its translator.
"""
