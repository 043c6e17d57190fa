"""Where a store's data lives: a SQLite file (the embedded default) or a PostgreSQL database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL database (``postgresql://user:password@host:port/db?…``) and this process's
    connection bound for it."""

    url: str
    pool_size: int = 10

    def __str__(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return re.sub(r"(password=)[^&\s]*", r"\1***", url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))



#: a SQLite file, or a PostgreSQL database
Target = Path | PostgresTarget
