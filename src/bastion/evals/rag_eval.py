"""The value of retrieval as a number: the same SciQ questions answered without and with retrieval.

``bastion eval run --rag COLLECTION`` asks each SciQ question (the ``sciq`` data set: validation split,
question, answer, three distractors and the support passage) twice, scored the same way:

* closed book: ``"Question: {q}\\nAnswer:"``;
* with retrieval: the ``k`` best chunks of COLLECTION for the question (searched as a principal, so
  Cedar decides what the evaluation may see, as for any caller) above the same prompt.

Scoring is lm-eval's for SciQ: log-likelihood of each choice (``acc``, and ``acc_norm`` kept), or,
for a target without prompt log-probabilities, the generative letter prompt (recorded as such). The run
reports both accuracies, their difference (``rag_gain``) and how often the question's own support
passage was among the retrieved chunks (``support_retrieved``: the retrieval's recall on this set).
Retrieval is a seam (``search``), so the evaluation imports no retrieval code and can be driven by any.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bastion.evals.backends.base import Backend
from bastion.evals.data import Dataset, load_dataset
from bastion.evals.records import ItemRecord, RunRecord, TaskSummary
from bastion.evals.runner import MC_GEN_MAX_TOKENS, Progress, _resolve_scoring, _summary
from bastion.evals.scoring import parse_letter, score_mc
from bastion.evals.tasks import LETTERS
from bastion.signing.keys import write_atomic

SUITE_VERSION = "rag-sciq-1"
#: characters of retrieved text above a question (SmolLM2's context holds them and the choices)
CONTEXT_CHARS = 1500


class Passage(Protocol):
    """A retrieved chunk (``bastion.rag.Hit`` has this shape)."""

    @property
    def text(self) -> str: ...
    @property
    def chunk_id(self) -> str: ...


Search = Callable[[str], Sequence[Passage]]


@dataclass(frozen=True)
class SciQItem:
    """One SciQ question with its choices in a seeded order."""

    id: str
    question: str
    choices: tuple[str, ...]
    gold: int
    support: str


def load_sciq(limit: int | None, seed: int) -> tuple[list[SciQItem], Dataset]:
    """SciQ items (a seeded sample of ``limit``), choices shuffled with the seed so the answer's place
    carries no signal."""
    data = load_dataset("sciq")
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    records = list(data.records)
    if limit is not None and limit < len(records):
        records = rng.sample(records, limit)
    items = []
    for r in records:
        choices = [r["answer"], *r["distractors"]]
        order = list(range(len(choices)))
        rng.shuffle(order)
        items.append(SciQItem(r["id"], r["question"], tuple(choices[i] for i in order), order.index(0),
                              r.get("support", "")))
    return items, data


def context(passages: Sequence[Passage]) -> str:
    """The retrieved chunks above a question, best first, within :data:`CONTEXT_CHARS`."""
    out: list[str] = []
    left = CONTEXT_CHARS
    for p in passages:
        text = " ".join(p.text.split())[:left]
        if not text:
            break
        out.append(text)
        left -= len(text)
    return "\n".join(out)


def _support_found(item: SciQItem, passages: Sequence[Passage]) -> bool:
    """Whether one of ``passages`` comes from the item's own support passage (a chunk of it)."""
    if not item.support:
        return False
    support = " ".join(item.support.split())
    return any(" ".join(p.text.split())[:120] in support for p in passages)


def _ask(backend: Backend, scoring: str, item: SciQItem, prefix: str) -> tuple[float, dict[str, Any]]:
    prompt = f"Question: {item.question}\nAnswer:"
    if prefix:
        prompt = f"{prefix}\n\n{prompt}"
    if scoring == "loglikelihood":
        lls = backend.loglikelihoods(prompt, [" " + c for c in item.choices])
        r = score_mc(lls, item.choices, item.gold)
        return r.acc, {"logliks": lls, "pred": r.pred, "acc_norm": r.acc_norm}
    letters = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    ask = f"{prompt.removesuffix('Answer:')}{letters}\nAnswer with the letter of the correct choice."
    g = backend.chat([{"role": "user", "content": ask}], max_tokens=MC_GEN_MAX_TOKENS)
    pred = parse_letter(g.text, len(item.choices))
    return float(pred == item.gold), {"response": g.text, "pred": pred}


