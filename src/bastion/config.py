"""Configuration: one TOML file, overridden by ``BASTION_<SECTION>__<KEY>`` environment variables.

Loaded once at start-up and passed down; nothing reads the environment or the file afterwards.
``bastion.example.toml`` at the repository root documents every setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from bastion.bundled import data_home, key_home
from bastion.errors import ConfigError
from bastion.store.target import PostgresTarget, Target

ENV_PREFIX = "BASTION_"
#: the configuration file of a home made by `bastion init`, read when no --config/BASTION_CONFIG is given
CONFIG_FILE = "bastion.toml"
ORGANISATION_FILE = "organisation.toml"


#: backends whose weights are files on this host; every other backend is an upstream HTTP server
LOCAL_BACKENDS = frozenset({"llama_cpp", "minilm"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: largest request body accepted, in bytes (413 above it)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    #: largest file accepted by POST /v1/files, in bytes (413 above it)
    max_upload_bytes: int = Field(33_554_432, ge=1024)
    #: largest request line + headers, in bytes (431 above it; memory a client can pin per connection)
    max_header_bytes: int = Field(65_536, ge=4096)
    #: most header fields in one request (431 above it)
    max_headers: int = Field(100, ge=16)
    #: seconds a client may take to send a request's head once it has started (408 after; slow clients)
    header_timeout_s: float = Field(10.0, gt=0)
    #: uvicorn access log (off by default: the audit log is the record)
    access_log: bool = False
    #: callers on this host count as administrators (health details, /metrics, POST /admin/reload);
    #: turn off behind a reverse proxy on the same host, where every caller looks local
    admin_loopback: bool = True
    #: API keys in this group are administrators wherever they call from
    admin_group: str = "bastion-admin"
    #: gateway processes sharing the port (each loads every model: memory grows with the count); they
    #: share only the store and the model files, like replicas behind a load balancer
    workers: int = Field(1, ge=1, le=64)


class StoreSettings(_Strict):
    #: SQLite database holding API keys, the registry, usage and withdrawals (when url is not set)
    path: Path = Field(default_factory=lambda: data_home() / "bastion.db")
    #: PostgreSQL instead of the SQLite files: "postgresql://user:password@host:5432/dbname" (libpq URL;
    #: the password may also come from ~/.pgpass or PGPASSWORD). Keys, registry, usage, withdrawals,
    #: the audit log and eval results then live in that database; store.path and audit.path are unused
    url: str | None = None
    #: most PostgreSQL connections one process opens (all its stores share one pool); the server's
    #: max_connections must cover every replica's pool_size plus a few for the administrators
    pool_size: int = Field(10, ge=1, le=1000)

    @model_validator(mode="after")
    def _postgres_url(self) -> StoreSettings:
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "store.url must be a PostgreSQL URL (postgresql://user@host:5432/dbname); "
                "leave it out to use the SQLite file at store.path"
            )
        return self

    def target(self) -> Target:
        """Where the stores keep their data: the PostgreSQL database, else the SQLite file."""
        return PostgresTarget(self.url, self.pool_size) if self.url else self.path


class EgressSettings(_Strict):
    #: refuse outbound connections except to loopback and configured upstreams
    guard: bool = True
    #: extra host names or IP addresses that may be contacted (besides upstreams)
    allow: tuple[str, ...] = ()


class AuditSettings(_Strict):
    #: record every gateway request and admin action (the gateway refuses to start unaudited when on
    #: and the log is not initialised: run `bastion audit init`)
    enabled: bool = True
    #: SQLite database of the tamper-evident audit log (its own file: synchronous=FULL writes)
    path: Path = Field(default_factory=lambda: data_home() / "audit" / "audit.db")
    #: Ed25519 key that signs tree heads (made by `bastion audit init`). Outside BASTION_HOME by default
    #: ($BASTION_KEY_HOME, else ~/.config/bastion/keys): a writer of the database must not be able to
    #: read it. Must be mode 0600 (refused if group or others can read it). Public half: `<key>.pub`.
    signing_key: Path = Field(default_factory=lambda: key_home() / "audit-signing.key")
    #: AES-256 key (hex) that encrypts stored bodies when store_bodies = "full" (mode 0600, same place)
    body_key: Path = Field(default_factory=lambda: key_home() / "audit-body.key")
    #: "none": no body data at all; "hashes": SHA-256 of request and response bodies; "full": hashes
    #: plus the bodies, encrypted with body_key
    store_bodies: Literal["none", "hashes", "full"] = "hashes"
    #: sign a tree head when this many seconds have passed since the last one (and on close)
    sth_interval_s: float = Field(10.0, gt=0)
    #: ... or when this many entries were appended since the last one, whichever comes first
    sth_every: int = Field(10_000, ge=1)
    # store.url's database, copied here by Settings (the log lives there when PostgreSQL is configured)
    _database: PostgresTarget | None = PrivateAttr(default=None)

    def target(self) -> Target:
        """Where the log lives: the store's PostgreSQL database when configured, else ``path``."""
        return self._database or self.path

    def on_postgres(self, database: PostgresTarget | None) -> AuditSettings:
        """A copy of these settings whose log lives in ``database`` (None: the SQLite file)."""
        copy = self.model_copy()
        copy._database = database
        return copy


