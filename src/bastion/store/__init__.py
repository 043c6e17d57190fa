"""SQLite storage shared by the capabilities: one database file, forward-only migrations per component."""

from bastion.store.changes import ChangeWatch, count_changes
from bastion.store.sqlite import Migrations, open_database

__all__ = ["ChangeWatch", "Migrations", "count_changes", "open_database"]
