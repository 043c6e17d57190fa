"""Bastion: the sovereign model gateway."""

__version__ = "0.1.0"
