"""Prometheus metrics of the gateway (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)


class Metrics:
    """Requests, latency, tokens in/out, per model and endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bastion_requests",
            "Requests answered, by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_request_duration_seconds",
            "Time from request received to response complete.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "bastion_tokens",
            "Tokens processed, by model and direction (in = prompt, out = completion).",
            ["model", "direction"],
            registry=self.registry,
        )
        self.model_up = Gauge(
            "bastion_model_up", "1 while the model's backend is healthy.", ["model"], registry=self.registry
        )
        self.breaker_state = Gauge(
            "bastion_breaker_state",
            "Circuit breaker of each deployment: 0 closed, 1 half-open, 2 open.",
            ["model"],
            registry=self.registry,
        )

    def observe(
        self, model: str, endpoint: str, status: int, seconds: float, tokens_in: int, tokens_out: int
    ) -> None:
        """Record one finished request."""
        self.requests.labels(model, endpoint, str(status)).inc()
        self.latency.labels(model, endpoint).observe(seconds)
        if tokens_in:
            self.tokens.labels(model, "in").inc(tokens_in)
        if tokens_out:
            self.tokens.labels(model, "out").inc(tokens_out)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
