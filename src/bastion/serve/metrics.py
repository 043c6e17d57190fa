"""Prometheus metrics of the gateway (``GET /metrics``), in a registry of its own.

Cost is computed when /metrics is read, from the token and duration counters already kept: nothing is
added to the request path for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion.quota.cost import PriceTable

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

    def __init__(
        self,
        prices: PriceTable | None = None,
        usd_per_hour: float | None = None,
        local: Callable[[str], bool] = lambda name: False,
    ) -> None:
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
        if prices is not None:
            self.registry.register(_Cost(self, prices, usd_per_hour, local))

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


class _Cost(Collector):
    """``bastion_cloud_equivalent_usd`` and ``bastion_local_cost_usd``, derived at scrape time."""

    def __init__(
        self, metrics: Metrics, prices: PriceTable, usd_per_hour: float | None, local: Callable[[str], bool]
    ) -> None:
        self.metrics, self.prices, self.usd_per_hour, self.local = metrics, prices, usd_per_hour, local

    def collect(self) -> Iterator[Metric]:
        tokens: dict[str, list[float]] = {}
        for family in self.metrics.tokens.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    counts = tokens.setdefault(s.labels["model"], [0.0, 0.0])
                    counts[int(s.labels["direction"] == "out")] += s.value
        cloud = CounterMetricFamily(
            "bastion_cloud_equivalent_usd",
            f"What the tokens each model processed would have cost on each cloud model, at the list prices"
            f" of the pinned table of {self.prices.table_date}.",
            labels=["model", "cloud_model"],
        )
        for model, (tokens_in, tokens_out) in sorted(tokens.items()):
            for price in self.prices.prices:
                cloud.add_metric([model, price.model], price.cost(int(tokens_in), int(tokens_out)))
        yield cloud
        if self.usd_per_hour is None:
            return
        local = CounterMetricFamily(
            "bastion_local_cost_usd",
            "Hardware cost of the time local models spent answering ([cost] hardware_usd_per_hour).",
            labels=["model"],
        )
        seconds: dict[str, float] = {}
        for family in self.metrics.latency.collect():
            for s in family.samples:
                if s.name.endswith("_sum") and self.local(s.labels["model"]):
                    seconds[s.labels["model"]] = seconds.get(s.labels["model"], 0.0) + s.value
        for model, secs in sorted(seconds.items()):
            local.add_metric([model], secs * self.usd_per_hour / 3600)
        yield local
