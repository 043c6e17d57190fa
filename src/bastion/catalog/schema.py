"""The schema of the provenance catalog (``catalog.toml``): one pydantic model per row, validated at load."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Notable licence restrictions. A fixed vocabulary so that Cedar policies can test for them by name.
LicenseFlag = Literal[
    "acceptable_use_policy",  # use is bound by a separate acceptable-use policy
    "attribution_required",  # "Built with X" / display-name clauses
    "eu_excluded",  # rights withheld from EU-domiciled licensees (e.g. Llama 4 multimodal)
    "mau_cap_100m",  # more than 100M monthly active users needs a separate licence / attribution
    "mau_cap_700m",  # more than 700M monthly active users needs a separate licence (Llama)
    "naming_requirement",  # derivative names must carry the original name
    "no_competing_models",  # may not be used to build competing models
    "non_commercial",  # commercial use not granted
    "registration_required",  # commercial use needs registration with the developer
    "research_only",  # research licence
    "territory_restricted",  # licence does not apply in named territories (e.g. EU, UK, KR)
    "use_restrictions_flow_down",  # restrictions must be passed on to derivatives and users
]

Relation = Literal["fine-tune", "distilled", "pruned", "continued-pretraining", "merge", "quantized"]

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


class CatalogEntry(_Strict):
    """One open-weight release: who made it, where, under which licence, derived from what."""

    name: str = Field(min_length=2, max_length=120)
    aliases: tuple[str, ...] = ()
    developer: str = Field(min_length=2)
    country: str
    released: str
    params_b: float = Field(gt=0, lt=10_000)
    active_params_b: float | None = Field(None, gt=0)
    context: int | None = Field(None, ge=128)
    license: str = Field(min_length=2)
    license_flags: tuple[LicenseFlag, ...] = ()
    base_model: str | None = None
    relation: Relation | None = None
    #: GGUF ``general.architecture`` / config.json ``model_type``, used by identification
    architecture: str | None = None
    #: SHA-256 of the tokenizer vocabulary (see identify.py), when measured on a real file
    tokenizer_sha256: tuple[str, ...] = ()
    verified: bool
    source: str = Field(pattern=r"^https://")
    evidence: str | None = None
    note: str | None = None
    benchmarks: tuple[Benchmark, ...] = ()

    @field_validator("country")
    @classmethod
    def _iso_country(cls, v: str) -> str:
        if not _COUNTRY.match(v):
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
        return self

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
