"""OCPP 1.6J charger <-> OCPP 2.0.1 CSMS translator."""
