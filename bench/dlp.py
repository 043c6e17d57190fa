"""DLP: precision/recall/F1 per type for Bastion and Presidio's default analyser on the same labelled set,
markings recall and false positives on clean prose, prompts/s, and gateway overhead with DLP on vs off.

    .venv/bin/python bench/dlp.py [--per-template 5] [--duration 5] [--skip-gateway] [--skip-presidio]

The labelled set is generated from the presidio-evaluator wheel's templates and identity lists with
faker at a fixed seed (bench/_dlp_data.py); the markings and clean corpora are bench/_dlp_corpus.py.
Presidio runs in bench/.venv-presidio (created when missing). The gateway part needs Debian's nginx and
wrk (installed when missing), as bench/gateway_overhead.py does.
Results: bench/results/dlp.json and the tables in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _dlp_corpus  # noqa: E402
import _dlp_data  # noqa: E402

from bastion.dlp import Scanner  # noqa: E402

BENCH = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bastion" / "dlp-bench"
PRESIDIO_TYPES = {
    "CREDIT_CARD": "credit_card", "IBAN_CODE": "iban", "US_SSN": "us_ssn", "UK_NHS": "uk_nhs",
    "UK_NINO": "uk_nino", "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "IP_ADDRESS": "ip_address",
    "PERSON": "person", "LOCATION": "location",
}  # fmt: skip
SCORED = (*_dlp_data.STRUCTURED, "secret", "person", "location")

_scanner: Scanner | None = None


def _scan_types(text: str) -> list[tuple[int, int, str]]:
    global _scanner
    if _scanner is None:
        _scanner = Scanner()
    return [(f.start, f.end, "secret" if f.category == "secret" else f.type) for f in _scanner.scan(text).items]


def score(samples: list[_dlp_data.Sample], predictions: list[list[tuple[int, int, str]]]) -> dict[str, Any]:
    """Per type: a prediction is a true positive when it overlaps a gold span of the same type."""
    tp = {t: 0 for t in SCORED}
    fp = dict(tp)
    gold = dict(tp)
    for sample, preds in zip(samples, predictions, strict=True):
        for a, b, kind in sample.spans:
            gold[kind] += 1
            if any(k == kind and s < b and e > a for s, e, k in preds):
                tp[kind] += 1
        for s, e, kind in preds:
            if kind in fp and not any(k == kind and s < b and e > a for a, b, k in sample.spans):
                fp[kind] += 1
    out = {}
    for t in SCORED:
        p = tp[t] / (tp[t] + fp[t]) if tp[t] + fp[t] else (1.0 if not gold[t] else 0.0)
        r = tp[t] / gold[t] if gold[t] else float("nan")
        f1 = 2 * p * r / (p + r) if gold[t] and p + r else 0.0
        out[t] = {"gold": gold[t], "tp": tp[t], "fp": fp[t], "precision": p, "recall": r, "f1": f1}
    structured = [t for t in _dlp_data.STRUCTURED]
    stp, sfp, sg = (sum(d[t] for t in structured) for d in (tp, fp, gold))
    sp, sr = stp / max(stp + sfp, 1), stp / max(sg, 1)
    out["structured (micro)"] = {"gold": sg, "tp": stp, "fp": sfp, "precision": sp, "recall": sr,
                                 "f1": 2 * sp * sr / (sp + sr) if sp + sr else 0.0}
    return out


def throughput(texts: list[str], processes: int, rounds: int = 3) -> float:
    """Prompts per second scanning ``texts`` with ``processes`` worker processes (best of ``rounds``)."""
    best = float("inf")
    if processes == 1:
        _scan_types("warm up a@b.com 4111 1111 1111 1111")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for t in texts:
                _scan_types(t)
            best = min(best, time.perf_counter() - t0)
        return len(texts) / best
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_scan_types, texts[:50])
        for _ in range(rounds):
            t0 = time.perf_counter()
            pool.map(_scan_types, texts, chunksize=64)
            best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def run_presidio(texts: list[str], tmp: Path) -> dict[str, Any]:
    venv = BENCH / ".venv-presidio"
    if not (venv / "bin" / "python").exists() or subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import presidio_analyzer"], capture_output=True
    ).returncode:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "presidio-analyzer==2.2.366"], check=True)
    data = tmp / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = subprocess.run([str(venv / "bin" / "python"), str(BENCH / "_dlp_presidio.py"), str(data)],
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return dict(json.loads(out.stdout))


def gateway(duration: int, tmp: Path) -> dict[str, Any]:
    """Bastion in front of the nginx mock upstream with DLP off and on (clean and personal prompts)."""
    import gateway_overhead as go

    go.ensure_debian("nginx-light", "wrk")
    nginx, nport = go.start_nginx(tmp)
    procs = [nginx]
    results: dict[str, Any] = {}
    clean = go.REQUEST
    personal = json.dumps({"model": "mock", "max_tokens": 8, "messages": [
        {"role": "user", "content": "Write to jane.roe@example.org about card 4111 1111 1111 1111."}]})
    try:
        off = go.start_bastion(tmp, nport, audit=False, extra="[dlp]\nenabled = false\n", tag="dlp-off")
        procs.append(off[0])
        on = go.start_bastion(tmp, nport, audit=False, tag="dlp-on")
        procs.append(on[0])
        targets = {
            "nginx (mock upstream alone)": (nport, None, clean),
            "bastion, DLP off": (off[1], off[2], clean),
            "bastion, DLP on, clean prompt": (on[1], on[2], clean),
            "bastion, DLP on, personal data (pseudonymised)": (on[1], on[2], personal),
        }
        for name, (port, key, body) in targets.items():
            go.wrk(port, key, 1, 2, tmp, body)
            one = go.wrk(port, key, 1, duration, tmp, body)
            many = go.wrk(port, key, 32, duration, tmp, body)
            results[name] = {"c1": one, "c32": many}
            print(f"{name:48s} p50 {one['p50_ms']:.3f} ms  p99 {one['p99_ms']:.3f} ms  "
                  f"rps(c32) {many['rps']:.0f}  non-2xx {many['non_2xx']:.0f}")
    finally:
        for p in procs:
            go.stop(p)
    base = results["nginx (mock upstream alone)"]["c1"]["p50_ms"]
    for r in results.values():
        r["overhead_p50_ms"] = r["c1"]["p50_ms"] - base
    return results


def guard_cost(rounds: int = 2000) -> dict[str, float]:
    """In-process cost of the gateway's DLP step per request (scan, Cedar decision, rewrite, restore of a
    short answer), median microseconds: the part of the gateway overhead that DLP adds, without HTTP noise."""
    import asyncio
    import statistics

    import orjson

    from bastion.config import DlpSettings
    from bastion.keys import Principal
    from bastion.policy import AccessPolicy, CedarAuthorizer, ModelResource
    from bastion.serve.dlp_guard import DlpGuard

    guard = DlpGuard.from_settings(DlpSettings(), CedarAuthorizer(AccessPolicy("permissive")))
    who, cloud = Principal("k", "bench", ("*",)), ModelResource("mock", 0, False)
    reply = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})
    bodies = {
        "clean prompt": "Summarise the quarterly report in three bullet points for the board.",
        "personal data (pseudonymised)": "Write to jane.roe@example.org about card 4111 1111 1111 1111.",
        "secret (pseudonymised)": "Why does my key AKIAIOSFODNN7EXAMPLE not work?",
    }

    async def once(body: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        inspection = await guard.inspect("chat", body)
        guard.outgoing(inspection, who, cloud).reply(reply)
        return time.perf_counter() - t0

    async def measure() -> dict[str, float]:
        out = {}
        for name, text in bodies.items():
            body = {"model": "mock", "messages": [{"role": "user", "content": text}]}
            for _ in range(50):
                await once(body)
            out[name] = statistics.median([await once(body) for _ in range(rounds)]) * 1e6
        return out

    return asyncio.run(measure())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-template", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--skip-gateway", action="store_true")
    ap.add_argument("--skip-presidio", action="store_true")
    args = ap.parse_args()
    samples = _dlp_data.build(CACHE, args.per_template)
    texts = [s.text for s in samples]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "samples": len(samples),
        "sources": {k: sum(1 for s in samples if s.source == k) for k in {s.source for s in samples}},
    }
    bastion_preds = [_scan_types(t) for t in texts]
    results["bastion"] = {"scores": score(samples, bastion_preds)}
    import phonenumbers

    phones = [s.text[a:b] for s in samples for a, b, k in s.spans if k == "phone"]
    valid = sum(1 for p in phones if any(phonenumbers.is_valid_number(n.number) for r in ("US", "GB")
                                         for n in phonenumbers.PhoneNumberMatcher(p, r)))
    results["gold_phones_valid_per_libphonenumber"] = {"valid": valid, "total": len(phones)}
    marked = [Scanner().scan(t) for t, _ in _dlp_corpus.MARKED]
    clean = [Scanner().scan(t) for t in _dlp_corpus.CLEAN]
    results["bastion"]["markings"] = {
        "marked": len(marked),
        "found": sum(1 for f in marked if f.marking_level >= 0),
        "level_exact": sum(1 for f, (_, lvl) in zip(marked, _dlp_corpus.MARKED, strict=True) if f.marking_level == lvl),
        "clean": len(clean),
        "false_positives": sum(1 for f in clean if f.category_counts()["marking"]),
    }
    all_texts = texts + [t for t, _ in _dlp_corpus.MARKED] + _dlp_corpus.CLEAN
    results["bastion"]["prompts_per_s"] = {"1 process": throughput(all_texts, 1), "2 processes": throughput(all_texts, 2)}
    results["bastion"]["gateway_dlp_step_us"] = guard_cost()
    print(json.dumps({k: results["bastion"][k] for k in ("markings", "prompts_per_s", "gateway_dlp_step_us")},
                     indent=1))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_presidio:
            pres = run_presidio(texts, tmp)
            preds = [[(s, e, PRESIDIO_TYPES[t]) for s, e, t, _ in p if t in PRESIDIO_TYPES] for p in pres["predictions"]]
            results["presidio"] = {
                "version": "presidio-analyzer 2.2.366, default recognizers, spaCy blank English (no NER model)",
                "scores": score(samples, preds),
                "prompts_per_s": {"1 process": len(texts) / pres["elapsed_s"]},
                "recognizers": pres["recognizers"],
            }
        if not args.skip_gateway:
            results["gateway"] = gateway(args.duration, tmp)
    for name in ("bastion", "presidio"):
        if name in results:
            print(f"\n{name}")
            for t, s in results[name]["scores"].items():
                print(f"  {t:20s} gold {s['gold']:4d}  P {s['precision']:.3f}  R {s['recall']:.3f}  F1 {s['f1']:.3f}")
    out = BENCH / "results" / "dlp.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