class RegistrySettings(_Strict):
    #: serve only admitted models: at start-up each local model's signature is verified and its files
    #: re-hashed (digest cache) against the admitted manifest; a revoked model stops being served
    enforce: bool = True
    #: the organisation's public key (PEM) that verifies admission signatures
    public_key: Path = Field(default_factory=lambda: data_home() / "org" / "signing-key.pub.pem")
    #: also serve every admitted model that is not configured under [[models]], under its admitted
    #: name (a GGUF with llama.cpp, a folder with the MiniLM encoder); `bastion import` then
    #: `bastion policy reload` (or POST /admin/reload) makes a new model servable without a restart
    serve_admitted: bool = False
    #: classification ceiling of models served that way (callers need that clearance)
    admitted_classification: Literal["public", "official", "secret", "top-secret"] = "official"
    #: the organisation's private key (PEM) that `bastion admit` signs with when --key is not given
    signing_key: Path = Field(default_factory=lambda: data_home() / "org" / "signing-key.pem")


class PolicySettings(_Strict):
    #: Cedar policy for per-request access: a bundled pack (permissive, enterprise, sovereign-strict)
    #: or a .cedar file; `bastion policy reload` (SIGHUP) re-reads it without a restart
    access: str = "permissive"
    #: clearance level of each group (public, official, secret, top-secret); a key's clearance is
    #: the highest of its groups'
    clearance: dict[str, Literal["public", "official", "secret", "top-secret"]] = Field(default_factory=dict)
    #: organisation.toml (name, country, denied countries, trusted signers) used when a command gets
    #: no --org; default: $BASTION_HOME/organisation.toml if it exists, else the bundled example
    organisation: Path | None = None


class LimitSettings(_Strict):
    #: requests per minute (sliding window); unset = unlimited
    rpm: int | None = Field(None, ge=1)
    #: tokens (prompt + completion) per minute; a request reserves its prompt and max_tokens up front
    tpm: int | None = Field(None, ge=1)
    #: tokens per budget period (quotas.period)
    budget_tokens: int | None = Field(None, ge=1)


class QuotaSettings(_Strict):
    #: reserve before sending, settle on completion; 429 with Retry-After and x-ratelimit-* headers
    enabled: bool = False
    #: budget period: "day", "week" (from Monday) or "month", UTC
    period: Literal["day", "week", "month"] = "month"
    #: limits of every API key
    key: LimitSettings = LimitSettings()
    #: limits per group name (a key in several groups is held to each)
    groups: dict[str, LimitSettings] = Field(default_factory=dict)
    #: limits of the whole organisation (every key together)
    organisation: LimitSettings = LimitSettings()
    #: seconds a gateway process's unsettled reservations keep holding budget after it stops renewing
    #: its lease (renewed every lease_s / 3 while it runs): a replica killed mid-request frees them then
    lease_s: float = Field(30.0, ge=1)


class CostSettings(_Strict):
    #: what running this gateway's local models costs per hour of hardware (amortised purchase, power,
    #: hosting), in USD; with the recorded durations it gives local cost (`bastion usage`, /metrics)
    hardware_usd_per_hour: float | None = Field(None, ge=0)
    #: a price table of cloud models to compare with, in the shipped format (default: the table shipped
    #: in the package, src/bastion/quota/prices.toml); never fetched from the network
    prices: Path | None = None


Level = Literal["public", "official", "secret", "top-secret"]


class OrgMarkingSettings(_Strict):
    #: the marking as written (matched in any case, spacing and look-alike characters)
    label: str = Field(min_length=2, max_length=200)
    #: the classification it stands for
    level: Level


class DlpSettings(_Strict):
    #: scan every request (and answer) for classification markings, personal data and secrets; Cedar
    #: decides per model whether to send it as is, pseudonymised, redacted, or block it
    enabled: bool = True
    #: a scan that fails or takes longer than this refuses the request (503): nothing goes unchecked
    timeout_ms: float = Field(2000.0, gt=0)
    #: regions for phone numbers written without a +country code (ISO 3166 alpha-2)
    phone_regions: tuple[str, ...] = ("US", "GB")
    #: the organisation's own markings, e.g. {label = "ACME CONFIDENTIAL", level = "secret"}
    markings: tuple[OrgMarkingSettings, ...] = ()


