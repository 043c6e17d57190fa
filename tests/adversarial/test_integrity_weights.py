"""Attacks on the weights of a served model by someone who can write the model folder (issue 10, 4-5).

Both worked against wave 1: llama.cpp memory-mapped the GGUF by path, so ``dd conv=notrunc`` into the
served file changed the answers of the running gateway while it still reported the admitted digest;
and the file was verified, then loaded by path, so a swap in between loaded unadmitted bytes (2 of 4
tries). Now the gateway loads a sealed in-memory copy whose hash it compared with the signed manifest.
Every attack runs against both embedded engines (llama-cpp-python and xllamacpp).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from bastion import bundled
from bastion.config import ModelSettings
from bastion.errors import BastionError, IntegrityError
from bastion.registry import Registry, ServedWeights, open_admitted
from bastion.serve.backends import Cancel
from bastion.serve.backends.llama_cpp import LlamaCppBackend
from bastion.serve.backends.xllama import XllamaBackend
from bastion.signing import load_public_key
from tests.adversarial.integrity_gateway import prepare, start_gateway
from tests.serve.conftest import admit_all, stop

PROMPT = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
SMOL = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ENGINES = ["llama-cpp-python", "xllamacpp"]


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def scribble(path: Path) -> None:
    """What the reviewer did: overwrite 100 MB of tensor data in place (same inode, same size)."""
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={path}", "bs=1M", "seek=10", "count=90", "conv=notrunc"],
        check=True, capture_output=True,
    )


def corrupted_copy(src: Path, dst: Path) -> Path:
    """A GGUF with SmolLM2's header and garbage weights: loads fine, answers differently."""
    dst.write_bytes(src.read_bytes())
    scribble(dst)
    return dst


@dataclass(frozen=True)
class Served:
    base: str
    key: str
    home: Path
    model: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture(scope="module", params=ENGINES)
def served(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("integrity-weights")
    model, port, key = prepare(home, request.param)
    proc = start_gateway(home, port)
    try:
        yield Served(f"http://127.0.0.1:{port}/v1", key, home, model, proc)
    finally:
        stop(proc)


def complete(s: Served) -> httpx.Response:
    return httpx.post(s.base + "/completions", json={**PROMPT, "model": "smol"},
                      headers={"Authorization": f"Bearer {s.key}"}, timeout=120)


def answer_of(path: Path) -> str:
    """What llama.cpp answers when it maps ``path`` itself, as wave 1 did (the attack's control)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        return str(llm.create_completion(**PROMPT)["choices"][0]["text"])
    finally:
        llm.close()


@pytest.mark.slow
def test_dd_into_the_served_file_never_changes_an_answer_labelled_with_the_admitted_digest(
    served: Served,
) -> None:
    before = complete(served)
    assert before.status_code == 200, before.text
    assert before.headers["x-bastion-model-digest"] == SMOL
    text = before.json()["choices"][0]["text"]
    assert text.strip()

    scribble(served.model)
    assert sha256(served.model) != SMOL  # the file on disk is no longer the admitted one
    # Control: the same bytes mapped by path (what wave 1 served) answer something else.
    assert answer_of(served.model) != text

    for _ in range(3):
        after = complete(served)
        assert after.status_code == 200, after.text
        assert after.headers["x-bastion-model-digest"] == SMOL
        assert after.json()["system_fingerprint"] == SMOL
        assert after.json()["choices"][0]["text"] == text  # the admitted bytes still answer
    assert served.proc.poll() is None


# -- the window between verification and load, made deterministic through the observe seam ------------


@pytest.fixture(scope="module")
def admitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Path, Path, object, str]:
    home = tmp_path_factory.mktemp("integrity-toctou")
    model = home / "smol.gguf"
    model.write_bytes(bundled.smollm2().read_bytes())
    admit_all(home, {"smol": str(model)})
    other = corrupted_copy(bundled.smollm2(), home / "other.gguf")
    reference = answer_of(model)
    return Registry(home / "bastion.db"), model, other, load_public_key(home / "org" / "signing-key.pub.pem"), reference


def restore(model: Path) -> None:
    tmp = model.with_suffix(".restore")
    tmp.write_bytes(bundled.smollm2().read_bytes())
    os.replace(tmp, model)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def load_and_ask(weights: ServedWeights, engine: str) -> tuple[str, str | None]:
    settings = ModelSettings(name="smol", path="/nonexistent.gguf", n_ctx=256, n_threads=1, parallel=1)
    backend = XllamaBackend(settings) if engine == "xllamacpp" else LlamaCppBackend(settings)
    try:
        await backend.start(weights)
        reply = await backend.run("completion", {**PROMPT, "model": "smol"}, Cancel())
        return str(orjson.loads(reply.body)["choices"][0]["text"]), backend.info.digest
    finally:
        await backend.aclose()


def swap_in(other: Path, model: Path) -> Callable[[], None]:
    def swap() -> None:
        tmp = model.with_suffix(".swap")
        tmp.write_bytes(other.read_bytes())
        os.replace(tmp, model)  # another inode under the admitted path

    return swap


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["opened", "sealed", "verified"])
@pytest.mark.parametrize("attack", ["swap", "dd"])
def test_changing_the_file_after_a_stage_never_loads_unadmitted_bytes(
    admitted: tuple[Registry, Path, Path, object, str], stage: str, attack: str, engine: str
) -> None:
    registry, model, other, public_key, reference = admitted
    restore(model)
    act = swap_in(other, model) if attack == "swap" else (lambda: scribble(model))

    def observe(at: str) -> None:
        if at == stage:
            act()

    try:
        weights = open_admitted(registry, "smol", model, public_key, observe=observe)  # type: ignore[arg-type]
    except IntegrityError as exc:
        # Only an in-place write before the copy reaches the bytes we hash, and it is refused.
        assert (attack, stage) == ("dd", "opened"), exc.message
        assert "changed after admission" in exc.message
        return
    assert (attack, stage) != ("dd", "opened")
    assert sha256(model) != SMOL  # the attack happened
    text, digest = asyncio.run(load_and_ask(weights, engine))
    assert digest == SMOL
    assert text == reference


@pytest.mark.slow
def test_the_real_race_swapping_the_file_in_a_loop_never_loads_unadmitted_bytes(
    admitted: tuple[Registry, Path, Path, object, str], engine: str
) -> None:
    registry, model, other, public_key, reference = admitted
    restore(model)
    good = model.with_suffix(".good")
    good.write_bytes(bundled.smollm2().read_bytes())
    stop_flag = threading.Event()

    def flip() -> None:  # swap admitted and other bytes under the path as fast as rename allows
        i = 0
        while not stop_flag.is_set():
            src = other if i % 2 == 0 else good
            tmp = model.with_suffix(f".flip{i % 2}")
            os.link(src, tmp)
            os.replace(tmp, model)
            i += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    loaded = refused = 0
    try:
        for _ in range(6):
            try:
                weights = open_admitted(registry, "smol", model, public_key)  # type: ignore[arg-type]
            except BastionError:
                refused += 1
                continue
            text, digest = asyncio.run(load_and_ask(weights, engine))
            assert (digest, text) == (SMOL, reference)
            loaded += 1
    finally:
        stop_flag.set()
        flipper.join()
        restore(model)
    assert loaded + refused == 6
