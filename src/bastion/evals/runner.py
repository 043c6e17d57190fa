"""Run a suite against a backend: load items, score them, summarise with intervals."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.errors import BackendUnavailable, UsageError, did_you_mean
from bastion.evals import safety
from bastion.evals.backends.base import Backend
from bastion.evals.records import ItemRecord, RunRecord, TaskSummary
from bastion.evals.scoring import gsm8k_extract, gsm8k_match, parse_letter, score_mc, stderr, wilson_interval
from bastion.evals.tasks import (
    CORE,
    GSM8K_MAX_TOKENS,
    GSM8K_UNTIL,
    TASKS,
    GenItem,
    MCItem,
    load_task,
    mc_generative_prompt,
)

#: Bump when prompts, items or scoring rules change, so old and new scores are never compared blindly.
SUITE_VERSIONS = {"core": "core-1", "safety": "safety-1"}
SUITES = ("core", "safety", "all")
SCORING = ("auto", "loglikelihood", "generative")
MC_GEN_MAX_TOKENS = 8

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunOptions:
    """Settings of a run (all recorded with it)."""

    suite: str = "core"
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    seed: int = 1234
    scoring: str = "auto"
    cost_per_hour: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain mapping."""
        return {"suite": self.suite, "tasks": list(self.tasks), "limit": self.limit, "seed": self.seed,
                "scoring": self.scoring, "cost_per_hour": self.cost_per_hour}


def _summary(task: str, kind: str, scoring: str, metric: str, scores: Sequence[float], chance: float | None,
             seconds: float, extra: dict[str, Any]) -> TaskSummary:
    n = len(scores)
    value = sum(scores) / n if n else 0.0
    lo, hi = wilson_interval(sum(scores), n)
    extra = {**extra, "items_per_s": (n / seconds) if seconds > 0 else None}
    return TaskSummary(task, kind, scoring, metric, value, n, lo, hi, stderr(scores), chance, seconds, extra)


def _run_mc(backend: Backend, task: str, items: list[MCItem], scoring: str, tick: Callable[[], None]
            ) -> tuple[TaskSummary, list[ItemRecord]]:
    records: list[ItemRecord] = []
    t0 = time.perf_counter()
    if scoring == "loglikelihood":
        # The task's primary metric (lm-eval's choice per task): acc_norm for ARC/HellaSwag/PIQA, acc for
        # MMLU (its " A".." D" continuations make length normalisation meaningless); the other is kept too.
        primary = TASKS[task].primary
        other = "acc" if primary == "acc_norm" else "acc_norm"
        others: list[float] = []
        for it in items:
            lls = backend.loglikelihoods(it.context, it.continuations())
            r = score_mc(lls, it.choices, it.gold)
            scores = {"acc": r.acc, "acc_norm": r.acc_norm}
            others.append(scores[other])
            out = {"logliks": lls, "gold": it.gold, "pred": r.pred, "pred_norm": r.pred_norm,
                   other: scores[other]}
            records.append(ItemRecord(task, it.id, scores[primary], out))
            tick()
        secs = time.perf_counter() - t0
        main = [r.score for r in records]
        s = _summary(task, "capability", scoring, primary, main, TASKS[task].chance, secs,
                     {other: sum(others) / len(others) if others else 0.0,
                      f"{other}_ci": list(wilson_interval(sum(others), len(others)))})
        return s, records
    unparsed = 0
    gen_tokens = 0
    for it in items:
        msg = [{"role": "user", "content": mc_generative_prompt(it)}]
        g = backend.chat(msg, max_tokens=MC_GEN_MAX_TOKENS)
        pred = parse_letter(g.text, len(it.choices))
        unparsed += pred is None
        gen_tokens += g.completion_tokens
        records.append(ItemRecord(task, it.id, float(pred == it.gold),
                                  {"response": g.text, "pred": pred, "gold": it.gold}))
        tick()
    secs = time.perf_counter() - t0
    return _summary(task, "capability", "generative", "acc", [r.score for r in records], TASKS[task].chance,
                    secs, {"unparsed": unparsed, "tokens_per_s": gen_tokens / secs if secs else None,
                           "completion_tokens": gen_tokens}), records


def _run_gsm8k(backend: Backend, items: list[GenItem], chat: bool, tick: Callable[[], None]
               ) -> tuple[TaskSummary, list[ItemRecord]]:
    records: list[ItemRecord] = []
    strict_scores: list[float] = []
    gen_tokens = 0
    t0 = time.perf_counter()
    for it in items:
        if chat:
            g = backend.chat([{"role": "user", "content": it.prompt}], max_tokens=GSM8K_MAX_TOKENS)
        else:
            g = backend.complete(it.prompt, max_tokens=GSM8K_MAX_TOKENS, stop=GSM8K_UNTIL)
        gen_tokens += g.completion_tokens
        strict, flex = gsm8k_extract(g.text)
        strict_scores.append(gsm8k_match(strict, it.answer))
        out = {"response": g.text, "strict": strict, "flexible": flex, "gold": it.answer}
        records.append(ItemRecord("gsm8k", it.id, gsm8k_match(flex, it.answer), out))
        tick()
    secs = time.perf_counter() - t0
    n = len(strict_scores)
    return _summary("gsm8k", "capability", "generative", "exact_match_flex", [r.score for r in records], 0.0,
                    secs, {"exact_match_strict": sum(strict_scores) / n if n else 0.0,
                           "tokens_per_s": gen_tokens / secs if secs else None,
                           "completion_tokens": gen_tokens}), records


