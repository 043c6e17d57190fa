"""The derived models are what they claim: the permuted one computes the same function (llama.cpp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bastion import bundled

LOGITS = """
import sys
import numpy as np
from llama_cpp import Llama
out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    llm = Llama(path, n_ctx=64, n_threads=2, logits_all=True, verbose=False)
    toks = llm.tokenize(b"The capital of France is Paris. The capital of Italy is")
    llm.eval(toks)
    np.save(f"{out}/{i}.npy", np.asarray(llm.scores[: len(toks)], dtype=np.float32))
"""


# The first test here may pay for making the derived models (minutes on a loaded 2-core machine).
pytestmark = pytest.mark.timeout(2400)


def _logits(tmp: Path, *paths: Path) -> list[np.ndarray]:
    # In a child process: llama.cpp's spinning OpenMP threads would slow the torch fixtures in this one.
    subprocess.run(
        [sys.executable, "-c", LOGITS, str(tmp), *map(str, paths)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return [np.load(tmp / f"{i}.npy") for i in range(len(paths))]


@pytest.mark.slow
def test_permuted_model_computes_the_same_logits_as_the_base(
    lineage_models: dict[str, Path], tmp_path: Path
) -> None:
    from lineage_models import load_gguf, write_gguf

    # The same weights written the same way (F16) but not permuted: the only difference left is the
    # permutation itself (plus float summation order).
    g, t = load_gguf(bundled.smollm2())
    plain = write_gguf(g, t, tmp_path / "plain-f16.gguf")
    g.close()
    ref, permuted, seed = _logits(tmp_path, plain, lineage_models["permuted"], lineage_models["seed-1"])
    plain.unlink()
    scale = np.abs(ref).max()
    assert np.abs(permuted - ref).max() < 0.01 * scale  # same function
    assert (permuted.argmax(1) == ref.argmax(1)).all()
    assert np.abs(seed - ref).max() > 0.2 * scale  # an independent model of the same shape is not
