"""Policy files: reading, splitting into statements with line numbers, validating against the schema.

cedarpy reports validation problems by generated policy id (``policy0``, ``policy1``...) and parse
problems with no position at all. Operators need ``FILE:LINE``, so we split the text into statements
ourselves (respecting strings and ``//`` comments), which gives each generated id its line, and we
re-parse statement by statement to find where a syntax error is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from bastion.errors import NotFound, UsageError, did_you_mean

PACKS = ("permissive", "enterprise", "sovereign-strict")
MAX_POLICY_BYTES = 1024 * 1024  # a policy file is reviewed by people; a megabyte is already absurd
_ID = re.compile(r'@id\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_EFFECT = re.compile(r"\b(permit|forbid)\s*\(")


@dataclass(frozen=True)
class Statement:
    """One policy statement: Cedar's generated id, its ``@id`` annotation, effect and first line."""

    policy_id: str
    annotation: str | None
    effect: str
    line: int
    text: str

    @property
    def label(self) -> str:
        """The name people know the statement by: its @id, else the generated id."""
        return self.annotation or self.policy_id

    def to_json(self) -> dict[str, Any]:
        """The statement's identity and position (not its text)."""
        return {"id": self.label, "policy_id": self.policy_id, "effect": self.effect, "line": self.line}


@dataclass(frozen=True)
class PolicyProblem:
    """One problem in a policy file, located by line."""

    line: int
    statement: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        """The problem as a plain mapping."""
        return {"line": self.line, "statement": self.statement, "message": self.message}


@dataclass(frozen=True)
class PolicySource:
    """A policy file's text and its statements in order."""

    origin: str
    text: str
    statements: tuple[Statement, ...]

    def by_policy_id(self, policy_id: str) -> Statement | None:
        """The statement Cedar calls ``policy_id``."""
        return next((s for s in self.statements if s.policy_id == policy_id), None)


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The bundled Cedar schema (``schema.cedarschema``)."""
    return resources.files("bastion.policy").joinpath("schema.cedarschema").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> cedarpy.Schema:
    """The bundled Cedar schema, parsed once."""
    return cedarpy.Schema.from_str(schema_text())


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split Cedar text into ``(first line, statement text)`` at top-level semicolons.

    Strings and ``//`` comments are skipped so a ``;`` inside them does not split; trailing text without
    a semicolon is returned as a last (incomplete) statement so its syntax error can be located.
    """
    out: list[tuple[int, str]] = []
    line, start, start_line, i, n = 1, 0, None, 0, len(text)
    in_str = False
    while i < n:
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
            elif ch == "\n":
                line += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == "\n":
            line += 1
        elif ch == '"':
            in_str = True
            start_line = start_line or line
        elif ch == ";":
            out.append((start_line or line, text[start : i + 1]))
            start, start_line = i + 1, None
        elif not ch.isspace():
            start_line = start_line or line
        i += 1
    if start_line is not None:
        out.append((start_line, text[start:]))
    return out


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"//[^\n\"]*$", "", ln) for ln in text.splitlines())


def parse_source(text: str, origin: str) -> tuple[PolicySource, list[PolicyProblem]]:
    """Split ``text`` into statements and report every syntax error with its line."""
    statements: list[Statement] = []
    problems: list[PolicyProblem] = []
    for line, chunk in split_statements(text):
        ann = _ID.search(chunk)
        eff = _EFFECT.search(_strip_comments(chunk))
        body_line = line
        try:
            cedarpy.PolicySet.from_str(chunk)
        except Exception as exc:  # noqa: BLE001  cedarpy raises plain exceptions for parse errors
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            problems.append(
                PolicyProblem(
                    _locate(chunk, body_line, message), ann.group(1) if ann else None, f"syntax: {message}"
                )
            )
            continue
        statements.append(
            Statement(
                policy_id=f"policy{len(statements)}",
                annotation=ann.group(1) if ann else None,
                effect=eff.group(1) if eff else "?",
                line=body_line,
                text=chunk.strip(),
            )
        )
    return PolicySource(origin, text, tuple(statements)), problems


def _locate(chunk: str, first_line: int, message: str) -> int:
    """Best line for ``message`` inside ``chunk``: the first line holding the quoted token or attribute."""
    tokens = re.findall(r"`([^`]+)`", message)
    offset = len(chunk) - len(chunk.lstrip())
    lines = chunk[offset:].splitlines()
    lead = chunk[:offset].count("\n")
    for token in tokens:
        for k, ln in enumerate(lines):
            code = ln.split("//", 1)[0]
            if re.search(r"(?<![\w])" + re.escape(token) + r"(?![\w])", code):
                return first_line + k if lead == 0 or k else first_line
    return first_line


def check_source(source: PolicySource) -> list[PolicyProblem]:
    """Validate parsed statements against the schema; each problem carries the line of its statement."""
    if not source.statements:
        return [PolicyProblem(1, None, "no policy statements: a policy file needs at least one permit")]
    text = "\n".join(s.text for s in source.statements)
    result = cedarpy.validate_policies(text, schema())
    problems = []
    for err in result.errors:
        stmt = source.by_policy_id(err.policy_id)
        message = err.error.replace(f"for policy `{err.policy_id}`, ", "")
        if stmt is None:
            problems.append(PolicyProblem(1, None, message))
        else:
            problems.append(PolicyProblem(_locate(stmt.text, stmt.line, message), stmt.label, message))
    return problems


def read_policy(spec: str | Path) -> tuple[PolicySource, list[PolicyProblem]]:
    """Read a bundled pack by name or a ``.cedar`` file by path; return it with every problem found."""
    text, origin = _read_text(spec)
    source, problems = parse_source(text, origin)
    if source.statements or not problems:
        problems += check_source(source)
    return source, sorted(problems, key=lambda p: (p.line, p.message))  # Cedar reports in no fixed order


def load_policy(spec: str | Path) -> PolicySource:
    """Read and validate a policy; UsageError listing ``FILE:LINE: problem`` if it is not valid."""
    source, problems = read_policy(spec)
    if problems:
        listing = "; ".join(f"{source.origin}:{p.line}: {p.message}" for p in problems[:5])
        raise UsageError(
            f"policy {source.origin} is not valid: {listing}",
            hint=f"Run 'bastion policy check {source.origin}' for every problem; the schema is "
            "bastion/policy/schema.cedarschema.",
        )
    return source


def _read_text(spec: str | Path) -> tuple[str, str]:
    name = str(spec)
    if name in PACKS:
        path = resources.files("bastion.policy").joinpath("packs", f"{name}.cedar")
        return path.read_text(encoding="utf-8"), name
    file = Path(spec)
    try:
        if file.stat().st_size > MAX_POLICY_BYTES:
            raise UsageError(
                f"policy {file} is larger than 1 MiB", hint="Split it or check it is a policy file."
            )
        return file.read_text(encoding="utf-8"), str(file)
    except FileNotFoundError as exc:
        raise NotFound(
            f"no policy named {name!r}",
            hint=did_you_mean(name, PACKS, f"Give a .cedar file path or a bundled pack: {', '.join(PACKS)}."),
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read policy {file}: {exc}", hint="Check the path and that it is UTF-8 text."
        ) from exc
