"""What ``serve`` needs before it starts, as checks that ``doctor`` runs too.

Each check raises the BastionError ``serve`` would stop with (same message, same hint), so
``bastion doctor`` reports a start-up failure before ``bastion serve`` meets it: doctor calls these
functions rather than re-describing them, and serve calls them (or the functions they wrap) to start.
"""

from __future__ import annotations

from bastion.config import Settings
from bastion.errors import BastionError, ConfigError
from bastion.policy import LEVELS, AccessPolicy, CedarAuthorizer
from bastion.signing import load_public_key


def require_models(settings: Settings) -> None:
    """ConfigError when no model is configured: a gateway with nothing to serve is a mistake."""
    if not settings.models:
        raise ConfigError(
            "no models are configured", hint="Add a [[models]] table; see bastion.example.toml."
        )


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be listened on now (the very bind serve makes)."""
    try:
        require_port(host, port)
    except BastionError:
        return False
    return True


def require_port(host: str, port: int) -> None:
    """Busy/ConfigError when serve could not listen on ``host:port`` (serve's own bind, then closed)."""
    from bastion.serve.server import bind_listener

    if port:  # 0 asks the system for any free port: always possible
        bind_listener(host, port).close()


def require_no_gateway(settings: Settings) -> None:
    """Busy when a gateway already runs from this home (it holds the pid file's lock)."""
    from bastion.bundled import data_home
    from bastion.serve.pidfile import PidFile

    PidFile.acquire(data_home() / "serve.pid").release()


def registry_enforced(settings: Settings) -> bool:
    """Whether local models must be admitted: enforcement is on and some model has local weights."""
    local = any(m.local for m in settings.models) or settings.registry.serve_admitted
    return settings.registry.enforce and local


def require_public_key(settings: Settings) -> None:
    """ConfigError when the organisation public key that verifies admissions is missing or unreadable."""
    if not registry_enforced(settings):
        return  # nothing local to admit: upstream weights are not on this host
    key_file = settings.registry.public_key
    if not key_file.exists():
        raise ConfigError(
            f"registry.enforce is on but the organisation public key {key_file} does not exist",
            hint="Set registry.public_key to the .pub.pem of the key models are admitted with"
            " ('bastion init' makes one; 'bastion signing-key generate'), or set registry.enforce = false.",
        )
    load_public_key(key_file)


def build_authorizer(settings: Settings) -> CedarAuthorizer:
    """Per-request access by Cedar: the configured policy and group clearances (models carry ceilings)."""
    policy = AccessPolicy(
        settings.policy.access, {group: LEVELS[level] for group, level in settings.policy.clearance.items()}
    )
    return CedarAuthorizer(policy)