def run_rag_eval(
    backend: Backend,
    search: Search,
    collection: str,
    *,
    limit: int | None = None,
    seed: int = 1234,
    scoring: str = "auto",
    k: int = 3,
    progress: Progress | None = None,
) -> tuple[RunRecord, list[ItemRecord]]:
    """Answer SciQ with and without retrieval from ``collection`` (through ``search``); the run holds
    both accuracies, ``rag_gain`` and ``support_retrieved``."""
    resolved = _resolve_scoring(scoring, backend)
    items, data = load_sciq(limit, seed)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    records: list[ItemRecord] = []
    closed: list[float] = []
    grounded: list[float] = []
    found = 0
    seconds = {"closed": 0.0, "rag": 0.0}
    for n, item in enumerate(items, 1):
        t = time.perf_counter()
        score, out = _ask(backend, resolved, item, "")
        seconds["closed"] += time.perf_counter() - t
        closed.append(score)
        records.append(ItemRecord("sciq", item.id, score, {**out, "gold": item.gold}))
        t = time.perf_counter()
        passages = search(item.question)[:k]
        hit = _support_found(item, passages)
        found += hit
        score, out = _ask(backend, resolved, item, context(passages))
        seconds["rag"] += time.perf_counter() - t
        grounded.append(score)
        records.append(ItemRecord(f"sciq+rag:{collection}", item.id, score,
                                  {**out, "gold": item.gold, "chunks": [p.chunk_id for p in passages],
                                   "support_retrieved": hit}))
        if progress:
            progress("sciq with and without retrieval", n, len(items))
    gain = (sum(grounded) - sum(closed)) / len(items) if items else 0.0
    recall = found / sum(1 for it in items if it.support) if any(it.support for it in items) else 0.0
    extra = {"rag_gain": gain, "support_retrieved": recall, "collection": collection, "k": k}
    summaries = [
        _summary("sciq", "capability", resolved, "acc", closed, 0.25, seconds["closed"],
                 {"retrieval": False}),
        _summary(f"sciq+rag:{collection}", "capability", resolved, "acc", grounded, 0.25, seconds["rag"],
                 {"retrieval": True, **extra}),
    ]
    run = RunRecord(
        id=started.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        created_at=started.isoformat(timespec="seconds"),
        target=backend.info.to_json(), suite="rag", suite_version=SUITE_VERSION,
        settings={"suite": "rag", "collection": collection, "k": k, "limit": limit, "seed": seed,
                  "scoring": scoring, "scoring_resolved": resolved, "tasks": ["sciq"]},
        datasets=[data.to_json()], summaries=summaries, seconds=time.perf_counter() - t0)
    return run, records


def retrieval_summary(run: RunRecord) -> TaskSummary | None:
    """The with-retrieval summary of a ``--rag`` run (its ``extra`` holds ``rag_gain``)."""
    return next((s for s in run.summaries if s.extra.get("retrieval")), None)


def write_passages(folder: Path, classification: str, groups: tuple[str, ...]) -> int:
    """Write each SciQ support passage to ``folder/sciq-N.txt`` and a ``folder.meta.toml`` labelling them
    (``classification``, ``groups``), for ``bastion rag ingest``; returns how many were written."""
    records = load_dataset("sciq").records
    folder.mkdir(parents=True, exist_ok=True)
    label = f"classification = {json.dumps(classification)}\ngroups = {json.dumps(list(groups))}\n"
    write_atomic(folder / "folder.meta.toml", label.encode())
    written = 0
    for r in records:
        if r.get("support"):
            write_atomic(folder / f"{r['id']}.txt", r["support"].encode("utf-8"))
            written += 1
    return written