class RagSettings(_Strict):
    #: SQLite database of retrieval collections: documents, chunks, FTS5 index and vectors
    path: Path = Field(default_factory=lambda: data_home() / "rag" / "rag.db")
    #: characters per chunk (all-MiniLM-L6-v2 reads ~1,000 characters of English)
    chunk_chars: int = Field(800, ge=100, le=4000)
    #: characters shared by consecutive chunks
    chunk_overlap: int = Field(120, ge=0, le=1000)
    #: sentence-transformers folder that embeds chunks and queries (bundled:minilm or a path)
    embedder: str = "bundled:minilm"


class ModelSettings(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    #: "llama_cpp" (embedded GGUF), "openai" (an OpenAI-compatible upstream), "minilm" (embeddings)
    backend: Literal["llama_cpp", "openai", "minilm"] = "llama_cpp"
    #: GGUF file or model folder; "bundled:smollm2", "bundled:gemma3", "bundled:minilm" or a path
    path: str | None = None
    #: upstream base URL including /v1, e.g. http://127.0.0.1:8000/v1
    url: str | None = None
    #: model name to send upstream (defaults to `name`)
    upstream_model: str | None = None
    #: environment variable holding the upstream's API key (never the key itself)
    api_key_env: str | None = None
    #: whole-attempt limit for one upstream request (connect, headers and body or stream)
    timeout_s: float = Field(120.0, gt=0)
    #: largest upstream answer accepted, in bytes: a whole non-streamed body, or a whole stream's total
    #: (502 above it; redirects are never followed either)
    max_response_bytes: int = Field(8_388_608, ge=1024)
    #: refuse an upstream answer naming another model than upstream_model (a prefix match: dated
    #: versions pass); turn off for upstreams that name models their own way (Azure deployments)
    check_model_name: bool = True
    #: seconds to establish the upstream connection
    connect_timeout_s: float = Field(5.0, gt=0)
    #: seconds to wait for the upstream's first byte, and between bytes while reading (a stall)
    first_byte_timeout_s: float = Field(60.0, gt=0)
    n_ctx: int = Field(2048, ge=128)
    n_threads: int | None = Field(None, ge=1)
    #: llama-cpp-python chat format name (e.g. "gemma", "chatml") for GGUFs without a chat template
    chat_format: str | None = None
    #: engine for a local GGUF: "llama-cpp-python" (one request at a time) or "xllamacpp" (llama.cpp's
    #: server loop in-process: `parallel` slots decoded together in one batch)
    engine: Literal["llama-cpp-python", "xllamacpp"] = "llama-cpp-python"
    #: requests generated at once (xllamacpp slots; each gets the whole n_ctx): memory grows with it
    parallel: int = Field(4, ge=1, le=64)
    #: requests that may wait behind the running one before 429
    max_queue: int = Field(8, ge=0)
    #: models to try, in order, when this one's backend is unavailable (one deployment per tier,
    #: after the tiers of `route`)
    fallbacks: tuple[str, ...] = ()
    #: the deployments that answer for this name, in priority tiers: [["a", "b"], ["c"]] spreads
    #: traffic over a and b, and goes to c only when neither can answer; this model must be in the
    #: first tier. Default: [[this model]]
    route: tuple[tuple[str, ...], ...] = ()
    #: how a tier of `route` picks a deployment: "weighted" (random by `weight`) or
    #: "least_outstanding" (fewest requests in flight on this gateway)
    balance: Literal["weighted", "least_outstanding"] = "weighted"
    #: this deployment's share of its tier's traffic under balance = "weighted" (relative to the others)
    weight: float = Field(1.0, gt=0)
    #: attempts again at the same deployment after a transient failure (unreachable, reset, 5xx; not a
    #: timeout), before any byte reached the client; the route's (the requested model's) setting applies
    retries: int = Field(1, ge=0, le=5)
    #: first backoff before a retry, in seconds; doubled each retry, capped by retry_backoff_max_s, and
    #: fully jittered (a random wait between 0 and that)
    retry_backoff_s: float = Field(0.1, ge=0)
    retry_backoff_max_s: float = Field(2.0, ge=0)
    #: an upstream's 429 whose Retry-After is at most this many seconds is waited out and retried;
    #: a longer one moves on to the next deployment and opens this one's circuit for that long
    retry_after_max_s: float = Field(1.0, ge=0)
    #: seconds between health checks of an upstream (GET /models); a refused check (unreachable, an
    #: error status) counts as a failure for its circuit breaker
    health_interval_s: float = Field(5.0, gt=0)
    #: longest wait for one health check's answer (a check that times out only marks the upstream
    #: unhealthy: one busy generating may list its models slowly)
    health_timeout_s: float = Field(10.0, gt=0)
    #: who runs this deployment (e.g. "azure-openai", "in-house"); `bastion withdraw --provider` matches it
    provider: str | None = None
    #: ISO 3166 country whose jurisdiction the deployment is in; `bastion withdraw --country` matches it
    country: str | None = None
    #: consecutive failures (unavailable, timed out) that open this deployment's circuit breaker
    breaker_failures: int = Field(3, ge=1)
    #: seconds an open circuit skips this deployment before one probe request is let through
    breaker_cooldown_s: float = Field(30.0, gt=0)
    #: default max_tokens when a request sets none
    default_max_tokens: int = Field(256, ge=1)
    #: highest data classification this model may hold or return; callers need that clearance
    classification: Level = "public"

    @property
    def local(self) -> bool:
        """Whether the weights are on this host (admitted, hashed, loaded here) rather than upstream."""
        return self.backend in LOCAL_BACKENDS

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelSettings:
        if self.backend == "openai" and not self.url:
            raise ValueError(f"model {self.name!r}: backend 'openai' needs url")
        if self.backend in ("llama_cpp", "minilm") and not self.path:
            raise ValueError(f"model {self.name!r}: backend {self.backend!r} needs path")
        return self


class Settings(_Strict):
    # Sections are built per load (default_factory), so their path defaults read BASTION_HOME and
    # BASTION_KEY_HOME when the settings are loaded, not when this module was first imported.
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    dlp: DlpSettings = Field(default_factory=DlpSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    models: tuple[ModelSettings, ...] = ()
    #: where the settings came from (for `bastion doctor` and logs)
    source: str = "defaults"

    @model_validator(mode="after")
    def _audit_follows_store(self) -> Settings:
        target = self.store.target()
        if isinstance(target, PostgresTarget):
            object.__setattr__(self, "audit", self.audit.on_postgres(target))  # frozen: set once, here
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        for m in self.models:
            for fb in m.fallbacks:
                if fb not in names:
                    raise ValueError(f"model {m.name!r}: fallback {fb!r} is not a configured model")
            _check_route(m, names)
        return self

    def model(self, name: str) -> ModelSettings | None:
        """The settings of the model called ``name``, if configured."""
        return next((m for m in self.models if m.name == name), None)

    def organisation_file(self) -> Path | None:
        """The organisation.toml commands use without --org (None: the bundled example)."""
        if self.policy.organisation is not None:
            return self.policy.organisation
        default = data_home() / ORGANISATION_FILE
        return default if default.exists() else None


def _check_route(model: ModelSettings, names: list[str]) -> None:
    """A route names configured models, each once, and starts with a tier holding the model itself."""
    if not model.route:
        return
    flat = [n for tier in model.route for n in tier]
    if any(not tier for tier in model.route):
        raise ValueError(f"model {model.name!r}: a tier of its route is empty")
    if model.name not in model.route[0]:
        raise ValueError(f"model {model.name!r}: the first tier of its route must include {model.name!r}")
    for name in flat:
        if name not in names:
            raise ValueError(f"model {model.name!r}: route names {name!r}, which is not a configured model")
    every = flat + list(model.fallbacks)
    repeated = sorted({n for n in every if every.count(n) > 1})
    if repeated:
        raise ValueError(f"model {model.name!r}: its route names {', '.join(repeated)} more than once")


DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    {"name": "smollm2", "backend": "llama_cpp", "path": "bundled:smollm2"},
)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``BASTION_SERVER__PORT=9000`` -> ``{"server": {"port": "9000"}}`` (pydantic coerces types)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key.removeprefix(ENV_PREFIX).lower().partition("__")
        if section in ("server", "store", "egress", "audit", "registry", "policy", "dlp") and field:
            if (section, field) in (("egress", "allow"), ("dlp", "phone_regions")):
                out.setdefault(section, {})[field] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                out.setdefault(section, {})[field] = value
    return out


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read ``path`` (else $BASTION_CONFIG, else $BASTION_HOME/bastion.toml, else built-in defaults),
    apply environment overrides and validate everything."""
    environ = dict(os.environ) if environ is None else environ
    if path is None and environ.get("BASTION_CONFIG"):
        path = Path(environ["BASTION_CONFIG"])
    if path is None and (data_home() / CONFIG_FILE).is_file():
        path = data_home() / CONFIG_FILE  # the home's own configuration, as `bastion init` wrote it
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"configuration file {path} does not exist",
                hint="Copy bastion.example.toml and edit it, or omit --config to use the defaults.",
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML: {exc}", hint="Fix the syntax at the line and column named."
            ) from exc
        source = str(path)
    raw.setdefault("models", list(DEFAULT_MODELS))
    for section, values in _env_overrides(environ).items():
        raw.setdefault(section, {}).update(values)
    raw["source"] = source
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration ({source}): {problems}",
            hint="See bastion.example.toml for every setting and its allowed values.",
        ) from exc
