"""One record per served model, built once at start-up: every check on the request path reads it.

Before this record existed, "is this model local?" was asked as ``backend == "openai"`` in five
places and the classification ceiling lived in a separate mapping; a check that forgot one of them
was a hole. Now the router, the authoriser, the admission check, ``/v1/models`` and the audit entry all
read the same :class:`ServedModel`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from bastion.config import ModelSettings, Settings
from bastion.policy import LEVELS, ModelResource


@dataclass(frozen=True)
class ServedModel:
    """A model as the gateway serves it: name, backend, locality, classification, route, admission."""

    name: str
    backend: str
    #: True when the weights are on this host (llama.cpp, MiniLM); False for an upstream HTTP server
    local: bool
    classification: str
    #: the models to try after this one, in order, when it cannot answer
    fallbacks: tuple[str, ...]
    settings: ModelSettings
    #: "sha256:<hex>" of the admission this gateway verified and loaded (None: upstream, or unverified)
    admitted_digest: str | None = None
    #: registry row id of that admission (None when the registry is not enforced or for upstreams)
    admission_id: int | None = None

    @property
    def ceiling(self) -> int:
        """The classification ceiling on the clearance scale (0 public ... 3 top secret)."""
        return LEVELS[self.classification]

    @property
    def resource(self) -> ModelResource:
        """What Cedar sees of this model."""
        return ModelResource(self.name, self.ceiling, self.local)

    def verified(self, digest: str, admission_id: int | None) -> ServedModel:
        """This record once its admission has been verified and its bytes loaded."""
        return replace(self, admitted_digest=digest, admission_id=admission_id)

    @classmethod
    def from_settings(cls, model: ModelSettings) -> ServedModel:
        """The record for one configured model (not yet verified)."""
        return cls(
            name=model.name,
            backend=model.backend,
            local=model.local,
            classification=model.classification,
            fallbacks=tuple(model.fallbacks),
            settings=model,
        )


def admitted_model_settings(name: str, path: str, classification: str) -> ModelSettings | None:
    """Settings to serve an admitted model that is not configured (``registry.serve_admitted``).

    A GGUF file runs on llama.cpp and a folder on the MiniLM encoder; anything else is not served
    (None), because there is no backend to run it.
    """
    backend = "llama_cpp" if path.endswith(".gguf") else "minilm" if Path(path).is_dir() else None
    if backend is None:
        return None
    return ModelSettings(name=name, backend=backend, path=path, classification=classification)  # type: ignore[arg-type]


def served_models(settings: Settings | Iterable[ModelSettings]) -> dict[str, ServedModel]:
    """One record per configured model, by name, in configuration order."""
    models = settings.models if isinstance(settings, Settings) else settings
    return {m.name: ServedModel.from_settings(m) for m in models}
