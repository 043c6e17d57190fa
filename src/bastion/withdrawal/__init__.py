"""Withdraw a model, provider or country from every route (signed, audited, no restart), and restore it."""

from bastion.withdrawal.store import Kind, Withdrawal, WithdrawalStore

__all__ = ["Kind", "Withdrawal", "WithdrawalStore"]
