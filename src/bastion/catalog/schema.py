"""The schema of the provenance catalog (``catalog.toml``): one pydantic model per row, validated at load."""

from __future__ import annotations

import re
import tomllib
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.errors import ConfigError

#: Notable licence restrictions. A fixed vocabulary so that Cedar policies can test for them by name.
LicenseFlag = Literal[
    "acceptable_use_policy",  # use is bound by a separate acceptable-use policy
    "attribution_required",  # "Built with X" / display-name clauses
    "commercial_redistribution_by_agreement",  # redistributing/sublicensing commercially needs a contract
    "eu_excluded",  # rights withheld from EU-domiciled licensees (e.g. Llama 4 multimodal)
    "mau_cap_100m",  # more than 100M monthly active users needs a separate licence / attribution
    "mau_cap_700m",  # more than 700M monthly active users needs a separate licence (Llama)
    "naming_requirement",  # derivative names must carry the original name
    "no_competing_models",  # may not be used to build competing models
    "non_commercial",  # commercial use not granted
    "notice_required",  # the licence text or a Notice file must accompany every redistribution
    "registration_required",  # commercial use needs registration with the developer
    "research_only",  # research licence
    "territory_restricted",  # licence does not apply in named territories (e.g. EU, UK, KR)
    "use_restrictions_flow_down",  # restrictions must be passed on to derivatives and users
]

Relation = Literal["fine-tune", "distilled", "pruned", "continued-pretraining", "merge", "quantized"]

#: The facts a row states. A verified row cites a source for every one it sets (``license_flags``
#: always: an empty list claims "no notable restriction", which needs checking as much as a flag does).
Fact = Literal[
    "developer",
    "country",
    "developed_in",
    "released",
    "params_b",
    "active_params_b",
    "context",
    "license",
    "license_flags",
    "base_model",
]

_FACTS: tuple[str, ...] = get_args(Fact)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MONTH = re.compile(r"^(19|20)\d\d-(0[1-9]|1[0-2])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Benchmark(_Strict):
    """One published figure: benchmark, the setting it was measured in (shots, mode, evaluator), value."""

    name: str = Field(min_length=2)
    setting: str = Field(min_length=2)
    value: float = Field(ge=0, le=100)
    #: where this figure was published, when not the entry's own source
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The figure as a plain mapping."""
        return self.model_dump()


class Citation(_Strict):
    """Which facts of a row one primary source backs: its URL and a short quote or section number."""

    facts: tuple[Fact, ...] = Field(min_length=1)
    url: str = Field(pattern=r"^https://")
    #: a short verbatim quote, or the section ("LICENSE §2.1") the facts were read from
    quote: str = Field(min_length=4, max_length=600)


class CatalogEntry(_Strict):
    """One open-weight release: who made it, where, under which licence, derived from what."""

    name: str = Field(min_length=2, max_length=120)
    aliases: tuple[str, ...] = ()
    developer: str = Field(min_length=2)
    #: headquarters country of the developer
    country: str
    #: where the model was built, when it differs from the headquarters (e.g. a lab's foreign branch)
    developed_in: str | None = None
    released: str
    params_b: float = Field(gt=0, lt=10_000)
    active_params_b: float | None = Field(None, gt=0)
    context: int | None = Field(None, ge=128)
    license: str = Field(min_length=2)
    license_flags: tuple[LicenseFlag, ...] = ()
    #: whether this licence's terms bind models derived from this one. True unless the licence text
    #: releases derivatives from them (cite the clause): a fine-tune cannot shed its base's terms.
    license_binds_derivatives: bool = True
    base_model: str | None = None
    relation: Relation | None = None
    #: GGUF ``general.architecture`` / config.json ``model_type``, used by identification
    architecture: str | None = None
    #: SHA-256 of the tokenizer vocabulary (see identify.py), when measured on a real file
    tokenizer_sha256: tuple[str, ...] = ()
    verified: bool
    source: str = Field(pattern=r"^https://")
    evidence: str | None = None
    #: per-fact evidence; required for every stated fact when ``verified`` is true
    citations: tuple[Citation, ...] = ()
    note: str | None = None
    benchmarks: tuple[Benchmark, ...] = ()

    @field_validator("country", "developed_in")
    @classmethod
    def _iso_country(cls, v: str | None) -> str | None:
        if v is not None and not _COUNTRY.match(v):
            raise ValueError(f"country {v!r} is not an ISO 3166-1 alpha-2 code such as 'US'")
        return v

    @field_validator("released")
    @classmethod
    def _month(cls, v: str) -> str:
        if not _MONTH.match(v):
            raise ValueError(f"released {v!r} is not a month in the form YYYY-MM")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if self.active_params_b is not None and self.active_params_b >= self.params_b:
            raise ValueError("active_params_b must be below params_b (omit it for dense models)")
        if (self.base_model is None) != (self.relation is None):
            raise ValueError("base_model and relation go together: set both or neither")
        if self.base_model == self.name:
            raise ValueError("an entry cannot be its own base_model")
        seen = set()
        for b in self.benchmarks:
            key = (b.name, b.setting)
            if key in seen:
                raise ValueError(f"benchmark {b.name!r} with setting {b.setting!r} is listed twice")
            seen.add(key)
        if self.verified and self.uncited_facts():
            raise ValueError(
                f"verified = true, but no citation backs {', '.join(self.uncited_facts())}: "
                "add [[model.citations]] with facts, url and quote, or set verified = false"
            )
        return self

    def stated_facts(self) -> tuple[str, ...]:
        """The facts this row states (optional ones only when set)."""
        optional = {
            "developed_in": self.developed_in,
            "active_params_b": self.active_params_b,
            "context": self.context,
            "base_model": self.base_model,
        }
        return tuple(f for f in _FACTS if optional.get(f, True) is not None)

    def uncited_facts(self) -> tuple[str, ...]:
        """Stated facts that no citation backs (empty for a fully evidenced row)."""
        cited = {f for c in self.citations for f in c.facts}
        return tuple(f for f in self.stated_facts() if f not in cited)

    @property
    def made_in(self) -> str:
        """Where the model was developed: ``developed_in`` when given, else the headquarters country."""
        return self.developed_in or self.country

    @property
    def active_b(self) -> float:
        """Active parameters in billions (the total for dense models)."""
        return self.active_params_b if self.active_params_b is not None else self.params_b

    def to_json(self) -> dict[str, Any]:
        """The entry as a plain mapping."""
        return self.model_dump(mode="json")


class CatalogFile(_Strict):
    """The whole file: a list of entries under ``[[model]]``."""

    model: tuple[CatalogEntry, ...] = Field(min_length=1)


M = TypeVar("M", bound=BaseModel)


def read_toml(model: type[M], text: str, origin: str) -> M:
    """Parse TOML ``text`` into ``model``; ConfigError naming the entry and field on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid TOML: {exc}", hint="Fix the syntax at the position shown."
        ) from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        where = "/".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "model" and isinstance(loc[1], int):
            models = raw.get("model", [])
            if isinstance(models, list) and loc[1] < len(models) and isinstance(models[loc[1]], dict):
                where = (
                    f"entry {models[loc[1]].get('name', loc[1])!r}, field {'/'.join(str(p) for p in loc[2:])}"
                )
        raise ConfigError(
            f"{origin}: {where}: {first['msg']} ({exc.error_count()} problem(s) in total)",
            hint="Correct the entry; the schema is bastion/catalog/schema.py.",
        ) from exc
