"""Prometheus metrics of the authenticator. Created unregistered, so an authenticator outside the
web app (the CLI, a test) works alike; the app registers them in its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.failures = Counter(
            "payops_auth_failures_total",
            "Failed logins (wrong or unknown credentials)",
            ["scheme"],
            registry=registry,
        )
        self.throttled = Counter(
            "payops_auth_throttled_total",
            "Logins refused with 429 by a failure counter (pair = username and address)",
            ["scope"],
            registry=registry,
        )
        self.username_alerts = Counter(
            "payops_auth_username_alerts_total",
            "Times one username reached PAYOPS_AUTH_USERNAME_ALERT_THRESHOLD failures in a window",
            registry=registry,
        )
        self.verifications = Gauge(
            "payops_auth_password_verifications",
            "Password verifications in this process: running, or queued for a slot",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.verifications_refused = Counter(
            "payops_auth_password_verifications_refused_total",
            "Basic logins answered 503 because the verification queue was full",
            registry=registry,
        )
