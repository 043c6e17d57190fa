"""Bench: Bastion vet vs modelscan and picklescan on the crafted corpus, clean models and a 2 GB file.

Also the attack classes of issue 10 (tests/adversarial/attacks.py: higher-order pickle gadgets,
wrapped and unnamed pickles, chat templates that compute their lookups) and the opcode bomb, which
each tool reads alone in a child process, timed, with its peak RSS (killed after BOMB_TIMEOUT s).

Run: .venv/bin/python bench/vet.py   (creates bench/.venv-peers with modelscan 0.8.8 and picklescan 1.0.5
the first time, so modelscan cannot downgrade Bastion's rich; needs torch from the dev extra for the
corpus). Writes bench/results/vet.json and prints the Markdown tables that go in bench/README.md.

Detection: Bastion = verdict fail or unusable-input error; modelscan = at least one issue; picklescan =
at least one infected file (its "dangerous" globals). A clean file flagged by a tool is a false positive.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.adversarial.attacks import TEMPLATE_ATTACKS, build_attacks, opcode_bomb_zip  # noqa: E402
from tests.adversarial.measure import run_measured  # noqa: E402
from tests.vet.corpus import build_corpus, gguf_bytes  # noqa: E402

from bastion import bundled  # noqa: E402
from bastion.errors import UnusableInput  # noqa: E402
from bastion.vet import vet_path  # noqa: E402

PEERS = HERE / ".venv-peers"
PEER_PACKAGES = ["modelscan==0.8.8", "picklescan==1.0.5"]
BIG_BYTES = 2 * 1000**3
BAD_INPUT = {"empty.bin", "random.xyz", "random.bin", "html.gguf"}
BOMB_TIMEOUT = 120.0


def issue10_set(root: Path, clean_zip: Path) -> list[tuple[str, str, Path]]:
    """(name, attack, path) for each crafted file of issue 10, templates written into real GGUF files."""
    out = [(a.name, a.attack, root / a.name) for a in build_attacks(root, clean_zip)]
    for name, (src, _) in TEMPLATE_ATTACKS.items():
        p = root / name.replace(".jinja", ".gguf")
        p.write_bytes(gguf_bytes({"general.architecture": "llama", "tokenizer.chat_template": src}, 1))
        out.append((p.name, f"chat template: {name.removesuffix('.jinja').replace('_', ' ')}", p))
    return out


def bomb_run(py: Path, bomb: Path) -> dict[str, dict[str, object]]:
    """Each tool alone on the opcode bomb: Bastion's CLI, then each peer through _vet_peers.py."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    verdict = bastion_scan(bomb, digests=False)
    out = {
        "bastion_in_process": {"seconds": round(time.perf_counter() - t, 2), "verdict": verdict["verdict"]}
    }
    sink = bomb.with_suffix(".out")
    cmds = {
        "bastion": [sys.executable, "-m", "bastion.cli.main", "vet", str(bomb), "--json"],
        **{
            t: [str(py), str(HERE / "_vet_peers.py"), "--tool", t, str(bomb)]
            for t in ("modelscan", "picklescan")
        },
    }
    for tool, cmd in cmds.items():
        run = run_measured(cmd, sink, env, BOMB_TIMEOUT)
        out[tool] = {
            "seconds": round(float(run["seconds"]), 2),
            "max_rss_mib": round(int(run["max_rss_kib"]) / 1024),
            "timed_out": run["timed_out"],
        }
    return out


def ensure_peers() -> Path:
    py = PEERS / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        (PEERS / ".gitignore").write_text("*\n")
    if subprocess.run([str(py), "-c", "import modelscan, picklescan"], capture_output=True).returncode:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return py


