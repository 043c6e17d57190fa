"""Secrets: the plugins of Yelp's ``detect-secrets`` (cloud keys, tokens, private keys, JWTs, basic-auth
connection strings, high-entropy quoted strings, secret-looking assignments).

We call the plugins' own patterns and checks, never their ``verify`` (that would send the secret to
the provider). Two things the plugins leave out are added, both documented here:

- a private key's whole PEM block is the secret (the plugin matches only its ``BEGIN`` line);
- ``Authorization: Bearer <token>`` headers (no plugin covers opaque bearer tokens).

The public-IP plugin is left out: IP addresses are personal data and counted by the identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from bastion.dlp.findings import Finding
from bastion.dlp.normalise import View

_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_BEARER = re.compile(r"\bBearer\s+([A-Za-z0-9\-._~+/]{16,}=*)")
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9\-_.+/=]*")
_LEFT_OUT = {"Public IP (ipv4)"}


def _type_id(secret_type: str) -> str:
    """'AWS Access Key' -> 'aws_access_key' (the type name in findings, audit and Cedar)."""
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


@lru_cache(maxsize=1)
def _plugins() -> tuple[tuple[str, Any], ...]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping: dict[str, Any] = get_mapping_from_secret_type_to_class()
    return tuple((_type_id(name), cls()) for name, cls in sorted(mapping.items()) if name not in _LEFT_OUT)


class SecretDetector:
    """Runs every detect-secrets plugin line by line and maps what they find back to spans."""

    name = "secrets"

    def __init__(self) -> None:
        self.plugins = _plugins()
        # Regex plugins run on every line; the keyword and high-entropy plugins only match quoted values
        # (detect-secrets' default "quotes required" patterns), so they run only on lines with a quote.
        # Each regex plugin's patterns, flattened once: (type, pattern, the plugin's formal check or None).
        self._patterns = [
            (k, rx, _formal_check(p)) for k, p in self.plugins if _is_regex_plugin(p) for rx in p.denylist
        ]
        self._quoted = [(k, p) for k, p in self.plugins if not _is_regex_plugin(p)]
        self._prefilters, self._groups = _prefilters(self._patterns)

    def detect(self, view: View) -> list[Finding]:
        """Every secret in ``view`` (spans in the original text)."""
        text = view.text
        found: list[Finding] = []
        for line_start, line in _lines(text):
            hits: list[tuple[str, int, int]] = []
            for kind, rx, check in self._candidates(line):
                # The whole match is the secret (the plugins' own findall yields only a group).
                for m in rx.finditer(line):
                    if m.end() > m.start() and (check is None or check(m.group(0))):
                        hits.append((kind, m.start(), m.end()))
            if '"' in line or "'" in line:
                for kind, plugin in self._quoted:
                    hits.extend((kind, s, e) for s, e in self._quoted_spans(plugin, line))
            for kind, start, end in hits:
                if kind == "private_key":  # the whole PEM block, from its "-----BEGIN"
                    start = max(0, line.rfind("-----", 0, start))
                    end = _pem_end(text, line_start + end) - line_start
                elif kind == "json_web_token":  # the plugin's pattern stops before the signature
                    end += len(_TOKEN_TAIL.match(line, end).group(0))  # type: ignore[union-attr]
                s, e = view.span(line_start + start, line_start + end)
                found.append(Finding(kind, "secret", s, e))
            for m in _BEARER.finditer(line):
                s, e = view.span(line_start + m.start(1), line_start + m.end(1))
                found.append(Finding("bearer_token", "secret", s, e))
        return found

    def _candidates(self, line: str) -> Iterator[tuple[str, re.Pattern[str], Any]]:
        """The patterns that can match in ``line``, in their usual order: those of every group whose one
        combined search hits.

        One search per group instead of one per pattern (45) on every line: the scan of a short clean
        prompt was the largest cost of a gateway request (bench/README.md, "Gateway overhead").
        """
        live = [rx is None or rx.search(line) is not None for rx in self._prefilters]
        if any(live):
            for (kind, rx, check), group in zip(self._patterns, self._groups, strict=True):
                if live[group]:
                    yield kind, rx, check

    @staticmethod
    def _quoted_spans(plugin: Any, line: str) -> Iterator[tuple[int, int]]:
        limit = getattr(plugin, "entropy_limit", None)
        for value in plugin.analyze_string(line):
            if not value or (limit is not None and plugin.calculate_shannon_entropy(value) <= limit):
                continue
            start = line.find(value)
            while start >= 0:
                yield start, start + len(value)
                start = line.find(value, start + len(value))


def _prefilters(
    patterns: list[tuple[str, re.Pattern[str], Any]],
) -> tuple[list[re.Pattern[str] | None], list[int]]:
    """Group the patterns by flags, one alternation of them all per group (None: no prefilter), and the
    group of each pattern.

    Sound: where any pattern of a group matches, the alternation (same flags, same text) matches too, so
    a line it does not match cannot hold a match of any of them. Patterns that refer to their own groups
    (backreferences, conditionals) or set global flags would change meaning inside a bigger pattern, so
    each stays alone, without a prefilter; so does a group that does not compile as one (e.g. a group
    name used twice).
    """
    members: dict[tuple[str, int], list[int]] = {}
    for i, (_, rx, _) in enumerate(patterns):
        key = ("alone", i) if _SELF_REFERENCE.search(rx.pattern) else ("flags", rx.flags)
        members.setdefault(key, []).append(i)
    combined: list[re.Pattern[str] | None] = []
    groups = [0] * len(patterns)
    for (kind, _), indices in members.items():
        for i in indices:
            groups[i] = len(combined)
        if kind == "alone":
            combined.append(None)
            continue
        try:
            alternation = "|".join(f"(?:{patterns[i][1].pattern})" for i in indices)
            combined.append(re.compile(alternation, patterns[indices[0]][1].flags))
        except re.error:
            combined.append(None)
    return combined, groups


_SELF_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?[aiLmsux-]+\)")


def _is_regex_plugin(plugin: Any) -> bool:
    return getattr(plugin, "denylist", None) is not None and not hasattr(plugin, "entropy_limit")


def _formal_check(plugin: Any) -> Any:
    """A plugin's check beyond its regex (JWT: a decodable header), kept; None when it has none."""
    check = getattr(plugin, "is_formally_valid", None)
    return check if callable(check) else None


def _pem_end(text: str, start: int) -> int:
    m = _PEM_END.search(text, start)
    if m is not None:
        return m.end()
    nl = text.find("\n\n", start)  # a truncated key: up to the blank line, or everything after it
    return len(text) if nl < 0 else nl


def _lines(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    for line in text.split("\n"):
        if line.strip():
            yield start, line
        start += len(line) + 1
