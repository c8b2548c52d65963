"""Prometheus metrics, one registry per service instance (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "gatepass_webhooks_total",
            "Webhooks by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.outbox_delivered = Gauge(
            "gatepass_outbox_delivered", "Outbox rows delivered", registry=self.registry
        )
        self.outbox_failed = Gauge(
            "gatepass_outbox_failed", "Outbox rows given up", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