def big_safetensors(path: Path) -> Path:
    """A real 2 GB F32 safetensors file (8 tensors of 250 MB, pseudo-random bytes)."""
    n = 8
    per = BIG_BYTES // n
    header = {
        f"layers.{i}.weight": {"dtype": "F32", "shape": [per // 4], "data_offsets": [i * per, (i + 1) * per]}
        for i in range(n)
    }
    raw = json.dumps(header).encode()
    block = os.urandom(64 << 20)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        left = per * n
        while left:
            chunk = block[: min(len(block), left)]
            fh.write(chunk)
            left -= len(chunk)
    return path


def clean_set(root: Path) -> dict[str, Path]:
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    root.mkdir()
    sd = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32)).state_dict()
    torch.save(sd, root / "pytorch_model.bin")
    torch.save(sd, root / "legacy_model.pt", _use_new_zipfile_serialization=False)
    save_file({"w": np.ones((64, 32), np.float32)}, str(root / "numpy.safetensors"))
    return {
        "smollm2.gguf": bundled.smollm2(),
        "gemma3.gguf": bundled.gemma3(),
        "minilm/model.safetensors": bundled.minilm() / "model.safetensors",
        "torch_state_dict.bin": root / "pytorch_model.bin",
        "torch_legacy.pt": root / "legacy_model.pt",
        "numpy.safetensors": root / "numpy.safetensors",
    }


def bastion_scan(path: Path, digests: bool = True) -> dict[str, object]:
    t = time.perf_counter()
    try:
        r = vet_path(path, digests=digests)
        verdict = r.verdict.value
        codes = sorted({f.code for f in r.findings if f.severity.value != "info"})
    except UnusableInput:
        verdict, codes = "unusable", ["UNUSABLE_INPUT"]
    dt = time.perf_counter() - t
    return {
        "detected": verdict in ("fail", "unusable"),
        "verdict": verdict,
        "detail": ", ".join(codes)[:120],
        "seconds": dt,
    }