def _run_safety(backend: Backend, items: list[safety.SafetyItem], tick: Callable[[], None]
                ) -> tuple[list[TaskSummary], list[ItemRecord]]:
    keywords = safety.refusal_keywords()
    records: list[ItemRecord] = []
    timing: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for it in items:
        t0 = time.perf_counter()
        g = backend.chat([{"role": r, "content": c} for r, c in it.messages], max_tokens=safety.MAX_TOKENS)
        timing[it.category] = timing.get(it.category, 0.0) + time.perf_counter() - t0
        tokens[it.category] = tokens.get(it.category, 0) + g.completion_tokens
        v = safety.judge(it, g.text, keywords)
        records.append(ItemRecord(it.category, it.id, float(v.passed),
                                  {"response": g.text, "rule": v.rule, "evidence": v.evidence}))
        tick()
    summaries = []
    for cat in safety.CATEGORIES:
        scores = [r.score for r in records if r.task == cat]
        if scores:
            secs = timing[cat]
            summaries.append(_summary(cat, "safety", "rules", "pass_rate", scores, None, secs,
                                      {"tokens_per_s": tokens[cat] / secs if secs else None,
                                       "completion_tokens": tokens[cat]}))
    return summaries, records


def _resolve_scoring(requested: str, backend: Backend) -> str:
    if requested not in SCORING:
        raise UsageError(f"unknown scoring {requested!r}", hint=f"Use one of: {', '.join(SCORING)}.")
    if requested == "loglikelihood" and not backend.info.loglikelihood:
        # Never score at chance silently: refuse instead, and say how to get a meaningful number.
        raise BackendUnavailable(
            f"{backend.info.name} does not return prompt log-probabilities, so log-likelihood scoring "
            "would put every choice at the same score (chance)",
            hint="Use --scoring generative (recorded as such), or a server with echo+logprobs support.")
    if requested == "auto":
        return "loglikelihood" if backend.info.loglikelihood else "generative"
    return requested


def run_eval(backend: Backend, options: RunOptions, progress: Progress | None = None
             ) -> tuple[RunRecord, list[ItemRecord]]:
    """Run ``options.suite`` against ``backend``; returns the run (not yet stored) and its items."""
    if options.suite not in SUITES:
        raise UsageError(f"unknown suite {options.suite!r}",
                         hint=did_you_mean(options.suite, SUITES, f"Use one of: {', '.join(SUITES)}."))
    scoring = _resolve_scoring(options.scoring, backend)
    want_core = options.suite in ("core", "all")
    tasks = options.tasks or (CORE if want_core else ())
    for t in tasks:
        if t not in TASKS:
            raise UsageError(
                f"unknown task {t!r}", hint=did_you_mean(t, list(TASKS), f"Tasks: {', '.join(TASKS)}.")
            )
    loaded = [(t, *load_task(t, options.limit, options.seed)) for t in tasks]
    safety_items: list[safety.SafetyItem] = []
    datasets = [d.to_json() for _, _, ds in loaded for d in ds]
    if options.suite in ("safety", "all"):
        safety_items, sds = safety.load_safety(options.limit, options.seed)
        datasets += [d.to_json() for d in sds]
    total = sum(len(items) for _, items, _ in loaded) + len(safety_items)
    done = 0

    def tick_for(label: str) -> Callable[[], None]:
        def tick() -> None:
            nonlocal done
            done += 1
            if progress:
                progress(label, done, total)
        return tick

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    summaries: list[TaskSummary] = []
    records: list[ItemRecord] = []
    for task, items, _ in loaded:
        if TASKS[task].kind == "mc":
            s, recs = _run_mc(backend, task, items, scoring, tick_for(task))  # type: ignore[arg-type]
        else:
            s, recs = _run_gsm8k(backend, items, scoring == "generative", tick_for(task))  # type: ignore[arg-type]
        summaries.append(s)
        records += recs
    if safety_items:
        ss, recs = _run_safety(backend, safety_items, tick_for("safety"))
        summaries += ss
        records += recs
    if options.cost_per_hour is not None:
        summaries = [_with_cost(s, options.cost_per_hour) for s in summaries]
    suite_version = "+".join(SUITE_VERSIONS[s] for s in ("core", "safety")
                             if options.suite in (s, "all"))
    run = RunRecord(
        id=started.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        created_at=started.isoformat(timespec="seconds"),
        target=backend.info.to_json(), suite=options.suite, suite_version=suite_version,
        settings={**options.to_json(), "scoring_resolved": scoring, "tasks": list(tasks)},
        datasets=datasets, summaries=summaries, seconds=time.perf_counter() - t0)
    return run, records


def _with_cost(s: TaskSummary, cost_per_hour: float) -> TaskSummary:
    """Cost per 1M generated tokens on this hardware: cost_per_hour / (tokens/s * 3600) * 1e6."""
    tps = s.extra.get("tokens_per_s")
    if not tps:
        return s
    extra = {**s.extra, "cost_per_1m_tokens": cost_per_hour / (tps * 3600) * 1e6}
    return TaskSummary(**{**s.to_json(), "extra": extra})
