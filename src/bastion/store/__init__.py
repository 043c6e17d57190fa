"""SQLite storage shared by the capabilities: one database file, forward-only migrations per component."""

from bastion.store.sqlite import Migrations, open_database

__all__ = ["Migrations", "open_database"]