def peers_scan(py: Path, paths: list[Path]) -> dict[str, dict[str, dict[str, object]]]:
    res = subprocess.run(
        [str(py), str(HERE / "_vet_peers.py"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return json.loads(res.stdout)


def mark(d: dict[str, object]) -> str:
    return "**yes**" if d["detected"] else "no"


def main() -> None:
    py = ensure_peers()
    work = Path(tempfile.mkdtemp(prefix="bastion-bench-vet-"))
    try:
        cases = build_corpus(work / "crafted")
        clean = clean_set(work / "clean")
        w2 = issue10_set(work / "issue10", clean["torch_state_dict.bin"])
        (work / "bomb").mkdir()
        bomb = opcode_bomb_zip(work / "bomb" / "model.pt")
        big = big_safetensors(work / "big.safetensors")
        # warm the page cache for everyone alike
        for p in [*clean.values(), big]:
            with p.open("rb") as fh:
                while fh.read(64 << 20):
                    pass
        files = [c.path for c in cases] + [p for _, _, p in w2] + list(clean.values()) + [big]
        ours = {str(p): bastion_scan(p) for p in files}
        ours_nodigest = {str(p): bastion_scan(p, digests=False) for p in files}
        ours_header_only = ours_nodigest
        theirs = peers_scan(py, files)
        rows = []
        for c in cases:
            kind = "bad input" if c.name in BAD_INPUT else "malicious" if c.expect != "pass" else "clean"
            rows.append(
                {
                    "file": c.name,
                    "attack": c.attack,
                    "kind": kind,
                    "bastion": ours[str(c.path)],
                    "modelscan": theirs["modelscan"][str(c.path)],
                    "picklescan": theirs["picklescan"][str(c.path)],
                }
            )
        for name, attack, p in w2:
            rows.append(
                {
                    "file": name,
                    "attack": attack,
                    "kind": "malicious",
                    "issue10": True,
                    "bastion": ours[str(p)],
                    "modelscan": theirs["modelscan"][str(p)],
                    "picklescan": theirs["picklescan"][str(p)],
                }
            )
        for name, p in [*clean.items(), ("big_2GB.safetensors", big)]:
            rows.append(
                {
                    "file": name,
                    "attack": "clean",
                    "kind": "clean",
                    "bastion": ours[str(p)],
                    "modelscan": theirs["modelscan"][str(p)],
                    "picklescan": theirs["picklescan"][str(p)],
                }
            )
        tools = ("bastion", "modelscan", "picklescan")
        bad = [r for r in rows if r["kind"] == "malicious"]
        good = [r for r in rows if r["kind"] == "clean"]
        junk = [r for r in rows if r["kind"] == "bad input"]
        summary = {
            t: {
                "detected": sum(bool(r[t]["detected"]) for r in bad),
                "malicious": len(bad),
                "bad_input_flagged": sum(bool(r[t]["detected"]) for r in junk),
                "bad_input": len(junk),
                "false_positives": sum(bool(r[t]["detected"]) for r in good),
                "clean": len(good),
                "seconds_total": round(sum(float(r[t]["seconds"]) for r in rows), 3),
            }
            for t in tools
        }
        big_s = {t: float(r[t]["seconds"]) for r in rows if r["file"] == "big_2GB.safetensors" for t in tools}
        throughput = {
            "file_bytes": big.stat().st_size,
            "bastion_with_sha256_s": round(big_s["bastion"], 3),
            "bastion_header_only_s": round(float(ours_header_only[str(big)]["seconds"]), 4),
            "modelscan_s": round(big_s["modelscan"], 3),
            "picklescan_s": round(big_s["picklescan"], 3),
        }
        bombs = bomb_run(py, bomb)
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpu",
            "opcode_bomb": {"file_bytes": bomb.stat().st_size, "opcodes": 20_000_000, **bombs},
            "python": platform.python_version(),
            "peers": PEER_PACKAGES,
            "summary": summary,
            "bastion_no_digest_seconds_total": round(
                sum(float(v["seconds"]) for v in ours_nodigest.values()), 3
            ),
            "throughput_2GB": throughput,
            "rows": rows,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (HERE / "results").mkdir(exist_ok=True)
        tmp = HERE / "results" / "vet.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str))
        os.replace(tmp, HERE / "results" / "vet.json")
        print("| file | attack | Bastion | modelscan | picklescan |\n|---|---|---|---|---|")
        for r in [r for r in rows if r.get("issue10")] + [r for r in rows if not r.get("issue10")]:
            print(
                f"| {r['file']} | {r['attack']} | {mark(r['bastion'])} | {mark(r['modelscan'])} "
                f"| {mark(r['picklescan'])} |"
            )
        print("\n| tool | malicious detected | bad input flagged | false positives (clean) | total time |")
        print("|---|---|---|---|---|")
        for t in tools:
            s = summary[t]
            print(
                f"| {t} | {s['detected']}/{s['malicious']} | {s['bad_input_flagged']}/{s['bad_input']} | "
                f"{s['false_positives']}/{s['clean']} | {s['seconds_total']} s |"
            )
        print(
            f"\nOpcode bomb ({bomb.stat().st_size / 1000:.1f} KB torch zip, 20M opcodes), each tool alone: "
            + "; ".join(
                f"{t} {bombs[t]['seconds']} s, {bombs[t]['max_rss_mib']} MiB"
                + (" (killed at the timeout)" if bombs[t]["timed_out"] else "")
                for t in tools
            )
            + f"; Bastion in process {bombs['bastion_in_process']['seconds']} s "
            f"(verdict {bombs['bastion_in_process']['verdict']})"
        )
        nod = sum(float(v["seconds"]) for v in ours_nodigest.values())
        print(f"| bastion, no sha256 | | | | {nod:.3f} s |")
        w2_rows = [r for r in rows if r.get("issue10")]
        print("\n| issue 10 attack classes | Bastion | modelscan | picklescan |\n|---|---|---|---|")
        print(
            f"| detected of {len(w2_rows)} | "
            + " | ".join(f"{sum(bool(r[t]['detected']) for r in w2_rows)}" for t in tools)
            + " |"
        )
        gb = throughput["file_bytes"] / 1e9
        print(
            f"\n2 GB safetensors ({gb:.2f} GB): Bastion vet with sha256 "
            f"{throughput['bastion_with_sha256_s']} s ({gb / max(big_s['bastion'], 1e-9):.2f} GB/s), "
            f"header-only {throughput['bastion_header_only_s']} s; "
            f"modelscan {throughput['modelscan_s']} s; picklescan {throughput['picklescan_s']} s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the 2 GB file never outlives the run


if __name__ == "__main__":
    main()
