"""``bastion init``: one step that makes a consistent home.

A home holds the organisation's signing key, ``organisation.toml`` trusting that key, an initialised
audit log and a ``bastion.toml`` whose every path points at what was made here, so the commands that
follow (``admit``, ``keys create``, ``serve``, ``doctor``) agree with each other without flags.
Re-running is safe: what exists is kept, and keys are replaced only with ``force`` (the old key is
moved aside, never deleted: signatures made with it must stay checkable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bastion.audit import initialise_log, log_exists
from bastion.config import CONFIG_FILE, ORGANISATION_FILE, AuditSettings, Settings, load_settings
from bastion.errors import ConfigError, UsageError
from bastion.policy import Organisation
from bastion.signing import generate_key_pair, key_hint, load_public_key
from bastion.signing.keys import write_atomic

DEFAULT_PORT = 8080
DEFAULT_DENIED = ("CN", "RU", "IR", "KP")
Outcome = Literal["created", "kept", "replaced"]


@dataclass(frozen=True)
class Step:
    """One thing ``init`` made or found, and what it did with it."""

    what: str
    path: Path
    outcome: Outcome
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "path": str(self.path), "outcome": self.outcome, "note": self.note or None}


@dataclass(frozen=True)
class InitResult:
    """The home that was made, its configuration and the commands to run next."""

    home: Path
    config: Path
    port: int
    key_hint: str
    steps: tuple[Step, ...]
    next_commands: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "config": str(self.config),
            "port": self.port,
            "key_hint": self.key_hint,
            "steps": [s.to_json() for s in self.steps],
            "next": list(self.next_commands),
        }


def choose_port(host: str, wanted: int | None) -> int:
    """``wanted`` if free (error if not); else 8080 or the next free port above it."""
    from bastion.serve.preflight import port_free, require_port  # the very bind serve makes

    if wanted is not None:
        require_port(host, wanted)  # Busy, with serve's own message and hint
        return wanted
    for port in range(DEFAULT_PORT, DEFAULT_PORT + 50):
        if port_free(host, port):
            return port
    raise ConfigError(f"no free port in {DEFAULT_PORT}-{DEFAULT_PORT + 49} on {host}", hint="Use --port.")


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def organisation_text(name: str, country: str, denied: tuple[str, ...], signer: str) -> str:
    """The ``organisation.toml`` of a new home: its name, country, lists and its own key as signer."""
    lines = [
        "# The organisation's own lists, read by every policy as attributes of Bastion::Organisation.",
        "# Written by `bastion init`; edit freely (policy files stay unchanged).",
        f"name = {_toml_str(name)}",
    ]
    if country:
        lines.append(f"country = {_toml_str(country)}")
    lines += [
        "# ISO 3166-1 alpha-2 codes whose labs may not appear anywhere in an admitted model's lineage.",
        f"denied_countries = {_toml_list(denied)}",
        "# Hints of the keys whose signature over a manifest the organisation trusts (org/signing-key.pem).",
        f"trusted_signers = {_toml_list((signer,))}",
    ]
    return "\n".join(lines) + "\n"


def config_text(home: Path, host: str, port: int, policy: str) -> str:
    """A ``bastion.toml`` whose paths point at what init makes; serves the bundled SmolLM2.

    Everything is in ``home`` but the audit keys, which stay where the operator keeps keys
    ($BASTION_KEY_HOME, else ~/.config/bastion/keys): written out so the file is true wherever it is read.
    """
    h = home
    keys = AuditSettings()
    return f"""# Written by `bastion init`: every path points at what init made in {h} (audit keys: [audit]).
# Every setting is documented in bastion.example.toml.

[server]
host = {_toml_str(host)}
port = {port}

[store]
path = {_toml_str(str(h / "bastion.db"))}

[registry]
enforce = true
public_key = {_toml_str(str(h / "org" / "signing-key.pub.pem"))}
signing_key = {_toml_str(str(h / "org" / "signing-key.pem"))}
# serve every admitted model under its admitted name too: `bastion import`, then `bastion policy reload`
serve_admitted = true
admitted_classification = "public"

[policy]
access = {_toml_str(policy)}
organisation = {_toml_str(str(h / ORGANISATION_FILE))}

[audit]
enabled = true
path = {_toml_str(str(h / "audit" / "audit.db"))}
# the operator's keys, outside this home: a writer of the log must not hold the key that signs it
signing_key = {_toml_str(str(keys.signing_key))}
body_key = {_toml_str(str(keys.body_key))}

