"""Vendor metrics, registered on the gateway's own registry (names ``ocpp_gateway_vendor_*``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

ERROR_KINDS = ("timeout", "connection", "http_4xx", "http_5xx", "auth")
WAIT_REASONS = ("retry_after", "budget")
CHARGER_STATES = ("cloud", "native")


class VendorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["adapter", "account"]
        self.api_calls = Counter(
            "ocpp_gateway_vendor_api_calls", "Vendor cloud API requests, by adapter, account and HTTP status "
            "('error' when no answer came)", [*labels, "status"], registry=registry,
        )
        self.api_errors = Counter(
            "ocpp_gateway_vendor_api_errors", "Failed vendor cloud API requests, by kind (timeout, connection, "
            "http_4xx, http_5xx, auth)", [*labels, "kind"], registry=registry,
        )
        self.rate_limit_waits = Counter(
            "ocpp_gateway_vendor_rate_limit_waits", "Times a vendor request waited: for a 429's Retry-After "
            "(retry_after) or for the client-side request budget (budget)", [*labels, "reason"], registry=registry,
        )
        self.rate_limit_wait_seconds = Counter(
            "ocpp_gateway_vendor_rate_limit_wait_seconds", "Seconds vendor requests spent waiting out rate limits",
            labels, registry=registry,
        )
        self.cloud_up = Gauge(
            "ocpp_gateway_vendor_cloud_up", "1 while the vendor cloud answers the account's requests, else 0",
            labels, registry=registry,
        )
        self.chargers = Gauge(
            "ocpp_gateway_vendor_chargers", "Vendor chargers presented to the CSMS, by state (cloud, native)",
            [*labels, "state"], registry=registry,
        )

        self._known: set[tuple[str, str]] = set()

    def know_account(self, adapter: str, account: str) -> None:
        """Start an account's error, wait and charger series at 0, so its panels show 0 rather than no data."""
        if (adapter, account) in self._known:
            return
        self._known.add((adapter, account))
        for kind in ERROR_KINDS:
            self.api_errors.labels(adapter, account, kind)
        for reason in WAIT_REASONS:
            self.rate_limit_waits.labels(adapter, account, reason)
        self.rate_limit_wait_seconds.labels(adapter, account)
        for state in CHARGER_STATES:
            self.chargers.labels(adapter, account, state)


def vendor_metrics(gateway_metrics: Any) -> VendorMetrics:
    """The vendor metrics of a gateway, created on its registry once."""
    existing = getattr(gateway_metrics, "vendor", None)
    if isinstance(existing, VendorMetrics):
        return existing
    metrics = VendorMetrics(gateway_metrics.registry)
    gateway_metrics.vendor = metrics
    return metrics
