"""The derived models are what they claim: the permuted one computes the same function (llama.cpp)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bastion import bundled

GREEDY = """
import json, sys
from llama_cpp import Llama
out = []
for path in sys.argv[1:]:
    llm = Llama(path, n_ctx=128, n_threads=2, verbose=False, seed=0)
    r = llm.create_completion("The capital of France is", max_tokens=12, temperature=0.0)
    out.append(r["choices"][0]["text"])
print(json.dumps(out))
"""


def _greedy(*paths: Path) -> list[str]:
    # In a child process: llama.cpp's spinning OpenMP threads would slow the torch fixtures in this one.
    r = subprocess.run(
        [sys.executable, "-c", GREEDY, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return list(json.loads(r.stdout))


@pytest.mark.slow
def test_permuted_model_generates_the_same_text_as_the_base(lineage_models: dict[str, Path]) -> None:
    base, permuted, seed = _greedy(bundled.smollm2(), lineage_models["permuted"], lineage_models["seed-1"])
    assert "Paris" in base
    assert permuted == base  # residual, unit and head permutations plus norm scaling change nothing
    assert seed != base  # and an independent model of the same shape does not
