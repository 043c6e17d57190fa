"""Benchmarks for the catalog and policy pieces, each next to its peer, in the same run.

1. Reading a GGUF header for identification: our bounded reader vs llama.cpp's ``gguf.GGUFReader``
   (which parses the whole file's metadata and tensor table), on the two real bundled GGUFs.
2. Authorising a gateway request: ``AccessPolicy.authorize`` (cached, and first call) vs calling
   ``cedarpy.is_authorized`` with the policy text each time, as a gateway without a cache would.

Run: ``.venv/bin/python bench/bench_catalog.py`` (writes bench/results/catalog.json).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import cedarpy
import gguf

from bastion import bundled
from bastion.formats.gguf import read_gguf
from bastion.keys import Principal
from bastion.policy import AccessPolicy, ModelResource
from bastion.policy.source import _read_text, schema_text

OUT = Path(__file__).parent / "results" / "catalog.json"


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs, in seconds."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def bench_headers() -> list[dict[str, object]]:
    rows = []
    for label, path in [("SmolLM2-135M Q4_1", bundled.smollm2()), ("Gemma 3 270M Q4_K_M", bundled.gemma3())]:
        ours = timed(lambda p=path: read_gguf(p), 3)
        peer = timed(lambda p=path: gguf.GGUFReader(p), 1)
        # Same answer: both see the same architecture and name.
        reader = gguf.GGUFReader(path)
        arch = reader.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() == read_gguf(path).metadata["general.architecture"]
        rows.append(
            {
                "file": label,
                "bastion_s": round(ours, 4),
                "gguf_reader_s": round(peer, 3),
                "speedup": round(peer / ours, 1),
            }
        )
    return rows


def bench_authorize(n: int = 2000) -> dict[str, object]:
    policy_text = _read_text("sovereign-strict")[0]
    ap = AccessPolicy("sovereign-strict", {"analysts": 2})
    principal = Principal("k1", "alice", ("smollm2",), ("analysts",))
    model = ModelResource("smollm2", 1)
    first = timed(
        lambda: AccessPolicy("sovereign-strict", {"analysts": 2}).authorize(principal, "chat", model), 5
    )
    ap.authorize(principal, "chat", model)
    cached = timed(lambda: [ap.authorize(principal, "chat", model) for _ in range(n)], 3) / n
    entities = [
        {
            "uid": {"type": "Bastion::ApiKey", "id": "k1"},
            "attrs": {"name": "alice", "models": ["smollm2"], "clearance": 2},
            "parents": [{"type": "Bastion::Group", "id": "analysts"}],
        },
        {"uid": {"type": "Bastion::Group", "id": "analysts"}, "attrs": {}, "parents": []},
        {
            "uid": {"type": "Bastion::ServedModel", "id": "smollm2"},
            "attrs": {"name": "smollm2", "classification_ceiling": 1, "local": True},
            "parents": [],
        },
    ]
    request = {
        "principal": 'Bastion::ApiKey::"k1"',
        "action": 'Bastion::Action::"chat"',
        "resource": 'Bastion::ServedModel::"smollm2"',
        "context": {},
    }
    schema = schema_text()
    assert cedarpy.is_authorized(request, policy_text, entities, schema).allowed
    m = 200
    naive = (
        timed(lambda: [cedarpy.is_authorized(request, policy_text, entities, schema) for _ in range(m)], 3)
        / m
    )
    ps, sc = cedarpy.PolicySet.from_str(policy_text), cedarpy.Schema.from_str(schema)
    parsed = timed(lambda: [cedarpy.is_authorized(request, ps, entities, sc) for _ in range(m)], 3) / m
    return {
        "cedarpy_preparsed_per_call_us": round(parsed * 1e6, 1),
        "bastion_cached_us": round(cached * 1e6, 2),
        "bastion_first_call_ms": round(first * 1e3, 2),
        "cedarpy_per_call_us": round(naive * 1e6, 1),
        "speedup_cached_vs_cedarpy": round(naive / cached, 1),
    }


def main() -> None:
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "gguf_version": version("gguf"),
        "cedarpy_version": version("cedarpy"),
        "headers": bench_headers(),
        "authorize": bench_authorize(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
