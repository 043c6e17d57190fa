"""Quotas: requests and tokens per minute and token budgets for keys, groups and the organisation."""

from bastion.quota.limiter import Headroom, Limiter, Limits, QuotaExceeded, Reservation, period_start
from bastion.quota.store import UsageRow, UsageStore

__all__ = [
    "Headroom",
    "Limiter",
    "Limits",
    "QuotaExceeded",
    "Reservation",
    "UsageRow",
    "UsageStore",
    "period_start",
]