[[models]]
name = "smollm2"
backend = "llama_cpp"
path = "bundled:smollm2"
"""


def _org_key(org_dir: Path, force: bool) -> tuple[Step, str]:
    private = org_dir / "signing-key.pem"
    public = org_dir / "signing-key.pub.pem"
    if private.exists() or public.exists():
        if not force:
            if not public.exists():
                raise ConfigError(
                    f"{private} exists without its public half {public}",
                    hint="Restore signing-key.pub.pem, or re-run with --force to make a new key pair.",
                )
            hint = key_hint(load_public_key(public))
            return Step(
                "organisation signing key", private, "kept", f"key {hint}; --force makes a new one"
            ), hint
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for p in (private, public):
            if p.exists():
                # Moved aside, not deleted: admissions signed with the old key must stay checkable.
                p.replace(p.with_name(f"{p.name}.replaced-{stamp}"))
        pair = generate_key_pair(org_dir)
        return Step(
            "organisation signing key",
            private,
            "replaced",
            f"key {pair.key_hint}; old key kept as *.replaced-{stamp}",
        ), pair.key_hint
    pair = generate_key_pair(org_dir)
    return Step(
        "organisation signing key", private, "created", f"key {pair.key_hint}, mode 0600"
    ), pair.key_hint


def init_home(
    home: Path,
    *,
    org_name: str,
    country: str = "",
    denied_countries: tuple[str, ...] = DEFAULT_DENIED,
    host: str = "127.0.0.1",
    port: int | None = None,
    policy: str = "permissive",
    force: bool = False,
) -> InitResult:
    """Make (or complete) the home at ``home``; what exists is kept unless ``force``."""
    for c in (*denied_countries, *([country] if country else [])):
        if not (len(c) == 2 and c.isalpha() and c.isupper()):
            raise UsageError(
                f"{c!r} is not an ISO 3166-1 alpha-2 country code", hint="For example: FR, US, CN."
            )
    home = home.expanduser().resolve()
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(
            f"cannot create {home}: {exc.strerror or exc}", hint="Choose a writable --home."
        ) from exc
    steps: list[Step] = []
    key_step, signer = _org_key(home / "org", force)
    steps.append(key_step)

    org_file = home / ORGANISATION_FILE
    if org_file.exists() and not force and key_step.outcome == "kept":
        trusted = Organisation.load(org_file).trusted_signers
        note = "" if signer in trusted else f"does NOT trust key {signer}: --force rewrites it"
        steps.append(Step("organisation.toml", org_file, "kept", note))
    else:
        outcome: Outcome = "replaced" if org_file.exists() else "created"
        write_atomic(org_file, organisation_text(org_name, country, denied_countries, signer).encode())
        steps.append(Step("organisation.toml", org_file, outcome, f"trusts key {signer}"))

    config = home / CONFIG_FILE
    if config.exists() and not force:
        settings = load_settings(config)
        chosen = settings.server.port
        steps.append(Step("configuration", config, "kept", "--force rewrites it"))
    else:
        chosen = choose_port(host, port)
        outcome = "replaced" if config.exists() else "created"
        write_atomic(config, config_text(home, host, chosen, policy).encode())
        settings = load_settings(config)
        steps.append(Step("configuration", config, outcome, f"port {chosen}, free now"))

    steps.append(_audit(settings))
    nxt = next_commands(home, settings)
    return InitResult(home, config, chosen, signer, tuple(steps), nxt)


def _audit(settings: Settings) -> Step:
    audit = settings.audit
    if log_exists(audit.target()):
        # Never a new key over an existing log: its signed heads would no longer verify.
        return Step("audit log", audit.path, "kept", "an existing log keeps its keys, even with --force")
    keys, _, _, _ = initialise_log(audit)
    return Step(
        "audit log", audit.path, "created", f"tree heads signed by key {keys.key_id} in {keys.signing_key}"
    )


def next_commands(home: Path, settings: Settings) -> tuple[str, ...]:
    """The three commands that take a new home to a served model."""
    model = settings.models[0].name if settings.models else "smollm2"
    ref = settings.models[0].path if settings.models and settings.models[0].path else "bundled:smollm2"
    return (
        f"bastion admit {ref} --name {model} --policy sovereign-strict",
        f"bastion keys create alice --model {model}",
        "bastion serve",
    )
