"""Cost: what traffic cost on local hardware, and what the same tokens would have cost on cloud models.

Local cost is the configured hardware price per hour (``[cost] hardware_usd_per_hour``) times the time the
gateway spent answering on local models (recorded with usage), which is also where measured throughput
comes from. The time is per request, from received to answered: concurrent requests on one model each
count their whole time, so under load this over-states local cost (a ceiling, not an estimate).

Cloud cost comes from a pinned price table shipped with Bastion (``prices.toml``: per model, provider,
USD per 1M input and output tokens, the page read, whether it is the provider's own page or a secondary
source, and dates). Nothing here touches the network.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.quota.store import UsageRow

PRICES = "prices.toml"
MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """One cloud model's list price, in USD per 1M tokens, and where it comes from."""

    model: str
    provider: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str
    source_kind: str
    retrieved: str
    as_of: str | None = None
    via: str | None = None

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for ``tokens_in`` prompt and ``tokens_out`` completion tokens at this price."""
        return (tokens_in * self.input_usd_per_mtok + tokens_out * self.output_usd_per_mtok) / MTOK

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class PriceTable:
    """The cloud prices in force: the table's date, its rows, and the file they were read from."""

    table_date: str
    prices: tuple[Price, ...]
    origin: str


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table at ``path``, or the one shipped in the package; ConfigError naming the file if bad."""
    origin = str(path) if path is not None else f"bastion/quota/{PRICES} (shipped)"
    try:
        shipped = resources.files("bastion.quota").joinpath(PRICES)
        text = (path or shipped).read_text(encoding="utf-8")
        doc = tomllib.loads(text)
        rows = tuple(
            Price(model=name, **{k: v for k, v in row.items()}) for name, row in doc["models"].items()
        )
        table_date = str(doc["table_date"])
    except OSError as exc:
        raise ConfigError(
            f"cannot read the price table {origin}: {exc}",
            hint="Point [cost] prices at a readable file, or remove it to use the shipped table.",
        ) from exc
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"price table {origin} is not valid: {exc}",
            hint="Each [models.NAME] needs provider, input_usd_per_mtok, output_usd_per_mtok, source,"
            " source_kind and retrieved, and the file a table_date; see the shipped prices.toml.",
        ) from exc
    bad = [p.model for p in rows if p.source_kind not in ("provider", "secondary")
           or min(p.input_usd_per_mtok, p.output_usd_per_mtok) < 0]
    if bad:
        raise ConfigError(f"price table {origin}: rows {', '.join(bad)} have a negative price or an unknown"
                          " source_kind", hint='source_kind is "provider" or "secondary"; prices are >= 0.')
    return PriceTable(table_date, rows, origin)


@dataclass(frozen=True)
class LocalCost:
    """Traffic answered on local models: time, tokens, measured throughput and (with a price) cost."""

    seconds: float
    tokens_in: int
    tokens_out: int
    usd_per_hour: float | None

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per second of answering (prompt processing included in the time)."""
        return self.tokens_out / self.seconds if self.seconds > 0 else None

    @property
    def usd(self) -> float | None:
        return None if self.usd_per_hour is None else self.seconds * self.usd_per_hour / 3600

    @property
    def usd_per_mtok(self) -> float | None:
        """Local cost per 1M tokens (in + out), comparable with the cloud table."""
        tokens = self.tokens_in + self.tokens_out
        return None if self.usd is None or tokens == 0 else self.usd * MTOK / tokens

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None, n: int = 6) -> float | None:
            return None if x is None else round(x, n)

        return {"seconds": round(self.seconds, 3), "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "tokens_per_s": r(self.tokens_per_s, 2), "usd_per_hour": self.usd_per_hour,
                "usd": r(self.usd), "usd_per_mtok": r(self.usd_per_mtok, 4)}


def cloud_costs(table: PriceTable, tokens_in: int, tokens_out: int) -> list[dict[str, Any]]:
    """What ``tokens_in``/``tokens_out`` would have cost on each model of ``table``, cheapest first."""
    rows = [{"model": p.model, "provider": p.provider, "usd": round(p.cost(tokens_in, tokens_out), 6),
             "source_kind": p.source_kind, "source": p.source, "retrieved": p.retrieved}
            for p in table.prices]
    return sorted(rows, key=lambda r: (r["usd"], r["model"]))


def local_cost(
    rows: Iterable[tuple[str, int, int, float]], local: set[str], usd_per_hour: float | None
) -> LocalCost:
    """The local share of usage ``rows`` ((model, tokens_in, tokens_out, seconds)): models in ``local``."""
    seconds, tin, tout = 0.0, 0, 0
    for model, tokens_in, tokens_out, secs in rows:
        if model in local:
            seconds += secs
            tin += tokens_in
            tout += tokens_out
    return LocalCost(seconds, tin, tout, usd_per_hour)


def usage_cost(settings: Settings, rows: list[UsageRow]) -> dict[str, Any]:
    """Local cost and cloud equivalents of usage ``rows`` taken together (``bastion usage``)."""
    table = load_prices(settings.cost.prices)
    configured = {m.name: m.local for m in settings.models}
    # Models served because they were admitted (registry.serve_admitted) run locally by construction.
    local = {r.model for r in rows if configured.get(r.model, settings.registry.serve_admitted)}
    own = local_cost(((r.model, r.tokens_in, r.tokens_out, r.seconds) for r in rows), local,
                     settings.cost.hardware_usd_per_hour)
    tokens_in, tokens_out = sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows)
    return {"local": own.to_json(), "cloud": cloud_costs(table, tokens_in, tokens_out),
            "prices": table.origin, "prices_date": table.table_date}
